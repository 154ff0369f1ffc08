//! Failure detection, as the Redis Cluster specification describes it.
//!
//! - A node whose pong we have awaited longer than `cluster-node-timeout` is flagged PFAIL, by us alone
//!   (`cron.rs`).
//! - Primaries gossip the PFAIL and FAIL flags they see; each such gossip entry is a *failure report* from that
//!   primary, valid for two node timeouts.
//! - "A node flags another node FAIL when it is in PFAIL state for us and a majority of the primaries reported
//!   it within the validity window" (this node counts itself when it is a primary), then broadcasts FAIL so
//!   every reachable node flags it too.
//! - FAIL is cleared when the node is reachable again and it is a replica, or a primary without slots, or a
//!   primary whose FAIL is older than two node timeouts and whose slots nobody took over.

use super::{ClusterNode, LogLevel, FAIL_REPORT_VALIDITY_MULT, FAIL_UNDO_TIME_MULT};
use crate::error::ClusterError;
use crate::message::Body;
use crate::node::{FailureReport, NodeFlags, NodeId};

impl ClusterNode {
    /// Records that primary `reporter` sees `failing` down; true when this is a new report rather than a
    /// refreshed one.
    pub(super) fn add_failure_report(&mut self, failing: NodeId, reporter: NodeId, now: u64) -> bool {
        let Some(node) = self.table.get_mut(&failing) else {
            return false;
        };
        if let Some(report) = node.failure_reports.iter_mut().find(|r| r.reporter == reporter) {
            report.time_ms = now;
            return false;
        }
        node.failure_reports.push(FailureReport { reporter, time_ms: now });
        true
    }

    /// Withdraws `reporter`'s report about `node` (it gossiped the node as up); true when there was one.
    pub(super) fn del_failure_report(&mut self, node: NodeId, reporter: NodeId, now: u64) -> bool {
        let validity = self.report_validity_ms();
        let Some(node) = self.table.get_mut(&node) else {
            return false;
        };
        let before = node.failure_reports.len();
        node.failure_reports.retain(|r| r.reporter != reporter);
        let removed = node.failure_reports.len() != before;
        if removed {
            node.failure_reports
                .retain(|r| now.saturating_sub(r.time_ms) <= validity);
        }
        removed
    }

    /// The fresh failure reports about `id`, after dropping the stale ones.
    pub(super) fn failure_report_count(&mut self, id: NodeId, now: u64) -> usize {
        let validity = self.report_validity_ms();
        let Some(node) = self.table.get_mut(&id) else {
            return 0;
        };
        if !node.failure_reports.is_empty() {
            node.failure_reports
                .retain(|r| now.saturating_sub(r.time_ms) <= validity);
        }
        node.failure_reports.len()
    }

    fn report_validity_ms(&self) -> u64 {
        self.config.node_timeout_ms * FAIL_REPORT_VALIDITY_MULT
    }

    /// `CLUSTER COUNT-FAILURE-REPORTS <id>`: how many primaries currently report the node down.
    pub fn count_failure_reports(&mut self, id: &str, now_ms: u64) -> Result<usize, ClusterError> {
        self.now_ms = now_ms;
        let node = NodeId::parse(id)
            .filter(|n| self.table.contains(n))
            .ok_or_else(|| ClusterError::UnknownNode(id.to_owned()))?;
        Ok(self.failure_report_count(node, now_ms))
    }

    /// Flags `id` FAIL if we see it PFAIL and a majority of primaries agree (`markNodeAsFailingIfNeeded`).
    pub(super) fn mark_failing_if_needed(&mut self, id: NodeId, now: u64) {
        let needed_quorum = self.size / 2 + 1;
        let Some(node) = self.table.get(&id) else {
            return;
        };
        if !node.timed_out() {
            return; // "We can reach it."
        }
        if node.is_failed() {
            return; // "Already FAILing."
        }
        let mut failures = self.failure_report_count(id, now);
        // "Also count myself as a voter if I'm a master."
        if self.me().is_primary() {
            failures += 1;
        }
        if failures < needed_quorum {
            return; // "No weak agreement from masters."
        }
        self.log(
            LogLevel::Notice,
            format!("Marking node {id} as failing (quorum reached)."),
        );
        if let Some(node) = self.table.get_mut(&id) {
            node.flags.remove(NodeFlags::PFAIL);
            node.flags.insert(NodeFlags::FAIL);
            node.fail_time_ms = now;
        }
        // "Broadcast the failing node name to everybody, forcing all the other reachable nodes to flag the node
        // as FAIL." A replica does it too: the reports it counted came from primaries.
        self.broadcast(Body::Fail { id });
        self.save();
        self.update_state_later();
        // Our primary may be the one: schedule the election now rather than at the next tick.
        self.failover_pending = true;
    }

    /// A FAIL node answered a ping: clear the flag if the specification allows (`clearNodeFailureIfNeeded`).
    pub(super) fn clear_failure_if_needed(&mut self, id: NodeId, now: u64) {
        let timeout = self.config.node_timeout_ms;
        let Some(node) = self.table.get_mut(&id) else {
            return;
        };
        if !node.is_failed() {
            return;
        }
        // "For slaves we always clear the FAIL flag if we can contact the node again."
        if node.is_replica() || node.slots.is_empty() {
            node.flags.remove(NodeFlags::FAIL);
            let what = if node.is_replica() {
                "replica"
            } else {
                "master without slots"
            };
            self.log(
                LogLevel::Notice,
                format!("Clear FAIL state for node {id}: {what} is reachable again."),
            );
            self.save();
            self.update_state_later();
            return;
        }
        // "If it is a master and the FAIL state is old enough and it is yet serving slots from our point of view
        // (not failed over), apparently no one is going to fix these slots, clear the FAIL flag."
        if node.is_primary() && now.saturating_sub(node.fail_time_ms) > timeout * FAIL_UNDO_TIME_MULT {
            node.flags.remove(NodeFlags::FAIL);
            self.log(
                LogLevel::Notice,
                format!(
                    "Clear FAIL state for node {id}: is reachable again and nobody is serving its slots after some time."
                ),
            );
            self.save();
            self.update_state_later();
        }
    }
}
