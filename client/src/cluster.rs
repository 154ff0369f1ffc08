//! [`ClusterClient`]: routes each command to the node serving its key's slot, and follows the cluster when it
//! changes under it.
//!
//! The slot map comes from `CLUSTER SLOTS`, asked of any known node (seeds first, then the nodes learnt).
//! Each command then goes to the primary of `Slot::for_key(key)`, and the reply steers what happens next:
//!
//! * `MOVED <slot> <addr>`: the slot lives elsewhere for good. The whole map is refreshed, because a moved
//!   slot rarely moves alone, then the slot is set to `addr` whatever the refresh said (the node asked may lag
//!   behind the one that redirected), and the command is sent there. Refreshes are rate-limited to one per
//!   [`ClusterOptions::min_refresh_interval`] so a resharding does not turn every command into a `CLUSTER
//!   SLOTS`.
//! * `ASK <slot> <addr>`: this one key is already at the migration target. The command goes there once,
//!   preceded by `ASKING`; the map is left alone, since the slot still belongs to the source.
//! * `TRYAGAIN`, `CLUSTERDOWN`: a transient state (a multi-key command mid-migration, a failover). The command
//!   is retried after an exponential backoff; `CLUSTERDOWN` also refreshes the map.
//! * `CROSSSLOT` and every other error reply are final and returned.
//!
//! Redirections and retries are both bounded ([`ClusterOptions::max_redirects`],
//! [`ClusterOptions::max_retries`]), so a cluster that points in circles or never settles ends in
//! [`ClientError::RetriesExhausted`].
//!
//! A command is re-sent only when it cannot have run: after a redirection or refusal, or when the connection
//! to its node could not even be opened. A transport failure after sending is returned, because the command
//! may or may not have been applied and only the caller knows whether running it twice is harmless.
//!
//! The client is a plain `&mut self` value owning one connection per node; a program with many tasks gives
//! each task its own client.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_cluster::{Redirect, Slot};
use shoal_protocol::Frame;
use tokio::task::JoinSet;

use crate::connection::{ConnectOptions, Connection};
use crate::error::{check_reply, ClientError};
use crate::slot_map::{normalize_addr, SlotMap};

/// Tunables of a [`ClusterClient`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How connections to the nodes are opened (timeouts, protocol).
    pub connect: ConnectOptions,
    /// `MOVED` and `ASK` hops one command may take before giving up.
    pub max_redirects: usize,
    /// Retries one command may take after `TRYAGAIN`, `CLUSTERDOWN`, an unserved slot or an unreachable node.
    pub max_retries: usize,
    /// Wait before the first retry; each further retry doubles it.
    pub retry_base_delay: Duration,
    /// The longest wait between two retries.
    pub retry_max_delay: Duration,
    /// At most one slot-map refresh triggered by `MOVED` per this interval.
    pub min_refresh_interval: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            connect: ConnectOptions::default(),
            max_redirects: 16,
            max_retries: 5,
            retry_base_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(500),
            min_refresh_interval: Duration::from_millis(100),
        }
    }
}

/// What the client had to do to get its commands served; counters since the client was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    pub moved: u64,
    pub ask: u64,
    pub retries: u64,
    pub refreshes: u64,
}

/// A cluster-aware client. See the module documentation.
#[derive(Debug)]
pub struct ClusterClient {
    seeds: Vec<String>,
    options: ClusterOptions,
    map: SlotMap,
    conns: HashMap<String, Connection>,
    last_refresh: Option<Instant>,
    stats: ClusterStats,
}

/// Where the next attempt of a command goes.
enum Target {
    /// The node the map says serves the slot.
    Slot(Slot),
    /// An `ASK` target: send `ASKING` first.
    Asking(String),
}

/// Why a command's attempts stopped: a final outcome, or another round.
enum Step {
    Done(Result<Frame, ClientError>),
    Retry(ClientError),
    Redirect(ClientError),
}

impl ClusterClient {
    /// Connects to the cluster through any of `seeds` (`host:port`) with default options.
    pub async fn connect<S: AsRef<str>>(seeds: &[S]) -> Result<ClusterClient, ClientError> {
        ClusterClient::connect_with(seeds, ClusterOptions::default()).await
    }

    /// Connects to the cluster through any of `seeds` and loads the slot map.
    pub async fn connect_with<S: AsRef<str>>(
        seeds: &[S],
        options: ClusterOptions,
    ) -> Result<ClusterClient, ClientError> {
        let mut client = ClusterClient {
            seeds: seeds.iter().map(|s| normalize_addr(s.as_ref())).collect(),
            options,
            map: SlotMap::new(),
            conns: HashMap::new(),
            last_refresh: None,
            stats: ClusterStats::default(),
        };
        client.refresh_slots().await?;
        Ok(client)
    }

    /// The current slot map.
    pub fn slot_map(&self) -> &SlotMap {
        &self.map
    }

    pub fn stats(&self) -> ClusterStats {
        self.stats
    }

    /// Reloads the slot map with `CLUSTER SLOTS` from the first node that answers: the nodes already known,
    /// then the seeds. A node that knows of no slot at all (just started, not yet joined) is passed over while
    /// another may know better.
    pub async fn refresh_slots(&mut self) -> Result<(), ClientError> {
        let mut candidates: Vec<String> = self.map.nodes().to_vec();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut empty = None;
        let mut last_err = None;
        for addr in candidates {
            let reply = match self.conn(&addr).await {
                Ok(conn) => conn.command(&["CLUSTER", "SLOTS"]).await,
                Err(e) => Err(e),
            };
            match reply.and_then(|r| SlotMap::from_cluster_slots(&r, &addr)) {
                Ok(map) if map.unassigned() < shoal_cluster::SLOT_COUNT => {
                    self.install(map);
                    return Ok(());
                }
                Ok(map) => empty = Some(map),
                Err(e) => {
                    self.drop_broken(&addr);
                    last_err = Some(e);
                }
            }
        }
        if let Some(map) = empty {
            self.install(map);
            return Ok(());
        }
        let why = last_err.map_or_else(|| "no seed addresses".to_string(), |e| e.to_string());
        Err(ClientError::NoNode(why))
    }

    fn install(&mut self, map: SlotMap) {
        self.map = map;
        self.last_refresh = Some(Instant::now());
        self.stats.refreshes += 1;
    }

    /// A refresh after `MOVED`, unless one happened very recently. Its failure is not the command's: the
    /// redirection already said where to go.
    async fn refresh_soon(&mut self) {
        let recent = self
            .last_refresh
            .is_some_and(|t| t.elapsed() < self.options.min_refresh_interval);
        if !recent {
            let _ = self.refresh_slots().await;
        }
    }

    /// A usable connection to `addr`, opened if need be.
    async fn conn(&mut self, addr: &str) -> Result<&mut Connection, ClientError> {
        if !self.conns.get(addr).is_some_and(Connection::is_usable) {
            let conn = Connection::connect_with(addr, &self.options.connect).await?;
            self.conns.insert(addr.to_string(), conn);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| ClientError::NoNode(addr.to_string()))
    }

    fn drop_broken(&mut self, addr: &str) {
        if self.conns.get(addr).is_some_and(|c| !c.is_usable()) {
            self.conns.remove(addr);
        }
    }

    /// Some node to send a keyless command to.
    fn any_node(&self) -> Option<String> {
        self.map.nodes().first().or(self.seeds.first()).cloned()
    }

    /// Runs a command on the node serving `key`, following redirections and retrying transient refusals (see
    /// the module documentation). An error reply is returned as `Err`, like [`Connection::command`].
    pub async fn command_for_key<A: AsRef<[u8]>>(&mut self, key: &[u8], args: &[A]) -> Result<Frame, ClientError> {
        let mut target = Target::Slot(Slot::for_key(key));
        let (mut redirects, mut retries, mut attempts) = (0usize, 0usize, 0usize);
        loop {
            attempts += 1;
            let step = self.attempt(&target, args).await;
            let last = match step {
                Step::Done(result) => return result,
                Step::Redirect(err) => {
                    redirects += 1;
                    target = match &err {
                        ClientError::Redirect(Redirect::Moved { slot, addr }) => {
                            self.stats.moved += 1;
                            // Refresh first: a node whose view lags could hand back the old owner, and the
                            // redirection is the fresher word on this slot.
                            self.refresh_soon().await;
                            self.map.assign(*slot, addr);
                            Target::Slot(*slot)
                        }
                        ClientError::Redirect(Redirect::Ask { addr, .. }) => {
                            self.stats.ask += 1;
                            Target::Asking(normalize_addr(addr))
                        }
                        _ => Target::Slot(Slot::for_key(key)),
                    };
                    if redirects <= self.options.max_redirects {
                        continue;
                    }
                    err
                }
                Step::Retry(err) => {
                    retries += 1;
                    // Back to the slot's owner: an ASK target that said TRYAGAIN is re-reached through the
                    // source, which knows whether the migration has finished meanwhile.
                    target = Target::Slot(Slot::for_key(key));
                    if retries <= self.options.max_retries {
                        self.stats.retries += 1;
                        tokio::time::sleep(self.backoff(retries)).await;
                        if !matches!(err, ClientError::Redirect(Redirect::TryAgain)) {
                            let _ = self.refresh_slots().await;
                        }
                        continue;
                    }
                    err
                }
            };
            return Err(ClientError::RetriesExhausted {
                attempts,
                last: Box::new(last),
            });
        }
    }

    /// One attempt of a command at `target`, classified.
    async fn attempt<A: AsRef<[u8]>>(&mut self, target: &Target, args: &[A]) -> Step {
        let (addr, asking) = match target {
            Target::Slot(slot) => match self.map.node(*slot) {
                Some(addr) => (addr.to_string(), false),
                None => return Step::Retry(ClientError::NoNode(format!("slot {slot} has no known node"))),
            },
            Target::Asking(addr) => (addr.clone(), true),
        };
        let conn = match self.conn(&addr).await {
            Ok(conn) => conn,
            // Nothing was sent, so trying again elsewhere is safe.
            Err(e) => return Step::Retry(e),
        };
        let result = if asking {
            let asking_cmd: [&[u8]; 1] = [b"ASKING"];
            let cmd = as_slices(args);
            let replies = conn.pipeline(&[&asking_cmd[..], &cmd[..]]).await;
            replies.and_then(|mut r| {
                let reply = r.pop();
                let asking = r.pop();
                match (asking, reply) {
                    (Some(asking), Some(reply)) => check_reply(asking).and_then(|_| check_reply(reply)),
                    _ => Err(ClientError::UnexpectedReply("ASKING pipeline came back short".into())),
                }
            })
        } else {
            conn.command(args).await
        };
        if result.as_ref().is_err_and(ClientError::is_transport) {
            self.drop_broken(&addr);
            // The node may be gone for good; let the next command find out where its slots went.
            self.last_refresh = None;
        }
        classify(result)
    }

    fn backoff(&self, retry: usize) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(16);
        self.options
            .retry_base_delay
            .saturating_mul(factor)
            .min(self.options.retry_max_delay)
    }

    /// Runs a command routed by its first argument after the name (`args[1]`), which is the key of every
    /// single-key command; a command without arguments goes to any node. Use
    /// [`ClusterClient::command_for_key`] when the key is elsewhere.
    pub async fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, ClientError> {
        match args.get(1) {
            Some(key) => self.command_for_key(key.as_ref(), args).await,
            None => {
                let addr = self
                    .any_node()
                    .ok_or_else(|| ClientError::NoNode("no node known".into()))?;
                self.conn(&addr).await?.command(args).await
            }
        }
    }

    /// Runs commands routed like [`ClusterClient::command`], returning their replies in the caller's order with
    /// error replies in place as [`Frame::Error`], like [`Connection::pipeline`].
    ///
    /// The commands are split by node and each node's share is sent as one pipeline, all nodes at once.
    /// Commands answered with a redirection or refusal, or whose node could not be reached, are then run one
    /// by one through [`ClusterClient::command`] in their original order. Commands of one slot thus keep
    /// their relative order; across slots a cluster never promised any. A transport failure after sending
    /// fails the whole call, since which commands ran is then unknown.
    pub async fn pipeline<C, A>(&mut self, cmds: &[C]) -> Result<Vec<Frame>, ClientError>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        let mut replies: Vec<Option<Frame>> = vec![None; cmds.len()];
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        let mut again: Vec<usize> = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            let node = match cmd.as_ref().get(1) {
                Some(key) => self.map.node_for_key(key.as_ref()).map(str::to_string),
                None => self.any_node(),
            };
            match node {
                Some(addr) => groups.entry(addr).or_default().push(i),
                None => again.push(i),
            }
        }

        // Each node's share runs in a task of its own, owning the node's connection until it returns it.
        let mut tasks = JoinSet::new();
        for (addr, indices) in groups {
            let reachable = self.conn(&addr).await.is_ok();
            let conn = if reachable { self.conns.remove(&addr) } else { None };
            let Some(mut conn) = conn else {
                again.extend(indices);
                continue;
            };
            let batch: Vec<Vec<Bytes>> = indices
                .iter()
                .map(|&i| {
                    cmds[i]
                        .as_ref()
                        .iter()
                        .map(|a| Bytes::copy_from_slice(a.as_ref()))
                        .collect()
                })
                .collect();
            tasks.spawn(async move {
                let result = conn.pipeline(&batch).await;
                (addr, conn, indices, result)
            });
        }
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            let Ok((addr, conn, indices, result)) = joined else {
                failure.get_or_insert(ClientError::Closed);
                continue;
            };
            if conn.is_usable() {
                self.conns.insert(addr, conn);
            }
            match result {
                Ok(frames) => {
                    for (i, frame) in indices.into_iter().zip(frames) {
                        if needs_rerun(&frame) {
                            again.push(i);
                        } else {
                            replies[i] = Some(frame);
                        }
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            self.last_refresh = None;
            return Err(e);
        }

        again.sort_unstable();
        for i in again {
            let reply = match self.command(cmds[i].as_ref()).await {
                Ok(frame) => frame,
                Err(e) => error_frame(e)?,
            };
            replies[i] = Some(reply);
        }
        replies
            .into_iter()
            .map(|r| r.ok_or_else(|| ClientError::UnexpectedReply("a pipeline reply went missing".into())))
            .collect()
    }
}

/// The final outcome, a redirection to follow, or a refusal worth retrying.
fn classify(result: Result<Frame, ClientError>) -> Step {
    match result {
        Err(e @ ClientError::Redirect(Redirect::Moved { .. } | Redirect::Ask { .. })) => Step::Redirect(e),
        Err(e @ ClientError::Redirect(Redirect::TryAgain | Redirect::ClusterDown | Redirect::SlotUnserved)) => {
            Step::Retry(e)
        }
        other => Step::Done(other),
    }
}

/// Whether a pipelined reply is a redirection or refusal that [`ClusterClient::command`] would follow.
fn needs_rerun(frame: &Frame) -> bool {
    matches!(
        ClientError::from_reply(frame),
        Some(ClientError::Redirect(r)) if r.retryable()
    )
}

/// How a failed command shows in a pipeline's replies: an error reply as the error frame it was, anything
/// else (transport failure, retries exhausted on a transport failure) as the whole call's failure.
fn error_frame(e: ClientError) -> Result<Frame, ClientError> {
    match e {
        ClientError::Server(text) => Ok(Frame::Error(Bytes::from(text))),
        ClientError::Redirect(r) => Ok(Frame::Error(Bytes::from(r.error_text()))),
        ClientError::RetriesExhausted { last, .. } if matches!(*last, ClientError::Redirect(_)) => error_frame(*last),
        other => Err(other),
    }
}

fn as_slices<A: AsRef<[u8]>>(args: &[A]) -> Vec<&[u8]> {
    args.iter().map(AsRef::as_ref).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use shoal_protocol::{RequestLimits, RequestParser};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What a fake node answers: given the node's index, every node's address, the command and whether
    /// `ASKING` preceded it.
    type Behaviour = dyn Fn(usize, &[String], &[String], bool) -> Frame + Send + Sync;

    /// A fake cluster: one TCP listener per node, each answering through one shared behaviour and logging
    /// every command it received (`ASKING` included) as a space-joined line.
    struct FakeCluster {
        addrs: Vec<String>,
        logs: Vec<Arc<Mutex<Vec<String>>>>,
    }

    impl FakeCluster {
        async fn start(
            nodes: usize,
            behaviour: impl Fn(usize, &[String], &[String], bool) -> Frame + Send + Sync + 'static,
        ) -> FakeCluster {
            let behaviour: Arc<Behaviour> = Arc::new(behaviour);
            let mut listeners = Vec::new();
            for _ in 0..nodes {
                listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
            }
            let addrs: Vec<String> = listeners
                .iter()
                .map(|l| l.local_addr().expect("addr").to_string())
                .collect();
            let mut logs = Vec::new();
            for (node, listener) in listeners.into_iter().enumerate() {
                let log = Arc::new(Mutex::new(Vec::new()));
                logs.push(log.clone());
                let (addrs, behaviour) = (addrs.clone(), behaviour.clone());
                tokio::spawn(async move {
                    while let Ok((sock, _)) = listener.accept().await {
                        let (addrs, behaviour, log) = (addrs.clone(), behaviour.clone(), log.clone());
                        tokio::spawn(serve(sock, node, addrs, behaviour, log));
                    }
                });
            }
            FakeCluster { addrs, logs }
        }

        fn log(&self, node: usize) -> Vec<String> {
            self.logs[node].lock().map(|l| l.clone()).unwrap_or_default()
        }

        fn count(&self, node: usize, line: &str) -> usize {
            self.log(node).iter().filter(|l| *l == line).count()
        }
    }

    async fn serve(
        mut sock: TcpStream,
        node: usize,
        addrs: Vec<String>,
        behaviour: Arc<Behaviour>,
        log: Arc<Mutex<Vec<String>>>,
    ) {
        let mut parser = RequestParser::new();
        let mut buf = BytesMut::new();
        let mut asking = false;
        loop {
            let mut out = BytesMut::new();
            while let Ok(Some(n)) = parser.parse(&buf, &RequestLimits::default()) {
                let args: Vec<String> = parser
                    .request(&buf)
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let _ = buf.split_to(n);
                if let Ok(mut log) = log.lock() {
                    log.push(args.join(" "));
                }
                if args.first().is_some_and(|c| c.eq_ignore_ascii_case("ASKING")) {
                    asking = true;
                    Frame::Simple(Bytes::from_static(b"OK")).encode(&mut out);
                } else {
                    behaviour(node, &addrs, &args, asking).encode(&mut out);
                    asking = false;
                }
            }
            if !out.is_empty() && sock.write_all(&out).await.is_err() {
                return;
            }
            if !matches!(sock.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        }
    }

    /// `CLUSTER SLOTS` for contiguous ranges: `owners[i]` serves the i-th equal share of the slots.
    fn cluster_slots(addrs: &[String], owners: &[usize]) -> Frame {
        let share = shoal_cluster::SLOT_COUNT / owners.len();
        let ranges = owners
            .iter()
            .enumerate()
            .map(|(i, &node)| {
                let (host, port) = addrs[node].rsplit_once(':').unwrap_or_default();
                let end = if i + 1 == owners.len() {
                    shoal_cluster::SLOT_COUNT - 1
                } else {
                    (i + 1) * share - 1
                };
                Frame::Array(vec![
                    Frame::Integer((i * share) as i64),
                    Frame::Integer(end as i64),
                    Frame::Array(vec![
                        Frame::Bulk(Bytes::copy_from_slice(host.as_bytes())),
                        Frame::Integer(port.parse().unwrap_or_default()),
                    ]),
                ])
            })
            .collect();
        Frame::Array(ranges)
    }

    fn is(args: &[String], cmd: &str) -> bool {
        args.first().is_some_and(|c| c.eq_ignore_ascii_case(cmd))
    }

    fn bulk(s: String) -> Frame {
        Frame::Bulk(Bytes::from(s))
    }

    fn err(s: String) -> Frame {
        Frame::Error(Bytes::from(s))
    }

    /// Node 0 serves slots 0..8191 ("bar" is 5061), node 1 serves 8192..16383 ("foo" is 12182).
    fn two_halves(node: usize, addrs: &[String], args: &[String], _asking: bool) -> Frame {
        if is(args, "CLUSTER") {
            cluster_slots(addrs, &[0, 1])
        } else {
            bulk(format!("node{node}:{}", args.get(1).cloned().unwrap_or_default()))
        }
    }

    fn fast_options() -> ClusterOptions {
        ClusterOptions {
            retry_base_delay: Duration::from_millis(1),
            retry_max_delay: Duration::from_millis(4),
            min_refresh_interval: Duration::ZERO,
            ..ClusterOptions::default()
        }
    }

    fn reply_text(frame: &Frame) -> String {
        frame
            .as_bulk()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_else(|| format!("{frame:?}"))
    }

    #[tokio::test]
    async fn each_key_goes_to_the_node_serving_its_slot() {
        let cluster = FakeCluster::start(2, two_halves).await;
        let mut client = ClusterClient::connect(&cluster.addrs[..1]).await.expect("connect");
        assert_eq!(client.slot_map().nodes(), cluster.addrs.as_slice());
        let foo = client.command(&["GET", "foo"]).await.expect("foo");
        let bar = client.command_for_key(b"bar", &["GET", "bar"]).await.expect("bar");
        assert_eq!(reply_text(&foo), "node1:foo");
        assert_eq!(reply_text(&bar), "node0:bar");
        assert_eq!(
            client.stats(),
            ClusterStats {
                refreshes: 1,
                ..ClusterStats::default()
            }
        );
    }

    #[tokio::test]
    async fn moved_corrects_the_map_retries_there_and_refreshes() {
        // Node 0 first claims every slot; once it has redirected anyone, it tells the truth.
        let moved = Arc::new(AtomicUsize::new(0));
        let seen = moved.clone();
        let cluster = FakeCluster::start(2, move |node, addrs, args, _| {
            let slot = Slot::for_key(args.get(1).map_or(b"".as_slice(), |k| k.as_bytes()));
            if is(args, "CLUSTER") {
                let owners: &[usize] = if seen.load(Ordering::SeqCst) == 0 {
                    &[0]
                } else {
                    &[0, 1]
                };
                cluster_slots(addrs, owners)
            } else if node == 0 && slot.index() >= 8192 {
                seen.fetch_add(1, Ordering::SeqCst);
                err(format!("MOVED {slot} {}", addrs[1]))
            } else {
                bulk(format!("node{node}"))
            }
        })
        .await;
        let mut client = ClusterClient::connect_with(&cluster.addrs[..1], fast_options())
            .await
            .expect("connect");
        assert_eq!(client.slot_map().node_for_key(b"foo"), Some(cluster.addrs[0].as_str()));

        assert_eq!(
            reply_text(&client.command(&["GET", "foo"]).await.expect("foo")),
            "node1"
        );
        assert_eq!(client.slot_map().node_for_key(b"foo"), Some(cluster.addrs[1].as_str()));
        // The refresh also learnt the slots that were never asked about.
        assert_eq!(
            client.slot_map().node(Slot::new(16383).unwrap_or_default()),
            Some(cluster.addrs[1].as_str())
        );

        assert_eq!(
            reply_text(&client.command(&["GET", "foo"]).await.expect("foo again")),
            "node1"
        );
        assert_eq!(cluster.count(0, "GET foo"), 1);
        assert_eq!(cluster.count(1, "GET foo"), 2);
        let stats = client.stats();
        assert_eq!((stats.moved, stats.ask, stats.refreshes), (1, 0, 2));
    }

    #[tokio::test]
    async fn ask_sends_asking_to_the_target_and_leaves_the_map_alone() {
        // Node 0 owns everything but "foo" is migrating to node 1, which serves it only after ASKING.
        let cluster = FakeCluster::start(2, |node, addrs, args, asking| {
            let slot = Slot::for_key(args.get(1).map_or(b"".as_slice(), |k| k.as_bytes()));
            match (node, is(args, "CLUSTER")) {
                (_, true) => cluster_slots(addrs, &[0]),
                (0, false) if args.get(1).is_some_and(|k| k == "foo") => err(format!("ASK {slot} {}", addrs[1])),
                (1, false) if !asking => err(format!("MOVED {slot} {}", addrs[0])),
                _ => bulk(format!("node{node}")),
            }
        })
        .await;
        let mut client = ClusterClient::connect(&cluster.addrs[..1]).await.expect("connect");
        for _ in 0..2 {
            assert_eq!(
                reply_text(&client.command(&["GET", "foo"]).await.expect("foo")),
                "node1"
            );
        }
        assert_eq!(client.slot_map().node_for_key(b"foo"), Some(cluster.addrs[0].as_str()));
        assert_eq!(cluster.count(0, "GET foo"), 2);
        assert_eq!(cluster.log(1), ["ASKING", "GET foo", "ASKING", "GET foo"]);
        assert_eq!(client.stats().ask, 2);
        assert_eq!(client.stats().moved, 0);
    }

    #[tokio::test]
    async fn tryagain_is_retried_after_a_backoff() {
        let refusals = Arc::new(AtomicUsize::new(2));
        let left = refusals.clone();
        let cluster = FakeCluster::start(1, move |_, addrs, args, _| {
            if is(args, "CLUSTER") {
                cluster_slots(addrs, &[0])
            } else if left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                err("TRYAGAIN Multiple keys request during rehashing of slot".into())
            } else {
                Frame::Simple(Bytes::from_static(b"OK"))
            }
        })
        .await;
        let mut client = ClusterClient::connect_with(&cluster.addrs, fast_options())
            .await
            .expect("connect");
        let reply = client.command(&["MSET", "{t}a", "1", "{t}b", "2"]).await.expect("mset");
        assert_eq!(reply, Frame::Simple(Bytes::from_static(b"OK")));
        assert_eq!(client.stats().retries, 2);
        assert_eq!(cluster.count(0, "MSET {t}a 1 {t}b 2"), 3);
    }

    #[tokio::test]
    async fn a_refusal_that_never_ends_is_given_up_on() {
        let cluster = FakeCluster::start(1, |_, addrs, args, _| {
            if is(args, "CLUSTER") {
                cluster_slots(addrs, &[0])
            } else {
                err("CLUSTERDOWN The cluster is down".into())
            }
        })
        .await;
        let options = fast_options();
        let max = options.max_retries;
        let mut client = ClusterClient::connect_with(&cluster.addrs, options)
            .await
            .expect("connect");
        let result = client.command(&["GET", "k"]).await;
        let Err(ClientError::RetriesExhausted { attempts, last }) = result else {
            panic!("{result:?}")
        };
        assert_eq!(attempts, max + 1);
        assert!(matches!(*last, ClientError::Redirect(Redirect::ClusterDown)));
        assert_eq!(cluster.count(0, "GET k"), max + 1);
    }

    #[tokio::test]
    async fn a_redirection_loop_is_bounded() {
        let cluster = FakeCluster::start(2, |node, addrs, args, _| {
            let slot = Slot::for_key(args.get(1).map_or(b"".as_slice(), |k| k.as_bytes()));
            if is(args, "CLUSTER") {
                cluster_slots(addrs, &[0])
            } else {
                err(format!("MOVED {slot} {}", addrs[1 - node]))
            }
        })
        .await;
        let options = fast_options();
        let max = options.max_redirects;
        let mut client = ClusterClient::connect_with(&cluster.addrs[..1], options)
            .await
            .expect("connect");
        let result = client.command(&["GET", "k"]).await;
        assert!(matches!(result, Err(ClientError::RetriesExhausted { attempts, .. }) if attempts == max + 1));
    }

    #[tokio::test]
    async fn crossslot_and_plain_errors_are_not_retried() {
        let cluster = FakeCluster::start(1, |_, addrs, args, _| {
            if is(args, "CLUSTER") {
                cluster_slots(addrs, &[0])
            } else if is(args, "MGET") {
                err("CROSSSLOT Keys in request don't hash to the same slot".into())
            } else {
                err("ERR unknown command".into())
            }
        })
        .await;
        let mut client = ClusterClient::connect(&cluster.addrs).await.expect("connect");
        let cross = client.command(&["MGET", "a", "b"]).await;
        assert!(
            matches!(cross, Err(ClientError::Redirect(Redirect::CrossSlot))),
            "{cross:?}"
        );
        let plain = client.command(&["NOPE", "a"]).await;
        assert!(matches!(plain, Err(ClientError::Server(_))), "{plain:?}");
        assert_eq!(cluster.log(0).len(), 3);
    }

    #[tokio::test]
    async fn a_pipeline_is_split_by_node_and_reassembled_in_order() {
        let cluster = FakeCluster::start(2, two_halves).await;
        let mut client = ClusterClient::connect(&cluster.addrs[..1]).await.expect("connect");
        let keys: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
        let cmds: Vec<[&str; 2]> = keys.iter().map(|k| ["GET", k.as_str()]).collect();
        let replies = client.pipeline(&cmds).await.expect("pipeline");
        for (key, reply) in keys.iter().zip(&replies) {
            let node = usize::from(Slot::for_key(key.as_bytes()).index() >= 8192);
            assert_eq!(reply_text(reply), format!("node{node}:{key}"));
        }
        assert!(cluster.log(0).iter().any(|l| l.starts_with("GET")));
        assert!(cluster.log(1).iter().any(|l| l.starts_with("GET")));
    }

    #[tokio::test]
    async fn pipelined_redirections_are_followed_and_errors_stay_in_place() {
        // A stale map: node 0 claims every slot but redirects the upper half to node 1.
        let cluster = FakeCluster::start(2, |node, addrs, args, _| {
            let slot = Slot::for_key(args.get(1).map_or(b"".as_slice(), |k| k.as_bytes()));
            if is(args, "CLUSTER") {
                cluster_slots(addrs, &[0])
            } else if is(args, "BAD") {
                err("ERR bad".into())
            } else if node == 0 && slot.index() >= 8192 {
                err(format!("MOVED {slot} {}", addrs[1]))
            } else {
                bulk(format!("node{node}:{}", args.get(1).cloned().unwrap_or_default()))
            }
        })
        .await;
        let mut client = ClusterClient::connect_with(&cluster.addrs[..1], fast_options())
            .await
            .expect("connect");
        let cmds = [["GET", "bar"], ["GET", "foo"], ["BAD", "bar"], ["GET", "bar"]];
        let replies = client.pipeline(&cmds).await.expect("pipeline");
        assert_eq!(reply_text(&replies[0]), "node0:bar");
        assert_eq!(reply_text(&replies[1]), "node1:foo");
        assert_eq!(replies[2], err("ERR bad".into()));
        assert_eq!(reply_text(&replies[3]), "node0:bar");
        assert_eq!(client.stats().moved, 1);
    }

    #[tokio::test]
    async fn a_dead_seed_is_passed_over() {
        let cluster = FakeCluster::start(2, two_halves).await;
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dead_addr = dead.local_addr().expect("addr").to_string();
        drop(dead);
        let mut client = ClusterClient::connect(&[dead_addr.as_str(), cluster.addrs[1].as_str()])
            .await
            .expect("connect");
        assert_eq!(
            reply_text(&client.command(&["GET", "bar"]).await.expect("bar")),
            "node0:bar"
        );
    }

    #[tokio::test]
    async fn a_server_without_cluster_support_is_no_cluster() {
        let cluster = FakeCluster::start(1, |_, _, _, _| {
            err("ERR This instance has cluster support disabled".into())
        })
        .await;
        let result = ClusterClient::connect(&cluster.addrs).await;
        assert!(
            matches!(result, Err(ClientError::NoNode(ref why)) if why.contains("cluster support disabled")),
            "{result:?}"
        );
    }
}
