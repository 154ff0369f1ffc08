//! PING, PONG and MEET: handshakes, the header's view of its sender (epochs, role, slots, address), the gossip
//! section, and the FAIL and UPDATE messages. Follows `clusterProcessPacket` and `clusterProcessGossipSection`
//! of Redis 7.0 step by step, in the same order, because the order is part of the semantics (for example the
//! PONG that completes a handshake does not yet apply its header).

use super::{ClusterNode, LogLevel};
use crate::link::{Link, LinkDirection, LinkId};
use crate::message::{Body, GossipEntry, Header, Message, MessageKind, MFLAG_SENDER_UNKNOWN};
use crate::node::{Epoch, NodeFlags, NodeId, NodeInfo, ShardId};
use crate::state::Effect;

/// Pong times from gossip may be this far in our future (clock skew), in ms.
const GOSSIP_PONG_TOLERANCE_MS: u64 = 500;

impl ClusterNode {
    /// A message arrived on `link`.
    pub fn on_message(&mut self, link: LinkId, msg: Message, now_ms: u64) -> Vec<Effect> {
        self.now_ms = now_ms;
        if let Some(count) = self.messages_received.get_mut(msg.kind() as usize) {
            *count += 1;
        }
        // A message can still arrive on a link we closed a moment ago: it is dropped with the link.
        if let Some(record) = self.links.get(&link).cloned() {
            self.process_message(link, &record, msg, now_ms);
        }
        self.finish()
    }

    /// Who sent this, if we know it: the node of an outbound link (unless it is a handshake placeholder), else
    /// the header's sender id. An inbound link is bound to its node on the first message from a known sender.
    fn sender_of(&mut self, link: LinkId, record: &Link, claimed: NodeId) -> Option<NodeId> {
        if let Some(node) = record.node.and_then(|id| self.table.get(&id)) {
            if !node.in_handshake() {
                return Some(node.id);
            }
        }
        if !self.table.contains(&claimed) {
            return None;
        }
        if record.node.is_none() && record.direction == LinkDirection::Inbound {
            self.bind_inbound_link(claimed, link);
        }
        Some(claimed)
    }

    fn bind_inbound_link(&mut self, id: NodeId, link: LinkId) {
        let previous = self.table.get(&id).and_then(|n| n.inbound_link);
        if let Some(old) = previous.filter(|old| *old != link) {
            // A node reconnecting may leave its old link behind for a while; one inbound link per node.
            self.close_link(old);
        }
        if let Some(node) = self.table.get_mut(&id) {
            node.inbound_link = Some(link);
        }
        if let Some(record) = self.links.get_mut(&link) {
            record.node = Some(id);
        }
    }

    fn process_message(&mut self, link: LinkId, record: &Link, msg: Message, now: u64) {
        let Message { header: hdr, body } = msg;
        let kind = body.kind();
        let sender = self.sender_of(link, record, hdr.sender);
        let known = sender.filter(|id| self.table.get(id).is_some_and(|n| !n.in_handshake()));

        // The write lease counts any message from a primary as hearing from it; when it is about to end, first
        // note whether it already had.
        let renew_lease = sender.is_some_and(|id| self.lease_check_before_message(id, now));
        if let Some(node) = sender.and_then(|id| self.table.get_mut(&id)) {
            // Any traffic proves the node alive, not only pongs.
            node.data_received_ms = now;
        }
        if renew_lease {
            self.refresh_write_lease(now);
        }
        let mut sender_config_epoch = Epoch::ZERO;
        if let Some(id) = known {
            sender_config_epoch = hdr.config_epoch;
            if hdr.current_epoch > self.current_epoch {
                self.current_epoch = hdr.current_epoch;
                self.save();
            }
            if let Some(node) = self.table.get_mut(&id) {
                if hdr.config_epoch > node.config_epoch {
                    node.config_epoch = hdr.config_epoch;
                    self.save();
                }
            }
            if let Some(node) = self.table.get_mut(&id) {
                node.repl_offset = hdr.repl_offset;
            }
            // "If we are a slave performing a manual failover and our master sent its offset while already
            // paused, populate the MF state."
            self.note_paused_primary_offset(id, &hdr);
        }

        match body {
            Body::Ping(gossip) | Body::Meet(gossip) | Body::Pong(gossip) => {
                self.process_ping(link, record, kind, &hdr, sender, sender_config_epoch, &gossip, now)
            }
            Body::Fail { id } => self.process_fail(sender, hdr.sender, id, now),
            Body::Update {
                id,
                config_epoch,
                slots,
            } => {
                if sender.is_none() {
                    return;
                }
                self.process_update(id, config_epoch, &slots);
            }
            Body::FailoverAuthRequest | Body::FailoverAuthAck | Body::MfStart => {
                // "We don't know that node": ignored, as Redis does.
                if let Some(id) = known {
                    self.process_failover_message(kind, id, &hdr, link);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn process_ping(
        &mut self,
        link: LinkId,
        record: &Link,
        kind: MessageKind,
        hdr: &Header,
        sender: Option<NodeId>,
        sender_config_epoch: Epoch,
        gossip: &[GossipEntry],
        now: u64,
    ) {
        if matches!(kind, MessageKind::Ping | MessageKind::Meet) {
            self.learn_my_ip(kind, record);
            // Only a MEET makes a stranger known: a PING from an unknown node is answered, nothing more.
            if sender.is_none() && kind == MessageKind::Meet {
                let ip = Some(hdr.ip.unwrap_or(record.peer_ip));
                let in_progress = self
                    .table
                    .iter()
                    .any(|n| n.in_handshake() && n.ip == ip && n.port == hdr.port && n.bus_port == hdr.bus_port);
                // A retried MEET finds the handshake it started. Ours MEETs back (Redis PINGs): should the
                // first MEET's answer be lost, the other side still learns us from our MEET.
                if !in_progress && !self.is_forgotten(&hdr.sender, now) {
                    let id = NodeId::random(&mut self.rng);
                    let shard = ShardId::random(&mut self.rng);
                    let mut node = NodeInfo::new(id, NodeFlags::HANDSHAKE | NodeFlags::MEET, shard, now);
                    node.ip = ip;
                    node.port = hdr.port;
                    node.bus_port = hdr.bus_port;
                    self.table.insert(node);
                    self.save();
                }
                // The MEET's sender is trusted enough for its gossip to refresh nodes we know.
                self.process_gossip(None, gossip, now);
            }
            let mflags = if sender.is_none() { MFLAG_SENDER_UNKNOWN } else { 0 };
            self.send_pong(link, mflags);
        }

        if record.direction == LinkDirection::Outbound {
            let Some(link_node) = record.node else {
                return;
            };
            if self.table.get(&link_node).is_some_and(NodeInfo::in_handshake) {
                if let Some(known) = sender {
                    self.log(
                        LogLevel::Verbose,
                        format!("Handshake: we already know node {known}, updating the address if needed."),
                    );
                    // The address answered with the id of a node we already know: keep that node (with the
                    // address it is reachable at) and drop the placeholder.
                    if known != self.myself && self.update_address_if_needed(known, link, record, hdr) {
                        self.save();
                        self.update_state_later();
                    }
                    self.delete_node(link_node);
                    return;
                }
                if !self.table.rename(link_node, hdr.sender) {
                    self.delete_node(link_node);
                    return;
                }
                if let Some(record) = self.links.get_mut(&link) {
                    record.node = Some(hdr.sender);
                }
                if let Some(node) = self.table.get_mut(&hdr.sender) {
                    node.flags.remove(NodeFlags::HANDSHAKE | NodeFlags::MEET);
                    node.ping_sent_ms = 0;
                    node.flags.insert(NodeFlags::from_bits_truncate(
                        hdr.flags.bits() & (NodeFlags::PRIMARY | NodeFlags::REPLICA).bits(),
                    ));
                }
                self.log(
                    LogLevel::Debug,
                    format!("Handshake with node {} completed.", hdr.sender),
                );
                self.save();
            } else if link_node != hdr.sender {
                // Someone else answers at this node's address now: the address is no longer the node's.
                self.log(
                    LogLevel::Debug,
                    format!("PONG contains mismatching sender ID. About node {link_node}"),
                );
                if let Some(node) = self.table.get_mut(&link_node) {
                    node.flags.insert(NodeFlags::NOADDR);
                    node.ip = None;
                    node.port = 0;
                    node.bus_port = 0;
                }
                self.close_link(link);
                self.save();
                return;
            }
        }

        if let Some(id) = sender {
            // NOFAILOVER is the sender's own setting: its latest word wins.
            if let Some(node) = self.table.get_mut(&id) {
                node.flags
                    .set(NodeFlags::NOFAILOVER, hdr.flags.contains(NodeFlags::NOFAILOVER));
            }
            if kind == MessageKind::Ping
                && self.table.get(&id).is_some_and(|n| !n.in_handshake())
                && self.update_address_if_needed(id, link, record, hdr)
            {
                self.save();
                self.update_state_later();
            }
        }

        if record.direction == LinkDirection::Outbound && kind == MessageKind::Pong {
            let link_node = self.links.get(&link).and_then(|l| l.node);
            if let Some(id) = link_node {
                self.on_pong(id, now);
                // The node answers but does not know us (its side of our handshake was lost, or it forgot
                // us): MEET it rather than PING it until it does.
                if let Some(node) = self.table.get_mut(&id) {
                    if !node.in_handshake() {
                        node.flags.set(NodeFlags::MEET, hdr.mflags & MFLAG_SENDER_UNKNOWN != 0);
                    }
                }
            }
        }

        let Some(sender) = sender else {
            return;
        };
        self.apply_sender_role(sender, hdr);
        self.apply_sender_slots(sender, hdr, sender_config_epoch);
        // "If our config epoch collides with the sender's try to fix the problem."
        let sender_is_primary = self.table.get(&sender).is_some_and(NodeInfo::is_primary);
        if self.me().is_primary() && sender_is_primary && sender_config_epoch == self.me().config_epoch {
            self.handle_config_epoch_collision(sender);
        }
        self.process_gossip(Some(sender), gossip, now);
        self.apply_sender_extensions(sender, hdr);
    }

    /// We learn our own IP from the connections MEETs arrive on (the sender dialled our official address), and
    /// from any ping while we have none; `cluster-announce-ip` overrides both.
    fn learn_my_ip(&mut self, kind: MessageKind, record: &Link) {
        if self.config.announce_ip.is_some() {
            return;
        }
        if kind != MessageKind::Meet && self.me().ip.is_some() {
            return;
        }
        let Some(local) = record.local_ip else {
            return;
        };
        if Some(local) != self.me().ip {
            self.log(LogLevel::Notice, format!("IP address for this node updated to {local}"));
            self.me_mut().ip = Some(local);
            self.save();
        }
    }

    /// A pong on our own link: the node answers.
    fn on_pong(&mut self, id: NodeId, now: u64) {
        let Some(node) = self.table.get_mut(&id) else {
            return;
        };
        node.pong_received_ms = now;
        node.ping_sent_ms = 0;
        // "The PFAIL condition can be reversed without external help if it is momentary (that is, if it does
        // not turn into a FAIL state). The FAIL condition is also reversible under specific conditions."
        if node.timed_out() {
            node.flags.remove(NodeFlags::PFAIL);
            self.save();
            self.update_state_later();
        } else if node.is_failed() {
            self.clear_failure_if_needed(id, now);
        }
    }

    /// Updates a node's address from a message on one of its links (`nodeUpdateAddressIfNeeded`): the announced
    /// IP, else the connection's peer. Returns whether it changed.
    fn update_address_if_needed(&mut self, id: NodeId, link: LinkId, record: &Link, hdr: &Header) -> bool {
        let Some(node) = self.table.get(&id) else {
            return false;
        };
        // The node's own outbound link is the one we dialled at the address we have: nothing to learn from it.
        if node.link == Some(link) {
            return false;
        }
        let ip = hdr.ip.unwrap_or(record.peer_ip);
        if node.port == hdr.port && node.bus_port == hdr.bus_port && node.ip == Some(ip) {
            return false;
        }
        let stale_link = node.link;
        if let Some(old) = stale_link {
            self.close_link(old);
        }
        let Some(node) = self.table.get_mut(&id) else {
            return false;
        };
        node.ip = Some(ip);
        node.port = hdr.port;
        node.bus_port = hdr.bus_port;
        node.flags.remove(NodeFlags::NOADDR);
        let port = node.port;
        self.log(
            LogLevel::Notice,
            format!("Address updated for node {id}, now {ip}:{port}"),
        );
        // "Check if this is our master and we have to change the replication target as well."
        if self.me().is_replica() && self.me().primary == Some(id) {
            self.emit(Effect::ReplicateFrom { primary: id, ip, port });
        }
        true
    }

    /// The sender's role as its header states it: primary, or replica of a given primary.
    fn apply_sender_role(&mut self, sender: NodeId, hdr: &Header) {
        match hdr.primary {
            None => self.set_node_as_primary(sender),
            Some(primary) if primary != sender => {
                let was_primary = self.table.get(&sender).is_some_and(NodeInfo::is_primary);
                if was_primary {
                    // "Master turned into a slave! Reconfigure the node."
                    self.table.unassign_node_slots(sender);
                    if let Some(node) = self.table.get_mut(&sender) {
                        node.flags.remove(NodeFlags::PRIMARY | NodeFlags::MIGRATE_TO);
                        node.flags.insert(NodeFlags::REPLICA);
                    }
                    self.save();
                    self.update_state_later();
                }
                let known_primary = self.table.get(&primary).map(|p| p.shard_id);
                if let Some(shard) = known_primary {
                    if let Some(node) = self.table.get_mut(&sender) {
                        if node.primary != Some(primary) {
                            node.primary = Some(primary);
                            node.shard_id = shard;
                            self.save();
                        }
                    }
                    // A primary that has (had) a replica is a target for replica migration once orphaned
                    // (`clusterNodeAddSlave`).
                    if let Some(p) = self.table.get_mut(&primary) {
                        p.flags.insert(NodeFlags::MIGRATE_TO);
                    }
                }
            }
            // A node cannot replicate itself; ignore the claim.
            Some(_) => {}
        }
    }

    /// The slots the sender (or its primary) claims, against our view: adopt newer claims, and tell a sender
    /// whose claim is older than what we know (UPDATE).
    fn apply_sender_slots(&mut self, sender: NodeId, hdr: &Header, sender_config_epoch: Epoch) {
        let Some(node) = self.table.get(&sender) else {
            return;
        };
        let sender_primary = if node.is_primary() { Some(sender) } else { node.primary };
        let sender_is_primary = node.is_primary();
        let dirty = sender_primary
            .and_then(|id| self.table.get(&id))
            .is_some_and(|p| p.slots != hdr.slots);
        if !dirty {
            return;
        }
        // 1) "If the sender of the message is a master, and we detected that the set of slots it claims
        //    changed, scan the slots to see if we need to update our configuration."
        if sender_is_primary {
            self.update_slots_config_with(sender, sender_config_epoch, &hdr.slots);
        }
        // 2) "We also check for the reverse condition, that is, the sender claims to serve slots we know are
        //    served by a master with a greater configEpoch. If this happens we inform the sender."
        let mut newer_owner = None;
        for slot in hdr.slots.slots() {
            let Some(owner) = self.table.slot_owner(slot) else {
                continue;
            };
            if owner == sender {
                continue;
            }
            if self
                .table
                .get(&owner)
                .is_some_and(|o| o.config_epoch > sender_config_epoch)
            {
                newer_owner = Some(owner);
                break;
            }
        }
        if let Some(owner) = newer_owner {
            self.log(
                LogLevel::Verbose,
                format!("Node {sender} has old slots configuration, sending an UPDATE message about {owner}"),
            );
            let target = self.table.get(&sender).and_then(|n| n.link);
            if let (Some(link), Some(o)) = (target, self.table.get(&owner)) {
                let body = Body::Update {
                    id: owner,
                    config_epoch: o.config_epoch,
                    slots: o.slots.clone(),
                };
                self.send(link, body);
            }
        }
    }

    /// What the header says beyond Redis 7.0's fixed fields: hostname and shard.
    fn apply_sender_extensions(&mut self, sender: NodeId, hdr: &Header) {
        let my_primary = self.me().primary;
        let myself = self.myself;
        let Some(node) = self.table.get_mut(&sender) else {
            return;
        };
        let mut changed = false;
        if node.hostname != hdr.hostname {
            node.hostname = hdr.hostname.clone();
            changed = true;
        }
        if node.id != myself && node.shard_id != hdr.shard_id {
            node.shard_id = hdr.shard_id;
            changed = true;
            // A replica adopts its primary's shard.
            if my_primary == Some(sender) {
                self.me_mut().shard_id = hdr.shard_id;
            }
        }
        if changed {
            self.save();
        }
    }

    /// The gossip section (`clusterProcessGossipSection`). `sender` is `None` for a MEET from a stranger.
    pub(super) fn process_gossip(&mut self, sender: Option<NodeId>, entries: &[GossipEntry], now: u64) {
        let sender_is_primary = sender
            .and_then(|id| self.table.get(&id))
            .is_some_and(NodeInfo::is_primary);
        for g in entries {
            let down = g.flags.intersects(NodeFlags::FAIL | NodeFlags::PFAIL);
            if self.table.contains(&g.id) {
                // Failure reports count only from primaries (they are the ones that vote).
                if let (Some(reporter), true) = (sender, sender_is_primary) {
                    if g.id != self.myself {
                        if down {
                            if self.add_failure_report(g.id, reporter, now) {
                                self.log(
                                    LogLevel::Verbose,
                                    format!("Node {reporter} reported node {} as not reachable.", g.id),
                                );
                            }
                            self.mark_failing_if_needed(g.id, now);
                        } else if self.del_failure_report(g.id, reporter, now) {
                            self.log(
                                LogLevel::Verbose,
                                format!("Node {reporter} reported node {} is back online.", g.id),
                            );
                        }
                    }
                }
                let reports = self.failure_report_count(g.id, now);
                let Some(node) = self.table.get_mut(&g.id) else {
                    continue;
                };
                // "If from our POV the node is up (no failure flags are set), we have no pending ping for the
                // node, nor we have failure reports for this node, update the last pong time with the one we
                // see from the other nodes" - so a big cluster does not ping every node itself.
                if !down && node.ping_sent_ms == 0 && reports == 0 {
                    let pong = u64::from(g.pong_received_s) * 1000;
                    if pong <= now + GOSSIP_PONG_TOLERANCE_MS && pong > node.pong_received_ms {
                        node.pong_received_ms = pong;
                    }
                }
                // "If we already know this node, but it is not reachable, and we see a different address in the
                // gossip section of a node that can talk with this other node, update the address."
                if node.flags.intersects(NodeFlags::FAIL | NodeFlags::PFAIL)
                    && !g.flags.contains(NodeFlags::NOADDR)
                    && !down
                    && g.ip.is_some()
                    && (node.ip != g.ip || node.port != g.port || node.bus_port != g.bus_port)
                {
                    node.ip = g.ip;
                    node.port = g.port;
                    node.bus_port = g.bus_port;
                    node.flags.remove(NodeFlags::NOADDR);
                    if let Some(old) = node.link {
                        self.close_link(old);
                    }
                }
            } else if sender.is_some()
                && !g.flags.contains(NodeFlags::NOADDR)
                && g.ip.is_some()
                && !self.is_forgotten(&g.id, now)
            {
                // "We require that the sender of this gossip message is a well known node in our cluster,
                // otherwise we risk joining another cluster." The role comes along; failure flags do not: they
                // are the sender's view, and ours starts clean.
                let role = g.flags.bits() & (NodeFlags::PRIMARY | NodeFlags::REPLICA | NodeFlags::NOFAILOVER).bits();
                let shard = ShardId::random(&mut self.rng);
                let mut node = NodeInfo::new(g.id, NodeFlags::from_bits_truncate(role), shard, now);
                node.ip = g.ip;
                node.port = g.port;
                node.bus_port = g.bus_port;
                self.table.insert(node);
                self.save();
            }
        }
    }

    /// FAIL: a majority of primaries agreed the node is down; flag it without waiting for our own timeout.
    fn process_fail(&mut self, sender: Option<NodeId>, claimed: NodeId, failing: NodeId, now: u64) {
        if sender.is_none() {
            self.log(
                LogLevel::Notice,
                format!("Ignoring FAIL message from unknown node {claimed} about {failing}"),
            );
            return;
        }
        let Some(node) = self.table.get_mut(&failing) else {
            return;
        };
        if node.flags.intersects(NodeFlags::FAIL | NodeFlags::MYSELF) {
            return;
        }
        node.flags.insert(NodeFlags::FAIL);
        node.flags.remove(NodeFlags::PFAIL);
        node.fail_time_ms = now;
        self.log(
            LogLevel::Notice,
            format!("FAIL message received from {claimed} about {failing}"),
        );
        self.save();
        self.update_state_later();
        // Our primary may be the one: schedule the election now rather than at the next tick.
        self.failover_pending = true;
    }

    /// UPDATE: someone tells us a node's slots under a newer config epoch than we have for it.
    fn process_update(&mut self, id: NodeId, config_epoch: Epoch, slots: &crate::slots::SlotRanges) {
        // Our own configuration is ours to announce; "Discarding UPDATE message about myself."
        if id == self.myself {
            self.log(LogLevel::Notice, "Discarding UPDATE message about myself.".into());
            return;
        }
        let Some(node) = self.table.get(&id) else {
            return;
        };
        if node.config_epoch >= config_epoch {
            return;
        }
        if node.is_replica() {
            self.set_node_as_primary(id);
        }
        if let Some(node) = self.table.get_mut(&id) {
            node.config_epoch = config_epoch;
        }
        self.save();
        self.update_slots_config_with(id, config_epoch, slots);
    }

    /// The gossip section of a ping we are about to send (`clusterSendPing`): a tenth of the nodes we know,
    /// at least three, picked at random, plus every node we see in PFAIL so failure reports spread fast.
    pub(super) fn build_gossip(&mut self) -> Vec<GossipEntry> {
        let known = self.table.len();
        // Neither we nor the receiver need gossip about ourselves.
        let mut fresh = known.saturating_sub(2);
        let wanted = (known / 10).max(3).min(fresh);
        let mut pfail_wanted = self.pfail_nodes;
        self.pings_built += 1;
        let mark = self.pings_built;
        let mut gossip = Vec::with_capacity(wanted + pfail_wanted);
        let mut iterations = wanted * 3;
        while fresh > 0 && gossip.len() < wanted && iterations > 0 {
            iterations -= 1;
            let Some(id) = self.table.random_id(&mut self.rng) else {
                break;
            };
            if id == self.myself {
                continue;
            }
            let Some(node) = self.table.get_mut(&id) else {
                continue;
            };
            if node.timed_out() {
                continue; // added below with the other PFAIL nodes
            }
            if node.flags.intersects(NodeFlags::HANDSHAKE | NodeFlags::NOADDR)
                || (node.link.is_none() && node.slots.is_empty())
            {
                fresh -= 1;
                continue;
            }
            if node.last_in_ping_gossip == mark {
                continue;
            }
            node.last_in_ping_gossip = mark;
            fresh -= 1;
            gossip.push(gossip_entry(node));
        }
        if pfail_wanted > 0 {
            for node in self.table.iter() {
                if pfail_wanted == 0 {
                    break;
                }
                if node.flags.intersects(NodeFlags::HANDSHAKE | NodeFlags::NOADDR) || !node.timed_out() {
                    continue;
                }
                gossip.push(gossip_entry(node));
                pfail_wanted -= 1;
            }
        }
        gossip
    }

    /// Sends a PING on an outbound link, or a MEET when `kind` says so or the node needs one (flag MEET); either
    /// starts the wait for a pong.
    pub(super) fn send_ping(&mut self, link: LinkId, kind: MessageKind) {
        if !self.link_established(Some(link)) {
            return;
        }
        let gossip = self.build_gossip();
        let target = self
            .links
            .get(&link)
            .filter(|l| l.direction == LinkDirection::Outbound)
            .and_then(|l| l.node);
        let mut meet = kind == MessageKind::Meet;
        if let Some(node) = target.and_then(|id| self.table.get_mut(&id)) {
            meet |= node.flags.contains(NodeFlags::MEET);
            // As in Redis a PING starts the wait for a pong and a MEET does not; both time the handshake
            // retries.
            if !meet {
                node.ping_sent_ms = self.now_ms;
            }
            node.ping_repeated_ms = self.now_ms;
        }
        self.send(link, if meet { Body::Meet(gossip) } else { Body::Ping(gossip) });
    }

    /// Sends a PONG (answering a ping, or announcing a change).
    pub(super) fn send_pong(&mut self, link: LinkId, mflags: u8) {
        if !self.link_established(Some(link)) {
            return;
        }
        let gossip = self.build_gossip();
        self.send_flagged(link, Body::Pong(gossip), mflags);
    }

    /// Sends our configuration to every node right away (`clusterBroadcastPong`), after a change others
    /// should learn fast.
    pub(super) fn broadcast_pong(&mut self) {
        for link in self.broadcast_links() {
            self.send_pong(link, 0);
        }
    }
}

pub(super) fn gossip_entry(node: &NodeInfo) -> GossipEntry {
    GossipEntry {
        id: node.id,
        ip: node.ip,
        port: node.port,
        bus_port: node.bus_port,
        flags: node.flags,
        // Whole seconds, as Redis gossips them.
        ping_sent_s: u32::try_from(node.ping_sent_ms / 1000).unwrap_or(u32::MAX),
        pong_received_s: u32::try_from(node.pong_received_ms / 1000).unwrap_or(u32::MAX),
    }
}
