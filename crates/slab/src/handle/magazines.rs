//! [`CacheMagazines`]: a cache's magazine layer, with the one magazine
//! source it ever uses and the per-CPU array it lives on.
//!
//! `Magazines::free`, `drain_depot` and `drain_all` are unsafe because every
//! call must pass the same source. Here the source is fixed when the layer
//! is built (its set's `kmem_magazine` cache, for which the layer itself
//! stands as the [`MagazineSource`]), so the wrappers are safe; on the fast
//! path they compile to the bare call.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use kmem_magazine::{
    Cpu, CpuCache, MagazineSource, MagazineStats, Magazines, Purge, RefillSink, ResizePolicy,
    MAGAZINE_ALIGN, MAGAZINE_SIZES,
};

use crate::cache::KmemCache;
use crate::raw::{Freed, MetaMem, Taken};
use crate::slabs::From;

// SAFETY: `alloc_magazine(bytes)` hands out an object of the set's
// magazine cache for `bytes` (`source`) only after checking it is `bytes`
// bytes of memory aligned to `MAGAZINE_ALIGN`; an object it hands out is
// used by no one else until `free_magazine` gives it back to that cache.
unsafe impl<C: Cpu> MagazineSource for CacheMagazines<'_, C> {
    fn alloc_magazine(&self, bytes: usize) -> Option<NonNull<u8>> {
        let mem = self.source_for(bytes)?.take_bootstrap()?;
        assert!(
            mem.bytes() >= bytes && mem.addr().is_multiple_of(MAGAZINE_ALIGN),
            "kmem-slab: magazine cache objects too small"
        );
        NonNull::new(mem.hand_out() as *mut u8)
    }

    unsafe fn free_magazine(&self, mem: NonNull<u8>, bytes: usize) {
        // SAFETY: the caller's guarantee: `mem` came from
        // `alloc_magazine(bytes)`, an object of that size's cache, and is
        // no longer used.
        let mem = unsafe { Freed::new(mem.as_ptr() as usize) };
        if let Some(source) = self.source_for(bytes) {
            // A refusal is counted with the magazine cache's bad frees.
            let _ = source.free_to_slab(mem, From::User);
        }
    }
}

/// A cache's magazine layer.
pub(crate) struct CacheMagazines<'a, C: Cpu> {
    mags: Magazines<'a, C>,
    /// The set's magazine caches, one per size: every magazine of this
    /// layer comes from the one for its size and goes back to it.
    source: &'a [KmemCache<'a, C>; MAGAZINE_SIZES.len()],
    /// The per-CPU array `mags` lives on.
    percpu: MetaMem<'a>,
    /// The cache's `SlabSet::object_bytes`, for the rounds handed out.
    object_bytes: usize,
    /// Frees may go onto a slot's deferred stack, which links them through
    /// their second word (the first keeps the free mark, see `raw::guard`):
    /// objects of memory, two words at least, with no constructed state and
    /// no per-object tracking (checked caches).
    deferrable: bool,
    /// Registered with the platform: it must stay where it is.
    registered: AtomicBool,
}

impl<'a, C: Cpu> CacheMagazines<'a, C> {
    /// A layer for objects of `obj_size` bytes, on `percpu` (metadata
    /// memory for `cpu.slots()` slots), getting magazines from `source`.
    /// `plain`: the cache has no constructor or destructor and does not
    /// track its objects' states (its objects can be deferred if they are
    /// memory).
    ///
    /// # Panics
    /// If `percpu` is too small or misaligned for the slots.
    pub(crate) fn new(
        cpu: &'a C,
        percpu: MetaMem<'a>,
        source: &'a [KmemCache<'a, C>; MAGAZINE_SIZES.len()],
        obj_size: usize,
        policy: ResizePolicy,
        object_bytes: usize,
        plain: bool,
    ) -> Self {
        let slots = cpu.slots();
        assert!(
            slots
                .checked_mul(size_of::<CpuCache>())
                .is_some_and(|b| b <= percpu.len())
                && percpu.addr().is_multiple_of(align_of::<CpuCache>()),
            "kmem-slab: per-CPU array too small"
        );
        let arr = percpu.addr() as *mut CpuCache;
        for i in 0..slots {
            // SAFETY: slot `i` lies in `percpu` (checked), memory this layer
            // owns, aligned for a `CpuCache` (checked).
            unsafe { arr.add(i).write(CpuCache::new()) };
        }
        // The slice claims `'a`, longer than the memory lives: only `mags`
        // holds it, which ends with the layer, and `into_percpu` (consuming
        // the layer) is the only way the memory goes back (else it leaks).
        // SAFETY: initialized above; outlived by nothing that holds it.
        let cpus = unsafe { core::slice::from_raw_parts_mut(arr, slots) };
        let deferrable = plain && object_bytes >= 2 * size_of::<usize>();
        let mags = Magazines::with_policy(cpu, cpus, obj_size, policy)
            .expect("kmem-slab: per-CPU array sized by the platform")
            .with_link_offset(size_of::<usize>());
        Self {
            mags,
            source,
            percpu,
            object_bytes,
            deferrable,
            registered: AtomicBool::new(false),
        }
    }

    /// The magazine cache for magazines of `bytes` bytes.
    fn source_for(&self, bytes: usize) -> Option<&'a KmemCache<'a, C>> {
        let i = MAGAZINE_SIZES.iter().position(|&b| b == bytes)?;
        Some(&self.source[i])
    }

    /// The platform.
    #[inline(always)]
    pub(crate) fn cpu(&self) -> &'a C {
        self.mags.cpu()
    }

    /// A round from the caller's magazines or the depot, as a token (to
    /// be zeroed or cleared before it is handed out).
    #[inline(always)]
    pub(crate) fn alloc_taken(&self) -> Option<Taken> {
        let round = self.mags.alloc()?;
        // SAFETY: a round the layer just handed out; `object_bytes` is the
        // cache's (`new`).
        Some(unsafe { Taken::from_round(round, self.object_bytes) })
    }

    /// Caps the depot at `bytes` of objects of `object_size` (see
    /// [`Magazines::set_depot_cap`]).
    pub(crate) fn set_depot_cap(&self, bytes: usize, object_size: usize) {
        self.mags.set_depot_cap(Some(bytes / object_size.max(1)));
    }

    /// A batch refill of the caller's magazines (see [`Magazines::refill`]):
    /// `fill` loads the sink's room from the slab layer, as rounds (objects
    /// the layer may hand out); returns the round handed out, as a token.
    ///
    /// # Safety
    /// Every round `fill` loads is an object of this cache, taken from its
    /// slabs for the magazines (marked as cached), used by nothing else.
    pub(crate) unsafe fn refill(&self, fill: impl FnOnce(&mut RefillSink<'_>)) -> Option<Taken> {
        // SAFETY: the layer itself is the one source its magazines ever
        // see; `fill`'s rounds are objects of this cache (the caller's
        // promise).
        let round = unsafe { self.mags.refill(self, fill) }?;
        // SAFETY: a round the layer just handed out; `object_bytes` is the
        // cache's.
        Some(unsafe { Taken::from_round(round, self.object_bytes) })
    }

    /// Puts `obj` into the caller's magazines; `Err` hands it back (no
    /// room, or the caller interrupted its own context's pinned section).
    #[inline(always)]
    pub(crate) fn free(&self, obj: Freed) -> Result<(), Freed> {
        // SAFETY: the layer itself (its `source`) is the one source its
        // magazines ever see (every call here passes it).
        match unsafe { self.mags.free(obj.addr(), self) } {
            // The layer keeps the object as a round.
            Ok(()) => Ok(()),
            // It hands back `obj` itself.
            Err(_) => Err(obj),
        }
    }

    /// A free [`free`](Self::free) handed back: a full magazine of the
    /// caller's gives its rounds to `flush` (the slab layer, in one pass)
    /// and takes `obj` ([`Magazines::free_after_flush`]); `Err` hands it
    /// back again.
    pub(crate) fn free_after_flush(
        &self,
        obj: Freed,
        flush: impl FnOnce(&mut dyn Iterator<Item = Freed>),
    ) -> Result<(), Freed> {
        let flush = |batch: &mut dyn Iterator<Item = usize>| {
            let mut rounds = batch.map(|round| {
                // SAFETY: as in `drain_depot`, for each round of the batch,
                // which left its magazine before `flush` sees it.
                unsafe { Freed::new(round) }
            });
            flush(&mut rounds);
        };
        match self.mags.free_after_flush(obj.addr(), flush) {
            // The layer keeps the object as a round.
            Ok(()) => Ok(()),
            // It hands back `obj` itself.
            Err(_) => Err(obj),
        }
    }

    /// Puts `obj` on the caller's slot's deferred stack (a free from a
    /// handler that interrupted an operation of its context); `Err` when
    /// the cache's objects cannot be deferred.
    pub(crate) fn defer(&self, obj: Freed) -> Result<(), Freed> {
        if !self.deferrable {
            return Err(obj);
        }
        // The stack's link goes into the object's second word.
        #[cfg(kmem_asan)]
        kmem_arena::asan::unpoison(obj.addr() + size_of::<usize>(), size_of::<usize>());
        // The layer links through the second word (`with_link_offset` in
        // `new`).
        // SAFETY: `obj` is an object of this layer's cache that nothing uses
        // any more (`Freed`), two words of memory at least, with no
        // constructed state (`deferrable`).
        unsafe { self.mags.defer(obj.addr()) };
        Ok(())
    }

    /// Moves the caller's magazines to the depot.
    pub(crate) fn flush_current(&self) {
        self.mags.flush_current();
    }

    /// Empties the depot: rounds to `sink`, magazines to their source.
    pub(crate) fn drain_depot(&self, mut sink: impl FnMut(Freed)) {
        let sink = |round| {
            // SAFETY: a round leaving the layer: an object of the cache,
            // freed into it as a `Freed` (`free`, `defer`) and not handed
            // out since.
            sink(unsafe { Freed::new(round) })
        };
        // SAFETY: the layer itself is the one source its magazines ever see.
        unsafe { self.mags.drain_depot(self, sink) };
    }

    /// The depot's working-set trim ([`Magazines::trim`]): rounds of the
    /// magazines nobody needed for a whole interval to `sink`, the
    /// magazines to their source.
    /// One magazine's rounds per call of `sink`.
    pub(crate) fn trim(&self, mut sink: impl FnMut(&mut dyn Iterator<Item = Freed>)) {
        let sink = |batch: &mut dyn Iterator<Item = usize>| {
            let mut rounds = batch.map(|round| {
                // SAFETY: as in `drain_depot`, for each round of the batch,
                // which left its magazine before `sink` sees it.
                unsafe { Freed::new(round) }
            });
            sink(&mut rounds);
        };
        // SAFETY: the layer itself is the one source its magazines ever see.
        unsafe { self.mags.trim(self, sink) };
    }

    /// Purges every CPU's magazines, then the depot ([`Magazines::purge`]):
    /// rounds to `sink`, magazines to their source.
    pub(crate) fn purge(&self, mut sink: impl FnMut(Freed)) -> Purge {
        let sink = |round| {
            // SAFETY: as in `drain_depot`.
            sink(unsafe { Freed::new(round) })
        };
        // SAFETY: the layer itself is the one source its magazines ever see.
        unsafe { self.mags.purge(self, sink) }
    }

    /// Purges the magazines of the slots idle since the last call
    /// ([`Magazines::purge_idle`]).
    pub(crate) fn purge_idle(&self, mut sink: impl FnMut(Freed)) -> Purge {
        let sink = |round| {
            // SAFETY: as in `drain_depot`.
            sink(unsafe { Freed::new(round) })
        };
        // SAFETY: the layer itself is the one source its magazines ever see.
        unsafe { self.mags.purge_idle(self, sink) }
    }

    /// Moves every round of every slot and of the depot to `sink`.
    ///
    /// # Safety
    /// No other call on this layer runs during this one (no slot is in
    /// use: the caller owns them all).
    pub(crate) unsafe fn drain_all(&self, mut sink: impl FnMut(Freed)) {
        let sink = |round| {
            // SAFETY: as in `drain_depot`.
            sink(unsafe { Freed::new(round) })
        };
        // SAFETY: the layer itself is the one source its magazines ever
        // see; the caller's guarantee, forwarded.
        unsafe { self.mags.drain_all(self, sink) };
    }

    /// [`drain_all`](Self::drain_all) for a layer its caller owns.
    ///
    /// # Panics
    /// If the layer is registered with the platform, whose hook could run.
    pub(crate) fn drain_owned(&mut self, sink: impl FnMut(Freed)) {
        assert!(
            !self.is_registered(),
            "kmem-slab: draining a registered layer"
        );
        // SAFETY: `&mut self`, and no hook registered: nothing else can
        // reach the layer.
        unsafe { self.drain_all(sink) };
    }

    /// The layer's counters.
    pub(crate) fn stats(&self) -> MagazineStats {
        self.mags.stats()
    }

    /// Asks the platform to flush a slot's magazines when its owner goes
    /// away.
    ///
    /// # Safety
    /// `self` stays at its address, alive, until
    /// [`unregister`](Self::unregister).
    pub(super) unsafe fn register(&self) {
        self.registered.store(true, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { self.mags.register() };
    }

    /// Withdraws [`register`](Self::register).
    pub(super) fn unregister(&self) {
        self.mags.unregister();
        self.registered.store(false, Ordering::Relaxed);
    }

    fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    /// `fork()` support: takes the depot lock and keeps it.
    pub(super) fn fork_lock(&self) {
        self.mags.fork_lock();
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took.
    ///
    /// # Safety
    /// `fork_lock` was called and not undone since.
    pub(super) unsafe fn fork_unlock(&self) {
        // SAFETY: forwarded.
        unsafe { self.mags.fork_unlock() };
    }

    /// Ends the layer and returns its per-CPU memory, to be given back.
    ///
    /// # Panics
    /// If the layer is registered with the platform.
    pub(crate) fn into_percpu(self) -> MetaMem<'a> {
        assert!(
            !self.is_registered(),
            "kmem-slab: ending a registered layer"
        );
        // `mags`, the only holder of the per-CPU array, ends with `self`,
        // before the caller gives the memory back.
        self.percpu
    }
}

/// Takes a cache's magazine layer out of `slot` (to drain it as a cache
/// without magazines would, then put it back).
///
/// # Panics
/// If the layer is registered with the platform: its hook points into it,
/// so it must not move.
pub(crate) fn take_unregistered<'a, C: Cpu>(
    slot: &mut Option<CacheMagazines<'a, C>>,
) -> Option<CacheMagazines<'a, C>> {
    if let Some(mags) = slot {
        assert!(
            !mags.is_registered(),
            "kmem-slab: moving a registered layer"
        );
    }
    slot.take()
}
