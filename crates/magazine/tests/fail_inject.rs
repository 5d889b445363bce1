//! Failure injection at the magazine layer with the `fail-inject` feature
//! (`kmem_magazine::fail`, `Layer::Magazine`): allocations of empty
//! magazines failing every k-th time or at a seeded random 1 in n. A free
//! that needed a new magazine and did not get one hands its object back
//! (for the layer below), exactly as when the magazine source is out of
//! memory, and only then; every object put in comes out exactly once; the
//! magazines alive are the source's; and once drained, the source has every
//! magazine back.
//!
//! The plans are process-wide: each test holds a [`FailPlans`] guard. Each
//! prints a `fail-inject ...` line with what it injected (`--nocapture`
//! shows them).

mod common;

use core::sync::atomic::Ordering;
use std::collections::BTreeSet;

use common::{Heap, OneHeap};
use kmem_magazine::fail::{self, Layer, Plan};
use kmem_magazine::{CpuCache, Magazines, ManualCpus};
use kmem_physmem::faults::FailPlans;
use kmem_physmem::{scale, seed, Rng};

const SLOTS: usize = 2;

/// Random frees (of fresh objects) and allocations on two CPU slots, with
/// the depot drained now and then so that magazines go back to the source
/// and must be allocated again. Returns (frees refused, failures injected).
fn run(plan: Plan, rng: &mut Rng) -> (u64, u64) {
    fail::clear_all();
    let (cpus, heap) = (ManualCpus::<SLOTS>::new(), Heap::default());
    let mut slots: Vec<CpuCache> = (0..SLOTS).map(|_| CpuCache::new()).collect();
    let mut m = Magazines::new(&cpus, &mut slots, 64).unwrap();
    fail::set(Layer::Magazine, plan);
    // The objects the layer holds.
    let mut cached = BTreeSet::new();
    let (mut next, mut refused) = (0, 0);
    for step in 0..10_000 * scale() {
        let ctx = || format!("{plan:?}, step {step}");
        cpus.set_slot(rng.below(SLOTS as u64) as usize);
        if rng.chance(3, 5) {
            let (before, injected) = (m.stats(), fail::injected(Layer::Magazine));
            match m.put(next, &heap) {
                Ok(()) => assert!(cached.insert(next)),
                Err(obj) => {
                    assert_eq!(obj, next, "{}: another object came back", ctx());
                    assert!(
                        fail::injected(Layer::Magazine) > injected,
                        "{}: refused without an injected fault",
                        ctx()
                    );
                    let after = m.stats();
                    assert_eq!(after.magazines_allocated, before.magazines_allocated);
                    assert_eq!(after.cpu_frees, before.cpu_frees, "{}", ctx());
                    refused += 1;
                }
            }
            next += 1;
        } else if let Some(obj) = m.alloc() {
            assert!(cached.remove(&obj), "{}: {obj} was not in the layer", ctx());
        }
        if step % 500 == 499 {
            m.drain_depot_to(&heap, |obj| assert!(cached.remove(&obj), "{}", ctx()));
        }
        let st = m.stats();
        let live = heap.live.load(Ordering::SeqCst) as u64;
        assert_eq!(st.magazines_live(), live, "{}", ctx());
    }
    fail::set(Layer::Magazine, Plan::Off);
    m.drain_all_to(&heap, |obj| {
        assert!(cached.remove(&obj), "{plan:?}: drained twice")
    });
    assert!(cached.is_empty(), "{plan:?}: objects lost: {cached:?}");
    assert_eq!(
        heap.live.load(Ordering::SeqCst),
        0,
        "{plan:?}: magazines leaked"
    );
    (refused, fail::injected(Layer::Magazine))
}

/// Each injected failure refuses exactly one free, which hands back its
/// own object; nothing is lost or duplicated.
#[test]
fn magazine_allocations_fail_every_kth_or_one_in_n() {
    let _plans = FailPlans::take();
    let seed = seed(0x6661_696c_0000_0003);
    let mut rng = Rng::new(seed);
    for plan in FailPlans::standard(seed) {
        let (refused, injected) = run(plan, &mut rng);
        assert!(injected > 0, "{plan:?} never bit");
        assert_eq!(refused, injected, "{plan:?}: a failure without a refusal");
        println!(
            "fail-inject magazines {plan:?} (seed {seed}): {injected} magazine allocations \
             failed on purpose, {refused} frees handed back, 0 objects or magazines lost"
        );
    }
}
