//! Memory accounting from the allocator's own statistics.
//!
//! Shoal runs on jemalloc (as Redis does). `used_memory` is the running count of the size classes jemalloc
//! handed out (see `alloc.rs`: one atomic load to read, so eviction can check it before every write);
//! `allocator_*` are jemalloc's own totals, which need an epoch advance (about 5 µs) and are read only for INFO
//! and the peak; `used_memory_rss` is the resident set from /proc.

use std::sync::atomic::{AtomicU64, Ordering};

use tikv_jemalloc_ctl::{epoch, stats};

/// The peak of used memory, sampled by the cron thread and INFO.
#[derive(Default)]
pub struct MemoryMeter {
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
        MemoryMeter::default()
    }

    /// Bytes allocated now.
    #[inline]
    pub fn used(&self) -> u64 {
        crate::alloc::used_bytes()
    }

    /// Records the current figure for the peak and returns it.
    pub fn sample(&self) -> u64 {
        let used = self.used();
        self.peak.fetch_max(used, Ordering::Relaxed);
        used
    }

    /// The highest `used_memory` seen (INFO `used_memory_peak`).
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn reset_peak(&self) {
        self.peak.store(self.used(), Ordering::Relaxed);
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
