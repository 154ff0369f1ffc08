//! [`SlotTable`]: the hash table holding the keys of one hash slot of one database.
//!
//! Every slot has its own table so that counting, listing, deleting and moving the keys of a slot touches only
//! that slot's keys. The table is open addressing with Robin Hood linear probing and a *monotone* home:
//! `home(h) = (h >> 32) * cap >> 32`. Robin Hood insertion keeps entries sorted by home, so:
//!
//! * SCAN can resume from a position in hash space (`h >> 32`) rather than a bucket index. That position means
//!   the same thing at every capacity, so a key present for the whole scan is returned even if the table grows
//!   or shrinks between calls.
//! * capacity need not be a power of two: it steps through the capacities whose bucket array fills one of the
//!   allocator's size classes (jemalloc has four per doubling: 4, 8, 12, 16, 20, 24, 32, 36, 44, 52, 64, ...
//!   buckets) with a 0.9 load limit, so tables sit between about 70% and 90% full, no allocation carries a size
//!   class's slack, and the tables of all slots, which fill at the same rate, are never all just past a
//!   doubling at once. A resize moves entries without reading them (below), so the finer steps cost little.
//!
//! Layout, one allocation of groups of four buckets: `[4 x u16 meta][4 x u32 hash position][4 x Option<Entry>]`,
//! 56 bytes a group, so a bucket's meta word and its entry pointer are close together (a lookup of a key in a
//! large keyspace is a chain of cache misses: slot header, bucket, entry; keeping meta and pointer together
//! saves one), while probing still scans metas without touching entries. The capacity lives in the table
//! header for the same reason. Each bucket keeps its key's hash position, so a resize moves entries without
//! reading them: rehashing every key on growth used to cost a cache miss per key and was 12% of the server's
//! CPU while SETs filled an empty keyspace. SCAN's resume check reads it too. The meta word is
//! `OCCUPIED | VOLATILE | tag(7) | displacement(7)`: probing compares tags without touching entries, the
//! displacement gives each resident's home for Robin Hood without rehashing its key, and VOLATILE lets the
//! active expiry sweep find keys with a TTL without reading entries that have none. Empty tables own no memory.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use super::entry::Entry;

const OCCUPIED: u16 = 1 << 15;
const VOLATILE: u16 = 1 << 14;
const TAG_SHIFT: u32 = 7;
const TAG_MASK: u16 = 0x7F << TAG_SHIFT;
const DISP_MASK: u16 = 0x7F;
/// Displacement is 7 bits; a probe sequence that would reach this forces a resize instead.
const MAX_DISP: usize = DISP_MASK as usize;
/// Buckets per group: four 2-byte metas, four 4-byte hash positions, then four 8-byte entry pointers.
const GROUP: usize = 4;
const POS_OFFSET: usize = GROUP * 2;
const SLOT_OFFSET: usize = POS_OFFSET + GROUP * 4;
const GROUP_BYTES: usize = SLOT_OFFSET + GROUP * 8;
const MIN_CAP: usize = GROUP;
/// Grow past 90% full; Robin Hood keeps probe lengths short at that load.
const MAX_LOAD_NUM: usize = 9;
const MAX_LOAD_DEN: usize = 10;
/// Shrink below 25% full, to about 60% full.
const SHRINK_LOAD_DEN: usize = 4;

/// A key's 64-bit hash, computed once per command and passed down.
pub type Hash = u64;

#[inline]
fn tag_of(h: Hash) -> u16 {
    ((h as u16) << TAG_SHIFT) & TAG_MASK
}

/// The 32-bit position in hash space that orders a table and that SCAN cursors hold.
#[inline]
pub fn hash_pos(h: Hash) -> u32 {
    (h >> 32) as u32
}

#[inline]
fn home_of_pos(pos: u32, cap: usize) -> usize {
    ((pos as u64 * cap as u64) >> 32) as usize
}

/// First hash position whose home is `home` or later.
#[inline]
fn first_pos_of_home(home: usize, cap: usize) -> u64 {
    ((home as u64) << 32).div_ceil(cap as u64)
}

fn next_cap(cap: usize) -> usize {
    let groups = cap / GROUP;
    let mut bytes = groups * GROUP_BYTES;
    loop {
        bytes = crate::alloc::size_class(bytes + 1);
        let fit = bytes / GROUP_BYTES;
        if fit > groups {
            return fit * GROUP;
        }
    }
}

/// The smallest capacity in the growth sequence holding `len` keys at no more than 90% load.
fn cap_for(len: usize) -> usize {
    let mut cap = MIN_CAP;
    while len * MAX_LOAD_DEN > cap * MAX_LOAD_NUM {
        cap = next_cap(cap);
    }
    cap
}

/// Result of looking a key up: where it is, or where the probe stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos(pub(crate) usize);

pub struct SlotTable {
    raw: Option<NonNull<u8>>,
    len: u32,
    cap: u32,
    volatile: u32,
}

// SAFETY: the table exclusively owns its allocation and entries; access is serialised by the shard lock.
unsafe impl Send for SlotTable {}
unsafe impl Sync for SlotTable {}

impl Default for SlotTable {
    fn default() -> Self {
        SlotTable::new()
    }
}

fn layout_for(cap: usize) -> Layout {
    let bytes = cap / GROUP * GROUP_BYTES;
    match Layout::from_size_align(bytes, 8) {
        Ok(l) => l,
        Err(_) => alloc::handle_alloc_error(Layout::new::<u64>()),
    }
}

impl SlotTable {
    pub const fn new() -> SlotTable {
        SlotTable {
            raw: None,
            len: 0,
            cap: 0,
            volatile: 0,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys in this table that have a TTL.
    #[inline]
    pub fn volatile_len(&self) -> usize {
        self.volatile as usize
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Bytes of bucket memory, for MEMORY USAGE and tests.
    pub fn bucket_bytes(&self) -> usize {
        match self.capacity() {
            0 => 0,
            cap => layout_for(cap).size(),
        }
    }

    /// Address of bucket `i`'s meta word. Callers pass `i < cap` of an allocated table.
    #[inline]
    fn meta_ptr(&self, i: usize) -> *mut u16 {
        match self.raw {
            Some(p) => meta_at(p, i),
            None => std::ptr::null_mut(),
        }
    }

    /// Address of bucket `i`'s entry pointer.
    #[inline]
    fn slot_ptr(&self, i: usize) -> *mut Option<Entry> {
        match self.raw {
            Some(p) => slot_at(p, i),
            None => std::ptr::null_mut(),
        }
    }

    #[inline]
    fn pos(&self, i: usize) -> u32 {
        match self.raw {
            // SAFETY: callers pass i < cap of an allocated table.
            Some(p) => unsafe { *pos_at(p, i) },
            None => 0,
        }
    }

    #[inline]
    fn set_pos(&mut self, i: usize, pos: u32) {
        if let Some(p) = self.raw {
            // SAFETY: callers pass i < cap of an allocated table.
            unsafe { *pos_at(p, i) = pos }
        }
    }

    #[inline]
    fn meta(&self, cap: usize, i: usize) -> u16 {
        debug_assert!(i < cap);
        // SAFETY: i < cap, inside the allocation.
        unsafe { *self.meta_ptr(i) }
    }

    #[inline]
    fn set_meta(&mut self, cap: usize, i: usize, m: u16) {
        debug_assert!(i < cap);
        // SAFETY: i < cap.
        unsafe { *self.meta_ptr(i) = m }
    }

    #[inline]
    fn slot_ref(&self, i: usize) -> &Option<Entry> {
        // SAFETY: callers pass i < cap.
        unsafe { &*self.slot_ptr(i) }
    }

    #[inline]
    fn slot_mut(&mut self, i: usize) -> &mut Option<Entry> {
        // SAFETY: callers pass i < cap.
        unsafe { &mut *self.slot_ptr(i) }
    }

    /// Hints the CPU to fetch the bucket group where `h`'s probe starts (pipelined commands look their keys up
    /// ahead of running them).
    #[inline]
    pub fn prefetch(&self, h: Hash) {
        if let Some(p) = self.raw {
            let home = home_of_pos(hash_pos(h), self.cap as usize);
            // SAFETY: only computes addresses inside the allocation; prefetching never faults.
            let addr = unsafe { p.as_ptr().add(home / GROUP * GROUP_BYTES) };
            prefetch_read(addr);
            // A group can straddle two cache lines; the entry pointers are at its end.
            prefetch_read(addr.wrapping_add(GROUP_BYTES - 1));
        }
    }

    /// Hints the CPU to fetch the entry `key`'s probe would compare first (the bucket group should be in cache
    /// already, from [`SlotTable::prefetch`]).
    #[inline]
    pub fn prefetch_entry(&self, h: Hash) {
        let cap = self.cap as usize;
        if cap == 0 || self.len == 0 {
            return;
        }
        let tag = tag_of(h);
        let mut i = home_of_pos(hash_pos(h), cap);
        for dist in 0..4u16 {
            let m = self.meta(cap, i);
            if m & OCCUPIED == 0 || (m & DISP_MASK) < dist {
                return;
            }
            if m & TAG_MASK == tag {
                if let Some(e) = self.slot_ref(i) {
                    e.prefetch();
                }
                return;
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
    }

    fn allocate(cap: usize) -> NonNull<u8> {
        let layout = layout_for(cap);
        // SAFETY: non-zero size; zeroed memory is `None` entries and empty metas.
        let p = unsafe { alloc::alloc_zeroed(layout) };
        let Some(p) = NonNull::new(p) else {
            alloc::handle_alloc_error(layout)
        };
        p
    }

    /// Finds `key` (with hash `h`).
    #[inline]
    pub fn find(&self, key: &[u8], h: Hash) -> Option<Pos> {
        let cap = self.capacity();
        if cap == 0 || self.len == 0 {
            return None;
        }
        let tag = tag_of(h);
        let mut i = home_of_pos(hash_pos(h), cap);
        let mut dist: u16 = 0;
        loop {
            let m = self.meta(cap, i);
            // Robin Hood: once residents are closer to home than we would be, the key is absent.
            if m & OCCUPIED == 0 || (m & DISP_MASK) < dist {
                return None;
            }
            if m & TAG_MASK == tag {
                if let Some(e) = self.slot_ref(i) {
                    if e.key() == key {
                        return Some(Pos(i));
                    }
                }
            }
            dist += 1;
            if dist as usize > MAX_DISP {
                return None;
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
    }

    #[inline]
    pub fn get(&self, pos: Pos) -> &Entry {
        match self.slot_ref(pos.0) {
            Some(e) => e,
            None => unreachable_entry(),
        }
    }

    /// The entry at `pos`, mutably. Replacing it (`*e = new`) is allowed as long as the key stays the same;
    /// call [`SlotTable::sync_volatile`] afterwards if its expiry may have been added or removed.
    #[inline]
    pub fn get_mut(&mut self, pos: Pos) -> &mut Entry {
        match self.slot_mut(pos.0) {
            Some(e) => e,
            None => unreachable_entry(),
        }
    }

    /// Brings the VOLATILE bit and count at `pos` in line with the entry's expiry after a change.
    pub fn sync_volatile(&mut self, pos: Pos) {
        let cap = self.capacity();
        let has = self.get(pos).has_expire();
        let m = self.meta(cap, pos.0);
        let had = m & VOLATILE != 0;
        if has != had {
            self.set_meta(cap, pos.0, m ^ VOLATILE);
            if has {
                self.volatile += 1;
            } else {
                self.volatile -= 1;
            }
        }
    }

    /// Inserts an entry whose key is known to be absent (the caller looked it up first).
    pub fn insert_new(&mut self, entry: Entry, h: Hash) {
        let cap = self.capacity();
        if (self.len as usize + 1) * MAX_LOAD_DEN > cap * MAX_LOAD_NUM {
            self.resize(next_cap(cap));
        }
        let volatile = entry.has_expire();
        let meta = OCCUPIED | if volatile { VOLATILE } else { 0 } | tag_of(h);
        let mut pending = (entry, hash_pos(h), meta);
        // A probe past the displacement limit grows the table; each try grows it, so this ends.
        while let Err(carried) = self.place(pending.0, pending.1, pending.2) {
            pending = carried;
            self.resize(next_cap(self.capacity()));
        }
        self.len += 1;
        if volatile {
            self.volatile += 1;
        }
    }

    /// Robin Hood placement of an entry with hash position `pos` and meta `meta` (displacement bits clear),
    /// without a length check or count updates. On failure every other entry is in place and the returned one,
    /// possibly a resident swapped out on the way, must still be placed.
    fn place(&mut self, entry: Entry, pos: u32, meta: u16) -> Result<(), (Entry, u32, u16)> {
        let cap = self.capacity();
        let (mut cur_entry, mut cur_pos, mut cur_meta) = (entry, pos, meta);
        let mut i = home_of_pos(cur_pos, cap);
        let mut dist: u16 = 0;
        loop {
            let m = self.meta(cap, i);
            if m & OCCUPIED == 0 {
                self.set_meta(cap, i, cur_meta | dist);
                self.set_pos(i, cur_pos);
                *self.slot_mut(i) = Some(cur_entry);
                return Ok(());
            }
            let resident_dist = m & DISP_MASK;
            if resident_dist < dist {
                // Take the richer resident's place and carry it on.
                self.set_meta(cap, i, cur_meta | dist);
                let resident_pos = self.pos(i);
                self.set_pos(i, cur_pos);
                let displaced = self.slot_mut(i).replace(cur_entry);
                let Some(displaced) = displaced else {
                    unreachable_entry()
                };
                cur_entry = displaced;
                cur_pos = resident_pos;
                cur_meta = m & !DISP_MASK;
                dist = resident_dist;
            }
            dist += 1;
            if dist as usize > MAX_DISP {
                return Err((cur_entry, cur_pos, cur_meta));
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
    }

    /// Removes and returns the entry at `pos`, shifting its successors back (no tombstones).
    pub fn remove(&mut self, pos: Pos) -> Entry {
        let cap = self.capacity();
        let m = self.meta(cap, pos.0);
        let Some(removed) = self.slot_mut(pos.0).take() else {
            unreachable_entry()
        };
        if m & VOLATILE != 0 {
            self.volatile -= 1;
        }
        let mut i = pos.0;
        loop {
            let mut next = i + 1;
            if next == cap {
                next = 0;
            }
            let nm = self.meta(cap, next);
            if nm & OCCUPIED == 0 || nm & DISP_MASK == 0 {
                self.set_meta(cap, i, 0);
                break;
            }
            let moved = self.slot_mut(next).take();
            *self.slot_mut(i) = moved;
            let moved_pos = self.pos(next);
            self.set_pos(i, moved_pos);
            self.set_meta(cap, i, nm - 1);
            i = next;
        }
        self.len -= 1;
        if self.len == 0 {
            self.release();
        } else if cap > MIN_CAP && (self.len as usize) * SHRINK_LOAD_DEN < cap {
            self.resize(cap_for(self.len as usize * 3 / 2));
        }
        removed
    }

    fn release(&mut self) {
        if let Some(p) = self.raw.take() {
            // SAFETY: our own allocation, freed with the layout it was made with; entries were all taken or
            // dropped by the caller (`clear`).
            unsafe { alloc::dealloc(p.as_ptr(), layout_for(self.cap as usize)) };
        }
        self.cap = 0;
    }

    fn resize(&mut self, new_cap: usize) {
        let (old, old_cap) = (self.raw, self.capacity());
        let mut cap = new_cap.max(cap_for(self.len as usize));
        // Placement can only fail on a displacement overflow, which a larger table cures. Until the new table
        // is complete the old one stays the owner of every entry: the new one holds bitwise copies, so a failed
        // attempt is freed without dropping anything.
        loop {
            let new = SlotTable::allocate(cap);
            self.raw = Some(new);
            self.cap = cap as u32;
            let mut complete = true;
            if let Some(old) = old {
                for i in 0..old_cap {
                    // SAFETY: i < old_cap, inside the old allocation, which nothing else touches meanwhile.
                    let m = unsafe { *meta_at(old, i) };
                    if m & OCCUPIED == 0 {
                        continue;
                    }
                    // SAFETY: as above; the read copies the entry pointer, ownership stays with the old table.
                    let (pos, entry) = unsafe { (*pos_at(old, i), std::ptr::read(slot_at(old, i))) };
                    let Some(entry) = entry else { unreachable_entry() };
                    if let Err((copy, _, _)) = self.place(entry, pos, m & !DISP_MASK) {
                        std::mem::forget(copy);
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                if let Some(old) = old {
                    // SAFETY: the old allocation, made with this layout; its entries now live in the new table.
                    unsafe { alloc::dealloc(old.as_ptr(), layout_for(old_cap)) };
                }
                return;
            }
            // SAFETY: the attempt's own allocation; it holds only copies, which must not be dropped.
            unsafe { alloc::dealloc(new.as_ptr(), layout_for(cap)) };
            cap = next_cap(cap);
        }
    }

    /// Drops every entry and frees the buckets.
    pub fn clear(&mut self) {
        let cap = self.capacity();
        for i in 0..cap {
            drop(self.slot_mut(i).take());
        }
        self.len = 0;
        self.volatile = 0;
        self.release();
    }

    /// Takes every entry out, leaving the table empty (FLUSH ASYNC hands them to a background thread).
    pub fn take_all(&mut self) -> Vec<Entry> {
        let cap = self.capacity();
        let mut out = Vec::with_capacity(self.len as usize);
        for i in 0..cap {
            if let Some(e) = self.slot_mut(i).take() {
                out.push(e);
            }
        }
        self.len = 0;
        self.volatile = 0;
        self.release();
        out
    }

    /// Every entry, in table order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        let cap = self.capacity();
        (0..cap).filter_map(move |i| self.slot_ref(i).as_ref())
    }

    /// Positions of entries, in table order, starting from `start` and wrapping; `volatile_only` skips keys
    /// without a TTL without reading them.
    pub fn positions_from(&self, start: usize, volatile_only: bool) -> impl Iterator<Item = Pos> + '_ {
        let cap = self.capacity();
        let want = if volatile_only { OCCUPIED | VOLATILE } else { OCCUPIED };
        (0..cap)
            .map(move |k| (start + k) % cap.max(1))
            .filter(move |&i| self.meta(cap, i) & want == want)
            .map(Pos)
    }

    /// Whether bucket `i` holds a key with a TTL (the expiry sweep reads entries only where this is true).
    #[inline]
    pub fn is_volatile_at(&self, i: usize) -> bool {
        let cap = self.capacity();
        i < cap && self.meta(cap, i) & (OCCUPIED | VOLATILE) == OCCUPIED | VOLATILE
    }

    /// The entry at a uniformly random bucket, or the next occupied one after it (Redis's dictGetRandomKey has
    /// the same mild bias towards keys after long gaps).
    pub fn random_pos(&self, r: u64, volatile_only: bool) -> Option<Pos> {
        let cap = self.capacity();
        if self.len == 0 || (volatile_only && self.volatile == 0) {
            return None;
        }
        let start = (r % cap as u64) as usize;
        self.positions_from(start, volatile_only).next()
    }

    /// SCAN support: calls `emit` for the entries whose hash position is at least `from`, in hash order, whole
    /// home groups at a time, until at least `count` were visited. Returns the hash position to resume from,
    /// or `None` when the table is exhausted. A home group is never split across calls and the resume point is
    /// a hash position, so resizes between calls neither skip keys nor, thanks to the final hash check, repeat
    /// them.
    pub fn scan(&self, from: u32, count: usize, mut emit: impl FnMut(&Entry)) -> Option<u32> {
        let cap = self.capacity();
        if self.len == 0 {
            return None;
        }
        let start_home = home_of_pos(from, cap);
        let mut last_home: Option<usize> = None;
        // Entries are sorted by home around the ring. Those whose home is past the end of the array sit in a
        // prefix of it ("wrapped"): they come last in hash order, so take the plain ones from start_home to the
        // end first, then the wrapped prefix.
        let plain = (start_home..cap).filter_map(|i| {
            let m = self.meta(cap, i);
            let disp = (m & DISP_MASK) as usize;
            (m & OCCUPIED != 0 && disp <= i && i - disp >= start_home).then(|| (i, i - disp))
        });
        let wrapped = (0..cap)
            .map_while(|i| {
                let m = self.meta(cap, i);
                let disp = (m & DISP_MASK) as usize;
                (m & OCCUPIED != 0 && disp > i).then(|| (i, cap + i - disp))
            })
            .filter(|&(_, home)| home >= start_home);
        for (visited, (i, home)) in plain.chain(wrapped).enumerate() {
            if let Some(lh) = last_home {
                if home != lh && visited >= count {
                    return Some(first_pos_of_home(home, cap) as u32);
                }
            }
            if self.pos(i) >= from {
                if let Some(e) = self.slot_ref(i) {
                    emit(e);
                }
            }
            last_home = Some(home);
        }
        None
    }
}

/// Address of bucket `i`'s meta word in the allocation at `p`. Callers pass `i` below its capacity.
#[inline]
fn meta_at(p: NonNull<u8>, i: usize) -> *mut u16 {
    // SAFETY: group i/4 lies inside the allocation when i < cap.
    unsafe { p.as_ptr().add(i / GROUP * GROUP_BYTES + i % GROUP * 2) as *mut u16 }
}

/// Address of bucket `i`'s hash position (4-byte aligned).
#[inline]
fn pos_at(p: NonNull<u8>, i: usize) -> *mut u32 {
    // SAFETY: as for `meta_at`.
    unsafe { p.as_ptr().add(i / GROUP * GROUP_BYTES + POS_OFFSET + i % GROUP * 4) as *mut u32 }
}

/// Address of bucket `i`'s entry pointer (8-byte aligned: groups are 56 bytes, pointers start at 24).
#[inline]
fn slot_at(p: NonNull<u8>, i: usize) -> *mut Option<Entry> {
    // SAFETY: as for `meta_at`.
    unsafe { p.as_ptr().add(i / GROUP * GROUP_BYTES + SLOT_OFFSET + i % GROUP * 8) as *mut Option<Entry> }
}

/// Asks the CPU to start loading the cache line at `addr`.
#[inline(always)]
pub fn prefetch_read<T>(addr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint; it never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(addr as *const i8, core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cold]
fn unreachable_entry() -> ! {
    // An occupied meta always has an entry; reaching this is a bug in this module, not bad input.
    panic!("slot table: occupied bucket without an entry")
}

impl Drop for SlotTable {
    fn drop(&mut self) {
        self.clear();
    }
}

impl std::fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotTable")
            .field("len", &self.len)
            .field("cap", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn entry(key: &[u8], ttl: bool) -> Entry {
        Entry::new_str(key, b"v", ttl.then_some(1_000_000), 0)
    }

    /// Checks the table against the model: every key found at its hash, lengths and TTL counts agree, every
    /// bucket's stored hash position is its key's, and a full SCAN returns each key once.
    fn check(t: &SlotTable, model: &HashMap<Vec<u8>, (Hash, bool)>) {
        assert_eq!(t.len(), model.len());
        assert_eq!(t.volatile_len(), model.values().filter(|v| v.1).count());
        for (k, &(h, ttl)) in model {
            let pos = t.find(k, h).unwrap_or_else(|| panic!("key {k:?} not found"));
            assert_eq!(t.get(pos).key(), &k[..]);
            assert_eq!(t.get(pos).has_expire(), ttl);
            assert_eq!(t.pos(pos.0), hash_pos(h));
        }
        let mut seen = Vec::new();
        let mut from = 0u32;
        for _ in 0..=model.len() + 1 {
            match t.scan(from, 3, |e| seen.push(e.key().to_vec())) {
                Some(next) => from = next,
                None => break,
            }
        }
        seen.sort();
        let mut want: Vec<Vec<u8>> = model.keys().cloned().collect();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn capacities_fill_their_size_class() {
        let mut caps = vec![];
        let mut cap = 0;
        while cap < 100_000 {
            let next = next_cap(cap);
            assert!(next > cap && next.is_multiple_of(GROUP));
            let bytes = layout_for(next).size();
            // No room for one more group in the size class the allocation lands in.
            assert!(
                crate::alloc::size_class(bytes) < bytes + GROUP_BYTES,
                "capacity {next}: {bytes} bytes"
            );
            // Growth stays geometric, so inserts cost amortised O(1) moves.
            assert!(cap < 64 || next * 100 >= cap * 112, "{cap} -> {next}");
            caps.push(next);
            cap = next;
        }
        assert_eq!(caps[..11], [4, 8, 12, 16, 20, 24, 32, 36, 44, 52, 64]);
    }

    #[test]
    fn crowded_homes_grow_the_table_without_losing_keys() {
        // Hash positions 2^20 apart: at small capacities sixteen keys share a home and probes pass the
        // displacement limit, so placement fails mid-resize and the table has to grow again.
        let mut t = SlotTable::new();
        let mut model = HashMap::new();
        for i in 0..600u64 {
            let key = format!("k{i}").into_bytes();
            let h = (i << 52) | i;
            t.insert_new(entry(&key, i % 3 == 0), h);
            model.insert(key, (h, i % 3 == 0));
        }
        check(&t, &model);
        for i in (0..600u64).step_by(2) {
            let key = format!("k{i}").into_bytes();
            let (h, _) = model.remove(&key).unwrap_or_default();
            let pos = t.find(&key, h).expect("present");
            let removed = t.remove(pos);
            assert_eq!(removed.key(), &key[..]);
        }
        check(&t, &model);
    }

    proptest! {
        #[test]
        fn table_matches_a_hash_map(ops in proptest::collection::vec((0u16..400, any::<bool>(), 0u8..4), 1..600)) {
            let mut t = SlotTable::new();
            let mut model: HashMap<Vec<u8>, (Hash, bool)> = HashMap::new();
            for (k, ttl, op) in ops {
                let key = format!("key:{k}").into_bytes();
                // A narrow hash space makes Robin Hood swaps and wrapped probes common.
                let h = crate::keyspace::hash_key(&key) & 0xFFF0_0000_FFFF_FFFF;
                match (op, t.find(&key, h)) {
                    (0 | 1, None) => {
                        t.insert_new(entry(&key, ttl), h);
                        model.insert(key, (h, ttl));
                    }
                    (2, Some(pos)) => {
                        let removed = t.remove(pos);
                        prop_assert_eq!(removed.key(), &key[..]);
                        model.remove(&key);
                    }
                    _ => prop_assert_eq!(t.find(&key, h).is_some(), model.contains_key(&key)),
                }
            }
            check(&t, &model);
        }
    }
}
