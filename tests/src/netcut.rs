//! Network partitions between server processes on loopback, for the chaos tests.
//!
//! Every node listens on 127.0.0.1, so addresses cannot tell nodes apart; processes can. A [`NetCut`] puts
//! the cut-off node in a cgroup (v2) of its own and the other nodes in another, and adds iptables OUTPUT rules
//! (`-m cgroup --path`) dropping what the two sides send to each other's client and bus ports. Test clients are
//! in neither group, so they still reach every node — exactly the partition the issue asks about: a primary
//! cut off from the cluster while its clients still reach it.
//!
//! The cgroup rules alone only cut connections opened after the cut: with cgroup2 a socket keeps the cgroup of
//! the process that created it (an accepted socket, its listener's), so moving a process does not move its open
//! sockets, and the bus and replication links already established would keep flowing. So the cut also finds
//! the connections open between the two sides (their pids' sockets in `/proc/<pid>/fd`, matched with
//! `/proc/net/tcp`) and drops each by its exact port pair, both directions. All the rules go in at once, in one
//! `iptables-restore --noflush` batch.
//!
//! The rules and groups are the test's own, named after its process id and a counter (`shoal-netcut-<pid>-<n>`,
//! in the group names and in a comment on every rule), and are all removed when the `NetCut` heals or is
//! dropped, also when the test panics.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

/// How many times an `iptables-restore` batch is tried (a batch is all or nothing, so a retry is safe).
const RESTORE_ATTEMPTS: usize = 3;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One side of a cut: processes and the ports the other side must not reach.
pub struct Side {
    pub pids: Vec<u32>,
    /// Client and bus ports of these processes.
    pub ports: Vec<u16>,
}

/// An active partition; dropping it heals the network.
pub struct NetCut {
    groups: Vec<PathBuf>,
    /// The rules in place, as `OUTPUT ...` specifications (no `-I`/`-D`).
    rules: Vec<String>,
    moved: Vec<u32>,
    /// The connections that were open between the two sides when the cut began, as (port on `a`'s end, port on
    /// `b`'s end).
    established: Vec<(u16, u16)>,
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `iptables-restore --noflush` once on the filter table lines given: all of them apply, or none.
fn iptables_restore_once(input: &str) -> Result<(), String> {
    let mut child = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("iptables-restore: {e}"))?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input.as_bytes()))
        .unwrap_or_else(|| Err(std::io::Error::other("no stdin")));
    let out = child.wait_with_output().map_err(|e| format!("iptables-restore: {e}"))?;
    written.map_err(|e| format!("iptables-restore stdin: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables-restore: {}\n{input}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Applies `op` (`-I` or `-D`) to every rule of `rules` in one batch, tried a few times.
fn iptables_restore(op: &str, rules: &[String]) -> Result<(), String> {
    let mut input = String::from("*filter\n");
    for r in rules {
        input.push_str(op);
        input.push(' ');
        input.push_str(r);
        input.push('\n');
    }
    input.push_str("COMMIT\n");
    let mut last = Err("never tried".to_owned());
    for attempt in 0..RESTORE_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        last = iptables_restore_once(&input);
        if last.is_ok() {
            break;
        }
    }
    last
}

/// Whether this machine lets a test cut the network (root, cgroup2, iptables with the cgroup match).
pub fn available() -> Result<(), String> {
    if !Path::new(CGROUP2_ROOT).join("cgroup.procs").exists() {
        return Err(format!("no cgroup2 hierarchy at {CGROUP2_ROOT}"));
    }
    let out = Command::new("iptables")
        .arg("-S")
        .arg("OUTPUT")
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if !out.status.success() {
        return Err(format!("iptables not usable: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// The TCP sockets (other than listening ones) of this network namespace: (local port, remote port, inode), from
/// `/proc/net/tcp`.
fn tcp_sockets() -> Result<Vec<(u16, u16, u64)>, String> {
    let table = std::fs::read_to_string("/proc/net/tcp").map_err(|e| format!("read /proc/net/tcp: {e}"))?;
    let port = |addr: &str| addr.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // State 0A is LISTEN: not a connection.
            if f.len() < 10 || f[3] == "0A" {
                return None;
            }
            Some((port(f[1])?, port(f[2])?, f[9].parse().ok()?))
        })
        .collect())
}

/// The socket inodes a process holds (all its threads share the descriptor table).
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                let t = target.to_string_lossy();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(n) = n.parse() {
                        inodes.insert(n);
                    }
                }
            }
        }
    }
    inodes
}

/// The connections between processes of `a` and processes of `b`, as (port on `a`'s end, port on `b`'s end): a
/// socket of `a` whose peer is a listening port of `b`, or a socket of `b` with the mirror ports.
fn connections_between(a: &Side, b: &Side) -> Result<Vec<(u16, u16)>, String> {
    let sockets = tcp_sockets()?;
    let inodes = |pids: &[u32]| -> HashSet<u64> { pids.iter().flat_map(|p| socket_inodes(*p)).collect() };
    let (a_inodes, b_inodes) = (inodes(&a.pids), inodes(&b.pids));
    let b_pairs: HashSet<(u16, u16)> = sockets
        .iter()
        .filter(|(_, _, i)| b_inodes.contains(i))
        .map(|(l, r, _)| (*l, *r))
        .collect();
    let mut found: Vec<(u16, u16)> = sockets
        .iter()
        .filter(|(l, r, i)| a_inodes.contains(i) && (b.ports.contains(r) || b_pairs.contains(&(*r, *l))))
        .map(|(l, r, _)| (*l, *r))
        .collect();
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

impl NetCut {
    /// Cuts `a` off from `b` in both directions: the connections opened from now on and those already open.
    pub fn between(a: &Side, b: &Side) -> Result<NetCut, String> {
        let tag = format!(
            "shoal-netcut-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // Dropped on an early return: whatever was done so far is undone.
        let mut cut = NetCut {
            groups: Vec::new(),
            rules: Vec::new(),
            moved: Vec::new(),
            established: Vec::new(),
        };
        let names = [format!("{tag}-a"), format!("{tag}-b")];
        for (side, name) in [a, b].iter().zip(names.iter()) {
            let dir = PathBuf::from(CGROUP2_ROOT).join(name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create cgroup {}: {e}", dir.display()))?;
            cut.groups.push(dir.clone());
            for pid in &side.pids {
                std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                    .map_err(|e| format!("move {pid} into {}: {e}", dir.display()))?;
                cut.moved.push(*pid);
            }
        }
        // Every socket created from now on by either side is in its group: these rules stop the new connections.
        let mut rules = Vec::new();
        for (from, to) in [(&names[0], b), (&names[1], a)] {
            for port in &to.ports {
                rules.push(format!(
                    "OUTPUT -m cgroup --path {from} -p tcp --dport {port} -m comment --comment {tag} -j DROP"
                ));
            }
        }
        // The sockets created before are not (nor the ones accepted by the listeners): the connections open now
        // are cut by their port pairs.
        cut.established = connections_between(a, b)?;
        for (pa, pb) in &cut.established {
            for (from, to) in [(pa, pb), (pb, pa)] {
                rules.push(format!(
                    "OUTPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp --sport {from} --dport {to} -m comment --comment \
                     {tag} -j DROP"
                ));
            }
        }
        iptables_restore("-I", &rules).map_err(|e| format!("cutting the network: {e}"))?;
        cut.rules = rules;
        Ok(cut)
    }

    /// How many connections were open between the two sides when the cut began (each one is cut too).
    pub fn established(&self) -> usize {
        self.established.len()
    }

    /// Those connections, as (port on the first side's end, port on the second side's end).
    pub fn established_connections(&self) -> &[(u16, u16)] {
        &self.established
    }

    /// Heals the network now (also done on drop): removes every rule the cut added and the groups.
    pub fn heal(&mut self) {
        if !self.rules.is_empty() {
            if let Err(batch) = iptables_restore("-D", &self.rules) {
                // The batch is all or nothing: one rule gone already (deleted by hand, say) fails it. Rule by rule.
                eprintln!("netcut: removing the rules in one batch failed, one by one: {batch}");
                for rule in &self.rules {
                    let args: Vec<&str> = std::iter::once("-D").chain(rule.split_whitespace()).collect();
                    if let Err(e) = iptables(&args) {
                        eprintln!("netcut: {e}");
                    }
                }
            }
            self.rules.clear();
        }
        // Back to the root group, so the groups can be removed.
        for pid in self.moved.drain(..) {
            let _ = std::fs::write(PathBuf::from(CGROUP2_ROOT).join("cgroup.procs"), pid.to_string());
        }
        for dir in self.groups.drain(..) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl Drop for NetCut {
    fn drop(&mut self) {
        self.heal();
    }
}
