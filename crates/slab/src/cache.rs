//! [`KmemCache`]: an object cache — magazines in front of slabs over a
//! source arena: building it, and its allocation and free paths.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use kmem_arena::{Arena, Constraints, Name, Source};
use kmem_magazine::{Cpu, CpuCache, MagazineSource, MagazineStats, Magazines, Section};
use spin::Mutex;

use crate::builder::{CacheBuilder, ObjectOps};
use crate::caches::Caches;
use crate::error::{AllocError, BadFree, CheckError, CreateError, FreeError};
use crate::geometry::{Geometry, Layout, Request};
use crate::hash::{table_bytes, AddrHash};
use crate::raw::{self, BufState};
use crate::slabs::{From, SlabState};
use crate::stats::CacheStats;
use crate::{AllocFlags, CacheFlags};

/// Runs its closure when dropped: an undo step that must also happen when
/// a call-out panics.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

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
    /// Alignment a slab buffer needs: its size (small layout, found by
    /// rounding an object's address down) or the object alignment.
    pub(crate) slab_align: usize,
    /// The source's quantum does not give `slab_align` by itself.
    pub(crate) xalloc: bool,
    /// Where slabs come from; `None` for a quantum cache, whose arena is
    /// passed in by every call that needs it.
    pub(crate) source: Option<&'a Arena<'a>>,
    meta: &'a Arena<'a>,
    ops: Option<&'a dyn ObjectOps>,
    pub(crate) mags: Option<Magazines<'a, C>>,
    pub(crate) percpu: Option<(usize, usize)>,
    pub(crate) slab: Mutex<SlabState>,
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
    last_bad: Mutex<Option<FreeError>>,
    /// Next cache in the registry of its `Caches` (type-erased, so the
    /// cache stays covariant in `'a`).
    pub(crate) next: AtomicPtr<()>,
}

/// The magazine cache as the magazine layer's [`MagazineSource`].
pub(crate) struct MagSrc<'x, 'a, C: Cpu>(pub(crate) &'x KmemCache<'a, C>);

// SAFETY: `kmem_magazine` is built by `Caches::new` with `MAGAZINE_SIZE`
// objects aligned to `MAGAZINE_ALIGN` (at least), over the base arena, a
// memory arena; an object it hands out is used by no one else until freed.
unsafe impl<C: Cpu> MagazineSource for MagSrc<'_, '_, C> {
    fn alloc_magazine(&self) -> Option<NonNull<u8>> {
        let mem = self
            .0
            .alloc_from_slab(self.0.source, AllocFlags::ATOMIC)
            .ok()?;
        NonNull::new(mem as *mut u8)
    }

    unsafe fn free_magazine(&self, mem: NonNull<u8>) {
        // A refusal is counted with the magazine cache's bad frees.
        let _ = self.0.free_to_slab(mem.as_ptr() as usize, From::User);
    }
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
        let geo = Geometry::plan(&Request {
            size: b.size,
            align: b.align,
            flags: b.flags,
            qcache_max: b.qcache_max,
            quantum,
            memory,
            force_small: ctx.is_none(),
        })?;
        let slab_align = match geo.layout {
            Layout::Small { .. } => geo.slab_size,
            Layout::Bufctl => geo.align,
        };
        let mut cache = Self {
            name: b.name,
            geo,
            flags: b.flags,
            memory,
            slab_align,
            xalloc: quantum % slab_align != 0,
            source,
            meta: base,
            ops: b.ops,
            mags: None,
            percpu: None,
            // Replaced below; `AddrHash` needs its table first.
            slab: Mutex::new(SlabState::new(Self::new_hash(base)?)),
            ctx,
            alloc_fails: AtomicU64::new(0),
            ctor_fails: AtomicU64::new(0),
            bad_frees: AtomicU64::new(0),
            meta_errors: AtomicU64::new(0),
            reentrant: AtomicU64::new(0),
            bad_rounds: AtomicU64::new(0),
            last_bad: Mutex::new(None),
            next: AtomicPtr::new(core::ptr::null_mut()),
        };
        if ctx.is_some() && !b.flags.contains(CacheFlags::NOMAGAZINE) {
            let slots = cpu.slots();
            let bytes = slots * core::mem::size_of::<CpuCache>();
            let Some(mem) = cache.meta_alloc(bytes) else {
                cache.free_hash();
                return Err(CreateError::NoMemory);
            };
            cache.percpu = Some((mem, bytes));
            let arr = mem as *mut CpuCache;
            for i in 0..slots {
                // SAFETY: `mem` is fresh metadata memory of `bytes` bytes,
                // aligned to 64, owned by this cache.
                unsafe { arr.add(i).write(CpuCache::new()) };
            }
            // SAFETY: initialized above; the array lives until `teardown`,
            // which drops the magazine layer before freeing it.
            let cpus = unsafe { core::slice::from_raw_parts_mut(arr, slots) };
            let mags = Magazines::with_policy(cpu, cpus, geo.size, b.resize)
                .expect("kmem-slab: per-CPU array sized by the platform");
            cache.mags = Some(mags);
        }
        if let Some(src) = source {
            src.add_importer();
        }
        Ok(cache)
    }

    fn new_hash(meta: &'a Arena<'a>) -> Result<AddrHash, CreateError> {
        let bytes = table_bytes(kmem_hash::INIT_BITS);
        let len = bytes.next_multiple_of(meta.quantum());
        let mem = meta
            .xalloc(len, &Constraints::new().align(64))
            .map_err(|_| CreateError::NoMemory)?;
        // SAFETY: fresh metadata memory, aligned, owned by the hash.
        Ok(unsafe { AddrHash::new(NonNull::new(mem as *mut u8).ok_or(CreateError::NoMemory)?) })
    }

    pub(crate) fn meta_alloc(&self, bytes: usize) -> Option<usize> {
        let len = bytes.next_multiple_of(self.meta.quantum());
        self.meta.xalloc(len, &Constraints::new().align(64)).ok()
    }

    pub(crate) fn meta_free(&self, addr: usize, bytes: usize) {
        let len = bytes.next_multiple_of(self.meta.quantum());
        // SAFETY: metadata this cache allocated with `meta_alloc` (or
        // `new_hash`) and no longer uses.
        if unsafe { self.meta.xfree_memory(addr, len) }.is_err() {
            self.count_meta_error();
        }
    }

    pub(crate) fn count_meta_error(&self) {
        self.meta_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn free_hash(&self) {
        let (addr, bytes) = self.slab.lock().hash.table();
        self.meta_free(addr, bytes);
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Object size (the requested size rounded to the alignment).
    pub fn size(&self) -> usize {
        self.geo.size
    }

    /// Object alignment.
    pub fn align(&self) -> usize {
        self.geo.align
    }

    /// The cache's flags.
    pub fn flags(&self) -> CacheFlags {
        self.flags
    }

    /// Bytes per slab, and objects per slab.
    pub fn slab_geometry(&self) -> (usize, usize) {
        (self.geo.slab_size, self.geo.per_slab as usize)
    }

    /// True when objects are kept on bufctls (large objects, `NOTOUCH`,
    /// `DEBUG`, `QCACHE`).
    pub fn uses_bufctls(&self) -> bool {
        self.geo.layout == Layout::Bufctl
    }

    /// The magazine layer's counters, unless the cache is `NOMAGAZINE`.
    pub fn magazine_stats(&self) -> Option<MagazineStats> {
        self.mags.as_ref().map(Magazines::stats)
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

    /// The platform, when the cache has magazines.
    fn cpu(&self) -> Option<&'a C> {
        self.mags.as_ref().map(Magazines::cpu)
    }

    /// Allocates a constructed object: from the caller's CPU magazines, the
    /// depot, or a slab (growing the cache from its source if needed, then
    /// running the constructor).
    ///
    /// Called from a signal or interrupt handler that interrupted an
    /// operation of its own context (see [`Section`]), it touches neither
    /// the magazines nor a lock and fails with [`AllocError::Reentrant`].
    #[inline(always)]
    pub fn alloc(&self, flags: AllocFlags) -> Result<usize, AllocError> {
        let Some(cpu) = self.cpu() else {
            return self.alloc_from(self.source, flags);
        };
        let Some(_section) = Section::enter(cpu) else {
            return Err(self.refuse_reentrant());
        };
        self.alloc_from(self.source, flags)
    }

    #[cold]
    fn refuse_reentrant(&self) -> AllocError {
        self.reentrant.fetch_add(1, Ordering::Relaxed);
        AllocError::Reentrant
    }

    /// [`alloc`](Self::alloc), growing from `src` (a quantum cache's arena,
    /// else the cache's own source).
    #[inline(always)]
    pub(crate) fn alloc_from(
        &self,
        src: Option<&Arena<'_>>,
        flags: AllocFlags,
    ) -> Result<usize, AllocError> {
        if let Some(mags) = &self.mags {
            if !self.flags.contains(CacheFlags::DEBUG) && !flags.contains(AllocFlags::ZERO) {
                if let Some(obj) = mags.alloc() {
                    #[cfg(kmem_asan)]
                    self.asan_unpoison(obj);
                    return Ok(obj);
                }
                return self.alloc_from_slab(src, flags);
            }
        }
        self.alloc_general(src, flags)
    }

    /// Every allocation the fast path above does not finish: `ZERO`, `DEBUG`
    /// caches and `NOMAGAZINE` caches.
    #[inline(never)]
    fn alloc_general(
        &self,
        src: Option<&Arena<'_>>,
        flags: AllocFlags,
    ) -> Result<usize, AllocError> {
        if flags.contains(AllocFlags::ZERO) && !self.memory {
            return Err(AllocError::NotMemory);
        }
        if let Some(obj) = self.mags.as_ref().and_then(Magazines::alloc) {
            #[cfg(kmem_asan)]
            self.asan_unpoison(obj);
            if self.flags.contains(CacheFlags::DEBUG) {
                self.slab.lock().mark(&self.geo, obj, BufState::Allocated);
            }
            self.zero_if(obj, flags);
            return Ok(obj);
        }
        self.alloc_from_slab(src, flags)
    }

    /// AddressSanitizer builds: `obj` is allocated again.
    #[cfg(kmem_asan)]
    fn asan_unpoison(&self, obj: usize) {
        if self.memory {
            kmem_arena::asan::unpoison(obj, self.geo.size);
        }
    }

    /// AddressSanitizer builds: `obj` (checked to be one of this cache's
    /// allocated objects, so foreign memory is never poisoned) is free.
    #[cfg(kmem_asan)]
    fn asan_poison(&self, st: &SlabState, obj: usize) {
        if self.memory && st.validate(&self.geo, obj, From::User).is_ok() {
            kmem_arena::asan::poison(obj, self.geo.size);
        }
    }

    fn zero_if(&self, obj: usize, flags: AllocFlags) {
        if flags.contains(AllocFlags::ZERO) {
            // SAFETY: a memory cache's object, just handed to the caller.
            unsafe { raw::zero(obj, self.geo.size) };
        }
    }

    /// The slab path: an unconstructed object from a slab, then the
    /// constructor.
    #[inline(never)]
    pub(crate) fn alloc_from_slab(
        &self,
        src: Option<&Arena<'_>>,
        flags: AllocFlags,
    ) -> Result<usize, AllocError> {
        let mut st = self.slab.lock();
        let obj = match st.take(&self.geo, BufState::Allocated) {
            Some(obj) => obj,
            None => {
                drop(st);
                let slab = self.grow(src).inspect_err(|_| {
                    self.alloc_fails.fetch_add(1, Ordering::Relaxed);
                })?;
                st = self.slab.lock();
                // SAFETY: built by `grow` for this geometry, known to no one.
                unsafe { st.insert(&self.geo, slab) };
                st.take(&self.geo, BufState::Allocated)
                    .expect("kmem-slab: a fresh slab has objects")
            }
        };
        #[cfg(kmem_asan)]
        self.asan_unpoison(obj);
        st.direct_allocs += 1;
        let rescale = st.hash.resize_target(false).is_some();
        drop(st);
        if rescale {
            self.rescale_hash(false);
        }
        if let Some(ops) = self.ops {
            // The object goes back to its slab if the constructor fails or
            // panics: nothing leaks, and the cache stays destroyable.
            let undo = OnDrop(|| self.unconstructed(obj));
            if self.call_out(|| ops.construct(obj, flags)).is_err() {
                drop(undo);
                self.ctor_fails.fetch_add(1, Ordering::Relaxed);
                self.alloc_fails.fetch_add(1, Ordering::Relaxed);
                return Err(AllocError::Ctor);
            }
            core::mem::forget(undo);
        }
        self.zero_if(obj, flags);
        Ok(obj)
    }

    /// Gives back an object taken by `alloc_from_slab` whose constructor
    /// failed or panicked.
    fn unconstructed(&self, obj: usize) {
        let mut st = self.slab.lock();
        #[cfg(kmem_asan)]
        self.asan_poison(&st, obj);
        // Taken from this slab state just before: it goes back.
        let _ = st.give(&self.geo, obj, From::User);
        st.direct_allocs -= 1;
    }

    /// Runs a constructor or destructor: with the context's operation mark
    /// lifted (it may allocate, from this cache too), and holding no lock.
    fn call_out<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.cpu() {
            // SAFETY: callers hold no lock of this cache and no slot state
            // (constructors and destructors run on the slab path, outside
            // the magazine layer).
            Some(cpu) => unsafe { Section::outside(cpu, f) },
            None => f(),
        }
    }

    /// Frees `obj`, which must not be used afterwards: into the caller's
    /// magazines, else (destructed) to its slab.
    ///
    /// Checks: a `DEBUG` cache checks every free; otherwise a free is checked
    /// when the object reaches the slab layer — here when it falls through,
    /// or later when a magazine drains (then it is counted in
    /// [`CacheStats::bad_frees`] and kept by [`last_bad_free`](Self::last_bad_free)).
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
    #[inline(always)]
    pub unsafe fn free(&self, obj: usize) -> Result<(), FreeError> {
        let Some(cpu) = self.cpu() else {
            // SAFETY: the caller's guarantee, forwarded.
            return unsafe { self.free_in(obj) };
        };
        match Section::enter(cpu) {
            // SAFETY: the caller's guarantee, forwarded.
            Some(_section) => unsafe { self.free_in(obj) },
            // SAFETY: the caller's guarantee, forwarded.
            None => unsafe { self.free_reentrant(obj) },
        }
    }

    /// A free from a handler that interrupted an operation of its context.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[cold]
    #[inline(never)]
    unsafe fn free_reentrant(&self, obj: usize) -> Result<(), FreeError> {
        self.reentrant.fetch_add(1, Ordering::Relaxed);
        let deferrable = self.memory
            && self.ops.is_none()
            && self.geo.size >= core::mem::size_of::<usize>()
            && !self.flags.contains(CacheFlags::DEBUG);
        match &self.mags {
            Some(mags) if deferrable => {
                // SAFETY: the caller's guarantee makes `obj` a free object of
                // this memory cache, at least a word, with no constructed
                // state to keep.
                unsafe { mags.defer(obj) };
                Ok(())
            }
            _ => Err(FreeError {
                cache: self.name,
                addr: obj,
                kind: BadFree::Reentrant,
            }),
        }
    }

    /// [`free`](Self::free) inside an operation already under way (a
    /// quantum cache's free, called by its arena).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(always)]
    pub(crate) unsafe fn free_in(&self, obj: usize) -> Result<(), FreeError> {
        if let (Some(mags), Some(ctx)) = (&self.mags, self.ctx) {
            if !self.flags.contains(CacheFlags::DEBUG) {
                #[cfg(kmem_asan)]
                self.asan_poison(&self.slab.lock(), obj);
                // SAFETY: every magazine of a cache comes from its context's
                // magazine cache.
                return match unsafe { mags.free(obj, &MagSrc(&ctx.magazine_cache)) } {
                    Ok(()) => Ok(()),
                    Err(obj) => self.free_to_slab(obj, From::User),
                };
            }
        }
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.free_general(obj) }
    }

    /// Frees that the fast path above does not take: `NOMAGAZINE` and
    /// `DEBUG` caches.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(never)]
    unsafe fn free_general(&self, obj: usize) -> Result<(), FreeError> {
        let (Some(mags), Some(ctx)) = (&self.mags, self.ctx) else {
            return self.free_to_slab(obj, From::User);
        };
        // A DEBUG cache: check before the object enters a magazine.
        let mut st = self.slab.lock();
        let checked = st.validate(&self.geo, obj, From::User);
        if checked.is_ok() {
            #[cfg(kmem_asan)]
            self.asan_poison(&st, obj);
            st.mark(&self.geo, obj, BufState::Cached);
        }
        drop(st);
        checked.map_err(|k| self.bad(obj, k))?;
        // SAFETY: as in `free_in`.
        match unsafe { mags.free(obj, &MagSrc(&ctx.magazine_cache)) } {
            Ok(()) => Ok(()),
            Err(obj) => self.free_to_slab(obj, From::CachedDebug),
        }
    }

    /// A free that reaches the slab layer: destructed, checked, given back.
    #[inline(never)]
    fn free_to_slab(&self, obj: usize, from: From) -> Result<(), FreeError> {
        self.release(obj, from, true).map_err(|k| self.bad(obj, k))
    }

    /// Destructs `obj` and gives it back to its slab, after checking it.
    /// `user` counts it as a free (a drained round was counted when it was
    /// freed into its magazine).
    pub(crate) fn release(&self, obj: usize, from: From, user: bool) -> Result<(), BadFree> {
        if let Some(ops) = self.ops {
            self.slab.lock().validate(&self.geo, obj, from)?;
            #[cfg(kmem_asan)]
            self.asan_unpoison(obj);
            // A destructor that panics leaves the object destructed as far
            // as the cache is concerned: it goes back all the same.
            let undo = OnDrop(|| {
                let _ = self.give_back(obj, from, user);
            });
            self.call_out(|| ops.destruct(obj));
            core::mem::forget(undo);
        }
        self.give_back(obj, from, user)
    }

    /// Gives a destructed object back to its slab, after checking it.
    fn give_back(&self, obj: usize, from: From, user: bool) -> Result<(), BadFree> {
        let mut st = self.slab.lock();
        #[cfg(kmem_asan)]
        if self.memory && st.validate(&self.geo, obj, from).is_ok() {
            kmem_arena::asan::poison(obj, self.geo.size);
        }
        st.give(&self.geo, obj, from)?;
        if user {
            st.direct_frees += 1;
        }
        Ok(())
    }

    /// A round leaving the magazine layer for the slab layer.
    pub(crate) fn drain_one(&self, obj: usize) {
        let from = if self.flags.contains(CacheFlags::DEBUG) {
            From::CachedDebug
        } else {
            From::User
        };
        if let Err(kind) = self.release(obj, from, false) {
            self.bad_rounds.fetch_add(1, Ordering::Relaxed);
            let err = self.bad(obj, kind);
            *self.last_bad.lock() = Some(err);
        }
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

    /// `fork()` support (see [`Caches::fork_lock`]): the depot lock.
    pub(crate) fn fork_lock_depot(&self) {
        if let Some(mags) = &self.mags {
            mags.fork_lock();
        }
    }

    /// `fork()` support: the slab lock, then the bad-free record's.
    pub(crate) fn fork_lock_slab(&self) {
        core::mem::forget(self.slab.lock());
        core::mem::forget(self.last_bad.lock());
    }

    /// Releases what the two calls above took.
    ///
    /// # Safety
    /// Both were called and not undone since.
    pub(crate) unsafe fn fork_unlock(&self) {
        // SAFETY: (each) held since the calls above, guards forgotten.
        unsafe {
            self.last_bad.force_unlock();
            self.slab.force_unlock();
            if let Some(mags) = &self.mags {
                mags.fork_unlock();
            }
        }
    }

    /// The last bad free found while draining magazines, if any.
    pub fn last_bad_free(&self) -> Option<FreeError> {
        *self.last_bad.lock()
    }

    /// True when `addr` lies in one of this cache's slabs (for bufctl caches:
    /// is an object start).
    pub fn owns(&self, addr: usize) -> bool {
        self.slab.lock().owns(&self.geo, addr)
    }

    /// Verifies the slab lists, free chains, object states and totals.
    pub fn check(&self) -> Result<(), CheckError> {
        self.slab.lock().check(&self.geo)
    }

    /// The cache's counters (the `::kmastat` columns and more). While other
    /// threads allocate and free, the per-CPU counters are a racy snapshot.
    pub fn stats(&self) -> CacheStats {
        let mags = self.mags.as_ref().map(Magazines::stats);
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
            slab_creates: st.slab_creates,
            slab_destroys: st.slab_destroys,
            allocs,
            alloc_fails: self.alloc_fails.load(Ordering::Relaxed),
            ctor_fails: self.ctor_fails.load(Ordering::Relaxed),
            bad_frees: self.bad_frees.load(Ordering::Relaxed),
            reentrant: self.reentrant.load(Ordering::Relaxed),
            meta_errors: self.meta_errors.load(Ordering::Relaxed),
            hash_chains: 1usize << st.hash.bits(),
            magazines: mags,
        }
    }
}
