//! The arena target's actions and what each must do.

use core::fmt::Debug;
use std::collections::{BTreeMap, BTreeSet};

use kmem_arena::{AllocError, Arena, Policy};
use kmem_physmem::faults::{ArenaState, FailingSource};
use kmem_physmem::kit::{lcm, Live};
use kmem_physmem::model::{ArenaModel, Placement};

use super::{
    assert_refused, assert_unchanged, Action, Child, Event, Mirror, Point, Recorder, Side, Size,
};
use crate::input::Report;

mod frees;
mod spans;
mod xalloc;

/// The child arena and what the harness knows of it.
struct ChildWorld<'w> {
    setup: Child,
    recorder: &'w Recorder<'w>,
    source: &'w FailingSource<'w>,
    arena: Option<Arena<'w>>,
    m: Mirror,
    /// Spans the parent handed to the child: base -> size.
    imports: BTreeMap<usize, usize>,
    /// Those of them the child kept (aligned to its quantum).
    kept: BTreeSet<usize>,
}

/// The arenas under test and their mirrors.
pub(super) struct World<'w> {
    parent: &'w Arena<'w>,
    pm: &'w mut Mirror,
    tags: &'w Arena<'w>,
    child: Option<ChildWorld<'w>>,
}

/// `size` rounded up to `q`, as the arena rounds (`None` on overflow).
fn round(size: usize, q: usize) -> Option<usize> {
    size.div_ceil(q).checked_mul(q)
}

/// The errors a plain `alloc` of `size` may refuse with before looking for
/// space.
fn alloc_errors(size: usize, q: usize) -> Vec<AllocError> {
    match (size, round(size, q)) {
        (0, _) => vec![AllocError::ZeroSize],
        (_, None) => vec![AllocError::Overflow],
        _ => Vec::new(),
    }
}

/// Builds the child arena over `source`, its tags from `tags`.
fn build_child<'w>(setup: Child, source: &'w FailingSource<'w>, tags: &'w Arena<'w>) -> Arena<'w> {
    Arena::builder("fuzz_child")
        .quantum(setup.quantum())
        .source(source)
        .tags_from(tags)
        .import_scale(u32::from(setup.import_scale % 4))
        .build()
        .expect("kmem-fuzz: child arena")
}

impl<'w> World<'w> {
    pub(super) fn new(
        parent: &'w Arena<'w>,
        pm: &'w mut Mirror,
        tags: &'w Arena<'w>,
        child: Option<(Child, &'w Recorder<'w>, &'w FailingSource<'w>)>,
    ) -> Self {
        let child = child.map(|(setup, recorder, source)| ChildWorld {
            setup,
            recorder,
            source,
            arena: Some(build_child(setup, source, tags)),
            m: Mirror::new(ArenaModel::new(setup.quantum())),
            imports: BTreeMap::new(),
            kept: BTreeSet::new(),
        });
        Self {
            parent,
            pm,
            tags,
            child,
        }
    }

    /// Runs `actions`, checking everything after each.
    pub(super) fn run<S: Debug>(&mut self, actions: &[Action], report: &Report<'_, S, Action>) {
        self.verify();
        for (i, a) in actions.iter().enumerate() {
            report.at(Some(i));
            self.step(a);
            self.verify();
        }
    }

    fn step(&mut self, a: &Action) {
        match *a {
            Action::Add(s, span) => self.add(self.side(s), span),
            Action::Alloc(s, size, fit) => self.alloc(self.side(s), size, fit.policy()),
            Action::Xalloc(s, size, xc) => self.xalloc(self.side(s), size, xc),
            Action::Free(s, which, shave, by_free) => {
                self.free(self.side(s), which, shave, by_free)
            }
            Action::BadFree(s, bad, by_free) => self.bad_free(self.side(s), bad, by_free),
            Action::Rescale(s) => {
                self.arena(self.side(s)).rescale_hash();
                self.sync();
            }
            Action::Reap(s) => {
                let freed = self.arena(self.side(s)).reap();
                assert_eq!(
                    freed, 0,
                    "kmem-fuzz: reap without quantum caches freed {freed}"
                );
                self.sync();
            }
            Action::Tick(s) => {
                let freed = self.arena(self.side(s)).tick();
                assert_eq!(
                    freed, 0,
                    "kmem-fuzz: tick without quantum caches freed {freed}"
                );
                self.sync();
            }
            Action::Purge(s, n) => self.purge(self.side(s), n),
            Action::Contains(s, p, size) => self.contains(self.side(s), p, size),
            Action::SetPlan(plan) => {
                if let Some(c) = &self.child {
                    c.source.faults().set(plan.faults());
                }
            }
            Action::DestroyChild => self.destroy_child(),
        }
    }

    // ---------------------------------------------------------------------
    // Access.

    /// `purge`: every piece handed over is free (overlaps nothing the
    /// harness holds) and the arena is as it was.
    fn purge(&mut self, s: Side, n: u8) {
        let a = self.arena(s);
        let q = a.quantum();
        let before = ArenaState::of(a);
        let mut pieces = Vec::new();
        a.purge((usize::from(n) + 1) * q, |at, len| pieces.push((at, len)));
        assert_unchanged(a, &before, "purge");
        for &(at, len) in &pieces {
            assert!(
                len > 0 && at % q == 0 && len % q == 0,
                "kmem-fuzz: purge piece {at:#x}+{len:#x}"
            );
            for l in &self.mirror(s).live {
                let size = round(l.size, q).expect("validated");
                assert!(
                    at + len <= l.addr || l.addr + size <= at,
                    "kmem-fuzz: purge handed over live {:#x}+{size:#x}",
                    l.addr
                );
            }
        }
        self.sync();
    }

    fn side(&self, s: Side) -> Side {
        match (s, &self.child) {
            (Side::Child, Some(_)) => Side::Child,
            _ => Side::Parent,
        }
    }

    fn arena(&self, s: Side) -> &Arena<'w> {
        match (s, &self.child) {
            (Side::Child, Some(c)) => c.arena.as_ref().expect("kmem-fuzz: child arena"),
            _ => self.parent,
        }
    }

    fn mirror(&mut self, s: Side) -> &mut Mirror {
        match (s, &mut self.child) {
            (Side::Child, Some(c)) => &mut c.m,
            _ => self.pm,
        }
    }

    fn model(&self, s: Side) -> &ArenaModel {
        match (s, &self.child) {
            (Side::Child, Some(c)) => &c.m.model,
            _ => &self.pm.model,
        }
    }

    fn name(s: Side) -> &'static str {
        match s {
            Side::Parent => "parent",
            Side::Child => "child",
        }
    }

    /// Failures injected into the child's imports so far.
    fn injected(&self) -> u64 {
        self.child
            .as_ref()
            .map_or(0, |c| c.source.faults().injected())
    }

    fn size(&self, s: Side, size: Size) -> usize {
        let q = self.arena(s).quantum();
        match size {
            Size::Units(n, less) => (usize::from(n) % 64 + 1) * q - usize::from(less) % q,
            Size::Large(n, less) => (usize::from(n) + 1) * q - usize::from(less) % q,
            Size::Raw(v) => v,
        }
    }

    fn point(&self, s: Side, p: Point) -> usize {
        let q = self.arena(s).quantum();
        let spans: Vec<_> = self.model(s).spans().collect();
        let pick = |k: u8| spans[usize::from(k) % spans.len()];
        match p {
            Point::In(_, units) if spans.is_empty() => (units as usize).saturating_mul(q),
            Point::After(_, units) if spans.is_empty() => usize::from(units) * q,
            Point::In(k, units) => {
                let (b, z) = pick(k);
                let units = units as usize % (z / q + 2);
                b.saturating_add(units * q)
            }
            Point::After(k, units) => {
                let (b, z) = pick(k);
                b.saturating_add(z).saturating_add(usize::from(units) * q)
            }
            Point::Raw(v) => v,
        }
    }

    // ---------------------------------------------------------------------
    // Keeping the models in step, and checking.

    /// Mirrors what happened behind the operation: the base parent's
    /// metadata, and the spans the parent handed to the child or took back.
    fn sync(&mut self) {
        if self.parent.is_base() {
            self.pm.model.sync_reserved(self.parent);
        }
        let Some(c) = &mut self.child else { return };
        let q = c.setup.quantum();
        for e in c.recorder.take() {
            match e {
                Event::Import(b, s) => {
                    self.pm.model.record_alloc(b, s);
                    c.imports.insert(b, s);
                    // The child hands a misaligned span straight back.
                    if b % q == 0 {
                        c.m.model.add_span(b, s);
                        c.kept.insert(b);
                    }
                }
                Event::Release(b, s) => {
                    assert_eq!(
                        c.imports.remove(&b),
                        Some(s),
                        "kmem-fuzz: the child released [{b:#x}, +{s:#x}), which it was not given"
                    );
                    if let Err(e) = self.pm.model.record_free(b, s) {
                        panic!("kmem-fuzz: release of [{b:#x}, +{s:#x}) to the parent: {e}");
                    }
                    if c.kept.remove(&b) {
                        c.m.model.remove_span(b, s);
                    }
                }
            }
        }
    }

    /// The checks after every action.
    fn verify(&mut self) {
        if let Err(e) = self.pm.model.check_against(self.parent) {
            panic!("kmem-fuzz: {e}");
        }
        let importers = match &self.child {
            Some(c) => {
                let arena = c.arena.as_ref().expect("kmem-fuzz: child arena");
                if let Err(e) = c.m.model.check_against(arena) {
                    panic!("kmem-fuzz: {e}");
                }
                let idle = c.m.model.wholly_free_spans();
                assert!(
                    idle.is_empty(),
                    "kmem-fuzz: the child keeps wholly free spans {idle:x?}"
                );
                let st = c.source.stats();
                assert_eq!(
                    (st.outstanding_spans, st.outstanding_bytes),
                    (c.imports.len(), c.imports.values().sum()),
                    "kmem-fuzz: the source's outstanding spans"
                );
                1
            }
            None => 0,
        };
        assert_eq!(
            self.parent.importers(),
            importers,
            "kmem-fuzz: parent importers"
        );
        if let Err(e) = self.tags.check() {
            panic!("kmem-fuzz: tag arena: {e}");
        }
    }

    /// Whether an import into the child can come back misaligned (its
    /// quantum neither divides the parent's nor is a power of two).
    fn import_may_misalign(&self) -> bool {
        self.child.as_ref().is_some_and(|c| {
            let (qp, qc) = (self.parent.quantum(), c.setup.quantum());
            qp % qc != 0 && !qc.is_power_of_two()
        })
    }

    /// Where the parent (an ID arena) could place the span the child needs
    /// to import for `want` units, if anywhere; `None` also when that
    /// cannot be told (a base parent, or quanta that can misalign).
    fn parent_could_supply(&self, want: usize) -> Option<usize> {
        let c = self.child.as_ref()?;
        if self.parent.is_base() || self.import_may_misalign() {
            return None;
        }
        let (qp, qc) = (self.parent.quantum(), c.setup.quantum());
        let least = round(want, lcm(qc, qp)?)?;
        let align = if qp % qc == 0 { qp } else { lcm(qp, qc)? };
        self.pm.model.find_fit(least, &Placement::anywhere(align))
    }

    /// An allocation of `size_r` (rounded) units failed with `e` after its
    /// arguments passed validation; `fit` is the model's lowest fitting
    /// start. Panics unless the failure is legitimate.
    fn judge(&self, s: Side, e: AllocError, fit: Option<usize>, import: u128, what: &str) {
        let arena = self.arena(s);
        let no_fit = || {
            if let Some(x) = fit {
                let gaps = self.model(s).gaps();
                panic!(
                    "kmem-fuzz: {} {what} failed with {e:?}, but [{x:#x}, ...) fits; free ranges {:x?}",
                    Self::name(s),
                    &gaps[..gaps.len().min(16)]
                );
            }
        };
        let child = s == Side::Child;
        match e {
            AllocError::Exhausted => no_fit(),
            AllocError::NoTags if arena.is_base() => {
                // `xalloc`, and next fit (which takes `xalloc`'s path),
                // reserve two tags; the other policies one.
                let need = if what.starts_with("xalloc") || what.contains("NextFit") {
                    2
                } else {
                    1
                };
                let unused = arena.stats().tags_unused;
                assert!(
                    unused < need,
                    "kmem-fuzz: {what} failed with NoTags holding {unused} unused tags"
                );
            }
            AllocError::NoTags if child && self.parent.is_base() => no_fit(),
            AllocError::BadImport if child && self.import_may_misalign() => no_fit(),
            AllocError::Overflow if child && import > usize::MAX as u128 => no_fit(),
            e => panic!(
                "kmem-fuzz: {} {what} failed with unexpected {e:?}",
                Self::name(s)
            ),
        }
    }

    // ---------------------------------------------------------------------
    // Allocation.

    fn alloc(&mut self, s: Side, size: Size, policy: Policy) {
        let size = self.size(s, size);
        let q = self.arena(s).quantum();
        let bad = alloc_errors(size, q);
        let before = ArenaState::of(self.arena(s));
        let injected = self.injected();
        let got = self.arena(s).alloc(size, policy);
        self.sync();
        let what = format!("alloc({size:#x}, {policy:?})");
        if self.refused(s, &what, &got, &bad, &before) {
            return;
        }
        let size_r = round(size, q).expect("validated");
        match got {
            Ok(x) => self.hold(s, x, size, false),
            Err(e) => {
                let fit = self.model(s).find_fit(size, &Placement::anywhere(q));
                let want = if policy == Policy::NextFit {
                    size_r.saturating_add(q)
                } else {
                    size_r
                };
                let import = 2 * want as u128 + q as u128 + self.parent.quantum() as u128;
                self.failed(s, e, fit, import, &what, &before);
                if s == Side::Child && self.injected() == injected {
                    if let Some(x) = self.parent_could_supply(want) {
                        panic!(
                            "kmem-fuzz: child {what} failed with {e:?} while the parent could supply the import at {x:#x}"
                        );
                    }
                }
            }
        }
    }

    /// True when `bad` (the errors an allocation's arguments call for) is
    /// not empty: then `got` must be one of them, and the arena as it was
    /// `before`.
    fn refused(
        &self,
        s: Side,
        what: &str,
        got: &Result<usize, AllocError>,
        bad: &[AllocError],
        before: &ArenaState,
    ) -> bool {
        if bad.is_empty() {
            return false;
        }
        assert_refused(what, got, bad);
        assert_unchanged(self.arena(s), before, &format!("refused {what}"));
        true
    }

    /// Records the allocation of `size` at `x` (by `xalloc` when `xalloc`)
    /// in the model and among those the harness holds.
    fn hold(&mut self, s: Side, x: usize, size: usize, xalloc: bool) {
        let m = self.mirror(s);
        m.model.record_alloc(x, size);
        m.live.push(Live {
            addr: x,
            size,
            xalloc,
        });
    }

    /// An allocation (`what`) whose arguments passed validation failed with
    /// `e`: legitimate ([`judge`](Self::judge)), and, outside a base arena
    /// (whose metadata may have moved), the arena as it was `before`.
    fn failed(
        &self,
        s: Side,
        e: AllocError,
        fit: Option<usize>,
        import: u128,
        what: &str,
        before: &ArenaState,
    ) {
        self.judge(s, e, fit, import, what);
        if !self.arena(s).is_base() {
            assert_unchanged(self.arena(s), before, &format!("failed {what}"));
        }
    }
}
