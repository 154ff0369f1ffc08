//! A cheap monotonic cycle clock for per-command timing (commandstats `usec`).
//!
//! Timing every command with the system clock costs two `clock_gettime` calls per command — about 6% of the
//! CPU of a pipelined GET workload in profiles. The time-stamp counter is read with one instruction and, on
//! the x86-64 machines this runs on (`constant_tsc`, `nonstop_tsc`), ticks at a fixed rate, which is
//! calibrated once against the system clock. Elsewhere the system clock is used.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A reading of the cycle clock.
#[derive(Debug, Clone, Copy)]
pub struct Ticks(u64);

static TICKS_PER_US: OnceLock<f64> = OnceLock::new();
static ORIGIN: OnceLock<Instant> = OnceLock::new();

#[inline]
fn raw() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

fn ticks_per_us() -> f64 {
    *TICKS_PER_US.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return 1000.0;
        }
        let t0 = Instant::now();
        let c0 = raw();
        std::thread::sleep(Duration::from_millis(20));
        let c1 = raw();
        let us = t0.elapsed().as_secs_f64() * 1e6;
        let rate = c1.wrapping_sub(c0) as f64 / us;
        if rate.is_finite() && rate > 1.0 {
            rate
        } else {
            1000.0
        }
    })
}

/// Calibrates the clock; call once at startup so the first command is not the one that pays for it.
pub fn calibrate() {
    let _ = ORIGIN.get_or_init(Instant::now);
    let _ = ticks_per_us();
}

impl Ticks {
    #[inline]
    pub fn now() -> Ticks {
        Ticks(raw())
    }

    /// Microseconds since this reading.
    #[inline]
    pub fn elapsed_us(self) -> u64 {
        let delta = raw().saturating_sub(self.0);
        (delta as f64 / ticks_per_us()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_sleep_roughly() {
        calibrate();
        let t = Ticks::now();
        std::thread::sleep(Duration::from_millis(30));
        let us = t.elapsed_us();
        assert!((25_000..200_000).contains(&us), "{us} us");
    }
}
