//! The command line ([`Args`]) and the checked run description made from it ([`Config`]).
//!
//! Parsing and checking are kept apart from running so that every refusal (a bad ratio, a zipf exponent that
//! is not a number, hosts and ports that do not pair up) happens before a single connection is opened.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::error::BenchError;

/// Extra time a run may take beyond its planned length before it is cut off (replies still owed are then
/// counted as timeouts).
pub const TIME_LIMIT_SLACK: Duration = Duration::from_secs(30);
/// The time limit of a run sized by `--requests`, whose length cannot be planned.
pub const DEFAULT_REQUESTS_TIME_LIMIT: Duration = Duration::from_secs(600);
/// The run length when neither `--requests` nor `--duration` is given.
pub const DEFAULT_DURATION_SECS: f64 = 10.0;

/// A load generator for Redis-compatible servers, in the spirit of memtier_benchmark.
///
/// Closed loop by default: every connection keeps `--pipeline` requests in flight. With `--rate` the load is
/// open loop: requests are due on a fixed schedule and latency counts from when each was due, so a stalled
/// server shows up in the percentiles instead of hiding behind fewer requests sent.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "shoal-bench", version, about, long_about = None)]
pub struct Args {
    /// Server host, or host:port. Repeat or separate with commas for several nodes.
    #[arg(long = "host", value_delimiter = ',', default_value = "127.0.0.1")]
    pub hosts: Vec<String>,
    /// Server port; repeat or comma-separate to pair with several hosts (one port applies to every host).
    #[arg(short = 'p', long = "port", value_delimiter = ',', default_value = "6379")]
    pub ports: Vec<u16>,
    /// Treat the nodes as seeds of a cluster: discover the slot map with CLUSTER SLOTS and route every request
    /// to the primary serving its key.
    #[arg(long)]
    pub cluster: bool,
    /// Connections (in cluster mode: connection groups, one connection per primary each).
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Closed loop: requests each connection keeps in flight.
    #[arg(short = 'P', long, default_value_t = 1)]
    pub pipeline: usize,
    /// Requests to measure in total (after the warmup); conflicts with --duration.
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Seconds to measure (after the warmup); 10 when neither this nor --requests is given.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Bytes per SET value.
    #[arg(short = 'd', long, default_value_t = 32)]
    pub data_size: usize,
    /// Keys are key:0 .. key:<N-1>.
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// How keys are drawn: `uniform`, or `zipf:<s>` (key:0 the most popular, exponent s, e.g. zipf:0.99).
    #[arg(long, default_value = "uniform")]
    pub key_pattern: String,
    /// SET:GET mix, e.g. 1:10 (one SET in every eleven requests), 1:0 (only SETs).
    #[arg(long, default_value = "1:10")]
    pub ratio: String,
    /// Open loop: total requests per second over all connections, each request due on a fixed schedule.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load before measuring starts; their requests are sent but not counted.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_secs: f64,
    /// Write the full results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// RESP version to speak: 2, or 3 (HELLO 3 on every connection).
    #[arg(long, default_value_t = 2)]
    pub protocol: u8,
    /// Send `WAIT <N> <timeout>` after every SET; a write counts as acknowledged when N replicas confirmed it.
    #[arg(long)]
    pub wait_replicas: Option<u32>,
    /// The WAIT timeout in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub wait_timeout: u64,
    /// Append one line `<key> <value>` per acknowledged write to this file, for checking later that no
    /// acknowledged write was lost. Values are `<connection>.<sequence>.` padded, so each is unique.
    #[arg(long)]
    pub ack_log: Option<PathBuf>,
    /// Hard limit on the whole run in seconds; replies still owed then count as timeouts. Default: warmup +
    /// duration + 30 s, or 600 s for a run sized by --requests.
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Seed of the key and command generators, for repeatable runs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No progress line on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// How keys are drawn from the keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum KeyPattern {
    Uniform,
    Zipf { exponent: f64 },
}

/// When the run stops sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many measured requests, spread over the connections.
    Requests(u64),
    /// After this long measuring.
    Duration(Duration),
}

/// A checked run description.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` of every node given.
    pub nodes: Vec<String>,
    pub cluster: bool,
    pub connections: usize,
    pub pipeline: usize,
    pub stop: Stop,
    pub data_size: usize,
    pub keyspace: u64,
    pub key_pattern: KeyPattern,
    /// (SETs, GETs) per cycle of the mix.
    pub ratio: (u32, u32),
    /// Open loop: requests per second in total.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub time_limit: Duration,
    pub protocol: u8,
    pub wait: Option<(u32, u64)>,
    pub ack_log: Option<PathBuf>,
    pub seed: u64,
    pub progress: bool,
}

impl Config {
    pub fn from_args(args: &Args) -> Result<Config, BenchError> {
        let bad = |s: String| Err(BenchError::Config(s));
        let nodes = node_addrs(&args.hosts, &args.ports)?;
        if args.connections == 0 {
            return bad("--connections must be at least 1".into());
        }
        if args.pipeline == 0 {
            return bad("--pipeline must be at least 1".into());
        }
        if args.keyspace == 0 {
            return bad("--keyspace must be at least 1".into());
        }
        if !matches!(args.protocol, 2 | 3) {
            return bad(format!("--protocol must be 2 or 3, not {}", args.protocol));
        }
        let stop = match (args.requests, args.duration) {
            (Some(0), _) => return bad("--requests must be at least 1".into()),
            (Some(n), _) => Stop::Requests(n),
            (None, d) => Stop::Duration(secs("--duration", d.unwrap_or(DEFAULT_DURATION_SECS))?),
        };
        let rate = match args.rate {
            Some(r) if !(r.is_finite() && r > 0.0) => return bad(format!("--rate must be positive, not {r}")),
            other => other,
        };
        let warmup = secs("--warmup-secs", args.warmup_secs)?;
        let time_limit = match (args.time_limit, stop) {
            (Some(t), _) => secs("--time-limit", t)?,
            (None, Stop::Duration(d)) => warmup + d + TIME_LIMIT_SLACK,
            (None, Stop::Requests(_)) => warmup + DEFAULT_REQUESTS_TIME_LIMIT,
        };
        Ok(Config {
            nodes,
            cluster: args.cluster,
            connections: args.connections,
            pipeline: args.pipeline,
            stop,
            data_size: args.data_size,
            keyspace: args.keyspace,
            key_pattern: parse_key_pattern(&args.key_pattern)?,
            ratio: parse_ratio(&args.ratio)?,
            rate,
            warmup,
            time_limit,
            protocol: args.protocol,
            wait: args.wait_replicas.map(|n| (n, args.wait_timeout)),
            ack_log: args.ack_log.clone(),
            seed: args.seed,
            progress: !args.quiet,
        })
    }

    pub fn open_loop(&self) -> bool {
        self.rate.is_some()
    }
}

fn secs(flag: &str, s: f64) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| BenchError::Config(format!("{flag} must be a non-negative number of seconds, not {s}")))
}

/// Pairs hosts with ports: a host already holding `:port` keeps it; otherwise ports pair up one to one, or a
/// single port applies to every host (and a single host to every port).
pub fn node_addrs(hosts: &[String], ports: &[u16]) -> Result<Vec<String>, BenchError> {
    let hosts: Vec<&str> = hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() || ports.is_empty() {
        return Err(BenchError::Config("at least one host and one port are needed".into()));
    }
    let n = hosts.len().max(ports.len());
    if (hosts.len() != 1 && hosts.len() != n) || (ports.len() != 1 && ports.len() != n) {
        return Err(BenchError::Config(format!(
            "{} hosts and {} ports do not pair up: give one port for all, or one per host",
            hosts.len(),
            ports.len()
        )));
    }
    Ok((0..n)
        .map(|i| {
            let host = hosts[i.min(hosts.len() - 1)];
            let port = ports[i.min(ports.len() - 1)];
            match (host.starts_with('['), host.matches(':').count()) {
                (true, _) if host.contains("]:") => host.to_string(),
                (true, _) | (false, 0) => format!("{host}:{port}"),
                (false, 1) => host.to_string(),
                // A bare IPv6 address.
                (false, _) => format!("[{host}]:{port}"),
            }
        })
        .collect())
}

/// `uniform` or `zipf:<s>` with a non-negative exponent.
pub fn parse_key_pattern(s: &str) -> Result<KeyPattern, BenchError> {
    if s == "uniform" {
        return Ok(KeyPattern::Uniform);
    }
    match s.strip_prefix("zipf:").map(str::parse::<f64>) {
        Some(Ok(exponent)) if exponent.is_finite() && exponent >= 0.0 => Ok(KeyPattern::Zipf { exponent }),
        _ => Err(BenchError::Config(format!(
            "--key-pattern must be uniform or zipf:<s> with s >= 0, not {s:?}"
        ))),
    }
}

/// `SET:GET` as two counts, not both zero.
pub fn parse_ratio(s: &str) -> Result<(u32, u32), BenchError> {
    let parsed = s
        .split_once(':')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some((sets, gets)) if sets as u64 + gets as u64 > 0 => Ok((sets, gets)),
        _ => Err(BenchError::Config(format!(
            "--ratio must be SET:GET counts such as 1:10, not {s:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["shoal-bench"];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    #[test]
    fn defaults_are_a_ten_second_closed_loop_against_localhost() {
        let cfg = Config::from_args(&args(&[])).expect("config");
        assert_eq!(cfg.nodes, ["127.0.0.1:6379"]);
        assert_eq!(cfg.stop, Stop::Duration(Duration::from_secs(10)));
        assert_eq!(cfg.ratio, (1, 10));
        assert_eq!(cfg.key_pattern, KeyPattern::Uniform);
        assert!(!cfg.open_loop());
        assert_eq!(cfg.time_limit, Duration::from_secs(40));
    }

    #[test]
    fn hosts_and_ports_pair_up_or_broadcast() {
        let pair = |h: &[&str], p: &[u16]| node_addrs(&h.iter().map(|s| s.to_string()).collect::<Vec<_>>(), p);
        assert_eq!(pair(&["a", "b"], &[1]).expect("ok"), ["a:1", "b:1"]);
        assert_eq!(pair(&["a"], &[1, 2]).expect("ok"), ["a:1", "a:2"]);
        assert_eq!(pair(&["a", "b"], &[1, 2]).expect("ok"), ["a:1", "b:2"]);
        assert_eq!(pair(&["a:7", "b"], &[1]).expect("ok"), ["a:7", "b:1"]);
        assert_eq!(pair(&["::1"], &[1]).expect("ok"), ["[::1]:1"]);
        assert_eq!(pair(&["[::1]:5"], &[1]).expect("ok"), ["[::1]:5"]);
        assert!(pair(&["a", "b", "c"], &[1, 2]).is_err());
    }

    #[test]
    fn comma_lists_and_repeated_flags_both_give_several_nodes() {
        let cfg =
            Config::from_args(&args(&["--host", "h1,h2", "--host", "h3", "-p", "7000,7001,7002"])).expect("config");
        assert_eq!(cfg.nodes, ["h1:7000", "h2:7001", "h3:7002"]);
    }

    #[test]
    fn key_patterns_and_ratios_are_checked() {
        assert_eq!(
            parse_key_pattern("zipf:0.99").expect("zipf"),
            KeyPattern::Zipf { exponent: 0.99 }
        );
        assert!(parse_key_pattern("zipf:x").is_err());
        assert!(parse_key_pattern("zipf:-1").is_err());
        assert!(parse_key_pattern("gauss").is_err());
        assert_eq!(parse_ratio("1:10").expect("ratio"), (1, 10));
        assert_eq!(parse_ratio("0:1").expect("ratio"), (0, 1));
        assert!(parse_ratio("0:0").is_err());
        assert!(parse_ratio("1-10").is_err());
    }

    #[test]
    fn requests_and_duration_set_the_stop_and_the_time_limit() {
        let cfg = Config::from_args(&args(&["-n", "1000", "--warmup-secs", "2"])).expect("config");
        assert_eq!(cfg.stop, Stop::Requests(1000));
        assert_eq!(cfg.time_limit, Duration::from_secs(602));
        let cfg = Config::from_args(&args(&["--duration", "5", "--time-limit", "7"])).expect("config");
        assert_eq!(cfg.stop, Stop::Duration(Duration::from_secs(5)));
        assert_eq!(cfg.time_limit, Duration::from_secs(7));
        assert!(Args::try_parse_from(["shoal-bench", "-n", "5", "--duration", "5"]).is_err());
    }

    #[test]
    fn nonsense_is_refused_before_anything_runs() {
        for bad in [
            &["-c", "0"][..],
            &["-P", "0"],
            &["--rate", "0"],
            &["--rate=-5"],
            &["--duration=-1"],
            &["--protocol", "4"],
            &["--keyspace", "0"],
            &["-n", "0"],
        ] {
            let argv = std::iter::once("shoal-bench").chain(bad.iter().copied());
            let refused = Args::try_parse_from(argv).map_or(true, |a| Config::from_args(&a).is_err());
            assert!(refused, "{bad:?}");
        }
    }
}
