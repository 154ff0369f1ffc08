//! The CLIENT family: naming, listing and killing connections, reply suppression, pausing, and the per-client
//! NO-EVICT / NO-TOUCH modes.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::args;
use super::connection::validate_client_name;
use super::{Ctx, Handler};
use crate::client::{Action, ClientHandle, ClientKind, ReplyMode};
use crate::error::{self, CmdError, CmdResult};
use crate::keyspace::access::unix_ms;

fn client_id(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    ctx.out.integer(ctx.client.id() as i64);
    Ok(())
}

fn client_setname(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    validate_client_name(args[2])?;
    ctx.client.handle.info.lock().name = args[2].to_vec();
    ctx.out.ok();
    Ok(())
}

fn client_getname(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let name = ctx.client.handle.info.lock().name.clone();
    if name.is_empty() {
        ctx.out.null();
    } else {
        ctx.out.bulk(&name);
    }
    Ok(())
}

/// One CLIENT LIST line, in Redis 7's field order.
fn describe(ctx: &Ctx<'_>, c: &ClientHandle, now_ms: i64) -> String {
    let info = c.info.lock().clone();
    let age = (now_ms - c.created_ms).max(0) / 1000;
    let idle = (now_ms - c.last_interaction_ms.load(Ordering::Relaxed)).max(0) / 1000;
    let mut flags = String::new();
    match c.kind() {
        ClientKind::Replica => flags.push('S'),
        ClientKind::Primary => flags.push('M'),
        ClientKind::Normal => {}
    }
    if c.no_evict.load(Ordering::Relaxed) {
        flags.push('e');
    }
    if c.no_touch.load(Ordering::Relaxed) {
        flags.push('T');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let cmd = match c.last_cmd.load(Ordering::Relaxed) {
        0 => "NULL".to_string(),
        id => ctx.srv.commands.by_id(id - 1).name.clone(),
    };
    let qbuf = c.query_buf.load(Ordering::Relaxed);
    let obl = c.out_buf.load(Ordering::Relaxed);
    let mut s = String::with_capacity(320);
    let _ = write!(
        s,
        "id={} addr={} laddr={} fd={} name={} age={age} idle={idle} flags={flags} db={} sub=0 psub=0 ssub=0 \
         multi=-1 qbuf={qbuf} qbuf-free={} argv-mem={} multi-mem=0 rbs={} rbp={} obl={obl} oll=0 omem=0 \
         tot-mem={} events=r cmd={cmd} user=default redir=-1 resp={} lib-name={} lib-ver={}",
        c.id,
        c.addr,
        c.laddr,
        c.fd,
        String::from_utf8_lossy(&info.name),
        c.db.load(Ordering::Relaxed),
        c.query_buf_free.load(Ordering::Relaxed),
        c.argv_mem.load(Ordering::Relaxed),
        16 * 1024,
        16 * 1024,
        qbuf + obl + 32 * 1024,
        c.resp.load(Ordering::Relaxed),
        String::from_utf8_lossy(&info.lib_name),
        String::from_utf8_lossy(&info.lib_ver),
    );
    s
}

/// Whether a client is of a CLIENT LIST / CLIENT KILL `TYPE` (already checked to be one Redis knows).
fn of_type(c: &ClientHandle, t: &str) -> bool {
    match t {
        "normal" => c.kind() == ClientKind::Normal,
        "replica" | "slave" => c.kind() == ClientKind::Replica,
        "master" => c.kind() == ClientKind::Primary,
        _ => false,
    }
}

fn client_list(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let mut ids: Option<Vec<u64>> = None;
    let mut kind: Option<String> = None;
    let mut rest = &args[2..];
    while let Some((opt, tail)) = rest.split_first() {
        if args::is(opt, "type") && !tail.is_empty() {
            let t = args::lower(tail[0]);
            if !matches!(t.as_str(), "normal" | "master" | "replica" | "slave" | "pubsub") {
                return Err(CmdError::Owned(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(tail[0])
                )));
            }
            kind = Some(t);
            rest = &tail[1..];
        } else if args::is(opt, "id") && !tail.is_empty() {
            let mut v = Vec::new();
            for a in tail {
                match crate::num::parse_i64(a) {
                    Some(n) if n > 0 => v.push(n as u64),
                    _ => return Err(CmdError::msg("ERR Invalid client ID")),
                }
            }
            ids = Some(v);
            rest = &[];
        } else {
            return Err(CmdError::syntax());
        }
    }
    let now = unix_ms();
    let mut text = String::new();
    for c in ctx.srv.clients.all() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        if kind.as_ref().is_some_and(|t| !of_type(&c, t)) {
            continue;
        }
        text.push_str(&describe(ctx, &c, now));
        text.push('\n');
    }
    ctx.out.verbatim(b"txt", text.as_bytes());
    Ok(())
}

fn client_info(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let mut line = describe(ctx, &ctx.client.handle, unix_ms());
    line.push('\n');
    ctx.out.verbatim(b"txt", line.as_bytes());
    Ok(())
}

/// The filters of the new-style CLIENT KILL.
#[derive(Default)]
struct KillFilter {
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    user: Option<String>,
    kind: Option<String>,
    skipme: bool,
    maxage: Option<i64>,
}

fn client_kill(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if args.len() == 3 {
        // Old form: CLIENT KILL addr:port, an error when nobody matches.
        let target = String::from_utf8_lossy(args[2]).into_owned();
        let victim = ctx.srv.clients.all().into_iter().find(|c| c.addr.to_string() == target);
        let Some(victim) = victim else {
            return Err(CmdError::Static(error::NO_SUCH_CLIENT));
        };
        kill(ctx, &victim);
        ctx.out.ok();
        return Ok(());
    }
    let mut f = KillFilter {
        skipme: true,
        ..Default::default()
    };
    let mut rest = &args[2..];
    while let [opt, val, tail @ ..] = rest {
        let v = String::from_utf8_lossy(val).into_owned();
        match args::lower(opt).as_str() {
            "id" => match crate::num::parse_i64(val) {
                Some(n) if n > 0 => f.id = Some(n as u64),
                _ => return Err(CmdError::msg("ERR client-id should be greater than 0")),
            },
            "addr" => f.addr = Some(v),
            "laddr" => f.laddr = Some(v),
            "user" => f.user = Some(v),
            "type" => {
                let t = v.to_ascii_lowercase();
                if !matches!(t.as_str(), "normal" | "master" | "replica" | "slave" | "pubsub") {
                    return Err(CmdError::Owned(format!("ERR Unknown client type '{v}'")));
                }
                f.kind = Some(t);
            }
            "skipme" => match args::on_off(val) {
                Some(b) => f.skipme = b,
                None => return Err(CmdError::syntax()),
            },
            "maxage" => f.maxage = Some(args::int(val)?),
            _ => return Err(CmdError::syntax()),
        }
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(CmdError::syntax());
    }
    let now = unix_ms();
    let mut killed = 0;
    for c in ctx.srv.clients.all() {
        let me = c.id == ctx.client.id();
        let matches = f.id.is_none_or(|id| id == c.id)
            && f.addr.as_ref().is_none_or(|a| *a == c.addr.to_string())
            && f.laddr.as_ref().is_none_or(|a| *a == c.laddr.to_string())
            && f.user.as_ref().is_none_or(|u| u == "default")
            && f.kind.as_ref().is_none_or(|t| of_type(&c, t))
            && f.maxage.is_none_or(|age| (now - c.created_ms) / 1000 >= age)
            && !(me && f.skipme);
        if matches {
            kill(ctx, &c);
            killed += 1;
        }
    }
    ctx.out.integer(killed);
    Ok(())
}

fn kill(ctx: &mut Ctx<'_>, victim: &ClientHandle) {
    if victim.id == ctx.client.id() {
        // Killing oneself: the reply still goes out, then the connection closes.
        ctx.client.action = Some(Action::Close);
    } else {
        victim.request_kill();
    }
}

fn client_setinfo(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let attr = args::lower(args[2]);
    let val = args[3];
    if val.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(CmdError::Owned(format!(
            "ERR {attr} cannot contain spaces, newlines or special characters."
        )));
    }
    match attr.as_str() {
        "lib-name" => ctx.client.handle.info.lock().lib_name = val.to_vec(),
        "lib-ver" => ctx.client.handle.info.lock().lib_ver = val.to_vec(),
        _ => {
            return Err(CmdError::Owned(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(args[2])
            )))
        }
    }
    ctx.out.ok();
    Ok(())
}

fn client_no_evict(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let on = args::on_off(args[2]).filter(|_| args::is(args[2], "on") || args::is(args[2], "off"));
    let Some(on) = on else { return Err(CmdError::syntax()) };
    ctx.client.handle.no_evict.store(on, Ordering::Relaxed);
    ctx.out.ok();
    Ok(())
}

fn client_no_touch(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let on = args::on_off(args[2]).filter(|_| args::is(args[2], "on") || args::is(args[2], "off"));
    let Some(on) = on else { return Err(CmdError::syntax()) };
    ctx.client.no_touch = on;
    ctx.client.handle.no_touch.store(on, Ordering::Relaxed);
    ctx.out.ok();
    Ok(())
}

fn client_reply(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    match args::lower(args[2]).as_str() {
        "on" => {
            ctx.client.reply_mode = ReplyMode::On;
            ctx.out.ok();
        }
        "off" => ctx.client.reply_mode = ReplyMode::Off,
        "skip" => {
            if ctx.client.reply_mode == ReplyMode::On {
                ctx.client.reply_mode = ReplyMode::SkipNext;
            }
        }
        _ => return Err(CmdError::syntax()),
    }
    Ok(())
}

fn client_pause(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let ms = match crate::num::parse_i64(args[2]) {
        Some(n) if n >= 0 => n,
        _ => return Err(CmdError::msg("ERR timeout is not an integer or out of range")),
    };
    let writes_only = match args.get(3) {
        None => false,
        Some(m) if args::is(m, "write") => true,
        Some(m) if args::is(m, "all") => false,
        Some(_) => return Err(CmdError::syntax()),
    };
    if args.len() > 4 {
        return Err(CmdError::syntax());
    }
    ctx.srv.pause.pause(unix_ms().saturating_add(ms), writes_only);
    ctx.out.ok();
    Ok(())
}

fn client_unpause(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    ctx.srv.pause.unpause();
    ctx.out.ok();
    Ok(())
}

fn client_help(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let lines: &[&str] = &[
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are: ID, TYPE, USER, ADDR, LADDR, SKIPME, MAXAGE.",
        "LIST [options ...]",
        "    Return information about client connections. Options: TYPE, ID.",
        "UNPAUSE",
        "    Stop the current client pause, resuming traffic.",
        "PAUSE <timeout> [WRITE|ALL]",
        "    Suspend all, or just write, clients for <timeout> milliseconds.",
        "REPLY (ON|OFF|SKIP)",
        "    Control the replies sent to the current connection.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "SETINFO <LIB-NAME|LIB-VER> <value>",
        "    Set client library name or version.",
        "NO-EVICT (ON|OFF)",
        "    Protect the current client connection from eviction.",
        "NO-TOUCH (ON|OFF)",
        "    Will not touch LRU/LFU stats when this mode is on.",
        "HELP",
        "    Print this help.",
    ];
    ctx.out.array(lines.len());
    for l in lines {
        ctx.out.simple(l.as_bytes());
    }
    Ok(())
}

pub const COMMANDS: &[(&str, Handler)] = &[
    ("client|id", client_id),
    ("client|setname", client_setname),
    ("client|getname", client_getname),
    ("client|list", client_list),
    ("client|info", client_info),
    ("client|kill", client_kill),
    ("client|setinfo", client_setinfo),
    ("client|no-evict", client_no_evict),
    ("client|no-touch", client_no_touch),
    ("client|reply", client_reply),
    ("client|pause", client_pause),
    ("client|unpause", client_unpause),
    ("client|help", client_help),
];

/// Pauses the whole server for `d` (DEBUG SLEEP): every client's next command waits, this one sleeps.
pub fn sleep_server(ctx: &mut Ctx<'_>, d: Duration) {
    ctx.srv.pause.pause(unix_ms() + d.as_millis() as i64, false);
    ctx.client.action = Some(Action::Sleep(d));
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::TestClient;

    #[test]
    fn names_and_ids() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["CLIENT", "GETNAME"]), "(nil)");
        assert_eq!(
            c.text(&["CLIENT", "SETNAME", "a b"]),
            "-ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(c.text(&["CLIENT", "SETNAME", "worker-1"]), "OK");
        assert_eq!(c.text(&["CLIENT", "GETNAME"]), "worker-1");
        let id = c.text(&["CLIENT", "ID"]);
        let info = c.text(&["CLIENT", "INFO"]);
        assert!(info.starts_with(&format!("id={id} ")), "{info}");
        assert!(info.contains(" name=worker-1 "), "{info}");
        assert!(info.contains(" cmd=client|info "), "{info}");
    }

    #[test]
    fn unknown_subcommand_and_arity() {
        let mut c = TestClient::new();
        assert_eq!(
            c.text(&["CLIENT", "foo"]),
            "-ERR unknown subcommand 'foo'. Try CLIENT HELP."
        );
        assert_eq!(
            c.text(&["CLIENT"]),
            "-ERR wrong number of arguments for 'client' command"
        );
        assert_eq!(
            c.text(&["CLIENT", "KILL"]),
            "-ERR wrong number of arguments for 'client|kill' command"
        );
        assert_eq!(c.text(&["CLIENT", "KILL", "1.2.3.4:5"]), "-ERR No such client");
        assert_eq!(c.text(&["CLIENT", "KILL", "ID", "999"]), "0");
    }

    #[test]
    fn reply_off_and_skip_suppress_replies() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["CLIENT", "REPLY", "SKIP"]), "(nil)");
        assert_eq!(c.text(&["PING"]), "(nil)");
        assert_eq!(c.text(&["PING"]), "PONG");
        assert_eq!(c.text(&["CLIENT", "REPLY", "OFF"]), "(nil)");
        assert_eq!(c.text(&["PING"]), "(nil)");
        assert_eq!(c.text(&["CLIENT", "REPLY", "ON"]), "OK");
        assert_eq!(c.text(&["PING"]), "PONG");
    }

    #[test]
    fn setinfo_validates_attributes() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]), "OK");
        assert_eq!(
            c.text(&["CLIENT", "SETINFO", "FOO", "x"]),
            "-ERR Unrecognized option 'FOO'"
        );
        assert!(c.text(&["CLIENT", "INFO"]).contains("lib-name=redis-py"));
    }
}
