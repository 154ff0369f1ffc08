//! INFO: the server's report in Redis's sections and field names, which monitoring tools, redis-cli and client
//! libraries parse. Fields Shoal has no equivalent for (forks, AOF, Lua) are reported with the values Redis
//! shows when the feature is idle, so parsers find every field they expect.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::config::Config;
use crate::keyspace::access::unix_ms;
use crate::memory::{allocator_stats, bytes_to_human, rss_bytes, AllocatorStats};
use crate::run::{REDIS_COMPAT_VERSION, VERSION};
use crate::server::Server;

/// Sections in the default INFO reply.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];
/// Sections added by `all`; `everything` is the same here (no modules).
const ALL_EXTRA: &[&str] = &["commandstats", "latencystats"];

/// Which sections a request names: `INFO`, `INFO default`, `INFO all`, `INFO everything`, or a list.
pub fn sections_for(args: &[&[u8]]) -> Vec<String> {
    if args.is_empty() {
        return DEFAULT_SECTIONS.iter().map(|s| s.to_string()).collect();
    }
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    };
    for a in args {
        let a = String::from_utf8_lossy(a).to_ascii_lowercase();
        match a.as_str() {
            "default" => DEFAULT_SECTIONS.iter().for_each(|s| push(s)),
            "all" | "everything" => {
                DEFAULT_SECTIONS.iter().chain(ALL_EXTRA).for_each(|s| push(s));
            }
            other => push(other),
        }
    }
    out
}

/// Renders the requested sections.
pub fn render(srv: &Server, sections: &[String]) -> String {
    // Read the allocator before this function allocates anything, so INFO does not count its own reply.
    crate::alloc::flush_thread();
    let used = srv.memory.sample();
    let mem = allocator_stats();
    let config = srv.config.read();
    let mut out = String::with_capacity(4096);
    let mut first = true;
    for s in sections {
        let mut body = String::new();
        let title = match s.as_str() {
            "server" => {
                server(srv, &config, &mut body);
                "Server"
            }
            "clients" => {
                clients(srv, &config, &mut body);
                "Clients"
            }
            "memory" => {
                memory(srv, &config, used, mem, &mut body);
                "Memory"
            }
            "persistence" => {
                persistence(srv, &mut body);
                "Persistence"
            }
            "stats" => {
                stats(srv, &mut body);
                "Stats"
            }
            "replication" => {
                replication(srv, &config, &mut body);
                "Replication"
            }
            "cpu" => {
                cpu(&mut body);
                "CPU"
            }
            "modules" => "Modules",
            "commandstats" => {
                commandstats(srv, &mut body);
                "Commandstats"
            }
            "errorstats" => {
                errorstats(srv, &mut body);
                "Errorstats"
            }
            "latencystats" => "Latencystats",
            "cluster" => {
                let _ = writeln!(body, "cluster_enabled:{}", config.cluster_enabled as u8);
                "Cluster"
            }
            "keyspace" => {
                keyspace(srv, &mut body);
                "Keyspace"
            }
            _ => continue,
        };
        if !first {
            out.push_str("\r\n");
        }
        first = false;
        let _ = write!(out, "# {title}\r\n");
        for line in body.lines() {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

fn server(srv: &Server, config: &Config, b: &mut String) {
    let uptime = srv.started.elapsed().as_secs();
    let uname = uname();
    let _ = writeln!(b, "redis_version:{REDIS_COMPAT_VERSION}");
    let _ = writeln!(b, "shoal_version:{VERSION}");
    let _ = writeln!(b, "redis_git_sha1:00000000");
    let _ = writeln!(b, "redis_git_dirty:0");
    let _ = writeln!(b, "redis_build_id:0");
    let _ = writeln!(
        b,
        "redis_mode:{}",
        if config.cluster_enabled {
            "cluster"
        } else {
            "standalone"
        }
    );
    let _ = writeln!(b, "os:{uname}");
    let _ = writeln!(b, "arch_bits:64");
    let _ = writeln!(b, "monotonic_clock:POSIX clock_gettime");
    let _ = writeln!(b, "multiplexing_api:epoll");
    let _ = writeln!(b, "atomicvar_api:c11-builtin");
    let _ = writeln!(b, "gcc_version:0.0.0");
    let _ = writeln!(b, "process_id:{}", std::process::id());
    let _ = writeln!(b, "process_supervised:no");
    let _ = writeln!(b, "run_id:{}", srv.run_id);
    let _ = writeln!(b, "tcp_port:{}", srv.port.load(Ordering::Relaxed));
    let _ = writeln!(b, "server_time_usec:{}", unix_ms() * 1000);
    let _ = writeln!(b, "uptime_in_seconds:{uptime}");
    let _ = writeln!(b, "uptime_in_days:{}", uptime / 86400);
    let _ = writeln!(b, "hz:{}", config.hz);
    let _ = writeln!(b, "configured_hz:{}", config.hz);
    let _ = writeln!(b, "lru_clock:{}", srv.now().lru_clock());
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = writeln!(b, "executable:{exe}");
    let cfg_file = config
        .config_file
        .as_ref()
        .map(|f| f.path.display().to_string())
        .unwrap_or_default();
    let _ = writeln!(b, "config_file:{cfg_file}");
    let _ = writeln!(b, "io_threads_active:0");
}

fn uname() -> String {
    // SAFETY: uname fills a zeroed struct of the right type.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return "Linux".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {} {}", field(&u.sysname), field(&u.release), field(&u.machine))
}

fn clients(srv: &Server, config: &Config, b: &mut String) {
    let all = srv.clients.all();
    let max_in = all
        .iter()
        .map(|c| c.query_buf.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let max_out = all.iter().map(|c| c.out_buf.load(Ordering::Relaxed)).max().unwrap_or(0);
    let _ = writeln!(b, "connected_clients:{}", all.len());
    let _ = writeln!(b, "cluster_connections:0");
    let _ = writeln!(b, "maxclients:{}", config.maxclients);
    let _ = writeln!(b, "client_recent_max_input_buffer:{max_in}");
    let _ = writeln!(b, "client_recent_max_output_buffer:{max_out}");
    let _ = writeln!(b, "blocked_clients:0");
    let _ = writeln!(b, "tracking_clients:0");
    let _ = writeln!(b, "clients_in_timeout_table:0");
}

fn memory(srv: &Server, config: &Config, used: u64, a: AllocatorStats, b: &mut String) {
    let rss = rss_bytes();
    let peak = srv.memory.peak().max(used);
    let total_system = system_memory();
    let _ = writeln!(b, "used_memory:{used}");
    let _ = writeln!(b, "used_memory_human:{}", bytes_to_human(used));
    let _ = writeln!(b, "used_memory_rss:{rss}");
    let _ = writeln!(b, "used_memory_rss_human:{}", bytes_to_human(rss));
    let _ = writeln!(b, "used_memory_peak:{peak}");
    let _ = writeln!(b, "used_memory_peak_human:{}", bytes_to_human(peak));
    let _ = writeln!(
        b,
        "used_memory_peak_perc:{:.2}%",
        if peak > 0 {
            used as f64 * 100.0 / peak as f64
        } else {
            100.0
        }
    );
    let _ = writeln!(b, "allocator_allocated:{}", a.allocated);
    let _ = writeln!(b, "allocator_active:{}", a.active);
    let _ = writeln!(b, "allocator_resident:{}", a.resident);
    let _ = writeln!(b, "total_system_memory:{total_system}");
    let _ = writeln!(b, "total_system_memory_human:{}", bytes_to_human(total_system));
    let _ = writeln!(b, "maxmemory:{}", config.maxmemory);
    let _ = writeln!(b, "maxmemory_human:{}", bytes_to_human(config.maxmemory));
    let _ = writeln!(b, "maxmemory_policy:{}", config.maxmemory_policy.as_str());
    let ratio = |x: u64, y: u64| if y > 0 { x as f64 / y as f64 } else { 0.0 };
    let _ = writeln!(b, "allocator_frag_ratio:{:.2}", ratio(a.active, a.allocated));
    let _ = writeln!(b, "allocator_frag_bytes:{}", a.active.saturating_sub(a.allocated));
    let _ = writeln!(b, "allocator_rss_ratio:{:.2}", ratio(a.resident, a.active));
    let _ = writeln!(b, "allocator_rss_bytes:{}", a.resident.saturating_sub(a.active));
    let _ = writeln!(b, "rss_overhead_ratio:{:.2}", ratio(rss, a.resident));
    let _ = writeln!(b, "rss_overhead_bytes:{}", rss.saturating_sub(a.resident));
    let _ = writeln!(b, "mem_fragmentation_ratio:{:.2}", ratio(rss, used));
    let _ = writeln!(b, "mem_fragmentation_bytes:{}", rss as i64 - used as i64);
    let _ = writeln!(b, "mem_not_counted_for_evict:0");
    let _ = writeln!(b, "mem_replication_backlog:{}", srv.repl.backlog_memory());
    let _ = writeln!(b, "mem_clients_slaves:0");
    let _ = writeln!(b, "mem_clients_normal:0");
    let _ = writeln!(b, "mem_allocator:jemalloc-5.3.0");
    let _ = writeln!(b, "active_defrag_running:0");
    let _ = writeln!(
        b,
        "lazyfree_pending_objects:{}",
        srv.lazyfree_pending.load(Ordering::Relaxed)
    );
    let _ = writeln!(b, "lazyfreed_objects:{}", srv.lazyfreed.load(Ordering::Relaxed));
}

fn system_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages.max(0) as u64) * (size.max(0) as u64)
}

fn persistence(srv: &Server, b: &mut String) {
    // Shoal is a cache: nothing is persisted. These are the values Redis shows with persistence off.
    let _ = writeln!(b, "loading:0");
    let _ = writeln!(b, "async_loading:0");
    let _ = writeln!(b, "persistence_enabled:0");
    let _ = writeln!(b, "rdb_changes_since_last_save:0");
    let _ = writeln!(b, "rdb_bgsave_in_progress:0");
    let _ = writeln!(b, "rdb_last_save_time:{}", srv.started_unix_ms / 1000);
    let _ = writeln!(b, "rdb_last_bgsave_status:ok");
    let _ = writeln!(b, "rdb_last_bgsave_time_sec:-1");
    let _ = writeln!(b, "rdb_current_bgsave_time_sec:-1");
    let _ = writeln!(b, "rdb_saves:0");
    let _ = writeln!(b, "aof_enabled:0");
    let _ = writeln!(b, "aof_rewrite_in_progress:0");
    let _ = writeln!(b, "aof_rewrite_scheduled:0");
    let _ = writeln!(b, "aof_last_rewrite_time_sec:-1");
    let _ = writeln!(b, "aof_current_rewrite_time_sec:-1");
    let _ = writeln!(b, "aof_last_bgrewrite_status:ok");
    let _ = writeln!(b, "aof_rewrites:0");
    let _ = writeln!(b, "aof_last_write_status:ok");
}

fn stats(srv: &Server, b: &mut String) {
    let snap = srv.stats.snapshot();
    let mut ks = crate::keyspace::ShardStats::default();
    for db in srv.keyspace.iter() {
        ks += db.stats();
    }
    let m = &srv.instantaneous;
    let _ = writeln!(
        b,
        "total_connections_received:{}",
        srv.stats.connections_received.load(Ordering::Relaxed)
    );
    let _ = writeln!(b, "total_commands_processed:{}", snap.total_commands());
    let _ = writeln!(b, "instantaneous_ops_per_sec:{}", m.ops_per_sec.load(Ordering::Relaxed));
    let _ = writeln!(b, "total_net_input_bytes:{}", snap.net_input_bytes);
    let _ = writeln!(b, "total_net_output_bytes:{}", snap.net_output_bytes);
    let repl = &srv.repl.stats;
    let _ = writeln!(
        b,
        "total_net_repl_input_bytes:{}",
        repl.input_bytes.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        b,
        "total_net_repl_output_bytes:{}",
        repl.output_bytes.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        b,
        "instantaneous_input_kbps:{:.2}",
        m.input_kbps_x100.load(Ordering::Relaxed) as f64 / 100.0
    );
    let _ = writeln!(
        b,
        "instantaneous_output_kbps:{:.2}",
        m.output_kbps_x100.load(Ordering::Relaxed) as f64 / 100.0
    );
    let _ = writeln!(b, "instantaneous_input_repl_kbps:0.00");
    let _ = writeln!(b, "instantaneous_output_repl_kbps:0.00");
    let _ = writeln!(
        b,
        "rejected_connections:{}",
        srv.stats.rejected_connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(b, "sync_full:{}", repl.sync_full.load(Ordering::Relaxed));
    let _ = writeln!(b, "sync_partial_ok:{}", repl.sync_partial_ok.load(Ordering::Relaxed));
    let _ = writeln!(b, "sync_partial_err:{}", repl.sync_partial_err.load(Ordering::Relaxed));
    let _ = writeln!(b, "expired_keys:{}", ks.expired);
    let _ = writeln!(
        b,
        "expired_stale_perc:{:.2}",
        srv.stats.expired_stale_perc.load(Ordering::Relaxed) as f64
    );
    let _ = writeln!(b, "expired_time_cap_reached_count:0");
    let _ = writeln!(b, "evicted_keys:{}", ks.evicted);
    let _ = writeln!(b, "evicted_clients:0");
    let _ = writeln!(b, "keyspace_hits:{}", ks.hits);
    let _ = writeln!(b, "keyspace_misses:{}", ks.misses);
    let _ = writeln!(b, "pubsub_channels:0");
    let _ = writeln!(b, "pubsub_patterns:0");
    let _ = writeln!(b, "pubsubshard_channels:0");
    let _ = writeln!(b, "latest_fork_usec:0");
    let _ = writeln!(b, "total_forks:0");
    let _ = writeln!(b, "unexpected_error_replies:0");
    let _ = writeln!(b, "total_error_replies:{}", snap.total_errors());
}

fn replication(srv: &Server, config: &Config, b: &mut String) {
    srv.repl.render_info(config, b);
}

fn cpu(b: &mut String) {
    // SAFETY: getrusage fills a zeroed struct of the right type.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let _ = writeln!(b, "used_cpu_sys:{:.6}", secs(ru.ru_stime));
    let _ = writeln!(b, "used_cpu_user:{:.6}", secs(ru.ru_utime));
    let _ = writeln!(b, "used_cpu_sys_children:0.000000");
    let _ = writeln!(b, "used_cpu_user_children:0.000000");
}

fn commandstats(srv: &Server, b: &mut String) {
    let snap = srv.stats.snapshot();
    for cmd in srv.commands.all() {
        let Some(&[calls, usec, rejected, failed]) = snap.commands.get(cmd.id) else {
            continue;
        };
        if calls == 0 && rejected == 0 && failed == 0 {
            continue;
        }
        let per = if calls > 0 { usec as f64 / calls as f64 } else { 0.0 };
        let _ = writeln!(
            b,
            "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls={rejected},failed_calls={failed}",
            cmd.name
        );
    }
}

fn errorstats(srv: &Server, b: &mut String) {
    let snap = srv.stats.snapshot();
    let mut codes: Vec<_> = snap.errors.into_iter().collect();
    codes.sort();
    for (code, n) in codes {
        let _ = writeln!(b, "errorstat_{code}:count={n}");
    }
}

fn keyspace(srv: &Server, b: &mut String) {
    let now = unix_ms();
    for (i, db) in srv.keyspace.iter().enumerate() {
        let (keys, expires) = db.counts();
        if keys == 0 {
            continue;
        }
        let avg_ttl = db.average_ttl(now);
        let _ = writeln!(b, "db{i}:keys={keys},expires={expires},avg_ttl={avg_ttl}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_all_sections() {
        assert_eq!(sections_for(&[]).len(), DEFAULT_SECTIONS.len());
        let all = sections_for(&[b"ALL"]);
        assert!(all.contains(&"commandstats".to_string()));
        assert_eq!(sections_for(&[b"memory", b"MEMORY"]), vec!["memory".to_string()]);
    }
}
