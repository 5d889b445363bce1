//! How the `range-alloc` crate (0.1.5, gfx-rs; wgpu-hal's) is driven: a
//! `RangeAllocator<usize>` behind the same spin lock kmem uses.
//!
//! `RangeAllocator` keeps only the free ranges, in a `Vec` sorted by start.
//! `allocate_range(len)` scans it for the best fit (stopping at an exact
//! fit) and `free_range(range)` scans it for the insertion point, then
//! merges or inserts: both are linear in the number of *free* ranges, and
//! nothing is kept per allocation. In the 10^4-live workloads the live
//! segments are packed below the free tail, so the `Vec` holds at most two
//! ranges (one hole and the tail): these workloads measure its constant
//! cost, not its growth with fragmentation.
//!
//! The methods take `&mut self`, so the allocator sits in a [`PeerLock`](crate::PeerLock)
//! (the lock type `kmem-arena` and the vmem peer use) and each operation pays
//! one uncontended lock and unlock, as theirs do. The plain
//! `allocate_range` is used: the span's base and every size are multiples
//! of the fixture's quantum, so every start is quantum-aligned already, as in
//! the kmem and vmem arenas (which are not asked for extra alignment either).
//! Once the `Vec` has room for a hole, no operation reaches the global
//! allocator.

use core::ops::Range;

use range_alloc::RangeAllocator;

use crate::contender::RangeAlloc;

/// A range-alloc `RangeAllocator` as the benches drive it.
pub struct RangeAllocPeer {
    inner: crate::PeerLock<RangeAllocator<usize>>,
}

impl RangeAllocPeer {
    /// An allocator over `[base, base + size)`.
    pub fn new(base: usize, size: usize) -> Self {
        Self {
            inner: crate::PeerLock::new(RangeAllocator::new(base..base + size)),
        }
    }

    /// Allocates `size` units aligned to `align` (best fit); `None` when
    /// range-alloc refuses.
    pub fn try_alloc_aligned(&self, size: usize, align: usize) -> Option<usize> {
        self.inner
            .lock()
            .allocate_range_aligned(size, align)
            .ok()
            .map(|r| r.start)
    }

    /// True when nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().is_empty()
    }
}

impl RangeAlloc for RangeAllocPeer {
    #[inline]
    fn alloc(&self, size: usize) -> usize {
        self.inner
            .lock()
            .allocate_range(size)
            .expect("range-alloc: alloc failed")
            .start
    }

    #[inline]
    fn free(&self, addr: usize, size: usize) {
        let range: Range<usize> = addr..addr + size;
        self.inner.lock().free_range(range);
    }
}

#[cfg(test)]
mod tests {
    use super::RangeAllocPeer;
    use crate::contender::{fill, pair, replace, RangeAlloc};

    #[test]
    fn churn_keeps_the_space_whole() {
        for quantum in [1, 4096] {
            let base = 1usize << 32;
            let a = RangeAllocPeer::new(base, 1 << 40);
            let mut live = fill(&a, 500, quantum);
            assert_eq!(live[499], base + 499 * quantum);
            for i in 0..2000 {
                replace(&a, &mut live, (i * 7) % 500, quantum);
                pair(&a, quantum);
            }
            // Best fit refills the one hole: the live set stays packed.
            assert!(live.iter().all(|&x| x < base + 501 * quantum));
            assert!(!a.is_empty());
            for addr in live {
                a.free(addr, quantum);
            }
            assert!(a.is_empty());
        }
    }
}
