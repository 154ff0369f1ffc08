//! The partition tool of the chaos tests, checked on real processes (the real redis-server, a primary and its
//! replica), while the test (a client, in neither side) still reaches both:
//!
//! * a replication link established before the cut stops carrying writes (the replica's `repl-timeout` is 60 s,
//!   so it never notices the cut by itself and reconnects: what stops the writes is the cut of the existing
//!   connection), and carries them again after healing;
//! * a replication link the replica tries to open during the cut does not come up, and does after healing.
//!
//! Every wait is bounded in time and count; the only processes signalled are the servers these tests started.

use std::thread;
use std::time::{Duration, Instant};

use shoal_tests::netcut::{self, NetCut, Side};
use shoal_tests::{RawConn, RedisServer, TestServer};

/// How long the replica is watched during a cut, for a write that must not reach it.
const CUT_WATCH: Duration = Duration::from_millis(1500);
/// How long a link may take to come back (with the write) after healing: TCP retransmissions back off, and a
/// SYN is retried after 1, 3, 7, 15 s.
const HEAL_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

fn require_netcut() {
    if let Err(why) = netcut::available() {
        panic!("partition tests need root, cgroup2 and iptables: {why}");
    }
}

fn link_status(conn: &mut RawConn) -> String {
    let info = String::from_utf8_lossy(&conn.cmd(&["INFO", "replication"])).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("master_link_status:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The raw reply of GET `key` (`$-1\r\n` when the key is missing).
fn get(conn: &mut RawConn, key: &str) -> Vec<u8> {
    conn.cmd(&["GET", key])
}

/// Polls `cond` every [`POLL`] until it holds; how long it took, or a panic naming `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    let max_polls = limit.as_millis() / POLL.as_millis() + 1;
    for _ in 0..max_polls {
        if cond() {
            return t.elapsed();
        }
        assert!(t.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        thread::sleep(POLL);
    }
    panic!("gave up after {max_polls} polls waiting for {what}");
}

/// Asserts `cond` holds at every poll during [`CUT_WATCH`]; the number of polls.
fn holds_during_cut(what: &str, mut cond: impl FnMut() -> bool) -> usize {
    let t = Instant::now();
    let max_polls = CUT_WATCH.as_millis() / POLL.as_millis() + 1;
    let mut polls = 0;
    while t.elapsed() < CUT_WATCH && (polls as u128) < max_polls {
        polls += 1;
        assert!(cond(), "{what} ({} ms into the cut)", t.elapsed().as_millis());
        thread::sleep(POLL);
    }
    polls
}

fn cut_between(primary: &TestServer, replica: &TestServer) -> NetCut {
    NetCut::between(
        &Side {
            pids: vec![primary.pid()],
            ports: vec![primary.port],
        },
        &Side {
            pids: vec![replica.pid()],
            ports: vec![replica.port],
        },
    )
    .expect("cut the network")
}

#[test]
fn a_cut_breaks_links_between_servers_but_not_to_clients() {
    require_netcut();
    let primary = RedisServer::start(&[]);
    // The replica would not notice a silent link for a minute: only the cut itself can stop the writes.
    let replica = RedisServer::start(&["--repl-timeout", "60"]);
    let mut p = primary.raw();
    let mut r = replica.raw();
    let port = primary.port.to_string();
    assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    wait_until(HEAL_TIMEOUT, "the replication link to come up", || {
        link_status(&mut r) == "up"
    });
    // The link carries writes before the cut.
    assert_eq!(p.cmd(&["SET", "before", "1"]), b"+OK\r\n");
    wait_until(HEAL_TIMEOUT, "the write made before the cut on the replica", || {
        get(&mut r, "before") == b"$1\r\n1\r\n"
    });

    let mut cut = cut_between(&primary, &replica);
    assert!(
        cut.established() >= 1,
        "the replication link was open, yet the cut found no connection between the servers"
    );
    eprintln!(
        "{} established connections cut: {:?}",
        cut.established(),
        cut.established_connections()
    );
    // The test process is in neither group: both servers still answer it, and the primary takes writes.
    assert_eq!(p.cmd(&["PING"]), b"+PONG\r\n");
    assert_eq!(r.cmd(&["PING"]), b"+PONG\r\n");
    assert_eq!(p.cmd(&["SET", "during", "2"]), b"+OK\r\n");
    let polls = holds_during_cut("the write made during the cut reached the replica", || {
        get(&mut r, "during") == b"$-1\r\n"
    });
    let status = link_status(&mut r);
    eprintln!("the write stayed off the replica for {CUT_WATCH:?} ({polls} polls); its link status: {status}");

    cut.heal();
    let back = wait_until(
        HEAL_TIMEOUT,
        "the write made during the cut on the replica after healing",
        || get(&mut r, "during") == b"$1\r\n2\r\n",
    );
    eprintln!("the write reached the replica {back:?} after healing");
    assert_eq!(link_status(&mut r), "up");
}

#[test]
fn a_cut_stops_links_opened_during_it() {
    require_netcut();
    let primary = RedisServer::start(&[]);
    let replica = RedisServer::start(&["--repl-timeout", "60"]);
    let mut p = primary.raw();
    let mut r = replica.raw();
    assert_eq!(p.cmd(&["SET", "k", "1"]), b"+OK\r\n");

    let mut cut = cut_between(&primary, &replica);
    assert_eq!(cut.established(), 0, "{:?}", cut.established_connections());
    // The replica's connection to its primary is opened during the cut, from a socket in the cut-off group.
    let port = primary.port.to_string();
    assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    let polls = holds_during_cut("the replica synced with its primary during the cut", || {
        link_status(&mut r) != "up" && get(&mut r, "k") == b"$-1\r\n"
    });
    assert_eq!(p.cmd(&["PING"]), b"+PONG\r\n");
    eprintln!("the replica stayed unsynced for {CUT_WATCH:?} ({polls} polls)");

    cut.heal();
    let back = wait_until(HEAL_TIMEOUT, "the replica to sync after healing", || {
        link_status(&mut r) == "up" && get(&mut r, "k") == b"$1\r\n1\r\n"
    });
    eprintln!("the replica synced {back:?} after healing");
}
