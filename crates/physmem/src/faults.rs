//! Fault injection for tests (the `vmem_mtbf` / `umem_setmtbf` idea):
//! [`Faults`], a schedule of failures, and [`FailingSource`], a
//! [`Source`] that fails imports on such a schedule and accounts for every
//! span it passes through, so a test can prove an importer leaks nothing;
//! [`ArenaState`] is what a refused operation must leave unchanged.
//!
//! The library crates' own failure injection (their `fail-inject` feature,
//! the `kmem-fail` crate) keeps its plans in process-wide statics; a test
//! that sets them holds a [`FailPlans`] guard, so that the tests of one
//! binary that inject take turns and leave every plan off behind them.
//!
//! ```
//! use kmem_arena::{AllocError, Arena, Policy};
//! use kmem_physmem::faults::{FailingSource, Plan};
//! use kmem_physmem::{PhysMem, PAGE_SIZE};
//!
//! let ram = PhysMem::new(1 << 20);
//! let base = ram.base_arena("base", PAGE_SIZE);
//! // Every second import fails.
//! let source = FailingSource::new(&base, Plan::EveryKth(2));
//! let pages = Arena::builder("pages")
//!     .quantum(PAGE_SIZE)
//!     .source(&source)
//!     .tags_from(&base)
//!     .build()
//!     .unwrap();
//! let a = pages.alloc(PAGE_SIZE, Policy::InstantFit).unwrap();
//! assert_eq!(
//!     pages.alloc(PAGE_SIZE, Policy::InstantFit),
//!     Err(AllocError::Exhausted)
//! );
//! assert_eq!(source.stats().injected, 1);
//! // SAFETY: allocated above with this size, not used after.
//! unsafe { pages.free_memory(a, PAGE_SIZE) }.unwrap();
//! // The span went back: nothing is outstanding.
//! assert_eq!(source.stats().outstanding_bytes, 0);
//! ```

use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use kmem_arena::{AllocError, Arena, ArenaStats, Segment, Source, SpanFit, WalkKinds};

use crate::kit::segments;

/// Exclusive use of the process-wide failure-injection plans (`kmem-fail`)
/// for the guard's life: the tests of a binary that set plans each hold one,
/// so they run one at a time (tests run on parallel threads). Every plan is
/// off, and every count zero, when the guard is taken and again when it is
/// dropped (also when the test panics).
///
/// ```
/// use kmem_physmem::faults::FailPlans;
///
/// let _plans = FailPlans::take();
/// kmem_fail::set(kmem_fail::Layer::Kmalloc, kmem_fail::Plan::EveryKth(1));
/// assert!(kmem_fail::should_fail(kmem_fail::Layer::Kmalloc));
/// drop(_plans);
/// assert!(!kmem_fail::should_fail(kmem_fail::Layer::Kmalloc));
/// ```
#[derive(Debug)]
pub struct FailPlans {
    _turn: MutexGuard<'static, ()>,
}

impl FailPlans {
    /// The plans the failure-injection tests run, for a seed: every
    /// attempt, every 2nd and every 5th failing, and a seeded 1 in 2 and
    /// 1 in 5.
    pub fn standard(seed: u64) -> [kmem_fail::Plan; 5] {
        use kmem_fail::Plan;
        [
            Plan::EveryKth(1),
            Plan::EveryKth(2),
            Plan::EveryKth(5),
            Plan::OneIn { n: 2, seed },
            Plan::OneIn { n: 5, seed },
        ]
    }

    /// Waits for the plans, then clears them.
    pub fn take() -> Self {
        static TURN: Mutex<()> = Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        kmem_fail::clear_all();
        Self { _turn: turn }
    }
}

impl Drop for FailPlans {
    fn drop(&mut self) {
        kmem_fail::clear_all();
    }
}

/// An arena's accounting and its spans and segments, less the statistics
/// that the operation a test compares across may change ([`Leave`]): what
/// a refused or undone operation must leave as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaState {
    /// [`Arena::stats`], with what is left out zeroed.
    pub stats: ArenaStats,
    /// Every span and segment, in address order.
    pub segments: Vec<Segment>,
}

/// What an [`ArenaState`] leaves out of an arena's statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// The boundary tags carved and not in use (`tags` holds the tags in
    /// use, `tags_unused` is zeroed): an operation may reserve tags ahead
    /// and keep them for the next. For bad input, which must change nothing
    /// else, the event counters included.
    UnusedTags,
    /// The counts of allocations, frees, failures, imports and releases: a
    /// failed request counts a failure, and a span imported and handed
    /// back again counts the rest. The tag counts are kept as they are.
    Counts,
    /// All a refused operation may change: those counts, the search pauses
    /// (a refused search may pause) and both tag counts (tags are reserved
    /// before an operation and kept for the next).
    Refusal,
}

impl ArenaState {
    /// `arena`'s state now, less what a refusal may change
    /// ([`Leave::Refusal`]).
    pub fn of(arena: &Arena<'_>) -> Self {
        Self::leaving(arena, Leave::Refusal)
    }

    /// `arena`'s state now, less what `leave` says.
    pub fn leaving(arena: &Arena<'_>, leave: Leave) -> Self {
        let all = arena.stats();
        let uncounted = ArenaStats {
            allocs: 0,
            frees: 0,
            failures: 0,
            imports: 0,
            releases: 0,
            ..all
        };
        let stats = match leave {
            Leave::UnusedTags => ArenaStats {
                tags: all.tags - all.tags_unused,
                tags_unused: 0,
                ..all
            },
            Leave::Counts => uncounted,
            Leave::Refusal => ArenaStats {
                search_pauses: 0,
                tags: 0,
                tags_unused: 0,
                ..uncounted
            },
        };
        let segments = segments(arena, WalkKinds::ALL);
        Self { stats, segments }
    }
}

/// When a [`Faults`] schedule fails an attempt. Attempts are counted from
/// the moment the plan is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every attempt succeeds.
    Never,
    /// The k-th, 2k-th, 3k-th, ... attempts fail (`EveryKth(1)`: all).
    EveryKth(u64),
    /// The first n attempts succeed; every later one fails.
    After(u64),
}

/// A failure schedule shared by the things that consult it (a source's
/// imports, a constructor), with counts of attempts and injected failures.
#[derive(Debug)]
pub struct Faults {
    /// The plan and the attempts made under it.
    plan: Mutex<(Plan, u64)>,
    attempts: AtomicU64,
    injected: AtomicU64,
}

impl Faults {
    /// A schedule following `plan`.
    ///
    /// # Panics
    /// Panics on `EveryKth(0)`.
    pub fn new(plan: Plan) -> Self {
        let faults = Self {
            plan: Mutex::new((Plan::Never, 0)),
            attempts: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        };
        faults.set(plan);
        faults
    }

    fn lock(&self) -> MutexGuard<'_, (Plan, u64)> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `plan` from now on, counting its attempts from zero.
    ///
    /// # Panics
    /// Panics on `EveryKth(0)`.
    pub fn set(&self, plan: Plan) {
        assert_ne!(plan, Plan::EveryKth(0), "kmem-physmem: EveryKth(0)");
        *self.lock() = (plan, 0);
    }

    /// The plan in force.
    pub fn plan(&self) -> Plan {
        self.lock().0
    }

    /// Counts an attempt and says whether it is to fail (then counted as
    /// injected).
    pub fn fail_now(&self) -> bool {
        let mut g = self.lock();
        g.1 += 1;
        let n = g.1;
        let fail = match g.0 {
            Plan::Never => false,
            Plan::EveryKth(k) => n.is_multiple_of(k),
            Plan::After(ok) => n > ok,
        };
        drop(g);
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }

    /// Attempts made, under every plan.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Failures injected, under every plan.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

/// What passed through a [`FailingSource`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Imports asked for.
    pub attempts: u64,
    /// Imports failed on purpose.
    pub injected: u64,
    /// Imports the inner source refused by itself.
    pub inner_failures: u64,
    /// Spans handed out.
    pub imports: u64,
    /// Spans taken back.
    pub releases: u64,
    /// Spans handed out and not taken back.
    pub outstanding_spans: usize,
    /// Units in those spans.
    pub outstanding_bytes: usize,
}

/// A [`Source`] over another that fails imports on a [`Faults`] schedule
/// (with [`AllocError::Exhausted`], as a source out of resources does), and
/// keeps every span it hands out until it comes back. A release of a span it
/// did not hand out, or with another size, panics: the importer has lost
/// track of its spans.
pub struct FailingSource<'a> {
    inner: &'a dyn Source,
    faults: Faults,
    /// Outstanding spans: base -> size.
    spans: Mutex<BTreeMap<usize, usize>>,
    imports: AtomicU64,
    releases: AtomicU64,
    inner_failures: AtomicU64,
}

impl<'a> FailingSource<'a> {
    /// Wraps `inner`, failing imports as `plan` says.
    pub fn new(inner: &'a dyn Source, plan: Plan) -> Self {
        Self {
            inner,
            faults: Faults::new(plan),
            spans: Mutex::new(BTreeMap::new()),
            imports: AtomicU64::new(0),
            releases: AtomicU64::new(0),
            inner_failures: AtomicU64::new(0),
        }
    }

    /// The schedule (to change the plan, or read its counts).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn spans(&self) -> MutexGuard<'_, BTreeMap<usize, usize>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counts so far.
    pub fn stats(&self) -> SourceStats {
        let spans = self.spans();
        SourceStats {
            attempts: self.faults.attempts(),
            injected: self.faults.injected(),
            inner_failures: self.inner_failures.load(Ordering::Relaxed),
            imports: self.imports.load(Ordering::Relaxed),
            releases: self.releases.load(Ordering::Relaxed),
            outstanding_spans: spans.len(),
            outstanding_bytes: spans.values().sum(),
        }
    }

    fn import_with(
        &self,
        size: usize,
        import: impl FnOnce() -> Result<usize, AllocError>,
    ) -> Result<usize, AllocError> {
        if self.faults.fail_now() {
            return Err(AllocError::Exhausted);
        }
        match import() {
            Ok(base) => {
                let mut spans = self.spans();
                let overlaps = spans.range(..base.saturating_add(size)).next_back();
                if let Some((&b, &s)) = overlaps.filter(|&(&b, &s)| b + s > base) {
                    panic!("kmem-physmem: span {base:#x}+{size:#x} overlaps {b:#x}+{s:#x}");
                }
                spans.insert(base, size);
                self.imports.fetch_add(1, Ordering::Relaxed);
                Ok(base)
            }
            Err(e) => {
                self.inner_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

// SAFETY: forwards the inner source's spans unchanged (or fails), and its
// memory-ness, so the inner source's promise is this one's.
unsafe impl Source for FailingSource<'_> {
    fn import(&self, size: usize) -> Result<usize, AllocError> {
        self.import_with(size, || self.inner.import(size))
    }

    fn import_aligned(&self, size: usize, align: usize) -> Result<usize, AllocError> {
        self.import_with(size, || self.inner.import_aligned(size, align))
    }

    fn import_fit(&self, want: &SpanFit) -> Result<usize, AllocError> {
        self.import_with(want.size, || self.inner.import_fit(want))
    }

    fn places_spans(&self) -> bool {
        self.inner.places_spans()
    }

    unsafe fn release(&self, base: usize, size: usize) {
        let held = self.spans().remove(&base);
        assert_eq!(
            held,
            Some(size),
            "kmem-physmem: release of {base:#x}+{size:#x}, which was not handed out so"
        );
        self.releases.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded: the span the inner source supplied (checked
        // against the spans handed out, above).
        unsafe { self.inner.release(base, size) };
    }

    fn import_quantum(&self) -> usize {
        self.inner.import_quantum()
    }

    fn is_memory(&self) -> bool {
        self.inner.is_memory()
    }

    unsafe fn add_importer(&self) {
        // SAFETY: forwarded.
        unsafe { self.inner.add_importer() };
    }

    unsafe fn remove_importer(&self) {
        // SAFETY: forwarded.
        unsafe { self.inner.remove_importer() };
    }

    fn as_arena(&self) -> Option<&Arena<'_>> {
        self.inner.as_arena()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(plan: Plan, n: usize) -> Vec<bool> {
        let f = Faults::new(plan);
        (0..n).map(|_| f.fail_now()).collect()
    }

    #[test]
    fn plans_fail_where_they_say() {
        assert_eq!(pattern(Plan::Never, 3), [false; 3]);
        assert_eq!(pattern(Plan::EveryKth(1), 3), [true; 3]);
        assert_eq!(
            pattern(Plan::EveryKth(3), 7),
            [false, false, true, false, false, true, false]
        );
        assert_eq!(pattern(Plan::After(2), 4), [false, false, true, true]);
        assert_eq!(pattern(Plan::After(0), 2), [true, true]);
    }

    #[test]
    fn setting_a_plan_restarts_its_count() {
        let f = Faults::new(Plan::EveryKth(2));
        assert!(!f.fail_now());
        f.set(Plan::EveryKth(2));
        assert!(!f.fail_now(), "counted from the new plan");
        assert!(f.fail_now());
        assert_eq!((f.attempts(), f.injected()), (3, 1));
        assert_eq!(f.plan(), Plan::EveryKth(2));
    }

    #[test]
    #[should_panic(expected = "EveryKth(0)")]
    fn every_zeroth_is_refused() {
        Faults::new(Plan::EveryKth(0));
    }
}
