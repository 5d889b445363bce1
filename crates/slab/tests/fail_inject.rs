//! Failure injection at the slab layer with the `fail-inject` feature
//! (`kmem_slab::fail`): slab growth (`Layer::SlabGrow`) and, under caches,
//! magazine allocation (`Layer::Magazine`) failing every k-th time or at a
//! seeded random 1 in n.
//!
//! A failed growth refuses the allocation with `Exhausted`, counted in
//! `alloc_fails`, only when a failure was injected, changing neither the
//! cache's objects nor its source arena; a failed magazine allocation
//! refuses nothing (the freed object goes to its slab, destructed). After
//! every step the checkers pass, the cache counts exactly the objects held,
//! and constructed objects are exactly those out of their slabs; once
//! everything is freed and the cache destroyed, the source arena holds
//! nothing and its source has every span back.
//!
//! The plans are process-wide: each test holds a [`FailPlans`] guard. Each
//! prints a `fail-inject ...` line with what it injected (`--nocapture`
//! shows them).

mod common;

use common::faults::{
    cpu, drive, pages, tear_down, FaultyOps, Injection, Tally, GROWING_KINDS, KINDS, RAM,
};
use common::{caches_over, create_with_ops, with_ram};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use kmem_physmem::faults::{self, FailPlans, FailingSource};
use kmem_physmem::{scale, seed, Rng};
use kmem_slab::fail::{self, Layer, Plan};

use kmem_slab::{AllocError, CacheBuilder, CacheFlags};

/// Every k-th attempt failing, and a seeded 1 in n.
fn plans(seed: u64) -> [Plan; 5] {
    FailPlans::standard(seed)
}

/// Creates a cache of `size`-byte objects with `flags` over a page arena
/// (imports accounted by a `FailingSource` that fails nothing itself), sets
/// `layer`'s plan, runs [`drive`] with `expected` as the one error allowed
/// (`None`: no refusal at all) and tears down. Returns the tally and the
/// failures injected.
fn run(
    (size, flags): (usize, CacheFlags),
    layer: Layer,
    plan: Plan,
    expected: Option<AllocError>,
    rng: &mut Rng,
) -> (Tally, u64) {
    let cpu = cpu();
    with_ram(RAM, |base, _| {
        // The caches' source and ops, made first: they outlive the caches.
        let source = FailingSource::new(base, faults::Plan::Never);
        let mut pages = pages(&source, base);
        let ops = FaultyOps::new(faults::Plan::Never);
        let t = caches_over(base, &cpu, |caches| {
            let c = create_with_ops(caches, "faulty", (size, flags), &pages, &ops);
            fail::clear_all();
            fail::set(layer, plan);
            let t = drive(
                &c,
                &ops,
                &pages,
                &Injection {
                    injected: &|| expected.map_or(0, |_| fail::injected(layer)),
                    expected: expected.unwrap_or(AllocError::Exhausted),
                    peak: 200,
                },
                rng,
                2400 * scale(),
            );
            if expected.is_some() {
                assert_eq!(c.stats().alloc_fails, t.refused, "refusals not counted");
            }
            tear_down(c, &ops, &pages);
            fail::set(layer, Plan::Off);
            let src = source.stats();
            assert_eq!((src.outstanding_spans, src.imports), (0, src.releases));
            t
        });
        pages.destroy().unwrap();
        (t, fail::injected(layer))
    })
}

/// Every cache kind (small and bufctl objects, with and without magazines,
/// `DEBUG`) with slab growth failing; a bufctl cache's growth also fails
/// when the bootstrap caches it takes its slab header and bufctls from
/// cannot grow.
#[test]
fn slab_growth_fails_every_kth_or_one_in_n() {
    let _plans = FailPlans::take();
    let seed = seed(0x6661_696c_0000_0004);
    let mut rng = Rng::new(seed);
    for kind in GROWING_KINDS {
        for plan in plans(seed) {
            let expected = Some(AllocError::Exhausted);
            let (t, injected) = run(kind, Layer::SlabGrow, plan, expected, &mut rng);
            assert!(injected > 0 && t.refused > 0, "{kind:?} {plan:?} never bit");
            println!(
                "fail-inject slab growth {plan:?}, {} B {:?} (seed {seed}): {} allocations, \
                 {injected} growths failed on purpose, {} refused, 0 bytes leaked",
                kind.0, kind.1, t.allocs, t.refused
            );
        }
    }
}

/// Caches with magazines whose magazine allocations fail: no allocation is
/// refused, and every object freed without a magazine goes back to its
/// slab, destructed.
#[test]
fn magazine_allocations_fail_under_caches() {
    let _plans = FailPlans::take();
    let seed = seed(0x6661_696c_0000_0005);
    let mut rng = Rng::new(seed);
    let with_magazines = KINDS
        .into_iter()
        .filter(|(_, flags)| !flags.contains(CacheFlags::NOMAGAZINE));
    for kind in with_magazines {
        for plan in plans(seed) {
            let (t, injected) = run(kind, Layer::Magazine, plan, None, &mut rng);
            assert!(injected > 0, "{kind:?} {plan:?} never bit");
            println!(
                "fail-inject slab magazines {plan:?}, {} B {:?} (seed {seed}): {} allocations, \
                 {injected} magazine allocations failed on purpose, 0 refused, 0 objects lost",
                kind.0, kind.1, t.allocs
            );
        }
    }
}

/// With every magazine allocation failing, frees past what the CPU's two
/// magazines hold flush a full one back to the slabs in one pass (a batch
/// flush) and go on into it, instead of each going to its slab alone.
#[test]
fn frees_without_new_magazines_flush_a_full_one() {
    let _plans = FailPlans::take();
    let cpu = cpu();
    with_ram(RAM, |base, _| {
        caches_over(base, &cpu, |caches| {
            let c = caches.create(CacheBuilder::new("flushed", 64)).unwrap();
            let objs: Vec<usize> = (0..200)
                .map(|_| c.alloc(kmem_slab::AllocFlags::empty()).unwrap())
                .collect();
            // The allocations' batch refills left the CPU a magazine; no
            // new one can be had from here on.
            fail::set(Layer::Magazine, Plan::EveryKth(1));
            let before = c.stats();
            for &obj in &objs {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(obj) }.unwrap();
            }
            fail::set(Layer::Magazine, Plan::Off);
            let after = c.stats();
            let (m0, m1) = (before.magazines.unwrap(), after.magazines.unwrap());
            assert!(m1.flushes > m0.flushes, "{m1:?}");
            // Every free was taken: by the magazines, or by a slab.
            assert_eq!(after.buf_in_use, 0);
            c.check().unwrap();
            println!(
                "fail-inject batch flush: 200 frees with no new magazine: {} flushes, {} objects \
                 still cached",
                m1.flushes - m0.flushes,
                after.slab_busy
            );
            c.destroy().unwrap();
        })
    });
}

/// A destructor that allocates from another cache of the same set (on the
/// same CPU slot) and frees it again.
struct Allocating {
    /// The other cache, set once it exists and cleared before it goes.
    other: AtomicPtr<()>,
    calls: AtomicUsize,
}

type Manual = kmem_magazine::ManualCpus<1>;

impl kmem_slab::ObjectOps for Allocating {
    fn construct(
        &self,
        _obj: usize,
        _flags: kmem_slab::AllocFlags,
    ) -> Result<(), kmem_slab::CtorError> {
        Ok(())
    }
    fn destruct(&self, _obj: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let other = self.other.load(Ordering::Relaxed);
        if other.is_null() {
            return;
        }
        // the test stores a live cache here and clears it before
        // the cache is destroyed; the lifetime is the test's stack's.
        // SAFETY: as just said.
        let other = unsafe { &*other.cast::<kmem_slab::KmemCache<'_, Manual>>() };
        let obj = other.alloc(kmem_slab::AllocFlags::empty()).unwrap();
        // SAFETY: allocated just above, freed once.
        unsafe { other.free(obj) }.unwrap();
    }
}

/// A cache with a destructor is never batch-flushed (the flush runs with
/// the CPU's slot held, where a destructor that allocates would wait for
/// the slot for ever on a platform that locks it, as `ManualCpus` does):
/// with no magazine to be had, its frees go to the slabs one by one, each
/// destructed, and every free returns (review of the batch flush,
/// 2026-12-05: this hung).
#[test]
fn a_cache_with_a_destructor_is_not_batch_flushed() {
    let _plans = FailPlans::take();
    let cpu = cpu();
    let ops = Allocating {
        other: AtomicPtr::new(core::ptr::null_mut()),
        calls: AtomicUsize::new(0),
    };
    with_ram(RAM, |base, _| {
        caches_over(base, &cpu, |caches| {
            let other = caches.create(CacheBuilder::new("other", 32)).unwrap();
            let ptr: *const kmem_slab::KmemCache<'_, Manual> = &*other;
            ops.other.store(ptr.cast_mut().cast(), Ordering::Relaxed);
            let c = caches
                .create(CacheBuilder::new("destructed", 64).ops(&ops))
                .unwrap();
            let objs: Vec<usize> = (0..200)
                .map(|_| c.alloc(kmem_slab::AllocFlags::empty()).unwrap())
                .collect();
            // Some frees fill the magazines there are; then none can be
            // made.
            for (i, &obj) in objs.iter().enumerate() {
                if i == 40 {
                    fail::set(Layer::Magazine, Plan::EveryKth(1));
                }
                // SAFETY: allocated above, freed once.
                unsafe { c.free(obj) }.unwrap();
            }
            fail::set(Layer::Magazine, Plan::Off);
            let m = c.stats().magazines.unwrap();
            assert_eq!(m.flushes, 0);
            assert!(ops.calls.load(Ordering::Relaxed) > 0);
            c.check().unwrap();
            c.destroy().unwrap();
            ops.other.store(core::ptr::null_mut(), Ordering::Relaxed);
            other.destroy().unwrap();
        })
    });
}
