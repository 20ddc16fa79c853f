//! Work shared out between threads, each task writing its own part of one buffer.
//!
//! Natively the threads are candle's barrier pool. In a browser they are Web Workers sharing
//! the module's memory ([`super::web_threads`]) when the worker bundle is built with atomics;
//! built without, the browser runs everything on its one thread. Every task computes whole
//! rows in a fixed order, so how the rows are shared out never changes a result's bits.

use std::ops::Range;

/// Runs `task` over `0..items` in ranges, on every thread there is; returns when all are done.
pub fn for_each_range(items: usize, task: impl Fn(Range<usize>) + Sync) {
    #[cfg(not(target_arch = "wasm32"))]
    candle_core::utils::barrier_pool().execute_chunked(items, task);
    #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
    super::web_threads::for_each_range(items, task);
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    if items > 0 {
        task(0..items);
    }
}

/// How many threads [`for_each_range`] shares work between.
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return candle_core::utils::barrier_pool().n_workers() + 1;
    #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
    return super::web_threads::threads();
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    return 1;
}

/// An output buffer that the thread pool's tasks fill in disjoint parts.
#[derive(Clone, Copy)]
pub struct SharedOutput(*mut f32);

// SAFETY: the pointer is only written through `write_row`, whose callers promise disjoint
// ranges of a buffer that outlives the tasks; nothing reads through it.
unsafe impl Send for SharedOutput {}
// SAFETY: as for `Send`: concurrent writes never touch the same element.
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    pub fn new(buffer: &mut [f32]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    /// # Safety
    /// `start..start + row.len()` is inside the buffer, which outlives the tasks, and no other
    /// task writes there.
    pub unsafe fn write_row(&self, start: usize, row: &[f32]) {
        /// A copy of a length known at compile time: a few moves, where the general copy calls
        /// `memcpy` — 8% of a 512-token prompt's time went to calls writing four or eight sums.
        ///
        /// # Safety
        /// As `write_row`'s, for `N` values.
        unsafe fn write<const N: usize>(to: *mut f32, row: &[f32]) -> bool {
            let Ok(values) = <[f32; N]>::try_from(row) else {
                return false;
            };
            // SAFETY: N values in bounds, written by no one else (the caller's promise).
            unsafe { to.cast::<[f32; N]>().write_unaligned(values) };
            true
        }
        // SAFETY: in bounds and not written by anyone else (the caller's promise); `row` is a
        // separate allocation, so the ranges do not overlap.
        unsafe {
            let to = self.0.add(start);
            if !(write::<4>(to, row) || write::<8>(to, row)) {
                std::ptr::copy_nonoverlapping(row.as_ptr(), to, row.len());
            }
        }
    }
}
