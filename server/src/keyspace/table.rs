//! [`SlotTable`]: the hash table holding the keys of one hash slot of one database.
//!
//! Every slot has its own table so that counting, listing, deleting and moving the keys of a slot touches only
//! that slot's keys. The table is open addressing with Robin Hood linear probing and a *monotone* home:
//! `home(h) = (h >> 32) * cap >> 32`. Robin Hood insertion keeps entries sorted by home, so:
//!
//! * SCAN can resume from a position in hash space (`h >> 32`) rather than a bucket index. That position means
//!   the same thing at every capacity, so a key present for the whole scan is returned even if the table grows
//!   or shrinks between calls.
//! * capacity need not be a power of two: it grows by 1.5x (4, 8, 12, 16, 24, 32, ...) with a 0.9 load
//!   limit, so tables sit between 60% and 90% full instead of 45-90%, and the tables of all slots, which fill
//!   at the same rate, do not all sit just past a doubling at once.
//!
//! Layout, one allocation of groups of four buckets: `[4 x u16 meta][4 x Option<Entry>]`, 40 bytes a group, so
//! a bucket's meta word and its entry pointer sit on the same cache line (a lookup of a key in a large
//! keyspace is a chain of cache misses: slot header, bucket, entry; keeping meta and pointer together saves
//! one), while probing still scans metas without touching entries. The capacity lives in the table header for
//! the same reason. The meta word is
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
/// How far ahead a resize prefetches the entries it is about to rehash.
const RESIZE_PREFETCH_AHEAD: usize = 8;

/// Buckets per group: four 2-byte metas, then four 8-byte entry pointers.
const GROUP: usize = 4;
const GROUP_BYTES: usize = GROUP * 2 + GROUP * 8;
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
    if cap < MIN_CAP {
        MIN_CAP
    } else if cap == MIN_CAP {
        // 4 -> 8, so every capacity stays a whole number of groups.
        2 * MIN_CAP
    } else if cap.is_power_of_two() {
        cap + cap / 2
    } else {
        // 1.5 * 2^k -> 2^(k+1)
        cap / 3 * 4
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
            // SAFETY: group i/4 lies inside the allocation when i < cap.
            Some(p) => unsafe { p.as_ptr().add(i / GROUP * GROUP_BYTES + i % GROUP * 2) as *mut u16 },
            None => std::ptr::null_mut(),
        }
    }

    /// Address of bucket `i`'s entry pointer (8-byte aligned: groups are 40 bytes, pointers start at 8).
    #[inline]
    fn slot_ptr(&self, i: usize) -> *mut Option<Entry> {
        match self.raw {
            // SAFETY: as for `meta_ptr`.
            Some(p) => unsafe {
                p.as_ptr().add(i / GROUP * GROUP_BYTES + GROUP * 2 + i % GROUP * 8) as *mut Option<Entry>
            },
            None => std::ptr::null_mut(),
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
            // SAFETY: only computes an address inside the allocation; prefetching never faults.
            let addr = unsafe { p.as_ptr().add(home / GROUP * GROUP_BYTES) };
            prefetch_read(addr);
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
        let mut pending = entry;
        let mut h = h;
        // A probe past the displacement limit grows the table; each try grows it, so this ends.
        loop {
            match self.try_place(pending, h) {
                Ok(()) => break,
                Err(carried) => {
                    h = super::hash_key(carried.key());
                    pending = carried;
                    let grown = next_cap(self.capacity());
                    self.resize(grown);
                }
            }
        }
        self.len += 1;
    }

    /// Robin Hood placement without a length check. On failure the table is unchanged except that `entry`
    /// may have been swapped with residents; the returned entry must still be placed.
    fn try_place(&mut self, entry: Entry, h: Hash) -> Result<(), Entry> {
        let cap = self.capacity();
        let volatile = if entry.has_expire() { VOLATILE } else { 0 };
        if volatile != 0 {
            self.volatile += 1;
        }
        let mut cur_entry = entry;
        let mut cur_meta = OCCUPIED | volatile | tag_of(h);
        let mut i = home_of_pos(hash_pos(h), cap);
        let mut dist: u16 = 0;
        loop {
            let m = self.meta(cap, i);
            if m & OCCUPIED == 0 {
                self.set_meta(cap, i, cur_meta | dist);
                *self.slot_mut(i) = Some(cur_entry);
                return Ok(());
            }
            let resident_dist = m & DISP_MASK;
            if resident_dist < dist {
                // Take the richer resident's place and carry it on.
                self.set_meta(cap, i, cur_meta | dist);
                let displaced = self.slot_mut(i).replace(cur_entry);
                let Some(displaced) = displaced else {
                    unreachable_entry()
                };
                cur_entry = displaced;
                cur_meta = m & !DISP_MASK;
                dist = resident_dist;
            }
            dist += 1;
            if dist as usize > MAX_DISP {
                if cur_meta & VOLATILE != 0 {
                    self.volatile -= 1;
                }
                // The carried entry is out of the table: rebuild so that nothing is lost, then report it.
                return Err(cur_entry);
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
        let mut entries = self.take_all();
        let mut cap = new_cap.max(cap_for(entries.len()));
        // Placement can only fail on a displacement overflow, which a larger table cures.
        'rebuild: loop {
            self.raw = Some(SlotTable::allocate(cap));
            self.cap = cap as u32;
            while let Some(e) = entries.pop() {
                // Rehashing reads every key: have the entries a few places on loaded by the time we get there.
                if let Some(ahead) = entries
                    .len()
                    .checked_sub(RESIZE_PREFETCH_AHEAD)
                    .and_then(|i| entries.get(i))
                {
                    ahead.prefetch();
                }
                let h = super::hash_key(e.key());
                if let Err(carried) = self.try_place(e, h) {
                    entries.push(carried);
                    let mut placed = self.take_all();
                    entries.append(&mut placed);
                    cap = next_cap(cap);
                    continue 'rebuild;
                }
                self.len += 1;
            }
            return;
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
            if let Some(e) = self.slot_ref(i) {
                if hash_pos(super::hash_key(e.key())) >= from {
                    emit(e);
                }
            }
            last_home = Some(home);
        }
        None
    }
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
