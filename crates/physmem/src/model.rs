//! A reference model of an arena: spans and allocated ranges in `BTreeMap`s,
//! checked by brute force.
//!
//! [`ArenaModel`] knows nothing of free lists, hashes or fits: it records
//! what an arena has handed out and answers, slowly and obviously, whether a
//! request *could* be satisfied ([`ArenaModel::fits`]). Randomized tests
//! drive an [`Arena`] and the model side by side: every successful
//! allocation is recorded (the model panics on an overlap or a range outside
//! every span), every failure is checked against `fits`, and
//! [`ArenaModel::check_against`] compares the two in full.
//!
//! All arithmetic on ends is done in `u128`, so ranges that touch the top of
//! the `usize` space need no care.
//!
//! ```
//! use kmem_arena::{Arena, Policy};
//! use kmem_physmem::model::{ArenaModel, Placement};
//!
//! let mut tags = vec![0u64; 3 * 512];
//! let ids = Arena::builder("ids").quantum(1).build().unwrap();
//! // SAFETY: the buffer outlives the arena and is used by nothing else.
//! unsafe { ids.add_tag_memory(tags.as_mut_ptr().cast(), 3 * 4096) };
//! ids.add(0, 100).unwrap();
//! let mut model = ArenaModel::new(1);
//! model.add_span(0, 100);
//!
//! let a = ids.alloc(60, Policy::InstantFit).unwrap();
//! model.record_alloc(a, 60);
//! assert!(!model.fits(60, &Placement::anywhere(1)));
//! assert!(ids.alloc(60, Policy::BestFit).is_err());
//! model.check_against(&ids).unwrap();
//!
//! ids.free(a, 60).unwrap();
//! model.record_free(a, 60).unwrap();
//! assert_eq!(model.record_free(a, 60), Err("not allocated"));
//! model.check_against(&ids).unwrap();
//! # drop(ids);
//! ```

use core::fmt::{Debug, Write as _};
use std::collections::BTreeMap;

use kmem_arena::{Arena, SegmentKind, SizeKind, WalkKinds};

use crate::kit::gcd;

/// End of `[start, start + size)`, without overflow.
fn end(start: usize, size: usize) -> u128 {
    start as u128 + size as u128
}

/// The smallest `x >= from` with `x % align == phase` (`phase < align`).
fn first_candidate(from: u128, align: u128, phase: u128) -> u128 {
    let below = from - from % align;
    if from % align <= phase {
        below + phase
    } else {
        below + align + phase
    }
}

/// Where an allocation may start: `xalloc`'s constraints in plain
/// numbers, the alignment already the effective one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The effective alignment: `lcm(quantum, align)`, or the quantum for a
    /// plain allocation.
    pub align: usize,
    /// Starts are `phase` modulo `align`.
    pub phase: usize,
    /// The allocation crosses no multiple of this (0: no such constraint).
    pub nocross: usize,
    /// It starts at `min` or above.
    pub min: usize,
    /// It ends at `max` or below.
    pub max: usize,
}

impl Placement {
    /// Starts that are multiples of `align`, anywhere: a plain allocation
    /// (`align` the quantum).
    pub const fn anywhere(align: usize) -> Self {
        Self {
            align,
            phase: 0,
            nocross: 0,
            min: 0,
            max: usize::MAX,
        }
    }

    /// The constraint that `[x, x + size)` breaks, in words, if any.
    pub fn broken_by(&self, x: usize, size: usize) -> Option<&'static str> {
        if x % self.align != self.phase {
            Some("misaligned (align or phase)")
        } else if x < self.min {
            Some("below the window's min")
        } else if end(x, size) > self.max as u128 {
            Some("beyond the window's max")
        } else if self.nocross != 0 && size > 0 && x / self.nocross != (x + size - 1) / self.nocross
        {
            Some("crosses a multiple of the nocross")
        } else {
            None
        }
    }
}

/// A reference model of one arena: its spans, its allocated ranges and the
/// ranges its own metadata occupies ("reserved"), keyed by start.
#[derive(Clone, Debug)]
pub struct ArenaModel {
    quantum: usize,
    spans: BTreeMap<usize, usize>,
    allocs: BTreeMap<usize, usize>,
    reserved: BTreeMap<usize, usize>,
    total: usize,
    allocated: usize,
}

impl ArenaModel {
    /// An empty model of an arena with granularity `quantum`.
    ///
    /// # Panics
    /// Panics if `quantum` is zero.
    pub fn new(quantum: usize) -> Self {
        assert!(quantum > 0, "ArenaModel: zero quantum");
        Self {
            quantum,
            spans: BTreeMap::new(),
            allocs: BTreeMap::new(),
            reserved: BTreeMap::new(),
            total: 0,
            allocated: 0,
        }
    }

    /// The granularity.
    pub fn quantum(&self) -> usize {
        self.quantum
    }

    /// `size` rounded up to the quantum, as the arena rounds it.
    ///
    /// # Panics
    /// Panics if the rounded size overflows (the arena refuses such sizes).
    pub fn round(&self, size: usize) -> usize {
        size.div_ceil(self.quantum)
            .checked_mul(self.quantum)
            .expect("ArenaModel: size overflows when rounded")
    }

    /// True when `[base, base + size)` overlaps a span.
    pub fn overlaps_span(&self, base: usize, size: usize) -> bool {
        // Spans do not overlap each other, so only the last one starting
        // below the end can reach back over `base`.
        let e = end(base, size);
        let last = if e > usize::MAX as u128 {
            self.spans.iter().next_back()
        } else {
            self.spans.range(..e as usize).next_back()
        };
        last.is_some_and(|(&s, &z)| end(s, z) > base as u128)
    }

    /// Records the span `[base, base + size)`.
    ///
    /// # Panics
    /// Panics on an empty span, one that is misaligned to the quantum, or
    /// one overlapping a span already recorded.
    pub fn add_span(&mut self, base: usize, size: usize) {
        assert!(size > 0, "ArenaModel: empty span at {base:#x}");
        assert!(
            base.is_multiple_of(self.quantum) && size.is_multiple_of(self.quantum),
            "ArenaModel: span [{base:#x}, +{size:#x}) misaligned to quantum {}",
            self.quantum
        );
        assert!(
            !self.overlaps_span(base, size),
            "ArenaModel: span [{base:#x}, +{size:#x}) overlaps a recorded span"
        );
        self.spans.insert(base, size);
        self.total += size;
    }

    /// Forgets the span `[base, base + size)` (released to a source).
    ///
    /// # Panics
    /// Panics if no such span is recorded, or if anything is allocated in it.
    pub fn remove_span(&mut self, base: usize, size: usize) {
        assert_eq!(
            self.spans.get(&base),
            Some(&size),
            "ArenaModel: no span [{base:#x}, +{size:#x}) to remove"
        );
        let e = end(base, size);
        let busy = self
            .allocs
            .range(base..)
            .next()
            .filter(|(&s, _)| (s as u128) < e);
        assert!(
            busy.is_none(),
            "ArenaModel: span [{base:#x}, +{size:#x}) removed while [{:#x}, +{:#x}) is allocated in it",
            busy.map_or(0, |b| *b.0),
            busy.map_or(0, |b| *b.1),
        );
        self.spans.remove(&base);
        self.total -= size;
    }

    /// The span holding all of `[start, start + size)`, if any.
    fn span_of(&self, start: usize, size: usize) -> Option<(usize, usize)> {
        let (&b, &s) = self.spans.range(..=start).next_back()?;
        (end(start, size) <= end(b, s)).then_some((b, s))
    }

    /// True when `[start, start + size)` lies inside one span (what
    /// `Arena::contains` answers).
    pub fn contains(&self, start: usize, size: usize) -> bool {
        self.span_of(start, size).is_some()
    }

    /// The allocated range overlapping `[start, start + size)`, if any.
    fn overlapping(
        map: &BTreeMap<usize, usize>,
        start: usize,
        size: usize,
    ) -> Option<(usize, usize)> {
        let e = end(start, size);
        if let Some((&a, &z)) = map.range(..=start).next_back() {
            if end(a, z) > start as u128 {
                return Some((a, z));
            }
        }
        map.range(start..)
            .next()
            .filter(|(&a, _)| (a as u128) < e)
            .map(|(&a, &z)| (a, z))
    }

    /// Records that the arena handed out `[start, start + size)` (`size`
    /// rounded up to the quantum).
    ///
    /// # Panics
    /// Panics, saying why, if the range is empty, misaligned to the quantum,
    /// outside every span, or overlaps a live allocation or reserved range.
    pub fn record_alloc(&mut self, start: usize, size: usize) {
        assert!(
            size > 0,
            "ArenaModel: allocation of zero units at {start:#x}"
        );
        let size = self.round(size);
        assert!(
            start.is_multiple_of(self.quantum),
            "ArenaModel: allocation at {start:#x} misaligned to quantum {}",
            self.quantum
        );
        assert!(
            self.span_of(start, size).is_some(),
            "ArenaModel: allocation [{start:#x}, +{size:#x}) lies outside every span"
        );
        if let Some((a, z)) = Self::overlapping(&self.allocs, start, size) {
            panic!(
                "ArenaModel: allocation [{start:#x}, +{size:#x}) overlaps live allocation [{a:#x}, +{z:#x})"
            );
        }
        if let Some((a, z)) = Self::overlapping(&self.reserved, start, size) {
            panic!(
                "ArenaModel: allocation [{start:#x}, +{size:#x}) overlaps arena metadata [{a:#x}, +{z:#x})"
            );
        }
        self.allocs.insert(start, size);
        self.allocated += size;
    }

    /// Records a free with the arena's rules: `Err("zero size")`,
    /// `Err("not allocated")` when no allocation starts at `start`, or
    /// `Err("wrong size")` when `size` (rounded to the quantum) differs from
    /// the allocation's. Changes nothing on error.
    pub fn record_free(&mut self, start: usize, size: usize) -> Result<(), &'static str> {
        if size == 0 {
            return Err("zero size");
        }
        let size = size.div_ceil(self.quantum).saturating_mul(self.quantum);
        match self.allocs.get(&start) {
            None => Err("not allocated"),
            Some(&z) if z != size => Err("wrong size"),
            Some(_) => {
                self.allocs.remove(&start);
                self.allocated -= size;
                Ok(())
            }
        }
    }

    /// The size of the allocation starting at `start`, if any.
    pub fn allocation(&self, start: usize) -> Option<usize> {
        self.allocs.get(&start).copied()
    }

    /// Live allocations `(start, size)` in address order.
    pub fn allocations(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.allocs.iter().map(|(&a, &z)| (a, z))
    }

    /// Spans `(base, size)` in address order.
    pub fn spans(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.spans.iter().map(|(&a, &z)| (a, z))
    }

    /// Units allocated (excluding reserved metadata).
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// Units in all spans.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Units not allocated (reserved metadata counts as free here, as the
    /// model's user does not own it).
    pub fn free(&self) -> usize {
        self.total - self.allocated
    }

    /// Number of live allocations.
    pub fn live(&self) -> usize {
        self.allocs.len()
    }

    /// Replaces the reserved ranges with the metadata segments `arena`
    /// reports (a base arena's own tag pages and hash tables), so that
    /// [`fits`](Self::fits) does not count them as free.
    pub fn sync_reserved(&mut self, arena: &Arena<'_>) {
        self.reserved.clear();
        arena.walk(WalkKinds::ALLOCATED, |s| {
            if s.metadata {
                self.reserved.insert(s.start, s.size);
            }
        });
    }

    /// Free ranges `(start, size)`, maximal within each span (spans are
    /// never merged), given what is allocated and `extra` occupied ranges.
    fn gaps_with(&self, extra: &BTreeMap<usize, usize>) -> Vec<(usize, usize)> {
        let mut gaps = Vec::new();
        for (&b, &s) in &self.spans {
            let e = end(b, s);
            let mut at = b as u128;
            let inside = |m: &BTreeMap<usize, usize>| {
                m.range(b..)
                    .take_while(|(&a, _)| (a as u128) < e)
                    .map(|(&a, &z)| (a, z))
                    .collect::<Vec<_>>()
            };
            let mut busy = inside(&self.allocs);
            busy.extend(inside(extra));
            busy.sort_unstable();
            for (a, z) in busy {
                if a as u128 > at {
                    gaps.push((at as usize, (a as u128 - at) as usize));
                }
                at = at.max(end(a, z));
            }
            if at < e {
                gaps.push((at as usize, (e - at) as usize));
            }
        }
        gaps
    }

    /// Free ranges `(start, size)` in address order, maximal within each
    /// span (reserved ranges excluded).
    pub fn gaps(&self) -> Vec<(usize, usize)> {
        self.gaps_with(&self.reserved)
    }

    /// Spans with nothing allocated (or reserved) in them.
    pub fn wholly_free_spans(&self) -> Vec<(usize, usize)> {
        let gaps = self.gaps();
        self.spans()
            .filter(|s| gaps.binary_search(s).is_ok())
            .collect()
    }

    /// True when some `x` in one free range meets `place` for `size`
    /// units (rounded to the quantum).
    ///
    /// # Panics
    /// Panics if `place.align` is zero or `place.phase >= place.align`.
    pub fn fits(&self, size: usize, place: &Placement) -> bool {
        self.find_fit(size, place).is_some()
    }

    /// The lowest `x` in `[min, max)` that meets `place` whatever is
    /// allocated, as if one free range covered the whole window: `None`
    /// means no arena could ever satisfy it (the arena's
    /// `Overconstrained`). `size` is taken as it is (already rounded).
    ///
    /// # Panics
    /// Panics if `place.align` is zero or `place.phase >= place.align`.
    pub fn window_fit(size: usize, place: &Placement) -> Option<usize> {
        if place.min >= place.max {
            return None;
        }
        let mut m = Self::new(1);
        m.add_span(place.min, place.max - place.min);
        m.find_fit(size, place)
    }

    /// The lowest `x` that [`fits`](Self::fits) accepts, if any.
    ///
    /// # Panics
    /// Panics if `place.align` is zero or `place.phase >= place.align`.
    pub fn find_fit(&self, size: usize, place: &Placement) -> Option<usize> {
        let &Placement {
            align: align_eff,
            phase,
            nocross,
            min,
            max,
        } = place;
        assert!(
            align_eff > 0 && phase < align_eff,
            "ArenaModel::fits: bad alignment"
        );
        let size = self.round(size) as u128;
        let (align, phase, n) = (align_eff as u128, phase as u128, nocross as u128);
        // Fits in [lo, hi) at the first candidate, or not at all: later
        // candidates only end later.
        let fit_in = |lo: u128, hi: u128| {
            let x = first_candidate(lo, align, phase);
            (x + size <= hi).then_some(x as usize)
        };
        for (gs, gz) in self.gaps() {
            let lo = (gs as u128).max(min as u128);
            let hi = end(gs, gz).min(max as u128);
            if lo >= hi || hi - lo < size {
                continue;
            }
            if n == 0 {
                match fit_in(lo, hi) {
                    Some(x) => return Some(x),
                    None => continue,
                }
            }
            // With nocross, the range must lie in one block [kN, (k+1)N).
            // Try every block meeting [lo, hi) in order. Whether a *whole*
            // block holds a fit depends only on kN mod align, which repeats
            // every align / gcd(align, N) blocks: after that many whole
            // blocks the rest repeat them, so skip to the last (possibly
            // partial) one.
            let period = (align_eff / gcd(align_eff, nocross)) as u128;
            let (first, last) = (lo / n, (hi - 1) / n);
            let mut k = first;
            while k <= last {
                let (bs, be) = ((k * n).max(lo), ((k + 1) * n).min(hi));
                if let Some(x) = (bs < be).then(|| fit_in(bs, be)).flatten() {
                    return Some(x);
                }
                k = if k > first && k - first >= period && k + 1 < last {
                    last
                } else {
                    k + 1
                };
            }
        }
        None
    }

    /// Compares the model with `arena` in full: spans, allocated segments
    /// (the arena's metadata segments aside), free segments (each must be a
    /// maximal free range of one span: coalesced), the totals and counts of
    /// `stats()`, `amt_free`/`amt_total`, and `check()`. Returns a
    /// description of every difference found.
    pub fn check_against(&self, arena: &Arena<'_>) -> Result<(), String> {
        let mut spans = BTreeMap::new();
        let mut allocs = BTreeMap::new();
        let mut meta = BTreeMap::new();
        let mut free = Vec::new();
        arena.walk(WalkKinds::ALL, |s| match s.kind {
            SegmentKind::Span => {
                spans.insert(s.start, s.size);
            }
            SegmentKind::Free => free.push((s.start, s.size)),
            SegmentKind::Allocated if s.metadata => {
                meta.insert(s.start, s.size);
            }
            SegmentKind::Allocated => {
                allocs.insert(s.start, s.size);
            }
        });
        let st = arena.stats();
        let meta_units: usize = meta.values().sum();
        let mut err = String::new();
        let mut diff = |what: &str, arena: &dyn Debug, model: &dyn Debug| {
            let _ = writeln!(err, "{what}: arena {arena:?}, model {model:?}");
        };
        if spans != self.spans {
            let extra: Vec<_> = spans
                .iter()
                .filter(|s| !self.spans.contains_key(s.0))
                .collect();
            let missing: Vec<_> = self
                .spans
                .iter()
                .filter(|s| !spans.contains_key(s.0))
                .collect();
            diff("spans (arena only, model only)", &extra, &missing);
        }
        if allocs != self.allocs {
            let extra: Vec<_> = allocs
                .iter()
                .filter(|s| self.allocs.get(s.0) != Some(s.1))
                .take(8)
                .collect();
            let missing: Vec<_> = self
                .allocs
                .iter()
                .filter(|s| allocs.get(s.0) != Some(s.1))
                .take(8)
                .collect();
            diff("allocations (arena only, model only)", &extra, &missing);
        }
        for (&a, &z) in &meta {
            if self.span_of(a, z).is_none() || Self::overlapping(&self.allocs, a, z).is_some() {
                diff(
                    "metadata segment outside spans or overlapping",
                    &(a, z),
                    &"",
                );
            }
        }
        let gaps = self.gaps_with(&meta);
        if free != gaps {
            let extra: Vec<_> = free.iter().filter(|g| !gaps.contains(g)).take(8).collect();
            let missing: Vec<_> = gaps.iter().filter(|g| !free.contains(g)).take(8).collect();
            diff("free segments (arena only, model only)", &extra, &missing);
        }
        if st.metadata != meta_units {
            diff(
                "stats.metadata vs metadata segments",
                &st.metadata,
                &meta_units,
            );
        }
        if st.total != self.total || arena.amt_total() != self.total {
            diff("total", &(st.total, arena.amt_total()), &self.total);
        }
        if st.allocated - st.metadata.min(st.allocated) != self.allocated {
            diff(
                "allocated (excluding metadata)",
                &st.allocated,
                &self.allocated,
            );
        }
        if arena.amt_free() + st.metadata != self.free() {
            diff("amt_free + metadata", &arena.amt_free(), &self.free());
        }
        if st.live != self.allocs.len() {
            diff("live allocations", &st.live, &self.allocs.len());
        }
        if st.spans != self.spans.len() {
            diff("spans", &st.spans, &self.spans.len());
        }
        let sizes = [
            arena.size(SizeKind::Total),
            arena.size(SizeKind::Allocated),
            arena.size(SizeKind::Free),
        ];
        if sizes != [st.total, st.allocated, st.free] {
            diff("size(Total, Allocated, Free) vs stats", &sizes, &st);
        }
        let imported = if arena.source().is_some() {
            self.total
        } else {
            0
        };
        if arena.size(SizeKind::Imported) != imported || st.imported != imported {
            diff("imported", &st.imported, &imported);
        }
        if st.free_segments != gaps.len() {
            diff("free segments", &st.free_segments, &gaps.len());
        }
        if let Err(e) = arena.check() {
            let _ = writeln!(err, "check(): {e}");
        }
        if err.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "arena {:?} differs from its model:\n{err}",
                arena.name()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`ArenaModel::fits`] with the placement's fields in a row.
    fn fits(m: &ArenaModel, size: usize, place: [usize; 5]) -> bool {
        let [align, phase, nocross, min, max] = place;
        let place = Placement {
            align,
            phase,
            nocross,
            min,
            max,
        };
        m.fits(size, &place)
    }

    fn model(spans: &[(usize, usize)], allocs: &[(usize, usize)]) -> ArenaModel {
        let mut m = ArenaModel::new(1);
        for &(b, s) in spans {
            m.add_span(b, s);
        }
        for &(a, z) in allocs {
            m.record_alloc(a, z);
        }
        m
    }

    #[test]
    fn accounting_and_gaps() {
        let mut m = model(&[(0, 100), (100, 50)], &[(10, 20), (100, 10)]);
        assert_eq!(
            (m.total(), m.allocated(), m.free(), m.live()),
            (150, 30, 120, 2)
        );
        // Adjacent spans stay separate ranges.
        assert_eq!(m.gaps(), vec![(0, 10), (30, 70), (110, 40)]);
        assert!(m.wholly_free_spans().is_empty());
        assert_eq!(m.record_free(100, 10), Ok(()));
        assert_eq!(m.wholly_free_spans(), vec![(100, 50)]);
        m.remove_span(100, 50);
        assert_eq!(m.total(), 100);
    }

    #[test]
    fn contains_needs_one_span() {
        let m = model(&[(0, 100), (100, 50), (200, 10)], &[(10, 20)]);
        assert!(m.contains(10, 20)); // allocated or not
        assert!(m.contains(100, 50));
        assert!(!m.contains(90, 20)); // across two adjacent spans
        assert!(!m.contains(150, 1));
        assert!(!m.contains(205, 10));
    }

    #[test]
    fn free_rules() {
        let mut m = ArenaModel::new(8);
        m.add_span(64, 64);
        m.record_alloc(64, 5); // rounds to 8
        assert_eq!(m.allocation(64), Some(8));
        assert_eq!(m.record_free(64, 0), Err("zero size"));
        assert_eq!(m.record_free(72, 8), Err("not allocated"));
        assert_eq!(m.record_free(64, 9), Err("wrong size"));
        assert_eq!(m.live(), 1);
        assert_eq!(m.record_free(64, 7), Ok(()));
        assert_eq!(m.record_free(64, 8), Err("not allocated"));
    }

    #[test]
    #[should_panic(expected = "overlaps live allocation")]
    fn overlapping_alloc_panics() {
        model(&[(0, 100)], &[(10, 20), (29, 2)]);
    }

    #[test]
    #[should_panic(expected = "outside every span")]
    fn alloc_across_spans_panics() {
        model(&[(0, 100), (100, 100)], &[(90, 20)]);
    }

    #[test]
    #[should_panic(expected = "overlaps a recorded span")]
    fn overlapping_span_panics() {
        model(&[(0, 100), (99, 100)], &[]);
    }

    #[test]
    #[should_panic(expected = "is allocated in it")]
    fn removing_busy_span_panics() {
        model(&[(0, 100)], &[(99, 1)]).remove_span(0, 100);
    }

    #[test]
    fn fits_alignment_phase_window() {
        let m = model(&[(0, 100)], &[(0, 10), (20, 80)]);
        // Free: [10, 20).
        assert!(fits(&m, 10, [1, 0, 0, 0, usize::MAX]));
        assert!(!fits(&m, 11, [1, 0, 0, 0, usize::MAX]));
        assert!(fits(&m, 4, [16, 0, 0, 0, usize::MAX])); // 16..20
        assert!(!fits(&m, 5, [16, 0, 0, 0, usize::MAX]));
        assert!(fits(&m, 2, [8, 2, 0, 0, usize::MAX])); // 10..12
        assert!(fits(&m, 2, [8, 2, 0, 0, 12]));
        assert!(!fits(&m, 2, [8, 2, 0, 0, 11]));
        assert!(fits(&m, 2, [8, 2, 0, 11, usize::MAX])); // 18..20
        assert!(!fits(&m, 2, [8, 2, 0, 11, 19]));
        assert!(!fits(&m, 3, [8, 2, 0, 11, usize::MAX]));
    }

    #[test]
    fn fits_nocross() {
        let m = model(&[(0, 64)], &[(0, 6), (20, 44)]);
        // Free: [6, 20).
        assert!(fits(&m, 8, [1, 0, 8, 0, usize::MAX])); // 8..16
        assert!(fits(&m, 10, [1, 0, 16, 0, usize::MAX])); // 6..16
        assert!(!fits(&m, 11, [1, 0, 16, 0, usize::MAX]));
        // 3-aligned, inside one 4-block: 6..10 and 9..13 cross, 12..16 does not.
        assert!(fits(&m, 4, [3, 0, 4, 0, usize::MAX]));
        assert!(!fits(&m, 4, [3, 0, 4, 0, 15]));
        // align 8, blocks of 4: phase 5 fits 3 units in every other block.
        let big = model(&[(0, 1 << 20)], &[]);
        assert!(fits(&big, 3, [8, 5, 4, 1, 1 << 20]));
        assert!(!fits(&big, 2, [8, 3, 4, 0, 1 << 20]));
        assert!(fits(&big, 3, [8, 5, 8, (1 << 20) - 3, 1 << 20]));
        assert!(!fits(&big, 3, [8, 5, 8, (1 << 20) - 2, 1 << 20]));
    }

    /// `fits` against trying every start, on small random models.
    #[test]
    fn fits_matches_exhaustive_search() {
        let mut rng = crate::Rng::new(crate::seed(0x6d6f_6465_6c21));
        for _ in 0..300 {
            let q = [1, 2, 3, 4, 8][rng.below(5) as usize];
            let mut m = ArenaModel::new(q);
            let mut at = 0;
            for _ in 0..rng.range(1, 3) {
                at += q * rng.range(0, 4);
                let size = q * rng.range(1, 40);
                m.add_span(at, size);
                at += size;
            }
            let spans: Vec<_> = m.spans().collect();
            for _ in 0..rng.range(0, 12) {
                let (b, s) = spans[rng.below(spans.len() as u64) as usize];
                let a = b + q * rng.range(0, s / q - 1);
                let z = q * rng.range(1, 6);
                if m.span_of(a, z).is_some() && ArenaModel::overlapping(&m.allocs, a, z).is_none() {
                    m.record_alloc(a, z);
                }
            }
            for _ in 0..40 {
                let size = q * rng.range(1, 8);
                let align = q * rng.pow2(0, 4);
                let phase = q * rng.range(0, align / q - 1);
                let nocross = if rng.chance(1, 2) { 0 } else { rng.pow2(0, 6) };
                let min = rng.range(0, at);
                let max = if rng.chance(1, 3) {
                    usize::MAX
                } else {
                    rng.range(0, at + 4)
                };
                let busy = |x: usize| {
                    m.span_of(x, size).is_none()
                        || ArenaModel::overlapping(&m.allocs, x, size).is_some()
                };
                let naive = (0..at + 1).any(|x| {
                    x % align == phase
                        && x >= min
                        && x + size <= max
                        && (nocross == 0 || x / nocross == (x + size - 1) / nocross)
                        && !busy(x)
                });
                assert_eq!(
                    fits(&m, size, [align, phase, nocross, min, max]),
                    naive,
                    "{m:?} size {size} align {align} phase {phase} nocross {nocross} [{min}, {max})"
                );
            }
        }
    }

    #[test]
    fn placement_names_the_broken_constraint() {
        let p = Placement {
            align: 8,
            phase: 2,
            nocross: 16,
            min: 8,
            max: 40,
        };
        assert_eq!(p.broken_by(10, 4), None);
        assert_eq!(p.broken_by(11, 4), Some("misaligned (align or phase)"));
        assert_eq!(p.broken_by(2, 4), Some("below the window's min"));
        assert_eq!(p.broken_by(34, 8), Some("beyond the window's max"));
        // 26..34 crosses 32.
        assert_eq!(
            p.broken_by(26, 8),
            Some("crosses a multiple of the nocross")
        );
        assert_eq!(Placement::anywhere(1).broken_by(usize::MAX - 4, 4), None);
    }

    #[test]
    fn fits_at_the_top() {
        let m = model(&[(usize::MAX - 16, 16)], &[]);
        assert!(fits(&m, 16, [1, 0, 0, 0, usize::MAX]));
        assert!(fits(&m, 8, [8, 0, 8, 0, usize::MAX])); // ...f0..=...f7
        assert!(fits(&m, 1, [8, 7, 8, 0, usize::MAX])); // ...ef
        assert!(!fits(&m, 8, [8, 7, 8, 0, usize::MAX])); // ...ef + 8 crosses
        assert!(!fits(&m, 17, [1, 0, 0, 0, usize::MAX]));
        assert!(m.overlaps_span(usize::MAX - 1, 1));
        assert!(!m.overlaps_span(0, usize::MAX - 16));
        assert!(m.overlaps_span(0, usize::MAX - 15));
    }
}
