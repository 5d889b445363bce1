//! [`Caches`]: the object caches over one base arena — the seed's bootstrap
//! caches (magazines, slab headers, bufctls, caches themselves), the
//! registry of every cache, and [`Cache`], the handle `create` returns.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of, ManuallyDrop};
use core::ops::Deref;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use kmem_arena::{Arena, Name};
use kmem_magazine::{Cpu, MAGAZINE_ALIGN, MAGAZINE_SIZE};
use spin::RwLock;

use crate::builder::CacheBuilder;
use crate::cache::KmemCache;
use crate::error::CreateError;
use crate::raw::{Bufctl, SlabHeader};
use crate::slabs::From;
use crate::stats::CacheStats;
use crate::{AllocFlags, CacheFlags};

/// The head of the registry: a type-erased `*mut KmemCache`.
struct Head(*mut ());

// SAFETY: the pointer is only followed under the registry lock.
unsafe impl Send for Head {}
// SAFETY: shared access only reads the pointer; see `Send`.
unsafe impl Sync for Head {}

/// Every object cache over one base arena.
///
/// `new` builds the bootstrap caches in the seed's order — `kmem_magazine`
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
    pub(crate) magazine_cache: KmemCache<'a, C>,
    pub(crate) slab_cache: KmemCache<'a, C>,
    pub(crate) bufctl_cache: KmemCache<'a, C>,
    cache_cache: KmemCache<'a, C>,
    /// Readers walk the list ([`for_each`](Self::for_each), which may nest:
    /// a bad free found inside it asks every cache for the owner); writers
    /// link and unlink caches.
    registry: RwLock<Head>,
    /// Makes `'a` invariant (see the type's docs).
    _invariant: PhantomData<fn(&'a ()) -> &'a ()>,
}

impl<'a, C: Cpu> Caches<'a, C> {
    /// Bootstraps the caches over `base` (a memory arena, normally the
    /// self-sufficient base arena) for the platform `cpu`.
    pub fn new(base: &'a Arena<'a>, cpu: &'a C) -> Result<Self, CreateError> {
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
        let magazine_cache = boot("kmem_magazine", MAGAZINE_SIZE, MAGAZINE_ALIGN.max(64))?;
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
            magazine_cache,
            slab_cache,
            bufctl_cache,
            cache_cache,
            registry: RwLock::new(Head(ptr::null_mut())),
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

    /// Creates a cache; see [`CacheBuilder`]. What the builder borrows (its
    /// source arena, its object operations) must outlive this set (`'a`).
    pub fn create<'s>(&'s self, builder: CacheBuilder<'a>) -> Result<Cache<'s, C>, CreateError> {
        // SAFETY: the cache refers back to this set for as long as it lives,
        // and it is reached only through its handle (which borrows the set
        // for `'s`), the registry and the platform's hook list (from both of
        // which `Drop for Caches` withdraws it before the set goes away): the
        // extended borrow is never used once the set is gone.
        let this: &'a Self = unsafe { &*ptr::from_ref(self) };
        let mut cache = KmemCache::build(&builder, self.base, self.cpu, Some(this))?;
        let mem = match self
            .cache_cache
            .alloc_from_slab(Some(self.base), AllocFlags::ATOMIC)
        {
            Ok(mem) => mem,
            Err(_) => {
                let src = cache.source;
                let _ = cache.teardown(src);
                return Err(CreateError::NoMemory);
            }
        };
        let ptr = mem as *mut KmemCache<'a, C>;
        // SAFETY: a fresh `kmem_cache` object, sized and aligned for it.
        unsafe { ptr.write(cache) };
        // SAFETY: just written; objects are never at address 0.
        let ptr = unsafe { NonNull::new_unchecked(ptr) };
        // SAFETY: the cache stays at `ptr` until `destroy_ptr` unregisters.
        unsafe { self.enlist(ptr) };
        Ok(Cache {
            ptr: ptr.cast(),
            ctx: self.shorten(),
        })
    }

    /// This set seen with the handle's lifetime. `Caches` is invariant in
    /// `'a` so that `create` cannot be given borrows shorter than the set;
    /// a handle only uses this view to destroy or withdraw its own cache,
    /// which stores no borrow of `'s` into the set.
    fn shorten<'s>(&'s self) -> &'s Caches<'s, C>
    where
        'a: 's,
    {
        // SAFETY: `Caches<'a, C>` and `Caches<'s, C>` are the same type but
        // for the lifetime; the view is private to `Cache`, which calls only
        // `delist` and `destroy_ptr` through it (see above).
        unsafe { &*ptr::from_ref(self).cast::<Caches<'s, C>>() }
    }

    /// Registers a cache at its final address.
    ///
    /// # Safety
    /// `ptr` is a live cache of this set that stays put until `delist`.
    unsafe fn enlist(&self, ptr: NonNull<KmemCache<'a, C>>) {
        // SAFETY: the caller's guarantee.
        let cache = unsafe { ptr.as_ref() };
        if let Some(mags) = &cache.mags {
            // SAFETY: as above; `delist` unregisters first.
            unsafe { mags.register() };
        }
        let mut head = self.registry.write();
        cache.next.store(head.0, Ordering::Relaxed);
        head.0 = ptr.as_ptr().cast();
    }

    fn delist(&self, ptr: NonNull<KmemCache<'a, C>>) {
        // SAFETY: a live registered cache.
        let cache = unsafe { ptr.as_ref() };
        if let Some(mags) = &cache.mags {
            mags.unregister();
        }
        let mut head = self.registry.write();
        let target: *mut () = ptr.as_ptr().cast();
        let next = cache.next.load(Ordering::Relaxed);
        if head.0 == target {
            head.0 = next;
            return;
        }
        let mut at = head.0.cast::<KmemCache<'a, C>>();
        while !at.is_null() {
            // SAFETY: registered caches are live while on the list, which
            // the held lock keeps still.
            let c = unsafe { &*at };
            let after = c.next.load(Ordering::Relaxed);
            if after == target {
                c.next.store(next, Ordering::Relaxed);
                return;
            }
            at = after.cast();
        }
    }

    /// Runs `f` on every cache, bootstrap caches first, under the registry's
    /// read lock: `f` may call `for_each` again (and anything else a cache
    /// offers) but must not create or destroy caches.
    pub fn for_each(&self, mut f: impl FnMut(&KmemCache<'a, C>)) {
        for c in [
            &self.magazine_cache,
            &self.slab_cache,
            &self.bufctl_cache,
            &self.cache_cache,
        ] {
            f(c);
        }
        let head = self.registry.read();
        let mut at = head.0.cast::<KmemCache<'a, C>>();
        while !at.is_null() {
            // SAFETY: as in `delist`.
            let c = unsafe { &*at };
            f(c);
            at = c.next.load(Ordering::Relaxed).cast();
        }
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

    /// Statistics of every cache.
    pub fn stats(&self, mut f: impl FnMut(&CacheStats)) {
        self.for_each(|c| f(&c.stats()));
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

    /// Tears a cache down; on refusal (live objects) it stays usable and,
    /// if `keep`, registered again.
    /// `arena` is where a quantum cache's slabs go (other caches use their
    /// own source).
    fn destroy_ptr(
        &self,
        ptr: NonNull<KmemCache<'a, C>>,
        keep: bool,
        arena: Option<&Arena<'_>>,
    ) -> Result<(), u64> {
        self.delist(ptr);
        // SAFETY: the handle was unique and is gone or being consumed, the
        // registry and the platform no longer reach the cache: this is the
        // only reference.
        let cache = unsafe { &mut *ptr.as_ptr() };
        let src: Option<&Arena<'_>> = match cache.source {
            Some(own) => Some(own),
            None => arena,
        };
        match cache.teardown(src) {
            Ok(()) => {
                // SAFETY: torn down; dropped once, then its memory is freed.
                unsafe { ptr::drop_in_place(ptr.as_ptr()) };
                let freed = self
                    .cache_cache
                    .release(ptr.as_ptr() as usize, From::User, true);
                debug_assert!(freed.is_ok());
                Ok(())
            }
            Err(live) => {
                if keep {
                    // SAFETY: still live, still at `ptr`.
                    unsafe { self.enlist(ptr) };
                }
                Err(live)
            }
        }
    }
}

impl<'a, C: Cpu> Caches<'a, C> {
    /// First step of taking every lock of the set for a `fork()`, so that
    /// no other thread holds one while the process is copied: the
    /// registry's (a reader may pin a CPU slot under it, so it comes before
    /// the platform's locks). No cache can be created or destroyed until
    /// [`fork_unlock_registry`](Self::fork_unlock_registry).
    pub fn fork_lock_registry(&self) {
        core::mem::forget(self.registry.write());
    }

    /// Second step, after the platform's locks: every cache's depot lock,
    /// then every cache's slab lock (created caches, then the bootstrap
    /// caches); the arenas' locks come after. A `pthread_atfork` prepare
    /// handler runs the steps; [`fork_unlock`](Self::fork_unlock) and then
    /// [`fork_unlock_registry`](Self::fork_unlock_registry) undo them in the
    /// parent and in the child.
    ///
    /// # Safety
    /// [`fork_lock_registry`](Self::fork_lock_registry) was called and not
    /// undone (the caches are walked under that lock).
    pub unsafe fn fork_lock(&self) {
        self.each_locked(|c| c.fork_lock_depot());
        self.each_locked(|c| c.fork_lock_slab());
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took.
    ///
    /// # Safety
    /// [`fork_lock`](Self::fork_lock) was called (here, or in the parent
    /// before the `fork()` that made this process) and not undone since.
    pub unsafe fn fork_unlock(&self) {
        // SAFETY: (each) held since `fork_lock`, guards forgotten.
        self.each_locked(|c| unsafe { c.fork_unlock() });
    }

    /// Releases what [`fork_lock_registry`](Self::fork_lock_registry) took.
    ///
    /// # Safety
    /// It was called and not undone since; [`fork_unlock`](Self::fork_unlock)
    /// ran first if [`fork_lock`](Self::fork_lock) did.
    pub unsafe fn fork_unlock_registry(&self) {
        // SAFETY: held since `fork_lock_registry`, guard forgotten.
        unsafe { self.registry.force_write_unlock() };
    }

    /// Runs `f` on every cache, bootstrap caches last, with the registry's
    /// write lock already held by the caller (its guard forgotten).
    fn each_locked(&self, mut f: impl FnMut(&KmemCache<'a, C>)) {
        let mut at = self.registry_head();
        while !at.is_null() {
            // SAFETY: registered caches are live while on the list, which
            // the held write lock keeps still.
            let c = unsafe { &*at };
            f(c);
            at = c.next.load(Ordering::Relaxed).cast();
        }
        for c in [
            &self.cache_cache,
            &self.bufctl_cache,
            &self.slab_cache,
            &self.magazine_cache,
        ] {
            f(c);
        }
    }

    /// The registry's head, read while its write lock is held elsewhere.
    fn registry_head(&self) -> *mut KmemCache<'a, C> {
        // SAFETY: the lock is held by the caller (a forgotten write guard),
        // so the head cannot change; the read does not race.
        unsafe { (*self.registry.as_mut_ptr()).0.cast() }
    }
}

impl<C: Cpu> Drop for Caches<'_, C> {
    /// Withdraws every cache still registered (their handles were leaked)
    /// from the platform and the registry, so that nothing reaches them
    /// once the set is gone; then returns the bootstrap caches' slabs and
    /// tables to the base arena. A bootstrap cache that still has objects
    /// (a leaked cache's structure, magazines or slabs) keeps its slabs.
    fn drop(&mut self) {
        loop {
            let head = self.registry.get_mut().0.cast::<KmemCache<'_, C>>();
            let Some(leaked) = NonNull::new(head) else {
                break;
            };
            self.delist(leaked);
        }
        let base = Some(self.base);
        let _ = self.cache_cache.teardown(base);
        let _ = self.bufctl_cache.teardown(base);
        let _ = self.slab_cache.teardown(base);
        let _ = self.magazine_cache.teardown(base);
    }
}

/// A cache made by [`Caches::create`]. Dereferences to [`KmemCache`];
/// share it across threads by reference. Dropping it destroys the cache as
/// [`destroy`](Self::destroy) does, leaking the cache if objects are live.
pub struct Cache<'a, C: Cpu> {
    ptr: NonNull<KmemCache<'a, C>>,
    ctx: &'a Caches<'a, C>,
}

// SAFETY: the handle is a unique owner of a `KmemCache`, which is Sync and
// Send-safe to tear down from any thread (it holds no thread-bound state).
unsafe impl<C: Cpu> Send for Cache<'_, C> {}
// SAFETY: `&Cache` gives `&KmemCache`, which is Sync.
unsafe impl<C: Cpu> Sync for Cache<'_, C> {}

impl<'a, C: Cpu> Deref for Cache<'a, C> {
    type Target = KmemCache<'a, C>;
    fn deref(&self) -> &KmemCache<'a, C> {
        // SAFETY: the cache lives until this handle destroys it.
        unsafe { self.ptr.as_ref() }
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

impl<'a, C: Cpu> Cache<'a, C> {
    /// Withdraws the cache from the platform and the registry and leaks it
    /// with its slabs: for a cache that refused to be destroyed and must
    /// not stay reachable.
    pub(crate) fn abandon(self) {
        let this = ManuallyDrop::new(self);
        this.ctx.delist(this.ptr);
    }

    /// Drains every magazine into the slabs and returns every slab to the
    /// source. With objects still allocated it changes nothing observable
    /// and hands the cache back in the error.
    pub fn destroy(self) -> Result<(), DestroyError<'a, C>> {
        self.destroy_in(None)
    }

    /// [`destroy`](Self::destroy), giving a quantum cache's slabs back to
    /// `arena`.
    pub(crate) fn destroy_in(self, arena: Option<&Arena<'_>>) -> Result<(), DestroyError<'a, C>> {
        let this = ManuallyDrop::new(self);
        match this.ctx.destroy_ptr(this.ptr, true, arena) {
            Ok(()) => Ok(()),
            Err(live) => Err(DestroyError {
                cache: ManuallyDrop::into_inner(this),
                live,
            }),
        }
    }
}

impl<C: Cpu> Drop for Cache<'_, C> {
    fn drop(&mut self) {
        let _ = self.ctx.destroy_ptr(self.ptr, false, None);
    }
}
