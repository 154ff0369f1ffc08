//! Protocol abuse: oversized and negative lengths, huge array headers, unterminated input, garbage. Each framing
//! error gets Redis's exact `-ERR Protocol error: ...` reply and the connection is closed; the server and its other
//! clients carry on. Expected replies were taken from redis-server 7.0.15, and `edge_inputs_match_redis` checks
//! a wider set of inputs against a live redis-server.

use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use shoal_tests::resp::escape;
use shoal_tests::{RawConn, RedisServer, ShoalServer, TestServer};

/// How long to wait for a server to close a connection it should close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

fn err(text: &str) -> Vec<u8> {
    format!("-ERR Protocol error: {text}\r\n").into_bytes()
}

/// A long-lived connection that checks the server still serves other clients.
struct Bystander {
    conn: RawConn,
    n: u64,
}

impl Bystander {
    fn new(s: &TestServer) -> Bystander {
        let mut conn = s.raw();
        assert_eq!(conn.cmd(&["SET", "bystander", "0"]), b"+OK\r\n");
        Bystander { conn, n: 0 }
    }

    fn check(&mut self, s: &mut TestServer, after: &str) {
        assert!(s.is_running(), "the server died after {after}");
        self.n += 1;
        assert_eq!(
            self.conn.cmd(&["INCR", "bystander"]),
            format!(":{}\r\n", self.n).into_bytes(),
            "another client stopped being served after {after}"
        );
        // And a brand-new connection works too.
        let mut fresh = s.raw();
        assert_eq!(fresh.cmd(&["PING"]), b"+PONG\r\n", "new connections fail after {after}");
    }
}

/// Sends `input` on a fresh connection and returns what came back until the server closed it (or `wait` passed)
/// and whether it closed.
fn abuse(port: u16, input: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut c = RawConn::connect(port).expect("connect");
    // A server that closes early may reset the connection before everything is written: that is fine.
    let _ = c.send(input);
    c.read_to_close(wait)
}

/// Inputs whose reply and closing were checked against redis-server 7.0.15 and are asserted exactly.
fn known_cases() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>, Vec<u8>)> = vec![
        // Oversized bulk lengths: more than proto-max-bulk-len (512 MB).
        (
            "600 MB bulk length",
            b"*1\r\n$600000000\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        (
            "600 MB bulk length as a SET value",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        (
            "bulk length 512 MB + 1",
            b"*1\r\n$536870913\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        (
            "bulk length 2^63",
            b"*1\r\n$9223372036854775808\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        // Negative lengths.
        ("bulk length -1", b"*1\r\n$-1\r\n".to_vec(), err("invalid bulk length")),
        (
            "bulk length -5",
            b"*2\r\n$3\r\nGET\r\n$-5\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        // Array headers.
        (
            "array of 2^31 elements",
            b"*2147483648\r\n".to_vec(),
            err("invalid multibulk length"),
        ),
        (
            "array of 2^40 elements",
            b"*1099511627776\r\n".to_vec(),
            err("invalid multibulk length"),
        ),
        (
            "array of 2^63 elements",
            b"*9223372036854775808\r\n".to_vec(),
            err("invalid multibulk length"),
        ),
        // Unterminated lines longer than the 64 KB inline limit.
        (
            "unterminated inline command of 70000 bytes",
            vec![b'A'; 70_000],
            err("too big inline request"),
        ),
        (
            "unterminated array header of 70000 digits",
            [b"*".as_slice(), &vec![b'1'; 70_000]].concat(),
            err("too big mbulk count string"),
        ),
        (
            "unterminated bulk header of 70000 digits",
            [b"*1\r\n$".as_slice(), &vec![b'1'; 70_000]].concat(),
            err("too big bulk count string"),
        ),
        // Garbage where numbers or '$' belong.
        (
            "array header with letters",
            b"*abc\r\n".to_vec(),
            err("invalid multibulk length"),
        ),
        (
            "array header with binary garbage",
            b"*\x01\x02\xff\r\n".to_vec(),
            err("invalid multibulk length"),
        ),
        ("empty array header", b"*\r\n".to_vec(), err("invalid multibulk length")),
        (
            "array header with a plus sign",
            b"*+1\r\n$4\r\nPING\r\n".to_vec(),
            err("invalid multibulk length"),
        ),
        (
            "array header with a leading zero",
            b"*01\r\n$4\r\nPING\r\n".to_vec(),
            err("invalid multibulk length"),
        ),
        (
            "array header ended by a bare LF",
            b"*1\n$4\r\nPING\r\n".to_vec(),
            err("invalid multibulk length"),
        ),
        (
            "bulk header with letters",
            b"*1\r\n$abc\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        (
            "bulk header with binary garbage",
            b"*1\r\n$\xff\xfe\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        ("empty bulk header", b"*1\r\n$\r\n".to_vec(), err("invalid bulk length")),
        (
            "bulk header with a space",
            b"*1\r\n$ 4\r\nPING\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        (
            "bulk header with a leading zero",
            b"*1\r\n$04\r\nPING\r\n".to_vec(),
            err("invalid bulk length"),
        ),
        (
            "element that is not a bulk string",
            b"*1\r\nPING\r\n".to_vec(),
            err("expected '$', got 'P'"),
        ),
        (
            "element that is an integer",
            b"*2\r\n$4\r\nECHO\r\n:1\r\n".to_vec(),
            err("expected '$', got ':'"),
        ),
        (
            "element starting with a non-ASCII byte",
            b"*1\r\n\xc8junk\r\n".to_vec(),
            b"-ERR Protocol error: expected '$', got '\xc8'\r\n".to_vec(),
        ),
        (
            "inline command with unbalanced quotes",
            b"ECHO \"open\r\n".to_vec(),
            err("unbalanced quotes in request"),
        ),
        (
            "inline command with text after a closing quote",
            b"ECHO \"a\"b\r\n".to_vec(),
            err("unbalanced quotes in request"),
        ),
        // Commands before the error in the same read are still answered.
        (
            "valid commands pipelined before a bad length",
            b"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$-5\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
            [b"+PONG\r\n+PONG\r\n".as_slice(), &err("invalid bulk length")].concat(),
        ),
    ];
    v.shrink_to_fit();
    v
}

#[test]
fn protocol_errors_reply_exactly_and_close() {
    let mut s = ShoalServer::start(&[]);
    let mut by = Bystander::new(&s);
    let mut failures = Vec::new();
    for (what, input, want) in known_cases() {
        let (got, closed) = abuse(s.port, &input, CLOSE_TIMEOUT);
        if got != want || !closed {
            failures.push(format!(
                "{what}: sent {}\n    want: {} then close\n    got:  {}{}",
                escape(&input[..input.len().min(80)]),
                escape(&want),
                escape(&got),
                if closed {
                    " then close"
                } else {
                    " (connection left open)"
                }
            ));
        }
        by.check(&mut s, what);
    }
    assert!(
        failures.is_empty(),
        "protocol errors handled unlike Redis:\n{}",
        failures.join("\n")
    );
}

#[test]
fn negative_array_lengths_are_ignored() {
    // Redis skips a multibulk header of length <= 0 without a reply and keeps the connection.
    let s = ShoalServer::start(&[]);
    for input in [&b"*-1\r\n"[..], b"*-5\r\n", b"*0\r\n", b"*-2147483649\r\n"] {
        let mut c = s.raw();
        c.send(input).unwrap();
        assert_eq!(
            c.cmd(&["PING"]),
            b"+PONG\r\n",
            "after {} the connection should go on with no reply",
            escape(input)
        );
    }
}

#[test]
fn incomplete_requests_wait_and_disconnects_are_harmless() {
    let mut s = ShoalServer::start(&[]);
    let mut by = Bystander::new(&s);
    let partials: &[&[u8]] = &[
        b"*2147483647\r\n",      // the largest array accepted: no reply, waits for elements
        b"*1\r\n$536870912\r\n", // the largest bulk accepted (512 MB): waits for the payload
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nshort", // a payload cut short
        b"*1\r\n$4\r\nPI",
        b"*2\r\n$4\r\nECHO\r\n",
        b"PING", // inline without its newline
        b"*1",
        b"*1\r\n$4",
    ];
    for input in partials {
        // The server waits for the rest: nothing comes back, the connection stays open.
        let mut c = s.raw();
        c.send(input).unwrap();
        let (got, closed) = c.read_to_close(Duration::from_millis(300));
        assert!(
            got.is_empty() && !closed,
            "incomplete request {} got {} (closed: {closed})",
            escape(input),
            escape(&got)
        );
        // Then the client goes away half-way (write side first, then entirely).
        c.shutdown_write();
        let (got, closed) = c.read_to_close(CLOSE_TIMEOUT);
        assert!(got.is_empty(), "reply to a half-sent request: {}", escape(&got));
        assert!(closed, "the server kept a connection open after the client's EOF");
        by.check(&mut s, &escape(input));
    }
    // Huge declared sizes must not be allocated up front: many such connections at once stay cheap.
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut c = s.raw();
        c.send(b"*2147483647\r\n$536870912\r\n").unwrap();
        held.push(c);
    }
    by.check(&mut s, "50 connections announcing 2^31 elements of 512 MB");
    if let Some(rss) = rss_kib(s.pid()) {
        assert!(
            rss < 512 * 1024,
            "resident memory is {rss} KiB with 50 connections that announced 512 MB arguments"
        );
    }
    drop(held);
    by.check(&mut s, "dropping them");
}

/// VmRSS of a process, in KiB (Linux only).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Inputs with uncertain handling: whatever redis-server does (reply bytes, closing or not within the wait),
/// shoal-server must do the same.
fn edge_inputs() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = known_cases().into_iter().map(|(_, i, _)| i).collect();
    let more: &[&[u8]] = &[
        b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n", // bulk payload not followed by CRLF
        b"*1\r\n$0\r\n\r\n",                       // empty command name
        b"\r\n\r\n*1\r\n$4\r\nPING\r\n",           // empty inline lines are skipped
        b"PING\n",                                 // inline ended by LF only
        b"PING\r\nPING\nECHO x\r\n",
        b"   \r\nPING\r\n",
        b"ECHO \"\\x41\\n\"\r\n",
        b"SET k v\r\nGET k\r\n",
        b"*1\r\n$4\r\nPING\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
        b"*1\r\n\r\n",                         // an element line that is empty
        b"*1\r\n$4\r\nPING\r\n$4\r\nPING\r\n", // a bulk string at top level is read inline
        b"$\r\n",
        b"-ERR\r\n",
        b":1\r\n",
        b"+PING\r\n",
        b"\x00\x01\x02\r\n",
        b"*1\r\n$4\r\nPING\r\n\x00",
        b"*1\r\n$2147483648\r\n",
        b"*1\r\n$-2147483649\r\n",
        b"*1\r\n$0x10\r\n",
        b"*1\r\n$1e3\r\n",
        b"*0x10\r\n",
        b"*1e3\r\n",
        b"*1 \r\n$4\r\nPING\r\n",
        b"* 1\r\n$4\r\nPING\r\n",
        b"*2\r\n$4\r\nECHO\r\n*1\r\n$1\r\nx\r\n", // nested array
        b"*1\r\n$4\r\nPING\r\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nabc\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    ];
    v.extend(more.iter().map(|x| x.to_vec()));
    v
}

#[test]
fn edge_inputs_match_redis() {
    let mut shoal = ShoalServer::start(&[]);
    let redis = RedisServer::start(&[]);
    let mut by = Bystander::new(&shoal);
    let wait = Duration::from_millis(400);
    let inputs = edge_inputs();
    let mut diffs = Vec::new();
    for input in &inputs {
        let (rp, sp) = (redis.port, shoal.port);
        let i1 = input.clone();
        // Both at once: inputs that leave the connection open cost the wait only once.
        let rt = thread::spawn(move || abuse(rp, &i1, wait));
        let s_res = abuse(sp, input, wait);
        let r_res = rt.join().unwrap();
        if r_res != s_res {
            diffs.push(format!(
                "sent {}\n    redis: {}{}\n    shoal: {}{}",
                escape(&input[..input.len().min(80)]),
                escape(&r_res.0),
                if r_res.1 { " then close" } else { " (open)" },
                escape(&s_res.0),
                if s_res.1 { " then close" } else { " (open)" },
            ));
        }
        by.check(&mut shoal, &escape(&input[..input.len().min(80)]));
    }
    assert!(
        diffs.is_empty(),
        "{} of {} inputs handled unlike redis-server:\n{}",
        diffs.len(),
        inputs.len(),
        diffs.join("\n")
    );
}

/// Random bytes, some shaped like RESP: whatever the server replies, it must not crash, hang other clients or
/// keep a connection whose client has gone.
#[test]
fn random_garbage_never_kills_the_server() {
    let mut s = ShoalServer::start(&[]);
    let mut by = Bystander::new(&s);
    let seed: u64 = std::env::var("ABUSE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("random garbage seed: {seed} (rerun with ABUSE_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let prefixes: &[&[u8]] = &[
        b"",
        b"*",
        b"$",
        b"*1\r\n$",
        b"*2\r\n$3\r\nGET\r\n",
        b"*1\r\n",
        b"\r\n",
        b"+",
        b":",
    ];
    let start = Instant::now();
    let mut sent = 0;
    for i in 0..300 {
        if start.elapsed() > Duration::from_secs(15) {
            break;
        }
        let len = match rng.random_range(0..4) {
            0 => rng.random_range(1..16),
            1 => rng.random_range(16..512),
            2 => rng.random_range(512..8192),
            _ => rng.random_range(8192..100_000),
        };
        let mut data = prefixes[rng.random_range(0..prefixes.len())].to_vec();
        let body_start = data.len();
        data.resize(body_start + len, 0);
        rng.fill_bytes(&mut data[body_start..]);
        // Random bytes spell an inline command only by a tiny chance; defuse the words that could stop the
        // server or drop the bystander's data legitimately anyway.
        for pos in 0..data.len().saturating_sub(4) {
            let w = data[pos..pos + 5].to_ascii_uppercase();
            if w == b"SHUTD" || w == b"FLUSH" || w == b"DEBUG" || w.starts_with(b"DEL") || w.starts_with(b"SET") {
                data[pos] = b'#';
            }
        }
        let mut c = RawConn::connect(s.port).expect("connect");
        let _ = c.send(&data);
        c.shutdown_write();
        let (_, closed) = c.read_to_close(CLOSE_TIMEOUT);
        assert!(
            closed,
            "seed {seed}, input {i}: the server did not close the connection after the client's EOF"
        );
        sent += 1;
        if i % 10 == 0 {
            by.check(&mut s, &format!("random input {i} (seed {seed})"));
        }
    }
    by.check(&mut s, "random garbage");
    assert!(sent >= 50, "only {sent} random inputs within the time limit");
}
