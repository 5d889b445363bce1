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

impl<A: RangeAlloc + ?Sized> RangeAlloc for &A {
    #[inline]
    fn alloc(&self, size: usize) -> usize {
        (**self).alloc(size)
    }

    #[inline]
    fn free(&self, addr: usize, size: usize) {
        (**self).free(addr, size);
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

/// A kmem arena driven with a given policy (the plain [`RangeAlloc`] impl
/// of [`Arena`] uses instant fit).
pub struct Fitted<'r, 'a> {
    /// The arena.
    pub arena: &'r Arena<'a>,
    /// Its allocation policy.
    pub policy: Policy,
}

impl RangeAlloc for Fitted<'_, '_> {
    #[inline]
    fn alloc(&self, size: usize) -> usize {
        Arena::alloc(self.arena, size, self.policy).expect("kmem arena: alloc failed")
    }

    #[inline]
    fn free(&self, addr: usize, size: usize) {
        Arena::free(self.arena, addr, size).expect("kmem arena: free failed");
    }
}

/// Builds Bonwick & Adams' figure 4.5.1 state in `a`: `2 * holes`
/// single-unit allocations, then every other one freed (the first, third,
/// ...), leaving `holes` one-unit free segments, each fenced by a live one,
/// below the free tail. `descending` frees the holes highest first (the
/// order some peers need to build large states in reasonable time; the
/// resulting state is the same). Returns the live fences.
pub fn fragment<A: RangeAlloc + ?Sized>(a: &A, holes: usize, descending: bool) -> Vec<usize> {
    let all = fill(a, 2 * holes, 1);
    let freed: Vec<usize> = all.iter().step_by(2).copied().collect();
    if descending {
        freed.iter().rev().for_each(|&x| a.free(x, 1));
    } else {
        freed.iter().for_each(|&x| a.free(x, 1));
    }
    all.into_iter().skip(1).step_by(2).collect()
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
