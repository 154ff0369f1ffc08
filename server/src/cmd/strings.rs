//! The string commands, in the manner of Redis's `t_string.c`: GET, SET (EX PX EXAT PXAT NX XX KEEPTTL GET),
//! SETNX, SETEX, PSETEX, GETSET, GETEX, GETDEL, MGET, MSET, MSETNX, INCR, INCRBY, INCRBYFLOAT, DECR, DECRBY,
//! APPEND, STRLEN, GETRANGE, SUBSTR, SETRANGE and LCS.
//!
//! Every behaviour, reply type and error text follows Redis 7.0.15, checked against the real server; the
//! surprises worth knowing:
//! - Option keywords are compared as C strings, so `NX\0junk` is `NX` (Redis reads `argv[j]->ptr` as a C
//!   string). Values and numbers are binary safe.
//! - `SET ... GET` and GETEX/GETDEL/GETSET look the key up for reading (keyspace hits and misses count), every
//!   other write looks it up for writing (no hit/miss accounting), as Redis does.
//! - A SET with an absolute expiry already in the past (`EXAT 1`) replies OK and stores the key with that
//!   expiry: it is invisible from then on, is counted by DBSIZE until a lookup or the active cycle removes it,
//!   and its removal counts as an expired key. That is what 7.0 does (only GETEX deletes such a key at once).
//! - SET without KEEPTTL, GETSET and MSET drop an existing TTL; INCR/DECR/INCRBYFLOAT/APPEND/SETRANGE keep it.
//! - INCRBY/DECRBY parse their argument before looking at the key; INCRBYFLOAT checks the key's type first.
//! - MSET/MSETNX with an odd number of arguments fail with the arity error from here (the gate only knows
//!   "at least 3").

use std::sync::atomic::Ordering;

use smallvec::SmallVec;

use crate::cmd::args;
use crate::cmd::{Ctx, Handler};
use crate::error::{self, CmdError, CmdResult};
use crate::keyspace::{Db, Entry, Key, Now, Pos, Shard, ValueKind};
use crate::num;

const LCS_NOT_STRINGS: &str = "ERR The specified keys must contain string values";
const LCS_LEN_AND_IDX: &str = "ERR If you want both the length and indexes, please just use IDX.";
const LCS_TOO_LONG: &str = "ERR String too long for LCS";
const LCS_EXCEEDS_BULK_LEN: &str = "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len";
const LCS_ALLOC_FAILED: &str = "ERR Insufficient memory, failed allocating transient memory for LCS";

// ---------------------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------------------

/// The client's database, borrowed from the server rather than from `ctx`, so a shard guard can be held while
/// the reply is written through `ctx.out`.
#[inline]
fn db<'a>(ctx: &Ctx<'a>) -> &'a Db {
    ctx.srv.keyspace.db(ctx.client.db)
}

/// An option keyword as Redis compares it: a C string, ending at the first NUL.
#[inline]
fn cstr(arg: &[u8]) -> &[u8] {
    match arg.iter().position(|&b| b == 0) {
        Some(n) => &arg[..n],
        None => arg,
    }
}

#[inline]
fn is_str(e: &Entry) -> bool {
    e.kind() == ValueKind::Str
}

/// Redis's runtime `proto-max-bulk-len`.
#[inline]
fn max_bulk_len(ctx: &Ctx<'_>) -> i64 {
    ctx.srv.settings.proto_max_bulk_len.load(Ordering::Relaxed)
}

/// Redis's `checkStringLength`: a string may grow to `proto-max-bulk-len` bytes, no further.
#[inline]
fn check_string_length(ctx: &Ctx<'_>, size: u64) -> CmdResult {
    if size as i128 > max_bulk_len(ctx) as i128 {
        return Err(CmdError::Static(error::STRING_TOO_LONG));
    }
    Ok(())
}

/// What a write does to the key's TTL.
#[derive(Debug, Clone, Copy)]
enum Ttl {
    /// Keep whatever the key has (KEEPTTL, INCR, APPEND ...).
    Keep,
    /// Drop it (a plain SET, GETSET, MSET).
    Clear,
    /// Set it to this unix-ms time.
    At(i64),
}

/// Inserts an entry whose key a lookup in this critical section reported absent. On a replica lookups do not
/// delete expired keys, so the key may still be physically present; replace it there instead of inserting a
/// duplicate.
#[inline]
fn add(shard: &mut Shard, key: &Key, entry: Entry) {
    if shard.lazy_expire_deletes {
        shard.insert(key, entry);
    } else {
        drop(shard.upsert(key, entry));
    }
}

/// Stores a string value at `key` (found at `pos`, or absent), as Redis's `setKey`/`dbOverwrite`/`dbAdd`.
/// A new key is one allocation; an existing string entry is rewritten in place when the value keeps its size
/// and the TTL its presence, and rebuilt once otherwise. The access clock of an existing key is kept (the
/// lookup already touched it).
fn store(shard: &mut Shard, key: &Key, pos: Option<Pos>, value: &[u8], ttl: Ttl, now: &Now) {
    let Some(pos) = pos else {
        let at = match ttl {
            Ttl::At(at) => Some(at),
            Ttl::Keep | Ttl::Clear => None,
        };
        add(shard, key, Entry::new_str(key.bytes, value, at, now.initial_access()));
        return;
    };
    let e = shard.entry_mut(key, pos);
    let new_at = match ttl {
        Ttl::Keep => e.expire_at(),
        Ttl::Clear => None,
        Ttl::At(at) => Some(at),
    };
    if is_str(e) && e.has_expire() == new_at.is_some() {
        if let Ttl::At(at) = ttl {
            // Same layout: rewritten in place.
            e.set_expire(Some(at));
        }
        e.set_str_value(value);
    } else {
        let access = e.access();
        *e = Entry::new_str(key.bytes, value, new_at, access);
        shard.sync_volatile(key, pos);
    }
}

/// The error reply of an INCR-family failure, with the text `num` gives.
fn incr_error(e: num::IncrIntError) -> CmdError {
    CmdError::Static(std::str::from_utf8(e.message()).unwrap_or(error::NOT_INTEGER))
}

fn float_error(e: num::IncrFloatError) -> CmdError {
    CmdError::Static(std::str::from_utf8(e.message()).unwrap_or(error::NOT_FLOAT))
}

// ---------------------------------------------------------------------------------------------------------
// Extended SET / GETEX arguments (Redis's parseExtendedStringArgumentsOrReply)
// ---------------------------------------------------------------------------------------------------------

const F_NX: u16 = 1 << 0;
const F_XX: u16 = 1 << 1;
const F_EX: u16 = 1 << 2;
const F_PX: u16 = 1 << 3;
const F_KEEPTTL: u16 = 1 << 4;
const F_GET: u16 = 1 << 5;
const F_EXAT: u16 = 1 << 6;
const F_PXAT: u16 = 1 << 7;
const F_PERSIST: u16 = 1 << 8;
const F_ANY_EXPIRE: u16 = F_EX | F_PX | F_EXAT | F_PXAT;

/// The options of SET (from argument 3) or GETEX (from argument 2), syntax checked; the expiry value is
/// parsed later, as Redis does (a syntax error wins over a bad number).
#[derive(Debug, Clone, Copy, Default)]
struct ExtArgs<'a> {
    flags: u16,
    expire: Option<&'a [u8]>,
}

impl<'a> ExtArgs<'a> {
    fn parse(args: &[&'a [u8]], is_set: bool) -> Result<ExtArgs<'a>, CmdError> {
        let mut flags = 0u16;
        let mut expire = None;
        let mut j = if is_set { 3 } else { 2 };
        while j < args.len() {
            let opt = cstr(args[j]);
            let next = args.get(j + 1).copied();
            let allowed = |excluded: u16| flags & excluded == 0;
            if is_set && args::is(opt, "nx") && allowed(F_XX) {
                flags |= F_NX;
            } else if is_set && args::is(opt, "xx") && allowed(F_NX) {
                flags |= F_XX;
            } else if is_set && args::is(opt, "get") {
                flags |= F_GET;
            } else if is_set && args::is(opt, "keepttl") && allowed(F_PERSIST | F_ANY_EXPIRE) {
                flags |= F_KEEPTTL;
            } else if !is_set && args::is(opt, "persist") && allowed(F_ANY_EXPIRE | F_KEEPTTL) {
                flags |= F_PERSIST;
            } else if let Some(flag) = expire_flag(opt).filter(|_| next.is_some()) {
                // Each expiry form excludes the others but not itself: `EX 1 EX 2` means `EX 2`.
                if !allowed(F_KEEPTTL | F_PERSIST | (F_ANY_EXPIRE & !flag)) {
                    return Err(CmdError::syntax());
                }
                flags |= flag;
                expire = next;
                j += 1;
            } else {
                return Err(CmdError::syntax());
            }
            j += 1;
        }
        Ok(ExtArgs { flags, expire })
    }

    #[inline]
    fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    /// The expiry as an absolute unix-ms time, if one was given (Redis's `getExpireMillisecondsOrReply`).
    fn expire_at(&self, ctx: &Ctx<'_>) -> Result<Option<i64>, CmdError> {
        let Some(arg) = self.expire else {
            return Ok(None);
        };
        let seconds = self.has(F_EX | F_EXAT);
        let relative = self.has(F_EX | F_PX);
        expire_ms(ctx, arg, seconds, relative).map(Some)
    }
}

fn expire_flag(opt: &[u8]) -> Option<u16> {
    if args::is(opt, "ex") {
        Some(F_EX)
    } else if args::is(opt, "px") {
        Some(F_PX)
    } else if args::is(opt, "exat") {
        Some(F_EXAT)
    } else if args::is(opt, "pxat") {
        Some(F_PXAT)
    } else {
        None
    }
}

/// An expiry argument as absolute unix ms: `ERR value is not an integer or out of range` for a non-integer,
/// `ERR invalid expire time in '<cmd>' command` for zero, negative or overflowing times.
fn expire_ms(ctx: &Ctx<'_>, arg: &[u8], seconds: bool, relative: bool) -> Result<i64, CmdError> {
    let invalid = || CmdError::invalid_expire(&ctx.cmd.name);
    let mut ms = args::int(arg)?;
    if ms <= 0 || (seconds && ms > i64::MAX / 1000) {
        return Err(invalid());
    }
    if seconds {
        ms *= 1000;
    }
    if relative {
        ms = ms.checked_add(ctx.now.ms).ok_or_else(invalid)?;
    }
    if ms <= 0 {
        return Err(invalid());
    }
    Ok(ms)
}

// ---------------------------------------------------------------------------------------------------------
// GET, SET and friends
// ---------------------------------------------------------------------------------------------------------

/// GET key
fn get(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let key = ctx.key(args[1]);
    let mut shard = db(ctx).lock(&key);
    match shard.lookup_read(&key, &ctx.now, ctx.client.no_touch) {
        Some(pos) => {
            let e = shard.entry(&key, pos);
            if !is_str(e) {
                return Err(CmdError::wrong_type());
            }
            ctx.out.bulk(e.str_value());
        }
        None => ctx.out.null(),
    }
    Ok(())
}

/// What SET-like commands reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetReply {
    /// SET, SETEX, PSETEX: `+OK`, or a null when NX/XX stops it.
    Ok,
    /// SETNX: `:1` / `:0`.
    Flag,
}

/// Redis's `setGenericCommand`.
fn set_generic(ctx: &mut Ctx<'_>, key: &[u8], value: &[u8], opts: &ExtArgs<'_>, reply: SetReply) -> CmdResult {
    let expire_at = opts.expire_at(ctx)?;
    let get = opts.has(F_GET);
    let key = ctx.key(key);
    let now = ctx.now;
    let mut shard = db(ctx).lock(&key);
    let pos = if get {
        // getGenericCommand first: a read lookup, WRONGTYPE before anything changes, then the old value.
        let pos = shard.lookup_read(&key, &now, ctx.client.no_touch);
        match pos {
            Some(p) => {
                let e = shard.entry(&key, p);
                if !is_str(e) {
                    return Err(CmdError::wrong_type());
                }
                ctx.out.bulk(e.str_value());
            }
            None => ctx.out.null(),
        }
        pos
    } else {
        shard.lookup_write(&key, &now)
    };
    let found = pos.is_some();
    if (opts.has(F_NX) && found) || (opts.has(F_XX) && !found) {
        if !get {
            match reply {
                SetReply::Ok => ctx.out.null(),
                SetReply::Flag => ctx.out.integer(0),
            }
        }
        return Ok(());
    }
    let ttl = match expire_at {
        Some(at) => Ttl::At(at),
        None if opts.has(F_KEEPTTL) => Ttl::Keep,
        None => Ttl::Clear,
    };
    store(&mut shard, &key, pos, value, ttl, &now);
    drop(shard);
    if !get {
        match reply {
            SetReply::Ok => ctx.out.ok(),
            SetReply::Flag => ctx.out.integer(1),
        }
    }
    Ok(())
}

/// SET key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds |
/// PXAT unix-time-milliseconds | KEEPTTL]
fn set(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let opts = if args.len() == 3 {
        ExtArgs::default()
    } else {
        ExtArgs::parse(args, true)?
    };
    set_generic(ctx, args[1], args[2], &opts, SetReply::Ok)
}

/// SETNX key value
fn setnx(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let opts = ExtArgs {
        flags: F_NX,
        expire: None,
    };
    set_generic(ctx, args[1], args[2], &opts, SetReply::Flag)
}

/// SETEX key seconds value
fn setex(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let opts = ExtArgs {
        flags: F_EX,
        expire: Some(args[2]),
    };
    set_generic(ctx, args[1], args[3], &opts, SetReply::Ok)
}

/// PSETEX key milliseconds value
fn psetex(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let opts = ExtArgs {
        flags: F_PX,
        expire: Some(args[2]),
    };
    set_generic(ctx, args[1], args[3], &opts, SetReply::Ok)
}

/// GETSET key value: the old value (or null), then a plain SET (the TTL is dropped).
fn getset(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let key = Key::new(args[1]);
    let now = ctx.now;
    let mut shard = db(ctx).lock(&key);
    let pos = shard.lookup_read(&key, &now, ctx.client.no_touch);
    match pos {
        Some(p) => {
            let e = shard.entry(&key, p);
            if !is_str(e) {
                return Err(CmdError::wrong_type());
            }
            ctx.out.bulk(e.str_value());
        }
        None => ctx.out.null(),
    }
    store(&mut shard, &key, pos, args[2], Ttl::Clear, &now);
    Ok(())
}

/// GETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST]
fn getex(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let opts = ExtArgs::parse(args, false)?;
    let key = Key::new(args[1]);
    let now = ctx.now;
    let mut shard = db(ctx).lock(&key);
    let Some(pos) = shard.lookup_read(&key, &now, ctx.client.no_touch) else {
        ctx.out.null();
        return Ok(());
    };
    let e = shard.entry(&key, pos);
    if !is_str(e) {
        return Err(CmdError::wrong_type());
    }
    let had_expire = e.has_expire();
    // The expiry is validated only for an existing string key, as in Redis.
    let expire_at = opts.expire_at(ctx)?;
    ctx.out.bulk(e.str_value());
    if let Some(at) = expire_at {
        // An absolute time already past deletes the key (Redis's checkAlreadyExpired; not on a replica).
        if opts.has(F_EXAT | F_PXAT) && at <= now.ms && shard.lazy_expire_deletes {
            drop(shard.remove(&key, pos));
        } else {
            shard.entry_mut(&key, pos).set_expire(Some(at));
            shard.sync_volatile(&key, pos);
        }
    } else if opts.has(F_PERSIST) && had_expire {
        shard.entry_mut(&key, pos).set_expire(None);
        shard.sync_volatile(&key, pos);
    }
    Ok(())
}

/// GETDEL key
fn getdel(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let key = Key::new(args[1]);
    let mut shard = db(ctx).lock(&key);
    let Some(pos) = shard.lookup_read(&key, &ctx.now, ctx.client.no_touch) else {
        ctx.out.null();
        return Ok(());
    };
    let e = shard.entry(&key, pos);
    if !is_str(e) {
        return Err(CmdError::wrong_type());
    }
    ctx.out.bulk(e.str_value());
    let removed = shard.remove(&key, pos);
    // Free the value outside the lock.
    drop(shard);
    drop(removed);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Several keys
// ---------------------------------------------------------------------------------------------------------

/// MGET key [key ...]: a null for a missing key or one that is not a string. All shards are locked together,
/// so the reply is one consistent snapshot (no half-applied MSET).
fn mget(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let keys: SmallVec<[Key; 8]> = args[1..].iter().map(|k| Key::new(k)).collect();
    let now = ctx.now;
    let no_touch = ctx.client.no_touch;
    let mut set = db(ctx).lock_keys(keys.iter());
    ctx.out.array(keys.len());
    for key in &keys {
        let shard = set.shard(key);
        match shard.lookup_read(key, &now, no_touch) {
            Some(pos) => {
                let e = shard.entry(key, pos);
                if is_str(e) {
                    ctx.out.bulk(e.str_value());
                } else {
                    ctx.out.null();
                }
            }
            None => ctx.out.null(),
        }
    }
    Ok(())
}

/// Redis's `msetGenericCommand`: MSET, or MSETNX (`nx`), atomically over every shard involved.
fn mset_generic(ctx: &mut Ctx<'_>, args: &[&[u8]], nx: bool) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity(ctx.cmd.name.clone()));
    }
    let keys: SmallVec<[Key; 8]> = args[1..].iter().step_by(2).map(|k| Key::new(k)).collect();
    let now = ctx.now;
    let mut set = db(ctx).lock_keys(keys.iter());
    if nx {
        for key in &keys {
            if set.shard(key).lookup_write(key, &now).is_some() {
                drop(set);
                ctx.out.integer(0);
                return Ok(());
            }
        }
    }
    for (key, value) in keys.iter().zip(args[2..].iter().step_by(2)) {
        let shard = set.shard(key);
        let pos = shard.lookup_write(key, &now);
        store(shard, key, pos, value, Ttl::Clear, &now);
    }
    drop(set);
    if nx {
        ctx.out.integer(1);
    } else {
        ctx.out.ok();
    }
    Ok(())
}

/// MSET key value [key value ...]
fn mset(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    mset_generic(ctx, args, false)
}

/// MSETNX key value [key value ...]
fn msetnx(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    mset_generic(ctx, args, true)
}

// ---------------------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------------------

/// Redis's `incrDecrCommand`: the stored value plus `incr`, stored back (TTL kept) and replied as an integer.
fn incr_decr(ctx: &mut Ctx<'_>, key: &[u8], incr: i64) -> CmdResult {
    let key = Key::new(key);
    let now = ctx.now;
    let mut shard = db(ctx).lock(&key);
    let pos = shard.lookup_write(&key, &now);
    let current = match pos {
        Some(p) => {
            let e = shard.entry(&key, p);
            if !is_str(e) {
                return Err(CmdError::wrong_type());
            }
            Some(e.str_value())
        }
        None => None,
    };
    let value = num::incr_by_i64(current, incr).map_err(incr_error)?;
    let mut buf = [0u8; 24];
    let digits = shoal_protocol::reply::fmt_i64(&mut buf, value);
    store(&mut shard, &key, pos, digits, Ttl::Keep, &now);
    drop(shard);
    ctx.out.integer(value);
    Ok(())
}

/// INCR key
fn incr(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    incr_decr(ctx, args[1], 1)
}

/// DECR key
fn decr(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    incr_decr(ctx, args[1], -1)
}

/// INCRBY key increment (the increment is checked before the key is looked at)
fn incrby(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let incr = args::int(args[2])?;
    incr_decr(ctx, args[1], incr)
}

/// DECRBY key decrement (`ERR decrement would overflow` for i64::MIN, whatever the key holds)
fn decrby(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let decr = args::int(args[2])?;
    let incr = num::decrby_increment(decr).map_err(incr_error)?;
    incr_decr(ctx, args[1], incr)
}

/// INCRBYFLOAT key increment: `long double` arithmetic and formatting exactly as Redis (see `num`); the TTL is
/// kept and the reply is the new value as a bulk string.
fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let key = Key::new(args[1]);
    let now = ctx.now;
    let mut shard = db(ctx).lock(&key);
    let pos = shard.lookup_write(&key, &now);
    let current = match pos {
        Some(p) => {
            let e = shard.entry(&key, p);
            if !is_str(e) {
                return Err(CmdError::wrong_type());
            }
            Some(e.str_value())
        }
        None => None,
    };
    let value = num::incr_by_float(current, args[2]).map_err(float_error)?;
    store(&mut shard, &key, pos, &value, Ttl::Keep, &now);
    // Redis stores INCRBYFLOAT results without trying the integer encoding.
    if let Some(p) = shard.find(&key, &now) {
        shard.entry_mut(&key, p).mark_not_int_encoded();
    }
    drop(shard);
    ctx.out.bulk(&value);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Partial strings
// ---------------------------------------------------------------------------------------------------------

/// APPEND key value: creates the key when missing (no length check then: the argument already passed the
/// protocol's bulk limit), else appends in place (OBJECT ENCODING `raw` from then on) and replies the new
/// length.
fn append(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let key = Key::new(args[1]);
    let tail = args[2];
    let now = ctx.now;
    let mut shard = db(ctx).lock(&key);
    let total = match shard.lookup_write(&key, &now) {
        None => {
            add(
                &mut shard,
                &key,
                Entry::new_str(key.bytes, tail, None, now.initial_access()),
            );
            tail.len()
        }
        Some(pos) => {
            let e = shard.entry(&key, pos);
            if !is_str(e) {
                return Err(CmdError::wrong_type());
            }
            let old_len = e.str_value().len();
            let total = old_len + tail.len();
            check_string_length(ctx, total as u64)?;
            shard.entry_mut_range(&key, pos, old_len, total).append_str(tail);
            total
        }
    };
    drop(shard);
    ctx.out.integer(total as i64);
    Ok(())
}

/// STRLEN key (0 for a missing key)
fn strlen(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let key = Key::new(args[1]);
    let mut shard = db(ctx).lock(&key);
    let len = match shard.lookup_read(&key, &ctx.now, ctx.client.no_touch) {
        Some(pos) => {
            let e = shard.entry(&key, pos);
            if !is_str(e) {
                return Err(CmdError::wrong_type());
            }
            e.str_value().len()
        }
        None => 0,
    };
    drop(shard);
    ctx.out.integer(len as i64);
    Ok(())
}

/// The byte range GETRANGE returns for `start..=end` on a string of `len` bytes (Redis 7.0's index rules:
/// negative indexes count from the end, both clamp to the string, and two negative indexes the wrong way
/// round are empty even where clamping would make them meet).
fn getrange_bounds(len: usize, mut start: i64, mut end: i64) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let len = len as i64;
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return None;
    }
    Some((start as usize, end as usize + 1))
}

/// GETRANGE key start end (and SUBSTR): an empty bulk for a missing key or an empty range.
fn getrange(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let start = args::int(args[2])?;
    let end = args::int(args[3])?;
    let key = Key::new(args[1]);
    let mut shard = db(ctx).lock(&key);
    match shard.lookup_read(&key, &ctx.now, ctx.client.no_touch) {
        Some(pos) => {
            let e = shard.entry(&key, pos);
            if !is_str(e) {
                return Err(CmdError::wrong_type());
            }
            let v = e.str_value();
            match getrange_bounds(v.len(), start, end) {
                Some((from, to)) => ctx.out.bulk(&v[from..to]),
                None => ctx.out.bulk(b""),
            }
        }
        None => ctx.out.bulk(b""),
    }
    Ok(())
}

/// SETRANGE key offset value: overwrites from `offset`, zero-padding; replies the new length. An empty value
/// changes nothing (and creates nothing); the result may not exceed `proto-max-bulk-len`.
fn setrange(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let offset = args::int(args[2])?;
    if offset < 0 {
        return Err(CmdError::Static(error::OFFSET_OUT_OF_RANGE));
    }
    let value = args[3];
    // offset <= i64::MAX and a value is far below 2^63 bytes, so this cannot overflow.
    let total = offset as u64 + value.len() as u64;
    let key = Key::new(args[1]);
    let now = ctx.now;
    let mut shard = db(ctx).lock(&key);
    let len = match shard.lookup_write(&key, &now) {
        None => {
            if value.is_empty() {
                0
            } else {
                check_string_length(ctx, total)?;
                // Created as a modified (`raw`) string, as Redis does.
                let mut e = Entry::new_str(key.bytes, b"", None, now.initial_access());
                e.set_range(offset as usize, value);
                add(&mut shard, &key, e);
                total as usize
            }
        }
        Some(pos) => {
            let e = shard.entry(&key, pos);
            if !is_str(e) {
                return Err(CmdError::wrong_type());
            }
            let old_len = e.str_value().len();
            if value.is_empty() {
                old_len
            } else {
                check_string_length(ctx, total)?;
                // The bytes that change include any zero padding between the old end and `offset`.
                let from = (offset as usize).min(old_len);
                let e = shard.entry_mut_range(&key, pos, from, total as usize);
                e.set_range(offset as usize, value);
                e.str_value().len()
            }
        }
    };
    drop(shard);
    ctx.out.integer(len as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// LCS
// ---------------------------------------------------------------------------------------------------------

/// LCS options (`LEN`, `IDX`, `MINMATCHLEN n`, `WITHMATCHLEN`).
#[derive(Debug, Clone, Copy, Default)]
struct LcsArgs {
    len: bool,
    idx: bool,
    with_match_len: bool,
    min_match_len: u64,
}

impl LcsArgs {
    fn parse(args: &[&[u8]]) -> Result<LcsArgs, CmdError> {
        let mut o = LcsArgs::default();
        let mut j = 3;
        while j < args.len() {
            let opt = cstr(args[j]);
            let more = args.len() - 1 - j;
            if args::is(opt, "idx") {
                o.idx = true;
            } else if args::is(opt, "len") {
                o.len = true;
            } else if args::is(opt, "withmatchlen") {
                o.with_match_len = true;
            } else if args::is(opt, "minmatchlen") && more > 0 {
                o.min_match_len = args::int(args[j + 1])?.max(0) as u64;
                j += 1;
            } else {
                return Err(CmdError::syntax());
            }
            j += 1;
        }
        Ok(o)
    }
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]: Redis's dynamic-programming algorithm, with its
/// exact backtracking order (so ties pick the same subsequence) and reply shapes; IDX replies a map.
fn lcs(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    // Parsed now, reported after the keys' type check, as Redis orders the two.
    let opts = LcsArgs::parse(args);
    let ka = Key::new(args[1]);
    let kb = Key::new(args[2]);
    let now = ctx.now;
    let no_touch = ctx.client.no_touch;
    let max_bulk = max_bulk_len(ctx);
    let (a, b, opts) = {
        let mut set = db(ctx).lock_keys([&ka, &kb]);
        let pa = set.shard(&ka).lookup_read(&ka, &now, no_touch);
        let pb = set.shard(&kb).lookup_read(&kb, &now, no_touch);
        // Looking up b may have deleted it (expired) and moved entries of a shared table; find a again.
        let pa = match pa {
            Some(_) => set.shard(&ka).find(&ka, &now),
            None => None,
        };
        let a_str = pa.is_none_or(|p| is_str(set.shard(&ka).entry(&ka, p)));
        let b_str = pb.is_none_or(|p| is_str(set.shard(&kb).entry(&kb, p)));
        if !a_str || !b_str {
            return Err(CmdError::Static(LCS_NOT_STRINGS));
        }
        let opts = opts?;
        if opts.len && opts.idx {
            return Err(CmdError::Static(LCS_LEN_AND_IDX));
        }
        let alen = pa.map_or(0, |p| set.shard(&ka).entry(&ka, p).str_value().len()) as u64;
        let blen = pb.map_or(0, |p| set.shard(&kb).entry(&kb, p).str_value().len()) as u64;
        if alen >= u32::MAX as u64 - 1 || blen >= u32::MAX as u64 - 1 {
            return Err(CmdError::Static(LCS_TOO_LONG));
        }
        let bytes = (alen as u128 + 1) * (blen as u128 + 1) * 4;
        if bytes >= usize::MAX as u128 {
            return Err(CmdError::Static(LCS_ALLOC_FAILED));
        }
        if bytes > max_bulk.max(0) as u128 {
            return Err(CmdError::Static(LCS_EXCEEDS_BULK_LEN));
        }
        // Copied out so the (quadratic) computation runs without holding the shard locks.
        let a = pa
            .map(|p| set.shard(&ka).entry(&ka, p).str_value().to_vec())
            .unwrap_or_default();
        let b = pb
            .map(|p| set.shard(&kb).entry(&kb, p).str_value().to_vec())
            .unwrap_or_default();
        (a, b, opts)
    };

    if opts.len && !opts.idx {
        ctx.out.integer(lcs_len(&a, &b) as i64);
        return Ok(());
    }

    let alen = a.len();
    let blen = b.len();
    let width = blen + 1;
    let mut table: Vec<u32> = Vec::new();
    if table.try_reserve_exact((alen + 1) * width).is_err() {
        return Err(CmdError::Static(LCS_ALLOC_FAILED));
    }
    table.resize((alen + 1) * width, 0);
    for i in 1..=alen {
        for j in 1..=blen {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let total = table[alen * width + blen];

    // Backtrack from the end, as Redis does, collecting the subsequence and the matching ranges.
    let mut result = vec![0u8; total as usize];
    let mut idx = total as usize;
    let out = &mut *ctx.out;
    let mut mark = None;
    if opts.idx {
        out.map(2);
        out.bulk(b"matches");
        mark = Some(out.defer_len());
    }
    let mut ranges = 0usize;
    let (alen32, mut i, mut j) = (alen as u32, alen as u32, blen as u32);
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen32, 0u32, 0u32, 0u32);
    while i > 0 && j > 0 {
        let (iu, ju) = (i as usize, j as usize);
        let mut emit = false;
        if a[iu - 1] == b[ju - 1] {
            result[idx - 1] = a[iu - 1];
            if a_start == alen32 {
                a_start = i - 1;
                a_end = i - 1;
                b_start = j - 1;
                b_end = j - 1;
            } else if a_start == i && b_start == j {
                // Contiguous: extend the range backwards.
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            let up = table[(iu - 1) * width + ju];
            let left = table[iu * width + ju - 1];
            if up > left {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != alen32 {
                emit = true;
            }
        }
        let match_len = a_end.wrapping_sub(a_start).wrapping_add(1);
        if emit {
            if (opts.min_match_len == 0 || match_len as u64 >= opts.min_match_len) && mark.is_some() {
                out.array(2 + usize::from(opts.with_match_len));
                out.array(2);
                out.integer(a_start as i64);
                out.integer(a_end as i64);
                out.array(2);
                out.integer(b_start as i64);
                out.integer(b_end as i64);
                if opts.with_match_len {
                    out.integer(match_len as i64);
                }
                ranges += 1;
            }
            a_start = alen32;
        }
    }
    match mark {
        Some(mark) => {
            out.bulk(b"len");
            out.integer(total as i64);
            out.finish_array(mark, ranges);
        }
        None => out.bulk(&result),
    }
    Ok(())
}

/// The LCS length alone, in two rows of the table instead of all of it.
fn lcs_len(a: &[u8], b: &[u8]) -> u32 {
    let mut prev = vec![0u32; b.len() + 1];
    let mut cur = vec![0u32; b.len() + 1];
    for &ca in a {
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = if ca == cb { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

pub const COMMANDS: &[(&str, Handler)] = &[
    ("get", get),
    ("set", set),
    ("setnx", setnx),
    ("setex", setex),
    ("psetex", psetex),
    ("getset", getset),
    ("getex", getex),
    ("getdel", getdel),
    ("mget", mget),
    ("mset", mset),
    ("msetnx", msetnx),
    ("incr", incr),
    ("incrby", incrby),
    ("incrbyfloat", incrbyfloat),
    ("decr", decr),
    ("decrby", decrby),
    ("append", append),
    ("strlen", strlen),
    ("getrange", getrange),
    ("substr", getrange),
    ("setrange", setrange),
    ("lcs", lcs),
];

#[cfg(test)]
mod tests {
    //! Expected replies were taken from redis-server 7.0.15.

    use shoal_protocol::{Frame, Proto};

    use super::*;
    use crate::cmd::testing::TestClient;

    const NOT_INT: &str = "-ERR value is not an integer or out of range";
    const SYNTAX: &str = "-ERR syntax error";

    fn bulk(s: &[u8]) -> Frame {
        Frame::Bulk(bytes::Bytes::copy_from_slice(s))
    }

    /// `None` if the key is absent, else its remaining TTL in ms (`None` inside for no TTL).
    fn ttl_ms(c: &TestClient, k: &str) -> Option<Option<i64>> {
        let key = Key::new(k.as_bytes());
        let now = c.srv.now();
        let mut shard = c.srv.keyspace.db(0).lock(&key);
        let pos = shard.find(&key, &now)?;
        Some(shard.entry(&key, pos).expire_at().map(|at| at - now.ms))
    }

    fn dbsize(c: &TestClient) -> usize {
        c.srv.keyspace.db(0).len()
    }

    fn t(c: &mut TestClient, args: &[&str]) -> String {
        c.text(args)
    }

    #[test]
    fn get_and_set() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["SET", "k", "v"]), "OK");
        assert_eq!(c.call(&["SET", "k", "v"]), Frame::Simple("OK".into()));
        assert_eq!(c.call(&["GET", "k"]), bulk(b"v"));
        assert_eq!(c.call(&["GET", "nokey"]), Frame::NullBulk);
        assert_eq!(t(&mut c, &["SET", "e", ""]), "OK");
        assert_eq!(c.call(&["GET", "e"]), bulk(b""));
        let bin: &[u8] = b"a\0b\r\n\xff";
        assert_eq!(c.call_bytes(&[b"SET", b"bin\0key", bin]), Frame::Simple("OK".into()));
        assert_eq!(c.call_bytes(&[b"GET", b"bin\0key"]), bulk(bin));
        // Overwrites of every size, in place and not.
        let long = "x".repeat(1000);
        for v in ["v", "w", "longer value", &long, "s", &long, ""] {
            assert_eq!(t(&mut c, &["SET", "k", v]), "OK");
            assert_eq!(c.call(&["GET", "k"]), bulk(v.as_bytes()));
        }
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["GET", "nokey"]), Frame::Null);
        assert_eq!(c.call(&["GET", "e"]), bulk(b""));
    }

    #[test]
    fn set_option_syntax() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["SET", "a", "1", "NX", "XX"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "XX", "NX"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "NX", "NX"]), "OK");
        assert_eq!(t(&mut c, &["SET", "a", "1", "EX", "10", "EX", "20"]), "OK");
        let ttl = ttl_ms(&c, "a").flatten().unwrap_or(0);
        assert!(ttl > 19_000 && ttl <= 20_000, "{ttl}");
        assert_eq!(t(&mut c, &["SET", "a", "1", "EX", "10", "PX", "20"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "KEEPTTL", "EX", "1"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "EX", "1", "KEEPTTL"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "ex", "100", "keepttl"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "EXAT", "1", "PXAT", "1"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "EX"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "PERSIST"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "FOO"]), SYNTAX);
        assert_eq!(t(&mut c, &["SET", "a", "1", "KEEPTTL", "KEEPTTL"]), "OK");
        // The syntax is checked before the expiry value.
        assert_eq!(t(&mut c, &["SET", "a", "1", "EX", "abc", "NX", "XX"]), SYNTAX);
        // Keywords are C strings: anything after a NUL is ignored.
        assert_eq!(c.call_bytes(&[b"SET", b"a", b"1", b"NX\0zz"]), Frame::NullBulk);
        assert_eq!(
            c.call_bytes(&[b"SET", b"a", b"1", b"KEEPTTL\0zz"]),
            Frame::Simple("OK".into())
        );
        assert_eq!(c.call_bytes(&[b"SET", b"a", b"1", b"GET\0x"]), bulk(b"1"));
    }

    #[test]
    fn set_expiry_errors() {
        let mut c = TestClient::new();
        let invalid = "-ERR invalid expire time in 'set' command";
        for (opt, n, want) in [
            ("EX", "0", invalid),
            ("EX", "-1", invalid),
            ("PX", "0", invalid),
            ("EXAT", "0", invalid),
            ("PXAT", "-5", invalid),
            ("EX", "abc", NOT_INT),
            ("EX", "1.5", NOT_INT),
            ("EX", "01", NOT_INT),
            ("EX", " 1", NOT_INT),
            ("EX", "9223372036854775", invalid),
            ("EX", "9223372036854776", invalid),
            ("EX", "9223372036854775807", invalid),
            ("PX", "9223372036854775807", invalid),
            ("EXAT", "9223372036854775807", invalid),
            ("PXAT", "9223372036854775807", "OK"),
            ("EXAT", "9223372036854775", "OK"),
        ] {
            assert_eq!(t(&mut c, &["SET", "a", "1", opt, n]), want, "{opt} {n}");
        }
        assert_eq!(
            ttl_ms(&c, "a").flatten().map(|ms| ms > 9_000_000_000_000_000),
            Some(true)
        );
        assert_eq!(
            t(&mut c, &["SETEX", "s", "0", "v"]),
            "-ERR invalid expire time in 'setex' command"
        );
        assert_eq!(
            t(&mut c, &["SETEX", "s", "-1", "v"]),
            "-ERR invalid expire time in 'setex' command"
        );
        assert_eq!(
            t(&mut c, &["SETEX", "s", "9223372036854775", "v"]),
            "-ERR invalid expire time in 'setex' command"
        );
        assert_eq!(t(&mut c, &["SETEX", "s", "abc", "v"]), NOT_INT);
        assert_eq!(
            t(&mut c, &["PSETEX", "p", "0", "v"]),
            "-ERR invalid expire time in 'psetex' command"
        );
        assert_eq!(
            t(&mut c, &["PSETEX", "p", "9223372036854775807", "v"]),
            "-ERR invalid expire time in 'psetex' command"
        );
        assert_eq!(dbsize(&c), 1);
    }

    #[test]
    fn set_ttl_handling() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["SET", "t", "v", "EX", "100"]), "OK");
        let ttl = ttl_ms(&c, "t").flatten().unwrap_or(0);
        assert!(ttl > 99_000 && ttl <= 100_000, "{ttl}");
        // A plain SET drops the TTL, KEEPTTL keeps it.
        assert_eq!(t(&mut c, &["SET", "t", "w"]), "OK");
        assert_eq!(ttl_ms(&c, "t"), Some(None));
        assert_eq!(t(&mut c, &["SET", "t", "v", "PX", "100000"]), "OK");
        assert_eq!(t(&mut c, &["SET", "t", "w", "KEEPTTL"]), "OK");
        assert!(ttl_ms(&c, "t").flatten().is_some_and(|ms| ms > 99_000));
        assert_eq!(c.call(&["GET", "t"]), bulk(b"w"));
        // A new TTL replaces the old one, in place.
        assert_eq!(t(&mut c, &["SET", "t", "x", "EX", "5"]), "OK");
        assert!(ttl_ms(&c, "t").flatten().is_some_and(|ms| ms <= 5_000));
        assert_eq!(t(&mut c, &["SET", "t2", "v", "KEEPTTL"]), "OK");
        assert_eq!(ttl_ms(&c, "t2"), Some(None));
        let at = (c.srv.now().ms / 1000 + 1000).to_string();
        assert_eq!(t(&mut c, &["SET", "t3", "v", "EXAT", &at]), "OK");
        assert!(ttl_ms(&c, "t3")
            .flatten()
            .is_some_and(|ms| ms > 998_000 && ms <= 1_000_000));
        let at = (c.srv.now().ms + 1_000_000).to_string();
        assert_eq!(t(&mut c, &["SET", "t3", "v", "PXAT", &at]), "OK");
        assert!(ttl_ms(&c, "t3")
            .flatten()
            .is_some_and(|ms| ms > 998_000 && ms <= 1_000_000));
        assert_eq!(t(&mut c, &["SETEX", "s", "10", "v"]), "OK");
        assert!(ttl_ms(&c, "s").flatten().is_some_and(|ms| ms > 9_000 && ms <= 10_000));
        assert_eq!(t(&mut c, &["PSETEX", "p", "100000", "v"]), "OK");
        assert!(ttl_ms(&c, "p").flatten().is_some_and(|ms| ms > 99_000 && ms <= 100_000));
        let (keys, volatile) = c.srv.keyspace.db(0).counts();
        assert_eq!((keys, volatile), (5, 4));
        assert_eq!(t(&mut c, &["MSET", "t", "1", "t3", "2"]), "OK");
        assert_eq!(ttl_ms(&c, "t"), Some(None));
        assert_eq!(c.srv.keyspace.db(0).counts(), (5, 2));
    }

    /// Redis 7.0 stores a key whose absolute expiry is already past; it is gone for every reader and counts
    /// as expired when a lookup removes it.
    #[test]
    fn set_with_past_expiry_hides_the_key() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["SET", "z", "1", "EXAT", "1"]), "OK");
        assert_eq!(dbsize(&c), 1);
        assert_eq!(c.call(&["GET", "z"]), Frame::NullBulk);
        assert_eq!(dbsize(&c), 0);
        assert_eq!(c.srv.keyspace.db(0).stats().expired, 1);
        assert_eq!(c.call(&["SET", "a", "1", "PXAT", "1", "GET"]), Frame::NullBulk);
        assert_eq!(c.call(&["GET", "a"]), Frame::NullBulk);
        assert_eq!(t(&mut c, &["SET", "a", "1"]), "OK");
        assert_eq!(c.call(&["SET", "a", "2", "PXAT", "1", "GET"]), bulk(b"1"));
        assert_eq!(ttl_ms(&c, "a"), None);
    }

    #[test]
    fn set_nx_xx_get() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["SET", "nx1", "v", "XX"]), "(nil)");
        assert_eq!(c.call(&["SET", "nx1", "v", "XX"]), Frame::NullBulk);
        assert_eq!(c.call(&["GET", "nx1"]), Frame::NullBulk);
        assert_eq!(t(&mut c, &["SET", "k", "v", "NX"]), "OK");
        assert_eq!(c.call(&["SET", "k", "w", "NX"]), Frame::NullBulk);
        assert_eq!(t(&mut c, &["SET", "k", "v2", "XX"]), "OK");
        assert_eq!(c.call(&["SET", "k", "v3", "XX", "GET"]), bulk(b"v2"));
        assert_eq!(c.call(&["GET", "k"]), bulk(b"v3"));
        assert_eq!(c.call(&["SET", "k", "v4", "GET"]), bulk(b"v3"));
        assert_eq!(c.call(&["SET", "k", "v5", "get", "GET"]), bulk(b"v4"));
        // SET ... NX GET is allowed in 7.0: the old value, and nothing set when the key exists.
        assert_eq!(c.call(&["SET", "k", "x", "NX", "GET"]), bulk(b"v5"));
        assert_eq!(c.call(&["GET", "k"]), bulk(b"v5"));
        assert_eq!(c.call(&["SET", "k2", "x", "NX", "GET"]), Frame::NullBulk);
        assert_eq!(c.call(&["GET", "k2"]), bulk(b"x"));
        assert_eq!(c.call(&["SET", "k3", "x", "XX", "GET"]), Frame::NullBulk);
        assert_eq!(c.call(&["GET", "k3"]), Frame::NullBulk);
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["SET", "k3", "x", "XX"]), Frame::Null);
        assert_eq!(c.call(&["SET", "k4", "x", "GET"]), Frame::Null);
        assert_eq!(c.call(&["SET", "k4", "y", "NX", "GET"]), bulk(b"x"));
    }

    #[test]
    fn setnx_setex_psetex() {
        let mut c = TestClient::new();
        assert_eq!(c.call(&["SETNX", "n", "1"]), Frame::Integer(1));
        assert_eq!(c.call(&["SETNX", "n", "2"]), Frame::Integer(0));
        assert_eq!(c.call(&["GET", "n"]), bulk(b"1"));
        assert_eq!(c.call(&["SETEX", "s", "10", "v"]), Frame::Simple("OK".into()));
        assert_eq!(c.call(&["PSETEX", "s", "10000", "w"]), Frame::Simple("OK".into()));
        assert_eq!(c.call(&["GET", "s"]), bulk(b"w"));
    }

    #[test]
    fn getset_returns_old_value_and_drops_ttl() {
        let mut c = TestClient::new();
        assert_eq!(c.call(&["GETSET", "gs", "v1"]), Frame::NullBulk);
        assert_eq!(c.call(&["GETSET", "gs", "v2"]), bulk(b"v1"));
        assert_eq!(c.call(&["GET", "gs"]), bulk(b"v2"));
        assert_eq!(t(&mut c, &["SETEX", "gs", "100", "x"]), "OK");
        assert_eq!(c.call(&["GETSET", "gs", "y"]), bulk(b"x"));
        assert_eq!(ttl_ms(&c, "gs"), Some(None));
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["GETSET", "new", "y"]), Frame::Null);
    }

    #[test]
    fn getex_options() {
        let mut c = TestClient::new();
        let invalid = "-ERR invalid expire time in 'getex' command";
        assert_eq!(t(&mut c, &["SET", "g", "v"]), "OK");
        assert_eq!(c.call(&["GETEX", "g"]), bulk(b"v"));
        assert_eq!(ttl_ms(&c, "g"), Some(None));
        assert_eq!(c.call(&["GETEX", "g", "PERSIST"]), bulk(b"v"));
        assert_eq!(c.call(&["GETEX", "g", "EX", "100"]), bulk(b"v"));
        assert!(ttl_ms(&c, "g").flatten().is_some_and(|ms| ms > 99_000 && ms <= 100_000));
        assert_eq!(c.srv.keyspace.db(0).counts(), (1, 1));
        assert_eq!(c.call(&["GETEX", "g", "PERSIST"]), bulk(b"v"));
        assert_eq!(ttl_ms(&c, "g"), Some(None));
        assert_eq!(c.srv.keyspace.db(0).counts(), (1, 0));
        assert_eq!(c.call(&["GETEX", "g", "PX", "5000"]), bulk(b"v"));
        assert!(ttl_ms(&c, "g").flatten().is_some_and(|ms| ms <= 5_000));
        let at = (c.srv.now().ms / 1000 + 1000).to_string();
        assert_eq!(c.call(&["GETEX", "g", "EXAT", &at]), bulk(b"v"));
        assert!(ttl_ms(&c, "g").flatten().is_some_and(|ms| ms > 998_000));
        assert_eq!(c.call(&["GETEX", "g", "EX", "10", "EX", "20"]), bulk(b"v"));
        assert!(ttl_ms(&c, "g").flatten().is_some_and(|ms| ms > 19_000 && ms <= 20_000));
        assert_eq!(c.call(&["GETEX", "g", "PERSIST", "PERSIST"]), bulk(b"v"));
        assert_eq!(c.call_bytes(&[b"GETEX", b"g", b"PERSIST\0"]), bulk(b"v"));
        for bad in [
            &["EX", "10", "PX", "10"][..],
            &["NX"],
            &["XX"],
            &["KEEPTTL"],
            &["GET"],
            &["EX"],
            &["FOO"],
            &["PERSIST", "EX", "10"],
            &["EX", "10", "PERSIST"],
        ] {
            let mut cmd = vec!["GETEX", "g"];
            cmd.extend_from_slice(bad);
            assert_eq!(t(&mut c, &cmd), SYNTAX, "{bad:?}");
        }
        assert_eq!(t(&mut c, &["GETEX", "g", "EX", "0"]), invalid);
        assert_eq!(t(&mut c, &["GETEX", "g", "EX", "abc"]), NOT_INT);
        assert_eq!(t(&mut c, &["GETEX", "g", "EX", "9223372036854775807"]), invalid);
        assert_eq!(t(&mut c, &["GETEX", "g", "EXAT", "9223372036854775807"]), invalid);
        assert_eq!(c.call(&["GETEX", "g", "PXAT", "9223372036854775807"]), bulk(b"v"));
        // A missing key replies nil before the expiry value is looked at; the syntax is checked first.
        assert_eq!(c.call(&["GETEX", "nokey", "EX", "abc"]), Frame::NullBulk);
        assert_eq!(c.call(&["GETEX", "nokey", "EX", "0"]), Frame::NullBulk);
        assert_eq!(t(&mut c, &["GETEX", "nokey", "FOO"]), SYNTAX);
        // An absolute time in the past deletes the key at once (not counted as expired).
        assert_eq!(c.call(&["GETEX", "g", "EXAT", "1"]), bulk(b"v"));
        assert_eq!(dbsize(&c), 0);
        assert_eq!(c.srv.keyspace.db(0).stats().expired, 0);
        assert_eq!(t(&mut c, &["SET", "g", "v"]), "OK");
        assert_eq!(c.call(&["GETEX", "g", "PXAT", "1"]), bulk(b"v"));
        assert_eq!(c.call(&["GET", "g"]), Frame::NullBulk);
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["GETEX", "nokey"]), Frame::Null);
    }

    #[test]
    fn getdel() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["SET", "gd", "y"]), "OK");
        assert_eq!(c.call(&["GETDEL", "gd"]), bulk(b"y"));
        assert_eq!(c.call(&["GETDEL", "gd"]), Frame::NullBulk);
        assert_eq!(dbsize(&c), 0);
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["GETDEL", "nokey"]), Frame::Null);
    }

    #[test]
    fn mget_mset_msetnx() {
        let mut c = TestClient::new();
        assert_eq!(
            t(&mut c, &["MSET", "a", "1", "b"]),
            "-ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(
            t(&mut c, &["MSETNX", "a", "1", "b"]),
            "-ERR wrong number of arguments for 'msetnx' command"
        );
        assert_eq!(
            t(&mut c, &["MSET", "a"]),
            "-ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(dbsize(&c), 0);
        assert_eq!(t(&mut c, &["MSET", "a", "1", "a", "2"]), "OK");
        assert_eq!(c.call(&["GET", "a"]), bulk(b"2"));
        assert_eq!(c.call(&["MSETNX", "a", "1", "c", "2"]), Frame::Integer(0));
        assert_eq!(c.call(&["GET", "c"]), Frame::NullBulk);
        assert_eq!(c.call(&["MSETNX", "c", "1", "d", "2"]), Frame::Integer(1));
        assert_eq!(c.call(&["MSETNX", "e", "1", "e", "2"]), Frame::Integer(1));
        assert_eq!(c.call(&["GET", "e"]), bulk(b"2"));
        assert_eq!(
            c.call(&["MGET", "a", "c", "nokey", "d", "e"]),
            Frame::Array(vec![bulk(b"2"), bulk(b"1"), Frame::NullBulk, bulk(b"2"), bulk(b"2")])
        );
        // Many keys over many shards, set and read back atomically.
        let mut cmd = vec!["MSET".to_string()];
        for i in 0..200 {
            cmd.push(format!("key:{i}"));
            cmd.push(format!("val:{i}"));
        }
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        assert_eq!(t(&mut c, &cmd), "OK");
        let mut get = vec!["MGET".to_string()];
        get.extend((0..200).map(|i| format!("key:{i}")));
        let get: Vec<&str> = get.iter().map(String::as_str).collect();
        let want = Frame::Array((0..200).map(|i| bulk(format!("val:{i}").as_bytes())).collect());
        assert_eq!(c.call(&get), want);
        c.client.proto = Proto::Resp3;
        assert_eq!(
            c.call(&["MGET", "a", "nokey"]),
            Frame::Array(vec![bulk(b"2"), Frame::Null])
        );
    }

    #[test]
    fn incr_decr() {
        let mut c = TestClient::new();
        assert_eq!(c.call(&["INCR", "i"]), Frame::Integer(1));
        assert_eq!(c.call(&["INCRBY", "i", "10"]), Frame::Integer(11));
        assert_eq!(c.call(&["DECR", "i"]), Frame::Integer(10));
        assert_eq!(c.call(&["DECRBY", "i", "5"]), Frame::Integer(5));
        assert_eq!(c.call(&["DECRBY", "i", "-5"]), Frame::Integer(10));
        assert_eq!(c.call(&["GET", "i"]), bulk(b"10"));
        assert_eq!(c.call(&["INCRBY", "i", "-100"]), Frame::Integer(-90));
        assert_eq!(c.call(&["DECR", "new"]), Frame::Integer(-1));
        assert_eq!(
            t(&mut c, &["DECRBY", "i", "-9223372036854775808"]),
            "-ERR decrement would overflow"
        );
        assert_eq!(
            t(&mut c, &["DECRBY", "nokey", "-9223372036854775808"]),
            "-ERR decrement would overflow"
        );
        assert_eq!(dbsize(&c), 2);
        assert_eq!(t(&mut c, &["INCRBY", "i", "abc"]), NOT_INT);
        assert_eq!(t(&mut c, &["INCRBY", "i", "1.0"]), NOT_INT);
        assert_eq!(t(&mut c, &["SET", "i", "9223372036854775807"]), "OK");
        assert_eq!(t(&mut c, &["INCR", "i"]), "-ERR increment or decrement would overflow");
        assert_eq!(t(&mut c, &["SET", "i", "-9223372036854775808"]), "OK");
        assert_eq!(t(&mut c, &["DECR", "i"]), "-ERR increment or decrement would overflow");
        assert_eq!(c.call(&["INCRBY", "i", "9223372036854775807"]), Frame::Integer(-1));
        for bad in ["abc", "01", " 1", "1.0", "", "+1"] {
            assert_eq!(t(&mut c, &["SET", "i", bad]), "OK");
            assert_eq!(t(&mut c, &["INCR", "i"]), NOT_INT, "{bad:?}");
        }
        // The TTL is kept.
        assert_eq!(t(&mut c, &["SETEX", "i", "100", "1"]), "OK");
        assert_eq!(c.call(&["INCR", "i"]), Frame::Integer(2));
        assert_eq!(c.call(&["INCRBY", "i", "1000"]), Frame::Integer(1002));
        assert!(ttl_ms(&c, "i").flatten().is_some_and(|ms| ms > 99_000));
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["INCR", "i"]), Frame::Integer(1003));
    }

    #[test]
    fn incrbyfloat() {
        let mut c = TestClient::new();
        assert_eq!(c.call(&["INCRBYFLOAT", "f", "1.5"]), bulk(b"1.5"));
        assert_eq!(
            t(&mut c, &["INCRBYFLOAT", "f", "abc"]),
            "-ERR value is not a valid float"
        );
        assert_eq!(
            t(&mut c, &["INCRBYFLOAT", "f", "inf"]),
            "-ERR increment would produce NaN or Infinity"
        );
        assert_eq!(
            t(&mut c, &["INCRBYFLOAT", "f", "-inf"]),
            "-ERR increment would produce NaN or Infinity"
        );
        assert_eq!(c.call(&["GET", "f"]), bulk(b"1.5"));
        assert_eq!(
            t(&mut c, &["INCRBYFLOAT", "nokey", "abc"]),
            "-ERR value is not a valid float"
        );
        assert_eq!(dbsize(&c), 1);
        let big = "10000000000000000000281880683947586514586453433629052038625910693539685534008629862039363994848324160522094053927317616200295822777259255734023828976593340661017797447434546173917862448116674971723778943824391593338047470675026246684401359237513603830343735485505244955964979021825038280091068414947402456898653040951017512658092615827588920183472511643316591362664138176309734806343732497430221946880";
        assert_eq!(c.call(&["INCRBYFLOAT", "big", "1e400"]), bulk(big.as_bytes()));
        assert_eq!(c.call(&["INCRBYFLOAT", "big", "0.1"]), bulk(big.as_bytes()));
        for (incr, want) in [
            ("0.1", "0.1"),
            ("0.2", "0.3"),
            ("-0.3", "0"),
            ("1e-20", "0"),
            ("3.0e3", "3000"),
            ("0x10", "3016"),
        ] {
            assert_eq!(c.call(&["INCRBYFLOAT", "fl", incr]), bulk(want.as_bytes()), "{incr}");
        }
        assert_eq!(t(&mut c, &["SET", "f", "10"]), "OK");
        assert_eq!(c.call(&["INCRBYFLOAT", "f", "1"]), bulk(b"11"));
        assert_eq!(t(&mut c, &["SET", "e", ""]), "OK");
        assert_eq!(t(&mut c, &["INCRBYFLOAT", "e", "1"]), "-ERR value is not a valid float");
        assert_eq!(t(&mut c, &["SET", "x", "abc"]), "OK");
        assert_eq!(
            t(&mut c, &["INCRBYFLOAT", "x", "abc"]),
            "-ERR value is not a valid float"
        );
        assert_eq!(t(&mut c, &["SETEX", "f", "100", "1"]), "OK");
        assert_eq!(c.call(&["INCRBYFLOAT", "f", "1"]), bulk(b"2"));
        assert!(ttl_ms(&c, "f").flatten().is_some_and(|ms| ms > 99_000));
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["INCRBYFLOAT", "f", "1"]), bulk(b"3"));
    }

    #[test]
    fn append_and_strlen() {
        let mut c = TestClient::new();
        assert_eq!(c.call(&["APPEND", "a", "hello"]), Frame::Integer(5));
        assert_eq!(c.call_bytes(&[b"APPEND", b"a", b"\0world"]), Frame::Integer(11));
        assert_eq!(c.call(&["GET", "a"]), bulk(b"hello\0world"));
        assert_eq!(c.call(&["STRLEN", "a"]), Frame::Integer(11));
        assert_eq!(c.call(&["STRLEN", "nokey"]), Frame::Integer(0));
        // APPEND of nothing still creates the key.
        assert_eq!(c.call(&["APPEND", "e", ""]), Frame::Integer(0));
        assert_eq!(dbsize(&c), 2);
        assert_eq!(c.call(&["STRLEN", "e"]), Frame::Integer(0));
        assert_eq!(c.call(&["APPEND", "e", ""]), Frame::Integer(0));
        // Many appends grow linearly and keep the TTL.
        assert_eq!(t(&mut c, &["SETEX", "g", "100", ""]), "OK");
        for i in 1..=1000 {
            assert_eq!(c.call(&["APPEND", "g", "xy"]), Frame::Integer(2 * i));
        }
        assert_eq!(c.call(&["STRLEN", "g"]), Frame::Integer(2000));
        assert_eq!(c.call(&["GET", "g"]), bulk("xy".repeat(1000).as_bytes()));
        assert!(ttl_ms(&c, "g").flatten().is_some_and(|ms| ms > 99_000));
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["STRLEN", "nokey"]), Frame::Integer(0));
    }

    #[test]
    fn append_respects_proto_max_bulk_len() {
        let mut c = TestClient::with_config(|cfg| cfg.proto_max_bulk_len = 1024 * 1024);
        let mb = "a".repeat(1024 * 1024);
        assert_eq!(c.call(&["APPEND", "x", &mb]), Frame::Integer(1024 * 1024));
        assert_eq!(
            t(&mut c, &["APPEND", "x", "a"]),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        );
        assert_eq!(c.call(&["APPEND", "x", ""]), Frame::Integer(1024 * 1024));
        assert_eq!(t(&mut c, &["SET", "y", "a"]), "OK");
        assert_eq!(
            t(&mut c, &["APPEND", "y", &mb]),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"
        );
        assert_eq!(c.call(&["GET", "y"]), bulk(b"a"));
    }

    #[test]
    fn getrange_indexes() {
        let mut c = TestClient::new();
        assert_eq!(
            c.call_bytes(&[b"SET", b"a", b"hello\0world"]),
            Frame::Simple("OK".into())
        );
        let cases: &[(&str, &str, &[u8])] = &[
            ("0", "-1", b"hello\0world"),
            ("-3", "-1", b"rld"),
            ("-1", "-3", b""),
            ("5", "2", b""),
            ("100", "200", b""),
            ("-100", "2", b"hel"),
            ("-100", "-100", b"h"),
            ("0", "-100", b"h"),
            ("3", "100", b"lo\0world"),
            ("0", "9223372036854775807", b"hello\0world"),
            ("-9223372036854775808", "9223372036854775807", b"hello\0world"),
            ("-20", "-30", b""),
            ("-30", "-20", b"h"),
            ("-3", "-5", b""),
            ("3", "-9", b""),
            ("-1", "0", b""),
            ("0", "0", b"h"),
            ("-11", "0", b"h"),
            ("9223372036854775807", "-1", b""),
            ("-9223372036854775808", "-9223372036854775808", b"h"),
        ];
        for &(s, e, want) in cases {
            assert_eq!(c.call(&["GETRANGE", "a", s, e]), bulk(want), "{s} {e}");
        }
        assert_eq!(c.call(&["SUBSTR", "a", "0", "2"]), bulk(b"hel"));
        assert_eq!(c.call(&["GETRANGE", "nokey", "0", "-1"]), bulk(b""));
        assert_eq!(t(&mut c, &["GETRANGE", "nokey", "a", "b"]), NOT_INT);
        assert_eq!(t(&mut c, &["GETRANGE", "a", "0", "1.5"]), NOT_INT);
        assert_eq!(t(&mut c, &["SET", "e", ""]), "OK");
        for (s, e) in [("0", "-1"), ("0", "0"), ("-1", "0"), ("-20", "-30")] {
            assert_eq!(c.call(&["GETRANGE", "e", s, e]), bulk(b""));
        }
        assert_eq!(t(&mut c, &["SET", "n", "12345"]), "OK");
        assert_eq!(c.call(&["GETRANGE", "n", "1", "2"]), bulk(b"23"));
        c.client.proto = Proto::Resp3;
        assert_eq!(c.call(&["GETRANGE", "nokey", "0", "-1"]), bulk(b""));
    }

    #[test]
    fn setrange() {
        let mut c = TestClient::new();
        let too_big = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)";
        // An empty value on a missing key creates nothing, whatever the offset.
        assert_eq!(c.call(&["SETRANGE", "s", "5", ""]), Frame::Integer(0));
        assert_eq!(c.call(&["SETRANGE", "s", "536870912", ""]), Frame::Integer(0));
        assert_eq!(dbsize(&c), 0);
        assert_eq!(t(&mut c, &["SETRANGE", "s", "-1", "x"]), "-ERR offset is out of range");
        assert_eq!(t(&mut c, &["SETRANGE", "s", "-1", ""]), "-ERR offset is out of range");
        assert_eq!(t(&mut c, &["SETRANGE", "s", "abc", "x"]), NOT_INT);
        assert_eq!(t(&mut c, &["SETRANGE", "s", "536870912", "x"]), too_big);
        assert_eq!(t(&mut c, &["SETRANGE", "s", "536870911", "xy"]), too_big);
        assert_eq!(t(&mut c, &["SETRANGE", "s", "9223372036854775807", "x"]), too_big);
        assert_eq!(dbsize(&c), 0);
        assert_eq!(c.call(&["SETRANGE", "s", "3", "x"]), Frame::Integer(4));
        assert_eq!(c.call(&["GET", "s"]), bulk(b"\0\0\0x"));
        assert_eq!(c.call(&["SETRANGE", "s", "0", ""]), Frame::Integer(4));
        assert_eq!(c.call(&["SETRANGE", "s", "100", ""]), Frame::Integer(4));
        assert_eq!(t(&mut c, &["SETRANGE", "s", "536870912", "x"]), too_big);
        assert_eq!(
            c.call_bytes(&[b"SET", b"a", b"hello\0world"]),
            Frame::Simple("OK".into())
        );
        assert_eq!(c.call(&["SETRANGE", "a", "2", "XY"]), Frame::Integer(11));
        assert_eq!(c.call(&["GET", "a"]), bulk(b"heXYo\0world"));
        assert_eq!(c.call(&["SETRANGE", "a", "9", "XYZ"]), Frame::Integer(12));
        assert_eq!(c.call(&["GET", "a"]), bulk(b"heXYo\0worXYZ"));
        assert_eq!(c.call(&["SETRANGE", "a", "14", "!"]), Frame::Integer(15));
        assert_eq!(c.call(&["GET", "a"]), bulk(b"heXYo\0worXYZ\0\0!"));
        // The TTL is kept.
        assert_eq!(t(&mut c, &["SETEX", "t", "100", "abc"]), "OK");
        assert_eq!(c.call(&["SETRANGE", "t", "1", "B"]), Frame::Integer(3));
        assert_eq!(c.call(&["GET", "t"]), bulk(b"aBc"));
        assert!(ttl_ms(&c, "t").flatten().is_some_and(|ms| ms > 99_000));
    }

    #[test]
    fn setrange_limit_follows_runtime_proto_max_bulk_len() {
        let mut c = TestClient::with_config(|cfg| cfg.proto_max_bulk_len = 1024 * 1024);
        let too_big = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)";
        assert_eq!(t(&mut c, &["SETRANGE", "x", "1048576", "a"]), too_big);
        assert_eq!(c.call(&["SETRANGE", "x", "1048575", "a"]), Frame::Integer(1048576));
        assert_eq!(t(&mut c, &["SETRANGE", "x", "1048575", "ab"]), too_big);
        assert_eq!(c.call(&["SETRANGE", "x", "0", "b"]), Frame::Integer(1048576));
        assert_eq!(c.call(&["GETRANGE", "x", "0", "1"]), bulk(b"b\0"));
        assert_eq!(c.call(&["GETRANGE", "x", "-2", "-1"]), bulk(b"\0a"));
    }

    fn range(a: (i64, i64), b: (i64, i64), len: Option<i64>) -> Frame {
        let mut v = vec![
            Frame::Array(vec![Frame::Integer(a.0), Frame::Integer(a.1)]),
            Frame::Array(vec![Frame::Integer(b.0), Frame::Integer(b.1)]),
        ];
        v.extend(len.map(Frame::Integer));
        Frame::Array(v)
    }

    fn idx_reply(matches: Vec<Frame>, len: i64, resp3: bool) -> Frame {
        let items = [
            (bulk(b"matches"), Frame::Array(matches)),
            (bulk(b"len"), Frame::Integer(len)),
        ];
        if resp3 {
            Frame::Map(items.into())
        } else {
            Frame::Array(items.into_iter().flat_map(|(k, v)| [k, v]).collect())
        }
    }

    #[test]
    fn lcs() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["MSET", "key1", "ohmytext", "key2", "mynewtext"]), "OK");
        assert_eq!(c.call(&["LCS", "key1", "key2"]), bulk(b"mytext"));
        assert_eq!(c.call(&["LCS", "key1", "key2", "LEN"]), Frame::Integer(6));
        assert_eq!(c.call(&["LCS", "key1", "key2", "LEN", "LEN"]), Frame::Integer(6));
        assert_eq!(c.call(&["LCS", "key1", "key2", "WITHMATCHLEN"]), bulk(b"mytext"));
        assert_eq!(
            c.call(&["LCS", "key1", "key2", "LEN", "WITHMATCHLEN"]),
            Frame::Integer(6)
        );
        let full = vec![range((4, 7), (5, 8), None), range((2, 3), (0, 1), None)];
        assert_eq!(
            c.call(&["LCS", "key1", "key2", "IDX"]),
            idx_reply(full.clone(), 6, false)
        );
        assert_eq!(
            c.call(&["LCS", "key1", "key2", "MINMATCHLEN", "-5", "IDX"]),
            idx_reply(full, 6, false)
        );
        assert_eq!(
            c.call(&["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4"]),
            idx_reply(vec![range((4, 7), (5, 8), None)], 6, false)
        );
        assert_eq!(
            c.call(&["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"]),
            idx_reply(vec![range((4, 7), (5, 8), Some(4))], 6, false)
        );
        let with_len = vec![range((4, 7), (5, 8), Some(4)), range((2, 3), (0, 1), Some(2))];
        assert_eq!(
            c.call(&["LCS", "key1", "key2", "IDX", "WITHMATCHLEN"]),
            idx_reply(with_len.clone(), 6, false)
        );
        let both = "-ERR If you want both the length and indexes, please just use IDX.";
        assert_eq!(t(&mut c, &["LCS", "key1", "key2", "LEN", "IDX"]), both);
        assert_eq!(t(&mut c, &["LCS", "key1", "key2", "idx", "len"]), both);
        assert_eq!(t(&mut c, &["LCS", "key1", "key2", "MINMATCHLEN"]), SYNTAX);
        assert_eq!(t(&mut c, &["LCS", "key1", "key2", "MINMATCHLEN", "abc"]), NOT_INT);
        assert_eq!(
            t(&mut c, &["LCS", "key1", "key2", "MINMATCHLEN", "abc", "LEN", "IDX"]),
            NOT_INT
        );
        assert_eq!(
            t(&mut c, &["LCS", "key1", "key2", "LEN", "IDX", "MINMATCHLEN", "abc"]),
            NOT_INT
        );
        assert_eq!(t(&mut c, &["LCS", "key1", "key2", "FOO"]), SYNTAX);
        assert_eq!(c.call_bytes(&[b"LCS", b"key1", b"key2", b"LEN\0x"]), Frame::Integer(6));
        // Missing keys are empty strings.
        assert_eq!(c.call(&["LCS", "nokey", "nokey2"]), bulk(b""));
        assert_eq!(c.call(&["LCS", "nokey", "nokey2", "LEN"]), Frame::Integer(0));
        assert_eq!(c.call(&["LCS", "nokey", "nokey2", "IDX"]), idx_reply(vec![], 0, false));
        assert_eq!(c.call(&["LCS", "key1", "nokey", "IDX"]), idx_reply(vec![], 0, false));
        assert_eq!(c.call(&["LCS", "key1", "key1"]), bulk(b"ohmytext"));
        // Backtracking order decides which subsequence and which ranges are reported.
        assert_eq!(t(&mut c, &["MSET", "la", "ABCBDAB", "lb", "BDCABA"]), "OK");
        assert_eq!(c.call(&["LCS", "la", "lb"]), bulk(b"BDAB"));
        assert_eq!(
            c.call(&["LCS", "la", "lb", "IDX", "WITHMATCHLEN"]),
            idx_reply(
                vec![range((5, 6), (3, 4), Some(2)), range((3, 4), (0, 1), Some(2))],
                4,
                false
            )
        );
        assert_eq!(t(&mut c, &["MSET", "lc", "aaaa", "ld", "aa"]), "OK");
        assert_eq!(c.call(&["LCS", "lc", "ld"]), bulk(b"aa"));
        assert_eq!(
            c.call(&["LCS", "lc", "ld", "IDX", "WITHMATCHLEN"]),
            idx_reply(vec![range((2, 3), (0, 1), Some(2))], 2, false)
        );
        assert_eq!(t(&mut c, &["MSET", "le", "xabcyabcz", "lf", "abcqqabc"]), "OK");
        assert_eq!(c.call(&["LCS", "le", "lf"]), bulk(b"abcabc"));
        assert_eq!(
            c.call(&["LCS", "le", "lf", "IDX", "MINMATCHLEN", "3", "WITHMATCHLEN"]),
            idx_reply(
                vec![range((5, 7), (5, 7), Some(3)), range((1, 3), (0, 2), Some(3))],
                6,
                false
            )
        );
        c.client.proto = Proto::Resp3;
        assert_eq!(
            c.call(&["LCS", "key1", "key2", "IDX", "WITHMATCHLEN"]),
            idx_reply(with_len, 6, true)
        );
        assert_eq!(c.call(&["LCS", "key1", "key2", "LEN"]), Frame::Integer(6));
        assert_eq!(c.call(&["LCS", "nokey", "nokey2", "IDX"]), idx_reply(vec![], 0, true));
        assert_eq!(c.call(&["LCS", "nokey", "nokey2"]), bulk(b""));
    }

    #[test]
    fn lcs_transient_memory_is_bounded_by_proto_max_bulk_len() {
        let mut c = TestClient::with_config(|cfg| cfg.proto_max_bulk_len = 1024 * 1024);
        let exceeds = "-ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len";
        let k = "a".repeat(1000);
        assert_eq!(t(&mut c, &["MSET", "x", &k, "y", &k]), "OK");
        assert_eq!(t(&mut c, &["LCS", "x", "y", "LEN"]), exceeds);
        assert_eq!(t(&mut c, &["SET", "x", &k[..500]]), "OK");
        assert_eq!(t(&mut c, &["LCS", "x", "y"]), exceeds);
        // 400 x 400: 161604 cells of 4 bytes fit.
        assert_eq!(t(&mut c, &["MSET", "x", &k[..400], "y", &k[..400]]), "OK");
        assert_eq!(c.call(&["LCS", "x", "y", "LEN"]), Frame::Integer(400));
        assert_eq!(c.call(&["LCS", "x", "y"]), bulk(&k.as_bytes()[..400]));
    }

    #[test]
    fn lcs_len_agrees_with_the_full_table() {
        let mut seed = 12345u64;
        let mut rnd = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    b"abc"[(seed >> 33) as usize % 3]
                })
                .collect()
        };
        let mut c = TestClient::new();
        for n in 0..40 {
            let (a, b) = (rnd(n), rnd(40 - n));
            assert_eq!(c.call_bytes(&[b"MSET", b"a", &a, b"b", &b]), Frame::Simple("OK".into()));
            let Frame::Bulk(s) = c.call(&["LCS", "a", "b"]) else {
                panic!("LCS reply")
            };
            assert_eq!(c.call(&["LCS", "a", "b", "LEN"]), Frame::Integer(s.len() as i64));
            assert_eq!(lcs_len(&a, &b) as usize, s.len());
        }
    }

    /// `SET ... GET`, GETSET, GETDEL, GETEX, MGET, STRLEN, GETRANGE and LCS count keyspace hits and misses;
    /// SET, APPEND, INCR, SETRANGE and MSETNX do not.
    #[test]
    fn keyspace_hits_and_misses_as_redis_counts_them() {
        let mut c = TestClient::new();
        assert_eq!(t(&mut c, &["MSET", "a", "2"]), "OK");
        assert_eq!(t(&mut c, &["MSETNX", "q1", "1", "a", "3"]), "0");
        c.srv.keyspace.db(0).reset_stats();
        for cmd in [
            &["SET", "a", "b", "GET"][..],
            &["SET", "zz", "b", "GET"],
            &["SET", "a", "b"],
            &["MGET", "a", "zz", "qq"],
            &["GETDEL", "a"],
            &["GETSET", "a", "b"],
            &["STRLEN", "a"],
            &["GETRANGE", "a", "0", "1"],
            &["APPEND", "a", "x"],
            &["INCR", "n"],
            &["SETRANGE", "a", "0", "x"],
            &["LCS", "a", "n"],
        ] {
            c.call(cmd);
        }
        let st = c.srv.keyspace.db(0).stats();
        assert_eq!((st.hits, st.misses), (8, 3));
    }

    #[test]
    fn set_in_place_keeps_one_entry_per_key() {
        let mut c = TestClient::new();
        for i in 0..100 {
            assert_eq!(t(&mut c, &["SET", "k", &format!("v{:02}", i % 100)]), "OK");
            assert_eq!(t(&mut c, &["SET", "k", &format!("{i}"), "EX", "100"]), "OK");
        }
        assert_eq!(c.srv.keyspace.db(0).counts(), (1, 1));
        assert_eq!(t(&mut c, &["SET", "k", "z"]), "OK");
        assert_eq!(c.srv.keyspace.db(0).counts(), (1, 0));
    }
}
