//! `CLUSTER FAILOVER [FORCE|TAKEOVER]` end to end, on a six-node shoal-server cluster (three primaries, three
//! replicas, node timeout 2000 ms) formed by `redis-cli --cluster create`:
//!
//! - Default (coordinated) failover under a continuous writer: the replica takes the primary's slots, the old
//!   primary follows it, the writer's writes are paused and then redirected (`-MOVED`), and every write the old
//!   primary acknowledged reads back from the new one.
//! - FORCE on the replica of a primary killed a moment before: promoted well before the automatic failover
//!   could (node timeout, FAIL, election); the restarted primary rejoins as its replica. TAKEOVER on the replica
//!   of a healthy primary: promoted without an election, the old primary becomes its replica. (Unlike Redis,
//!   a replica promoted over a primary that did not pause for it takes writes only after the rejoin delay, the
//!   node timeout here: see `replace_my_primary` in cluster/src/state/failover.rs. The time is printed, and
//!   only bounded by the test.)
//! - The error replies are those of Redis 7 (a lone `redis-server` cluster node answers the same commands), and
//!   a refused `CLUSTER FAILOVER` on a replica starts nothing.
//!
//! Every wait is bounded; the nodes are killed by pid when the cluster guard is dropped.

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use cluster_support::{reply_text, Cluster, Node, Recorder, CONVERGE_TIMEOUT, NODE_TIMEOUT_MS};
use shoal_tests::{encode_command, RawConn, RedisServer, ShoalServer};

/// A manual failover must have completed (new primary writable, roles swapped everywhere) within this.
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);
/// A restarted node must be a replica with its link up within this.
const REJOIN_LIMIT: Duration = Duration::from_secs(20);
/// The writer stops by itself after this long, or this many writes, whatever happens.
const WRITER_LIMIT: Duration = Duration::from_secs(40);
const WRITER_MAX_WRITES: u64 = 200_000;
/// The writer's read timeout: longer than the longest pause a manual failover may impose (2 x 5 s).
const WRITER_READ_TIMEOUT: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------------------------------------------------
// Topology (after chaos.rs)
// ------------------------------------------------------------------------------------------------------------

/// One line of CLUSTER NODES.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    flags: String,
    primary: String,
    slots: Vec<String>,
}

impl NodeLine {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.split(',').any(|f| f == flag)
    }
}

/// A node's view of the cluster.
fn topology(node: &Node) -> Vec<NodeLine> {
    node.text(&["CLUSTER", "NODES"])
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let port = f.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()?;
            Some(NodeLine {
                id: f.first()?.to_string(),
                port,
                flags: f.get(2)?.to_string(),
                primary: f.get(3)?.to_string(),
                slots: f.iter().skip(8).map(|s| s.to_string()).collect(),
            })
        })
        .collect()
}

/// The replica of the primary on `port`, as `observer` sees it.
fn replica_of(observer: &Node, port: u16) -> Option<u16> {
    let topo = topology(observer);
    let id = topo.iter().find(|t| t.port == port)?.id.clone();
    topo.iter()
        .find(|t| t.primary == id && t.has_flag("slave"))
        .map(|t| t.port)
}

fn index_of(cluster: &Cluster, port: u16) -> usize {
    cluster
        .nodes
        .iter()
        .position(|n| n.port == port)
        .expect("a node of the cluster")
}

fn node(cluster: &Cluster, port: u16) -> &Node {
    &cluster.nodes[index_of(cluster, port)]
}

/// A hash tag whose slot the node on `port` serves.
fn tag_owned_by(cluster: &Cluster, port: u16) -> String {
    (0..10_000)
        .map(|i| format!("{{mf{i}}}"))
        .find(|t| cluster.owner_of(&format!("{t}:0")).port == port)
        .expect("some tag hashes to each primary")
}

/// Whether `observer` sees `new` as a healthy primary serving slots and, if given, `old` as its replica.
fn sees_swap(observer: &Node, new: u16, old: Option<u16>) -> Result<(), String> {
    let topo = topology(observer);
    let Some(n) = topo.iter().find(|t| t.port == new) else {
        return Err(format!("{} does not know {new}", observer.port));
    };
    if !n.has_flag("master") || n.slots.is_empty() || n.has_flag("fail") || n.has_flag("fail?") {
        return Err(format!(
            "{} sees {new} as {} with slots {:?}",
            observer.port, n.flags, n.slots
        ));
    }
    if let Some(old) = old {
        let Some(o) = topo.iter().find(|t| t.port == old) else {
            return Err(format!("{} does not know {old}", observer.port));
        };
        if !o.has_flag("slave") || o.primary != n.id || !o.slots.is_empty() {
            return Err(format!(
                "{} sees {old} as {} of {} with slots {:?}",
                observer.port, o.flags, o.primary, o.slots
            ));
        }
    }
    Ok(())
}

/// When each running node first saw the swap ([`sees_swap`]), after `since`: (port, time) per node.
struct Agreement(Vec<(u16, Duration)>);

impl Agreement {
    fn last(&self) -> Duration {
        self.0.iter().map(|a| a.1).max().unwrap_or_default()
    }

    fn text(&self) -> String {
        let per: Vec<String> = self.0.iter().map(|(p, d)| format!("{p}: {}", d.as_millis())).collect();
        format!("{} ms (per node, ms: {})", self.last().as_millis(), per.join(", "))
    }
}

/// Waits until every running node sees the swap ([`sees_swap`]), noting when each first did.
fn wait_swap_everywhere(
    cluster: &mut Cluster,
    new: u16,
    old: Option<u16>,
    since: Instant,
    limit: Duration,
) -> Agreement {
    let n = cluster.nodes.len();
    let mut seen: Vec<Option<Duration>> = vec![None; n];
    let mut last = vec![String::new(); n];
    while since.elapsed() < limit {
        let mut all = true;
        for i in 0..n {
            if seen[i].is_some() || !cluster.nodes[i].is_running() {
                continue;
            }
            match sees_swap(&cluster.nodes[i], new, old) {
                Ok(()) => seen[i] = Some(since.elapsed()),
                Err(e) => {
                    last[i] = e;
                    all = false;
                }
            }
        }
        if all {
            let per = (0..n)
                .filter_map(|i| seen[i].map(|d| (cluster.nodes[i].port, d)))
                .collect();
            return Agreement(per);
        }
        thread::sleep(Duration::from_millis(5));
    }
    let pending: Vec<&String> = (0..n).filter(|i| seen[*i].is_none()).map(|i| &last[i]).collect();
    panic!("the cluster did not agree that {new} replaced {old:?} within {limit:?}: {pending:?}");
}

/// A counter of CLUSTER INFO (0 when absent, as the `cluster_stats_messages_*` of kinds never seen are).
fn info_count(node: &Node, field: &str) -> u64 {
    node.info_field(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Waits until `node` is a replica of the node on `primary` with its link up; returns how long after `since`.
fn wait_replica_of(node: &Node, primary: u16, since: Instant, limit: Duration) -> Duration {
    loop {
        let (role, port, link) = (
            node.repl_field("role"),
            node.repl_field("master_port"),
            node.repl_field("master_link_status"),
        );
        if role == "slave" && port == primary.to_string() && link == "up" {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "node {} is not a replica of {primary} with its link up after {limit:?}: role {role}, master_port \
             {port}, master_link_status {link}",
            node.port
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// What a replica did after `CLUSTER FAILOVER`, as seen from outside.
struct Promotion {
    /// When it reported itself a primary serving slots (INFO replication and its own CLUSTER NODES line).
    promoted: Duration,
    /// When it first answered `SET probe` with +OK (not probed: `None`).
    writable: Option<Duration>,
    /// The distinct replies it gave the probe before (in order), with how many of each.
    refusals: Vec<(String, usize)>,
}

/// Polls `node`, every 2 ms or so, until it reports itself a primary serving slots and, with `until_writable`,
/// takes `SET key x`.
fn wait_promoted(node: &Node, key: &str, since: Instant, limit: Duration, until_writable: bool) -> Promotion {
    let mut c = node.conn();
    let (mut promoted, mut writable) = (None, None);
    let mut refusals: Vec<(String, usize)> = Vec::new();
    while since.elapsed() < limit {
        if promoted.is_none() {
            let role = reply_text(&c.cmd(&["ROLE"]));
            let nodes = reply_text(&c.cmd(&["CLUSTER", "NODES"]));
            let mine = nodes
                .lines()
                .find(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("myself")));
            let serving = mine.is_some_and(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.get(2).is_some_and(|f| f.split(',').any(|f| f == "master")) && f.len() > 8
            });
            if serving && !role.contains("slave") {
                promoted = Some(since.elapsed());
            }
        }
        if until_writable && writable.is_none() {
            let reply = c.cmd(&["SET", key, "x"]);
            if reply == b"+OK\r\n" {
                writable = Some(since.elapsed());
            } else {
                // The kind of refusal (for MOVED, the target), and the node's cluster_state meanwhile.
                let text = reply_text(&reply);
                let state = reply_text(&c.cmd(&["CLUSTER", "INFO"]))
                    .lines()
                    .find_map(|l| l.strip_prefix("cluster_state:"))
                    .unwrap_or("?")
                    .trim()
                    .to_string();
                let kind = match moved_port(&text) {
                    Some(p) => format!("-MOVED to {p} [cluster_state:{state}]"),
                    None => format!("{text} [cluster_state:{state}]"),
                };
                match refusals.last_mut() {
                    Some((k, n)) if *k == kind => *n += 1,
                    _ => refusals.push((kind, 1)),
                }
            }
        }
        if let (Some(promoted), true) = (promoted, writable.is_some() || !until_writable) {
            return Promotion {
                promoted,
                writable,
                refusals,
            };
        }
        thread::sleep(Duration::from_millis(2));
    }
    panic!(
        "node {} not a writable primary for {key} within {limit:?}: promoted after {promoted:?}, writable after \
         {writable:?}; replies to the probe: {refusals:?}",
        node.port
    );
}

fn refusals_text(r: &[(String, usize)]) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|(k, n)| format!("{n} x {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `n` keys under `tag` to the primary `node`, then `WAIT 1`: a replica has them all.
fn write_replicated(node: &Node, tag: &str, n: usize) -> Vec<(String, String)> {
    let mut c = node.conn();
    let kv: Vec<(String, String)> = (0..n).map(|i| (format!("{tag}:pre{i}"), format!("pre{i}"))).collect();
    for (k, v) in &kv {
        assert_eq!(c.cmd(&["SET", k, v]), b"+OK\r\n", "SET {k} on {}", node.port);
    }
    let waited = reply_text(&c.cmd(&["WAIT", "1", "2000"]));
    assert_eq!(waited, "1", "WAIT 1 on {}: the replica did not confirm", node.port);
    kv
}

/// The keys of `kv` that do not read back from `node` with their value (GETs pipelined by the hundred).
fn lost_on(node: &Node, kv: &[(String, String)]) -> Vec<String> {
    let mut c = node.conn();
    let mut lost = Vec::new();
    for chunk in kv.chunks(200) {
        let mut batch = Vec::new();
        for (k, _) in chunk {
            batch.extend_from_slice(&encode_command(&["GET", k.as_str()]));
        }
        c.send(&batch).expect("send GETs");
        for (k, v) in chunk {
            let reply = c.read_reply().expect("GET reply");
            let want = format!("${}\r\n{v}\r\n", v.len());
            if reply != want.as_bytes() {
                lost.push(format!("{k} -> {}", reply_text(&reply)));
            }
        }
    }
    lost
}

// ------------------------------------------------------------------------------------------------------------
// The writer
// ------------------------------------------------------------------------------------------------------------

/// What the writer saw.
#[derive(Default, Debug)]
struct Ledger {
    /// Acknowledged writes: key, value, the port that said OK.
    acked: Vec<(String, String, u16)>,
    /// `-MOVED` replies (not acknowledgements), with the port that gave them and how long the write waited.
    moved: Vec<(u16, String, Duration)>,
    /// Any other reply or I/O error.
    errors: Vec<String>,
    /// The longest time a single SET waited for its reply, and when that wait began.
    longest_stall: Duration,
    longest_stall_at: Option<Instant>,
    /// When the last OK from the first target arrived, and the first OK from another node.
    last_ok_first_target: Option<Instant>,
    first_ok_elsewhere: Option<Instant>,
}

/// SETs on one connection, about 1 ms apart, keys `{tag}:N`, following `-MOVED` to the node it names.
struct Writer(Recorder<Ledger>);

impl Writer {
    fn start(port: u16, tag: String) -> Writer {
        Writer(Recorder::spawn(move |stop, ledger| {
            write_loop(port, &tag, stop, ledger)
        }))
    }

    /// Acknowledged writes so far, and those acknowledged by `port`.
    fn acked_by(&self, port: u16) -> usize {
        let l = self.0.ledger();
        l.acked.iter().filter(|a| a.2 == port).count()
    }

    /// Waits (bounded) until `port` has acknowledged `more` further writes.
    fn wait_acks_by(&self, port: u16, more: usize, limit: Duration) {
        let target = self.acked_by(port) + more;
        let t = Instant::now();
        while self.acked_by(port) < target {
            assert!(
                t.elapsed() < limit,
                "the writer got no {more} acknowledgements from {port} within {limit:?}: {:?}",
                self.0.ledger().errors
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(self) -> Ledger {
        self.0.finish()
    }
}

/// The port of a `-MOVED slot host:port` reply.
fn moved_port(reply: &str) -> Option<u16> {
    reply.strip_prefix("-MOVED ")?.rsplit(':').next()?.trim().parse().ok()
}

fn write_loop(first: u16, tag: &str, stop: &AtomicBool, ledger: &Mutex<Ledger>) {
    let started = Instant::now();
    let connect = |port: u16| {
        let mut c = RawConn::connect(port).ok()?;
        c.set_timeout(WRITER_READ_TIMEOUT);
        Some(c)
    };
    let Some(mut conn) = connect(first) else {
        ledger.lock().expect("ledger").errors.push(format!("connect {first}"));
        return;
    };
    let mut target = first;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < WRITER_LIMIT && i < WRITER_MAX_WRITES {
        i += 1;
        let (k, v) = (format!("{tag}:{i}"), format!("v{i}"));
        let sent = Instant::now();
        let reply = conn.command(&["SET", k.as_str(), v.as_str()]);
        let took = sent.elapsed();
        let mut l = ledger.lock().expect("ledger");
        if took > l.longest_stall {
            l.longest_stall = took;
            l.longest_stall_at = Some(sent);
        }
        match reply {
            Ok(r) if r == b"+OK\r\n" => {
                let now = Instant::now();
                if target == first {
                    l.last_ok_first_target = Some(now);
                } else if l.first_ok_elsewhere.is_none() {
                    l.first_ok_elsewhere = Some(now);
                }
                l.acked.push((k, v, target));
            }
            Ok(r) => {
                let text = reply_text(&r);
                match moved_port(&text) {
                    Some(port) => {
                        l.moved.push((target, text, took));
                        drop(l);
                        if port != target {
                            match connect(port) {
                                Some(c) => {
                                    conn = c;
                                    target = port;
                                }
                                None => ledger.lock().expect("ledger").errors.push(format!("connect {port}")),
                            }
                        }
                        thread::sleep(Duration::from_millis(1));
                    }
                    None => {
                        l.errors.push(format!("{target}: {text}"));
                        drop(l);
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                continue;
            }
            Err(e) => {
                l.errors.push(format!("{target}: {e}"));
                drop(l);
                thread::sleep(Duration::from_millis(5));
                match connect(target) {
                    Some(c) => conn = c,
                    None => thread::sleep(Duration::from_millis(50)),
                }
                continue;
            }
        }
        drop(l);
        thread::sleep(Duration::from_millis(1));
    }
}

// ------------------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------------------

#[test]
fn cluster_failover_default_swaps_roles_without_losing_a_write() {
    let mut cluster = Cluster::start();
    let primary = cluster.nodes[0].port;
    let replica = replica_of(&cluster.nodes[0], primary).expect("the primary has a replica");
    let tag = tag_owned_by(&cluster, primary);
    let probe = format!("{tag}:probe");
    let r = node(&cluster, replica);
    let mfstart_before = info_count(r, "cluster_stats_messages_mfstart_sent");
    let before = reply_text(&r.conn().cmd(&["SET", &probe, "x"]));
    assert!(
        before.starts_with("-MOVED ") && moved_port(&before) == Some(primary),
        "the replica {replica} redirects a write to its primary {primary} before the failover: {before}"
    );

    let writer = Writer::start(primary, tag.clone());
    writer.wait_acks_by(primary, 300, Duration::from_secs(10));

    let t0 = Instant::now();
    let reply = r.conn().cmd(&["CLUSTER", "FAILOVER"]);
    assert_eq!(
        reply,
        b"+OK\r\n",
        "CLUSTER FAILOVER on replica {replica}: {}",
        reply_text(&reply)
    );
    let promotion = wait_promoted(r, &probe, t0, FAILOVER_LIMIT, true);
    let writable = promotion.writable.expect("probed");
    let following = wait_replica_of(node(&cluster, primary), replica, t0, FAILOVER_LIMIT);
    let agreed = wait_swap_everywhere(&mut cluster, replica, Some(primary), t0, FAILOVER_LIMIT);
    let r = node(&cluster, replica);
    assert_eq!(r.repl_field("role"), "master", "the replica {replica} was promoted");
    writer.wait_acks_by(replica, 300, Duration::from_secs(10));
    let ledger = writer.finish();

    // The writes: paused, then redirected to the new primary; none acknowledged is lost.
    assert!(
        ledger.errors.is_empty(),
        "the writer saw errors other than -MOVED: {:?}",
        &ledger.errors[..ledger.errors.len().min(20)]
    );
    assert!(
        !ledger.moved.is_empty(),
        "the writer, writing to the old primary during the failover, was never redirected"
    );
    let first_moved_wait = ledger.moved[0].2;
    assert!(
        first_moved_wait >= Duration::from_millis(5),
        "the first redirected write was answered after {first_moved_wait:?}: it was not held by the pause"
    );
    for (from, text, _) in &ledger.moved {
        assert!(
            *from == primary && moved_port(text) == Some(replica),
            "a redirection other than from the old primary {primary} to the new one {replica}: {from}: {text}"
        );
    }
    let on_old = ledger.acked.iter().filter(|a| a.2 == primary).count();
    let on_new = ledger.acked.iter().filter(|a| a.2 == replica).count();
    let all: Vec<(String, String)> = ledger.acked.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect();
    let lost = lost_on(r, &all);
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes do not read back from the new primary {replica}: {:?}",
        lost.len(),
        all.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        info_count(r, "cluster_stats_messages_mfstart_sent") > mfstart_before,
        "the replica sent no MFSTART: the failover was not coordinated with the primary"
    );
    let stall_start = ledger
        .longest_stall_at
        .map(|at| at.saturating_duration_since(t0).as_millis() as i128)
        .unwrap_or(-1);
    let outage = match (ledger.last_ok_first_target, ledger.first_ok_elsewhere) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    cluster.wait_state_ok(CONVERGE_TIMEOUT);
    cluster.assert_check_clean("after CLUSTER FAILOVER");
    let moved_waits: Vec<u128> = ledger.moved.iter().map(|m| m.2.as_millis()).collect();
    eprintln!(
        "CLUSTER FAILOVER on {replica} (replica of {primary}): promoted {} ms after the command, took writes \
         after {} ms (probe replies before: {}); every node agreed after {}; the old primary a replica with \
         its link up after {} ms",
        promotion.promoted.as_millis(),
        writable.as_millis(),
        refusals_text(&promotion.refusals),
        agreed.text(),
        following.as_millis()
    );
    eprintln!(
        "writer: {} writes acknowledged ({on_old} by the old primary, {on_new} by the new), 0 lost; {} -MOVED \
         (not acks; those writes had waited {moved_waits:?} ms); longest single write stall {} ms (began \
         {stall_start} ms after the command); {} ms from the last OK of the old primary to the first OK of the new",
        all.len(),
        ledger.moved.len(),
        ledger.longest_stall.as_millis(),
        outage.as_millis()
    );
}

#[test]
fn cluster_failover_force_and_takeover() {
    let mut cluster = Cluster::start();

    // FORCE: the primary was just killed; its replica is promoted before anyone could flag it as failed (that
    // takes the node timeout without a reply), let alone elect a replacement.
    let a = cluster.nodes[0].port;
    let ra = replica_of(&cluster.nodes[0], a).expect("a replica");
    let tag_a = tag_owned_by(&cluster, a);
    let kv_a = write_replicated(node(&cluster, a), &tag_a, 100);
    let auth_req_before = info_count(node(&cluster, ra), "cluster_stats_messages_auth-req_sent");
    let a_idx = index_of(&cluster, a);
    let t0 = Instant::now();
    cluster.nodes[a_idx].kill();
    let reply = node(&cluster, ra).conn().cmd(&["CLUSTER", "FAILOVER", "FORCE"]);
    assert_eq!(
        reply,
        b"+OK\r\n",
        "CLUSTER FAILOVER FORCE on {ra}: {}",
        reply_text(&reply)
    );
    let probe_a = format!("{tag_a}:probe");
    let promoted = wait_promoted(node(&cluster, ra), &probe_a, t0, FAILOVER_LIMIT, false).promoted;
    let flagged: Vec<u16> = cluster
        .nodes
        .iter()
        .filter(|n| n.port != a)
        .filter(|n| topology(n).iter().any(|t| t.port == a && t.has_flag("fail")))
        .map(|n| n.port)
        .collect();
    let force_agreed = wait_swap_everywhere(&mut cluster, ra, None, t0, FAILOVER_LIMIT);
    let forced = wait_promoted(node(&cluster, ra), &probe_a, t0, FAILOVER_LIMIT, true);
    let writable = forced.writable.expect("probed");
    assert!(
        promoted < Duration::from_millis(NODE_TIMEOUT_MS),
        "CLUSTER FAILOVER FORCE promoted {ra} after {} ms: no sooner than an automatic failover could (node \
         timeout {NODE_TIMEOUT_MS} ms before the primary is even suspected)",
        promoted.as_millis()
    );
    assert!(
        info_count(node(&cluster, ra), "cluster_stats_messages_auth-req_sent") > auth_req_before,
        "FORCE promoted {ra} without an election"
    );
    let lost = lost_on(node(&cluster, ra), &kv_a);
    assert!(
        lost.is_empty(),
        "writes confirmed by WAIT lost in the forced failover: {lost:?}"
    );
    let restarted = Instant::now();
    cluster.nodes[a_idx].start().expect("restart the killed primary");
    let rejoined = wait_replica_of(node(&cluster, a), ra, restarted, REJOIN_LIMIT);
    wait_swap_everywhere(&mut cluster, ra, Some(a), restarted, REJOIN_LIMIT);
    cluster.wait_state_ok(CONVERGE_TIMEOUT);
    cluster.assert_check_clean("after CLUSTER FAILOVER FORCE");
    eprintln!(
        "FORCE: primary {a} killed, CLUSTER FAILOVER FORCE on its replica {ra}: promoted after {} ms (node \
         timeout {NODE_TIMEOUT_MS} ms; nodes flagging {a} as failed by then: {flagged:?}), took writes after {} \
         ms (probe replies before: {}); every other node agreed after {}; {a} restarted, a replica of {ra} \
         with its link up after {} ms",
        promoted.as_millis(),
        writable.as_millis(),
        refusals_text(&forced.refusals),
        force_agreed.text(),
        rejoined.as_millis()
    );

    // TAKEOVER: a healthy primary; its replica takes a new epoch by itself, without asking for votes.
    let b = cluster.nodes[1].port;
    assert!(
        sees_swap(&cluster.nodes[0], b, None).is_ok(),
        "node {b} still serves slots as a primary"
    );
    let rb = replica_of(&cluster.nodes[0], b).expect("a replica");
    let tag_b = tag_owned_by(&cluster, b);
    let kv_b = write_replicated(node(&cluster, b), &tag_b, 100);
    let (n_rb, n_b) = (node(&cluster, rb), node(&cluster, b));
    let req_before = info_count(n_rb, "cluster_stats_messages_auth-req_sent");
    let ack_before = info_count(n_rb, "cluster_stats_messages_auth-ack_received");
    let epoch_before: u64 = n_rb
        .info_field("cluster_current_epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let b_epoch: u64 = n_b
        .info_field("cluster_my_epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let t1 = Instant::now();
    let reply = n_rb.conn().cmd(&["CLUSTER", "FAILOVER", "TAKEOVER"]);
    assert_eq!(
        reply,
        b"+OK\r\n",
        "CLUSTER FAILOVER TAKEOVER on {rb}: {}",
        reply_text(&reply)
    );
    let probe_b = format!("{tag_b}:probe");
    let promoted_b = wait_promoted(n_rb, &probe_b, t1, FAILOVER_LIMIT, false).promoted;
    let following = wait_replica_of(n_b, rb, t1, FAILOVER_LIMIT);
    let take_agreed = wait_swap_everywhere(&mut cluster, rb, Some(b), t1, FAILOVER_LIMIT);
    let n_rb = node(&cluster, rb);
    let taken = wait_promoted(n_rb, &probe_b, t1, FAILOVER_LIMIT, true);
    assert_eq!(
        info_count(n_rb, "cluster_stats_messages_auth-req_sent"),
        req_before,
        "TAKEOVER asked for votes"
    );
    assert_eq!(
        info_count(n_rb, "cluster_stats_messages_auth-ack_received"),
        ack_before,
        "TAKEOVER received votes"
    );
    let my_epoch: u64 = n_rb
        .info_field("cluster_my_epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    assert!(
        my_epoch > epoch_before && my_epoch > b_epoch,
        "TAKEOVER did not take a new config epoch: {my_epoch} (current epoch before {epoch_before}, the old \
         primary's {b_epoch})"
    );
    let lost = lost_on(n_rb, &kv_b);
    assert!(
        lost.is_empty(),
        "writes confirmed by WAIT lost in the takeover: {lost:?}"
    );
    cluster.wait_state_ok(CONVERGE_TIMEOUT);
    cluster.assert_check_clean("after CLUSTER FAILOVER TAKEOVER");
    eprintln!(
        "TAKEOVER: {rb} (replica of healthy {b}) promoted {} ms after the command with config epoch {my_epoch} \
         (current epoch was {epoch_before}) and no vote asked or received; took writes after {} ms (probe \
         replies before: {}); every node agreed after {}; {b} a replica of {rb} with its link up after {} ms",
        promoted_b.as_millis(),
        taken.writable.expect("probed").as_millis(),
        refusals_text(&taken.refusals),
        take_agreed.text(),
        following.as_millis()
    );
}

#[test]
fn cluster_failover_errors_match_redis() {
    // The same commands to a lone cluster node of Redis and of Shoal: both are primaries without slots.
    let redis = RedisServer::start(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
    let shoal = ShoalServer::start(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
    let cases: [&[&str]; 10] = [
        &["CLUSTER", "FAILOVER"],
        &["CLUSTER", "FAILOVER", "FORCE"],
        &["cluster", "failover", "takeover"],
        &["CLUSTER", "FAILOVER", "foo"],
        &["CLUSTER", "FAILOVER", ""],
        &["CLUSTER", "FAILOVER", "FORCEX"],
        &["CLUSTER", "FAILOVER", "FORCE", "TAKEOVER"],
        &["CLUSTER", "failover", "foo", "bar"],
        &["CLUSTER", "FAILOVER", "TAKEOVER", "x", "y"],
        &["CLUSTER", "FAILOVER", "FORCE", ""],
    ];
    let (mut rc, mut sc) = (redis.raw(), shoal.raw());
    let mut mismatches = Vec::new();
    for args in cases {
        let (want, got) = (rc.cmd(args), sc.cmd(args));
        eprintln!("{args:?}: redis {:?}, shoal {:?}", reply_text(&want), reply_text(&got));
        if want != got {
            mismatches.push(format!(
                "{args:?}: redis {:?}, shoal {:?}",
                reply_text(&want),
                reply_text(&got)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "replies differ from Redis:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(
        reply_text(&rc.cmd(&["CLUSTER", "FAILOVER"])),
        "-ERR You should send CLUSTER FAILOVER to a replica"
    );
    assert_eq!(
        reply_text(&rc.cmd(&["CLUSTER", "FAILOVER", "foo"])),
        "-ERR syntax error"
    );

    // In a cluster: on a primary, the same refusal; on a replica, a bad option or too many arguments are refused
    // and start nothing.
    let cluster = Cluster::start();
    let primary = cluster.nodes[0].port;
    let replica = replica_of(&cluster.nodes[0], primary).expect("a replica");
    let (p, r) = (node(&cluster, primary), node(&cluster, replica));
    for args in [
        &["CLUSTER", "FAILOVER"][..],
        &["CLUSTER", "FAILOVER", "FORCE"],
        &["CLUSTER", "FAILOVER", "TAKEOVER"],
    ] {
        assert_eq!(
            reply_text(&p.conn().cmd(args)),
            "-ERR You should send CLUSTER FAILOVER to a replica",
            "{args:?} on primary {primary}"
        );
    }
    let epoch_before = r.info_field("cluster_current_epoch");
    let refused: [(&[&str], Vec<u8>); 4] = [
        (&["CLUSTER", "FAILOVER", "foo"], rc.cmd(&["CLUSTER", "FAILOVER", "foo"])),
        (
            &["CLUSTER", "FAILOVER", "TAKEOVERS"],
            rc.cmd(&["CLUSTER", "FAILOVER", "TAKEOVERS"]),
        ),
        (
            &["CLUSTER", "FAILOVER", "TAKEOVER", "FORCE"],
            rc.cmd(&["CLUSTER", "FAILOVER", "TAKEOVER", "FORCE"]),
        ),
        (
            &["CLUSTER", "FAILOVER", "FORCE", "now"],
            rc.cmd(&["CLUSTER", "FAILOVER", "FORCE", "now"]),
        ),
    ];
    for (args, want) in &refused {
        let got = r.conn().cmd(args);
        assert_eq!(
            reply_text(&got),
            reply_text(want),
            "{args:?} on replica {replica} (expected Redis's reply)"
        );
    }
    // Longer than a failover takes here: nothing changed.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.repl_field("role"), "slave", "{replica} is still a replica");
    assert_eq!(p.repl_field("role"), "master", "{primary} is still the primary");
    assert!(
        sees_swap(&cluster.nodes[1], primary, Some(replica)).is_ok(),
        "the topology is unchanged"
    );
    assert_eq!(r.info_field("cluster_current_epoch"), epoch_before, "no new epoch");
    assert_eq!(
        info_count(r, "cluster_stats_messages_auth-req_sent"),
        0,
        "a refused CLUSTER FAILOVER started an election"
    );
    assert_eq!(
        info_count(r, "cluster_stats_messages_mfstart_sent"),
        0,
        "a refused CLUSTER FAILOVER sent MFSTART"
    );
}
