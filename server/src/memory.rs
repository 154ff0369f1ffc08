//! Memory accounting from the allocator's own statistics.
//!
//! Shoal runs on jemalloc (as Redis does) and reports what jemalloc says: `used_memory` is `stats.allocated`
//! (bytes in live allocations, by size class), `used_memory_rss` is the resident set from /proc. Reading
//! jemalloc's totals requires advancing its stats epoch, which merges per-arena counters; that is cheap but not
//! free, so [`MemoryMeter::used`] refreshes at most once per millisecond of command time and serves the cached
//! figure in between. Eviction subtracts what it frees from the cached figure as it goes, so a burst of
//! commands within one millisecond does not evict twice for the same overshoot.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tikv_jemalloc_ctl::{epoch, stats};

/// Cached allocator totals.
#[derive(Default)]
pub struct MemoryMeter {
    used: AtomicU64,
    refreshed_at_ms: AtomicI64,
    peak: AtomicU64,
}

/// A snapshot of allocator statistics for INFO memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllocatorStats {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub mapped: u64,
    pub retained: u64,
}

impl MemoryMeter {
    pub fn new() -> MemoryMeter {
        let m = MemoryMeter::default();
        m.refresh();
        m
    }

    /// Bytes allocated, at most a millisecond old (`now_ms` is the caller's command time).
    #[inline]
    pub fn used(&self, now_ms: i64) -> u64 {
        let last = self.refreshed_at_ms.load(Ordering::Relaxed);
        if last != now_ms
            && self
                .refreshed_at_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return self.refresh();
        }
        self.used.load(Ordering::Relaxed)
    }

    /// Reads the allocator's totals now.
    pub fn refresh(&self) -> u64 {
        let allocated = allocator_stats().allocated;
        self.used.store(allocated, Ordering::Relaxed);
        self.peak.fetch_max(allocated, Ordering::Relaxed);
        allocated
    }

    /// Lowers the cached figure by what eviction just freed.
    pub fn note_freed(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(bytes)));
    }

    /// The highest `used_memory` seen (INFO `used_memory_peak`).
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn reset_peak(&self) {
        self.peak.store(self.used.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Fresh allocator statistics (advances jemalloc's epoch).
pub fn allocator_stats() -> AllocatorStats {
    if epoch::advance().is_err() {
        return AllocatorStats::default();
    }
    AllocatorStats {
        allocated: stats::allocated::read().unwrap_or(0) as u64,
        active: stats::active::read().unwrap_or(0) as u64,
        resident: stats::resident::read().unwrap_or(0) as u64,
        mapped: stats::mapped::read().unwrap_or(0) as u64,
        retained: stats::retained::read().unwrap_or(0) as u64,
    }
}

/// Resident set size of this process, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(4096) as u64
}

/// Redis's `bytesToHuman`: B, K, M, G, T, P with two decimals.
pub fn bytes_to_human(n: u64) -> String {
    let d = n as f64;
    const UNITS: [(f64, &str); 5] = [
        (1024.0, "K"),
        (1024.0 * 1024.0, "M"),
        (1024.0 * 1024.0 * 1024.0, "G"),
        (1024.0 * 1024.0 * 1024.0 * 1024.0, "T"),
        (1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0, "P"),
    ];
    if n < 1024 {
        return format!("{n}B");
    }
    for (i, (scale, unit)) in UNITS.iter().enumerate() {
        let next = UNITS.get(i + 1).map(|u| u.0).unwrap_or(f64::INFINITY);
        if d < next {
            return format!("{:.2}{unit}", d / scale);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_match_redis() {
        assert_eq!(bytes_to_human(1023), "1023B");
        assert_eq!(bytes_to_human(1024), "1.00K");
        assert_eq!(bytes_to_human(1_500_000), "1.43M");
        assert_eq!(bytes_to_human(3 * 1024 * 1024 * 1024), "3.00G");
    }

    #[test]
    fn rss_is_reported() {
        assert!(rss_bytes() > 0);
    }
}
