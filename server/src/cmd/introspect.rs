//! The COMMAND family: what the server implements and where each command's keys are. Cluster clients (redis-py,
//! redis-rb) route by the key positions they read here, so the replies come straight from the command table's
//! captured metadata.

use shoal_protocol::Frame;

use super::{Ctx, Handler};
use crate::error::{CmdError, CmdResult};
use crate::glob::glob_match;

fn command(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if args.len() > 1 {
        return Err(CmdError::unknown_subcommand("command", args[1]));
    }
    let top: Vec<&Frame> = ctx.srv.commands.top_level().map(|c| &c.info).collect();
    ctx.out.array(top.len());
    for f in top {
        ctx.out.frame(f);
    }
    Ok(())
}

fn command_count(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    ctx.out.integer(ctx.srv.commands.top_level().count() as i64);
    Ok(())
}

fn command_info(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if args.len() == 2 {
        return command(ctx, &args[..1]);
    }
    ctx.out.array(args.len() - 2);
    for name in &args[2..] {
        match lookup_full(ctx, name) {
            Some(info) => ctx.out.frame(&info),
            None => ctx.out.null(),
        }
    }
    Ok(())
}

/// A command or `container|sub` by name.
fn lookup_full(ctx: &Ctx<'_>, name: &[u8]) -> Option<Frame> {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    ctx.srv
        .commands
        .all()
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.info.clone())
}

fn command_docs(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let names: Vec<String> = if args.len() == 2 {
        ctx.srv.commands.top_level().map(|c| c.name.clone()).collect()
    } else {
        args[2..]
            .iter()
            .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
            .collect()
    };
    let docs = ctx.srv.commands.docs_for(&names);
    ctx.out.map(docs.len());
    for (name, frame) in docs {
        ctx.out.bulk(name.as_bytes());
        ctx.out.frame(&frame);
    }
    Ok(())
}

fn command_list(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let filter = match &args[2..] {
        [] => None,
        [by, kind, value] if super::args::is(by, "filterby") => Some((super::args::lower(kind), *value)),
        _ => return Err(CmdError::syntax()),
    };
    let mut names = Vec::new();
    for c in ctx.srv.commands.all() {
        let keep = match &filter {
            None => true,
            Some((k, v)) if k == "pattern" => glob_match(v, c.name.as_bytes(), true),
            Some((k, v)) if k == "aclcat" => {
                let cat = String::from_utf8_lossy(v).to_ascii_lowercase();
                acl_categories(&c.info).iter().any(|x| x.trim_start_matches('@') == cat)
            }
            Some((k, _)) if k == "module" => false,
            Some(_) => return Err(CmdError::syntax()),
        };
        if keep {
            names.push(c.name.clone());
        }
    }
    ctx.out.array(names.len());
    for n in names {
        ctx.out.bulk(n.as_bytes());
    }
    Ok(())
}

fn acl_categories(info: &Frame) -> Vec<String> {
    match info {
        Frame::Array(items) => match items.get(6) {
            Some(Frame::Set(cats)) | Some(Frame::Array(cats)) => cats
                .iter()
                .filter_map(|c| match c {
                    Frame::Simple(s) | Frame::Bulk(s) => Some(String::from_utf8_lossy(s).into_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn getkeys_impl(ctx: &mut Ctx<'_>, args: &[&[u8]], with_flags: bool) -> CmdResult {
    let inner = &args[2..];
    let cmd = ctx
        .srv
        .commands
        .lookup(inner)
        .map_err(|_| CmdError::msg("ERR Invalid command specified"))?;
    if cmd.key_specs.is_empty() {
        return Err(CmdError::msg("ERR The command has no key arguments"));
    }
    if !cmd.arity_ok(inner.len()) {
        return Err(CmdError::msg("ERR Invalid number of arguments specified for command"));
    }
    let keys = match cmd.keys(inner) {
        Ok(k) => k,
        Err(_) if cmd.has(crate::command::flags::NO_MANDATORY_KEYS) => Default::default(),
        Err(_) => return Err(CmdError::msg("ERR Invalid arguments specified for command")),
    };
    ctx.out.array(keys.len());
    for k in keys {
        if with_flags {
            ctx.out.array(2);
            ctx.out.bulk(inner[k.index]);
            let flags = match variable_key_flags(&cmd.name, inner) {
                Some(flags) => flags
                    .iter()
                    .map(|f| Frame::Simple(bytes::Bytes::from_static(f.as_bytes())))
                    .collect(),
                None => cmd.key_specs.get(k.spec).map(|s| s.flags.clone()).unwrap_or_default(),
            };
            ctx.out.frame(&Frame::Set(flags));
        } else {
            ctx.out.bulk(inner[k.index]);
        }
    }
    Ok(())
}

/// Key flags of commands whose key spec says `variable_flags`: Redis asks the command itself (`setGetKeys`).
fn variable_key_flags(name: &str, args: &[&[u8]]) -> Option<&'static [&'static str]> {
    match name {
        "set" => Some(if args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get")) {
            &["RW", "access", "update"]
        } else {
            &["OW", "update"]
        }),
        _ => None,
    }
}

fn command_getkeys(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    getkeys_impl(ctx, args, false)
}

fn command_getkeysandflags(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    getkeys_impl(ctx, args, true)
}

fn command_help(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let lines: &[&str] = &[
        "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "(no subcommand)",
        "    Return details about all commands.",
        "COUNT",
        "    Return the total number of commands in this server.",
        "LIST",
        "    Return a list of all commands in this server.",
        "INFO [<command-name> ...]",
        "    Return details about multiple commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "GETKEYS <full-command>",
        "    Return the keys from a full command.",
        "GETKEYSANDFLAGS <full-command>",
        "    Return the keys and the access flags from a full command.",
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
    ("command", command),
    ("command|count", command_count),
    ("command|info", command_info),
    ("command|docs", command_docs),
    ("command|list", command_list),
    ("command|getkeys", command_getkeys),
    ("command|getkeysandflags", command_getkeysandflags),
    ("command|help", command_help),
];

#[cfg(test)]
mod tests {
    use crate::cmd::testing::TestClient;

    #[test]
    fn getkeys_follows_key_specs() {
        let mut c = TestClient::new();
        assert_eq!(c.text(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]), "[a, b]");
        assert_eq!(c.text(&["COMMAND", "GETKEYS", "GET", "k"]), "[k]");
        assert_eq!(
            c.text(&["COMMAND", "GETKEYS", "NOPE", "k"]),
            "-ERR Invalid command specified"
        );
        assert_eq!(
            c.text(&["COMMAND", "GETKEYS", "PING", "k"]),
            "-ERR The command has no key arguments"
        );
    }

    #[test]
    fn count_matches_the_list_of_top_level_commands() {
        let mut c = TestClient::new();
        let n: usize = c.text(&["COMMAND", "COUNT"]).parse().unwrap();
        match c.call(&["COMMAND"]) {
            shoal_protocol::Frame::Array(items) => assert_eq!(items.len(), n),
            other => panic!("{other:?}"),
        }
        assert!(c
            .text(&["COMMAND", "INFO", "get"])
            .starts_with("[[get, 2, [readonly, fast], 1, 1, 1"));
        assert_eq!(c.text(&["COMMAND", "INFO", "nope"]), "[(nil)]");
    }
}
