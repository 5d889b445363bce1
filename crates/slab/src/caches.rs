//! [`Caches`]: the object caches over one base arena — Akaros' bootstrap
//! caches (magazines, slab headers, bufctls, caches themselves), the
//! registry of every cache, reports, and [`DestroyError`]. The handle
//! `create` returns, [`Cache`], and the registry's plumbing are in
//! [`handle`](crate::handle).

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr;

use kmem_arena::{Arena, Name};
use kmem_magazine::{Cpu, Section, MAGAZINE_ALIGN, MAGAZINE_SIZES};

use crate::builder::{CacheBuilder, Pressure};
use crate::cache::KmemCache;
use crate::debug::{write_leaks, DebugHooks, LeakGroup, Site};
use crate::error::CreateError;
use crate::handle::{Cache, HookCell, Registry};
use crate::raw::{Bufctl, SlabHeader};
use crate::stats::CacheStats;
use crate::CacheFlags;

/// The magazine caches' names, by the rounds their magazines hold
/// (illumos names them so).
const MAGAZINE_NAMES: [&str; MAGAZINE_SIZES.len()] = [
    "kmem_magazine_6",
    "kmem_magazine_14",
    "kmem_magazine_30",
    "kmem_magazine_62",
];

const _: () = {
    assert!(kmem_magazine::rounds_of(MAGAZINE_SIZES[0]) == 6);
    assert!(kmem_magazine::rounds_of(MAGAZINE_SIZES[3]) == 62);
};

/// Every object cache over one base arena.
///
/// `new` builds the bootstrap caches in Akaros' order — the magazine caches (`kmem_magazine_6` to `_62`)
/// first (every cache's magazines come from it), then `kmem_slab`,
/// `kmem_bufctl` and `kmem_cache` — all small-object, `NOMAGAZINE` caches
/// of the base arena, so none of them needs another cache to grow and no
/// allocation recurses. [`create`](Self::create) then makes caches whose
/// state lives in `kmem_cache` objects, so they stay put for the thread-exit
/// hook and the registry.
///
/// `Caches` is invariant in `'a`: every arena a cache is built on must
/// outlive the whole set, since the registry keeps handing caches out (to
/// [`for_each`](Self::for_each), reports, reaps) as long as the set lives.
/// Declare source arenas before the `Caches`:
///
/// ```compile_fail,E0597
/// use kmem_arena::Arena;
/// use kmem_magazine::ThreadCpus;
/// use kmem_physmem::PhysMem;
/// use kmem_slab::{CacheBuilder, Caches};
///
/// let ram = PhysMem::new(8 << 20);
/// let base = ram.base_arena("base", 4096);
/// let caches = Caches::new(&base, ThreadCpus::global()).unwrap();
/// {
///     let child = Arena::builder("child").quantum(4096).source(&base)
///         .tags_from(&base).build().unwrap();
///     let c = caches.create(CacheBuilder::new("short", 64).source(&child)).unwrap();
///     std::mem::forget(c); // the registry would still hand it out
/// } // `child` dies here, while `caches` may still reach it: refused
/// caches.for_each(|c| { let _ = c.alloc(kmem_slab::AllocFlags::empty()); });
/// ```
///
/// A cache handle that is leaked (`mem::forget`) stays registered until the
/// set drops, which withdraws it from the platform (no thread-exit hook
/// calls into it afterwards) and leaks its memory.
pub struct Caches<'a, C: Cpu> {
    base: &'a Arena<'a>,
    cpu: &'a C,
    /// One cache per magazine size (`kmem_magazine_6` to `_62`, by the
    /// rounds they hold), smallest first.
    pub(crate) magazine_caches: [KmemCache<'a, C>; MAGAZINE_SIZES.len()],
    pub(crate) slab_cache: KmemCache<'a, C>,
    pub(crate) bufctl_cache: KmemCache<'a, C>,
    pub(crate) cache_cache: KmemCache<'a, C>,
    /// Every created cache.
    pub(crate) registry: Registry<'a, C>,
    /// Debug mode's hooks.
    hooks: HookCell,
    /// Makes `'a` invariant (see the type's docs).
    _invariant: PhantomData<fn(&'a ()) -> &'a ()>,
}

impl<'a, C: Cpu> Caches<'a, C> {
    /// Bootstraps the caches over `base` (a memory arena, normally the
    /// self-sufficient base arena) for the platform `cpu`.
    ///
    /// The caches do not ask the platform to flush a slot's magazines when
    /// the slot's owner goes away (a thread exits): a leaked set (`mem::
    /// forget`) would leave the platform calling into memory that may be
    /// reused. A slot's magazines stay with the slot, for its next owner,
    /// and go back when a cache is reaped or destroyed.
    /// [`new_static`](Self::new_static) and
    /// [`with_exit_hooks`](Self::with_exit_hooks) register those hooks.
    pub fn new(base: &'a Arena<'a>, cpu: &'a C) -> Result<Self, CreateError> {
        Self::build(base, cpu, false)
    }

    /// [`new`](Self::new), with the slot-exit hooks: the caches flush an
    /// exiting thread's magazines to their depots. The set and its memory
    /// live for the rest of the program, so a leaked set leaves nothing
    /// dangling.
    pub fn new_static(
        base: &'static Arena<'static>,
        cpu: &'static C,
    ) -> Result<Caches<'static, C>, CreateError> {
        Caches::build(base, cpu, true)
    }

    /// [`new`](Self::new), with the slot-exit hooks (see
    /// [`new_static`](Self::new_static)).
    ///
    /// # Safety
    /// The set is dropped, not leaked, before the memory of its base arena
    /// (where its caches live, and the platform's hooks point) is used for
    /// anything else. `kmalloc`'s `boot` guarantees it with a drop guard.
    #[allow(
        unsafe_code,
        reason = "a contract item: the caller promises the set is not leaked"
    )]
    pub unsafe fn with_exit_hooks(base: &'a Arena<'a>, cpu: &'a C) -> Result<Self, CreateError> {
        Self::build(base, cpu, true)
    }

    fn build(base: &'a Arena<'a>, cpu: &'a C, exit_hooks: bool) -> Result<Self, CreateError> {
        if !base.is_memory() {
            return Err(CreateError::NotMemory);
        }
        if !base.quantum().is_power_of_two() {
            return Err(CreateError::BaseQuantum);
        }
        if base.qcaches().is_some() {
            return Err(CreateError::BaseQcaches);
        }
        let boot = |name, size, align| {
            let b = CacheBuilder::new(name, size)
                .align(align)
                .flags(CacheFlags::NOMAGAZINE);
            KmemCache::build(&b, base, cpu, None)
        };
        let magazine = |i: usize| boot(MAGAZINE_NAMES[i], MAGAZINE_SIZES[i], MAGAZINE_ALIGN);
        let magazine_caches = [magazine(0)?, magazine(1)?, magazine(2)?, magazine(3)?];
        let slab_cache = boot(
            "kmem_slab",
            size_of::<SlabHeader>(),
            align_of::<SlabHeader>(),
        )?;
        let bufctl_cache = boot("kmem_bufctl", size_of::<Bufctl>(), align_of::<Bufctl>())?;
        let cache_cache = boot(
            "kmem_cache",
            size_of::<KmemCache<'a, C>>(),
            align_of::<KmemCache<'a, C>>(),
        )?;
        Ok(Self {
            base,
            cpu,
            magazine_caches,
            slab_cache,
            bufctl_cache,
            cache_cache,
            registry: Registry::new(exit_hooks),
            hooks: HookCell::new(),
            _invariant: PhantomData,
        })
    }

    /// The base arena metadata comes from.
    pub fn base(&self) -> &'a Arena<'a> {
        self.base
    }

    /// The platform.
    pub fn cpu(&self) -> &'a C {
        self.cpu
    }

    /// Runs `f` on every cache, bootstrap caches first, under the registry's
    /// read lock: `f` may call `for_each` again (and anything else a cache
    /// offers) but must not create or destroy caches.
    pub fn for_each(&self, mut f: impl FnMut(&KmemCache<'a, C>)) {
        let rest = [&self.slab_cache, &self.bufctl_cache, &self.cache_cache];
        for c in self.magazine_caches.iter().chain(rest) {
            f(c);
        }
        self.registry.for_each(f);
    }

    /// The upkeep pass over every cache, for a periodic timer: each cache's
    /// [`tick`](KmemCache::tick) (its depot's working-set trim, its empty
    /// slabs back to their source, its hash resized), after moving the
    /// calling CPU's own magazines of every cache (quantum caches too) to
    /// their depots, since what a pass frees lands in them. Quantum caches
    /// are their arenas' to tick ([`Arena::tick`]). Call it at a steady
    /// interval (kmalloc's global allocator uses 500 ms): what a depot held
    /// idle through one whole interval goes back at the end of the next.
    /// Returns the bytes of slabs given back.
    pub fn tick(&self) -> usize {
        // Nothing from a handler that interrupted an operation of its
        // context (see `Section`), as each cache's own `tick`.
        if Section::enter(self.cpu).is_none() {
            return 0;
        }
        // The shrinkers first, outside the registry's lock (they may create
        // and destroy caches).
        self.registry.shrink(Pressure::Upkeep, |c| !c.is_quantum());
        let mut freed = 0;
        self.for_each(|c| {
            // The caller's own magazines join the depot first (this pass's
            // frees land in them): trimmed like any idle magazine.
            c.flush_current();
            freed += c.tick_without_shrinker();
        });
        freed
    }

    /// Gives idle memory back from every cache, as [`KmemCache::reap`] does
    /// (shrinkers with [`Pressure::Low`], outside the registry's lock, then
    /// depots and empty slabs), after moving the calling CPU's own
    /// magazines to the depots. Returns the bytes of slabs given back;
    /// nothing from a handler that interrupted an operation of its context.
    pub fn reap(&self) -> usize {
        if Section::enter(self.cpu).is_none() {
            return 0;
        }
        self.registry.shrink(Pressure::Low, |_| true);
        let mut freed = 0;
        self.for_each(|c| {
            c.flush_current();
            freed += c.reap_without_shrinker();
        });
        freed
    }

    /// Purges every CPU's magazines of every cache
    /// ([`KmemCache::purge_magazines`]): what the caches hold in magazines
    /// goes back to their slabs, and empty slabs to their sources. Returns
    /// the bytes of slabs given back; nothing from a handler that
    /// interrupted an operation of its context.
    pub fn purge_magazines(&self) -> usize {
        if Section::enter(self.cpu).is_none() {
            return 0;
        }
        let mut freed = 0;
        self.for_each(|c| freed += c.purge_magazines());
        freed
    }

    /// For [`Reclaim`](kmem_arena::Reclaim) on an arena some caches take
    /// their slabs from: every such cache gives back what it holds idle
    /// ([`KmemCache::reclaim_to`], its shrinker first). Returns the bytes
    /// given back.
    pub fn reclaim_to(&self, arena: &Arena<'_>) -> usize {
        self.registry
            .shrink(Pressure::Low, |c| c.is_sourced_from(arena));
        let mut freed = 0;
        self.for_each(|c| freed += c.reclaim_to_without_shrinker(arena));
        freed
    }

    /// The name of the cache other than `except` that owns `addr`.
    pub(crate) fn owner_of(&self, addr: usize, except: &KmemCache<'a, C>) -> Option<Name> {
        let mut owner = None;
        self.for_each(|c| {
            if owner.is_none() && !ptr::eq(c, except) && c.owns(addr) {
                owner = Some(c.name);
            }
        });
        owner
    }

    /// The audit of `addr` from the cache (other than `except`) that owns
    /// it, if that cache keeps one.
    pub(crate) fn audit_of(
        &self,
        addr: usize,
        except: &KmemCache<'a, C>,
    ) -> Option<(Option<Site>, Option<Site>)> {
        let mut found = None;
        self.for_each(|c| {
            if found.is_none() && !ptr::eq(c, except) && c.owns(addr) {
                found = c.audit_of(addr);
            }
        });
        found
    }

    /// Statistics of every cache.
    pub fn stats(&self, mut f: impl FnMut(&CacheStats)) {
        self.for_each(|c| f(&c.stats()));
    }

    /// Sets what debug mode calls out to (reports, callers' addresses, a
    /// clock) for every cache of the set.
    pub fn set_debug_hooks(&self, hooks: &'static DebugHooks) {
        self.hooks.set(hooks);
    }

    /// The debug hooks (none set: all empty).
    pub(crate) fn debug_hooks(&self) -> DebugHooks {
        self.hooks.get().copied().unwrap_or_default()
    }

    /// Live objects of every cache, grouped by cache and allocation site
    /// (see [`KmemCache::leaks`]): the `::findleaks` report, at any time.
    pub fn leaks(&self, mut f: impl FnMut(&LeakGroup)) {
        self.for_each(|c| c.leaks(&mut f));
    }

    /// Writes [`leaks`](Self::leaks) as a table.
    pub fn report_leaks(&self, w: &mut impl fmt::Write) -> fmt::Result {
        write_leaks(w, |f| self.leaks(f))
    }

    /// Writes the `::kmastat` table of every cache.
    pub fn report(&self, w: &mut impl fmt::Write) -> fmt::Result {
        CacheStats::header(w)?;
        let mut result = Ok(());
        self.for_each(|c| {
            if result.is_ok() {
                result = c.stats().row(w);
            }
        });
        result
    }
}

impl<C: Cpu> Drop for Caches<'_, C> {
    /// Withdraws every cache still registered (their handles were leaked)
    /// from the platform and the registry, so that nothing reaches them
    /// once the set is gone; then returns the bootstrap caches' slabs and
    /// tables to the base arena. A bootstrap cache that still has objects
    /// (a leaked cache's structure, magazines or slabs) keeps its slabs.
    fn drop(&mut self) {
        self.registry.withdraw_all();
        let base = Some(self.base);
        let _ = self.cache_cache.teardown(base);
        let _ = self.bufctl_cache.teardown(base);
        let _ = self.slab_cache.teardown(base);
        for c in &mut self.magazine_caches {
            let _ = c.teardown(base);
        }
    }
}

/// A cache that still had objects allocated; it is returned unchanged.
pub struct DestroyError<'a, C: Cpu> {
    /// The cache, still working.
    pub cache: Cache<'a, C>,
    /// Objects allocated from it.
    pub live: u64,
}

impl<C: Cpu> fmt::Debug for DestroyError<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DestroyError {{ cache: {:?}, live: {} }}",
            self.cache.name(),
            self.live
        )
    }
}

impl<C: Cpu> fmt::Display for DestroyError<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kmem cache {}: {} objects still allocated",
            self.cache.name(),
            self.live
        )
    }
}

impl<C: Cpu> core::error::Error for DestroyError<'_, C> {}

/// A `'static` set of caches registered on an arena their caches take slabs
/// from ([`Arena::add_reclaim`]): when that arena runs out, every such
/// cache's shrinker runs and its idle objects and empty slabs go back
/// ([`Caches::reclaim_to`]).
impl<C: Cpu> kmem_arena::Reclaim for Caches<'_, C> {
    fn reclaim(&self, arena: &Arena<'_>, _wanted: usize) -> usize {
        self.reclaim_to(arena)
    }
}
