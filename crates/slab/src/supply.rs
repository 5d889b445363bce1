//! Where a cache's slabs come from and go back to: growing by one slab
//! (outside the cache lock), freeing empty slabs, `reap`, the hash rescale,
//! and the final teardown.
//!
//! Every path that touches the source takes it as a parameter: a cache's own
//! source, or for a quantum cache (which stores none) the arena that called.

use core::sync::atomic::Ordering;

use kmem_arena::Arena;
use kmem_magazine::{Cpu, Section};

use crate::builder::Pressure;
use crate::cache::KmemCache;
use crate::error::AllocError;
use crate::geometry::Layout;
use crate::handle::take_unregistered;
use crate::raw::{
    build_bufctl, build_small, table_bytes, EmptySlab, NewSlab, SlabBuffer, SlabList, Stock,
};
use crate::slabs::From;

/// Chains of a hash rehash moved per hold of the cache lock by
/// [`KmemCache::rescale_hash`]: a bounded piece of work (a chain holds
/// about one node) between which allocations and frees go on.
const REHASH_BATCH: usize = 64;

/// Bytes of empty slabs a cache keeps after a batch flush (at least two
/// slabs); past twice that, the rest go back to the source at once
/// ([`KmemCache::release_spare_empties`]).
pub(crate) const KEEP_EMPTY_BYTES: usize = 1 << 20;
impl<C: Cpu> KmemCache<'_, C> {
    /// Builds one empty slab from `src`, outside the cache lock.
    pub(crate) fn grow(&self, src: Option<&Arena<'_>>) -> Result<NewSlab, AllocError> {
        let src = src.ok_or(AllocError::QuantumCache)?;
        // An injected failure is a source arena with no memory.
        #[cfg(feature = "fail-inject")]
        if kmem_fail::should_fail(kmem_fail::Layer::SlabGrow) {
            return Err(AllocError::Exhausted);
        }
        let buf = SlabBuffer::alloc(src, self.shape).ok_or(AllocError::Exhausted)?;
        if buf.base() % self.shape.align() != 0 {
            // A source whose spans are not aligned to its quantum.
            self.free_buffer(src, buf);
            return Err(AllocError::Exhausted);
        }
        if let Some((map, owner)) = self.page_map {
            if !map.set(buf.base(), self.shape.size(), owner) {
                self.free_buffer(src, buf);
                return Err(AllocError::Exhausted);
            }
        }
        let slab = match self.geo.layout {
            Layout::Small { .. } => {
                let colour = self
                    .geo
                    .colour(self.colours.fetch_add(1, Ordering::Relaxed));
                build_small(
                    buf,
                    &self.geo,
                    colour,
                    self.check.owner_word(colour),
                    self.check.tag(),
                )
            }

            Layout::Bufctl => self.grow_bufctl(buf).map_err(|buf| {
                self.free_buffer(src, buf);
                AllocError::Exhausted
            })?,
        };
        // Every object of a fresh slab is free, and the colour before them
        // unused (the header of a small slab, after them, stays usable).
        #[cfg(kmem_asan)]
        if self.memory {
            kmem_arena::asan::poison(
                slab.base(),
                slab.colour() + self.geo.per_slab as usize * self.geo.size,
            );
        }
        Ok(slab)
    }

    /// The header and bufctls of a bufctl slab over `buf`, from the
    /// bootstrap caches; `Err` hands `buf` back.
    fn grow_bufctl(&self, buf: SlabBuffer) -> Result<NewSlab, SlabBuffer> {
        let ctx = self.ctx.expect("kmem-slab: bufctl caches have a context");
        let Some(header) = ctx.slab_cache.take_bootstrap() else {
            return Err(buf);
        };
        // Take every bufctl first, so a shortage undoes cleanly.
        let mut stock = Stock::new();
        for _ in 0..self.geo.per_slab {
            match ctx.bufctl_cache.take_bootstrap() {
                Some(bc) => stock.push(bc),
                None => {
                    while let Some(bc) = stock.pop() {
                        let _ = ctx.bufctl_cache.release(bc.into_freed(), From::User, true);
                    }
                    let _ = ctx
                        .slab_cache
                        .release(header.into_freed(), From::User, true);
                    return Err(buf);
                }
            }
        }
        let debug = self.slab.lock().set.debug();
        Ok(build_bufctl(buf, &self.geo, header, stock, debug))
    }

    /// Gives a slab buffer back to `src`, the arena it came from.
    fn free_buffer(&self, src: &Arena<'_>, buf: SlabBuffer) {
        if let Some((map, _)) = self.page_map {
            map.clear(buf.base(), self.shape.size());
        }
        if buf.free(src).is_err() {
            self.count_meta_error();
        }
    }

    /// Frees an unlinked empty slab to `src`: bufctls, header, buffer.
    fn free_slab(&self, src: &Arena<'_>, slab: EmptySlab) {
        let parts = slab.into_parts();
        if let Some(header) = parts.header {
            let ctx = self.ctx.expect("kmem-slab: bufctl caches have a context");
            for bc in parts.bufctls {
                let _ = ctx.bufctl_cache.release(bc, From::User, true);
            }
            let _ = ctx.slab_cache.release(header, From::User, true);
        }
        self.free_buffer(src, parts.buffer);
    }

    /// After a batch flush: when a cache holds more than twice the empty
    /// slabs it keeps for its next allocations ([`KEEP_EMPTY_BYTES`], at
    /// least 2), those past the keep go back to the source at once, so that
    /// memory a burst of frees emptied serves other caches without waiting
    /// for the upkeep pass. A quantum cache keeps its empty slabs (its
    /// arena reaps it).
    pub(crate) fn release_spare_empties(&self) {
        let Some(src) = self.source.filter(|_| !self.is_quantum()) else {
            return;
        };
        let keep = (KEEP_EMPTY_BYTES / self.geo.slab_size).max(2);
        // Only past twice the keep, then down to it: a cache whose frees
        // and allocations swing around the mark does not destroy and build
        // a slab at every flush.
        if self.slab.lock().set.len(SlabList::Empty) <= 2 * keep {
            return;
        }
        self.free_empty_slabs_past(src, keep);
    }

    /// Frees every empty slab to `src`; returns the bytes given back.
    fn free_empty_slabs(&self, src: &Arena<'_>) -> usize {
        self.free_empty_slabs_past(src, 0)
    }

    /// Frees empty slabs to `src` until `keep` are left; returns the bytes
    /// given back.
    fn free_empty_slabs_past(&self, src: &Arena<'_>, keep: usize) -> usize {
        let mut freed = 0;
        loop {
            // Its own statement: the lock is not held while the slab goes
            // back (a `while let` would hold it for the whole body).
            let slab = {
                let mut st = self.slab.lock();
                if st.set.len(SlabList::Empty) <= keep {
                    break;
                }
                st.pop_empty(&self.geo)
            };
            let Some(slab) = slab else { break };
            self.free_slab(src, slab);
            freed += self.geo.slab_size;
        }
        freed
    }

    /// Calls the cache's shrinker, if any, with [`Pressure::Low`]; empties
    /// the depot into the slabs, then returns every empty slab to
    /// the source and shrinks the hash if it is oversized. Returns the bytes
    /// given back. CPU magazines stay loaded (see
    /// [`purge_magazines`](Self::purge_magazines) for those).
    /// A quantum cache keeps its empty slabs: its arena reaps it
    /// ([`Arena::reap`]). Called from a handler that interrupted an
    /// operation of its context (see [`Section`]), it does nothing.
    pub fn reap(&self) -> usize {
        self.in_section(Some(Pressure::Low), || self.reap_from(self.source))
    }

    /// Purges the magazines of every CPU (illumos'
    /// `kmem_cache_magazine_purge`): the rounds of every slot whose holder
    /// is not inside an operation on this cache right now, and of the
    /// depot, go back to their slabs (destructed), and the empty slabs to
    /// the source; the holders of the others move their magazines to the
    /// depot at their next operation on the cache (where the next trim,
    /// reap or purge finds them). No holder waits for it: an operation
    /// meanwhile goes straight to the slabs. It takes the idle slots only
    /// where the platform has the fence [`Cpu::fence_slots`] describes
    /// (`ThreadCpus` has); elsewhere it asks every holder. Returns the
    /// bytes of slabs given back. Does nothing (0) for a quantum cache
    /// (whose slabs its arena reaps) and from a handler that interrupted
    /// an operation of its context (see [`Section`]).
    pub fn purge_magazines(&self) -> usize {
        if self.is_quantum() {
            return 0;
        }
        self.in_section(None, || {
            if let Some(mags) = &self.mags {
                mags.purge(|obj| self.drain_one(obj));
            }
            let freed = self.source.map_or(0, |src| self.free_empty_slabs(src));
            self.rescale_hash(true);
            freed
        })
    }

    /// [`reap`](Self::reap) without the shrinker (which
    /// [`Caches::reap`](crate::Caches::reap) calls outside the registry's
    /// lock).
    pub(crate) fn reap_without_shrinker(&self) -> usize {
        self.in_section(None, || self.reap_from(self.source))
    }

    /// Runs `pass` (a reap or a tick) in a section of its own, after the
    /// shrinker with `shrink`, if asked; nothing (0) from a handler that
    /// interrupted an operation of its context (see [`Section`]).
    fn in_section(&self, shrink: Option<Pressure>, pass: impl FnOnce() -> usize) -> usize {
        let _section = match self.cpu().map(Section::enter) {
            Some(None) => return 0,
            section => section,
        };
        if let Some(pressure) = shrink {
            self.call_reclaim(pressure);
        }
        pass()
    }

    /// One upkeep pass over this cache, for a periodic timer (see
    /// [`Caches::tick`](crate::Caches::tick), which calls it on every
    /// cache): the cache's shrinker, if it has one, with
    /// [`Pressure::Upkeep`]; the depot's working-set trim (the objects of magazines
    /// nobody needed during the last whole interval go back into their
    /// slabs, destructed, and the magazines to the magazine cache), then
    /// every empty slab back to the source, then the hash resized to its
    /// load. Each interval between two calls is one working-set interval:
    /// what sat idle in the depot through one whole interval goes back at
    /// the end of the next. The magazines of CPUs that made no operation on
    /// the cache since the last pass go back too
    /// ([`Magazines::purge_idle`](kmem_magazine::Magazines::purge_idle),
    /// where the platform has the fence it needs); busy CPUs keep theirs.
    /// Returns the bytes of slabs given back.
    ///
    /// A quantum cache's pass is its arena's ([`Arena::tick`]): here it
    /// does nothing. So does a call from a handler that interrupted an
    /// operation of its context (see [`Section`]).
    pub fn tick(&self) -> usize {
        if self.is_quantum() {
            return 0;
        }
        self.in_section(Some(Pressure::Upkeep), || self.tick_from(self.source))
    }

    /// [`tick`](Self::tick) without the shrinker (which
    /// [`Caches::tick`](crate::Caches::tick) calls outside the registry's
    /// lock).
    pub(crate) fn tick_without_shrinker(&self) -> usize {
        if self.is_quantum() {
            return 0;
        }
        self.in_section(None, || self.tick_from(self.source))
    }

    /// True for one of an arena's quantum caches.
    pub(crate) fn is_quantum(&self) -> bool {
        self.flags.contains(crate::CacheFlags::QCACHE)
    }

    /// True when the cache's slabs come from `arena`.
    pub(crate) fn is_sourced_from(&self, arena: &Arena<'_>) -> bool {
        self.source.is_some_and(|s| core::ptr::addr_eq(s, arena))
    }

    /// [`tick`](Self::tick), giving empty slabs back to `src`.
    pub(crate) fn tick_from(&self, src: Option<&Arena<'_>>) -> usize {
        if let Some(mags) = &self.mags {
            mags.trim(|rounds| self.drain_batch(rounds));
            mags.purge_idle(|obj| self.drain_one(obj));
        }
        let freed = src.map_or(0, |src| self.free_empty_slabs(src));
        self.rescale_hash(true);
        freed
    }

    /// For a reclaim callback of `arena`, this cache's source, which ran
    /// out: the cache's shrinker, if any, is called with
    /// [`Pressure::Low`] (outside the operation, if this runs inside
    /// one); then the caller's own magazines (also from inside an
    /// operation, as an arena's reclaim may run in the section of a page
    /// allocation), every other CPU's as a
    /// [`purge_magazines`](Self::purge_magazines) takes them, the depot and
    /// the empty slabs go back, the slabs to `arena`. Allocates nothing itself (the hash keeps its size), so it
    /// may run while `arena` has nothing to give. Returns the bytes given back; 0 for a
    /// cache whose source is another arena (or that has none).
    pub fn reclaim_to(&self, arena: &Arena<'_>) -> usize {
        if !self.is_sourced_from(arena) {
            return 0;
        }
        self.call_reclaim(Pressure::Low);
        self.reclaim_to_without_shrinker(arena)
    }

    /// [`reclaim_to`](Self::reclaim_to) without the shrinker (which
    /// [`Caches::reclaim_to`](crate::Caches::reclaim_to) calls outside the
    /// registry's lock).
    pub(crate) fn reclaim_to_without_shrinker(&self, arena: &Arena<'_>) -> usize {
        if !self.is_sourced_from(arena) {
            return 0;
        }
        self.flush_current_within();
        if let Some(mags) = &self.mags {
            mags.purge(|obj| self.drain_one(obj));
        }
        self.free_empty_slabs(arena)
    }

    /// [`reap`](Self::reap), giving empty slabs back to `src`.
    pub(crate) fn reap_from(&self, src: Option<&Arena<'_>>) -> usize {
        if let Some(mags) = &self.mags {
            mags.drain_depot(|obj| self.drain_one(obj));
        }
        let freed = src.map_or(0, |src| self.free_empty_slabs(src));
        self.rescale_hash(true);
        freed
    }

    /// Objects out of the slabs (held by users or in magazines).
    pub(crate) fn live(&self) -> u64 {
        self.slab.lock().busy
    }

    /// Resizes the hash to what its load calls for: the table allocated
    /// and freed outside the cache lock, installed in `O(1)` under it, the
    /// nodes moved over [`REHASH_BATCH`] chains per lock hold (inserts and
    /// removes meanwhile move a few more each).
    pub(crate) fn rescale_hash(&self, allow_shrink: bool) {
        let Some(bits) = self.slab.lock().set.hash().resize_target(allow_shrink) else {
            return;
        };
        let Some(table) = self.meta_alloc(table_bytes(bits)) else {
            return;
        };
        let mut st = self.slab.lock();
        let refused = if st.set.hash().resize_target(allow_shrink) == Some(bits) {
            st.set.install_table(table, bits)
        } else {
            Some(table)
        };
        drop(st);
        if let Some(spare) = refused {
            self.meta_free(spare);
            return;
        }
        loop {
            let (moving, emptied) = self.slab.lock().set.move_hash(REHASH_BATCH);
            if let Some(t) = emptied {
                self.meta_free(t);
            }
            if !moving {
                break;
            }
        }
    }

    /// Moves every magazine to the slabs, then frees every slab to `src`;
    /// refuses (leaving the cache working) while objects are allocated, or
    /// while slabs exist and there is no source to give them to (a quantum
    /// cache whose arena is gone keeps them, as leaked).
    pub(crate) fn teardown(&mut self, src: Option<&Arena<'_>>) -> Result<(), u64> {
        // Out of the cache while it drains: destructors run as in a cache
        // without magazines.
        if let Some(mut mags) = take_unregistered(&mut self.mags) {
            mags.drain_owned(|obj| self.drain_one(obj));
            self.mags = Some(mags);
        }
        let (busy, slabs) = {
            let st = self.slab.lock();
            (st.busy, st.slabs())
        };
        if busy != 0 {
            return Err(busy);
        }
        match src {
            Some(src) => {
                self.free_empty_slabs(src);
            }
            None if slabs > 0 => return Err(0),
            None => {}
        }
        self.free_hash();
        if let Some(mags) = self.mags.take() {
            self.meta_free(mags.into_percpu());
        }
        if let Some(own) = self.source {
            crate::handle::unregister_importer(own);
        }
        Ok(())
    }
}
