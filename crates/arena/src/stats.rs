//! Queries: sizes, statistics, the segment walk, `contains` and the report.

use core::fmt;

use kmem_btag::{Tag, TagKind, Tree};

use crate::arena::META;
use crate::Arena;

/// What a [`Segment`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    /// A span: a range added to or imported by the arena.
    Span,
    /// A free segment.
    Free,
    /// An allocated segment (including the arena's own metadata).
    Allocated,
}

/// One span or segment, as [`Arena::walk`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    /// First unit.
    pub start: usize,
    /// Length in units.
    pub size: usize,
    /// What it is.
    pub kind: SegmentKind,
    /// True for an allocated segment holding the arena's own metadata.
    pub metadata: bool,
}

/// Which kinds [`Arena::walk`] visits (combine with `|`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalkKinds(u8);

impl WalkKinds {
    /// Spans.
    pub const SPANS: Self = Self(1);
    /// Free segments.
    pub const FREE: Self = Self(2);
    /// Allocated segments.
    pub const ALLOCATED: Self = Self(4);
    /// Everything.
    pub const ALL: Self = Self(7);

    fn has(self, kind: SegmentKind) -> bool {
        let bit = match kind {
            SegmentKind::Span => 1,
            SegmentKind::Free => 2,
            SegmentKind::Allocated => 4,
        };
        self.0 & bit != 0
    }
}

impl core::ops::BitOr for WalkKinds {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// How much [`Arena::report`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportDetail {
    /// Accounting, free lists, hash chains and counters.
    Summary,
    /// The summary, and every span and segment in address order.
    Segments,
}

/// A sizing query for [`Arena::size`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizeKind {
    /// Units in all spans.
    Total,
    /// Units in allocated segments.
    Allocated,
    /// Units in free segments.
    Free,
    /// Units in spans imported from the source.
    Imported,
}

/// A snapshot of an arena's accounting and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Allocation granularity.
    pub quantum: usize,
    /// Units in all spans.
    pub total: usize,
    /// Units allocated (including `metadata`).
    pub allocated: usize,
    /// Units free.
    pub free: usize,
    /// Units in imported spans.
    pub imported: usize,
    /// Units allocated for the arena's own tag pages and hash tables.
    pub metadata: usize,
    /// Spans held.
    pub spans: usize,
    /// Allocated segments held for callers.
    pub live: usize,
    /// Free segments.
    pub free_segments: usize,
    /// Successful allocations ever.
    pub allocs: u64,
    /// Frees ever.
    pub frees: u64,
    /// Failed allocations ever.
    pub failures: u64,
    /// Spans imported ever.
    pub imports: u64,
    /// Spans returned to the source ever.
    pub releases: u64,
    /// Frees of the arena's own metadata that were refused: 0 unless
    /// something corrupted it (counted rather than a panic).
    pub meta_errors: u64,
    /// Times a search let go of the lock after a batch of free segments
    /// that did not fit and took it again (see
    /// [`Arena::xalloc`](crate::Arena::xalloc)): many mean many free
    /// segments of the right size in the wrong place.
    pub search_pauses: u64,
    /// Boundary tags carved.
    pub tags: usize,
    /// Boundary tags unused.
    pub tags_unused: usize,
    /// Chains of the allocated-segment hash.
    pub hash_chains: usize,
}

fn kind_of(t: &Tag) -> Option<SegmentKind> {
    match t.kind() {
        TagKind::Span => Some(SegmentKind::Span),
        TagKind::Free => Some(SegmentKind::Free),
        TagKind::Allocated => Some(SegmentKind::Allocated),
        TagKind::Unused => None,
    }
}

impl Arena<'_> {
    /// Units free (Akaros' `amt_free`).
    pub fn amt_free(&self) -> usize {
        let g = self.inner.lock();
        g.total - g.allocated
    }

    /// Units in all spans (Akaros' `amt_total`).
    pub fn amt_total(&self) -> usize {
        self.inner.lock().total
    }

    /// Units of one kind.
    pub fn size(&self, kind: SizeKind) -> usize {
        let g = self.inner.lock();
        match kind {
            SizeKind::Total => g.total,
            SizeKind::Allocated => g.allocated,
            SizeKind::Free => g.total - g.allocated,
            SizeKind::Imported => g.imported,
        }
    }

    /// The size of the largest free segment (illumos' `VMEM_MAXFREE`): the
    /// most one allocation can get without importing. 0 when nothing is
    /// free. Walks the highest non-empty free list under the lock (its
    /// members are within a factor of two of each other).
    pub fn largest_free(&self) -> usize {
        self.inner.lock().largest_free()
    }

    /// Accounting and counters.
    pub fn stats(&self) -> ArenaStats {
        let g = self.inner.lock();
        ArenaStats {
            quantum: self.quantum(),
            total: g.total,
            allocated: g.allocated,
            free: g.total - g.allocated,
            imported: g.imported,
            metadata: g.meta_units,
            spans: g.spans,
            live: g.hash.len() - g.meta_segs,
            free_segments: g.tags.len() - g.spans - g.hash.len(),
            allocs: g.counters.allocs,
            frees: g.counters.frees,
            failures: g.counters.fails,
            imports: g.counters.imports,
            releases: g.counters.releases,
            meta_errors: g.counters.meta_errors,
            search_pauses: g.counters.search_pauses,
            tags: g.tags.capacity(),
            tags_unused: g.tags.unused(),
            hash_chains: g.hash.chains(),
        }
    }

    /// Calls `f` for every span and segment of the selected kinds, in
    /// address order (a span before its segments). Runs under the arena
    /// lock: `f` must not call into this arena.
    pub fn walk(&self, kinds: WalkKinds, mut f: impl FnMut(Segment)) {
        let g = self.inner.lock();
        for id in g.tags.addr_iter() {
            let t = g.tags.get(id);
            if let Some(kind) = kind_of(t).filter(|&k| kinds.has(k)) {
                f(Segment {
                    start: t.start,
                    size: t.size,
                    kind,
                    metadata: kind == SegmentKind::Allocated && t.list == META,
                });
            }
        }
    }

    /// True when `[addr, addr + size)` lies inside one span of the arena.
    /// O(log spans).
    pub fn contains(&self, addr: usize, size: usize) -> bool {
        let Some(end) = addr.checked_add(size) else {
            return false;
        };
        let g = self.inner.lock();
        g.tags.floor(Tree::Spans, addr).is_some_and(|span| {
            let t = g.tags.get(span);
            t.end() >= end && t.end() > addr
        })
    }

    /// Writes the header of the `::kmastat` arena table (see
    /// [`vmem_row`](Self::vmem_row)).
    pub fn vmem_header(w: &mut impl fmt::Write) -> fmt::Result {
        writeln!(
            w,
            "{:<28} {:>14} {:>14} {:>14} {:>13} {:>6}",
            "arena", "memory in use", "total", "imported", "alloc succeed", "fail"
        )
    }

    /// Writes this arena's row of the `::kmastat` arena table: the name
    /// indented by two spaces per source level ([`depth`](Self::depth)),
    /// units in use and in total, units imported, allocations that
    /// succeeded and failed.
    pub fn vmem_row(&self, w: &mut impl fmt::Write) -> fmt::Result {
        let st = self.stats();
        let indent = 2 * self.depth();
        let name = self.name();
        let width = 28usize.saturating_sub(indent);
        writeln!(
            w,
            "{:indent$}{name:<width$} {:>14} {:>14} {:>14} {:>13} {:>6}",
            "", st.allocated, st.total, st.imported, st.allocs, st.failures
        )
    }

    /// Writes Akaros' stats report: accounting, free lists, hash chains
    /// and, with [`ReportDetail::Segments`], every span and segment. Runs
    /// under the arena lock.
    pub fn report(&self, w: &mut impl fmt::Write, detail: ReportDetail) -> fmt::Result {
        let st = self.stats();
        writeln!(w, "Arena: {}\n--------------", self.name())?;
        writeln!(w, "\tquantum: {}", st.quantum)?;
        match self.source() {
            Some(_) => writeln!(w, "\tsource: imported")?,
            None => writeln!(w, "\tsource: none")?,
        }
        let g = self.inner.lock();
        for (i, head) in g.free.iter().enumerate() {
            let n = g.tags.list_iter(*head).count();
            if n > 0 {
                writeln!(w, "\tList of [2^{} - 2^{}): {n} free segments", i, i + 1)?;
            }
        }
        if detail == ReportDetail::Segments {
            for id in g.tags.addr_iter() {
                let t = g.tags.get(id);
                let label = match t.kind() {
                    TagKind::Span => "Span",
                    TagKind::Free => "\tFree",
                    TagKind::Allocated if t.list == META => "\tMeta",
                    _ => "\tAloc",
                };
                writeln!(w, "\t{label}: start {:#x} + {:#x}", t.start, t.size)?;
            }
        }
        drop(g);
        writeln!(w, "\tStats:")?;
        writeln!(w, "\t\tAmt free: {} ({:#x})", st.free, st.free)?;
        writeln!(
            w,
            "\t\tAmt alloc: {} ({:#x}), nr allocs {}",
            st.allocated, st.allocated, st.live
        )?;
        writeln!(w, "\t\tAmt total: {}, metadata {}", st.total, st.metadata)?;
        writeln!(
            w,
            "\t\tAmt imported: {}, nr spans {}",
            st.imported, st.spans
        )?;
        writeln!(
            w,
            "\t\tAllocs {}, frees {}, failures {}, imports {}, releases {}",
            st.allocs, st.frees, st.failures, st.imports, st.releases
        )?;
        let longest = {
            let g = self.inner.lock();
            g.hash.scan(&g.tags).map_or(0, |(_, longest)| longest)
        };
        writeln!(
            w,
            "\t\tTags {} ({} unused), hash chains {}, longest chain {longest}",
            st.tags, st.tags_unused, st.hash_chains
        )
    }
}
