//! The open-loop schedule and the thread that keeps it.
//!
//! Request `j` of the whole run is due at `start + j / rate` and belongs to connection `j % connections`, so
//! connection `i`'s `k`-th request is due at `start + (i + k * connections) / rate` ([`due`]): the
//! connections' requests interleave evenly instead of firing together.
//!
//! Why a thread: tokio's timers tick in whole milliseconds and round deadlines up, so a writer sleeping on
//! one wakes up to a millisecond late. Latency counts from the due time, so that lateness would be added to
//! every measurement, swamping a server answering in a tenth of that. The pacer sleeps with the OS's
//! nanosecond sleep instead (tens of microseconds late at worst) and wakes each connection's writer through
//! a [`Notify`] when its next request falls due; the writers still check the due times themselves, so a
//! late or missed wakeup delays a send but never changes the schedule.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::engine::Shared;

/// The pacer never sleeps longer than this, so it notices the end of the run promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// When connection `conn` of `connections` must send its request number `k`, as an offset from the start.
pub fn due(conn: usize, k: u64, connections: usize, rate: f64) -> Duration {
    Duration::from_secs_f64((conn as f64 + k as f64 * connections as f64) / rate)
}

/// Runs the pacer until every writer has stopped sending: wakes `wakers[j % n]` when request `j` is due.
pub fn run(shared: Arc<Shared>, wakers: Vec<Arc<Notify>>, rate: f64) {
    let start = shared.start.into_std();
    let n = wakers.len().max(1) as u64;
    let mut j: u64 = 0;
    loop {
        if shared.sending.load(Ordering::Relaxed) == 0 || shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let next = start + Duration::from_secs_f64(j as f64 / rate);
        if next > now {
            std::thread::sleep((next - now).min(MAX_SLEEP));
            continue;
        }
        // Everything due by now: each connection needs one wakeup however many of its requests are due,
        // since a woken writer sends all of them.
        let mut woken = 0;
        while start + Duration::from_secs_f64(j as f64 / rate) <= now && woken < n {
            wakers[(j % n) as usize].notify_one();
            j += 1;
            woken += 1;
        }
        if woken == n {
            // Every connection is awake: skip to the first request due in the future.
            let elapsed = now.saturating_duration_since(start).as_secs_f64();
            j = j.max((elapsed * rate).floor() as u64 + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_evenly() {
        // 4 connections at 1000/s: together one request per millisecond, each one every 4 ms.
        let mut all: Vec<Duration> = (0..4).flat_map(|c| (0..3).map(move |k| due(c, k, 4, 1000.0))).collect();
        all.sort();
        let expected: Vec<Duration> = (0..12).map(Duration::from_millis).collect();
        for (got, want) in all.iter().zip(&expected) {
            assert!(got.abs_diff(*want) < Duration::from_nanos(10), "{got:?} vs {want:?}");
        }
    }
}
