//! The load generator end to end against a real `redis-server`: a closed-loop run sized by request count, an
//! open-loop run that must keep its rate, the acknowledgement log checked against the data, the JSON
//! results, and a refusal when nothing listens.
//!
//! Each test starts its own server on a free port (persistence off) and kills it by pid when it ends.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use shoal_bench::config::Args;
use shoal_bench::BenchError;
use shoal_client::{Connection, Frame};
use shoal_tests::{free_port, RedisServer, TestServer};

/// The real redis-server on a free port, persistence off, killed by pid when dropped (the end-to-end tests'
/// starter: it retries on another port when another test took the free one).
async fn start_redis() -> TestServer {
    tokio::task::spawn_blocking(|| RedisServer::start(&[]))
        .await
        .expect("redis-server starter")
}

fn args(port: u16, extra: &[&str]) -> Args {
    let port = port.to_string();
    let mut argv = vec!["shoal-bench", "--host", "127.0.0.1", "-p", &port, "-q"];
    argv.extend_from_slice(extra);
    Args::parse_from(argv)
}

fn no_stop() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("json written");
    serde_json::from_str(&text).expect("json parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_run_sends_exactly_the_requests_asked_for() {
    let server = start_redis().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("results.json");
    let json_arg = json.display().to_string();
    let summary = shoal_bench::run(
        &args(server.port, &["-c", "4", "-P", "8", "-n", "5000", "--json", &json_arg]),
        no_stop(),
    )
    .await
    .expect("run");
    assert_eq!(summary.totals.requests, 5000);
    assert_eq!(summary.totals.errors, 0);
    let doc = read_json(&json);
    assert_eq!(doc["mode"], "closed-loop");
    assert_eq!(doc["totals"]["requests"], 5000);
    let get = &doc["commands"]["GET"];
    let set = &doc["commands"]["SET"];
    assert_eq!(
        get["requests"].as_u64().unwrap_or(0) + set["requests"].as_u64().unwrap_or(0),
        5000
    );
    // 1:10 SET:GET, exactly, per connection cycle.
    assert!((450..=460).contains(&set["requests"].as_u64().unwrap_or(0)), "{set}");
    for field in ["p50", "p99", "p99_9", "max"] {
        assert!(
            get["latency_ms"][field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {get}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_run_keeps_its_rate() {
    let server = start_redis().await;
    let summary = shoal_bench::run(
        &args(server.port, &["-c", "8", "--rate", "2000", "--duration", "1.5"]),
        no_stop(),
    )
    .await
    .expect("run");
    assert_eq!(summary.mode, "open-loop");
    assert_eq!(summary.totals.errors, 0);
    // 1.5 s at 2000/s is 3000 requests, give or take the edges of the schedule.
    assert!(
        (2950..=3050).contains(&summary.totals.requests),
        "{}",
        summary.totals.requests
    );
    assert!(
        (1800.0..2200.0).contains(&summary.totals.ops_per_sec),
        "{}",
        summary.totals.ops_per_sec
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_is_in_the_log_and_the_last_one_in_the_data() {
    let server = start_redis().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("acks.log");
    let log_arg = log.display().to_string();
    // One connection, one request at a time: the log's order is the order the writes were applied in.
    let args = args(
        server.port,
        &[
            "-c",
            "1",
            "-n",
            "600",
            "--ratio",
            "1:1",
            "--keyspace",
            "50",
            "--wait-replicas",
            "0",
            "--ack-log",
            &log_arg,
        ],
    );
    let summary = shoal_bench::run(&args, no_stop()).await.expect("run");
    let text = std::fs::read_to_string(&log).expect("ack log");
    let lines: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(lines.len() as u64, summary.writes.acknowledged);
    assert_eq!(summary.writes.acknowledged, 300);
    assert_eq!(summary.commands["WAIT"].requests, 300);
    let mut last = std::collections::HashMap::new();
    for (key, value) in &lines {
        assert!(value.starts_with("0."), "{value}");
        last.insert(*key, *value);
    }
    let mut conn = Connection::connect(&format!("127.0.0.1:{}", server.port))
        .await
        .expect("connect");
    for (key, value) in last {
        let stored = conn.command(&["GET", key]).await.expect("get");
        assert_eq!(
            stored,
            Frame::Bulk(bytes::Bytes::copy_from_slice(value.as_bytes())),
            "{key}"
        );
    }
}

#[tokio::test]
async fn nothing_listening_is_refused_before_the_run() {
    let port = free_port();
    let result = shoal_bench::run(&args(port, &["--duration", "1"]), no_stop()).await;
    assert!(matches!(result, Err(BenchError::Connect { .. })), "{:?}", result.err());
}
