//! Fault injection at the slab layer: caches whose source arena's imports fail on a schedule, whose
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

use common::faults::{
    cpu, drive, objects, pages, tear_down, FaultyOps, Injection, Tally, GROWING_KINDS, KINDS, RAM,
};
use common::{caches_over, create_with_ops, with_caches_using_on, with_ram};
use kmem_arena::{Arena, Policy};
use kmem_physmem::faults::{FailingSource, Plan};
use kmem_physmem::{scale, seed, PhysMem, Rng, PAGE_SIZE};
use kmem_slab::{AllocError, AllocFlags, CacheBuilder};

const PLANS: [Plan; 6] = [
    Plan::EveryKth(1),
    Plan::EveryKth(2),
    Plan::EveryKth(3),
    Plan::EveryKth(7),
    Plan::After(0),
    Plan::After(5),
];

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
                    let c = create_with_ops(caches, "faulty", (size, flags), &pages, &ops);
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
                let c = create_with_ops(caches, "ctor", (size, flags), kpages, ops);
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
                let c = create_with_ops(caches, "tagless", (size, flags), &pages, &ops);
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
                        peak: 2000,
                    },
                    &mut rng,
                    6000 * scale(),
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
