//! The connection family: PING, ECHO, SELECT, SWAPDB, QUIT, RESET, HELLO and AUTH — commands about the client's
//! own session rather than the data.

use std::sync::atomic::Ordering;

use super::args;
use super::{Ctx, Handler};
use crate::client::{Action, ReplyMode};
use crate::error::{self, CmdError, CmdResult};
use crate::run::REDIS_COMPAT_VERSION;
use shoal_protocol::Proto;

fn ping(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    match args {
        [_] => ctx.out.simple(b"PONG"),
        [_, msg] => ctx.out.bulk(msg),
        _ => return Err(CmdError::WrongArity(ctx.cmd.name.clone())),
    }
    Ok(())
}

fn echo(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    ctx.out.bulk(args[1]);
    Ok(())
}

fn select(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let id = args::int(args[1])?;
    if ctx.srv.cluster_enabled() && id != 0 {
        return Err(CmdError::Static(error::SELECT_IN_CLUSTER));
    }
    if id < 0 || id >= ctx.srv.keyspace.databases() as i64 {
        return Err(CmdError::Static(error::DB_INDEX_OUT_OF_RANGE));
    }
    ctx.client.select(id as usize);
    ctx.out.ok();
    Ok(())
}

fn swapdb(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if ctx.srv.cluster_enabled() {
        return Err(CmdError::msg("ERR SWAPDB is not allowed in cluster mode"));
    }
    let a = crate::num::parse_i64(args[1]).ok_or(CmdError::msg("ERR invalid first DB index"))?;
    let b = crate::num::parse_i64(args[2]).ok_or(CmdError::msg("ERR invalid second DB index"))?;
    let n = ctx.srv.keyspace.databases() as i64;
    if a < 0 || a >= n || b < 0 || b >= n {
        return Err(CmdError::Static(error::DB_INDEX_OUT_OF_RANGE));
    }
    ctx.srv.keyspace.swap(a as usize, b as usize);
    ctx.srv.evictor.clear();
    ctx.out.ok();
    Ok(())
}

fn quit(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    ctx.out.ok();
    ctx.client.action = Some(Action::Close);
    Ok(())
}

/// RESET: back to a fresh connection's state (Redis's clearClientConnectionState).
fn reset(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let c = &mut *ctx.client;
    c.select(0);
    c.proto = Proto::Resp2;
    c.handle.resp.store(2, Ordering::Relaxed);
    c.handle.info.lock().name.clear();
    c.authenticated = !ctx.srv.settings.auth_required.load(Ordering::Relaxed);
    c.reply_mode = ReplyMode::On;
    c.no_touch = false;
    c.handle.no_touch.store(false, Ordering::Relaxed);
    c.handle.no_evict.store(false, Ordering::Relaxed);
    c.readonly = false;
    c.asking = false;
    ctx.out.set_proto(Proto::Resp2);
    ctx.out.simple(b"RESET");
    Ok(())
}

/// Checks a username/password pair against the one user Shoal has, `default`.
pub fn password_ok(ctx: &Ctx<'_>, user: &[u8], pass: &[u8]) -> bool {
    if !user.eq_ignore_ascii_case(b"default") && user != b"default" {
        return false;
    }
    match ctx.srv.config.read().requirepass.as_deref() {
        None | Some([]) => true,
        Some(expected) => constant_time_eq(expected, pass),
    }
}

/// Compares passwords without an early exit, so response timing says nothing about how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn auth(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let (user, pass) = match args {
        [_, pass] => {
            if !ctx.srv.settings.auth_required.load(Ordering::Relaxed) {
                return Err(CmdError::msg(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            (&b"default"[..], *pass)
        }
        [_, user, pass] => (*user, *pass),
        _ => return Err(CmdError::syntax()),
    };
    if password_ok(ctx, user, pass) {
        ctx.client.authenticated = true;
        ctx.out.ok();
        Ok(())
    } else {
        Err(CmdError::Static(error::WRONGPASS))
    }
}

/// Client names may not hold spaces, newlines or other special characters (Redis's validateClientName).
pub fn validate_client_name(name: &[u8]) -> Result<(), CmdError> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(CmdError::msg(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

struct HelloArgs<'a> {
    version: Option<i64>,
    auth: Option<(&'a [u8], &'a [u8])>,
    name: Option<&'a [u8]>,
}

impl<'a> HelloArgs<'a> {
    fn parse(args: &[&'a [u8]]) -> Result<HelloArgs<'a>, CmdError> {
        let mut h = HelloArgs {
            version: None,
            auth: None,
            name: None,
        };
        let mut rest = args.get(1..).unwrap_or_default();
        if let Some((v, tail)) = rest.split_first() {
            let v = crate::num::parse_i64(v)
                .ok_or(CmdError::msg("ERR Protocol version is not an integer or out of range"))?;
            if !(2..=3).contains(&v) {
                return Err(CmdError::msg("NOPROTO unsupported protocol version"));
            }
            h.version = Some(v);
            rest = tail;
        }
        while let Some((opt, tail)) = rest.split_first() {
            match tail {
                [user, pass, more @ ..] if args::is(opt, "auth") => {
                    h.auth = Some((*user, *pass));
                    rest = more;
                }
                [name, more @ ..] if args::is(opt, "setname") => {
                    validate_client_name(name)?;
                    h.name = Some(*name);
                    rest = more;
                }
                _ => {
                    return Err(CmdError::Owned(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(opt)
                    )))
                }
            }
        }
        Ok(h)
    }
}

fn hello(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let h = HelloArgs::parse(args)?;
    if let Some((user, pass)) = h.auth {
        if !password_ok(ctx, user, pass) {
            return Err(CmdError::Static(error::WRONGPASS));
        }
        ctx.client.authenticated = true;
    }
    if !ctx.client.authenticated {
        return Err(CmdError::msg(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(name) = h.name {
        ctx.client.handle.info.lock().name = name.to_vec();
    }
    if let Some(v) = h.version {
        ctx.client.proto = if v == 3 { Proto::Resp3 } else { Proto::Resp2 };
        ctx.client.handle.resp.store(v as u8, Ordering::Relaxed);
        ctx.out.set_proto(ctx.client.proto);
    }
    // A replica says so, as Redis does for a node with a primary.
    let replica = ctx.srv.repl.is_replica();
    let out = &mut *ctx.out;
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"redis");
    out.bulk(b"version");
    out.bulk(REDIS_COMPAT_VERSION.as_bytes());
    out.bulk(b"proto");
    out.integer(ctx.client.proto.version());
    out.bulk(b"id");
    out.integer(ctx.client.id() as i64);
    out.bulk(b"mode");
    out.bulk(if ctx.srv.cluster_enabled() {
        b"cluster"
    } else {
        b"standalone"
    });
    out.bulk(b"role");
    out.bulk(if replica { b"replica".as_slice() } else { b"master" });
    out.bulk(b"modules");
    out.array(0);
    Ok(())
}

pub const COMMANDS: &[(&str, Handler)] = &[
    ("ping", ping),
    ("echo", echo),
    ("select", select),
    ("swapdb", swapdb),
    ("quit", quit),
    ("reset", reset),
    ("auth", auth),
    ("hello", hello),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::TestClient;

    #[test]
    fn ping_and_echo() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["PING"]), "PONG");
        assert_eq!(c.text(&["ping", "hi"]), "hi");
        assert_eq!(c.text(&["ECHO", "x y"]), "x y");
        assert_eq!(
            c.text(&["PING", "a", "b"]),
            "-ERR wrong number of arguments for 'ping' command"
        );
    }

    #[test]
    fn select_checks_range_and_number() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["SELECT", "15"]), "OK");
        assert_eq!(c.text(&["SELECT", "16"]), "-ERR DB index is out of range");
        assert_eq!(c.text(&["SELECT", "x"]), "-ERR value is not an integer or out of range");
        assert_eq!(c.text(&["SWAPDB", "0", "x"]), "-ERR invalid second DB index");
    }

    #[test]
    fn hello_switches_protocol_and_validates() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["HELLO", "4"]), "-NOPROTO unsupported protocol version");
        assert_eq!(
            c.text(&["HELLO", "x"]),
            "-ERR Protocol version is not an integer or out of range"
        );
        assert_eq!(
            c.text(&["HELLO", "3", "FOO"]),
            "-ERR Syntax error in HELLO option 'FOO'"
        );
        let reply = c.text(&["HELLO", "3", "SETNAME", "me"]);
        assert!(
            reply.starts_with("{server: redis, version: 7.0.15, proto: 3, id: "),
            "{reply}"
        );
        assert_eq!(c.text(&["CLIENT", "GETNAME"]), "me");
    }

    #[test]
    fn auth_without_password_configured() {
        let mut c = TestClient::new();
        assert!(c
            .text(&["AUTH", "x"])
            .starts_with("-ERR AUTH <password> called without any password"));
        assert_eq!(c.text(&["AUTH", "default", "anything"]), "OK");
        assert_eq!(
            c.text(&["AUTH", "bob", "x"]),
            "-WRONGPASS invalid username-password pair or user is disabled."
        );
    }

    #[test]
    fn requirepass_gates_commands() {
        let mut c = TestClient::with_config(|cfg| cfg.requirepass = Some(b"pw".to_vec()));
        assert_eq!(c.text(&["GET", "a"]), "-NOAUTH Authentication required.");
        assert_eq!(c.text(&["GET"]), "-ERR wrong number of arguments for 'get' command");
        assert!(c.text(&["HELLO", "3"]).starts_with("-NOAUTH HELLO must be called"));
        assert_eq!(
            c.text(&["AUTH", "nope"]),
            "-WRONGPASS invalid username-password pair or user is disabled."
        );
        assert_eq!(c.text(&["AUTH", "pw"]), "OK");
        assert_eq!(c.text(&["PING"]), "PONG");
        assert_eq!(c.text(&["RESET"]), "RESET");
        assert_eq!(c.text(&["PING"]), "-NOAUTH Authentication required.");
    }
}
