//! Fault injection at the slab layer (DESIGN.md section 7; the anchors'
//! F1-F3): caches whose source arena's imports fail on a schedule, whose
//! constructor fails on a schedule, whose source arena runs out of
//! boundary tags, and `ATOMIC` allocations at exhaustion.
//!
//! Every refused allocation returns its typed error, only when a fault was
//! injected into it, and leaves the cache's objects as they were; after
//! every step the checkers pass (`KmemCache::check`, `Arena::check`), the
//! cache counts exactly the objects the test holds, and every constructed
//! object is out of its slab (held, or cached in a magazine: `slab_busy`).
//! Once everything is freed, reaped and destroyed, the source arena holds
//! nothing and its source has every span back: nothing leaked.
//!
//! Each test prints a `fault-injection ...` line with what it injected
//! (`--nocapture` shows them).

mod common;

use core::sync::atomic::{AtomicUsize, Ordering};

use common::{caches_over, with_caches_using_on, with_ram};
use kmem_arena::{Arena, Policy};
use kmem_magazine::{Cpu, ManualCpus};
use kmem_physmem::faults::{ArenaState, FailingSource, Faults, Plan};
use kmem_physmem::{scale, seed, PhysMem, Rng, PAGE_SIZE};
use kmem_slab::{
    AllocError, AllocFlags, CacheBuilder, CacheFlags, CacheStats, CtorError, KmemCache, ObjectOps,
};

/// Fake RAM for every test.
const RAM: usize = 16 << 20;

/// The kinds of cache tried: small objects with and without magazines,
/// bufctl objects with magazines, and a `DEBUG` cache.
const KINDS: [(usize, CacheFlags); 4] = [
    (64, CacheFlags::empty()),
    (64, CacheFlags::NOMAGAZINE),
    (1024, CacheFlags::empty()),
    (200, CacheFlags::DEBUG),
];

/// The same kinds with objects large enough that a few hundred of them
/// take many slabs, so the source is asked for spans again and again.
const GROWING_KINDS: [(usize, CacheFlags); 4] = [
    (512, CacheFlags::empty()),
    (512, CacheFlags::NOMAGAZINE),
    (1024, CacheFlags::empty()),
    (1024, CacheFlags::DEBUG),
];

const PLANS: [Plan; 6] = [
    Plan::EveryKth(1),
    Plan::EveryKth(2),
    Plan::EveryKth(3),
    Plan::EveryKth(7),
    Plan::After(0),
    Plan::After(5),
];

/// Counts constructions and destructions, and fails constructions on a
/// [`Faults`] schedule.
struct FaultyOps {
    faults: Faults,
    ctors: AtomicUsize,
    dtors: AtomicUsize,
}

impl FaultyOps {
    fn new(plan: Plan) -> Self {
        Self {
            faults: Faults::new(plan),
            ctors: AtomicUsize::new(0),
            dtors: AtomicUsize::new(0),
        }
    }

    fn constructed(&self) -> u64 {
        (self.ctors.load(Ordering::SeqCst) - self.dtors.load(Ordering::SeqCst)) as u64
    }
}

impl ObjectOps for FaultyOps {
    fn construct(&self, _obj: usize, _flags: AllocFlags) -> Result<(), CtorError> {
        if self.faults.fail_now() {
            return Err(CtorError);
        }
        self.ctors.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn destruct(&self, _obj: usize) {
        self.dtors.fetch_add(1, Ordering::SeqCst);
    }
}

/// The counters a refused allocation may change (and how): `alloc_fails`
/// and `ctor_fails` go up; a slab grown for an object whose constructor
/// then failed stays, empty, until reaped.
fn objects(s: &CacheStats) -> (u64, u64, u64) {
    (s.buf_in_use, s.slab_busy, s.allocs)
}

/// What one randomized run saw.
#[derive(Default, Debug)]
struct Tally {
    allocs: u64,
    refused: u64,
}

/// What is being injected into, for [`drive`].
struct Injection<'f> {
    /// Reads the count of faults injected so far.
    injected: &'f dyn Fn() -> u64,
    /// The one error such a fault may cause.
    expected: AllocError,
    /// Objects held at the peak of a growth phase.
    peak: usize,
}

/// Random allocations (random flags) and frees on `c`, in phases of growth
/// and shrinkage with a reap every 100 steps, with every invariant of the
/// file checked after each step. `source` is `c`'s source arena.
fn drive<C: Cpu>(
    c: &KmemCache<'_, C>,
    ops: &FaultyOps,
    source: &Arena<'_>,
    inj: &Injection<'_>,
    rng: &mut Rng,
    steps: usize,
) -> Tally {
    let (injected, expected) = (inj.injected, inj.expected);
    let mut live = Vec::new();
    let mut tally = Tally::default();
    for step in 0..steps {
        let ctx = || format!("cache {} ({:?}), step {step}", c.name(), c.flags());
        // Growth phases long enough to reach the peak.
        let target = if (step / (inj.peak * 3 / 2)).is_multiple_of(2) {
            inj.peak
        } else {
            10
        };
        if live.len() < target && rng.chance(2, 3) {
            let flags =
                [AllocFlags::empty(), AllocFlags::ATOMIC, AllocFlags::ZERO][rng.below(3) as usize];
            let (before, arena, faults) = (c.stats(), ArenaState::of(source), injected());
            tally.allocs += 1;
            match c.alloc(flags) {
                Ok(obj) => live.push(obj),
                Err(e) => {
                    assert_eq!(e, expected, "{}", ctx());
                    assert!(injected() > faults, "{}: refused without a fault", ctx());
                    let after = c.stats();
                    assert_eq!(objects(&after), objects(&before), "{}", ctx());
                    assert_eq!(after.alloc_fails, before.alloc_fails + 1, "{}", ctx());
                    if expected == AllocError::Exhausted {
                        assert_eq!(after.slabs, before.slabs, "{}", ctx());
                        assert_eq!(ArenaState::of(source), arena, "{}: source changed", ctx());
                    }
                    tally.refused += 1;
                }
            }
        } else if !live.is_empty() {
            let obj = live.swap_remove(rng.below(live.len() as u64) as usize);
            // SAFETY: allocated from `c` above, freed once.
            unsafe { c.free(obj) }.unwrap_or_else(|e| panic!("{}: {e}", ctx()));
        }
        if step % 100 == 99 {
            // Give idle objects and empty slabs back, so slabs (and the
            // source's spans) come and go.
            c.flush_current();
            c.reap();
        }
        c.check().unwrap_or_else(|e| panic!("{}: {e}", ctx()));
        source
            .check()
            .unwrap_or_else(|e| panic!("{}: source: {e}", ctx()));
        let s = c.stats();
        assert_eq!(s.buf_in_use, live.len() as u64, "{}", ctx());
        assert_eq!(
            ops.constructed(),
            s.slab_busy,
            "{}: constructed objects",
            ctx()
        );
    }
    for obj in live {
        // SAFETY: as above.
        unsafe { c.free(obj) }.unwrap();
    }
    tally
}

/// Frees everything `c` holds back to `source` and destroys `c`; the source
/// must then hold nothing of it.
fn tear_down<C: Cpu>(c: kmem_slab::Cache<'_, C>, ops: &FaultyOps, source: &Arena<'_>) {
    c.reap();
    c.check().unwrap();
    c.destroy().unwrap();
    assert_eq!(ops.constructed(), 0, "an object was not destructed");
    source.check().unwrap();
    let st = source.stats();
    assert_eq!((st.live, st.allocated), (0, 0), "slabs leaked: {st:?}");
}

/// One CPU slot, chosen by hand: runs are reproducible.
fn cpu() -> ManualCpus<1> {
    ManualCpus::new()
}

/// A page arena importing from the base through `source`, its tags from
/// the base.
fn pages<'a>(source: &'a FailingSource<'a>, base: &'a Arena<'a>) -> Arena<'a> {
    Arena::builder("faulty_pages")
        .quantum(PAGE_SIZE)
        .source(source)
        .tags_from(base)
        .build()
        .unwrap()
}

#[test]
fn caches_over_imports_failing_every_kth_or_after_n() {
    let seed = seed(0x6661_756c_7473_0011);
    let mut rng = Rng::new(seed);
    let (mut total, mut injected) = (Tally::default(), 0);
    let cpu = cpu();
    for (size, flags) in GROWING_KINDS {
        for plan in PLANS {
            with_ram(RAM, |base, _| {
                // The caches' source and ops, made first: they outlive the
                // caches.
                let source = FailingSource::new(base, Plan::Never);
                let mut pages = pages(&source, base);
                let ops = FaultyOps::new(Plan::Never);
                let (t, src) = caches_over(base, &cpu, |caches| {
                    let c = caches
                        .create(
                            CacheBuilder::new("faulty", size)
                                .flags(flags)
                                .source(&pages)
                                .ops(&ops),
                        )
                        .unwrap();
                    source.faults().set(plan);
                    let t = drive(
                        &c,
                        &ops,
                        &pages,
                        &Injection {
                            injected: &|| source.faults().injected(),
                            expected: AllocError::Exhausted,
                            peak: 600,
                        },
                        &mut rng,
                        1200 * scale(),
                    );
                    tear_down(c, &ops, &pages);
                    let src = source.stats();
                    assert!(src.injected > 0, "{plan:?} never bit");
                    assert_eq!((src.outstanding_spans, src.imports), (0, src.releases));
                    (t, src)
                });
                pages.destroy().unwrap();
                println!(
                    "fault-injection slab imports {plan:?}, {size} B {flags:?}: {} allocations, \
                     {} imports failed on purpose, {} refused, 0 bytes leaked",
                    t.allocs, src.injected, t.refused
                );
                total.allocs += t.allocs;
                total.refused += t.refused;
                injected += src.injected;
            });
        }
    }
    println!(
        "fault-injection slab imports (seed {seed}): {} allocations, {injected} imports failed \
         on purpose, {} refused, 0 bytes leaked",
        total.allocs, total.refused
    );
}

#[test]
fn constructors_failing_every_kth_or_after_n() {
    let seed = seed(0x6661_756c_7473_0012);
    let mut rng = Rng::new(seed);
    let (mut total, mut injected) = (Tally::default(), 0);
    let cpu = cpu();
    for (size, flags) in KINDS {
        for plan in PLANS {
            let ops = FaultyOps::new(plan);
            with_caches_using_on(&cpu, &ops, RAM, |caches, kpages, ops| {
                let c = caches
                    .create(
                        CacheBuilder::new("ctor", size)
                            .flags(flags)
                            .source(kpages)
                            .ops(ops),
                    )
                    .unwrap();
                let t = drive(
                    &c,
                    ops,
                    kpages,
                    &Injection {
                        injected: &|| ops.faults.injected(),
                        expected: AllocError::Ctor,
                        peak: 200,
                    },
                    &mut rng,
                    1200 * scale(),
                );
                let s = c.stats();
                assert_eq!(s.ctor_fails, t.refused);
                assert!(ops.faults.injected() > 0, "{plan:?} never bit");
                tear_down(c, ops, kpages);
                println!(
                    "fault-injection slab constructors {plan:?}, {size} B {flags:?}: {} \
                     allocations, {} constructors failed on purpose, {} refused, 0 bytes leaked",
                    t.allocs,
                    ops.faults.injected(),
                    t.refused
                );
                total.allocs += t.allocs;
                total.refused += t.refused;
                injected += ops.faults.injected();
            });
        }
    }
    println!(
        "fault-injection slab constructors (seed {seed}): {} allocations, {injected} \
         constructors failed on purpose, {} refused, 0 bytes leaked",
        total.allocs, total.refused
    );
}

/// The cache's source arena takes its boundary tags from a tiny base arena:
/// growing a slab fails when the tags run out, with `Exhausted`, changing
/// nothing.
#[test]
fn source_arena_runs_out_of_tags() {
    let seed = seed(0x6661_756c_7473_0013);
    let mut rng = Rng::new(seed);
    let cpu = cpu();
    for (size, flags) in GROWING_KINDS {
        with_ram(RAM, |base, _| {
            // The caches' source and ops, made first: they outlive the
            // caches.
            let tag_ram = PhysMem::new(4 * PAGE_SIZE);
            let tags = tag_ram.base_arena("tags", 64);
            let tags_start = tags.amt_free() + tags.stats().metadata;
            let source = FailingSource::new(base, Plan::Never);
            let mut pages = Arena::builder("tagless_pages")
                .quantum(PAGE_SIZE)
                .source(&source)
                .tags_from(&tags)
                .build()
                .unwrap();
            let ops = FaultyOps::new(Plan::Never);
            let t = caches_over(base, &cpu, |caches| {
                let c = caches
                    .create(
                        CacheBuilder::new("tagless", size)
                            .flags(flags)
                            .source(&pages)
                            .ops(&ops),
                    )
                    .unwrap();
                // The "fault" here is a condition, not an event: a refusal is
                // accounted for when the page arena has too few unused tags for
                // an import and its tag arena no page to give (an import takes
                // two tags, so with two left the retry after it finds none).
                let no_tags = AtomicUsize::new(0);
                let count_no_tags = || {
                    if pages.stats().tags_unused <= 2 && tags.amt_free() < PAGE_SIZE {
                        no_tags.fetch_add(1, Ordering::SeqCst);
                    }
                    no_tags.load(Ordering::SeqCst) as u64
                };
                let t = drive(
                    &c,
                    &ops,
                    &pages,
                    &Injection {
                        injected: &count_no_tags,
                        expected: AllocError::Exhausted,
                        peak: 1000,
                    },
                    &mut rng,
                    3000 * scale(),
                );
                assert!(t.refused > 0, "{size} B {flags:?}: the tags never ran out");
                assert!(
                    t.refused < t.allocs,
                    "{size} B {flags:?}: the cache never grew"
                );
                tear_down(c, &ops, &pages);
                assert_eq!(source.stats().outstanding_spans, 0);
                t
            });
            pages.destroy().unwrap();
            drop(pages);
            tags.check().unwrap();
            let st = tags.stats();
            assert_eq!(st.live, 0, "tag pages leaked: {st:?}");
            assert_eq!(st.free + st.metadata, tags_start);
            println!(
                "fault-injection slab tags (seed {seed}), {size} B {flags:?}: {} allocations, {} \
                 refused when the source arena ran out of tags, 0 bytes leaked",
                t.allocs, t.refused
            );
        });
    }
}

/// At exhaustion an `ATOMIC` allocation returns `Exhausted` at once without
/// running the constructor, while objects cached in magazines are still
/// handed out; frees with no memory for magazines go to the slab layer,
/// destructed. Every object is accounted for throughout: constructed
/// objects = objects out of their slabs.
#[test]
fn atomic_allocations_at_exhaustion() {
    let cpu = cpu();
    with_ram(RAM, |base, _| {
        // The caches' source and ops, made first: they outlive the caches.
        let source = FailingSource::new(base, Plan::Never);
        let mut pages = pages(&source, base);
        let ops = FaultyOps::new(Plan::Never);
        caches_over(base, &cpu, |caches| {
            let c = caches
                .create(CacheBuilder::new("atomic", 64).source(&pages).ops(&ops))
                .unwrap();
            let objs: Vec<usize> = (0..40)
                .map(|_| c.alloc(AllocFlags::ATOMIC).unwrap())
                .collect();
            // Half go to magazines; the source stops supplying.
            for &obj in &objs[..20] {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(obj) }.unwrap();
            }
            source.faults().set(Plan::After(0));
            let cached = c.stats().slab_busy - c.stats().buf_in_use;
            assert!(cached > 0, "nothing cached in magazines");
            let mut held: Vec<usize> = objs[20..].to_vec();
            let ctors = ops.ctors.load(Ordering::SeqCst);
            // Drain the slabs' free objects and the magazines, then exhaustion.
            let refused = loop {
                match c.alloc(AllocFlags::ATOMIC) {
                    Ok(obj) => held.push(obj),
                    Err(e) => break e,
                }
                assert!(held.len() < 1 << 16, "never exhausted");
            };
            assert_eq!(refused, AllocError::Exhausted);
            let before = c.stats();
            for _ in 0..10 {
                assert_eq!(c.alloc(AllocFlags::ATOMIC), Err(AllocError::Exhausted));
            }
            let after = c.stats();
            assert_eq!(objects(&after), objects(&before));
            assert_eq!(after.alloc_fails, before.alloc_fails + 10);
            assert!(source.stats().injected >= 11);
            assert_eq!(
                ops.ctors.load(Ordering::SeqCst) - ctors,
                held.len() - 20 - cached as usize,
                "constructors ran for objects from slabs only"
            );
            assert_eq!(ops.constructed(), after.slab_busy);
            c.check().unwrap();
            pages.check().unwrap();
            // Frees with the base arena out of memory for magazines.
            let mut hog = Vec::new();
            while let Ok(p) = base.alloc(PAGE_SIZE, Policy::InstantFit) {
                hog.push(p);
            }
            for obj in held {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(obj) }.unwrap();
                assert_eq!(ops.constructed(), c.stats().slab_busy);
            }
            for p in hog {
                // SAFETY: allocated above with this size; not used after.
                unsafe { base.free_memory(p, PAGE_SIZE) }.unwrap();
            }
            source.faults().set(Plan::Never);
            tear_down(c, &ops, &pages);
            assert_eq!(source.stats().outstanding_spans, 0);
        });
        pages.destroy().unwrap();
        println!(
            "fault-injection slab atomic: {} imports failed on purpose, refused at once with \
             Exhausted, 0 objects lost",
            source.stats().injected
        );
    });
}
