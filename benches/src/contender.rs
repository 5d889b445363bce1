//! The one thin interface every range allocator is driven through, and the
//! timed operations built on it.
//!
//! Sizes and results are resource units (addresses or IDs), as in a vmem
//! arena. Failures panic: a benchmark that runs out of space is broken, and
//! a `Result` check costs every contender the same branch.

use core::hint::black_box;

use kmem_arena::{Arena, Policy};

use crate::vmem_peer::VmemArena;

/// A range allocator under test: allocate `size` units, free a range.
pub trait RangeAlloc {
    /// Allocates `size` units by instant fit; returns the start.
    fn alloc(&self, size: usize) -> usize;
    /// Frees the range `[addr, addr + size)` returned by [`alloc`](Self::alloc).
    fn free(&self, addr: usize, size: usize);
}

impl RangeAlloc for Arena<'_> {
    #[inline]
    fn alloc(&self, size: usize) -> usize {
        Arena::alloc(self, size, Policy::InstantFit).expect("kmem arena: alloc failed")
    }

    #[inline]
    fn free(&self, addr: usize, size: usize) {
        Arena::free(self, addr, size).expect("kmem arena: free failed");
    }
}

impl RangeAlloc for VmemArena {
    #[inline]
    fn alloc(&self, size: usize) -> usize {
        vmem::Arena::alloc(self, size, vmem::AllocPolicy::InstantFit)
            .expect("vmem arena: alloc failed")
    }

    #[inline]
    fn free(&self, addr: usize, _size: usize) {
        vmem::Arena::free(self, addr).expect("vmem arena: free failed");
    }
}

/// One alloc+free pair of `size` units: the new segment is freed at once.
#[inline]
pub fn pair<A: RangeAlloc + ?Sized>(a: &A, size: usize) {
    let addr = a.alloc(size);
    a.free(black_box(addr), size);
}

/// Allocates `size` units, then frees the live segment `live[slot]` and puts
/// the new one in its place: the live count stays the same, and the freed
/// segment is an old one chosen by the caller's trace.
#[inline]
pub fn replace<A: RangeAlloc + ?Sized>(a: &A, live: &mut [usize], slot: usize, size: usize) {
    let addr = a.alloc(size);
    let old = core::mem::replace(&mut live[slot], addr);
    a.free(old, size);
}

/// Fills `a` with `count` live segments of `size` units; returns their starts.
pub fn fill<A: RangeAlloc + ?Sized>(a: &A, count: usize, size: usize) -> Vec<usize> {
    (0..count).map(|_| a.alloc(size)).collect()
}
