//! Shared kit of the magazine tests: magazine memory from the heap that
//! counts what is live and fails on demand, the one-source wrappers of
//! the layer's source-taking calls, and a layer on hand-chosen slots that
//! is drained and checked after each test.
#![allow(dead_code, unreachable_pub)]

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::alloc::{alloc, dealloc};

use kmem_magazine::{
    CpuCache, MagazineSource, Magazines, ManualCpus, ResizePolicy, MAGAZINE_ALIGN,
};

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

/// A resize policy that grows the magazines on every contended depot visit
/// (while not-empty magazines exist), however long ago the last one was.
pub const GROW_ON_CONTENTION: ResizePolicy = ResizePolicy {
    window_ns: u64::MAX,
    threshold: 0,
};

/// A layer of `size`-byte objects with resize `policy` on `N` slots chosen
/// by hand (slot 0 first), its magazines from a fresh [`Heap`]: runs
/// `f(cpus, heap, m)`, then drains the layer and checks that every magazine
/// went back to the heap (and that the layer counts none). Answers what `f` answered and the rounds the
/// drain took out.
pub fn with_layer<const N: usize, R>(
    size: usize,
    policy: ResizePolicy,
    f: impl FnOnce(&ManualCpus<N>, &Heap, &Magazines<'_, ManualCpus<N>>) -> R,
) -> (R, Vec<usize>) {
    let (cpus, heap) = (ManualCpus::<N>::new(), Heap::default());
    let mut s: Vec<CpuCache> = (0..N).map(|_| CpuCache::new()).collect();
    let mut m = Magazines::with_policy(&cpus, &mut s, size, policy).unwrap();
    let r = f(&cpus, &heap, &m);
    let mut drained = Vec::new();
    m.drain_all_to(&heap, |o| drained.push(o));
    assert_eq!(
        heap.live.load(Ordering::SeqCst),
        0,
        "a magazine is still out"
    );
    let st = m.stats();
    assert_eq!((st.magazines_live(), st.magazine_bytes), (0, 0), "{st:?}");
    (r, drained)
}

/// Frees each of `objs` into `m` on the current slot; every free must be
/// taken.
pub fn put_all<C: kmem_magazine::Cpu>(
    m: &Magazines<'_, C>,
    heap: &Heap,
    objs: impl IntoIterator<Item = usize>,
) {
    for o in objs {
        m.put(o, heap).unwrap();
    }
}
