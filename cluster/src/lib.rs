//! Shoal's cluster logic: hash slots and key hashing, and the cluster state machine of one node — node table,
//! gossip on the cluster bus, failure detection, config epochs, replica promotion, manual failover, replica
//! migration, the write lease — after the Redis Cluster specification and Redis 7.0's `cluster.c`. Nothing here does I/O or reads a clock: the server drives it over real sockets, tests drive
//! it over a simulated network ([`sim`], with the `sim` feature).
//!
//! # The state machine: [`ClusterNode`]
//! Construction: [`ClusterNode::new`] (a fresh node: random id, primary without slots) or
//! [`ClusterNode::from_nodes_file`] (restart from a parsed [`NodesFile`]). Both take a [`ClusterConfig`] (port,
//! bus port, `cluster-node-timeout`, the `cluster-announce-*` options, full coverage, replica migration and its
//! barrier, `cluster-replica-no-failover`, `cluster-replica-validity-factor`, `repl-ping-replica-period`) and a
//! seed for every random choice.
//!
//! Inputs, each returning the [`Effect`]s to carry out, in order:
//! - [`ClusterNode::on_tick`]`(now_ms)` about every 100 ms ([`state::TICK_INTERVAL_MS`]);
//! - [`ClusterNode::accept_link`]`(peer_ip, local_ip, now_ms) -> LinkId` for an accepted bus connection (no
//!   effects);
//! - [`ClusterNode::on_link_connected`]`(link, now_ms)` when a connection asked by [`Effect::Connect`] is up;
//! - [`ClusterNode::on_link_closed`]`(link, now_ms)` when any link dies or a connection attempt fails;
//! - [`ClusterNode::on_message`]`(link, msg, now_ms)` for each decoded bus message;
//! - [`ClusterNode::on_writes_paused`]`(offset, now_ms)` once writes paused by [`Effect::PauseWrites`] have
//!   stopped, with the replication offset they stopped at.
//!
//! Before every tick the driver also reports replication: [`ClusterNode::set_repl_offset`] (the offset reached;
//! replicas are ranked by it) and, on a replica, [`ClusterNode::set_repl_last_interaction`] (the last contact
//! with its primary; a replica whose data is too old does not fail over).
//!
//! Administration (the CLUSTER subcommands), returning `Result<_, ClusterError>` whose
//! [`ClusterError::wire_text`] is Redis's reply; collect effects with [`ClusterNode::take_effects`] afterwards:
//! `meet`, `add_slots`, `add_slot_ranges`, `del_slots`, `del_slot_ranges`, `flush_slots`, `set_slot`
//! ([`SetSlot`]), `bump_epoch`, `set_config_epoch`, `forget` (60 s ban), `replicate`, `reset` (soft/hard),
//! `count_failure_reports`, `failover` ([`FailoverMode`]: CLUSTER FAILOVER [FORCE|TAKEOVER]). Arguments only the server knows (is the keyspace empty? keys in a slot?) are
//! parameters.
//!
//! Effects: [`Effect::SaveConfig`] (first in its batch: write [`ClusterNode::nodes_conf_text`] atomically with
//! fsync before sending the rest), `Connect { link, ip, bus_port }`, `Send { link, msg }` (encode with
//! [`encode`]), `CloseLink { link }`, `ReplicateFrom { primary, ip, port }`, `BecomePrimary`,
//! `DeleteKeysInSlots(ranges)`, `PauseWrites { until_ms }` (then report [`ClusterNode::on_writes_paused`]),
//! `ResumeWrites`, `Log { level, text }`.
//!
//! Queries for replies and routing: [`ClusterNode::my_id`], `my_shard_id`, `myself`, `node`, `lookup`,
//! `nodes`, `slot_owner(slot)`, `migrating_to(slot)`, `importing_from(slot)`, `cluster_state_ok`,
//! `accepts_writes(now)` and `writes_allowed_until_ms(now)` (the write lease), `current_epoch`, `is_replica`,
//! `my_primary`, `failover_stats`; renderers `cluster_nodes_text`, `node_description`,
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
//! Failover (`state/failover.rs`, `state/lease.rs`) goes further than Redis in these ways, each to fail over
//! faster or to lose fewer writes:
//! - **Faster elections.** A replica asks for votes after 100 ms plus 200 ms per rank (Redis: 500 ms, up to
//!   500 ms at random, 1 s per rank). Ranks order siblings by replication offset, ties broken by node id.
//!   Elections for different failed primaries queue up by primary id instead of competing for one epoch; a
//!   collision that happens anyway is retried at once with a new epoch. A replica that sees a better-ranked
//!   sibling's request lets that election run.
//! - **Faster FAIL.** A primary that flags a node PFAIL tells the other primaries at once, and a node checks for
//!   FAIL as soon as it flags PFAIL itself (Redis waits for the next gossip).
//! - **Stricter voting.** A primary does not vote to replace a primary it has heard from within the node
//!   timeout, whatever the FAIL flag says. A primary stops writes when one of its replicas asks for votes.
//! - **Retries and the lockout.** The same replica may get a vote again in a later epoch (the two-node-timeout
//!   lockout concerns another replica of that primary).
//! - **Minority guard.** A replica not in contact with a majority of the primaries neither asks nor raises
//!   the epoch.
//! - **The write lease.** A primary accepts writes only while it has heard from a majority of the primaries
//!   within half the node timeout. After a lapse, writes resume a rejoin delay later. A promotion over a
//!   primary that is neither FAIL nor paused (FORCE, TAKEOVER) waits that delay too.

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
pub use state::{
    ClusterConfig, ClusterNode, Effect, FailoverMode, FailoverStats, LogLevel, SetSlot, ShardEntry, ShardNode,
    SlotsEntry, SlotsNode,
};
pub use table::NodeTable;
