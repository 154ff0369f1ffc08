//! Active expiry: finding and deleting expired keys that nobody reads again.
//!
//! Lazy expiry (a lookup that meets an expired key deletes it) is not enough on its own: keys written once with
//! a TTL and never read would hold memory forever. Redis samples its `expires` dict from a cron at `hz` times a
//! second, keeps going while more than a tenth of a sample was expired, and stops at a CPU budget. Shoal does
//! the same with one difference in how keys are picked: instead of random sampling, each shard keeps a sweep
//! cursor over its slot tables and examines the next keys that carry a TTL (the table's VOLATILE bits say which
//! without reading the others). A sweep reaches every key with a TTL in bounded time, where random sampling
//! leaves a tail of stragglers.
//!
//! Budgets, as Redis 7 derives them from `active-expire-effort` (1..10, `effort` below is that minus one):
//! * keys examined per step: `KEYS_PER_LOOP + KEYS_PER_LOOP/4 * effort`;
//! * a shard is revisited while a step found more than `ACCEPTABLE_STALE_PERC - effort` percent expired;
//! * a cycle may use `SLOW_TIME_PERC + 2*effort` percent of its period (1000/hz ms); when it hits that limit the
//!   next cycle starts after a pause three times as long as the work, so expiry never takes more than a quarter
//!   of a core, however many keys expire at once.
//!
//! The shard lock is held for one step at a time, so clients wait at most one step behind the sweep.

use std::time::{Duration, Instant};

use super::access::Now;
use super::db::{Db, Keyspace};
use super::table::Pos;
use super::SHARDS;

/// Keys examined per step at effort 1 (Redis's ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP).
pub const KEYS_PER_LOOP: usize = 20;
/// Percent of a step that may be expired before the shard is left for later (ACTIVE_EXPIRE_CYCLE_ACCEPTABLE_STALE).
pub const ACCEPTABLE_STALE_PERC: usize = 10;
/// Percent of the cycle period the slow cycle may use (ACTIVE_EXPIRE_CYCLE_SLOW_TIME_PERC).
pub const SLOW_TIME_PERC: u64 = 25;

/// What one cycle did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CycleReport {
    pub examined: usize,
    pub expired: usize,
    /// The cycle stopped at its time budget with expired keys still being found.
    pub hit_time_limit: bool,
    pub elapsed: Duration,
}

/// The budgets of one cycle.
#[derive(Debug, Clone, Copy)]
pub struct CycleBudget {
    pub keys_per_step: usize,
    pub acceptable_stale_perc: usize,
    pub time_limit: Duration,
}

impl CycleBudget {
    /// Budgets for `active-expire-effort` (1..=10) at `hz` cycles per second.
    pub fn new(effort: u32, hz: u32) -> CycleBudget {
        let effort = effort.clamp(1, 10) as usize - 1;
        let period_us = 1_000_000 / hz.clamp(1, 500) as u64;
        CycleBudget {
            keys_per_step: KEYS_PER_LOOP + KEYS_PER_LOOP / 4 * effort,
            acceptable_stale_perc: ACCEPTABLE_STALE_PERC - effort,
            time_limit: Duration::from_micros(period_us * (SLOW_TIME_PERC + 2 * effort as u64) / 100),
        }
    }
}

/// Runs one active expiry cycle over every database.
pub fn run_cycle(ks: &Keyspace, now: &Now, budget: &CycleBudget) -> CycleReport {
    let started = Instant::now();
    let mut report = CycleReport::default();
    'dbs: for db in ks.iter() {
        for shard in 0..SHARDS {
            loop {
                let (examined, expired) = sweep_step(db, shard, now, budget.keys_per_step);
                report.examined += examined;
                report.expired += expired;
                if examined == 0 || expired * 100 <= examined * budget.acceptable_stale_perc {
                    break;
                }
                if started.elapsed() >= budget.time_limit {
                    report.hit_time_limit = true;
                    break 'dbs;
                }
            }
            // Check the clock every shard, not every key: a step is at most `keys_per_step` keys.
            if started.elapsed() >= budget.time_limit {
                report.hit_time_limit = true;
                break 'dbs;
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// Examines up to `max` keys with a TTL in one shard, from its sweep cursor on, deleting the expired ones.
/// Returns (examined, expired).
fn sweep_step(db: &Db, shard: usize, now: &Now, max: usize) -> (usize, usize) {
    let mut g = db.lock_shard(shard);
    if g.volatile_len() == 0 || !g.lazy_expire_deletes {
        return (0, 0);
    }
    let (mut local, mut i) = g.expire_cursor;
    let mut examined = 0;
    let mut expired = 0;
    let mut tables_seen = 0;
    let tables = g.tables().len();
    if tables == 0 {
        return (0, 0);
    }
    while examined < max && tables_seen <= tables {
        let table = g.local_table(local);
        if table.volatile_len() == 0 || i >= table.capacity() {
            local = (local + 1) % tables;
            i = 0;
            tables_seen += 1;
            continue;
        }
        if !table.is_volatile_at(i) {
            i += 1;
            continue;
        }
        examined += 1;
        let at = table.get(Pos(i)).expire_at();
        if at.is_some_and(|at| at <= now.ms) {
            // Backward-shift deletion moves the next key into position i: look at i again.
            drop(g.remove_local(local, Pos(i)));
            g.stats.expired += 1;
            expired += 1;
        } else {
            i += 1;
        }
    }
    g.expire_cursor = (local, i);
    (examined, expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{AccessMode, Entry, Key};

    #[test]
    fn a_cycle_deletes_expired_keys_nobody_reads() {
        let ks = Keyspace::new(1);
        let now = Now::new(1_000_000, AccessMode::Lru);
        for i in 0..50_000 {
            let k = format!("k{i}");
            let key = Key::new(k.as_bytes());
            let exp = if i % 2 == 0 { now.ms - 1 } else { now.ms + 60_000 };
            ks.db(0)
                .lock(&key)
                .insert(&key, Entry::new_str(k.as_bytes(), b"v", Some(exp), 0));
        }
        let budget = CycleBudget {
            keys_per_step: 20,
            acceptable_stale_perc: 10,
            time_limit: Duration::from_secs(5),
        };
        let mut total = 0;
        for _ in 0..100 {
            total += run_cycle(&ks, &now, &budget).expired;
            if total == 25_000 {
                break;
            }
        }
        assert_eq!(total, 25_000);
        assert_eq!(ks.db(0).counts(), (25_000, 25_000));
        assert_eq!(ks.db(0).stats().expired, 25_000);
    }

    #[test]
    fn keys_without_ttl_are_never_examined() {
        let ks = Keyspace::new(1);
        let now = Now::new(1_000_000, AccessMode::Lru);
        for i in 0..1000 {
            let k = format!("k{i}");
            let key = Key::new(k.as_bytes());
            ks.db(0)
                .lock(&key)
                .insert(&key, Entry::new_str(k.as_bytes(), b"v", None, 0));
        }
        let r = run_cycle(&ks, &now, &CycleBudget::new(1, 10));
        assert_eq!((r.examined, r.expired), (0, 0));
    }

    #[test]
    fn budgets_follow_effort() {
        let b1 = CycleBudget::new(1, 10);
        assert_eq!((b1.keys_per_step, b1.acceptable_stale_perc), (20, 10));
        assert_eq!(b1.time_limit, Duration::from_millis(25));
        let b10 = CycleBudget::new(10, 10);
        assert_eq!((b10.keys_per_step, b10.acceptable_stale_perc), (65, 1));
        assert_eq!(b10.time_limit, Duration::from_millis(43));
    }
}
