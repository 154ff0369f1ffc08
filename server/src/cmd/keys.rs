//! The generic key family, in the manner of Redis's `db.c` and `object.c`: commands that work on keys whatever
//! their type — DEL, UNLINK, EXISTS, TYPE, RENAME, RENAMENX, COPY, MOVE, KEYS, SCAN, RANDOMKEY, DBSIZE, FLUSHDB,
//! FLUSHALL, TOUCH — and the introspection commands OBJECT and MEMORY USAGE / MEMORY HELP.
//!
//! Multi-key commands take every shard they need at once (`Db::lock_keys`, `Keyspace::lock_across`), so DEL,
//! EXISTS, RENAME, COPY and MOVE are atomic as in single-threaded Redis. Removed entries are freed after the
//! locks are released; UNLINK and FLUSH ... ASYNC hand big batches to `Server::free_in_background`.
//!
//! Which lookup each command uses follows Redis 7.0, because it decides the keyspace hit/miss counters and the
//! access clock: EXISTS, TYPE and OBJECT read without touching; TOUCH and COPY (source) read and touch;
//! RENAME, MOVE, COPY (destination) look up for writing (no hit/miss); DEL and UNLINK only delete;
//! MEMORY USAGE looks at the raw table, as Redis's `dbFind` does, so it even sizes a key that has expired but
//! was not collected yet.

use smallvec::SmallVec;

use super::args;
use super::{Ctx, Handler};
use crate::error::{self, CmdError, CmdResult};
use crate::glob::glob_match;
use crate::keyspace::evict::Victims;
use crate::keyspace::{Entry, Key, SHARDS};
use crate::num;
use shoal_protocol::ReplyWriter;

/// UNLINK frees in the background only from this many removed entries...
const LAZYFREE_MIN_ENTRIES: usize = 1024;
/// ...or this many bytes of them: handing off to a thread costs tens of microseconds, about what freeing a
/// thousand small entries, or unmapping a few MiB of pages, costs inline.
const LAZYFREE_MIN_BYTES: usize = 4 << 20;

/// Redis's `OBJ_SHARED_INTEGERS`: the values 0..10000 are shared objects (OBJECT REFCOUNT).
const SHARED_INTEGERS: i64 = 10_000;
/// Redis's `OBJ_SHARED_REFCOUNT` (`INT_MAX`), what OBJECT REFCOUNT reports for a shared object.
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

const LFU_NOT_SELECTED: &str = "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
const LFU_SELECTED: &str = "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that \
when switching between policies at runtime LRU and LFU data will take some time to adjust.";
const INT_OUT_OF_RANGE: &str = "ERR value is out of range, value must between -2147483648 and 2147483647";
const INVALID_CURSOR: &str = "ERR invalid cursor";
const COPY_IN_CLUSTER: &str = "ERR Copying to another database is not allowed in cluster mode";
const MOVE_IN_CLUSTER: &str = "ERR MOVE is not allowed in cluster mode";

/// Entries removed under a lock, freed once it is released.
type Removed = SmallVec<[Entry; 4]>;

// ---------------------------------------------------------------------------------------------------------------
// DEL, UNLINK, EXISTS, TOUCH, TYPE
// ---------------------------------------------------------------------------------------------------------------

/// Removes the live keys among `keys` (a key named twice counts once) and returns what was removed. Keys found
/// expired are collected as expired, as Redis's `expireIfNeeded` before `dbDelete` does.
fn remove_keys(ctx: &Ctx<'_>, keys: &[&[u8]]) -> Removed {
    let now = ctx.now;
    let db = ctx.db();
    let mut removed = Removed::new();
    if let [k] = keys {
        let key = Key::new(k);
        let mut shard = db.lock(&key);
        if let Some(pos) = shard.find(&key, &now) {
            removed.push(shard.remove(&key, pos));
        }
        return removed;
    }
    let keys: Vec<Key> = keys.iter().map(|k| Key::new(k)).collect();
    let mut set = db.lock_keys(keys.iter());
    for key in &keys {
        let shard = set.shard(key);
        if let Some(pos) = shard.find(key, &now) {
            removed.push(shard.remove(key, pos));
        }
    }
    removed
}

/// Whether freeing `removed` is big enough to be worth a hand-off to the background thread.
fn worth_freeing_in_background(removed: &Removed) -> bool {
    removed.len() >= LAZYFREE_MIN_ENTRIES
        || removed.iter().map(Entry::requested_size).sum::<usize>() >= LAZYFREE_MIN_BYTES
}

/// DEL frees inline, unless `lazyfree-lazy-user-del` makes it UNLINK (the setting is read only when the
/// freeing is big enough to matter).
fn del(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let removed = remove_keys(ctx, &args[1..]);
    ctx.out.integer(removed.len() as i64);
    if worth_freeing_in_background(&removed) && ctx.srv.config.read().lazyfree_lazy_user_del {
        ctx.srv.free_in_background(vec![removed.into_vec()]);
    }
    Ok(())
}

/// UNLINK: DEL that frees in the background when freeing is big enough to be worth a hand-off.
fn unlink(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let removed = remove_keys(ctx, &args[1..]);
    ctx.out.integer(removed.len() as i64);
    if worth_freeing_in_background(&removed) {
        ctx.srv.free_in_background(vec![removed.into_vec()]);
    }
    Ok(())
}

/// Counts the live keys among `keys`, a key named twice counting twice. `touch` records the access (TOUCH);
/// otherwise the lookup is Redis's `LOOKUP_NOTOUCH` (EXISTS). Both count keyspace hits and misses.
fn count_live(ctx: &Ctx<'_>, keys: &[&[u8]], touch: bool) -> i64 {
    let now = ctx.now;
    let db = ctx.db();
    if let [k] = keys {
        let key = Key::new(k);
        return db.lock(&key).lookup_read(&key, &now, !touch).is_some() as i64;
    }
    let keys: Vec<Key> = keys.iter().map(|k| Key::new(k)).collect();
    let mut set = db.lock_keys(keys.iter());
    keys.iter()
        .filter(|key| set.shard(key).lookup_read(key, &now, !touch).is_some())
        .count() as i64
}

fn exists(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let n = count_live(ctx, &args[1..], false);
    ctx.out.integer(n);
    Ok(())
}

/// TOUCH always records the access, even for a client in CLIENT NO-TOUCH mode (as Redis 7.2 does).
fn touch(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let n = count_live(ctx, &args[1..], true);
    ctx.out.integer(n);
    Ok(())
}

fn type_(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let key = Key::new(args[1]);
    let name = {
        let mut shard = ctx.db().lock(&key);
        match shard.lookup_read(&key, &ctx.now, true) {
            Some(pos) => shard.entry(&key, pos).kind().type_name(),
            None => "none",
        }
    };
    ctx.out.simple(name.as_bytes());
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// RENAME, RENAMENX, COPY, MOVE
// ---------------------------------------------------------------------------------------------------------------

/// Redis's `renameGenericCommand`. The entry keeps its value, TTL, encoding and access clock.
fn rename_generic(ctx: &mut Ctx<'_>, args: &[&[u8]], nx: bool) -> CmdResult {
    let srv = ctx.srv;
    let now = ctx.now;
    let (src, dst) = (Key::new(args[1]), Key::new(args[2]));
    let db = srv.keyspace.db(ctx.client.db);
    let mut set = db.lock_keys([&src, &dst]);
    if set.shard(&src).lookup_write(&src, &now).is_none() {
        return Err(CmdError::Static(error::NO_SUCH_KEY));
    }
    if src.bytes == dst.bytes {
        if nx {
            ctx.out.integer(0);
        } else {
            ctx.out.ok();
        }
        return Ok(());
    }
    let d = set.shard(&dst);
    let old_dst = match d.lookup_write(&dst, &now) {
        Some(_) if nx => {
            drop(set);
            ctx.out.integer(0);
            return Ok(());
        }
        Some(pos) => Some(d.remove(&dst, pos)),
        None => None,
    };
    // Found again: deleting the destination (or an expired one) may have shifted the source within its table.
    let s = set.shard(&src);
    let Some(pos) = s.find(&src, &now) else {
        return Err(CmdError::Static(error::NO_SUCH_KEY));
    };
    let old_src = s.remove(&src, pos);
    set.shard(&dst).insert(&dst, old_src.clone_with_key(dst.bytes));
    drop(set);
    drop(old_src);
    drop(old_dst);
    if nx {
        ctx.out.integer(1);
    } else {
        ctx.out.ok();
    }
    Ok(())
}

fn rename(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    rename_generic(ctx, args, false)
}

fn renamenx(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    rename_generic(ctx, args, true)
}

/// A database index argument as COPY ... DB and MOVE take it: Redis's `getIntFromObjectOrReply` (an integer in
/// the C `int` range), then `selectDb`'s range check.
fn parse_db(ctx: &Ctx<'_>, arg: &[u8]) -> Result<usize, CmdError> {
    let n = i32::try_from(args::int(arg)?).map_err(|_| CmdError::Static(INT_OUT_OF_RANGE))?;
    match usize::try_from(n) {
        Ok(db) if db < ctx.srv.keyspace.databases() => Ok(db),
        _ => Err(CmdError::Static(error::DB_INDEX_OUT_OF_RANGE)),
    }
}

struct CopyArgs {
    dst_db: usize,
    replace: bool,
}

impl CopyArgs {
    fn parse(ctx: &Ctx<'_>, opts: &[&[u8]]) -> Result<CopyArgs, CmdError> {
        let mut a = CopyArgs {
            dst_db: ctx.client.db,
            replace: false,
        };
        let mut i = 0;
        while i < opts.len() {
            if args::is(opts[i], "replace") {
                a.replace = true;
            } else if args::is(opts[i], "db") && i + 1 < opts.len() {
                a.dst_db = parse_db(ctx, opts[i + 1])?;
                i += 1;
            } else {
                return Err(CmdError::syntax());
            }
            i += 1;
        }
        Ok(a)
    }
}

/// COPY source destination [DB n] [REPLACE]. The copy is a new object, as Redis's `dupStringObject` makes:
/// same value, encoding and TTL, a fresh access clock.
fn copy(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let a = CopyArgs::parse(ctx, &args[3..])?;
    let src_db = ctx.client.db;
    if ctx.srv.cluster_enabled() && (src_db != 0 || a.dst_db != 0) {
        return Err(CmdError::Static(COPY_IN_CLUSTER));
    }
    if src_db == a.dst_db && args[1] == args[2] {
        return Err(CmdError::Static(error::SAME_OBJECT));
    }
    let srv = ctx.srv;
    let now = ctx.now;
    let no_touch = ctx.client.no_touch;
    let (src, dst) = (Key::new(args[1]), Key::new(args[2]));
    let mut set = srv.keyspace.lock_across(&[(src_db, &src), (a.dst_db, &dst)]);
    if set.shard(src_db, &src).lookup_read(&src, &now, no_touch).is_none() {
        drop(set);
        ctx.out.integer(0);
        return Ok(());
    }
    let d = set.shard(a.dst_db, &dst);
    let old_dst = match d.lookup_write(&dst, &now) {
        Some(pos) if a.replace => Some(d.remove(&dst, pos)),
        Some(_) => {
            drop(set);
            ctx.out.integer(0);
            return Ok(());
        }
        None => None,
    };
    let s = set.shard(src_db, &src);
    let Some(pos) = s.find(&src, &now) else {
        drop(set);
        ctx.out.integer(0);
        return Ok(());
    };
    let mut dup = s.entry(&src, pos).clone_with_key(dst.bytes);
    dup.set_access(now.initial_access());
    set.shard(a.dst_db, &dst).insert(&dst, dup);
    drop(set);
    drop(old_dst);
    ctx.out.integer(1);
    Ok(())
}

/// MOVE key db: the entry itself changes database, keeping everything.
fn move_(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    if ctx.srv.cluster_enabled() {
        return Err(CmdError::Static(MOVE_IN_CLUSTER));
    }
    let dst_db = parse_db(ctx, args[2])?;
    let src_db = ctx.client.db;
    if src_db == dst_db {
        return Err(CmdError::Static(error::SAME_OBJECT));
    }
    let srv = ctx.srv;
    let now = ctx.now;
    let key = Key::new(args[1]);
    let mut set = srv.keyspace.lock_across(&[(src_db, &key), (dst_db, &key)]);
    let moved = match set.shard(src_db, &key).lookup_write(&key, &now) {
        Some(pos) if set.shard(dst_db, &key).lookup_write(&key, &now).is_none() => {
            // Different databases, so the destination lookup did not disturb the source table.
            let e = set.shard(src_db, &key).remove(&key, pos);
            set.shard(dst_db, &key).insert(&key, e);
            1
        }
        _ => 0,
    };
    drop(set);
    ctx.out.integer(moved);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// KEYS, SCAN, RANDOMKEY, DBSIZE
// ---------------------------------------------------------------------------------------------------------------

/// KEYS pattern: every live key matching, streamed into the reply shard by shard. Expired keys are skipped
/// but not deleted, as Redis 7.0's `keyIsExpired` check does.
fn keys(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let pattern = args[1];
    let all = pattern == b"*";
    let now = ctx.now;
    let db = ctx.srv.keyspace.db(ctx.client.db);
    let out = &mut *ctx.out;
    let mark = out.defer_len();
    let mut n = 0usize;
    db.for_each_live(&now, |e| {
        let k = e.key();
        if all || glob_match(pattern, k, false) {
            out.bulk(k);
            n += 1;
        }
    });
    out.finish_array(mark, n);
    Ok(())
}

/// A SCAN cursor as Redis's `parseScanCursorOrReply` reads it: C `strtoul` in base 10, which accepts a sign
/// (`-1` wraps to 2^64-1), an empty string (0) and stops at a NUL byte, but not a leading space, trailing
/// garbage or overflow.
fn parse_cursor(arg: &[u8]) -> Option<u64> {
    let s = &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())];
    match s.first() {
        None => return Some(0),
        Some(b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') => return None,
        _ => {}
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        // No conversion: strtoul's end pointer stays at the sign, which is not the end of the string.
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(if negative { v.wrapping_neg() } else { v })
}

struct ScanArgs<'a> {
    cursor: u64,
    count: usize,
    pattern: Option<&'a [u8]>,
    type_name: Option<&'a [u8]>,
}

impl<'a> ScanArgs<'a> {
    fn parse(args: &[&'a [u8]]) -> Result<ScanArgs<'a>, CmdError> {
        let cursor = parse_cursor(args[1]).ok_or(CmdError::Static(INVALID_CURSOR))?;
        let mut a = ScanArgs {
            cursor,
            count: 10,
            pattern: None,
            type_name: None,
        };
        let mut i = 2;
        while i < args.len() {
            let has_value = i + 1 < args.len();
            if args::is(args[i], "count") && has_value {
                let n = args::int(args[i + 1])?;
                if n < 1 {
                    return Err(CmdError::syntax());
                }
                a.count = usize::try_from(n).unwrap_or(usize::MAX);
            } else if args::is(args[i], "match") && has_value {
                // "*" matches everything: skip the matching, as Redis does.
                a.pattern = (args[i + 1] != b"*").then_some(args[i + 1]);
            } else if args::is(args[i], "type") && has_value {
                a.type_name = Some(args[i + 1]);
            } else {
                return Err(CmdError::syntax());
            }
            i += 2;
        }
        Ok(a)
    }
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]. `Db::scan` visits about COUNT keys and guarantees
/// that a key present for the whole iteration is returned; MATCH and TYPE filter what it visited, so a call
/// may return fewer keys (even none) with a non-zero cursor, as in Redis. An unknown TYPE matches nothing
/// (Redis 7.0; 7.2 made it an error).
fn scan(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let a = ScanArgs::parse(args)?;
    let db = ctx.srv.keyspace.db(ctx.client.db);
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut visited = 0usize;
    let mut next = a.cursor;
    // `Db::scan` stops early after a budget of empty slot tables, so on a sparse database one step may visit
    // few keys or none. Step on until COUNT keys were visited (before filtering) or the iteration ends, so a
    // small database is scanned in one call as in Redis. `SHARDS` steps cover every table of an empty
    // database; the bound also caps the work when the visited keys are expired ones, which are not counted.
    for _ in 0..SHARDS {
        next = db.scan(next, a.count - visited, &ctx.now, |e| {
            visited += 1;
            let k = e.key();
            if a.pattern.is_some_and(|p| !glob_match(p, k, false)) {
                return;
            }
            if a.type_name
                .is_some_and(|t| !t.eq_ignore_ascii_case(e.kind().type_name().as_bytes()))
            {
                return;
            }
            found.push(k.to_vec());
        });
        if next == 0 || visited >= a.count {
            break;
        }
    }
    let out = &mut *ctx.out;
    out.array(2);
    out.bulk(next.to_string().as_bytes());
    out.array(found.len());
    for k in &found {
        out.bulk(k);
    }
    Ok(())
}

fn randomkey(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    match ctx.db().random_key(&ctx.now) {
        Some(k) => ctx.out.bulk(&k),
        None => ctx.out.null(),
    }
    Ok(())
}

/// DBSIZE counts keys expired but not yet collected, as Redis does.
fn dbsize(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    let n = ctx.db().len();
    ctx.out.integer(n as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// FLUSHDB, FLUSHALL
// ---------------------------------------------------------------------------------------------------------------

/// Redis's `getFlushCommandFlags`: true to free in the background. Without an argument,
/// `lazyfree-lazy-user-flush` decides.
fn flush_async(ctx: &Ctx<'_>, args: &[&[u8]]) -> Result<bool, CmdError> {
    match args {
        [_] => Ok(ctx.srv.config.read().lazyfree_lazy_user_flush),
        [_, a] if args::is(a, "sync") => Ok(false),
        [_, a] if args::is(a, "async") => Ok(true),
        _ => Err(CmdError::syntax()),
    }
}

/// Frees what a flush took out: on the background freeing thread, or here and now.
fn dispose(ctx: &Ctx<'_>, taken: Vec<Vec<Entry>>, background: bool) {
    if background {
        ctx.srv.free_in_background(taken);
    } else {
        drop(taken);
        crate::alloc::flush_thread();
    }
}

fn flushdb(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let background = flush_async(ctx, args)?;
    let taken = ctx.db().take_all();
    // Pooled eviction candidates may name keys of this database that are gone now.
    ctx.srv.evictor.clear();
    dispose(ctx, taken, background);
    ctx.out.ok();
    Ok(())
}

fn flushall(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let background = flush_async(ctx, args)?;
    let taken = ctx.srv.keyspace.take_all();
    ctx.srv.evictor.clear();
    dispose(ctx, taken, background);
    ctx.out.ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// OBJECT, MEMORY
// ---------------------------------------------------------------------------------------------------------------

/// Redis's `addReplyHelp`: a header naming the command, the lines, and the HELP entry, as status replies.
fn reply_help(out: &mut ReplyWriter, command: &str, lines: &[&str]) {
    out.array(lines.len() + 3);
    out.simple(format!("{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").as_bytes());
    for line in lines {
        out.simple(line.as_bytes());
    }
    out.simple(b"HELP");
    out.simple(b"    Prints this help.");
}

/// Redis's `objectCommandLookup`: a read lookup that counts a hit or miss but does not touch the key. Runs
/// `f` on the entry under the lock; `None` when the key does not exist.
fn object_lookup<R>(ctx: &Ctx<'_>, key: &[u8], f: impl FnOnce(&Entry) -> R) -> Option<R> {
    let key = Key::new(key);
    let mut shard = ctx.db().lock(&key);
    let pos = shard.lookup_read(&key, &ctx.now, true)?;
    Some(f(shard.entry(&key, pos)))
}

fn object_encoding(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    match object_lookup(ctx, args[2], |e| e.encoding()) {
        Some(enc) => ctx.out.bulk(enc.as_bytes()),
        None => ctx.out.null(),
    }
    Ok(())
}

/// OBJECT REFCOUNT: Redis shares the objects of the integers 0..10000 (`OBJ_SHARED_REFCOUNT`) unless maxmemory
/// is set with an LRU or LFU policy (`MAXMEMORY_FLAG_NO_SHARED_INTEGERS`), where every key needs its own
/// access clock; every other value has exactly one reference. Redis decides at write time, Shoal when asked.
fn object_refcount(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let settings = &ctx.srv.settings;
    let sharing = settings.maxmemory.load(std::sync::atomic::Ordering::Relaxed) == 0
        || !matches!(settings.victims(), Victims::Scored { by_ttl: false, .. });
    let shared = object_lookup(ctx, args[2], |e| {
        let v = e.str_value();
        sharing && e.encoding() == "int" && num::parse_i64(v).is_some_and(|n| (0..SHARED_INTEGERS).contains(&n))
    });
    match shared {
        Some(true) => ctx.out.integer(SHARED_REFCOUNT),
        Some(false) => ctx.out.integer(1),
        None => ctx.out.null(),
    }
    Ok(())
}

/// OBJECT IDLETIME: seconds since the last access, only tracked under a non-LFU policy.
fn object_idletime(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let now = ctx.now;
    let Some(access) = object_lookup(ctx, args[2], Entry::access) else {
        ctx.out.null();
        return Ok(());
    };
    if ctx.srv.settings.is_lfu() {
        return Err(CmdError::Static(LFU_SELECTED));
    }
    ctx.out.integer(now.idle_ms(access) / 1000);
    Ok(())
}

/// OBJECT FREQ: the LFU counter after the decay owed since its last decrement (Redis's `LFUDecrAndReturn`).
fn object_freq(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let now = ctx.now;
    let Some(access) = object_lookup(ctx, args[2], Entry::access) else {
        ctx.out.null();
        return Ok(());
    };
    let settings = &ctx.srv.settings;
    if !settings.is_lfu() {
        return Err(CmdError::Static(LFU_NOT_SELECTED));
    }
    let decay = settings.lfu_decay_time.load(std::sync::atomic::Ordering::Relaxed);
    ctx.out.integer(now.lfu_decayed(access, decay) as i64);
    Ok(())
}

fn object_help(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    reply_help(
        ctx.out,
        "OBJECT",
        &[
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
        ],
    );
    Ok(())
}

/// MEMORY USAGE key [SAMPLES count]: the bytes the key costs — its entry's allocator size class plus its share
/// of its slot table's bucket array — in the spirit of Redis's `objectComputeSize` plus key and dictEntry.
/// Values are flat strings, so SAMPLES is validated and has nothing to sample. Like Redis's `dbFind`, the
/// lookup neither expires, counts nor touches.
fn memory_usage(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let mut i = 3;
    while i < args.len() {
        if args::is(args[i], "samples") && i + 1 < args.len() {
            if args::int(args[i + 1])? < 0 {
                return Err(CmdError::syntax());
            }
            i += 2;
        } else {
            return Err(CmdError::syntax());
        }
    }
    let key = Key::new(args[2]);
    let usage = {
        let shard = ctx.db().lock(&key);
        let table = shard.slot_table(key.slot);
        table
            .find(key.bytes, key.hash)
            .map(|pos| table.get(pos).allocated_size() + table.bucket_bytes() / table.len().max(1))
    };
    match usage {
        Some(n) => ctx.out.integer(n as i64),
        None => ctx.out.null(),
    }
    Ok(())
}

fn memory_help(ctx: &mut Ctx<'_>, _args: &[&[u8]]) -> CmdResult {
    reply_help(
        ctx.out,
        "MEMORY",
        &[
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
        ],
    );
    Ok(())
}

pub const COMMANDS: &[(&str, Handler)] = &[
    ("del", del),
    ("unlink", unlink),
    ("exists", exists),
    ("touch", touch),
    ("type", type_),
    ("rename", rename),
    ("renamenx", renamenx),
    ("copy", copy),
    ("move", move_),
    ("keys", keys),
    ("scan", scan),
    ("randomkey", randomkey),
    ("dbsize", dbsize),
    ("flushdb", flushdb),
    ("flushall", flushall),
    ("object|encoding", object_encoding),
    ("object|refcount", object_refcount),
    ("object|idletime", object_idletime),
    ("object|freq", object_freq),
    ("object|help", object_help),
    ("memory|usage", memory_usage),
    ("memory|help", memory_help),
];

#[cfg(test)]
mod tests {
    //! Expected replies verified against redis-server 7.0.15.
    use super::*;
    use crate::cmd::testing::{render, TestClient};
    use crate::config::EvictionPolicy;
    use crate::keyspace::Now;
    use shoal_protocol::{Frame, Proto};
    use std::collections::HashSet;

    fn t(c: &mut TestClient, args: &[&str]) -> String {
        c.text(args)
    }

    /// Puts a key that expired long ago but was not collected yet.
    fn put_expired(c: &TestClient, db: usize, k: &str) {
        let key = Key::new(k.as_bytes());
        c.srv
            .keyspace
            .db(db)
            .lock(&key)
            .upsert(&key, Entry::new_str(k.as_bytes(), b"v", Some(1), 0));
    }

    #[test]
    fn del_and_unlink_count_each_live_key_once() {
        let mut c = TestClient::new();
        t(&mut c, &["MSET", "a", "1", "b", "2"]);
        assert_eq!(t(&mut c, &["DEL", "a", "a", "b", "c"]), "2");
        assert_eq!(t(&mut c, &["DEL", "a"]), "0");
        t(&mut c, &["MSET", "a", "1", "b", "2"]);
        assert_eq!(t(&mut c, &["UNLINK", "a", "x", "a"]), "1");
        assert_eq!(t(&mut c, &["UNLINK", "b"]), "1");
        put_expired(&c, 0, "gone");
        assert_eq!(t(&mut c, &["DEL", "gone"]), "0");
        assert_eq!(t(&mut c, &["DBSIZE"]), "0");
    }

    #[test]
    fn unlink_of_many_or_big_values_frees_in_the_background() {
        let mut c = TestClient::new();
        let big = "x".repeat(LAZYFREE_MIN_BYTES);
        t(&mut c, &["SET", "big", &big]);
        let names: Vec<String> = (0..LAZYFREE_MIN_ENTRIES + 10).map(|i| format!("k{i}")).collect();
        for n in &names {
            t(&mut c, &["SET", n, "v"]);
        }
        assert_eq!(t(&mut c, &["UNLINK", "big"]), "1");
        let mut cmd: Vec<&str> = vec!["UNLINK"];
        cmd.extend(names.iter().map(String::as_str));
        assert_eq!(t(&mut c, &cmd), (LAZYFREE_MIN_ENTRIES + 10).to_string());
        assert_eq!(t(&mut c, &["DBSIZE"]), "0");
    }

    #[test]
    fn exists_counts_repeats_and_touch_counts_live_keys() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "a", "1"]);
        assert_eq!(t(&mut c, &["EXISTS", "a", "a", "a", "x"]), "3");
        assert_eq!(t(&mut c, &["EXISTS", "x"]), "0");
        assert_eq!(t(&mut c, &["TOUCH", "a", "a", "x"]), "2");
        assert_eq!(t(&mut c, &["TOUCH", "x"]), "0");
        put_expired(&c, 0, "old");
        assert_eq!(t(&mut c, &["EXISTS", "old"]), "0");
    }

    #[test]
    fn exists_counts_hits_and_misses() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "a", "1"]);
        let before = c.srv.keyspace.db(0).stats();
        t(&mut c, &["EXISTS", "a", "b", "a"]);
        let after = c.srv.keyspace.db(0).stats();
        assert_eq!((after.hits - before.hits, after.misses - before.misses), (2, 1));
    }

    #[test]
    fn type_names_strings_and_missing_keys() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "a", "1"]);
        assert_eq!(c.call(&["TYPE", "a"]), Frame::Simple("string".into()));
        assert_eq!(c.call(&["TYPE", "x"]), Frame::Simple("none".into()));
    }

    #[test]
    fn rename_and_renamenx() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["RENAME", "x", "y"]), "-ERR no such key");
        assert_eq!(t(&mut c, &["RENAME", "x", "x"]), "-ERR no such key");
        assert_eq!(t(&mut c, &["RENAMENX", "x", "x"]), "-ERR no such key");
        assert_eq!(t(&mut c, &["RENAMENX", "x", "y"]), "-ERR no such key");
        t(&mut c, &["SET", "a", "1"]);
        assert_eq!(t(&mut c, &["RENAME", "a", "a"]), "OK");
        assert_eq!(t(&mut c, &["RENAMENX", "a", "a"]), "0");
        t(&mut c, &["SET", "b", "2"]);
        assert_eq!(t(&mut c, &["RENAMENX", "a", "b"]), "0");
        assert_eq!(t(&mut c, &["GET", "b"]), "2");
        assert_eq!(t(&mut c, &["RENAME", "a", "b"]), "OK");
        assert_eq!(t(&mut c, &["GET", "b"]), "1");
        assert_eq!(t(&mut c, &["GET", "a"]), "(nil)");
        assert_eq!(t(&mut c, &["RENAMENX", "b", "c"]), "1");
        assert_eq!(t(&mut c, &["DBSIZE"]), "1");
        t(&mut c, &["SET", "k", "v", "EX", "100"]);
        assert_eq!(t(&mut c, &["RENAME", "k", "k2"]), "OK");
        assert_eq!(t(&mut c, &["TTL", "k2"]), "100");
        // Encoding travels with the value.
        t(&mut c, &["SET", "r", "1"]);
        t(&mut c, &["APPEND", "r", "2"]);
        t(&mut c, &["RENAME", "r", "r2"]);
        assert_eq!(t(&mut c, &["OBJECT", "ENCODING", "r2"]), "raw");
        // An expired source is missing; an expired destination is simply replaced.
        put_expired(&c, 0, "old");
        assert_eq!(t(&mut c, &["RENAME", "old", "z"]), "-ERR no such key");
        put_expired(&c, 0, "old");
        assert_eq!(t(&mut c, &["RENAMENX", "k2", "old"]), "1");
        assert_eq!(t(&mut c, &["GET", "old"]), "v");
    }

    #[test]
    fn rename_within_one_slot_keeps_every_key() {
        let mut c = TestClient::new();
        for i in 0..200 {
            t(&mut c, &["SET", &format!("{{s}}{i}"), &i.to_string()]);
        }
        for i in 0..100 {
            assert_eq!(
                t(&mut c, &["RENAME", &format!("{{s}}{i}"), &format!("{{s}}{}", i + 100)]),
                "OK"
            );
        }
        assert_eq!(t(&mut c, &["DBSIZE"]), "100");
        for i in 100..200 {
            assert_eq!(t(&mut c, &["GET", &format!("{{s}}{i}")]), (i - 100).to_string());
        }
    }

    #[test]
    fn concurrent_renames_and_moves_neither_lose_nor_duplicate_keys() {
        let first = TestClient::new();
        let srv = first.srv.clone();
        let mut c = TestClient::attach(srv.clone());
        for i in 0..4 {
            t(&mut c, &["SET", &format!("k{i}"), "v"]);
        }
        let workers: Vec<_> = (0..4u64)
            .map(|w| {
                let srv = srv.clone();
                std::thread::spawn(move || {
                    let mut c = TestClient::attach(srv);
                    let mut r = w.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..3000 {
                        r ^= r << 13;
                        r ^= r >> 7;
                        r ^= r << 17;
                        let (a, b) = (format!("k{}", r % 8), format!("k{}", (r >> 8) % 8));
                        let db = ((r >> 16) % 2).to_string();
                        c.text(&["SELECT", &db]);
                        match (r >> 20) % 3 {
                            0 => c.text(&["RENAMENX", &a, &b]),
                            1 => c.text(&["MOVE", &a, if db == "0" { "1" } else { "0" }]),
                            _ => c.text(&["RENAME", &a, &a]),
                        };
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        assert_eq!(srv.keyspace.db(0).len() + srv.keyspace.db(1).len(), 4);
    }

    #[test]
    fn copy_options_and_errors() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "k", "v", "EX", "100"]);
        let same = "-ERR source and destination objects are the same";
        assert_eq!(t(&mut c, &["COPY", "k", "k"]), same);
        assert_eq!(t(&mut c, &["COPY", "k", "k", "DB", "0"]), same);
        assert_eq!(t(&mut c, &["COPY", "nokey", "nokey"]), same);
        assert_eq!(
            t(&mut c, &["COPY", "k", "k2", "DB", "16"]),
            "-ERR DB index is out of range"
        );
        assert_eq!(
            t(&mut c, &["COPY", "k", "k2", "DB", "-1"]),
            "-ERR DB index is out of range"
        );
        assert_eq!(
            t(&mut c, &["COPY", "k", "k2", "DB", "abc"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(
            t(&mut c, &["COPY", "k", "k2", "DB", "2147483648"]),
            "-ERR value is out of range, value must between -2147483648 and 2147483647"
        );
        assert_eq!(t(&mut c, &["COPY", "k", "k2", "REPLACE", "DB"]), "-ERR syntax error");
        assert_eq!(t(&mut c, &["COPY", "k", "k2", "foo"]), "-ERR syntax error");
        assert_eq!(t(&mut c, &["COPY", "nokey", "b"]), "0");
        t(&mut c, &["SET", "b", "old"]);
        assert_eq!(t(&mut c, &["COPY", "k", "b"]), "0");
        assert_eq!(t(&mut c, &["GET", "b"]), "old");
        assert_eq!(t(&mut c, &["COPY", "k", "b", "replace", "replace"]), "1");
        assert_eq!(t(&mut c, &["GET", "b"]), "v");
        assert_eq!(t(&mut c, &["TTL", "b"]), "100");
        assert_eq!(t(&mut c, &["COPY", "k", "k", "DB", "1"]), "1");
        assert_eq!(t(&mut c, &["COPY", "k", "z", "DB", "1", "DB", "2"]), "1");
        assert_eq!(t(&mut c, &["SELECT", "1"]), "OK");
        assert_eq!(t(&mut c, &["GET", "k"]), "v");
        assert_eq!(t(&mut c, &["TTL", "k"]), "100");
        assert_eq!(t(&mut c, &["EXISTS", "z"]), "0");
        t(&mut c, &["SELECT", "2"]);
        assert_eq!(t(&mut c, &["GET", "z"]), "v");
        t(&mut c, &["SELECT", "0"]);
        assert_eq!(t(&mut c, &["GET", "k"]), "v");
        // A copy of a shared small integer is a private object.
        t(&mut c, &["SET", "n", "5"]);
        t(&mut c, &["COPY", "n", "n2"]);
        assert_eq!(t(&mut c, &["OBJECT", "ENCODING", "n2"]), "int");
    }

    #[test]
    fn copy_across_databases_is_refused_in_cluster_mode() {
        let mut c = TestClient::with_config(|cfg| cfg.cluster_enabled = true);
        c.own_all_slots();
        t(&mut c, &["SET", "{a}k", "v"]);
        assert_eq!(
            t(&mut c, &["COPY", "{a}k", "{a}k", "DB", "1"]),
            "-ERR Copying to another database is not allowed in cluster mode"
        );
        assert_eq!(
            t(&mut c, &["MOVE", "{a}k", "1"]),
            "-ERR MOVE is not allowed in cluster mode"
        );
    }

    #[test]
    fn move_between_databases() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "k", "v", "EX", "100"]);
        assert_eq!(
            t(&mut c, &["MOVE", "k", "0"]),
            "-ERR source and destination objects are the same"
        );
        assert_eq!(
            t(&mut c, &["MOVE", "nokey", "0"]),
            "-ERR source and destination objects are the same"
        );
        assert_eq!(t(&mut c, &["MOVE", "k", "16"]), "-ERR DB index is out of range");
        assert_eq!(t(&mut c, &["MOVE", "k", "-1"]), "-ERR DB index is out of range");
        assert_eq!(t(&mut c, &["MOVE", "k", "2147483647"]), "-ERR DB index is out of range");
        assert_eq!(
            t(&mut c, &["MOVE", "k", "abc"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(
            t(&mut c, &["MOVE", "k", "4294967296"]),
            "-ERR value is out of range, value must between -2147483648 and 2147483647"
        );
        assert_eq!(t(&mut c, &["MOVE", "nokey", "1"]), "0");
        assert_eq!(t(&mut c, &["MOVE", "k", "1"]), "1");
        assert_eq!(t(&mut c, &["EXISTS", "k"]), "0");
        t(&mut c, &["SELECT", "1"]);
        assert_eq!(t(&mut c, &["TTL", "k"]), "100");
        t(&mut c, &["SET", "other", "x"]);
        t(&mut c, &["SELECT", "0"]);
        t(&mut c, &["SET", "other", "y"]);
        assert_eq!(t(&mut c, &["MOVE", "other", "1"]), "0");
        assert_eq!(t(&mut c, &["GET", "other"]), "y");
    }

    #[test]
    fn keys_matches_globs_and_skips_expired_keys_without_deleting_them() {
        let mut c = TestClient::new();
        t(&mut c, &["MSET", "a", "1", "b", "2", "ab", "3"]);
        put_expired(&c, 0, "aa");
        let mut all = match c.call(&["KEYS", "*"]) {
            Frame::Array(items) => items.iter().map(render).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        all.sort();
        assert_eq!(all, ["a", "ab", "b"]);
        let mut some = match c.call(&["KEYS", "a*"]) {
            Frame::Array(items) => items.iter().map(render).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        some.sort();
        assert_eq!(some, ["a", "ab"]);
        assert_eq!(t(&mut c, &["KEYS", "[b]"]), "[b]");
        assert_eq!(t(&mut c, &["KEYS", "zz*"]), "[]");
        assert_eq!(t(&mut c, &["DBSIZE"]), "4");
    }

    #[test]
    fn scan_cursor_parsing_follows_strtoul() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+0"), Some(0));
        assert_eq!(parse_cursor(b"-0"), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"007"), Some(7));
        assert_eq!(parse_cursor(b"12\0junk"), Some(12));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        assert_eq!(parse_cursor(b" 0"), None);
        assert_eq!(parse_cursor(b"0 "), None);
        assert_eq!(parse_cursor(b"0x"), None);
        assert_eq!(parse_cursor(b"abc"), None);
        assert_eq!(parse_cursor(b"+"), None);
        assert_eq!(parse_cursor(b"-"), None);
    }

    #[test]
    fn scan_argument_errors() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["SCAN", "0", "COUNT", "0"]), "-ERR syntax error");
        assert_eq!(t(&mut c, &["SCAN", "0", "COUNT", "-1"]), "-ERR syntax error");
        assert_eq!(
            t(&mut c, &["SCAN", "0", "COUNT", "abc"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(
            t(&mut c, &["SCAN", "0", "COUNT", "9223372036854775808"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(t(&mut c, &["SCAN", "0", "COUNT", "1", "MATCH"]), "-ERR syntax error");
        assert_eq!(t(&mut c, &["SCAN", "0", "foo"]), "-ERR syntax error");
        assert_eq!(t(&mut c, &["SCAN", " 0"]), "-ERR invalid cursor");
        assert_eq!(t(&mut c, &["SCAN", "abc", "foo"]), "-ERR invalid cursor");
        assert_eq!(t(&mut c, &["SCAN", "18446744073709551616"]), "-ERR invalid cursor");
        assert_eq!(t(&mut c, &["SCAN", ""]), "[0, []]");
        assert_eq!(
            t(&mut c, &["SCAN", "0", "COUNT", "10", "COUNT", "9223372036854775807"]),
            "[0, []]"
        );
    }

    fn scan_all(c: &mut TestClient, extra: &[&str]) -> (Vec<String>, usize) {
        let mut cursor = "0".to_string();
        let mut keys = Vec::new();
        let mut calls = 0;
        loop {
            let mut cmd = vec!["SCAN", cursor.as_str()];
            cmd.extend_from_slice(extra);
            let Frame::Array(parts) = c.call(&cmd) else {
                panic!("SCAN reply")
            };
            let [Frame::Bulk(next), Frame::Array(found)] = &parts[..] else {
                panic!("SCAN reply shape")
            };
            keys.extend(found.iter().map(render));
            cursor = String::from_utf8_lossy(next).into_owned();
            calls += 1;
            if cursor == "0" {
                return (keys, calls);
            }
            assert!(calls < 100_000, "SCAN does not terminate");
        }
    }

    #[test]
    fn scan_returns_every_key_and_filters_by_match_and_type() {
        let mut c = TestClient::new();
        for i in 0..1000 {
            t(&mut c, &["SET", &format!("user:{i}"), "v"]);
            t(&mut c, &["SET", &format!("item:{i}"), "v"]);
        }
        put_expired(&c, 0, "user:expired");
        let (keys, calls) = scan_all(&mut c, &["COUNT", "7"]);
        let set: HashSet<_> = keys.iter().cloned().collect();
        assert_eq!(set.len(), 2000);
        assert!(!set.contains("user:expired"));
        assert!(calls > 2000 / 50, "COUNT 7 should take many calls, took {calls}");
        let (users, _) = scan_all(&mut c, &["MATCH", "user:*", "COUNT", "100"]);
        let users: HashSet<_> = users.into_iter().collect();
        assert_eq!(users.len(), 1000);
        assert!(users.iter().all(|k| k.starts_with("user:")));
        let (strings, _) = scan_all(&mut c, &["TYPE", "STRING", "COUNT", "1000"]);
        assert_eq!(strings.iter().collect::<HashSet<_>>().len(), 2000);
        for ty in ["list", "foo", "none"] {
            let (none, _) = scan_all(&mut c, &["TYPE", ty, "COUNT", "1000"]);
            assert!(none.is_empty(), "TYPE {ty}");
        }
        // A small database is scanned in one call, as in Redis, even when nothing matches.
        let mut c = TestClient::new();
        t(&mut c, &["MSET", "a", "1", "b", "2"]);
        assert_eq!(t(&mut c, &["SCAN", "0", "MATCH", "nomatch*"]), "[0, []]");
        let Frame::Array(parts) = c.call(&["SCAN", "0"]) else {
            panic!("SCAN reply")
        };
        let [cursor, Frame::Array(found)] = &parts[..] else {
            panic!("SCAN reply shape")
        };
        assert_eq!((render(cursor), found.len()), ("0".to_string(), 2));
        // A cursor Shoal never handed out still ends the iteration.
        assert_eq!(t(&mut c, &["SCAN", "-1"]), "[0, []]");
    }

    #[test]
    fn randomkey_and_dbsize() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["RANDOMKEY"]), "(nil)");
        assert_eq!(t(&mut c, &["DBSIZE"]), "0");
        t(&mut c, &["SET", "only", "v"]);
        assert_eq!(t(&mut c, &["RANDOMKEY"]), "only");
        t(&mut c, &["MSET", "a", "1", "b", "2"]);
        assert_eq!(t(&mut c, &["DBSIZE"]), "3");
        assert!(["only", "a", "b"].contains(&t(&mut c, &["RANDOMKEY"]).as_str()));
    }

    #[test]
    fn flushdb_and_flushall() {
        let mut c = TestClient::new();
        for db in ["0", "1"] {
            t(&mut c, &["SELECT", db]);
            t(&mut c, &["MSET", "a", "1", "b", "2"]);
        }
        assert_eq!(t(&mut c, &["FLUSHDB", "foo"]), "-ERR syntax error");
        assert_eq!(t(&mut c, &["FLUSHDB", "SYNC", "extra"]), "-ERR syntax error");
        assert_eq!(t(&mut c, &["FLUSHALL", "x"]), "-ERR syntax error");
        assert_eq!(t(&mut c, &["DBSIZE"]), "2");
        assert_eq!(t(&mut c, &["FLUSHDB"]), "OK");
        assert_eq!(t(&mut c, &["DBSIZE"]), "0");
        t(&mut c, &["SELECT", "0"]);
        assert_eq!(t(&mut c, &["DBSIZE"]), "2");
        assert_eq!(t(&mut c, &["FLUSHDB", "async"]), "OK");
        assert_eq!(t(&mut c, &["DBSIZE"]), "0");
        for db in ["0", "1", "2"] {
            t(&mut c, &["SELECT", db]);
            t(&mut c, &["SET", "k", "v"]);
        }
        assert_eq!(t(&mut c, &["FLUSHALL", "ASYNC"]), "OK");
        for db in 0..3 {
            assert_eq!(c.srv.keyspace.db(db).len(), 0);
        }
        t(&mut c, &["SET", "k", "v"]);
        assert_eq!(t(&mut c, &["FLUSHALL", "sync"]), "OK");
        assert_eq!(t(&mut c, &["FLUSHALL"]), "OK");
        assert_eq!(t(&mut c, &["DBSIZE"]), "0");
    }

    #[test]
    fn object_encoding_and_refcount() {
        let mut c = TestClient::new();
        t(&mut c, &["MSET", "a", "1", "n", "9999", "m", "10000", "neg", "-1"]);
        t(&mut c, &["SET", "e", &"x".repeat(44)]);
        t(&mut c, &["SET", "r", &"x".repeat(45)]);
        t(&mut c, &["SET", "ap", "1"]);
        t(&mut c, &["APPEND", "ap", "2"]);
        let enc = |c: &mut TestClient, k: &str| t(c, &["OBJECT", "ENCODING", k]);
        assert_eq!(enc(&mut c, "a"), "int");
        assert_eq!(enc(&mut c, "e"), "embstr");
        assert_eq!(enc(&mut c, "r"), "raw");
        assert_eq!(enc(&mut c, "ap"), "raw");
        assert_eq!(enc(&mut c, "nokey"), "(nil)");
        let refs = |c: &mut TestClient, k: &str| t(c, &["OBJECT", "REFCOUNT", k]);
        assert_eq!(refs(&mut c, "a"), "2147483647");
        assert_eq!(refs(&mut c, "n"), "2147483647");
        assert_eq!(refs(&mut c, "m"), "1");
        assert_eq!(refs(&mut c, "neg"), "1");
        assert_eq!(refs(&mut c, "e"), "1");
        assert_eq!(refs(&mut c, "ap"), "1");
        assert_eq!(refs(&mut c, "nokey"), "(nil)");
        assert_eq!(
            t(&mut c, &["OBJECT", "foo"]),
            "-ERR unknown subcommand 'foo'. Try OBJECT HELP."
        );
        assert_eq!(
            t(&mut c, &["OBJECT", "ENCODING"]),
            "-ERR wrong number of arguments for 'object|encoding' command"
        );
        assert_eq!(
            t(&mut c, &["OBJECT", "ENCODING", "a", "b"]),
            "-ERR wrong number of arguments for 'object|encoding' command"
        );
    }

    #[test]
    fn small_integers_are_not_shared_under_maxmemory_with_lru_or_lfu() {
        let mut c = TestClient::with_config(|cfg| {
            cfg.maxmemory = 1 << 40;
            cfg.maxmemory_policy = EvictionPolicy::AllKeysLru;
        });
        t(&mut c, &["SET", "n", "7"]);
        assert_eq!(t(&mut c, &["OBJECT", "REFCOUNT", "n"]), "1");
        let mut c = TestClient::with_config(|cfg| {
            cfg.maxmemory = 1 << 40;
            cfg.maxmemory_policy = EvictionPolicy::VolatileTtl;
        });
        t(&mut c, &["SET", "n", "7"]);
        assert_eq!(t(&mut c, &["OBJECT", "REFCOUNT", "n"]), "2147483647");
    }

    #[test]
    fn object_idletime_and_freq_depend_on_the_policy() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "k", "v"]);
        assert_eq!(t(&mut c, &["OBJECT", "IDLETIME", "k"]), "0");
        assert_eq!(t(&mut c, &["OBJECT", "IDLETIME", "nokey"]), "(nil)");
        assert_eq!(t(&mut c, &["OBJECT", "FREQ", "nokey"]), "(nil)");
        assert_eq!(t(&mut c, &["OBJECT", "FREQ", "k"]), format!("-{LFU_NOT_SELECTED}"));
        // An old access clock shows as idle time.
        let key = Key::new(b"k");
        let now = c.srv.now();
        let stale = Now::new(now.ms - 42_000, now.mode).lru_clock();
        {
            let mut shard = c.srv.keyspace.db(0).lock(&key);
            let pos = shard.find(&key, &now).expect("k exists");
            shard.entry_mut(&key, pos).set_access(stale);
        }
        let idle: i64 = t(&mut c, &["OBJECT", "IDLETIME", "k"]).parse().expect("integer");
        assert!((41..=43).contains(&idle), "idle {idle}");

        let mut c = TestClient::with_config(|cfg| cfg.maxmemory_policy = EvictionPolicy::AllKeysLfu);
        t(&mut c, &["SET", "k", "v"]);
        assert_eq!(t(&mut c, &["OBJECT", "FREQ", "k"]), "5");
        assert_eq!(t(&mut c, &["OBJECT", "IDLETIME", "k"]), format!("-{LFU_SELECTED}"));
        assert_eq!(t(&mut c, &["OBJECT", "IDLETIME", "nokey"]), "(nil)");
    }

    #[test]
    fn object_and_memory_help() {
        let mut c = TestClient::new();
        let Frame::Array(lines) = c.call(&["OBJECT", "HELP"]) else {
            panic!("array")
        };
        assert_eq!(lines.len(), 15);
        assert_eq!(
            lines[0],
            Frame::Simple("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:".into())
        );
        assert_eq!(lines[14], Frame::Simple("    Prints this help.".into()));
        let Frame::Array(lines) = c.call(&["MEMORY", "HELP"]) else {
            panic!("array")
        };
        assert_eq!(lines.len(), 14);
        assert_eq!(lines[9], Frame::Simple("USAGE <key> [SAMPLES <count>]".into()));
        assert_eq!(
            t(&mut c, &["MEMORY", "HELP", "x"]),
            "-ERR wrong number of arguments for 'memory|help' command"
        );
        assert_eq!(
            t(&mut c, &["MEMORY", "foo"]),
            "-ERR unknown subcommand 'foo'. Try MEMORY HELP."
        );
    }

    #[test]
    fn memory_usage() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "a", "1"]);
        t(&mut c, &["SET", "big", &"x".repeat(10_000)]);
        let small: i64 = t(&mut c, &["MEMORY", "USAGE", "a"]).parse().expect("integer");
        let big: i64 = t(&mut c, &["MEMORY", "USAGE", "big", "SAMPLES", "0"])
            .parse()
            .expect("integer");
        assert!((8..=64).contains(&small), "small {small}");
        assert!((10_000..=12_500).contains(&big), "big {big}");
        assert_eq!(t(&mut c, &["MEMORY", "USAGE", "nokey"]), "(nil)");
        assert_eq!(t(&mut c, &["MEMORY", "USAGE", "a", "SAMPLES"]), "-ERR syntax error");
        assert_eq!(
            t(&mut c, &["MEMORY", "USAGE", "a", "SAMPLES", "-1"]),
            "-ERR syntax error"
        );
        assert_eq!(
            t(&mut c, &["MEMORY", "USAGE", "a", "SAMPLES", "abc"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(t(&mut c, &["MEMORY", "USAGE", "a", "foo"]), "-ERR syntax error");
        // Like Redis's dbFind, an expired key not yet collected is still sized, and left in place.
        put_expired(&c, 0, "old");
        assert!(t(&mut c, &["MEMORY", "USAGE", "old"]).parse::<i64>().is_ok());
        assert_eq!(t(&mut c, &["DBSIZE"]), "3");
    }

    #[test]
    fn missing_keys_are_resp3_nulls() {
        let mut c = TestClient::new();
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["OBJECT", "ENCODING", "x"]), Frame::Null);
        assert_eq!(c.call(&["MEMORY", "USAGE", "x"]), Frame::Null);
        assert_eq!(c.call(&["RANDOMKEY"]), Frame::Null);
    }
}
