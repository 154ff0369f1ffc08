//! What a run tells: the once-a-second progress line on stderr, the summary table on stdout, and the full
//! results as JSON ([`Summary`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Args, Config, KeyPattern};
use crate::engine::{Outcome, Shared};
use crate::stats::ErrorCounts;
use crate::workload::Op;

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |q: f64| ms(h.value_at_quantile(q));
        Percentiles {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            max: ms(h.max()),
        }
    }
}

/// The results of one command type.
#[derive(Debug, Clone, Serialize)]
pub struct CommandSummary {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    /// From when each request was due (open loop: its scheduled time) to its reply; successful replies only.
    pub latency_ms: Percentiles,
    /// From when each request was actually sent to its reply.
    pub service_latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// SETs and GETs measured (a SET's WAIT is part of the SET).
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Writes {
    /// Writes answered OK (and, with --wait-replicas, confirmed by enough replicas).
    pub acknowledged: u64,
    /// Writes answered OK whose WAIT came back short of the replicas asked for.
    pub unacknowledged: u64,
}

/// The full results, as written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub tool: &'static str,
    pub args: Args,
    pub mode: &'static str,
    pub nodes: Vec<String>,
    /// From the end of the warmup to the last measured reply.
    pub measured_secs: f64,
    pub interrupted: bool,
    pub totals: Totals,
    /// By command name; only commands that were sent.
    pub commands: BTreeMap<&'static str, CommandSummary>,
    pub errors: ErrorCounts,
    /// A few distinct error texts, as examples.
    pub error_samples: Vec<String>,
    pub get_hits: u64,
    pub get_misses: u64,
    pub writes: Writes,
    pub cluster_map_refreshes: u64,
}

impl Summary {
    pub fn new(args: &Args, cfg: &Config, outcome: &Outcome) -> Summary {
        let rec = &outcome.recorder;
        let secs = outcome.measured_secs;
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let mut commands = BTreeMap::new();
        for op in Op::ALL {
            let s = &rec.ops[op as usize];
            let requests = s.ok + s.errors;
            if requests == 0 {
                continue;
            }
            commands.insert(
                op.name(),
                CommandSummary {
                    requests,
                    ok: s.ok,
                    errors: s.errors,
                    ops_per_sec: rate(requests),
                    latency_ms: Percentiles::of(&s.latency),
                    service_latency_ms: Percentiles::of(&s.service),
                },
            );
        }
        let (set, get) = (&rec.ops[Op::Set as usize], &rec.ops[Op::Get as usize]);
        let requests = set.ok + set.errors + get.ok + get.errors;
        Summary {
            tool: "shoal-bench",
            args: args.clone(),
            mode: if cfg.open_loop() { "open-loop" } else { "closed-loop" },
            nodes: outcome.nodes.clone(),
            measured_secs: secs,
            interrupted: outcome.interrupted,
            totals: Totals {
                requests,
                ok: set.ok + get.ok,
                errors: set.errors + get.errors,
                ops_per_sec: rate(requests),
            },
            commands,
            errors: rec.errors,
            error_samples: rec.error_samples.clone(),
            get_hits: rec.get_hits,
            get_misses: rec.get_misses,
            writes: Writes {
                acknowledged: rec.acked_writes,
                unacknowledged: rec.unacked_writes,
            },
            cluster_map_refreshes: outcome.map_refreshes,
        }
    }

    /// The human-readable report.
    pub fn render(&self, cfg: &Config) -> String {
        let mut out = String::new();
        let shape = match cfg.rate {
            Some(rate) => format!("open loop at {rate} ops/s over {} connections", cfg.connections),
            None => format!(
                "closed loop, {} connections x pipeline {}",
                cfg.connections, cfg.pipeline
            ),
        };
        let keys = match cfg.key_pattern {
            KeyPattern::Uniform => "uniform".to_string(),
            KeyPattern::Zipf { exponent } => format!("zipf {exponent}"),
        };
        let _ = writeln!(
            out,
            "shoal-bench: {shape}{}, SET:GET {}:{}, {}-byte values, {} keys {keys}",
            if cfg.cluster { ", cluster" } else { "" },
            cfg.ratio.0,
            cfg.ratio.1,
            cfg.data_size,
            cfg.keyspace,
        );
        let _ = writeln!(
            out,
            "nodes: {}; measured {:.2} s{}",
            self.nodes.join(" "),
            self.measured_secs,
            if self.interrupted { " (interrupted)" } else { "" }
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<8}{:>12}{:>12}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "Type", "Ops/sec", "Requests", "Errors", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "mean ms"
        );
        for (name, c) in &self.commands {
            let l = &c.latency_ms;
            let _ = writeln!(
                out,
                "{name:<8}{:>12.0}{:>12}{:>9}{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10.3}",
                c.ops_per_sec, c.requests, c.errors, l.p50, l.p99, l.p99_9, l.max, l.mean
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "{:<8}{:>12.0}{:>12}{:>9}",
            "Totals", t.ops_per_sec, t.requests, t.errors
        );
        if cfg.open_loop() {
            let _ = writeln!(
                out,
                "\nService latency (from the actual send; the table counts from the schedule):"
            );
            for (name, c) in &self.commands {
                let l = &c.service_latency_ms;
                let _ = writeln!(
                    out,
                    "{name:<8}{:>12}{:>12}{:>9}{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10.3}",
                    "", "", "", l.p50, l.p99, l.p99_9, l.max, l.mean
                );
            }
        }
        let e = &self.errors;
        let _ = writeln!(
            out,
            "\nErrors: error_reply {} moved {} ask {} tryagain {} clusterdown {} io {} protocol {} timeout {}",
            e.error_reply, e.moved, e.ask, e.tryagain, e.clusterdown, e.io, e.protocol, e.timeout
        );
        for sample in &self.error_samples {
            let _ = writeln!(out, "  e.g. {sample}");
        }
        let _ = writeln!(out, "GET hits {} misses {}", self.get_hits, self.get_misses);
        if cfg.wait.is_some() || cfg.ack_log.is_some() {
            let _ = writeln!(
                out,
                "Writes acknowledged {} unacknowledged {}",
                self.writes.acknowledged, self.writes.unacknowledged
            );
        }
        if cfg.cluster {
            let _ = writeln!(out, "Slot map reloads {}", self.cluster_map_refreshes);
        }
        out
    }
}

/// Prints a progress line on stderr every second until `done` turns true.
pub async fn progress(shared: Arc<Shared>, mut done: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    let mut last = (shared.live.snapshot(), Instant::now());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.changed() => return,
        }
        let now = Instant::now();
        let (sent, completed, errors, lat_sum) = shared.live.snapshot();
        let ((_, last_completed, _, last_lat), then) = last;
        let window = now.saturating_duration_since(then).as_secs_f64().max(1e-9);
        let delta = completed.saturating_sub(last_completed);
        let avg_ms = if delta > 0 {
            lat_sum.saturating_sub(last_lat) as f64 / delta as f64 / 1000.0
        } else {
            0.0
        };
        let phase = if now < shared.measure_from {
            "warmup"
        } else if shared.sending.load(Ordering::Relaxed) == 0 {
            "drain"
        } else {
            "run"
        };
        eprintln!(
            "[{:>6.1}s] {phase:<6} {:>10.0} ops/s  avg {avg_ms:>8.3} ms  done {completed:>11}  errors {errors:>8}  in flight {:>7}",
            now.saturating_duration_since(shared.start).as_secs_f64(),
            delta as f64 / window,
            sent.saturating_sub(completed),
        );
        last = ((sent, completed, errors, lat_sum), now);
    }
}
