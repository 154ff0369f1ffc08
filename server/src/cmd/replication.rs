//! The replication family, in the manner of Redis's `replication.c`: REPLICAOF / SLAVEOF, ROLE, WAIT, and the
//! replica protocol's REPLCONF, PSYNC and SYNC. Replies and errors are Redis 7.0.15's, checked against it.
//! The machinery behind them is in `replication/`.

use super::args;
use super::{Ctx, Handler};
use crate::client::{Action, ClientKind, ReplyMode};
use crate::error::{self, CmdError, CmdResult};
use crate::replication::primary;

/// REPLICAOF host port | NO ONE (standalone mode only, as in Redis).
fn replicaof(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if ctx.srv.cluster_enabled() {
        return Err(CmdError::Static(error::REPLICAOF_IN_CLUSTER));
    }
    if args[1].eq_ignore_ascii_case(b"no") && args[2].eq_ignore_ascii_case(b"one") {
        if ctx.srv.repl.promote(ctx.srv) {
            ctx.srv.config.write().replicaof = None;
            tracing::info!("MASTER MODE enabled (user request from client {})", ctx.client.id());
        }
        ctx.out.ok();
        return Ok(());
    }
    if ctx.client.handle.kind() == ClientKind::Replica {
        return Err(CmdError::msg("ERR Command is not valid when client is a replica."));
    }
    let port = crate::num::parse_i64(args[2])
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(CmdError::Static(error::INVALID_MASTER_PORT))?;
    let host = String::from_utf8_lossy(args[1]).into_owned();
    if !ctx.srv.repl.become_replica(ctx.srv, &host, port) {
        ctx.out.simple(b"OK Already connected to specified master");
        return Ok(());
    }
    ctx.srv.config.write().replicaof = Some((host.clone(), port));
    tracing::info!(
        "REPLICAOF {host}:{port} enabled (user request from client {})",
        ctx.client.id()
    );
    ctx.out.ok();
    Ok(())
}

/// ROLE: `[master, offset, [[ip, port, offset] ...]]` or `[slave, host, port, state, offset]`.
fn role(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    ctx.srv.repl.write_role(ctx.out);
    Ok(())
}

/// WAIT numreplicas timeout: blocks this client (only) until `numreplicas` replicas acknowledged its last write,
/// or `timeout` ms pass (0: forever); replies with how many did.
fn wait(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if ctx.srv.repl.is_replica() {
        return Err(CmdError::Static(error::WAIT_ON_REPLICA));
    }
    let want = args::int(args[1])?;
    let timeout =
        crate::num::parse_i64(args[2]).ok_or(CmdError::msg("ERR timeout is not an integer or out of range"))?;
    if timeout < 0 {
        return Err(CmdError::msg("ERR timeout is negative"));
    }
    if timeout > 0 && timeout > i64::MAX - crate::keyspace::access::unix_ms() {
        return Err(CmdError::msg("ERR timeout is out of range"));
    }
    ctx.client.note_writes();
    let offset = ctx.client.woff;
    let acked = ctx.srv.repl.count_acked(offset);
    if want <= 0 || acked >= want as usize {
        ctx.out.integer(acked as i64);
        return Ok(());
    }
    ctx.srv.repl.request_acks(ctx.srv);
    ctx.client.action = Some(Action::WaitAcks {
        replicas: want as usize,
        timeout_ms: timeout as u64,
        reply: ctx.client.reply_mode == ReplyMode::On,
    });
    Ok(())
}

/// REPLCONF option value ...: what a replica says about itself before PSYNC. `ACK` and `GETACK` from an
/// ordinary client get no reply, as in Redis.
fn replconf(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(CmdError::syntax());
    }
    let mut hs = ctx.client.repl_handshake.take().map(|b| *b).unwrap_or_default();
    for pair in args[1..].chunks_exact(2) {
        let (opt, value) = (pair[0], pair[1]);
        if opt.eq_ignore_ascii_case(b"listening-port") {
            let port = args::int(value)?;
            hs.listening_port = u16::try_from(port).ok();
        } else if opt.eq_ignore_ascii_case(b"ip-address") {
            hs.ip_address = Some(String::from_utf8_lossy(value).into_owned());
        } else if opt.eq_ignore_ascii_case(b"capa") {
            if value.eq_ignore_ascii_case(primary::CAPA_SHOAL) {
                hs.shoal = true;
            }
        } else if opt.eq_ignore_ascii_case(b"ack") || opt.eq_ignore_ascii_case(b"getack") {
            ctx.client.repl_handshake = Some(Box::new(hs));
            return Ok(());
        } else if opt.eq_ignore_ascii_case(b"rdb-only") || opt.eq_ignore_ascii_case(b"rdb-filter-only") {
            // Options of Redis's own tools that Shoal has no use for.
        } else {
            return Err(CmdError::Owned(format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    ctx.client.repl_handshake = Some(Box::new(hs));
    ctx.out.ok();
    Ok(())
}

/// PSYNC replid offset: continue a replication history, or start a full sync.
fn psync(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if ctx.client.handle.kind() == ClientKind::Replica {
        return Ok(());
    }
    let offset = crate::num::parse_i64(args[2]).unwrap_or(-1);
    primary::psync(ctx, args[1], offset, true)
}

/// SYNC: the old full sync, without the `+FULLRESYNC` line.
fn sync(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    if ctx.client.handle.kind() == ClientKind::Replica {
        return Ok(());
    }
    primary::psync(ctx, b"?", -1, false)
}

pub const COMMANDS: &[(&str, Handler)] = &[
    ("replicaof", replicaof),
    ("slaveof", replicaof),
    ("role", role),
    ("wait", wait),
    ("replconf", replconf),
    ("psync", psync),
    ("sync", sync),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::TestClient;

    #[test]
    fn replicaof_argument_errors_are_redis_texts() {
        let mut c = TestClient::new();
        assert_eq!(
            c.text(&["REPLICAOF", "localhost", "notaport"]),
            "-ERR Invalid master port"
        );
        assert_eq!(c.text(&["REPLICAOF", "no", "two"]), "-ERR Invalid master port");
        assert_eq!(c.text(&["SLAVEOF", "127.0.0.1", "70000"]), "-ERR Invalid master port");
        assert_eq!(
            c.text(&["REPLICAOF", "a", "b", "c"]),
            "-ERR wrong number of arguments for 'replicaof' command"
        );
        assert_eq!(c.text(&["REPLICAOF", "NO", "ONE"]), "OK");
    }

    #[test]
    fn replicaof_is_refused_in_cluster_mode() {
        let mut c = TestClient::with_config(|c| c.cluster_enabled = true);
        assert_eq!(
            c.text(&["REPLICAOF", "127.0.0.1", "6379"]),
            "-ERR REPLICAOF not allowed in cluster mode."
        );
        assert_eq!(
            c.text(&["REPLICAOF", "NO", "ONE"]),
            "-ERR REPLICAOF not allowed in cluster mode."
        );
    }

    #[test]
    fn a_replica_refuses_writes_and_wait_and_says_so_in_role_and_hello() {
        let mut c = TestClient::new();
        // Outside a runtime no link task starts: the node just becomes a replica whose link is down.
        assert_eq!(c.text(&["REPLICAOF", "127.0.0.1", "1"]), "OK");
        assert_eq!(
            c.text(&["REPLICAOF", "127.0.0.1", "1"]),
            "OK Already connected to specified master"
        );
        assert_eq!(
            c.text(&["SET", "k", "v"]),
            "-READONLY You can't write against a read only replica."
        );
        assert_eq!(c.text(&["GET", "k"]), "(nil)");
        assert!(c
            .text(&["WAIT", "0", "0"])
            .starts_with("-ERR WAIT cannot be used with replica instances."));
        assert_eq!(c.text(&["ROLE"]), "[slave, 127.0.0.1, 1, connect, -1]");
        assert!(c.text(&["HELLO"]).contains("role, replica"), "{}", c.text(&["HELLO"]));
        assert!(c
            .text(&["INFO", "replication"])
            .contains("role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:1\r\nmaster_link_status:down\r\n"));
        assert_eq!(c.text(&["CONFIG", "GET", "replicaof"]), "[replicaof, 127.0.0.1 1]");
        assert_eq!(c.text(&["REPLICAOF", "NO", "ONE"]), "OK");
        assert_eq!(c.text(&["SET", "k", "v"]), "OK");
        // Promoted, it records its writes for replicas to come: SELECT 0 (23 bytes) and SET k v (27).
        assert_eq!(c.text(&["ROLE"]), "[master, 50, []]");
        assert_eq!(c.text(&["CONFIG", "GET", "replicaof"]), "[replicaof, ]");
    }

    #[test]
    fn wait_arguments_and_the_no_replica_answer() {
        let mut c = TestClient::new();
        assert_eq!(
            c.text(&["WAIT", "x", "0"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(
            c.text(&["WAIT", "0", "x"]),
            "-ERR timeout is not an integer or out of range"
        );
        assert_eq!(c.text(&["WAIT", "1", "-1"]), "-ERR timeout is negative");
        assert_eq!(c.text(&["WAIT", "0", "0"]), "0");
        assert_eq!(c.text(&["WAIT", "-1", "0"]), "0");
    }

    #[test]
    fn replconf_checks_its_options_like_redis() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["REPLCONF"]), "OK");
        assert_eq!(c.text(&["REPLCONF", "listening-port", "123"]), "OK");
        assert_eq!(
            c.text(&["REPLCONF", "foo", "bar"]),
            "-ERR Unrecognized REPLCONF option: foo"
        );
        assert_eq!(c.text(&["REPLCONF", "listening-port"]), "-ERR syntax error");
        assert_eq!(c.text(&["REPLCONF", "ack", "5"]), "(nil)");
    }

    #[test]
    fn psync_from_a_client_that_is_not_a_shoal_replica_is_refused() {
        let mut c = TestClient::new();
        assert!(c
            .text(&["PSYNC", "?", "-1"])
            .starts_with("-ERR Shoal replicates only to Shoal replicas"));
    }
}
