//! Arena upkeep between operations: metadata memory (hash tables), the
//! hash rescale, `reap`, and `destroy`. Each runs with the arena lock taken
//! only around state changes, never while calling out.

use kmem_btag::{HeadTable, Tree};

use crate::arena::{Arena, META};
use crate::segments::{Purge, Segments};
use crate::{DestroyError, Policy, Source};

/// Non-empty hash chains an explicit rescale moves per lock hold.
const REHASH_BATCH: usize = 64;

/// Units of free memory [`Arena::purge`] hands over per hold of the lock
/// at most (1 MiB of a byte-addressed arena).
pub const PURGE_CHUNK: usize = 1 << 20;

impl Arena<'_> {
    /// Allocates metadata memory (a hash table) of `bytes`.
    fn meta_alloc(&self, bytes: usize) -> Option<usize> {
        if !self.base {
            return match self.tags_from {
                Some(meta) => meta.alloc(bytes, Policy::InstantFit).ok(),
                None => self.take_hash_memory(bytes),
            };
        }
        let addr = self.alloc(bytes, Policy::InstantFit).ok()?;
        let mut g = self.inner.lock();
        let s = &mut *g;
        let id = s
            .hash
            .find(&s.tags, addr)
            .expect("kmem-arena: fresh allocation not hashed");
        let size = s.tags.get(id).size;
        s.tags.get_mut(id).list = META;
        s.meta_units += size;
        s.meta_segs += 1;
        s.counters.allocs -= 1;
        Some(addr)
    }

    fn meta_free(&self, addr: usize, bytes: usize) {
        // A refusal would mean corrupt metadata; it is counted, never a
        // panic on an allocator path.
        let freed = match (self.base, self.tags_from) {
            (true, _) => self.free_segment(addr, bytes, true),
            // SAFETY: metadata `meta_alloc` took from the tag arena with this
            // size, no longer used (the caller replaced or dropped it).
            (false, Some(meta)) => unsafe { meta.free_memory(addr, bytes) },
            (false, None) => {
                self.give_hash_memory(addr);
                Ok(())
            }
        };
        if freed.is_err() {
            self.inner.lock().counters.meta_errors += 1;
        }
    }

    /// Donates memory for the allocated-segment hash of an arena that has
    /// no tag arena and is not a base arena (its boundary tags were donated
    /// too, with [`add_tag_memory`](Self::add_tag_memory)): the hash grows
    /// into such regions as its load asks (a table takes a whole region, the
    /// smallest that holds it, and gives it back when replaced). At most 4
    /// regions are kept; returns false, keeping nothing, when 4 are held, the
    /// arena takes its tables elsewhere, or the region holds no table larger
    /// than the 64 chains kept inline.
    ///
    /// # Safety
    /// `[ptr, ptr + len)` is valid for reads and writes, aligned to 4 bytes,
    /// and used by nothing else for as long as the arena exists.
    pub unsafe fn add_hash_memory(&self, ptr: *mut u8, len: usize) -> bool {
        if self.base || self.tags_from.is_some() || !(ptr as usize).is_multiple_of(4) {
            return false;
        }
        if len < HeadTable::bytes_for(2 * kmem_hash::INIT_CHAINS) {
            return false;
        }
        let mut g = self.inner.lock();
        match g.hash_memory.iter_mut().find(|r| r.1 == 0) {
            Some(r) => {
                *r = (ptr as usize, len, false);
                true
            }
            None => false,
        }
    }

    /// A free donated region of at least `bytes` (the smallest), marked in
    /// use.
    fn take_hash_memory(&self, bytes: usize) -> Option<usize> {
        let mut g = self.inner.lock();
        let r = g
            .hash_memory
            .iter_mut()
            .filter(|r| !r.2 && r.1 >= bytes)
            .min_by_key(|r| r.1)?;
        r.2 = true;
        Some(r.0)
    }

    /// Marks the donated region at `addr` free again.
    fn give_hash_memory(&self, addr: usize) {
        let mut g = self.inner.lock();
        if let Some(r) = g.hash_memory.iter_mut().find(|r| r.2 && r.0 == addr) {
            r.2 = false;
        }
    }

    /// Resizes the allocated-segment hash to what its load policy asks for:
    /// growth always, shrinking only when `shrink`. Runs between operations:
    /// the new table is allocated with the lock dropped and installed after.
    /// Returns true when a new table was installed.
    pub(crate) fn rescale(&self, shrink: bool) -> bool {
        let chains = {
            let mut g = self.inner.lock();
            match g.hash.wanted_chains() {
                Some(c) if !g.rescaling && (shrink || c > g.hash.chains()) => {
                    g.rescaling = true;
                    c
                }
                _ => return false,
            }
        };
        let bytes = HeadTable::bytes_for(chains);
        let table = if chains > kmem_hash::INIT_CHAINS {
            match self.meta_alloc(bytes) {
                Some(addr) => Some(addr),
                None => {
                    self.inner.lock().rescaling = false;
                    return false;
                }
            }
        } else {
            None
        };
        {
            let mut g = self.inner.lock();
            let s = &mut *g;
            s.rescaling = false;
            // `addr` is a fresh allocation of `bytes` from a memory arena
            // (this base arena or the tag arena, 8-aligned) or a donated
            // region (4-aligned, `add_hash_memory`'s contract) just marked
            // in use, owned by the hash until it retires it (given back by
            // `free_retired`) or destroy.
            // SAFETY: as just said, valid, aligned and ours for the table.
            let new = table.map(|addr| unsafe { HeadTable::from_raw(addr as *mut u8, chains) });
            // `rescaling` kept any other rescale out since the check above,
            // so no rehash can have started meanwhile.
            s.hash.install(new);
        }
        true
    }

    /// Frees a hash table a finished rehash retired (taken under the lock,
    /// freed here without it).
    #[inline(always)]
    pub(crate) fn free_retired(&self, table: Option<HeadTable>) {
        if let Some(t) = table {
            let (addr, len) = t.into_raw();
            self.meta_free(addr, len);
        }
    }

    /// Grows or shrinks the allocated-segment hash to suit its load (the
    /// off-path rescale a kernel runs periodically). Returns true when the
    /// table changed.
    pub fn rescale_hash(&self) -> bool {
        // A rehash already moving keeps out a new table: finish it first.
        self.finish_rehash();
        let changed = self.rescale(true);
        self.finish_rehash();
        changed
    }

    /// Moves the rest of a rehash under way, [`REHASH_BATCH`] chains per
    /// lock hold, then frees the table it emptied: an explicit rescale
    /// (`rescale_hash`, `reap`) leaves no old table behind.
    fn finish_rehash(&self) {
        loop {
            let mut g = self.inner.lock();
            let s = &mut *g;
            s.hash.move_chains(&mut s.tags, REHASH_BATCH);
            let moving = s.hash.moving();
            let retired = s.hash.take_retired();
            drop(g);
            self.free_retired(retired);
            if !moving {
                return;
            }
        }
    }

    /// Gives idle memory back: the quantum caches return their depots'
    /// objects and their empty slabs, then the hash is resized to its load.
    /// Returns the units the quantum caches gave back.
    pub fn reap(&self) -> usize {
        let freed = self.qcaches.map_or(0, |q| q.reap(self));
        self.rescale_hash();
        freed
    }

    /// The upkeep pass, for a periodic timer (a kernel's, or the reaper
    /// thread of kmalloc's global allocator): the quantum caches give back
    /// what they held idle through a whole interval between two passes
    /// ([`QuantumCaches::tick`](crate::QuantumCaches::tick)), then the allocated-segment
    /// hash is resized to its load, growing or shrinking, in batches of
    /// chains with the lock let go between them. Returns the units the
    /// quantum caches gave back.
    pub fn tick(&self) -> usize {
        let freed = self.qcaches.map_or(0, |q| q.tick(self));
        self.rescale_hash();
        freed
    }

    /// Gives free memory back to the platform while the arena keeps it:
    /// hands the free segments of at least `min` units to `f`, in address
    /// order and, for a memory arena, in pieces of at most [`PURGE_CHUNK`]
    /// units that end at its multiples (an arena of integers hands each
    /// segment over whole), each while
    /// holding the arena's lock, so that no allocation can take any of it
    /// meanwhile and none finds it missing either (it waits for the lock
    /// instead: one piece's worth of `f`). For a memory arena, `f` tells
    /// the OS that the pages are unused (Linux: `madvise` with
    /// `MADV_DONTNEED`); their contents are lost, which free memory's may
    /// be. `f` must not call into this arena, nor be interrupted by a
    /// handler that does (the caller blocks signals, or runs it where no
    /// handler allocates). Returns the units handed to `f`; free memory is
    /// handed over again by every call (an arena does not record what was
    /// purged).
    pub fn purge(&self, min: usize, mut f: impl FnMut(usize, usize)) -> usize {
        let min = min.max(1);
        // Pieces of whole quanta; an arena of integers, whose free ranges
        // can be as large as its address space, hands each over whole.
        let chunk = if self.memory {
            (PURGE_CHUNK / self.quantum).max(1) * self.quantum
        } else {
            usize::MAX
        };
        let (mut at, mut purged) = (0, 0);
        loop {
            let g = self.inner.lock();
            match g.purge_step(at, min) {
                Purge::Done => return purged,
                Purge::From(next) => at = next,
                Purge::Range(from, end) => {
                    // Pieces end at multiples of `chunk` (page-aligned), so
                    // none splits a page that `f` would then leave out.
                    let next = (from / chunk + 1).saturating_mul(chunk);
                    let to = end.min(next);
                    f(from, to - from);
                    purged += to - from;
                    at = to;
                }
            }
            drop(g);
        }
    }

    /// Tears the arena down: destroys its quantum caches, then returns
    /// imported spans to the source and tag pages and hash tables to the tag
    /// arena, leaving an empty arena detached from its source, tag arena and
    /// caches (tag memory for further use must then be donated).
    /// Refuses, changing nothing, while other arenas or object caches import
    /// from it or objects of its quantum caches are allocated. Segments
    /// allocated otherwise make it refuse after the quantum caches are gone
    /// (cached sizes then come from segments).
    pub fn destroy(&mut self) -> Result<(), DestroyError> {
        let importers = *self.importers.get_mut();
        if importers > 0 {
            return Err(DestroyError::LiveImporters { count: importers });
        }
        if let Some(q) = self.qcaches {
            // SAFETY: `&mut self`: no arena call, hence no call on the
            // caches (reached only through this arena, which attached them
            // exclusively), runs now; after success they are detached.
            unsafe { q.destroy(self) }
                .map_err(|count| DestroyError::LiveCachedObjects { count })?;
            self.qcaches = None;
            self.qcache_max = 0;
        }
        let (source, meta, base) = (self.source, self.tags_from, self.base);
        let s = self.inner.get_mut();
        let count = s.hash.len() - s.meta_segs;
        if count > 0 {
            return Err(DestroyError::LiveAllocations {
                count,
                bytes: s.allocated - s.meta_units,
            });
        }
        if let Some(src) = source {
            // Every imported span is wholly free now (no live segments).
            let mut cur = s.tags.first(Tree::Spans);
            while let Some(id) = cur {
                let t = *s.tags.get(id);
                // SAFETY: an imported span, wholly free; the arena is being
                // destroyed, so nothing uses it.
                unsafe { src.release(t.start, t.size) };
                cur = s.tags.next(id);
            }
        }
        if !base {
            for table in s.hash.take_tables(&mut s.tags).into_iter().flatten() {
                let (addr, len) = table.into_raw();
                if let Some(m) = meta {
                    // SAFETY: the hash table came from the tag arena with
                    // this size; the arena is gone, nothing uses it.
                    let _ = unsafe { m.free_memory(addr, len) };
                }
            }
            s.tags.drain_owned(|addr, len| {
                if let Some(m) = meta {
                    // SAFETY: a tag page from the tag arena, of this size;
                    // the tags in it are dead with the arena.
                    let _ = unsafe { m.free_memory(addr, len) };
                }
            });
        }
        *s = Segments::new();
        if let Some(src) = self.source.take() {
            // SAFETY: this arena's one `add_importer` (at build); every
            // span went back above.
            unsafe { src.remove_importer() };
        }
        if let Some(m) = self.tags_from.take() {
            // SAFETY: as above; the tag pages and hash went back above.
            unsafe { m.remove_importer() };
        }
        Ok(())
    }
}
