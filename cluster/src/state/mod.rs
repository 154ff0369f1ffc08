//! [`ClusterNode`]: the cluster state machine of one node, after Redis Cluster (`cluster.c` in Redis 7.0).
//!
//! It does no I/O and reads no clock. The driver feeds it bus messages, link events and clock ticks, calls its
//! administration methods for the CLUSTER subcommands, and carries out the [`Effect`]s it returns: connect,
//! send, close, write `nodes.conf`, start or stop replicating, delete keys of lost slots, log.
//!
//! The work is cut as Redis cuts it:
//! - `gossip.rs`: PING / PONG / MEET processing, handshakes, the gossip section, FAIL and UPDATE messages;
//! - `failure.rs`: failure reports, PFAIL to FAIL, clearing FAIL;
//! - `epochs.rs`: slot ownership by config epoch, epoch collisions, becoming a replica;
//! - `cron.rs`: the periodic tick (reconnects, pings, timeouts, cluster state);
//! - `admin.rs`: the CLUSTER subcommands that change state;
//! - `report.rs`: CLUSTER NODES / INFO / SLOTS / SHARDS / LINKS / REPLICAS output;
//! - `failover.rs`: replica elections and votes, manual failover (`CLUSTER FAILOVER`), replica migration;
//! - `lease.rs`: the write lease, Shoal's bound on writes a primary cut off from the majority accepts.

mod admin;
mod cron;
mod epochs;
mod failover;
mod failure;
mod gossip;
mod lease;
mod report;

use std::collections::BTreeMap;
use std::net::IpAddr;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::link::{Link, LinkDirection, LinkId};
use crate::message::{Body, Header, Message, MessageKind, MFLAG_PAUSED};
use crate::node::{Epoch, NodeFlags, NodeId, NodeInfo, ShardId};
use crate::slot::Slot;
use crate::slots::SlotRanges;
use crate::table::NodeTable;

pub use admin::SetSlot;
pub use failover::{
    FailoverMode, FailoverStats, ELECTION_DELAY_MS, ELECTION_RANK_STEP_MS, MANUAL_FAILOVER_PAUSE_MULT,
    MANUAL_FAILOVER_TIMEOUT_MS, REPLICA_MIGRATION_DELAY_MS,
};
pub use report::{ShardEntry, ShardNode, SlotsEntry, SlotsNode};

/// Redis's default `cluster-node-timeout`, in ms.
pub const DEFAULT_NODE_TIMEOUT_MS: u64 = 15_000;
/// How far the bus port is from the client port unless `cluster-port` says otherwise.
pub const BUS_PORT_OFFSET: u16 = 10_000;
/// How long a forgotten node may not be re-added from gossip (`CLUSTER_BLACKLIST_TTL`), in ms.
pub const FORGET_BAN_MS: u64 = 60_000;
/// Failure reports older than this many node timeouts no longer count (`CLUSTER_FAIL_REPORT_VALIDITY_MULT`).
pub const FAIL_REPORT_VALIDITY_MULT: u64 = 2;
/// A primary that still serves slots has its FAIL flag cleared this many node timeouts after it was set, when it
/// is reachable again and nobody took its slots (`CLUSTER_FAIL_UNDO_TIME_MULT`).
pub const FAIL_UNDO_TIME_MULT: u64 = 2;
/// A freshly started primary reports the cluster down for this long, giving the cluster a chance to correct its
/// configuration before it accepts writes (`CLUSTER_WRITABLE_DELAY`), in ms.
pub const WRITABLE_DELAY_MS: u64 = 2_000;
/// Bounds of the delay before a primary that was in a minority partition reports the cluster up again
/// (`CLUSTER_MIN_REJOIN_DELAY`, `CLUSTER_MAX_REJOIN_DELAY`), in ms.
pub const MIN_REJOIN_DELAY_MS: u64 = 500;
pub const MAX_REJOIN_DELAY_MS: u64 = 5_000;
/// How often a handshake that got no answer is retried (MEET or PING again), in ms. Redis sends one MEET per
/// connection, which TCP delivers; retrying makes joining survive a lossy network too.
pub const HANDSHAKE_RETRY_MS: u64 = 500;
/// How often the tick pings the least recently answering of a few random nodes, in ms.
pub const RANDOM_PING_INTERVAL_MS: u64 = 1_000;
/// The recommended tick interval (Redis's `clusterCron` runs ten times a second), in ms.
pub const TICK_INTERVAL_MS: u64 = 100;
/// Redis's default `cluster-replica-validity-factor`.
pub const DEFAULT_REPLICA_VALIDITY_FACTOR: u64 = 10;
/// Redis's default `repl-ping-replica-period` (10 s), in ms: the base of the replica validity formula.
pub const DEFAULT_REPL_PING_REPLICA_PERIOD_MS: u64 = 10_000;
/// Redis's default `cluster-migration-barrier`.
pub const DEFAULT_MIGRATION_BARRIER: usize = 1;

/// The cluster options of `redis.conf` that the state machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The client port (`port`).
    pub port: u16,
    /// The bus port (`cluster-port`, default port + 10000).
    pub bus_port: u16,
    /// `cluster-node-timeout`, ms.
    pub node_timeout_ms: u64,
    /// `cluster-announce-ip`: the IP other nodes should use; otherwise they take the one our connections come
    /// from.
    pub announce_ip: Option<IpAddr>,
    /// `cluster-announce-port`.
    pub announce_port: Option<u16>,
    /// `cluster-announce-bus-port`.
    pub announce_bus_port: Option<u16>,
    /// `cluster-announce-hostname`.
    pub announce_hostname: Option<String>,
    /// `cluster-require-full-coverage`: the cluster is down while any slot is unserved.
    pub require_full_coverage: bool,
    /// `cluster-allow-replica-migration`: a primary that loses its last slot becomes a replica of the taker.
    pub allow_replica_migration: bool,
    /// `cluster-replica-no-failover`.
    pub replica_no_failover: bool,
    /// `cluster-replica-validity-factor`: a replica whose data is older than `repl_ping_replica_period_ms +
    /// node_timeout_ms * factor` (not counting the node timeout it took to flag its primary FAIL) does not try
    /// to fail over automatically; 0 lets any replica try.
    pub replica_validity_factor: u64,
    /// `repl-ping-replica-period`, in ms (the base of the validity formula above).
    pub repl_ping_replica_period_ms: u64,
    /// `cluster-migration-barrier`: a primary keeps at least this many working replicas before one of them
    /// migrates to an orphaned primary.
    pub migration_barrier: usize,
}

impl ClusterConfig {
    /// Redis's defaults for a node whose client port is `port`.
    pub fn new(port: u16) -> ClusterConfig {
        ClusterConfig {
            port,
            // The server refuses ports above 55535 without an explicit cluster-port, as Redis does.
            bus_port: port.saturating_add(BUS_PORT_OFFSET),
            node_timeout_ms: DEFAULT_NODE_TIMEOUT_MS,
            announce_ip: None,
            announce_port: None,
            announce_bus_port: None,
            announce_hostname: None,
            require_full_coverage: true,
            allow_replica_migration: true,
            replica_no_failover: false,
            replica_validity_factor: DEFAULT_REPLICA_VALIDITY_FACTOR,
            repl_ping_replica_period_ms: DEFAULT_REPL_PING_REPLICA_PERIOD_MS,
            migration_barrier: DEFAULT_MIGRATION_BARRIER,
        }
    }

    fn announced_port(&self) -> u16 {
        self.announce_port.unwrap_or(self.port)
    }

    fn announced_bus_port(&self) -> u16 {
        self.announce_bus_port.unwrap_or(self.bus_port)
    }
}

/// How important a log line is (Redis's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Verbose,
    Notice,
    Warning,
}

/// Something the driver must do. Effects come in the order they must be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write `nodes.conf` ([`ClusterNode::nodes_conf_text`]) atomically and durably. When present it comes
    /// first: the file must be on disk before anything else of the batch is sent (epochs, and later votes, must
    /// never be announced before they are persisted).
    SaveConfig,
    /// Open a bus connection to `ip:bus_port` for `link`, then report [`ClusterNode::on_link_connected`] or
    /// [`ClusterNode::on_link_closed`] (also when it times out, after at most the node timeout).
    Connect { link: LinkId, ip: IpAddr, bus_port: u16 },
    /// Encode and send `msg` on `link`.
    Send { link: LinkId, msg: Message },
    /// Close `link`; the state machine has already forgotten it.
    CloseLink { link: LinkId },
    /// Become (or stay, with a new address) a replica of `primary`, replicating from `ip:port`. (While the
    /// primary's address is unknown this comes later, once it is learned.)
    ReplicateFrom { primary: NodeId, ip: IpAddr, port: u16 },
    /// Stop replicating: this node is a primary now (it won an election, took over with CLUSTER FAILOVER
    /// TAKEOVER, or a replica was reset) and serves the slots of its former primary with the data it has; it
    /// starts a new replication history as Redis does on promotion. (CLUSTER RESET of a replica also empties the
    /// data, as the server decides.)
    BecomePrimary,
    /// Manual failover, primary side (a replica sent MFSTART): stop accepting writes until `until_ms` (this
    /// node's clock, unix ms) or [`Effect::ResumeWrites`], whichever comes first. Clients wait rather than
    /// fail, as under `CLIENT PAUSE WRITE`. Once no write is in flight any more, report the replication offset
    /// the writes stopped at with [`ClusterNode::on_writes_paused`]: the replica takes over once it has that
    /// offset, so no acknowledged write is lost.
    PauseWrites { until_ms: u64 },
    /// The pause of [`Effect::PauseWrites`] ends (the failover finished, timed out or was replaced): accept
    /// writes again (those for slots this node lost are redirected by the routing as usual).
    ResumeWrites,
    /// This node lost these slots to a newer configuration while staying a primary: delete their keys.
    DeleteKeysInSlots(SlotRanges),
    /// A line for the server log.
    Log { level: LogLevel, text: String },
}

/// One node's view of the cluster, and the rules that change it.
pub struct ClusterNode {
    pub(crate) config: ClusterConfig,
    pub(crate) myself: NodeId,
    pub(crate) table: NodeTable,
    pub(crate) current_epoch: Epoch,
    pub(crate) last_vote_epoch: Epoch,
    /// `cluster_state:ok`.
    pub(crate) state_ok: bool,
    /// Primaries serving at least one slot, as of the last state update (the FAIL quorum is half of it plus one).
    pub(crate) size: usize,
    pub(crate) links: BTreeMap<LinkId, Link>,
    pub(crate) next_link: u64,
    /// Forgotten nodes and when they may be re-added (unix ms).
    pub(crate) forgotten: BTreeMap<NodeId, u64>,
    pub(crate) rng: SmallRng,
    pub(crate) outbox: Vec<Effect>,
    pub(crate) save_pending: bool,
    pub(crate) update_state_pending: bool,
    pub(crate) messages_sent: [u64; MessageKind::COUNT],
    pub(crate) messages_received: [u64; MessageKind::COUNT],
    pub(crate) links_buffer_limit_exceeded: u64,
    /// PFAIL nodes seen by the last tick: every ping gossips about all of them.
    pub(crate) pfail_nodes: usize,
    pub(crate) last_random_ping_ms: u64,
    pub(crate) first_state_update_ms: Option<u64>,
    pub(crate) among_minority_ms: u64,
    /// Counts pings built, to keep a node out of one gossip section twice.
    pub(crate) pings_built: u64,
    pub(crate) my_repl_offset: u64,
    /// When this replica last heard from its primary on the replication link (Redis's `lastinteraction`, or
    /// `repl_down_since` while the link is down), unix ms; 0 = never (its data is as old as can be).
    pub(crate) repl_last_interaction_ms: u64,
    /// The replica's current or last election.
    pub(crate) election: failover::Election,
    /// A manual failover in progress (either side).
    pub(crate) manual: failover::ManualFailover,
    /// Run the failover logic before the batch is handed out (a FAIL, a vote or a manual-failover step
    /// arrived): Redis's `CLUSTER_TODO_HANDLE_FAILOVER`.
    pub(crate) failover_pending: bool,
    pub(crate) failover_stats: FailoverStats,
    /// The write lease (`lease.rs`): until when this primary may accept writes, as last computed.
    pub(crate) write_lease_until_ms: u64,
    /// Whether this node served slots as a primary when the lease was last computed.
    pub(crate) write_lease_holder: bool,
    /// The last moment this primary was seen without a lease (0: never); writes resume only a rejoin delay
    /// after it.
    pub(crate) write_fenced_ms: u64,
    /// The time of the latest input.
    pub(crate) now_ms: u64,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("myself", &self.myself)
            .field("current_epoch", &self.current_epoch)
            .field("nodes", &self.table.len())
            .field("state_ok", &self.state_ok)
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// A node that has never been part of a cluster: a fresh random id, a primary without slots, knowing only
    /// itself. `seed` drives every random choice (ids, gossip samples, ping targets): the server passes OS
    /// entropy, the simulator a seed it can replay. The first batch of effects saves `nodes.conf`.
    pub fn new(config: ClusterConfig, seed: u64, now_ms: u64) -> ClusterNode {
        let mut rng = SmallRng::seed_from_u64(seed);
        let id = NodeId::random(&mut rng);
        let shard = ShardId::random(&mut rng);
        let mut node = ClusterNode::empty(config, id, rng, now_ms);
        node.table
            .insert(NodeInfo::new(id, NodeFlags::MYSELF | NodeFlags::PRIMARY, shard, now_ms));
        node.apply_own_address();
        node.save();
        node
    }

    pub(crate) fn empty(config: ClusterConfig, myself: NodeId, rng: SmallRng, now_ms: u64) -> ClusterNode {
        ClusterNode {
            config,
            myself,
            table: NodeTable::new(),
            current_epoch: Epoch::ZERO,
            last_vote_epoch: Epoch::ZERO,
            state_ok: false,
            // As Redis: 1 until the first state update counts the primaries (CLUSTER INFO of a fresh node).
            size: 1,
            links: BTreeMap::new(),
            next_link: 1,
            forgotten: BTreeMap::new(),
            rng,
            outbox: Vec::new(),
            save_pending: false,
            update_state_pending: false,
            messages_sent: [0; MessageKind::COUNT],
            messages_received: [0; MessageKind::COUNT],
            links_buffer_limit_exceeded: 0,
            pfail_nodes: 0,
            last_random_ping_ms: 0,
            first_state_update_ms: None,
            among_minority_ms: 0,
            pings_built: 0,
            my_repl_offset: 0,
            repl_last_interaction_ms: 0,
            election: failover::Election::default(),
            manual: failover::ManualFailover::default(),
            failover_pending: false,
            failover_stats: FailoverStats::default(),
            write_lease_until_ms: 0,
            write_lease_holder: false,
            write_fenced_ms: 0,
            now_ms,
        }
    }

    /// Applies the configured announce options to our own entry: they win over what was learned or saved.
    pub(crate) fn apply_own_address(&mut self) {
        let (port, bus_port) = (self.config.announced_port(), self.config.announced_bus_port());
        let (ip, hostname, nofailover) = (
            self.config.announce_ip,
            self.config.announce_hostname.clone(),
            self.config.replica_no_failover,
        );
        let me = self.me_mut();
        me.port = port;
        me.bus_port = bus_port;
        if let Some(ip) = ip {
            me.ip = Some(ip);
        }
        me.hostname = hostname;
        me.flags.set(NodeFlags::NOFAILOVER, nofailover);
    }

    /// The options CONFIG SET may change while the node runs (`cluster-require-full-coverage`,
    /// `cluster-allow-replica-migration`, `cluster-replica-no-failover`); the cluster state follows from the next
    /// tick, the nofailover flag from the next message.
    pub fn set_runtime_options(
        &mut self,
        require_full_coverage: bool,
        allow_replica_migration: bool,
        no_failover: bool,
    ) {
        self.config.require_full_coverage = require_full_coverage;
        self.config.allow_replica_migration = allow_replica_migration;
        self.config.replica_no_failover = no_failover;
        self.me_mut().flags.set(NodeFlags::NOFAILOVER, no_failover);
    }

    // ------------------------------------------------------------------------------------------------------
    // Queries
    // ------------------------------------------------------------------------------------------------------

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// This node's id (`CLUSTER MYID`).
    pub fn my_id(&self) -> NodeId {
        self.myself
    }

    /// This node's entry.
    pub fn myself(&self) -> &NodeInfo {
        self.me()
    }

    /// This node's shard (`CLUSTER MYSHARDID`).
    pub fn my_shard_id(&self) -> ShardId {
        self.me().shard_id
    }

    /// A known node by id.
    pub fn node(&self, id: &NodeId) -> Option<&NodeInfo> {
        self.table.get(id)
    }

    /// A known node by the id text a client gave (`None` for unknown ids and for text that is no id).
    pub fn lookup(&self, id: &str) -> Option<&NodeInfo> {
        NodeId::parse(id).and_then(|id| self.table.get(&id))
    }

    /// Every known node, this one and handshakes in progress included (in order of arrival).
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.table.iter()
    }

    pub fn node_table(&self) -> &NodeTable {
        &self.table
    }

    /// The node serving `slot`, if any.
    pub fn slot_owner(&self, slot: Slot) -> Option<&NodeInfo> {
        self.table.slot_owner(slot).and_then(|id| self.table.get(&id))
    }

    /// Where this node is migrating `slot` to, if it is (`-ASK` for missing keys).
    pub fn migrating_to(&self, slot: Slot) -> Option<&NodeInfo> {
        self.table
            .slot_map()
            .migrating_to(slot)
            .and_then(|id| self.table.get(&id))
    }

    /// Where this node is importing `slot` from, if it is (`ASKING` is honoured).
    pub fn importing_from(&self, slot: Slot) -> Option<&NodeInfo> {
        self.table
            .slot_map()
            .importing_from(slot)
            .and_then(|id| self.table.get(&id))
    }

    /// `cluster_state:ok`: with `cluster-require-full-coverage`, every slot served by a node not flagged FAIL;
    /// and this node sees a majority of the slot-serving primaries. Reads and writes both need it; writes also
    /// need the write lease ([`Self::accepts_writes`]).
    pub fn cluster_state_ok(&self) -> bool {
        self.state_ok
    }

    pub fn current_epoch(&self) -> Epoch {
        self.current_epoch
    }

    /// The epoch of the last vote this node gave (persisted for elections).
    pub fn last_vote_epoch(&self) -> Epoch {
        self.last_vote_epoch
    }

    /// Whether this node is a replica.
    pub fn is_replica(&self) -> bool {
        self.me().is_replica()
    }

    /// The primary this node replicates, if it is a replica and knows it.
    pub fn my_primary(&self) -> Option<&NodeInfo> {
        self.me().primary.and_then(|id| self.table.get(&id))
    }

    /// Messages sent per kind, indexed by [`MessageKind`].
    pub fn messages_sent(&self) -> &[u64; MessageKind::COUNT] {
        &self.messages_sent
    }

    /// Messages received per kind, indexed by [`MessageKind`].
    pub fn messages_received(&self) -> &[u64; MessageKind::COUNT] {
        &self.messages_received
    }

    /// Whether `link` is connected to a known node (for the driver's logs).
    pub fn link_node(&self, link: LinkId) -> Option<NodeId> {
        self.links.get(&link).and_then(|l| l.node)
    }

    // ------------------------------------------------------------------------------------------------------
    // Inputs from the driver
    // ------------------------------------------------------------------------------------------------------

    /// The replication offset this node has reached: a primary's `master_repl_offset`, a replica's processed
    /// offset. Announced in every header (replicas are ranked by it in elections, a manual failover waits for
    /// it) and shown by CLUSTER SHARDS. Call it before every tick, and whenever it changes during a manual
    /// failover.
    pub fn set_repl_offset(&mut self, offset: u64) {
        self.my_repl_offset = offset;
    }

    /// A replica's last contact with its primary on the replication link, unix ms: the last time data or a
    /// ping came from the primary while the link is up, the time it went down while it is down (Redis's
    /// `master->lastinteraction` and `repl_down_since`). A replica that never synced leaves it at 0 and never
    /// fails over automatically (its data is too old, per `cluster-replica-validity-factor`). Call it before
    /// every tick.
    pub fn set_repl_last_interaction(&mut self, at_ms: u64) {
        self.repl_last_interaction_ms = at_ms;
    }

    /// Counts a link the driver closed because its send buffer went over the limit (CLUSTER INFO's
    /// `total_cluster_links_buffer_limit_exceeded`); report the close with [`Self::on_link_closed`] too.
    pub fn note_link_buffer_limit_exceeded(&mut self) {
        self.links_buffer_limit_exceeded += 1;
    }

    /// The driver accepted a bus connection from `peer_ip` on our local address `local_ip`. Returns the link's
    /// id for later events.
    pub fn accept_link(&mut self, peer_ip: IpAddr, local_ip: IpAddr, now_ms: u64) -> LinkId {
        self.now_ms = now_ms;
        let id = self.new_link_id();
        self.links.insert(
            id,
            Link {
                direction: LinkDirection::Inbound,
                node: None,
                // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; it is the IPv4 address.
                peer_ip: peer_ip.to_canonical(),
                local_ip: Some(local_ip.to_canonical()),
                created_ms: now_ms,
                established: true,
            },
        );
        id
    }

    /// An outbound connection asked for by [`Effect::Connect`] is established: the first PING (or MEET) goes
    /// out at once, which matters to failure detection.
    pub fn on_link_connected(&mut self, link: LinkId, now_ms: u64) -> Vec<Effect> {
        self.now_ms = now_ms;
        let node_id = match self.links.get_mut(&link) {
            Some(l) if l.direction == LinkDirection::Outbound => {
                l.established = true;
                l.node
            }
            _ => None,
        };
        if let Some(node) = node_id.and_then(|id| self.table.get(&id)) {
            let (id, old_ping_sent) = (node.id, node.ping_sent_ms);
            // A MEET instead when the node is flagged MEET (see `send_ping`).
            self.send_ping(link, MessageKind::Ping);
            if let Some(node) = self.table.get_mut(&id) {
                // "If there was an active ping before the link was disconnected, we want to restore the ping
                // time, otherwise replaced by the clusterSendPing() call."
                if old_ping_sent != 0 {
                    node.ping_sent_ms = old_ping_sent;
                }
            }
        }
        self.finish()
    }

    /// A link is gone: closed by the peer, failed, or a connection attempt that did not succeed.
    pub fn on_link_closed(&mut self, link: LinkId, now_ms: u64) -> Vec<Effect> {
        self.now_ms = now_ms;
        self.forget_link(link);
        self.finish()
    }

    // ------------------------------------------------------------------------------------------------------
    // Internals shared by the parts
    // ------------------------------------------------------------------------------------------------------

    fn me(&self) -> &NodeInfo {
        // Invariant: our own entry is never removed (FORGET refuses it, RESET keeps it, renames move it).
        self.table
            .get(&self.myself)
            .expect("the node table always holds myself")
    }

    fn me_mut(&mut self) -> &mut NodeInfo {
        let id = self.myself;
        self.table.get_mut(&id).expect("the node table always holds myself")
    }

    fn new_link_id(&mut self) -> LinkId {
        let id = LinkId(self.next_link);
        self.next_link += 1;
        id
    }

    pub(crate) fn emit(&mut self, effect: Effect) {
        self.outbox.push(effect);
    }

    fn log(&mut self, level: LogLevel, text: String) {
        self.emit(Effect::Log { level, text });
    }

    /// Marks the configuration for saving; one SaveConfig heads the next batch of effects.
    fn save(&mut self) {
        self.save_pending = true;
    }

    /// Asks for a cluster state update before the batch is handed out.
    fn update_state_later(&mut self) {
        self.update_state_pending = true;
    }

    /// Ends an input: runs the pending failover step and state update, and hands out the effects.
    fn finish(&mut self) -> Vec<Effect> {
        if std::mem::take(&mut self.failover_pending) {
            self.handle_manual_failover();
            self.handle_replica_failover(self.now_ms);
        }
        if self.update_state_pending {
            self.update_state_pending = false;
            self.update_state(self.now_ms);
        }
        self.take_effects()
    }

    /// The effects produced since the last call, in order, SaveConfig first when the configuration changed.
    /// Inputs return their effects; call this after the administration methods.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        if self.update_state_pending {
            self.update_state_pending = false;
            self.update_state(self.now_ms);
        }
        let mut out = Vec::with_capacity(self.outbox.len() + 1);
        if std::mem::take(&mut self.save_pending) {
            out.push(Effect::SaveConfig);
        }
        out.append(&mut self.outbox);
        out
    }

    /// Drops a link from our records and from its node (the driver closed it, or we are about to).
    fn forget_link(&mut self, link: LinkId) {
        let Some(record) = self.links.remove(&link) else {
            return;
        };
        if let Some(node) = record.node.and_then(|id| self.table.get_mut(&id)) {
            if node.link == Some(link) {
                node.link = None;
            }
            if node.inbound_link == Some(link) {
                node.inbound_link = None;
            }
        }
    }

    /// Closes a link ourselves.
    fn close_link(&mut self, link: LinkId) {
        if self.links.contains_key(&link) {
            self.forget_link(link);
            self.emit(Effect::CloseLink { link });
        }
    }

    fn link_established(&self, link: Option<LinkId>) -> bool {
        link.and_then(|l| self.links.get(&l)).is_some_and(|l| l.established)
    }

    /// Our header, as every message carries it. A replica announces its primary's slots and config epoch; a
    /// primary paused for a manual failover flags it ([`MFLAG_PAUSED`]) with the offset its writes stopped at.
    fn build_header(&self) -> Header {
        let paused_offset = self.manual.paused_offset.filter(|_| self.me().is_primary());
        let me = self.me();
        let primary = if me.is_replica() {
            me.primary.and_then(|id| self.table.get(&id))
        } else {
            None
        };
        let source = primary.unwrap_or(me);
        Header {
            sender: me.id,
            current_epoch: self.current_epoch,
            config_epoch: source.config_epoch,
            flags: me.flags,
            primary: me.primary,
            slots: source.slots.clone(),
            ip: self.config.announce_ip,
            port: me.port,
            bus_port: me.bus_port,
            hostname: me.hostname.clone(),
            shard_id: me.shard_id,
            repl_offset: paused_offset.unwrap_or(self.my_repl_offset),
            cluster_ok: self.state_ok,
            mflags: if paused_offset.is_some() { MFLAG_PAUSED } else { 0 },
        }
    }

    /// Sends on an established link, counting the message; links still connecting are skipped (their node gets
    /// its ping when the connection is up).
    fn send(&mut self, link: LinkId, body: Body) {
        self.send_flagged(link, body, 0);
    }

    /// As [`Self::send`], with message flags added to the header's.
    fn send_flagged(&mut self, link: LinkId, body: Body, mflags: u8) {
        if !self.link_established(Some(link)) {
            return;
        }
        let mut header = self.build_header();
        header.mflags |= mflags;
        let msg = Message { header, body };
        if let Some(count) = self.messages_sent.get_mut(msg.kind() as usize) {
            *count += 1;
        }
        self.emit(Effect::Send { link, msg });
    }

    /// Sends to every node we have a link to, except handshakes (`clusterBroadcastMessage`).
    fn broadcast(&mut self, body: Body) {
        self.broadcast_flagged(body, 0);
    }

    /// The links a broadcast goes to: every node's but our own and those in handshake.
    pub(super) fn broadcast_links(&self) -> Vec<LinkId> {
        self.table
            .iter()
            .filter(|n| !n.flags.intersects(NodeFlags::MYSELF | NodeFlags::HANDSHAKE))
            .filter_map(|n| n.link)
            .collect()
    }

    /// As [`Self::broadcast`], with message flags added to the header's.
    fn broadcast_flagged(&mut self, body: Body, mflags: u8) {
        for link in self.broadcast_links() {
            self.send_flagged(link, body.clone(), mflags);
        }
    }

    /// Removes a node and closes its links (`clusterDelNode`).
    fn delete_node(&mut self, id: NodeId) {
        if id == self.myself {
            return;
        }
        let links = self.table.get(&id).map(|n| (n.link, n.inbound_link));
        if let Some((out, inb)) = links {
            for link in [out, inb].into_iter().flatten() {
                self.close_link(link);
            }
        }
        self.table.remove(id);
    }

    fn is_forgotten(&mut self, id: &NodeId, now_ms: u64) -> bool {
        self.forgotten.retain(|_, until| *until >= now_ms);
        self.forgotten.contains_key(id)
    }
}

#[cfg(test)]
mod tests;
