//! Chaos on real processes: a six-node shoal-server cluster (three primaries, three replicas, node timeout
//! 2000 ms) under continuous load from the client crate, while the test kills nodes with SIGKILL.
//!
//! - Five rounds: kill a random primary, measure how long until its slots take writes again (its replica was
//!   promoted), restart it, measure how long until it serves again as a replica of the new primary, and check
//!   that `redis-cli --cluster check` is clean.
//! - Kill a replica: clients see no error.
//! - At the end, every write acknowledged after `WAIT 1` returned at least 1 must read back: zero lost. Writes
//!   acknowledged without WAIT may be lost (those the dead primary had not yet sent); their count is printed.
//! - Kill a primary and its replica together: with `cluster-require-full-coverage no` their slots answer
//!   CLUSTERDOWN while the other slots keep serving, and everything comes back when the primary returns.
//!
//! The victims are chosen by a seeded generator; the seed is printed, and `CHAOS_SEED` replays a run.

mod cluster_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use cluster_support::{reply_text, Cluster, Node, Recorder};
use shoal_client::{ClusterClient, ClusterOptions, ConnectOptions, Connection, Frame, Slot};

/// Kill-a-primary rounds.
const ROUNDS: usize = 5;
/// A killed primary's slots must take writes again within this (the goal is far below: see the printout).
const FAILOVER_LIMIT: Duration = Duration::from_secs(15);
/// A restarted node must serve again within this.
const REJOIN_LIMIT: Duration = Duration::from_secs(20);
/// The load stops by itself after this, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(300);
/// Every this many writes, the write is followed by `WAIT 1 ...` on the same connection.
const WAIT_EVERY: u64 = 3;
/// `WAIT`'s timeout, in ms: a replica confirms within a millisecond here; while a shard has no replica the
/// writer loses this much time per WAIT-ed write to it.
const WAIT_TIMEOUT_MS: &str = "50";
/// Time with a replica down, under load.
const REPLICA_DOWN: Duration = Duration::from_secs(3);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn key(i: u64) -> String {
    format!("chaos:{i}")
}

/// A small xorshift generator: the victims of a run follow from its seed.
struct Victims(u64);

impl Victims {
    fn pick(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What the load saw.
#[derive(Default)]
struct Ledger {
    /// Acknowledged writes: key index, and whether `WAIT 1` confirmed a replica had it.
    acked: Vec<(u64, bool)>,
    /// Errors the application saw, with when.
    errors: Vec<(Instant, String)>,
    /// Writes whose `WAIT 1` returned 0 (no replica confirmed within the timeout).
    unconfirmed: u64,
}

/// The client crate writing continuously: most writes through [`ClusterClient`] (which follows redirections
/// and retries refusals), every [`WAIT_EVERY`]th one as `SET` + `WAIT 1` pipelined on one connection to the
/// slot's owner, so the WAIT counts exactly that write.
struct Load(Recorder<Ledger>);

impl Load {
    fn start(seeds: Vec<String>) -> Load {
        Load(Recorder::spawn(move |stop, ledger| {
            runtime().block_on(write_loop(seeds, stop, ledger))
        }))
    }

    fn acked(&self) -> usize {
        self.0.ledger().acked.len()
    }

    fn errors_since(&self, t: Instant) -> Vec<String> {
        let ledger = self.0.ledger();
        ledger
            .errors
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Waits until the load has acknowledged `more` further writes (bounded).
    fn wait_for_progress(&self, more: usize, limit: Duration) {
        let target = self.acked() + more;
        let t = Instant::now();
        while self.acked() < target {
            assert!(t.elapsed() < limit, "the load made no progress for {limit:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Ledger {
        self.0.finish()
    }
}

fn options() -> ClusterOptions {
    ClusterOptions {
        connect: ConnectOptions {
            timeout: Some(Duration::from_secs(5)),
            ..ConnectOptions::default()
        },
        ..ClusterOptions::default()
    }
}

async fn write_loop(seeds: Vec<String>, stop: &AtomicBool, ledger: &Mutex<Ledger>) {
    let started = Instant::now();
    let mut client: Option<ClusterClient> = None;
    let mut direct: HashMap<String, Connection> = HashMap::new();
    let mut i = 0u64;
    let error = |e: String| ledger.lock().expect("ledger").errors.push((Instant::now(), e));
    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT {
        let Some(c) = client.as_mut() else {
            match ClusterClient::connect_with(&seeds, options()).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    error(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        i += 1;
        let k = key(i);
        let v = i.to_string();
        if !i.is_multiple_of(WAIT_EVERY) {
            match c.command(&["SET", k.as_str(), v.as_str()]).await {
                Ok(_) => ledger.lock().expect("ledger").acked.push((i, false)),
                Err(e) => {
                    error(e.to_string());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        } else {
            let Some(addr) = c.slot_map().node(Slot::for_key(k.as_bytes())).map(str::to_string) else {
                error(format!("no node known for {k}"));
                let _ = c.refresh_slots().await;
                continue;
            };
            if !direct.contains_key(&addr) {
                match Connection::connect_with(&addr, &options().connect).await {
                    Ok(conn) => {
                        direct.insert(addr.clone(), conn);
                    }
                    Err(e) => {
                        error(format!("connect {addr}: {e}"));
                        let _ = c.refresh_slots().await;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
            let Some(conn) = direct.get_mut(&addr) else { continue };
            let cmds: [&[&str]; 2] = [&["SET", &k, &v], &["WAIT", "1", WAIT_TIMEOUT_MS]];
            match conn.pipeline(&cmds).await {
                Ok(replies) => match (replies.first(), replies.get(1)) {
                    (Some(Frame::Simple(ok)), Some(Frame::Integer(n))) if &ok[..] == b"OK" => {
                        let mut l = ledger.lock().expect("ledger");
                        l.acked.push((i, *n >= 1));
                        if *n < 1 {
                            l.unconfirmed += 1;
                        }
                    }
                    (first, _) => {
                        // A redirection or refusal: the slot moved or is down; the map is refreshed.
                        error(format!("{first:?}"));
                        let _ = c.refresh_slots().await;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Err(e) => {
                    error(format!("{addr}: {e}"));
                    direct.remove(&addr);
                    let _ = c.refresh_slots().await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        // A few thousand writes a second: enough to see every window, few enough to check them all.
        if i.is_multiple_of(4) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A node's view of the cluster: (port, flags, primary id, node id, has slots) per line of CLUSTER NODES.
fn topology(node: &Node) -> Vec<(u16, String, String, String, bool)> {
    node.text(&["CLUSTER", "NODES"])
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let port = f.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()?;
            Some((
                port,
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
                f.first()?.to_string(),
                f.len() > 8,
            ))
        })
        .collect()
}

/// The primaries serving slots, as node `observer` sees them (healthy ones only).
fn primaries(observer: &Node) -> Vec<u16> {
    topology(observer)
        .into_iter()
        .filter(|(_, flags, _, _, slots)| *slots && flags.contains("master") && !flags.contains("fail"))
        .map(|(port, ..)| port)
        .collect()
}

/// The replica of the primary on `port`, as `observer` sees it.
fn replica_of(observer: &Node, port: u16) -> Option<u16> {
    let topo = topology(observer);
    let id = topo.iter().find(|t| t.0 == port)?.3.clone();
    topo.iter().find(|t| t.2 == id && t.1.contains("slave")).map(|t| t.0)
}

fn index_of(cluster: &Cluster, port: u16) -> usize {
    cluster
        .nodes
        .iter()
        .position(|n| n.port == port)
        .expect("a node of the cluster")
}

/// A key of a slot the node on `port` serves (by CLUSTER KEYSLOT and its slot ranges).
fn key_served_by(cluster: &Cluster, port: u16) -> String {
    (0..10_000)
        .map(|i| format!("probe:{i}"))
        .find(|k| cluster.owner_of(k).port == port)
        .expect("some probe key hashes to each primary")
}

/// Tries `SET key` through a fresh cluster view until it succeeds; returns how long that took.
fn until_writable(cluster: &Cluster, key: &str, since: Instant, limit: Duration) -> Duration {
    let seeds: Vec<String> = cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let rt = runtime();
    let mut last = String::new();
    while since.elapsed() < limit {
        let ok = rt.block_on(async {
            let opts = ClusterOptions {
                max_retries: 0,
                ..options()
            };
            match ClusterClient::connect_with(&seeds, opts).await {
                Ok(mut c) => c
                    .command(&["SET", key, "x"])
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        });
        match ok {
            Ok(()) => return since.elapsed(),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{key} was not writable within {limit:?} (last error: {last})");
}

/// Waits until the restarted node on `port` is a replica with its link up and the whole cluster is ok.
fn until_rejoined(cluster: &Cluster, port: u16, since: Instant) -> Duration {
    let node = &cluster.nodes[index_of(cluster, port)];
    loop {
        let (role, link) = (node.repl_field("role"), node.repl_field("master_link_status"));
        let state = node.info_field("cluster_state").unwrap_or_default();
        if role == "slave" && link == "up" && state == "ok" {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < REJOIN_LIMIT,
            "node {port} did not rejoin as a replica within {REJOIN_LIMIT:?}: role {role}, link {link}, state {state}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn assert_check_clean(cluster: &Cluster, when: &str) {
    let clean = |o: &shoal_tests::RunOutput| {
        let text = o.stdout_str();
        o.success() && !text.contains("[ERR]") && !text.contains("[WARNING]")
    };
    let out = cluster.check_until(clean);
    if clean(&out) {
        return;
    }
    panic!(
        "redis-cli --cluster check {when}:\n{}\n{}",
        out.stdout_str(),
        out.stderr_str()
    );
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

/// Reads back every acknowledged write; returns (lost among WAIT-confirmed, lost among the others).
fn lost_writes(cluster: &Cluster, ledger: &Ledger) -> (Vec<u64>, Vec<u64>) {
    let seeds: Vec<String> = cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
    runtime().block_on(async {
        let mut c = ClusterClient::connect_with(&seeds, options()).await.expect("connect");
        let (mut waited, mut plain) = (Vec::new(), Vec::new());
        for chunk in ledger.acked.chunks(500) {
            let cmds: Vec<[String; 2]> = chunk.iter().map(|(i, _)| ["GET".to_string(), key(*i)]).collect();
            let replies = c.pipeline(&cmds).await.expect("read back");
            for ((i, confirmed), reply) in chunk.iter().zip(replies) {
                let intact = matches!(&reply, Frame::Bulk(b) if b[..] == *i.to_string().as_bytes());
                if !intact {
                    if *confirmed {
                        waited.push(*i);
                    } else {
                        plain.push(*i);
                    }
                }
            }
        }
        (waited, plain)
    })
}

#[test]
fn killed_nodes_fail_over_rejoin_and_lose_no_write_acknowledged_under_wait() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::random::<u64>() | 1);
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} replays the victims)");
    let mut victims = Victims(seed);
    let mut cluster = Cluster::start();
    let seeds: Vec<String> = cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let load = Load::start(seeds);
    let load_started = Instant::now();
    load.wait_for_progress(500, Duration::from_secs(20));

    let (mut failovers, mut rejoins) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let observer = cluster
            .nodes
            .iter()
            .position(|n| n.pid().is_some())
            .expect("a live node");
        let live = primaries(&cluster.nodes[observer]);
        assert_eq!(live.len(), 3, "round {round}: three primaries serve slots: {live:?}");
        let port = live[victims.pick(live.len())];
        let probe = key_served_by(&cluster, port);
        let replica = replica_of(&cluster.nodes[observer], port);
        let victim = index_of(&cluster, port);
        let killed_at = Instant::now();
        cluster.nodes[victim].kill();
        let failover = until_writable(&cluster, &probe, killed_at, FAILOVER_LIMIT);
        let errors = load.errors_since(killed_at);
        load.wait_for_progress(200, Duration::from_secs(20));
        let restarted_at = Instant::now();
        cluster.nodes[victim].start().expect("restart the killed primary");
        let rejoin = until_rejoined(&cluster, port, restarted_at);
        cluster.wait_state_ok(REJOIN_LIMIT);
        assert_check_clean(&cluster, &format!("after round {round}"));
        let promoted = cluster.owner_of(&probe).port;
        assert_eq!(
            Some(promoted),
            replica,
            "round {round}: the killed primary's replica took over"
        );
        eprintln!(
            "round {round}: killed primary {port}; {promoted} took its slots, writable after {} ms; \
             {} client errors; restarted node back as a replica after {} ms",
            failover.as_millis(),
            errors.len(),
            rejoin.as_millis()
        );
        failovers.push(failover);
        rejoins.push(rejoin);
    }

    // A replica dies: nobody notices.
    let observer = &cluster.nodes[0];
    let replica_port = topology(observer)
        .into_iter()
        .find(|t| t.1.contains("slave"))
        .map(|t| t.0)
        .expect("a replica");
    let r = index_of(&cluster, replica_port);
    let killed_at = Instant::now();
    cluster.nodes[r].kill();
    thread::sleep(REPLICA_DOWN);
    let errors = load.errors_since(killed_at);
    assert!(
        errors.is_empty(),
        "killing replica {replica_port} caused client errors: {errors:?}"
    );
    cluster.nodes[r].start().expect("restart the replica");
    let rejoin = until_rejoined(&cluster, replica_port, Instant::now());
    cluster.wait_state_ok(REJOIN_LIMIT);
    eprintln!(
        "replica {replica_port} killed: 0 client errors in {} s; back after {} ms",
        REPLICA_DOWN.as_secs(),
        rejoin.as_millis()
    );

    load.wait_for_progress(200, Duration::from_secs(20));
    let load_time = load_started.elapsed();
    let ledger = load.finish();
    let (lost_waited, lost_plain) = lost_writes(&cluster, &ledger);
    let confirmed = ledger.acked.iter().filter(|(_, w)| *w).count();
    let max = failovers.iter().max().copied().unwrap_or_default();
    eprintln!(
        "failover (kill -9 to writable) over {ROUNDS} rounds: median {} ms, max {} ms; rejoin median {} ms, max {} ms",
        median(&failovers).as_millis(),
        max.as_millis(),
        median(&rejoins).as_millis(),
        rejoins.iter().max().copied().unwrap_or_default().as_millis()
    );
    eprintln!(
        "writes acknowledged: {} in {:.1} s ({confirmed} confirmed by WAIT 1, {} with WAIT 1 returning 0); \
         client errors {}; lost: {} of the WAIT-confirmed, {} of the others",
        ledger.acked.len(),
        load_time.as_secs_f64(),
        ledger.unconfirmed,
        ledger.errors.len(),
        lost_waited.len(),
        lost_plain.len()
    );
    assert!(
        lost_waited.is_empty(),
        "writes acknowledged under WAIT were lost: {:?}",
        &lost_waited[..lost_waited.len().min(20)]
    );
    assert!(
        confirmed > 500,
        "too few WAIT-confirmed writes to mean anything: {confirmed}"
    );
    assert!(
        ledger.unconfirmed > 0,
        "no WAIT ever returned 0, though shards went without a replica: the count cannot be trusted"
    );

    both_nodes_of_a_shard_die(&mut cluster);
}

/// A primary and its replica die together: with `cluster-require-full-coverage no` only their slots go down.
fn both_nodes_of_a_shard_die(cluster: &mut Cluster) {
    for n in &cluster.nodes {
        let reply = reply_text(&n.conn().cmd(&["CONFIG", "SET", "cluster-require-full-coverage", "no"]));
        assert_eq!(reply, "OK", "CONFIG SET on {}", n.port);
    }
    let live = primaries(&cluster.nodes[0]);
    let port = *live
        .iter()
        .find(|p| **p != cluster.nodes[0].port)
        .expect("a primary other than node 0");
    let replica = replica_of(&cluster.nodes[0], port).expect("its replica");
    let down_key = key_served_by(cluster, port);
    let other = live.iter().copied().find(|p| *p != port).expect("another primary");
    let up_key = key_served_by(cluster, other);
    let (p, r) = (index_of(cluster, port), index_of(cluster, replica));
    let killed_at = Instant::now();
    cluster.nodes[p].kill();
    cluster.nodes[r].kill();

    // Once the failure is agreed, the shard's slots answer CLUSTERDOWN; the rest serve all along.
    let up_node = &cluster.nodes[index_of(cluster, other)];
    let mut c = up_node.conn();
    let mut down_seen = None;
    let mut last = String::new();
    while killed_at.elapsed() < FAILOVER_LIMIT {
        let set = reply_text(&c.cmd(&["SET", &up_key, "up"]));
        assert_eq!(set, "OK", "a slot of a live shard refused a write");
        let refused = reply_text(&c.cmd(&["GET", &down_key]));
        if refused.starts_with("-CLUSTERDOWN") {
            down_seen = Some(killed_at.elapsed());
            break;
        }
        last = refused;
        thread::sleep(Duration::from_millis(50));
    }
    let Some(down) = down_seen else {
        panic!(
            "the dead shard's slots were never reported CLUSTERDOWN; last reply {last}; the cluster as node {} \
             sees it:\n{}",
            up_node.port,
            up_node.text(&["CLUSTER", "NODES"])
        );
    };
    for n in cluster.nodes.iter().filter(|n| n.port != port && n.port != replica) {
        assert_eq!(n.info_field("cluster_state").as_deref(), Some("ok"), "node {}", n.port);
    }
    let restarted_at = Instant::now();
    cluster.nodes[p].start().expect("restart the primary");
    let back = until_writable(cluster, &down_key, restarted_at, REJOIN_LIMIT);
    cluster.nodes[r].start().expect("restart the replica");
    until_rejoined(cluster, replica, Instant::now());
    cluster.wait_state_ok(REJOIN_LIMIT);
    assert_check_clean(cluster, "after the shard came back");
    eprintln!(
        "primary {port} and replica {replica} killed together: their slots CLUSTERDOWN after {} ms while the \
         others served; writable again {} ms after the primary restarted",
        down.as_millis(),
        back.as_millis()
    );
}

/// A primary killed and restarted at once (a supervisor's restart, Docker's `restart: unless-stopped`) comes
/// back empty before anyone flags it: its replica, which has the data, takes its slots instead of syncing the
/// emptiness, and the restarted node becomes its replica.
#[test]
fn a_primary_restarted_at_once_hands_its_slots_to_its_replica_with_the_data() {
    let mut cluster = Cluster::start();
    let observer = &cluster.nodes[1];
    let port = cluster.nodes[0].port;
    let replica = replica_of(observer, port).expect("node 0 has a replica");
    let tag = key_served_by(&cluster, port);
    let keys: Vec<String> = (0..1000).map(|i| format!("{{{tag}}}:{i}")).collect();
    let mut c = cluster.nodes[0].conn();
    for k in &keys {
        assert_eq!(reply_text(&c.cmd(&["SET", k, k])), "OK");
    }
    assert_eq!(
        reply_text(&c.cmd(&["WAIT", "1", "2000"])),
        "1",
        "the replica has every key"
    );
    drop(c);

    let killed_at = Instant::now();
    cluster.nodes[0].kill();
    cluster.nodes[0].start().expect("restart node 0 at once");
    let restarted = killed_at.elapsed();
    let r = index_of(&cluster, replica);
    let deadline = Instant::now() + REJOIN_LIMIT;
    loop {
        // ROLE's first element: "master" or "slave".
        let promoted = cluster.nodes[r].text(&["ROLE"]).contains("master");
        let role = cluster.nodes[0].text(&["INFO", "replication"]);
        if promoted && role.contains("role:slave") && role.contains("master_link_status:up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not take over from the restarted primary:\n{}\n{}",
            cluster.nodes[r].text(&["CLUSTER", "NODES"]),
            role
        );
        thread::sleep(Duration::from_millis(20));
    }
    let took_over = killed_at.elapsed();
    let writable = until_writable(&cluster, &format!("{{{tag}}}:probe"), killed_at, REJOIN_LIMIT);
    cluster.wait_state_ok(REJOIN_LIMIT);
    assert_check_clean(&cluster, "after the takeover");
    assert_eq!(cluster.owner_of(&keys[0]).port, replica, "the replica serves the slots");
    let mut c = cluster.nodes[r].conn();
    let missing = keys.iter().filter(|k| reply_text(&c.cmd(&["GET", k])) != **k).count();
    assert_eq!(missing, 0, "keys lost when the primary came back empty");
    eprintln!(
        "primary restarted {} ms after its kill; its replica took over with all {} keys, {} ms after the kill; \
         the slots took writes again {} ms after the kill",
        restarted.as_millis(),
        keys.len(),
        took_over.as_millis(),
        writable.as_millis()
    );
}
