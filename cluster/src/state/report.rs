//! What CLUSTER NODES, INFO, SLOTS, SHARDS, LINKS and REPLICAS show, as Redis 7.0.15 shows it.
//!
//! Text replies (NODES, INFO, REPLICAS lines) are produced here byte for byte; array replies come as plain
//! structs in Redis's element order, for the server to encode in RESP2 or RESP3.
//!
//! # CLUSTER NODES
//! One line per known node, each ending in `\n` (the last one too):
//! `<id> <ip>:<port>@<bus-port>[,<hostname>] <flags> <primary-id or -> <ping-sent> <pong-recv> <config-epoch>
//! <connected|disconnected>[ <slot or start-end>...][ [<slot>->-<id>]...|[<slot>-<-<id>]...]`.
//! Flags are `myself,master,slave,fail?,fail,handshake,noaddr,nofailover` in that order (`noflags` when
//! none); an IPv6 address is written without brackets; ping and pong times are unix ms (0 when none); a
//! replica shows its primary's config epoch; only this node's own line lists the slots it is migrating or
//! importing.

use std::fmt::Write;

use super::ClusterNode;
use crate::error::ClusterError;
use crate::link::{LinkDirection, LinkInfo};
use crate::message::MessageKind;
use crate::node::{NodeId, NodeInfo};
use crate::slot::{Slot, SLOT_COUNT};
use crate::slots::SlotRange;

/// One element of CLUSTER SLOTS: a run of slots and the nodes serving it, primary first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotsEntry {
    pub start: Slot,
    pub end: Slot,
    pub nodes: Vec<SlotsNode>,
}

/// A node in a CLUSTER SLOTS element: `[ip, port, id, {hostname?}]` (the map is empty without a hostname).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotsNode {
    pub ip: String,
    pub port: u16,
    pub id: NodeId,
    pub hostname: Option<String>,
}

/// One element of CLUSTER SHARDS: `{slots: [start, end, ...], nodes: [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEntry {
    pub slots: Vec<SlotRange>,
    /// The primary first, then its replicas.
    pub nodes: Vec<ShardNode>,
}

/// A node of a CLUSTER SHARDS element, a map in this key order: `id`, `port`, `ip`, `endpoint`,
/// `hostname` (only when set), `role`, `replication-offset`, `health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardNode {
    pub id: NodeId,
    pub port: u16,
    pub ip: String,
    /// The preferred endpoint (`cluster-preferred-endpoint-type ip`): the IP.
    pub endpoint: String,
    pub hostname: Option<String>,
    /// `master` or `replica`.
    pub role: &'static str,
    pub replication_offset: u64,
    /// `online`, `fail`, or `loading` (a replica that has not synced).
    pub health: &'static str,
}

impl ClusterNode {
    /// The CLUSTER NODES reply.
    pub fn cluster_nodes_text(&self) -> String {
        let mut out = String::with_capacity(self.table.len() * 140);
        for node in self.table.iter() {
            self.write_node_line(&mut out, node, false);
            out.push('\n');
        }
        out
    }

    /// One node's CLUSTER NODES line, without the newline (CLUSTER REPLICAS replies with these).
    pub fn node_description(&self, node: &NodeInfo) -> String {
        let mut out = String::with_capacity(140);
        self.write_node_line(&mut out, node, false);
        out
    }

    /// A CLUSTER NODES line; `for_config` adds the `nodes.conf` extras (the shard id as a Redis 7.2 aux field).
    pub(crate) fn write_node_line(&self, out: &mut String, node: &NodeInfo, for_config: bool) {
        node.id.write_hex(out);
        out.push(' ');
        if let Some(ip) = node.ip {
            let _ = write!(out, "{ip}");
        }
        let _ = write!(out, ":{}@{}", node.port, node.bus_port);
        if let Some(hostname) = &node.hostname {
            out.push(',');
            out.push_str(hostname);
        }
        if for_config {
            if node.hostname.is_none() {
                out.push(',');
            }
            out.push_str(",shard-id=");
            node.shard_id.write_hex(out);
        }
        out.push(' ');
        node.flags.render(out);
        out.push(' ');
        match node.primary {
            Some(primary) => primary.write_hex(out),
            None => out.push('-'),
        }
        let epoch = self.shown_config_epoch(node);
        let connected = node.is_myself() || self.link_established(node.link);
        let _ = write!(
            out,
            " {} {} {} {}",
            node.ping_sent_ms,
            node.pong_received_ms,
            epoch,
            if connected { "connected" } else { "disconnected" }
        );
        node.slots.render(out);
        if node.is_myself() {
            let map = self.table.slot_map();
            let mut marks: Vec<(Slot, bool, NodeId)> = map
                .migrating()
                .map(|(s, n)| (s, true, n))
                .chain(
                    map.importing()
                        .filter(|(s, _)| map.migrating_to(*s).is_none())
                        .map(|(s, n)| (s, false, n)),
                )
                .collect();
            marks.sort_by_key(|(s, _, _)| *s);
            for (slot, migrating, id) in marks {
                let _ = write!(out, " [{slot}{}{id}]", if migrating { "->-" } else { "-<-" });
            }
        }
    }

    /// A replica shows (and announces) its primary's config epoch.
    fn shown_config_epoch(&self, node: &NodeInfo) -> u64 {
        let primary = if node.is_replica() {
            node.primary.and_then(|id| self.table.get(&id))
        } else {
            None
        };
        primary.unwrap_or(node).config_epoch.get()
    }

    /// The CLUSTER INFO reply (lines end in CRLF; message counters are listed only for kinds that occurred).
    pub fn cluster_info_text(&self) -> String {
        let map = self.table.slot_map();
        let (mut assigned, mut ok, mut pfail, mut fail) = (0, 0, 0, 0);
        for slot in Slot::all() {
            let Some(owner) = map.owner(slot).and_then(|id| self.table.get(&id)) else {
                continue;
            };
            assigned += 1;
            if owner.is_failed() {
                fail += 1;
            } else if owner.timed_out() {
                pfail += 1;
            } else {
                ok += 1;
            }
        }
        let mut out = String::with_capacity(640);
        let _ = write!(
            out,
            "cluster_state:{}\r\n\
             cluster_slots_assigned:{assigned}\r\n\
             cluster_slots_ok:{ok}\r\n\
             cluster_slots_pfail:{pfail}\r\n\
             cluster_slots_fail:{fail}\r\n\
             cluster_known_nodes:{}\r\n\
             cluster_size:{}\r\n\
             cluster_current_epoch:{}\r\n\
             cluster_my_epoch:{}\r\n",
            if self.state_ok { "ok" } else { "fail" },
            self.table.len(),
            self.size,
            self.current_epoch,
            self.shown_config_epoch(self.me()),
        );
        for (counts, direction) in [(&self.messages_sent, "sent"), (&self.messages_received, "received")] {
            let mut total = 0;
            for kind in MessageKind::ALL {
                let n = counts.get(kind as usize).copied().unwrap_or(0);
                if n > 0 {
                    total += n;
                    let _ = write!(out, "cluster_stats_messages_{}_{direction}:{n}\r\n", kind.name());
                }
            }
            let _ = write!(out, "cluster_stats_messages_{direction}:{total}\r\n");
        }
        let _ = write!(
            out,
            "total_cluster_links_buffer_limit_exceeded:{}\r\n",
            self.links_buffer_limit_exceeded
        );
        out
    }

    /// The CLUSTER SLOTS reply: runs of slots with one owner, in slot order; replicas appear once they have
    /// synced (announced a non-zero replication offset) and unless they are FAIL.
    pub fn cluster_slots(&self) -> Vec<SlotsEntry> {
        self.table
            .slot_map()
            .runs()
            .filter_map(|run| {
                let owner = self.table.get(&run.owner)?;
                let mut nodes = vec![slots_node(owner)];
                nodes.extend(
                    self.table
                        .replicas_of(owner.id)
                        .filter(|r| self.replica_available(r))
                        .map(slots_node),
                );
                Some(SlotsEntry {
                    start: run.start,
                    end: run.end,
                    nodes,
                })
            })
            .collect()
    }

    fn replica_available(&self, replica: &NodeInfo) -> bool {
        if replica.is_failed() {
            return false;
        }
        let offset = if replica.is_myself() {
            self.my_repl_offset
        } else {
            replica.repl_offset
        };
        offset != 0
    }

    /// The CLUSTER SHARDS reply: one shard per primary (slot-less primaries included), its slots as ranges.
    pub fn cluster_shards(&self) -> Vec<ShardEntry> {
        self.table
            .iter()
            .filter(|n| n.is_primary())
            .map(|primary| {
                let mut nodes = vec![self.shard_node(primary)];
                nodes.extend(self.table.replicas_of(primary.id).map(|r| self.shard_node(r)));
                ShardEntry {
                    slots: primary.slots.ranges().to_vec(),
                    nodes,
                }
            })
            .collect()
    }

    fn shard_node(&self, node: &NodeInfo) -> ShardNode {
        let offset = if node.is_myself() {
            self.my_repl_offset
        } else {
            node.repl_offset
        };
        let health = if node.is_failed() {
            "fail"
        } else if node.is_replica() && offset == 0 {
            "loading"
        } else {
            "online"
        };
        ShardNode {
            id: node.id,
            port: node.port,
            ip: node.ip_text(),
            endpoint: node.ip_text(),
            hostname: node.hostname.clone(),
            role: if node.is_replica() { "replica" } else { "master" },
            replication_offset: offset,
            health,
        }
    }

    /// The CLUSTER LINKS reply's links, each node's outbound link then its inbound one.
    pub fn cluster_links(&self) -> Vec<LinkInfo> {
        let mut out = Vec::new();
        for node in self.table.iter() {
            for (link, direction) in [
                (node.link, LinkDirection::Outbound),
                (node.inbound_link, LinkDirection::Inbound),
            ] {
                let Some((link, record)) = link.and_then(|l| self.links.get(&l).map(|r| (l, r))) else {
                    continue;
                };
                if !record.established {
                    continue;
                }
                out.push(LinkInfo {
                    link,
                    direction,
                    node: node.id,
                    created_ms: record.created_ms,
                });
            }
        }
        out
    }

    /// CLUSTER REPLICAS / SLAVES: the replicas of a primary.
    pub fn replicas(&self, id: &str) -> Result<Vec<&NodeInfo>, ClusterError> {
        let node = self
            .lookup(id)
            .ok_or_else(|| ClusterError::UnknownNode(id.to_owned()))?;
        if node.is_replica() {
            return Err(ClusterError::NotAPrimary);
        }
        Ok(self.table.replicas_of(node.id).collect())
    }

    /// CLUSTER REPLICAS as Redis replies: one CLUSTER NODES line (no newline) per replica.
    pub fn replicas_text(&self, id: &str) -> Result<Vec<String>, ClusterError> {
        Ok(self
            .replicas(id)?
            .into_iter()
            .map(|r| self.node_description(r))
            .collect())
    }

    /// How many slots are assigned (a quick check for "all covered").
    pub fn slots_assigned(&self) -> usize {
        let n = self.table.slot_map().assigned();
        debug_assert!(n <= SLOT_COUNT);
        n
    }
}

fn slots_node(node: &NodeInfo) -> SlotsNode {
    SlotsNode {
        ip: node.ip_text(),
        port: node.port,
        id: node.id,
        hostname: node.hostname.clone(),
    }
}
