//! A six-node shoal-server cluster for the end-to-end cluster tests (`cluster_*.rs`): three primaries and three
//! replicas on free loopback ports, formed the way an operator does it, with
//! `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`.
//!
//! The nodes are managed here rather than through `shoal_tests::TestServer` because a node must be restartable
//! on the same port, in the same directory, with the same `nodes.conf`. Each node is killed (SIGKILL, by its
//! pid) when the [`Cluster`] is dropped, and by `PR_SET_PDEATHSIG` if the thread that started it dies; the logs
//! of every node are printed when the test is failing. Every wait is bounded.
//!
//! This directory is a module shared by the test files (`mod cluster_support;`), not a test target of its own.

#![allow(dead_code)] // Each test file uses a different part of it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use shoal_tests::{free_port, redis_cli, shoal_server_bin, RawConn, RunOutput, STARTUP_TIMEOUT};

/// How many nodes the test cluster has: three shards of a primary and a replica.
pub const NODES: usize = 6;
/// `cluster-node-timeout` of the test nodes: failures are detected within a few seconds.
pub const NODE_TIMEOUT_MS: u64 = 2000;
/// How long `redis-cli --cluster create` may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the cluster may take to report `cluster_state:ok` everywhere.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);

/// One shoal-server node: its ports and directory stay the same across restarts.
pub struct Node {
    pub port: u16,
    pub bus_port: u16,
    pub dir: PathBuf,
    /// Flags added to every start of this node (the cluster's `start_with` arguments).
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Starts the node (again) in its directory and waits until it answers PING.
    pub fn start(&mut self) -> Result<(), String> {
        self.kill();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("log file: {e}"))?;
        let err_log = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let mut cmd = Command::new(shoal_server_bin());
        cmd.args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .arg("--cluster-node-timeout")
            .arg(NODE_TIMEOUT_MS.to_string())
            .arg("--cluster-port")
            .arg(self.bus_port.to_string())
            .args(&self.extra_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("cannot start shoal-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("node on port {} exited during startup: {status}", self.port));
            }
            if let Ok(mut c) = RawConn::connect_timeout(self.port, Duration::from_millis(500)) {
                c.set_timeout(Duration::from_millis(500));
                if c.command(&["PING"]).is_ok_and(|r| r.starts_with(b"+")) {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!("node on port {} does not answer PING", self.port))
    }

    /// Kills the node (SIGKILL by its pid) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn conn(&self) -> RawConn {
        RawConn::connect(self.port).unwrap_or_else(|e| panic!("connect to node {}: {e}", self.port))
    }

    /// A command's reply as text (bulk and verbatim bodies, simple strings, errors with their `-`).
    pub fn text(&self, args: &[&str]) -> String {
        reply_text(&self.conn().cmd(args))
    }

    /// A field of this node's CLUSTER INFO.
    pub fn info_field(&self, field: &str) -> Option<String> {
        let info = self.text(&["CLUSTER", "INFO"]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
    }

    /// A field of this node's INFO replication (empty when absent).
    pub fn repl_field(&self, name: &str) -> String {
        self.text(&["INFO", "replication"])
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or("")
            .trim()
            .to_string()
    }

    pub fn my_id(&self) -> String {
        self.text(&["CLUSTER", "MYID"])
    }

    pub fn log(&self) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_end(&mut s);
        }
        let start = s.len().saturating_sub(32 * 1024);
        String::from_utf8_lossy(&s[start..]).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A reply's payload as text: the body of a bulk or verbatim string, a simple string, `-ERR ...` for errors.
pub fn reply_text(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    match raw.first() {
        Some(b'$') | Some(b'=') => {
            let body = s.split_once("\r\n").map(|(_, b)| b).unwrap_or("");
            let body = body.strip_suffix("\r\n").unwrap_or(body);
            if raw.first() == Some(&b'=') {
                body.get(4..).unwrap_or("").to_owned()
            } else {
                body.to_owned()
            }
        }
        Some(b'+') | Some(b':') => s[1..].trim_end().to_owned(),
        _ => s.trim_end().to_owned(),
    }
}

/// SIGKILL for the node when the thread that started it dies (a test killed by a timeout).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The running cluster. Nodes 0-2 were given the slots by `redis-cli --cluster create`; 3-5 are their replicas.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// How long `redis-cli --cluster create` took to report success.
    pub create_time: Duration,
    // Declared last: removed once the nodes are gone.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts six nodes and forms them into a cluster; returns once every node reports `cluster_state:ok`.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// [`Cluster::start`] with more `shoal-server` flags for every node (kept across restarts).
    pub fn start_with(extra_args: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("shoal-cluster-")
            .tempdir()
            .expect("tempdir");
        let mut nodes: Vec<Node> = Vec::new();
        let mut taken = Vec::new();
        for i in 0..NODES {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut last = String::new();
            let mut started = None;
            // A port found free may be taken before the node binds it: try other ports.
            for _attempt in 0..3 {
                let (port, bus_port) = two_free_ports(&mut taken);
                let mut node = Node {
                    port,
                    bus_port,
                    dir: node_dir.clone(),
                    extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
                    child: None,
                };
                match node.start() {
                    Ok(()) => {
                        started = Some(node);
                        break;
                    }
                    Err(e) => last = format!("{e}\n{}", node.log()),
                }
            }
            match started {
                Some(n) => nodes.push(n),
                None => panic!("node {i} did not start: {last}"),
            }
        }
        let mut cluster = Cluster {
            nodes,
            create_time: Duration::ZERO,
            dir,
        };
        let addrs: Vec<String> = cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = redis_cli(cluster.nodes[0].port, &args, None, CREATE_TIMEOUT);
        cluster.create_time = out.elapsed;
        assert!(
            out.success() && out.stdout_str().contains("[OK] All 16384 slots covered."),
            "redis-cli --cluster create failed ({:?} after {:.1?})\nstdout:\n{}\nstderr:\n{}",
            out.status,
            out.elapsed,
            out.stdout_str(),
            out.stderr_str()
        );
        eprintln!(
            "redis-cli --cluster create reported success after {} ms",
            cluster.create_time.as_millis()
        );
        cluster.wait_state_ok(CONVERGE_TIMEOUT);
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until every node reports `cluster_state:ok`, knows all six nodes and sees three replicas (a
    /// replica's new role reaches the others by gossip, after `redis-cli --cluster create` has returned).
    pub fn wait_state_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let states: Vec<String> = self
                .nodes
                .iter()
                .map(|n| {
                    let state = n.info_field("cluster_state").unwrap_or_default();
                    let known = n.info_field("cluster_known_nodes").unwrap_or_default();
                    let replicas = n
                        .text(&["CLUSTER", "NODES"])
                        .lines()
                        .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.split(',').any(|f| f == "slave")))
                        .count();
                    format!("{}:{state}/{known}/{replicas}", n.port)
                })
                .collect();
            if states.iter().all(|s| s.ends_with(":ok/6/3")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not converge within {timeout:?} (port:state/known nodes/replicas): {states:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node serving `key`'s slot, by CLUSTER KEYSLOT and the slot ranges of CLUSTER NODES.
    pub fn owner_of(&self, key: &str) -> &Node {
        let slot: u16 = self.nodes[0]
            .text(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT is a number");
        let nodes = self.nodes[0].text(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(addr) = fields.get(1) else { continue };
            let port: Option<u16> = addr
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok());
            let serves = fields.iter().skip(8).any(|r| match r.split_once('-') {
                Some((a, b)) => a.parse::<u16>().is_ok_and(|a| a <= slot) && b.parse::<u16>().is_ok_and(|b| slot <= b),
                None => r.parse::<u16>() == Ok(slot),
            });
            if serves {
                if let Some(n) = self.nodes.iter().find(|n| Some(n.port) == port) {
                    return n;
                }
            }
        }
        panic!("no node serves slot {slot} of {key}:\n{nodes}");
    }

    /// `redis-cli --cluster check`, retried for up to 5 s until `clean` accepts it: right after a failover or a
    /// heal one node may still list the new primary with its old replica flag (a role change travels with that
    /// node's own next ping, as in Redis). Returns the last output.
    pub fn check_until(&self, clean: impl Fn(&RunOutput) -> bool) -> RunOutput {
        let mut out = self.check();
        for _ in 0..20 {
            if clean(&out) {
                break;
            }
            thread::sleep(Duration::from_millis(250));
            out = self.check();
        }
        out
    }

    /// Asserts that `redis-cli --cluster check` passes without an `[ERR]` line, retried as in
    /// [`Cluster::check_until`]; `when` names the moment in the failure message.
    pub fn assert_check_clean(&self, when: &str) {
        let clean = |o: &RunOutput| o.success() && !o.stdout_str().contains("[ERR]");
        let check = self.check_until(clean);
        assert!(
            clean(&check),
            "redis-cli --cluster check {when} ({:?}):\n{}\n{}",
            check.status,
            check.stdout_str(),
            check.stderr_str()
        );
    }

    /// `redis-cli --cluster check` against the first node.
    pub fn check(&self) -> RunOutput {
        let addr = format!("127.0.0.1:{}", self.nodes[0].port);
        redis_cli(
            self.nodes[0].port,
            &["--cluster", "check", &addr],
            None,
            Duration::from_secs(20),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if thread::panicking() {
            for n in &self.nodes {
                eprintln!(
                    "--- shoal-server cluster node port {} bus {} ({}) log ---\n{}\n--- end ---",
                    n.port,
                    n.bus_port,
                    n.dir.display(),
                    n.log()
                );
            }
        }
    }
}

/// A client port and a bus port, both free a moment ago and distinct from the ones already handed out.
fn two_free_ports(taken: &mut Vec<u16>) -> (u16, u16) {
    let mut pick = || loop {
        let p = free_port();
        if !taken.contains(&p) {
            taken.push(p);
            return p;
        }
    };
    (pick(), pick())
}

/// A client thread that writes while a test breaks the cluster, recording what it saw in a shared ledger. It
/// stops when finished, or when dropped (a test failing midway stops its writer too).
pub struct Recorder<L> {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ledger: std::sync::Arc<std::sync::Mutex<L>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<L: Default + Send + 'static> Recorder<L> {
    /// Runs `body(stop, ledger)` on its own thread; `body` returns once `stop` is set.
    pub fn spawn(
        body: impl FnOnce(&std::sync::atomic::AtomicBool, &std::sync::Mutex<L>) + Send + 'static,
    ) -> Recorder<L> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ledger = std::sync::Arc::new(std::sync::Mutex::new(L::default()));
        let (s, l) = (stop.clone(), ledger.clone());
        let thread = thread::spawn(move || body(&s, &l));
        Recorder {
            stop,
            ledger,
            thread: Some(thread),
        }
    }

    /// The ledger so far.
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, L> {
        self.ledger.lock().expect("ledger")
    }

    /// Stops the thread, waits for it, and returns the ledger.
    pub fn finish(mut self) -> L {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer thread");
        }
        std::mem::take(&mut *self.ledger())
    }
}

impl<L> Drop for Recorder<L> {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
