//! The periodic tick (`clusterCron`, ten times a second in Redis) and the cluster state (`clusterUpdateState`).
//!
//! Each tick: expire handshakes that did not complete within the node timeout (at least a second); (re)connect
//! every node that has no link; repeat unanswered handshake messages and pings; once a second, ping the node
//! with the oldest pong among five picked at random; ping every node whose last pong is older than half the
//! node timeout; drop links that stay silent; flag PFAIL every node whose ping has waited longer than the node
//! timeout (a primary tells the other primaries at once); run the failover steps (manual failover timeout,
//! elections, replica migration); evaluate the cluster state and the write lease, pinging primaries when the
//! lease is about to run out.

use super::{
    ClusterNode, Effect, LogLevel, HANDSHAKE_RETRY_MS, MAX_REJOIN_DELAY_MS, MIN_REJOIN_DELAY_MS,
    RANDOM_PING_INTERVAL_MS, WRITABLE_DELAY_MS,
};
use crate::link::{Link, LinkDirection, LinkId};
use crate::message::{Body, GossipEntry, MessageKind};
use crate::node::{NodeFlags, NodeId, NodeInfo};
use crate::slot::SLOT_COUNT;

/// What one tick does about one node.
struct TimeoutPlan {
    id: NodeId,
    /// Drop this link (silent, or a connection attempt that never completed).
    close: Option<LinkId>,
    /// Ping on this link.
    ping: Option<LinkId>,
    /// Repeat the pending ping on this link.
    repeat: Option<LinkId>,
    /// Flag the node PFAIL.
    pfail: bool,
}

/// Candidates examined for the once-a-second ping.
const RANDOM_PING_CANDIDATES: usize = 5;
/// Handshakes live at least this long even with a shorter node timeout, in ms.
const MIN_HANDSHAKE_TIMEOUT_MS: u64 = 1_000;

impl ClusterNode {
    /// The clock moved; call about every [`super::TICK_INTERVAL_MS`].
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Effect> {
        self.now_ms = now_ms;
        let now = now_ms;
        let timeout = self.config.node_timeout_ms;
        let handshake_timeout = timeout.max(MIN_HANDSHAKE_TIMEOUT_MS);
        self.forgotten.retain(|_, until| *until >= now);

        // Reconnect, expire handshakes, count PFAIL nodes for the gossip of this round. Decisions are taken on a
        // read-only walk of the table and carried out after it (a big table is walked twice per tick).
        self.pfail_nodes = 0;
        let mut expired = Vec::new();
        let mut connect = Vec::new();
        let mut handshake_retries = Vec::new();
        for node in self.table.iter() {
            if node.flags.intersects(NodeFlags::MYSELF | NodeFlags::NOADDR) {
                continue;
            }
            if node.timed_out() {
                self.pfail_nodes += 1;
            }
            if node.in_handshake() && now.saturating_sub(node.created_ms) > handshake_timeout {
                expired.push(node.id);
                continue;
            }
            match node.link {
                None => connect.push(node.id),
                Some(link)
                    if node.in_handshake()
                        && self.link_established(Some(link))
                        && now.saturating_sub(node.ping_repeated_ms) >= HANDSHAKE_RETRY_MS =>
                {
                    handshake_retries.push(link)
                }
                Some(_) => {}
            }
        }
        for id in expired {
            if let Some(node) = self.table.get(&id) {
                let text = format!("Handshake with {}:{} timed out", node.ip_text(), node.port);
                self.log(LogLevel::Verbose, text);
            }
            self.delete_node(id);
        }
        for id in connect {
            self.open_link(id, now);
        }
        for link in handshake_retries {
            self.send_ping(link, MessageKind::Ping);
        }

        // "Ping some random node 1 time every 10 iterations, so that we usually ping one random node every
        // second": of a few random nodes, the one whose pong is oldest.
        if now.saturating_sub(self.last_random_ping_ms) >= RANDOM_PING_INTERVAL_MS {
            self.last_random_ping_ms = now;
            let mut best: Option<(u64, LinkId)> = None;
            for _ in 0..RANDOM_PING_CANDIDATES {
                let Some(node) = self.table.random_id(&mut self.rng).and_then(|id| self.table.get(&id)) else {
                    continue;
                };
                // "Don't ping nodes disconnected or with a ping currently active."
                if !self.link_established(node.link) || node.ping_sent_ms != 0 {
                    continue;
                }
                if node.flags.intersects(NodeFlags::MYSELF | NodeFlags::HANDSHAKE) {
                    continue;
                }
                if let Some(link) = node.link {
                    if best.is_none_or(|(pong, _)| node.pong_received_ms < pong) {
                        best = Some((node.pong_received_ms, link));
                    }
                }
            }
            if let Some((_, link)) = best {
                self.send_ping(link, MessageKind::Ping);
            }
        }

        // Timeouts.
        let mut plans = Vec::new();
        for node in self.table.iter() {
            if node
                .flags
                .intersects(NodeFlags::MYSELF | NodeFlags::NOADDR | NodeFlags::HANDSHAKE)
            {
                continue;
            }
            let plan = self.timeout_plan(node, now);
            if plan.close.is_some() || plan.ping.is_some() || plan.repeat.is_some() || plan.pfail {
                plans.push(plan);
            }
        }
        let mut update_state = false;
        let mut newly_pfail = Vec::new();
        for plan in plans {
            if let Some(link) = plan.close {
                self.close_link(link);
            }
            if let Some(link) = plan.ping {
                self.send_ping(link, MessageKind::Ping);
            }
            if let Some(link) = plan.repeat {
                let first = self.table.get(&plan.id).map_or(0, |n| n.ping_sent_ms);
                self.send_ping(link, MessageKind::Ping);
                if let Some(node) = self.table.get_mut(&plan.id) {
                    node.ping_sent_ms = first;
                    node.ping_repeated_ms = now;
                }
            }
            if plan.pfail {
                if let Some(node) = self.table.get_mut(&plan.id) {
                    node.flags.insert(NodeFlags::PFAIL);
                }
                self.log(LogLevel::Debug, format!("*** NODE {} possibly failing", plan.id));
                update_state = true;
                newly_pfail.push(plan.id);
            }
        }
        if !newly_pfail.is_empty() {
            self.report_pfail_to_primaries();
            // "A node flags another node FAIL when it is in PFAIL state for us and a majority of the primaries
            // reported it within the validity window": the reports may all be in already.
            for id in newly_pfail {
                self.mark_failing_if_needed(id, now);
            }
        }

        // "Abort a manual failover if the timeout is reached."
        self.check_manual_failover_timeout(now);
        if self.me().is_replica() {
            self.handle_manual_failover();
            self.handle_replica_failover(now);
        }
        if self.config.allow_replica_migration && self.me().is_replica() {
            self.handle_replica_migration(now);
        }

        if update_state || !self.state_ok {
            self.update_state(now);
        }
        self.refresh_write_lease(now);
        self.renew_write_lease(now);
        self.finish()
    }

    /// A primary that has just flagged nodes PFAIL tells the other slot-serving primaries at once, in a PONG
    /// whose gossip section is the PFAIL nodes, rather than in the pings of the following second. FAIL needs the
    /// reports of a majority of primaries, so this takes up to a second off every failover; it costs one small
    /// message per primary per failure.
    fn report_pfail_to_primaries(&mut self) {
        if !self.serves_slots() {
            return;
        }
        let reports: Vec<GossipEntry> = self
            .table
            .iter()
            .filter(|n| n.timed_out() && !n.flags.intersects(NodeFlags::HANDSHAKE | NodeFlags::NOADDR))
            .map(super::gossip::gossip_entry)
            .collect();
        let links: Vec<LinkId> = self
            .table
            .iter()
            .filter(|n| !n.is_myself() && n.is_primary() && !n.slots.is_empty() && !n.timed_out())
            .filter_map(|n| n.link)
            .collect();
        for link in links {
            self.send(link, Body::Pong(reports.clone()));
        }
    }

    /// Pings the primaries the write lease needs before it runs out (see `lease.rs`). A pending ping is
    /// repeated, keeping its original time for failure detection.
    fn renew_write_lease(&mut self, now: u64) {
        for (id, link, pending) in self.lease_renewal_targets(now) {
            let first = self.table.get(&id).map_or(0, |n| n.ping_sent_ms);
            self.send_ping(link, MessageKind::Ping);
            if let Some(node) = self.table.get_mut(&id) {
                if pending {
                    node.ping_sent_ms = first;
                }
                node.ping_repeated_ms = now;
            }
        }
    }

    /// What the tick does about one node's link and pings (`clusterCron`'s second loop).
    fn timeout_plan(&self, node: &NodeInfo, now: u64) -> TimeoutPlan {
        let timeout = self.config.node_timeout_ms;
        let mut plan = TimeoutPlan {
            id: node.id,
            close: None,
            ping: None,
            repeat: None,
            pfail: false,
        };
        let ping_delay = now.saturating_sub(node.ping_sent_ms);
        let data_delay = now.saturating_sub(node.data_received_ms);
        let mut usable = None;
        if let Some((link, record)) = node.link.and_then(|l| self.links.get(&l).map(|r| (l, r))) {
            let old = now.saturating_sub(record.created_ms) > timeout;
            // "If we are not receiving any data for more than half the cluster timeout, reconnect the link: maybe
            // there is a connection issue even if the node is alive." A connection attempt that did not complete
            // within the timeout is given up the same way.
            let silent = node.ping_sent_ms != 0 && ping_delay > timeout / 2 && data_delay > timeout / 2;
            if old && (silent || !record.established) {
                plan.close = Some(link);
            } else if record.established {
                usable = Some(link);
            }
        }
        // "If we have currently no active ping in this instance, and the received PONG is older than half the
        // cluster timeout, send a new ping now, to ensure all the nodes are pinged without a too big delay."
        if node.ping_sent_ms == 0 {
            if now.saturating_sub(node.pong_received_ms) > timeout / 2 {
                plan.ping = usable;
            }
            return plan;
        }
        // A ping unanswered for half the timeout while the node keeps talking to us was lost, or its pong was:
        // repeat it, keeping the first one's time for failure detection. (Over TCP nothing is lost and Redis
        // never repeats; without this a lost pong would leave a talkative node PFAIL for good.)
        if now.saturating_sub(node.ping_sent_ms.max(node.ping_repeated_ms)) > timeout / 2 {
            plan.repeat = usable;
        }
        // "We also consider every incoming data as proof of liveness, since our cluster bus link is also used for
        // data: under heavy data load pong delays are possible."
        let node_delay = ping_delay.min(data_delay);
        plan.pfail = node_delay > timeout && !node.flags.intersects(NodeFlags::PFAIL | NodeFlags::FAIL);
        plan
    }

    /// Asks the driver to connect to a node (`clusterNodeCronHandleReconnect`).
    fn open_link(&mut self, id: NodeId, now: u64) {
        let Some(node) = self.table.get(&id) else {
            return;
        };
        let (Some(ip), bus_port) = (node.ip, node.bus_port) else {
            return;
        };
        if bus_port == 0 {
            return;
        }
        let link = self.new_link_id();
        self.links.insert(
            link,
            Link {
                direction: LinkDirection::Outbound,
                node: Some(id),
                peer_ip: ip,
                local_ip: None,
                created_ms: now,
                established: false,
            },
        );
        if let Some(node) = self.table.get_mut(&id) {
            node.link = Some(link);
            // Failure detection needs a pending ping to measure; the real one follows once connected. A node
            // that cannot be reached at all is thus flagged PFAIL after the node timeout too.
            if node.ping_sent_ms == 0 && !node.in_handshake() {
                node.ping_sent_ms = now;
            }
        }
        self.emit(Effect::Connect { link, ip, bus_port });
    }

    /// "Compute the cluster size, that is the number of master nodes serving at least a single slot. At the same
    /// time count the number of reachable masters having at least one slot."
    pub(crate) fn count_primaries(&self) -> (usize, usize) {
        let mut size = 0;
        let mut reachable = 0;
        for node in self.table.iter() {
            if node.is_primary() && !node.slots.is_empty() {
                size += 1;
                if !node.flags.intersects(NodeFlags::FAIL | NodeFlags::PFAIL) {
                    reachable += 1;
                }
            }
        }
        (size, reachable)
    }

    /// Recomputes `cluster_state` and the cluster size (`clusterUpdateState`).
    pub(super) fn update_state(&mut self, now: u64) {
        let first = *self.first_state_update_ms.get_or_insert(now);
        // (Before the writable delay below, unlike Redis: the size is the FAIL quorum's base, and a restarted
        // node should not count 1.)
        let (size, reachable) = self.count_primaries();
        self.size = size;
        // The lease's quorum follows the size.
        self.refresh_write_lease(now);
        // "If this is a master node, wait some time before turning the state into OK, since it is not a good
        // idea to rejoin the cluster as a writable master, after a reboot, without giving the cluster a chance
        // to reconfigure this node."
        if self.me().is_primary() && !self.state_ok && now.saturating_sub(first) < WRITABLE_DELAY_MS {
            return;
        }
        let mut ok = true;
        if self.config.require_full_coverage {
            let map = self.table.slot_map();
            ok = map.assigned() == SLOT_COUNT
                && map
                    .runs()
                    .all(|run| self.table.get(&run.owner).is_some_and(|n| !n.is_failed()));
        }
        // "If we are in a minority partition, change the cluster state to FAIL."
        if reachable < size / 2 + 1 {
            ok = false;
            self.among_minority_ms = now;
        }
        if ok != self.state_ok {
            let rejoin_delay = self
                .config
                .node_timeout_ms
                .clamp(MIN_REJOIN_DELAY_MS, MAX_REJOIN_DELAY_MS);
            // "If the instance is a master and was partitioned away with the minority, don't let it accept
            // queries for some time after the partition heals, to make sure there is enough time to receive a
            // configuration update."
            if ok && self.me().is_primary() && now.saturating_sub(self.among_minority_ms) < rejoin_delay {
                return;
            }
            let (level, word) = if ok {
                (LogLevel::Notice, "ok")
            } else {
                (LogLevel::Warning, "fail")
            };
            self.log(level, format!("Cluster state changed: {word}"));
            self.state_ok = ok;
        }
    }
}
