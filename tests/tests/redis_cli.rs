//! redis-cli against shoal-server: plain commands (RESP2 and `-3`), `--pipe` mass insertion, `--scan`.

use std::collections::BTreeSet;
use std::time::Duration;

use shoal_tests::{redis_cli, RawConn, RedisServer, RunOutput, ShoalServer};

const CLI_TIMEOUT: Duration = Duration::from_secs(20);

fn cli(port: u16, args: &[&str]) -> RunOutput {
    let out = redis_cli(port, args, None, CLI_TIMEOUT);
    assert!(
        out.status.is_some(),
        "redis-cli {args:?} did not finish within {CLI_TIMEOUT:?}"
    );
    out
}

/// stdout of a successful redis-cli run.
fn cli_ok(port: u16, args: &[&str]) -> String {
    let out = cli(port, args);
    assert!(
        out.success(),
        "redis-cli {args:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout_str(),
        out.stderr_str()
    );
    out.stdout_str()
}

#[test]
fn plain_commands() {
    let s = ShoalServer::start(&[]);
    let p = s.port;
    assert_eq!(cli_ok(p, &["PING"]), "PONG\n");
    assert_eq!(cli_ok(p, &["SET", "a", "b"]), "OK\n");
    assert_eq!(cli_ok(p, &["GET", "a"]), "b\n");
    assert_eq!(cli_ok(p, &["GET", "missing"]), "\n");
    assert_eq!(cli_ok(p, &["INCR", "n"]), "1\n");
    assert_eq!(cli_ok(p, &["--no-raw", "INCR", "n"]), "(integer) 2\n");
    assert_eq!(cli_ok(p, &["--no-raw", "GET", "missing"]), "(nil)\n");
    assert_eq!(cli_ok(p, &["MGET", "a", "missing", "n"]), "b\n\n2\n");
    assert_eq!(
        cli_ok(p, &["--no-raw", "MGET", "a", "missing", "n"]),
        "1) \"b\"\n2) (nil)\n3) \"2\"\n"
    );
    assert_eq!(
        cli_ok(p, &["NOSUCHCOMMAND", "x"]),
        "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' \n\n"
    );
    assert_eq!(cli_ok(p, &["-n", "1", "SET", "in1", "v"]), "OK\n");
    assert_eq!(cli_ok(p, &["-n", "1", "GET", "in1"]), "v\n");
    assert_eq!(cli_ok(p, &["GET", "in1"]), "\n");
    assert_eq!(cli_ok(p, &["DBSIZE"]), "2\n");

    // RESP3
    assert_eq!(cli_ok(p, &["-3", "SET", "a", "b3"]), "OK\n");
    assert_eq!(cli_ok(p, &["-3", "GET", "a"]), "b3\n");
    assert_eq!(cli_ok(p, &["-3", "--no-raw", "GET", "missing"]), "(nil)\n");
    assert_eq!(cli_ok(p, &["-3", "--no-raw", "INCR", "n"]), "(integer) 3\n");
    assert_eq!(
        cli_ok(p, &["-3", "--no-raw", "CONFIG", "GET", "maxmemory"]),
        "1# \"maxmemory\" => \"0\"\n"
    );
    let hello = cli_ok(p, &["-3", "HELLO", "3"]);
    assert!(hello.contains("proto 3\n"), "HELLO 3 via redis-cli -3: {hello}");

    // Commands given on stdin, one per line.
    let out = redis_cli(p, &[], Some(b"SET x 1\nINCRBY x 41\nGET x\n".to_vec()), CLI_TIMEOUT);
    assert!(out.success(), "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "OK\n42\n42\n");
}

/// The same redis-cli invocations against redis-server and shoal-server print the same text.
#[test]
fn output_matches_redis() {
    let shoal = ShoalServer::start(&[]);
    let redis = RedisServer::start(&[]);
    let script: &[&[&str]] = &[
        &["SET", "k", "hello world"],
        &["GET", "k"],
        &["--no-raw", "GET", "k"],
        &["APPEND", "k", "!"],
        &["STRLEN", "k"],
        &["GETRANGE", "k", "0", "4"],
        &["MSET", "a", "1", "b", "2"],
        &["--no-raw", "MGET", "a", "b", "nope"],
        &["INCRBYFLOAT", "a", "0.5"],
        &["--no-raw", "INCRBYFLOAT", "a", "0.25"],
        &["SET", "e", "v", "EX", "100"],
        &["TTL", "e"],
        &["--no-raw", "EXPIRETIME", "nope"],
        &["--no-raw", "SET", "e", "v", "EX", "0"],
        &["--no-raw", "INCR", "k"],
        &["--no-raw", "NOSUCH"],
        &["--no-raw", "-3", "GET", "nope"],
        &["--no-raw", "-3", "MGET", "a", "nope"],
        &["--no-raw", "-3", "LCS", "k", "k", "IDX"],
        &["--no-raw", "-3", "CONFIG", "GET", "maxmemory-policy"],
        &["--no-raw", "-3", "INCRBYFLOAT", "f", "1.5"],
        &["--no-raw", "-3", "COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
        &["--no-raw", "EXISTS", "a", "b", "k", "nope"],
        &["--no-raw", "TYPE", "k"],
        &["--no-raw", "DEL", "a", "b"],
        &["--no-raw", "DBSIZE"],
        &["--no-raw", "PING", "hi"],
        &["--no-raw", "ECHO", "a\nb"],
        &["--no-raw", "SELECT", "99"],
        &["--no-raw", "-3", "CLIENT", "GETNAME"],
    ];
    let mut diffs = Vec::new();
    for args in script {
        let r = cli(redis.port, args);
        let s = cli(shoal.port, args);
        if (r.stdout_str(), r.status.map(|x| x.code())) != (s.stdout_str(), s.status.map(|x| x.code())) {
            diffs.push(format!(
                "redis-cli {args:?}\n  redis: {:?} (exit {:?})\n  shoal: {:?} (exit {:?})",
                r.stdout_str(),
                r.status,
                s.stdout_str(),
                s.status
            ));
        }
    }
    assert!(diffs.is_empty(), "redis-cli output differs:\n{}", diffs.join("\n"));
}

fn mass_insert_protocol(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 48);
    for i in 0..n {
        let key = format!("key:{i}");
        let val = format!("value:{i}");
        out.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{val}\r\n",
                key.len(),
                val.len()
            )
            .as_bytes(),
        );
    }
    out
}

#[test]
fn pipe_mass_insertion() {
    const N: usize = 100_000;
    let s = ShoalServer::start(&[]);
    let out = redis_cli(
        s.port,
        &["--pipe", "--pipe-timeout", "20"],
        Some(mass_insert_protocol(N)),
        Duration::from_secs(30),
    );
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(out.status.is_some(), "redis-cli --pipe timed out:\n{text}");
    assert!(out.success(), "redis-cli --pipe failed ({:?}):\n{text}", out.status);
    assert!(
        text.contains(&format!("errors: 0, replies: {N}")),
        "unexpected --pipe summary:\n{text}"
    );
    let mut c = s.raw();
    assert_eq!(c.cmd(&["DBSIZE"]), format!(":{N}\r\n").into_bytes());
    assert_eq!(c.cmd(&["GET", "key:0"]), b"$7\r\nvalue:0\r\n");
    assert_eq!(c.cmd(&["GET", "key:99999"]), b"$11\r\nvalue:99999\r\n");
    assert_eq!(cli_ok(s.port, &["GET", "key:12345"]), "value:12345\n");
}

#[test]
fn pipe_reports_errors() {
    let s = ShoalServer::start(&[]);
    let mut input = mass_insert_protocol(10);
    input.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$5\r\nkey:1\r\n"); // not an integer
    input.extend_from_slice(b"*1\r\n$7\r\nNOSUCH!\r\n");
    let out = redis_cli(s.port, &["--pipe"], Some(input), CLI_TIMEOUT);
    let text = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        text.contains("errors: 2, replies: 12"),
        "unexpected --pipe summary:\n{text}"
    );
}

fn load_keys(s: &shoal_tests::TestServer, keys: &[String]) {
    let mut c = s.raw();
    for chunk in keys.chunks(1000) {
        let mut batch = Vec::new();
        for k in chunk {
            batch.extend(shoal_tests::encode_command(&["SET", k.as_str(), "v"]));
        }
        c.send(&batch).unwrap();
        for _ in chunk {
            assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
        }
    }
}

fn scan_lines(out: &str) -> (BTreeSet<String>, Vec<String>) {
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let mut seen = BTreeSet::new();
    let mut dups = Vec::new();
    for l in &lines {
        if !seen.insert(l.clone()) {
            dups.push(l.clone());
        }
    }
    (seen, dups)
}

#[test]
fn scan_lists_every_key_once() {
    let s = ShoalServer::start(&[]);
    let keys: Vec<String> = (0..20_000)
        .map(|i| {
            if i % 2 == 0 {
                format!("user:{i}")
            } else {
                format!("item:{i}")
            }
        })
        .collect();
    load_keys(&s, &keys);

    let all: BTreeSet<String> = keys.iter().cloned().collect();
    let (seen, dups) = scan_lines(&cli_ok(s.port, &["--scan"]));
    assert!(
        dups.is_empty(),
        "--scan listed {} keys twice: {:?}",
        dups.len(),
        &dups[..dups.len().min(10)]
    );
    assert_eq!(seen.len(), all.len());
    assert!(seen == all, "--scan key set differs from the keys written");

    let users: BTreeSet<String> = keys.iter().filter(|k| k.starts_with("user:1")).cloned().collect();
    let (seen, dups) = scan_lines(&cli_ok(s.port, &["--scan", "--pattern", "user:1*"]));
    assert!(dups.is_empty(), "--scan --pattern listed keys twice: {dups:?}");
    assert_eq!(seen, users);

    let (seen, dups) = scan_lines(&cli_ok(s.port, &["--scan", "--pattern", "item:*9"]));
    assert!(dups.is_empty());
    let want: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.starts_with("item:") && k.ends_with('9'))
        .cloned()
        .collect();
    assert_eq!(seen, want);

    let (seen, _) = scan_lines(&cli_ok(s.port, &["--scan", "--pattern", "nothing*"]));
    assert!(seen.is_empty());

    // --scan while another client keeps writing: every key that exists from start to end is listed (SCAN's
    // guarantee; duplicates are allowed then, as in Redis).
    let mut writer = RawConn::connect(s.port).unwrap();
    let handle = std::thread::spawn(move || {
        for i in 0..2_000 {
            let k = format!("late:{i}");
            if writer.command(&["SET", k.as_str(), "v"]).is_err() {
                break;
            }
        }
    });
    let (seen, _dups) = scan_lines(&cli_ok(s.port, &["--scan"]));
    handle.join().unwrap();
    assert!(
        all.is_subset(&seen),
        "--scan during writes missed keys that existed throughout"
    );
}
