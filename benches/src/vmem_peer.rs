//! How the `vmem` crate (1.0, the only crates.io vmem) is driven: a
//! preallocated pool of boundary tags and the same spin lock kmem uses.
//!
//! vmem leaves boundary-tag allocation to its user. Its docs suggest a
//! slab-style cache; the fair equivalent of kmem's tag store is a pool of
//! tag slots threaded on an intrusive free list ([`PoolTags`]): popping and
//! pushing a tag is a load and a store, and the pool is sized up front so no
//! timed operation reaches the global allocator (it still grows by whole
//! chunks if a workload outruns it). A vmem arena needs at most one tag per
//! segment plus one per span, so a workload of `n` live segments needs fewer
//! than `2n + 2 * spans + 2` tags. The lock is
//! [`SpinLock`], a [`PeerLock<()>`](crate::PeerLock), the lock type `kmem-arena` uses in a `std` build.

use core::alloc::Layout;
use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use std::alloc::{alloc, dealloc, handle_alloc_error};

use vmem::Bt;

/// A vmem arena as the benches drive it.
pub type VmemArena = vmem::Arena<'static, 'static, PoolTags, SpinLock>;

/// Tags added per chunk when a pool runs dry.
const GROW_TAGS: usize = 4096;

/// A pool of vmem boundary tags: chunks of slots from the global allocator,
/// unused slots on an intrusive free list (the link is stored in the slot).
/// Single-threaded (`!Sync`), as every bench drives its arena from one thread.
pub struct PoolTags {
    head: Cell<Option<NonNull<Bt>>>,
    chunks: RefCell<Vec<(NonNull<Bt>, Layout)>>,
}

impl PoolTags {
    /// A pool holding `capacity` unused tags (at least one chunk).
    pub fn with_capacity(capacity: usize) -> Self {
        let pool = Self {
            head: Cell::new(None),
            chunks: RefCell::new(Vec::new()),
        };
        pool.grow(capacity.max(GROW_TAGS));
        pool
    }

    /// Adds a chunk of `n` slots to the free list.
    #[cold]
    fn grow(&self, n: usize) {
        let layout = Layout::array::<Bt>(n).expect("tag pool too large");
        // SAFETY: `layout` has a non-zero size (n > 0, Bt is not zero-sized).
        let chunk = unsafe { alloc(layout) }.cast::<Bt>();
        let Some(chunk) = NonNull::new(chunk) else {
            handle_alloc_error(layout)
        };
        for i in (0..n).rev() {
            // SAFETY: `i < n`, so the slot lies inside the fresh chunk.
            let slot = unsafe { chunk.add(i) };
            // SAFETY: the slot is unused and ours; see `push`.
            unsafe { self.push(slot) };
        }
        self.chunks.borrow_mut().push((chunk, layout));
    }

    /// Puts an unused slot on the free list.
    ///
    /// # Safety
    /// `slot` is a slot of one of this pool's chunks that nobody uses.
    #[inline]
    unsafe fn push(&self, slot: NonNull<Bt>) {
        // SAFETY: an unused slot is at least pointer-sized and -aligned
        // (Bt holds pointers), and nobody else reads or writes it.
        unsafe { slot.cast::<Option<NonNull<Bt>>>().write(self.head.get()) };
        self.head.set(Some(slot));
    }
}

// SAFETY: `allocate` hands out distinct, unused slots of the pool's chunks,
// each sized and aligned for a `Bt` (`Layout::array::<Bt>`), valid until the
// pool is dropped; a slot comes back only through `deallocate`.
unsafe impl vmem::Allocator for PoolTags {
    #[inline]
    fn allocate(&self) -> Option<NonNull<Bt>> {
        let slot = match self.head.get() {
            Some(slot) => slot,
            None => {
                self.grow(GROW_TAGS);
                self.head.get()?
            }
        };
        // SAFETY: `slot` is on the free list, so it holds the link `push`
        // stored; it leaves the list here.
        let next = unsafe { slot.cast::<Option<NonNull<Bt>>>().read() };
        self.head.set(next);
        Some(slot)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<Bt>) {
        // SAFETY: the caller returns a slot `allocate` handed out and no
        // longer uses it.
        unsafe { self.push(ptr) };
    }
}

impl Drop for PoolTags {
    fn drop(&mut self) {
        for &(chunk, layout) in self.chunks.get_mut().iter() {
            // SAFETY: allocated in `grow` with this layout; the arena that
            // used the tags is gone (it owns the pool and drops it last).
            unsafe { dealloc(chunk.as_ptr().cast(), layout) };
        }
    }
}

/// vmem's lock, as a [`PeerLock<()>`](crate::PeerLock) (kmem-arena's lock
/// type in a `std` build), so both arenas pay the same lock and unlock.
#[derive(Default)]
pub struct SpinLock(crate::PeerLock<()>);

// SAFETY: the guard is a `spin::MutexGuard`, which grants exclusive access
// until it is dropped.
unsafe impl vmem::Lock for SpinLock {
    type Guard<'a> = spin::MutexGuard<'a, ()>;

    #[inline]
    fn lock(&self) -> Self::Guard<'_> {
        self.0.lock()
    }
}

/// A vmem arena of `quantum` over the span `[base, base + size)`, with a
/// tag pool preallocated for `tags` boundary tags.
///
/// # Panics
/// Panics if vmem refuses the quantum (not a power of two) or the span.
pub fn arena(
    label: &'static str,
    quantum: usize,
    base: usize,
    size: usize,
    tags: usize,
) -> VmemArena {
    let arena = vmem::Arena::create(label, quantum, None, PoolTags::with_capacity(tags))
        .expect("vmem: bad quantum");
    arena.add_span(base, size).expect("vmem: add_span failed");
    arena
}

#[cfg(test)]
mod tests {
    use crate::contender::{fill, pair, replace};

    #[test]
    fn pool_grows_and_recycles() {
        // More segments than one chunk of tags: the pool must grow.
        let a = super::arena("t", 1, 1 << 20, 1 << 30, 1);
        let mut live = fill(&a, 5000, 3);
        assert_eq!(a.allocated_space(), 5000 * 3);
        for i in 0..5000 {
            replace(&a, &mut live, (i * 7) % 5000, 3);
            pair(&a, 3);
        }
        assert_eq!(a.allocated_space(), 5000 * 3);
        for addr in live {
            vmem::Arena::free(&a, addr).unwrap();
        }
        assert_eq!(a.allocated_space(), 0);
        assert_eq!(a.free_space(), 1 << 30);
    }
}
