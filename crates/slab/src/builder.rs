//! [`CacheBuilder`]: what a cache is made of, and [`ObjectOps`], what it
//! does to objects entering and leaving the constructed state.

use kmem_arena::{Arena, Name};
use kmem_magazine::ResizePolicy;

#[cfg(doc)]
use crate::AllocError;
use crate::{AllocFlags, CacheFlags};

/// A constructor's refusal; the allocation fails with [`AllocError::Ctor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtorError;

/// What a cache does to objects entering and leaving the constructed state:
/// Akaros' `ctor`, `dtor` and `priv`, as a trait object whose fields are
/// the private state.
///
/// Objects in magazines stay constructed; `destruct` runs when an object
/// goes back to a slab. Both run without any cache lock held.
pub trait ObjectOps: Sync {
    /// Builds the object at `obj`; `flags` are the allocation's.
    fn construct(&self, obj: usize, flags: AllocFlags) -> Result<(), CtorError> {
        let _ = (obj, flags);
        Ok(())
    }
    /// Tears down the object at `obj`.
    fn destruct(&self, obj: usize) {
        let _ = obj;
    }
}

/// How short memory is when a cache's [`CacheReclaim`] callback runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// The periodic upkeep pass ([`Caches::tick`](crate::Caches::tick)):
    /// give back what has sat unused for a while (an LRU's cold tail).
    Upkeep,
    /// Memory ran out (the source arena's exhaustion path, through
    /// [`KmemCache::reclaim_to`](crate::KmemCache::reclaim_to)) or the
    /// program asked for it ([`KmemCache::reap`](crate::KmemCache::reap)):
    /// give back all that can be rebuilt.
    Low,
}

/// A cache user's shrinker (illumos' `kmem_cache_set_reclaim`, FreeBSD's
/// `uma_zone_reclaim`, Linux's shrinkers): something that holds objects of
/// the cache it is registered on (a dentry cache, a pool of buffers) and
/// can free some of them when asked. It runs with no cache, arena or
/// registry lock held and outside any allocator operation, so it may free
/// objects of any cache, and create or destroy caches (not wait for a
/// thread that destroys its own cache); the objects it frees
/// go back with the rest of the pass that called it. It is never called
/// again while it runs: a call from inside it (an allocation of its own
/// that finds the source exhausted) or from another thread meanwhile is
/// skipped. Under [`Pressure::Low`] it should not allocate from the memory
/// that ran out (the cache's source), directly or through another cache.
pub trait CacheReclaim: Sync {
    /// Frees what this can spare under `pressure`; returns about how many
    /// objects it freed.
    fn reclaim(&self, pressure: Pressure) -> usize;
}

/// Told of every slab buffer a cache takes from its source and gives back,
/// so that something outside the cache can find an object's cache from its
/// address alone: a C `free`, which is given no size, looks the object's
/// page up in such a map (kmalloc's unsized free).
///
/// Both calls run outside every cache lock, with no allocator operation of
/// the calling thread in progress below them that the map could re-enter.
///
/// # Safety
/// Unsafe code trusts what [`owner`](Self::owner) answers (kmalloc copies a
/// large block's recorded length on a move, and a C `calloc` hands that many
/// bytes to `madvise`): it must be the owner last [`set`](Self::set) for the
/// page and not [`clear`](Self::clear)ed since, or 0.
#[allow(unsafe_code, reason = "a trait whose answers unsafe code trusts")]
pub unsafe trait PageMap: Sync {
    /// Every page of `[base, base + len)` now belongs to `owner` (not 0);
    /// false when the map cannot record it (it is out of memory), and then
    /// the cache gives the buffer back and its growth fails.
    fn set(&self, base: usize, len: usize, owner: u32) -> bool;
    /// The pages of `[base, base + len)` belong to nobody any more.
    fn clear(&self, base: usize, len: usize);
    /// The owner of the page holding `addr`, 0 if none (never recorded,
    /// cleared since, or outside what the map covers).
    fn owner(&self, addr: usize) -> u32;
}

/// Describes a cache for [`Caches::create`](crate::Caches::create).
#[must_use]
#[derive(Clone, Copy)]
pub struct CacheBuilder<'a> {
    pub(crate) name: Name,
    pub(crate) size: usize,
    pub(crate) align: usize,
    pub(crate) flags: CacheFlags,
    pub(crate) qcache_max: usize,
    pub(crate) source: Option<&'a Arena<'a>>,
    pub(crate) ops: Option<&'a dyn ObjectOps>,
    pub(crate) reclaim: Option<&'a dyn CacheReclaim>,
    /// Where the cache's slab buffers are recorded, and as whose.
    pub(crate) page_map: Option<(&'a dyn PageMap, u32)>,
    pub(crate) max_objects: u64,
    pub(crate) resize: ResizePolicy,
    /// A quantum cache's arena quantum and whether it is memory: set by
    /// [`Caches::qcaches`](crate::Caches::qcaches), whose caches have no
    /// stored source (their arena passes itself on every call).
    pub(crate) qcache_for: Option<(usize, bool)>,
    /// The FIFO partial-slab order ablation (see
    /// [`fifo_partial_slabs`](Self::fifo_partial_slabs)).
    pub(crate) fifo_partial: bool,
}

impl<'a> CacheBuilder<'a> {
    /// A cache of `size`-byte objects, aligned to 8, from the base arena.
    pub fn new(name: &str, size: usize) -> Self {
        Self {
            name: Name::new(name),
            size,
            align: 8,
            flags: CacheFlags::empty(),
            qcache_max: 0,
            source: None,
            ops: None,
            reclaim: None,
            page_map: None,
            max_objects: u64::MAX,
            resize: ResizePolicy::AKAROS,
            qcache_for: None,
            fifo_partial: false,
        }
    }
    /// Object alignment: a power of two up to [`PAGE_SIZE`](crate::PAGE_SIZE).
    pub fn align(mut self, align: usize) -> Self {
        self.align = align;
        self
    }
    /// Layout and caching flags.
    pub fn flags(mut self, flags: CacheFlags) -> Self {
        self.flags |= flags;
        self
    }
    /// The arena slabs come from (default: the base arena).
    pub fn source(mut self, source: &'a Arena<'a>) -> Self {
        self.source = Some(source);
        self
    }
    /// Constructor, destructor and private state.
    pub fn ops(mut self, ops: &'a dyn ObjectOps) -> Self {
        self.ops = Some(ops);
        self
    }
    /// A shrinker for the cache's objects that its user holds (see
    /// [`CacheReclaim`]): called by the upkeep pass, by `reap`, and when
    /// the cache's source runs out.
    pub fn reclaim(mut self, reclaim: &'a dyn CacheReclaim) -> Self {
        self.reclaim = Some(reclaim);
        self
    }

    /// Records every slab buffer the cache takes from its source in `map`
    /// as `owner`'s (not 0), and clears it before the buffer goes back
    /// (see [`PageMap`]). A buffer the map cannot record is given back and
    /// the growth fails ([`AllocError::Exhausted`]). Ignored for quantum
    /// caches, whose objects are their arena's to account for.
    pub fn page_map(mut self, map: &'a dyn PageMap, owner: u32) -> Self {
        if owner != 0 {
            self.page_map = Some((map, owner));
        }
        self
    }

    /// At most `n` objects out of the cache's slabs at once, those its
    /// users hold and those in its magazines (FreeBSD's
    /// `uma_zone_set_max`): an allocation past that fails with
    /// [`AllocError::LimitReached`](crate::AllocError::LimitReached). Such
    /// a cache loads no magazine from its slabs ahead of use (no batch
    /// refill), but objects freed into a CPU's magazines still count until
    /// they are handed out again or drained (`flush_current`, `reap`).
    pub fn max_objects(mut self, n: u64) -> Self {
        self.max_objects = n;
        self
    }

    /// Makes this a quantum cache of an arena with this `qcache_max`: sets
    /// `QCACHE | NOTOUCH` and slabs of `next_pow2(3 * qcache_max)`.
    pub fn qcache(mut self, qcache_max: usize) -> Self {
        self.flags |= CacheFlags::QCACHE | CacheFlags::NOTOUCH;
        self.qcache_max = qcache_max;
        self
    }
    /// When magazines grow (default: Akaros', 1 contention per second).
    pub fn resize_policy(mut self, policy: ResizePolicy) -> Self {
        self.resize = policy;
        self
    }

    /// An ablation switch for the benchmarks (B14), not a tuning knob:
    /// the cache takes objects from its partial slabs in the order they
    /// became partial (plain FIFO), instead of from the fullest first (the
    /// default, after illumos: partial slabs at least half full at the
    /// front, those a free left less than half full at the back). Hidden,
    /// and may go away.
    #[doc(hidden)]
    pub fn fifo_partial_slabs(mut self) -> Self {
        self.fifo_partial = true;
        self
    }
}
