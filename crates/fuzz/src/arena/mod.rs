//! The `arena` target: a parent arena and, optionally, a child importing
//! from it through a fault-injecting source, driven by fuzzer-chosen
//! actions and mirrored in [`ArenaModel`]s.
//!
//! The parent is an ID arena (quantum 1, 3, 8, 24 or 4096; tags from a base
//! arena over fake RAM; spans added by the actions) or a self-sufficient
//! base arena over 256 KiB of fake RAM (quantum 64 or 4096; its own tag
//! pages and hash tables are carved from the memory it hands out, so the
//! model learns them after every step). The child (quantum 1, 8, 16, 24 or
//! 4096, import scale 0..=3) imports through a
//! [`FailingSource`] over a recorder that logs every span the parent hands
//! out and takes back, so both models follow the imports exactly.
//!
//! Checked after every action: `check()` of both arenas and of the tag
//! arena; [`ArenaModel::check_against`] for both (spans, segments,
//! coalescing, totals); a sourced arena keeps no wholly free span; the
//! parent counts the child as its importer. Checked per action:
//! - a successful allocation lies in a span, overlaps nothing live, and
//!   satisfies its alignment, phase, nocross and window;
//! - a failed one is legitimate: bad input gets one of the typed errors
//!   its arguments call for and changes nothing ([`ArenaState`]); otherwise
//!   `Exhausted` only while the model finds no fitting range (never while
//!   one exists), `NoTags` only for a base arena out of tags, `BadImport`
//!   only for quanta an import can misalign, `Overflow` only for sizes whose
//!   import overflows; and a child's plain allocation fails only when the
//!   parent could not have supplied the import, or the source failed it;
//! - frees and adds return exactly the error the model predicts, changing
//!   nothing when they refuse; `contains` agrees with the model; a memory
//!   arena refuses the safe `free` and `xfree` (`MemoryArena`), changing
//!   nothing, and is freed through `free_memory` and `xfree_memory`;
//! - `destroy` of the child refuses with the live count while anything is
//!   allocated; at the end everything is freed, the child gives every span
//!   back and is destroyed, the parent refuses `destroy` while allocations
//!   are live and then destroys, and the tag arena gets every page back.

mod actions;

use core::fmt::Debug;
use std::sync::{Mutex, PoisonError};

use arbitrary::Arbitrary;
use kmem_arena::{AllocError, Arena, DestroyError, FreeError, Policy, Source};
use kmem_physmem::faults::{ArenaState, FailingSource};
use kmem_physmem::kit::Live;
use kmem_physmem::model::ArenaModel;
use kmem_physmem::PAGE_SIZE;

use crate::input::{decode, Plan, Report};
use crate::ram::Ram;

/// Fake RAM of the tag arena that ID and child arenas take tags from.
const TAG_RAM: usize = 2 << 20;
/// Fake RAM of a base-arena parent.
const MEMORY_RAM: usize = 256 << 10;
/// Quanta of an ID parent.
const ID_QUANTA: [usize; 5] = [1, 8, 4096, 3, 24];
/// Quanta of a base-arena parent.
const MEMORY_QUANTA: [usize; 2] = [64, 4096];
/// Quanta of the child.
const CHILD_QUANTA: [usize; 5] = [1, 8, 16, 4096, 24];
/// Units of an ID parent's initial span (at `16 * quantum`).
const ID_SPAN_UNITS: usize = 1 << 16;
/// Recent frees kept for double frees.
const FREED_KEPT: usize = 16;

/// How the run is set up.
#[derive(Arbitrary, Debug, Default)]
pub struct Setup {
    parent: Parent,
    child: Option<Child>,
}

/// The parent arena.
#[derive(Arbitrary, Debug)]
enum Parent {
    /// An ID arena of quantum `ID_QUANTA[quantum % 5]`.
    Ids { quantum: u8 },
    /// A base arena over fake RAM, quantum `MEMORY_QUANTA[quantum % 2]`.
    Memory { quantum: u8 },
}

impl Default for Parent {
    fn default() -> Self {
        Self::Ids { quantum: 0 }
    }
}

/// The child arena, importing from the parent.
#[derive(Arbitrary, Clone, Copy, Debug)]
struct Child {
    quantum: u8,
    import_scale: u8,
    plan: Plan,
}

impl Child {
    fn quantum(self) -> usize {
        CHILD_QUANTA[usize::from(self.quantum) % CHILD_QUANTA.len()]
    }
}

/// Which arena an action works on (`Child` falls back to the parent when
/// the setup has none).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The parent.
    Parent,
    /// The child.
    Child,
}

/// A request size.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Size {
    /// `1..=64` quanta, less up to a quantum (the arena rounds it up).
    Units(u8, u16),
    /// `1..=65536` quanta, less up to a quantum.
    Large(u16, u16),
    /// Any value at all (zero, or far too large, included).
    Raw(usize),
}

/// A place in or near the arena's spans.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Point {
    /// `units` quanta into a span (up to one quantum past its end).
    In(u8, u32),
    /// `units` quanta past the end of a span.
    After(u8, u16),
    /// Any address.
    Raw(usize),
}

/// An allocation policy.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Fit {
    /// Instant fit.
    Instant,
    /// Best fit.
    Best,
    /// Next fit.
    Next,
}

impl Fit {
    fn policy(self) -> Policy {
        match self {
            Self::Instant => Policy::InstantFit,
            Self::Best => Policy::BestFit,
            Self::Next => Policy::NextFit,
        }
    }
}

/// An alignment, phase or nocross value.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Num {
    /// The default (align 1, phase 0, no nocross).
    Default,
    /// `2^(n % 24)` (align), `2^(n % 40)` (nocross) or `n` quanta
    /// (phase): often bad.
    Small(u8),
    /// A value that suits the request: `2^(n % 13)` (align), a phase below
    /// the effective alignment, a nocross at least the size.
    Fitted(u8),
    /// Any value.
    Raw(usize),
}

/// An address window.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Window {
    /// None.
    None,
    /// `[point, usize::MAX)`.
    From(Point),
    /// `[0, point)`.
    Below(Point),
    /// `[point, point + slack quanta)`.
    Around(Point, u16),
    /// Any bounds.
    Raw(usize, usize),
}

/// `xalloc` constraints.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct Xc {
    align: Num,
    phase: Num,
    nocross: Num,
    window: Window,
    fit: Fit,
}

/// A free the model predicts the outcome of (an error, usually).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum BadFree {
    /// A live allocation with its size off by `1..=3` quanta.
    WrongSize(u16, u8, bool),
    /// An address inside a live allocation.
    Interior(u16, u32),
    /// A live allocation with size zero.
    ZeroSize(u16),
    /// A recently freed allocation, again.
    Double(u16),
    /// Any address and size.
    Foreign(Point, Size),
}

/// A span to add.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Span {
    /// `units + 1` quanta at `point` (rounded down to the quantum).
    At(Point, u16),
    /// A misaligned base.
    Misaligned(Point, u16),
    /// Zero units.
    Empty(Point),
    /// Any base and size.
    Raw(usize, usize),
}

/// One step of the run.
#[derive(Arbitrary, Debug)]
pub enum Action {
    /// `add`.
    Add(Side, Span),
    /// `alloc`.
    Alloc(Side, Size, Fit),
    /// `xalloc`.
    Xalloc(Side, Size, Xc),
    /// `free` or `xfree` of a live allocation (`which` modulo the count),
    /// with a size that rounds to the same quanta.
    Free(Side, u16, u16, bool),
    /// A bad free (by `free` when the flag is set, else `xfree`).
    BadFree(Side, BadFree, bool),
    /// `rescale_hash`.
    Rescale(Side),
    /// `reap`.
    Reap(Side),
    /// `contains`.
    Contains(Side, Point, Size),
    /// A new failure plan for the child's source.
    SetPlan(Plan),
    /// `destroy` the child (refused while it has allocations), then build
    /// a new one.
    DestroyChild,
    /// `tick`, the upkeep pass.
    Tick(Side),
    /// `purge` of free segments of at least `n + 1` quanta: nothing live is
    /// handed over and the arena is unchanged.
    Purge(Side, u8),
}

/// A span the parent handed out or took back.
#[derive(Clone, Copy, Debug)]
enum Event {
    Import(usize, usize),
    Release(usize, usize),
}

/// A [`Source`] over the parent that logs every span it passes.
struct Recorder<'p> {
    parent: &'p dyn Source,
    events: Mutex<Vec<Event>>,
}

impl Recorder<'_> {
    fn log(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(e);
    }

    fn take(&self) -> Vec<Event> {
        core::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

// SAFETY: every span it hands out is one the parent arena (a `Source`
// itself) handed out, unchanged, and `is_memory` is the parent's.
unsafe impl Source for Recorder<'_> {
    fn import(&self, size: usize) -> Result<usize, AllocError> {
        let base = self.parent.import(size)?;
        self.log(Event::Import(base, size));
        Ok(base)
    }

    fn import_aligned(&self, size: usize, align: usize) -> Result<usize, AllocError> {
        let base = self.parent.import_aligned(size, align)?;
        self.log(Event::Import(base, size));
        Ok(base)
    }

    unsafe fn release(&self, base: usize, size: usize) {
        self.log(Event::Release(base, size));
        // SAFETY: forwarded: the parent supplied this span.
        unsafe { self.parent.release(base, size) };
    }

    fn import_quantum(&self) -> usize {
        self.parent.import_quantum()
    }

    fn is_memory(&self) -> bool {
        self.parent.is_memory()
    }

    unsafe fn add_importer(&self) {
        // SAFETY: forwarded.
        unsafe { self.parent.add_importer() };
    }

    unsafe fn remove_importer(&self) {
        // SAFETY: forwarded.
        unsafe { self.parent.remove_importer() };
    }

    fn as_arena(&self) -> Option<&Arena<'_>> {
        self.parent.as_arena()
    }
}

/// One arena's model and what the harness holds of it.
struct Mirror {
    model: ArenaModel,
    live: Vec<Live>,
    freed: Vec<(usize, usize)>,
}

impl Mirror {
    fn new(model: ArenaModel) -> Self {
        Self {
            model,
            live: Vec::new(),
            freed: Vec::new(),
        }
    }

    fn remember_free(&mut self, addr: usize, size: usize) {
        if self.freed.len() == FREED_KEPT {
            self.freed.remove(0);
        }
        self.freed.push((addr, size));
    }
}

/// Runs the `arena` target on `data`.
///
/// # Panics
/// Panics when an arena breaks its contract or disagrees with its model.
pub fn run(data: &[u8]) {
    let (setup, actions): (Setup, Vec<Action>) = decode(data);
    let report = Report::new("arena", &setup, &actions);
    let tag_ram = Ram::new(TAG_RAM);
    let tags = tag_ram.base_arena("fuzz_tags", PAGE_SIZE);
    let tags_before = (tags.amt_free(), tags.stats().metadata);
    let memory = match setup.parent {
        Parent::Memory { quantum } => Some((
            Ram::new(MEMORY_RAM),
            MEMORY_QUANTA[usize::from(quantum) % MEMORY_QUANTA.len()],
        )),
        Parent::Ids { .. } => None,
    };
    let (mut parent, model) = match (&memory, &setup.parent) {
        (Some((ram, q)), _) => {
            let arena = ram.base_arena("fuzz_base", *q);
            let mut model = ArenaModel::new(*q);
            model.add_span(ram.start(), ram.len());
            model.sync_reserved(&arena);
            (arena, model)
        }
        (None, Parent::Ids { quantum }) => {
            let q = ID_QUANTA[usize::from(*quantum) % ID_QUANTA.len()];
            let (base, size) = (16 * q, ID_SPAN_UNITS * q);
            let arena = Arena::builder("fuzz_ids")
                .quantum(q)
                .span(base, size)
                .tags_from(&tags)
                .build()
                .expect("kmem-fuzz: ID arena");
            let mut model = ArenaModel::new(q);
            model.add_span(base, size);
            (arena, model)
        }
        (None, Parent::Memory { .. }) => unreachable!("memory is set for a memory parent"),
    };
    let mut mirror = Mirror::new(model);
    if let Some(child) = setup.child {
        let recorder = Recorder {
            parent: &parent,
            events: Mutex::new(Vec::new()),
        };
        let source = FailingSource::new(&recorder, child.plan.faults());
        let mut world = actions::World::new(
            &parent,
            &mut mirror,
            &tags,
            Some((child, &recorder, &source)),
        );
        world.run(&actions, &report);
        world.finish_child();
    } else {
        let mut world = actions::World::new(&parent, &mut mirror, &tags, None);
        world.run(&actions, &report);
    }
    report.at(None);
    finish_parent(&mut parent, mirror);
    drop(parent);
    tags.check().expect("kmem-fuzz: tag arena check");
    assert_eq!(
        tags.stats().live,
        0,
        "kmem-fuzz: tag pages or hash tables not given back"
    );
    assert_eq!(
        (tags.amt_free(), tags.stats().metadata),
        tags_before,
        "kmem-fuzz: the tag arena lost memory"
    );
}

/// Frees what is left in the parent (after `destroy` refused while it was
/// live) and destroys it.
fn finish_parent(parent: &mut Arena<'_>, mut m: Mirror) {
    let memory = parent.is_base();
    if !m.live.is_empty() {
        let meta = parent.stats().metadata;
        assert_destroy_refused(parent, &m.model, "the parent");
        assert_eq!(parent.stats().metadata, meta);
    }
    for l in m.live.drain(..) {
        let freed = free_to(parent, l.addr, l.size, !l.xalloc);
        assert_eq!(freed, Ok(()), "kmem-fuzz: final free of {l:x?}");
        m.model.record_free(l.addr, l.size).expect("model free");
        if memory {
            m.model.sync_reserved(parent);
        }
        parent.check().expect("kmem-fuzz: parent check");
    }
    if let Err(e) = m.model.check_against(parent) {
        panic!("kmem-fuzz: {e}");
    }
    assert_eq!(m.model.live(), 0);
    assert_eq!(
        parent.stats().live,
        0,
        "kmem-fuzz: the parent holds allocations"
    );
    if !memory {
        parent.destroy().expect("kmem-fuzz: parent destroy");
    }
}

/// Frees `[addr, +size)` in `arena` as `free` (`by_free`) or `xfree`
/// would: with those safe calls in an arena of integers; a memory arena
/// must refuse them, changing nothing, and is freed by `free_memory` or
/// `xfree_memory` ([`Live::free`]).
fn free_to(arena: &Arena<'_>, addr: usize, size: usize, by_free: bool) -> Result<(), FreeError> {
    let l = Live {
        addr,
        size,
        xalloc: !by_free,
    };
    // SAFETY: the harness never touches an arena's memory, nor frees here a
    // span the child imported; the arena refuses whatever the model does.
    unsafe { l.free(arena) }
}

/// Fails unless `arena` is as it was `before` `what` (a refused or failed
/// operation).
#[track_caller]
fn assert_unchanged(arena: &Arena<'_>, before: &ArenaState, what: &str) {
    assert_eq!(
        &ArenaState::of(arena),
        before,
        "kmem-fuzz: {what} changed the arena"
    );
}

/// `destroy` of `arena` (`what`), which holds the allocations `model`
/// records: refused with their count and size, changing nothing.
#[track_caller]
fn assert_destroy_refused(arena: &mut Arena<'_>, model: &ArenaModel, what: &str) {
    let before = ArenaState::of(arena);
    assert_eq!(
        arena.destroy(),
        Err(DestroyError::LiveAllocations {
            count: model.live(),
            bytes: model.allocated(),
        }),
        "kmem-fuzz: destroy of {what} with live allocations"
    );
    assert_unchanged(arena, &before, &format!("refused destroy of {what}"));
}

/// Fails unless `got` is an error among `allowed` (non-empty).
#[track_caller]
fn assert_refused<T: Debug, E: Debug + PartialEq>(what: &str, got: &Result<T, E>, allowed: &[E]) {
    match got {
        Err(e) if allowed.contains(e) => {}
        _ => panic!("kmem-fuzz: {what}: got {got:x?}, expected one of {allowed:x?}"),
    }
}
