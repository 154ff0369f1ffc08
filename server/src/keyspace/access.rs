//! The per-key access field: an LRU clock or an LFU counter, exactly as Redis keeps `robj.lru`.
//!
//! * LRU: seconds since the epoch, modulo 2^24 (`LRU_CLOCK_RESOLUTION` = 1000 ms). Idle time is the distance
//!   to the current clock, wrapping.
//! * LFU: the high 16 bits hold the last decrement time in minutes (mod 2^16), the low 8 bits a logarithmic
//!   access counter: incremented with probability `1 / ((counter - LFU_INIT_VAL) * lfu-log-factor + 1)` and
//!   decremented by one per `lfu-decay-time` minutes of idleness. New keys start at `LFU_INIT_VAL` so they are
//!   not evicted before they had a chance to be used.
//!
//! Which interpretation applies depends on the eviction policy in force at the time, as in Redis: after a
//! policy switch the old values read as noise until keys are touched again.

use super::entry::Entry;

pub const LRU_CLOCK_MAX: u32 = (1 << 24) - 1;
/// Milliseconds per LRU clock tick.
pub const LRU_CLOCK_RESOLUTION_MS: i64 = 1000;
pub const LFU_INIT_VAL: u32 = 5;

/// How the access field is maintained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    Lru,
    Lfu { log_factor: u32, decay_time_min: u32 },
}

/// The time as one command sees it: taken once per read batch so that every command of a pipeline agrees on
/// which keys have expired (Redis 7's command time snapshot), and so the clock is read once, not per key.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Unix time in milliseconds.
    pub ms: i64,
    pub mode: AccessMode,
}

impl Now {
    pub fn new(ms: i64, mode: AccessMode) -> Now {
        Now { ms, mode }
    }

    /// The wall clock now, with the given access mode.
    pub fn wall(mode: AccessMode) -> Now {
        Now { ms: unix_ms(), mode }
    }

    #[inline]
    pub fn lru_clock(&self) -> u32 {
        ((self.ms / LRU_CLOCK_RESOLUTION_MS) as u32) & LRU_CLOCK_MAX
    }

    #[inline]
    fn lfu_minutes(&self) -> u32 {
        ((self.ms / 60_000) as u32) & 0xFFFF
    }

    /// The access field of a key created now.
    #[inline]
    pub fn initial_access(&self) -> u32 {
        match self.mode {
            AccessMode::Lru => self.lru_clock(),
            AccessMode::Lfu { .. } => (self.lfu_minutes() << 8) | LFU_INIT_VAL,
        }
    }

    /// Records an access to `e`.
    #[inline]
    pub fn touch(&self, e: &mut Entry) {
        match self.mode {
            AccessMode::Lru => e.set_access(self.lru_clock()),
            AccessMode::Lfu {
                log_factor,
                decay_time_min,
            } => {
                let counter = self.lfu_decayed(e.access(), decay_time_min);
                let counter = lfu_log_incr(counter, log_factor);
                e.set_access((self.lfu_minutes() << 8) | counter);
            }
        }
    }

    /// Milliseconds since the last access, under LRU.
    pub fn idle_ms(&self, access: u32) -> i64 {
        let now = self.lru_clock();
        let ticks = if now >= access {
            now - access
        } else {
            now + (LRU_CLOCK_MAX - access)
        };
        ticks as i64 * LRU_CLOCK_RESOLUTION_MS
    }

    /// The LFU counter after applying the decay owed since the last decrement (OBJECT FREQ).
    pub fn lfu_decayed(&self, access: u32, decay_time_min: u32) -> u32 {
        let ldt = access >> 8;
        let counter = access & 0xFF;
        let now = self.lfu_minutes();
        let elapsed = if now >= ldt { now - ldt } else { 65535 - ldt + now };
        let periods = elapsed.checked_div(decay_time_min).unwrap_or(0);
        counter.saturating_sub(periods)
    }

    /// The eviction score of an entry: higher means a better candidate (Redis's `idle` in evictionPoolPopulate).
    pub fn eviction_score(&self, e: &Entry, by_ttl: bool) -> u64 {
        if by_ttl {
            // Sooner expiry, better candidate.
            return u64::MAX - e.expire_at().unwrap_or(i64::MAX).max(0) as u64;
        }
        match self.mode {
            AccessMode::Lru => self.idle_ms(e.access()) as u64,
            AccessMode::Lfu { decay_time_min, .. } => 255 - self.lfu_decayed(e.access(), decay_time_min) as u64,
        }
    }
}

/// Redis's `LFULogIncr`.
fn lfu_log_incr(counter: u32, log_factor: u32) -> u32 {
    if counter >= 255 {
        return 255;
    }
    let r: f64 = rand::random();
    let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
    let p = 1.0 / (base * log_factor as f64 + 1.0);
    if r < p {
        counter + 1
    } else {
        counter
    }
}

/// Unix time in milliseconds from the system clock.
pub fn unix_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_idle_time_counts_whole_seconds_and_wraps() {
        let now = Now::new(10_000_000, AccessMode::Lru);
        assert_eq!(now.idle_ms(now.lru_clock() - 3), 3000);
        let wrapped = Now::new(1000, AccessMode::Lru);
        assert_eq!(wrapped.idle_ms(LRU_CLOCK_MAX - 1), 2000);
    }

    #[test]
    fn lfu_counter_starts_at_init_and_grows_logarithmically() {
        let now = Now::new(
            0,
            AccessMode::Lfu {
                log_factor: 10,
                decay_time_min: 1,
            },
        );
        let mut e = Entry::new_str(b"k", b"v", None, now.initial_access());
        assert_eq!(e.access() & 0xFF, LFU_INIT_VAL);
        for _ in 0..1000 {
            now.touch(&mut e);
        }
        let c = e.access() & 0xFF;
        // With factor 10, a thousand hits land around 18; far below saturation, well above the start.
        assert!(c > 10 && c < 40, "counter {c}");
    }

    #[test]
    fn lfu_counter_decays_per_idle_period() {
        let t0 = Now::new(
            0,
            AccessMode::Lfu {
                log_factor: 10,
                decay_time_min: 1,
            },
        );
        let access = (t0.lfu_minutes() << 8) | 20;
        let later = Now::new(5 * 60_000, t0.mode);
        assert_eq!(later.lfu_decayed(access, 1), 15);
        assert_eq!(later.lfu_decayed(access, 0), 20);
        let much_later = Now::new(100 * 60_000, t0.mode);
        assert_eq!(much_later.lfu_decayed(access, 1), 0);
    }
}
