//! Two more range-allocator peers for the fragmentation figure (B5) and the
//! memory benchmarks, driven through [`RangeAlloc`] behind the same
//! [`PeerLock`](crate::PeerLock) as the others:
//!
//! - offset-allocator 0.2 (Bevy; Aaltonen's O(1) allocator): `u32` units,
//!   no alignment, a node pool fixed at construction. Its free takes the
//!   `Allocation` handle it returned (offset plus a private node index), so
//!   the adapter keeps each live handle in a table indexed by offset: one
//!   load and one store per operation, the caller-side cost of its API.
//! - rlsf 0.2 (TLSF) as a byte-range allocator: one unit is a minimum TLSF
//!   block (32 bytes: a 16-byte header and 16 bytes of payload), so `n`
//!   units allocate a payload of `32 n - 16` bytes, over a pre-touched
//!   region of its own.

use core::alloc::Layout;
use core::ptr::NonNull;

use offset_allocator::{Allocation, Allocator};

use crate::contender::RangeAlloc;
use crate::heap_peers::{rlsf_tlsf, Region, RlsfTlsf};

/// The allocator and its live handles, indexed by offset.
type Handles = (Allocator<u32>, Vec<Option<Allocation<u32>>>);

/// offset-allocator behind a lock, with its handle table.
pub struct OffsetAlloc {
    inner: crate::PeerLock<Handles>,
}

impl OffsetAlloc {
    /// An allocator of `units` (below 2^32) with room for `max_allocs`
    /// live allocations and free ranges.
    ///
    /// # Panics
    /// Panics if `units` does not fit a `u32`.
    pub fn new(units: usize, max_allocs: u32) -> Self {
        let size = u32::try_from(units).expect("offset-allocator: u32 units only");
        Self {
            inner: crate::PeerLock::new((
                Allocator::with_max_allocs(size, max_allocs),
                vec![None; units],
            )),
        }
    }

    /// Allocates `size` units; `None` when offset-allocator reports no room.
    pub fn try_alloc(&self, size: usize) -> Option<usize> {
        let mut g = self.inner.lock();
        let (alloc, table) = &mut *g;
        let a = alloc.allocate(size as u32)?;
        table[a.offset as usize] = Some(a);
        Some(a.offset as usize)
    }

    /// Largest free region, in units (offset-allocator's storage report).
    pub fn largest_free(&self) -> usize {
        self.inner.lock().0.storage_report().largest_free_region as usize
    }
}

impl RangeAlloc for OffsetAlloc {
    #[inline]
    fn alloc(&self, size: usize) -> usize {
        self.try_alloc(size)
            .expect("offset-allocator: alloc failed")
    }

    #[inline]
    fn free(&self, addr: usize, _size: usize) {
        let mut g = self.inner.lock();
        let (alloc, table) = &mut *g;
        let a = table[addr].take().expect("offset-allocator: bad free");
        alloc.free(a);
    }
}

/// Bytes of one rlsf range unit (its minimum block).
pub const RLSF_UNIT: usize = rlsf::GRANULARITY;

/// rlsf as a range allocator over its own region.
pub struct RlsfRange {
    inner: crate::PeerLock<RlsfTlsf>,
}

// SAFETY: the TLSF pool is a leaked region owned by this value alone, and
// every access goes through the mutex.
unsafe impl Send for RlsfRange {}
// SAFETY: as above.
unsafe impl Sync for RlsfRange {}

fn payload(units: usize) -> Layout {
    Layout::from_size_align(units * RLSF_UNIT - 16, 8).expect("rlsf layout")
}

impl RlsfRange {
    /// A pool with room for about `units` units.
    ///
    /// # Panics
    /// Panics if rlsf refuses the region.
    pub fn new(units: usize) -> Self {
        let region = Region::leak((units + 64) * RLSF_UNIT, 4096);
        Self {
            inner: crate::PeerLock::new(rlsf_tlsf(region)),
        }
    }
}

impl RangeAlloc for RlsfRange {
    #[inline]
    fn alloc(&self, size: usize) -> usize {
        self.inner
            .lock()
            .allocate(payload(size))
            .expect("rlsf: alloc failed")
            .as_ptr() as usize
    }

    #[inline]
    fn free(&self, addr: usize, _size: usize) {
        // SAFETY: `addr` came from `alloc` (the RangeAlloc contract) and
        // is freed once; the alignment is the one allocated with.
        unsafe {
            self.inner
                .lock()
                .deallocate(NonNull::new_unchecked(addr as *mut u8), 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OffsetAlloc, RlsfRange};
    use crate::contender::{fragment, pair, RangeAlloc};

    #[test]
    fn fragment_and_pair() {
        let o = OffsetAlloc::new(1 << 12, 1024);
        let fences = fragment(&o, 100, false);
        assert_eq!(fences.len(), 100);
        pair(&o, 2);
        let x = o.alloc(2);
        assert!(x >= 200, "two units cannot come from a one-unit hole");
        o.free(x, 2);
        let r = RlsfRange::new(1000);
        let fences = fragment(&r, 100, true);
        assert_eq!(fences.len(), 100);
        pair(&r, 2);
    }
}
