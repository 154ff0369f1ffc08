//! The server family: INFO, CONFIG, TIME, DEBUG and SHUTDOWN — commands about the server rather than the data.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::args;
use super::{Ctx, Handler};
use crate::client::Action;
use crate::error::{self, CmdError, CmdResult};
use crate::info;
use crate::keyspace::Key;

fn info_cmd(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let sections = info::sections_for(&args[1..]);
    let text = info::render(ctx.srv, &sections);
    ctx.out.verbatim(b"txt", text.as_bytes());
    Ok(())
}

fn config_get(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let pairs = ctx.srv.config.read().get(&args[2..]);
    ctx.out.map(pairs.len());
    for (name, value) in pairs {
        ctx.out.bulk(name.as_bytes());
        ctx.out.bulk(value.as_bytes());
    }
    Ok(())
}

fn config_set(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let rest = &args[2..];
    if !rest.len().is_multiple_of(2) {
        return Err(CmdError::syntax());
    }
    let pairs: Vec<(&[u8], &[u8])> = rest.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    let mut config = ctx.srv.config.write();
    let local = ctx.client.handle.addr.ip().is_loopback();
    let changed = config
        .set_from_client(&pairs, local)
        .map_err(|e| CmdError::Owned(e.wire_text()))?;
    ctx.srv.settings.load(&config);
    ctx.srv.repl.refresh_config(&config);
    if config.min_replicas_to_ack > 0 {
        ctx.srv.repl.start_stream(ctx.srv);
    }
    if changed.contains(&"dir") {
        let _ = std::env::set_current_dir(&config.dir);
    }
    let cluster_options = (
        config.cluster_require_full_coverage,
        config.cluster_allow_replica_migration,
        config.cluster_replica_no_failover,
    );
    drop(config);
    if let Some(bus) = ctx.srv.cluster.get() {
        let (coverage, migration, no_failover) = cluster_options;
        bus.with_node(|n| n.set_runtime_options(coverage, migration, no_failover));
    }
    ctx.out.ok();
    Ok(())
}

fn config_resetstat(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    ctx.srv.stats.reset();
    for db in ctx.srv.keyspace.iter() {
        db.reset_stats();
    }
    ctx.srv.memory.reset_peak();
    ctx.out.ok();
    Ok(())
}

fn config_rewrite(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    ctx.srv
        .config
        .read()
        .rewrite()
        .map_err(|e| CmdError::Owned(e.wire_text()))?;
    ctx.out.ok();
    Ok(())
}

fn config_help(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let lines: &[&str] = &[
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET <pattern>",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "SET <directive> <value>",
        "    Set the configuration <directive> to <value>.",
        "RESETSTAT",
        "    Reset statistics reported by the INFO command.",
        "REWRITE",
        "    Rewrite the configuration file.",
        "HELP",
        "    Print this help.",
    ];
    ctx.out.array(lines.len());
    for l in lines {
        ctx.out.simple(l.as_bytes());
    }
    Ok(())
}

fn time(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ctx.out.array(2);
    ctx.out.bulk_i64(d.as_secs() as i64);
    ctx.out.bulk_i64(d.subsec_micros() as i64);
    Ok(())
}

fn shutdown(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let mut abort = false;
    for a in &args[1..] {
        match args::lower(a).as_str() {
            "nosave" | "save" | "now" | "force" => {}
            "abort" => abort = true,
            _ => return Err(CmdError::syntax()),
        }
    }
    if abort {
        return Err(CmdError::msg("ERR No shutdown in progress."));
    }
    // Nothing to persist: shut down at once. Like Redis, a successful SHUTDOWN sends no reply.
    tracing::warn!("User requested shutdown...");
    ctx.client.action = Some(Action::Shutdown);
    Ok(())
}

/// DEBUG is refused unless `enable-debug-command` allows this client, as in Redis 7.
fn debug_allowed(ctx: &Ctx<'_>) -> bool {
    match ctx.srv.settings.enable_debug.load(Ordering::Relaxed) {
        1 => true,
        2 => ctx.client.handle.addr.ip().is_loopback(),
        _ => false,
    }
}

fn debug(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if !debug_allowed(ctx) {
        return Err(CmdError::Static(error::DEBUG_DISABLED));
    }
    let sub = args::lower(args[1]);
    match (sub.as_str(), args.len()) {
        ("sleep", 3) => {
            let secs = args::float(args[2])?;
            let d = Duration::from_secs_f64(secs.clamp(0.0, 3600.0 * 24.0));
            super::client::sleep_server(ctx, d);
            ctx.out.ok();
        }
        ("set-active-expire", 3) => {
            let on = args::int(args[2])? != 0;
            ctx.srv.settings.active_expire_enabled.store(on, Ordering::Relaxed);
            ctx.out.ok();
        }
        ("object", 3) => {
            let key = Key::new(args[2]);
            let db = ctx.db();
            let mut shard = db.lock(&key);
            let Some(pos) = shard.find(&key, &ctx.now) else {
                return Err(CmdError::Static(error::NO_SUCH_KEY));
            };
            let e = shard.entry(&key, pos);
            let value = e.str_value();
            let encoding = e.encoding();
            let idle = ctx.now.idle_ms(e.access()) / 1000;
            let line = format!(
                "Value at:{:p} refcount:1 encoding:{encoding} serializedlength:{} lru:{} lru_seconds_idle:{idle}",
                e as *const _,
                value.len().max(1),
                e.access()
            );
            drop(shard);
            ctx.out.simple(line.as_bytes());
        }
        ("help", _) => {
            let lines: &[&str] = &[
                "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "OBJECT <key>",
                "    Show low level info about the `key` and associated value.",
                "SET-ACTIVE-EXPIRE <0|1>",
                "    Setting it to 0 disables expiring keys in background when they are not accessed.",
                "SLEEP <seconds>",
                "    Stop the server for <seconds>. Decimals allowed.",
            ];
            ctx.out.array(lines.len());
            for l in lines {
                ctx.out.simple(l.as_bytes());
            }
        }
        _ => {
            return Err(CmdError::Owned(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
                String::from_utf8_lossy(args[1])
            )))
        }
    }
    Ok(())
}

pub const COMMANDS: &[(&str, Handler)] = &[
    ("info", info_cmd),
    ("config|get", config_get),
    ("config|set", config_set),
    ("config|resetstat", config_resetstat),
    ("config|rewrite", config_rewrite),
    ("config|help", config_help),
    ("time", time),
    ("shutdown", shutdown),
    ("debug", debug),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::TestClient;

    #[test]
    fn info_has_the_fields_tools_read() {
        let mut c = TestClient::new();
        let info = c.text(&["INFO"]);
        for field in [
            "redis_version:",
            "process_id:",
            "tcp_port:",
            "used_memory:",
            "maxmemory_policy:noeviction",
            "keyspace_hits:",
            "role:master",
            "cluster_enabled:0",
            "# Keyspace",
        ] {
            assert!(info.contains(field), "missing {field}");
        }
        assert!(!info.contains("# Commandstats"));
        assert!(c.text(&["INFO", "commandstats"]).contains("cmdstat_info:calls=1"));
    }

    #[test]
    fn config_get_set_round_trip() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["CONFIG", "GET", "maxmemory"]), "[maxmemory, 0]");
        assert_eq!(c.text(&["CONFIG", "SET", "maxmemory", "100mb"]), "OK");
        assert_eq!(c.text(&["CONFIG", "GET", "maxmemory"]), "[maxmemory, 104857600]");
        assert_eq!(
            c.srv.settings.maxmemory.load(std::sync::atomic::Ordering::Relaxed),
            104857600
        );
        assert!(c
            .text(&["CONFIG", "SET", "port", "1"])
            .starts_with("-ERR CONFIG SET failed"));
        assert_eq!(
            c.text(&["CONFIG", "SET", "maxmemory"]),
            "-ERR wrong number of arguments for 'config|set' command"
        );
        assert_eq!(
            c.text(&["CONFIG", "SET", "maxmemory", "1mb", "hz"]),
            "-ERR syntax error"
        );
    }

    #[test]
    fn debug_is_refused_by_default_and_works_when_enabled() {
        let mut c = TestClient::new();
        assert!(c
            .text(&["DEBUG", "SLEEP", "0"])
            .starts_with("-ERR DEBUG command not allowed."));
        let mut c = TestClient::with_config(|cfg| cfg.enable_debug_command = crate::config::ProtectedAction::Yes);
        assert_eq!(c.text(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), "OK");
        assert_eq!(c.text(&["DEBUG", "OBJECT", "nokey"]), "-ERR no such key");
    }

    #[test]
    fn time_is_two_bulk_numbers() {
        let mut c = TestClient::new();
        let t = c.text(&["TIME"]);
        assert!(t.starts_with('[') && t.matches(", ").count() == 1, "{t}");
    }
}
