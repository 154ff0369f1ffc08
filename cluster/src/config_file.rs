//! `nodes.conf`: the node's persistent cluster configuration, in Redis's format.
//!
//! # Format
//! The CLUSTER NODES lines of every known node except handshakes in progress, then one `vars` line:
//! ```text
//! <id> <ip>:<port>@<bus-port>,[<hostname>],shard-id=<shard-id> <flags> <primary|-> <ping> <pong> <epoch> <link> <slots>...
//! vars currentEpoch <n> lastVoteEpoch <n>
//! ```
//! The address field carries Redis 7.2's aux fields after the hostname (Redis 7.0 has none): `shard-id` keeps
//! CLUSTER MYSHARDID stable across restarts. Our own line (flagged `myself`) also holds the slots this node is
//! migrating (`[<slot>->-<id>]`) or importing (`[<slot>-<-<id>]`).
//!
//! The driver writes the text atomically (temporary file, fsync, rename, fsync of the directory) whenever an
//! effect asks. On start, a missing or zero-length file means a fresh node (as in Redis); anything else must
//! parse completely: a file that does not is corrupt, and the node must not start, since guessing could put it
//! in the wrong cluster or give it stale slots. [`NodesFile::parse`] names the line and what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::error::ClusterError;
use crate::node::{Epoch, NodeFlags, NodeId, NodeInfo, ShardId};
use crate::slot::Slot;
use crate::slots::SlotRanges;
use crate::state::{ClusterConfig, ClusterNode, Effect};

/// A parsed `nodes.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodesFile {
    pub current_epoch: Epoch,
    pub last_vote_epoch: Epoch,
    /// In file order; exactly one is flagged `myself`.
    pub nodes: Vec<SavedNode>,
    /// Slots this node was migrating, and to whom.
    pub migrating: Vec<(Slot, NodeId)>,
    /// Slots this node was importing, and from whom.
    pub importing: Vec<(Slot, NodeId)>,
}

/// One node line of `nodes.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedNode {
    pub id: NodeId,
    pub ip: Option<IpAddr>,
    pub port: u16,
    pub bus_port: u16,
    pub hostname: Option<String>,
    pub shard_id: Option<ShardId>,
    pub flags: NodeFlags,
    pub primary: Option<NodeId>,
    pub ping_sent_ms: u64,
    pub pong_received_ms: u64,
    pub config_epoch: Epoch,
    pub slots: SlotRanges,
}

impl NodesFile {
    /// Parses the whole file; any line that is not exactly what we write is an error naming the line (1-based).
    pub fn parse(text: &str) -> Result<NodesFile, ClusterError> {
        let mut file = NodesFile {
            current_epoch: Epoch::ZERO,
            last_vote_epoch: Epoch::ZERO,
            nodes: Vec::new(),
            migrating: Vec::new(),
            importing: Vec::new(),
        };
        let mut seen_ids = BTreeMap::new();
        let mut owners: BTreeMap<u16, usize> = BTreeMap::new();
        // References to check once every line is read (a replica's line may precede its primary's).
        let mut references: Vec<(usize, NodeId)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let err = |reason: String| ClusterError::corrupt(line_no, reason);
            if fields.first() == Some(&"vars") {
                let pairs = fields.get(1..).unwrap_or_default();
                if pairs.len() % 2 != 0 {
                    return Err(err("the vars line needs name value pairs".into()));
                }
                for pair in pairs.chunks_exact(2) {
                    let &[name, value] = pair else {
                        continue;
                    };
                    let value = || {
                        value
                            .parse::<u64>()
                            .map(Epoch)
                            .map_err(|_| err(format!("{name} is not a number: {value}")))
                    };
                    match name {
                        "currentEpoch" => file.current_epoch = value()?,
                        "lastVoteEpoch" => file.last_vote_epoch = value()?,
                        // Variables of later versions are skipped, as Redis skips unknown ones.
                        _ => {}
                    }
                }
                continue;
            }
            let node = parse_node_line(&fields, line_no, &mut file, &mut references)?;
            if seen_ids.insert(node.id, line_no).is_some() {
                return Err(err(format!("node {} appears twice", node.id)));
            }
            for range in node.slots.ranges() {
                for s in range.start..=range.end {
                    if let Some(other) = owners.insert(s, line_no) {
                        return Err(err(format!("slot {s} is also claimed on line {other}")));
                    }
                }
            }
            if let Some(primary) = node.primary {
                references.push((line_no, primary));
            }
            file.nodes.push(node);
        }
        for (line_no, id) in references {
            if !seen_ids.contains_key(&id) {
                return Err(ClusterError::corrupt(
                    line_no,
                    format!("node {id} is referenced but has no line"),
                ));
            }
        }
        let myself: Vec<&SavedNode> = file
            .nodes
            .iter()
            .filter(|n| n.flags.contains(NodeFlags::MYSELF))
            .collect();
        match myself.len() {
            1 => {}
            0 => return Err(ClusterError::corrupt(0, "no node line is flagged myself")),
            _ => return Err(ClusterError::corrupt(0, "more than one node line is flagged myself")),
        }
        let max_epoch = file.nodes.iter().map(|n| n.config_epoch).max().unwrap_or_default();
        // "Something that should never happen: currentEpoch smaller than the max epoch found in the nodes
        // configuration" - Redis raises it; so do we.
        file.current_epoch = file.current_epoch.max(max_epoch);
        Ok(file)
    }

    /// The line flagged `myself`.
    pub fn myself(&self) -> Option<&SavedNode> {
        self.nodes.iter().find(|n| n.flags.contains(NodeFlags::MYSELF))
    }
}

fn parse_node_line(
    fields: &[&str],
    line_no: usize,
    file: &mut NodesFile,
    references: &mut Vec<(usize, NodeId)>,
) -> Result<SavedNode, ClusterError> {
    let err = |reason: String| ClusterError::corrupt(line_no, reason);
    let [id, addr, flags, primary, ping, pong, epoch, link, slots @ ..] = fields else {
        return Err(err(format!(
            "a node line has at least 8 fields, this one has {}",
            fields.len()
        )));
    };
    let id = NodeId::parse(id).ok_or_else(|| err(format!("bad node id {id:?}")))?;

    let mut addr_parts = addr.split(',');
    let ip_ports = addr_parts.next().unwrap_or_default();
    let (ip_port, bus) = ip_ports
        .rsplit_once('@')
        .ok_or_else(|| err(format!("bad address {ip_ports:?}: no @bus-port")))?;
    let (ip, port) = ip_port
        .rsplit_once(':')
        .ok_or_else(|| err(format!("bad address {ip_ports:?}: no :port")))?;
    let ip = match ip {
        "" => None,
        text => Some(
            text.parse::<IpAddr>()
                .map_err(|_| err(format!("bad IP address {text:?}")))?,
        ),
    };
    let port: u16 = port.parse().map_err(|_| err(format!("bad port {port:?}")))?;
    let bus_port: u16 = bus.parse().map_err(|_| err(format!("bad bus port {bus:?}")))?;
    let hostname = match addr_parts.next() {
        None | Some("") => None,
        Some(h) if h.contains('=') => return Err(err(format!("aux field {h:?} where the hostname goes"))),
        Some(h) => {
            let valid = h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
            if !valid {
                return Err(err(format!("bad hostname {h:?}")));
            }
            Some(h.to_owned())
        }
    };
    let mut shard_id = None;
    for aux in addr_parts {
        let (name, value) = aux
            .split_once('=')
            .ok_or_else(|| err(format!("bad aux field {aux:?}")))?;
        if name == "shard-id" {
            shard_id = Some(ShardId::parse(value).ok_or_else(|| err(format!("bad shard id {value:?}")))?);
        }
        // Other aux fields (Redis 7.2's tcp-port, tls-port, nodename) are not ours to use.
    }

    let mut node_flags = NodeFlags::empty();
    for name in flags.split(',') {
        let flag = NodeFlags::from_name(name).ok_or_else(|| err(format!("unknown flag {name:?}")))?;
        node_flags.insert(flag);
    }
    if node_flags.contains(NodeFlags::PRIMARY | NodeFlags::REPLICA) {
        return Err(err("a node cannot be both master and slave".into()));
    }
    let primary = match *primary {
        "-" => None,
        p => Some(NodeId::parse(p).ok_or_else(|| err(format!("bad primary id {p:?}")))?),
    };
    let number = |what: &str, v: &str| v.parse::<u64>().map_err(|_| err(format!("bad {what} {v:?}")));
    let ping_sent_ms = number("ping time", ping)?;
    let pong_received_ms = number("pong time", pong)?;
    let config_epoch = Epoch(number("config epoch", epoch)?);
    if !matches!(*link, "connected" | "disconnected") {
        return Err(err(format!("bad link state {link:?}")));
    }

    let mut node_slots = SlotRanges::new();
    for item in slots {
        if let Some(inner) = item.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| err(format!("unterminated migration entry {item:?}")))?;
            let (slot, migrating, target) = if let Some((s, t)) = inner.split_once("->-") {
                (s, true, t)
            } else if let Some((s, t)) = inner.split_once("-<-") {
                (s, false, t)
            } else {
                return Err(err(format!("bad migration entry {item:?}")));
            };
            let slot = parse_slot(slot).ok_or_else(|| err(format!("bad slot in {item:?}")))?;
            let target = NodeId::parse(target).ok_or_else(|| err(format!("bad node id in {item:?}")))?;
            references.push((line_no, target));
            if migrating {
                file.migrating.push((slot, target));
            } else {
                file.importing.push((slot, target));
            }
            continue;
        }
        let (start, end) = match item.split_once('-') {
            Some((a, b)) => (parse_slot(a), parse_slot(b)),
            None => (parse_slot(item), parse_slot(item)),
        };
        let (Some(start), Some(end)) = (start, end) else {
            return Err(err(format!("bad slot range {item:?}")));
        };
        if start > end {
            return Err(err(format!("reversed slot range {item:?}")));
        }
        for n in start.get()..=end.get() {
            if let Some(slot) = Slot::new(u32::from(n)) {
                node_slots.insert(slot);
            }
        }
    }
    Ok(SavedNode {
        id,
        ip,
        port,
        bus_port,
        hostname,
        shard_id,
        flags: node_flags,
        primary,
        ping_sent_ms,
        pong_received_ms,
        config_epoch,
        slots: node_slots,
    })
}

fn parse_slot(text: &str) -> Option<Slot> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Slot::new(text.parse().ok()?)
}

impl ClusterNode {
    /// The `nodes.conf` text for the current configuration.
    pub fn nodes_conf_text(&self) -> String {
        let mut out = String::with_capacity(self.table.len() * 180 + 48);
        for node in self.table.iter().filter(|n| !n.in_handshake()) {
            self.write_node_line(&mut out, node, true);
            out.push('\n');
        }
        out.push_str(&format!(
            "vars currentEpoch {} lastVoteEpoch {}\n",
            self.current_epoch, self.last_vote_epoch
        ));
        out
    }

    /// A node restarted from its `nodes.conf`: same id, epochs, nodes and slots; it reconnects to everyone on
    /// its first tick. As in Redis, saved ping and pong times only say whether one was pending (they restart
    /// from now), a FAIL flag restarts its clock, and the announce options of `config` win over the saved
    /// address of this node. A saved replica resumes replicating ([`Effect::ReplicateFrom`] in the first batch).
    pub fn from_nodes_file(
        config: ClusterConfig,
        file: &NodesFile,
        seed: u64,
        now_ms: u64,
    ) -> Result<ClusterNode, ClusterError> {
        let me = file
            .myself()
            .ok_or_else(|| ClusterError::corrupt(0, "no node line is flagged myself"))?;
        let mut rng = SmallRng::seed_from_u64(seed);
        let ids: BTreeSet<NodeId> = file.nodes.iter().map(|n| n.id).collect();
        let mut node = ClusterNode::empty(config, me.id, rng.clone(), now_ms);
        for saved in &file.nodes {
            let shard = saved.shard_id.unwrap_or_else(|| ShardId::random(&mut rng));
            let mut info = NodeInfo::new(saved.id, saved.flags, shard, now_ms);
            info.ip = saved.ip;
            info.port = saved.port;
            info.bus_port = saved.bus_port;
            info.hostname = saved.hostname.clone();
            info.primary = saved.primary.filter(|p| ids.contains(p));
            info.config_epoch = saved.config_epoch;
            if saved.ping_sent_ms != 0 {
                info.ping_sent_ms = now_ms;
            }
            if saved.pong_received_ms != 0 {
                info.pong_received_ms = now_ms;
            }
            if saved.flags.contains(NodeFlags::FAIL) {
                info.fail_time_ms = now_ms;
            }
            info.slots = saved.slots.clone();
            node.table.insert(info);
        }
        for &(slot, target) in &file.migrating {
            node.table.slot_map_mut().set_migrating(slot, Some(target));
        }
        for &(slot, source) in &file.importing {
            node.table.slot_map_mut().set_importing(slot, Some(source));
        }
        // A primary with replicas is a target for replica migration once orphaned (`clusterNodeAddSlave` runs
        // for every replica line Redis loads).
        for primary in file.nodes.iter().filter_map(|n| n.primary) {
            if let Some(p) = node.table.get_mut(&primary) {
                p.flags.insert(NodeFlags::MIGRATE_TO);
            }
        }
        node.current_epoch = file.current_epoch;
        node.last_vote_epoch = file.last_vote_epoch;
        // The quorum's base from the start, not 1 until the first state update: a restarted primary must not
        // count itself a majority.
        node.size = node.count_primaries().0.max(1);
        node.rng = rng;
        node.apply_own_address();
        if let Some((primary, Some(ip), port)) = node.my_primary().map(|p| (p.id, p.ip, p.port)) {
            node.emit(Effect::ReplicateFrom { primary, ip, port });
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS_7_0_FILE: &str = "\
54ae31de1f28c23e8bc030571dfe87737c677d19 127.0.0.1:30003@40003 master - 0 1795973317700 3 connected 10923-16383
b1cef2e29b523786a9526237919b20f3c10d694f 127.0.0.1:30006@40006 slave 4fc12d357691d45d1db60e3f09e065c3effd1b20 0 1795973317600 1 connected
f1f455fceb4151712f8373d93a0f1837bb05fed5 127.0.0.1:30002@40002 master - 0 1795973318504 2 connected 5461-10922
4fc12d357691d45d1db60e3f09e065c3effd1b20 127.0.0.1:30001@40001 myself,master - 0 1795973316000 1 connected 0-5460 [100->-f1f455fceb4151712f8373d93a0f1837bb05fed5] [6000-<-f1f455fceb4151712f8373d93a0f1837bb05fed5]
a11dc41698791ae9ee7955ce9dec7fdeca7e6350 127.0.0.1:30004@40004 slave f1f455fceb4151712f8373d93a0f1837bb05fed5 0 1795973318504 2 connected
e23c45c48c07e4ef7c2543a03bdba370669ca595 127.0.0.1:30005@40005 slave 54ae31de1f28c23e8bc030571dfe87737c677d19 0 1795973318705 3 connected
vars currentEpoch 6 lastVoteEpoch 0
";

    #[test]
    fn a_redis_7_0_nodes_conf_loads() {
        let file = NodesFile::parse(REDIS_7_0_FILE).unwrap();
        assert_eq!(file.nodes.len(), 6);
        assert_eq!(file.current_epoch, Epoch(6));
        let me = file.myself().unwrap();
        assert_eq!(me.id.to_string(), "4fc12d357691d45d1db60e3f09e065c3effd1b20");
        assert_eq!(me.slots.len(), 5461);
        assert_eq!(file.migrating.len(), 1);
        assert_eq!(file.importing.len(), 1);
        let node = ClusterNode::from_nodes_file(ClusterConfig::new(30001), &file, 1, 1000).unwrap();
        assert_eq!(node.my_id(), me.id);
        assert_eq!(node.slots_assigned(), 16384);
        assert_eq!(node.current_epoch(), Epoch(6));
    }

    #[test]
    fn our_file_survives_a_round_trip() {
        let file = NodesFile::parse(REDIS_7_0_FILE).unwrap();
        let node = ClusterNode::from_nodes_file(ClusterConfig::new(30001), &file, 1, 1000).unwrap();
        let text = node.nodes_conf_text();
        let again = NodesFile::parse(&text).unwrap();
        let node2 = ClusterNode::from_nodes_file(ClusterConfig::new(30001), &again, 2, 1000).unwrap();
        assert_eq!(node2.nodes_conf_text(), text);
        assert!(text.ends_with("vars currentEpoch 6 lastVoteEpoch 0\n"));
        assert!(text.contains(",,shard-id="), "shard ids are kept as aux fields");
    }

    fn corrupt_line(text: &str) -> (usize, String) {
        match NodesFile::parse(text) {
            Err(ClusterError::CorruptConfig { line, reason }) => (line, reason),
            other => panic!("expected a corrupt file error, got {other:?}"),
        }
    }

    #[test]
    fn corruption_is_reported_with_its_line() {
        let good = REDIS_7_0_FILE;
        let truncated = &good[..good.len() / 2];
        let (line, _) = corrupt_line(truncated);
        assert_eq!(line, 4, "the half-written fourth line");

        let bad_flag = good.replace("myself,master", "myself,captain");
        let (line, reason) = corrupt_line(&bad_flag);
        assert_eq!(line, 4);
        assert!(reason.contains("captain"), "{reason}");

        let double_claim = good.replace("10923-16383", "5000-16383");
        let (line, reason) = corrupt_line(&double_claim);
        assert!(reason.contains("also claimed"), "{reason}");
        assert!(line == 3 || line == 4);

        let no_myself = good.replace("myself,", "");
        assert!(corrupt_line(&no_myself).1.contains("myself"));

        let bad_vars = good.replace("currentEpoch 6", "currentEpoch six");
        assert_eq!(corrupt_line(&bad_vars).0, 7);

        let dangling = good.replace(
            "slave 54ae31de1f28c23e8bc030571dfe87737c677d19",
            "slave 0000000000000000000000000000000000000000",
        );
        assert!(corrupt_line(&dangling).1.contains("no line"));

        let binary = "4fc1\u{0}\u{1}garbage\n";
        assert_eq!(corrupt_line(binary).0, 1);
    }

    #[test]
    fn blank_lines_are_skipped_and_unknown_vars_ignored() {
        let text = format!(
            "\n{}\nvars currentEpoch 6 lastVoteEpoch 0 someFutureVar 3\n",
            REDIS_7_0_FILE.trim_end()
        );
        assert!(NodesFile::parse(&text).is_ok());
    }
}
