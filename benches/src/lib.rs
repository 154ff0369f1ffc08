//! Shoal load generator and microbenchmarks.
//!
//! The `shoal-bench` binary is a thin wrapper over this library:
//! * [`config`] — the command line and the checked run description.
//! * [`workload`] — the command mix, key distributions, keys and values.
//! * [`engine`] — connections, closed and open loops, cluster routing, reconnection, the end of a run.
//! * [`pacer`] — the open-loop schedule and the thread that wakes writers on time.
//! * [`stats`] — latency histograms and counters per command type, errors by kind.
//! * [`report`] — the progress line, the summary table and the JSON results.
//! * [`error`] — [`BenchError`], what stops a run.
//!
//! The criterion microbenchmarks live in `benches/` and run only under `cargo bench`.

pub mod config;
pub mod engine;
pub mod error;
pub mod pacer;
pub mod report;
pub mod stats;
pub mod workload;

pub use error::BenchError;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use config::{Args, Config};
use report::Summary;

/// Runs the benchmark `args` describe; prints the report, writes the JSON file if asked, and returns the
/// summary. Setting `stop` ends the run early, still with a report.
pub async fn run(args: &Args, stop: Arc<AtomicBool>) -> Result<Summary, BenchError> {
    let cfg = Config::from_args(args)?;
    let outcome = engine::run(cfg.clone(), stop).await?;
    let summary = Summary::new(args, &cfg, &outcome);
    print!("{}", summary.render(&cfg));
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&summary)?;
        std::fs::write(path, json).map_err(|source| BenchError::File {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(summary)
}
