//! The [`Arena`]: locking, tag reservation, import and the public operations.
//!
//! Lock protocol: an operation takes the arena lock once it holds enough
//! unused boundary tags (obtained *before* locking from the tag arena, or,
//! in a base arena, carved from its own free segment under the lock without
//! calling out), runs to completion, and releases the lock. The one
//! exception is a search that has looked at a batch of free segments
//! without a fit (`Segments::search`): it releases the lock with nothing
//! changed, takes it again (tags reserved anew) and resumes from the
//! address it reached. Imports,
//! releases to the source, tag-page allocation and the hash tables'
//! allocation and freeing all happen with the lock dropped, between
//! operations, never in the middle of one. Installing a new hash table
//! takes the lock for `O(1)`: its entries move over a few chains per
//! later insert and remove (`hash.rs`).

use core::sync::atomic::{AtomicUsize, Ordering};

use kmem_btag::{Tags, CHUNK_BYTES};
use spin::MutexGuard;

use crate::Mutex;

use crate::builder::Name;
use crate::policy::{lcm, round_size, round_up, Fit};
use crate::segments::{Cursor, Pick, Search, Segments};
use crate::{
    AddError, AllocError, Constraints, FreeError, Policy, QuantumCaches, Reclaim, Source, SpanFit,
    MAX_RECLAIMERS,
};

/// Tag mark (in `Tag::list`) of allocated segments that hold the arena's
/// own metadata: callers cannot free them.
pub(crate) const META: u8 = u8::MAX;

/// Rounds of "search, import, search" before an allocation gives up.
const IMPORT_ROUNDS: usize = 3;

/// A vmem arena: a lock-protected set of spans carved into segments.
///
/// See the [crate documentation](crate) for an overview.
pub struct Arena<'a> {
    pub(crate) name: Name,
    pub(crate) quantum: usize,
    pub(crate) import_scale: u32,
    /// The source's import quantum, read once at build (never 0).
    pub(crate) import_quantum: usize,
    pub(crate) source: Option<&'a dyn Source>,
    pub(crate) tags_from: Option<&'a Arena<'a>>,
    /// Self-sufficient: carves its own metadata from its free segments.
    pub(crate) base: bool,
    /// Resources are writable memory.
    pub(crate) memory: bool,
    /// Sizes up to this go to `qcaches` (0: no quantum caches).
    pub(crate) qcache_max: usize,
    pub(crate) qcaches: Option<&'a dyn QuantumCaches>,
    /// Arenas and object caches importing from this one.
    pub(crate) importers: AtomicUsize,
    /// How `alloc_wait` sleeps (`wait.rs`), the callers in it, and a count
    /// of the frees that may wake them.
    pub(crate) waiter: Mutex<Option<&'static dyn crate::Waiter>>,
    pub(crate) waiting: AtomicUsize,
    /// The most units imported spans and imports under way may reach
    /// together (`set_limit`); `usize::MAX`: no limit.
    pub(crate) limit: AtomicUsize,
    pub(crate) freed: core::sync::atomic::AtomicU64,
    /// Called when an allocation finds the arena exhausted (`reclaim.rs`).
    pub(crate) reclaimers: Mutex<[(Option<&'static dyn Reclaim>, u64); MAX_RECLAIMERS]>,
    pub(crate) inner: Mutex<Segments>,
}

impl<'a> Arena<'a> {
    fn check_span(&self, base: usize, size: usize) -> Result<(), AddError> {
        if size == 0 {
            return Err(AddError::ZeroSize);
        }
        if !base.is_multiple_of(self.quantum) || !size.is_multiple_of(self.quantum) {
            return Err(AddError::Misaligned);
        }
        if base.checked_add(size).is_none() {
            return Err(AddError::Overflow);
        }
        if self.source.is_some() {
            return Err(AddError::Sourced);
        }
        Ok(())
    }

    /// Adds the span `[base, base + size)`.
    pub fn add(&self, base: usize, size: usize) -> Result<(), AddError> {
        self.check_span(base, size)?;
        if self.base {
            return Err(AddError::MemoryArena);
        }
        let mut g = self.lock_with_tags(2).map_err(|_| AddError::NoTags)?;
        if g.overlaps(base, size) {
            return Err(AddError::Overlap);
        }
        g.add_span(base, size, false);
        Ok(())
    }

    /// Adds the memory `[base, base + size)` to a base arena. When the arena
    /// has no unused boundary tags, its first tag pages are carved from the
    /// start of this memory.
    ///
    /// # Safety
    /// As [`new_base`](Self::new_base), for the added memory.
    pub unsafe fn add_memory(&self, base: usize, size: usize) -> Result<(), AddError> {
        self.check_span(base, size)?;
        let mut g = self.inner.lock();
        if g.overlaps(base, size) {
            return Err(AddError::Overlap);
        }
        if g.tags.unused() >= 3 {
            g.add_span(base, size, false);
            crate::asan::poison(base, size);
            return Ok(());
        }
        let pages = g.tags.pages_for_next_chunk();
        let carve = self.tag_pages_size(pages);
        if pages == 0 || carve >= size {
            return Err(AddError::NoTags);
        }
        // SAFETY: the caller hands `[base, base + size)` to the arena; its
        // first `carve` bytes become tag storage and stay allocated (as
        // metadata) for the arena's life, so nothing else uses them.
        unsafe {
            g.tags
                .donate(base as *mut u8, carve, kmem_btag::Donation::Kept)
        };
        let seg = g.add_span(base, size, false);
        g.carve_at(seg, carve);
        crate::asan::poison(base + carve, size - carve);
        Ok(())
    }

    /// Donates memory for boundary tags (kept until the arena is dropped).
    ///
    /// # Safety
    /// - `[ptr, ptr + len)` is valid for reads and writes, aligned to 8
    ///   bytes, and used by nothing else for as long as the arena exists
    ///   (so it overlaps no memory donated before, nor the arena's own
    ///   spans).
    pub unsafe fn add_tag_memory(&self, ptr: *mut u8, len: usize) -> usize {
        // SAFETY: forwarded caller obligation.
        unsafe {
            self.inner
                .lock()
                .tags
                .donate(ptr, len, kmem_btag::Donation::Kept)
        }
    }

    /// Units a base arena carves for `pages` tag pages (saturating, so an
    /// absurd quantum makes the carve fail rather than overflow).
    fn tag_pages_size(&self, pages: usize) -> usize {
        round_up(pages * CHUNK_BYTES, self.quantum).unwrap_or(usize::MAX)
    }

    /// Locks the arena with at least `n` unused tags in hand.
    #[inline(always)]
    pub(crate) fn lock_with_tags(&self, n: usize) -> Result<MutexGuard<'_, Segments>, AllocError> {
        let g = self.inner.lock();
        if g.tags.unused() >= n {
            return Ok(g);
        }
        drop(g);
        self.refill_tags(n)
    }

    /// [`lock_with_tags`](Self::lock_with_tags) when the arena ran short of
    /// unused tags: gets tag pages (carved from a base arena's own memory,
    /// or from its tag arena) until `n` are in hand.
    #[cold]
    #[inline(never)]
    fn refill_tags(&self, n: usize) -> Result<MutexGuard<'_, Segments>, AllocError> {
        loop {
            let mut g = self.inner.lock();
            if g.tags.unused() >= n {
                return Ok(g);
            }
            // An injected failure is a refill that found no memory.
            #[cfg(feature = "fail-inject")]
            if kmem_fail::should_fail(kmem_fail::Layer::TagReserve) {
                return Err(AllocError::NoTags);
            }
            let pages = g.tags.pages_for_next_chunk();
            if pages == 0 {
                return Err(AllocError::NoTags);
            }
            if self.base {
                let size = self.tag_pages_size(pages);
                let carved = g.carve(size, |tags: &mut Tags, start| {
                    // The tag store writes into it from here on.
                    crate::asan::unpoison(start, size);
                    // SAFETY: a base arena's free segments are memory it owns
                    // (`new_base`/`add_memory` contract); the carved segment is
                    // marked allocated metadata, so nothing else uses it.
                    unsafe { tags.donate(start as *mut u8, size, kmem_btag::Donation::Kept) };
                });
                if !carved {
                    return Err(AllocError::NoTags);
                }
                drop(g);
                continue;
            }
            drop(g);
            let meta = self.tags_from.ok_or(AllocError::NoTags)?;
            let page = meta
                .alloc(CHUNK_BYTES, Policy::InstantFit)
                .map_err(|_| AllocError::NoTags)?;
            let mut g = self.inner.lock();
            if g.tags.pages_for_next_chunk() == 0 {
                drop(g);
                // SAFETY: the tag page imported just above, unused.
                unsafe { meta.release(page, CHUNK_BYTES) };
                return Err(AllocError::NoTags);
            }
            // SAFETY: `page` is a fresh CHUNK_BYTES allocation from a memory
            // arena (checked at build), 8-aligned (its quantum is a multiple of
            // 8), ours until drain_owned gives it back at destroy.
            unsafe {
                g.tags
                    .donate(page as *mut u8, CHUNK_BYTES, kmem_btag::Donation::Owned)
            };
        }
    }

    /// Allocates `size` units (rounded up to the quantum) by `policy`.
    ///
    /// Sizes up to [`qcache_max`](Self::qcache_max) come from the quantum
    /// caches, if the arena has them; free them with [`free`](Self::free).
    /// Next fit bypasses the caches (their objects follow no order), as
    /// illumos' `VM_NEXTFIT` does: free its results with
    /// [`xfree`](Self::xfree), which bypasses them too (`free` would send a
    /// cached size to the caches, which refuse it as not theirs).
    #[inline]
    pub fn alloc(&self, size: usize, policy: Policy) -> Result<usize, AllocError> {
        match self.alloc_once(size, policy) {
            Err(e) if self.ran_out(e) && self.reclaim(size) => self.alloc_once(size, policy),
            r => r,
        }
    }

    #[inline]
    fn alloc_once(&self, size: usize, policy: Policy) -> Result<usize, AllocError> {
        if size <= self.qcache_max && size != 0 {
            if let Some(q) = self.qcaches.filter(|_| policy != Policy::NextFit) {
                return q.alloc(self, round_size(size, self.quantum)?);
            }
        }
        self.alloc_segment(size, policy)
    }

    /// [`alloc`](Self::alloc) on the segment path, bypassing the quantum
    /// caches (which use it to grow).
    pub(crate) fn alloc_segment(&self, size: usize, policy: Policy) -> Result<usize, AllocError> {
        let size = round_size(size, self.quantum)?;
        if policy == Policy::NextFit {
            return self.xalloc_fit(&Fit::plain(size, self.quantum), policy);
        }
        // The common case, one try under the lock; the retries, imports and
        // the refusal are out of line.
        let mut g = self.lock_with_tags(1)?;
        let got = match policy {
            Policy::InstantFit => g.alloc_instant(size),
            _ => g.alloc_best(size),
        };
        match got {
            Pick::Got(addr) => {
                let addr = self.finish(g, addr);
                #[cfg(kmem_asan)]
                if self.memory {
                    crate::asan::unpoison(addr, size);
                }
                Ok(addr)
            }
            _ => {
                drop(g);
                self.alloc_retry(size, policy)
            }
        }
    }

    /// [`alloc_segment`](Self::alloc_segment) after its first try failed:
    /// tries again, then imports from the source, if any.
    #[cold]
    #[inline(never)]
    fn alloc_retry(&self, size: usize, policy: Policy) -> Result<usize, AllocError> {
        let mut policy = policy;
        let mut round = 0;
        let mut imported = None;
        loop {
            let mut g = self.lock_for_retry(1, imported)?;
            let got = match policy {
                Policy::InstantFit => g.alloc_instant(size),
                _ => g.alloc_best(size),
            };
            let got = match got {
                Pick::Got(addr) => Some((g, addr)),
                Pick::None => {
                    drop(g);
                    None
                }
                Pick::Unsure => {
                    // The request's own list is longer than one look: the
                    // search goes through it (and the rest), a batch per
                    // hold of the lock.
                    drop(g);
                    let fit = Fit::plain(size, self.quantum);
                    match self.search(&fit, Policy::InstantFit, false, imported)? {
                        (g, Some(addr)) => Some((g, addr)),
                        _ => None,
                    }
                }
            };
            if let Some((g, addr)) = got {
                let addr = self.finish(g, addr);
                #[cfg(kmem_asan)]
                if self.memory {
                    crate::asan::unpoison(addr, size);
                }
                return Ok(addr);
            }
            let mut g = self.lock_for_retry(1, imported)?;
            if self.source.is_none() || round == IMPORT_ROUNDS {
                g.counters.fails += 1;
                return Err(AllocError::Exhausted);
            }
            drop(g);
            // The request is taken from the new span under the import's
            // lock (another thread could take the span between two rounds).
            match self.import(size, Some(&Fit::plain(size, self.quantum)))? {
                Imported::Took(addr) => return Ok(addr),
                Imported::Span(base) => imported = Some(base),
            }
            // The new span may sit on a list instant fit skips.
            policy = Policy::BestFit;
            round += 1;
        }
    }

    /// Allocates `size` units under `constraints`. Bypasses quantum caches;
    /// free the result with [`xfree`](Self::xfree).
    pub fn xalloc(&self, size: usize, constraints: &Constraints) -> Result<usize, AllocError> {
        let fit = Fit::new(size, constraints, self.quantum)?;
        match self.xalloc_fit(&fit, constraints.policy) {
            Err(e) if self.ran_out(e) && self.reclaim(fit.size) => {
                self.xalloc_fit(&fit, constraints.policy)
            }
            r => r,
        }
    }

    /// Limits the units a sourced arena may hold in imported spans
    /// (FreeBSD's `vmem_set_limit`); `None` lifts the limit. An import that
    /// would pass it is not asked for: the request fails with
    /// [`AllocError::LimitReached`] (a scaled import falls back to the
    /// size the request needs first; reclaim runs before the refusal, as
    /// for `Exhausted`). Spans already held stay; a limit below them only
    /// stops new imports, and an import already under way when the limit
    /// is set is not counted against it.
    pub fn set_limit(&self, units: Option<usize>) {
        self.limit
            .store(units.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// Reserves `units` of an import under the limit; the reservation ends
    /// when the span is added (`adopt`) or the import fails (dropped).
    fn reserve_import(&self, units: usize) -> Result<Reserved<'_, 'a>, AllocError> {
        if self.limit.load(Ordering::Relaxed) == usize::MAX {
            // No limit: nothing to count (and no sum to overflow, no lock).
            return Ok(Reserved {
                arena: self,
                units: 0,
            });
        }
        let mut g = self.inner.lock();
        let limit = self.limit.load(Ordering::Relaxed);
        let held = g.imported.saturating_add(g.importing);
        if held.checked_add(units).is_none_or(|t| t > limit) {
            return Err(AllocError::LimitReached);
        }
        g.importing += units;
        Ok(Reserved { arena: self, units })
    }

    /// Allocates exactly `[addr, addr + size)` (`size` rounded up to the
    /// quantum), as NetBSD's `vmem_xalloc_addr`: importing it from the
    /// source if the arena has one and does not hold the range. Bypasses
    /// quantum caches; free it with [`xfree`](Self::xfree).
    ///
    /// Refused with [`AllocError::Misaligned`] when `addr` is not a
    /// multiple of the quantum, [`AllocError::Busy`] when part of the range
    /// is allocated, and [`AllocError::Exhausted`] when the range is not
    /// the arena's to give (outside its spans, or across two spans, and not
    /// to be had from its source).
    pub fn xalloc_at(&self, addr: usize, size: usize) -> Result<usize, AllocError> {
        let size = round_size(size, self.quantum)?;
        if !addr.is_multiple_of(self.quantum) {
            return Err(AllocError::Misaligned);
        }
        let end = addr.checked_add(size).ok_or(AllocError::Overflow)?;
        let c = Constraints::new().min_addr(addr).max_addr(end);
        match self.xalloc(size, &c) {
            Err(AllocError::Exhausted) if self.inner.lock().busy(addr, end) => {
                Err(AllocError::Busy)
            }
            r => r,
        }
    }

    pub(crate) fn xalloc_fit(&self, fit: &Fit, policy: Policy) -> Result<usize, AllocError> {
        let mut imported = None;
        let mut round = 0;
        loop {
            let best = policy == Policy::BestFit || imported.is_some();
            let (mut g, got) = self.search(fit, policy, best, imported)?;
            if let Some(addr) = got {
                let addr = self.finish(g, addr);
                #[cfg(kmem_asan)]
                if self.memory {
                    crate::asan::unpoison(addr, fit.size);
                }
                return Ok(addr);
            }
            // A span imported for this request that did not help goes back.
            let stranded = imported.and_then(|base| g.take_free_span(base).map(|s| (base, s)));
            if self.source.is_none() || round == IMPORT_ROUNDS {
                g.counters.fails += 1;
                drop(g);
                self.release_span(stranded);
                return Err(AllocError::Exhausted);
            }
            drop(g);
            self.release_span(stranded);
            match self.import_for(fit)? {
                Imported::Took(addr) => {
                    if policy == Policy::NextFit {
                        self.inner.lock().last_nextfit = Some(addr);
                    }
                    return Ok(addr);
                }
                Imported::Span(base) => imported = Some(base),
            }
            round += 1;
        }
    }

    /// Runs [`Segments::search`] to its end, a batch of segments per hold
    /// of the lock: between batches the lock is dropped (and the tags it
    /// needs reserved again), so a search through many free segments never
    /// keeps other users of the arena waiting for more than one batch.
    /// Returns the lock, still held, with the address found, if any.
    fn search(
        &self,
        fit: &Fit,
        policy: Policy,
        best: bool,
        imported: Option<usize>,
    ) -> Result<(MutexGuard<'_, Segments>, Option<usize>), AllocError> {
        // A plain fit takes the front of a segment: one tag at most (for
        // the rest), as `alloc` needs; a constrained one, or next fit (which
        // starts past the previous result), may split twice.
        let tags = if fit.is_plain(self.quantum) && policy != Policy::NextFit {
            1
        } else {
            2
        };
        let mut cur = Cursor::default();
        loop {
            let mut g = self.lock_for_retry(tags, imported)?;
            match g.search(fit, policy, best, self.quantum, &mut cur) {
                Search::Found(addr) => return Ok((g, Some(addr))),
                Search::NotFound => return Ok((g, None)),
                Search::Paused => {
                    g.counters.search_pauses += 1;
                    drop(g);
                    core::hint::spin_loop();
                }
            }
        }
    }

    /// [`lock_with_tags`](Self::lock_with_tags) for a round of an
    /// allocation that may have imported the span at `imported`: a refusal
    /// changes nothing, so that span (still wholly free) goes back.
    #[inline(always)]
    fn lock_for_retry(
        &self,
        n: usize,
        imported: Option<usize>,
    ) -> Result<MutexGuard<'_, Segments>, AllocError> {
        self.lock_with_tags(n).inspect_err(|_| {
            let stranded = imported.and_then(|base| {
                let mut g = self.inner.lock();
                g.take_free_span(base).map(|size| (base, size))
            });
            self.release_span(stranded);
        })
    }

    /// Ends a successful allocation: unlocks, frees a hash table a finished
    /// rehash retired, and installs a larger one if the load calls for it.
    fn finish(&self, mut g: MutexGuard<'_, Segments>, addr: usize) -> usize {
        let retired = g.hash.take_retired();
        let grow = g.hash.needs_grow() && !g.rescaling;
        drop(g);
        self.free_retired(retired);
        if grow {
            self.rescale(false);
        }
        addr
    }

    fn release_span(&self, span: Option<(usize, usize)>) {
        if let (Some((base, size)), Some(src)) = (span, self.source) {
            // SAFETY: callers pass a whole imported span they took out of
            // the arena (wholly free, so no one holds any of it).
            unsafe { src.release(base, size) };
        }
    }

    /// Imports a span able to hold `size` units: `size << import_scale` when
    /// the source can supply that, else `size`; with `take`, the request
    /// is allocated from it at once (see [`adopt`](Self::adopt)).
    fn import(&self, size: usize, take: Option<&Fit>) -> Result<Imported, AllocError> {
        let src = self.source.ok_or(AllocError::Exhausted)?;
        let q = lcm(self.quantum, self.import_quantum).ok_or(AllocError::Overflow)?;
        let scaled = size
            .checked_shl(self.import_scale)
            .filter(|s| s >> self.import_scale == size)
            .unwrap_or(size)
            .max(size);
        let least = round_size(size, q)?;
        let scaled = round_size(scaled, q).unwrap_or(least);
        // A source whose quantum this arena's does not divide can hand out
        // bases this arena cannot use: ask it for multiples of the quantum.
        let aligned = self.import_quantum.is_multiple_of(self.quantum);
        let get = |want| {
            let reserved = self.reserve_import(want)?;
            // An injected failure is the source's refusal.
            #[cfg(feature = "fail-inject")]
            if kmem_fail::should_fail(kmem_fail::Layer::ArenaImport) {
                return Err(AllocError::Exhausted);
            }
            let got = if aligned {
                src.import(want)
            } else if self.quantum.is_power_of_two() {
                src.import_aligned(want, self.quantum)
            } else {
                let fit = SpanFit {
                    align: self.quantum,
                    ..SpanFit::anywhere(want)
                };
                match src.import_fit(&fit) {
                    // A source that cannot place spans may still hand out
                    // usable bases; they are checked below.
                    Err(_) if !src.places_spans() => src.import(want),
                    got => got,
                }
            };
            got.map(|base| (base, reserved))
        };
        // Import scaling is a preference: when the source cannot supply the
        // scaled span, ask for what this request needs.
        let ((base, reserved), want) = match get(scaled) {
            Ok(got) => (got, scaled),
            Err(_) if scaled > least => (get(least).map_err(|e| self.failed(e))?, least),
            Err(e) => return Err(self.failed(e)),
        };
        self.adopt(src, base, want, take, reserved)
    }

    /// Imports a span for the constrained request `fit`: a plain one as
    /// [`import`](Self::import) does (exactly its size, scaled if the source
    /// can); otherwise first a span that is itself a placement of `fit`
    /// (the constraints passed down, see [`Source::import_fit`]), then, if
    /// the source cannot place one, a span large enough to hold a placement
    /// wherever it lies (inside the window, if the request has one and the
    /// source can keep to it).
    fn import_for(&self, fit: &Fit) -> Result<Imported, AllocError> {
        if fit.is_plain(self.quantum) {
            return self.import(fit.size, Some(fit));
        }
        let src = self.source.ok_or(AllocError::Exhausted)?;
        let q = lcm(self.quantum, self.import_quantum).ok_or(AllocError::Overflow)?;
        let placed = round_size(fit.size, q)
            .ok()
            .and_then(|size| fit.as_span(size));
        if let Some(want) = placed {
            // Scaled, as a plain import is, when the request is only
            // aligned (a slab aligned to its size, say) and no limit is set:
            // the larger span at the alignment still holds the request at
            // its base, and what follows serves the next ones without
            // another import.
            if self.import_scale > 0
                && self.limit.load(Ordering::Relaxed) == usize::MAX
                && fit.phase == 0
                && fit.nocross == 0
                && !fit.has_window()
                && !fit.top
            {
                let scaled = want
                    .size
                    .checked_shl(self.import_scale)
                    .filter(|s| s >> self.import_scale == want.size)
                    .and_then(|s| round_size(s, q).ok());
                if let Some(size) = scaled.filter(|&s| s > want.size) {
                    let big = SpanFit { size, ..want };
                    // A refusal of the larger span is not final: the exact
                    // one is asked for next.
                    if let Ok(Some(got)) = self.import_placed(src, &big, Some(fit), false) {
                        return Ok(got);
                    }
                }
            }
            // The source's search covers every placement of the request
            // when every placement lies on the source's grid and the span
            // rounded up to it is refused nowhere the request fits (no
            // window end or `nocross` boundary off the grid): then its
            // refusal is final.
            let iq = self.import_quantum;
            let on_grid = fit.align.is_multiple_of(iq) && fit.phase.is_multiple_of(iq);
            let exact = want.size == fit.size
                || (fit.nocross == 0 && (fit.max == usize::MAX || fit.max.is_multiple_of(iq)));
            let covers = on_grid && exact;
            if let Some(got) = self.import_placed(src, &want, Some(fit), covers)? {
                return Ok(got);
            }
        }
        let slack = fit.import_size().ok_or(AllocError::Overflow)?;
        if fit.has_window() {
            let want = SpanFit {
                align: self.quantum,
                min: fit.min,
                max: fit.max,
                top: fit.top,
                ..SpanFit::anywhere(round_size(slack, q)?)
            };
            if let Some(got) = self.import_placed(src, &want, None, false)? {
                return Ok(got);
            }
        }
        self.import(slack, None)
    }

    /// A constrained import of `want` from `src`, and with `take` the
    /// request allocated from the new span at once (see
    /// [`adopt`](Self::adopt)); `Ok(None)` when the source cannot take the
    /// constraints or found no span, unless `final_refusal` says its
    /// search covered every placement of the request (the caller imports
    /// otherwise).
    fn import_placed(
        &self,
        src: &dyn Source,
        want: &SpanFit,
        take: Option<&Fit>,
        final_refusal: bool,
    ) -> Result<Option<Imported>, AllocError> {
        let reserved = match self.reserve_import(want.size) {
            Ok(r) => r,
            Err(e) => return Err(self.failed(e)),
        };
        // An injected failure is the source's refusal.
        #[cfg(feature = "fail-inject")]
        if kmem_fail::should_fail(kmem_fail::Layer::ArenaImport) {
            return Err(self.failed(AllocError::Exhausted));
        }
        match src.import_fit(want) {
            Ok(base) if want.holds(base) => {
                self.adopt(src, base, want.size, take, reserved).map(Some)
            }
            Ok(base) => {
                // Placed elsewhere (a source whose `import_aligned` ignores
                // the alignment, say): back, and the caller's fallback.
                // SAFETY: the span just imported, not used.
                unsafe { src.release(base, want.size) };
                Ok(None)
            }
            // The source searched all it has (an arena: and its own
            // source) for every placement: a larger span would not help.
            Err(e @ (AllocError::Exhausted | AllocError::NoTags))
                if final_refusal && src.places_spans() =>
            {
                Err(self.failed(e))
            }
            // It cannot take these constraints (a phase its quantum does not
            // divide, say), or its search missed placements off its grid.
            Err(_) => Ok(None),
        }
    }

    /// Counts a failed import; returns its error.
    fn failed(&self, e: AllocError) -> AllocError {
        self.inner.lock().counters.fails += 1;
        e
    }

    /// Adds the span `[base, base + want)` just imported from `src`, after
    /// checking it (aligned to the quantum, inside the address space,
    /// overlapping no span); a span that fails a check goes back
    /// ([`AllocError::BadImport`]). With `take` (a span placed for that
    /// request, at its base), the request is allocated from it under the
    /// same lock: no second round, and no tags beyond the span's own and,
    /// when the span is longer than the request, the split's.
    fn adopt(
        &self,
        src: &dyn Source,
        base: usize,
        want: usize,
        take: Option<&Fit>,
        reserved: Reserved<'_, 'a>,
    ) -> Result<Imported, AllocError> {
        if !base.is_multiple_of(self.quantum) || base.checked_add(want).is_none() {
            // SAFETY: the span just imported, not used.
            unsafe { src.release(base, want) };
            return Err(self.failed(AllocError::BadImport));
        }
        let tags = match take {
            Some(f) if f.size < want => 3,
            _ => 2,
        };
        let mut g = match self.lock_with_tags(tags) {
            Ok(g) => g,
            Err(e) => {
                // SAFETY: as above.
                unsafe { src.release(base, want) };
                return Err(self.failed(e));
            }
        };
        if g.overlaps(base, want) {
            g.counters.fails += 1;
            drop(g);
            // SAFETY: as above.
            unsafe { src.release(base, want) };
            return Err(AllocError::BadImport);
        }
        // The reservation becomes the span, under the same lock.
        g.importing -= reserved.units;
        core::mem::forget(reserved);
        g.add_span(base, want, true);
        #[cfg(kmem_asan)]
        if self.memory {
            crate::asan::poison(base, want);
        }
        g.counters.imports += 1;
        if let Some(f) = take {
            // The span meets the request at its base (checked by the
            // caller), and lies inside the address space (checked above).
            let here = Fit {
                min: base,
                max: base + want,
                ..*f
            };
            // The new span is one free segment: the search looks at it
            // and ends, well within one batch.
            let mut cur = Cursor::default();
            let got = if f.top {
                g.search_top(&here, &mut cur)
            } else {
                g.search_up(&here, &mut cur)
            };
            if let Search::Found(addr) = got {
                let addr = self.finish(g, addr);
                #[cfg(kmem_asan)]
                if self.memory {
                    crate::asan::unpoison(addr, f.size);
                }
                return Ok(Imported::Took(addr));
            }
        }
        Ok(Imported::Span(base))
    }

    /// Frees what [`alloc`](Self::alloc) returned, with the same size, in
    /// an arena of integers (IDs, offsets). A memory arena refuses with
    /// [`FreeError::MemoryArena`]: its values are memory that someone may
    /// still use, so only its owner may give it back, with the `unsafe`
    /// [`free_memory`](Self::free_memory).
    ///
    /// A size the quantum caches serve goes back to them: a bad free of
    /// such a size (double, or of an address they did not hand out) is
    /// refused with [`FreeError::Cached`] when it reaches their slab layer,
    /// which is at once for a cache whose magazines are off or full, and
    /// otherwise when the magazine holding it drains (see `kmem-slab`).
    #[inline]
    pub fn free(&self, addr: usize, size: usize) -> Result<(), FreeError> {
        if self.memory {
            return Err(FreeError::MemoryArena { addr });
        }
        // SAFETY: an arena of integers: no one's memory is given away.
        unsafe { self.free_memory(addr, size) }
    }

    /// Frees a segment from [`xalloc`](Self::xalloc) (never through the
    /// quantum caches) in an arena of integers; a memory arena refuses as
    /// [`free`](Self::free) does.
    pub fn xfree(&self, addr: usize, size: usize) -> Result<(), FreeError> {
        if self.memory {
            return Err(FreeError::MemoryArena { addr });
        }
        self.free_segment(addr, size, false)
    }

    /// [`free`](Self::free) for any arena, memory arenas included. Checked
    /// as `free` is: an address that is not allocated, or a wrong size, is
    /// refused and changes nothing.
    ///
    /// # Safety
    /// In a memory arena, `[addr, addr + size)` was allocated by
    /// [`alloc`](Self::alloc) with this size, is owned by the caller, and
    /// is not used after this call (a free that is refused leaves it the
    /// caller's). In an arena of integers this call is always safe.
    #[inline]
    pub unsafe fn free_memory(&self, addr: usize, size: usize) -> Result<(), FreeError> {
        if size <= self.qcache_max && size != 0 {
            if let Some(q) = self.qcaches {
                let size = round_up(size, self.quantum).ok_or(FreeError::NotAllocated { addr })?;
                // SAFETY: the caller's guarantee, forwarded.
                return unsafe { q.free(self, addr, size) };
            }
        }
        self.free_segment(addr, size, false)
    }

    /// [`xfree`](Self::xfree) for any arena, memory arenas included.
    ///
    /// # Safety
    /// As for [`free_memory`](Self::free_memory), for a segment from
    /// [`xalloc`](Self::xalloc).
    pub unsafe fn xfree_memory(&self, addr: usize, size: usize) -> Result<(), FreeError> {
        self.free_segment(addr, size, false)
    }

    pub(crate) fn free_segment(
        &self,
        addr: usize,
        size: usize,
        meta: bool,
    ) -> Result<(), FreeError> {
        if size == 0 {
            return Err(FreeError::ZeroSize);
        }
        // A size that overflows when rounded matches no segment.
        let size = round_up(size, self.quantum).unwrap_or(usize::MAX);
        let mut g = self.inner.lock();
        let s = &mut *g;
        let found = s
            .hash
            .find_tag(&s.tags, addr)
            .ok_or(FreeError::NotAllocated { addr })?;
        let t = &found.tag;
        if (t.list == META) != meta {
            return Err(FreeError::NotAllocated { addr });
        }
        if t.size != size {
            return Err(FreeError::WrongSize {
                addr,
                size,
                expected: t.size,
            });
        }
        // Poisoned before it is free: once it is, another thread may take
        // it (and unpoison it) as soon as the lock drops.
        #[cfg(kmem_asan)]
        if self.memory {
            crate::asan::poison(addr, size);
        }
        let released = s.free(&found, self.source.is_some());
        if meta {
            // Metadata frees are not user frees (nor were their allocations
            // counted): undo the count `free` just made.
            s.meta_units -= size;
            s.meta_segs -= 1;
            s.counters.frees -= 1;
        }
        let retired = s.hash.take_retired();
        drop(g);
        self.release_span(released);
        self.free_retired(retired);
        self.wake_waiters();
        Ok(())
    }
}

impl Arena<'_> {
    /// Takes the arena's locks (its segments', then its reclaim list's and
    /// its waiter's, which are taken only briefly and never before the
    /// first) and keeps them, for a `fork()`: a `pthread_atfork` prepare
    /// handler calls it for every arena of a stack, importers before their
    /// sources (the lock order), so that no other thread holds one while
    /// the process is copied.
    pub fn fork_lock(&self) {
        core::mem::forget(self.inner.lock());
        core::mem::forget(self.reclaimers.lock());
        core::mem::forget(self.waiter.lock());
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took, in the parent and
    /// in the child.
    ///
    /// # Safety
    /// [`fork_lock`](Self::fork_lock) was called (here, or in the parent
    /// before the `fork()` that made this process) and not undone since.
    pub unsafe fn fork_unlock(&self) {
        // SAFETY: all three held since `fork_lock`, whose guards were
        // forgotten.
        unsafe {
            self.waiter.force_unlock();
            self.reclaimers.force_unlock();
            self.inner.force_unlock();
        }
    }
}

impl Drop for Arena<'_> {
    /// Destroys the arena; with live allocations its spans and tag pages are
    /// leaked rather than handed back under a live user.
    fn drop(&mut self) {
        let _ = self.destroy();
    }
}

/// Units of an import under way, reserved under the arena's limit
/// (`Arena::set_limit`); dropped, the reservation ends.
struct Reserved<'x, 'a> {
    arena: &'x Arena<'a>,
    units: usize,
}

impl Drop for Reserved<'_, '_> {
    fn drop(&mut self) {
        if self.units > 0 {
            self.arena.inner.lock().importing -= self.units;
        }
    }
}

/// What an import for a request brought: a span to search, or the
/// request already allocated from a span placed for it.
enum Imported {
    Span(usize),
    Took(usize),
}
