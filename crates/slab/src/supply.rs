//! Where a cache's slabs come from and go back to: growing by one slab
//! (outside the cache lock), freeing empty slabs, `reap`, the hash rescale,
//! and the final teardown.
//!
//! Every path that touches the source takes it as a parameter: a cache's own
//! source, or for a quantum cache (which stores none) the arena that called.

use core::ptr::NonNull;

use kmem_arena::{Arena, Constraints, Policy, Source};
use kmem_magazine::{Cpu, Section};

use crate::cache::{KmemCache, MagSrc};
use crate::error::AllocError;
use crate::geometry::Layout;
use crate::hash::table_bytes;
use crate::raw::{self, SlabHeader};
use crate::slabs::{self, From};
use crate::AllocFlags;

impl<'a, C: Cpu> KmemCache<'a, C> {
    /// Builds one empty slab from `src`, outside the cache lock.
    pub(crate) fn grow(&self, src: Option<&Arena<'_>>) -> Result<NonNull<SlabHeader>, AllocError> {
        let src = src.ok_or(AllocError::QuantumCache)?;
        let size = self.geo.slab_size;
        let base = if self.xalloc {
            src.xalloc(size, &Constraints::new().align(self.slab_align))
        } else {
            src.alloc(size, Policy::InstantFit)
        }
        .map_err(|_| AllocError::Exhausted)?;
        if base % self.slab_align != 0 {
            // A source whose spans are not aligned to its quantum.
            self.free_buffer(src, base);
            return Err(AllocError::Exhausted);
        }
        let slab = match self.geo.layout {
            Layout::Small { .. } => {
                // SAFETY: a fresh, aligned slab buffer from a memory source.
                unsafe { slabs::build_small(&self.geo, base) }
            }
            Layout::Bufctl => self
                .grow_bufctl(base)
                .inspect_err(|_| self.free_buffer(src, base))?,
        };
        // Every object of a fresh slab is free (the header of a small slab,
        // after them, stays usable).
        #[cfg(kmem_asan)]
        if self.memory {
            kmem_arena::asan::poison(base, self.geo.per_slab as usize * self.geo.size);
        }
        Ok(slab)
    }

    fn grow_bufctl(&self, base: usize) -> Result<NonNull<SlabHeader>, AllocError> {
        let ctx = self.ctx.expect("kmem-slab: bufctl caches have a context");
        let raw_alloc = |c: &KmemCache<'a, C>| {
            c.alloc_from_slab(c.source, AllocFlags::ATOMIC)
                .ok()
                .and_then(|a| NonNull::new(a as *mut u8))
        };
        let header = raw_alloc(&ctx.slab_cache).ok_or(AllocError::Exhausted)?;
        // Take every bufctl first, chained through their first word, so a
        // shortage undoes cleanly.
        let mut chain = raw::NONE;
        for _ in 0..self.geo.per_slab {
            match raw_alloc(&ctx.bufctl_cache) {
                Some(bc) => {
                    // SAFETY: a fresh bufctl-cache object, owned here.
                    unsafe { raw::write_link(bc.as_ptr() as usize, chain) };
                    chain = bc.as_ptr() as usize;
                }
                None => {
                    while chain != raw::NONE {
                        // SAFETY: an object of the chain built above.
                        let next = unsafe { raw::read_link(chain) };
                        let _ = ctx.bufctl_cache.release(chain, From::User, true);
                        chain = next;
                    }
                    let _ = ctx
                        .slab_cache
                        .release(header.as_ptr() as usize, From::User, true);
                    return Err(AllocError::Exhausted);
                }
            }
        }
        let pop = || {
            let bc = chain;
            // SAFETY: the chain holds exactly `per_slab` objects.
            chain = unsafe { raw::read_link(bc) };
            // SAFETY: objects are never at address 0 (they are memory).
            unsafe { NonNull::new_unchecked(bc as *mut u8) }
        };
        // SAFETY: `header` and the chained bufctls are fresh objects of the
        // bootstrap caches, sized and aligned for their structs.
        Ok(unsafe { slabs::build_bufctl(&self.geo, base, header, pop) })
    }

    fn free_buffer(&self, src: &Arena<'_>, base: usize) {
        let size = self.geo.slab_size;
        // SAFETY: the slab's buffer, allocated from `src` by `grow` with this
        // size (by `xalloc` exactly when `self.xalloc`); the slab is
        // unlinked and empty, so nothing uses it any more.
        let freed = unsafe {
            if self.xalloc {
                src.xfree_memory(base, size)
            } else {
                src.free_memory(base, size)
            }
        };
        if freed.is_err() {
            self.count_meta_error();
        }
    }

    /// Frees an unlinked empty slab to `src`: bufctls, header, buffer.
    fn free_slab(&self, src: &Arena<'_>, slab: NonNull<SlabHeader>) {
        // SAFETY: unlinked by `pop_empty`, still live.
        let base = unsafe { slabs::base_of(slab) };
        if self.geo.layout == Layout::Bufctl {
            let ctx = self.ctx.expect("kmem-slab: bufctl caches have a context");
            // SAFETY: the slab was unlinked by `pop_empty`; its bufctls are
            // live until released here, one by one after being read.
            for bc in unsafe { slabs::bufctls_of(slab) } {
                let _ = ctx
                    .bufctl_cache
                    .release(bc.as_ptr() as usize, From::User, true);
            }
            let _ = ctx
                .slab_cache
                .release(slab.as_ptr() as usize, From::User, true);
        }
        self.free_buffer(src, base);
    }

    /// Frees every empty slab to `src`; returns the bytes given back.
    fn free_empty_slabs(&self, src: &Arena<'_>) -> usize {
        let mut freed = 0;
        loop {
            // Its own statement: the lock is not held while the slab goes
            // back (a `while let` would hold it for the whole body).
            let slab = self.slab.lock().pop_empty(&self.geo);
            let Some(slab) = slab else { break };
            self.free_slab(src, slab);
            freed += self.geo.slab_size;
        }
        freed
    }

    /// Empties the depot into the slabs, then returns every empty slab to
    /// the source and shrinks the hash if it is oversized. Returns the bytes
    /// given back. CPU magazines stay loaded (only their owners may drain
    /// them: [`flush_current`](Self::flush_current)).
    /// A quantum cache keeps its empty slabs: its arena reaps it
    /// ([`Arena::reap`]). Called from a handler that interrupted an
    /// operation of its context (see [`Section`]), it does nothing.
    pub fn reap(&self) -> usize {
        let _section = match self.mags.as_ref().map(|m| Section::enter(m.cpu())) {
            Some(None) => return 0,
            section => section,
        };
        self.reap_from(self.source)
    }

    /// [`reap`](Self::reap), giving empty slabs back to `src`.
    pub(crate) fn reap_from(&self, src: Option<&Arena<'_>>) -> usize {
        if let (Some(mags), Some(ctx)) = (&self.mags, self.ctx) {
            // SAFETY: every magazine of a cache comes from its context's
            // magazine cache.
            unsafe { mags.drain_depot(&MagSrc(&ctx.magazine_cache), |obj| self.drain_one(obj)) };
        }
        let freed = src.map_or(0, |src| self.free_empty_slabs(src));
        self.rescale_hash(true);
        freed
    }

    /// Moves every round of every slot and of the depot to the slabs and
    /// returns the objects allocated from them: the live objects, whatever
    /// the counters say.
    ///
    /// # Safety
    /// No other call on this cache runs during this one.
    pub(crate) unsafe fn drain_and_count(&self) -> u64 {
        if let (Some(mags), Some(ctx)) = (&self.mags, self.ctx) {
            // SAFETY: as in `reap_from`; no slot is in use (the contract).
            unsafe { mags.drain_all(&MagSrc(&ctx.magazine_cache), |obj| self.drain_one(obj)) };
        }
        self.slab.lock().busy
    }

    /// Resizes the hash to what its load calls for, allocating and freeing
    /// tables outside the cache lock.
    pub(crate) fn rescale_hash(&self, allow_shrink: bool) {
        let Some(bits) = self.slab.lock().hash.resize_target(allow_shrink) else {
            return;
        };
        let bytes = table_bytes(bits);
        let Some(mem) = self.meta_alloc(bytes) else {
            return;
        };
        let mut st = self.slab.lock();
        if st.hash.resize_target(allow_shrink) == Some(bits) {
            // SAFETY: fresh metadata memory of `table_bytes(bits)` bytes.
            let (old, old_bytes) =
                unsafe { st.hash.rehash(NonNull::new_unchecked(mem as *mut u8), bits) };
            drop(st);
            self.meta_free(old, old_bytes);
        } else {
            drop(st);
            self.meta_free(mem, bytes);
        }
    }

    /// Moves every magazine to the slabs, then frees every slab to `src`;
    /// refuses (leaving the cache working) while objects are allocated, or
    /// while slabs exist and there is no source to give them to (a quantum
    /// cache whose arena is gone keeps them, as leaked).
    pub(crate) fn teardown(&mut self, src: Option<&Arena<'_>>) -> Result<(), u64> {
        if let (Some(mags), Some(ctx)) = (self.mags.take(), self.ctx) {
            // SAFETY: as in `reap_from`; `&mut self`: no slot is in use.
            unsafe { mags.drain_all(&MagSrc(&ctx.magazine_cache), |obj| self.drain_one(obj)) };
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
        self.mags = None;
        if let Some((mem, bytes)) = self.percpu.take() {
            self.meta_free(mem, bytes);
        }
        if let Some(own) = self.source {
            own.remove_importer();
        }
        Ok(())
    }
}
