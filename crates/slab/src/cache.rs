//! [`KmemCache`]: an object cache — magazines in front of slabs over a
//! source arena: building it, and its allocation and free paths.

use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use arrayvec::ArrayVec;
use kmem_arena::{Arena, Name};
use kmem_magazine::{Cpu, CpuCache, MagazineStats, Section};

use crate::builder::{CacheBuilder, CacheReclaim, ObjectOps, PageMap, Pressure};
use crate::caches::Caches;
use crate::debug::{By, Caller, Report, LOG_ENTRIES};
use crate::error::{AllocError, BadFree, CheckError, CreateError, FreeError};
use crate::geometry::{Geometry, Layout, Request};
use crate::handle::{call_out, CacheMagazines};
use crate::raw::{
    table_bytes, AddrHash, BufState, BufferShape, DebugLayout, FreeCheck, Freed, LogRing, MetaMem,
    SlabSet, Taken, TRAILER,
};
#[cfg(feature = "site-stats")]
use crate::sites::{unalloc, SiteId};
use crate::slabs::{From, SlabState};
use crate::stats::CacheStats;
use crate::Mutex;
use crate::{AllocFlags, CacheFlags};

/// Bytes of objects a memory cache without destructor keeps in its depot's
/// full magazines before a burst of frees goes back to its slabs in
/// batches instead (whose emptied slabs then go back to the source: see
/// [`KmemCache::release_spare_empties`]).
pub(crate) const DEPOT_CAP_BYTES: usize = 4 << 20;
/// Hands its value to its closure when dropped, unless taken back with
/// [`disarm`](Self::disarm): an undo step that must also happen when a
/// call-out panics.
struct Undo<T, F: FnOnce(T)>(Option<(T, F)>);

impl<T, F: FnOnce(T)> Undo<T, F> {
    fn new(value: T, undo: F) -> Self {
        Self(Some((value, undo)))
    }

    /// The value back, the undo step not run.
    fn disarm(mut self) -> T {
        self.0.take().expect("armed until disarmed").0
    }
}

impl<T, F: FnOnce(T)> Drop for Undo<T, F> {
    fn drop(&mut self) {
        if let Some((value, undo)) = self.0.take() {
            undo(value);
        }
    }
}

/// What a cache's magazine fast path does with a free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
enum Fast {
    /// A plain headed cache: the owner, object-start and free-mark checks,
    /// and the mark cleared when an object is handed out.
    Tagged,
    /// A headed cache with a constructor: the owner and object-start
    /// checks.
    Owned,
    /// No fast path: a checked cache (bufctls, every free under the
    /// lock), or one without magazines. (Above `ZERO`'s bit: see
    /// `alloc_fast`.)
    Off = 4,
}

const _: () = assert!(AllocFlags::ZERO.bits() > Fast::Owned as u32);

/// An object cache: per-CPU magazines and a depot in front of full, partial
/// and empty slabs over a source arena.
///
/// Objects are addresses (`usize`); for a cache over memory they point at
/// `size()` writable bytes aligned to `align()`. Created and destroyed
/// through [`Caches`]; see the [crate documentation](crate).
///
/// Its magazine layer is not reachable from outside, so no value that the
/// cache did not hand out can be pushed into a magazine and handed out
/// again (the layer offers [`flush_current`](Self::flush_current) and
/// [`magazine_stats`](Self::magazine_stats) instead):
///
/// ```compile_fail,E0599
/// use kmem_magazine::ThreadCpus;
/// use kmem_physmem::PhysMem;
/// use kmem_slab::{CacheBuilder, Caches};
///
/// let ram = PhysMem::new(8 << 20);
/// let base = ram.base_arena("base", 4096);
/// let caches = Caches::new(&base, ThreadCpus::global()).unwrap();
/// let c = caches.create(CacheBuilder::new("objs", 64)).unwrap();
/// let _ = c.magazines(); // gone: it exposed `Magazines::free`
/// ```
pub struct KmemCache<'a, C: Cpu> {
    pub(crate) name: Name,
    pub(crate) geo: Geometry,
    pub(crate) flags: CacheFlags,
    pub(crate) memory: bool,
    /// How slab buffers are allocated: the slab size, and the alignment a
    /// buffer needs (its size for the small layout, found by rounding an
    /// object's address down; else the object alignment).
    pub(crate) shape: BufferShape,
    /// Where slabs come from; `None` for a quantum cache, whose arena is
    /// passed in by every call that needs it.
    pub(crate) source: Option<&'a Arena<'a>>,
    meta: &'a Arena<'a>,
    ops: Option<&'a dyn ObjectOps>,
    /// The user's shrinker, and how many times it was called.
    reclaim: Option<&'a dyn CacheReclaim>,
    reclaim_calls: AtomicU64,
    /// Where slab buffers are recorded (`CacheBuilder::page_map`).
    pub(crate) page_map: Option<(&'a dyn PageMap, u32)>,
    /// The shrinker is running (see `call_reclaim`).
    shrinking: AtomicBool,
    /// Objects out of the slabs at most (`CacheBuilder::max_objects`).
    max_objects: u64,
    /// Objects held in [`Reserve`](crate::Reserve)s now.
    pub(crate) reserved: AtomicU64,
    pub(crate) mags: Option<CacheMagazines<'a, C>>,
    /// Headed layout: the lock-free free check (owner, object start and,
    /// for plain caches with magazines, the free mark; see `raw::guard`).
    /// Unused otherwise.
    pub(crate) check: FreeCheck,
    /// Headed layout: slabs built so far (wrapping), which picks each new
    /// slab's colour ([`Geometry::colour`]).
    pub(crate) colours: AtomicU32,
    /// What the magazine fast path does (see [`Fast`]).
    fast: Fast,
    /// Bufctl layout with magazines: every free into the magazines is
    /// checked, and marked `Cached`, under the cache lock; every round
    /// handed out is marked `Allocated` again.
    checked: bool,
    pub(crate) slab: Mutex<SlabState<'a>>,
    pub(crate) ctx: Option<&'a Caches<'a, C>>,
    alloc_fails: AtomicU64,
    ctor_fails: AtomicU64,
    bad_frees: AtomicU64,
    /// Metadata (tables, slab buffers) its arena refused to take back: a
    /// sign of corruption, counted rather than asserted on allocator paths.
    meta_errors: AtomicU64,
    /// Allocations refused, and frees deferred or refused, because they
    /// interrupted an operation of their own context (signal handlers).
    reentrant: AtomicU64,
    /// Bad frees found when a magazine drained: counted as frees when they
    /// entered the magazine, they never freed a live object.
    bad_rounds: AtomicU64,
    pub(crate) last_bad: Mutex<Option<FreeError>>,
    /// Debug mode's reports, and the last one.
    pub(crate) reports: AtomicU64,
    pub(crate) last_report: Mutex<Option<Report>>,
    /// Next cache in the registry of its `Caches` (type-erased, so the
    /// cache stays covariant in `'a`).
    pub(crate) next: AtomicPtr<()>,
}

/// An allocation on its way down the slow paths (`alloc_general`, the
/// slab path): its flags, its caller and, with `site-stats`, the site it
/// counts for.
#[derive(Clone, Copy)]
struct Ask {
    flags: AllocFlags,
    caller: By,
    #[cfg(feature = "site-stats")]
    site: SiteId,
}

impl<'a, C: Cpu> KmemCache<'a, C> {
    /// Builds a cache value; `ctx` is `None` only for the bootstrap caches.
    pub(crate) fn build(
        b: &CacheBuilder<'a>,
        base: &'a Arena<'a>,
        cpu: &'a C,
        ctx: Option<&'a Caches<'a, C>>,
    ) -> Result<Self, CreateError> {
        let source = match b.qcache_for {
            Some(_) => None,
            None => Some(b.source.unwrap_or(base)),
        };
        let (quantum, memory) = match (source, b.qcache_for) {
            (Some(s), _) => (s.quantum(), s.is_memory()),
            (None, Some(qm)) => qm,
            (None, None) => (base.quantum(), base.is_memory()),
        };
        let mut flags = b.flags;
        if flags.intersects(CacheFlags::DEBUG_ALL) {
            flags |= CacheFlags::DEBUG;
        }
        let parts = CacheFlags::REDZONE | CacheFlags::POISON | CacheFlags::AUDIT;
        if flags.intersects(parts) && (!memory || flags.contains(CacheFlags::NOTOUCH)) {
            return Err(CreateError::NotMemory);
        }
        if flags.contains(CacheFlags::POISON) && b.ops.is_some() {
            return Err(CreateError::PoisonCtor);
        }
        let geo = Geometry::plan(&Request {
            size: b.size,
            align: b.align,
            flags,
            qcache_max: b.qcache_max,
            quantum,
            memory,
            force_small: ctx.is_none(),
            trailer: if flags.trailer() { TRAILER } else { 0 },
        })?;
        let debug =
            (flags.intersects(CacheFlags::POISON) || flags.trailer()).then_some(DebugLayout {
                obj: geo.obj,
                poison: flags.contains(CacheFlags::POISON),
                trailer: flags.trailer(),
            });
        let slab_align = match geo.layout {
            Layout::Small { .. } => geo.slab_size,
            Layout::Bufctl => geo.align,
        };
        let shape = BufferShape::new(geo.slab_size, slab_align, quantum % slab_align != 0);
        let mut set = SlabSet::new(&geo, memory, shape, Self::new_hash(base)?, debug);
        if b.fifo_partial {
            set.set_fifo_partial();
        }
        let object_bytes = set.object_bytes();
        let magazines = ctx.is_some() && !flags.contains(CacheFlags::NOMAGAZINE);
        let plain = b.ops.is_none() && !flags.contains(CacheFlags::DEBUG);
        let headed = matches!(geo.layout, Layout::Small { .. });
        let tagged = magazines && plain && memory;
        let check = if headed {
            FreeCheck::new(geo.slab_size, geo.size, geo.per_slab as usize, tagged)
        } else {
            FreeCheck::unused()
        };
        let checked = magazines && !headed;
        let fast = match (magazines && headed, tagged) {
            (true, true) => Fast::Tagged,
            (true, false) => Fast::Owned,
            (false, _) => Fast::Off,
        };
        let mut cache = Self {
            name: b.name,
            geo,
            flags,
            memory,
            shape,
            source,
            meta: base,
            ops: b.ops,
            reclaim: b.reclaim,
            reclaim_calls: AtomicU64::new(0),
            page_map: b.page_map.filter(|_| source.is_some()),
            shrinking: AtomicBool::new(false),
            max_objects: b.max_objects,
            reserved: AtomicU64::new(0),
            mags: None,
            check,
            colours: AtomicU32::new(0),
            fast,
            checked,
            slab: Mutex::new(SlabState::new(set)),
            ctx,
            alloc_fails: AtomicU64::new(0),
            ctor_fails: AtomicU64::new(0),
            bad_frees: AtomicU64::new(0),
            meta_errors: AtomicU64::new(0),
            reentrant: AtomicU64::new(0),
            bad_rounds: AtomicU64::new(0),
            last_bad: Mutex::new(None),
            reports: AtomicU64::new(0),
            last_report: Mutex::new(None),
            next: AtomicPtr::new(core::ptr::null_mut()),
        };
        if flags.contains(CacheFlags::AUDIT) {
            let Some(mem) = cache.meta_alloc(LogRing::bytes(LOG_ENTRIES)) else {
                cache.free_hash();
                return Err(CreateError::NoMemory);
            };
            cache.slab.get_mut().log = Some(LogRing::new(mem));
        }
        match ctx {
            Some(ctx) if !flags.contains(CacheFlags::NOMAGAZINE) => {
                let bytes = cpu.slots() * core::mem::size_of::<CpuCache>();
                let Some(percpu) = cache.meta_alloc(bytes) else {
                    cache.free_hash();
                    return Err(CreateError::NoMemory);
                };
                cache.mags = Some(CacheMagazines::new(
                    cpu,
                    percpu,
                    &ctx.magazine_caches,
                    geo.size,
                    b.resize,
                    object_bytes,
                    plain && !checked,
                ));
            }
            _ => {}
        }
        // A memory cache without destructor caps its depot: past the cap,
        // bursts of frees flush to the slabs, whose emptied slabs go back
        // to the source (`release_spare_empties`) for other caches to use.
        if let Some(m) = cache.mags.as_ref() {
            if cache.ops.is_none() && object_bytes > 0 && !flags.contains(CacheFlags::QCACHE) {
                m.set_depot_cap(DEPOT_CAP_BYTES, geo.size);
            }
        }
        // `fast_mags` relies on it.
        assert!(
            cache.fast == Fast::Off || cache.mags.is_some(),
            "kmem-slab: a fast path without magazines"
        );
        if let Some(src) = source {
            crate::handle::register_importer(src);
        }
        Ok(cache)
    }

    fn new_hash(meta: &'a Arena<'a>) -> Result<AddrHash<'a>, CreateError> {
        let table =
            MetaMem::alloc(meta, table_bytes(kmem_hash::INIT_BITS)).ok_or(CreateError::NoMemory)?;
        AddrHash::new(table).ok_or(CreateError::NoMemory)
    }

    pub(crate) fn meta_alloc(&self, bytes: usize) -> Option<MetaMem<'a>> {
        MetaMem::alloc(self.meta, bytes)
    }

    pub(crate) fn meta_free(&self, mem: MetaMem<'_>) {
        if mem.free().is_err() {
            self.count_meta_error();
        }
    }

    pub(crate) fn count_meta_error(&self) {
        self.meta_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives back the hash tables and the transaction log (teardown).
    pub(crate) fn free_hash(&self) {
        let (tables, log) = {
            let mut st = self.slab.lock();
            (st.set.retire_tables(), st.log.take())
        };
        for table in tables.into_iter().flatten() {
            self.meta_free(table);
        }
        if let Some(log) = log {
            self.meta_free(log.into_mem());
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Object size (the requested size rounded to the alignment).
    #[allow(
        clippy::misnamed_getters,
        reason = "`geo.size` is the buffer stride, which includes the debug trailer"
    )]
    pub fn size(&self) -> usize {
        self.geo.obj
    }

    /// Object alignment.
    pub fn align(&self) -> usize {
        self.geo.align
    }

    /// The cache's flags.
    pub fn flags(&self) -> CacheFlags {
        self.flags
    }

    /// Bytes per slab, and objects per slab. (Objects are
    /// [`size`](Self::size) bytes apart, plus the debug trailer in debug
    /// mode.)
    pub fn slab_geometry(&self) -> (usize, usize) {
        (self.geo.slab_size, self.geo.per_slab as usize)
    }

    /// True when objects are kept on bufctls (large objects, `NOTOUCH`,
    /// `DEBUG`, `QCACHE`).
    pub fn uses_bufctls(&self) -> bool {
        self.geo.layout == Layout::Bufctl
    }

    /// How many colours the cache's slabs cycle through (slab colouring:
    /// each new slab's first object a rotating multiple of the cache line
    /// past its base); 1 when they are not coloured (bufctl slabs, or no
    /// room left over).
    pub fn colours(&self) -> u32 {
        match self.geo.layout {
            Layout::Small { .. } => self.geo.colours,
            Layout::Bufctl => 1,
        }
    }

    /// The magazine layer's counters, unless the cache is `NOMAGAZINE`.
    pub fn magazine_stats(&self) -> Option<MagazineStats> {
        self.mags.as_ref().map(CacheMagazines::stats)
    }

    /// Moves the calling CPU's magazines to the depot (where
    /// [`reap`](Self::reap) finds them); no-op without magazines, or when
    /// called from a handler that interrupted an operation of this context.
    pub fn flush_current(&self) {
        if let Some(mags) = &self.mags {
            if let Some(_section) = Section::enter(mags.cpu()) {
                mags.flush_current();
            }
        }
    }

    /// [`flush_current`](Self::flush_current) from inside an operation
    /// already under way (an arena's reclaim, called from the page
    /// allocation of an operation's section): the magazine layer keeps out
    /// of a slot its context is changing by itself (its busy mark), and
    /// the section of the operation under way covers the depot lock.
    pub(crate) fn flush_current_within(&self) {
        if let Some(mags) = &self.mags {
            // A section of its own when the caller has none.
            let _section = Section::enter(mags.cpu());
            mags.flush_current();
        }
    }

    /// The platform of a created cache (with magazines or not); `None` for
    /// the bootstrap caches, whose callers are inside an operation already.
    pub(crate) fn cpu(&self) -> Option<&'a C> {
        self.ctx.map(Caches::cpu)
    }

    /// Allocates a constructed object: from the caller's CPU magazines, the
    /// depot, or a slab (growing the cache from its source if needed, then
    /// running the constructor).
    ///
    /// Called from a signal or interrupt handler that interrupted an
    /// operation of its own context (see [`Section`]), it never touches the
    /// slot that operation may be changing, nor waits for a lock it may
    /// hold: it fails with [`AllocError::Reentrant`] where it would have to.
    #[inline(always)]
    #[track_caller]
    pub fn alloc(&self, flags: AllocFlags) -> Result<usize, AllocError> {
        self.alloc_by(flags, Caller::Location(Location::caller()))
    }

    /// [`alloc`](Self::alloc) on behalf of `caller` (a facade names its own
    /// caller for debug mode's audit, and with `site-stats` for the
    /// per-site counts).
    #[inline(always)]
    pub fn alloc_by(&self, flags: AllocFlags, caller: Caller) -> Result<usize, AllocError> {
        self.alloc_sized_by(flags, caller, 0)
    }

    /// [`alloc_by`](Self::alloc_by) for a facade that knows the size its
    /// caller asked for (up to [`size`](Self::size); 0: not known): debug
    /// mode records it, and refuses a [`free_sized_by`](Self::free_sized_by)
    /// with another size ([`BadFree::WrongSize`]).
    #[inline(always)]
    pub fn alloc_sized_by(
        &self,
        flags: AllocFlags,
        caller: Caller,
        size: usize,
    ) -> Result<usize, AllocError> {
        #[cfg(feature = "site-stats")]
        let site = SiteId::of(caller);
        if let Some(obj) = self.alloc_fast(flags) {
            #[cfg(feature = "site-stats")]
            self.check.hand_out_site(&obj, site);
            return Ok(obj.hand_out());
        }
        self.alloc_slow(
            self.source,
            flags,
            true,
            By { caller, size },
            #[cfg(feature = "site-stats")]
            site,
        )
    }

    /// Allocates an object into every element of `out`, all or nothing
    /// (Linux's `kmem_cache_alloc_bulk`): from the caller's magazines while
    /// they last, then, for a plain cache (no constructor, not debug, not
    /// checked, not a quantum cache), from the slab layer under one hold of
    /// its lock (let go only to grow a slab); other caches take each
    /// object as [`alloc`](Self::alloc) does. `ZERO` zeroes every object
    /// once all are taken. On a failure every object taken so far is freed
    /// back (unzeroed, constructed state intact) and the error returned;
    /// what `out` then holds is unspecified.
    #[allow(
        unsafe_code,
        reason = "a failed bulk allocation frees back the objects it took itself"
    )]
    #[track_caller]
    pub fn alloc_bulk(&self, flags: AllocFlags, out: &mut [usize]) -> Result<(), AllocError> {
        let caller = Caller::Location(Location::caller());
        if flags.contains(AllocFlags::ZERO)
            && (!self.memory || self.flags.contains(CacheFlags::QCACHE))
        {
            // As `alloc` refuses it.
            return Err(AllocError::NotMemory);
        }
        #[cfg(feature = "site-stats")]
        let site = SiteId::of(caller);
        let plain = self.ops.is_none()
            && !self.checked
            && !self.debugging()
            && !self.flags.contains(CacheFlags::QCACHE);
        // `ZERO` is applied once every object is taken: an object freed back
        // after a failure keeps its constructed state.
        let zero = flags.contains(AllocFlags::ZERO);
        let flags = flags - AllocFlags::ZERO;
        let mut done = 0;
        while done < out.len() {
            if let Some(obj) = self.alloc_fast(flags) {
                #[cfg(feature = "site-stats")]
                self.check.hand_out_site(&obj, site);
                out[done] = obj.hand_out();
                done += 1;
                continue;
            }
            let got = if plain {
                self.take_batch(
                    flags,
                    &mut out[done..],
                    #[cfg(feature = "site-stats")]
                    site,
                )
            } else {
                self.alloc_by(flags, caller).map(|obj| {
                    out[done] = obj;
                    1
                })
            };
            match got {
                Ok(n) => done += n,
                Err(e) => {
                    for &obj in &out[..done] {
                        // SAFETY: allocated just above from this cache, not
                        // handed to anyone yet.
                        let _ = unsafe { self.free_by(obj, caller) };
                    }
                    return Err(e);
                }
            }
        }
        if zero {
            for &obj in out.iter() {
                // SAFETY: a memory cache (`ZERO` on others was refused
                // above): `obj` is `geo.obj` bytes of memory just allocated
                // from it, the caller's from now on and used by no one yet.
                unsafe { core::ptr::write_bytes(obj as *mut u8, 0, self.geo.obj) };
            }
        }
        Ok(())
    }

    /// [`alloc_bulk`](Self::alloc_bulk)'s slab path for a plain cache:
    /// fills `out` under the cache lock, growing as needed; returns how
    /// many it took (at least one), or the error if it took none.
    fn take_batch(
        &self,
        flags: AllocFlags,
        out: &mut [usize],
        #[cfg(feature = "site-stats")] site: SiteId,
    ) -> Result<usize, AllocError> {
        let _section = match self.cpu() {
            Some(cpu) => Some(Section::enter(cpu).ok_or_else(|| self.refuse_reentrant())?),
            None => None,
        };
        let mut st = self.slab.lock();
        let mut n = 0;
        while n < out.len() {
            if st.busy >= self.max_objects {
                self.alloc_fails.fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    return Err(AllocError::LimitReached);
                }
                break;
            }
            let Some(obj) = st.take(
                BufState::Allocated,
                #[cfg(feature = "site-stats")]
                site,
            ) else {
                drop(st);
                match self.grow(self.source) {
                    Ok(slab) => {
                        st = self.slab.lock();
                        st.insert(&self.geo, slab);
                        continue;
                    }
                    Err(e) => {
                        self.alloc_fails.fetch_add(1, Ordering::Relaxed);
                        if n == 0 {
                            return Err(e);
                        }
                        st = self.slab.lock();
                        break;
                    }
                }
            };
            #[cfg(kmem_asan)]
            self.asan_unpoison(obj.addr());
            if self.check.tagged() {
                FreeCheck::hand_out_tagged(&obj);
            }
            st.direct_allocs += 1;
            zero_if(&obj, flags);
            out[n] = obj.hand_out();
            n += 1;
        }
        let rescale = st.set.hash().resize_target(false).is_some();
        drop(st);
        if rescale {
            self.rescale_hash(false);
        }
        Ok(n)
    }

    /// Frees every object of `objs` in order, each as [`free`](Self::free)
    /// frees it (checked, into the caller's magazines or its slab): Linux's
    /// `kmem_cache_free_bulk`. Stops at the first free refused, returning
    /// its index and error: the objects before it are freed, it and those
    /// after it are left as they were.
    ///
    /// # Safety
    /// As for [`free`](Self::free), for every object of `objs` (so no
    /// object appears twice).
    #[allow(
        unsafe_code,
        reason = "the public contract: the caller vouches for every object"
    )]
    #[track_caller]
    pub unsafe fn free_bulk(&self, objs: &[usize]) -> Result<(), (usize, FreeError)> {
        let caller = Caller::Location(Location::caller());
        for (i, &obj) in objs.iter().enumerate() {
            // SAFETY: forwarded, object by object.
            unsafe { self.free_by(obj, caller) }.map_err(|e| (i, e))?;
        }
        Ok(())
    }

    #[cold]
    fn refuse_reentrant(&self) -> AllocError {
        self.reentrant.fetch_add(1, Ordering::Relaxed);
        AllocError::Reentrant
    }

    /// [`alloc`](Self::alloc) inside an operation already under way (a
    /// quantum cache's, called by its arena), growing from `src` (a quantum
    /// cache's arena, else the cache's own source).
    #[inline(always)]
    pub(crate) fn alloc_from(
        &self,
        src: Option<&Arena<'_>>,
        flags: AllocFlags,
    ) -> Result<usize, AllocError> {
        if let Some(obj) = self.alloc_fast(flags) {
            return Ok(obj.hand_out());
        }
        self.alloc_slow(
            src,
            flags,
            false,
            Caller::Unknown.into(),
            #[cfg(feature = "site-stats")]
            SiteId::NONE,
        )
    }

    /// The fast path: a round from the caller's magazines (which take no
    /// lock, and keep out of a slot its own context has pinned).
    #[inline(always)]
    fn alloc_fast(&self, flags: AllocFlags) -> Option<Taken> {
        // `Tagged` and `Owned` have a fast path (see `Fast`), without `ZERO`.
        if (self.fast as u32 | (flags & AllocFlags::ZERO).bits()) > Fast::Owned as u32 {
            return None;
        }
        let obj = self.fast_mags().alloc_taken()?;
        #[cfg(kmem_asan)]
        self.asan_unpoison(obj.addr());
        if self.fast == Fast::Tagged {
            FreeCheck::hand_out_tagged(&obj);
        }
        Some(obj)
    }

    /// The magazine layer of a cache with a fast path (`fast` is not
    /// `Off`).
    #[allow(
        unsafe_code,
        reason = "the fast paths' one test of the cache's kind also stands for the magazines' presence"
    )]
    #[inline(always)]
    fn fast_mags(&self) -> &CacheMagazines<'a, C> {
        debug_assert!(self.fast != Fast::Off);
        // SAFETY: `new` sets `fast` to `Tagged` or `Owned` only for a cache
        // with magazines, and checks that it built them; neither field
        // changes afterwards.
        unsafe { self.mags.as_ref().unwrap_unchecked() }
    }

    /// Past the magazines: the slab layer (and `alloc_general` for what
    /// the fast path does not take). A caller's own operation (`gate`)
    /// begins a section here, where locks may be taken, and is refused if
    /// its context is inside one already (it interrupted it). With
    /// `site-stats`, the object counts for `site`.
    #[inline(never)]
    fn alloc_slow(
        &self,
        src: Option<&Arena<'_>>,
        flags: AllocFlags,
        gate: bool,
        caller: By,
        #[cfg(feature = "site-stats")] site: SiteId,
    ) -> Result<usize, AllocError> {
        let _section = match self.cpu() {
            Some(cpu) if gate => Some(Section::enter(cpu).ok_or_else(|| self.refuse_reentrant())?),
            _ => None,
        };
        let ask = Ask {
            flags,
            caller,
            #[cfg(feature = "site-stats")]
            site,
        };
        let fast = self.mags.is_some() && !self.checked && !flags.contains(AllocFlags::ZERO);
        if fast {
            // The magazines missed already: a plain cache loads the
            // caller's magazine from its slabs in one pass (not a cache with
            // a limit: a CPU would hold back part of it for itself).
            if self.fast == Fast::Tagged && self.max_objects == u64::MAX {
                if let Some(obj) = self.refill() {
                    #[cfg(kmem_asan)]
                    self.asan_unpoison(obj.addr());
                    FreeCheck::hand_out_tagged(&obj);
                    #[cfg(feature = "site-stats")]
                    self.check.hand_out_site(&obj, site);
                    return Ok(obj.hand_out());
                }
            }
            return self.alloc_from_slab(src, ask);
        }
        self.alloc_general(src, ask)
    }

    /// Batch refill for a plain cache whose magazines missed: the objects
    /// its slabs hold now, up to the caller's magazine's fill target, go
    /// into that magazine under one hold of the slab lock (marked free, as
    /// a free into the magazines marks them; within `max_objects`), and one
    /// comes out. `None` when the slabs hold none (growing a slab is the
    /// one-object path's, which reports its errors; the layer may have
    /// taken an empty magazine for the caller meanwhile) or the layer has
    /// no magazine to load.
    #[allow(
        unsafe_code,
        reason = "the rounds a batch refill loads are this cache's objects, which the magazine layer trusts"
    )]
    fn refill(&self) -> Option<Taken> {
        // Each round loaded is an object this cache's slabs hand over,
        // marked cached, to nobody else.
        // SAFETY: as just said.
        let taken = unsafe {
            self.fast_mags().refill(|sink| {
                let mut st = self.slab.lock();
                while sink.room() > 0 && st.busy < self.max_objects {
                    let Some(obj) = st.take(
                        BufState::Allocated,
                        #[cfg(feature = "site-stats")]
                        SiteId::NONE,
                    ) else {
                        break;
                    };
                    // AddressSanitizer builds: the mark's word is written, then
                    // the whole object is poisoned, as a free into the
                    // magazines leaves it (the fast path unpoisons it).
                    #[cfg(kmem_asan)]
                    let addr = obj.addr();
                    #[cfg(kmem_asan)]
                    kmem_arena::asan::unpoison(addr, core::mem::size_of::<usize>());
                    let loaded = sink.push(self.check.mark_cached(obj));
                    debug_assert!(loaded, "the sink had room");
                    #[cfg(kmem_asan)]
                    kmem_arena::asan::poison(addr, self.geo.size);
                }
            })
        };
        taken
    }

    /// Every allocation the fast path above does not finish: `ZERO`,
    /// checked caches and `NOMAGAZINE` caches.
    #[inline(never)]
    fn alloc_general(&self, src: Option<&Arena<'_>>, ask: Ask) -> Result<usize, AllocError> {
        let flags = ask.flags;
        // A quantum cache is allocated from only by its arena, which never
        // asks for `ZERO`: refused like a cache of integers.
        if flags.contains(AllocFlags::ZERO)
            && (!self.memory || self.flags.contains(CacheFlags::QCACHE))
        {
            return Err(AllocError::NotMemory);
        }
        if let Some(obj) = self.mags.as_ref().and_then(CacheMagazines::alloc_taken) {
            if self.checked {
                let mut st = self.slab.lock();
                let report = self.mark_handed_out(&mut st, obj.addr(), ask.caller);
                #[cfg(feature = "site-stats")]
                st.set.set_site(obj.addr(), ask.site);
                drop(st);
                if let Some(r) = report {
                    self.deliver(r);
                }
            }
            // After debug mode's poison check, which leaves the object
            // poisoned.
            #[cfg(kmem_asan)]
            self.asan_unpoison(obj.addr());
            if !self.checked && self.fast == Fast::Tagged {
                FreeCheck::hand_out_tagged(&obj);
            }
            // Not checked: a headed cache, whose site slots need no lock.
            #[cfg(feature = "site-stats")]
            if !self.checked {
                self.check.hand_out_site(&obj, ask.site);
            }
            zero_if(&obj, flags);
            return Ok(obj.hand_out());
        }
        self.alloc_from_slab(src, ask)
    }

    /// AddressSanitizer builds: `obj` is allocated again.
    #[cfg(kmem_asan)]
    fn asan_unpoison(&self, obj: usize) {
        if self.memory {
            kmem_arena::asan::unpoison(obj, self.geo.obj);
        }
    }

    /// AddressSanitizer builds: `obj` (checked to be one of this cache's
    /// allocated objects, so foreign memory is never poisoned) is free.
    #[cfg(kmem_asan)]
    fn asan_poison(&self, st: &SlabState<'_>, obj: usize) {
        if self.memory && st.validate(obj, From::User).is_ok() {
            kmem_arena::asan::poison(obj, self.geo.size);
        }
    }

    /// [`asan_poison`](Self::asan_poison) on the free fast path, which
    /// takes no lock: skipped (best effort) if the slab lock is busy, since
    /// its holder may be the code a signal handler interrupted, or if the
    /// caller is inside an operation already. The lock is held in a section
    /// of its own, so a handler that interrupts this free is refused rather
    /// than waiting for the lock its own context holds.
    #[cfg(kmem_asan)]
    fn asan_poison_if_unlocked(&self, obj: usize) {
        let _section = match self.cpu().map(Section::enter) {
            Some(None) => return,
            section => section,
        };
        if let Some(st) = self.slab.try_lock() {
            self.asan_poison(&st, obj);
        }
    }

    /// The slab path: an unconstructed object from a slab, then the
    /// constructor.
    #[inline(never)]
    fn alloc_from_slab(&self, src: Option<&Arena<'_>>, ask: Ask) -> Result<usize, AllocError> {
        self.take_object(src, ask).map(Taken::hand_out)
    }

    /// An object of a bootstrap cache (`kmem_slab`, `kmem_bufctl`,
    /// `kmem_cache`, `kmem_magazine`), for this crate's own structures.
    #[inline(never)]
    pub(crate) fn take_bootstrap(&self) -> Option<Taken> {
        let ask = Ask {
            flags: AllocFlags::ATOMIC,
            caller: Caller::Unknown.into(),
            #[cfg(feature = "site-stats")]
            site: SiteId::NONE,
        };
        self.take_object(self.source, ask)
            .ok()
            .filter(|obj| obj.addr() != 0)
    }

    /// A tracked object being handed out: debug mode's checks and audit
    /// (their report, to deliver with the lock dropped), then `Allocated`.
    fn mark_handed_out(&self, st: &mut SlabState<'a>, addr: usize, caller: By) -> Option<Report> {
        let report = self
            .debugging()
            .then(|| self.debug_hand_out(st, self.crossing(addr, caller)))
            .flatten();
        st.mark(addr, BufState::Allocated);
        report
    }

    /// [`alloc_from_slab`](Self::alloc_from_slab), as a token.
    #[inline(always)]
    fn take_object(&self, src: Option<&Arena<'_>>, ask: Ask) -> Result<Taken, AllocError> {
        let Ask {
            flags,
            caller,
            #[cfg(feature = "site-stats")]
            site,
        } = ask;
        // Debug mode checks an object before it is marked allocated.
        let state = if self.debugging() {
            BufState::Cached
        } else {
            BufState::Allocated
        };
        let mut st = self.slab.lock();
        // At most two tries: before and after growing the cache by a slab
        // (`grown`: how the growth went).
        let mut grown: Option<Result<(), AllocError>> = None;
        let took = loop {
            if st.busy >= self.max_objects {
                // On the second try: others reached the limit while this
                // one grew.
                break Err(AllocError::LimitReached);
            }
            let obj = st.take(
                state,
                #[cfg(feature = "site-stats")]
                site,
            );
            if let Some(obj) = obj {
                break Ok(obj);
            }
            // A fresh slab has objects; after a failed growth, the source's
            // reclaim may have put some back into this cache's slabs (a
            // purge of other CPUs' magazines, a shrinker), which the second
            // try takes.
            if let Some(grown) = grown {
                break Err(grown.expect_err("kmem-slab: a fresh slab has objects"));
            }
            drop(st);
            let slab = self.grow(src);
            st = self.slab.lock();
            grown = Some(slab.map(|slab| st.insert(&self.geo, slab)));
        };
        let obj = match took {
            Ok(obj) => obj,
            Err(e) => {
                drop(st);
                self.alloc_fails.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let report = if self.debugging() {
            self.mark_handed_out(&mut st, obj.addr(), caller)
        } else {
            None
        };
        #[cfg(kmem_asan)]
        self.asan_unpoison(obj.addr());
        if self.check.tagged() {
            FreeCheck::hand_out_tagged(&obj);
        }
        st.direct_allocs += 1;
        let rescale = st.set.hash().resize_target(false).is_some();
        drop(st);
        if let Some(r) = report {
            self.deliver(r);
        }
        if rescale {
            self.rescale_hash(false);
        }
        let mut obj = obj;
        if let Some(ops) = self.ops {
            // The object goes back to its slab if the constructor fails or
            // panics: nothing leaks, and the cache stays destroyable.
            let addr = obj.addr();
            let undo = Undo::new(obj, |obj: Taken| {
                self.unconstructed(
                    obj.into_freed(),
                    #[cfg(feature = "site-stats")]
                    site,
                );
            });
            if self.call_out(|| ops.construct(addr, flags)).is_err() {
                drop(undo);
                self.ctor_fails.fetch_add(1, Ordering::Relaxed);
                self.alloc_fails.fetch_add(1, Ordering::Relaxed);
                return Err(AllocError::Ctor);
            }
            obj = undo.disarm();
        }
        zero_if(&obj, flags);
        Ok(obj)
    }

    /// Gives back an object taken by `alloc_from_slab` whose constructor
    /// failed or panicked (with `site-stats`: taken for `site`, which does
    /// not count the allocation).
    fn unconstructed(&self, obj: Freed, #[cfg(feature = "site-stats")] site: SiteId) {
        let mut st = self.slab.lock();
        #[cfg(kmem_asan)]
        self.asan_poison(&st, obj.addr());
        // Taken from this slab state just before: it goes back.
        let _ = st.give(obj, From::User);
        st.direct_allocs -= 1;
        #[cfg(feature = "site-stats")]
        unalloc(site);
    }

    /// Calls the user's shrinker, if any, the way a constructor runs (see
    /// [`call_out`](Self::call_out)); returns what it says it freed.
    /// Not again while it runs: a call from inside it (an allocation of
    /// its own that finds the source exhausted) or from another thread
    /// meanwhile does nothing and returns 0.
    pub(crate) fn call_reclaim(&self, pressure: Pressure) -> usize {
        if self.reclaim.is_none() || !self.claim_shrinker() {
            return 0;
        }
        self.run_claimed_shrinker(pressure)
    }

    /// True when the cache has a shrinker.
    pub(crate) fn has_shrinker(&self) -> bool {
        self.reclaim.is_some()
    }

    /// Marks the shrinker running; false when it already is.
    pub(crate) fn claim_shrinker(&self) -> bool {
        self.shrinking
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Runs the shrinker [`claim_shrinker`](Self::claim_shrinker) marked
    /// running, then clears the mark (also if it panics).
    pub(crate) fn run_claimed_shrinker(&self, pressure: Pressure) -> usize {
        struct Clear<'f>(&'f AtomicBool);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _clear = Clear(&self.shrinking);
        let Some(r) = self.reclaim else {
            return 0;
        };
        self.reclaim_calls.fetch_add(1, Ordering::Relaxed);
        self.call_out(|| r.reclaim(pressure))
    }

    /// Waits until no shrinker call runs (a cache being destroyed, which
    /// nothing can reach any more, waits for one a walk of the registry
    /// started before).
    pub(crate) fn wait_shrinker(&self) {
        while self.shrinking.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
    }

    /// Runs a constructor or destructor: with the context's operation mark
    /// lifted (it may allocate, from this cache too), and holding no lock.
    fn call_out<R>(&self, f: impl FnOnce() -> R) -> R {
        call_out(self.cpu(), f)
    }

    /// Frees `obj`, which must not be used afterwards: into the caller's
    /// magazines, else (destructed) to its slab.
    ///
    /// Checks, before the object enters a magazine: a headed cache's
    /// owner, object-start and (without a constructor) free-mark checks,
    /// or a bufctl cache's lookup under its lock; a debug cache checks
    /// everything under its lock and reports. A constructed headed cache's
    /// double free is found when its magazine drains (counted in
    /// [`CacheStats::bad_frees`], kept by [`last_bad_free`](Self::last_bad_free)).
    /// A refused free changes nothing.
    ///
    /// # Safety
    /// `obj` came from this cache's [`alloc`](Self::alloc) and has not been
    /// freed since. (Violations are detected as described, best effort; an
    /// undetected one can hand an object to two users.)
    ///
    /// Called from a signal or interrupt handler that interrupted an
    /// operation of its own context (see [`Section`]), the free takes no
    /// lock: an object of a memory cache without constructor or destructor
    /// (the `kmalloc` classes, for one) goes onto its slot's deferred stack,
    /// from which the slot's next allocations take it; any other is refused
    /// with [`BadFree::Reentrant`] and stays the caller's.
    #[allow(
        unsafe_code,
        reason = "the public contract: the caller vouches for `obj`"
    )]
    #[inline(always)]
    #[track_caller]
    pub unsafe fn free(&self, obj: usize) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        unsafe { self.free_by(obj, Caller::Location(Location::caller())) }
    }

    /// [`free`](Self::free) on behalf of `caller` (see
    /// [`alloc_by`](Self::alloc_by)).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[allow(
        unsafe_code,
        reason = "the public contract: the caller vouches for `obj`"
    )]
    #[inline(always)]
    pub unsafe fn free_by(&self, obj: usize, caller: Caller) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        unsafe { self.free_sized_by(obj, caller, 0) }
    }

    /// [`free_by`](Self::free_by) with the size the caller says it asked
    /// for (0: not known; see [`alloc_sized_by`](Self::alloc_sized_by)).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[allow(
        unsafe_code,
        reason = "the public contract: the caller vouches for `obj`"
    )]
    #[inline(always)]
    pub unsafe fn free_sized_by(
        &self,
        obj: usize,
        caller: Caller,
        size: usize,
    ) -> Result<(), FreeError> {
        // SAFETY: the caller's guarantee (above) is `Freed::new`'s: `obj`
        // came from this cache's `alloc`, was not freed since, and is not
        // used after this call.
        let obj = unsafe { Freed::new(obj) };
        self.free_gated(obj, true, caller, size)
    }

    /// [`free`](Self::free): the magazines, then (in a section of its own
    /// if `gate`, refused or deferred if its context is inside one) the
    /// slab layer.
    #[inline(always)]
    fn free_gated(
        &self,
        obj: Freed,
        gate: bool,
        caller: Caller,
        size: usize,
    ) -> Result<(), FreeError> {
        let admitted = match self.fast {
            Fast::Tagged => self.check.admit_tagged(&obj),
            Fast::Owned => self.check.admit_owned(&obj),
            Fast::Off => return self.free_slow(obj, gate, caller, size, 0),
        };
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(_) => return Err(self.refused(obj.addr(), self.check.why(&obj), gate)),
        };
        // Freed from here on, wherever it goes (a free refused as
        // `Reentrant` below stays uncounted until it is freed again).
        #[cfg(feature = "site-stats")]
        self.check.free_site(admitted);
        #[cfg(kmem_asan)]
        self.asan_poison_if_unlocked(obj.addr());
        match self.fast_mags().free(obj) {
            Ok(()) => Ok(()),
            Err(obj) => self.free_slow(obj, gate, caller, size, admitted.prev),
        }
    }

    /// The slab layer's part of a free, in a section (see `free_gated`).
    /// `prev`: the first word the free mark replaced (a plain headed
    /// cache's fast path), put back if the free is refused.
    #[inline(never)]
    fn free_slow(
        &self,
        obj: Freed,
        gate: bool,
        caller: Caller,
        size: usize,
        prev: usize,
    ) -> Result<(), FreeError> {
        let _section = match self.cpu() {
            Some(cpu) if gate => match Section::enter(cpu) {
                Some(section) => Some(section),
                None => return self.free_reentrant(obj, prev),
            },
            _ => None,
        };
        if let Some(mags) = self.mags.as_ref().filter(|_| !self.checked) {
            // The magazines had no room already, and no empty magazine
            // could be had: a full one goes back in one pass to make room
            // (a cache without a destructor: the flush runs with the CPU's
            // slot held, where a destructor could neither allocate nor
            // unwind safely), or the object goes back alone.
            if self.ops.is_none() {
                if let Err(obj) = mags.free_after_flush(obj, |rounds| self.drain_batch(rounds)) {
                    return self.free_to_slab(obj, From::User);
                }
                self.release_spare_empties();
                return Ok(());
            }
            return self.free_to_slab(obj, From::User);
        }
        self.free_general(obj, By { caller, size })
    }

    /// A free from a handler that interrupted an operation of its context:
    /// onto the slot's deferred stack if the cache's objects can go there
    /// (memory of a word at least, without constructor, destructor or
    /// `DEBUG` tracking; see `CacheMagazines::defer`), else refused.
    #[cold]
    #[inline(never)]
    fn free_reentrant(&self, obj: Freed, prev: usize) -> Result<(), FreeError> {
        self.reentrant.fetch_add(1, Ordering::Relaxed);
        let refused = match &self.mags {
            Some(mags) => match mags.defer(obj) {
                Ok(()) => return Ok(()),
                Err(obj) => obj,
            },
            None => obj,
        };
        // Still the caller's: as it was (`prev`, the first word its free
        // mark replaced; and unpoisoned).
        if self.fast == Fast::Tagged {
            self.check.unmark(&refused, prev);
        }
        #[cfg(kmem_asan)]
        self.asan_unpoison(refused.addr());
        Err(FreeError {
            cache: self.name,
            addr: refused.addr(),
            kind: BadFree::Reentrant,
        })
    }

    /// [`free`](Self::free) inside an operation already under way (a
    /// quantum cache's free, called by its arena).
    #[inline(always)]
    pub(crate) fn free_in(&self, obj: Freed) -> Result<(), FreeError> {
        self.free_gated(obj, false, Caller::Unknown, 0)
    }

    /// Frees that the fast path above does not take: `NOMAGAZINE` and
    /// checked caches.
    #[inline(never)]
    fn free_general(&self, obj: Freed, caller: By) -> Result<(), FreeError> {
        let addr = obj.addr();
        if self.mags.is_none() && !self.debugging() {
            return self.free_to_slab(obj, From::User);
        }
        // A checked cache: check before the object enters a magazine (or,
        // a debug cache without magazines, its slab).
        let mut st = self.slab.lock();
        let mut checked = st.validate(addr, From::User).map_err(|k| (k, None));
        if checked.is_ok() && self.debugging() {
            if let Some(r) = self.debug_free(&mut st, self.crossing(addr, caller)) {
                let kind = match r.finding {
                    crate::debug::Finding::BadFree(kind) => kind,
                    crate::debug::Finding::WriteAfterFree { .. } => BadFree::Overrun,
                };
                checked = Err((kind, Some(r)));
            }
        }
        let Some(mags) = &self.mags else {
            drop(st);
            return match checked {
                Ok(()) => self.free_to_slab(obj, From::User),
                Err((k, report)) => Err(self.refuse_debug(addr, k, report, caller)),
            };
        };
        if checked.is_ok() {
            #[cfg(kmem_asan)]
            self.asan_poison(&st, addr);
            st.mark(addr, BufState::Cached);
            #[cfg(feature = "site-stats")]
            st.set.set_site(addr, SiteId::NONE);
            st.set.poison(addr);
        }
        drop(st);
        if let Err((k, report)) = checked {
            return Err(self.refuse_debug(addr, k, report, caller));
        }
        match mags.free(obj) {
            Ok(()) => Ok(()),
            // No room and no empty magazine: a batch flush, as in
            // `free_slow` (no destructor).
            Err(obj) if self.ops.is_none() => {
                match mags.free_after_flush(obj, |rounds| self.drain_batch(rounds)) {
                    Ok(()) => Ok(()),
                    Err(obj) => self.free_to_slab(obj, From::Cached),
                }
            }
            Err(obj) => self.free_to_slab(obj, From::Cached),
        }
    }

    /// A free that reaches the slab layer: destructed, checked, given back.
    #[inline(never)]
    pub(crate) fn free_to_slab(&self, obj: Freed, from: From) -> Result<(), FreeError> {
        let addr = obj.addr();
        self.release(obj, from, true).map_err(|k| self.bad(addr, k))
    }

    /// Destructs `obj` and gives it back to its slab, after checking it.
    /// `user` counts it as a free (a drained round was counted when it was
    /// freed into its magazine).
    pub(crate) fn release(&self, obj: Freed, from: From, user: bool) -> Result<(), BadFree> {
        let mut obj = obj;
        if let Some(ops) = self.ops {
            let addr = obj.addr();
            self.slab.lock().validate(addr, from)?;
            #[cfg(kmem_asan)]
            self.asan_unpoison(addr);
            // A destructor that panics leaves the object destructed as far
            // as the cache is concerned: it goes back all the same.
            let undo = Undo::new(obj, |obj| {
                let _ = self.give_back(obj, from, user);
            });
            self.call_out(|| ops.destruct(addr));
            obj = undo.disarm();
        }
        self.give_back(obj, from, user)
    }

    /// Gives a destructed object back to its slab, after checking it.
    fn give_back(&self, obj: Freed, from: From, user: bool) -> Result<(), BadFree> {
        let mut st = self.slab.lock();
        #[cfg(kmem_asan)]
        if self.memory && st.validate(obj.addr(), from).is_ok() {
            kmem_arena::asan::poison(obj.addr(), self.geo.size);
        }
        let addr = obj.addr();
        st.give(obj, from)?;
        st.set.poison(addr);
        if user {
            st.direct_frees += 1;
        }
        Ok(())
    }

    /// A round leaving the magazine layer for the slab layer.
    pub(crate) fn drain_one(&self, obj: Freed) {
        let from = if self.checked {
            From::Cached
        } else {
            From::User
        };
        let addr = obj.addr();
        if let Err(kind) = self.release(obj, from, false) {
            self.bad_rounds.fetch_add(1, Ordering::Relaxed);
            let err = self.bad(addr, kind);
            *self.last_bad.lock() = Some(err);
        }
    }

    /// Rounds leaving the magazine layer together (one magazine's): a
    /// cache without destructor gives them back under one hold of its lock,
    /// with the checks [`drain_one`](Self::drain_one) makes; refusals are
    /// classified and counted after the lock is let go.
    pub(crate) fn drain_batch(&self, rounds: &mut dyn Iterator<Item = Freed>) {
        if self.ops.is_some() {
            rounds.for_each(|obj| self.drain_one(obj));
            return;
        }
        let from = if self.checked {
            From::Cached
        } else {
            From::User
        };
        let mut refused = ArrayVec::<(usize, BadFree), { kmem_magazine::MAGAZINE_ROUNDS }>::new();
        let mut st = self.slab.lock();
        for obj in rounds {
            let addr = obj.addr();
            #[cfg(kmem_asan)]
            if self.memory && st.validate(addr, from).is_ok() {
                kmem_arena::asan::poison(addr, self.geo.size);
            }
            match st.give(obj, from) {
                Ok(()) => st.set.poison(addr),
                Err(kind) => {
                    if refused.try_push((addr, kind)).is_err() {
                        self.bad_rounds.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        drop(st);
        for (addr, kind) in refused {
            self.bad_rounds.fetch_add(1, Ordering::Relaxed);
            let err = self.bad(addr, kind);
            *self.last_bad.lock() = Some(err);
        }
    }

    /// A free the checked path refused: classified and counted; a debug
    /// cache reports it too (with `report`, or a fresh one).
    #[cold]
    #[inline(never)]
    fn refuse_debug(
        &self,
        addr: usize,
        kind: BadFree,
        report: Option<Report>,
        caller: By,
    ) -> FreeError {
        let err = self.bad(addr, kind);
        if self.debugging() {
            let mut r = report.unwrap_or_else(|| self.debug_refused(addr, err.kind, caller));
            r.finding = crate::debug::Finding::BadFree(err.kind);
            if let (BadFree::WrongCache(_), Some(ctx)) = (err.kind, self.ctx) {
                // The owner's audit, if it keeps one.
                if let Some((alloc, free)) = ctx.audit_of(addr, self) {
                    (r.last_alloc, r.last_free) = (alloc, free);
                }
            }
            self.deliver(r);
        }
        err
    }

    /// A free the fast path's check refused: classified (in a section of
    /// its own when `gate`; unclassified if its context is inside one) and
    /// counted.
    #[cold]
    #[inline(never)]
    fn refused(&self, addr: usize, kind: BadFree, gate: bool) -> FreeError {
        let _section = match self.cpu() {
            Some(cpu) if gate => match Section::enter(cpu) {
                Some(section) => Some(section),
                None => {
                    self.bad_frees.fetch_add(1, Ordering::Relaxed);
                    return FreeError {
                        cache: self.name,
                        addr,
                        kind,
                    };
                }
            },
            _ => None,
        };
        self.bad(addr, kind)
    }

    /// Classifies and counts a refused free. Takes no lock of this cache
    /// while asking the others.
    fn bad(&self, addr: usize, kind: BadFree) -> FreeError {
        let kind = match (kind, self.ctx) {
            (BadFree::Foreign, Some(ctx)) => {
                ctx.owner_of(addr, self).map_or(kind, BadFree::WrongCache)
            }
            _ => kind,
        };
        self.bad_frees.fetch_add(1, Ordering::Relaxed);
        FreeError {
            cache: self.name,
            addr,
            kind,
        }
    }

    /// Checks, changing nothing, that `obj` could be freed now: an object
    /// of this cache that is allocated (for a cache without a constructor
    /// with magazines: not carrying the free mark; for a checked or debug
    /// cache: not in a magazine). A facade's `realloc` asks before it
    /// copies from `obj`. Takes the cache lock: not from a handler that
    /// interrupted an operation of this context (see [`Section`]).
    ///
    /// A constructed cache's object in a magazine passes (see
    /// [`free`](Self::free)).
    ///
    /// # Safety
    /// If `obj` is an allocated object of this cache, it is the caller's,
    /// and no other thread writes it during the call (the check reads its
    /// first word).
    #[allow(
        unsafe_code,
        reason = "the public contract: the caller vouches that nobody writes `obj`"
    )]
    pub unsafe fn check_allocated(&self, obj: usize) -> Result<(), FreeError> {
        let st = self.slab.lock();
        let mut found = st.validate(obj, From::User);
        if found.is_ok() && self.fast == Fast::Tagged && st.set.carries_mark(obj, self.check.key())
        {
            found = Err(BadFree::DoubleFree);
        }
        drop(st);
        found.map_err(|kind| FreeError {
            cache: self.name,
            addr: obj,
            kind,
        })
    }

    /// The last bad free found while draining magazines, if any.
    pub fn last_bad_free(&self) -> Option<FreeError> {
        *self.last_bad.lock()
    }

    /// True when `addr` lies in one of this cache's slabs (for bufctl caches:
    /// is an object start).
    pub fn owns(&self, addr: usize) -> bool {
        self.slab.lock().owns(addr)
    }

    /// Verifies the slab lists, free chains, object states and totals.
    pub fn check(&self) -> Result<(), CheckError> {
        self.slab
            .lock()
            .check(&self.geo, (!self.uses_bufctls()).then_some(&self.check))
    }

    /// The cache's counters (the `::kmastat` columns and more). While other
    /// threads allocate and free, the per-CPU counters are a racy snapshot.
    pub fn stats(&self) -> CacheStats {
        let mags = self.mags.as_ref().map(CacheMagazines::stats);
        let st = self.slab.lock();
        let (cpu_allocs, cpu_frees) = mags.map_or((0, 0), |m| (m.cpu_allocs, m.cpu_frees));
        let allocs = st.direct_allocs + cpu_allocs;
        let frees =
            (st.direct_frees + cpu_frees).saturating_sub(self.bad_rounds.load(Ordering::Relaxed));
        CacheStats {
            name: self.name,
            buf_size: self.geo.size,
            // Per-slot counters are read one by one while other threads
            // run, so a free can be seen before its allocation.
            buf_in_use: allocs.saturating_sub(frees),
            buf_total: st.total,
            slab_busy: st.busy,
            memory_in_use: st.slabs() * self.geo.slab_size,
            slabs: st.slabs(),
            empty_slabs: st.empty_slabs(),
            partial_slabs: st.partial_slabs(),
            slab_creates: st.slab_creates,
            slab_destroys: st.slab_destroys,
            allocs,
            direct_allocs: st.direct_allocs,
            alloc_fails: self.alloc_fails.load(Ordering::Relaxed),
            ctor_fails: self.ctor_fails.load(Ordering::Relaxed),
            bad_frees: self.bad_frees.load(Ordering::Relaxed),
            reports: self.reports.load(Ordering::Relaxed),
            reentrant: self.reentrant.load(Ordering::Relaxed),
            reclaim_calls: self.reclaim_calls.load(Ordering::Relaxed),
            reserved: self.reserved.load(Ordering::Relaxed),
            meta_errors: self.meta_errors.load(Ordering::Relaxed),
            hash_chains: 1usize << st.set.hash().bits(),
            magazines: mags,
        }
    }
}

/// Fills a freshly taken object with zeroes if the allocation asked for it.
fn zero_if(obj: &Taken, flags: AllocFlags) {
    if flags.contains(AllocFlags::ZERO) {
        obj.zero();
    }
}
