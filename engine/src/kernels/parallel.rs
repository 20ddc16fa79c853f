//! Work shared out over candle's thread pool, each task writing its own part of one buffer.

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
