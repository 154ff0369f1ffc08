//! The global allocator: jemalloc, with a running count of the bytes it has handed out.
//!
//! Eviction must know used memory before every write, as Redis's `zmalloc_used_memory()` does. jemalloc's own
//! totals (`stats.allocated`) need an epoch advance that costs about 5 µs, far too much per command; so
//! every allocation and free adds or subtracts its size *as jemalloc rounds it* (`nallocx`, the size class it
//! really reserves) to a per-thread counter, which is folded into one global counter every
//! [`FLUSH_BYTES`]. Reading used memory is then one atomic load, off by at most `FLUSH_BYTES` per thread, and
//! it agrees with jemalloc's `stats.allocated` (both count size classes of live allocations; INFO shows both).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

use tikv_jemallocator::Jemalloc;

/// A thread folds its running count into the global one once it moves this far either way.
pub const FLUSH_BYTES: i64 = 4 * 1024;

static USED: AtomicI64 = AtomicI64::new(0);

thread_local! {
    // `const` and without a destructor, so it stays usable while a thread is being torn down.
    static PENDING: Cell<i64> = const { Cell::new(0) };
}

/// jemalloc that counts what it hands out.
pub struct CountingJemalloc;

#[inline]
fn class_size(layout: Layout) -> i64 {
    if layout.align() <= 16 && layout.size() <= SIZE_CLASS_FORMULA_MAX {
        // The formula is what nallocx computes for these sizes (tested below), without a call into jemalloc on
        // every allocation and free: nallocx was 1.2% of the instructions of pipelined SETs.
        return size_class(layout.size()) as i64;
    }
    let flags = if layout.align() > 16 {
        layout.align().trailing_zeros() as i32
    } else {
        0
    };
    // SAFETY: nallocx only computes the size class for (size, flags); it touches no memory.
    let n = unsafe { tikv_jemalloc_sys::nallocx(layout.size().max(1), flags) };
    if n == 0 {
        layout.size() as i64
    } else {
        n as i64
    }
}

/// Largest size [`size_class`] is used for in accounting (the range its test checks against jemalloc).
const SIZE_CLASS_FORMULA_MAX: usize = 1 << 20;

/// The size class jemalloc rounds an allocation of `n` bytes (alignment up to 16) up to: 8, then multiples of
/// 16 up to 128, then four classes per doubling.
#[inline]
pub fn size_class(n: usize) -> usize {
    if n <= 8 {
        return 8;
    }
    if n <= 128 {
        return n.div_ceil(16) * 16;
    }
    let step = 1usize << ((usize::BITS - 1 - (n - 1).leading_zeros()) - 2);
    n.div_ceil(step) * step
}

#[inline]
fn account(delta: i64) {
    let folded = PENDING.try_with(|p| {
        let v = p.get() + delta;
        if v.abs() >= FLUSH_BYTES {
            p.set(0);
            USED.fetch_add(v, Ordering::Relaxed);
        } else {
            p.set(v);
        }
    });
    if folded.is_err() {
        USED.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to jemalloc with the caller's layout unchanged; the accounting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for CountingJemalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { Jemalloc.alloc(layout) };
        if !p.is_null() {
            account(class_size(layout));
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { Jemalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            account(class_size(layout));
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-class_size(layout));
        unsafe { Jemalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Layout::from_size_align cannot fail here: the caller guarantees new_size fits the alignment.
            if let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) {
                account(class_size(new_layout) - class_size(layout));
            }
        }
        p
    }
}

/// Bytes currently allocated through the global allocator (size classes), within `FLUSH_BYTES` per thread.
#[inline]
pub fn used_bytes() -> u64 {
    USED.load(Ordering::Relaxed).max(0) as u64
}

/// Folds this thread's pending count into the total now (INFO does this before reporting).
pub fn flush_thread() {
    let _ = PENDING.try_with(|p| {
        let v = p.replace(0);
        if v != 0 {
            USED.fetch_add(v, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_class_is_what_jemalloc_reserves() {
        let sizes = (0..=4096)
            .chain((4097..=SIZE_CLASS_FORMULA_MAX).step_by(61))
            .chain([SIZE_CLASS_FORMULA_MAX - 1, SIZE_CLASS_FORMULA_MAX]);
        for n in sizes {
            // SAFETY: nallocx only computes a size class.
            let real = unsafe { tikv_jemalloc_sys::nallocx(n.max(1), 0) };
            assert_eq!(size_class(n), real, "size class of {n}");
        }
    }
}
