//! The arena's state and the operations on it, all run under the arena lock
//! and none of which allocates: callers reserve boundary tags first.
//!
//! Every span and segment is on the tag set's address list (O(1)
//! neighbours, splits and merges). Spans are also in the span tree, for
//! overlap and containment searches. Free segments sit on 64 power-of-two
//! lists (list `i` holds sizes in `[2^i, 2^(i+1))`) with a bitmap of the
//! non-empty lists, and in the segment tree, for address-ordered searches
//! (`xalloc` windows, next fit). An allocated segment stays in the segment
//! tree if it was there when allocated whole, and is never put there
//! otherwise, so neither filling a hole nor splitting and merging back
//! rebalances a tree. Allocated segments sit in the [`AllocHash`].

use kmem_btag::{ListHead, Tag, TagId, TagKind, Tags, Tree};

use crate::hash::{AllocHash, Found};
use crate::policy::{Fit, Policy};

/// Spans [`Segments::busy`] follows a range over.
const BUSY_SPANS: usize = 4;

/// Regions of donated hash-table memory an arena keeps.
pub(crate) const HASH_REGIONS: usize = 4;

/// Free segments a search examines under one hold of the lock (each found
/// in O(log n) through the segment tree, or taken from a free list).
pub(crate) const SEARCH_BATCH: usize = 64;

/// What the bounded first try of `alloc` found.
pub(crate) enum Pick {
    /// Allocated at this address.
    Got(usize),
    /// No free segment fits.
    None,
    /// None of the segments examined fits, and the request's own list
    /// holds more: a [`Segments::search`] decides.
    Unsure,
}

/// What one stretch of [`Segments::search`] did.
#[derive(Debug)]
pub(crate) enum Search {
    Found(usize),
    NotFound,
    /// [`SEARCH_BATCH`] segments examined: drop the lock, call again.
    Paused,
}

/// A step of a purge ([`Segments::purge_step`]).
pub(crate) enum Purge {
    /// Free from the first address to the second (exclusive).
    Range(usize, usize),
    /// A batch looked at: go on from this address.
    From(usize),
    /// No free segment of the size at or above the address.
    Done,
}

/// Where a search resumes after [`Search::Paused`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cursor {
    started: bool,
    /// The next start address to look at (up), or the bound below which to
    /// look (down).
    at: usize,
    /// Next fit: 0 after the previous result, 1 from the window's start.
    pass: u8,
    /// A list scan: the list it is on (0: not started), and the last
    /// segment it looked at there, if any.
    list: u8,
    last: Option<TagId>,
    /// Times a list scan found its last segment moved and began its list
    /// again.
    restarts: u8,
}

/// Restarts of a list scan (its last segment moved while the lock was let
/// go) before the search goes over to the address-ordered walk, which
/// always progresses.
const LIST_RESTARTS: u8 = 4;

/// The segment tree's key of the free segments that may hold `size` units:
/// those of its size class and above (see `Tag::key`).
#[inline]
fn class_key(size: usize) -> u8 {
    list_of(size) as u8 + 1
}

/// Free-list index of a size: floor(log2(size)).
#[inline]
pub(crate) fn list_of(size: usize) -> usize {
    debug_assert!(size > 0);
    (usize::BITS - 1 - size.leading_zeros()) as usize
}

/// Smallest list whose every member holds `size`: ceil(log2(size)).
#[inline]
fn list_up(size: usize) -> usize {
    debug_assert!(size > 0);
    (usize::BITS - (size - 1).leading_zeros()) as usize
}

/// Counters for statistics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) allocs: u64,
    pub(crate) frees: u64,
    pub(crate) fails: u64,
    pub(crate) imports: u64,
    pub(crate) releases: u64,
    /// Metadata frees the tag arena refused (corruption; 0 normally).
    pub(crate) meta_errors: u64,
    /// Searches let go of the lock after a batch and took it again.
    pub(crate) search_pauses: u64,
}

pub(crate) struct Segments {
    pub(crate) tags: Tags,
    pub(crate) free: [ListHead; usize::BITS as usize],
    pub(crate) freemap: u64,
    pub(crate) hash: AllocHash,
    /// Units in all spans.
    pub(crate) total: usize,
    /// Units in allocated segments (including the arena's own metadata).
    pub(crate) allocated: usize,
    /// Units in spans imported from the source.
    pub(crate) imported: usize,
    /// Units of imports under way under a limit (asked of the source, not
    /// added yet).
    pub(crate) importing: usize,
    pub(crate) spans: usize,
    /// Units and segments allocated for the arena's own metadata (a base
    /// arena's tag pages and hash tables).
    pub(crate) meta_units: usize,
    pub(crate) meta_segs: usize,
    pub(crate) last_nextfit: Option<usize>,
    /// A hash resize is under way (set under the lock, done outside it).
    pub(crate) rescaling: bool,
    /// Memory donated for hash tables ([`Arena::add_hash_memory`]): start,
    /// length, and whether a table holds it now (len 0: no region).
    ///
    /// [`Arena::add_hash_memory`]: crate::Arena::add_hash_memory
    pub(crate) hash_memory: [(usize, usize, bool); HASH_REGIONS],
    pub(crate) counters: Counters,
}

impl Segments {
    pub(crate) const fn new() -> Self {
        Self {
            tags: Tags::new(),
            free: [ListHead::new(); usize::BITS as usize],
            freemap: 0,
            hash: AllocHash::new(),
            total: 0,
            allocated: 0,
            imported: 0,
            importing: 0,
            spans: 0,
            meta_units: 0,
            meta_segs: 0,
            last_nextfit: None,
            rescaling: false,
            hash_memory: [(0, 0, false); HASH_REGIONS],
            counters: Counters {
                allocs: 0,
                frees: 0,
                fails: 0,
                imports: 0,
                releases: 0,
                meta_errors: 0,
                search_pauses: 0,
            },
        }
    }

    fn track_free(&mut self, id: TagId) {
        let size = self.tags.get(id).size;
        self.track_free_sized(id, size);
    }

    /// [`track_free`](Self::track_free) of a tag known to be `size` units.
    #[inline]
    fn track_free_sized(&mut self, id: TagId, size: usize) {
        let i = list_of(size);
        self.tags
            .set_kind_onto(id, TagKind::Free, i as u8, &mut self.free[i]);
        self.freemap |= 1 << i;
    }

    fn untrack_free(&mut self, id: TagId) {
        let i = self.tags.get(id).list as usize;
        self.tags.list_remove(&mut self.free[i], id);
        if self.free[i].is_empty() {
            self.freemap &= !(1 << i);
        }
    }

    /// Marks the free, unlisted segment `id` (in the segment tree, as every
    /// free segment is) allocated with its first `size` units; the rest (if
    /// any) becomes a new free segment. Needs one tag.
    fn account_alloc(&mut self, id: TagId, size: usize) -> usize {
        let (start, have) = {
            let t = self.tags.get(id);
            (t.start, t.size)
        };
        debug_assert!(have >= size);
        if have > size {
            let rest = self
                .tags
                .take(start + size, have - size, TagKind::Free)
                .expect("kmem-arena: boundary tag not reserved");
            self.tags.get_mut(id).size = size;
            self.tags.addr_insert_after(id, rest);
            self.tags.insert_after(id, rest);
            self.track_free(rest);
        }
        self.tags.set_kind(id, TagKind::Allocated);
        self.tags.get_mut(id).list = 0;
        self.hash.insert(&mut self.tags, id);
        self.allocated += size;
        self.counters.allocs += 1;
        start
    }

    /// Splits the unlisted free segment `id` at `at`, putting the front part
    /// back on a free list. Needs one tag.
    fn split_front(&mut self, id: TagId, at: usize) {
        let start = self.tags.get(id).start;
        if at == start {
            return;
        }
        let front = self
            .tags
            .take(start, at - start, TagKind::Free)
            .expect("kmem-arena: boundary tag not reserved");
        {
            // Moving the start up keeps the tree order: no tag lies between
            // the old and the new start, and `front` is inserted there next.
            let t = self.tags.get_mut(id);
            t.start = at;
            t.size -= at - start;
        }
        self.tags.addr_insert_before(id, front);
        self.tags.insert_before(id, front);
        self.track_free(front);
    }

    /// Adds the span `[base, base + size)` as one free segment. Needs two tags.
    /// The caller has checked alignment and overlap.
    pub(crate) fn add_span(&mut self, base: usize, size: usize, imported: bool) -> TagId {
        let span = self.tags.take(base, size, TagKind::Span);
        let seg = self.tags.take(base, size, TagKind::Free);
        let (span, seg) = span
            .zip(seg)
            .expect("kmem-arena: boundary tags not reserved");
        // On the address list, the new span goes right before the next span.
        match self.tags.lower_bound(Tree::Spans, base) {
            Some(next) => self.tags.addr_insert_before(next, span),
            None => self.tags.addr_push_back(span),
        }
        self.tags.addr_insert_after(span, seg);
        self.tags.insert(Tree::Spans, span);
        self.tags.insert(Tree::Segments, seg);
        self.track_free(seg);
        self.total += size;
        self.spans += 1;
        if imported {
            self.imported += size;
        }
        seg
    }

    /// True when `[base, base + size)` overlaps a span of the arena.
    pub(crate) fn overlaps(&self, base: usize, size: usize) -> bool {
        let end = base + size;
        let below = self
            .tags
            .floor(Tree::Spans, base)
            .is_some_and(|id| self.tags.get(id).end() > base);
        let above = self
            .tags
            .lower_bound(Tree::Spans, base)
            .is_some_and(|id| self.tags.get(id).start < end);
        below || above
    }

    /// The first segment of the lowest non-empty list at or above `i`.
    #[inline]
    fn peek_from(&self, i: usize) -> Option<TagId> {
        let lists = self.freemap & u64::MAX.checked_shl(i as u32).unwrap_or(0);
        if lists == 0 {
            return None;
        }
        self.free[lists.trailing_zeros() as usize].first()
    }

    /// The first segment of list `i` holding at least `size` units, among
    /// the list's first [`SEARCH_BATCH`] members; `Err(())` when none of
    /// those fits and the list holds more.
    #[cold]
    #[inline(never)]
    fn first_fit_in(&self, i: usize, size: usize) -> Result<Option<TagId>, ()> {
        for (n, id) in self.tags.list_iter(self.free[i]).enumerate() {
            if n == SEARCH_BATCH {
                return Err(());
            }
            if self.tags.get(id).size >= size {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The smallest member of list `i` holding at least `size` units among
    /// its first [`SEARCH_BATCH`] members; `Err(())` when none of those
    /// fits and the list holds more.
    fn best_fit_in(&self, i: usize, size: usize) -> Result<Option<TagId>, ()> {
        let mut best: Option<(TagId, usize)> = None;
        for (n, id) in self.tags.list_iter(self.free[i]).enumerate() {
            if n == SEARCH_BATCH {
                return if best.is_some() {
                    Ok(best.map(|b| b.0))
                } else {
                    Err(())
                };
            }
            let have = self.tags.get(id).size;
            if have >= size && best.is_none_or(|(_, b)| have < b) {
                best = Some((id, have));
            }
        }
        Ok(best.map(|b| b.0))
    }

    /// Allocates the first `size` units of the listed free segment `id`.
    /// An exact fit leaves its list (and stays in the segment tree); otherwise
    /// the allocated front gets a new tag, on the address list only, and the
    /// free remainder keeps its tag, its place in the segment tree, and its
    /// list unless its size class changed. Needs one tag.
    #[inline(always)]
    fn alloc_from(&mut self, id: TagId, size: usize) -> usize {
        let t = self.tags.get(id);
        debug_assert!(t.kind() == TagKind::Free && t.size >= size);
        if t.size == size {
            // An exact fit: off its free list by the links just read, then
            // allocated and on its hash chain with one more lookup.
            let t = *t;
            let i = t.list as usize;
            self.tags.list_remove_as(&mut self.free[i], id, &t);
            if self.free[i].is_empty() {
                self.freemap &= !(1 << i);
            }
            let chain = self.hash.chain_for_insert(&mut self.tags, t.start);
            self.tags.set_kind_onto(id, TagKind::Allocated, 0, chain);
            self.allocated += size;
            self.counters.allocs += 1;
            return t.start;
        }
        let (start, list, rest) = (t.start, t.list, t.size - size);
        let chain = self.hash.chain_for_insert(&mut self.tags, start);
        self.tags
            .carve_front_onto(id, size, TagKind::Allocated, chain)
            .expect("kmem-arena: boundary tag not reserved");
        if list as usize != list_of(rest) {
            self.untrack_free(id);
            self.track_free(id);
        }
        self.allocated += size;
        self.counters.allocs += 1;
        start
    }

    /// The instant-fit choice for `size`: O(1) via the bitmap, falling back
    /// to the first [`SEARCH_BATCH`] members of the request's own list when
    /// no larger list has a segment (`Err(())`: none of those fits, and the
    /// list holds more).
    #[inline]
    fn instant_pick(&self, size: usize) -> Result<Option<TagId>, ()> {
        match self.peek_from(list_up(size)) {
            Some(id) => Ok(Some(id)),
            None => self.first_fit_in(list_of(size), size),
        }
    }

    /// Instant fit (see [`instant_pick`](Self::instant_pick)).
    #[inline]
    pub(crate) fn alloc_instant(&mut self, size: usize) -> Pick {
        match self.instant_pick(size) {
            Ok(Some(id)) => Pick::Got(self.alloc_from(id, size)),
            Ok(None) => Pick::None,
            Err(()) => Pick::Unsure,
        }
    }

    /// Best fit: the smallest fitting segment among the first
    /// [`SEARCH_BATCH`] members of the request's own list, else the first
    /// of the next non-empty list.
    pub(crate) fn alloc_best(&mut self, size: usize) -> Pick {
        let i = list_of(size);
        let own = self.best_fit_in(i, size);
        match own.map(|id| id.or_else(|| self.peek_from(i + 1))) {
            Ok(Some(id)) => Pick::Got(self.alloc_from(id, size)),
            Ok(None) => Pick::None,
            Err(()) => match self.peek_from(i + 1) {
                Some(id) => Pick::Got(self.alloc_from(id, size)),
                None => Pick::Unsure,
            },
        }
    }

    /// One stretch of a constrained search ([`Arena::xalloc`](crate::Arena::xalloc)
    /// and the fallbacks of `alloc`): at most [`SEARCH_BATCH`] free segments
    /// examined, each found in O(log n), so the lock is never held for
    /// more; [`Search::Paused`] asks the caller to drop the lock and call
    /// again with the same cursor. Needs two tags.
    ///
    /// The search is exhaustive across its stretches: it fails only when
    /// no free segment holds a fitting range (short of one freed behind the
    /// cursor while the lock was dropped). Order: from the top for
    /// `fit.top`; the next fit after the previous one for next fit; the
    /// lowest address for a window; otherwise a segment that must fit
    /// (every member of a list at or above `size + period - quantum`, the
    /// period being `lcm(align, nocross)`) in O(1), then the lowest fitting
    /// address among the rest.
    pub(crate) fn search(
        &mut self,
        fit: &Fit,
        policy: Policy,
        best: bool,
        quantum: usize,
        cur: &mut Cursor,
    ) -> Search {
        if fit.top {
            self.search_top(fit, cur)
        } else if policy == Policy::NextFit {
            self.search_next(fit, quantum, cur)
        } else if fit.has_window() {
            self.search_up(fit, cur)
        } else {
            self.search_lists(fit, best, quantum, cur)
        }
    }

    /// Takes `[at, at + fit.size)` out of the free segment `id`.
    fn take_at(&mut self, id: TagId, at: usize, fit: &Fit) -> usize {
        self.untrack_free(id);
        self.split_front(id, at);
        self.account_alloc(id, fit.size)
    }

    /// The lowest fitting address at or above `fit.min`, in address order
    /// through the segment tree: the free segment holding `fit.min`, then
    /// every free segment of a size class that may hold the request.
    pub(crate) fn search_up(&mut self, fit: &Fit, cur: &mut Cursor) -> Search {
        let k = class_key(fit.size);
        if !cur.started {
            cur.started = true;
            cur.at = fit.min;
        }
        // The free segment that starts below the cursor and reaches past it:
        // at the start, the one holding `fit.min`; on a resumed stretch, one
        // that a merge made while the lock was let go (a free segment ahead
        // of the cursor may have joined one behind it, whose start it took).
        if let Some(id) = cur
            .at
            .checked_sub(1)
            .and_then(|a| self.tags.floor(Tree::Segments, a))
        {
            let t = *self.tags.get(id);
            if t.kind() == TagKind::Free && t.end() > cur.at && t.start < fit.max {
                if let Some(at) = fit.find_in(t.start, t.size) {
                    return Search::Found(self.take_at(id, at, fit));
                }
            }
        }
        // A batch starts from the cursor's address (the tree may have changed
        // while the lock was let go) and steps to each next candidate.
        let mut next = self.tags.first_keyed_from(Tree::Segments, cur.at, k);
        for _ in 0..SEARCH_BATCH {
            let Some(id) = next else {
                return Search::NotFound;
            };
            let t = *self.tags.get(id);
            if t.start >= fit.max || fit.max - t.start < fit.size {
                return Search::NotFound;
            }
            if let Some(at) = fit.find_in(t.start, t.size) {
                return Search::Found(self.take_at(id, at, fit));
            }
            // `t.start < fit.max`, so this cannot overflow.
            cur.at = t.start + 1;
            next = self.tags.next_keyed(id, k);
        }
        Search::Paused
    }

    /// The highest fitting start below `fit.max`: the mirror of
    /// [`search_up`](Self::search_up), down the segment tree.
    pub(crate) fn search_top(&mut self, fit: &Fit, cur: &mut Cursor) -> Search {
        let k = class_key(fit.size);
        if !cur.started {
            cur.started = true;
            cur.at = fit.max;
        }
        let mut next = self.tags.last_keyed_below(Tree::Segments, cur.at, k);
        for _ in 0..SEARCH_BATCH {
            let Some(id) = next else {
                return Search::NotFound;
            };
            let t = *self.tags.get(id);
            if t.start.saturating_add(t.size) <= fit.min {
                return Search::NotFound;
            }
            if let Some(at) = fit.find_in_top(t.start, t.size) {
                return Search::Found(self.take_at(id, at, fit));
            }
            cur.at = t.start;
            next = self.tags.prev_keyed(id, k);
        }
        Search::Paused
    }

    /// Next fit: the lowest fit after the previous next-fit result, then,
    /// wrapping around, the lowest fit overall.
    fn search_next(&mut self, fit: &Fit, quantum: usize, cur: &mut Cursor) -> Search {
        if cur.pass == 0 {
            let after = self.last_nextfit.and_then(|a| a.checked_add(quantum));
            if let Some(a) = after.filter(|&a| a > fit.min && a < fit.max) {
                match self.search_up(&Fit { min: a, ..*fit }, cur) {
                    Search::NotFound => {}
                    other => return self.note_next(other),
                }
            }
            *cur = Cursor {
                pass: 1,
                ..Cursor::default()
            };
        }
        let got = self.search_up(fit, cur);
        self.note_next(got)
    }

    fn note_next(&mut self, got: Search) -> Search {
        if let Search::Found(addr) = got {
            self.last_nextfit = Some(addr);
        }
        got
    }

    /// The search without a window or policy order: a segment that must
    /// fit, from the lists; else the lowest fitting address among the free
    /// segments that may fit.
    fn search_lists(&mut self, fit: &Fit, best: bool, quantum: usize, cur: &mut Cursor) -> Search {
        let sure = fit.sure_size(quantum).map_or(64, list_up).min(64);
        if !cur.started && cur.list == 0 {
            let lists = if sure < 64 {
                self.freemap & (u64::MAX << sure)
            } else {
                0
            };
            if lists != 0 {
                let i = lists.trailing_zeros() as usize;
                let pick = if best {
                    self.best_fit_in(i, 0).ok().flatten()
                } else {
                    self.free[i].first()
                };
                if let Some(id) = pick {
                    let t = *self.tags.get(id);
                    if let Some(at) = fit.find_in(t.start, t.size) {
                        return Search::Found(self.take_at(id, at, fit));
                    }
                    debug_assert!(false, "kmem-arena: a segment of the sure size does not fit");
                }
            }
            cur.list = list_of(fit.size) as u8 + 1;
        }
        if cur.started || cur.restarts > LIST_RESTARTS {
            // The list scan kept losing its place: the address-ordered
            // walk finishes the search.
            return self.search_up(fit, cur);
        }
        // The lists that may hold a fit, each in list order (the most
        // recently freed first), a batch of segments per call. `cur.list`
        // is the list's index plus one.
        let mut seen = 0;
        while (cur.list as usize) <= sure {
            let i = cur.list as usize - 1;
            let mut next = match cur.last {
                None => self.free[i].first(),
                Some(last) => {
                    let t = self.tags.get(last);
                    if t.kind() == TagKind::Free && t.list as usize == i {
                        t.list_next()
                    } else {
                        // It left the list while the lock was let go:
                        // this list again, from its head.
                        cur.restarts += 1;
                        if cur.restarts > LIST_RESTARTS {
                            return self.search_up(fit, cur);
                        }
                        self.free[i].first()
                    }
                }
            };
            let mut found: Option<(TagId, usize, usize)> = None;
            while let Some(id) = next {
                if seen == SEARCH_BATCH {
                    break;
                }
                seen += 1;
                let t = self.tags.get(id);
                next = t.list_next();
                cur.last = Some(id);
                if let Some(at) = fit.find_in(t.start, t.size) {
                    if found.is_none_or(|(_, _, sz)| t.size < sz) {
                        found = Some((id, at, t.size));
                    }
                    if !best {
                        break;
                    }
                }
            }
            if let Some((id, at, _)) = found {
                return Search::Found(self.take_at(id, at, fit));
            }
            if next.is_some() {
                return Search::Paused;
            }
            cur.list += 1;
            cur.last = None;
        }
        Search::NotFound
    }

    /// The size of the largest free segment, 0 if none: the largest member
    /// of the highest non-empty free list.
    pub(crate) fn largest_free(&self) -> usize {
        if self.freemap == 0 {
            return 0;
        }
        let top = (u64::BITS - 1 - self.freemap.leading_zeros()) as usize;
        self.tags
            .list_iter(self.free[top])
            .map(|id| self.tags.get(id).size)
            .max()
            .unwrap_or(0)
    }

    /// True when an allocated segment overlaps `[start, end)`, for
    /// `xalloc_at` after a refusal: a few `O(log n)` lookups, no walk.
    /// Segments tile their span and free neighbours coalesce, so within a
    /// span it is enough to look at where the range begins and at the one
    /// segment after the free segment there; a range running over span
    /// ends is followed over at most [`BUSY_SPANS`] spans (such a range
    /// cannot be allocated anyway).
    pub(crate) fn busy(&self, start: usize, end: usize) -> bool {
        let mut at = start;
        for _ in 0..2 * BUSY_SPANS {
            if at >= end {
                return false;
            }
            let span = self
                .tags
                .floor(Tree::Spans, at)
                .map(|id| *self.tags.get(id))
                .filter(|s| at - s.start < s.size);
            let Some(span) = span else {
                // Outside every span: the next span, if the range reaches it.
                match self.tags.lower_bound(Tree::Spans, at) {
                    Some(id) if self.tags.get(id).start < end => {
                        at = self.tags.get(id).start;
                        continue;
                    }
                    _ => return false,
                }
            };
            // Inside a span: in a free segment, or else in an allocated one.
            let free = self
                .tags
                .floor(Tree::Segments, at)
                .map(|id| *self.tags.get(id))
                .filter(|t| t.kind() == TagKind::Free && at - t.start < t.size);
            let Some(free) = free else {
                return true;
            };
            let free_end = free.start + free.size;
            if free_end >= end {
                return false;
            }
            if free_end < span.start + span.size {
                // The segment after a free one is allocated.
                return true;
            }
            // The span ends inside the range: the next span's turn.
            at = free_end;
        }
        false
    }

    /// Frees the segment at `addr` of `size` units, coalescing with free
    /// neighbours. When `release_spans` and the whole span is now free, the
    /// span leaves the arena and is returned for the caller to hand back to
    /// the source (outside the lock). The caller has validated the free.
    ///
    /// `found` is the segment as [`AllocHash::find_tag`] found it.
    #[inline(always)]
    pub(crate) fn free(&mut self, found: &Found, release_spans: bool) -> Option<(usize, usize)> {
        let (id, t) = (found.id, &found.tag);
        let size = t.size;
        self.hash.remove_found(&mut self.tags, found);
        self.allocated -= size;
        self.counters.frees += 1;
        let is_free = |s: &Self, n: TagId| s.tags.get(n).kind() == TagKind::Free;
        let next = t.addr_next().filter(|&n| is_free(self, n));
        let prev = t.addr_prev().filter(|&p| is_free(self, p));
        if (prev.is_some() || next.is_some()) && t.in_tree() {
            // An exact fit kept its place in the segment tree; it merges away.
            self.tags.remove(id);
        }
        // Merge into a free neighbour in place: the survivor keeps its place
        // in the segment tree and usually its list.
        // The survivor and a copy of its tag as it now reads.
        let (seg, st) = match (prev, next) {
            (None, None) => {
                if !t.in_tree() {
                    self.tags.insert(Tree::Segments, id);
                }
                self.track_free_sized(id, size);
                return self.release_if_whole(release_spans, id, t);
            }
            (Some(_), next) => {
                if let Some(n) = next {
                    self.untrack_free(n);
                    if self.tags.tree_of(n).is_some() {
                        self.tags.remove(n);
                    }
                    self.tags.merge_into_prev(n);
                }
                self.tags.merge_into_prev(id)
            }
            (None, Some(n)) => self.tags.merge_into(id, n),
        };
        if st.list as usize != list_of(st.size) {
            self.untrack_free(seg);
            self.track_free(seg);
        }
        self.release_if_whole(release_spans, seg, &st)
    }

    /// When `release_spans` and the free segment `seg` (whose tag reads as
    /// `st`) covers its whole span, takes the span out of the arena and
    /// returns it for the caller to hand back to the source.
    #[inline(always)]
    fn release_if_whole(
        &mut self,
        release_spans: bool,
        seg: TagId,
        st: &Tag,
    ) -> Option<(usize, usize)> {
        if !release_spans {
            return None;
        }
        let span = st.addr_prev()?;
        let s = *self.tags.get(span);
        if s.kind() == TagKind::Span && s.start == st.start && s.size == st.size {
            self.remove_free_span(span, seg);
            return Some((s.start, s.size));
        }
        None
    }

    /// Removes the span starting at `base` if it is wholly free; returns its size.
    pub(crate) fn take_free_span(&mut self, base: usize) -> Option<usize> {
        let span = self.tags.lower_bound(Tree::Spans, base)?;
        let seg = self.tags.addr_next(span)?;
        let (s, t) = (*self.tags.get(span), *self.tags.get(seg));
        if s.kind() != TagKind::Span || s.start != base || t.kind() != TagKind::Free {
            return None;
        }
        if t.start != s.start || t.size != s.size {
            return None;
        }
        self.remove_free_span(span, seg);
        Some(s.size)
    }

    /// Takes `id` off the address list and out of its tree (if any), and
    /// returns it to the unused tags.
    fn drop_tag(&mut self, id: TagId) {
        if self.tags.tree_of(id).is_some() {
            self.tags.remove(id);
        }
        self.tags.addr_remove(id);
        self.tags.put(id);
    }

    /// Drops the imported `span` and the one free segment `seg` covering it.
    fn remove_free_span(&mut self, span: TagId, seg: TagId) {
        let size = self.tags.get(span).size;
        self.untrack_free(seg);
        self.drop_tag(seg);
        self.drop_tag(span);
        self.total -= size;
        self.imported -= size;
        self.spans -= 1;
        self.counters.releases += 1;
    }

    /// Takes a free segment of at least `size` units, marks its first `size`
    /// units allocated as metadata, and hands the segment to `donate` before
    /// the split so the split can use a tag from the new memory. Used by a
    /// base arena to carve its own tag pages under its lock.
    pub(crate) fn carve(&mut self, size: usize, donate: impl FnOnce(&mut Tags, usize)) -> bool {
        let Ok(Some(id)) = self.instant_pick(size) else {
            return false;
        };
        self.untrack_free(id);
        let start = self.tags.get(id).start;
        donate(&mut self.tags, start);
        self.mark_meta(id, size);
        true
    }

    /// Allocates the first `size` units of the free segment `id` as metadata.
    pub(crate) fn carve_at(&mut self, id: TagId, size: usize) {
        self.untrack_free(id);
        self.mark_meta(id, size);
    }

    /// For [`Arena::purge`](crate::Arena::purge): the free segment of at
    /// least `min` units that holds `at` or, else, the lowest one above
    /// it, as `Range(start, end)` clipped to start at `at`; looks at up to
    /// [`SEARCH_BATCH`] candidates.
    pub(crate) fn purge_step(&self, at: usize, min: usize) -> Purge {
        if let Some(id) = at
            .checked_sub(1)
            .and_then(|a| self.tags.floor(Tree::Segments, a))
        {
            let t = self.tags.get(id);
            if t.kind() == TagKind::Free && t.size >= min && t.end() > at {
                return Purge::Range(at, t.end());
            }
        }
        let k = class_key(min);
        let mut next = self.tags.first_keyed_from(Tree::Segments, at, k);
        for _ in 0..SEARCH_BATCH {
            let Some(id) = next else {
                return Purge::Done;
            };
            let t = self.tags.get(id);
            if t.size >= min {
                return Purge::Range(t.start, t.end());
            }
            next = self.tags.next_keyed(id, k);
        }
        next.map_or(Purge::Done, |id| Purge::From(self.tags.get(id).start))
    }

    /// Allocates the first `size` units of the unlisted free segment `id` as
    /// metadata; with no tag to split with (a donation that yielded none),
    /// the whole segment, rather than losing the remainder.
    fn mark_meta(&mut self, id: TagId, size: usize) {
        let take = if self.tags.unused() == 0 {
            self.tags.get(id).size
        } else {
            size
        };
        self.account_alloc(id, take);
        self.tags.get_mut(id).list = crate::arena::META;
        self.meta_units += take;
        self.meta_segs += 1;
        self.counters.allocs -= 1;
    }
}
