//! The load engine: connections, the closed and open loops, routing, and the end of a run.
//!
//! Every connection is a *writer* task plus one *reader* task per socket (one socket per node it talks to:
//! one normally, one per primary in cluster mode). The writer generates requests, encodes them into the
//! socket's write buffer and hands a record of each ([`InFlight`]) to that socket's reader through a FIFO
//! channel; the reader matches replies to records in order and measures them. Splitting the halves is what
//! lets the open loop keep to its schedule while replies are outstanding.
//!
//! * Closed loop: a semaphore of `--pipeline` permits per connection; the writer sends whenever a permit is
//!   free (taking every free one at once, so bursts go out in one write) and readers give permits back.
//! * Open loop: request `k` of connection `i` is due at `start + (i + k*connections)/rate`. The writer waits
//!   for the pacer thread to wake it at the next due time ([`crate::pacer`]) and then sends everything due,
//!   however late; the reader measures from the due time (see [`crate::stats`]).
//!
//! Failures do not stop a run: a broken socket fails its outstanding requests (counted as `io`), the writer
//! reconnects with a backoff, and in cluster mode reloads the slot map. A `MOVED` reply corrects the map for
//! the requests that follow; redirected requests themselves are counted, not re-sent, so redirections show
//! in the results.
//!
//! A run ends when the measuring time is over, the request count is sent, Ctrl-C is pressed, or the time
//! limit is reached. Replies still owed then get [`DRAIN_TIMEOUT`] to arrive before they count as timeouts.
//! Writer halves stay open until their readers finish, because a server that sees end of input may drop
//! replies it has not written yet.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_client::{
    ClientError, ClusterClient, ClusterOptions, CommandWriter, ConnectOptions, Connection, Frame, ReplyReader, Slot,
    SlotMap,
};
use shoal_cluster::Redirect;
use tokio::sync::{mpsc, watch, Mutex, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::config::{Config, Stop};
use crate::error::BenchError;
use crate::pacer;
use crate::stats::{ErrorKind, Live, Recorder};
use crate::workload::{write_key, write_value, Op, Workload};

/// How long opening one connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long replies still owed at the end of sending may take to arrive.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The most requests one open-loop wakeup sends in one write, so a writer far behind schedule still flushes
/// regularly.
const MAX_OPEN_LOOP_BATCH: usize = 1024;
/// Reconnection backoff: first wait, and the cap of the doubling.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connection reloads the slot map at most this often; all connections together at most every
/// [`GLOBAL_REFRESH_INTERVAL`], the others reuse the last map loaded.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const GLOBAL_REFRESH_INTERVAL: Duration = Duration::from_millis(200);
/// How often a waiting writer looks at the stop conditions (Ctrl-C, the time limit).
const STOP_POLL: Duration = Duration::from_millis(100);

/// What every task of a run shares.
pub struct Shared {
    pub cfg: Config,
    pub live: Live,
    pub start: Instant,
    /// Requests due from here on are measured; before is warmup.
    pub measure_from: Instant,
    /// No request is due at or after this (a run sized by `--duration`).
    pub send_until: Option<Instant>,
    /// The time limit: everything stops here.
    pub deadline: Instant,
    /// Set from outside to end the run early (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Writers still sending.
    pub sending: AtomicU64,
    ack_log: Option<std::sync::Mutex<BufWriter<File>>>,
    /// The discovery client and when it last loaded the map (cluster mode).
    cluster: Option<Mutex<(ClusterClient, Instant)>>,
    pub map_refreshes: AtomicU64,
}

/// The merged results of a run.
pub struct Outcome {
    pub recorder: Recorder,
    /// Seconds from the end of the warmup to the last measured reply.
    pub measured_secs: f64,
    /// The nodes the run talked to (the slot map's primaries in cluster mode).
    pub nodes: Vec<String>,
    pub map_refreshes: u64,
    pub interrupted: bool,
}

/// Runs the load described by `cfg` to its end, or until `stop` is set (the binary sets it on Ctrl-C); the
/// replies owed are still awaited and everything measured is reported.
pub async fn run(cfg: Config, stop: Arc<AtomicBool>) -> Result<Outcome, BenchError> {
    let connect = ConnectOptions {
        connect_timeout: Some(CONNECT_TIMEOUT),
        timeout: Some(CONNECT_TIMEOUT),
        protocol: cfg.protocol,
        ..ConnectOptions::default()
    };
    let (cluster, map) = if cfg.cluster {
        let options = ClusterOptions {
            connect: connect.clone(),
            ..ClusterOptions::default()
        };
        let client = ClusterClient::connect_with(&cfg.nodes, options)
            .await
            .map_err(|source| BenchError::Connect {
                addr: cfg.nodes.join(","),
                source,
            })?;
        let map = client.slot_map().clone();
        (Some(Mutex::new((client, Instant::now()))), Some(map))
    } else {
        // Fail before starting the clock if a node is not there at all.
        for addr in &cfg.nodes {
            let ping = async { Connection::connect_with(addr, &connect).await?.command(&["PING"]).await };
            ping.await.map_err(|source| BenchError::Connect {
                addr: addr.clone(),
                source,
            })?;
        }
        (None, None)
    };
    let nodes = map.as_ref().map_or_else(|| cfg.nodes.clone(), |m| m.nodes().to_vec());
    let ack_log = match &cfg.ack_log {
        Some(path) => Some(std::sync::Mutex::new(BufWriter::new(File::create(path).map_err(
            |source| BenchError::File {
                path: path.display().to_string(),
                source,
            },
        )?))),
        None => None,
    };

    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let shared = Arc::new(Shared {
        send_until: match cfg.stop {
            Stop::Duration(d) => Some(measure_from + d),
            Stop::Requests(_) => None,
        },
        deadline: start + cfg.time_limit,
        cfg,
        live: Live::default(),
        start,
        measure_from,
        stop,
        sending: AtomicU64::new(0),
        ack_log,
        cluster,
        map_refreshes: AtomicU64::new(0),
    });

    let (done_tx, done_rx) = watch::channel(false);
    let progress = shared
        .cfg
        .progress
        .then(|| tokio::spawn(crate::report::progress(shared.clone(), done_rx)));

    let connections = shared.cfg.connections;
    let wakers: Vec<Arc<Notify>> = (0..connections).map(|_| Arc::new(Notify::new())).collect();
    let mut workers = Vec::with_capacity(connections);
    for (id, waker) in wakers.iter().enumerate() {
        let quota = match shared.cfg.stop {
            Stop::Requests(n) => {
                let share = n / connections as u64 + u64::from((id as u64) < n % connections as u64);
                if share == 0 {
                    continue;
                }
                Some(share)
            }
            Stop::Duration(_) => None,
        };
        let target = match &map {
            Some(map) => Target::Cluster(map.clone()),
            None => Target::Fixed(shared.cfg.nodes[id % shared.cfg.nodes.len()].clone()),
        };
        shared.sending.fetch_add(1, Ordering::Relaxed);
        let waker = shared.cfg.open_loop().then(|| waker.clone());
        let worker = Worker::new(id, shared.clone(), target, quota, connect.clone(), waker);
        workers.push(tokio::spawn(worker.run()));
    }
    let pacer = match shared.cfg.rate {
        Some(rate) => {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name("shoal-bench-pacer".into())
                .spawn(move || pacer::run(shared, wakers, rate));
            // Without the pacer the writers fall back on tokio's millisecond timers: coarser, still correct.
            thread.ok()
        }
        None => None,
    };
    let mut recorder = Recorder::new();
    for worker in workers {
        if let Ok(r) = worker.await {
            recorder.merge(&r);
        }
    }

    if let Some(pacer) = pacer {
        // It sees that no writer is sending within one of its short sleeps.
        let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    }
    let _ = done_tx.send(true);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    if let Some(log) = &shared.ack_log {
        let flushed = log
            .lock()
            .map_err(|_| std::io::Error::other("ack log lock poisoned"))
            .and_then(|mut w| w.flush());
        if let (Err(source), Some(path)) = (flushed, &shared.cfg.ack_log) {
            return Err(BenchError::File {
                path: path.display().to_string(),
                source,
            });
        }
    }
    let measured_secs = recorder
        .last_reply
        .map_or(0.0, |t| t.saturating_duration_since(shared.measure_from).as_secs_f64());
    Ok(Outcome {
        recorder,
        measured_secs,
        nodes,
        map_refreshes: shared.map_refreshes.load(Ordering::Relaxed),
        interrupted: shared.stop.load(Ordering::Relaxed),
    })
}

/// Where a connection's requests go.
enum Target {
    /// Every request to this one node.
    Fixed(String),
    /// Each request to the primary of its key's slot.
    Cluster(SlotMap),
}

/// The record of a request on its way, from the writer to the reader of its socket.
struct InFlight {
    op: Op,
    key: u64,
    /// The connection's write number (SETs), from which the value can be rebuilt for the ack log.
    seq: u64,
    due: Instant,
    sent: Instant,
    measured: bool,
    /// A `WAIT` was sent right after this SET; its reply follows the SET's.
    wait: bool,
}

/// What readers tell their writer.
enum Event {
    /// A `MOVED` reply: the slot lives at `addr` now.
    Moved { slot: Slot, addr: String },
    /// The socket of link `link` failed; its reader is failing the rest of its requests.
    Down { link: u64 },
}

/// One socket of a connection: its write half and the channel to its reader task.
struct Link {
    id: u64,
    addr: String,
    writer: CommandWriter,
    tx: mpsc::UnboundedSender<InFlight>,
}

/// One connection's writer task and what it owns.
struct Worker {
    id: usize,
    shared: Arc<Shared>,
    connect: ConnectOptions,
    workload: Workload,
    quota: Option<u64>,
    fixed: String,
    map: Option<SlotMap>,
    /// Sockets by node index ([`SlotMap::nodes`] order; index 0 for a fixed target).
    links: Vec<Option<Link>>,
    /// Write halves taken out of service, kept open until their readers are done (see the module docs).
    parked: Vec<CommandWriter>,
    readers: Vec<JoinHandle<Recorder>>,
    next_link: u64,
    /// Per node address: when to try connecting again, and the backoff that led there.
    backoff: HashMap<String, (Instant, Duration)>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    /// Closed loop: free in-flight slots.
    permits: Option<Arc<Semaphore>>,
    /// Open loop: rung by the pacer when a request falls due.
    waker: Option<Arc<Notify>>,
    drain_tx: watch::Sender<Option<Instant>>,
    /// Failures found by the writer itself (no node, no connection).
    recorder: Recorder,
    seq: u64,
    measured_sent: u64,
    last_refresh: Option<Instant>,
    wait_args: Option<(String, String)>,
    keep_tag: bool,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Worker {
    fn new(
        id: usize,
        shared: Arc<Shared>,
        target: Target,
        quota: Option<u64>,
        connect: ConnectOptions,
        waker: Option<Arc<Notify>>,
    ) -> Worker {
        let cfg = &shared.cfg;
        let (fixed, map) = match target {
            Target::Fixed(addr) => (addr, None),
            Target::Cluster(map) => (String::new(), Some(map)),
        };
        let nodes = map.as_ref().map_or(1, |m| m.nodes().len());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Worker {
            id,
            workload: Workload::new(cfg, id),
            quota,
            fixed,
            map,
            links: (0..nodes).map(|_| None).collect(),
            parked: Vec::new(),
            readers: Vec::new(),
            next_link: 0,
            backoff: HashMap::new(),
            events_tx,
            events_rx,
            permits: (!cfg.open_loop()).then(|| Arc::new(Semaphore::new(cfg.pipeline))),
            waker,
            drain_tx: watch::channel(None).0,
            recorder: Recorder::new(),
            seq: 0,
            measured_sent: 0,
            last_refresh: None,
            wait_args: cfg.wait.map(|(n, t)| (n.to_string(), t.to_string())),
            keep_tag: cfg.ack_log.is_some() || cfg.wait.is_some(),
            key: Vec::with_capacity(32),
            value: Vec::with_capacity(cfg.data_size + 32),
            connect,
            shared,
        }
    }

    async fn run(mut self) -> Recorder {
        match self.shared.cfg.rate {
            Some(rate) => self.open_loop(rate).await,
            None => self.closed_loop().await,
        }
        self.shared.sending.fetch_sub(1, Ordering::Relaxed);
        self.finish().await
    }

    /// Whether sending is over for a request due at `due`.
    fn done(&self, due: Instant) -> bool {
        let s = &self.shared;
        s.stop.load(Ordering::Relaxed)
            || Instant::now() >= s.deadline
            || s.send_until.is_some_and(|t| due >= t)
            || self.quota.is_some_and(|q| self.measured_sent >= q)
    }

    async fn closed_loop(&mut self) {
        let Some(permits) = self.permits.clone() else {
            return;
        };
        loop {
            self.handle_events().await;
            let now = Instant::now();
            if self.done(now) {
                return;
            }
            // Wait for a free slot, looking at the stop conditions at least every STOP_POLL.
            let wake = (now + STOP_POLL).min(self.shared.deadline);
            let wake = self.shared.send_until.map_or(wake, |t| wake.min(t));
            let got = tokio::select! {
                permit = permits.acquire() => permit.map(|p| p.forget()).is_ok(),
                _ = sleep_until(wake) => false,
            };
            if !got {
                continue;
            }
            let mut burst = 1;
            while burst < self.shared.cfg.pipeline {
                match permits.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        burst += 1;
                    }
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            let mut sent = 0;
            while sent < burst && !self.done(now) {
                self.send_one(now).await;
                sent += 1;
            }
            permits.add_permits(burst - sent);
            self.flush_all().await;
        }
    }

    async fn open_loop(&mut self, rate: f64) {
        let connections = self.shared.cfg.connections;
        let start = self.shared.start;
        let mut k: u64 = 0;
        let mut next = start + pacer::due(self.id, k, connections, rate);
        loop {
            self.handle_events().await;
            if self.done(next) {
                return;
            }
            let now = Instant::now();
            if next > now {
                // The pacer's wakeup is the punctual one; the timer only guards the stop conditions.
                match &self.waker {
                    Some(waker) => {
                        tokio::select! {
                            _ = waker.notified() => {}
                            _ = sleep_until(now + STOP_POLL) => {}
                        }
                    }
                    None => sleep_until(next.min(now + STOP_POLL)).await,
                }
                continue;
            }
            let mut batch = 0;
            while next <= now && batch < MAX_OPEN_LOOP_BATCH && !self.done(next) {
                self.send_one(next).await;
                k += 1;
                next = start + pacer::due(self.id, k, connections, rate);
                batch += 1;
            }
            self.flush_all().await;
        }
    }

    /// Generates, routes and queues one request due at `due`.
    async fn send_one(&mut self, due: Instant) {
        let op = self.workload.next_op();
        let key = self.workload.next_key();
        write_key(&mut self.key, key);
        let measured = due >= self.shared.measure_from;
        let node = match &self.map {
            Some(map) => map.node_index(Slot::for_key(&self.key)),
            None => Some(0),
        };
        let Some(node) = node else {
            self.fail_unsent(op, due, measured, ErrorKind::ClusterDown);
            self.refresh_map(&[]).await;
            return;
        };
        if !self.ensure_link(node).await {
            self.fail_unsent(op, due, measured, ErrorKind::Io);
            if self.map.is_some() {
                self.refresh_map(&[]).await;
            }
            return;
        }
        let Some(link) = self.links.get_mut(node).and_then(Option::as_mut) else {
            return;
        };
        let mut seq = 0;
        match op {
            Op::Set => {
                self.seq += 1;
                seq = self.seq;
                write_value(&mut self.value, self.id, seq, self.shared.cfg.data_size, self.keep_tag);
                link.writer.queue(&[b"SET".as_slice(), &self.key, &self.value]);
                if let Some((replicas, timeout)) = &self.wait_args {
                    link.writer
                        .queue(&[b"WAIT".as_slice(), replicas.as_bytes(), timeout.as_bytes()]);
                }
            }
            Op::Get | Op::Wait => link.writer.queue(&[b"GET".as_slice(), &self.key]),
        }
        let req = InFlight {
            op,
            key,
            seq,
            due,
            sent: Instant::now(),
            measured,
            wait: op == Op::Set && self.wait_args.is_some(),
        };
        self.shared.live.sent.fetch_add(1, Ordering::Relaxed);
        if measured {
            self.measured_sent += 1;
        }
        if let Err(mpsc::error::SendError(req)) = link.tx.send(req) {
            // The reader is gone (it can only have panicked): the request will never be answered.
            let id = link.id;
            self.recorder.record(
                req.op,
                req.due,
                req.sent,
                Instant::now(),
                req.measured,
                Some(ErrorKind::Io),
                &self.shared.live,
            );
            self.release(1);
            self.retire_link(id);
        }
    }

    /// Counts a request that could not be sent as failed.
    fn fail_unsent(&mut self, op: Op, due: Instant, measured: bool, kind: ErrorKind) {
        let now = Instant::now();
        self.shared.live.sent.fetch_add(1, Ordering::Relaxed);
        if measured {
            self.measured_sent += 1;
        }
        self.recorder
            .record(op, due, now, now, measured, Some(kind), &self.shared.live);
        self.release(1);
    }

    fn release(&self, n: usize) {
        if let Some(p) = &self.permits {
            p.add_permits(n);
        }
    }

    fn addr_of(&self, node: usize) -> Option<String> {
        match &self.map {
            Some(map) => map.nodes().get(node).cloned(),
            None => Some(self.fixed.clone()),
        }
    }

    /// Makes sure node `node` has a socket, connecting (after any backoff still running) if not.
    async fn ensure_link(&mut self, node: usize) -> bool {
        if self.links.get(node).is_some_and(Option::is_some) {
            return true;
        }
        let Some(addr) = self.addr_of(node) else {
            return false;
        };
        if let Some(&(at, _)) = self.backoff.get(&addr) {
            let limit = self
                .shared
                .send_until
                .map_or(self.shared.deadline, |t| t.min(self.shared.deadline));
            sleep_until(at.min(limit)).await;
            if Instant::now() < at {
                return false;
            }
        }
        match Connection::connect_with(&addr, &self.connect).await {
            Ok(conn) => {
                self.backoff.remove(&addr);
                let (writer, reader) = conn.into_split();
                let (tx, rx) = mpsc::unbounded_channel();
                let id = self.next_link;
                self.next_link += 1;
                let ctx = ReaderCtx {
                    shared: self.shared.clone(),
                    link: id,
                    worker: self.id,
                    permits: self.permits.clone(),
                    events: self.events_tx.clone(),
                    drain: self.drain_tx.subscribe(),
                    drain_open: true,
                    keep_tag: self.keep_tag,
                };
                self.readers.push(tokio::spawn(read_loop(reader, rx, ctx)));
                if node >= self.links.len() {
                    self.links.resize_with(node + 1, || None);
                }
                self.links[node] = Some(Link { id, addr, writer, tx });
                true
            }
            Err(e) => {
                self.recorder.sample_error(&format!("{addr}: {e}"));
                self.note_down(addr);
                false
            }
        }
    }

    /// Starts or doubles the reconnection backoff of `addr`.
    fn note_down(&mut self, addr: String) {
        let wait = self
            .backoff
            .get(&addr)
            .map_or(RECONNECT_BACKOFF_MIN, |&(_, d)| (d * 2).min(RECONNECT_BACKOFF_MAX));
        self.backoff.insert(addr, (Instant::now() + wait, wait));
    }

    /// Takes link `id` out of service: no more requests to it; its reader finishes what was sent.
    fn retire_link(&mut self, id: u64) {
        for slot in &mut self.links {
            if slot.as_ref().is_some_and(|l| l.id == id) {
                if let Some(link) = slot.take() {
                    self.parked.push(link.writer);
                    let addr = link.addr;
                    self.note_down(addr);
                }
                return;
            }
        }
    }

    async fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for link in self.links.iter_mut().flatten() {
            if link.writer.buffered() > 0 && link.writer.flush().await.is_err() {
                failed.push(link.id);
            }
        }
        for id in failed {
            self.retire_link(id);
        }
    }

    async fn handle_events(&mut self) {
        let mut moves = Vec::new();
        while let Ok(event) = self.events_rx.try_recv() {
            match event {
                Event::Down { link } => self.retire_link(link),
                Event::Moved { slot, addr } => moves.push((slot, addr)),
            }
        }
        if !moves.is_empty() && self.map.is_some() {
            if let Some(map) = &mut self.map {
                for (slot, addr) in &moves {
                    map.assign(*slot, addr);
                }
                let nodes = map.nodes().len();
                if nodes > self.links.len() {
                    self.links.resize_with(nodes, || None);
                }
            }
            self.refresh_map(&moves).await;
        }
    }

    /// Reloads the slot map (rate-limited), then re-applies `moves`, which are fresher than any node's view.
    async fn refresh_map(&mut self, moves: &[(Slot, String)]) {
        let Some(cluster) = &self.shared.cluster else {
            return;
        };
        if self.last_refresh.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        self.last_refresh = Some(Instant::now());
        let mut map = {
            let mut guard = cluster.lock().await;
            let (client, loaded) = &mut *guard;
            if loaded.elapsed() >= GLOBAL_REFRESH_INTERVAL && client.refresh_slots().await.is_ok() {
                *loaded = Instant::now();
                self.shared.map_refreshes.fetch_add(1, Ordering::Relaxed);
            }
            client.slot_map().clone()
        };
        for (slot, addr) in moves {
            map.assign(*slot, addr);
        }
        self.install_map(map);
    }

    /// Switches to `map`, carrying sockets over by address (node indices differ between maps).
    fn install_map(&mut self, map: SlotMap) {
        let mut old: Vec<Link> = self.links.drain(..).flatten().collect();
        self.links = map
            .nodes()
            .iter()
            .map(|addr| old.iter().position(|l| &l.addr == addr).map(|i| old.swap_remove(i)))
            .collect();
        self.parked.extend(old.into_iter().map(|l| l.writer));
        self.map = Some(map);
    }

    /// Ends the connection: closes the request channels, gives the replies owed [`DRAIN_TIMEOUT`], and merges
    /// every reader's measurements.
    async fn finish(mut self) -> Recorder {
        self.drain_tx.send_replace(Some(Instant::now() + DRAIN_TIMEOUT));
        let mut writers = std::mem::take(&mut self.parked);
        for link in self.links.drain(..).flatten() {
            drop(link.tx);
            writers.push(link.writer);
        }
        let mut recorder = std::mem::take(&mut self.recorder);
        for reader in self.readers.drain(..) {
            if let Ok(r) = reader.await {
                recorder.merge(&r);
            }
        }
        drop(writers);
        recorder
    }
}

/// What a reader task needs besides its socket and channel.
struct ReaderCtx {
    shared: Arc<Shared>,
    link: u64,
    worker: usize,
    permits: Option<Arc<Semaphore>>,
    events: mpsc::UnboundedSender<Event>,
    drain: watch::Receiver<Option<Instant>>,
    drain_open: bool,
    keep_tag: bool,
}

impl ReaderCtx {
    /// The next reply, or a failure: the socket's, or a timeout at the drain deadline or the time limit.
    async fn next_reply(&mut self, reader: &mut ReplyReader) -> Result<Frame, ClientError> {
        if let Some(frame) = reader.try_read_reply()? {
            return Ok(frame);
        }
        loop {
            let drain_at = *self.drain.borrow();
            let deadline = drain_at.map_or(self.shared.deadline, |d| d.min(self.shared.deadline));
            tokio::select! {
                reply = reader.read_reply() => return reply,
                _ = sleep_until(deadline) => return Err(ClientError::Timeout),
                changed = self.drain.changed(), if self.drain_open => {
                    if changed.is_err() {
                        self.drain_open = false;
                    }
                }
            }
        }
    }

    /// Logs an acknowledged write: `key:<n> <value>`.
    fn log_ack(&self, req: &InFlight, key: &mut Vec<u8>, value: &mut Vec<u8>) {
        let Some(log) = &self.shared.ack_log else {
            return;
        };
        write_key(key, req.key);
        write_value(value, self.worker, req.seq, self.shared.cfg.data_size, self.keep_tag);
        if let Ok(mut out) = log.lock() {
            // A failed log write surfaces when the log is flushed at the end of the run.
            let _ = out
                .write_all(key)
                .and_then(|_| out.write_all(b" "))
                .and_then(|_| out.write_all(value))
                .and_then(|_| out.write_all(b"\n"));
        }
    }
}

/// A reader task: matches replies to the requests its writer sent, in order, and measures them.
async fn read_loop(mut reader: ReplyReader, mut rx: mpsc::UnboundedReceiver<InFlight>, mut ctx: ReaderCtx) -> Recorder {
    let mut rec = Recorder::new();
    // Once the socket has failed, every request still queued on it fails the same way.
    let mut failed: Option<ErrorKind> = None;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let wait_for = ctx.shared.cfg.wait.map(|(n, _)| i64::from(n));
    while let Some(req) = rx.recv().await {
        let reply = receive(&mut reader, &mut ctx, &mut failed, &mut rec).await;
        let live = &ctx.shared.live;
        let set_ok = match reply {
            Err(kind) => {
                rec.record(
                    req.op,
                    req.due,
                    req.sent,
                    Instant::now(),
                    req.measured,
                    Some(kind),
                    live,
                );
                false
            }
            Ok(frame) => {
                let error = ErrorKind::of_reply(&frame);
                if let Some(kind) = error {
                    note_error_reply(&frame, kind, &ctx, &mut rec);
                } else if req.op == Op::Get && req.measured {
                    if matches!(frame, Frame::NullBulk | Frame::Null) {
                        rec.get_misses += 1;
                    } else {
                        rec.get_hits += 1;
                    }
                }
                rec.record(req.op, req.due, req.sent, Instant::now(), req.measured, error, live);
                req.op == Op::Set && error.is_none()
            }
        };
        let acked = match (req.wait, wait_for) {
            (true, Some(needed)) => {
                let reply = receive(&mut reader, &mut ctx, &mut failed, &mut rec).await;
                let (error, replicas) = match &reply {
                    Err(kind) => (Some(*kind), 0),
                    Ok(frame) => (ErrorKind::of_reply(frame), frame.as_integer().unwrap_or(0)),
                };
                if let (Ok(frame), Some(kind)) = (&reply, error) {
                    note_error_reply(frame, kind, &ctx, &mut rec);
                }
                rec.record(
                    Op::Wait,
                    req.due,
                    req.sent,
                    Instant::now(),
                    req.measured,
                    error,
                    &ctx.shared.live,
                );
                let acked = set_ok && error.is_none() && replicas >= needed;
                if set_ok && !acked && req.measured {
                    rec.unacked_writes += 1;
                }
                acked
            }
            _ => set_ok,
        };
        if acked {
            if req.measured {
                rec.acked_writes += 1;
            }
            ctx.log_ack(&req, &mut key, &mut value);
        }
        if let Some(p) = &ctx.permits {
            p.add_permits(1);
        }
    }
    rec
}

/// The next reply, or how the socket failed (the first failure is reported to the writer and remembered).
async fn receive(
    reader: &mut ReplyReader,
    ctx: &mut ReaderCtx,
    failed: &mut Option<ErrorKind>,
    rec: &mut Recorder,
) -> Result<Frame, ErrorKind> {
    if let Some(kind) = *failed {
        return Err(kind);
    }
    match ctx.next_reply(reader).await {
        Ok(frame) => Ok(frame),
        Err(e) => {
            let kind = ErrorKind::of_failure(&e);
            rec.sample_error(&e.to_string());
            *failed = Some(kind);
            let _ = ctx.events.send(Event::Down { link: ctx.link });
            Err(kind)
        }
    }
}

/// Keeps an error reply's text as a sample and passes `MOVED` on to the writer.
fn note_error_reply(frame: &Frame, kind: ErrorKind, ctx: &ReaderCtx, rec: &mut Recorder) {
    let text = match frame {
        Frame::Error(t) | Frame::BlobError(t) => String::from_utf8_lossy(t).into_owned(),
        _ => String::new(),
    };
    if kind == ErrorKind::Moved {
        if let Some(Redirect::Moved { slot, addr }) = Redirect::parse(&text) {
            let _ = ctx.events.send(Event::Moved { slot, addr });
        }
        // Every MOVED differs by slot; one example is enough.
        rec.sample_error("MOVED (slot moved)");
    } else {
        rec.sample_error(&text);
    }
}
