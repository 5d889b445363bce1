//! Akaros' arena ktests (`kern/src/ktest/kt_arena.c`), ported to Rust.
//!
//! Each test carries the name of the Akaros test it ports and follows its
//! steps, calling [`Arena::check`] after every one. The idioms change:
//!
//! - results are `Result<usize, AllocError>` (0 is a valid resource), and
//!   Akaros' `NULL` from a failed `MEM_ATOMIC` allocation is
//!   `Err(AllocError::Exhausted)`;
//! - `ARENA_{INSTANT,BEST,NEXT}FIT` flags are [`Policy`] values and the
//!   positional `arena_xalloc` arguments are a [`Constraints`] builder;
//! - arenas of IDs (not memory) take their boundary tags from a base arena
//!   over a [`PhysMem`] (`tags_from`);
//! - Akaros quietly rounds a misaligned `arena_add` inward and accepts any
//!   power-of-two `nocross`; here a span must be quantum-aligned
//!   (`AddError::Misaligned`) and `nocross` a multiple of the quantum
//!   (`AllocError::Misaligned`). Tests whose Akaros inputs hit those rules
//!   assert the typed refusal and then run the aligned equivalent;
//! - `ARENA_SELF_SOURCE` becomes an [`FnSource`] that hands out fresh ranges
//!   from a counter (an arena cannot be its own source by reference).
//!
//! `test_alloc_instantfit_fallback`, which Akaros left unregistered because
//! it failed, is ported and must pass: instant fit falls back to the
//! request's own list.
//!
//! Ported elsewhere, as they need object caches: `test_qcache`,
//! `test_qc_odd_quantum` and `test_qc_large_quantum` (quantum caches,
//! kmem-slab's `Caches::qcaches`) are in kmem-slab's `tests/qcache.rs`;
//! `test_import_slab` (caches keep their source's quantum and their own
//! alignment) is `akaros_import_slab` in kmem-slab's `tests/paths.rs`.
//!
//! Not ported: `test_dma_pool` (DMA pools are outside kmem).

mod common;

use core::sync::atomic::{AtomicUsize, Ordering};

use common::sourced_arena;
use kmem_arena::{AddError, AllocError, Arena, Constraints, FnSource, Policy};
use kmem_physmem::kit::assert_check as ok;
use kmem_physmem::{PhysMem, PAGE_SIZE};

/// Fake RAM for the base arena that supplies tag pages.
const RAM: usize = 1 << 20;

/// Adds each of `spans` to `a`, checking it after each.
#[track_caller]
fn add(a: &Arena<'_>, spans: &[(usize, usize)]) {
    for &(start, size) in spans {
        a.add(start, size).unwrap();
        ok(a);
    }
}

/// An arena of IDs with quantum `quantum` holding `spans` (added one by
/// one, checked after each), tags from `base`.
#[track_caller]
fn ids<'a>(base: &'a Arena<'a>, name: &str, quantum: usize, spans: &[(usize, usize)]) -> Arena<'a> {
    let a = Arena::builder(name)
        .quantum(quantum)
        .tags_from(base)
        .build()
        .expect("arena of IDs");
    add(&a, spans);
    a
}

/// `alloc(size, policy)`, which must succeed; then the check.
#[track_caller]
fn alloc_ok(a: &Arena<'_>, size: usize, policy: Policy) -> usize {
    let o = a.alloc(size, policy).unwrap();
    ok(a);
    o
}

/// `xalloc(size, c)`, which must succeed; then the check.
#[track_caller]
fn xalloc_ok(a: &Arena<'_>, size: usize, c: &Constraints) -> usize {
    let o = a.xalloc(size, c).unwrap();
    ok(a);
    o
}

/// Frees each `(addr, size)` of `allocs` by `free`, checking after each.
#[track_caller]
fn free(a: &Arena<'_>, allocs: &[(usize, usize)]) {
    for &(o, size) in allocs {
        a.free(o, size).unwrap();
        ok(a);
    }
}

/// [`free`] by `xfree`, for allocations made by `xalloc`.
#[track_caller]
fn xfree(a: &Arena<'_>, allocs: &[(usize, usize)]) {
    for &(o, size) in allocs {
        a.xfree(o, size).unwrap();
        ok(a);
    }
}

/// [`alloc_ok`], then [`free`] of what it gave: where it landed.
#[track_caller]
fn alloc_free(a: &Arena<'_>, size: usize, policy: Policy) -> usize {
    let o = alloc_ok(a, size, policy);
    free(a, &[(o, size)]);
    o
}

/// [`xalloc_ok`], then [`xfree`] of what it gave: where it landed.
#[track_caller]
fn xalloc_free(a: &Arena<'_>, size: usize, c: &Constraints) -> usize {
    let o = xalloc_ok(a, size, c);
    xfree(a, &[(o, size)]);
    o
}

/// A request that must have been refused with `Exhausted` (Akaros' `NULL`
/// from `MEM_ATOMIC`); then the check.
#[track_caller]
fn exhausted(a: &Arena<'_>, got: Result<usize, AllocError>) {
    assert_eq!(got, Err(AllocError::Exhausted));
    ok(a);
}

/// Constraints of the window `[min, max)`.
fn window(min: usize, max: usize) -> Constraints {
    Constraints::new().min_addr(min).max_addr(max)
}

/// True when `[x, x + size)` crosses a multiple of `nocross`.
fn crosses(x: usize, size: usize, nocross: usize) -> bool {
    x / nocross != (x + size - 1) / nocross
}

/// Destroys `a`, which must hold no allocations, and checks it is empty.
#[track_caller]
fn destroy(mut a: Arena<'_>) {
    ok(&a);
    a.destroy().expect("destroy");
    assert_eq!(a.amt_total(), 0);
    ok(&a);
}

#[test]
fn nextfit() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    // Akaros creates it with its span (`.span`, not `add`).
    let a = Arena::builder("nextfit")
        .span(1, 30)
        .tags_from(&base)
        .build()
        .unwrap();
    ok(&a);
    let o1 = alloc_ok(&a, 1, Policy::NextFit);
    let o2 = alloc_ok(&a, 1, Policy::NextFit);
    assert_eq!((o1, o2), (1, 2));
    // Without next fit the arena would hand 1 back.
    free(&a, &[(o1, 1)]);
    let o3 = alloc_ok(&a, 1, Policy::NextFit);
    assert_eq!(o3, o2 + 1);

    // Next fit cycles through the resource: up to the end of the span, then
    // it wraps around to the lowest free ID, the one freed above.
    let mut rest = Vec::new();
    for want in o3 + 1..31 {
        let o = alloc_ok(&a, 1, Policy::NextFit);
        assert_eq!(o, want);
        rest.push((o, 1));
    }
    let wrapped = alloc_ok(&a, 1, Policy::NextFit);
    assert_eq!(wrapped, o1);
    exhausted(&a, a.alloc(1, Policy::NextFit));

    free(&a, &[(o2, 1), (o3, 1), (wrapped, 1)]);
    free(&a, &rest);
    assert_eq!(a.amt_free(), 30);
    destroy(a);
}

#[test]
fn bestfit() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    // Each span is an independent chunk; the bases only identify them. Best
    // fit for 65 is the 67 at 2000; instant fit would take the 128 at 5000.
    // The 127s around 67 make sure the whole 2^6 list is searched.
    let spans = [
        (1000, 64),
        (3000, 128 - 1),
        (2000, 67),
        (4000, 128 - 1),
        (5000, 128),
    ];
    let a = ids(&base, "bestfit", 1, &spans);
    assert_eq!(alloc_free(&a, 65, Policy::BestFit), 2000);
    assert_eq!(alloc_free(&a, 65, Policy::InstantFit), 5000);
    destroy(a);
}

#[test]
fn instantfit() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let spans = [(1000, 64), (2000, 67), (3000, 64), (4000, 128)];
    let a = ids(&base, "instantfit", 1, &spans);
    // 65 needs the 2^7 list, whose every member fits: the 128 at 4000, not
    // the 67 at 2000 (which best fit would take).
    assert_eq!(alloc_free(&a, 65, Policy::InstantFit), 4000);
    destroy(a);
}

/// Akaros' `test_alloc_instantfit_fallback`, left unregistered there because
/// instant fit did not fall back to the request's own list.
#[test]
fn alloc_instantfit_fallback() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    // One segment on the 2^3 list (sizes 8..=15): 15 units at 1.
    let a = ids(&base, "instantfit_fallback", 1, &[(1, 15)]);
    assert_eq!(alloc_free(&a, 15, Policy::InstantFit), 1);
    assert_eq!(xalloc_free(&a, 15, &Constraints::new()), 1);
    destroy(a);
}

#[test]
fn quantum_align() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let a = ids(&base, "quantum_align", 32, &[]);
    // Akaros rounds the span [4097, 4161) inward to one 32-unit object; here
    // a misaligned span is refused, and the aligned interior is added.
    assert_eq!(a.add(4096 + 1, 64), Err(AddError::Misaligned));
    ok(&a);
    assert_eq!(a.amt_total(), 0);
    let interior = (4096 + 1usize).next_multiple_of(32);
    add(&a, &[(interior, 32)]);
    // 1 is rounded up to the quantum: really a request for 32.
    let o1 = alloc_ok(&a, 1, Policy::InstantFit);
    assert_eq!(o1, interior);
    assert_eq!(a.stats().allocated, 32);
    // Nothing quantum-sized is left.
    exhausted(&a, a.alloc(1, Policy::InstantFit));
    free(&a, &[(o1, 1)]);
    destroy(a);
}

#[test]
fn odd_quantum() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let a = ids(&base, "odd_quantum", 7, &[(7, 49)]);
    let o1 = alloc_ok(&a, 7, Policy::InstantFit);
    assert_eq!(o1, 7);
    let o2 = alloc_ok(&a, 7, Policy::InstantFit);
    assert_eq!(o2, 14);
    free(&a, &[(o1, 7), (o2, 7)]);

    // Older Akaros code fragmented the arena here so that it handed out
    // objects that were not quantum-aligned. The effective alignment of
    // align 4 with quantum 7 is lcm(7, 4) = 28.
    let o1 = xalloc_ok(&a, 7, &Constraints::new().align(4));
    assert_eq!(o1 % 28, 0);
    let o2 = alloc_ok(&a, 7, Policy::InstantFit);
    assert_eq!(o2 % 7, 0);
    xfree(&a, &[(o1, 7)]);
    free(&a, &[(o2, 7)]);
    destroy(a);
}

/// The nocross fallback hops over the first boundary a candidate crosses,
/// hoping the rest of the segment satisfies the constraints, and must check
/// the candidate after the hop again.
#[test]
fn nocross_fallback() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);

    // Akaros' inputs: quantum 3, nocross 4 (span size 21, as Akaros' 20 is
    // not a multiple of the quantum). Candidate 3 crosses 4; after the hop,
    // 6 crosses 8 (the case older code missed); after the next hop, 9 fits.
    let a = ids(&base, "nocross_fallback-q3", 3, &[(3, 21)]);
    let o1 = xalloc_free(&a, 3, &Constraints::new().nocross(4));
    assert_eq!(o1, 9);
    assert!(!crosses(o1, 3, 4));
    destroy(a);

    // The same hop with a power-of-two quantum: starts are 2 mod 4 and
    // 4 units must not cross a multiple of 8. In [6, 12) the candidate 6
    // crosses 8; after the hop, 10 runs past the segment's end. In
    // [100, 116) the candidate 102 crosses 104; after the hop, 106 fits.
    let a = ids(&base, "nocross_fallback", 1, &[(6, 6), (100, 16)]);
    let c = Constraints::new().align(4).phase(2).nocross(8);
    let o1 = xalloc_ok(&a, 4, &c);
    assert_eq!(o1, 106);
    assert!(!crosses(o1, 4, 8));
    // Nothing else satisfies the constraints.
    exhausted(&a, a.xalloc(4, &c));
    xfree(&a, &[(o1, 4)]);
    destroy(a);
}

#[test]
fn xalloc_from_freelist() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    // One segment on the 2^3 list (sizes 8..=15), starting at 15, which
    // satisfies align 8 phase 7. Adding phase + align to the size would
    // look on the 2^4 list only, as older Akaros code did.
    let a = ids(&base, "xalloc_from_freelist", 1, &[(15, 15)]);
    let c = Constraints::new().align(8).phase(7).policy(Policy::BestFit);
    assert_eq!(xalloc_free(&a, 15, &c), 15);
    destroy(a);
}

#[test]
fn import() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let s = ids(&base, "test_import-source", 4096, &[(4096, 4096 * 4)]);
    {
        // Akaros' tiaf/tiff: import from `s`, shifting its values up by 15
        // bits (and back down on release).
        let src = FnSource::new(
            |amt| s.alloc(amt, Policy::InstantFit).map(|obj| obj << 15),
            |obj, amt| s.free(obj >> 15, amt).expect("release to s"),
        )
        .with_quantum(s.quantum());
        let a = sourced_arena("test_import-actual", 1, &src, &base);
        let o1 = alloc_ok(&a, 1, Policy::InstantFit);
        ok(&s);
        let o2 = alloc_ok(&a, 2, Policy::InstantFit);
        // The handlers ran: `s` hands out values around 4096, which the
        // import function moves above 1 << 15.
        assert!(o1 >= 1 << 15);
        assert!(o2 >= 1 << 15);
        assert_eq!(s.stats().live, a.stats().spans);

        free(&a, &[(o1, 1), (o2, 2)]);
        // The wholly free span went back through the release function.
        assert_eq!(a.amt_total(), 0);
        assert_eq!(s.stats().live, 0);
        ok(&s);
        destroy(a);
    }
    assert_eq!(s.amt_free(), 4096 * 4);
    destroy(s);
}

/// Akaros' import code once imported too little to hold an object after
/// aligning the imported base to the importer's quantum, and did not free
/// spans back to the source.
#[test]
fn import_alignment() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let s = ids(&base, "test_import_alignment-s", 1, &[(1, 1000)]);
    {
        let a = sourced_arena("test_import_alignment-a", 16, &s, &base);
        // The source's quantum (1) does not make its spans 16-aligned: the
        // arena imports through `Source::import_aligned` (an xalloc there).
        let o1 = a.alloc(16, Policy::InstantFit);
        ok(&a);
        ok(&s);
        assert!(
            matches!(o1, Ok(o) if o % 16 == 0),
            "alloc(16) from a quantum-16 arena over a quantum-1 source: {o1:?}"
        );
        free(&a, &[(o1.unwrap(), 16)]);
        // The span went back to the source.
        assert_eq!(a.amt_total(), 0);
        destroy(a);
    }
    assert_eq!(s.amt_free(), 1000);
    destroy(s);
}

#[test]
fn xalloc() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    // Akaros adds [3, 4099) and rounds; 4095 is the quantum-multiple part.
    let a = ids(&base, "xalloc", 3, &[(3, 4095)]);

    // Align 16, phase 6: the effective alignment is lcm(3, 16) = 48.
    let o1 = xalloc_ok(&a, 3, &Constraints::new().align(16).phase(6));
    assert_eq!((o1 - 6) % 16, 0);
    assert_eq!(o1 % 3, 0);

    // Nocross 16 with the odd quantum 3: 15 units that stay inside one
    // 16-unit window, starting on a quantum multiple.
    let o2 = xalloc_free(&a, 15, &Constraints::new().nocross(16));
    assert_eq!(o2 % 3, 0);
    assert!(!crosses(o2, 15, 16));

    // [min 81, max 252) should be available; older Akaros xalloc could hand
    // out segments that were not free the second time.
    let [o3, o4] = [(); 2].map(|()| {
        let o = xalloc_ok(&a, 3, &window(81, 252));
        assert_eq!(o % 3, 0);
        assert!(81 <= o && o + 3 <= 252);
        o
    });
    assert!(o4 + 3 <= o3 || o3 + 3 <= o4, "{o3} and {o4} overlap");

    xfree(&a, &[(o1, 3), (o3, 3), (o4, 3)]);
    destroy(a);

    // Akaros' nocross request, with a quantum it is a multiple of.
    let b = ids(&base, "xalloc-nocross", 1, &[(3, 4096)]);
    let o2 = xalloc_free(&b, 15, &Constraints::new().nocross(16));
    assert!(!crosses(o2, 15, 16), "{o2} + 15 crosses a multiple of 16");
    destroy(b);
}

#[test]
fn xalloc_minmax() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let a = ids(&base, "xalloc_minmax", 1, &[(1, 100)]);
    let o1 = xalloc_ok(&a, 20, &window(10, 30));
    assert_eq!(o1, 10);
    let o2 = xalloc_ok(&a, 20, &window(30, 50));
    assert_eq!(o2, 30);
    xfree(&a, &[(o1, 20), (o2, 20)]);
    destroy(a);
}

#[test]
fn accounting() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let a = ids(&base, "accounting", 1, &[(1, 100)]);
    let amounts = |a: &Arena<'_>| (a.amt_free(), a.amt_total());
    assert_eq!(amounts(&a), (100, 100));

    // Some fragmentation.
    let o1 = xalloc_ok(&a, 15, &window(10, 40));
    let o2 = xalloc_ok(&a, 15, &window(50, 90));
    assert_eq!(amounts(&a), (70, 100));
    let st = a.stats();
    assert_eq!((st.allocated, st.live, st.free_segments), (30, 2, 3));

    free(&a, &[(o1, 15), (o2, 15)]);
    assert_eq!(amounts(&a), (100, 100));
    destroy(a);
}

/// Akaros' `ARENA_SELF_SOURCE`: an arena whose import function manufactures
/// resources (here fresh ranges from a counter), then an arena importing
/// from it.
#[test]
fn self_source() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let store = AtomicUsize::new(PAGE_SIZE);
    let tssaf = FnSource::new(
        |amt: usize| Ok(store.fetch_add(amt.next_multiple_of(PAGE_SIZE), Ordering::Relaxed)),
        |_obj, _amt| {},
    )
    .with_quantum(PAGE_SIZE);
    let s = sourced_arena("test_self_source", PAGE_SIZE, &tssaf, &base);
    let o1 = alloc_ok(&s, 1, Policy::InstantFit);
    let o2 = alloc_ok(&s, 1, Policy::InstantFit);
    assert_ne!(o1, o2);
    assert_eq!(o1 % PAGE_SIZE, 0);
    assert_eq!(o2 % PAGE_SIZE, 0);
    free(&s, &[(o1, 1), (o2, 1)]);
    // Each span went back when it was wholly free.
    assert_eq!(s.amt_total(), 0);
    assert_eq!(s.stats().imports, s.stats().releases);

    {
        let a = sourced_arena("test_self_source-import", 1, &s, &base);
        let o1 = alloc_ok(&a, 1, Policy::InstantFit);
        ok(&s);
        let o2 = alloc_ok(&a, 1, Policy::InstantFit);
        assert_ne!(o1, o2);
        free(&a, &[(o1, 1), (o2, 1)]);
        ok(&s);
        assert_eq!(a.amt_total(), 0);
        destroy(a);
    }
    assert_eq!(s.amt_total(), 0);
    destroy(s);
}
