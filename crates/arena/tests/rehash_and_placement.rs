//! The hash's incremental rehash seen from the arena (an explicit rescale
//! gives the old table back; growth resumes after a shrink), `xalloc_at`
//! against a model, and `from_top` against a brute-force highest fit (also
//! near the top of the address space, and through an import). Written as a
//! hostile review of those changes.

mod common;

use common::{grow_and_empty_hash, sourced_arena, span_arena, spans_arena};

use kmem_arena::{AllocError, Arena, Constraints, Policy};
use kmem_physmem::kit::lcm;
use kmem_physmem::model::Placement;
use kmem_physmem::{PhysMem, Rng};

/// `xfree`s a random allocation of `live` from `a`: false when there is
/// none.
fn xfree_one(a: &Arena<'_>, live: &mut Vec<(usize, usize)>, rng: &mut Rng) -> bool {
    if live.is_empty() {
        return false;
    }
    let (s, z) = live.swap_remove(rng.below(live.len() as u64) as usize);
    a.xfree(s, z).unwrap();
    true
}

/// `reap` after everything was freed shrinks the hash and gives the large
/// table back at once (it once stayed the rehash's source until about
/// chains/4 more inserts and removes).
#[test]
fn reap_gives_the_old_hash_table_back() {
    let ram = PhysMem::new(16 << 20);
    let base = ram.base_arena("base", 64);
    let chains = grow_and_empty_hash(&base);
    assert!(chains >= 32768, "{chains}");
    let m1 = base.stats().metadata;
    base.reap();
    let st = base.stats();
    assert!(st.hash_chains < chains);
    // A few more operations: still not given back.
    for _ in 0..100 {
        let a = base.alloc(64, Policy::InstantFit).unwrap();
        // SAFETY: just allocated with this size, not used after.
        unsafe { base.free_memory(a, 64) }.unwrap();
    }
    let m2 = base.stats().metadata;
    base.check().unwrap();
    assert!(
        m2 < m1,
        "old table of {chains} chains still held after reap + 200 ops: metadata {m1} -> {m2}"
    );
}

/// After a shrink from a large table, the hash grows again with its load
/// (once, growth was refused while the shrink's rehash crept along, and
/// the 64 inline chains took thousands of entries).
#[test]
fn growth_stalls_after_shrink_from_a_large_table() {
    let ram = PhysMem::new(16 << 20);
    let base = ram.base_arena("base", 64);
    let ids = span_arena("ids", 1, 0x10000, 1 << 20, &base);
    let v: Vec<usize> = (0..20_000)
        .map(|_| ids.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    assert!(ids.stats().hash_chains >= 16_384);
    for a in v {
        ids.free(a, 1).unwrap();
    }
    ids.reap();
    assert_eq!(ids.stats().hash_chains, 64);
    let v: Vec<usize> = (0..8_000)
        .map(|_| ids.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    let st = ids.stats();
    ids.check().unwrap();
    for a in v {
        ids.free(a, 1).unwrap();
    }
    assert!(
        st.hash_chains >= 8192,
        "{} live entries on {} chains (avg chain {})",
        st.live,
        st.hash_chains,
        st.live / st.hash_chains
    );
}

fn overlaps(live: &[(usize, usize)], a: usize, e: usize) -> bool {
    live.iter().any(|&(s, z)| s < e && a < s + z)
}

/// xalloc_at against a model: Ok iff inside one span and wholly free;
/// Busy iff part of it is allocated; Exhausted otherwise.
#[test]
fn xalloc_at_matches_a_model() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let q = 8;
    // Adjacent spans, and one after a gap.
    let spans = [(0x1000usize, 0x200usize), (0x1200, 0x100), (0x1400, 0x200)];
    let a = spans_arena("ids", q, &spans, &base);
    let mut rng = Rng::new(15);
    let mut live: Vec<(usize, usize)> = Vec::new();
    for i in 0..200_000 {
        if rng.below(3) == 0 && xfree_one(&a, &mut live, &mut rng) {
            continue;
        }
        let addr = 0xf00 + q * rng.below(0x900 / q as u64) as usize;
        let size = q * (1 + rng.below(24) as usize);
        let end = addr + size;
        let inside = spans.iter().any(|&(s, z)| s <= addr && end <= s + z);
        let busy = overlaps(&live, addr, end);
        let want = if busy {
            Err(AllocError::Busy)
        } else if inside {
            Ok(addr)
        } else {
            Err(AllocError::Exhausted)
        };
        let got = a.xalloc_at(addr, size);
        assert_eq!(
            got, want,
            "op {i}: xalloc_at({addr:#x}, {size:#x}), live {live:x?}"
        );
        if got.is_ok() {
            live.push((addr, size));
        }
        if i % 1000 == 0 {
            a.check().unwrap();
        }
    }
}

/// from_top against a brute-force highest fit.
#[test]
fn from_top_is_the_highest_fit() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    for q in [1usize, 3, 8] {
        let spans = [
            (q * 0x100, q * 0x80),
            (q * 0x180, q * 0x40),
            (q * 0x200, q * 0x100),
        ];
        let a = spans_arena("ids", q, &spans, &base);
        let mut rng = Rng::new(7 + q as u64);
        let mut live: Vec<(usize, usize)> = Vec::new();
        for i in 0..40_000 {
            if rng.below(2) == 0 && xfree_one(&a, &mut live, &mut rng) {
                continue;
            }
            let size = q * (1 + rng.below(12) as usize);
            let align = 1usize << rng.below(6);
            let eff = lcm(q, align).unwrap();
            let phase = if rng.below(3) == 0 {
                q * rng.below((eff / q) as u64) as usize
            } else {
                0
            };
            let nocross = if rng.below(3) == 0 {
                let n = size.next_power_of_two();
                let n = if q.is_power_of_two() { n.max(q) } else { n };
                n << rng.below(3)
            } else {
                0
            };
            let (min, max) = if rng.below(2) == 0 {
                let lo = q * rng.below(0x320) as usize;
                let hi = lo + size + q * rng.below(0x100) as usize;
                (lo, hi)
            } else {
                (0, usize::MAX)
            };
            let c = Constraints::new()
                .align(align)
                .phase(phase)
                .nocross(nocross)
                .min_addr(min)
                .max_addr(max)
                .from_top();
            // Brute force: highest x in a span, free, meeting everything.
            let place = Placement {
                align: eff,
                phase,
                nocross,
                min,
                max,
            };
            let mut best = None;
            for &(s, z) in &spans {
                let mut x = s;
                while x + size <= s + z {
                    let ok = place.broken_by(x, size).is_none() && !overlaps(&live, x, x + size);
                    if ok {
                        best = Some(best.map_or(x, |b: usize| b.max(x)));
                    }
                    x += q;
                }
            }
            let got = a.xalloc(size, &c);
            match (got, best) {
                (Ok(x), Some(b)) => assert_eq!(x, b, "q {q} op {i}: {c:?} size {size}"),
                (Err(AllocError::Exhausted), None) => {}
                (Err(AllocError::Overconstrained), None) => {}
                (g, b) => panic!("q {q} op {i}: {c:?} size {size}: got {g:?}, best {b:?}"),
            }
            if let Ok(x) = got {
                live.push((x, size));
            }
        }
        for (s, z) in live {
            a.xfree(s, z).unwrap();
        }
        a.check().unwrap();
    }
}

/// In an arena that imports, `xalloc_at` of a busy range imports nothing,
/// and `from_top` carries down to the source: the highest placements.
#[test]
fn sourced_busy_and_from_top() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 8, 0x1000, 0x10000, &base);
    let child = sourced_arena("child", 8, &ids, &base);
    assert_eq!(child.xalloc_at(0x1100, 64), Ok(0x1100));
    let before = (child.stats().imports, ids.stats().allocs);
    assert_eq!(child.xalloc_at(0x1100, 8), Err(AllocError::Busy));
    assert_eq!((child.stats().imports, ids.stats().allocs), before);
    let top = child.xalloc(8, &Constraints::new().from_top()).unwrap();
    assert_eq!(top, 0x11000 - 8);
    let window = Constraints::new()
        .from_top()
        .min_addr(0x2000)
        .max_addr(0x9000);
    let top2 = child.xalloc(8, &window).unwrap();
    assert_eq!(top2, 0x9000 - 8);
    for (x, n) in [(0x1100, 64), (top, 8), (top2, 8)] {
        child.xfree(x, n).unwrap();
    }
    assert_eq!(child.amt_total(), 0);
}

#[test]
fn from_top_near_usize_max() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let b = (usize::MAX - 0x1fff) & !7;
    let ids = span_arena("ids", 8, b, 0x1ff8, &base);
    let end = b + 0x1ff8;
    let x = ids.xalloc(16, &Constraints::new().from_top()).unwrap();
    assert_eq!(x, end - 16);
    let y = ids
        .xalloc(16, &Constraints::new().from_top().nocross(0x1000).align(64))
        .unwrap();
    assert!(y + 16 <= x && y.is_multiple_of(64) && y / 0x1000 == (y + 15) / 0x1000);
    let z = ids
        .xalloc(
            16,
            &Constraints::new()
                .from_top()
                .max_addr(end - 0x100)
                .phase(8)
                .align(32),
        )
        .unwrap();
    assert_eq!(
        z,
        (end - 0x100 - 16) / 32 * 32 + 8 - if (end - 0x100 - 16) % 32 < 8 { 32 } else { 0 }
    );
    ids.check().unwrap();
}

/// An arena whose tags were donated by hand (no tag arena) keeps its 64
/// inline chains until it is given hash memory too; then its hash grows
/// into the donated regions as the load asks, a table giving its region
/// back when a larger one replaces it.
#[test]
fn donated_tags_arena_grows_into_donated_hash_memory() {
    let mut tags = vec![0u64; 160 * 512];
    let mut hash_a = vec![0u32; 1 << 12];
    let mut hash_b = vec![0u32; 1 << 14];
    let ids = Arena::builder("ids").quantum(1).build().unwrap();
    // SAFETY: the buffers outlive the arena and nothing else touches them.
    unsafe { ids.add_tag_memory(tags.as_mut_ptr().cast(), tags.len() * 8) };
    ids.add(0, 1 << 30).unwrap();
    let live: Vec<usize> = (0..5000)
        .map(|_| ids.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    assert_eq!(ids.stats().hash_chains, 64, "no memory to grow into");
    // SAFETY: as above.
    assert!(unsafe { ids.add_hash_memory(hash_a.as_mut_ptr().cast(), hash_a.len() * 4) });
    // Too small for a table larger than the inline one: refused.
    let mut tiny = [0u32; 64];
    // SAFETY: as above (never kept: refused).
    assert!(!unsafe { ids.add_hash_memory(tiny.as_mut_ptr().cast(), 256) });
    let more: Vec<usize> = (0..10)
        .map(|_| ids.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    let grown = ids.stats().hash_chains;
    assert!(grown > 64 && grown <= 1 << 12, "{grown} chains");
    // SAFETY: as above.
    assert!(unsafe { ids.add_hash_memory(hash_b.as_mut_ptr().cast(), hash_b.len() * 4) });
    let most: Vec<usize> = (0..6000)
        .map(|_| ids.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    ids.rescale_hash();
    let chains = ids.stats().hash_chains;
    assert!(chains > grown, "{chains} chains after {grown}");
    ids.check().unwrap();
    for x in live.into_iter().chain(more).chain(most) {
        ids.free(x, 1).unwrap();
    }
    ids.check().unwrap();
    drop(ids);
}
