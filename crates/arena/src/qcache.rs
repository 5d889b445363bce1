//! Quantum caches: object caches in front of an arena for its smallest
//! sizes (Bonwick & Adams section 4.4). The arena defines the interface and
//! the slab layer implements it (`kmem_slab::QCaches`), so this crate never
//! depends on the slab crate.

use crate::{AllocError, Arena, FreeError};

/// Caches that serve an arena's [`alloc`](Arena::alloc) and
/// [`free`](Arena::free) of every size from one quantum up to
/// [`max`](Self::max), one cache per multiple of the quantum.
///
/// An arena built with [`ArenaBuilder::qcaches`](crate::ArenaBuilder::qcaches)
/// calls these methods without holding its lock and passes itself, so the
/// caches grow by allocating slabs from it: a slab is larger than `max`, so
/// those allocations take the arena's segment path, never the caches again.
/// `xalloc` and `xfree` bypass the caches.
///
/// # Safety
/// Implementors promise that `alloc` returns only values inside slabs they
/// allocated from the `arena` passed in, each handed to one caller at a
/// time, a multiple of [`quantum`](Self::quantum) apart from its slab's base
/// (so quantum-aligned), and that `destroy` returns every slab to `arena`
/// or refuses.
pub unsafe trait QuantumCaches: Sync {
    /// The arena quantum the caches were built for.
    fn quantum(&self) -> usize;

    /// The largest cached size (a multiple of the quantum).
    fn max(&self) -> usize;

    /// True when the caches treat their values as memory; an arena refuses
    /// caches that disagree with it about that
    /// ([`CreateError::QcacheMemory`](crate::CreateError::QcacheMemory)).
    fn is_memory(&self) -> bool;

    /// Marks the caches as serving one arena; false when an arena already
    /// holds them (or held them and destroyed them).
    fn attach(&self) -> bool;

    /// Allocates `size` units (a multiple of the quantum, at most
    /// [`max`](Self::max)), growing from `arena` when the cache is empty.
    fn alloc(&self, arena: &Arena<'_>, size: usize) -> Result<usize, AllocError>;

    /// Frees `addr`, allocated by [`alloc`](Self::alloc) with `size` (a
    /// multiple of the quantum, at most [`max`](Self::max)). Unsafe: for a
    /// memory arena, a free of memory someone still uses would hand it out
    /// twice (use [`Arena::free_memory`], which forwards here).
    ///
    /// # Safety
    /// As for [`Arena::free_memory`]: if `arena` is a memory arena, `addr`
    /// was allocated with `size`, is the caller's, and is not used after.
    unsafe fn free(&self, arena: &Arena<'_>, addr: usize, size: usize) -> Result<(), FreeError>;

    /// Returns what the caches hold idle (the depot's objects, empty slabs)
    /// to `arena`; returns the units given back.
    fn reap(&self, arena: &Arena<'_>) -> usize;

    /// One upkeep pass ([`Arena::tick`]): returns to `arena` what the
    /// caches held idle through a whole interval between two passes (the
    /// slab layer trims its depots' working sets and frees empty slabs).
    /// Returns the units given back. The default reaps everything idle.
    fn tick(&self, arena: &Arena<'_>) -> usize {
        self.reap(arena)
    }

    /// What the arena calls when an allocation finds it exhausted, before
    /// trying again: [`reap`](Self::reap), and whatever else the caches can
    /// give back at once (the caller's own per-CPU magazines, say).
    /// Returns the units given back. The default reaps.
    fn reclaim(&self, arena: &Arena<'_>) -> usize {
        self.reap(arena)
    }

    /// Drains every magazine and returns every slab to `arena`, leaving the
    /// caches unusable; refuses with the number of objects still allocated,
    /// leaving the caches working.
    ///
    /// # Safety
    /// No other call on these caches runs during this one or starts after a
    /// successful one (the arena calls it from `destroy(&mut self)`).
    unsafe fn destroy(&self, arena: &Arena<'_>) -> Result<(), usize>;
}
