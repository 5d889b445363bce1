//! [`QCaches`]: the slab layer's quantum caches for an arena (Bonwick &
//! Adams section 4.4), implementing [`kmem_arena::QuantumCaches`].

use core::cell::UnsafeCell;
use core::fmt::{self, Write as _};
use spin::RwLock;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use arrayvec::ArrayVec;
use kmem_arena::{
    AllocError as ArenaAllocError, Arena, FreeError as ArenaFreeError, QuantumCaches,
};
use kmem_magazine::Cpu;

use crate::caches::{Cache, Caches};
use crate::{AllocFlags, CacheBuilder, CacheStats, CreateError};

/// The most quantum caches one arena gets (illumos' `VMEM_NQCACHE_MAX`): a
/// larger `qcache_max` is cut to this many quanta.
pub const QCACHE_MAX_CACHES: usize = 16;

/// An arena's quantum caches: one `QCACHE | NOTOUCH` object cache (with
/// magazines) per multiple of the quantum up to `qcache_max`, named
/// `<name>_<size>`, with slabs of `next_pow2(3 * qcache_max)` units.
///
/// Made by [`Caches::qcaches`] before the arena, then handed to it with
/// [`ArenaBuilder::qcaches`](kmem_arena::ArenaBuilder::qcaches): the caches
/// store no source, the arena passes itself on every call, so they can
/// outlive it and nothing refers back to it. The arena's `destroy` destroys
/// the caches first; dropping this value afterwards frees the cache
/// structures. Caches that still hold slabs when dropped (their arena was
/// leaked with live allocations) leak them.
///
/// ```
/// use kmem_arena::{Arena, Policy};
/// use kmem_magazine::ThreadCpus;
/// use kmem_physmem::PhysMem;
/// use kmem_slab::Caches;
///
/// let ram = PhysMem::new(8 << 20);
/// let base = ram.base_arena("base", 4096);
/// let caches = Caches::new(&base, ThreadCpus::global()).unwrap();
/// // PIDs: sizes 1..=4 come from caches with per-CPU magazines.
/// let qc = caches.qcaches("pids", 1, 4, false).unwrap();
/// let mut pids = Arena::builder("pids")
///     .quantum(1)
///     .span(1, 1 << 20)
///     .tags_from(&base)
///     .qcaches(&qc)
///     .build()
///     .unwrap();
/// let pid = pids.alloc(1, Policy::InstantFit).unwrap(); // a magazine round
/// pids.free(pid, 1).unwrap();
/// pids.destroy().unwrap(); // destroys the quantum caches first
/// ```
pub struct QCaches<'a, C: Cpu> {
    quantum: usize,
    max: usize,
    attached: AtomicBool,
    /// Held for reading by the public queries ([`stats`](Self::stats),
    /// [`in_use`](Self::in_use)) while they copy what they need, for
    /// writing by `destroy`, which empties `caches`.
    list: RwLock<()>,
    /// Emptied only by `destroy`, which runs alone among the arena's calls
    /// (its contract) and holds `list` for writing against the queries.
    caches: UnsafeCell<ArrayVec<Cache<'a, C>, QCACHE_MAX_CACHES>>,
}

// SAFETY: the caches are `Sync`. The `UnsafeCell` is emptied only by
// `destroy`, which holds `list` for writing, while the queries read it
// under `list` for reading; the arena's calls (`alloc`, `free`, `reap`),
// which read it without the lock, reach these caches only through the one
// arena they are attached to, which calls `destroy` from `destroy(&mut
// self)`, so never while one of them runs.
unsafe impl<C: Cpu> Sync for QCaches<'_, C> {}
// SAFETY: `Cache` handles are `Send`.
unsafe impl<C: Cpu> Send for QCaches<'_, C> {}

/// Formats `<name>_<size>` into a cache name.
struct NameBuf {
    buf: [u8; 32],
    len: usize,
}

impl fmt::Write for NameBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut tmp = [0; 4];
            let bytes = c.encode_utf8(&mut tmp).as_bytes();
            if self.len + bytes.len() > self.buf.len() {
                break;
            }
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

impl<'a, C: Cpu> Caches<'a, C> {
    /// Makes the quantum caches for an arena named `name` with quantum
    /// `quantum` and `qcache_max` (cut to [`QCACHE_MAX_CACHES`] quanta);
    /// `memory` says whether the arena's values are memory (only for
    /// statistics and `ZERO`; quantum caches never write to their objects).
    pub fn qcaches<'s>(
        &'s self,
        name: &str,
        quantum: usize,
        qcache_max: usize,
        memory: bool,
    ) -> Result<QCaches<'s, C>, CreateError> {
        if quantum == 0 {
            return Err(CreateError::ZeroSize);
        }
        let n = (qcache_max / quantum).min(QCACHE_MAX_CACHES);
        if n == 0 {
            return Err(CreateError::BadQcacheMax);
        }
        let max = n * quantum;
        let mut caches = ArrayVec::new();
        for i in 1..=n {
            let mut label = NameBuf {
                buf: [0; 32],
                len: 0,
            };
            let _ = write!(label, "{name}_{}", i * quantum);
            let label = core::str::from_utf8(&label.buf[..label.len]).unwrap_or(name);
            let mut builder = CacheBuilder::new(label, i * quantum).align(1).qcache(max);
            builder.qcache_for = Some((quantum, memory));
            // On failure the caches made so far are destroyed as they drop.
            caches.push(self.create(builder)?);
        }
        Ok(QCaches {
            quantum,
            max,
            attached: AtomicBool::new(false),
            list: RwLock::new(()),
            caches: UnsafeCell::new(caches),
        })
    }
}

impl<'a, C: Cpu> QCaches<'a, C> {
    /// The caches, for the arena's calls.
    ///
    /// # Safety
    /// Called from the attached arena's `alloc`, `free` or `reap` (which
    /// `destroy` never overlaps), or with `list` held.
    unsafe fn caches(&self) -> &[Cache<'a, C>] {
        // SAFETY: the caller's guarantee: `destroy` is not running.
        unsafe { &*self.caches.get() }
    }

    /// The cache serving `size`, if `size` is a cached size and `arena` is
    /// the arena these caches serve.
    #[inline]
    fn cache_for(&self, arena: &Arena<'_>, size: usize) -> Option<&Cache<'a, C>> {
        let mine = arena
            .qcaches()
            .is_some_and(|q| ptr::addr_eq(q as *const dyn QuantumCaches, self as *const Self));
        if !mine || size == 0 || !size.is_multiple_of(self.quantum) {
            return None;
        }
        // SAFETY: called only from the arena's `alloc`, `free` and `reap`
        // with `arena` the attached one (checked above).
        unsafe { self.caches() }.get(size / self.quantum - 1)
    }

    /// Statistics of each cache, smallest size first. They are copied out
    /// first, so `f` may do anything, destroy the arena included (it then
    /// sees what was there when the call began).
    pub fn stats(&self, mut f: impl FnMut(&CacheStats)) {
        let copied: ArrayVec<CacheStats, QCACHE_MAX_CACHES> = {
            let _list = self.list.read();
            // SAFETY: `list` is held.
            unsafe { self.caches() }.iter().map(|c| c.stats()).collect()
        };
        for st in &copied {
            f(st);
        }
    }

    /// Objects allocated from the caches now.
    pub fn in_use(&self) -> u64 {
        let _list = self.list.read();
        // SAFETY: `list` is held.
        unsafe { self.caches() }
            .iter()
            .map(|c| c.stats().buf_in_use)
            .sum()
    }

    /// Objects allocated from the caches, counted from their slabs after
    /// every magazine and the depot were drained into them (so a bad free
    /// sitting in a magazine cannot hide a live object).
    ///
    /// # Safety
    /// As for [`QuantumCaches::destroy`]: nothing else calls the caches.
    unsafe fn live_after_drain(&self) -> u64 {
        // SAFETY: the caller's guarantee.
        let caches = unsafe { self.caches() };
        // SAFETY: the caller's guarantee, forwarded.
        caches.iter().map(|c| unsafe { c.drain_and_count() }).sum()
    }
}

// SAFETY: objects come from `KmemCache`s whose slabs are allocated from the
// arena passed in (`alloc_from`), of `next_pow2(3 * max)` units each, and
// sit a multiple of their size (a multiple of the quantum) from their
// slab's base; `destroy` destroys every cache through that arena or
// refuses.
unsafe impl<C: Cpu> QuantumCaches for QCaches<'_, C> {
    fn quantum(&self) -> usize {
        self.quantum
    }

    fn max(&self) -> usize {
        self.max
    }

    fn attach(&self) -> bool {
        !self.attached.swap(true, Ordering::AcqRel)
    }

    #[inline]
    fn alloc(&self, arena: &Arena<'_>, size: usize) -> Result<usize, ArenaAllocError> {
        let cache = self
            .cache_for(arena, size)
            .ok_or(ArenaAllocError::Exhausted)?;
        cache
            .alloc_from(Some(arena), AllocFlags::empty())
            .map_err(|_| ArenaAllocError::Exhausted)
    }

    #[inline]
    unsafe fn free(
        &self,
        arena: &Arena<'_>,
        addr: usize,
        size: usize,
    ) -> Result<(), ArenaFreeError> {
        let cache = self
            .cache_for(arena, size)
            .ok_or(ArenaFreeError::NotAllocated { addr })?;
        // SAFETY: for a memory arena, the caller's guarantee (forwarded):
        // `addr` is an object of this cache, no longer used. For an arena of
        // integers a bad free is not memory-unsafe: a quantum cache is
        // NOTOUCH (it never writes to its objects), and the slab layer
        // refuses the free when it gets there (here, or when its magazine
        // drains); what a double free can do is hand a value out twice,
        // which for integers is a logic error, not undefined behaviour.
        // The arena's call is under way: no new section.
        unsafe { cache.free_in(addr) }.map_err(|_| ArenaFreeError::Cached { addr })
    }

    fn reap(&self, arena: &Arena<'_>) -> usize {
        if self.cache_for(arena, self.quantum).is_none() {
            return 0;
        }
        // SAFETY: `arena` is the attached arena (checked above), calling.
        unsafe { self.caches() }
            .iter()
            .map(|c| c.reap_from(Some(arena)))
            .sum()
    }

    unsafe fn destroy(&self, arena: &Arena<'_>) -> Result<(), usize> {
        // SAFETY: the caller guarantees no other call of the arena's runs.
        let live = unsafe { self.live_after_drain() };
        if live > 0 {
            return Err(usize::try_from(live).unwrap_or(usize::MAX));
        }
        let _list = self.list.write();
        // SAFETY: no call of the arena's runs (the caller's guarantee), and
        // the queries wait for `list`.
        let caches = unsafe { &mut *self.caches.get() };
        for c in caches.drain(..) {
            // Nothing is live, so each cache gives its slabs back. Were one
            // to refuse, it is withdrawn from the registry and the platform
            // and leaked with its slabs (the arena's own check of live
            // segments then refuses), never left behind registered.
            if let Err(e) = c.destroy_in(Some(arena)) {
                e.cache.abandon();
            }
        }
        Ok(())
    }
}
