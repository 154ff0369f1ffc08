//! Replication between real servers: a full sync of a million keys while writes go on, partial resyncs after a
//! killed link and after a promotion, expiry driven by the primary, read-only replicas, WAIT, and
//! `min-replicas-to-ack`. Texts and INFO fields are compared with a real Redis primary and replica.
//!
//! Every wait is bounded; processes are stopped (SIGSTOP) and killed only by the pids of servers these tests
//! started.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_tests::{encode_command, split_aggregate, RawConn, RedisServer, ShoalServer, TestServer};

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling a server process this test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Stops a server process (SIGSTOP) and waits until it is stopped: its connections stay open, it answers
/// nothing.
fn freeze(pid: u32) {
    signal(pid, libc::SIGSTOP);
    wait_for(Duration::from_secs(5), "the process to stop", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
            .unwrap_or(false)
    });
}

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// A bulk string reply's text.
fn bulk_text(reply: &[u8]) -> String {
    text(&shoal_tests::resp::as_str(reply).unwrap_or_else(|| panic!("not a bulk string: {}", text(reply))))
}

fn int(reply: &[u8]) -> i64 {
    let t = text(reply);
    t.trim()
        .strip_prefix(':')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {t:?}"))
}

/// The fields of an INFO section, in order.
fn info(conn: &mut RawConn, section: &str) -> Vec<(String, String)> {
    let reply = text(&conn.cmd(&["INFO", section]));
    reply
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| !k.starts_with('$') && !k.starts_with('#'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn field(conn: &mut RawConn, section: &str, name: &str) -> String {
    info(conn, section)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in INFO {section}"))
}

fn num(conn: &mut RawConn, section: &str, name: &str) -> i64 {
    field(conn, section, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// Polls `cond` every 10 ms until it holds, or panics after `limit` naming `what`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// Makes `replica` follow `primary` and waits until its link is up.
fn follow(replica: &TestServer, primary: &TestServer) -> Duration {
    let mut c = replica.raw();
    let port = primary.port.to_string();
    assert_eq!(c.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    wait_for(Duration::from_secs(30), "the replica's link to come up", || {
        field(&mut c, "replication", "master_link_status") == "up"
            && field(&mut c, "replication", "master_sync_in_progress") == "0"
    })
}

/// Waits until `replica` has applied everything `primary` has written.
fn caught_up(primary: &TestServer, replica: &TestServer) {
    let mut p = primary.raw();
    let mut r = replica.raw();
    wait_for(Duration::from_secs(20), "the replica to catch up", || {
        num(&mut p, "replication", "master_repl_offset") == num(&mut r, "replication", "slave_repl_offset")
    });
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Loads `n` keys `key:<i>` with 32-byte values (every tenth with a TTL of an hour), pipelined.
fn load(server: &TestServer, n: usize) {
    const BATCH: usize = 10_000;
    let mut c = server.raw();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let mut buf = Vec::with_capacity(BATCH * 80);
        for k in i..end {
            let key = format!("key:{k}");
            let value = format!("value-{k:026}");
            if k % 10 == 0 {
                buf.extend_from_slice(&encode_command(&["SET", &key, &value, "EX", "3600"]));
            } else {
                buf.extend_from_slice(&encode_command(&["SET", &key, &value]));
            }
        }
        c.send(&buf).expect("send batch");
        for _ in i..end {
            assert_eq!(c.read_reply().expect("SET reply"), b"+OK\r\n");
        }
        i = end;
    }
}

/// MGET of `keys` as raw replies.
fn mget(conn: &mut RawConn, keys: &[String]) -> Vec<u8> {
    let mut args = vec!["MGET".to_owned()];
    args.extend(keys.iter().cloned());
    conn.command(&args).expect("MGET")
}

#[test]
fn a_full_sync_of_a_million_keys_arrives_intact_while_writes_go_on() {
    const KEYS: usize = 1_000_000;
    let primary = ShoalServer::start(&[]);
    let replica = ShoalServer::start(&[]);
    let load_started = Instant::now();
    load(&primary, KEYS);
    let load_time = load_started.elapsed();
    let rss_before = rss_kib(primary.pid());

    // Writes during the sync: overwrites, deletes, counters and new keys, from another thread.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let mut c = primary.raw();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut buf = Vec::new();
                for j in 0..100u64 {
                    let k = (rounds * 7919 + j * 104_729) % KEYS as u64;
                    buf.extend_from_slice(&encode_command(&["SET", &format!("key:{k}"), &format!("new-{rounds}")]));
                    buf.extend_from_slice(&encode_command(&["DEL", &format!("key:{}", (k + 1) % KEYS as u64)]));
                    buf.extend_from_slice(&encode_command(&["INCR", "counter"]));
                    buf.extend_from_slice(&encode_command(&["APPEND", "log", "x"]));
                    buf.extend_from_slice(&encode_command(&["SET", &format!("during:{rounds}:{j}"), "v"]));
                }
                c.send(&buf).expect("send writes");
                for _ in 0..500 {
                    let r = c.read_reply().expect("write reply");
                    assert!(!r.starts_with(b"-"), "write failed: {}", text(&r));
                }
                rounds += 1;
            }
            rounds
        })
    };
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let (peak, stop, pid) = (peak.clone(), stop.clone(), primary.pid());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let sync_time = follow(&replica, &primary);
    // Keep writing a little after the sync too: the stream must carry on.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().expect("writer");
    sampler.join().expect("sampler");
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);

    let mut p = primary.raw();
    let mut r = replica.raw();
    caught_up(&primary, &replica);
    let dbsize = int(&p.cmd(&["DBSIZE"]));
    assert_eq!(int(&r.cmd(&["DBSIZE"])), dbsize, "DBSIZE differs");
    assert_eq!(r.cmd(&["GET", "counter"]), p.cmd(&["GET", "counter"]));
    assert_eq!(r.cmd(&["GET", "log"]), p.cmd(&["GET", "log"]));
    // A sample of values, every 197th key.
    let sample: Vec<String> = (0..KEYS).step_by(197).map(|k| format!("key:{k}")).collect();
    for chunk in sample.chunks(1000) {
        assert_eq!(mget(&mut r, chunk), mget(&mut p, chunk), "values differ");
    }
    // A SCAN of a few thousand keys of the replica, compared with the primary (values and TTLs).
    let mut cursor = "0".to_owned();
    let mut scanned = BTreeSet::new();
    while scanned.len() < 5000 {
        let reply = r.cmd(&["SCAN", &cursor, "COUNT", "1000"]);
        let (_, parts) = split_aggregate(&reply).expect("SCAN reply");
        cursor = bulk_text(&parts[0]);
        let (_, found) = split_aggregate(&parts[1]).expect("SCAN keys");
        scanned.extend(found.iter().map(|k| bulk_text(k)));
        if cursor == "0" {
            break;
        }
    }
    let keys: Vec<String> = scanned.into_iter().collect();
    assert!(keys.len() >= 5000, "scanned only {} keys", keys.len());
    for chunk in keys.chunks(1000) {
        assert_eq!(mget(&mut r, chunk), mget(&mut p, chunk), "scanned values differ");
    }
    for k in keys.iter().filter(|k| k.ends_with('0')).take(200) {
        assert_eq!(r.cmd(&["PEXPIRETIME", k]), p.cmd(&["PEXPIRETIME", k]), "expiry of {k}");
    }
    eprintln!(
        "full sync of {KEYS} keys: loaded in {load_time:?}; replica up {sync_time:?} after REPLICAOF, \
         with {rounds} rounds of 500 writes going on; primary RSS {} MiB before, peak {} MiB during \
         (+{} MiB); DBSIZE {dbsize}",
        rss_before / 1024,
        peak / 1024,
        peak.saturating_sub(rss_before) / 1024
    );
    assert!(rounds > 0, "no write went through during the sync");
    // No second copy of the data: the overhead stays far below the data's own size.
    assert!(
        peak.saturating_sub(rss_before) < rss_before / 2,
        "primary RSS grew from {rss_before} KiB to {peak} KiB during the sync"
    );
}

#[test]
fn a_killed_replica_link_resumes_with_a_partial_resync() {
    let primary = ShoalServer::start(&[]);
    let replica = ShoalServer::start(&[]);
    let mut p = primary.raw();
    assert_eq!(p.cmd(&["SET", "before", "1"]), b"+OK\r\n");
    follow(&replica, &primary);
    let full = num(&mut p, "stats", "sync_full");
    assert_eq!(full, 1);
    assert_eq!(int(&p.cmd(&["CLIENT", "KILL", "TYPE", "replica"])), 1);
    // Written while the link is down: it must come from the backlog.
    assert_eq!(p.cmd(&["SET", "during", "2"]), b"+OK\r\n");
    let mut r = replica.raw();
    wait_for(Duration::from_secs(10), "a partial resync", || {
        num(&mut p, "stats", "sync_partial_ok") == 1
    });
    assert_eq!(num(&mut p, "stats", "sync_full"), full, "no second full sync");
    caught_up(&primary, &replica);
    assert_eq!(r.cmd(&["GET", "during"]), b"$1\r\n2\r\n");
    // The replica's side of the link, killed there: the same.
    assert_eq!(int(&r.cmd(&["CLIENT", "KILL", "TYPE", "master"])), 1);
    assert_eq!(p.cmd(&["SET", "after", "3"]), b"+OK\r\n");
    wait_for(Duration::from_secs(10), "a second partial resync", || {
        num(&mut p, "stats", "sync_partial_ok") == 2
    });
    caught_up(&primary, &replica);
    assert_eq!(r.cmd(&["GET", "after"]), b"$1\r\n3\r\n");
    assert_eq!(num(&mut p, "stats", "sync_full"), full);
    assert!(text(&p.cmd(&["CLIENT", "LIST", "TYPE", "replica"])).contains("flags=S"));
    assert!(text(&r.cmd(&["CLIENT", "LIST", "TYPE", "master"])).contains("flags=M"));
}

#[test]
fn expiry_on_a_replica_follows_the_primary() {
    let primary = ShoalServer::start(&["--enable-debug-command", "yes"]);
    let replica = ShoalServer::start(&[]);
    follow(&replica, &primary);
    let mut p = primary.raw();
    let mut r = replica.raw();
    // TTLs travel as absolute times.
    assert_eq!(p.cmd(&["SET", "long", "v", "EX", "1000"]), b"+OK\r\n");
    assert_eq!(p.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(int(&p.cmd(&["PEXPIRE", "k", "100000"])), 1);
    caught_up(&primary, &replica);
    assert_eq!(r.cmd(&["PEXPIRETIME", "long"]), p.cmd(&["PEXPIRETIME", "long"]));
    assert_eq!(r.cmd(&["PEXPIRETIME", "k"]), p.cmd(&["PEXPIRETIME", "k"]));

    // With the primary's active expiry off, a key past its time is hidden on the replica but stays there
    // until the primary deletes it.
    assert_eq!(p.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), b"+OK\r\n");
    assert_eq!(p.cmd(&["SET", "short", "v", "PX", "100"]), b"+OK\r\n");
    caught_up(&primary, &replica);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.cmd(&["GET", "short"]), b"$-1\r\n");
    assert_eq!(int(&r.cmd(&["EXISTS", "short"])), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        int(&r.cmd(&["DBSIZE"])),
        3,
        "the replica deleted an expired key on its own"
    );
    // The primary's lazy expiry deletes it, and the replica follows.
    assert_eq!(p.cmd(&["GET", "short"]), b"$-1\r\n");
    wait_for(Duration::from_secs(5), "the DEL to reach the replica", || {
        int(&r.cmd(&["DBSIZE"])) == 2
    });

    // Active expiry on the primary, likewise.
    assert_eq!(p.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]), b"+OK\r\n");
    assert_eq!(p.cmd(&["SET", "gone", "v", "PX", "50"]), b"+OK\r\n");
    caught_up(&primary, &replica);
    wait_for(Duration::from_secs(5), "active expiry to reach the replica", || {
        int(&r.cmd(&["DBSIZE"])) == 2 && int(&p.cmd(&["DBSIZE"])) == 2
    });
    assert_eq!(
        num(&mut r, "stats", "expired_keys"),
        0,
        "the replica expired keys itself"
    );
}

#[test]
fn a_replica_refuses_writes_and_wait_like_redis() {
    let shoal_primary = ShoalServer::start(&[]);
    let shoal_replica = ShoalServer::start(&[]);
    follow(&shoal_replica, &shoal_primary);
    let redis_primary = RedisServer::start(&[]);
    let redis_replica = RedisServer::start(&[]);
    follow(&redis_replica, &redis_primary);
    for cmd in [
        vec!["SET", "k", "v"],
        vec!["INCR", "n"],
        vec!["DEL", "k"],
        vec!["FLUSHALL"],
        vec!["WAIT", "0", "0"],
        vec!["REPLICAOF", "127.0.0.1", "notaport"],
        vec!["REPLCONF", "foo", "bar"],
        vec!["REPLCONF", "listening-port"],
        vec!["GET", "missing"],
    ] {
        let want = redis_replica.raw().cmd(&cmd);
        let got = shoal_replica.raw().cmd(&cmd);
        assert_eq!(text(&got), text(&want), "{cmd:?}");
    }
    // Already following: Redis's status reply.
    let want = redis_replica
        .raw()
        .cmd(&["REPLICAOF", "127.0.0.1", &redis_primary.port.to_string()]);
    let got = shoal_replica
        .raw()
        .cmd(&["REPLICAOF", "127.0.0.1", &shoal_primary.port.to_string()]);
    assert_eq!(text(&got), text(&want));
    assert_eq!(text(&got), "+OK Already connected to specified master\r\n");
}

/// A reply's types, nested: `[$,:,[[$,$,$]]]`.
fn shape(reply: &[u8]) -> String {
    match split_aggregate(reply) {
        Some((_, elems)) => format!("[{}]", elems.iter().map(|e| shape(e)).collect::<Vec<_>>().join(",")),
        None => reply.first().map(|&b| char::from(b).to_string()).unwrap_or_default(),
    }
}

/// The names of INFO replication's fields, with the `slaveN` lines reduced to their keys.
fn field_names(conn: &mut RawConn) -> Vec<String> {
    info(conn, "replication")
        .into_iter()
        .map(|(k, v)| {
            if k.starts_with("slave") && v.starts_with("ip=") {
                let keys: Vec<&str> = v
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, _)| k)
                    .collect();
                format!("{k}:{}", keys.join(","))
            } else {
                k
            }
        })
        .collect()
}

#[test]
fn info_replication_and_role_have_redis_fields_and_shapes() {
    let sp = ShoalServer::start(&[]);
    let sr = ShoalServer::start(&[]);
    let rp = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    let rr = RedisServer::start(&[]);
    follow(&sr, &sp);
    follow(&rr, &rp);
    assert_eq!(sp.raw().cmd(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(rp.raw().cmd(&["SET", "k", "v"]), b"+OK\r\n");
    for (s, r) in [(&sp, &rp), (&sr, &rr)] {
        let mut sc = s.raw();
        let mut rc = r.raw();
        // The replica shows up online once it has acknowledged (every second).
        wait_for(Duration::from_secs(5), "acknowledgements", || {
            !text(&rc.cmd(&["INFO", "replication"])).contains("offset=0,")
                && !text(&sc.cmd(&["INFO", "replication"])).contains("offset=0,")
        });
        assert_eq!(field_names(&mut sc), field_names(&mut rc));
        let (srole, rrole) = (sc.cmd(&["ROLE"]), rc.cmd(&["ROLE"]));
        // Same shape: the same reply types in the same places (values differ: ports, offsets).
        assert_eq!(
            shape(&srole),
            shape(&rrole),
            "ROLE {} vs {}",
            text(&srole),
            text(&rrole)
        );
        // And the same role names.
        let first = |r: &[u8]| split_aggregate(r).map(|(_, e)| text(&e[0]));
        assert_eq!(first(&srole), first(&rrole));
    }
    let mut sc = sp.raw();
    let line = info(&mut sc, "replication")
        .into_iter()
        .find(|(k, _)| k == "slave0")
        .map(|(_, v)| v)
        .expect("slave0");
    assert!(
        line.starts_with(&format!("ip=127.0.0.1,port={},state=online,offset=", sr.port)),
        "{line}"
    );
    let mut rc = sr.raw();
    assert_eq!(field(&mut rc, "replication", "role"), "slave");
    assert_eq!(field(&mut rc, "replication", "master_port"), sp.port.to_string());
    assert_eq!(
        field(&mut rc, "replication", "master_replid"),
        field(&mut sc, "replication", "master_replid")
    );
}

#[test]
fn wait_counts_only_replicas_that_acknowledged() {
    let alone = ShoalServer::start(&[]);
    let mut a = alone.raw();
    assert_eq!(a.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    let started = Instant::now();
    assert_eq!(int(&a.cmd(&["WAIT", "1", "200"])), 0);
    assert!(started.elapsed() >= Duration::from_millis(190), "WAIT returned early");

    let primary = ShoalServer::start(&[]);
    let replica = ShoalServer::start(&[]);
    follow(&replica, &primary);
    let mut p = primary.raw();
    for i in 0..100 {
        assert_eq!(p.cmd(&["SET", &format!("k{i}"), "v"]), b"+OK\r\n");
    }
    let started = Instant::now();
    assert_eq!(int(&p.cmd(&["WAIT", "1", "5000"])), 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "WAIT took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(int(&p.cmd(&["WAIT", "2", "300"])), 1);
    assert!(started.elapsed() >= Duration::from_millis(290));

    // A replica that is connected but stopped confirms nothing: it does not count.
    freeze(replica.pid());
    assert_eq!(p.cmd(&["SET", "while-stopped", "v"]), b"+OK\r\n");
    let waited = int(&p.cmd(&["WAIT", "1", "300"]));
    signal(replica.pid(), libc::SIGCONT);
    assert_eq!(waited, 0, "a stopped replica was counted");
    assert_eq!(int(&p.cmd(&["WAIT", "1", "5000"])), 1);
    // Other clients are not blocked by a client in WAIT.
    let mut blocked = primary.raw();
    blocked.send_command(&["WAIT", "5", "1000"]).expect("send WAIT");
    let started = Instant::now();
    assert_eq!(p.cmd(&["PING"]), b"+PONG\r\n");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(int(&blocked.read_reply().expect("WAIT reply")), 1);
}

#[test]
fn promotion_lets_a_chained_replica_continue_from_the_new_primary() {
    let p = ShoalServer::start(&[]);
    let a = ShoalServer::start(&[]);
    let b = ShoalServer::start(&[]);
    let mut pc = p.raw();
    assert_eq!(pc.cmd(&["SET", "from-p", "1"]), b"+OK\r\n");
    follow(&a, &p);
    follow(&b, &a);
    assert_eq!(pc.cmd(&["SET", "through-a", "2"]), b"+OK\r\n");
    caught_up(&p, &a);
    caught_up(&a, &b);
    let mut ac = a.raw();
    let mut bc = b.raw();
    assert_eq!(bc.cmd(&["GET", "through-a"]), b"$1\r\n2\r\n");
    let old_id = field(&mut ac, "replication", "master_replid");
    let full_on_a = num(&mut ac, "stats", "sync_full");

    assert_eq!(ac.cmd(&["REPLICAOF", "NO", "ONE"]), b"+OK\r\n");
    assert_eq!(field(&mut ac, "replication", "role"), "master");
    assert_eq!(field(&mut ac, "replication", "master_replid2"), old_id);
    let new_id = field(&mut ac, "replication", "master_replid");
    assert_ne!(new_id, old_id);
    assert_eq!(ac.cmd(&["SET", "on-a", "3"]), b"+OK\r\n");
    wait_for(Duration::from_secs(10), "B to continue from A", || {
        num(&mut ac, "stats", "sync_partial_ok") >= 1 && field(&mut bc, "replication", "master_link_status") == "up"
    });
    caught_up(&a, &b);
    assert_eq!(num(&mut ac, "stats", "sync_full"), full_on_a, "B needed a full sync");
    assert_eq!(bc.cmd(&["GET", "on-a"]), b"$1\r\n3\r\n");
    assert_eq!(bc.cmd(&["GET", "from-p"]), b"$1\r\n1\r\n");
    assert_eq!(field(&mut bc, "replication", "master_replid"), new_id);
    assert_eq!(field(&mut bc, "replication", "master_replid2"), old_id);
}

#[test]
fn min_replicas_to_ack_acknowledges_writes_only_once_a_replica_has_them() {
    let primary = ShoalServer::start(&["--min-replicas-to-ack", "1", "--min-replicas-ack-timeout", "300"]);
    let mut p = primary.raw();
    // No replica: the write times out.
    let started = Instant::now();
    assert_eq!(
        text(&p.cmd(&["SET", "k", "v"])),
        "-NOREPLICAS Not enough good replicas to write.\r\n"
    );
    assert!(started.elapsed() >= Duration::from_millis(290));
    // Reads are not held.
    let started = Instant::now();
    assert_eq!(p.cmd(&["GET", "nothing"]), b"$-1\r\n");
    assert!(started.elapsed() < Duration::from_millis(200));

    let replica = ShoalServer::start(&[]);
    follow(&replica, &primary);
    assert_eq!(p.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    // A pipeline: one wait for the whole batch.
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend_from_slice(&encode_command(&["SET", &format!("p{i}"), "v"]));
    }
    let started = Instant::now();
    p.send(&batch).expect("send");
    for _ in 0..1000 {
        assert_eq!(p.read_reply().expect("reply"), b"+OK\r\n");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut r = replica.raw();
    assert_eq!(
        r.cmd(&["GET", "p999"]),
        b"$1\r\nv\r\n",
        "acknowledged but not on the replica"
    );

    // The only replica stopped: writes are not acknowledged; a read in the same pipeline still answers.
    freeze(replica.pid());
    let mut batch = encode_command(&["SET", "x", "1"]);
    batch.extend_from_slice(&encode_command(&["GET", "k"]));
    batch.extend_from_slice(&encode_command(&["SET", "k", "v2", "NX"]));
    batch.extend_from_slice(&encode_command(&["INCR", "n"]));
    p.send(&batch).expect("send");
    let replies: Vec<String> = (0..4).map(|_| text(&p.read_reply().expect("reply"))).collect();
    signal(replica.pid(), libc::SIGCONT);
    assert_eq!(
        replies,
        [
            "-NOREPLICAS Not enough good replicas to write.\r\n",
            "$1\r\nv\r\n",
            // SET NX on an existing key changed nothing, so it needed no acknowledgement.
            "$-1\r\n",
            "-NOREPLICAS Not enough good replicas to write.\r\n",
        ]
    );
    assert_eq!(p.cmd(&["SET", "y", "2"]), b"+OK\r\n");
}

#[test]
fn replicaof_from_startup_flags_and_config() {
    let primary = ShoalServer::start(&[]);
    let mut p = primary.raw();
    assert_eq!(p.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    let port = primary.port.to_string();
    let replica = ShoalServer::start(&["--replicaof", "127.0.0.1", &port]);
    let mut r = replica.raw();
    wait_for(Duration::from_secs(10), "the startup replica to sync", || {
        field(&mut r, "replication", "master_link_status") == "up"
    });
    assert_eq!(r.cmd(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(
        text(&r.cmd(&["CONFIG", "GET", "replicaof"])),
        format!("*2\r\n$9\r\nreplicaof\r\n${}\r\n127.0.0.1 {port}\r\n", 10 + port.len())
    );
    // SLAVEOF NO ONE turns it into a primary that accepts writes, keeping its data.
    assert_eq!(r.cmd(&["SLAVEOF", "NO", "ONE"]), b"+OK\r\n");
    assert_eq!(r.cmd(&["SET", "mine", "1"]), b"+OK\r\n");
    assert_eq!(r.cmd(&["GET", "k"]), b"$1\r\nv\r\n");
    // HELLO reports the role.
    assert!(text(&r.cmd(&["HELLO", "3"])).contains("master"));
}
