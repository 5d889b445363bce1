//! The one thin interface every object allocator is driven through (the
//! object-layer counterpart of [`RangeAlloc`](crate::contender::RangeAlloc)),
//! its adapters, and the timed operations built on it.
//!
//! Objects are addresses. Failures panic: a benchmark that runs out of
//! memory is broken, and the check costs every contender the same branch.
//!
//! The adapters are always inlined, so that a timed loop runs each
//! allocator's own path as its caller's code would get it (a kmem cache's
//! `alloc` and `free` are `#[inline(always)]`), whatever the compiler
//! decides for a wrapper.

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use core::ptr::NonNull;

use kmem_magazine::Cpu;
use kmem_slab::{AllocFlags, KmemCache};

/// An object allocator under test: one fixed object size, chosen when the
/// allocator (a kmem cache) or its adapter ([`Heap`]) is built.
pub trait ObjectAlloc: Sync {
    /// Allocates one object; returns its address.
    fn alloc(&self) -> usize;
    /// Frees an object.
    ///
    /// # Safety
    /// `obj` came from this allocator's [`alloc`](Self::alloc) and has not
    /// been freed since.
    unsafe fn free(&self, obj: usize);
}

impl<C: Cpu> ObjectAlloc for KmemCache<'_, C> {
    #[inline(always)]
    fn alloc(&self) -> usize {
        KmemCache::alloc(self, AllocFlags::empty()).expect("kmem cache: alloc failed")
    }

    #[inline(always)]
    unsafe fn free(&self, obj: usize) {
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { KmemCache::free(self, obj) }.expect("kmem cache: free failed");
    }
}

/// A [`GlobalAlloc`] (the `mimalloc` crate's `MiMalloc`, `std`'s `System`)
/// called directly with one fixed layout, not installed as the process's
/// global allocator.
pub struct Heap<A> {
    heap: A,
    layout: Layout,
}

impl<A: GlobalAlloc> Heap<A> {
    /// Objects of `size` bytes aligned to 8 (what a kmem cache of `size`
    /// gives by default) from `heap`.
    ///
    /// # Panics
    /// Panics if `size` is zero or too large for a layout.
    pub fn new(heap: A, size: usize) -> Self {
        assert!(size > 0, "heap adapter: zero-sized objects");
        let layout = Layout::from_size_align(size, 8).expect("heap adapter: bad layout");
        Self { heap, layout }
    }
}

impl<A: GlobalAlloc + Sync> ObjectAlloc for Heap<A> {
    #[inline(always)]
    fn alloc(&self) -> usize {
        // SAFETY: the layout has a non-zero size (checked in `new`).
        let p = unsafe { self.heap.alloc(self.layout) };
        NonNull::new(p).expect("heap: alloc failed").as_ptr() as usize
    }

    #[inline(always)]
    unsafe fn free(&self, obj: usize) {
        // SAFETY: `obj` came from `alloc` with this layout (the caller's
        // guarantee) and is freed once.
        unsafe { self.heap.dealloc(obj as *mut u8, self.layout) };
    }
}

/// One alloc+free pair of `layout` (non-zero size) through a `GlobalAlloc`.
#[inline]
pub fn layout_pair<A: GlobalAlloc + ?Sized>(a: &A, layout: Layout) {
    // SAFETY: callers pass a non-zero-size layout.
    let p = unsafe { a.alloc(layout) };
    assert!(!p.is_null(), "allocation failed");
    // SAFETY: just allocated with `layout`, freed once.
    unsafe { a.dealloc(black_box(p), layout) };
}

/// One alloc+free pair: the new object is freed at once.
#[inline]
pub fn pair<A: ObjectAlloc + ?Sized>(a: &A) {
    let obj = a.alloc();
    // SAFETY: just allocated, freed once.
    unsafe { a.free(black_box(obj)) };
}

/// A LIFO batch: allocates `held.len()` objects into `held`, then frees them
/// newest first.
#[inline]
pub fn lifo<A: ObjectAlloc + ?Sized>(a: &A, held: &mut [usize]) {
    for slot in held.iter_mut() {
        *slot = a.alloc();
    }
    black_box(&mut *held);
    for &obj in held.iter().rev() {
        // SAFETY: allocated above, each freed once.
        unsafe { a.free(obj) };
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;
    use std::collections::HashSet;

    use super::{lifo, pair, Heap, ObjectAlloc};

    #[test]
    fn heap_objects_are_distinct_and_aligned() {
        let h = Heap::new(System, 64);
        let mut held = [0usize; 100];
        for slot in &mut held {
            *slot = h.alloc();
        }
        let distinct: HashSet<usize> = held.iter().copied().collect();
        assert_eq!(distinct.len(), held.len());
        assert!(held.iter().all(|&p| p % 8 == 0));
        for &p in &held {
            // SAFETY: allocated above, freed once.
            unsafe { h.free(p) };
        }
        pair(&h);
        lifo(&h, &mut held);
    }
}
