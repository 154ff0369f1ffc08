//! The dispatch gate: every command passes the same checks in Redis's order (`processCommand`) — lookup,
//! arity, authentication, cluster redirection, memory, then for writes `min-replicas-to-write` and a read-only
//! replica — before its handler runs. Handlers never repeat these checks. The gate also keeps commandstats and
//! errorstats and applies CLIENT REPLY.
//!
//! The replication stream a replica applies takes a side door, [`apply_from_primary`]: the primary has made
//! every check already, and the replica must apply what it is sent.

use shoal_protocol::ReplyWriter;

use crate::client::{Client, ReplyMode};
use crate::cmd::Ctx;
use crate::command::{flags, Command, LookupError};
use crate::error::{self, truncate_lossy, CmdError};
use crate::keyspace::{Key, Now};
use crate::routing::RouteQuery;
use crate::server::Server;
use crate::stats::ThreadStats;

/// Runs one request (`args` non-empty) and appends its reply to `out`.
pub fn dispatch(
    srv: &Server,
    client: &mut Client,
    out: &mut ReplyWriter,
    args: &[&[u8]],
    now: &Now,
    stats: &ThreadStats,
) {
    let reply_start = out.len();
    // Only commands without subcommands are cached: the first argument alone identifies them.
    let cached = args.first().and_then(|name| client.cmd_cache.get(name));
    let cmd = match cached
        .map(|id| srv.commands.by_id(id))
        .ok_or(())
        .or_else(|_| srv.commands.lookup(args))
    {
        Ok(cmd) => {
            if cached.is_none() && cmd.subcommands.is_empty() && cmd.parent.is_none() {
                client.cmd_cache.put(args[0], cmd.id);
            }
            cmd
        }
        Err(e) => {
            let err = lookup_error(e, args);
            reject(out, stats, None, &err);
            finish_reply_mode(client, out, reply_start);
            return;
        }
    };
    if let Err(err) = admit(srv, client, cmd, args, now) {
        reject(out, stats, Some(cmd), &err);
        finish_reply_mode(client, out, reply_start);
        return;
    }
    let Some(handler) = cmd.handler else {
        // A container called bare whose arity allows it but that has no handler of its own.
        reject(out, stats, Some(cmd), &CmdError::WrongArity(cmd.name.clone()));
        return;
    };
    client
        .handle
        .last_cmd
        .store(cmd.id + 1, std::sync::atomic::Ordering::Relaxed);
    let started = crate::clock::Ticks::now();
    let result = {
        let mut ctx = Ctx {
            srv,
            client,
            out,
            now: *now,
            cmd,
        };
        handler(&mut ctx, args)
    };
    // The hint belongs to this request's arguments only.
    client.key_hint = None;
    stats.call(cmd.id, started.elapsed_us());
    // ASKING covers exactly one command: the next one (Redis resets the flag in resetClient).
    if cmd.id != srv.commands.asking_id() {
        client.asking = false;
    }
    if let Err(err) = result {
        stats.failed(cmd.id);
        stats.error(&err.code());
        out.error(err.text().as_bytes());
    }
    finish_reply_mode(client, out, reply_start);
}

/// The checks between lookup and execution, in Redis's order.
#[inline]
fn admit(srv: &Server, client: &Client, cmd: &Command, args: &[&[u8]], now: &Now) -> Result<(), CmdError> {
    if !cmd.arity_ok(args.len()) {
        return Err(CmdError::WrongArity(cmd.name.clone()));
    }
    if !client.authenticated
        && !cmd.has(flags::NO_AUTH)
        && srv.settings.auth_required.load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(CmdError::Static(error::NOAUTH));
    }
    if srv.cluster_enabled() && !cmd.key_specs.is_empty() {
        route(srv, client, cmd, args, now)?;
    }
    if srv.settings.maxmemory.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        let out_of_memory = srv.evict_if_needed(now).is_err();
        if out_of_memory && cmd.has(flags::DENYOOM) {
            return Err(CmdError::Static(error::OOM));
        }
    }
    if cmd.has(flags::WRITE) {
        srv.repl.check_write()?;
    }
    Ok(())
}

/// Runs one command of the primary's replication stream on this replica: the handler alone, without the gate's
/// checks, its reply left in `out` for the caller to discard.
pub fn apply_from_primary(
    srv: &Server,
    client: &mut Client,
    out: &mut ReplyWriter,
    args: &[&[u8]],
    now: &Now,
    stats: &ThreadStats,
) -> Result<(), CmdError> {
    let cmd = srv.commands.lookup(args).map_err(|e| lookup_error(e, args))?;
    if !cmd.arity_ok(args.len()) {
        return Err(CmdError::WrongArity(cmd.name.clone()));
    }
    let handler = cmd.handler.ok_or_else(|| CmdError::WrongArity(cmd.name.clone()))?;
    let started = crate::clock::Ticks::now();
    let result = handler(
        &mut Ctx {
            srv,
            client,
            out,
            now: *now,
            cmd,
        },
        args,
    );
    stats.call(cmd.id, started.elapsed_us());
    client.action = None;
    result
}

/// Cluster mode: the command's keys must all be in one slot this node serves (Redis's getNodeByQuery).
fn route(srv: &Server, client: &Client, cmd: &Command, args: &[&[u8]], now: &Now) -> Result<(), CmdError> {
    // Arguments that contradict the key specs route nowhere; the command reports its own syntax error.
    let Ok(positions) = cmd.keys(args) else { return Ok(()) };
    if positions.is_empty() {
        return Ok(());
    }
    let keys: smallvec::SmallVec<[&[u8]; 4]> = positions.iter().map(|k| args[k.index]).collect();
    let query = RouteQuery {
        keys: &keys,
        is_write: cmd.has(flags::WRITE),
        asking: client.asking,
        readonly: client.readonly,
        allow_reads_when_down: srv
            .settings
            .cluster_allow_reads_when_down
            .load(std::sync::atomic::Ordering::Relaxed),
        now_ms: now.ms,
    };
    // Cluster mode has one database.
    let db = srv.keyspace.db(0);
    let exists = |k: &[u8]| {
        let key = Key::new(k);
        db.lock(&key).find(&key, now).is_some()
    };
    match srv.routing.route(&query, exists) {
        Ok(_) => Ok(()),
        Err(redirect) => Err(CmdError::Owned(redirect.error_text())),
    }
}

fn lookup_error(e: LookupError, args: &[&[u8]]) -> CmdError {
    match e {
        LookupError::UnknownCommand => {
            // Redis lists the arguments, quoted, while the list is under 128 bytes.
            // Redis formats these with `%.*s`, which stops at a NUL byte.
            let c_str = |a: &&[u8]| -> Vec<u8> { a.iter().copied().take_while(|&b| b != 0).collect() };
            let mut list = String::new();
            for a in args.iter().skip(1) {
                if list.len() >= 128 {
                    break;
                }
                let room = 128 - list.len();
                list.push('\'');
                list.push_str(&truncate_lossy(&c_str(a), room));
                list.push_str("' ");
            }
            let name = args
                .first()
                .map(|a| truncate_lossy(&c_str(a), 128).into_owned())
                .unwrap_or_default();
            CmdError::Owned(format!(
                "ERR unknown command '{name}', with args beginning with: {list}"
            ))
        }
        LookupError::UnknownSubcommand => {
            let container = args
                .first()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default();
            CmdError::unknown_subcommand(&container, args.get(1).copied().unwrap_or_default())
        }
    }
}

fn reject(out: &mut ReplyWriter, stats: &ThreadStats, cmd: Option<&Command>, err: &CmdError) {
    if let Some(cmd) = cmd {
        stats.rejected(cmd.id);
    }
    stats.error(&err.code());
    out.error(err.text().as_bytes());
}

/// CLIENT REPLY OFF/SKIP: drop what this command wrote.
#[inline]
fn finish_reply_mode(client: &mut Client, out: &mut ReplyWriter, reply_start: usize) {
    match client.reply_mode {
        ReplyMode::On => {}
        ReplyMode::Off => out.truncate(reply_start),
        ReplyMode::Skipping => {
            out.truncate(reply_start);
            client.reply_mode = ReplyMode::On;
        }
        // CLIENT REPLY SKIP itself has no reply; the skip applies to the next command.
        ReplyMode::SkipNext => {
            out.truncate(reply_start);
            client.reply_mode = ReplyMode::Skipping;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_lists_quoted_args_with_trailing_space() {
        let e = lookup_error(LookupError::UnknownCommand, &[b"foo", b"bar", b"baz"]);
        assert_eq!(
            e.text(),
            "ERR unknown command 'foo', with args beginning with: 'bar' 'baz' "
        );
        let e = lookup_error(LookupError::UnknownCommand, &[b"xxx"]);
        assert_eq!(e.text(), "ERR unknown command 'xxx', with args beginning with: ");
    }
}
