//! Databases and their shards: where commands find, insert, replace and delete keys.
//!
//! A [`Db`] holds the 16384 slot tables of one database, spread over [`SHARDS`] mutex-protected [`Shard`]s
//! (slot `s` in shard `s % SHARDS`). A command hashes its key once into a [`Key`], takes that shard's lock and
//! works on the shard; commands on several keys take every shard they need in ascending order through a
//! [`ShardSet`], which makes MSET, RENAME, COPY and MOVE atomic without a global lock.
//!
//! A [`Pos`] is valid only until the shard changes: any lookup may delete an expired key it meets and shift
//! its neighbours, so a command working on two keys of one shard looks the first up again after touching the
//! second.
//!
//! Expired keys are deleted when a lookup meets them (lazy expiry); the active cycle in `expire.rs` finds the
//! ones nobody reads. Keyspace hit/miss/expiry counters live in the shard, under the lock already held, and are
//! summed when INFO asks.

use std::cell::Cell;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use shoal_cluster::Slot;
use smallvec::SmallVec;

use super::access::Now;
use super::entry::Entry;
use super::feed::{ChangeFeed, Changes};
use super::table::{hash_pos, Hash, Pos, SlotTable};
use super::{hash_key, SHARDS, SLOTS_PER_SHARD};

/// A key with its slot and table hash computed once.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub bytes: &'a [u8],
    pub slot: Slot,
    pub hash: Hash,
}

impl<'a> Key<'a> {
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Key<'a> {
        Key {
            bytes,
            slot: Slot::for_key(bytes),
            hash: hash_key(bytes),
        }
    }

    /// The key of `bytes`, taking the slot and hash from `hint` when it was computed for this very slice (same
    /// address and length: a pipelined batch hashes each request's first key once, to prefetch it, and the
    /// command reuses that).
    #[inline]
    pub fn with_hint(bytes: &'a [u8], hint: Option<KeyHint>) -> Key<'a> {
        match hint {
            Some(h) if h.addr == bytes.as_ptr() as usize && h.len == bytes.len() => Key {
                bytes,
                slot: h.slot,
                hash: h.hash,
            },
            _ => Key::new(bytes),
        }
    }

    /// What [`Key::with_hint`] needs to recognise this key's slice again.
    #[inline]
    pub fn hint(&self) -> KeyHint {
        KeyHint {
            addr: self.bytes.as_ptr() as usize,
            len: self.bytes.len(),
            slot: self.slot,
            hash: self.hash,
        }
    }

    #[inline]
    pub fn shard(&self) -> usize {
        shard_of(self.slot)
    }

    #[inline]
    fn local(&self) -> usize {
        self.slot.index() / SHARDS
    }
}

/// The lock shard that holds `slot`.
#[inline]
fn shard_of(slot: Slot) -> usize {
    slot.index() % SHARDS
}

/// A key's slot and hash, remembered with where its bytes are (the address is only compared, never read).
#[derive(Debug, Clone, Copy)]
pub struct KeyHint {
    addr: usize,
    len: usize,
    slot: Slot,
    hash: Hash,
}

/// The stages of [`Db::prefetch`], in the order they are run for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefetchStage {
    Header,
    Bucket,
    Entry,
}

/// Keyspace event counters kept per shard (INFO stats).
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardStats {
    pub hits: u64,
    pub misses: u64,
    pub expired: u64,
    pub evicted: u64,
}

impl std::ops::AddAssign for ShardStats {
    fn add_assign(&mut self, o: ShardStats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.expired += o.expired;
        self.evicted += o.evicted;
    }
}

/// What an unallocated shard's tables read as.
static EMPTY_TABLE: SlotTable = SlotTable::new();

/// One lock's worth of slot tables.
pub struct Shard {
    /// Empty until the first key arrives: a server with 16 databases would otherwise start with 4 MiB of
    /// empty table headers, which counts against a small maxmemory.
    slots: Box<[SlotTable]>,
    keys: usize,
    volatile: usize,
    pub stats: ShardStats,
    /// Where the active expiry sweep resumes: a local slot index and a position in it.
    pub(crate) expire_cursor: (usize, usize),
    /// Replicas never expire keys themselves; they wait for the primary's DEL (Redis semantics).
    pub(crate) lazy_expire_deletes: bool,
    /// The database this shard belongs to (SWAPDB swaps contents, never shards).
    pub(crate) db: u32,
    /// Whether the current critical section records its changes for the change feed (see `feed.rs`).
    pub(crate) track: bool,
    pub(crate) changes: Changes,
}

thread_local! {
    /// Set while this thread applies its primary's replication stream: on a replica, lookups then see keys
    /// that have expired by the local clock but that the primary has not deleted yet, as Redis's
    /// `expireIfNeeded` does for the master client (so the primary's DEL of an expired key does delete it).
    static APPLYING_PRIMARY_STREAM: Cell<bool> = const { Cell::new(false) };
}

/// Marks whether this thread is applying its primary's replication stream (see `APPLYING_PRIMARY_STREAM`).
pub fn set_applying_primary_stream(on: bool) {
    APPLYING_PRIMARY_STREAM.with(|c| c.set(on));
}

/// A shard on its own cache lines, so two cores working on neighbouring shards do not share a line.
#[repr(align(128))]
struct Padded<T>(T);

impl Default for Shard {
    fn default() -> Self {
        Shard::new()
    }
}

impl Shard {
    pub fn new() -> Shard {
        Shard::of_db(0)
    }

    fn of_db(db: u32) -> Shard {
        Shard {
            slots: Box::new([]),
            keys: 0,
            volatile: 0,
            stats: ShardStats::default(),
            expire_cursor: (0, 0),
            lazy_expire_deletes: true,
            db,
            track: false,
            changes: Changes::default(),
        }
    }

    /// Records a changed key for the change feed, when it is on.
    #[inline]
    fn record(&mut self, key: &Key) {
        if self.track {
            self.changes.record(key.bytes, key.hash, key.slot, None);
        }
    }

    /// Records the key of an entry removed by position.
    #[inline]
    fn record_entry(&mut self, e: &Entry) {
        if self.track {
            let k = Key::new(e.key());
            self.changes.record(k.bytes, k.hash, k.slot, None);
        }
    }

    /// The entry stored for `key`, expired or not, without touching anything (what the change feed reports).
    pub fn find_raw(&self, key: &Key) -> Option<&Entry> {
        let t = self.table(key);
        t.find(key.bytes, key.hash).map(|pos| t.get(pos))
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.keys
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    #[inline]
    pub fn volatile_len(&self) -> usize {
        self.volatile
    }

    #[inline]
    fn table(&self, key: &Key) -> &SlotTable {
        self.slots.get(key.local()).unwrap_or(&EMPTY_TABLE)
    }

    #[inline]
    fn table_mut(&mut self, key: &Key) -> &mut SlotTable {
        self.local_table_mut(key.local())
    }

    #[inline]
    fn local_table_mut(&mut self, local: usize) -> &mut SlotTable {
        if self.slots.is_empty() {
            self.slots = (0..SLOTS_PER_SHARD).map(|_| SlotTable::new()).collect();
        }
        &mut self.slots[local % SLOTS_PER_SHARD]
    }

    /// The table of a slot that belongs to this shard.
    pub fn slot_table(&self, slot: Slot) -> &SlotTable {
        self.slots.get(slot.index() / SHARDS).unwrap_or(&EMPTY_TABLE)
    }

    /// Local slot tables in order; index `i` is slot `i * SHARDS + shard_index`.
    pub fn tables(&self) -> &[SlotTable] {
        &self.slots
    }

    /// Finds a live key. A key found expired is deleted (counted as expired) and reported absent.
    #[inline]
    pub fn find(&mut self, key: &Key, now: &Now) -> Option<Pos> {
        let pos = self.table(key).find(key.bytes, key.hash)?;
        let e = self.table(key).get(pos);
        if let Some(at) = e.expire_at() {
            if at <= now.ms {
                if self.lazy_expire_deletes {
                    self.remove(key, pos);
                    self.stats.expired += 1;
                } else if APPLYING_PRIMARY_STREAM.with(Cell::get) {
                    return Some(pos);
                }
                return None;
            }
        }
        Some(pos)
    }

    /// A read lookup: counts a keyspace hit or miss and, unless `no_touch`, records the access.
    #[inline]
    pub fn lookup_read(&mut self, key: &Key, now: &Now, no_touch: bool) -> Option<Pos> {
        match self.find(key, now) {
            Some(pos) => {
                self.stats.hits += 1;
                if !no_touch {
                    now.touch(self.table_mut(key).get_mut(pos));
                }
                Some(pos)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// A write lookup: no hit/miss accounting (Redis's lookupKeyWrite); the access is recorded.
    #[inline]
    pub fn lookup_write(&mut self, key: &Key, now: &Now) -> Option<Pos> {
        let pos = self.find(key, now)?;
        now.touch(self.table_mut(key).get_mut(pos));
        Some(pos)
    }

    #[inline]
    pub fn entry(&self, key: &Key, pos: Pos) -> &Entry {
        self.table(key).get(pos)
    }

    /// The entry, for changes that keep its key. Follow an expiry change with [`Shard::sync_volatile`].
    #[inline]
    pub fn entry_mut(&mut self, key: &Key, pos: Pos) -> &mut Entry {
        self.record(key);
        self.table_mut(key).get_mut(pos)
    }

    /// The entry, for a change of its value's bytes `from..to` only (APPEND, SETRANGE: value length may grow,
    /// nothing else changes), which the change feed can report without the rest of the value.
    #[inline]
    pub fn entry_mut_range(&mut self, key: &Key, pos: Pos, from: usize, to: usize) -> &mut Entry {
        if self.track {
            self.changes
                .record(key.bytes, key.hash, key.slot, Some((from as u64, to as u64)));
        }
        self.table_mut(key).get_mut(pos)
    }

    /// Re-reads whether the entry at `pos` has a TTL after it was changed through [`Shard::entry_mut`].
    pub fn sync_volatile(&mut self, key: &Key, pos: Pos) {
        let t = self.table_mut(key);
        let before = t.volatile_len();
        t.sync_volatile(pos);
        let after = t.volatile_len();
        self.volatile = self.volatile + after - before;
    }

    /// Inserts a key known to be absent (looked up in this same critical section).
    ///
    /// "Absent" is what lookups report: on a replica an expired key still sits in the table (only the primary's
    /// DEL removes it), so there the insert replaces it instead of adding a second copy.
    #[inline]
    pub fn insert(&mut self, key: &Key, entry: Entry) {
        if !self.lazy_expire_deletes {
            drop(self.upsert(key, entry));
            return;
        }
        self.insert_absent(key, entry);
    }

    #[inline]
    fn insert_absent(&mut self, key: &Key, entry: Entry) {
        self.record(key);
        if entry.has_expire() {
            self.volatile += 1;
        }
        self.keys += 1;
        self.table_mut(key).insert_new(entry, key.hash);
    }

    /// Removes the entry at `pos` and returns it.
    #[inline]
    pub fn remove(&mut self, key: &Key, pos: Pos) -> Entry {
        self.record(key);
        let e = self.table_mut(key).remove(pos);
        self.keys -= 1;
        if e.has_expire() {
            self.volatile -= 1;
        }
        e
    }

    /// Inserts or replaces; returns the previous entry, live or expired-but-not-yet-deleted.
    pub fn upsert(&mut self, key: &Key, entry: Entry) -> Option<Entry> {
        match self.table(key).find(key.bytes, key.hash) {
            Some(pos) => {
                self.record(key);
                let old_has = self.table(key).get(pos).has_expire();
                let new_has = entry.has_expire();
                let old = std::mem::replace(self.table_mut(key).get_mut(pos), entry);
                if old_has != new_has {
                    self.sync_volatile(key, pos);
                }
                Some(old)
            }
            None => {
                self.insert_absent(key, entry);
                None
            }
        }
    }

    /// Deletes a live key; true if it existed.
    pub fn delete(&mut self, key: &Key, now: &Now) -> bool {
        match self.find(key, now) {
            Some(pos) => {
                drop(self.remove(key, pos));
                true
            }
            None => false,
        }
    }

    /// Removes every key, returning the tables that held them: O(1), so a flush can take every shard under
    /// all their locks at once and turn the tables into entries afterwards.
    fn take_tables(&mut self) -> Box<[SlotTable]> {
        self.keys = 0;
        self.volatile = 0;
        self.expire_cursor = (0, 0);
        std::mem::take(&mut self.slots)
    }

    /// Removes every key of one slot.
    pub fn take_slot(&mut self, slot: Slot) -> Vec<Entry> {
        if self.slots.is_empty() {
            return Vec::new();
        }
        let t = self.local_table_mut(slot.index() / SHARDS);
        let v = t.volatile_len();
        let out = t.take_all();
        self.keys -= out.len();
        self.volatile -= v;
        if self.track {
            for e in &out {
                self.record_entry(e);
            }
        }
        out
    }

    /// Deletes an entry found by position in a local slot table (expiry sweep, eviction).
    pub(crate) fn remove_local(&mut self, local: usize, pos: Pos) -> Entry {
        let e = self.local_table_mut(local).remove(pos);
        self.keys -= 1;
        if e.has_expire() {
            self.volatile -= 1;
        }
        self.record_entry(&e);
        e
    }

    pub(crate) fn local_table(&self, local: usize) -> &SlotTable {
        self.slots.get(local).unwrap_or(&EMPTY_TABLE)
    }

    fn swap_contents(&mut self, other: &mut Shard) {
        std::mem::swap(&mut self.slots, &mut other.slots);
        std::mem::swap(&mut self.keys, &mut other.keys);
        std::mem::swap(&mut self.volatile, &mut other.volatile);
        self.expire_cursor = (0, 0);
        other.expire_cursor = (0, 0);
    }

    /// Bytes held by the slot tables' bucket arrays (MEMORY STATS, tests).
    pub fn bucket_bytes(&self) -> usize {
        self.slots.iter().map(|t| t.bucket_bytes()).sum()
    }
}

/// One database.
pub struct Db {
    shards: Box<[Padded<Mutex<Shard>>]>,
    feed: Arc<ChangeFeed>,
    index: u32,
}

/// A locked shard. While the change feed is on, the keys changed under it are appended to the replication
/// stream as effects when it is dropped, before the lock is released (see `feed.rs`).
pub struct ShardGuard<'a> {
    guard: MutexGuard<'a, Shard>,
    feed: &'a ChangeFeed,
}

impl std::ops::Deref for ShardGuard<'_> {
    type Target = Shard;

    #[inline]
    fn deref(&self) -> &Shard {
        &self.guard
    }
}

impl std::ops::DerefMut for ShardGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Shard {
        &mut self.guard
    }
}

impl Drop for ShardGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.guard.track {
            self.feed.flush(std::iter::once(&mut *self.guard));
        }
    }
}

impl Default for Db {
    fn default() -> Self {
        Db::new()
    }
}

/// SCAN cursors walk shard by shard: bits 32.. hold `shard * SLOTS_PER_SHARD + local slot`, bits 0..32 the
/// hash position within that slot's table.
const CURSOR_POS_BITS: u32 = 32;

impl Db {
    /// A database on its own (tests, benchmarks), with a change feed that is off.
    pub fn new() -> Db {
        Db::with_feed(Arc::new(ChangeFeed::new()), 0)
    }

    fn with_feed(feed: Arc<ChangeFeed>, index: u32) -> Db {
        Db {
            shards: (0..SHARDS).map(|_| Padded(Mutex::new(Shard::of_db(index)))).collect(),
            feed,
            index,
        }
    }

    /// Locks shard `i`, recording its changes if the feed is on.
    #[inline]
    fn guard(&self, i: usize) -> ShardGuard<'_> {
        let mut guard = self.shards[i % SHARDS].0.lock();
        if self.feed.active() {
            guard.track = true;
        }
        ShardGuard {
            guard,
            feed: &self.feed,
        }
    }

    /// Locks the shard holding `key`.
    #[inline]
    pub fn lock(&self, key: &Key) -> ShardGuard<'_> {
        self.guard(key.shard())
    }

    /// Locks shard number `i` (0..SHARDS).
    pub fn lock_shard(&self, i: usize) -> ShardGuard<'_> {
        self.guard(i)
    }

    /// Locks the shard of a slot.
    pub fn lock_slot(&self, slot: Slot) -> ShardGuard<'_> {
        self.guard(slot.index())
    }

    /// Runs `f` on shard `i` for reading only (a snapshot for a replica): nothing it does is recorded.
    pub fn read_shard<R>(&self, i: usize, f: impl FnOnce(&Shard) -> R) -> R {
        f(&self.shards[i % SHARDS].0.lock())
    }

    /// Locks every shard the keys live in, in ascending order.
    pub fn lock_keys<'k>(&self, keys: impl IntoIterator<Item = &'k Key<'k>>) -> ShardSet<'_> {
        let mut idx: SmallVec<[usize; 8]> = keys.into_iter().map(|k| k.shard()).collect();
        idx.sort_unstable();
        idx.dedup();
        ShardSet {
            guards: idx.into_iter().map(|i| (i, self.guard(i))).collect(),
            feed: &self.feed,
        }
    }

    /// Prefetching for pipelined commands, in three stages that the connection runs over a whole batch before
    /// executing it, so the cache misses of many lookups overlap instead of queueing: the slot table header,
    /// then the bucket group where the probe starts, then the entry it will compare first. Each stage only
    /// tries the shard lock; a busy shard just skips the hint.
    pub fn prefetch(&self, key: &KeyHint, stage: PrefetchStage) {
        let Some(g) = self.shards[shard_of(key.slot)].0.try_lock() else {
            return;
        };
        let t = g.slot_table(key.slot);
        match stage {
            PrefetchStage::Header => super::table::prefetch_read(t as *const SlotTable),
            PrefetchStage::Bucket => t.prefetch(key.hash),
            PrefetchStage::Entry => t.prefetch_entry(key.hash),
        }
    }

    /// Number of keys (DBSIZE); keys expired but not yet collected are counted, as in Redis.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys and keys with a TTL.
    pub fn counts(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(k, v), s| {
            let s = s.0.lock();
            (k + s.len(), v + s.volatile_len())
        })
    }

    pub fn stats(&self) -> ShardStats {
        let mut total = ShardStats::default();
        for s in self.shards.iter() {
            total += s.0.lock().stats;
        }
        total
    }

    pub fn reset_stats(&self) {
        for s in self.shards.iter() {
            s.0.lock().stats = ShardStats::default();
        }
    }

    /// FLUSHDB: empties the database at once — every shard locked together, so the flush sits at one point of
    /// the replication stream — and returns the entries for the caller to free here or in the background.
    pub fn take_all(&self) -> Vec<Vec<Entry>> {
        let mut guards: Vec<_> = self.shards.iter().map(|s| s.0.lock()).collect();
        if self.feed.active() {
            // ASYNC: a replica frees the old data off its apply path.
            self.feed.append_command(Some(self.index), &[b"FLUSHDB", b"ASYNC"]);
        }
        let tables: Vec<Box<[SlotTable]>> = guards.iter_mut().map(|g| g.take_tables()).collect();
        drop(guards);
        tables.into_iter().map(|mut t| tables_into_entries(&mut t)).collect()
    }

    /// Sets whether lookups delete the expired keys they meet (false on replicas).
    pub fn set_lazy_expire_deletes(&self, on: bool) {
        for s in self.shards.iter() {
            s.0.lock().lazy_expire_deletes = on;
        }
    }

    /// Estimated average remaining TTL in ms of keys with a TTL (INFO keyspace `avg_ttl`), from a sample of up
    /// to 16 such keys per shard; 0 when none has a TTL.
    pub fn average_ttl(&self, now_ms: i64) -> i64 {
        let (mut sum, mut n) = (0i128, 0i128);
        for s in self.shards.iter() {
            let g = s.0.lock();
            if g.volatile_len() == 0 {
                continue;
            }
            let mut taken = 0;
            for t in g.tables().iter().filter(|t| t.volatile_len() > 0) {
                for pos in t.positions_from(0, true) {
                    if let Some(at) = t.get(pos).expire_at() {
                        sum += (at - now_ms).max(0) as i128;
                        n += 1;
                        taken += 1;
                    }
                    if taken >= 16 {
                        break;
                    }
                }
                if taken >= 16 {
                    break;
                }
            }
        }
        if n == 0 {
            0
        } else {
            (sum / n) as i64
        }
    }

    /// One SCAN step: calls `emit` for about `count` live keys from `cursor` on, and returns the next cursor
    /// (0 when done). Each call locks one shard at a time.
    pub fn scan(&self, cursor: u64, count: usize, now: &Now, mut emit: impl FnMut(&Entry)) -> u64 {
        let count = count.max(1);
        let total = SHARDS * SLOTS_PER_SHARD;
        let mut order = (cursor >> CURSOR_POS_BITS) as usize;
        let mut from = (cursor & u32::MAX as u64) as u32;
        let mut visited = 0usize;
        while order < total {
            let shard = order / SLOTS_PER_SHARD;
            let mut guard = self.guard(shard);
            if guard.is_empty() {
                // A whole empty shard costs one check.
                order = (shard + 1) * SLOTS_PER_SHARD;
                from = 0;
                continue;
            }
            while order < (shard + 1) * SLOTS_PER_SHARD {
                let local = order % SLOTS_PER_SHARD;
                let table = guard.local_table(local);
                if !table.is_empty() {
                    // Expired keys met on the way are deleted, as Redis's SCAN does.
                    let mut expired: SmallVec<[Vec<u8>; 4]> = SmallVec::new();
                    let next = table.scan(from, count.saturating_sub(visited).max(1), |e| {
                        visited += 1;
                        match e.expire_at() {
                            Some(at) if at <= now.ms => expired.push(e.key().to_vec()),
                            _ => emit(e),
                        }
                    });
                    if guard.lazy_expire_deletes {
                        for k in expired {
                            let key = Key::new(&k);
                            if let Some(pos) = guard.table(&key).find(key.bytes, key.hash) {
                                drop(guard.remove(&key, pos));
                                guard.stats.expired += 1;
                            }
                        }
                    }
                    if let Some(pos) = next {
                        return ((order as u64) << CURSOR_POS_BITS) | pos as u64;
                    }
                }
                order += 1;
                from = 0;
                if visited >= count {
                    return if order >= total {
                        0
                    } else {
                        (order as u64) << CURSOR_POS_BITS
                    };
                }
            }
        }
        0
    }

    /// Calls `f` on every live key (KEYS), one shard lock at a time.
    pub fn for_each_live(&self, now: &Now, mut f: impl FnMut(&Entry)) {
        for s in self.shards.iter() {
            let g = s.0.lock();
            for t in g.tables() {
                for e in t.iter() {
                    if e.expire_at().is_none_or(|at| at > now.ms) {
                        f(e);
                    }
                }
            }
        }
    }

    /// A random live key (RANDOMKEY); expired keys met on the way are deleted.
    pub fn random_key(&self, now: &Now) -> Option<Vec<u8>> {
        for _ in 0..100 {
            let start = rand::random::<u32>() as usize % SHARDS;
            for k in 0..SHARDS {
                let i = (start + k) % SHARDS;
                let mut g = self.guard(i);
                if g.is_empty() {
                    continue;
                }
                let Some((local, pos)) = g.sample(rand::random(), false) else {
                    continue;
                };
                let e = g.local_table(local).get(pos);
                if e.expire_at().is_some_and(|at| at <= now.ms) {
                    if g.lazy_expire_deletes {
                        drop(g.remove_local(local, pos));
                        g.stats.expired += 1;
                    }
                    break;
                }
                return Some(e.key().to_vec());
            }
            if self.is_empty() {
                return None;
            }
        }
        None
    }
}

impl Shard {
    /// A random entry of this shard, optionally among keys with a TTL only: a random non-empty slot table,
    /// then a random bucket in it.
    pub(crate) fn sample(&self, r: u64, volatile_only: bool) -> Option<(usize, Pos)> {
        if self.keys == 0 || (volatile_only && self.volatile == 0) {
            return None;
        }
        let usable = |t: &SlotTable| {
            if volatile_only {
                t.volatile_len() > 0
            } else {
                !t.is_empty()
            }
        };
        if self.slots.is_empty() {
            return None;
        }
        // A few random probes find a table quickly when the shard is well populated...
        let mut r = r;
        for _ in 0..8 {
            let local = (r % SLOTS_PER_SHARD as u64) as usize;
            r = r.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if usable(&self.slots[local]) {
                return self.slots[local].random_pos(r, volatile_only).map(|p| (local, p));
            }
        }
        // ...and a linear walk from a random start finds one when it is sparse.
        let start = (r % SLOTS_PER_SHARD as u64) as usize;
        (0..SLOTS_PER_SHARD)
            .map(|k| (start + k) % SLOTS_PER_SHARD)
            .find(|&l| usable(&self.slots[l]))
            .and_then(|local| self.slots[local].random_pos(r >> 7, volatile_only).map(|p| (local, p)))
    }
}

/// Turns the tables a flush took into their entries, outside the locks.
fn tables_into_entries(tables: &mut [SlotTable]) -> Vec<Entry> {
    let n = tables.iter().map(SlotTable::len).sum();
    let mut out = Vec::with_capacity(n);
    for t in tables.iter_mut() {
        out.append(&mut t.take_all());
    }
    out
}

/// Several shards of one database, locked in ascending order. Their changes reach the replication stream
/// together, so a replica applies a multi-key command whole.
pub struct ShardSet<'a> {
    guards: SmallVec<[(usize, ShardGuard<'a>); 4]>,
    feed: &'a ChangeFeed,
}

impl Drop for ShardSet<'_> {
    fn drop(&mut self) {
        if self.guards.iter().any(|(_, g)| g.track) {
            self.feed.flush(self.guards.iter_mut().map(|(_, g)| &mut *g.guard));
        }
    }
}

impl<'a> ShardSet<'a> {
    /// The locked shard holding `key`. The key must have been among those passed to `lock_keys`.
    pub fn shard(&mut self, key: &Key) -> &mut Shard {
        let want = key.shard();
        let i = self.guards.iter().position(|(s, _)| *s == want).unwrap_or(0);
        &mut self.guards[i].1
    }
}

/// All databases.
pub struct Keyspace {
    dbs: Box<[Db]>,
    feed: Arc<ChangeFeed>,
}

impl Keyspace {
    pub fn new(databases: usize) -> Keyspace {
        let feed = Arc::new(ChangeFeed::new());
        Keyspace {
            dbs: (0..databases.max(1))
                .map(|i| Db::with_feed(feed.clone(), i as u32))
                .collect(),
            feed,
        }
    }

    /// The change feed every database reports to.
    pub fn feed(&self) -> &ChangeFeed {
        &self.feed
    }

    /// FLUSHALL: empties every database at once (all shards locked together, so the flush sits at one point of
    /// the replication stream) and returns the entries for the caller to free.
    pub fn take_all(&self) -> Vec<Vec<Entry>> {
        let mut guards: Vec<_> = self
            .dbs
            .iter()
            .flat_map(|db| db.shards.iter().map(|s| s.0.lock()))
            .collect();
        if self.feed.active() {
            self.feed.append_command(None, &[b"FLUSHALL", b"ASYNC"]);
        }
        let tables: Vec<Box<[SlotTable]>> = guards.iter_mut().map(|g| g.take_tables()).collect();
        drop(guards);
        tables
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(|mut t| tables_into_entries(&mut t))
            .collect()
    }

    #[inline]
    pub fn db(&self, i: usize) -> &Db {
        &self.dbs[i.min(self.dbs.len() - 1)]
    }

    pub fn databases(&self) -> usize {
        self.dbs.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Db> {
        self.dbs.iter()
    }

    /// SWAPDB: exchanges the contents of two databases, shard by shard under both locks.
    pub fn swap(&self, a: usize, b: usize) {
        if a == b || a >= self.dbs.len() || b >= self.dbs.len() {
            return;
        }
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        // Take every lock first so no client sees a half-swapped pair.
        let mut los: Vec<_> = self.dbs[lo].shards.iter().map(|s| s.0.lock()).collect();
        let mut his: Vec<_> = self.dbs[hi].shards.iter().map(|s| s.0.lock()).collect();
        self.feed.note_swap();
        if self.feed.active() {
            let (a, b) = (a.to_string(), b.to_string());
            self.feed.append_command(None, &[b"SWAPDB", a.as_bytes(), b.as_bytes()]);
        }
        for (x, y) in los.iter_mut().zip(his.iter_mut()) {
            x.swap_contents(y);
        }
    }

    /// Locks the shards of keys that may live in different databases, in (db, shard) order.
    pub fn lock_across<'k>(&self, keys: &[(usize, &Key<'k>)]) -> CrossDbSet<'_> {
        let mut idx: SmallVec<[(usize, usize); 4]> = keys
            .iter()
            .map(|(db, k)| (*db.min(&(self.dbs.len() - 1)), k.shard()))
            .collect();
        idx.sort_unstable();
        idx.dedup();
        CrossDbSet {
            guards: idx.into_iter().map(|(d, s)| ((d, s), self.dbs[d].guard(s))).collect(),
            feed: &self.feed,
        }
    }

    /// The cursor position within a slot table that a key sorts at (tests of SCAN).
    pub fn hash_position(key: &[u8]) -> u32 {
        hash_pos(hash_key(key))
    }
}

/// Shards of several databases, locked in (db, shard) order (MOVE, COPY with DB).
pub struct CrossDbSet<'a> {
    /// ((db, shard), guard), in lock order.
    guards: SmallVec<[DbShardGuard<'a>; 4]>,
    feed: &'a ChangeFeed,
}

type DbShardGuard<'a> = ((usize, usize), ShardGuard<'a>);

impl Drop for CrossDbSet<'_> {
    fn drop(&mut self) {
        if self.guards.iter().any(|(_, g)| g.track) {
            self.feed.flush(self.guards.iter_mut().map(|(_, g)| &mut *g.guard));
        }
    }
}

impl<'a> CrossDbSet<'a> {
    pub fn shard(&mut self, db: usize, key: &Key) -> &mut Shard {
        let want = (db, key.shard());
        let i = self.guards.iter().position(|(s, _)| *s == want).unwrap_or(0);
        &mut self.guards[i].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::AccessMode;
    use std::collections::{BTreeMap, HashSet};

    fn now() -> Now {
        Now::new(1_000_000, AccessMode::Lru)
    }

    fn set(db: &Db, k: &[u8], v: &[u8], exp: Option<i64>) {
        let key = Key::new(k);
        let n = now();
        db.lock(&key)
            .upsert(&key, Entry::new_str(k, v, exp, n.initial_access()));
    }

    fn get(db: &Db, k: &[u8]) -> Option<Vec<u8>> {
        let key = Key::new(k);
        let mut s = db.lock(&key);
        let pos = s.lookup_read(&key, &now(), false)?;
        Some(s.entry(&key, pos).str_value().to_vec())
    }

    #[test]
    fn set_get_delete_round_trip() {
        let db = Db::new();
        for i in 0..5000 {
            set(&db, format!("key:{i}").as_bytes(), format!("v{i}").as_bytes(), None);
        }
        assert_eq!(db.len(), 5000);
        for i in 0..5000 {
            assert_eq!(
                get(&db, format!("key:{i}").as_bytes()),
                Some(format!("v{i}").into_bytes())
            );
        }
        for i in (0..5000).step_by(2) {
            let k = format!("key:{i}");
            let key = Key::new(k.as_bytes());
            assert!(db.lock(&key).delete(&key, &now()));
        }
        assert_eq!(db.len(), 2500);
        assert_eq!(get(&db, b"key:2"), None);
        assert_eq!(get(&db, b"key:3"), Some(b"v3".to_vec()));
    }

    #[test]
    fn expired_keys_vanish_on_lookup_and_count_as_expired() {
        let db = Db::new();
        set(&db, b"gone", b"x", Some(now().ms - 1));
        set(&db, b"here", b"x", Some(now().ms + 10_000));
        assert_eq!(db.counts(), (2, 2));
        assert_eq!(get(&db, b"gone"), None);
        assert_eq!(get(&db, b"here"), Some(b"x".to_vec()));
        assert_eq!(db.counts(), (1, 1));
        let st = db.stats();
        assert_eq!((st.expired, st.hits, st.misses), (1, 1, 1));
    }

    #[test]
    fn scan_returns_every_key_exactly_once_while_the_table_grows() {
        let db = Db::new();
        // Everything in one slot, so a single table grows through many resizes during the scan.
        for i in 0..3000 {
            set(&db, format!("{{tag}}:{i}").as_bytes(), b"v", None);
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut added = 0;
        let mut calls = 0;
        loop {
            cursor = db.scan(cursor, 10, &now(), |e| {
                seen.insert(e.key().to_vec());
            });
            calls += 1;
            if added < 20_000 {
                for _ in 0..200 {
                    set(&db, format!("{{tag}}:new:{added}").as_bytes(), b"v", None);
                    added += 1;
                }
            }
            if cursor == 0 || calls > 100_000 {
                break;
            }
        }
        for i in 0..3000 {
            assert!(seen.contains(format!("{{tag}}:{i}").as_bytes()), "missed {i}");
        }
    }

    #[test]
    fn scan_survives_shrinking_and_covers_all_slots() {
        let db = Db::new();
        for i in 0..20_000 {
            set(&db, format!("k{i}").as_bytes(), b"v", None);
        }
        let mut seen = BTreeMap::new();
        let mut cursor = 0;
        let mut deleted = 0;
        for _ in 0..100_000 {
            cursor = db.scan(cursor, 100, &now(), |e| {
                *seen.entry(e.key().to_vec()).or_insert(0) += 1;
            });
            // Delete keys that are not part of the "kept" set, shrinking tables under the cursor.
            for _ in 0..50 {
                if deleted < 10_000 {
                    let k = format!("k{}", deleted * 2 + 1);
                    let key = Key::new(k.as_bytes());
                    db.lock(&key).delete(&key, &now());
                    deleted += 1;
                }
            }
            if cursor == 0 {
                break;
            }
        }
        for i in (0..20_000).step_by(2) {
            assert_eq!(seen.get(format!("k{i}").as_bytes()), Some(&1), "k{i}");
        }
    }

    #[test]
    fn swap_exchanges_contents() {
        let ks = Keyspace::new(2);
        set(ks.db(0), b"a", b"1", None);
        set(ks.db(1), b"b", b"2", None);
        ks.swap(0, 1);
        assert_eq!(get(ks.db(0), b"b"), Some(b"2".to_vec()));
        assert_eq!(get(ks.db(1), b"a"), Some(b"1".to_vec()));
    }

    #[test]
    fn random_key_finds_the_only_key() {
        let db = Db::new();
        assert_eq!(db.random_key(&now()), None);
        set(&db, b"only", b"v", None);
        assert_eq!(db.random_key(&now()), Some(b"only".to_vec()));
    }

    #[test]
    fn a_key_hint_applies_only_to_the_slice_it_was_made_for() {
        let buf = b"user:1 user:2 user:1".to_vec();
        let (a, b, a_again) = (&buf[0..6], &buf[7..13], &buf[14..20]);
        let hint = Key::new(a).hint();
        let same = Key::with_hint(a, Some(hint));
        assert_eq!((same.slot, same.hash), (Key::new(a).slot, Key::new(a).hash));
        // Another key, and the same bytes at another address: computed afresh, never taken from the hint.
        let other = Key::with_hint(b, Some(hint));
        assert_eq!((other.slot, other.hash), (Key::new(b).slot, Key::new(b).hash));
        assert_ne!(other.hash, hint.hash);
        let lying = KeyHint {
            hash: hint.hash ^ 1,
            ..hint
        };
        assert_eq!(Key::with_hint(a_again, Some(lying)).hash, Key::new(a).hash);
        assert_eq!(
            Key::with_hint(a, Some(lying)).hash,
            hint.hash ^ 1,
            "the hint is what was used"
        );
    }

    #[test]
    fn many_keys_cost_few_table_bytes() {
        let db = Db::new();
        let n = 200_000;
        for i in 0..n {
            set(&db, format!("key:{i}").as_bytes(), b"v", None);
        }
        let bytes: usize = (0..SHARDS).map(|i| db.lock_shard(i).bucket_bytes()).sum();
        let per_key = bytes as f64 / n as f64;
        // 14 bytes a bucket (meta, hash position, pointer) at about 70-90% load: 15.6-20 bytes a key.
        assert!(per_key < 19.0, "{per_key} bucket bytes per key");
    }
}
