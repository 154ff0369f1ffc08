//! Replication, primary to replica, in Redis's model: a replica connects to its primary, asks with PSYNC to
//! continue from where it was, and either continues from the primary's backlog or receives a full copy of the
//! data followed by the live stream of changes. Replicas are read-only, expire nothing themselves (the
//! primary's DELs remove expired keys), acknowledge what they applied every second and after every burst, and
//! keep a backlog of their own, so their replicas — and, once one of them is promoted, its former siblings —
//! continue from them.
//!
//! * [`backlog`] — the stream, its offsets and replication ids, the blocks kept for reconnecting replicas.
//! * [`primary`] — serving a replica: PSYNC, the full sync (a snapshot streamed shard by shard while writes go
//!   on), then the stream; the replica's acknowledgements.
//! * [`replica`] — following a primary: connecting, the handshake, applying the snapshot and the stream.
//! * this file — the node's role and the switches between roles (REPLICAOF, promotion, the cluster's
//!   effects), the replicas' acknowledgements behind WAIT and `min-replicas-to-ack`, INFO and ROLE.
//!
//! What the stream carries is not the commands clients sent but their effects (`keyspace/feed.rs`), which a
//! replica may apply twice without harm; that is what lets a full sync copy a live keyspace without stopping it
//! and without a second copy of the data.

pub mod backlog;
pub mod primary;
pub mod replica;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::client::ClientHandle;
use crate::config::Config;
use crate::error::{self, CmdError};
use crate::keyspace::access::unix_ms;
use crate::server::Server;
use backlog::Backlog;

/// `write_gate` bit: this node is a read-only replica.
const GATE_READONLY: u8 = 1;
/// `write_gate` bit: `min-replicas-to-write` is set on a primary.
const GATE_MIN_REPLICAS: u8 = 2;

/// How often WAIT and acknowledged writes look at whether their client was killed or the server is stopping.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// This node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// Where a replica's link to its primary stands (Redis's `repl_state`, as ROLE names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting to (re)connect.
    Connect,
    /// The TCP connection is being made.
    Connecting,
    /// PING, REPLCONF and PSYNC are being exchanged.
    Handshake,
    /// A full sync is being received.
    Transfer,
    /// Streaming.
    Connected,
}

impl LinkState {
    /// The state ROLE reports.
    pub fn role_name(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Transfer => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// Where a replica served by this node stands (INFO's `state=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplicaState {
    /// The full sync is about to start.
    WaitBgsave = 0,
    /// The snapshot is being sent.
    SendBulk = 1,
    /// Streaming.
    Online = 2,
}

impl ReplicaState {
    fn name(self) -> &'static str {
        match self {
            ReplicaState::WaitBgsave => "wait_bgsave",
            ReplicaState::SendBulk => "send_bulk",
            ReplicaState::Online => "online",
        }
    }

    fn from_u8(v: u8) -> ReplicaState {
        match v {
            0 => ReplicaState::WaitBgsave,
            1 => ReplicaState::SendBulk,
            _ => ReplicaState::Online,
        }
    }
}

/// A replica this node serves.
pub struct ReplicaLink {
    pub handle: Arc<ClientHandle>,
    /// The address the replica listens on, as it announced it (`REPLCONF listening-port`, `ip-address`).
    pub ip: String,
    pub port: u16,
    state: AtomicU8,
    /// The offset the replica last acknowledged.
    ack: AtomicU64,
    /// When it last acknowledged (unix ms).
    last_ack_ms: AtomicI64,
}

impl ReplicaLink {
    pub fn state(&self) -> ReplicaState {
        ReplicaState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: ReplicaState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    pub fn ack_offset(&self) -> u64 {
        self.ack.load(Ordering::Relaxed)
    }

    /// Seconds since the last acknowledgement.
    pub fn lag_secs(&self, now_ms: i64) -> i64 {
        (now_ms - self.last_ack_ms.load(Ordering::Relaxed)).max(0) / 1000
    }
}

/// Counters for INFO stats.
#[derive(Default)]
pub struct ReplStats {
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// Bytes sent to replicas (`total_net_repl_output_bytes`).
    pub output_bytes: AtomicU64,
    /// Bytes received from the primary (`total_net_repl_input_bytes`).
    pub input_bytes: AtomicU64,
}

/// The replica side's state, changed by the link task and by role switches.
struct Follow {
    host: String,
    port: u16,
    link: LinkState,
    /// When the link went down (unix ms); 0 while it is up.
    down_since_ms: i64,
    /// The link's client (CLIENT LIST flags=M), while connected.
    client: Option<Arc<ClientHandle>>,
    /// A full sync: when it started and the bytes received so far.
    sync_started: Option<Instant>,
    sync_bytes: u64,
}

/// The replication state of the node.
pub struct Replication {
    pub backlog: Arc<Backlog>,
    role: AtomicBool,
    /// Nonzero when writes from clients need a closer look (see `GATE_*`): one load on the write path.
    write_gate: AtomicU8,
    follow: Mutex<Option<Follow>>,
    links: Mutex<Vec<Arc<ReplicaLink>>>,
    /// Bumped by every acknowledgement, to wake WAIT.
    acks: watch::Sender<u64>,
    pub stats: ReplStats,
    /// Held while the stream of the primary is applied and while the role changes, so a promotion never
    /// interleaves with a half-applied batch.
    apply_lock: Mutex<()>,
    /// Bumped by every role switch: a replica link task of an older generation stops.
    generation: AtomicU64,
    /// When the replica last heard from its primary (unix ms).
    last_io_ms: AtomicI64,
    /// Replicas online with a recent acknowledgement (`min-replicas-max-lag`), for `min-replicas-to-write`.
    good_replicas: AtomicUsize,
    min_replicas_to_write: AtomicUsize,
    min_replicas_max_lag: AtomicU64,
    /// Whether the full sync in progress is the first of this replica's life, and whether it has synced since
    /// it became a replica (the cluster shows a replica only once it has).
    synced: AtomicBool,
    /// Since when (unix ms) this replica has been trying to take over from a primary that came back empty
    /// (`replica.rs`), or 0.
    empty_primary_since_ms: AtomicI64,
    /// Whether this replica has synced with the primary it follows now (reset whenever it follows another
    /// node): only then is a new, shorter history from that primary proof that it restarted empty.
    synced_with_current: AtomicBool,
}

impl Replication {
    pub fn new(config: &Config) -> Replication {
        let (acks, _) = watch::channel(0u64);
        let r = Replication {
            backlog: Arc::new(Backlog::new(
                config.repl_backlog_size,
                config.client_output_buffer_limit.replica.hard_bytes,
            )),
            role: AtomicBool::new(false),
            write_gate: AtomicU8::new(0),
            follow: Mutex::new(None),
            links: Mutex::new(Vec::new()),
            acks,
            stats: ReplStats::default(),
            apply_lock: Mutex::new(()),
            generation: AtomicU64::new(0),
            last_io_ms: AtomicI64::new(0),
            good_replicas: AtomicUsize::new(0),
            min_replicas_to_write: AtomicUsize::new(0),
            min_replicas_max_lag: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            empty_primary_since_ms: AtomicI64::new(0),
            synced_with_current: AtomicBool::new(false),
        };
        r.refresh_config(config);
        r
    }

    /// Takes in the options replication reads (at start and after CONFIG SET).
    pub fn refresh_config(&self, config: &Config) {
        self.backlog.configure(
            config.repl_backlog_size,
            config.client_output_buffer_limit.replica.hard_bytes,
        );
        self.min_replicas_to_write
            .store(config.min_replicas_to_write as usize, Ordering::Relaxed);
        self.min_replicas_max_lag
            .store(u64::from(config.min_replicas_max_lag), Ordering::Relaxed);
        self.update_gate(config.replica_read_only);
    }

    fn update_gate(&self, replica_read_only: bool) {
        let mut gate = 0;
        if self.is_replica() && replica_read_only {
            gate |= GATE_READONLY;
        }
        if !self.is_replica()
            && self.min_replicas_to_write.load(Ordering::Relaxed) > 0
            && self.min_replicas_max_lag.load(Ordering::Relaxed) > 0
        {
            gate |= GATE_MIN_REPLICAS;
        }
        self.write_gate.store(gate, Ordering::Relaxed);
    }

    #[inline]
    pub fn is_replica(&self) -> bool {
        self.role.load(Ordering::Relaxed)
    }

    pub fn role(&self) -> Role {
        if self.is_replica() {
            Role::Replica
        } else {
            Role::Primary
        }
    }

    /// Starts the replication stream of a primary if it has none yet: the backlog (a new history) and the change
    /// feed, which records every change from now on. Done when the first replica attaches, or when
    /// `min-replicas-to-ack` asks for acknowledged writes.
    pub fn start_stream(&self, srv: &Server) {
        if self.is_replica() {
            return;
        }
        if self.backlog.activate_as_primary() {
            tracing::info!("replication backlog created");
        }
        srv.keyspace.feed().set_active(true);
    }

    /// The write path's check, in Redis's order (after the memory check): `min-replicas-to-write`, then a
    /// read-only replica. One relaxed load when neither applies.
    #[inline]
    pub fn check_write(&self) -> Result<(), CmdError> {
        let gate = self.write_gate.load(Ordering::Relaxed);
        if gate == 0 {
            return Ok(());
        }
        self.check_write_slow(gate)
    }

    #[cold]
    fn check_write_slow(&self, gate: u8) -> Result<(), CmdError> {
        if gate & GATE_MIN_REPLICAS != 0
            && self.good_replicas.load(Ordering::Relaxed) < self.min_replicas_to_write.load(Ordering::Relaxed)
        {
            return Err(CmdError::Static(error::NOREPLICAS));
        }
        if gate & GATE_READONLY != 0 {
            return Err(CmdError::Static(error::READONLY));
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------------------------
    // Role switches
    // ------------------------------------------------------------------------------------------------------

    /// REPLICAOF host port (or the cluster's `ReplicateFrom`): follow `host:port`. False when already following
    /// it. Data is kept until the primary says a full sync is needed; this node's own history (its replication
    /// id and offset) is what it asks to continue, so a former primary can continue from its promoted replica.
    pub fn become_replica(&self, srv: &Server, host: &str, port: u16) -> bool {
        let _apply = self.apply_lock.lock();
        {
            let mut follow = self.follow.lock();
            if let Some(f) = follow.as_ref() {
                if self.is_replica() && f.host.eq_ignore_ascii_case(host) && f.port == port {
                    return false;
                }
                if let Some(c) = &f.client {
                    c.request_kill();
                }
            }
            self.synced_with_current.store(false, Ordering::Relaxed);
            self.clear_empty_primary();
            *follow = Some(Follow {
                host: host.to_owned(),
                port,
                link: LinkState::Connect,
                down_since_ms: 0,
                client: None,
                sync_started: None,
                sync_bytes: 0,
            });
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let was_replica = self.role.swap(true, Ordering::SeqCst);
        // Writes are refused first, then the feed stops: a write already past the gate is still recorded.
        self.update_gate(srv.config.read().replica_read_only);
        // Changes arrive from the primary from now on; this node records none of its own.
        srv.keyspace.feed().set_active(false);
        if !was_replica {
            for db in srv.keyspace.iter() {
                db.set_lazy_expire_deletes(false);
            }
            self.synced.store(false, Ordering::Relaxed);
        }
        // Writers blocked in WAIT for acknowledgements from replicas see the role change on their next poll.
        self.acks.send_modify(|v| *v += 1);
        if let Some(srv) = srv.shared() {
            replica::spawn(srv, host.to_owned(), port, generation);
        }
        tracing::info!("connecting to primary {host}:{port}");
        true
    }

    /// REPLICAOF NO ONE (or the cluster's `BecomePrimary`): stop following and accept writes. The history goes
    /// on under a new replication id; the old one stays valid up to the current offset, so the replicas of the
    /// former primary continue from this node with a partial resync (Redis's `shiftReplicationId`). Its own
    /// replicas are disconnected so they learn the new id, and continue the same way. False when already a
    /// primary.
    pub fn promote(&self, srv: &Server) -> bool {
        let _apply = self.apply_lock.lock();
        if !self.is_replica() {
            return false;
        }
        self.clear_empty_primary();
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.follow.lock().take() {
            if let Some(c) = f.client {
                c.request_kill();
            }
        }
        let new_id = self.backlog.shift_replid(None);
        self.backlog.drop_readers();
        self.role.store(false, Ordering::SeqCst);
        for db in srv.keyspace.iter() {
            db.set_lazy_expire_deletes(true);
        }
        srv.keyspace.feed().set_active(true);
        self.update_gate(srv.config.read().replica_read_only);
        tracing::info!("promoted to primary; new replication id {new_id}");
        true
    }

    /// A replica link of this node's own generation is still wanted.
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) == generation
    }

    pub(crate) fn lock_apply(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.apply_lock.lock()
    }

    /// Updates the replica link's state (only for the generation that owns it).
    pub(crate) fn set_link(&self, generation: u64, state: LinkState, client: Option<Arc<ClientHandle>>) {
        if !self.is_current(generation) {
            return;
        }
        let mut follow = self.follow.lock();
        let Some(f) = follow.as_mut() else { return };
        let was_up = f.link == LinkState::Connected;
        f.link = state;
        match state {
            LinkState::Connected => {
                f.down_since_ms = 0;
                f.sync_started = None;
            }
            LinkState::Transfer => {
                f.sync_started = Some(Instant::now());
                f.sync_bytes = 0;
            }
            // Redis counts the link as down since it was lost; before the first connection it shows -1.
            _ if was_up => f.down_since_ms = unix_ms(),
            _ => {}
        }
        if client.is_some() || matches!(state, LinkState::Connect) {
            f.client = client;
        }
    }

    pub(crate) fn note_sync_bytes(&self, n: u64) {
        if let Some(f) = self.follow.lock().as_mut() {
            f.sync_bytes += n;
        }
    }

    pub(crate) fn note_io(&self) {
        self.last_io_ms.store(unix_ms(), Ordering::Relaxed);
    }

    pub(crate) fn last_io_ms(&self) -> i64 {
        self.last_io_ms.load(Ordering::Relaxed)
    }

    /// Notes that the primary came back empty at `now_ms`; returns since when that has been seen.
    pub(crate) fn note_empty_primary(&self, now_ms: i64) -> i64 {
        match self
            .empty_primary_since_ms
            .compare_exchange(0, now_ms, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => now_ms,
            Err(since) => since,
        }
    }

    pub(crate) fn clear_empty_primary(&self) {
        self.empty_primary_since_ms.store(0, Ordering::Relaxed);
    }

    pub(crate) fn note_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
        self.synced_with_current.store(true, Ordering::Relaxed);
    }

    /// Whether this replica has synced with the primary it follows now.
    pub(crate) fn synced_with_current(&self) -> bool {
        self.synced_with_current.load(Ordering::Relaxed)
    }

    /// The primary this node follows.
    pub fn primary_addr(&self) -> Option<(String, u16)> {
        self.follow.lock().as_ref().map(|f| (f.host.clone(), f.port))
    }

    pub fn link_state(&self) -> Option<LinkState> {
        self.follow.lock().as_ref().map(|f| f.link)
    }

    // ------------------------------------------------------------------------------------------------------
    // Replicas of this node
    // ------------------------------------------------------------------------------------------------------

    pub(crate) fn add_link(&self, link: Arc<ReplicaLink>) {
        self.links.lock().push(link);
        self.refresh_good_replicas();
    }

    pub(crate) fn remove_link(&self, id: u64) {
        self.links.lock().retain(|l| l.handle.id != id);
        self.refresh_good_replicas();
        self.acks.send_modify(|v| *v += 1);
    }

    pub fn links(&self) -> Vec<Arc<ReplicaLink>> {
        self.links.lock().clone()
    }

    pub(crate) fn new_link(handle: Arc<ClientHandle>, ip: String, port: u16, state: ReplicaState) -> ReplicaLink {
        ReplicaLink {
            handle,
            ip,
            port,
            state: AtomicU8::new(state as u8),
            ack: AtomicU64::new(0),
            last_ack_ms: AtomicI64::new(unix_ms()),
        }
    }

    /// A replica acknowledged `offset`.
    pub(crate) fn ack(&self, link: &ReplicaLink, offset: u64) {
        link.ack.fetch_max(offset, Ordering::Relaxed);
        link.last_ack_ms.store(unix_ms(), Ordering::Relaxed);
        self.acks.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Online replicas that acknowledged `offset` or more.
    pub fn count_acked(&self, offset: u64) -> usize {
        if self.is_replica() {
            return 0;
        }
        self.links
            .lock()
            .iter()
            .filter(|l| l.state() == ReplicaState::Online && l.ack_offset() >= offset)
            .count()
    }

    /// Waits until `want` replicas acknowledged `offset`, or `timeout` passes (`None`: no limit), or the
    /// client is killed or the server stops. Returns how many did.
    pub async fn wait_for_acks(
        &self,
        srv: &Server,
        client: &ClientHandle,
        want: usize,
        offset: u64,
        timeout: Option<Duration>,
    ) -> usize {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut rx = self.acks.subscribe();
        loop {
            let got = self.count_acked(offset);
            if got >= want || client.killed.load(Ordering::Relaxed) || srv.is_shutting_down() {
                return got;
            }
            let poll = tokio::time::Instant::now() + WAIT_POLL;
            let until = deadline.map_or(poll, |d| d.min(poll));
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return self.count_acked(offset);
                    }
                }
                _ = tokio::time::sleep_until(until) => {
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return self.count_acked(offset);
                    }
                }
            }
        }
    }

    /// Asks every replica to acknowledge at once (`REPLCONF GETACK *` in the stream), when WAIT starts.
    pub fn request_acks(&self, srv: &Server) {
        if !self.is_replica() && srv.keyspace.feed().active() && !self.links.lock().is_empty() {
            self.backlog.append_command(&[b"REPLCONF", b"GETACK", b"*"]);
        }
    }

    /// A PING in the stream (every `repl-ping-replica-period`), so replicas see their primary alive.
    pub fn ping_replicas(&self, srv: &Server) {
        if !self.is_replica() && srv.keyspace.feed().active() && !self.links.lock().is_empty() {
            self.backlog.append_command(&[b"PING"]);
        }
    }

    /// Recounts the replicas that count for `min-replicas-to-write`: online, acknowledged within
    /// `min-replicas-max-lag` seconds.
    pub fn refresh_good_replicas(&self) {
        let max_lag = self.min_replicas_max_lag.load(Ordering::Relaxed) as i64;
        let now = unix_ms();
        let good = self
            .links
            .lock()
            .iter()
            .filter(|l| l.state() == ReplicaState::Online && l.lag_secs(now) <= max_lag)
            .count();
        self.good_replicas.store(good, Ordering::Relaxed);
    }

    /// The offset the cluster announces for this node: a primary's stream offset; a replica's applied offset
    /// once it has synced, 0 before (so the cluster leaves it out of CLUSTER SLOTS and elections rank it last).
    pub fn cluster_offset(&self) -> u64 {
        if self.is_replica() && !self.synced.load(Ordering::Relaxed) {
            return 0;
        }
        self.backlog.offset()
    }

    /// A replica's last contact with its primary (unix ms): the last data while the link is up, when it went
    /// down while it is down; 0 if it never synced.
    pub fn last_interaction_ms(&self) -> u64 {
        if !self.synced.load(Ordering::Relaxed) {
            return 0;
        }
        let follow = self.follow.lock();
        match follow.as_ref() {
            Some(f) if f.link != LinkState::Connected && f.down_since_ms > 0 => f.down_since_ms as u64,
            _ => self.last_io_ms.load(Ordering::Relaxed).max(0) as u64,
        }
    }

    // ------------------------------------------------------------------------------------------------------
    // INFO and ROLE
    // ------------------------------------------------------------------------------------------------------

    /// INFO replication, with Redis 7.0's fields.
    pub fn render_info(&self, config: &Config, b: &mut String) {
        let now = unix_ms();
        let info = self.backlog.info();
        let links = self.links();
        if self.is_replica() {
            let follow = self.follow.lock();
            let _ = writeln!(b, "role:slave");
            if let Some(f) = follow.as_ref() {
                let up = f.link == LinkState::Connected;
                let _ = writeln!(b, "master_host:{}", f.host);
                let _ = writeln!(b, "master_port:{}", f.port);
                let _ = writeln!(b, "master_link_status:{}", if up { "up" } else { "down" });
                let last_io = self.last_io_ms.load(Ordering::Relaxed);
                let io_ago = if up && last_io > 0 {
                    (now - last_io).max(0) / 1000
                } else {
                    -1
                };
                let _ = writeln!(b, "master_last_io_seconds_ago:{io_ago}");
                let _ = writeln!(b, "master_sync_in_progress:{}", u8::from(f.link == LinkState::Transfer));
                let _ = writeln!(b, "slave_read_repl_offset:{}", info.offset);
                let _ = writeln!(b, "slave_repl_offset:{}", info.offset);
                if let (LinkState::Transfer, Some(started)) = (f.link, f.sync_started) {
                    // The size of a snapshot is not known before its end.
                    let _ = writeln!(b, "master_sync_total_bytes:-1");
                    let _ = writeln!(b, "master_sync_read_bytes:{}", f.sync_bytes);
                    let _ = writeln!(b, "master_sync_left_bytes:-1");
                    let _ = writeln!(b, "master_sync_perc:0.00");
                    let _ = writeln!(b, "master_sync_last_io_seconds_ago:{}", (now - last_io).max(0) / 1000);
                    let _ = started;
                }
                if !up {
                    let since = if f.down_since_ms > 0 {
                        (now - f.down_since_ms).max(0) / 1000
                    } else {
                        -1
                    };
                    let _ = writeln!(b, "master_link_down_since_seconds:{since}");
                }
            }
            drop(follow);
            let _ = writeln!(
                b,
                "slave_priority:{}",
                config.value("replica-priority").unwrap_or_default()
            );
            let _ = writeln!(b, "slave_read_only:{}", u8::from(config.replica_read_only));
            let _ = writeln!(
                b,
                "replica_announced:{}",
                u8::from(config.value("replica-announced").as_deref() != Some("no"))
            );
        } else {
            let _ = writeln!(b, "role:master");
        }
        let _ = writeln!(b, "connected_slaves:{}", links.len());
        if self.write_gate.load(Ordering::Relaxed) & GATE_MIN_REPLICAS != 0 {
            let _ = writeln!(
                b,
                "min_slaves_good_slaves:{}",
                self.good_replicas.load(Ordering::Relaxed)
            );
        }
        for (i, l) in links.iter().enumerate() {
            let _ = writeln!(
                b,
                "slave{i}:ip={},port={},state={},offset={},lag={}",
                l.ip,
                l.port,
                l.state().name(),
                l.ack_offset(),
                l.lag_secs(now)
            );
        }
        let _ = writeln!(b, "master_failover_state:no-failover");
        let _ = writeln!(b, "master_replid:{}", info.replid);
        let _ = writeln!(b, "master_replid2:{}", info.replid2);
        let _ = writeln!(b, "master_repl_offset:{}", info.offset);
        let _ = writeln!(b, "second_repl_offset:{}", info.second_offset);
        let _ = writeln!(b, "repl_backlog_active:{}", u8::from(info.active));
        let _ = writeln!(b, "repl_backlog_size:{}", info.size);
        let _ = writeln!(b, "repl_backlog_first_byte_offset:{}", info.first);
        let _ = writeln!(b, "repl_backlog_histlen:{}", info.histlen);
    }

    /// The ROLE reply.
    pub fn write_role(&self, out: &mut shoal_protocol::ReplyWriter) {
        let offset = self.backlog.offset();
        if self.is_replica() {
            let follow = self.follow.lock();
            let (host, port, state) = follow.as_ref().map_or((String::new(), 0, LinkState::Connect), |f| {
                (f.host.clone(), f.port, f.link)
            });
            drop(follow);
            out.array(5);
            out.bulk(b"slave");
            out.bulk(host.as_bytes());
            out.integer(i64::from(port));
            out.bulk(state.role_name().as_bytes());
            out.integer(if state == LinkState::Connected || self.backlog.is_active() {
                offset as i64
            } else {
                -1
            });
            return;
        }
        let links = self.links();
        out.array(3);
        out.bulk(b"master");
        out.integer(offset as i64);
        out.array(links.len());
        for l in &links {
            out.array(3);
            out.bulk(l.ip.as_bytes());
            out.bulk(l.port.to_string().as_bytes());
            out.bulk(l.ack_offset().to_string().as_bytes());
        }
    }

    /// Memory held by the backlog (INFO `mem_replication_backlog`).
    pub fn backlog_memory(&self) -> u64 {
        self.backlog.info().memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::TestClient;

    fn link(c: &TestClient, state: ReplicaState) -> Arc<ReplicaLink> {
        let handle = c.client.handle.clone();
        Arc::new(Replication::new_link(handle, "127.0.0.1".into(), 7000, state))
    }

    #[test]
    fn only_online_replicas_that_acknowledged_the_offset_count() {
        let c = TestClient::new();
        let r = &c.srv.repl;
        let a = link(&c, ReplicaState::Online);
        let b = link(&c, ReplicaState::SendBulk);
        r.add_link(a.clone());
        r.add_link(b.clone());
        assert_eq!(r.count_acked(0), 1);
        r.ack(&a, 100);
        r.ack(&b, 500);
        assert_eq!(r.count_acked(100), 1);
        assert_eq!(r.count_acked(101), 0);
        b.set_state(ReplicaState::Online);
        assert_eq!(r.count_acked(101), 1);
        // Acknowledgements never go backwards.
        r.ack(&a, 50);
        assert_eq!(a.ack_offset(), 100);
    }

    #[test]
    fn wait_returns_when_enough_acknowledged_or_at_the_timeout() {
        let c = TestClient::new();
        let srv = c.srv.clone();
        let a = link(&c, ReplicaState::Online);
        srv.repl.add_link(a.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let started = Instant::now();
            let got = srv
                .repl
                .wait_for_acks(&srv, &c.client.handle, 1, 10, Some(Duration::from_millis(150)))
                .await;
            assert_eq!(got, 0);
            assert!(started.elapsed() >= Duration::from_millis(140));
            let srv2 = srv.clone();
            let a2 = a.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                srv2.repl.ack(&a2, 10);
            });
            let started = Instant::now();
            let got = srv.repl.wait_for_acks(&srv, &c.client.handle, 1, 10, None).await;
            assert_eq!(got, 1);
            assert!(started.elapsed() < Duration::from_secs(1));
        });
    }

    #[test]
    fn min_replicas_to_write_refuses_writes_without_enough_good_replicas() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["CONFIG", "SET", "min-replicas-to-write", "1"]), "OK");
        assert_eq!(
            c.text(&["SET", "k", "v"]),
            "-NOREPLICAS Not enough good replicas to write."
        );
        assert_eq!(c.text(&["GET", "k"]), "(nil)");
        let a = link(&c, ReplicaState::Online);
        c.srv.repl.add_link(a);
        assert_eq!(c.text(&["SET", "k", "v"]), "OK");
        assert_eq!(c.text(&["CONFIG", "SET", "min-replicas-to-write", "0"]), "OK");
    }
}
