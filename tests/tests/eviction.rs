//! Eviction against the reference: the same read-through cache workload, with a skewed (Zipf) key popularity,
//! runs against redis-server and shoal-server, both under `allkeys-lru` with maxmemory at about a tenth of the
//! data. Shoal must keep used_memory under the limit and hit at least as often as Redis does.
//!
//! Two value sizes: 100 bytes, a typical cache object, where Shoal's smaller per-key overhead keeps more keys
//! in the same memory and must show as a higher hit ratio; and 800 bytes, where per-key overhead hardly
//! matters and the comparison is of the eviction choices alone (both approximate LRU from a sampled pool at
//! one-second clock resolution), so there Shoal must be within a point of Redis.

use shoal_tests::{encode_command, info_field, RedisServer, ShoalServer, TestServer};

/// 8 MB against ~55 MB (small values) or ~80 MB (large values) of data.
const MAXMEMORY: &str = "8mb";
const MAXMEMORY_BYTES: u64 = 8 * 1024 * 1024;
const WARMUP_OPS: usize = 60_000;
const MEASURED_OPS: usize = 200_000;
const BATCH: usize = 200;
const ZIPF_S: f64 = 1.0;

/// A small deterministic generator, so both servers see exactly the same request sequence.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf sampling over 0..n by inverting a precomputed CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf = Vec::with_capacity(n);
        for k in 1..=n {
            acc += 1.0 / (k as f64).powf(s);
            cdf.push(acc);
        }
        let total = acc;
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut XorShift) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

struct Outcome {
    hit_ratio: f64,
    max_used: u64,
    over_limit_samples: usize,
    evicted: u64,
}

/// Runs the read-through workload: GET each key; on a miss, SET it. Pipelined in batches.
fn run(server: &TestServer, zipf: &Zipf, value_size: usize, seed: u64) -> Outcome {
    let mut conn = server.raw();
    let mut probe = server.raw();
    let mut rng = XorShift(seed);
    let value = vec![b'x'; value_size];
    let (mut hits, mut gets) = (0u64, 0u64);
    let (mut max_used, mut over) = (0u64, 0usize);
    let total = WARMUP_OPS + MEASURED_OPS;
    let mut done = 0;
    let mut batch_no = 0;
    while done < total {
        let keys: Vec<String> = (0..BATCH).map(|_| format!("key:{}", zipf.sample(&mut rng))).collect();
        let mut buf = Vec::new();
        for k in &keys {
            buf.extend_from_slice(&encode_command(&[b"GET".as_slice(), k.as_bytes()]));
        }
        conn.send(&buf).expect("send GETs");
        let mut misses = Vec::new();
        for k in &keys {
            let r = conn.read_reply().expect("GET reply");
            let hit = !r.starts_with(b"$-1");
            if done >= WARMUP_OPS {
                gets += 1;
                hits += hit as u64;
            }
            if !hit {
                misses.push(k);
            }
            done += 1;
        }
        let mut buf = Vec::new();
        for k in &misses {
            buf.extend_from_slice(&encode_command(&[b"SET".as_slice(), k.as_bytes(), &value]));
        }
        if !buf.is_empty() {
            conn.send(&buf).expect("send SETs");
            for _ in &misses {
                let r = conn.read_reply().expect("SET reply");
                assert_eq!(
                    r,
                    b"+OK\r\n",
                    "{}: SET refused: {}",
                    server.name,
                    String::from_utf8_lossy(&r)
                );
            }
        }
        batch_no += 1;
        if batch_no % 10 == 0 {
            let used = info_field(&mut probe, "memory", "used_memory");
            max_used = max_used.max(used);
            over += (used > MAXMEMORY_BYTES) as usize;
        }
    }
    Outcome {
        hit_ratio: hits as f64 / gets as f64,
        max_used,
        over_limit_samples: over,
        evicted: info_field(&mut probe, "stats", "evicted_keys"),
    }
}

/// Runs the workload on both servers and checks Shoal's side; returns (redis, shoal) hit ratios.
fn compare(keys: usize, value_size: usize) -> (f64, f64) {
    let args = ["--maxmemory", MAXMEMORY, "--maxmemory-policy", "allkeys-lru"];
    let zipf = Zipf::new(keys, ZIPF_S);
    let redis = RedisServer::start(&args);
    let shoal = ShoalServer::start(&args);
    let r = run(&redis, &zipf, value_size, 0x5EED_1234_ABCD);
    let s = run(&shoal, &zipf, value_size, 0x5EED_1234_ABCD);
    eprintln!(
        "allkeys-lru, maxmemory {MAXMEMORY}, {keys} keys x {value_size} B, zipf s={ZIPF_S}, {MEASURED_OPS} measured GETs:\n  \
         redis-server: hit ratio {:.4}, max used_memory {}, samples over limit {}, evicted {}\n  \
         shoal-server: hit ratio {:.4}, max used_memory {}, samples over limit {}, evicted {}",
        r.hit_ratio, r.max_used, r.over_limit_samples, r.evicted, s.hit_ratio, s.max_used, s.over_limit_samples, s.evicted
    );
    assert!(s.evicted > 0, "the workload must actually evict");
    assert_eq!(
        s.over_limit_samples, 0,
        "used_memory went over maxmemory (max {})",
        s.max_used
    );
    (r.hit_ratio, s.hit_ratio)
}

#[test]
fn allkeys_lru_small_values_hit_at_least_as_often_as_redis() {
    let (redis, shoal) = compare(500_000, 100);
    assert!(shoal >= redis, "hit ratio {shoal:.4} below redis-server's {redis:.4}");
}

#[test]
fn allkeys_lru_large_values_choose_victims_as_well_as_redis() {
    let (redis, shoal) = compare(100_000, 800);
    assert!(
        shoal >= redis - 0.01,
        "hit ratio {shoal:.4} more than a point below redis-server's {redis:.4}"
    );
}

#[test]
fn noeviction_refuses_writes_but_serves_reads_and_deletes() {
    let shoal = ShoalServer::start(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let mut c = shoal.raw();
    let value = "v".repeat(1000);
    let mut refused_at = None;
    for i in 0..10_000 {
        let r = c.cmd(&["SET", &format!("k{i}"), &value]);
        if r != b"+OK\r\n" {
            assert_eq!(r, b"-OOM command not allowed when used memory > 'maxmemory'.\r\n");
            refused_at = Some(i);
            break;
        }
    }
    let refused_at = refused_at.expect("writes are refused once memory is full");
    assert!(refused_at > 100, "refused too early, at {refused_at}");
    assert_eq!(
        c.cmd(&["GET", "k0"]),
        format!("${}\r\n{value}\r\n", value.len()).into_bytes()
    );
    assert_eq!(
        c.cmd(&["INCR", "counter"]),
        b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    );
    assert_eq!(c.cmd(&["DEL", "k0", "k1", "k2"]), b":3\r\n");
    assert_eq!(c.cmd(&["EXISTS", "k0"]), b":0\r\n");
}
