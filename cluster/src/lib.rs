//! Shoal's cluster logic: hash slots and key hashing, and the cluster state machine of one node — node table,
//! gossip on the cluster bus, failure detection, config epochs — after the Redis Cluster specification and Redis
//! 7.0's `cluster.c`. Nothing here does I/O or reads a clock: the server drives it over real sockets, tests drive
//! it over a simulated network ([`sim`], with the `sim` feature).
//!
//! # The state machine: [`ClusterNode`]
//! Construction: [`ClusterNode::new`] (a fresh node: random id, primary without slots) or
//! [`ClusterNode::from_nodes_file`] (restart from a parsed [`NodesFile`]). Both take a [`ClusterConfig`] (port,
//! bus port, `cluster-node-timeout`, the `cluster-announce-*` options, full coverage, replica migration) and a
//! seed for every random choice.
//!
//! Inputs, each returning the [`Effect`]s to carry out, in order:
//! - [`ClusterNode::on_tick`]`(now_ms)` about every 100 ms ([`state::TICK_INTERVAL_MS`]);
//! - [`ClusterNode::accept_link`]`(peer_ip, local_ip, now_ms) -> LinkId` for an accepted bus connection (no
//!   effects);
//! - [`ClusterNode::on_link_connected`]`(link, now_ms)` when a connection asked by [`Effect::Connect`] is up;
//! - [`ClusterNode::on_link_closed`]`(link, now_ms)` when any link dies or a connection attempt fails;
//! - [`ClusterNode::on_message`]`(link, msg, now_ms)` for each decoded bus message.
//!
//! Administration (the CLUSTER subcommands), returning `Result<_, ClusterError>` whose
//! [`ClusterError::wire_text`] is Redis's reply; collect effects with [`ClusterNode::take_effects`] afterwards:
//! `meet`, `add_slots`, `add_slot_ranges`, `del_slots`, `del_slot_ranges`, `flush_slots`, `set_slot`
//! ([`SetSlot`]), `bump_epoch`, `set_config_epoch`, `forget` (60 s ban), `replicate`, `reset` (soft/hard),
//! `count_failure_reports`. Arguments only the server knows (is the keyspace empty? keys in a slot?) are
//! parameters.
//!
//! Effects: [`Effect::SaveConfig`] (first in its batch: write [`ClusterNode::nodes_conf_text`] atomically with
//! fsync before sending the rest), `Connect { link, ip, bus_port }`, `Send { link, msg }` (encode with
//! [`encode`]), `CloseLink { link }`, `ReplicateFrom { primary, ip, port }`, `BecomePrimary`,
//! `DeleteKeysInSlots(ranges)`, `Log { level, text }`.
//!
//! Queries for replies and routing: [`ClusterNode::my_id`], `my_shard_id`, `myself`, `node`, `lookup`,
//! `nodes`, `slot_owner(slot)`, `migrating_to(slot)`, `importing_from(slot)`, `cluster_state_ok`,
//! `current_epoch`, `is_replica`, `my_primary`; renderers `cluster_nodes_text`, `node_description`,
//! `cluster_info_text`, `replicas_text`, and structs for the array replies `cluster_slots` ([`SlotsEntry`]),
//! `cluster_shards` ([`ShardEntry`]), `cluster_links` ([`LinkInfo`]). The server also reports its replication
//! offset ([`ClusterNode::set_repl_offset`]) and links it dropped for buffer overflow.
//!
//! # The bus: [`message`]
//! Frames are `"SHOL" | version u16 | reserved u16 | length u32 | CRC-32 u32 | postcard payload`, decoded
//! incrementally by [`decode`] (`Ok(None)` = need more bytes; an error = drop the link). Slots travel as ranges,
//! so a PING is a few hundred bytes where Redis sends 2 KiB of bitmap.
//!
//! # `nodes.conf`: [`config_file`]
//! Redis's format (the CLUSTER NODES lines plus `vars currentEpoch N lastVoteEpoch M`), with the shard id as a
//! Redis 7.2 aux field; parsing rejects anything unexpected with the line and the reason.
//!
//! # Where Shoal departs from Redis 7.0, and why
//! Redis relies on TCP never losing a message; the simulator loses messages on purpose, so: a handshake repeats
//! its MEET until answered (Redis sends one), the node that receives a MEET MEETs back, a PONG tells a pinging
//! node that we do not know it ([`message::MFLAG_SENDER_UNKNOWN`]) so it MEETs us, and a ping unanswered for half
//! the node timeout is repeated (keeping its original time for failure detection). Nodes learned from gossip do
//! not inherit the gossiper's PFAIL/FAIL view. The cluster size (the FAIL quorum's base) is counted even during
//! the writable delay after a start.
//!
//! # Later: elections
//! Replica promotion is the next step; the extension point is `state/failover.rs` (message variants
//! [`Body::FailoverAuthRequest`], [`Body::FailoverAuthAck`], [`Body::MfStart`] exist and are counted, and
//! `lastVoteEpoch` is persisted).

pub mod config_file;
pub mod error;
pub mod link;
pub mod message;
pub mod node;
pub mod redirect;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod slot;
pub mod slots;
pub mod state;
pub mod table;

pub use config_file::{NodesFile, SavedNode};
pub use error::ClusterError;
pub use link::{LinkDirection, LinkId, LinkInfo};
pub use message::{decode, encode, Body, GossipEntry, Header, Message, MessageKind};
pub use node::{Epoch, FailureReport, NodeFlags, NodeId, NodeInfo, ShardId};
pub use redirect::Redirect;
pub use slot::{Slot, SLOT_COUNT};
pub use slots::{OwnedRange, SlotMap, SlotRange, SlotRanges};
pub use state::{ClusterConfig, ClusterNode, Effect, LogLevel, SetSlot, ShardEntry, ShardNode, SlotsEntry, SlotsNode};
pub use table::NodeTable;
