//! [`QCacheList`]: the caches of a [`QCaches`], read without a lock by the
//! calls of the arena they serve, emptied only by that arena's `destroy`.

use core::cell::UnsafeCell;
use core::ptr;

use arrayvec::ArrayVec;
use kmem_arena::{Arena, QuantumCaches};
use kmem_magazine::Cpu;
use spin::RwLock;

use super::registry::Cache;
use crate::qcache::{QCaches, QCACHE_MAX_CACHES};

/// The caches of one [`QCaches`], smallest size first.
pub(crate) struct QCacheList<'a, C: Cpu> {
    /// Held for reading by the public queries while they copy what they
    /// need, for writing by `destroy`, which empties `caches`.
    lock: RwLock<()>,
    /// Emptied only by `destroy`, which runs alone among the arena's calls
    /// (its contract) and holds `lock` for writing against the queries.
    caches: UnsafeCell<ArrayVec<Cache<'a, C>, QCACHE_MAX_CACHES>>,
}

// SAFETY: the caches are `Sync`. The `UnsafeCell` is emptied only by
// `drain_list`, which holds `lock` for writing, while the queries read it
// under `lock` for reading; the arena's calls (`alloc`, `free`, `reap`),
// which read it without the lock, reach these caches only through the one
// arena they are attached to (`QCaches::caches_for` checks it), which calls
// `destroy` from `destroy(&mut self)`, so never while one of them runs.
unsafe impl<C: Cpu> Sync for QCacheList<'_, C> {}
// SAFETY: `Cache` handles are `Send`.
unsafe impl<C: Cpu> Send for QCacheList<'_, C> {}

impl<'a, C: Cpu> QCacheList<'a, C> {
    pub(crate) fn new(caches: ArrayVec<Cache<'a, C>, QCACHE_MAX_CACHES>) -> Self {
        Self {
            lock: RwLock::new(()),
            caches: UnsafeCell::new(caches),
        }
    }
}

impl<'a, C: Cpu> QCaches<'a, C> {
    /// The caches, for a call of `arena`: `None` unless `arena` is the
    /// arena these caches serve.
    #[inline]
    pub(crate) fn caches_for(&self, arena: &Arena<'_>) -> Option<&[Cache<'a, C>]> {
        let mine = arena
            .qcaches()
            .is_some_and(|q| ptr::addr_eq(q as *const dyn QuantumCaches, self as *const Self));
        if !mine {
            return None;
        }
        // `drain_list`, the only writer, runs from `QuantumCaches::destroy`,
        // whose caller promises that no call of the arena's runs meanwhile
        // (the arena calls it from `destroy(&mut self)`, impossible while
        // this call borrows it).
        // SAFETY: `arena` holds these caches, so it is the one arena they
        // are attached to (`attach` admits one); nothing writes the list now.
        Some(unsafe { &*self.list.caches.get() })
    }

    /// Runs `f` on the caches under the read lock (for the queries).
    pub(crate) fn read_caches<R>(&self, f: impl FnOnce(&[Cache<'a, C>]) -> R) -> R {
        let _lock = self.list.lock.read();
        // SAFETY: `drain_list`, the only writer, holds the lock for writing.
        f(unsafe { &*self.list.caches.get() })
    }

    /// Drains every cache's magazines into its slabs and returns the
    /// objects allocated from them: the live objects, whatever the counters
    /// say (a bad free sitting in a magazine cannot hide one).
    ///
    /// # Safety
    /// As for [`QuantumCaches::destroy`]: nothing else calls the caches.
    pub(crate) unsafe fn drain_and_count(&self) -> u64 {
        // SAFETY: `drain_list` runs only from `destroy`, which is the caller.
        let caches = unsafe { &*self.list.caches.get() };
        caches
            .iter()
            .map(|c| {
                if let Some(mags) = &c.mags {
                    // SAFETY: no other call on the cache runs (the caller's
                    // guarantee): no slot is in use.
                    unsafe { mags.drain_all(|obj| c.drain_one(obj)) };
                }
                c.live()
            })
            .sum()
    }

    /// Empties the list, handing each cache to `f`, with the lock held for
    /// writing against the queries meanwhile.
    ///
    /// # Safety
    /// As for [`QuantumCaches::destroy`]: no call of the arena's runs
    /// during this one.
    pub(crate) unsafe fn drain_list(&self, f: impl FnMut(Cache<'a, C>)) {
        let _lock = self.list.lock.write();
        // SAFETY: no call of the arena's runs (the caller's guarantee), and
        // the queries wait for the lock.
        let caches = unsafe { &mut *self.list.caches.get() };
        caches.drain(..).for_each(f);
    }
}
