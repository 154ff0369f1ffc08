//! A deterministic cluster simulator: N [`ClusterNode`]s in one process, on a simulated clock, over a simulated
//! network that loses, delays (and so reorders) messages and can be partitioned; nodes can be killed and
//! restarted from the `nodes.conf` text they last saved.
//!
//! Everything random comes from one seed, so a failing run replays exactly: tests print the seed, and
//! `SHOAL_SIM_SEED=<seed>` reruns that one (see [`for_each_seed`]). Every message goes through the real codec
//! ([`encode`], then [`decode`] at the receiver), which also counts the bytes each node sends.
//!
//! The network model: a link is a connection between two nodes. Connecting to a live, reachable node succeeds
//! after `connect_delay_ms`; to a dead one it fails after that delay (connection refused); across a partition
//! it hangs (the state machine gives up after the node timeout). Each message is delivered after a delay drawn
//! uniformly from `min_delay_ms..=max_delay_ms` unless lost (probability `loss`) or blocked by a partition.
//! Closing a link tells the peer after the minimum delay, when it can hear.
//!
//! Clocks: each node reads its own clock, off the simulated time by a fixed offset (up to `clock_skew_ms`
//! either way) and running at its own rate (up to `clock_drift` fast or slow), so every input a node gets is
//! stamped with its local time.
//!
//! Replication, modelled as far as the cluster logic sees it: a primary that accepts writes
//! ([`ClusterNode::accepts_writes`]) and is not paused advances its replication offset every tick; a replica
//! that can reach the node it replicates catches up to that node's offset with probability `repl_catchup` per
//! tick (so replicas lag by different amounts), and records the contact as its last interaction. Both numbers
//! are fed to the state machine before every tick. [`Effect::PauseWrites`] stops a primary's writes and is
//! answered with [`ClusterNode::on_writes_paused`] at once.
//!
//! Invariants ([`Sim::check_invariants`]), checked after every event once enabled: no two live primaries claim
//! a slot under the same config epoch; no two live nodes accept writes for the same slot at the same moment; no
//! node's current epoch ever decreases (across restarts too); a replica is promoted only on a side of the
//! network holding a majority of the primaries; and (optionally) the promoted replica has the greatest offset
//! among its reachable siblings. Violations are collected in [`Invariants::violations`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::IpAddr;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use std::collections::{BTreeSet, VecDeque};

use crate::config_file::NodesFile;
use crate::link::LinkId;
use crate::message::{decode, encode, Message};
use crate::node::{Epoch, NodeId};
use crate::slot::Slot;
use crate::slots::SlotRanges;
use crate::state::{ClusterConfig, ClusterNode, Effect, LogLevel};

/// The simulated machines' IP.
pub const SIM_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// Node `i` listens on `BASE_PORT + i` and its bus on that plus 10000.
pub const BASE_PORT: u16 = 30001;
/// Simulated time starts at a realistic unix time (ms), so second-granularity gossip behaves as in production.
pub const START_MS: u64 = 1_700_000_000_000;

/// The knobs of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub node_timeout_ms: u64,
    /// Probability that a message is lost.
    pub loss: f64,
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    pub connect_delay_ms: u64,
    pub tick_ms: u64,
    /// Decode every message at the receiver (else the sent struct is delivered; bytes are counted either way).
    pub decode: bool,
    /// Print the nodes' log lines at this level and above (`SHOAL_SIM_LOG=debug|verbose|notice|warning`).
    pub log_level: Option<LogLevel>,
    /// Print every message sent (`SHOAL_SIM_TRACE=1`).
    pub trace: bool,
    /// Each node's clock is off by up to this much either way, in ms.
    pub clock_skew_ms: u64,
    /// Each node's clock runs up to this fraction fast or slow (0.01 = 1 %).
    pub clock_drift: f64,
    /// A writable primary's replication offset grows by 1..=this every tick.
    pub write_rate: u64,
    /// Probability per tick that a replica that can reach its primary catches up with it.
    pub repl_catchup: f64,
    /// `cluster-replica-no-failover` on every node.
    pub replica_no_failover: bool,
}

impl SimConfig {
    pub fn new(nodes: usize) -> SimConfig {
        let log_level = std::env::var("SHOAL_SIM_LOG").ok().and_then(|l| match l.as_str() {
            "debug" => Some(LogLevel::Debug),
            "verbose" => Some(LogLevel::Verbose),
            "notice" => Some(LogLevel::Notice),
            "warning" => Some(LogLevel::Warning),
            _ => None,
        });
        SimConfig {
            nodes,
            node_timeout_ms: 2_000,
            loss: 0.0,
            min_delay_ms: 1,
            max_delay_ms: 5,
            connect_delay_ms: 2,
            tick_ms: crate::state::TICK_INTERVAL_MS,
            decode: true,
            log_level,
            trace: std::env::var_os("SHOAL_SIM_TRACE").is_some(),
            clock_skew_ms: 0,
            clock_drift: 0.0,
            write_rate: 100,
            repl_catchup: 0.5,
            replica_no_failover: false,
        }
    }
}

/// A replica's promotion, as the simulator saw it ([`Effect::BecomePrimary`]).
#[derive(Debug, Clone)]
pub struct Promotion {
    pub node: usize,
    /// Simulated time (ms since [`START_MS`]).
    pub at_ms: u64,
    /// The primary it replicated just before.
    pub replaced: Option<NodeId>,
    /// Its replication offset then.
    pub data_offset: u64,
    pub config_epoch: Epoch,
}

/// The invariants checked after every event, and what broke them.
#[derive(Debug, Default)]
pub struct Invariants {
    /// How many slot-serving primaries the cluster has: a side of a partition with fewer than half of them plus
    /// one is a minority.
    pub primaries: usize,
    /// Also check that a promoted replica has the greatest replication offset among its reachable siblings
    /// (meaningful without message loss, with delays below the election delay).
    pub highest_offset_wins: bool,
    /// Nodes whose promotions an operator asked for (CLUSTER FAILOVER): exempt from the offset rule.
    pub manual: BTreeSet<usize>,
    /// What broke, with the simulated time; the first few only.
    pub violations: Vec<String>,
}

/// Violations kept, at most.
const MAX_VIOLATIONS: usize = 20;

enum Payload {
    Bytes(Vec<u8>),
    Struct(Box<Message>),
}

enum Event {
    Tick(usize),
    Deliver { to: usize, link: LinkId, payload: Payload },
    ConnectArrives { from: usize, link: LinkId, to: usize },
    ConnectFails { from: usize, link: LinkId },
    Closed { node: usize, link: LinkId },
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap pops the earliest event first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One simulated machine.
pub struct SimNode {
    /// `None` while the node is down.
    pub node: Option<ClusterNode>,
    /// The last `nodes.conf` the node saved.
    pub saved_config: Option<String>,
    pub port: u16,
    pub bus_port: u16,
    /// Bytes and messages this node put on the bus.
    pub bytes_sent: u64,
    pub messages_sent: u64,
    /// Incremented on every restart (keeps the node's seeds distinct).
    pub incarnation: u64,
    /// This node's clock: `local = START_MS + offset + (simulated - START_MS) * rate`.
    pub clock_offset_ms: i64,
    pub clock_rate: f64,
    /// The replication offset of this node's data (kept across restarts, as on disk).
    pub data_offset: u64,
    /// Its last contact with the node it replicates (local ms; 0: never).
    pub last_primary_io_ms: u64,
    /// When it last caught up with the node it replicates (simulated ms since the start; 0: never).
    pub last_sync_ms: u64,
    /// Writes paused until this local time (0: not paused).
    pub writes_paused_until: u64,
    /// The primary it replicated after its last event (to know whom a promotion replaced).
    pub last_primary: Option<NodeId>,
    /// Its current epoch after its last event (it may never go back).
    pub last_epoch: Epoch,
}

/// The simulation.
pub struct Sim {
    pub config: SimConfig,
    pub seed: u64,
    pub now_ms: u64,
    pub nodes: Vec<SimNode>,
    rng: SmallRng,
    events: BinaryHeap<Scheduled>,
    seq: u64,
    /// Both ends of every live connection: (node, its link) -> (peer, the peer's link).
    conns: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    /// Partition group of each node; nodes in different groups cannot talk.
    groups: Vec<usize>,
    /// Bus frames that failed to decode (must stay 0).
    pub decode_errors: u64,
    /// Randomness of the replication model (apart from the network's, so that enabling it does not change
    /// message timings).
    repl_rng: SmallRng,
    /// Checked after every event once set ([`Sim::check_invariants`]).
    pub invariants: Option<Invariants>,
    /// Every promotion so far.
    pub promotions: Vec<Promotion>,
    /// Times a replica's data was cut back to its new primary's (writes it had that the primary had not: the
    /// old primary's split-brain writes).
    pub truncated_resyncs: u64,
}

impl Sim {
    /// Fresh nodes, each knowing only itself.
    pub fn new(seed: u64, config: SimConfig) -> Sim {
        let mut sim = Sim::empty(seed, config);
        for i in 0..sim.config.nodes {
            let node = ClusterNode::new(sim.node_config(i), sim.node_seed(i), sim.local_ms(i));
            if sim.config.trace {
                eprintln!("[sim] node {i} is {}", node.my_id());
            }
            sim.nodes[i].node = Some(node);
            sim.drain(i);
        }
        sim
    }

    /// Nodes started from the given `nodes.conf` texts (one per node), e.g. an already formed cluster.
    pub fn from_configs(seed: u64, config: SimConfig, files: &[String]) -> Result<Sim, String> {
        let mut sim = Sim::empty(seed, config);
        for (i, text) in files.iter().enumerate().take(sim.config.nodes) {
            let file = NodesFile::parse(text).map_err(|e| e.to_string())?;
            let node = ClusterNode::from_nodes_file(sim.node_config(i), &file, sim.node_seed(i), sim.local_ms(i))
                .map_err(|e| e.to_string())?;
            sim.nodes[i].last_epoch = node.current_epoch();
            sim.nodes[i].last_primary = node.my_primary().map(|p| p.id);
            sim.nodes[i].node = Some(node);
            sim.nodes[i].saved_config = Some(text.clone());
            sim.drain(i);
        }
        Ok(sim)
    }

    fn empty(seed: u64, config: SimConfig) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut clock_rng = SmallRng::seed_from_u64(seed ^ 0xc10c_c10c);
        let n = config.nodes;
        let skew = config.clock_skew_ms as i64;
        let drift = config.clock_drift.abs();
        let mut sim = Sim {
            seed,
            now_ms: START_MS,
            nodes: (0..n)
                .map(|i| SimNode {
                    node: None,
                    saved_config: None,
                    port: BASE_PORT + i as u16,
                    bus_port: BASE_PORT + i as u16 + crate::state::BUS_PORT_OFFSET,
                    bytes_sent: 0,
                    messages_sent: 0,
                    incarnation: 0,
                    clock_offset_ms: if skew > 0 {
                        clock_rng.random_range(-skew..=skew)
                    } else {
                        0
                    },
                    clock_rate: if drift > 0.0 {
                        1.0 + clock_rng.random_range(-drift..=drift)
                    } else {
                        1.0
                    },
                    data_offset: 0,
                    last_primary_io_ms: 0,
                    last_sync_ms: 0,
                    writes_paused_until: 0,
                    last_primary: None,
                    last_epoch: Epoch::ZERO,
                })
                .collect(),
            events: BinaryHeap::new(),
            seq: 0,
            conns: BTreeMap::new(),
            groups: vec![0; n],
            decode_errors: 0,
            rng: SmallRng::seed_from_u64(rng.random()),
            repl_rng: SmallRng::seed_from_u64(seed ^ 0x5eed_4e91),
            invariants: None,
            promotions: Vec::new(),
            truncated_resyncs: 0,
            config,
        };
        for i in 0..n {
            // Ticks out of phase, as real processes are.
            let phase = rng.random_range(0..sim.config.tick_ms.max(1));
            sim.schedule(phase, Event::Tick(i));
        }
        sim
    }

    fn node_config(&self, i: usize) -> ClusterConfig {
        let mut c = ClusterConfig::new(self.nodes[i].port);
        c.node_timeout_ms = self.config.node_timeout_ms;
        c.replica_no_failover = self.config.replica_no_failover;
        c
    }

    /// Node `i`'s clock now (unix ms).
    pub fn local_ms(&self, i: usize) -> u64 {
        let node = &self.nodes[i];
        let elapsed = self.now_ms.saturating_sub(START_MS) as f64 * node.clock_rate;
        (START_MS as i64 + node.clock_offset_ms + elapsed as i64).max(0) as u64
    }

    /// Simulated time since the start, in ms (what logs and measurements use).
    pub fn elapsed_ms(&self) -> u64 {
        self.now_ms - START_MS
    }

    /// Starts checking the invariants after every event; `primaries` is the cluster's number of slot-serving
    /// primaries (the base of "majority").
    pub fn check_invariants(&mut self, primaries: usize, highest_offset_wins: bool) {
        self.invariants = Some(Invariants {
            primaries,
            highest_offset_wins,
            ..Invariants::default()
        });
        for sim_node in &mut self.nodes {
            if let Some(node) = sim_node.node.as_ref() {
                sim_node.last_epoch = node.current_epoch();
                sim_node.last_primary = node.my_primary().map(|p| p.id);
            }
        }
    }

    /// The violations so far, as one error.
    pub fn invariant_violations(&self) -> Result<(), String> {
        match &self.invariants {
            Some(inv) if !inv.violations.is_empty() => Err(inv.violations.join("; ")),
            _ => Ok(()),
        }
    }

    fn violation(&mut self, what: String) {
        let at = self.elapsed_ms();
        if let Some(inv) = self.invariants.as_mut() {
            if inv.violations.len() < MAX_VIOLATIONS {
                inv.violations.push(format!("at {at} ms: {what}"));
            }
        }
    }

    /// The index of the node listening on `port`.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        let i = usize::from(port.checked_sub(BASE_PORT)?);
        (self.nodes.get(i)?.port == port).then_some(i)
    }

    /// The index of the node with this id, if it is up.
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        (0..self.nodes.len()).find(|i| self.nodes[*i].node.as_ref().is_some_and(|n| n.my_id() == id))
    }

    /// `CLUSTER FAILOVER` on node `i`, exempting its promotion from the offset rule.
    pub fn manual_failover(&mut self, i: usize, mode: crate::state::FailoverMode) -> Result<(), String> {
        if let Some(inv) = self.invariants.as_mut() {
            inv.manual.insert(i);
        }
        self.admin(i, |n, now| n.failover(mode, now)).map_err(|e| e.to_string())
    }

    fn node_seed(&self, i: usize) -> u64 {
        self.seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add((i as u64) << 20)
            .wrapping_add(self.nodes[i].incarnation)
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.events.push(Scheduled {
            at: self.now_ms + delay,
            seq: self.seq,
            event,
        });
    }

    /// Node `i`'s state machine (panics if it is down: a test bug).
    pub fn node(&self, i: usize) -> &ClusterNode {
        self.nodes[i].node.as_ref().expect("the node is up")
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    pub fn id(&self, i: usize) -> NodeId {
        self.node(i).my_id()
    }

    /// Runs an administration call on node `i` (given its clock) and carries out its effects.
    pub fn admin<T>(&mut self, i: usize, f: impl FnOnce(&mut ClusterNode, u64) -> T) -> T {
        let now = self.local_ms(i);
        let node = self.nodes[i].node.as_mut().expect("the node is up");
        let out = f(node, now);
        self.drain(i);
        self.after_event(i);
        out
    }

    /// `CLUSTER MEET` from node `from` to node `to`.
    pub fn meet(&mut self, from: usize, to: usize) {
        let port = i64::from(self.nodes[to].port);
        let result = self.admin(from, |n, now| n.meet("127.0.0.1", port, None, now));
        debug_assert!(result.is_ok());
    }

    /// `CLUSTER ADDSLOTSRANGE start end` on node `i`.
    pub fn add_slot_range(&mut self, i: usize, start: u32, end: u32) {
        let range = (Slot::new(start), Slot::new(end));
        let _ = self.admin(i, |n, _| n.add_slot_ranges(&[range]));
    }

    /// Splits the network: `group[i]` is node `i`'s side.
    pub fn partition(&mut self, groups: &[usize]) {
        for (i, g) in groups.iter().enumerate().take(self.groups.len()) {
            self.groups[i] = *g;
        }
    }

    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
    }

    fn can_talk(&self, a: usize, b: usize) -> bool {
        self.groups[a] == self.groups[b]
    }

    /// Kills node `i`: its connections are reset (peers hear of it), its state is lost but for `nodes.conf`
    /// (and its data, as if on disk).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].node = None;
        let mine: Vec<(usize, LinkId)> = self.conns.keys().filter(|(n, _)| *n == i).copied().collect();
        for (_, link) in mine {
            self.close_connection(i, link);
        }
    }

    /// Forgets node `i`'s connection `link`; its peer hears of it if the network lets the reset through.
    fn close_connection(&mut self, i: usize, link: LinkId) {
        if let Some((peer, peer_link)) = self.conns.remove(&(i, link)) {
            self.conns.remove(&(peer, peer_link));
            if self.can_talk(i, peer) {
                let delay = self.config.min_delay_ms;
                self.schedule(
                    delay,
                    Event::Closed {
                        node: peer,
                        link: peer_link,
                    },
                );
            }
        }
    }

    /// Restarts node `i` from the `nodes.conf` it last saved (or fresh when it never saved).
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].incarnation += 1;
        let now = self.local_ms(i);
        let node = match self.nodes[i].saved_config.clone() {
            Some(text) => {
                let file = NodesFile::parse(&text).map_err(|e| e.to_string())?;
                ClusterNode::from_nodes_file(self.node_config(i), &file, self.node_seed(i), now)
                    .map_err(|e| e.to_string())?
            }
            None => ClusterNode::new(self.node_config(i), self.node_seed(i), now),
        };
        // Writes paused by the process that died are not paused in the new one.
        self.nodes[i].writes_paused_until = 0;
        self.nodes[i].last_primary = node.my_primary().map(|p| p.id);
        self.nodes[i].node = Some(node);
        self.drain(i);
        self.after_event(i);
        Ok(())
    }

    /// Runs events until simulated time `until_ms` (absolute).
    pub fn run_until(&mut self, until_ms: u64) {
        while let Some(next) = self.events.peek() {
            if next.at > until_ms {
                break;
            }
            let Some(Scheduled { at, event, .. }) = self.events.pop() else {
                break;
            };
            self.now_ms = at;
            self.handle(event);
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    /// Runs for `ms` more simulated milliseconds.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now_ms + ms);
    }

    /// Runs until [`Sim::check_converged`] holds (checked every `step_ms`) or `limit_ms` passes; returns how
    /// long it took, or the last disagreement.
    pub fn run_until_converged(&mut self, limit_ms: u64, step_ms: u64) -> Result<u64, String> {
        let start = self.now_ms;
        loop {
            match self.check_converged() {
                Ok(()) => return Ok(self.now_ms - start),
                Err(why) if self.now_ms - start >= limit_ms => {
                    return Err(format!("not converged after {limit_ms} ms: {why}"))
                }
                Err(_) => self.run_for(step_ms),
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                let tick = self.config.tick_ms;
                self.schedule(tick, Event::Tick(i));
                self.replicate(i);
                let now = self.local_ms(i);
                if let Some(node) = self.nodes[i].node.as_mut() {
                    let effects = node.on_tick(now);
                    self.execute(i, effects);
                    self.after_event(i);
                }
            }
            Event::Deliver { to, link, payload } => {
                // Only while the connection still exists: a closed link drops what was in flight.
                if !self.conns.contains_key(&(to, link)) {
                    return;
                }
                let msg = match payload {
                    Payload::Struct(msg) => *msg,
                    Payload::Bytes(bytes) => match decode(&bytes) {
                        Ok(Some((msg, used))) if used == bytes.len() => msg,
                        _ => {
                            self.decode_errors += 1;
                            return;
                        }
                    },
                };
                let now = self.local_ms(to);
                if let Some(node) = self.nodes[to].node.as_mut() {
                    let effects = node.on_message(link, msg, now);
                    self.execute(to, effects);
                    self.after_event(to);
                }
            }
            Event::ConnectArrives { from, link, to } => {
                let from_up = self.nodes[from].node.is_some();
                if !from_up {
                    return;
                }
                if !self.can_talk(from, to) {
                    return; // the SYN is lost: the connect hangs until the state machine gives up
                }
                let peer_now = self.local_ms(to);
                let Some(peer) = self.nodes[to].node.as_mut() else {
                    self.schedule(self.config.min_delay_ms, Event::ConnectFails { from, link });
                    return;
                };
                let peer_link = peer.accept_link(SIM_IP, SIM_IP, peer_now);
                self.conns.insert((from, link), (to, peer_link));
                self.conns.insert((to, peer_link), (from, link));
                let now = self.local_ms(from);
                if let Some(node) = self.nodes[from].node.as_mut() {
                    let effects = node.on_link_connected(link, now);
                    self.execute(from, effects);
                    self.after_event(from);
                }
            }
            Event::ConnectFails { from, link } | Event::Closed { node: from, link } => {
                self.conns.remove(&(from, link));
                let now = self.local_ms(from);
                if let Some(node) = self.nodes[from].node.as_mut() {
                    let effects = node.on_link_closed(link, now);
                    self.execute(from, effects);
                    self.after_event(from);
                }
            }
        }
    }

    fn drain(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].node.as_mut() {
            let effects = node.take_effects();
            self.execute(i, effects);
        }
    }

    fn execute(&mut self, i: usize, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::SaveConfig => {
                    if let Some(node) = self.nodes[i].node.as_ref() {
                        self.nodes[i].saved_config = Some(node.nodes_conf_text());
                    }
                }
                Effect::Connect { link, ip, bus_port } => {
                    let index = usize::from(bus_port.wrapping_sub(BASE_PORT + crate::state::BUS_PORT_OFFSET));
                    let target = (ip == SIM_IP && self.nodes.get(index).is_some_and(|n| n.bus_port == bus_port))
                        .then_some(index);
                    let delay = self.config.connect_delay_ms;
                    match target {
                        Some(to) => self.schedule(delay, Event::ConnectArrives { from: i, link, to }),
                        None => self.schedule(delay, Event::ConnectFails { from: i, link }),
                    }
                }
                Effect::Send { link, msg } => self.transmit(i, link, msg),
                Effect::CloseLink { link } => self.close_connection(i, link),
                Effect::Log { level, text } => {
                    if self.config.log_level.is_some_and(|min| level >= min) {
                        eprintln!("[{} node {i}] {text}", self.now_ms - START_MS);
                    }
                }
                Effect::PauseWrites { until_ms } => {
                    // The driver pauses writes; none is in flight in the model, so it reports the offset at once.
                    self.nodes[i].writes_paused_until = until_ms;
                    let (offset, now) = (self.nodes[i].data_offset, self.local_ms(i));
                    if let Some(node) = self.nodes[i].node.as_mut() {
                        queue.extend(node.on_writes_paused(offset, now));
                    }
                }
                Effect::ResumeWrites => self.nodes[i].writes_paused_until = 0,
                Effect::BecomePrimary => self.note_promotion(i),
                Effect::ReplicateFrom { .. } | Effect::DeleteKeysInSlots(_) => {}
            }
        }
    }

    /// The replication model's step for node `i`, before its tick (see the module docs).
    fn replicate(&mut self, i: usize) {
        let local = self.local_ms(i);
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        if node.is_replica() {
            let source = node.my_primary().and_then(|p| self.index_of_port(p.port));
            if let Some(j) = source.filter(|j| self.is_up(*j) && self.can_talk(i, *j)) {
                self.nodes[i].last_primary_io_ms = local;
                if self.repl_rng.random_bool(self.config.repl_catchup.clamp(0.0, 1.0)) {
                    let theirs = self.nodes[j].data_offset;
                    if self.nodes[i].data_offset > theirs {
                        // Writes the new primary never had (a former primary's): a full resync drops them.
                        self.truncated_resyncs += 1;
                    }
                    self.nodes[i].data_offset = theirs;
                    self.nodes[i].last_sync_ms = self.elapsed_ms();
                }
            }
        } else {
            let paused = self.nodes[i].writes_paused_until > local;
            if !paused && node.accepts_writes(local) {
                let written = self.repl_rng.random_range(1..=self.config.write_rate.max(1));
                self.nodes[i].data_offset += written;
            }
        }
        let (offset, last_io) = (self.nodes[i].data_offset, self.nodes[i].last_primary_io_ms);
        if let Some(node) = self.nodes[i].node.as_mut() {
            node.set_repl_offset(offset);
            node.set_repl_last_interaction(last_io);
        }
    }

    /// A replica of node `i` became a primary: record it and check the promotion rules.
    fn note_promotion(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let promotion = Promotion {
            node: i,
            at_ms: self.elapsed_ms(),
            replaced: self.nodes[i].last_primary,
            data_offset: self.nodes[i].data_offset,
            config_epoch: node.myself().config_epoch,
        };
        if let Some(inv) = self.invariants.as_ref() {
            let manual = inv.manual.contains(&i);
            let needed = inv.primaries / 2 + 1;
            let check_offsets = inv.highest_offset_wins && !manual;
            // "A minority never promotes": the voters it could reach are the slot-serving primaries on its side.
            let reachable = (0..self.nodes.len())
                .filter(|j| *j != i && self.can_talk(i, *j))
                .filter_map(|j| self.nodes[j].node.as_ref())
                .filter(|n| n.myself().is_primary() && !n.myself().slots.is_empty())
                .count();
            let mut problems = Vec::new();
            if !manual && reachable < needed {
                problems.push(format!(
                    "node {i} was promoted on a side with {reachable} of the {} primaries",
                    inv.primaries
                ));
            }
            // "The replica with the highest offset wins when it is reachable."
            if let (true, Some(old)) = (check_offsets, promotion.replaced) {
                for j in (0..self.nodes.len()).filter(|j| *j != i && self.can_talk(i, *j)) {
                    let sibling = self.nodes[j]
                        .node
                        .as_ref()
                        .is_some_and(|n| n.is_replica() && n.my_primary().map(|p| p.id) == Some(old));
                    if sibling && self.nodes[j].data_offset > promotion.data_offset {
                        problems.push(format!(
                            "node {i} (offset {}) was promoted over node {j} (offset {})",
                            promotion.data_offset, self.nodes[j].data_offset
                        ));
                    }
                }
            }
            for p in problems {
                self.violation(p);
            }
        }
        if self.config.trace {
            eprintln!("[{} sim] node {i} promoted: {promotion:?}", self.elapsed_ms());
        }
        self.promotions.push(promotion);
    }

    /// The invariants, after node `i` handled an event.
    fn after_event(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let epoch = node.current_epoch();
        let primary = node.my_primary().map(|p| p.id);
        let previous = std::mem::replace(&mut self.nodes[i].last_epoch, epoch);
        self.nodes[i].last_primary = primary;
        if self.invariants.is_none() {
            return;
        }
        if epoch < previous {
            self.violation(format!("node {i}'s current epoch went back from {previous} to {epoch}"));
        }
        // At most one primary claims a slot under a config epoch, and at most one node accepts writes for it.
        let mut claims: Vec<(usize, Epoch, &SlotRanges, bool)> = Vec::new();
        for (j, sim_node) in self.nodes.iter().enumerate() {
            let Some(n) = sim_node.node.as_ref() else {
                continue;
            };
            let me = n.myself();
            if me.is_primary() && !me.slots.is_empty() {
                // The driver's pause (manual failover) holds writes too.
                let local = self.local_ms(j);
                let writes = n.accepts_writes(local) && sim_node.writes_paused_until <= local;
                claims.push((j, me.config_epoch, &me.slots, writes));
            }
        }
        let mut problems = Vec::new();
        for (x, a) in claims.iter().enumerate() {
            for b in claims.iter().skip(x + 1) {
                if !a.2.intersects(b.2) {
                    continue;
                }
                if a.1 == b.1 {
                    problems.push(format!(
                        "nodes {} and {} both claim slots under config epoch {}",
                        a.0, b.0, a.1
                    ));
                }
                if a.3 && b.3 {
                    problems.push(format!(
                        "nodes {} and {} both accept writes for the same slots",
                        a.0, b.0
                    ));
                }
            }
        }
        for p in problems {
            self.violation(p);
        }
    }

    fn transmit(&mut self, from: usize, link: LinkId, msg: Message) {
        let bytes = match encode(&msg) {
            Ok(bytes) => bytes,
            Err(_) => {
                self.decode_errors += 1;
                return;
            }
        };
        self.nodes[from].bytes_sent += bytes.len() as u64;
        self.nodes[from].messages_sent += 1;
        let Some(&(to, peer_link)) = self.conns.get(&(from, link)) else {
            return;
        };
        let lost =
            !self.can_talk(from, to) || (self.config.loss > 0.0 && self.rng.random_bool(self.config.loss.min(1.0)));
        if self.config.trace {
            eprintln!(
                "[{} net] {from} -> {to} {} on {link}{}",
                self.now_ms - START_MS,
                msg.kind().name(),
                if lost { " LOST" } else { "" }
            );
        }
        if lost {
            return;
        }
        let delay = self
            .rng
            .random_range(self.config.min_delay_ms..=self.config.max_delay_ms.max(self.config.min_delay_ms));
        let payload = if self.config.decode {
            Payload::Bytes(bytes)
        } else {
            Payload::Struct(Box::new(msg))
        };
        self.schedule(
            delay,
            Event::Deliver {
                to,
                link: peer_link,
                payload,
            },
        );
    }

    /// Whether every live node has the same view: the same nodes (every live node, no handshake left), the same
    /// role, primary and config epoch for each, no failure flags, the same slot owners, the same current epoch.
    pub fn check_converged(&self) -> Result<(), String> {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|i| self.is_up(*i)).collect();
        let Some(&first) = live.first() else {
            return Ok(());
        };
        let reference = self.view(first);
        let live_ids: Vec<NodeId> = live.iter().map(|i| self.id(*i)).collect();
        for &i in &live {
            let view = self.view(i);
            if let Some(missing) = live_ids.iter().find(|id| !view.nodes.contains_key(id)) {
                return Err(format!("node {i} does not know {missing}"));
            }
            if let Some(problem) = &view.problem {
                return Err(format!("node {i}: {problem}"));
            }
            if view.nodes != reference.nodes {
                let diff = view
                    .nodes
                    .iter()
                    .find(|(id, v)| reference.nodes.get(id) != Some(v))
                    .map(|(id, v)| format!("{id}: {v:?} vs {:?}", reference.nodes.get(id)))
                    .unwrap_or_else(|| "the node sets differ".into());
                return Err(format!("nodes {first} and {i} disagree on {diff}"));
            }
            if view.owners != reference.owners {
                return Err(format!("nodes {first} and {i} disagree on slot owners"));
            }
            if view.current_epoch != reference.current_epoch {
                return Err(format!(
                    "current epochs differ: node {first} {}, node {i} {}",
                    reference.current_epoch, view.current_epoch
                ));
            }
        }
        Ok(())
    }

    fn view(&self, i: usize) -> View {
        let node = self.node(i);
        let mut problem = None;
        let mut nodes = BTreeMap::new();
        for n in node.nodes() {
            let bad = crate::node::NodeFlags::HANDSHAKE
                | crate::node::NodeFlags::PFAIL
                | crate::node::NodeFlags::FAIL
                | crate::node::NodeFlags::NOADDR;
            if n.flags.intersects(bad) && problem.is_none() {
                problem = Some(format!("{} has flags {:?}", n.id, n.flags));
            }
            // A replica's own config epoch is whatever headers last carried; what counts (and what CLUSTER
            // NODES shows) is its primary's.
            let shown = n
                .primary
                .filter(|_| n.is_replica())
                .and_then(|p| node.node(&p))
                .map_or(n.config_epoch, |p| p.config_epoch);
            nodes.insert(n.id, (n.is_primary(), n.primary, shown.get()));
        }
        let owners = node
            .node_table()
            .slot_map()
            .runs()
            .map(|r| (r.start.get(), r.end.get(), r.owner))
            .collect();
        View {
            nodes,
            owners,
            current_epoch: node.current_epoch().get(),
            problem,
        }
    }

    /// Resets every node's byte and message counters.
    pub fn reset_counters(&mut self) {
        for n in &mut self.nodes {
            n.bytes_sent = 0;
            n.messages_sent = 0;
        }
    }

    /// Mean bytes per second each live node sent since the counters were reset `elapsed_ms` ago.
    pub fn bytes_per_sec_per_node(&self, elapsed_ms: u64) -> f64 {
        let live = self.nodes.iter().filter(|n| n.node.is_some()).count().max(1);
        let total: u64 = self.nodes.iter().map(|n| n.bytes_sent).sum();
        total as f64 * 1000.0 / elapsed_ms.max(1) as f64 / live as f64
    }

    /// Mean messages per second each live node sent over `elapsed_ms`.
    pub fn messages_per_sec_per_node(&self, elapsed_ms: u64) -> f64 {
        let live = self.nodes.iter().filter(|n| n.node.is_some()).count().max(1);
        let total: u64 = self.nodes.iter().map(|n| n.messages_sent).sum();
        total as f64 * 1000.0 / elapsed_ms.max(1) as f64 / live as f64
    }
}

#[derive(Debug, PartialEq, Eq)]
struct View {
    /// id -> (is primary, primary, config epoch)
    nodes: BTreeMap<NodeId, (bool, Option<NodeId>, u64)>,
    owners: Vec<(u16, u16, NodeId)>,
    current_epoch: u64,
    problem: Option<String>,
}

/// `nodes.conf` texts for an already formed cluster of `primaries` primaries (slots split evenly, config epochs
/// 1..=primaries) and `replicas_per_primary` replicas each, all nodes knowing all others; node `i` is the
/// `i`-th text, primaries first. For measuring a cluster at rest without simulating its formation.
pub fn formed_cluster_configs(seed: u64, primaries: usize, replicas_per_primary: usize) -> Vec<String> {
    let replicas: Vec<usize> = (0..replicas_per_primary).flat_map(|_| 0..primaries).collect();
    formed_cluster_configs_with(seed, primaries, &replicas)
}

/// As [`formed_cluster_configs`], with any layout: node `primaries + k` replicates primary `replicas[k]`.
pub fn formed_cluster_configs_with(seed: u64, primaries: usize, replicas: &[usize]) -> Vec<String> {
    use std::fmt::Write;
    let n = primaries + replicas.len();
    let mut rng = SmallRng::seed_from_u64(seed);
    let ids: Vec<NodeId> = (0..n).map(|_| NodeId::random(&mut rng)).collect();
    let shards: Vec<crate::node::ShardId> = (0..primaries).map(|_| crate::node::ShardId::random(&mut rng)).collect();
    let slots_per = crate::slot::SLOT_COUNT / primaries.max(1);
    let mut lines = Vec::with_capacity(n);
    for (i, id) in ids.iter().enumerate() {
        let port = BASE_PORT + i as u16;
        let bus = port + crate::state::BUS_PORT_OFFSET;
        let (primary, shard) = if i < primaries {
            (None, i)
        } else {
            let p = replicas.get(i - primaries).copied().unwrap_or(0) % primaries.max(1);
            (Some(p), p)
        };
        let mut line = format!("{id} {SIM_IP}:{port}@{bus},,shard-id={} ", shards[shard]);
        match primary {
            None => {
                let start = i * slots_per;
                let end = if i + 1 == primaries {
                    crate::slot::SLOT_COUNT - 1
                } else {
                    (i + 1) * slots_per - 1
                };
                let _ = write!(line, "FLAGS - 0 {START_MS} {} connected {start}-{end}", i + 1);
            }
            Some(p) => {
                let _ = write!(line, "FLAGS {} 0 {START_MS} {} connected", ids[p], p + 1);
            }
        }
        lines.push((line, primary.is_none()));
    }
    (0..n)
        .map(|me| {
            let mut text = String::new();
            for (j, (line, is_primary)) in lines.iter().enumerate() {
                let role = if *is_primary { "master" } else { "slave" };
                let flags = if j == me {
                    format!("myself,{role}")
                } else {
                    role.to_string()
                };
                text.push_str(&line.replacen("FLAGS", &flags, 1));
                text.push('\n');
            }
            let _ = writeln!(text, "vars currentEpoch {primaries} lastVoteEpoch 0");
            text
        })
        .collect()
}

/// Runs `run` for `count` seeds starting at `first` (`SHOAL_SIM_SEEDS=<n>` runs `n` instead, for a soak;
/// `SHOAL_SIM_SEED=<seed>` only that one), panicking with the seed and how to replay it on the first failure.
pub fn for_each_seed(name: &str, first: u64, count: u64, mut run: impl FnMut(u64) -> Result<(), String>) {
    let count = std::env::var("SHOAL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(count);
    let seeds: Vec<u64> = match std::env::var("SHOAL_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (first..first + count).collect(),
    };
    for seed in seeds {
        if let Err(why) = run(seed) {
            panic!("{name} failed with seed {seed}: {why}\nreplay with: SHOAL_SIM_SEED={seed} cargo test -p shoal-cluster {name}");
        }
    }
}

#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod tests;
