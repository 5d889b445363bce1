//! Where created caches live: each in a `kmem_cache` object, listed on its
//! set's [`Registry`], reached through its one [`Cache`] handle.
//!
//! A created cache is reachable three ways: through its handle, through
//! the registry while it is listed (walks hold the read lock), and through
//! the platform's slot hook while its magazines are registered. It refers
//! back to its set with the set's full lifetime `'a`, longer than the
//! handle's borrow. Both are sound because the set withdraws every cache
//! before it goes away: a handle borrows the set and destroys its cache
//! when dropped, and `Drop for Caches` delists the caches of leaked
//! handles. A cache is torn down only after it is delisted (the write lock
//! waits for every walk, the hook is unregistered), so the `&mut` that
//! teardown takes is the only reference.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

use kmem_arena::Arena;
use kmem_magazine::Cpu;

use crate::builder::{CacheBuilder, Pressure};
use crate::cache::KmemCache;
use crate::caches::{Caches, DestroyError};
use crate::error::CreateError;
use crate::raw::Freed;
use crate::rwlock::RwLock;
use crate::slabs::From;

/// The head of the registry: a type-erased `*mut KmemCache`.
struct Head(*mut ());

// SAFETY: the pointer is only followed under the registry lock.
unsafe impl Send for Head {}
// SAFETY: shared access only reads the pointer; see `Send`.
unsafe impl Sync for Head {}

/// Makes a type invariant in `'a`.
type Invariant<'a> = fn(&'a ()) -> &'a ();

/// The caches created in one set, on a list through `KmemCache::next`.
///
/// Readers walk the list ([`for_each`](Self::for_each), which may nest: a
/// bad free found inside it asks every cache for the owner); writers link
/// and unlink caches.
pub(crate) struct Registry<'a, C: Cpu> {
    head: RwLock<Head>,
    /// Listed caches register their magazines with the platform's
    /// slot-exit hooks (only when the set cannot be leaked while the
    /// memory the hooks point into is reused: see `Caches::new`).
    exit_hooks: bool,
    /// The caches' type; invariant in `'a`, as the set is.
    _caches: PhantomData<(Invariant<'a>, &'a C)>,
}

impl<'a, C: Cpu> Registry<'a, C> {
    pub(crate) const fn new(exit_hooks: bool) -> Self {
        Self {
            head: RwLock::new(Head(ptr::null_mut())),
            exit_hooks,
            _caches: PhantomData,
        }
    }

    /// Lists a cache and registers its magazines with the platform.
    ///
    /// # Safety
    /// `cache` is a live, unlisted cache of this registry's set, placed in
    /// a `kmem_cache` object, that stays there, alive, until `delist`.
    unsafe fn enlist(&self, cache: NonNull<KmemCache<'a, C>>) {
        // SAFETY: the caller's guarantee.
        let c = unsafe { cache.as_ref() };
        if let (Some(mags), true) = (&c.mags, self.exit_hooks) {
            // With `exit_hooks` the set is never leaked while its memory is
            // reused (the constructors' contract), so `Drop for Caches`
            // delists the cache.
            // SAFETY: the layer is part of the cache, which stays put until
            // `delist`, which unregisters it first.
            unsafe { mags.register() };
        }
        let mut head = self.head.write();
        c.next.store(head.0, Ordering::Relaxed);
        head.0 = cache.as_ptr().cast();
    }

    /// Unregisters a cache's magazines and unlinks it; when this returns,
    /// no walk and no slot hook reaches it.
    ///
    /// # Safety
    /// `cache` is a live cache on this registry.
    unsafe fn delist(&self, cache: NonNull<KmemCache<'a, C>>) {
        // SAFETY: the caller's guarantee.
        let c = unsafe { cache.as_ref() };
        if let Some(mags) = &c.mags {
            mags.unregister();
        }
        let mut head = self.head.write();
        let target: *mut () = cache.as_ptr().cast();
        let next = c.next.load(Ordering::Relaxed);
        if head.0 == target {
            head.0 = next;
            return;
        }
        let mut at = head.0.cast::<KmemCache<'a, C>>();
        while !at.is_null() {
            // SAFETY: listed caches are live while on the list, which the
            // held lock keeps still.
            let c = unsafe { &*at };
            let after = c.next.load(Ordering::Relaxed);
            if after == target {
                c.next.store(next, Ordering::Relaxed);
                return;
            }
            at = after.cast();
        }
    }

    /// Runs the shrinkers of the listed caches that `filter` picks, with
    /// `pressure`, outside the registry's lock, one at a time: a walk under
    /// the lock marks the next one running (a cache being destroyed waits
    /// for its mark to clear once it is delisted, so the cache outlives the
    /// call), then it is called with the lock let go. Only the one running
    /// is marked, so a shrinker may destroy other caches (it must not wait
    /// for a thread that destroys its own). One already running elsewhere
    /// is skipped. Caches created or destroyed meanwhile may shift the walk
    /// by as many places: a shrinker may then be asked twice in a pass, or
    /// not at all. Returns what they say they freed.
    pub(crate) fn shrink(
        &self,
        pressure: Pressure,
        mut filter: impl FnMut(&KmemCache<'a, C>) -> bool,
    ) -> usize {
        let (mut done, mut freed): (usize, usize) = (0, 0);
        loop {
            let mut claimed = None;
            let mut seen = 0;
            self.for_each(|c| {
                if claimed.is_some() || !c.has_shrinker() || !filter(c) {
                    return;
                }
                seen += 1;
                if seen > done && c.claim_shrinker() {
                    claimed = Some(NonNull::from(c));
                }
            });
            let Some(c) = claimed else {
                return freed;
            };
            done = seen;
            // SAFETY: marked running under the read lock while listed: a
            // destroy delists it, then waits for the mark, so it is live
            // until `run_claimed_shrinker` clears the mark.
            freed += unsafe { c.as_ref() }.run_claimed_shrinker(pressure);
        }
    }

    /// Runs `f` on every listed cache, under the read lock.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&KmemCache<'a, C>)) {
        let head = self.head.read();
        let mut at = head.0.cast::<KmemCache<'a, C>>();
        while !at.is_null() {
            // SAFETY: as in `delist`.
            let c = unsafe { &*at };
            f(c);
            at = c.next.load(Ordering::Relaxed).cast();
        }
    }

    /// Delists every cache still listed (their handles were leaked), for
    /// `Drop for Caches`: nothing reaches them afterwards, and their memory
    /// leaks.
    pub(crate) fn withdraw_all(&mut self) {
        loop {
            let head = self.head.get_mut().0.cast::<KmemCache<'a, C>>();
            let Some(leaked) = NonNull::new(head) else {
                break;
            };
            // SAFETY: the head of the list, a live cache.
            unsafe { self.delist(leaked) };
        }
    }

    /// `fork()` support: takes the write lock and keeps it.
    pub(super) fn lock_for_fork(&self) {
        core::mem::forget(self.head.write());
    }

    /// Releases what [`lock_for_fork`](Self::lock_for_fork) took.
    ///
    /// # Safety
    /// `lock_for_fork` was called and not undone since.
    pub(super) unsafe fn unlock_after_fork(&self) {
        // SAFETY: held since `lock_for_fork`, guard forgotten.
        unsafe { self.head.force_write_unlock() };
    }

    /// Runs `f` on every listed cache, with the write lock already held by
    /// the caller (its guard forgotten).
    ///
    /// # Safety
    /// [`lock_for_fork`](Self::lock_for_fork) was called and not undone.
    pub(super) unsafe fn each_locked(&self, f: &mut impl FnMut(&KmemCache<'a, C>)) {
        // SAFETY: the lock is held (the caller's guarantee), so the head
        // cannot change; the read does not race.
        let mut at = unsafe { self.head.get_locked() }
            .0
            .cast::<KmemCache<'a, C>>();
        while !at.is_null() {
            // SAFETY: listed caches are live while on the list, which the
            // held write lock keeps still.
            let c = unsafe { &*at };
            f(c);
            at = c.next.load(Ordering::Relaxed).cast();
        }
    }
}

impl<'a, C: Cpu> Caches<'a, C> {
    /// Creates a cache; see [`CacheBuilder`]. What the builder borrows (its
    /// source arena, its object operations) must outlive this set (`'a`).
    pub fn create<'s>(&'s self, builder: CacheBuilder<'a>) -> Result<Cache<'s, C>, CreateError> {
        // The cache is reached only through its handle (which borrows the
        // set for `'s`), the registry and the platform's hook list, from
        // both of which `Drop for Caches` withdraws it before the set goes.
        // SAFETY: the cache refers back to this set only while it is
        // reachable (above): the extended borrow is never used afterwards.
        let this: &'a Self = unsafe { &*ptr::from_ref(self) };
        let mut cache = KmemCache::build(&builder, self.base(), self.cpu(), Some(this))?;
        let Some(mem) = self.cache_cache.take_bootstrap() else {
            let src = cache.source;
            let _ = cache.teardown(src);
            return Err(CreateError::NoMemory);
        };
        let cache = mem.place(cache);
        // SAFETY: just placed in a `kmem_cache` object, where it stays until
        // `destroy_ptr` delists it; only the handle made here reaches it.
        unsafe { self.registry.enlist(cache) };
        Ok(Cache {
            ptr: cache.cast(),
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

    /// Tears a cache down; on refusal (live objects) it stays usable and,
    /// if `keep`, listed again. `arena` is where a quantum cache's slabs
    /// go (other caches use their own source).
    fn destroy_ptr(
        &self,
        ptr: NonNull<KmemCache<'a, C>>,
        keep: bool,
        arena: Option<&Arena<'_>>,
    ) -> Result<(), u64> {
        // SAFETY: the handle's cache: live and listed.
        unsafe { self.registry.delist(ptr) };
        // A shrinker that a walk of the registry claimed before the delist
        // may still be running on another thread (`Registry::shrink`).
        // SAFETY: live (the handle's), shared only for the wait.
        unsafe { ptr.as_ref() }.wait_shrinker();
        // SAFETY: the handle was unique and is gone or being consumed, the
        // registry and the platform no longer reach the cache, and no
        // shrinker call holds it: this is the only reference.
        let cache = unsafe { &mut *ptr.as_ptr() };
        let src: Option<&Arena<'_>> = match cache.source {
            Some(own) => Some(own),
            None => arena,
        };
        match cache.teardown(src) {
            Ok(()) => {
                // SAFETY: torn down and reached by nothing; dropped once,
                // then its memory is given back.
                unsafe { ptr::drop_in_place(ptr.as_ptr()) };
                // SAFETY: a `kmem_cache` object (`create` placed the cache in
                // it) whose cache was just dropped: nothing uses it.
                let mem = unsafe { Freed::new(ptr.as_ptr() as usize) };
                let freed = self.cache_cache.release(mem, From::User, true);
                debug_assert!(freed.is_ok());
                Ok(())
            }
            Err(live) => {
                if keep {
                    // SAFETY: still live, still in its `kmem_cache` object.
                    unsafe { self.registry.enlist(ptr) };
                }
                Err(live)
            }
        }
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

impl<'a, C: Cpu> Cache<'a, C> {
    /// Withdraws the cache from the platform and the registry and leaks it
    /// with its slabs: for a cache that refused to be destroyed and must
    /// not stay reachable.
    pub(crate) fn abandon(self) {
        let this = ManuallyDrop::new(self);
        // SAFETY: the handle's cache: live and listed.
        unsafe { this.ctx.registry.delist(this.ptr) };
    }

    /// Withdraws the cache from the registry and the platform for a while,
    /// so that no walk on another thread and no thread-exit hook reaches it
    /// (a quantum cache drained by its arena's `destroy`); [`relist`]
    /// (Self::relist) undoes it, and destroying or dropping the handle
    /// finishes it.
    pub(crate) fn withdraw(&self) {
        // SAFETY: the handle's cache: live, on this registry (delisting an
        // unlisted one finds nothing to unlink).
        unsafe { self.ctx.registry.delist(self.ptr) };
    }

    /// Lists the cache again after [`withdraw`](Self::withdraw).
    ///
    /// # Safety
    /// The cache was withdrawn and is not listed now.
    pub(crate) unsafe fn relist(&self) {
        // SAFETY: the caller's guarantee; the cache stays in its
        // `kmem_cache` object until the handle destroys it.
        unsafe { self.ctx.registry.enlist(self.ptr) };
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
