//! Extension point: replica promotion (the next issue). Nothing here acts yet.
//!
//! What will go here, per the Redis Cluster specification (`clusterHandleSlaveFailover`,
//! `clusterSendFailoverAuthIfNeeded`):
//! - a replica whose primary is FAIL waits `500 ms + random(0..500) + rank * 1000 ms`, the rank ordering the
//!   replicas by replication offset (the header's `repl_offset`), then increments the current epoch and sends
//!   [`Body::FailoverAuthRequest`](crate::message::Body) to every node;
//! - a primary grants [`Body::FailoverAuthAck`](crate::message::Body) at most once per epoch: it records
//!   `last_vote_epoch` (saved in `nodes.conf`, which [`Effect::SaveConfig`](super::Effect) heading the batch
//!   puts on disk before the ack leaves), refuses a request whose epoch is older than its current epoch, and
//!   does not vote for replicas of the same primary within two node timeouts;
//! - a replica with the votes of a majority of the slot-serving primaries takes a config epoch greater than every
//!   other, claims its primary's slots, and broadcasts a PONG; stale nodes learn it through UPDATE
//!   (already handled in `gossip.rs` and `epochs.rs`).
//!
//! Manual failover (`CLUSTER FAILOVER`, [`Body::MfStart`](crate::message::Body), the header's `mflags`) and
//! replica migration to orphaned primaries belong here as well.

use super::{ClusterNode, LogLevel};
use crate::message::{Header, MessageKind};

impl ClusterNode {
    /// Called by every tick: a replica of a FAIL primary will start an election here.
    pub(super) fn handle_replica_failover(&mut self, _now: u64) {}

    /// FAILOVER_AUTH_REQUEST, FAILOVER_AUTH_ACK and MFSTART from a known node: not acted on yet.
    pub(super) fn process_failover_message(&mut self, kind: MessageKind, hdr: &Header) {
        self.log(
            LogLevel::Verbose,
            format!(
                "Ignoring {} from {}: failover is not implemented yet",
                kind.name(),
                hdr.sender
            ),
        );
    }
}
