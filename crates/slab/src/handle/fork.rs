//! `fork()` support: every lock of a cache set taken before the process is
//! copied and released after, in the parent and in the child, so that no
//! other thread holds one while the copy is made. The guards are forgotten
//! in between, so releasing takes `unsafe` (`force_unlock`).

use kmem_magazine::Cpu;

use crate::cache::KmemCache;
use crate::caches::Caches;

impl<C: Cpu> Caches<'_, C> {
    /// First step of taking every lock of the set for a `fork()`, so that
    /// no other thread holds one while the process is copied: the
    /// registry's (a reader may pin a CPU slot under it, so it comes before
    /// the platform's locks). No cache can be created or destroyed until
    /// [`fork_unlock_registry`](Self::fork_unlock_registry).
    pub fn fork_lock_registry(&self) {
        self.registry.lock_for_fork();
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
        // SAFETY: the registry lock is held (the caller's guarantee).
        unsafe { self.each_locked(|c| c.fork_lock_depot()) };
        // SAFETY: as above.
        unsafe { self.each_locked(|c| c.fork_lock_slab()) };
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took.
    ///
    /// # Safety
    /// [`fork_lock`](Self::fork_lock) was called (here, or in the parent
    /// before the `fork()` that made this process) and not undone since.
    pub unsafe fn fork_unlock(&self) {
        // SAFETY: `fork_lock` ran, so the registry lock is held too; each
        // cache's locks are held since `fork_lock`, guards forgotten.
        unsafe { self.each_locked(|c| c.fork_unlock()) };
    }

    /// Releases what [`fork_lock_registry`](Self::fork_lock_registry) took.
    ///
    /// # Safety
    /// It was called and not undone since; [`fork_unlock`](Self::fork_unlock)
    /// ran first if [`fork_lock`](Self::fork_lock) did.
    pub unsafe fn fork_unlock_registry(&self) {
        // SAFETY: forwarded.
        unsafe { self.registry.unlock_after_fork() };
    }

    /// Runs `f` on every cache, bootstrap caches last, with the registry's
    /// write lock already held by the caller (its guard forgotten).
    ///
    /// # Safety
    /// [`fork_lock_registry`](Self::fork_lock_registry) was called and not
    /// undone.
    unsafe fn each_locked(&self, mut f: impl FnMut(&KmemCache<'_, C>)) {
        // SAFETY: forwarded.
        unsafe { self.registry.each_locked(&mut f) };
        for c in [&self.cache_cache, &self.bufctl_cache, &self.slab_cache] {
            f(c);
        }
        for c in self.magazine_caches.iter().rev() {
            f(c);
        }
    }
}

impl<C: Cpu> KmemCache<'_, C> {
    /// `fork()` support (see [`Caches::fork_lock`]): the depot lock.
    fn fork_lock_depot(&self) {
        if let Some(mags) = &self.mags {
            mags.fork_lock();
        }
    }

    /// `fork()` support: the slab lock, then the bad-free record's.
    fn fork_lock_slab(&self) {
        core::mem::forget(self.slab.lock());
        core::mem::forget(self.last_bad.lock());
    }

    /// Releases what the two calls above took.
    ///
    /// # Safety
    /// Both were called and not undone since.
    unsafe fn fork_unlock(&self) {
        // SAFETY: (each) held since the calls above, guards forgotten.
        unsafe {
            self.last_bad.force_unlock();
            self.slab.force_unlock();
            if let Some(mags) = &self.mags {
                mags.fork_unlock();
            }
        }
    }
}
