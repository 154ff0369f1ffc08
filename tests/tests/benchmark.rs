//! redis-benchmark against shoal-server: every test completes with no errors.

use std::time::Duration;

use shoal_tests::{redis_benchmark, ShoalServer};

#[test]
fn redis_benchmark_runs_without_errors() {
    let s = ShoalServer::start(&[]);
    let args = [
        "-t",
        "ping,set,get,incr,mset",
        "-P",
        "16",
        "-c",
        "50",
        "-n",
        "200000",
        "-q",
    ];
    let out = redis_benchmark(s.port, &args, Duration::from_secs(90));
    let stdout = out.stdout_str();
    let stderr = out.stderr_str();
    let report = format!(
        "redis-benchmark {args:?}\nexit: {:?}, {:.1?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status, out.elapsed
    );
    eprintln!("{report}");
    assert!(out.status.is_some(), "redis-benchmark did not finish in time\n{report}");
    assert!(out.success(), "redis-benchmark failed\n{report}");

    // With -q every test prints one "NAME: N requests per second" line (redis-benchmark rewrites the line with
    // \r while it runs, so take the part after the last \r).
    let lines: Vec<&str> = stdout
        .lines()
        .map(|l| l.rsplit('\r').next().unwrap_or(l).trim())
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .chain(stderr.lines())
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            lower.contains("error")
                || lower.contains("err ")
                || lower.starts_with("-err")
                || lower.contains("could not")
                || lower.contains("unexpected")
        })
        .collect();
    assert!(
        errors.is_empty(),
        "redis-benchmark reported errors: {errors:?}\n{report}"
    );
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second")),
            "no result line for {test}\n{report}"
        );
    }
    // The data it wrote is there: INCR on key:__rand_int__ counted 200000 increments in total.
    let mut c = s.raw();
    let incr = c.cmd(&["GET", "counter:__rand_int__"]);
    assert_eq!(incr, b"$6\r\n200000\r\n", "INCR total after redis-benchmark");
}
