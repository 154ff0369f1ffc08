//! Server statistics: per-command call counts and times, error counts, and the INFO stats counters.
//!
//! Counters are kept per worker thread and written only by their thread (a relaxed load and store, no locked
//! instruction, no cache line shared between cores); INFO sums the threads. CONFIG RESETSTAT cannot write
//! another thread's counters safely, so it records the current sums as a baseline that INFO subtracts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// One command's counters in one thread.
#[derive(Default)]
pub struct CmdCounters {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
}

/// Counters owned by one thread.
pub struct ThreadStats {
    pub commands: Box<[CmdCounters]>,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    /// Error replies by code (`ERR`, `WRONGTYPE`, ...). Errors are rare; a lock is fine.
    pub errors: Mutex<HashMap<String, u64>>,
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    // Only the owning thread writes, so load+store cannot lose updates and needs no lock prefix.
    c.store(c.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

impl ThreadStats {
    fn new(ncommands: usize) -> ThreadStats {
        ThreadStats {
            commands: (0..ncommands).map(|_| CmdCounters::default()).collect(),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            errors: Mutex::new(HashMap::new()),
        }
    }

    #[inline]
    pub fn call(&self, cmd: usize, usec: u64) {
        if let Some(c) = self.commands.get(cmd) {
            bump(&c.calls, 1);
            bump(&c.usec, usec);
        }
    }

    #[inline]
    pub fn failed(&self, cmd: usize) {
        if let Some(c) = self.commands.get(cmd) {
            bump(&c.failed, 1);
        }
    }

    #[inline]
    pub fn rejected(&self, cmd: usize) {
        if let Some(c) = self.commands.get(cmd) {
            bump(&c.rejected, 1);
        }
    }

    pub fn error(&self, code: &str) {
        *self.errors.lock().entry(code.to_string()).or_insert(0) += 1;
    }

    #[inline]
    pub fn net_in(&self, n: u64) {
        bump(&self.net_input_bytes, n);
    }

    #[inline]
    pub fn net_out(&self, n: u64) {
        bump(&self.net_output_bytes, n);
    }
}

/// Sums over threads.
#[derive(Debug, Default, Clone)]
pub struct StatsSnapshot {
    /// Per command id: calls, usec, rejected, failed.
    pub commands: Vec<[u64; 4]>,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub errors: HashMap<String, u64>,
}

impl StatsSnapshot {
    pub fn total_commands(&self) -> u64 {
        self.commands.iter().map(|c| c[0]).sum()
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The registry of every thread's counters, plus the RESETSTAT baseline.
pub struct Stats {
    ncommands: usize,
    threads: Mutex<Vec<Arc<ThreadStats>>>,
    baseline: Mutex<StatsSnapshot>,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub expired_stale_perc: AtomicU64,
}

thread_local! {
    static LOCAL: std::cell::RefCell<Option<(usize, Arc<ThreadStats>)>> = const { std::cell::RefCell::new(None) };
}

impl Stats {
    pub fn new(ncommands: usize) -> Stats {
        Stats {
            ncommands,
            threads: Mutex::new(Vec::new()),
            baseline: Mutex::new(StatsSnapshot::default()),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            expired_stale_perc: AtomicU64::new(0),
        }
    }

    /// This thread's counters, registered on first use. `self` is identified by address so that tests with
    /// several servers in one process keep separate counters.
    pub fn local(&self) -> Arc<ThreadStats> {
        let me = self as *const Stats as usize;
        LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            if let Some((owner, s)) = l.as_ref() {
                if *owner == me {
                    return s.clone();
                }
            }
            let s = Arc::new(ThreadStats::new(self.ncommands));
            self.threads.lock().push(s.clone());
            *l = Some((me, s.clone()));
            s
        })
    }

    fn raw_snapshot(&self) -> StatsSnapshot {
        let mut snap = StatsSnapshot {
            commands: vec![[0; 4]; self.ncommands],
            ..Default::default()
        };
        for t in self.threads.lock().iter() {
            for (i, c) in t.commands.iter().enumerate() {
                let s = &mut snap.commands[i];
                s[0] += c.calls.load(Ordering::Relaxed);
                s[1] += c.usec.load(Ordering::Relaxed);
                s[2] += c.rejected.load(Ordering::Relaxed);
                s[3] += c.failed.load(Ordering::Relaxed);
            }
            snap.net_input_bytes += t.net_input_bytes.load(Ordering::Relaxed);
            snap.net_output_bytes += t.net_output_bytes.load(Ordering::Relaxed);
            for (k, v) in t.errors.lock().iter() {
                *snap.errors.entry(k.clone()).or_insert(0) += v;
            }
        }
        snap
    }

    /// Current totals since start or the last RESETSTAT.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut snap = self.raw_snapshot();
        let base = self.baseline.lock();
        for (s, b) in snap.commands.iter_mut().zip(base.commands.iter()) {
            for k in 0..4 {
                s[k] = s[k].saturating_sub(b[k]);
            }
        }
        snap.net_input_bytes = snap.net_input_bytes.saturating_sub(base.net_input_bytes);
        snap.net_output_bytes = snap.net_output_bytes.saturating_sub(base.net_output_bytes);
        for (k, v) in snap.errors.iter_mut() {
            *v = v.saturating_sub(base.errors.get(k).copied().unwrap_or(0));
        }
        snap.errors.retain(|_, v| *v > 0);
        snap
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        let raw = self.raw_snapshot();
        *self.baseline.lock() = raw;
        self.connections_received.store(0, Ordering::Relaxed);
        self.rejected_connections.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_is_a_baseline() {
        let stats = Stats::new(3);
        let l = stats.local();
        l.call(1, 10);
        l.call(1, 5);
        l.error("ERR");
        let s = stats.snapshot();
        assert_eq!(s.commands[1], [2, 15, 0, 0]);
        assert_eq!(s.errors.get("ERR"), Some(&1));
        stats.reset();
        assert_eq!(stats.snapshot().total_commands(), 0);
        assert!(stats.snapshot().errors.is_empty());
        l.call(1, 1);
        assert_eq!(stats.snapshot().commands[1][0], 1);
    }

    #[test]
    fn threads_are_summed() {
        let stats = Arc::new(Stats::new(1));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let st = stats.clone();
                std::thread::spawn(move || {
                    let l = st.local();
                    for _ in 0..1000 {
                        l.call(0, 1);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(stats.snapshot().commands[0][0], 4000);
    }
}
