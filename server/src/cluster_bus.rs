//! The cluster bus driver: sockets, timers and files around the sans-IO state machine of `shoal_cluster`.
//!
//! [`ClusterBus`] owns one [`ClusterNode`] behind a mutex and carries out what it asks for: it listens on the
//! bus port, connects to other nodes, reads and writes framed messages, ticks the machine ten times a second,
//! writes `nodes.conf` atomically (temporary file, fsync, rename, fsync of the directory) before anything of the
//! same batch goes out, and publishes the routing table commands read whenever the configuration changes.
//!
//! Input from the bus is never trusted: a frame that does not decode (bad magic, version, checksum, oversized)
//! closes that link and is logged; the state machine only ever sees well-formed messages.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use parking_lot::Mutex;
use shoal_cluster::state::TICK_INTERVAL_MS;
use shoal_cluster::{decode, encode, ClusterConfig, ClusterNode, Effect, LinkId, NodesFile, Slot, SLOT_COUNT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::keyspace::access::unix_ms;
use crate::routing::{RoutedNode, RoutingSnapshot, NO_NODE};
use crate::server::Server;

/// A link's outgoing frames wait here; a peer that stops reading cannot make the bus block.
type LinkTx = mpsc::UnboundedSender<Vec<u8>>;

/// Read buffer of one bus link.
const LINK_READ_BUF: usize = 16 * 1024;
/// After writes are paused for a manual failover, the stream offset must hold still this long before it is
/// reported as where writes stopped...
const PAUSE_SETTLE: Duration = Duration::from_millis(10);
/// ...checked at most this many times.
const PAUSE_SETTLE_ROUNDS: usize = 50;

/// The running cluster bus of this node.
pub struct ClusterBus {
    srv: std::sync::Weak<Server>,
    node: Mutex<ClusterNode>,
    links: Mutex<HashMap<LinkId, LinkTx>>,
    conf_path: PathBuf,
    /// The owners last published to the routing table, to publish only real changes.
    published: Mutex<Option<RoutingSnapshotKey>>,
}

/// What a routing snapshot depends on, compared before publishing.
#[derive(PartialEq, Eq)]
struct RoutingSnapshotKey {
    owners: Vec<u16>,
    endpoints: Vec<String>,
    migrating: Vec<(Slot, u16)>,
    importing: Vec<Slot>,
    me: u16,
    my_primary: u16,
    state_ok: bool,
    /// Primaries flagged FAIL while the cluster is up (`cluster-require-full-coverage no`): their slots are
    /// published as unserved.
    failed: Vec<shoal_cluster::NodeId>,
}

fn cluster_config(c: &Config) -> ClusterConfig {
    let mut cc = ClusterConfig::new(c.port);
    cc.bus_port = c.cluster_bus_port();
    cc.node_timeout_ms = c.cluster_node_timeout;
    cc.announce_ip = c.cluster_announce_ip.parse().ok();
    cc.announce_port = (c.cluster_announce_port != 0).then_some(c.cluster_announce_port);
    cc.announce_bus_port = (c.cluster_announce_bus_port != 0).then_some(c.cluster_announce_bus_port);
    cc.require_full_coverage = c.cluster_require_full_coverage;
    cc.allow_replica_migration = c.cluster_allow_replica_migration;
    cc.replica_no_failover = c.cluster_replica_no_failover;
    cc
}

/// Writes `text` to `path` so that a crash leaves either the old file or the new one, never a mix.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("nodes.conf"),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename itself must reach the disk too.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl ClusterBus {
    /// Loads or creates this node's cluster identity and starts the bus: listener, ticker, and the links the
    /// saved configuration asks for. Must run inside the tokio runtime.
    pub async fn start(srv: &Arc<Server>) -> anyhow::Result<Arc<ClusterBus>> {
        let config = srv.config.read().clone();
        let cc = cluster_config(&config);
        let conf_path = PathBuf::from(&config.cluster_config_file);
        let seed = rand::random::<u64>();
        let now = unix_ms() as u64;
        let node = if conf_path.exists() {
            let text = std::fs::read_to_string(&conf_path)
                .with_context(|| format!("reading cluster config file {}", conf_path.display()))?;
            let file = NodesFile::parse(&text)
                .map_err(|e| anyhow::anyhow!("cluster config file {} is corrupt: {e}", conf_path.display()))?;
            ClusterNode::from_nodes_file(cc.clone(), &file, seed, now)
                .map_err(|e| anyhow::anyhow!("cluster config file {} is unusable: {e}", conf_path.display()))?
        } else {
            ClusterNode::new(cc.clone(), seed, now)
        };
        tracing::info!(id = %node.my_id(), "cluster node");
        let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], cc.bus_port)))
            .await
            .with_context(|| format!("binding the cluster bus port {}", cc.bus_port))?;
        let bus = Arc::new(ClusterBus {
            srv: Arc::downgrade(srv),
            node: Mutex::new(node),
            links: Mutex::new(HashMap::new()),
            conf_path,
            published: Mutex::new(None),
        });
        // Carry out what the fresh or restored node asks for first (its nodes.conf, reconnections).
        bus.with_node(|_| ());
        tokio::spawn(bus.clone().accept_loop(srv.clone(), listener));
        tokio::spawn(bus.clone().ticker(srv.clone()));
        Ok(bus)
    }

    /// Runs `f` on the state machine (a CLUSTER subcommand), then carries out the effects it produced.
    pub fn with_node<R>(self: &Arc<Self>, f: impl FnOnce(&mut ClusterNode) -> R) -> R {
        let mut node = self.node.lock();
        let r = f(&mut node);
        let effects = node.take_effects();
        self.apply(&mut node, effects);
        r
    }

    /// Writes `nodes.conf` now (CLUSTER SAVECONFIG), under the node lock like every other save.
    pub fn save_config(&self) -> std::io::Result<()> {
        let node = self.node.lock();
        write_atomically(&self.conf_path, &node.nodes_conf_text())
    }

    /// Reads the state machine without changing it (CLUSTER NODES, INFO, SLOTS ...).
    pub fn read<R>(&self, f: impl FnOnce(&ClusterNode) -> R) -> R {
        f(&self.node.lock())
    }

    /// Carries out effects in order. Called with the node locked, so the effects of one input never interleave
    /// with another's; nothing here waits on the network.
    fn apply(self: &Arc<Self>, node: &mut ClusterNode, effects: Vec<Effect>) {
        let Some(srv) = self.srv.upgrade() else { return };
        let srv = &srv;
        let mut config_changed = false;
        for effect in effects {
            match effect {
                Effect::SaveConfig => {
                    config_changed = true;
                    if let Err(e) = write_atomically(&self.conf_path, &node.nodes_conf_text()) {
                        // Redis exits when it cannot persist the cluster configuration: continuing could announce
                        // epochs (and later votes) that a restart would forget.
                        tracing::error!("cannot write {}: {e}; exiting", self.conf_path.display());
                        std::process::exit(1);
                    }
                }
                Effect::Connect { link, ip, bus_port } => {
                    tokio::spawn(self.clone().connect(link, ip, bus_port, node.config().node_timeout_ms));
                }
                Effect::Send { link, msg } => match encode(&msg) {
                    Ok(frame) => {
                        if let Some(tx) = self.links.lock().get(&link) {
                            let _ = tx.send(frame);
                        }
                    }
                    Err(e) => tracing::warn!("cannot encode a bus message: {e}"),
                },
                Effect::CloseLink { link } => {
                    self.links.lock().remove(&link);
                }
                Effect::ReplicateFrom { primary, ip, port } => {
                    if srv.repl.become_replica(srv, &ip.to_string(), port) {
                        tracing::info!("replica of {primary} at {ip}:{port}");
                    }
                }
                Effect::BecomePrimary => {
                    if srv.repl.promote(srv) {
                        tracing::info!("acting as a primary");
                    }
                }
                Effect::PauseWrites { until_ms } => {
                    srv.pause.pause(i64::try_from(until_ms).unwrap_or(i64::MAX), true);
                    tokio::spawn(self.clone().report_writes_paused(self.srv.clone()));
                }
                Effect::ResumeWrites => srv.pause.unpause(),
                Effect::DeleteKeysInSlots(ranges) => {
                    let db = srv.keyspace.db(0);
                    for r in ranges.ranges() {
                        for s in r.start..=r.end {
                            if let Some(slot) = Slot::new(s as u32) {
                                let taken = db.lock_slot(slot).take_slot(slot);
                                drop(taken);
                            }
                        }
                    }
                }
                Effect::Log { level, text } => match level {
                    shoal_cluster::LogLevel::Debug => tracing::trace!("{text}"),
                    shoal_cluster::LogLevel::Verbose => tracing::debug!("{text}"),
                    shoal_cluster::LogLevel::Notice => tracing::info!("{text}"),
                    shoal_cluster::LogLevel::Warning => tracing::warn!("{text}"),
                },
            }
        }
        self.publish_routing(srv, node, config_changed);
        srv.routing
            .set_writes_until(node.writes_allowed_until_ms(unix_ms() as u64));
    }

    /// Publishes the routing table when what commands see has changed.
    fn publish_routing(&self, srv: &Server, node: &ClusterNode, config_changed: bool) {
        let mut published = self.published.lock();
        let state_ok = node.cluster_state_ok();
        // Shoal: while the cluster is up without full coverage, the slots of a primary agreed to be down answer
        // `-CLUSTERDOWN Hash slot not served` (clients back off and retry) rather than Redis's MOVED to a node
        // that cannot answer; with full coverage required the whole cluster is down anyway.
        let failed: Vec<shoal_cluster::NodeId> = if state_ok {
            node.nodes()
                .filter(|n| n.is_primary() && n.is_failed())
                .map(|n| n.id)
                .collect()
        } else {
            Vec::new()
        };
        if !config_changed
            && published
                .as_ref()
                .is_some_and(|p| p.state_ok == state_ok && p.failed == failed)
        {
            return;
        }
        let mut index: HashMap<shoal_cluster::NodeId, u16> = HashMap::new();
        let mut endpoints = Vec::new();
        for n in node.nodes() {
            index.insert(n.id, endpoints.len() as u16);
            let ip = n.ip.map(|ip| ip.to_string()).unwrap_or_default();
            endpoints.push(format!("{ip}:{}", n.port));
        }
        let idx = |id: &shoal_cluster::NodeId| index.get(id).copied().unwrap_or(NO_NODE);
        let owners: Vec<u16> = (0..SLOT_COUNT as u32)
            .filter_map(Slot::new)
            .map(|s| {
                node.slot_owner(s)
                    .filter(|n| !failed.contains(&n.id))
                    .map(|n| idx(&n.id))
                    .unwrap_or(NO_NODE)
            })
            .collect();
        let mut migrating = Vec::new();
        let mut importing = Vec::new();
        for s in (0..SLOT_COUNT as u32).filter_map(Slot::new) {
            if let Some(to) = node.migrating_to(s) {
                migrating.push((s, idx(&to.id)));
            }
            if node.importing_from(s).is_some() {
                importing.push(s);
            }
        }
        let key = RoutingSnapshotKey {
            owners,
            endpoints,
            migrating,
            importing,
            me: idx(&node.my_id()),
            my_primary: node.my_primary().map(|p| idx(&p.id)).unwrap_or(NO_NODE),
            state_ok,
            failed,
        };
        if published.as_ref() == Some(&key) {
            return;
        }
        srv.routing.publish(RoutingSnapshot {
            nodes: key
                .endpoints
                .iter()
                .map(|e| RoutedNode { endpoint: e.clone() })
                .collect(),
            owners: key.owners.clone(),
            migrating: key.migrating.clone(),
            importing: key.importing.clone(),
            me: key.me,
            my_primary: key.my_primary,
            state_ok: key.state_ok,
        });
        *published = Some(key);
    }

    async fn ticker(self: Arc<Self>, srv: Arc<Server>) {
        let mut shutdown = srv.shutdown_signal();
        let mut interval = tokio::time::interval(Duration::from_millis(TICK_INTERVAL_MS));
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => return,
            }
            let mut node = self.node.lock();
            // What elections rank replicas by, and how fresh a replica's data is.
            node.set_repl_offset(srv.repl.cluster_offset());
            node.set_repl_last_interaction(srv.repl.last_interaction_ms());
            let effects = node.on_tick(unix_ms() as u64);
            self.apply(&mut node, effects);
        }
    }

    /// After a manual failover paused writes: once no write is in flight any more, reports the offset they
    /// stopped at. A command that passed the pause check just before the pause began finishes within its own
    /// (synchronous) execution; the stream offset is read once it has held still for a moment.
    async fn report_writes_paused(self: Arc<Self>, srv: std::sync::Weak<Server>) {
        let Some(srv) = srv.upgrade() else { return };
        tokio::time::sleep(PAUSE_SETTLE).await;
        let mut offset = srv.repl.backlog.offset();
        for _ in 0..PAUSE_SETTLE_ROUNDS {
            tokio::time::sleep(PAUSE_SETTLE).await;
            let now = srv.repl.backlog.offset();
            if now == offset {
                break;
            }
            offset = now;
        }
        let mut node = self.node.lock();
        node.set_repl_offset(offset);
        let effects = node.on_writes_paused(offset, unix_ms() as u64);
        self.apply(&mut node, effects);
    }

    async fn accept_loop(self: Arc<Self>, srv: Arc<Server>, listener: TcpListener) {
        let mut shutdown = srv.shutdown_signal();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("cluster bus accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let local = stream
                .local_addr()
                .map(|a| a.ip())
                .unwrap_or(IpAddr::from([127, 0, 0, 1]));
            let link = self.node.lock().accept_link(peer.ip(), local, unix_ms() as u64);
            self.clone().run_link(link, stream);
        }
    }

    async fn connect(self: Arc<Self>, link: LinkId, ip: IpAddr, bus_port: u16, timeout_ms: u64) {
        let addr = SocketAddr::new(ip, bus_port);
        let timeout = Duration::from_millis(timeout_ms.max(100));
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            _ => {
                let mut node = self.node.lock();
                let effects = node.on_link_closed(link, unix_ms() as u64);
                self.apply(&mut node, effects);
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        self.clone().run_link(link, stream);
        let mut node = self.node.lock();
        let effects = node.on_link_connected(link, unix_ms() as u64);
        self.apply(&mut node, effects);
    }

    /// Starts the reader and writer tasks of a connected link.
    fn run_link(self: Arc<Self>, link: LinkId, stream: TcpStream) {
        let Some(srv) = self.srv.upgrade() else { return };
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.links.lock().insert(link, tx);
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(LINK_READ_BUF);
            let mut shutdown = srv.shutdown_signal();
            'read: loop {
                let n = tokio::select! {
                    r = rd.read_buf(&mut buf) => r,
                    _ = shutdown.changed() => break 'read,
                };
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                loop {
                    match decode(&buf) {
                        Ok(Some((msg, used))) => {
                            let _ = buf.split_to(used);
                            let mut node = self.node.lock();
                            let effects = node.on_message(link, msg, unix_ms() as u64);
                            self.apply(&mut node, effects);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("dropping cluster bus {link}: undecodable input ({e})");
                            break 'read;
                        }
                    }
                }
            }
            self.links.lock().remove(&link);
            drop(srv);
            let mut node = self.node.lock();
            let effects = node.on_link_closed(link, unix_ms() as u64);
            self.apply(&mut node, effects);
        });
    }
}
