//! Sourced arenas three levels deep over real memory:
//!
//! ```text
//! base (PhysMem, quantum 64, carves its own tags)
//!  └ level1 (quantum 4096, import_scale 2; imports page-aligned spans from base)
//!     └ level2 (quantum 256, import_scale 1)
//!        └ level3 (quantum 16, import_scale 0)
//! ```
//!
//! Every sourced level takes its tags and hash tables from the base. Tests:
//! random allocation and free patterns through the deepest level with the
//! whole chain checked after every step (each level's allocations are
//! exactly the spans of the level above it; no level keeps a wholly free
//! span); everything back to the base after freeing all and destroying the
//! levels top-down; the effect of `import_scale`; and sources that fail,
//! which must leave every level exactly as it was.

mod common;

use common::{sourced_arena, span_arena};

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kmem_arena::{
    AllocError, Arena, Constraints, DestroyError, FnSource, Policy, SegmentKind, WalkKinds,
};
use kmem_physmem::faults::{ArenaState, Leave};
use kmem_physmem::kit::{assert_emptied, ranges, segments, Live, POLICIES};
use kmem_physmem::{scale, seed, PhysMem, Rng};

const RAM: usize = 32 << 20;
const BASE_Q: usize = 64;
const QUANTA: [usize; 3] = [4096, 256, 16];
const SCALES: [u32; 3] = [2, 1, 0];

fn round(x: usize, q: usize) -> usize {
    x.div_ceil(q) * q
}

/// Allocated segments (metadata aside) as `(start, size)`.
fn allocations(a: &Arena<'_>) -> Vec<(usize, usize)> {
    segments(a, WalkKinds::ALLOCATED)
        .into_iter()
        .filter(|s| !s.metadata)
        .map(|s| (s.start, s.size))
        .collect()
}

fn spans(a: &Arena<'_>) -> Vec<(usize, usize)> {
    ranges(a, WalkKinds::SPANS)
}

/// Spans whose only segment is free (a sourced arena must not keep one).
fn idle_spans(a: &Arena<'_>) -> Vec<(usize, usize)> {
    let all = segments(a, WalkKinds::SPANS | WalkKinds::FREE);
    all.windows(2)
        .filter(|w| {
            w[0].kind == SegmentKind::Span
                && w[1].kind == SegmentKind::Free
                && (w[0].start, w[0].size) == (w[1].start, w[1].size)
        })
        .map(|w| (w[0].start, w[0].size))
        .collect()
}

/// Everything observable about an arena but its event counts (failed
/// requests count failures, and a span imported and handed back again
/// counts allocs, frees, imports and releases).
fn state(a: &Arena<'_>) -> ArenaState {
    ArenaState::leaving(a, Leave::Counts)
}

/// Checks every arena, and that each importer's spans are exactly its
/// source's allocations (level 1 shares the base with tag pages and hash
/// tables, so there the spans need only be among the allocations).
fn check_chain(base: &Arena<'_>, levels: &[&Arena<'_>]) {
    base.check().unwrap();
    for l in levels {
        l.check().unwrap();
        assert_eq!(
            idle_spans(l),
            vec![],
            "{} keeps a wholly free span",
            l.name()
        );
        assert_eq!(l.stats().imported, l.amt_total());
    }
    let base_allocs = allocations(base);
    for s in spans(levels[0]) {
        assert!(
            base_allocs.binary_search(&s).is_ok(),
            "level1 span {s:x?} is not a base allocation"
        );
    }
    for w in levels.windows(2) {
        assert_eq!(
            allocations(w[0]),
            spans(w[1]),
            "{}'s allocations differ from {}'s spans",
            w[0].name(),
            w[1].name()
        );
        assert_eq!(w[0].stats().allocated, w[1].amt_total());
    }
}

fn level<'a>(name: &str, i: usize, src: &'a Arena<'a>, base: &'a Arena<'a>) -> Arena<'a> {
    Arena::builder(name)
        .quantum(QUANTA[i])
        .source(src)
        .tags_from(base)
        .import_scale(SCALES[i])
        .build()
        .unwrap()
}

/// Random allocations and frees through level 3, the whole chain checked
/// after every step; then everything freed, every span back, each level
/// destroyed top-down, and the base exactly as it started but for its own
/// metadata.
#[test]
fn three_levels_random_patterns() {
    let seed = seed(0x736f_7572_6365_7331);
    let mut rng = Rng::new(seed);
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", BASE_Q);
    let (free0, meta0) = (base.amt_free(), base.stats().metadata);
    let base_stats0 = base.stats();

    let mut l1 = level("level1", 0, &base, &base);
    let mut l2 = level("level2", 1, &l1, &base);
    let mut l3 = level("level3", 2, &l2, &base);

    let steps = 4000 * scale();
    let mut live: Vec<Live> = Vec::new();
    for step in 0..steps {
        let ctx = || format!("seed {seed} (KMEM_TEST_SEED), step {step}");
        // Phases of growth and shrinkage, so levels empty out and refill.
        let target = if (step / 500) % 2 == 0 { 150 } else { 10 };
        if live.len() < target && rng.chance(2, 3) {
            let size = if rng.chance(1, 10) {
                rng.range(1, 128 << 10)
            } else {
                rng.range(1, 4096)
            };
            let xalloc = rng.chance(1, 2);
            let (got, align) = if !xalloc {
                let policy = POLICIES[rng.below(3) as usize];
                (l3.alloc(size, policy), QUANTA[2])
            } else {
                let align = rng.pow2(4, 16);
                let c = Constraints::new()
                    .align(align)
                    .policy(POLICIES[rng.below(3) as usize]);
                (l3.xalloc(size, &c), align)
            };
            let addr = got.unwrap_or_else(|e| panic!("{}: alloc {size:#x}: {e}", ctx()));
            assert_eq!(addr % align, 0, "{}", ctx());
            assert!(ram.contains(addr, size), "{}", ctx());
            live.push(Live { addr, size, xalloc });
        } else if !live.is_empty() {
            let l = live.swap_remove(rng.below(live.len() as u64) as usize);
            // SAFETY: allocated above with this size (by `xalloc` when
            // `l.xalloc`), freed once; the test never touches the memory.
            unsafe { l.free(&l3) }.unwrap_or_else(|e| panic!("{}: free: {e}", ctx()));
        }
        check_chain(&base, &[&l1, &l2, &l3]);
    }

    // Destroy refuses while allocations are live, changing nothing.
    if !live.is_empty() {
        let before = [&base, &l1, &l2, &l3].map(state);
        let bytes = live.iter().map(|l| round(l.size, QUANTA[2])).sum();
        assert_eq!(
            l3.destroy(),
            Err(DestroyError::LiveAllocations {
                count: live.len(),
                bytes
            })
        );
        assert_eq!(
            [&base, &l1, &l2, &l3].map(state),
            before,
            "a refused destroy changed the chain"
        );
    }

    rng_shuffle(&mut rng, &mut live);
    for l in live.drain(..) {
        // SAFETY: as above (a segment from `xalloc` may go back by `free`).
        unsafe { l3.free_memory(l.addr, l.size) }.unwrap();
        check_chain(&base, &[&l1, &l2, &l3]);
    }
    for l in [&l3, &l2, &l1] {
        assert_emptied(l);
        assert!(l.stats().imports > 0, "{} never imported", l.name());
    }
    // Only the levels' tag pages and hash tables are still out of the base.
    assert_eq!(spans(&l1), vec![]);

    l3.destroy().unwrap();
    drop(l3);
    l2.destroy().unwrap();
    drop(l2);
    l1.destroy().unwrap();
    drop(l1);

    base.check().unwrap();
    let st = base.stats();
    assert_eq!(st.live, 0, "tag pages or hash tables leaked: {st:?}");
    assert_eq!(st.allocs, st.frees, "{st:?}");
    assert_eq!(st.total, base_stats0.total);
    assert_eq!(st.allocated, st.metadata);
    assert_eq!(base.amt_free() + st.metadata, free0 + meta0);
    assert!(
        segments(&base, WalkKinds::ALLOCATED)
            .iter()
            .all(|s| s.metadata),
        "non-metadata segment left in the base"
    );
}

fn rng_shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// `import_scale` k imports `size << k` units (rounded to the quantum the
/// importer and its source share) and serves later requests from it.
#[test]
fn import_scale_sizes_each_levels_spans() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", BASE_Q);
    for scale in 0..4u32 {
        let mut a = Arena::builder("scaled")
            .quantum(4096)
            .source(&base)
            .tags_from(&base)
            .import_scale(scale)
            .build()
            .unwrap();
        let x = a.alloc(3 * 4096 - 100, Policy::InstantFit).unwrap();
        assert_eq!(a.amt_total(), (3 * 4096) << scale, "scale {scale}");
        assert_eq!(a.stats().imports, 1);
        assert_eq!(x % 4096, 0, "page-quantum arena over a 64-byte base");
        // With scale >= 1 the rest of the span serves the next request.
        let y = a.alloc(4096, Policy::BestFit).unwrap();
        let imports = if scale == 0 { 2 } else { 1 };
        assert_eq!(a.stats().imports, imports, "scale {scale}");
        // SAFETY: allocated above with these sizes, not used after.
        unsafe { a.free_memory(x, 3 * 4096) }.unwrap();
        // SAFETY: as above.
        unsafe { a.free_memory(y, 4096) }.unwrap();
        assert_eq!(a.amt_total(), 0);
        a.check().unwrap();
        a.destroy().unwrap();
    }

    // Through the chain: each level asks its source for what it imports,
    // and the source scales that again.
    let l1 = level("level1", 0, &base, &base);
    let l2 = level("level2", 1, &l1, &base);
    let l3 = level("level3", 2, &l2, &base);
    let size = 5000;
    let a = l3.alloc(size, Policy::InstantFit).unwrap();
    let want3 = round(size << SCALES[2], 256); // lcm(16, 256)
    let want2 = round(want3 << SCALES[1], 4096); // lcm(256, 4096)
    let want1 = round(want2 << SCALES[0], 4096); // lcm(4096, 64)
    assert_eq!(
        [l3.amt_total(), l2.amt_total(), l1.amt_total()],
        [want3, want2, want1]
    );
    check_chain(&base, &[&l1, &l2, &l3]);
    // SAFETY: allocated above with this size, not used after.
    unsafe { l3.free_memory(a, size) }.unwrap();
    assert_eq!([l3.amt_total(), l2.amt_total(), l1.amt_total()], [0, 0, 0]);
    check_chain(&base, &[&l1, &l2, &l3]);
}

/// A source whose import fails: requests that need an import fail with the
/// source's error and leave every level (and the base) exactly as they were.
/// Level 2 imports through an `FnSource` wrapping level 1 that can be told
/// to fail, or to fail after a number of successful imports.
#[test]
fn failing_source_changes_nothing() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", BASE_Q);
    let l1 = level("level1", 0, &base, &base);
    let fail = AtomicBool::new(false);
    // Imports still allowed while `fail` is set (counts down).
    let grace = AtomicUsize::new(0);
    let source = FnSource::new(
        |size| {
            if fail.load(Ordering::Relaxed)
                && grace
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| g.checked_sub(1))
                    .is_err()
            {
                return Err(AllocError::Exhausted);
            }
            l1.alloc(size, Policy::InstantFit)
        },
        // SAFETY: level 2 releases a span this source imported from level 1
        // with `alloc` of that size, whole, and no longer uses it.
        |b, s| unsafe { l1.free_memory(b, s) }.unwrap(),
    )
    .with_quantum(QUANTA[0]);
    let l2 = Arena::builder("level2")
        .quantum(QUANTA[1])
        .source(&source)
        .tags_from(&base)
        .import_scale(SCALES[1])
        .build()
        .unwrap();
    let l3 = level("level3", 2, &l2, &base);

    // Warm up: tags and hash in place, some spans imported.
    let mut live = Vec::new();
    for i in 1..=40 {
        live.push((l3.alloc(i * 100, Policy::InstantFit).unwrap(), i * 100));
    }
    for (a, s) in live.drain(..20) {
        l3.free(a, s).unwrap();
    }
    check_chain(&base, &[&l1, &l2, &l3]);

    let snapshot = || [&base, &l1, &l2, &l3].map(state);
    let before = snapshot();
    let fails_before = l3.stats().failures;
    fail.store(true, Ordering::Relaxed);
    // More than any level holds free, yet importable once the source
    // recovers: scaled by 2 and 4 on the way down, 8 MiB of the base's 32
    // (and an unscaled import is the fallback when a scaled one fails).
    let big = 1 << 20;
    for policy in POLICIES {
        assert_eq!(l3.alloc(big, policy), Err(AllocError::Exhausted));
        assert_eq!(
            snapshot(),
            before,
            "failed alloc ({policy:?}) changed state"
        );
        let c = Constraints::new().align(1 << 16).policy(policy);
        assert_eq!(l3.xalloc(big, &c), Err(AllocError::Exhausted));
        assert_eq!(
            snapshot(),
            before,
            "failed xalloc ({policy:?}) changed state"
        );
    }
    // One import succeeds, but its span cannot serve the request (it lies
    // outside the window): it must go back before the next, failing, import.
    grace.store(1, Ordering::Relaxed);
    let c = Constraints::new().min_addr(0).max_addr(ram.start());
    assert_eq!(l3.xalloc(big, &c), Err(AllocError::Exhausted));
    assert_eq!(
        grace.load(Ordering::Relaxed),
        0,
        "the allowed import was not used"
    );
    assert_eq!(snapshot(), before, "stranded import kept");
    assert!(l3.stats().failures > fails_before);
    check_chain(&base, &[&l1, &l2, &l3]);

    // The source recovers: the same request succeeds, and goes back.
    fail.store(false, Ordering::Relaxed);
    let a = l3.alloc(big, Policy::InstantFit).unwrap();
    assert!(l1.amt_total() >= big);
    l3.free(a, big).unwrap();
    assert_eq!(snapshot(), before, "after a successful alloc and free");
    for (a, s) in live {
        l3.free(a, s).unwrap();
    }
    assert_eq!([l3.amt_total(), l2.amt_total(), l1.amt_total()], [0, 0, 0]);
    check_chain(&base, &[&l1, &l2, &l3]);
}

/// An `FnSource` that returns a span misaligned for the importer: the
/// importer hands it straight back and fails with `BadImport`, unchanged.
#[test]
fn misaligned_import_is_returned() {
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", BASE_Q);
    let released = AtomicUsize::new(0);
    let source = FnSource::new(
        |_size| Ok(0x10_0008),
        |b, s| {
            assert_eq!(b, 0x10_0008);
            released.fetch_add(s, Ordering::Relaxed);
        },
    )
    .with_quantum(4096);
    let a = sourced_arena("ids", 16, &source, &base);
    assert_eq!(a.alloc(100, Policy::InstantFit), Err(AllocError::BadImport));
    assert_eq!(released.load(Ordering::Relaxed), 4096);
    assert_eq!(a.amt_total(), 0);
    assert_eq!(
        a.xalloc(100, &Constraints::new().align(64)),
        Err(AllocError::BadImport)
    );
    assert_eq!(a.amt_total(), 0);
    assert_eq!(spans(&a), vec![]);
    a.check().unwrap();
}

/// A page-quantum arena over `base` that imports 8 times what it needs.
fn scaled_by_8<'a>(base: &'a Arena<'a>) -> Arena<'a> {
    Arena::builder("scaled")
        .quantum(4096)
        .source(base)
        .tags_from(base)
        .import_scale(3)
        .build()
        .unwrap()
}

/// A scaled import that the source cannot supply falls back to the size
/// the request needs, instead of failing while that much is free.
#[test]
fn scaled_import_falls_back_to_needed_size() {
    let ram = PhysMem::new(8 << 20);
    let base = ram.base_arena("base", 4096);
    let mut a = scaled_by_8(&base);
    // 4 MiB scaled by 8 is 32 MiB: more than the base has. 4 MiB fits.
    let x = a.alloc(4 << 20, Policy::InstantFit).unwrap();
    assert_eq!(a.amt_total(), 4 << 20);
    assert_eq!(a.stats().imports, 1);
    assert_eq!(a.stats().failures, 0);
    // A small request still imports scaled: 8 pages for one.
    let y = a.alloc(4096, Policy::InstantFit).unwrap();
    assert_eq!(a.amt_total(), (4 << 20) + 8 * 4096);
    a.check().unwrap();
    base.check().unwrap();
    // SAFETY: allocated above with these sizes, not used after.
    unsafe { a.free_memory(x, 4 << 20) }.unwrap();
    // SAFETY: as above.
    unsafe { a.free_memory(y, 4096) }.unwrap();
    assert_eq!(a.amt_total(), 0);
    a.destroy().unwrap();
}

/// An aligned request (a slab aligned to its size) imports a scaled span
/// too, placed at the alignment, whose rest serves the next requests; with
/// a window it imports exactly, and a source that cannot give the scaled
/// span gives the exact one.
#[test]
fn aligned_imports_are_scaled_too() {
    let ram = PhysMem::new(8 << 20);
    let base = ram.base_arena("base", 4096);
    let mut a = scaled_by_8(&base);
    let aligned = Constraints::new().align(4 * 4096);
    let xs: Vec<usize> = (0..8)
        .map(|_| a.xalloc(4 * 4096, &aligned).unwrap())
        .collect();
    assert!(xs.iter().all(|x| x % (4 * 4096) == 0));
    // One span of 8 x 4 pages holds all eight.
    assert_eq!(a.stats().imports, 1);
    assert_eq!(a.amt_total(), 32 * 4096);
    // 1 MiB aligned, scaled to 8 MiB: more than the base has; exact.
    let big = a
        .xalloc(1 << 20, &Constraints::new().align(1 << 20))
        .unwrap();
    assert_eq!(big % (1 << 20), 0);
    assert_eq!(a.stats().imports, 2);
    assert_eq!(a.amt_total(), 32 * 4096 + (1 << 20));
    assert_eq!(a.stats().failures, 0);
    a.check().unwrap();
    base.check().unwrap();
    for x in xs {
        // SAFETY: allocated above with this size, not used after.
        unsafe { a.xfree_memory(x, 4 * 4096) }.unwrap();
    }
    // SAFETY: as above.
    unsafe { a.xfree_memory(big, 1 << 20) }.unwrap();
    assert_eq!(a.amt_total(), 0);
    a.destroy().unwrap();
}

/// An arena whose quantum does not divide its source's (3 over 1) asks the
/// source for bases that are multiples of 3, and gets them.
#[test]
fn odd_quantum_imports_from_a_finer_source() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let parent = span_arena("ones", 1, 0x1_0001, 65_535, &base);
    let threes = sourced_arena("threes", 3, &parent, &base);
    let a = threes.alloc(3, Policy::InstantFit).unwrap();
    let b = threes
        .xalloc(6, &Constraints::new().policy(Policy::NextFit))
        .unwrap();
    let c = threes.alloc(30, Policy::NextFit).unwrap();
    for x in [a, b, c] {
        assert_eq!(x % 3, 0, "{x:#x}");
    }
    assert_eq!(threes.stats().failures, 0);
    threes.check().unwrap();
    threes.free(a, 3).unwrap();
    threes.xfree(b, 6).unwrap();
    threes.free(c, 30).unwrap();
    assert_eq!(threes.amt_total(), 0);
    assert_eq!(parent.stats().live, 0);
}

/// Every path imports exactly what the request needs (with no import
/// scaling): a source holding exactly 4 free pages serves a 4-page request
/// by instant fit, next fit and `xalloc` alike.
#[test]
fn imports_are_sized_exactly() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let parent = span_arena("four pages", 4096, 0x10_0000, 4 * 4096, &base);
    let child = sourced_arena("child", 4096, &parent, &base);
    let size = 4 * 4096;
    for how in 0..4 {
        let x = match how {
            0 => child.alloc(size, Policy::InstantFit),
            1 => child.alloc(size, Policy::BestFit),
            2 => child.alloc(size, Policy::NextFit),
            _ => child.xalloc(size, &Constraints::new()),
        }
        .unwrap_or_else(|e| panic!("path {how}: {e:?}"));
        assert_eq!(x, 0x10_0000);
        assert_eq!(child.amt_total(), size, "path {how}");
        if how == 3 {
            child.xfree(x, size).unwrap();
        } else {
            child.free(x, size).unwrap();
        }
        assert_eq!(child.amt_total(), 0);
    }
    assert_eq!(child.stats().failures, 0);
}

/// A windowed (and aligned) `xalloc` passes its constraints down a chain
/// of sources: the range is found in the grandparent at the first try,
/// with one import per level and no failure.
#[test]
fn constraints_travel_down_the_chain() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let top = span_arena("top", 4096, 0x100_0000, 64 * 4096, &base);
    // The middle level scales its imports by 4: a placed import is exact.
    let mid = Arena::builder("mid")
        .quantum(4096)
        .source(&top)
        .tags_from(&base)
        .import_scale(2)
        .build()
        .unwrap();
    let leaf = sourced_arena("leaf", 16, &mid, &base);
    // Take the front of the range, so a plain import would land there.
    let front = top.alloc(8 * 4096, Policy::InstantFit).unwrap();
    let lo = 0x100_0000 + 40 * 4096;
    let c = Constraints::new()
        .align(8192)
        .min_addr(lo)
        .max_addr(lo + 2 * 4096);
    let x = leaf.xalloc(64, &c).unwrap();
    assert_eq!(x, lo);
    for a in [&leaf, &mid] {
        let st = a.stats();
        assert_eq!((st.imports, st.failures), (1, 0), "{}", a.name());
    }
    leaf.xfree(x, 64).unwrap();
    // A window the source cannot serve fails without useless imports (the
    // request on the source's grid, so the source's search is final).
    let busy = top.xalloc(4096, &Constraints::new().min_addr(lo).max_addr(lo + 4096));
    let busy = busy.unwrap();
    let tight = Constraints::new()
        .align(4096)
        .min_addr(lo)
        .max_addr(lo + 4096);
    assert_eq!(leaf.xalloc(16, &tight), Err(AllocError::Exhausted));
    assert_eq!(leaf.stats().imports, 1);
    assert_eq!(mid.stats().imports, 1);
    top.free(busy, 4096).unwrap();
    top.free(front, 8 * 4096).unwrap();
    assert_eq!(leaf.amt_total(), 0);
    assert_eq!(mid.amt_total(), 0);
}

/// Constraints the source cannot take (a phase its quantum does not
/// divide) fall back to importing a span large enough to hold a placement.
#[test]
fn unplaceable_constraints_fall_back_to_a_larger_import() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let pages = span_arena("pages", 4096, 0x100_0000, 16 * 4096, &base);
    let bytes = sourced_arena("bytes", 16, &pages, &base);
    let c = Constraints::new().align(64).phase(16);
    let x = bytes.xalloc(32, &c).unwrap();
    assert_eq!(x % 64, 16);
    // With a window too: the larger span is imported inside it.
    let lo = 0x100_0000 + 9 * 4096;
    let w = c.min_addr(lo).max_addr(lo + 2 * 4096);
    let y = bytes.xalloc(32, &w).unwrap();
    assert!(y % 64 == 16 && (lo..lo + 2 * 4096).contains(&y), "{y:#x}");
    assert_eq!(bytes.stats().failures, 0);
    bytes.xfree(x, 32).unwrap();
    bytes.xfree(y, 32).unwrap();
    assert_eq!(bytes.amt_total(), 0);
}

/// `xalloc_at` takes exactly the range asked for: from a free segment of
/// the arena (with free space left on both sides), and in a sourced arena
/// by importing that very range from the source.
#[test]
fn xalloc_at_takes_the_exact_range() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 8, 0x1000, 0x1000, &base);
    assert_eq!(ids.xalloc_at(0x1800, 20), Ok(0x1800));
    assert_eq!(ids.xalloc_at(0x1800, 8), Err(AllocError::Busy));
    assert_eq!(ids.xalloc_at(0x17f8, 8), Ok(0x17f8));
    ids.check().unwrap();
    let child = sourced_arena("child", 8, &ids, &base);
    assert_eq!(child.xalloc_at(0x1100, 64), Ok(0x1100));
    assert_eq!(child.stats().imports, 1);
    // The child's range is allocated in the source.
    assert_eq!(ids.xalloc_at(0x1100, 8), Err(AllocError::Busy));
    // A range the source holds allocated: the child cannot have it.
    assert_eq!(child.xalloc_at(0x1800, 8), Err(AllocError::Exhausted));
    child.xfree(0x1100, 64).unwrap();
    assert_eq!(child.amt_total(), 0);
    ids.xfree(0x1800, 24).unwrap();
    ids.xfree(0x17f8, 8).unwrap();
    assert_eq!(ids.stats().live, 0);
}

/// `Constraints::from_top` takes the highest fitting start (illumos'
/// `VM_ENDALLOC`), under every other constraint, and `largest_free` sees
/// what is left.
#[test]
fn from_top_takes_the_highest_fit() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 8, 0x1000, 0x1000, &base);
    assert_eq!(ids.largest_free(), 0x1000);
    let top = Constraints::new().from_top();
    let a = ids.xalloc(16, &top).unwrap();
    assert_eq!(a, 0x1ff0);
    let b = ids.xalloc(16, &top.align(0x100)).unwrap();
    assert_eq!(b, 0x1f00);
    let c = ids.xalloc(16, &top.max_addr(0x1800)).unwrap();
    assert_eq!(c, 0x17f0);
    // 0x30 units ending by 0x1ee0, not crossing a multiple of 0x40: 0x1e90.
    let d = ids
        .xalloc(0x30, &top.nocross(0x40).max_addr(0x1ee0))
        .unwrap();
    assert_eq!(d, 0x1e90);
    assert_eq!(ids.largest_free(), 0x17f0 - 0x1000);
    for (x, s) in [(a, 16), (b, 16), (c, 16), (d, 0x30)] {
        ids.xfree(x, s).unwrap();
    }
    assert_eq!(ids.largest_free(), 0x1000);
    ids.check().unwrap();
}

/// A window whose `min` lies inside one of the source's quanta: the
/// placement at `min` is found (the source's search, on its own grid,
/// cannot see it, so its refusal is not taken as final), directly and
/// through the slack import. (Found by review.)
#[test]
fn window_min_inside_a_source_quantum() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let pages = span_arena("pages", 4096, 0x100_0000, 4096, &base);
    let bytes = sourced_arena("bytes", 16, &pages, &base);
    let c = Constraints::new().min_addr(0x100_0010).max_addr(0x100_2000);
    assert_eq!(bytes.xalloc(64, &c), Ok(0x100_0010));
    let d = c.align(64).phase(16).min_addr(0x100_0050);
    assert_eq!(bytes.xalloc(32, &d), Ok(0x100_0050));
    bytes.xfree(0x100_0010, 64).unwrap();
    bytes.xfree(0x100_0050, 32).unwrap();
    assert_eq!(bytes.amt_total(), 0);
}

/// Quantum 3 over a source of quantum 2, where the request's span rounded
/// to lcm 6 would cross its `nocross` boundary: the slack import asks for
/// multiples of 3 (it asked for any base and failed with `BadImport`).
/// (Found by review.)
#[test]
fn odd_quantum_slack_import_keeps_to_the_quantum() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let twos = span_arena("twos", 2, 0x1_0004, 0x1000, &base);
    let threes = sourced_arena("threes", 3, &twos, &base);
    let x = threes
        .xalloc(3, &Constraints::new().nocross(4).max_addr(0x2_0000))
        .unwrap();
    assert_eq!(x % 3, 0);
    assert_eq!(x / 4, (x + 2) / 4);
    threes.xfree(x, 3).unwrap();
    assert_eq!(threes.amt_total(), 0);
}

/// A next-fit `xalloc` served by a span placed for it moves the next-fit
/// cursor like any other. (Found by review.)
#[test]
fn placed_import_moves_the_next_fit_cursor() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let parent = span_arena("sixteens", 16, 0x1000, 0x1000, &base);
    let ids = sourced_arena("ids", 1, &parent, &base);
    let a = ids.alloc(1, Policy::NextFit).unwrap();
    assert_eq!(a, 0x1000);
    let next = Constraints::new().align(32).policy(Policy::NextFit);
    let b = ids.xalloc(1, &next).unwrap();
    assert_eq!(b, 0x1020);
    let c = ids.alloc(1, Policy::NextFit).unwrap();
    assert!(
        c > b,
        "next fit went back below its previous result: {c:#x}"
    );
    for x in [a, c] {
        ids.free(x, 1).unwrap();
    }
    ids.xfree(b, 1).unwrap();
}

/// Quantum `2^20 - 1` against `nocross` `2^20`: each candidate's offset in
/// its window steps down by one, the worst case for the descent, which
/// once recursed a million levels deep. (Found by review.)
#[test]
fn descent_stays_shallow_for_a_step_of_nocross_minus_one() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let q = (1 << 20) - 1;
    let a = span_arena("odd", q, 0, q << 24, &base);
    let c = Constraints::new().nocross(1 << 20).min_addr(q);
    assert_eq!(a.xalloc(q, &c), Ok(q * ((1 << 20) - 1)));
}

/// `set_limit` caps the units a sourced arena holds in imported spans: an
/// import past it is not asked for (`LimitReached`, nothing changes, the
/// source untouched), a scaled import falls back to the needed size first,
/// freeing makes room again, and lifting the limit lifts it.
#[test]
fn set_limit_caps_imports() {
    let ram = PhysMem::new(4 << 20);
    let base = ram.base_arena("base", 4096);
    let pages = span_arena("pages", 4096, 0x100_0000, 64 * 4096, &base);
    let a = Arena::builder("limited")
        .quantum(4096)
        .source(&pages)
        .tags_from(&base)
        .import_scale(2)
        .build()
        .unwrap();
    a.set_limit(Some(6 * 4096));
    // Scaled by 4: 4 pages imported for the first page.
    let x = a.alloc(4096, Policy::InstantFit).unwrap();
    assert_eq!(a.amt_total(), 4 * 4096);
    // 3 more pages fit in that span; the next import (scaled 4 pages,
    // past the limit) falls back to the 1 page needed, then 1 more fits.
    let more: Vec<usize> = (0..5)
        .map(|_| a.alloc(4096, Policy::InstantFit).unwrap())
        .collect();
    assert_eq!(a.amt_total(), 6 * 4096);
    let (before, source) = (a.stats(), pages.stats());
    assert_eq!(
        a.xalloc(4096, &Constraints::new().align(8192)),
        Err(AllocError::LimitReached)
    );
    assert_eq!(
        a.alloc(4096, Policy::InstantFit),
        Err(AllocError::LimitReached)
    );
    assert_eq!(pages.stats().allocs, source.allocs);
    assert_eq!(a.stats().failures, before.failures + 2);
    a.free(x, 4096).unwrap();
    let y = a.alloc(4096, Policy::InstantFit).unwrap();
    a.set_limit(None);
    let z = a.alloc(8 * 4096, Policy::InstantFit).unwrap();
    for p in more.into_iter().chain([y]) {
        a.free(p, 4096).unwrap();
    }
    a.free(z, 8 * 4096).unwrap();
    assert_eq!(a.amt_total(), 0);
}
