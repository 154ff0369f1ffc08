//! [`Entry`]: one key, its value, its access clock and (only if it has one) its expiry, in one allocation.
//!
//! Memory per key is the product's first number after speed, so an entry is a thin pointer to a packed byte
//! block rather than a struct of `Vec`s:
//!
//! ```text
//!  offset 0   flags     u8   value kind (3 bits), HAS_EXPIRE, WIDE, RAW
//!  offset 1   access    u24  LRU clock (seconds) or LFU (16-bit minutes + 8-bit log counter), little endian
//!  offset 4   expire    i64  unix ms; present only when HAS_EXPIRE
//!  then       lengths   narrow: key_len u8, val_len u8
//!                       wide:   key_len u32, val_len u32, val_cap u32
//!  then       key bytes, then value bytes (val_cap of them; val_len in use)
//! ```
//!
//! A 10-byte key with a 64-byte value is 80 bytes, exactly one jemalloc size class; a TTL adds 8. Narrow
//! entries have no spare capacity (every byte counts); wide entries (a key or value over 255 bytes) keep
//! `val_cap` so that repeated APPENDs grow geometrically instead of copying the whole value each time.
//!
//! The access field is interpreted by the eviction policy in force (see `evict.rs`), as in Redis's `robj.lru`.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

const KIND_MASK: u8 = 0b0000_0111;
const HAS_EXPIRE: u8 = 1 << 3;
const WIDE: u8 = 1 << 4;
/// The string was modified in place (APPEND, SETRANGE): OBJECT ENCODING reports `raw`, as Redis does.
const RAW: u8 = 1 << 5;
/// The string was stored without Redis's integer-encoding attempt (INCRBYFLOAT): OBJECT ENCODING reports
/// `embstr`/`raw` by length even when the text is an integer.
const NOT_INT: u8 = 1 << 6;
/// Flags that describe the value's encoding and travel with it through rebuilds and copies.
const ENCODING_FLAGS: u8 = RAW | NOT_INT;

const ACCESS_MASK: u32 = (1 << 24) - 1;
const EXPIRE_LEN: usize = 8;
const NARROW_LENS: usize = 2;
const WIDE_LENS: usize = 12;
const NARROW_MAX: usize = u8::MAX as usize;

/// What an entry's value bytes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A string (Redis's OBJ_STRING), stored inline.
    Str = 0,
}

impl ValueKind {
    fn from_bits(_bits: u8) -> ValueKind {
        ValueKind::Str
    }

    /// The name TYPE reports.
    pub fn type_name(self) -> &'static str {
        match self {
            ValueKind::Str => "string",
        }
    }
}

/// One key and its value. Owns its allocation; dropping it frees it.
pub struct Entry {
    ptr: NonNull<u8>,
}

// SAFETY: an Entry exclusively owns its allocation and has no interior mutability; it is moved between threads
// only under the shard lock.
unsafe impl Send for Entry {}
unsafe impl Sync for Entry {}

#[derive(Clone, Copy)]
struct Dims {
    flags: u8,
    key_len: usize,
    val_len: usize,
    val_cap: usize,
}

impl Dims {
    fn header_len(self) -> usize {
        4 + if self.flags & HAS_EXPIRE != 0 { EXPIRE_LEN } else { 0 }
            + if self.flags & WIDE != 0 { WIDE_LENS } else { NARROW_LENS }
    }

    fn total(self) -> usize {
        self.header_len() + self.key_len + self.val_cap
    }

    fn layout(self) -> Layout {
        // Align 1: the allocator's size classes decide the real footprint; the fields are read unaligned.
        match Layout::from_size_align(self.total(), 1) {
            Ok(l) => l,
            Err(_) => alloc::handle_alloc_error(Layout::new::<u8>()),
        }
    }
}

/// Spare capacity to leave after a wide value that is growing, as Redis's sds does (double up to 1 MiB, then
/// 1 MiB more at a time).
fn grown_capacity(needed: usize) -> usize {
    const GREEDY_LIMIT: usize = 1024 * 1024;
    if needed < GREEDY_LIMIT {
        needed * 2
    } else {
        needed + GREEDY_LIMIT
    }
}

impl Entry {
    /// A string entry. `expire_at` is unix milliseconds.
    pub fn new_str(key: &[u8], value: &[u8], expire_at: Option<i64>, access: u32) -> Entry {
        Entry::build(ValueKind::Str, key, value, value.len(), expire_at, access, 0)
    }

    fn build(
        kind: ValueKind,
        key: &[u8],
        value: &[u8],
        val_cap: usize,
        expire_at: Option<i64>,
        access: u32,
        encoding_flags: u8,
    ) -> Entry {
        let wide = key.len() > NARROW_MAX || val_cap > NARROW_MAX || val_cap != value.len();
        let mut flags = kind as u8;
        if expire_at.is_some() {
            flags |= HAS_EXPIRE;
        }
        if wide {
            flags |= WIDE;
        }
        flags |= encoding_flags & ENCODING_FLAGS;
        let dims = Dims {
            flags,
            key_len: key.len(),
            val_len: value.len(),
            val_cap,
        };
        let layout = dims.layout();
        // SAFETY: layout has a non-zero size (the header alone is at least 6 bytes).
        let raw_ptr = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw_ptr) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: every write below stays inside the `dims.total()` bytes just allocated.
        unsafe {
            let p = ptr.as_ptr();
            *p = flags;
            let a = (access & ACCESS_MASK).to_le_bytes();
            std::ptr::copy_nonoverlapping(a.as_ptr(), p.add(1), 3);
            let mut off = 4;
            if let Some(at) = expire_at {
                std::ptr::copy_nonoverlapping(at.to_le_bytes().as_ptr(), p.add(off), EXPIRE_LEN);
                off += EXPIRE_LEN;
            }
            if wide {
                for v in [key.len(), value.len(), val_cap] {
                    std::ptr::copy_nonoverlapping((v as u32).to_le_bytes().as_ptr(), p.add(off), 4);
                    off += 4;
                }
            } else {
                *p.add(off) = key.len() as u8;
                *p.add(off + 1) = value.len() as u8;
                off += NARROW_LENS;
            }
            std::ptr::copy_nonoverlapping(key.as_ptr(), p.add(off), key.len());
            std::ptr::copy_nonoverlapping(value.as_ptr(), p.add(off + key.len()), value.len());
        }
        Entry { ptr }
    }

    /// Hints the CPU to load this entry's first cache line.
    #[inline]
    pub fn prefetch(&self) {
        super::table::prefetch_read(self.ptr.as_ptr());
    }

    #[inline]
    fn flags(&self) -> u8 {
        // SAFETY: byte 0 always exists.
        unsafe { *self.ptr.as_ptr() }
    }

    #[inline]
    fn dims(&self) -> Dims {
        let flags = self.flags();
        let p = self.ptr.as_ptr();
        let off = 4 + if flags & HAS_EXPIRE != 0 { EXPIRE_LEN } else { 0 };
        // SAFETY: the length fields follow the fixed header, as written by `build`.
        unsafe {
            if flags & WIDE != 0 {
                let rd = |o: usize| {
                    let mut b = [0u8; 4];
                    std::ptr::copy_nonoverlapping(p.add(o), b.as_mut_ptr(), 4);
                    u32::from_le_bytes(b) as usize
                };
                Dims {
                    flags,
                    key_len: rd(off),
                    val_len: rd(off + 4),
                    val_cap: rd(off + 8),
                }
            } else {
                let key_len = *p.add(off) as usize;
                let val_len = *p.add(off + 1) as usize;
                Dims {
                    flags,
                    key_len,
                    val_len,
                    val_cap: val_len,
                }
            }
        }
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        let d = self.dims();
        // SAFETY: the key occupies `key_len` bytes right after the header.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(d.header_len()), d.key_len) }
    }

    pub fn kind(&self) -> ValueKind {
        ValueKind::from_bits(self.flags() & KIND_MASK)
    }

    /// The value of a string entry.
    #[inline]
    pub fn str_value(&self) -> &[u8] {
        let d = self.dims();
        // SAFETY: the value occupies `val_len` initialised bytes after the key.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(d.header_len() + d.key_len), d.val_len) }
    }

    /// The key and the value together, with one header decode.
    #[inline]
    pub fn key_value(&self) -> (&[u8], &[u8]) {
        let d = self.dims();
        let h = d.header_len();
        // SAFETY: as for `key` and `str_value`.
        unsafe {
            let p = self.ptr.as_ptr();
            (
                std::slice::from_raw_parts(p.add(h), d.key_len),
                std::slice::from_raw_parts(p.add(h + d.key_len), d.val_len),
            )
        }
    }

    /// Whether the string was modified in place (OBJECT ENCODING `raw`).
    pub fn is_raw(&self) -> bool {
        self.flags() & RAW != 0
    }

    /// The encoding OBJECT ENCODING reports, as Redis would have chosen it for this value.
    pub fn encoding(&self) -> &'static str {
        let flags = self.flags();
        if flags & RAW != 0 {
            "raw"
        } else if flags & NOT_INT != 0 {
            crate::num::created_string_encoding(self.str_value())
        } else {
            crate::num::string_encoding(self.str_value(), false)
        }
    }

    /// Records that this value was stored without the integer-encoding attempt (INCRBYFLOAT).
    pub fn mark_not_int_encoded(&mut self) {
        // SAFETY: byte 0 always exists and we hold the entry mutably.
        unsafe { *self.ptr.as_ptr() |= NOT_INT };
    }

    #[inline]
    pub fn has_expire(&self) -> bool {
        self.flags() & HAS_EXPIRE != 0
    }

    /// Unix milliseconds at which the key expires, if it has a TTL.
    #[inline]
    pub fn expire_at(&self) -> Option<i64> {
        if !self.has_expire() {
            return None;
        }
        let mut b = [0u8; 8];
        // SAFETY: HAS_EXPIRE means 8 expiry bytes follow the fixed header.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(4), b.as_mut_ptr(), 8) };
        Some(i64::from_le_bytes(b))
    }

    /// The 24-bit access field (LRU clock or LFU data).
    #[inline]
    pub fn access(&self) -> u32 {
        let mut b = [0u8; 4];
        // SAFETY: bytes 1..4 always exist.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(1), b.as_mut_ptr(), 3) };
        u32::from_le_bytes(b)
    }

    #[inline]
    pub fn set_access(&mut self, access: u32) {
        let b = (access & ACCESS_MASK).to_le_bytes();
        // SAFETY: bytes 1..4 always exist and we hold the entry mutably.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.as_ptr().add(1), 3) };
    }

    /// Bytes requested from the allocator for this entry.
    pub fn requested_size(&self) -> usize {
        self.dims().total()
    }

    /// Bytes the allocator really set aside (its size class), which is what eviction frees.
    pub fn allocated_size(&self) -> usize {
        let n = self.requested_size();
        // SAFETY: nallocx only computes a size class; it touches no memory.
        let real = unsafe { tikv_jemalloc_sys::nallocx(n, 0) };
        if real == 0 {
            n
        } else {
            real
        }
    }

    /// Sets or clears the expiry. Rewrites in place when the layout does not change, otherwise reallocates.
    pub fn set_expire(&mut self, expire_at: Option<i64>) {
        match (self.has_expire(), expire_at) {
            (true, Some(at)) => {
                // SAFETY: HAS_EXPIRE: the 8 bytes at offset 4 are the expiry.
                unsafe { std::ptr::copy_nonoverlapping(at.to_le_bytes().as_ptr(), self.ptr.as_ptr().add(4), 8) };
            }
            (false, None) => {}
            _ => {
                let (key, value) = self.key_value();
                let d = self.dims();
                let rebuilt = Entry::build(self.kind(), key, value, d.val_cap, expire_at, self.access(), d.flags);
                *self = rebuilt;
            }
        }
    }

    /// Replaces the string value, keeping key, expiry and access clock. In place when the size is unchanged.
    pub fn set_str_value(&mut self, value: &[u8]) {
        let d = self.dims();
        if d.flags & WIDE == 0 && value.len() == d.val_len && self.kind() == ValueKind::Str {
            // SAFETY: same length as the current value, which lies inside the allocation.
            unsafe {
                let dst = self.ptr.as_ptr().add(d.header_len() + d.key_len);
                std::ptr::copy_nonoverlapping(value.as_ptr(), dst, value.len());
                *self.ptr.as_ptr() &= !ENCODING_FLAGS;
            }
            return;
        }
        let rebuilt = Entry::build(
            ValueKind::Str,
            self.key(),
            value,
            value.len(),
            self.expire_at(),
            self.access(),
            0,
        );
        *self = rebuilt;
    }

    /// Appends to a string value (APPEND), growing capacity geometrically so repeated appends stay linear.
    pub fn append_str(&mut self, tail: &[u8]) {
        let d = self.dims();
        let new_len = d.val_len + tail.len();
        if d.flags & WIDE != 0 && new_len <= d.val_cap {
            // SAFETY: the spare capacity lies inside the allocation; the new length fits in u32 because
            // proto-max-bulk-len keeps values far below 4 GiB (checked by the caller).
            unsafe {
                let base = self.ptr.as_ptr().add(d.header_len() + d.key_len);
                std::ptr::copy_nonoverlapping(tail.as_ptr(), base.add(d.val_len), tail.len());
                let len_off = d.header_len() - WIDE_LENS + 4;
                std::ptr::copy_nonoverlapping(
                    (new_len as u32).to_le_bytes().as_ptr(),
                    self.ptr.as_ptr().add(len_off),
                    4,
                );
                *self.ptr.as_ptr() |= RAW;
            }
            return;
        }
        let mut joined = Vec::with_capacity(new_len);
        joined.extend_from_slice(self.str_value());
        joined.extend_from_slice(tail);
        // Small results stay narrow and exact; only values that outgrow the narrow form keep slack.
        let cap = if new_len <= NARROW_MAX {
            new_len
        } else {
            grown_capacity(new_len)
        };
        let rebuilt = Entry::build(
            ValueKind::Str,
            self.key(),
            &joined,
            cap,
            self.expire_at(),
            self.access(),
            RAW,
        );
        *self = rebuilt;
    }

    /// Overwrites part of a string value (SETRANGE), zero-padding as needed.
    pub fn set_range(&mut self, offset: usize, data: &[u8]) {
        let old = self.str_value();
        let new_len = old.len().max(offset + data.len());
        let mut v = Vec::with_capacity(new_len);
        v.extend_from_slice(old);
        v.resize(new_len, 0);
        v[offset..offset + data.len()].copy_from_slice(data);
        let rebuilt = Entry::build(
            ValueKind::Str,
            self.key(),
            &v,
            v.len(),
            self.expire_at(),
            self.access(),
            RAW,
        );
        *self = rebuilt;
    }

    /// A copy of this entry under another key (RENAME, COPY, MOVE), keeping value, expiry and access data.
    pub fn clone_with_key(&self, key: &[u8]) -> Entry {
        Entry::build(
            self.kind(),
            key,
            self.str_value(),
            self.str_value().len(),
            self.expire_at(),
            self.access(),
            self.flags(),
        )
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let layout = self.dims().layout();
        // SAFETY: allocated in `build` with exactly this layout (dims are immutable except through rebuilds,
        // which replace the whole entry).
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.str_value().len())
            .field("expire_at", &self.expire_at())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_short_key_and_64_byte_value_fit_one_80_byte_class() {
        let e = Entry::new_str(b"key:123456", &[b'x'; 64], None, 0);
        assert_eq!(e.requested_size(), 80);
        assert_eq!(e.allocated_size(), 80);
        let t = Entry::new_str(b"key:123456", &[b'x'; 64], Some(1), 0);
        assert_eq!(t.requested_size(), 88);
    }

    #[test]
    fn fields_read_back() {
        let mut e = Entry::new_str(b"k", b"v", Some(-5), 0xABCDEF);
        assert_eq!(e.key(), b"k");
        assert_eq!(e.str_value(), b"v");
        assert_eq!(e.expire_at(), Some(-5));
        assert_eq!(e.access(), 0xABCDEF);
        e.set_access(0x1FFFFFF);
        assert_eq!(e.access(), 0xFFFFFF);
        assert_eq!(e.kind(), ValueKind::Str);
    }

    #[test]
    fn expiry_can_be_added_changed_and_removed() {
        let mut e = Entry::new_str(b"key", b"value", None, 7);
        e.set_expire(Some(1000));
        assert_eq!(e.expire_at(), Some(1000));
        e.set_expire(Some(2000));
        assert_eq!(e.expire_at(), Some(2000));
        e.set_expire(None);
        assert_eq!(e.expire_at(), None);
        assert_eq!((e.key(), e.str_value(), e.access()), (&b"key"[..], &b"value"[..], 7));
    }

    #[test]
    fn appends_grow_wide_values_geometrically() {
        let mut e = Entry::new_str(b"k", b"", None, 0);
        for i in 0..2000u32 {
            e.append_str(&i.to_le_bytes()[..1]);
        }
        assert_eq!(e.str_value().len(), 2000);
        assert!(e.is_raw());
        assert!(e.requested_size() >= 2000);
    }

    #[test]
    fn set_range_pads_with_zeros() {
        let mut e = Entry::new_str(b"k", b"ab", None, 0);
        e.set_range(4, b"cd");
        assert_eq!(e.str_value(), b"ab\0\0cd");
    }

    proptest! {
        #[test]
        fn any_key_value_round_trips(
            key in proptest::collection::vec(any::<u8>(), 0..600),
            value in proptest::collection::vec(any::<u8>(), 0..600),
            exp in proptest::option::of(any::<i64>()),
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut e = Entry::new_str(&key, &value, exp, 3);
            prop_assert_eq!(e.key(), &key[..]);
            prop_assert_eq!(e.str_value(), &value[..]);
            prop_assert_eq!(e.expire_at(), exp);
            e.append_str(&tail);
            let mut joined = value.clone();
            joined.extend_from_slice(&tail);
            prop_assert_eq!(e.str_value(), &joined[..]);
            prop_assert_eq!(e.key(), &key[..]);
            prop_assert_eq!(e.expire_at(), exp);
            e.set_str_value(&tail);
            prop_assert_eq!(e.str_value(), &tail[..]);
            let c = e.clone_with_key(b"other");
            prop_assert_eq!(c.key(), b"other");
            prop_assert_eq!(c.str_value(), &tail[..]);
        }
    }
}
