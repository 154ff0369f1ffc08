//! `shoal-bench`: the load generator's entry point. Everything but argument parsing, Ctrl-C and the exit code
//! lives in the library (see `lib.rs`).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use shoal_bench::config::Args;

/// Exit code after a second Ctrl-C, as a shell reports death by SIGINT.
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let result = runtime.block_on(async {
        let flag = stop.clone();
        // The first Ctrl-C ends the run with a report of what was measured; a second one quits at once.
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("shoal-bench: stopping (Ctrl-C again to quit without a report)");
                flag.store(true, Ordering::Relaxed);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(i32::from(INTERRUPTED));
                }
            }
        });
        shoal_bench::run(&args, stop).await
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
