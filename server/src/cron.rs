//! Background work on its own thread, as Redis's `serverCron`: active expiry, eviction left over by writes that
//! hit their time budget, the samples behind INFO's instantaneous metrics, and the replication chores (PINGs to
//! replicas, the count of good replicas). Every budget is bounded
//! (see `keyspace/expire.rs`); the thread stops when the server shuts down.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::keyspace::expire::{self, CycleBudget};
use crate::server::Server;

/// Samples kept for instantaneous metrics (Redis's STATS_METRIC_SAMPLES).
const METRIC_SAMPLES: usize = 16;
/// How often a metric sample is taken.
const METRIC_PERIOD: Duration = Duration::from_millis(100);

/// INFO's instantaneous_* figures.
#[derive(Default)]
pub struct Instantaneous {
    pub ops_per_sec: AtomicU64,
    pub input_kbps_x100: AtomicU64,
    pub output_kbps_x100: AtomicU64,
}

struct Sampler {
    last: Instant,
    last_values: [u64; 3],
    samples: [VecDeque<f64>; 3],
}

impl Sampler {
    fn new() -> Sampler {
        Sampler {
            last: Instant::now(),
            last_values: [0; 3],
            samples: Default::default(),
        }
    }

    fn sample(&mut self, srv: &Server) {
        let elapsed = self.last.elapsed().as_secs_f64();
        if elapsed <= 0.0 {
            return;
        }
        let snap = srv.stats.snapshot();
        let values = [snap.total_commands(), snap.net_input_bytes, snap.net_output_bytes];
        for (i, q) in self.samples.iter_mut().enumerate() {
            let delta = values[i].saturating_sub(self.last_values[i]) as f64 / elapsed;
            q.push_back(delta);
            if q.len() > METRIC_SAMPLES {
                q.pop_front();
            }
        }
        self.last_values = values;
        self.last = Instant::now();
        let avg = |q: &VecDeque<f64>| {
            if q.is_empty() {
                0.0
            } else {
                q.iter().sum::<f64>() / q.len() as f64
            }
        };
        let m = &srv.instantaneous;
        m.ops_per_sec
            .store(avg(&self.samples[0]).round() as u64, Ordering::Relaxed);
        m.input_kbps_x100
            .store((avg(&self.samples[1]) / 1024.0 * 100.0) as u64, Ordering::Relaxed);
        m.output_kbps_x100
            .store((avg(&self.samples[2]) / 1024.0 * 100.0) as u64, Ordering::Relaxed);
    }
}

/// Closes clients idle for longer than `timeout` seconds (Redis's clientsCronHandleTimeout).
fn close_idle_clients(srv: &Server) {
    let timeout_ms = srv.settings.timeout_secs.load(Ordering::Relaxed) as i64 * 1000;
    if timeout_ms == 0 {
        return;
    }
    let now = crate::keyspace::access::unix_ms();
    for c in srv.clients.all() {
        if now - c.last_interaction_ms.load(Ordering::Relaxed) > timeout_ms {
            tracing::debug!(client = c.id, "closing idle client");
            c.request_kill();
        }
    }
}

/// Starts the cron thread.
pub fn spawn(srv: Arc<Server>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("shoal-cron".into())
        .spawn(move || run(srv))
}

fn run(srv: Arc<Server>) {
    let mut sampler = Sampler::new();
    let mut next_sample = Instant::now() + METRIC_PERIOD;
    let mut pause_after_work = Duration::ZERO;
    let mut next_client_check = Instant::now();
    let mut next_replica_ping = Instant::now();
    while !srv.is_shutting_down() {
        let hz = srv.settings.hz.load(Ordering::Relaxed).clamp(1, 500);
        let period = Duration::from_micros(1_000_000 / hz as u64);
        let sleep = if pause_after_work.is_zero() {
            period
        } else {
            pause_after_work.max(Duration::from_millis(1))
        };
        std::thread::sleep(sleep.min(Duration::from_millis(100)));
        pause_after_work = Duration::ZERO;
        let now = srv.now();
        if srv.settings.active_expire_enabled.load(Ordering::Relaxed) {
            let effort = srv.settings.active_expire_effort.load(Ordering::Relaxed);
            let report = expire::run_cycle(&srv.keyspace, &now, &CycleBudget::new(effort, hz));
            if let Some(perc) = (report.expired * 100).checked_div(report.examined) {
                srv.stats.expired_stale_perc.store(perc as u64, Ordering::Relaxed);
            }
            if report.hit_time_limit {
                // Keep expiry at no more than a quarter of a core: rest three times as long as we worked.
                pause_after_work = report.elapsed * 3;
            }
        }
        // Finish eviction that writes left to do because of their time budget.
        let _ = srv.evict_if_needed(&srv.now());
        if Instant::now() >= next_sample {
            sampler.sample(&srv);
            srv.memory.sample();
            next_sample = Instant::now() + METRIC_PERIOD;
        }
        if Instant::now() >= next_client_check {
            close_idle_clients(&srv);
            srv.repl.refresh_good_replicas();
            next_client_check = Instant::now() + Duration::from_secs(1);
        }
        if Instant::now() >= next_replica_ping {
            // Redis's replicationCron: a PING in the stream every repl-ping-replica-period, so replicas can
            // tell a quiet primary from a lost one.
            srv.repl.ping_replicas(&srv);
            let period = srv.config.read().repl_ping_replica_period.max(1);
            next_replica_ping = Instant::now() + Duration::from_secs(u64::from(period));
        }
    }
}
