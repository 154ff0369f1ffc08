//! Microbenchmarks of the server keyspace ([`shoal_server::keyspace::Db`]): a GET hit among a million keys,
//! a SET of a new key, and a SET overwriting an existing one — lock, hash, probe and (for SETs) allocate, the
//! work under every string command. Run with `cargo bench -p shoal-bench --bench keyspace`; `cargo test`
//! never runs them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shoal_server::keyspace::{AccessMode, Db, Entry, Key, Now};

/// Keys in the populated database.
const KEYS: usize = 1_000_000;
const VALUE: &[u8] = b"0123456789abcdef0123456789abcdef";

fn key_name(i: usize) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

/// A lookup order that jumps around the keyspace (a multiplicative permutation), so consecutive lookups do
/// not share cache lines the way `0, 1, 2 ...` might.
fn scattered(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| key_name(i.wrapping_mul(2_654_435_761) % KEYS)).collect()
}

fn populated() -> (Db, Now) {
    let db = Db::new();
    let now = Now::wall(AccessMode::Lru);
    for i in 0..KEYS {
        let name = key_name(i);
        let key = Key::new(&name);
        db.lock(&key)
            .insert(&key, Entry::new_str(&name, VALUE, None, now.initial_access()));
    }
    (db, now)
}

fn get_hit(c: &mut Criterion) {
    let (db, now) = populated();
    let names = scattered(1 << 16);
    let mut group = c.benchmark_group("keyspace");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_hit_1m_keys", |b| {
        let mut i = 0;
        b.iter(|| {
            let name = &names[i & (names.len() - 1)];
            i += 1;
            let key = Key::new(name);
            let mut shard = db.lock(&key);
            let pos = shard.lookup_read(&key, &now, false);
            black_box(pos.map(|p| shard.entry(&key, p).str_value().len()))
        })
    });
    group.bench_function("set_overwrite_1m_keys", |b| {
        let mut i = 0;
        b.iter(|| {
            let name = &names[i & (names.len() - 1)];
            i += 1;
            let key = Key::new(name);
            let entry = Entry::new_str(name, VALUE, None, now.initial_access());
            black_box(db.lock(&key).upsert(&key, entry))
        })
    });
    group.finish();
}

fn set_new(c: &mut Criterion) {
    let now = Now::wall(AccessMode::Lru);
    let mut group = c.benchmark_group("keyspace");
    group.throughput(Throughput::Elements(1));
    group.bench_function("set_new_key", |b| {
        // Each sample fills a fresh database with as many new keys as it times; building the names and
        // dropping the database stay outside the measurement.
        b.iter_custom(|iters| {
            let db = Db::new();
            let names: Vec<Vec<u8>> = (0..iters as usize).map(key_name).collect();
            let start = Instant::now();
            for name in &names {
                let key = Key::new(name);
                let mut shard = db.lock(&key);
                if shard.lookup_write(&key, &now).is_none() {
                    shard.insert(&key, Entry::new_str(name, VALUE, None, now.initial_access()));
                }
            }
            let elapsed: Duration = start.elapsed();
            drop(db);
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, get_hit, set_new);
criterion_main!(benches);
