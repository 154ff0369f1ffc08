//! Network partitions in a six-node shoal-server cluster, on real processes cut apart with
//! `shoal_tests::netcut` (cgroups and iptables; the test process stays outside the cut and reaches every node):
//!
//! * a primary cut off from the other five nodes stops acknowledging writes within half the node timeout (its
//!   write lease), before its replica on the other side is promoted; after healing it rejoins as a replica of the
//!   new primary, and the writes it acknowledged in between that never reached the replica are counted;
//! * with `--min-replicas-to-ack 1`, the same partition loses no acknowledged write;
//! * a replica cut off from everyone never starts an election nor raises the current epoch, and resyncs after
//!   healing.
//!
//! Every wait is bounded in time and count; the only processes signalled are the nodes these tests started
//! (through `cluster_support`, by pid).

mod cluster_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cluster_support::{reply_text, Cluster, Node, CONVERGE_TIMEOUT, NODE_TIMEOUT_MS};
use shoal_tests::netcut::{self, NetCut, Side};
use shoal_tests::{encode_command, RawConn};

/// The write lease of a primary lasts half the node timeout after it last heard from a majority of primaries; the
/// last write it acknowledges may come this long after the cut at most (the lease plus 300 ms for scheduling).
const LAST_ACK_BOUND: Duration = Duration::from_millis(NODE_TIMEOUT_MS / 2 + 300);
/// How long a replica of a cut-off primary may take to be promoted: failure detection (the node timeout), the FAIL
/// agreement and the election, with generous room for a loaded two-core machine.
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a node may take to rejoin (become a replica with its link up, or resync) after healing.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A writer stops after this long, or this many commands, whatever happens.
const WRITER_MAX_TIME: Duration = Duration::from_secs(30);
const WRITER_MAX_COMMANDS: usize = 50_000;
/// Pause between two writes of a writer.
const WRITE_INTERVAL: Duration = Duration::from_millis(1);

fn require_netcut() {
    if let Err(why) = netcut::available() {
        panic!("partition tests need root, cgroup2 and iptables: {why}");
    }
}

/// The wall-clock time now as the node logs print it (UTC time of day), to place the cut among their lines.
fn utc_time_of_day() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, millis) = (since.as_secs() % 86_400, since.subsec_millis());
    format!("{:02}:{:02}:{:02}.{millis:03}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The lines of a node's log that contain one of `needles`.
fn log_lines(node: &Node, needles: &[&str]) -> String {
    node.log()
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .map(|l| format!("    {l}\n"))
        .collect()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
fn signed_ms(from: Instant, to: Instant) -> i128 {
    if to >= from {
        (to - from).as_millis() as i128
    } else {
        -((from - to).as_millis() as i128)
    }
}

/// Polls `cond` every 20 ms until it holds; the time it took, or a panic naming `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Instant {
    let started = Instant::now();
    loop {
        if cond() {
            return Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn current_epoch(node: &Node) -> u64 {
    node.info_field("cluster_current_epoch")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("node {}: no cluster_current_epoch in CLUSTER INFO", node.port))
}

/// One line of CLUSTER NODES, split: id, address, flags, primary id, ..., slot ranges from the ninth field on.
fn nodes_lines(node: &Node) -> Vec<Vec<String>> {
    node.text(&["CLUSTER", "NODES"])
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect()
}

fn line_port(fields: &[String]) -> Option<u16> {
    fields.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()
}

fn has_flag(fields: &[String], flag: &str) -> bool {
    fields.get(2).is_some_and(|f| f.split(',').any(|x| x == flag))
}

/// This node's own CLUSTER NODES line.
fn myself(node: &Node) -> Vec<String> {
    nodes_lines(node)
        .into_iter()
        .find(|f| has_flag(f, "myself"))
        .unwrap_or_else(|| panic!("node {}: no myself line in CLUSTER NODES", node.port))
}

/// Whether the node sees itself as a primary serving slots.
fn serves_slots(node: &Node) -> bool {
    let me = myself(node);
    has_flag(&me, "master") && me.len() > 8
}

/// The slot-serving primaries as `node` sees them: id and slot ranges, sorted.
fn primaries(node: &Node) -> Vec<(String, Vec<String>)> {
    let mut p: Vec<(String, Vec<String>)> = nodes_lines(node)
        .into_iter()
        .filter(|f| has_flag(f, "master") && f.len() > 8)
        .map(|f| (f[0].clone(), f[8..].to_vec()))
        .collect();
    p.sort();
    p
}

/// The index of the replica of primary `primary`, as CLUSTER NODES and the replica's INFO replication say.
fn replica_of(cluster: &Cluster, primary: usize) -> usize {
    let id = cluster.nodes[primary].my_id();
    let lines = nodes_lines(&cluster.nodes[primary]);
    let port = lines
        .iter()
        .find(|f| has_flag(f, "slave") && f.get(3) == Some(&id))
        .and_then(|f| line_port(f))
        .unwrap_or_else(|| panic!("node {primary} has no replica: {lines:?}"));
    let idx = cluster
        .nodes
        .iter()
        .position(|n| n.port == port)
        .unwrap_or_else(|| panic!("no node on port {port}"));
    assert_eq!(
        cluster.nodes[idx].repl_field("master_port"),
        cluster.nodes[primary].port.to_string(),
        "node {idx} is listed as a replica of node {primary} but follows another"
    );
    idx
}

/// A hash tag whose slot `port` serves.
fn tag_owned_by(cluster: &Cluster, port: u16) -> String {
    for i in 0..500 {
        let tag = format!("p{i}");
        if cluster.owner_of(&format!("{{{tag}}}")).port == port {
            return tag;
        }
    }
    panic!("no tag among 500 hashes to a slot of the node on port {port}");
}

/// Both ports of every node in `nodes`, and their pids: one side of a cut.
fn side(nodes: &[&Node]) -> Side {
    Side {
        pids: nodes
            .iter()
            .map(|n| n.pid().unwrap_or_else(|| panic!("node {} is not running", n.port)))
            .collect(),
        ports: nodes.iter().flat_map(|n| [n.port, n.bus_port]).collect(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A writer: SET after SET on one connection, every reply recorded.
// ---------------------------------------------------------------------------------------------------------------

/// A write acknowledged with +OK.
struct Ack {
    key: String,
    value: String,
    /// When the command was sent and when its OK arrived: the server applied it in between.
    sent: Instant,
    replied: Instant,
}

#[derive(Default)]
struct WriterLog {
    acks: Vec<Ack>,
    /// Refusals and failures by kind (the first word of the error, or `io`), with the first time seen.
    errors: BTreeMap<String, (usize, Instant)>,
    commands: usize,
}

impl WriterLog {
    fn last_ack(&self) -> Option<&Ack> {
        self.acks.last()
    }

    fn first_ack_after(&self, t: Instant) -> Option<&Ack> {
        self.acks.iter().find(|a| a.sent >= t)
    }

    fn errors_text(&self, since: Instant) -> String {
        self.errors
            .iter()
            .map(|(k, (n, first))| format!("{k}: {n} (first {} ms after the cut)", signed_ms(since, *first)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    handle: Option<JoinHandle<WriterLog>>,
}

impl Writer {
    /// Writes `{prefix}:0`, `{prefix}:1`, ... to the node on `port` until stopped (bounded in time and count).
    fn start(port: u16, prefix: String) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let handle = thread::spawn(move || {
            let started = Instant::now();
            let mut log = WriterLog::default();
            let mut conn: Option<RawConn> = None;
            while !stop2.load(Ordering::Relaxed)
                && started.elapsed() < WRITER_MAX_TIME
                && log.commands < WRITER_MAX_COMMANDS
            {
                if conn.is_none() {
                    match RawConn::connect_timeout(port, Duration::from_secs(1)) {
                        Ok(mut c) => {
                            // min-replicas-ack-timeout is 2 s: a reply comes well within this.
                            c.set_timeout(Duration::from_secs(6));
                            conn = Some(c);
                        }
                        Err(_) => {
                            thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let n = log.commands;
                log.commands += 1;
                let key = format!("{prefix}:{n}");
                let value = format!("value-{n}");
                let sent = Instant::now();
                match c.command(&["SET", &key, &value]) {
                    Ok(r) if r == b"+OK\r\n" => {
                        log.acks.push(Ack {
                            key,
                            value,
                            sent,
                            replied: Instant::now(),
                        });
                        acked2.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let text = reply_text(&r);
                        let kind = text.trim_start_matches('-').split(' ').next().unwrap_or("").to_owned();
                        log.errors.entry(kind).or_insert((0, Instant::now())).0 += 1;
                    }
                    Err(_) => {
                        log.errors.entry("io".into()).or_insert((0, Instant::now())).0 += 1;
                        conn = None;
                    }
                }
                thread::sleep(WRITE_INTERVAL);
            }
            log
        });
        Writer {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    fn finish(mut self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("a running writer")
            .join()
            .expect("writer thread")
    }
}

impl Drop for Writer {
    /// A test failing midway stops its writers too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The acknowledged writes whose key is missing on `node` or holds another value (GETs pipelined by 200).
fn missing_writes<'a>(node: &Node, acks: &'a [Ack]) -> Vec<&'a Ack> {
    let mut conn = node.conn();
    let mut missing = Vec::new();
    for chunk in acks.chunks(200) {
        let mut batch = Vec::new();
        for a in chunk {
            batch.extend(encode_command(&["GET", a.key.as_str()]));
        }
        conn.send(&batch).expect("send GETs");
        for a in chunk {
            let r = conn.read_reply().expect("GET reply");
            assert!(
                r.starts_with(b"$"),
                "GET {} on node {}: {}",
                a.key,
                node.port,
                String::from_utf8_lossy(&r)
            );
            if reply_text(&r) != a.value || r.starts_with(b"$-1") {
                missing.push(a);
            }
        }
    }
    missing
}

// ---------------------------------------------------------------------------------------------------------------
// The primary cut off from the rest of the cluster.
// ---------------------------------------------------------------------------------------------------------------

/// What a cut-off primary scenario measured.
struct PrimaryCut {
    acked_total: usize,
    acked_during_cut: usize,
    lost: usize,
    new_lost: usize,
}

/// Cuts a primary (node 0) off from the other five nodes while a client keeps writing to it and another keeps
/// trying its replica; waits for the promotion, heals, and checks what the lease guarantees.
fn cut_off_a_primary(cluster: &Cluster, label: &str) -> PrimaryCut {
    let victim = &cluster.nodes[0];
    assert!(
        serves_slots(victim),
        "node 0 is not a primary serving slots: {:?}",
        myself(victim)
    );
    let r = replica_of(cluster, 0);
    let replica = &cluster.nodes[r];
    let tag = tag_owned_by(cluster, victim.port);
    let victim_slots = myself(victim)[8..].to_vec();
    let replica_id = replica.my_id();
    eprintln!(
        "[{label}] victim primary port {} (bus {}), its replica: node {r} port {}; keys {{{tag}}}:*",
        victim.port, victim.bus_port, replica.port
    );

    let old_writer = Writer::start(victim.port, format!("{{{tag}}}:old"));
    let new_writer = Writer::start(replica.port, format!("{{{tag}}}:new"));
    wait_for(
        Duration::from_secs(15),
        "the writer's first 100 acknowledged writes",
        || old_writer.acked() >= 100,
    );

    let others: Vec<&Node> = cluster.nodes.iter().skip(1).collect();
    let cut_begins = Instant::now();
    let mut cut = NetCut::between(&side(&[victim]), &side(&others)).expect("cut the network");
    let cut_at = Instant::now();
    eprintln!(
        "[{label}] cut installed in {} ms ({} established connections cut), complete at {}",
        ms(cut_at - cut_begins),
        cut.established(),
        utc_time_of_day()
    );

    let promoted_at = wait_for(PROMOTION_TIMEOUT, "the replica's promotion", || {
        serves_slots(replica) && replica.repl_field("role") == "master"
    });
    eprintln!(
        "[{label}] replica promoted {} ms after the cut",
        ms(promoted_at - cut_at)
    );
    assert_eq!(
        myself(replica)[8..].to_vec(),
        victim_slots,
        "the promoted replica should serve exactly the cut-off primary's slots"
    );
    // The old primary, still cut off, keeps refusing for a while with a new primary in place.
    thread::sleep(Duration::from_millis(500));
    assert!(
        has_flag(&myself(victim), "master"),
        "the cut-off primary changed its role before the heal: {:?}",
        myself(victim)
    );

    let healed_at = Instant::now();
    cut.heal();
    eprintln!("[{label}] healed at {}", utc_time_of_day());
    let new_primary_port = replica.port.to_string();
    let rejoined_at = wait_for(REJOIN_TIMEOUT, "the old primary to follow the new one", || {
        victim.repl_field("role") == "slave"
            && victim.repl_field("master_port") == new_primary_port
            && victim.repl_field("master_link_status") == "up"
    });
    eprintln!(
        "[{label}] old primary a replica of the new one, link up, {} ms after the heal",
        ms(rejoined_at - healed_at)
    );
    let old_me = myself(victim);
    assert!(
        has_flag(&old_me, "slave") && old_me.get(3) == Some(&replica_id),
        "the old primary should be a replica of the promoted one in its CLUSTER NODES: {old_me:?}"
    );
    // The new primary takes writes (with min-replicas-to-ack, once its new replica acknowledges them).
    let before = new_writer.acked();
    wait_for(
        Duration::from_secs(15),
        "a write acknowledged by the new primary after the heal",
        || new_writer.acked() > before,
    );
    // Both writers go on a moment, so a write the old primary would wrongly take after the heal is seen.
    thread::sleep(Duration::from_millis(300));
    let old_log = old_writer.finish();
    let new_log = new_writer.finish();

    cluster.wait_state_ok(CONVERGE_TIMEOUT);
    eprintln!(
        "[{label}] old primary's log:\n{}[{label}] promoted replica's log:\n{}",
        log_lines(victim, &["lease", "Cluster state", "FAIL", "replica of", "configEpoch"]),
        log_lines(
            replica,
            &["election", "Election", "FAIL", "master", "configEpoch", "Cluster state"]
        )
    );
    cluster.assert_check_clean("after the heal");
    assert_eq!(
        cluster.owner_of(&format!("{{{tag}}}")).port,
        replica.port,
        "the promoted replica should serve the victim's slots"
    );

    // The safety figures.
    let last = old_log
        .last_ack()
        .expect("the old primary acknowledged writes before the cut");
    let last_after_cut = signed_ms(cut_at, last.replied);
    let first_new = new_log
        .first_ack_after(cut_begins)
        .expect("the new primary acknowledged writes");
    let acked_while_cutting = old_log
        .acks
        .iter()
        .filter(|a| a.replied >= cut_begins && a.replied < cut_at)
        .count();
    let acked_during_cut = old_log.acks.iter().filter(|a| a.replied >= cut_at).count();
    let lost: Vec<&Ack> = missing_writes(replica, &old_log.acks);
    let new_lost = missing_writes(replica, &new_log.acks);
    eprintln!(
        "[{label}] old primary: {} commands, {} acknowledged ({acked_while_cutting} while the cut was being \
         installed, {acked_during_cut} after); last OK reply {} ms after the cut (sent {} ms after it); refusals: \
         {}",
        old_log.commands,
        old_log.acks.len(),
        last_after_cut,
        signed_ms(cut_at, last.sent),
        old_log.errors_text(cut_at)
    );
    eprintln!(
        "[{label}] new primary: first OK sent {} ms after the cut, {} ms after the old primary's last OK reply \
         (its reply {} ms after the cut); {} acknowledged; refusals: {}",
        signed_ms(cut_at, first_new.sent),
        signed_ms(last.replied, first_new.sent),
        signed_ms(cut_at, first_new.replied),
        new_log.acks.len(),
        new_log.errors_text(cut_at)
    );
    eprintln!(
        "[{label}] acknowledged writes lost: {} of {} to the old primary{}, {} of {} to the new one",
        lost.len(),
        old_log.acks.len(),
        match (lost.first(), lost.last()) {
            (Some(f), Some(l)) => format!(
                " ({} .. {}, acknowledged {} .. {} ms after the cut)",
                f.key,
                l.key,
                signed_ms(cut_at, f.replied),
                signed_ms(cut_at, l.replied)
            ),
            _ => String::new(),
        },
        new_lost.len(),
        new_log.acks.len()
    );
    eprintln!(
        "[{label}] summary: last ack {last_after_cut} ms after the cut, promotion {} ms, rejoin {} ms after the \
         heal, {acked_during_cut} writes acked during the cut, {} lost",
        ms(promoted_at - cut_at),
        ms(rejoined_at - healed_at),
        lost.len()
    );

    assert!(
        last.replied <= cut_at + LAST_ACK_BOUND,
        "the cut-off primary acknowledged a write {last_after_cut} ms after the cut (bound {} ms): {}",
        ms(LAST_ACK_BOUND),
        last.key
    );
    assert!(
        last.replied < first_new.sent,
        "the promoted replica acknowledged {} (sent {} ms after the cut) before the old primary's last \
         acknowledged write {} (reply {} ms after the cut)",
        first_new.key,
        signed_ms(cut_at, first_new.sent),
        last.key,
        last_after_cut
    );
    assert!(
        new_lost.is_empty(),
        "writes acknowledged by the new primary are missing on it: {:?}",
        new_lost.iter().take(5).map(|a| &a.key).collect::<Vec<_>>()
    );
    PrimaryCut {
        acked_total: old_log.acks.len(),
        acked_during_cut,
        lost: lost.len(),
        new_lost: new_lost.len(),
    }
}

#[test]
fn a_primary_cut_off_stops_taking_writes_before_its_replica_is_promoted() {
    require_netcut();
    let cluster = Cluster::start();
    let got = cut_off_a_primary(&cluster, "default");
    eprintln!(
        "[default] {} writes acknowledged by the old primary, {} during the cut, {} lost (possible without \
         min-replicas-to-ack), {} lost on the new primary",
        got.acked_total, got.acked_during_cut, got.lost, got.new_lost
    );
}

#[test]
fn with_min_replicas_to_ack_no_acknowledged_write_is_lost_in_a_partition() {
    require_netcut();
    let cluster = Cluster::start_with(&["--min-replicas-to-ack", "1"]);
    for n in &cluster.nodes {
        let v = n.text(&["CONFIG", "GET", "min-replicas-to-ack"]);
        assert!(
            v.ends_with("min-replicas-to-ack\r\n$1\r\n1"),
            "node {}: min-replicas-to-ack not set: {v:?}",
            n.port
        );
    }
    let got = cut_off_a_primary(&cluster, "min-replicas-to-ack 1");
    assert_eq!(
        got.lost, 0,
        "with min-replicas-to-ack 1, {} of {} acknowledged writes were lost",
        got.lost, got.acked_total
    );
}

// ---------------------------------------------------------------------------------------------------------------
// A replica cut off from everyone.
// ---------------------------------------------------------------------------------------------------------------

/// A replica's GET of `key` (READONLY) as text ("" when the key is missing), or its error reply.
fn replica_get(node: &Node, key: &str) -> Result<String, String> {
    let mut c = node.conn();
    assert_eq!(c.cmd(&["READONLY"]), b"+OK\r\n", "READONLY on node {}", node.port);
    let r = c.cmd(&["GET", key]);
    if r.starts_with(b"$") {
        Ok(reply_text(&r))
    } else {
        Err(reply_text(&r))
    }
}

fn repl_offset(node: &Node, field: &str) -> u64 {
    node.repl_field(field)
        .parse()
        .unwrap_or_else(|_| panic!("node {}: no {field} in INFO replication", node.port))
}

#[test]
fn a_replica_cut_off_never_raises_the_epoch_or_starts_an_election() {
    require_netcut();
    let cluster = Cluster::start();
    let primary = 0;
    let r = replica_of(&cluster, primary);
    let replica = &cluster.nodes[r];
    let primary_id = cluster.nodes[primary].my_id();
    let replica_id = replica.my_id();
    let primaries_before = primaries(&cluster.nodes[primary]);
    assert_eq!(primaries_before.len(), 3, "{primaries_before:?}");
    let epochs_before: Vec<u64> = cluster.nodes.iter().map(current_epoch).collect();
    let tag = tag_owned_by(&cluster, cluster.nodes[primary].port);
    let before_key = format!("{{{tag}}}:before");
    let during_key = format!("{{{tag}}}:during");
    assert_eq!(cluster.nodes[primary].text(&["SET", &before_key, "1"]), "OK");
    wait_for(
        Duration::from_secs(10),
        "the replica to have a write made before the cut",
        || replica_get(replica, &before_key).as_deref() == Ok("1"),
    );
    eprintln!(
        "[replica] cutting off node {r} (port {}, replica of node {primary}); epochs before: {epochs_before:?}",
        replica.port
    );

    let others: Vec<&Node> = cluster.nodes.iter().filter(|n| n.port != replica.port).collect();
    let mut cut = NetCut::between(&side(&[replica]), &side(&others)).expect("cut the network");
    let cut_at = Instant::now();
    eprintln!("[replica] {} established connections cut", cut.established());
    // The primary, still in the majority, takes a write the replica cannot get during the cut.
    assert_eq!(cluster.nodes[primary].text(&["SET", &during_key, "2"]), "OK");
    let cut_for = Duration::from_millis(3 * NODE_TIMEOUT_MS);
    let mut link_down_at = None;
    let mut flagged_by_primary_at = None;
    let mut primary_flagged_at = None;
    let mut polls = 0;
    while cut_at.elapsed() < cut_for && polls < 1000 {
        polls += 1;
        let me = myself(replica);
        assert!(
            has_flag(&me, "slave") && !has_flag(&me, "master"),
            "the cut-off replica changed its role {} ms after the cut: {me:?}",
            ms(cut_at.elapsed())
        );
        for (i, n) in cluster.nodes.iter().enumerate() {
            let e = current_epoch(n);
            assert_eq!(
                e,
                epochs_before[i],
                "node {i}'s current epoch changed {} ms after the cut",
                ms(cut_at.elapsed())
            );
        }
        if link_down_at.is_none() && replica.repl_field("master_link_status") == "down" {
            link_down_at = Some(Instant::now());
        }
        // PFAIL ("fail?") or FAIL: either shows the cut is effective.
        let flagged = |f: &Vec<String>, id: &str| f[0] == id && (has_flag(f, "fail") || has_flag(f, "fail?"));
        if flagged_by_primary_at.is_none()
            && nodes_lines(&cluster.nodes[primary])
                .iter()
                .any(|f| flagged(f, &replica_id))
        {
            flagged_by_primary_at = Some(Instant::now());
        }
        if primary_flagged_at.is_none() && nodes_lines(replica).iter().any(|f| flagged(f, &primary_id)) {
            primary_flagged_at = Some(Instant::now());
        }
        thread::sleep(Duration::from_millis(100));
    }
    // The replica's cluster_state is fail in its minority, so it refuses reads: compare replication offsets.
    let primary_offset = repl_offset(&cluster.nodes[primary], "master_repl_offset");
    let replica_offset = repl_offset(replica, "slave_repl_offset");
    let at = |t: Option<Instant>| t.map_or("never".to_owned(), |t| format!("{} ms", ms(t - cut_at)));
    eprintln!(
        "[replica] cut for {} ms ({polls} polls): the primary flagged the replica failing after {}, the replica \
         flagged its primary failing after {}, replica's master_link_status down after {}",
        ms(cut_at.elapsed()),
        at(flagged_by_primary_at),
        at(primary_flagged_at),
        at(link_down_at)
    );
    assert!(
        flagged_by_primary_at.is_some() && primary_flagged_at.is_some(),
        "the cut was not effective: the primary and the replica should each flag the other failing"
    );
    eprintln!("[replica] at the end of the cut: primary's offset {primary_offset}, replica's {replica_offset}");
    assert!(
        replica_offset < primary_offset,
        "the cut-off replica received the write made during the cut (offset {replica_offset}, primary's \
         {primary_offset})"
    );

    let healed_at = Instant::now();
    cut.heal();
    let primary_port = cluster.nodes[primary].port.to_string();
    let resynced_at = wait_for(
        REJOIN_TIMEOUT,
        "the replica to get the write made during the cut",
        || {
            replica.repl_field("master_link_status") == "up"
                && replica.repl_field("master_port") == primary_port
                && replica_get(replica, &during_key).as_deref() == Ok("2")
        },
    );
    cluster.wait_state_ok(CONVERGE_TIMEOUT);
    let ok_at = Instant::now();
    eprintln!(
        "[replica] after the heal: link up with the write made during the cut in {} ms, cluster_state ok \
         everywhere in {} ms",
        ms(resynced_at - healed_at),
        ms(ok_at - healed_at)
    );

    let epochs_after: Vec<u64> = cluster.nodes.iter().map(current_epoch).collect();
    eprintln!("[replica] epochs after: {epochs_after:?}");
    assert_eq!(epochs_after, epochs_before, "current epochs changed");
    for n in &cluster.nodes {
        assert_eq!(primaries(n), primaries_before, "node {}: the primaries changed", n.port);
    }
    let me = myself(replica);
    assert!(has_flag(&me, "slave") && me.get(3) == Some(&primary_id), "{me:?}");
    let log = replica.log();
    assert!(
        !log.contains("Starting a failover election"),
        "the cut-off replica started an election:\n{log}"
    );
    cluster.assert_check_clean("after the heal");
}
