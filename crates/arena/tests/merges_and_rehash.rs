//! The split and merge paths of the segment layer against a model: exact
//! fits that stay in the segment tree and are freed with every combination
//! of free neighbours, frees while an incremental rehash moves the chain
//! being freed from, spans released after every merge shape, base-arena
//! metadata frees, and a dense random run checked after every operation.
#![allow(missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use common::{sourced_arena, span_arena};
use kmem_arena::{Arena, Constraints, FnSource, Policy, SegmentKind, WalkKinds};
use kmem_physmem::kit::POLICIES;
use kmem_physmem::{PhysMem, Rng};

/// The arena's allocated (non-metadata) segments must be exactly `model`.
fn same_as_model(a: &Arena<'_>, model: &BTreeMap<usize, usize>, ctx: &str) {
    a.check().unwrap_or_else(|e| panic!("{ctx}: check: {e}"));
    let mut got = BTreeMap::new();
    a.walk(WalkKinds::ALLOCATED, |s| {
        if !s.metadata {
            got.insert(s.start, s.size);
        }
    });
    assert_eq!(&got, model, "{ctx}");
    let st = a.stats();
    assert_eq!(st.live, model.len(), "{ctx}: {st:?}");
}

/// Frees a random allocation of `live` (if any) with `xfree`.
fn free_random(a: &Arena<'_>, live: &mut BTreeMap<usize, usize>, rng: &mut Rng) {
    if live.is_empty() {
        return;
    }
    let i = rng.below(live.len() as u64) as usize;
    let (&x, &s) = live.iter().nth(i).unwrap();
    live.remove(&x);
    a.xfree(x, s).unwrap();
}

fn free_segs(a: &Arena<'_>) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    a.walk(WalkKinds::FREE, |s| {
        assert_eq!(s.kind, SegmentKind::Free);
        v.push((s.start, s.size));
    });
    v
}

/// Exact fits stay in the segment tree as allocated tags; free them with
/// every combination of neighbours (none, prev, next, both), at a span's
/// start and end, and check after each step.
#[test]
fn exact_fit_frees_with_every_neighbour_combination() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 64);
    for pattern in 0..16u32 {
        let a = span_arena("ids", 1, 1000, 50, &base);
        // Fill with 5 x 10.
        let v: Vec<usize> = (0..5)
            .map(|_| a.alloc(10, Policy::InstantFit).unwrap())
            .collect();
        assert_eq!(v, [1000, 1010, 1020, 1030, 1040]);
        // Free all, reallocate as exact fits into the holes: free 1 and 3,
        // then best-fit 10 twice takes the holes whole.
        let mut live: BTreeMap<usize, usize> = v.iter().map(|&x| (x, 10)).collect();
        for x in [1010, 1030] {
            a.free(x, 10).unwrap();
            live.remove(&x);
        }
        same_as_model(&a, &live, "holes");
        for _ in 0..2 {
            let x = a.alloc(10, Policy::BestFit).unwrap();
            live.insert(x, 10);
        }
        same_as_model(&a, &live, "exact fits");
        // Now free in an order given by `pattern` (permutation-ish).
        let mut order = vec![1000usize, 1010, 1020, 1030, 1040];
        let mut r = Rng::new(pattern as u64 + 1);
        for i in (1..order.len()).rev() {
            order.swap(i, r.below(i as u64 + 1) as usize);
        }
        for x in order {
            a.free(x, 10).unwrap();
            live.remove(&x);
            same_as_model(&a, &live, &format!("pattern {pattern} free {x}"));
        }
        assert_eq!(free_segs(&a), [(1000, 50)]);
        // And it still allocates.
        assert_eq!(a.alloc(50, Policy::InstantFit), Ok(1000));
        a.free(1000, 50).unwrap();
    }
}

/// Many allocations grow the hash (a rehash then runs incrementally over
/// the following inserts and removes); frees in random order with
/// allocations between, checked against a model, so frees hit chains that
/// are about to move, chain heads, middles and tails.
#[test]
fn frees_during_incremental_rehash() {
    let ram = PhysMem::new(64 << 20);
    let base = ram.base_arena("base", 64);
    let a = span_arena("ids", 1, 0x10_0000, 1 << 24, &base);
    let mut rng = Rng::new(99);
    let mut live: BTreeMap<usize, usize> = BTreeMap::new();
    let mut keys: Vec<usize> = Vec::new();
    let mut chains_seen = std::collections::BTreeSet::new();
    for round in 0..6 {
        let target = [3000, 200, 9000, 50, 20000, 0][round];
        let mut step = 0;
        while keys.len() != target {
            step += 1;
            let grow = keys.len() < target;
            if (grow && rng.chance(4, 5)) || keys.is_empty() {
                let size = if rng.chance(1, 2) { 1 } else { rng.range(1, 5) };
                let pol = POLICIES[rng.below(3) as usize];
                let x = if pol == Policy::NextFit || rng.chance(1, 6) {
                    a.xalloc(size, &Constraints::new().policy(pol)).unwrap()
                } else {
                    a.alloc(size, pol).unwrap()
                };
                assert!(live.insert(x, size).is_none());
                keys.push(x);
            } else {
                let i = rng.below(keys.len() as u64) as usize;
                let x = keys.swap_remove(i);
                let size = live.remove(&x).unwrap();
                a.xfree(x, size).unwrap();
            }
            chains_seen.insert(a.stats().hash_chains);
            if step % 997 == 0 {
                same_as_model(&a, &live, &format!("round {round} step {step}"));
            }
        }
        same_as_model(&a, &live, &format!("end of round {round}"));
        if round == 3 {
            a.reap();
            same_as_model(&a, &live, "after reap");
        }
    }
    assert!(
        chains_seen.len() >= 4,
        "hash never rescaled: {chains_seen:?}"
    );
}

/// A small dense arena with tiny sizes (lots of exact fits, merges on both
/// sides, splits that change and keep the size class), all policies and
/// xalloc shapes, checked after every operation.
#[test]
fn dense_random_checked_every_op() {
    let ram = PhysMem::new(8 << 20);
    let base = ram.base_arena("base", 64);
    for seed in 1..=6u64 {
        let a = span_arena("ids", 1, 0, 64, &base);
        a.add(64, 64).unwrap(); // an adjacent span
        a.add(1000, 37).unwrap();
        let mut rng = Rng::new(seed * 7919);
        let mut live: BTreeMap<usize, usize> = BTreeMap::new();
        for step in 0..4000 {
            if rng.chance(1, 2) {
                let size = [1, 1, 2, 3, 4, 5, 7, 8, 16, 33][rng.below(10) as usize];
                let got = match rng.below(6) {
                    0 => a.alloc(size, Policy::InstantFit),
                    1 => a.alloc(size, Policy::BestFit),
                    2 => a.alloc(size, Policy::NextFit),
                    3 => a.xalloc(size, &Constraints::new().align(1 << rng.below(4))),
                    4 => a.xalloc(size, &Constraints::new().from_top()),
                    _ => {
                        let at = rng.below(1100) as usize;
                        a.xalloc_at(at, size)
                    }
                };
                if let Ok(x) = got {
                    assert!(live.insert(x, size).is_none());
                }
            } else {
                free_random(&a, &mut live, &mut rng);
            }
            same_as_model(&a, &live, &format!("seed {seed} step {step}"));
        }
        for (x, s) in core::mem::take(&mut live) {
            a.xfree(x, s).unwrap();
        }
        same_as_model(&a, &live, "drained");
        assert_eq!(free_segs(&a), [(0, 64), (64, 64), (1000, 37)]);
    }
}

/// A sourced arena: spans come and go as they become wholly free, with
/// frees whose merges leave the span whole from every side (prev free,
/// next free, both, exact fit in the tree).
#[test]
fn sourced_spans_released_after_every_merge_shape() {
    let ram = PhysMem::new(8 << 20);
    let base = ram.base_arena("base", 64);
    let next = Mutex::new(0x1000_0000usize);
    let held = Mutex::new(BTreeMap::<usize, usize>::new());
    let src = FnSource::new(
        |size: usize| {
            let mut n = next.lock().unwrap();
            let b = *n;
            *n += size + 0x1000;
            held.lock().unwrap().insert(b, size);
            Ok(b)
        },
        |b: usize, s: usize| {
            assert_eq!(held.lock().unwrap().remove(&b), Some(s));
        },
    );
    let a = sourced_arena("imp", 16, &src, &base);
    let mut rng = Rng::new(4242);
    let mut live: BTreeMap<usize, usize> = BTreeMap::new();
    for step in 0..20_000 {
        if live.len() < 40 && rng.chance(11, 20) {
            let size = 16 * [1, 1, 2, 3, 4, 64, 256][rng.below(7) as usize];
            let x = if rng.chance(1, 4) {
                a.xalloc(size, &Constraints::new().align(64)).unwrap()
            } else {
                a.alloc(
                    size,
                    [Policy::InstantFit, Policy::BestFit][rng.below(2) as usize],
                )
                .unwrap()
            };
            assert!(live.insert(x, size).is_none());
        } else {
            free_random(&a, &mut live, &mut rng);
        }
        if step % 7 == 0 {
            same_as_model(&a, &live, &format!("step {step}"));
            // No wholly free span is kept.
            let st = a.stats();
            assert_eq!(
                st.total,
                held.lock().unwrap().values().sum::<usize>(),
                "{st:?}"
            );
            let mut spans = Vec::new();
            a.walk(WalkKinds::SPANS, |s| spans.push((s.start, s.size)));
            for f in free_segs(&a) {
                assert!(!spans.contains(&f), "wholly free span kept: {f:x?}");
            }
        }
    }
}

/// A base arena's own operations: its tag pages and hash tables are
/// metadata segments (some exact fits); grow and shrink the hash by
/// allocating and freeing many small blocks so metadata is freed through
/// the new free path, with checks throughout.
#[test]
fn base_arena_metadata_frees() {
    let ram = PhysMem::new(32 << 20);
    let base = ram.base_arena("base", 64);
    let mut rng = Rng::new(7);
    let mut live: BTreeMap<usize, usize> = BTreeMap::new();
    for round in 0..4 {
        let n = [5000, 30000, 100, 12000][round];
        while live.len() < n {
            let size = 64 * rng.range(1, 3);
            let x = base.alloc(size, Policy::InstantFit).unwrap();
            live.insert(x, size);
        }
        same_as_model(&base, &live, "grown");
        let keep = n / 10;
        let mut ks: Vec<_> = live.keys().copied().collect();
        while ks.len() > keep {
            let i = rng.below(ks.len() as u64) as usize;
            let x = ks.swap_remove(i);
            let s = live.remove(&x).unwrap();
            // SAFETY: allocated above with this size; never touched.
            unsafe { base.free_memory(x, s) }.unwrap();
        }
        base.reap();
        same_as_model(&base, &live, "shrunk");
        base.rescale_hash();
        same_as_model(&base, &live, "rescaled");
    }
    for (x, s) in core::mem::take(&mut live) {
        // SAFETY: as above.
        unsafe { base.free_memory(x, s) }.unwrap();
    }
    base.reap();
    same_as_model(&base, &live, "empty");
}

/// Repeatedly: grow the hash from its 64 inline chains (the rehash starts
/// right after the allocation that triggered it), then free at random
/// while chains move, so frees hit the chain the same step moves; reap
/// back to the inline table. Checked against the model each cycle.
#[test]
fn frees_hit_the_chain_being_moved() {
    let ram = PhysMem::new(16 << 20);
    let base = ram.base_arena("base", 64);
    let a = span_arena("ids", 1, 0x4000, 1 << 20, &base);
    let mut rng = Rng::new(5);
    for cycle in 0..300 {
        let mut live: BTreeMap<usize, usize> = BTreeMap::new();
        let mut keys = Vec::new();
        let c0 = a.stats().hash_chains;
        while a.stats().hash_chains == c0 {
            let x = a
                .alloc(1 + rng.below(3) as usize, Policy::InstantFit)
                .unwrap();
            let s = a.walk_size(x);
            live.insert(x, s);
            keys.push(x);
        }
        for _ in 0..keys.len() / 2 {
            let i = rng.below(keys.len() as u64) as usize;
            let x = keys.swap_remove(i);
            a.free(x, live.remove(&x).unwrap()).unwrap();
        }
        same_as_model(&a, &live, &format!("cycle {cycle}"));
        for x in keys {
            a.free(x, live.remove(&x).unwrap()).unwrap();
        }
        a.reap();
        same_as_model(&a, &live, &format!("cycle {cycle} drained"));
    }
}

trait WalkSize {
    fn walk_size(&self, x: usize) -> usize;
}
impl WalkSize for Arena<'_> {
    fn walk_size(&self, x: usize) -> usize {
        let mut r = 0;
        self.walk(WalkKinds::ALLOCATED, |s| {
            if s.start == x {
                r = s.size;
            }
        });
        r
    }
}
