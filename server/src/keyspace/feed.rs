//! The change feed: how the keyspace tells replication what changed, as effects, in lock order.
//!
//! Replication sends effects, not commands: a command replayed on a replica could come out differently (INCR,
//! APPEND, SET ... GET against a diverged value, an expiry relative to another clock), an effect cannot. Every
//! change to a key is stated as the key's resulting state — `SET key value [PXAT ms]` when it exists afterwards,
//! `DEL key` when it does not — and whole-database changes as `FLUSHDB`, `FLUSHALL` and `SWAPDB a b`. Replaying
//! an effect twice changes nothing, which is what lets a full sync stream a snapshot while writes go on (see
//! `replication/primary.rs`).
//!
//! Capture happens at the shard, the only place every change goes through: while the feed is on, a locked
//! [`Shard`] records the keys its mutating methods touch (insert, upsert, remove, `entry_mut`, expiry and
//! eviction deletions — not the access-clock touches of lookups), and the guard that unlocks it first encodes
//! their current state and appends it to the [`EffectLog`], still under the lock. So two changes to one key
//! reach the log in the order they happened, whatever threads made them; a multi-shard guard (MSET, RENAME,
//! MOVE) appends everything it changed at once, so a replica applies the command whole.
//!
//! Off (no replica has ever attached), the cost is one relaxed load when a shard is locked and one predictable
//! branch when it is unlocked.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use smallvec::SmallVec;

use super::db::{Key, Shard};
use super::entry::Entry;
use super::table::Hash;
use shoal_cluster::Slot;

/// A run of encoded effects that all belong to one database (`None`: effects on the whole keyspace, which need
/// no SELECT before them: FLUSHALL, SWAPDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectRun {
    pub db: Option<u32>,
    pub len: usize,
}

/// Where effects go: the replication stream. Implemented by `replication::backlog::Backlog`.
pub trait EffectLog: Send + Sync {
    /// Appends `buf`, cut into `runs` (consecutive, covering all of it), inserting a SELECT before a run whose
    /// database differs from the stream's current one. Returns the stream offset after the last byte.
    fn append(&self, buf: &[u8], runs: &[EffectRun]) -> u64;
}

/// The switch and the destination of effects, shared by every database of a keyspace.
#[derive(Default)]
pub struct ChangeFeed {
    active: AtomicBool,
    log: OnceLock<Arc<dyn EffectLog>>,
    /// Bumped by every SWAPDB. A snapshot in progress cannot be patched up by replaying a swap (it is not
    /// idempotent), so a full sync that sees this change starts over.
    swaps: AtomicU64,
}

thread_local! {
    /// Encoding space for effects, reused by every critical section of this thread.
    static SCRATCH: RefCell<(Vec<u8>, Vec<EffectRun>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// The stream offset after the last effects this thread appended (0 = none since last taken).
    static LAST_APPEND_END: Cell<u64> = const { Cell::new(0) };
}

/// The stream offset after the effects the current thread appended since the last call, or 0 if it appended
/// none. The dispatcher copies it into the client after each command (WAIT waits for it).
#[inline]
pub fn take_last_append_end() -> u64 {
    LAST_APPEND_END.with(|c| c.replace(0))
}

/// Above this many changed keys in one critical section, duplicates are found by sorting instead of by
/// comparing every pair.
const DEDUP_BY_PAIRS_MAX: usize = 8;

impl ChangeFeed {
    pub fn new() -> ChangeFeed {
        ChangeFeed::default()
    }

    /// Whether changes are being recorded. One relaxed load: the only cost of the feed on the command path.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Turns recording on or off. The log must be set before it is turned on.
    pub fn set_active(&self, on: bool) {
        self.active.store(on && self.log.get().is_some(), Ordering::SeqCst);
    }

    /// Sets where effects go (once, at server start).
    pub fn set_log(&self, log: Arc<dyn EffectLog>) {
        let _ = self.log.set(log);
    }

    /// How many SWAPDBs have happened.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::SeqCst)
    }

    pub(crate) fn note_swap(&self) {
        self.swaps.fetch_add(1, Ordering::SeqCst);
    }

    /// Appends one whole-database effect (FLUSHDB with `db`, FLUSHALL and SWAPDB without). The caller holds the
    /// locks of every shard the effect covers, so it lands between the per-key effects exactly where it
    /// happened.
    pub(crate) fn append_command(&self, db: Option<u32>, args: &[&[u8]]) {
        let Some(log) = self.log.get() else { return };
        let mut buf = Vec::with_capacity(64);
        encode_command(&mut buf, args);
        let end = log.append(&buf, &[EffectRun { db, len: buf.len() }]);
        LAST_APPEND_END.with(|c| c.set(end));
    }

    /// Encodes the changes recorded by `shards` and appends them as one piece, then clears the records. Called
    /// by guards with the shards still locked.
    #[cold]
    #[inline(never)]
    pub(crate) fn flush<'s>(&self, shards: impl Iterator<Item = &'s mut Shard>) {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (buf, runs) = &mut *s;
            buf.clear();
            runs.clear();
            for shard in shards {
                if !shard.track {
                    continue;
                }
                shard.track = false;
                let start = buf.len();
                encode_changes(shard, buf);
                shard.changes.clear();
                let len = buf.len() - start;
                if len == 0 {
                    continue;
                }
                match runs.last_mut() {
                    Some(r) if r.db == Some(shard.db) => r.len += len,
                    _ => runs.push(EffectRun {
                        db: Some(shard.db),
                        len,
                    }),
                }
            }
            if buf.is_empty() {
                return;
            }
            if let Some(log) = self.log.get() {
                let end = log.append(buf, runs);
                LAST_APPEND_END.with(|c| c.set(end));
            }
            // Do not keep a huge buffer alive after a FLUSH-sized section.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
        });
    }
}

/// One key a shard changed in the current critical section.
#[derive(Debug, Clone, Copy)]
struct ChangedKey {
    hash: Hash,
    slot: Slot,
    start: u32,
    len: u32,
    /// `Some((a, b))`: only the value's bytes `a..b` changed (APPEND, SETRANGE), nothing else about the key;
    /// `None`: anything may have changed.
    range: Option<(u64, u64)>,
}

/// The keys a shard changed in the current critical section (kept only while the feed is on).
#[derive(Default)]
pub(crate) struct Changes {
    bytes: Vec<u8>,
    keys: Vec<ChangedKey>,
}

impl Changes {
    /// Records that `key` changed: entirely (`range` None), or only the value bytes in `range`.
    pub(crate) fn record(&mut self, key: &[u8], hash: Hash, slot: Slot, range: Option<(u64, u64)>) {
        // The common repeat — a lookup, then the change, or an upsert after a remove — is the previous key.
        if let Some(last) = self.keys.last() {
            if last.hash == hash && self.key(last) == key {
                let merged = match (last.range, range) {
                    (None, _) => Some(None),
                    (_, None) => Some(None),
                    (Some((a, b)), Some((c, d))) if c <= b && d >= a => Some(Some((a.min(c), b.max(d)))),
                    _ => None,
                };
                if let Some(r) = merged {
                    if let Some(last) = self.keys.last_mut() {
                        last.range = r;
                    }
                    return;
                }
            }
        }
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(key);
        self.keys.push(ChangedKey {
            hash,
            slot,
            start,
            len: key.len() as u32,
            range,
        });
    }

    fn key(&self, k: &ChangedKey) -> &[u8] {
        &self.bytes[k.start as usize..k.start as usize + k.len as usize]
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.keys.clear();
        if self.bytes.capacity() > 1 << 20 {
            self.bytes = Vec::new();
            self.keys = Vec::new();
        }
    }
}

/// Encodes the current state of every key `shard` recorded, each once: `SET` (or `DEL`) when it changed as a
/// whole, `SETRANGE key offset bytes` for each run of bytes when only parts of its value did.
///
/// The byte runs keep an APPEND to a long value from costing the whole value, and are as safe to apply twice
/// as a `SET`: each writes fixed bytes at a fixed offset, so replaying writes already applied only rewrites
/// what later ones rewrite again, and a key's value ends up as the primary's (the run includes any zero
/// padding SETRANGE added, so nothing depends on the value's length beforehand).
fn encode_changes(shard: &Shard, out: &mut Vec<u8>) {
    let changes = &shard.changes;
    let n = changes.keys.len();
    let mut order: SmallVec<[u32; DEDUP_BY_PAIRS_MAX]> = (0..n as u32).collect();
    if n > 1 {
        // Stable: a key's byte runs stay in the order they were written.
        order.sort_by(|&a, &b| {
            let (ka, kb) = (&changes.keys[a as usize], &changes.keys[b as usize]);
            ka.hash.cmp(&kb.hash).then_with(|| changes.key(ka).cmp(changes.key(kb)))
        });
    }
    let mut i = 0;
    while i < order.len() {
        let ck = &changes.keys[order[i] as usize];
        let bytes = changes.key(ck);
        let mut j = i + 1;
        while j < order.len() && {
            let other = &changes.keys[order[j] as usize];
            other.hash == ck.hash && changes.key(other) == bytes
        } {
            j += 1;
        }
        let group = &order[i..j];
        i = j;
        let key = Key {
            bytes,
            slot: ck.slot,
            hash: ck.hash,
        };
        let Some(e) = shard.find_raw(&key) else {
            encode_command(out, &[b"DEL", bytes]);
            continue;
        };
        let whole = group.iter().any(|&g| changes.keys[g as usize].range.is_none());
        let value = e.str_value();
        let runs_fit = group.iter().all(|&g| {
            changes.keys[g as usize]
                .range
                .is_some_and(|(_, b)| b <= value.len() as u64)
        });
        if whole || !runs_fit {
            encode_set(out, e);
            continue;
        }
        for &g in group {
            if let Some((a, b)) = changes.keys[g as usize].range {
                let mut buf = [0u8; 24];
                let offset = shoal_protocol::reply::fmt_i64(&mut buf, a as i64);
                encode_command(out, &[b"SETRANGE", bytes, offset, &value[a as usize..b as usize]]);
            }
        }
    }
}

/// Appends `n` in decimal.
fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 24];
    out.extend_from_slice(shoal_protocol::reply::fmt_i64(&mut buf, n));
}

fn push_bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    push_int(out, arg.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends a command as a RESP array of bulk strings.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_int(out, args.len() as i64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        push_bulk(out, a);
    }
}

/// Appends the effect that recreates `e`: `SET key value`, with `PXAT ms` when it has an expiry. The expiry is
/// absolute, so a replica applying it late still expires the key when the primary does.
pub fn encode_set(out: &mut Vec<u8>, e: &Entry) {
    let (key, value) = e.key_value();
    match e.expire_at() {
        None => encode_command(out, &[b"SET", key, value]),
        Some(at) => {
            let mut buf = [0u8; 24];
            let at = shoal_protocol::reply::fmt_i64(&mut buf, at);
            encode_command(out, &[b"SET", key, value, b"PXAT", at]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_are_resp_commands_with_absolute_expiry() {
        let mut out = Vec::new();
        encode_set(&mut out, &Entry::new_str(b"k", b"v", None, 0));
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        out.clear();
        encode_set(&mut out, &Entry::new_str(b"key", b"", Some(1_700_000_000_123), 0));
        assert_eq!(
            out,
            b"*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n$4\r\nPXAT\r\n$13\r\n1700000000123\r\n".as_slice()
        );
        out.clear();
        encode_command(&mut out, &[b"DEL", b"a\r\nb"]);
        assert_eq!(out, b"*2\r\n$3\r\nDEL\r\n$4\r\na\r\nb\r\n");
    }

    #[test]
    fn a_key_recorded_twice_in_a_row_is_kept_once() {
        let mut c = Changes::default();
        let k = Key::new(b"x");
        c.record(k.bytes, k.hash, k.slot, None);
        c.record(k.bytes, k.hash, k.slot, None);
        assert_eq!(c.keys.len(), 1);
        let j = Key::new(b"y");
        c.record(j.bytes, j.hash, j.slot, None);
        c.record(k.bytes, k.hash, k.slot, None);
        assert_eq!(c.keys.len(), 3);
    }

    #[test]
    fn adjacent_byte_runs_merge_and_a_whole_change_absorbs_them() {
        let mut c = Changes::default();
        let k = Key::new(b"x");
        c.record(k.bytes, k.hash, k.slot, Some((10, 12)));
        c.record(k.bytes, k.hash, k.slot, Some((12, 20)));
        assert_eq!((c.keys.len(), c.keys[0].range), (1, Some((10, 20))));
        c.record(k.bytes, k.hash, k.slot, Some((30, 31)));
        assert_eq!(c.keys.len(), 2);
        c.record(k.bytes, k.hash, k.slot, None);
        assert_eq!((c.keys.len(), c.keys[1].range), (2, None));
    }
}
