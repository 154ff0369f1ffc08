//! The command table: every command's arity, flags and key positions as data, bound to its handler.
//!
//! The data is `commands.json`, captured from the reference server by `scripts/gen-command-metadata.py`:
//! the exact COMMAND INFO and COMMAND DOCS replies of each command. The dispatcher reads arity, flags and key
//! positions from it, and COMMAND answers from it, so what Shoal declares and what it enforces cannot drift
//! apart. Handlers are bound by name from the command family files (`cmd/*.rs`); a command without a handler is
//! unknown to Shoal (and absent from COMMAND), a handler without data is a startup error caught by a unit test.

use std::collections::HashMap;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use bytes::Bytes;
use shoal_protocol::Frame;

use crate::cmd::Handler;

/// Command flags (Redis's `CMD_*`), as bits.
pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const FAST: u32 = 1 << 11;
    pub const NO_AUTH: u32 = 1 << 12;
    pub const MAY_REPLICATE: u32 = 1 << 13;
    pub const NO_MANDATORY_KEYS: u32 = 1 << 14;
    pub const PROTECTED: u32 = 1 << 15;
    pub const NO_ASYNC_LOADING: u32 = 1 << 16;
    pub const NO_MULTI: u32 = 1 << 17;
    pub const MOVABLE_KEYS: u32 = 1 << 18;
    pub const ALLOW_BUSY: u32 = 1 << 19;

    /// The bit for a flag name as COMMAND INFO spells it.
    pub fn from_name(name: &str) -> u32 {
        match name {
            "write" => WRITE,
            "readonly" => READONLY,
            "denyoom" => DENYOOM,
            "admin" => ADMIN,
            "pubsub" => PUBSUB,
            "noscript" => NOSCRIPT,
            "blocking" => BLOCKING,
            "loading" => LOADING,
            "stale" => STALE,
            "skip_monitor" => SKIP_MONITOR,
            "skip_slowlog" => SKIP_SLOWLOG,
            "fast" => FAST,
            "no_auth" => NO_AUTH,
            "may_replicate" => MAY_REPLICATE,
            "no_mandatory_keys" => NO_MANDATORY_KEYS,
            "protected" => PROTECTED,
            "no_async_loading" => NO_ASYNC_LOADING,
            "no_multi" => NO_MULTI,
            "movablekeys" => MOVABLE_KEYS,
            "allow_busy" => ALLOW_BUSY,
            _ => 0,
        }
    }
}

/// One command or subcommand.
pub struct Command {
    /// Index in the table; commandstats are kept by it.
    pub id: usize,
    /// Lower case; `container|sub` for subcommands, as Redis's `fullname`.
    pub name: String,
    pub arity: i32,
    pub flags: u32,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub handler: Option<Handler>,
    /// Subcommands by lower-case name.
    pub subcommands: FastMap<Box<[u8]>, usize>,
    pub parent: Option<usize>,
    /// The COMMAND INFO entry, listing only the subcommands Shoal implements.
    pub info: Frame,
    /// Where the keys are, as Redis 7 key specifications.
    pub key_specs: Vec<KeySpec>,
}

/// How to find where a key specification's keys begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginSearch {
    Index(i64),
    Keyword { keyword: Vec<u8>, startfrom: i64 },
    Unknown,
}

/// How to find a key specification's keys from where they begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindKeys {
    Range {
        lastkey: i64,
        keystep: i64,
        limit: i64,
    },
    Keynum {
        keynumidx: i64,
        firstkey: i64,
        keystep: i64,
    },
    Unknown,
}

/// One key specification (Redis 7's `keySpec`): a rule locating a group of key arguments.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// Flags as COMMAND INFO spells them (`RW`, `access`, ...), for COMMAND GETKEYSANDFLAGS.
    pub flags: Vec<Frame>,
    pub begin: BeginSearch,
    pub find: FindKeys,
}

/// The arguments contradict a key specification (a key count past the end, ...): the command itself will
/// report the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadKeySpec;

/// A key argument: its index in the request and the spec that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPos {
    pub index: usize,
    pub spec: usize,
}

impl Command {
    #[inline]
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether `argc` arguments (command name included) satisfy the arity.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let a = self.arity as i64;
        (a > 0 && argc == a) || (a < 0 && argc >= -a) || a == 0
    }

    /// The key arguments of a request, by the key specifications (Redis's getKeysUsingKeySpecs). Err when the
    /// arguments contradict a spec (a key count past the end, ...), which the command itself reports.
    pub fn keys(&self, args: &[&[u8]]) -> Result<smallvec::SmallVec<[KeyPos; 4]>, BadKeySpec> {
        let argc = args.len() as i64;
        let mut out = smallvec::SmallVec::new();
        for (si, spec) in self.key_specs.iter().enumerate() {
            let first = match &spec.begin {
                BeginSearch::Index(i) => *i,
                BeginSearch::Keyword { keyword, startfrom } => {
                    let start = if *startfrom > 0 { *startfrom } else { argc + startfrom };
                    let end = if *startfrom > 0 { argc - 1 } else { 0 };
                    let mut found = 0;
                    let mut i = start;
                    while i != end {
                        if i >= argc || i < 1 {
                            break;
                        }
                        if args[i as usize].eq_ignore_ascii_case(keyword) {
                            found = i + 1;
                            break;
                        }
                        i = if start <= end { i + 1 } else { i - 1 };
                    }
                    if found == 0 {
                        continue;
                    }
                    found
                }
                BeginSearch::Unknown => return Err(BadKeySpec),
            };
            let (first, last, step) = match &spec.find {
                FindKeys::Range {
                    lastkey,
                    keystep,
                    limit,
                } => {
                    let last = if *lastkey >= 0 {
                        first + lastkey
                    } else if *limit == 0 {
                        argc + lastkey
                    } else {
                        first + ((argc - first) / limit + lastkey)
                    };
                    (first, last, *keystep)
                }
                FindKeys::Keynum {
                    keynumidx,
                    firstkey,
                    keystep,
                } => {
                    let at = first + keynumidx;
                    if at >= argc || at < 0 {
                        return Err(BadKeySpec);
                    }
                    let n = crate::num::parse_i64(args[at as usize])
                        .filter(|n| *n >= 0)
                        .ok_or(BadKeySpec)?;
                    let first = first + firstkey;
                    (first, first + n - 1, *keystep)
                }
                FindKeys::Unknown => return Err(BadKeySpec),
            };
            if last < first {
                // Zero keys from a keynum spec is fine; a range past its own start is not.
                if matches!(spec.find, FindKeys::Keynum { .. }) && last == first - 1 {
                    continue;
                }
                return Err(BadKeySpec);
            }
            if last >= argc || first >= argc {
                return Err(BadKeySpec);
            }
            let mut i = first;
            while i <= last {
                if i >= 1 && i < argc {
                    out.push(KeyPos {
                        index: i as usize,
                        spec: si,
                    });
                }
                i += step.max(1);
            }
        }
        Ok(out)
    }
}

/// Why a lookup failed, with Redis's texts.
#[derive(Debug, PartialEq, Eq)]
pub enum LookupError {
    UnknownCommand,
    UnknownSubcommand,
}

pub struct CommandTable {
    commands: Vec<Command>,
    top: FastMap<Box<[u8]>, usize>,
    asking: usize,
}

static METADATA: &str = include_str!("commands.json");
/// Commands and subcommands of later Redis versions that Shoal implements (CLIENT SETINFO, CLIENT NO-TOUCH),
/// written by hand in the same format; subcommands are grafted onto their container.
static EXTRA_METADATA: &str = include_str!("commands-extra.json");

/// The captured metadata with the hand-written extras merged in.
fn metadata() -> Result<serde_json::Value, String> {
    let mut data: serde_json::Value =
        serde_json::from_str(METADATA).map_err(|e| format!("commands.json is not valid JSON: {e}"))?;
    let extra: serde_json::Value =
        serde_json::from_str(EXTRA_METADATA).map_err(|e| format!("commands-extra.json is not valid JSON: {e}"))?;
    merge_extra(&mut data, extra)?;
    Ok(data)
}

/// Adds the hand-written entries of `extra` to the captured metadata.
fn merge_extra(data: &mut serde_json::Value, extra: serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    let (Some(obj), Value::Object(extra)) = (data.as_object_mut(), extra) else {
        return Err("commands-extra.json: top level is not an object".into());
    };
    for (name, meta) in extra {
        let Some((parent, sub)) = name.split_once('|') else {
            obj.insert(name, meta);
            continue;
        };
        let Some(p) = obj.get_mut(parent) else {
            return Err(format!("{name}: no container {parent}"));
        };
        let sub_info = meta.get("info").cloned().unwrap_or(Value::Null);
        match p.get_mut("info").and_then(|i| i.get_mut(9)) {
            Some(Value::Array(subs)) => subs.push(sub_info),
            Some(Value::Object(set)) => {
                if let Some(Value::Array(subs)) = set.get_mut("set") {
                    subs.push(sub_info);
                }
            }
            _ => return Err(format!("{name}: container {parent} has no subcommand list")),
        }
        if let Some(Value::Array(pairs)) = p.get_mut("docs").and_then(|d| d.get_mut("map")) {
            for pair in pairs.iter_mut() {
                if pair.get(0).and_then(|k| k.as_str()) == Some("subcommands") {
                    if let Some(Value::Array(subdocs)) = pair.get_mut(1).and_then(|m| m.get_mut("map")) {
                        subdocs.push(Value::Array(vec![
                            Value::String(format!("{parent}|{sub}")),
                            meta.get("docs").cloned().unwrap_or(Value::Null),
                        ]));
                    }
                }
            }
        }
    }
    Ok(())
}

impl CommandTable {
    /// Builds the table from the captured metadata and the handlers the families register (names are lower
    /// case, `container|sub` for subcommands). Fails if a handler has no metadata.
    pub fn build(handlers: &[(&'static str, Handler)]) -> Result<CommandTable, String> {
        let data = metadata()?;
        let handler_of: HashMap<&str, Handler> = handlers.iter().copied().collect();
        let mut table = CommandTable {
            commands: Vec::new(),
            top: FastMap::default(),
            asking: usize::MAX,
        };
        let mut bound = 0usize;
        let obj = data.as_object().ok_or("commands.json: top level is not an object")?;
        for (name, meta) in obj {
            let info = meta.get("info").ok_or_else(|| format!("{name}: no info"))?;
            let info = json_to_frame(info);
            let own = handler_of.get(name.as_str()).copied();
            // Subcommands that have handlers.
            let sub_infos: Vec<Frame> = match &info {
                Frame::Array(items) => match items.get(9) {
                    Some(Frame::Set(subs)) | Some(Frame::Array(subs)) => subs.clone(),
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            let implemented_subs: Vec<(String, Frame)> = sub_infos
                .into_iter()
                .filter_map(|f| {
                    let full = frame_str(as_array(&f)?.first()?)?;
                    handler_of.contains_key(full.as_str()).then_some((full, f))
                })
                .collect();
            if own.is_none() && implemented_subs.is_empty() {
                continue;
            }
            let id = table.commands.len();
            let mut cmd = command_from_info(id, name, &info, own, None)?;
            if own.is_some() {
                bound += 1;
            }
            let kept: Vec<&str> = implemented_subs.iter().map(|(n, _)| n.as_str()).collect();
            cmd.info = filter_subcommands_in_info(&info, &kept);
            table.commands.push(cmd);
            table.top.insert(name.as_bytes().into(), id);
            for (full, sub_info) in implemented_subs {
                let sid = table.commands.len();
                let h = handler_of.get(full.as_str()).copied();
                let sub = command_from_info(sid, &full, &sub_info, h, Some(id))?;
                bound += 1;
                let short = full.split('|').nth(1).unwrap_or(&full).to_string();
                table.commands.push(sub);
                table.commands[id]
                    .subcommands
                    .insert(short.into_bytes().into_boxed_slice(), sid);
            }
        }
        table.asking = table.top.get(b"asking".as_slice()).copied().unwrap_or(usize::MAX);
        if bound != handlers.len() {
            let known: std::collections::HashSet<&str> = table.commands.iter().map(|c| c.name.as_str()).collect();
            let missing: Vec<&str> = handlers
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| !known.contains(n))
                .collect();
            return Err(format!("handlers without command metadata: {missing:?}"));
        }
        Ok(table)
    }

    /// Finds the command for a request: the subcommand of a container when there is a second argument.
    #[inline]
    pub fn lookup(&self, args: &[&[u8]]) -> Result<&Command, LookupError> {
        let Some(name) = args.first() else {
            return Err(LookupError::UnknownCommand);
        };
        let id = self.find_top(name).ok_or(LookupError::UnknownCommand)?;
        let cmd = &self.commands[id];
        if cmd.subcommands.is_empty() || args.len() < 2 {
            return Ok(cmd);
        }
        let mut buf = [0u8; 32];
        let sub = args[1];
        if sub.len() > buf.len() {
            return Err(LookupError::UnknownSubcommand);
        }
        let lower = &mut buf[..sub.len()];
        lower.copy_from_slice(sub);
        lower.make_ascii_lowercase();
        match cmd.subcommands.get(&*lower) {
            Some(&sid) => Ok(&self.commands[sid]),
            None => Err(LookupError::UnknownSubcommand),
        }
    }

    #[inline]
    fn find_top(&self, name: &[u8]) -> Option<usize> {
        let mut buf = [0u8; 32];
        if name.len() > buf.len() {
            return None;
        }
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        self.top.get(&*lower).copied()
    }

    /// COMMAND DOCS replies for the named commands (`container|sub` names too), in order, skipping unknown ones.
    ///
    /// Docs are decoded from the metadata on request rather than kept decoded: they are a few hundred
    /// kilobytes that only COMMAND DOCS reads, and memory at startup counts against a small maxmemory.
    pub fn docs_for(&self, names: &[String]) -> Vec<(String, Frame)> {
        let Ok(data) = metadata() else { return Vec::new() };
        let mut out = Vec::new();
        for name in names {
            let Some(cmd) = self.all().iter().find(|c| &c.name == name) else {
                continue;
            };
            let (top, sub) = match name.split_once('|') {
                Some((t, s)) => (t, Some(s)),
                None => (name.as_str(), None),
            };
            let Some(docs) = data.get(top).and_then(|m| m.get("docs")).filter(|d| !d.is_null()) else {
                continue;
            };
            let docs = json_to_frame(docs);
            let frame = match sub {
                None => {
                    let kept: Vec<&str> = cmd
                        .subcommands
                        .values()
                        .map(|&id| self.commands[id].name.as_str())
                        .collect();
                    filter_subcommands_in_docs(&docs, &kept)
                }
                Some(_) => match map_get(&docs, "subcommands").and_then(|subs| map_get(subs, name)) {
                    Some(d) => d.clone(),
                    None => continue,
                },
            };
            out.push((cmd.name.clone(), frame));
        }
        out
    }

    /// The id of ASKING (or `usize::MAX` without cluster commands), which the gate must not reset itself after.
    #[inline]
    pub fn asking_id(&self) -> usize {
        self.asking
    }

    /// A top-level command by name (any case).
    pub fn get(&self, name: &[u8]) -> Option<&Command> {
        self.find_top(name).map(|id| &self.commands[id])
    }

    pub fn by_id(&self, id: usize) -> &Command {
        &self.commands[id]
    }

    /// Every command and subcommand, by id.
    pub fn all(&self) -> &[Command] {
        &self.commands
    }

    /// Top-level commands.
    pub fn top_level(&self) -> impl Iterator<Item = &Command> {
        self.commands.iter().filter(|c| c.parent.is_none())
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

fn as_array(f: &Frame) -> Option<&[Frame]> {
    match f {
        Frame::Array(items) => Some(items),
        _ => None,
    }
}

fn frame_str(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn command_from_info(
    id: usize,
    name: &str,
    info: &Frame,
    handler: Option<Handler>,
    parent: Option<usize>,
) -> Result<Command, String> {
    let items = as_array(info).ok_or_else(|| format!("{name}: info is not an array"))?;
    let int = |i: usize| {
        items
            .get(i)
            .and_then(|f| f.as_integer())
            .ok_or_else(|| format!("{name}: field {i}"))
    };
    let flags = match items.get(2) {
        Some(Frame::Set(fs)) | Some(Frame::Array(fs)) => fs
            .iter()
            .filter_map(frame_str)
            .map(|f| flags::from_name(&f))
            .fold(0, |a, b| a | b),
        _ => 0,
    };
    Ok(Command {
        id,
        name: name.to_string(),
        arity: int(1)? as i32,
        flags,
        first_key: int(3)? as i32,
        last_key: int(4)? as i32,
        step: int(5)? as i32,
        handler,
        subcommands: FastMap::default(),
        parent,
        info: info.clone(),
        key_specs: items.get(8).map(key_specs_from).unwrap_or_default(),
    })
}

fn map_get<'a>(f: &'a Frame, key: &str) -> Option<&'a Frame> {
    match f {
        Frame::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| frame_str(k).as_deref() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn map_int(f: &Frame, key: &str) -> Option<i64> {
    map_get(f, key).and_then(|v| v.as_integer())
}

fn key_specs_from(f: &Frame) -> Vec<KeySpec> {
    let specs = match f {
        Frame::Set(s) | Frame::Array(s) => s,
        _ => return Vec::new(),
    };
    specs
        .iter()
        .map(|spec| {
            let flags = match map_get(spec, "flags") {
                Some(Frame::Set(fs)) | Some(Frame::Array(fs)) => fs.clone(),
                _ => Vec::new(),
            };
            let begin = match map_get(spec, "begin_search") {
                Some(bs) => {
                    let kind = map_get(bs, "type").and_then(frame_str).unwrap_or_default();
                    let s = map_get(bs, "spec");
                    match (kind.as_str(), s) {
                        ("index", Some(s)) => BeginSearch::Index(map_int(s, "index").unwrap_or(0)),
                        ("keyword", Some(s)) => BeginSearch::Keyword {
                            keyword: map_get(s, "keyword")
                                .and_then(frame_str)
                                .unwrap_or_default()
                                .into_bytes(),
                            startfrom: map_int(s, "startfrom").unwrap_or(1),
                        },
                        _ => BeginSearch::Unknown,
                    }
                }
                None => BeginSearch::Unknown,
            };
            let find = match map_get(spec, "find_keys") {
                Some(fk) => {
                    let kind = map_get(fk, "type").and_then(frame_str).unwrap_or_default();
                    let s = map_get(fk, "spec");
                    match (kind.as_str(), s) {
                        ("range", Some(s)) => FindKeys::Range {
                            lastkey: map_int(s, "lastkey").unwrap_or(0),
                            keystep: map_int(s, "keystep").unwrap_or(1),
                            limit: map_int(s, "limit").unwrap_or(0),
                        },
                        ("keynum", Some(s)) => FindKeys::Keynum {
                            keynumidx: map_int(s, "keynumidx").unwrap_or(0),
                            firstkey: map_int(s, "firstkey").unwrap_or(1),
                            keystep: map_int(s, "keystep").unwrap_or(1),
                        },
                        _ => FindKeys::Unknown,
                    }
                }
                None => FindKeys::Unknown,
            };
            KeySpec { flags, begin, find }
        })
        .collect()
}

fn filter_subcommands_in_info(info: &Frame, keep: &[&str]) -> Frame {
    let Some(items) = as_array(info) else {
        return info.clone();
    };
    let mut items = items.to_vec();
    if let Some(Frame::Set(subs)) | Some(Frame::Array(subs)) = items.get_mut(9) {
        subs.retain(|s| {
            as_array(s)
                .and_then(|a| a.first())
                .and_then(frame_str)
                .is_some_and(|n| keep.contains(&n.as_str()))
        });
    }
    Frame::Array(items)
}

fn filter_subcommands_in_docs(docs: &Frame, keep: &[&str]) -> Frame {
    let Frame::Map(pairs) = docs else { return docs.clone() };
    let pairs = pairs
        .iter()
        .map(|(k, v)| {
            if frame_str(k).as_deref() == Some("subcommands") {
                if let Frame::Map(subs) = v {
                    let subs = subs
                        .iter()
                        .filter(|(n, _)| frame_str(n).is_some_and(|n| keep.contains(&n.as_str())))
                        .cloned()
                        .collect();
                    return (k.clone(), Frame::Map(subs));
                }
            }
            (k.clone(), v.clone())
        })
        .collect();
    Frame::Map(pairs)
}

/// Decodes the typed JSON of `commands.json` (see the generator script) into a frame.
fn json_to_frame(v: &serde_json::Value) -> Frame {
    use serde_json::Value;
    match v {
        Value::String(s) => Frame::Bulk(Bytes::from(s.clone())),
        Value::Number(n) => Frame::Integer(n.as_i64().unwrap_or(0)),
        Value::Bool(b) => Frame::Boolean(*b),
        Value::Null => Frame::Null,
        Value::Array(items) => Frame::Array(items.iter().map(json_to_frame).collect()),
        Value::Object(o) => {
            if let Some(Value::String(s)) = o.get("s") {
                Frame::Simple(Bytes::from(s.clone()))
            } else if let Some(Value::Array(items)) = o.get("set") {
                Frame::Set(items.iter().map(json_to_frame).collect())
            } else if let Some(Value::Array(pairs)) = o.get("map") {
                Frame::Map(
                    pairs
                        .iter()
                        .filter_map(|p| {
                            let p = p.as_array()?;
                            Some((json_to_frame(p.first()?), json_to_frame(p.get(1)?)))
                        })
                        .collect(),
                )
            } else {
                Frame::Null
            }
        }
    }
}
