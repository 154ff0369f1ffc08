//! The expiry family, in the manner of Redis's `expire.c`: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (with NX, XX,
//! GT, LT), TTL, PTTL, EXPIRETIME, PEXPIRETIME and PERSIST.
//!
//! Expiry times are absolute unix milliseconds, kept in the entry (`Entry::expire_at`). Relative times are
//! added to the command time (`Ctx::now`), so every command of a pipeline agrees on "now". A time already in
//! the past deletes the key at once and replies 1, as Redis does — except on a replica, which never deletes
//! by itself and stores the past time, waiting for the primary's DEL.

use super::args;
use super::{Ctx, Handler};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::Key;

/// EXPIRE's conditions (Redis's `EXPIRE_NX` ... `EXPIRE_LT`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl Conditions {
    /// Redis's `parseExtendedExpireArgumentsOrReply`: any number of the four words, repeats allowed, then the
    /// compatibility checks. Runs before the time argument is parsed, as in Redis.
    fn parse(opts: &[&[u8]]) -> Result<Conditions, CmdError> {
        let mut c = Conditions::default();
        for opt in opts {
            if args::is(opt, "nx") {
                c.nx = true;
            } else if args::is(opt, "xx") {
                c.xx = true;
            } else if args::is(opt, "gt") {
                c.gt = true;
            } else if args::is(opt, "lt") {
                c.lt = true;
            } else {
                // `%s` stops at a NUL byte.
                let shown = &opt[..opt.iter().position(|&b| b == 0).unwrap_or(opt.len())];
                return Err(CmdError::Owned(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(shown)
                )));
            }
        }
        if c.nx && (c.xx || c.gt || c.lt) {
            return Err(CmdError::msg(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if c.gt && c.lt {
            return Err(CmdError::msg(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        Ok(c)
    }

    /// Whether a key whose current expiry is `current` (`None`: no TTL, an infinite one for GT and LT) may get
    /// the expiry `when`.
    fn allow(self, current: Option<i64>, when: i64) -> bool {
        if self.nx && current.is_some() {
            return false;
        }
        if self.xx && current.is_none() {
            return false;
        }
        if self.gt && current.is_none_or(|c| when <= c) {
            return false;
        }
        if self.lt && current.is_some_and(|c| when >= c) {
            return false;
        }
        true
    }
}

/// The absolute expiry in ms for a time argument `t` in seconds (`seconds`) or milliseconds, relative to
/// `base` ms (0 for the *AT forms). Redis's overflow checks: the unit conversion, then the addition.
fn absolute_ms(t: i64, seconds: bool, base: i64) -> Option<i64> {
    let ms = if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&t) {
            return None;
        }
        t * 1000
    } else {
        t
    };
    if ms > i64::MAX - base {
        return None;
    }
    Some(ms + base)
}

/// Redis's `expireGenericCommand`.
fn expire_generic(ctx: &mut Ctx<'_>, args: &[&[u8]], seconds: bool, relative: bool) -> CmdResult {
    let cond = Conditions::parse(&args[3..])?;
    let t = args::int(args[2])?;
    let base = if relative { ctx.now.ms } else { 0 };
    let when = absolute_ms(t, seconds, base).ok_or_else(|| CmdError::invalid_expire(&ctx.cmd.name))?;

    let srv = ctx.srv;
    let now = ctx.now;
    let key = Key::new(args[1]);
    let mut shard = srv.keyspace.db(ctx.client.db).lock(&key);
    let Some(pos) = shard.lookup_write(&key, &now) else {
        drop(shard);
        ctx.out.integer(0);
        return Ok(());
    };
    if !cond.allow(shard.entry(&key, pos).expire_at(), when) {
        drop(shard);
        ctx.out.integer(0);
        return Ok(());
    }
    if when <= now.ms && shard.lazy_expire_deletes {
        let gone = shard.remove(&key, pos);
        drop(shard);
        drop(gone);
    } else {
        shard.entry_mut(&key, pos).set_expire(Some(when));
        shard.sync_volatile(&key, pos);
        drop(shard);
    }
    ctx.out.integer(1);
    Ok(())
}

fn expire(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, args, true, true)
}

fn pexpire(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, args, false, true)
}

fn expireat(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, args, true, false)
}

fn pexpireat(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, args, false, false)
}

/// Redis's `ttlGenericCommand`: -2 for a missing key, -1 for a key without TTL, else the remaining time (or the
/// absolute expiry) in ms, or in seconds rounded to nearest. The lookup counts a hit or miss without touching.
fn ttl_generic(ctx: &mut Ctx<'_>, args: &[&[u8]], ms: bool, absolute: bool) -> CmdResult {
    let key = Key::new(args[1]);
    let now = ctx.now;
    let found = {
        let mut shard = ctx.db().lock(&key);
        shard
            .lookup_read(&key, &now, true)
            .map(|pos| shard.entry(&key, pos).expire_at())
    };
    let reply = match found {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => {
            let t = if absolute { at } else { at.saturating_sub(now.ms) }.max(0);
            if ms {
                t
            } else {
                // t + 500 may pass i64::MAX; Redis's result is the exact quotient.
                ((t as i128 + 500) / 1000) as i64
            }
        }
    };
    ctx.out.integer(reply);
    Ok(())
}

fn ttl(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, args, false, false)
}

fn pttl(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, args, true, false)
}

fn expiretime(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, args, false, true)
}

fn pexpiretime(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, args, true, true)
}

/// PERSIST: 1 if the key had a TTL and lost it, else 0.
fn persist(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> CmdResult {
    let key = Key::new(args[1]);
    let now = ctx.now;
    let removed = {
        let mut shard = ctx.db().lock(&key);
        match shard.lookup_write(&key, &now) {
            Some(pos) if shard.entry(&key, pos).has_expire() => {
                shard.entry_mut(&key, pos).set_expire(None);
                shard.sync_volatile(&key, pos);
                1
            }
            _ => 0,
        }
    };
    ctx.out.integer(removed);
    Ok(())
}

pub const COMMANDS: &[(&str, Handler)] = &[
    ("expire", expire),
    ("pexpire", pexpire),
    ("expireat", expireat),
    ("pexpireat", pexpireat),
    ("ttl", ttl),
    ("pttl", pttl),
    ("expiretime", expiretime),
    ("pexpiretime", pexpiretime),
    ("persist", persist),
];

#[cfg(test)]
mod tests {
    //! Expected replies verified against redis-server 7.0.15.
    use super::*;
    use crate::cmd::testing::TestClient;
    use crate::keyspace::Entry;

    fn t(c: &mut TestClient, args: &[&str]) -> String {
        c.text(args)
    }

    fn int(c: &mut TestClient, args: &[&str]) -> i64 {
        let r = c.text(args);
        r.parse().unwrap_or_else(|_| panic!("{args:?} replied {r}"))
    }

    #[test]
    fn option_errors_come_before_the_time_and_the_key() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "k", "v"]);
        let nx = "-ERR NX and XX, GT or LT options at the same time are not compatible";
        let gtlt = "-ERR GT and LT options at the same time are not compatible";
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "nx", "xx"]), nx);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "NX", "GT"]), nx);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "lt", "nx"]), nx);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "gt", "lt"]), gtlt);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "lt", "lt", "gt"]), gtlt);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "abc", "nx", "xx"]), nx);
        assert_eq!(t(&mut c, &["EXPIRE", "nokey", "100", "nx", "xx"]), nx);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "foo"]), "-ERR Unsupported option foo");
        assert_eq!(
            t(&mut c, &["EXPIRE", "k", "abc"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(
            t(&mut c, &["EXPIRE", "nokey", "abc"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "xx", "gt"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "nx", "nx"]), "1");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "NX"]), "0");
    }

    #[test]
    fn conditions() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "k", "v"]);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "XX"]), "0");
        assert_eq!(
            t(&mut c, &["EXPIRE", "k", "100", "GT"]),
            "0",
            "no TTL is an infinite TTL for GT"
        );
        assert_eq!(t(&mut c, &["EXPIRE", "k", "100", "NX"]), "1");
        assert_eq!(t(&mut c, &["TTL", "k"]), "100");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "50", "NX"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "50", "GT"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "200", "GT"]), "1");
        assert_eq!(t(&mut c, &["TTL", "k"]), "200");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "300", "LT"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "50", "LT"]), "1");
        assert_eq!(t(&mut c, &["TTL", "k"]), "50");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "60", "XX", "LT"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "40", "XX", "LT"]), "1");
        assert_eq!(t(&mut c, &["PERSIST", "k"]), "1");
        assert_eq!(t(&mut c, &["PERSIST", "k"]), "0");
        assert_eq!(
            t(&mut c, &["EXPIRE", "k", "10", "LT"]),
            "1",
            "no TTL is an infinite TTL for LT"
        );
        assert_eq!(t(&mut c, &["TTL", "k"]), "10");
        t(&mut c, &["PERSIST", "k"]);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "-1", "GT"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "-1", "LT"]), "1");
        assert_eq!(t(&mut c, &["EXISTS", "k"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "10", "LT"]), "0");
    }

    #[test]
    fn a_time_in_the_past_deletes_the_key() {
        let mut c = TestClient::new();
        for cmd in ["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"] {
            t(&mut c, &["SET", "k", "v"]);
            assert_eq!(t(&mut c, &[cmd, "k", "0"]), "1", "{cmd}");
            assert_eq!(t(&mut c, &["EXISTS", "k"]), "0", "{cmd}");
            assert_eq!(c.srv.keyspace.db(0).counts(), (0, 0), "{cmd}");
        }
        t(&mut c, &["SET", "k", "v"]);
        assert_eq!(t(&mut c, &["PEXPIRE", "k", "-9223372036854775808"]), "1");
        assert_eq!(t(&mut c, &["EXISTS", "k"]), "0");
        t(&mut c, &["SET", "k", "v"]);
        assert_eq!(t(&mut c, &["EXPIRE", "k", "-9223372036854775"]), "1");
        assert_eq!(t(&mut c, &["EXISTS", "k"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "nokey", "100"]), "0");
        assert_eq!(t(&mut c, &["PEXPIREAT", "nokey", "0"]), "0");
    }

    #[test]
    fn overflow_is_an_invalid_expire_time() {
        let mut c = TestClient::new();
        t(&mut c, &["SET", "k", "v"]);
        let err = |cmd: &str| format!("-ERR invalid expire time in '{cmd}' command");
        assert_eq!(t(&mut c, &["EXPIRE", "k", "9223372036854775807"]), err("expire"));
        assert_eq!(t(&mut c, &["EXPIRE", "k", "9223372036854775"]), err("expire"));
        assert_eq!(t(&mut c, &["EXPIRE", "k", "9223372036854774"]), err("expire"));
        assert_eq!(t(&mut c, &["EXPIRE", "k", "-9223372036854775808"]), err("expire"));
        assert_eq!(t(&mut c, &["EXPIRE", "k", "-9223372036854776"]), err("expire"));
        assert_eq!(t(&mut c, &["EXPIRE", "nokey", "-9223372036854776"]), err("expire"));
        assert_eq!(
            t(&mut c, &["Expire", "k", "9223372036854775808"]),
            "-ERR value is not an integer or out of range"
        );
        assert_eq!(t(&mut c, &["PEXPIRE", "k", "9223372036854775807"]), err("pexpire"));
        assert_eq!(t(&mut c, &["PEXPIRE", "k", "9223372036854775806"]), err("pexpire"));
        assert_eq!(t(&mut c, &["EXPIREAT", "k", "9223372036854775807"]), err("expireat"));
        assert_eq!(t(&mut c, &["EXPIREAT", "k", "9223372036854776"]), err("expireat"));
        assert_eq!(t(&mut c, &["EXPIREAT", "k", "-9223372036854775808"]), err("expireat"));
        assert_eq!(t(&mut c, &["EXISTS", "k"]), "1");
        assert_eq!(t(&mut c, &["EXPIREAT", "k", "9223372036854775"]), "1");
        assert_eq!(t(&mut c, &["PEXPIREAT", "k", "9223372036854775807"]), "1");
        assert_eq!(t(&mut c, &["PEXPIRETIME", "k"]), "9223372036854775807");
        // (t + 500) / 1000 without overflow, as Redis replies.
        assert_eq!(t(&mut c, &["EXPIRETIME", "k"]), "9223372036854776");
        assert_eq!(t(&mut c, &["PEXPIREAT", "k", "9223372036854775308"]), "1");
        assert_eq!(t(&mut c, &["EXPIRETIME", "k"]), "9223372036854775");
        assert!(int(&mut c, &["TTL", "k"]) > 9_000_000_000_000_000);
    }

    #[test]
    fn ttl_family() {
        let mut c = TestClient::new();
        for cmd in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
            assert_eq!(t(&mut c, &[cmd, "nokey"]), "-2", "{cmd}");
        }
        t(&mut c, &["SET", "k", "v"]);
        for cmd in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
            assert_eq!(t(&mut c, &[cmd, "k"]), "-1", "{cmd}");
        }
        t(&mut c, &["PEXPIRE", "k", "1499"]);
        assert_eq!(t(&mut c, &["TTL", "k"]), "1");
        let pttl = int(&mut c, &["PTTL", "k"]);
        assert!((1400..=1499).contains(&pttl), "pttl {pttl}");
        t(&mut c, &["PEXPIRE", "k", "1600"]);
        assert_eq!(t(&mut c, &["TTL", "k"]), "2");
        t(&mut c, &["PEXPIRE", "k", "400"]);
        assert_eq!(t(&mut c, &["TTL", "k"]), "0");
        t(&mut c, &["EXPIREAT", "k", "33177600000"]);
        assert_eq!(t(&mut c, &["EXPIRETIME", "k"]), "33177600000");
        assert_eq!(t(&mut c, &["PEXPIRETIME", "k"]), "33177600000000");
        t(&mut c, &["PEXPIREAT", "k", "33177600000499"]);
        assert_eq!(t(&mut c, &["EXPIRETIME", "k"]), "33177600000");
        t(&mut c, &["PEXPIREAT", "k", "33177600000500"]);
        assert_eq!(t(&mut c, &["EXPIRETIME", "k"]), "33177600001");
    }

    #[test]
    fn ttl_counts_hits_and_misses_and_treats_expired_keys_as_missing() {
        let mut c = TestClient::new();
        let key = Key::new(b"old");
        c.srv
            .keyspace
            .db(0)
            .lock(&key)
            .upsert(&key, Entry::new_str(b"old", b"v", Some(1), 0));
        assert_eq!(t(&mut c, &["TTL", "old"]), "-2");
        assert_eq!(t(&mut c, &["PERSIST", "old"]), "0");
        assert_eq!(t(&mut c, &["EXPIRE", "old", "100"]), "0");
        let st = c.srv.keyspace.db(0).stats();
        assert_eq!((st.hits, st.misses, st.expired), (0, 1, 1));
        t(&mut c, &["SET", "k", "v"]);
        t(&mut c, &["PTTL", "k"]);
        assert_eq!(c.srv.keyspace.db(0).stats().hits, 1);
    }

    #[test]
    fn expiry_changes_keep_the_volatile_count() {
        let mut c = TestClient::new();
        t(&mut c, &["MSET", "a", "1", "b", "2"]);
        t(&mut c, &["EXPIRE", "a", "100"]);
        t(&mut c, &["PEXPIRE", "b", "100000"]);
        assert_eq!(c.srv.keyspace.db(0).counts(), (2, 2));
        t(&mut c, &["EXPIRE", "a", "200"]);
        assert_eq!(c.srv.keyspace.db(0).counts(), (2, 2));
        t(&mut c, &["PERSIST", "a"]);
        assert_eq!(c.srv.keyspace.db(0).counts(), (2, 1));
        t(&mut c, &["EXPIRE", "b", "-1"]);
        assert_eq!(c.srv.keyspace.db(0).counts(), (1, 0));
        assert_eq!(t(&mut c, &["GET", "a"]), "1");
    }

    #[test]
    fn values_survive_expiry_changes() {
        let mut c = TestClient::new();
        let long = "y".repeat(300);
        t(&mut c, &["SET", "k", &long]);
        t(&mut c, &["APPEND", "k", "z"]);
        t(&mut c, &["EXPIRE", "k", "100"]);
        t(&mut c, &["PERSIST", "k"]);
        t(&mut c, &["APPEND", "k", "z"]);
        assert_eq!(t(&mut c, &["GET", "k"]), format!("{long}zz"));
        assert_eq!(t(&mut c, &["OBJECT", "ENCODING", "k"]), "raw");
    }
}
