//! What a run measures: per-command latency histograms, outcome counters and errors by kind ([`Recorder`],
//! one per reader task, merged at the end), and the few shared counters the progress line reads ([`Live`]).
//!
//! Two latencies are kept per request. *Latency* runs from the moment the request was due (its slot on the
//! open-loop schedule; in a closed loop, when it was sent) to its reply: a server stall delays every request
//! scheduled behind it, and each of them reports that delay, so coordinated omission cannot hide it.
//! *Service latency* runs from the actual send, which is what a closed-loop tool would report.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;
use shoal_client::{ClientError, Frame, Redirect};

use crate::workload::Op;

/// Significant figures the histograms keep: 0.1 % resolution at any magnitude.
const SIGFIG: u8 = 3;
/// Distinct error texts kept as examples for the report.
const MAX_ERROR_SAMPLES: usize = 8;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An error reply that is not a cluster redirection (`ERR ...`, `WRONGTYPE ...`, `CROSSSLOT ...`).
    Reply,
    Moved,
    Ask,
    TryAgain,
    /// `CLUSTERDOWN`, or no node known for the key's slot.
    ClusterDown,
    /// The connection failed (refused, reset, closed) before the reply came.
    Io,
    /// The server's bytes were not RESP.
    Protocol,
    /// No reply before the end of the run's drain period or its time limit.
    Timeout,
}

impl ErrorKind {
    /// How a transport failure is counted.
    pub fn of_failure(e: &ClientError) -> ErrorKind {
        match e {
            ClientError::Protocol(_) => ErrorKind::Protocol,
            ClientError::Timeout => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        }
    }

    /// How an error reply is counted; `None` for a reply that is not an error.
    pub fn of_reply(frame: &Frame) -> Option<ErrorKind> {
        Some(match ClientError::from_reply(frame)? {
            ClientError::Redirect(Redirect::Moved { .. }) => ErrorKind::Moved,
            ClientError::Redirect(Redirect::Ask { .. }) => ErrorKind::Ask,
            ClientError::Redirect(Redirect::TryAgain) => ErrorKind::TryAgain,
            ClientError::Redirect(Redirect::ClusterDown | Redirect::SlotUnserved) => ErrorKind::ClusterDown,
            _ => ErrorKind::Reply,
        })
    }
}

/// Failed requests by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    pub error_reply: u64,
    pub moved: u64,
    pub ask: u64,
    pub tryagain: u64,
    pub clusterdown: u64,
    pub io: u64,
    pub protocol: u64,
    pub timeout: u64,
}

impl ErrorCounts {
    pub fn add(&mut self, kind: ErrorKind) {
        *match kind {
            ErrorKind::Reply => &mut self.error_reply,
            ErrorKind::Moved => &mut self.moved,
            ErrorKind::Ask => &mut self.ask,
            ErrorKind::TryAgain => &mut self.tryagain,
            ErrorKind::ClusterDown => &mut self.clusterdown,
            ErrorKind::Io => &mut self.io,
            ErrorKind::Protocol => &mut self.protocol,
            ErrorKind::Timeout => &mut self.timeout,
        } += 1;
    }

    pub fn merge(&mut self, o: &ErrorCounts) {
        self.error_reply += o.error_reply;
        self.moved += o.moved;
        self.ask += o.ask;
        self.tryagain += o.tryagain;
        self.clusterdown += o.clusterdown;
        self.io += o.io;
        self.protocol += o.protocol;
        self.timeout += o.timeout;
    }

    pub fn total(&self) -> u64 {
        self.error_reply + self.redirects() + self.io + self.protocol + self.timeout
    }

    /// Every cluster redirection or refusal.
    pub fn redirects(&self) -> u64 {
        self.moved + self.ask + self.tryagain + self.clusterdown
    }
}

/// Counters shared by every task, read once a second by the progress line. Relaxed atomics: each is an
/// independent tally and the progress line tolerates a request's being half-counted.
#[derive(Debug, Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    pub latency_us_sum: AtomicU64,
}

impl Live {
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.completed.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.latency_us_sum.load(Ordering::Relaxed),
        )
    }
}

/// Measurements of one command type.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Microseconds from when the request was due to its reply.
    pub latency: Histogram<u64>,
    /// Microseconds from when the request was sent to its reply.
    pub service: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency: histogram(),
            service: histogram(),
            ok: 0,
            errors: 0,
        }
    }
}

fn histogram() -> Histogram<u64> {
    // Auto-resizing from 1 µs: it grows only as far as the largest latency actually seen.
    Histogram::new(SIGFIG).expect("3 significant figures is a valid histogram precision")
}

/// Everything one reader task measured.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub ops: [OpStats; 3],
    pub errors: ErrorCounts,
    pub get_hits: u64,
    pub get_misses: u64,
    /// Writes confirmed (an OK, and with WAIT enough replicas) and writes whose WAIT fell short.
    pub acked_writes: u64,
    pub unacked_writes: u64,
    pub error_samples: Vec<String>,
    /// When the last measured reply arrived.
    pub last_reply: Option<Instant>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            ops: [OpStats::new(), OpStats::new(), OpStats::new()],
            errors: ErrorCounts::default(),
            get_hits: 0,
            get_misses: 0,
            acked_writes: 0,
            unacked_writes: 0,
            error_samples: Vec::new(),
            last_reply: None,
        }
    }

    /// A reply (or failure) for a request of type `op` that was due at `due` and sent at `sent`. Only
    /// `measured` requests (due after the warmup) enter the histograms and counters; every one feeds `live`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        op: Op,
        due: Instant,
        sent: Instant,
        now: Instant,
        measured: bool,
        error: Option<ErrorKind>,
        live: &Live,
    ) {
        let latency = micros(now.saturating_duration_since(due));
        live.completed.fetch_add(1, Ordering::Relaxed);
        live.latency_us_sum.fetch_add(latency, Ordering::Relaxed);
        if error.is_some() {
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
        if !measured {
            return;
        }
        let stats = &mut self.ops[op as usize];
        match error {
            None => {
                put(&mut stats.latency, latency);
                put(&mut stats.service, micros(now.saturating_duration_since(sent)));
                stats.ok += 1;
            }
            Some(kind) => {
                stats.errors += 1;
                self.errors.add(kind);
            }
        }
        self.last_reply = Some(now);
    }

    /// Keeps an error text as an example, if it is new and there is room.
    pub fn sample_error(&mut self, text: &str) {
        if self.error_samples.len() < MAX_ERROR_SAMPLES && !self.error_samples.iter().any(|s| s == text) {
            self.error_samples.push(text.to_string());
        }
    }

    pub fn merge(&mut self, o: &Recorder) {
        for (mine, theirs) in self.ops.iter_mut().zip(&o.ops) {
            // Both histograms auto-resize, so adding cannot run out of range.
            let _ = mine.latency.add(&theirs.latency);
            let _ = mine.service.add(&theirs.service);
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
        }
        self.errors.merge(&o.errors);
        self.get_hits += o.get_hits;
        self.get_misses += o.get_misses;
        self.acked_writes += o.acked_writes;
        self.unacked_writes += o.unacked_writes;
        for s in &o.error_samples {
            self.sample_error(s);
        }
        self.last_reply = self.last_reply.max(o.last_reply);
    }
}

/// Records a latency, growing the histogram as needed. (`saturating_record` would clamp to the current top
/// instead of growing, silently capping every latency at the first value range.)
fn put(h: &mut Histogram<u64>, us: u64) {
    let us = us.max(1);
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn err(s: &'static str) -> Frame {
        Frame::Error(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn error_replies_are_counted_by_kind() {
        assert_eq!(ErrorKind::of_reply(&err("MOVED 1 h:1")), Some(ErrorKind::Moved));
        assert_eq!(ErrorKind::of_reply(&err("ASK 1 h:1")), Some(ErrorKind::Ask));
        assert_eq!(ErrorKind::of_reply(&err("TRYAGAIN x")), Some(ErrorKind::TryAgain));
        assert_eq!(
            ErrorKind::of_reply(&err("CLUSTERDOWN Hash slot not served")),
            Some(ErrorKind::ClusterDown)
        );
        assert_eq!(ErrorKind::of_reply(&err("CROSSSLOT x")), Some(ErrorKind::Reply));
        assert_eq!(ErrorKind::of_reply(&err("ERR x")), Some(ErrorKind::Reply));
        assert_eq!(ErrorKind::of_reply(&Frame::Integer(1)), None);
        assert_eq!(ErrorKind::of_failure(&ClientError::Closed), ErrorKind::Io);
        assert_eq!(ErrorKind::of_failure(&ClientError::Timeout), ErrorKind::Timeout);
    }

    #[test]
    fn latency_counts_from_the_due_time_and_service_from_the_send() {
        let live = Live::default();
        let mut rec = Recorder::new();
        let due = Instant::now();
        let sent = due + Duration::from_millis(40);
        let now = due + Duration::from_millis(50);
        rec.record(Op::Get, due, sent, now, true, None, &live);
        let get = &rec.ops[Op::Get as usize];
        assert!((49_900..=50_100).contains(&get.latency.max()), "{}", get.latency.max());
        assert!((9_900..=10_100).contains(&get.service.max()), "{}", get.service.max());
        assert_eq!(live.snapshot().1, 1);
    }

    #[test]
    fn histograms_grow_to_any_latency() {
        let live = Live::default();
        let mut rec = Recorder::new();
        let t = Instant::now();
        for ms in [1, 10, 100, 10_000] {
            rec.record(Op::Set, t, t, t + Duration::from_millis(ms), true, None, &live);
        }
        let max = rec.ops[Op::Set as usize].latency.max();
        assert!((9_990_000..=10_010_000).contains(&max), "{max}");
    }

    #[test]
    fn warmup_requests_feed_the_progress_line_only() {
        let live = Live::default();
        let mut rec = Recorder::new();
        let t = Instant::now();
        rec.record(Op::Set, t, t, t, false, Some(ErrorKind::Io), &live);
        assert_eq!(rec.ops[Op::Set as usize].errors, 0);
        assert_eq!(rec.errors.total(), 0);
        assert_eq!(live.snapshot(), (0, 1, 1, 0));
    }

    #[test]
    fn merging_adds_everything_up() {
        let live = Live::default();
        let t = Instant::now();
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.record(Op::Set, t, t, t + Duration::from_micros(100), true, None, &live);
        b.record(Op::Set, t, t, t + Duration::from_micros(300), true, None, &live);
        b.record(Op::Get, t, t, t, true, Some(ErrorKind::Moved), &live);
        b.sample_error("MOVED 1 h:1");
        a.merge(&b);
        assert_eq!(a.ops[Op::Set as usize].ok, 2);
        assert_eq!(a.ops[Op::Set as usize].latency.len(), 2);
        assert_eq!(a.ops[Op::Get as usize].errors, 1);
        assert_eq!(a.errors.moved, 1);
        assert_eq!(a.errors.redirects(), 1);
        assert_eq!(a.error_samples, ["MOVED 1 h:1"]);
    }
}
