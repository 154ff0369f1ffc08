//! The crate's one error type: refused cluster administration (each with the exact text Redis 7.0.15 replies),
//! bus frames that cannot be trusted, and `nodes.conf` files that cannot be loaded.
//!
//! Administration errors are replies, not failures: the server writes [`ClusterError::wire_text`] and the
//! connection goes on. Frame errors mean the peer is not speaking our protocol (or the bytes were damaged): the
//! driver logs them and drops the link. Config errors stop the node before it joins anything.

use crate::slot::Slot;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    // ---- CLUSTER subcommand refusals; Display is Redis's text without the leading `ERR `. ----
    #[error("Invalid or out of range slot")]
    InvalidSlot,
    #[error("Slot {0} is already busy")]
    SlotBusy(Slot),
    #[error("Slot {0} is already unassigned")]
    SlotUnassigned(Slot),
    #[error("Slot {0} specified multiple times")]
    SlotRepeated(Slot),
    #[error("start slot number {start} is greater than end slot number {end}")]
    SlotRangeReversed { start: Slot, end: Slot },
    /// A node id that is not in the node table (FORGET, REPLICATE, REPLICAS, COUNT-FAILURE-REPORTS, SETSLOT NODE).
    #[error("Unknown node {0}")]
    UnknownNode(String),
    /// SETSLOT MIGRATING / IMPORTING words the unknown-node refusal differently.
    #[error("I don't know about node {0}")]
    DontKnowNode(String),
    #[error("I'm not the owner of hash slot {0}")]
    NotSlotOwner(Slot),
    #[error("I'm already the owner of hash slot {0}")]
    AlreadySlotOwner(Slot),
    #[error("Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP")]
    InvalidSetSlotAction,
    #[error("Please use SETSLOT only with masters.")]
    SetSlotOnReplica,
    #[error("Can't assign hashslot {0} to a different node while I still hold keys for this hash slot.")]
    SlotHasKeys(Slot),
    #[error("I tried hard but I can't forget myself...")]
    CantForgetMyself,
    #[error("Can't forget my master!")]
    CantForgetMyPrimary,
    #[error("Can't replicate myself")]
    CantReplicateMyself,
    #[error("I can only replicate a master, not a replica.")]
    CantReplicateReplica,
    #[error("To set a master the node must be empty and without assigned slots.")]
    ReplicateNotEmpty,
    #[error("The specified node is not a master")]
    NotAPrimary,
    #[error("Invalid config epoch specified: {0}")]
    InvalidConfigEpoch(i64),
    #[error("The user can assign a config epoch only when the node does not know any other node.")]
    ConfigEpochOthersKnown,
    #[error("Node config epoch is already non-zero")]
    ConfigEpochNonZero,
    #[error("DB must be empty to perform CLUSTER FLUSHSLOTS.")]
    FlushSlotsNotEmpty,
    #[error("CLUSTER RESET can't be called with master nodes containing keys")]
    ResetWithKeys,
    /// CLUSTER FAILOVER on a primary.
    #[error("You should send CLUSTER FAILOVER to a replica")]
    FailoverOnPrimary,
    /// CLUSTER FAILOVER on a replica that does not know its primary.
    #[error("I'm a replica but my master is unknown to me")]
    FailoverPrimaryUnknown,
    /// CLUSTER FAILOVER (neither FORCE nor TAKEOVER) while the primary is FAIL or not connected.
    #[error("Master is down or failed, please use CLUSTER FAILOVER FORCE")]
    FailoverPrimaryDown,
    /// MEET with an address that is not an IP literal, or a port (client or bus) outside 1..=65535. Redis
    /// echoes the IP and the client-port argument as given.
    #[error("Invalid node address specified: {ip}:{port}")]
    InvalidNodeAddress { ip: String, port: String },
    /// MEET's port argument is not an integer (the server parses it and uses this text).
    #[error("Invalid TCP base port specified: {0}")]
    InvalidBasePort(String),
    /// MEET's bus-port argument is not an integer.
    #[error("Invalid TCP bus port specified: {0}")]
    InvalidBusPort(String),

    /// COUNTKEYSINSLOT with a slot out of range.
    #[error("Invalid slot")]
    InvalidSlotNumber,
    /// GETKEYSINSLOT with a slot out of range or a negative count.
    #[error("Invalid slot or number of keys")]
    InvalidSlotOrCount,
    /// SAVECONFIG could not write `nodes.conf` (the reason is the OS error text).
    #[error("error saving the cluster node config: {0}")]
    SaveConfigFailed(String),

    // ---- Cluster bus frames: the driver logs these and drops the link. ----
    #[error("bus frame does not start with the magic bytes SHOL")]
    BadMagic,
    #[error("bus frame has protocol version {0}, this node speaks version {version}", version = crate::message::PROTOCOL_VERSION)]
    UnsupportedVersion(u16),
    #[error("bus frame announces {len} payload bytes, more than the limit of {max}")]
    FrameTooLarge { len: u64, max: usize },
    #[error("bus frame checksum mismatch")]
    ChecksumMismatch,
    #[error("malformed bus message: {0}")]
    MalformedMessage(String),

    // ---- nodes.conf ----
    /// The file cannot be trusted; the node must not start with it.
    #[error("corrupt cluster config file, line {line}: {reason}")]
    CorruptConfig { line: usize, reason: String },
}

impl ClusterError {
    /// The error reply for a refused CLUSTER subcommand, code first, byte for byte as Redis 7.0.15 sends it
    /// (without the leading `-` and trailing CRLF).
    pub fn wire_text(&self) -> String {
        format!("ERR {self}")
    }

    pub(crate) fn corrupt(line: usize, reason: impl Into<String>) -> ClusterError {
        ClusterError::CorruptConfig {
            line,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u32) -> Slot {
        Slot::new(n).unwrap()
    }

    #[test]
    fn wire_texts_match_redis_7_0_replies() {
        // Each observed against redis-server 7.0.15 in cluster mode.
        let cases = [
            (ClusterError::SlotBusy(slot(0)), "ERR Slot 0 is already busy"),
            (
                ClusterError::SlotUnassigned(slot(5461)),
                "ERR Slot 5461 is already unassigned",
            ),
            (
                ClusterError::SlotRangeReversed {
                    start: slot(5),
                    end: slot(1),
                },
                "ERR start slot number 5 is greater than end slot number 1",
            ),
            (ClusterError::InvalidSlot, "ERR Invalid or out of range slot"),
            (ClusterError::UnknownNode("nosuch".into()), "ERR Unknown node nosuch"),
            (
                ClusterError::DontKnowNode("nosuch".into()),
                "ERR I don't know about node nosuch",
            ),
            (
                ClusterError::NotSlotOwner(slot(6000)),
                "ERR I'm not the owner of hash slot 6000",
            ),
            (
                ClusterError::AlreadySlotOwner(slot(200)),
                "ERR I'm already the owner of hash slot 200",
            ),
            (
                ClusterError::SetSlotOnReplica,
                "ERR Please use SETSLOT only with masters.",
            ),
            (
                ClusterError::CantForgetMyself,
                "ERR I tried hard but I can't forget myself...",
            ),
            (ClusterError::CantForgetMyPrimary, "ERR Can't forget my master!"),
            (ClusterError::CantReplicateMyself, "ERR Can't replicate myself"),
            (
                ClusterError::CantReplicateReplica,
                "ERR I can only replicate a master, not a replica.",
            ),
            (
                ClusterError::ReplicateNotEmpty,
                "ERR To set a master the node must be empty and without assigned slots.",
            ),
            (ClusterError::NotAPrimary, "ERR The specified node is not a master"),
            (
                ClusterError::InvalidConfigEpoch(-1),
                "ERR Invalid config epoch specified: -1",
            ),
            (
                ClusterError::ConfigEpochOthersKnown,
                "ERR The user can assign a config epoch only when the node does not know any other node.",
            ),
            (
                ClusterError::InvalidNodeAddress {
                    ip: "1.2.3".into(),
                    port: "5".into(),
                },
                "ERR Invalid node address specified: 1.2.3:5",
            ),
            (
                ClusterError::InvalidBasePort("abc".into()),
                "ERR Invalid TCP base port specified: abc",
            ),
            (
                ClusterError::InvalidBusPort("abc".into()),
                "ERR Invalid TCP bus port specified: abc",
            ),
            (ClusterError::InvalidSlotNumber, "ERR Invalid slot"),
            (ClusterError::InvalidSlotOrCount, "ERR Invalid slot or number of keys"),
            (
                ClusterError::SetSlotOnReplica,
                "ERR Please use SETSLOT only with masters.",
            ),
            (ClusterError::CantForgetMyPrimary, "ERR Can't forget my master!"),
            (
                ClusterError::FailoverOnPrimary,
                "ERR You should send CLUSTER FAILOVER to a replica",
            ),
            (
                ClusterError::FailoverPrimaryUnknown,
                "ERR I'm a replica but my master is unknown to me",
            ),
            (
                ClusterError::FailoverPrimaryDown,
                "ERR Master is down or failed, please use CLUSTER FAILOVER FORCE",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.wire_text(), text);
        }
    }
}
