//! Cluster bus messages and their wire format.
//!
//! # Frame
//! ```text
//! offset  size  field
//!      0     4  magic "SHOL"
//!      4     2  protocol version, big-endian (1)
//!      6     2  reserved, zero
//!      8     4  payload length, big-endian (at most MAX_PAYLOAD_LEN)
//!     12     4  CRC-32 (IEEE) of the payload, big-endian
//!     16     n  payload: the Message in postcard encoding (serde; varint integers)
//! ```
//! Every message carries the sender's header: its id, the current epoch, the config epoch of its primary (itself
//! if it is one), its flags, its primary, the slots of its primary as ranges, the address it announces, its
//! shard and replication offset. PING, PONG and MEET add a gossip section about a sample of other nodes.
//!
//! Compatibility: fields and [`Body`] variants are appended, never reordered (postcard identifies them by
//! position); a change that old nodes cannot read bumps [`PROTOCOL_VERSION`], and a node drops links that speak
//! another version.
//!
//! Nothing from the network is trusted: [`decode`] checks the magic, version, length limit and checksum before
//! parsing, rejects trailing bytes, and validates every field that is later printed or used as an address
//! (addresses are typed, slot ranges must be in canonical form, hostnames may not hold separators). It never
//! panics.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::node::{Epoch, NodeFlags, NodeId, ShardId};
use crate::slots::SlotRanges;

/// The frame's first bytes.
pub const MAGIC: [u8; 4] = *b"SHOL";
/// The bus protocol version this node speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 16;
/// The largest payload accepted (1 MiB): a PING gossiping about a tenth of 10,000 nodes plus every failing one
/// is under 100 KiB, so anything near this limit is garbage or hostile.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;
/// A primary paused for a manual failover sends its offset with this flag (`CLUSTERMSG_FLAG0_PAUSED`).
pub const MFLAG_PAUSED: u8 = 1;
/// A manual failover's vote request: primaries vote even though the primary is up (`CLUSTERMSG_FLAG0_FORCEACK`).
pub const MFLAG_FORCE_ACK: u8 = 2;
/// On a PONG: "I do not know you" (the ping came from a node not in the replier's table). Ours, not Redis's: the
/// pinging node then MEETs instead of PINGing, which repairs a handshake that completed on one side only (its
/// last answer lost).
pub const MFLAG_SENDER_UNKNOWN: u8 = 0x80;

/// The longest hostname (DNS's limit).
const MAX_HOSTNAME_LEN: usize = 255;

/// One bus message: the sender's header and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

/// What every message says about its sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub sender: NodeId,
    /// The sender's current epoch.
    pub current_epoch: Epoch,
    /// The config epoch of the sender, or of its primary when the sender is a replica.
    pub config_epoch: Epoch,
    pub flags: NodeFlags,
    /// The sender's primary, when it is a replica.
    pub primary: Option<NodeId>,
    /// The slots of the sender, or of its primary when the sender is a replica.
    pub slots: SlotRanges,
    /// `cluster-announce-ip`; when absent the receiver takes the address the connection came from.
    pub ip: Option<IpAddr>,
    /// Client port (`cluster-announce-port` or the port).
    pub port: u16,
    /// Bus port (`cluster-announce-bus-port` or the bus port).
    pub bus_port: u16,
    /// `cluster-announce-hostname`.
    pub hostname: Option<String>,
    pub shard_id: ShardId,
    /// Replication offset, for replica ranking in elections.
    pub repl_offset: u64,
    /// Whether the sender sees the cluster as up.
    pub cluster_ok: bool,
    /// Message flags: [`MFLAG_PAUSED`], [`MFLAG_FORCE_ACK`] (manual failover, for later), [`MFLAG_SENDER_UNKNOWN`].
    pub mflags: u8,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Ping(Vec<GossipEntry>),
    Pong(Vec<GossipEntry>),
    /// A PING that also asks an unknown receiver to add the sender (`CLUSTER MEET`).
    Meet(Vec<GossipEntry>),
    /// "Flag this node FAIL": a majority of primaries agreed it is down.
    Fail {
        id: NodeId,
    },
    /// "Your view of this node's slots is stale": its newer config epoch and slots.
    Update {
        id: NodeId,
        config_epoch: Epoch,
        slots: SlotRanges,
    },
    /// A replica asks the primaries to vote for its promotion (elections are a later extension).
    FailoverAuthRequest,
    /// A primary's vote.
    FailoverAuthAck,
    /// A replica asks its primary to pause writes for a manual failover.
    MfStart,
}

/// What the sender knows about one other node (Redis's `clusterMsgDataGossip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipEntry {
    pub id: NodeId,
    /// `None` when the sender does not know it.
    pub ip: Option<IpAddr>,
    pub port: u16,
    pub bus_port: u16,
    pub flags: NodeFlags,
    /// When the sender's pending ping to the node was sent, unix seconds (0: none).
    pub ping_sent_s: u32,
    /// When the sender last got a pong from the node, unix seconds.
    pub pong_received_s: u32,
}

/// Message types, numbered as Redis numbers them, which is also the order CLUSTER INFO lists their counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    Ping = 0,
    Pong = 1,
    Meet = 2,
    Fail = 3,
    Publish = 4,
    FailoverAuthRequest = 5,
    FailoverAuthAck = 6,
    Update = 7,
    MfStart = 8,
    Module = 9,
    PublishShard = 10,
}

impl MessageKind {
    /// How many kinds there are (the size of per-kind counters).
    pub const COUNT: usize = 11;

    pub const ALL: [MessageKind; MessageKind::COUNT] = [
        MessageKind::Ping,
        MessageKind::Pong,
        MessageKind::Meet,
        MessageKind::Fail,
        MessageKind::Publish,
        MessageKind::FailoverAuthRequest,
        MessageKind::FailoverAuthAck,
        MessageKind::Update,
        MessageKind::MfStart,
        MessageKind::Module,
        MessageKind::PublishShard,
    ];

    /// The name in `cluster_stats_messages_<name>_sent`.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Ping => "ping",
            MessageKind::Pong => "pong",
            MessageKind::Meet => "meet",
            MessageKind::Fail => "fail",
            MessageKind::Publish => "publish",
            MessageKind::FailoverAuthRequest => "auth-req",
            MessageKind::FailoverAuthAck => "auth-ack",
            MessageKind::Update => "update",
            MessageKind::MfStart => "mfstart",
            MessageKind::Module => "module",
            MessageKind::PublishShard => "publishshard",
        }
    }
}

impl Body {
    pub fn kind(&self) -> MessageKind {
        match self {
            Body::Ping(_) => MessageKind::Ping,
            Body::Pong(_) => MessageKind::Pong,
            Body::Meet(_) => MessageKind::Meet,
            Body::Fail { .. } => MessageKind::Fail,
            Body::Update { .. } => MessageKind::Update,
            Body::FailoverAuthRequest => MessageKind::FailoverAuthRequest,
            Body::FailoverAuthAck => MessageKind::FailoverAuthAck,
            Body::MfStart => MessageKind::MfStart,
        }
    }

    /// The gossip section of a PING, PONG or MEET.
    pub fn gossip(&self) -> &[GossipEntry] {
        match self {
            Body::Ping(g) | Body::Pong(g) | Body::Meet(g) => g,
            _ => &[],
        }
    }
}

impl Message {
    pub fn kind(&self) -> MessageKind {
        self.body.kind()
    }

    /// Checks the fields that a peer could use to corrupt our output (addresses are typed, so valid).
    fn validate(&self) -> Result<(), ClusterError> {
        if let Some(name) = &self.header.hostname {
            check_hostname(name)?;
        }
        Ok(())
    }
}

fn malformed(what: impl Into<String>) -> ClusterError {
    ClusterError::MalformedMessage(what.into())
}

/// A hostname is printed inside CLUSTER NODES lines and nodes.conf, so it may not hold separators.
fn check_hostname(name: &str) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_HOSTNAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(malformed("the hostname holds characters a hostname cannot"))
    }
}

/// The frame for `msg`. Fails only when the payload would exceed [`MAX_PAYLOAD_LEN`].
pub fn encode(msg: &Message) -> Result<Vec<u8>, ClusterError> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + 64 + 48 * msg.body.gossip().len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&[0; 8]); // length and checksum, filled below
    let mut out = postcard::to_extend(msg, out).map_err(|e| malformed(format!("cannot encode: {e}")))?;
    let payload_len = out.len() - FRAME_HEADER_LEN;
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(ClusterError::FrameTooLarge {
            len: payload_len as u64,
            max: MAX_PAYLOAD_LEN,
        });
    }
    let crc = crc32fast::hash(out.get(FRAME_HEADER_LEN..).unwrap_or_default());
    if let Some(fields) = out.get_mut(8..16) {
        fields[..4].copy_from_slice(&(payload_len as u32).to_be_bytes());
        fields[4..].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(out)
}

/// The first message in `buf` and how many bytes it took; `Ok(None)` when more bytes are needed.
///
/// An error means the stream cannot be trusted from here on: the driver logs it and drops the link. Errors are
/// reported as early as the bytes allow (a bad magic after 4 bytes, an oversized length after 12), so garbage
/// is never buffered up to the limit.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, ClusterError> {
    let prefix = buf.get(..MAGIC.len().min(buf.len())).unwrap_or_default();
    if prefix != MAGIC.get(..prefix.len()).unwrap_or_default() {
        return Err(ClusterError::BadMagic);
    }
    if let Some(version) = be_u16(buf, 4) {
        if version != PROTOCOL_VERSION {
            return Err(ClusterError::UnsupportedVersion(version));
        }
    }
    let Some(len) = be_u32(buf, 8) else {
        return Ok(None);
    };
    let len = len as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(ClusterError::FrameTooLarge {
            len: len as u64,
            max: MAX_PAYLOAD_LEN,
        });
    }
    let (Some(crc), Some(payload)) = (be_u32(buf, 12), buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)) else {
        return Ok(None);
    };
    if crc32fast::hash(payload) != crc {
        return Err(ClusterError::ChecksumMismatch);
    }
    let (msg, rest): (Message, &[u8]) = postcard::take_from_bytes(payload).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} bytes after the message", rest.len())));
    }
    msg.validate()?;
    Ok(Some((msg, FRAME_HEADER_LEN + len)))
}

fn be_u16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::slot::Slot;
    use proptest::prelude::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 20])
    }

    pub(crate) fn sample_header() -> Header {
        Header {
            sender: id(1),
            current_epoch: Epoch(6),
            config_epoch: Epoch(1),
            flags: NodeFlags::PRIMARY | NodeFlags::MYSELF,
            primary: None,
            slots: SlotRanges::range(Slot::new(0).unwrap(), Slot::new(5460).unwrap()),
            ip: None,
            port: 7000,
            bus_port: 17000,
            hostname: Some("node-1.example".into()),
            shard_id: ShardId::from_bytes([9; 20]),
            repl_offset: 1234,
            cluster_ok: true,
            mflags: 0,
        }
    }

    fn entry(n: u8) -> GossipEntry {
        GossipEntry {
            id: id(n),
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            port: 7000 + u16::from(n),
            bus_port: 17000 + u16::from(n),
            flags: NodeFlags::PRIMARY,
            ping_sent_s: 0,
            pong_received_s: 1_700_000_000,
        }
    }

    #[test]
    fn a_ping_round_trips_and_is_small() {
        let msg = Message {
            header: sample_header(),
            body: Body::Ping(vec![entry(2), entry(3), entry(4)]),
        };
        let bytes = encode(&msg).unwrap();
        assert_eq!(&bytes[..4], b"SHOL");
        assert_eq!(decode(&bytes).unwrap(), Some((msg, bytes.len())));
        // Redis's PING with three gossip entries is 2256 + 3 * 104 bytes.
        assert!(bytes.len() < 300, "{} bytes", bytes.len());
    }

    #[test]
    fn a_partial_frame_asks_for_more_bytes() {
        let msg = Message {
            header: sample_header(),
            body: Body::Fail { id: id(5) },
        };
        let bytes = encode(&msg).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn two_frames_back_to_back_decode_one_at_a_time() {
        let a = Message {
            header: sample_header(),
            body: Body::FailoverAuthAck,
        };
        let b = Message {
            header: sample_header(),
            body: Body::Update {
                id: id(7),
                config_epoch: Epoch(9),
                slots: SlotRanges::all(),
            },
        };
        let mut bytes = encode(&a).unwrap();
        let first = bytes.len();
        bytes.extend(encode(&b).unwrap());
        assert_eq!(decode(&bytes).unwrap(), Some((a, first)));
        assert_eq!(decode(&bytes[first..]).unwrap(), Some((b, bytes.len() - first)));
    }

    #[test]
    fn garbage_is_refused_as_soon_as_it_shows() {
        assert_eq!(decode(b"GET"), Err(ClusterError::BadMagic));
        assert_eq!(decode(b"SHOL\x00\x02"), Err(ClusterError::UnsupportedVersion(2)));
        let mut huge = b"SHOL\x00\x01\x00\x00".to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&huge), Err(ClusterError::FrameTooLarge { .. })));
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let msg = Message {
            header: sample_header(),
            body: Body::Pong(vec![entry(2)]),
        };
        let mut bytes = encode(&msg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(decode(&bytes), Err(ClusterError::ChecksumMismatch));
    }

    /// Re-frames a payload with a valid checksum, to reach the checks after it.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = b"SHOL\x00\x01\x00\x00".to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn fields_that_reach_our_output_are_validated() {
        let mut header = sample_header();
        header.hostname = Some("evil host\nline".into());
        let payload = postcard::to_allocvec(&Message {
            header,
            body: Body::MfStart,
        })
        .unwrap();
        assert!(matches!(
            decode(&frame(&payload)),
            Err(ClusterError::MalformedMessage(_))
        ));
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_refused() {
        let mut payload = postcard::to_allocvec(&Message {
            header: sample_header(),
            body: Body::FailoverAuthRequest,
        })
        .unwrap();
        payload.push(0);
        assert!(matches!(
            decode(&frame(&payload)),
            Err(ClusterError::MalformedMessage(_))
        ));
    }

    fn arb_ranges() -> impl Strategy<Value = SlotRanges> {
        proptest::collection::btree_set(0u32..16384, 0..40)
            .prop_map(|set| set.into_iter().filter_map(Slot::new).collect::<SlotRanges>())
    }

    fn arb_entry() -> impl Strategy<Value = GossipEntry> + Clone {
        (
            any::<[u8; 20]>(),
            prop_oneof![
                Just(None),
                any::<[u8; 4]>().prop_map(|b| Some(IpAddr::from(b))),
                any::<[u8; 16]>().prop_map(|b| Some(IpAddr::from(b)))
            ],
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(id, ip, port, bus_port, flags, ping, pong)| GossipEntry {
                id: NodeId::from_bytes(id),
                ip,
                port,
                bus_port,
                flags: NodeFlags::from(flags),
                ping_sent_s: ping,
                pong_received_s: pong,
            })
    }

    pub(crate) fn arb_message() -> impl Strategy<Value = Message> {
        let header = (
            any::<[u8; 20]>(),
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
            proptest::option::of(any::<[u8; 20]>()),
            arb_ranges(),
            proptest::option::of(any::<[u8; 4]>().prop_map(IpAddr::from)),
            (any::<u16>(), any::<u16>(), any::<u64>(), any::<bool>(), any::<u8>()),
            proptest::option::of("[a-z0-9.-]{1,20}"),
        )
            .prop_map(
                |(sender, cur, cfg, flags, primary, slots, ip, (port, bus_port, offset, ok, mflags), hostname)| {
                    Header {
                        sender: NodeId::from_bytes(sender),
                        current_epoch: Epoch(cur),
                        config_epoch: Epoch(cfg),
                        flags: NodeFlags::from(flags),
                        primary: primary.map(NodeId::from_bytes),
                        slots,
                        ip,
                        port,
                        bus_port,
                        hostname,
                        shard_id: ShardId::from_bytes(sender),
                        repl_offset: offset,
                        cluster_ok: ok,
                        mflags,
                    }
                },
            );
        let gossip = proptest::collection::vec(arb_entry(), 0..12);
        let body = prop_oneof![
            gossip.clone().prop_map(Body::Ping),
            gossip.clone().prop_map(Body::Pong),
            gossip.prop_map(Body::Meet),
            any::<[u8; 20]>().prop_map(|b| Body::Fail {
                id: NodeId::from_bytes(b)
            }),
            (any::<[u8; 20]>(), any::<u64>(), arb_ranges()).prop_map(|(b, e, slots)| Body::Update {
                id: NodeId::from_bytes(b),
                config_epoch: Epoch(e),
                slots
            }),
            Just(Body::FailoverAuthRequest),
            Just(Body::FailoverAuthAck),
            Just(Body::MfStart),
        ];
        (header, body).prop_map(|(header, body)| Message { header, body })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(msg in arb_message()) {
            let bytes = encode(&msg).unwrap();
            prop_assert_eq!(decode(&bytes).unwrap(), Some((msg, bytes.len())));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn arbitrary_payloads_in_a_valid_frame_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&frame(&payload));
        }

        #[test]
        fn mutated_messages_never_panic(msg in arb_message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            // Mutate the payload and fix up the checksum, so the parser itself sees the damage.
            let bytes = encode(&msg).unwrap();
            let mut payload = bytes[FRAME_HEADER_LEN..].to_vec();
            for (at, x) in flips {
                let i = at % payload.len();
                payload[i] ^= x;
            }
            let _ = decode(&frame(&payload));
        }
    }
}
