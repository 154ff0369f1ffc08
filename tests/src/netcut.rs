//! Network partitions between server processes on loopback, for the chaos tests.
//!
//! Every node listens on 127.0.0.1, so addresses cannot tell nodes apart; processes can. A [`NetCut`] puts
//! the cut-off node in a cgroup (v2) of its own and the other nodes in another, and adds iptables OUTPUT rules
//! (`-m cgroup --path`) dropping what the two sides send to each other's client and bus ports. Test clients are
//! in neither group, so they still reach every node — exactly the partition the issue asks about: a primary
//! cut off from the cluster while its clients still reach it.
//!
//! The rules and groups are the test's own, named after its process id and a counter, and are removed when the
//! `NetCut` is dropped, also when the test panics.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

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
    rules: Vec<Vec<String>>,
    moved: Vec<u32>,
}

fn iptables(args: &[String]) -> Result<(), String> {
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

/// Whether this machine lets a test cut the network (root, cgroup2, iptables with the cgroup match).
pub fn available() -> Result<(), String> {
    if !std::path::Path::new(CGROUP2_ROOT).join("cgroup.procs").exists() {
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

impl NetCut {
    /// Cuts `a` off from `b` in both directions.
    pub fn between(a: &Side, b: &Side) -> Result<NetCut, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut cut = NetCut {
            groups: Vec::new(),
            rules: Vec::new(),
            moved: Vec::new(),
        };
        let names = [
            format!("shoal-test-{}-{n}-a", std::process::id()),
            format!("shoal-test-{}-{n}-b", std::process::id()),
        ];
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
        for (from, to) in [(&names[0], b), (&names[1], a)] {
            for port in &to.ports {
                let rule: Vec<String> = ["-I", "OUTPUT", "-m", "cgroup", "--path", from, "-p", "tcp", "--dport"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([port.to_string(), "-j".into(), "DROP".into()])
                    .collect();
                iptables(&rule)?;
                cut.rules.push(rule);
            }
        }
        Ok(cut)
    }

    /// Heals the network now (also done on drop).
    pub fn heal(&mut self) {
        for mut rule in self.rules.drain(..) {
            if let Some(first) = rule.first_mut() {
                *first = "-D".into();
            }
            let _ = iptables(&rule);
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
