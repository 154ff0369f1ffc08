//! Eviction: keeping used memory under `maxmemory` by deleting the keys least worth keeping.
//!
//! Exact LRU would need a list threaded through every key (16 bytes a key); like Redis, Shoal approximates it.
//! For the LRU, LFU and TTL policies each round samples `maxmemory-samples` keys from every database (from
//! the keys with a TTL only, for the volatile policies) and merges them into a pool of the
//! [`POOL_SIZE`] best candidates seen so far — idlest, least frequently used, or soonest to expire — which
//! carries over between rounds and calls, so the quality of the choice grows with the number of rounds. The
//! best candidate still present is deleted. The random policies delete a random key of each database in turn.
//!
//! Freed memory is counted with the allocator's size class of each deleted entry; the caller rechecks the
//! allocator's total afterwards. A call stops at a time budget derived from `maxmemory-eviction-tenacity`
//! (Redis's `evictionTimeLimitUs`), so one write never stalls for long; what is left is done by the next
//! write or by the background cron.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::access::Now;
use super::db::{Key, Keyspace};
use super::SHARDS;

/// Candidates kept between rounds (Redis's EVPOOL_SIZE).
pub const POOL_SIZE: usize = 16;

/// The eviction policies of `maxmemory-policy`, as far as eviction itself cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victims {
    /// noeviction: writes fail with OOM instead.
    None,
    /// By score over all keys or only keys with a TTL.
    Scored {
        volatile_only: bool,
        by_ttl: bool,
    },
    Random {
        volatile_only: bool,
    },
}

/// Why eviction could not get under the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictError {
    /// noeviction, or nothing left that the policy may evict.
    NothingToEvict,
}

#[derive(Debug, Clone)]
struct Candidate {
    score: u64,
    db: usize,
    key: Vec<u8>,
}

/// The candidate pool and the random-policy cursor, shared by every connection.
#[derive(Default)]
pub struct Evictor {
    pool: Mutex<Vec<Candidate>>,
    next_db: Mutex<usize>,
}

/// Time budget of one eviction call for `maxmemory-eviction-tenacity` (0..=100), as Redis computes it:
/// 50 us per unit up to 10, then growing by 15% per unit, and unlimited at 100.
pub fn time_limit(tenacity: u32) -> Option<Duration> {
    match tenacity {
        0..=10 => Some(Duration::from_micros(50 * tenacity.max(1) as u64)),
        11..=99 => Some(Duration::from_micros(
            (500.0 * 1.15f64.powi(tenacity as i32 - 10)) as u64,
        )),
        _ => None,
    }
}

impl Evictor {
    pub fn new() -> Evictor {
        Evictor::default()
    }

    /// Evicts keys until at least `to_free` bytes were released or the time budget ran out.
    /// Returns the bytes freed and the keys evicted.
    pub fn evict(
        &self,
        ks: &Keyspace,
        victims: Victims,
        samples: usize,
        to_free: u64,
        now: &Now,
        budget: Option<Duration>,
    ) -> Result<(u64, u64), EvictError> {
        let started = Instant::now();
        let mut freed = 0u64;
        let mut keys = 0u64;
        while freed < to_free {
            let got = match victims {
                Victims::None => return Err(EvictError::NothingToEvict),
                Victims::Scored { volatile_only, by_ttl } => {
                    self.evict_scored(ks, volatile_only, by_ttl, samples.max(1), now)
                }
                Victims::Random { volatile_only } => self.evict_random(ks, volatile_only),
            };
            match got {
                Some(bytes) => {
                    freed += bytes;
                    keys += 1;
                }
                None if keys == 0 => return Err(EvictError::NothingToEvict),
                None => break,
            }
            // Check the clock every 16 keys, like Redis.
            if keys.is_multiple_of(16) && budget.is_some_and(|b| started.elapsed() >= b) {
                break;
            }
        }
        Ok((freed, keys))
    }

    fn evict_scored(&self, ks: &Keyspace, volatile_only: bool, by_ttl: bool, samples: usize, now: &Now) -> Option<u64> {
        let mut pool = self.pool.lock();
        // A bounded number of rounds: each round refills the pool; a candidate may have vanished meanwhile.
        for _ in 0..16 {
            let mut any_keys = false;
            for (dbi, db) in ks.iter().enumerate() {
                for _ in 0..samples {
                    let shard = rand::random::<u32>() as usize % SHARDS;
                    let g = db.lock_shard(shard);
                    let Some((local, pos)) = g.sample(rand::random(), volatile_only) else {
                        any_keys |= if volatile_only {
                            g.volatile_len() > 0
                        } else {
                            !g.is_empty()
                        };
                        continue;
                    };
                    any_keys = true;
                    let e = g.local_table(local).get(pos);
                    let score = now.eviction_score(e, by_ttl);
                    insert_candidate(
                        &mut pool,
                        Candidate {
                            score,
                            db: dbi,
                            key: e.key().to_vec(),
                        },
                    );
                }
                if !any_keys && db_has_victims(db, volatile_only) {
                    any_keys = true;
                }
            }
            if !any_keys && pool.is_empty() {
                return None;
            }
            // Best candidates sit at the end.
            while let Some(c) = pool.pop() {
                let key = Key::new(&c.key);
                let db = ks.db(c.db);
                let mut g = db.lock(&key);
                if let Some(pos) = g.find(&key, now) {
                    if volatile_only && !g.entry(&key, pos).has_expire() {
                        continue;
                    }
                    let e = g.remove(&key, pos);
                    g.stats.evicted += 1;
                    return Some(e.allocated_size() as u64);
                }
            }
            if !any_keys {
                return None;
            }
        }
        None
    }

    fn evict_random(&self, ks: &Keyspace, volatile_only: bool) -> Option<u64> {
        let dbs = ks.databases();
        let mut next = self.next_db.lock();
        for k in 0..dbs {
            let dbi = (*next + k) % dbs;
            let db = ks.db(dbi);
            let start = rand::random::<u32>() as usize % SHARDS;
            for s in 0..SHARDS {
                let mut g = db.lock_shard((start + s) % SHARDS);
                if let Some((local, pos)) = g.sample(rand::random(), volatile_only) {
                    let e = g.remove_local(local, pos);
                    g.stats.evicted += 1;
                    *next = (dbi + 1) % dbs;
                    return Some(e.allocated_size() as u64);
                }
            }
        }
        None
    }

    /// Forgets pooled candidates (FLUSHALL, SWAPDB: the names may now point at other data).
    pub fn clear(&self) {
        self.pool.lock().clear();
    }
}

fn db_has_victims(db: &super::Db, volatile_only: bool) -> bool {
    let (keys, volatile) = db.counts();
    if volatile_only {
        volatile > 0
    } else {
        keys > 0
    }
}

/// Keeps the pool sorted by ascending score with at most POOL_SIZE entries and no duplicate keys.
fn insert_candidate(pool: &mut Vec<Candidate>, c: Candidate) {
    if let Some(i) = pool.iter().position(|p| p.db == c.db && p.key == c.key) {
        pool.remove(i);
    }
    if pool.len() == POOL_SIZE {
        if pool.first().is_some_and(|p| p.score >= c.score) {
            return;
        }
        pool.remove(0);
    }
    let at = pool.partition_point(|p| p.score <= c.score);
    pool.insert(at, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{AccessMode, Entry};

    fn fill(ks: &Keyspace, n: usize, now: &Now, idle_for: impl Fn(usize) -> i64, ttl: impl Fn(usize) -> Option<i64>) {
        for i in 0..n {
            let k = format!("k{i}");
            let key = Key::new(k.as_bytes());
            let at = Now::new(now.ms - idle_for(i), now.mode);
            ks.db(0)
                .lock(&key)
                .insert(&key, Entry::new_str(k.as_bytes(), b"v", ttl(i), at.initial_access()));
        }
    }

    #[test]
    fn lru_prefers_idle_keys() {
        let ks = Keyspace::new(1);
        let now = Now::new(10_000_000_000, AccessMode::Lru);
        // Keys 0..1000 idle for an hour, the rest just used.
        fill(&ks, 10_000, &now, |i| if i < 1000 { 3_600_000 } else { 0 }, |_| None);
        let ev = Evictor::new();
        let victims = Victims::Scored {
            volatile_only: false,
            by_ttl: false,
        };
        let mut idle_evicted = 0;
        for _ in 0..500 {
            ev.evict(&ks, victims, 10, 1, &now, None).unwrap();
        }
        for i in 0..1000 {
            let k = format!("k{i}");
            let key = Key::new(k.as_bytes());
            if ks.db(0).lock(&key).find(&key, &now).is_none() {
                idle_evicted += 1;
            }
        }
        // 500 evictions sampling 10 keys each: random choice would take ~50 idle keys; the pool should take
        // most of its victims from the idle tenth.
        assert!(
            idle_evicted > 350,
            "only {idle_evicted} of 500 evictions took idle keys"
        );
    }

    #[test]
    fn volatile_policies_never_touch_persistent_keys() {
        let ks = Keyspace::new(1);
        let now = Now::new(10_000_000, AccessMode::Lru);
        fill(
            &ks,
            1000,
            &now,
            |_| 0,
            |i| (i % 10 == 0).then_some(now.ms + 1000 * i as i64),
        );
        let ev = Evictor::new();
        for v in [
            Victims::Scored {
                volatile_only: true,
                by_ttl: true,
            },
            Victims::Random { volatile_only: true },
        ] {
            let _ = ev.evict(&ks, v, 5, 1, &now, None);
        }
        let mut rest = 0;
        while ev
            .evict(&ks, Victims::Random { volatile_only: true }, 5, 1, &now, None)
            .is_ok()
        {
            rest += 1;
            assert!(rest <= 100);
        }
        assert_eq!(ks.db(0).counts(), (900, 0));
    }

    #[test]
    fn noeviction_reports_failure() {
        let ks = Keyspace::new(1);
        let now = Now::new(0, AccessMode::Lru);
        fill(&ks, 10, &now, |_| 0, |_| None);
        assert_eq!(
            Evictor::new().evict(&ks, Victims::None, 5, 1, &now, None),
            Err(EvictError::NothingToEvict)
        );
    }

    #[test]
    fn tenacity_budget_matches_redis() {
        assert_eq!(time_limit(10), Some(Duration::from_micros(500)));
        assert_eq!(time_limit(1), Some(Duration::from_micros(50)));
        assert_eq!(time_limit(100), None);
    }
}
