//! The partition tool of the chaos tests, checked on real processes: a replica cut off from its primary loses
//! its link while the test (a client) still reaches both, and the link comes back when the cut heals.

use std::time::{Duration, Instant};

use shoal_tests::netcut::{self, NetCut, Side};
use shoal_tests::RedisServer;

fn link_status(conn: &mut shoal_tests::RawConn) -> String {
    let info = String::from_utf8_lossy(&conn.cmd(&["INFO", "replication"])).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("master_link_status:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn wait_for(conn: &mut shoal_tests::RawConn, want: &str) -> Duration {
    let t = Instant::now();
    while link_status(conn) != want {
        assert!(t.elapsed() < Duration::from_secs(30), "link never became {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

#[test]
fn a_cut_breaks_links_between_servers_but_not_to_clients() {
    if let Err(why) = netcut::available() {
        panic!("partition tests need root, cgroup2 and iptables: {why}");
    }
    let primary = RedisServer::start(&[]);
    let replica = RedisServer::start(&["--repl-timeout", "2"]);
    let mut r = replica.raw();
    let port = primary.port.to_string();
    assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    wait_for(&mut r, "up");
    let mut cut = NetCut::between(
        &Side {
            pids: vec![primary.pid()],
            ports: vec![primary.port],
        },
        &Side {
            pids: vec![replica.pid()],
            ports: vec![replica.port],
        },
    )
    .expect("cut the network");
    let took = wait_for(&mut r, "down");
    // The test process is in neither group: both servers still answer it.
    assert_eq!(primary.raw().cmd(&["PING"]), b"+PONG\r\n");
    assert_eq!(r.cmd(&["PING"]), b"+PONG\r\n");
    cut.heal();
    let back = wait_for(&mut r, "up");
    eprintln!("link down {took:?} after the cut, up again {back:?} after healing");
}
