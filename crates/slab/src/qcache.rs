//! [`QCaches`]: the slab layer's quantum caches for an arena (Bonwick &
//! Adams section 4.4), implementing [`kmem_arena::QuantumCaches`].

use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, Ordering};

use arrayvec::ArrayVec;
use kmem_arena::{
    AllocError as ArenaAllocError, Arena, FreeError as ArenaFreeError, QuantumCaches,
};
use kmem_magazine::Cpu;

use crate::caches::Caches;
use crate::handle::{Cache, QCacheList};
use crate::raw::Freed;
use crate::{AllocFlags, CacheBuilder, CacheFlags, CacheStats, CreateError};

/// The most quantum caches one arena gets (illumos' `VMEM_NQCACHE_MAX`): a
/// larger `qcache_max` is cut to this many quanta.
pub const QCACHE_MAX_CACHES: usize = 16;

/// An arena's quantum caches: one `QCACHE` object cache (with magazines)
/// per multiple of the quantum up to `qcache_max`, named `<name>_<size>`.
/// Over an arena of integers (or a quantum not a power of two) they are
/// `NOTOUCH`, on bufctls with slabs of `next_pow2(3 * qcache_max)` units,
/// every free checked under the cache lock; over memory with a
/// power-of-two quantum, headed slabs (a power of two aligned to its size)
/// with the lock-free free check.
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
/// let qc = caches.qcaches("pids", 1, 4, kmem_slab::ArenaValues::Integers).unwrap();
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
    /// What `Caches::qcaches` was told; the arena's builder refuses the
    /// caches unless it matches the arena.
    memory: bool,
    attached: AtomicBool,
    /// The caches, smallest size first: read without a lock by the arena's
    /// calls, under a read lock by the queries ([`stats`](Self::stats),
    /// [`in_use`](Self::in_use)), emptied by `destroy`.
    pub(crate) list: QCacheList<'a, C>,
}

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

/// What an arena's values are, for the quantum caches made for it
/// ([`Caches::qcaches`]); the arena refuses caches made for the other kind
/// (`CreateError::QcacheMemory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaValues {
    /// Addresses of memory the caches may write to: headed slabs, frees
    /// checked without a lock by the free mark written into free objects.
    Memory,
    /// Integers (IDs, ports, addresses of memory not to be touched): the
    /// objects stay on bufctls, every free checked under the cache lock.
    Integers,
}

impl<'a, C: Cpu> Caches<'a, C> {
    /// Makes the quantum caches for an arena named `name` with quantum
    /// `quantum` and `qcache_max` (cut to [`QCACHE_MAX_CACHES`] quanta),
    /// whose values are `values` (see [`ArenaValues`]).
    pub fn qcaches<'s>(
        &'s self,
        name: &str,
        quantum: usize,
        qcache_max: usize,
        values: ArenaValues,
    ) -> Result<QCaches<'s, C>, CreateError> {
        let memory = values == ArenaValues::Memory;
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
            if memory && quantum.is_power_of_two() {
                // Memory (which the arena checks when it takes the caches)
                // with a power-of-two quantum: headed slabs, whose lock-free
                // free check writes into free objects (their size, rounded
                // to 8, stays a multiple of the quantum). Integers, and
                // other quanta, stay on bufctls, checked under the lock.
                builder.flags.remove(CacheFlags::NOTOUCH);
            }
            // On failure the caches made so far are destroyed as they drop.
            caches.push(self.create(builder)?);
        }
        Ok(QCaches {
            quantum,
            max,
            memory,
            attached: AtomicBool::new(false),
            list: QCacheList::new(caches),
        })
    }
}

impl<'a, C: Cpu> QCaches<'a, C> {
    /// The cache serving `size`, if `size` is a cached size and `arena` is
    /// the arena these caches serve.
    #[inline]
    fn cache_for(&self, arena: &Arena<'_>, size: usize) -> Option<&Cache<'a, C>> {
        let caches = self.caches_for(arena)?;
        if size == 0 || !size.is_multiple_of(self.quantum) {
            return None;
        }
        caches.get(size / self.quantum - 1)
    }

    /// Statistics of each cache, smallest size first. They are copied out
    /// first, so `f` may do anything, destroy the arena included (it then
    /// sees what was there when the call began).
    pub fn stats(&self, mut f: impl FnMut(&CacheStats)) {
        let copied: ArrayVec<CacheStats, QCACHE_MAX_CACHES> =
            self.read_caches(|caches| caches.iter().map(|c| c.stats()).collect());
        for st in &copied {
            f(st);
        }
    }

    /// Objects allocated from the caches now.
    pub fn in_use(&self) -> u64 {
        self.read_caches(|caches| caches.iter().map(|c| c.stats().buf_in_use).sum())
    }
}

#[allow(unsafe_code, reason = "the arena's interface is an unsafe trait")]
// SAFETY: objects come from `KmemCache`s whose slabs are allocated from the
// arena passed in (`alloc_from`): bufctl slabs of `next_pow2(3 * max)`
// units, or headed slabs (a power of two, aligned to it; memory arenas with
// a power-of-two quantum only). Objects sit a multiple of their size from
// their slab's first object, and their size is a multiple of the quantum
// (`i * quantum`, rounded to 8 only for headed caches, whose power-of-two
// quantum 8 divides or which is a multiple of 8); the first object sits
// the slab's colour from its base, a multiple of the quantum for a quantum
// cache (`Geometry::plan`; 0 for bufctl slabs); `destroy` destroys every
// cache through that arena or refuses.
unsafe impl<C: Cpu> QuantumCaches for QCaches<'_, C> {
    fn quantum(&self) -> usize {
        self.quantum
    }

    fn max(&self) -> usize {
        self.max
    }

    fn is_memory(&self) -> bool {
        self.memory
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
        // For an arena of integers a bad free is not memory-unsafe: a
        // quantum cache is NOTOUCH (it never writes to its objects), and the
        // slab layer refuses the free when it gets there (here, or when its
        // magazine drains); what a double free can do is hand a value out
        // twice, which for integers is a logic error, not undefined
        // behaviour.
        // SAFETY: for a memory arena, the caller's guarantee: `addr` is an
        // object of this cache, no longer used (integers: above).
        let obj = unsafe { Freed::new(addr) };
        // The arena's call is under way: no new section.
        cache
            .free_in(obj)
            .map_err(|_| ArenaFreeError::Cached { addr })
    }

    fn reap(&self, arena: &Arena<'_>) -> usize {
        let Some(caches) = self.caches_for(arena) else {
            return 0;
        };
        caches.iter().map(|c| c.reap_from(Some(arena))).sum()
    }

    fn tick(&self, arena: &Arena<'_>) -> usize {
        let Some(caches) = self.caches_for(arena) else {
            return 0;
        };
        caches.iter().map(|c| c.tick_from(Some(arena))).sum()
    }

    fn reclaim(&self, arena: &Arena<'_>) -> usize {
        let Some(caches) = self.caches_for(arena) else {
            return 0;
        };
        caches
            .iter()
            .map(|c| {
                // The caller's own magazines too: the arena ran out, and
                // this slot's rounds may be what it needs (inside an
                // operation as well: a page allocation in its section).
                c.flush_current_within();
                c.reap_from(Some(arena))
            })
            .sum()
    }

    unsafe fn destroy(&self, arena: &Arena<'_>) -> Result<(), usize> {
        // Withdrawn first, as a cache's own destroy does: no walk of the
        // registry on another thread, and no thread-exit hook, reaches the
        // caches while every slot is drained.
        let caches = self.caches_for(arena).unwrap_or(&[]);
        caches.iter().for_each(Cache::withdraw);
        // SAFETY: the caller guarantees no other call of the arena's runs,
        // and nothing else reaches the withdrawn caches.
        let live = unsafe { self.drain_and_count() };
        if live > 0 {
            for c in caches {
                // SAFETY: withdrawn just above.
                unsafe { c.relist() };
            }
            return Err(usize::try_from(live).unwrap_or(usize::MAX));
        }
        // Nothing is live, so each cache gives its slabs back. Were one to
        // refuse, it is withdrawn from the registry and the platform and
        // leaked with its slabs (the arena's own check of live segments then
        // refuses), never left behind registered.
        // SAFETY: as above: no call of the arena's runs during this one.
        unsafe {
            self.drain_list(|c| {
                if let Err(e) = c.destroy_in(Some(arena)) {
                    e.cache.abandon();
                }
            })
        };
        Ok(())
    }
}
