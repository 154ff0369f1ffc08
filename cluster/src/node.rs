//! Who is in the cluster: node and shard identities, epochs, the per-node flags, and everything one node knows
//! about another ([`NodeInfo`]), including the failure reports other primaries sent about it.
//!
//! Identities are 160 random bits shown as 40 lowercase hex characters, as in Redis; they are stored as bytes,
//! whose order is the order of their hex text, so "the smaller node id" of the epoch-collision rule is a plain
//! comparison.

use std::fmt;
use std::net::IpAddr;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::link::LinkId;
use crate::slots::SlotRanges;

/// How many characters a node or shard id has in text form.
pub const ID_TEXT_LEN: usize = 40;

macro_rules! hex_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name([u8; 20]);

        impl $name {
            /// A fresh random id.
            pub fn random<R: Rng + ?Sized>(rng: &mut R) -> $name {
                let mut bytes = [0u8; 20];
                rng.fill(&mut bytes);
                $name(bytes)
            }

            /// The id spelled by `text`: exactly 40 lowercase hex characters, else `None` (so an id a client
            /// typed in upper case is as unknown as it is to Redis, whose lookups are case-sensitive).
            pub fn parse(text: &str) -> Option<$name> {
                $name::parse_ascii(text.as_bytes())
            }

            /// As [`Self::parse`], from bytes.
            pub fn parse_ascii(text: &[u8]) -> Option<$name> {
                if text.len() != ID_TEXT_LEN {
                    return None;
                }
                let mut bytes = [0u8; 20];
                for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
                    let (hi, lo) = match pair {
                        [hi, lo] => (hex_value(*hi)?, hex_value(*lo)?),
                        _ => return None,
                    };
                    *byte = (hi << 4) | lo;
                }
                Some($name(bytes))
            }

            pub const fn from_bytes(bytes: [u8; 20]) -> $name {
                $name(bytes)
            }

            pub const fn as_bytes(&self) -> &[u8; 20] {
                &self.0
            }

            /// Appends the 40-character text form to `out`.
            pub fn write_hex(&self, out: &mut String) {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                for byte in self.0 {
                    out.push(char::from(DIGITS[usize::from(byte >> 4)]));
                    out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut s = String::with_capacity(ID_TEXT_LEN);
                self.write_hex(&mut s);
                f.write_str(&s)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<$name, ()> {
                $name::parse(s).ok_or(())
            }
        }
    };
}

hex_id!(
    /// A node's identity, fixed for its life (and across restarts through `nodes.conf`); only
    /// `CLUSTER RESET HARD` picks a new one.
    NodeId
);

hex_id!(
    /// A shard's identity: a primary picks one at random and its replicas adopt it (`CLUSTER MYSHARDID`).
    ShardId
);

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A configuration version. The cluster's *current epoch* only grows; each primary's *config epoch* versions
/// its claim on its slots, and the greater claim wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl Epoch {
    pub const ZERO: Epoch = Epoch(0);

    pub fn get(self) -> u64 {
        self.0
    }

    /// The next epoch; saturates rather than wrapping (2^64 epochs are out of reach).
    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A node's flags, with Redis's bit values (`CLUSTER_NODE_*`) so that the bus carries them unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
pub struct NodeFlags(u16);

impl NodeFlags {
    pub const PRIMARY: NodeFlags = NodeFlags(1);
    pub const REPLICA: NodeFlags = NodeFlags(2);
    /// Possibly failing: this node's own, unconfirmed view (`fail?`).
    pub const PFAIL: NodeFlags = NodeFlags(4);
    /// Failing, as agreed by a majority of primaries (`fail`).
    pub const FAIL: NodeFlags = NodeFlags(8);
    pub const MYSELF: NodeFlags = NodeFlags(16);
    /// Met by address, id not known yet; the entry carries a placeholder id.
    pub const HANDSHAKE: NodeFlags = NodeFlags(32);
    /// Address unknown (a node that answered with another id than the one we had for its address).
    pub const NOADDR: NodeFlags = NodeFlags(64);
    /// Send MEET rather than PING on the next connection, so that the peer adds us.
    pub const MEET: NodeFlags = NodeFlags(128);
    /// A primary that had replicas: a valid target for replica migration.
    pub const MIGRATE_TO: NodeFlags = NodeFlags(256);
    /// A replica that will not try to fail over its primary (`cluster-replica-no-failover`).
    pub const NOFAILOVER: NodeFlags = NodeFlags(512);

    const KNOWN: u16 = 1023;

    pub const fn empty() -> NodeFlags {
        NodeFlags(0)
    }

    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from bits, dropping bits this version does not know.
    pub const fn from_bits_truncate(bits: u16) -> NodeFlags {
        NodeFlags(bits & NodeFlags::KNOWN)
    }

    pub const fn contains(self, other: NodeFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersects(self, other: NodeFlags) -> bool {
        self.0 & other.0 != 0
    }

    pub fn insert(&mut self, other: NodeFlags) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: NodeFlags) {
        self.0 &= !other.0;
    }

    pub fn set(&mut self, other: NodeFlags, on: bool) {
        if on {
            self.insert(other)
        } else {
            self.remove(other)
        }
    }

    pub const fn union(self, other: NodeFlags) -> NodeFlags {
        NodeFlags(self.0 | other.0)
    }

    /// The flags as CLUSTER NODES writes them: comma-separated in Redis's order, `noflags` when none is shown.
    pub fn render(self, out: &mut String) {
        const SHOWN: [(NodeFlags, &str); 8] = [
            (NodeFlags::MYSELF, "myself"),
            (NodeFlags::PRIMARY, "master"),
            (NodeFlags::REPLICA, "slave"),
            (NodeFlags::PFAIL, "fail?"),
            (NodeFlags::FAIL, "fail"),
            (NodeFlags::HANDSHAKE, "handshake"),
            (NodeFlags::NOADDR, "noaddr"),
            (NodeFlags::NOFAILOVER, "nofailover"),
        ];
        let start = out.len();
        for (flag, name) in SHOWN {
            if self.contains(flag) {
                if out.len() > start {
                    out.push(',');
                }
                out.push_str(name);
            }
        }
        if out.len() == start {
            out.push_str("noflags");
        }
    }

    /// One flag by its CLUSTER NODES name (`noflags` is the empty set), as `nodes.conf` spells them.
    pub fn from_name(name: &str) -> Option<NodeFlags> {
        Some(match name {
            "myself" => NodeFlags::MYSELF,
            "master" => NodeFlags::PRIMARY,
            "slave" => NodeFlags::REPLICA,
            "fail?" => NodeFlags::PFAIL,
            "fail" => NodeFlags::FAIL,
            "handshake" => NodeFlags::HANDSHAKE,
            "noaddr" => NodeFlags::NOADDR,
            "nofailover" => NodeFlags::NOFAILOVER,
            "noflags" => NodeFlags::empty(),
            _ => return None,
        })
    }
}

impl From<u16> for NodeFlags {
    fn from(bits: u16) -> NodeFlags {
        NodeFlags::from_bits_truncate(bits)
    }
}

impl From<NodeFlags> for u16 {
    fn from(flags: NodeFlags) -> u16 {
        flags.0
    }
}

impl std::ops::BitOr for NodeFlags {
    type Output = NodeFlags;
    fn bitor(self, rhs: NodeFlags) -> NodeFlags {
        self.union(rhs)
    }
}

impl fmt::Debug for NodeFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.render(&mut s);
        if self.contains(NodeFlags::MEET) {
            s.push_str(",meet");
        }
        if self.contains(NodeFlags::MIGRATE_TO) {
            s.push_str(",migrate_to");
        }
        write!(f, "NodeFlags({s})")
    }
}

/// One primary's statement that a node looks down, kept while it is fresh enough to count toward FAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureReport {
    pub reporter: NodeId,
    /// When the report was last confirmed (unix ms, our clock).
    pub time_ms: u64,
}

/// What this node knows about one node of the cluster, itself included.
///
/// The fields are public for reading (CLUSTER NODES, SLOTS, SHARDS, routing); only the state machine changes
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    /// `None` until known (a fresh node learns its own IP from the first MEET it receives).
    pub ip: Option<IpAddr>,
    /// Client port.
    pub port: u16,
    pub bus_port: u16,
    /// `cluster-announce-hostname`, when the node announces one.
    pub hostname: Option<String>,
    pub flags: NodeFlags,
    /// The primary of a replica, when known.
    pub primary: Option<NodeId>,
    pub config_epoch: Epoch,
    /// When the ping we still wait a pong for was sent (unix ms), 0 when none is pending.
    pub ping_sent_ms: u64,
    /// When the last pong arrived (unix ms; gossip can advance it in whole seconds), 0 if never.
    pub pong_received_ms: u64,
    /// When any message from the node last arrived (unix ms).
    pub data_received_ms: u64,
    /// When the node was flagged FAIL (unix ms).
    pub fail_time_ms: u64,
    /// When the entry was created (unix ms): handshakes expire from it.
    pub created_ms: u64,
    /// The slots this node serves, from our point of view.
    pub slots: SlotRanges,
    pub failure_reports: Vec<FailureReport>,
    pub shard_id: ShardId,
    /// The replication offset the node last announced.
    pub repl_offset: u64,
    /// Our outbound bus link to the node (we send PING, MEET, FAIL and UPDATE on it).
    pub link: Option<LinkId>,
    /// The node's bus link to us (we answer its pings on it).
    pub inbound_link: Option<LinkId>,
    /// Which of our pings last carried this node in its gossip section (no node twice in one ping).
    pub(crate) last_in_ping_gossip: u64,
    /// When we last sent the node a PING or MEET, repeats included (unix ms): times handshake retries and
    /// repeated pings.
    pub(crate) ping_repeated_ms: u64,
    /// When this node, a primary we voted about, last had one of its replicas get our vote (unix ms, 0:
    /// never): we vote about the same primary at most once per two node timeouts (Redis's `voted_time`).
    pub(crate) voted_ms: u64,
    /// The replica that got that vote: it may get our vote again in a later epoch (a retry after a collision),
    /// another replica of the same primary may not within the two node timeouts.
    pub(crate) voted_for: Option<NodeId>,
    /// Since when this primary has been orphaned (no working replica left although it had some), unix ms, 0
    /// when it is not (Redis's `orphaned_time`): replica migration waits a while before moving a replica to it.
    pub(crate) orphaned_since_ms: u64,
}

impl NodeInfo {
    pub(crate) fn new(id: NodeId, flags: NodeFlags, shard_id: ShardId, now_ms: u64) -> NodeInfo {
        NodeInfo {
            id,
            ip: None,
            port: 0,
            bus_port: 0,
            hostname: None,
            flags,
            primary: None,
            config_epoch: Epoch::ZERO,
            ping_sent_ms: 0,
            pong_received_ms: 0,
            data_received_ms: 0,
            fail_time_ms: 0,
            created_ms: now_ms,
            slots: SlotRanges::new(),
            failure_reports: Vec::new(),
            shard_id,
            repl_offset: 0,
            link: None,
            inbound_link: None,
            last_in_ping_gossip: 0,
            ping_repeated_ms: 0,
            voted_ms: 0,
            voted_for: None,
            orphaned_since_ms: 0,
        }
    }

    pub fn is_myself(&self) -> bool {
        self.flags.contains(NodeFlags::MYSELF)
    }

    pub fn is_primary(&self) -> bool {
        self.flags.contains(NodeFlags::PRIMARY)
    }

    pub fn is_replica(&self) -> bool {
        self.flags.contains(NodeFlags::REPLICA)
    }

    pub fn in_handshake(&self) -> bool {
        self.flags.contains(NodeFlags::HANDSHAKE)
    }

    /// Flagged FAIL (agreed by a majority of primaries).
    pub fn is_failed(&self) -> bool {
        self.flags.contains(NodeFlags::FAIL)
    }

    /// Flagged PFAIL (our own timeout, not yet agreed).
    pub fn timed_out(&self) -> bool {
        self.flags.contains(NodeFlags::PFAIL)
    }

    pub fn has_addr(&self) -> bool {
        !self.flags.contains(NodeFlags::NOADDR)
    }

    /// The IP as CLUSTER NODES writes it: empty when unknown, IPv6 without brackets.
    pub fn ip_text(&self) -> String {
        self.ip.map(|ip| ip.to_string()).unwrap_or_default()
    }

    /// How many slots the node serves.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn ids_print_as_forty_lowercase_hex_chars_and_parse_back() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let id = NodeId::random(&mut rng);
        let text = id.to_string();
        assert_eq!(text.len(), ID_TEXT_LEN);
        assert!(text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(NodeId::parse(&text), Some(id));
    }

    #[test]
    fn ids_reject_wrong_length_upper_case_and_non_hex() {
        let good = "4fc12d357691d45d1db60e3f09e065c3effd1b20";
        assert!(NodeId::parse(good).is_some());
        assert!(NodeId::parse(&good.to_uppercase()).is_none());
        assert!(NodeId::parse(&good[1..]).is_none());
        assert!(NodeId::parse(&format!("{good}0")).is_none());
        assert!(NodeId::parse("nosuch").is_none());
        assert!(NodeId::parse("zfc12d357691d45d1db60e3f09e065c3effd1b20").is_none());
        assert!(NodeId::parse("").is_none());
    }

    #[test]
    fn flags_render_in_redis_order() {
        let mut s = String::new();
        (NodeFlags::PRIMARY | NodeFlags::MYSELF).render(&mut s);
        assert_eq!(s, "myself,master");
        s.clear();
        (NodeFlags::REPLICA | NodeFlags::FAIL | NodeFlags::NOFAILOVER).render(&mut s);
        assert_eq!(s, "slave,fail,nofailover");
        s.clear();
        (NodeFlags::PRIMARY | NodeFlags::PFAIL).render(&mut s);
        assert_eq!(s, "master,fail?");
        s.clear();
        NodeFlags::HANDSHAKE.render(&mut s);
        assert_eq!(s, "handshake");
        s.clear();
        (NodeFlags::MEET | NodeFlags::MIGRATE_TO).render(&mut s);
        assert_eq!(s, "noflags", "internal flags are not shown");
    }

    #[test]
    fn unknown_flag_bits_are_dropped() {
        assert_eq!(NodeFlags::from(0xffff).bits(), 1023);
    }

    proptest! {
        #[test]
        fn id_order_is_the_order_of_their_text(a in any::<[u8; 20]>(), b in any::<[u8; 20]>()) {
            let (a, b) = (NodeId::from_bytes(a), NodeId::from_bytes(b));
            prop_assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in ".{0,50}") {
            if let Some(id) = NodeId::parse(&s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}
