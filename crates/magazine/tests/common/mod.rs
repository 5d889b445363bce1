//! Shared kit of the magazine tests: magazine memory from the heap that
//! counts what is live and fails on demand, and the one-source wrappers of
//! the layer's source-taking calls.
#![allow(dead_code, unreachable_pub)]

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::alloc::{alloc, dealloc};

use kmem_magazine::{MagazineSource, Magazines, MAGAZINE_ALIGN};

/// Magazine memory from the heap; counts, and fails on demand.
#[derive(Default)]
pub struct Heap {
    pub live: AtomicUsize,
    pub fail: AtomicBool,
}

fn layout(bytes: usize) -> Layout {
    Layout::from_size_align(bytes, MAGAZINE_ALIGN).unwrap()
}

// SAFETY: fresh heap blocks of the magazine size and alignment.
unsafe impl MagazineSource for Heap {
    fn alloc_magazine(&self, bytes: usize) -> Option<NonNull<u8>> {
        if self.fail.load(Ordering::SeqCst) {
            return None;
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        // SAFETY: non-zero size.
        NonNull::new(unsafe { alloc(layout(bytes)) })
    }
    unsafe fn free_magazine(&self, mem: NonNull<u8>, bytes: usize) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: allocated above with this layout.
        unsafe { dealloc(mem.as_ptr(), layout(bytes)) }
    }
}

/// Every layer of these tests gets its magazines from one `Heap`, so the
/// source-taking calls are sound: these wrap them.
pub trait OneHeap {
    fn put(&self, obj: usize, heap: &Heap) -> Result<(), usize>;
    fn drain_depot_to(&self, heap: &Heap, sink: impl FnMut(usize)) -> usize;
    fn drain_all_to(&mut self, heap: &Heap, sink: impl FnMut(usize)) -> usize;
    fn trim_to(&self, heap: &Heap, sink: impl FnMut(usize)) -> usize;
    fn purge_to(&self, heap: &Heap, sink: impl FnMut(usize)) -> kmem_magazine::Purge;
    fn purge_idle_to(&self, heap: &Heap, sink: impl FnMut(usize)) -> kmem_magazine::Purge;
}

impl<C: kmem_magazine::Cpu> OneHeap for Magazines<'_, C> {
    fn put(&self, obj: usize, heap: &Heap) -> Result<(), usize> {
        // SAFETY: `heap` is this layer's only magazine source.
        unsafe { self.free(obj, heap) }
    }
    fn drain_depot_to(&self, heap: &Heap, sink: impl FnMut(usize)) -> usize {
        // SAFETY: as above.
        unsafe { self.drain_depot(heap, sink) }
    }
    fn drain_all_to(&mut self, heap: &Heap, sink: impl FnMut(usize)) -> usize {
        // SAFETY: as above.
        unsafe { self.drain_all(heap, sink) }
    }
    fn trim_to(&self, heap: &Heap, mut sink: impl FnMut(usize)) -> usize {
        // SAFETY: as above.
        unsafe { self.trim(heap, |batch| batch.for_each(&mut sink)) }
    }
    fn purge_to(&self, heap: &Heap, sink: impl FnMut(usize)) -> kmem_magazine::Purge {
        // SAFETY: as above.
        unsafe { self.purge(heap, sink) }
    }
    fn purge_idle_to(&self, heap: &Heap, sink: impl FnMut(usize)) -> kmem_magazine::Purge {
        // SAFETY: as above.
        unsafe { self.purge_idle(heap, sink) }
    }
}
