//! One test per bad input to the arena (the table in RELIABILITY.md).
//!
//! Each asserts the exact typed error, that its `Display` text is not empty,
//! that the arena is exactly as it was (accounting, counters, tags in use and
//! every span and segment as [`Arena::walk`] reports them) and that
//! [`Arena::check`] passes afterwards.

use core::error::Error;
use core::fmt::Debug;
use core::sync::atomic::{AtomicUsize, Ordering};

use kmem_arena::{
    AddError, AllocError, Arena, Constraints, CreateError, DestroyError, FnSource, FreeError,
    Policy, Segment, SegmentKind, WalkKinds,
};
use kmem_physmem::faults::{ArenaState, Leave};
use kmem_physmem::kit::{assert_check as ok, segments, POLICIES};
use kmem_physmem::{PhysMem, PAGE_SIZE};

// ---------------------------------------------------------------------------
// Shared helpers.

/// Fake RAM for the base arenas.
const RAM: usize = 1 << 20;

/// Everything bad input must leave alone: the accounting, the counters,
/// the tags in use (reserving unused tags ahead of an operation is allowed,
/// using or losing one is not) and every span and segment.
fn state(a: &Arena<'_>) -> ArenaState {
    ArenaState::leaving(a, Leave::UnusedTags)
}

/// Fails unless `a` is exactly as `before` and passes its check.
#[track_caller]
fn assert_unchanged(a: &Arena<'_>, before: &ArenaState) {
    assert_eq!(&state(a), before, "arena {:?} changed", a.name());
    ok(a);
}

/// Fails unless `e` is a `core::error::Error` with a `Display` text.
#[track_caller]
fn assert_displays(e: &dyn Error) {
    assert!(!e.to_string().is_empty(), "{e:?} displays as nothing");
}

/// Runs `op` on `a` and fails unless it returns exactly `Err(expected)` and
/// leaves `a` exactly as it was.
#[track_caller]
fn assert_refused<T, E>(a: &Arena<'_>, expected: E, op: impl FnOnce() -> Result<T, E>)
where
    T: Debug,
    E: Error + PartialEq,
{
    ok(a);
    let before = state(a);
    match op() {
        Ok(v) => panic!("expected Err({expected:?}), got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e, expected);
            assert_displays(&e);
        }
    }
    assert_unchanged(a, &before);
}

/// Runs `f` with an arena of IDs of quantum `q` (tags from a base arena)
/// holding the span `[0x1000q, 0x2000q)` with three live allocations and
/// free segments between them; afterwards frees them and destroys it.
fn with_arena(q: usize, f: impl FnOnce(&Arena<'_>, &[(usize, usize)])) {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let mut a = Arena::builder("ids")
        .quantum(q)
        .span(0x1000 * q, 0x1000 * q)
        .tags_from(&base)
        .build()
        .unwrap();
    let mut live = Vec::new();
    for (at, size) in [(0, 3), (8, 3), (20, 5)] {
        let (at, size) = (0x1000 * q + at * q, size * q);
        let c = Constraints::new().min_addr(at).max_addr(at + size);
        assert_eq!(a.xalloc(size, &c), Ok(at));
        live.push((at, size));
    }
    ok(&a);
    f(&a, &live);
    ok(&a);
    for (at, size) in live {
        a.xfree(at, size).unwrap();
    }
    a.destroy().unwrap();
    ok(&a);
}

/// Runs each `xalloc(size, constraints)` of `requests` on one
/// [`with_arena`] arena of quantum `q`: each must be refused with exactly
/// `expected`, changing nothing ([`assert_refused`]).
#[track_caller]
fn xalloc_refused(q: usize, expected: AllocError, requests: &[(usize, Constraints)]) {
    with_arena(q, |a, _| {
        for (size, c) in requests {
            assert_refused(a, expected, || a.xalloc(*size, c));
        }
    });
}

/// [`xalloc_refused`] for spans: each `add(base, size)` of `spans` must
/// be refused with exactly `expected`, changing nothing.
#[track_caller]
fn add_refused(q: usize, expected: AddError, spans: &[(usize, usize)]) {
    with_arena(q, |a, _| {
        for &(base, size) in spans {
            assert_refused(a, expected, || a.add(base, size));
        }
    });
}

/// Runs `f` with a base arena over fresh fake RAM.
fn with_base(f: impl FnOnce(&Arena<'_>)) {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    ok(&base);
    f(&base);
    ok(&base);
}

/// What the source of a [`with_sourced`] arena saw.
#[derive(Default)]
struct Imports {
    /// Imports made.
    imports: AtomicUsize,
    /// Bytes imported and not released.
    outstanding: AtomicUsize,
}

/// Runs `f` with an arena of quantum `q` (tags from a base arena) that
/// imports fresh ranges (page quantum) from an `FnSource` counting what it
/// hands out, holding one allocation of `held` units; afterwards frees it,
/// destroys the arena and checks that every span went back.
fn with_sourced(q: usize, held: usize, f: impl FnOnce(&mut Arena<'_>, &Imports)) {
    let seen = Imports::default();
    let next = AtomicUsize::new(1 << 20);
    let src = FnSource::new(
        |size| {
            seen.imports.fetch_add(1, Ordering::Relaxed);
            seen.outstanding.fetch_add(size, Ordering::Relaxed);
            Ok(next.fetch_add(size, Ordering::Relaxed))
        },
        |_, size| {
            seen.outstanding.fetch_sub(size, Ordering::Relaxed);
        },
    )
    .with_quantum(PAGE_SIZE);
    with_base(|base| {
        let mut a = Arena::builder("sourced")
            .quantum(q)
            .source(&src)
            .tags_from(base)
            .build()
            .unwrap();
        let x = a.alloc(held, Policy::InstantFit).unwrap();
        ok(&a);
        f(&mut a, &seen);
        a.free(x, held).unwrap();
        ok(&a);
        a.destroy().unwrap();
    });
    assert_eq!(seen.outstanding.load(Ordering::Relaxed), 0);
}

/// The first free segment of `a`.
fn some_free(a: &Arena<'_>) -> Segment {
    segments(a, WalkKinds::ALL)
        .into_iter()
        .find(|s| s.kind == SegmentKind::Free)
        .expect("a free segment")
}

#[test]
fn every_error_displays() {
    let alloc = [
        AllocError::ZeroSize,
        AllocError::Overflow,
        AllocError::BadAlign,
        AllocError::BadNocross,
        AllocError::Misaligned,
        AllocError::BadPhase,
        AllocError::Overconstrained,
        AllocError::Exhausted,
        AllocError::NoTags,
        AllocError::BadImport,
        AllocError::Busy,
        AllocError::LimitReached,
        AllocError::TimedOut,
    ];
    let free = [
        FreeError::ZeroSize,
        FreeError::NotAllocated { addr: 0 },
        FreeError::WrongSize {
            addr: 0x1000,
            size: 16,
            expected: 32,
        },
        FreeError::MemoryArena { addr: 0x1000 },
    ];
    let add = [
        AddError::ZeroSize,
        AddError::Misaligned,
        AddError::Overflow,
        AddError::Overlap,
        AddError::Sourced,
        AddError::MemoryArena,
        AddError::NoTags,
    ];
    let create = [
        CreateError::BadQuantum,
        CreateError::SpanWithSource,
        CreateError::TagsNotMemory,
        CreateError::TagsQuantum,
        CreateError::Span(AddError::Overlap),
        CreateError::SourceQuantum,
    ];
    let destroy = DestroyError::LiveAllocations {
        count: 1,
        bytes: 16,
    };
    let all = alloc.iter().map(|e| e as &dyn Error);
    let all = all.chain(free.iter().map(|e| e as &dyn Error));
    let all = all.chain(add.iter().map(|e| e as &dyn Error));
    let all = all.chain(create.iter().map(|e| e as &dyn Error));
    for e in all.chain([&destroy as &dyn Error]) {
        assert_displays(e);
    }
}

// ---------------------------------------------------------------------------
// Zero sizes.

#[test]
fn alloc_zero_size() {
    with_arena(16, |a, _| {
        for policy in POLICIES {
            assert_refused(a, AllocError::ZeroSize, || a.alloc(0, policy));
        }
    });
}

#[test]
fn xalloc_zero_size() {
    xalloc_refused(
        16,
        AllocError::ZeroSize,
        &[
            (0, Constraints::new()),
            (0, Constraints::new().align(64).nocross(256)),
        ],
    );
}

#[test]
fn free_zero_size() {
    with_arena(16, |a, live| {
        let (at, _) = live[0];
        assert_refused(a, FreeError::ZeroSize, || a.free(at, 0));
        assert_refused(a, FreeError::ZeroSize, || a.xfree(at, 0));
    });
}

#[test]
fn add_zero_size() {
    add_refused(16, AddError::ZeroSize, &[(0x10_0000, 0)]);
}

// ---------------------------------------------------------------------------
// Bad xalloc constraints.

#[test]
fn align_not_power_of_two() {
    let aligns = [3, 12, 48, usize::MAX];
    let requests = aligns.map(|align| (16, Constraints::new().align(align)));
    xalloc_refused(16, AllocError::BadAlign, &requests);
}

#[test]
fn align_zero() {
    xalloc_refused(
        16,
        AllocError::BadAlign,
        &[(16, Constraints::new().align(0))],
    );
}

#[test]
fn nocross_not_power_of_two() {
    let requests = [48, 0x3000, usize::MAX].map(|n| (16, Constraints::new().nocross(n)));
    xalloc_refused(16, AllocError::BadNocross, &requests);
}

#[test]
fn phase_not_multiple_of_quantum() {
    let misaligned = AllocError::Misaligned;
    xalloc_refused(
        16,
        misaligned,
        &[(16, Constraints::new().align(64).phase(8))],
    );
    xalloc_refused(3, misaligned, &[(3, Constraints::new().align(16).phase(4))]);
}

#[test]
fn nocross_not_multiple_of_quantum() {
    xalloc_refused(
        16,
        AllocError::Misaligned,
        &[(1, Constraints::new().nocross(8))],
    );
    // With an odd quantum no power of two is a multiple of it, so nocross is
    // accepted there (Akaros' quantum 3, nocross 4) but must still be a
    // power of two.
    xalloc_refused(
        3,
        AllocError::BadNocross,
        &[(3, Constraints::new().nocross(12))],
    );
}

#[test]
fn phase_not_below_effective_alignment() {
    let requests = [8, 9, 1000].map(|phase| (1, Constraints::new().align(8).phase(phase)));
    xalloc_refused(1, AllocError::BadPhase, &requests);
    // Align 4 in quantum 16: the effective alignment is 16.
    xalloc_refused(
        16,
        AllocError::BadPhase,
        &[(16, Constraints::new().align(4).phase(16))],
    );
    // Align 4 in quantum 3: the effective alignment is 12.
    xalloc_refused(
        3,
        AllocError::BadPhase,
        &[(3, Constraints::new().align(4).phase(12))],
    );
}

#[test]
fn size_align_phase_overflow() {
    with_arena(4096, |a, _| {
        // Rounding to the quantum alone overflows.
        for size in [usize::MAX, usize::MAX - 1, usize::MAX - 4094] {
            for policy in POLICIES {
                assert_refused(a, AllocError::Overflow, || a.alloc(size, policy));
            }
            assert_refused(a, AllocError::Overflow, || {
                a.xalloc(size, &Constraints::new())
            });
        }
        // The rounded size fits, but not with the alignment and phase.
        assert_refused(a, AllocError::Overflow, || {
            a.xalloc(
                usize::MAX - 4096,
                &Constraints::new().align(1 << 13).phase(4096),
            )
        });
    });
    xalloc_refused(
        1,
        AllocError::Overflow,
        &[
            (usize::MAX - 10, Constraints::new().align(16)),
            (usize::MAX - 10, Constraints::new().align(8).phase(4)),
        ],
    );
}

#[test]
fn size_overflow_in_sourced_arena() {
    with_sourced(1, 100, |a, src| {
        let imported = src.imports.load(Ordering::Relaxed);
        // The size fits in this arena's quantum, but not rounded up to the
        // source's.
        for policy in POLICIES {
            assert_refused(a, AllocError::Overflow, || a.alloc(usize::MAX - 10, policy));
        }
        // The request itself fits, but a span sure to satisfy it (twice the
        // size, for nocross) does not.
        assert_refused(a, AllocError::Overflow, || {
            a.xalloc(1 << 63, &Constraints::new().nocross(1 << 63))
        });
        assert_eq!(src.imports.load(Ordering::Relaxed), imported);
    });
}

#[test]
fn nocross_smaller_than_size() {
    // 17 rounds to 32 units.
    let requests = [32, 17].map(|size| (size, Constraints::new().nocross(16)));
    xalloc_refused(16, AllocError::Overconstrained, &requests);
}

#[test]
fn window_min_not_below_max() {
    let windows = [(0x1_0000, 0x1_0000), (0x2_0000, 0x1_0000), (usize::MAX, 0)];
    let requests = windows.map(|(min, max)| (16, Constraints::new().min_addr(min).max_addr(max)));
    xalloc_refused(16, AllocError::Overconstrained, &requests);
}

#[test]
fn window_smaller_than_size() {
    let lo = 0x1_0000;
    let window = |len| Constraints::new().min_addr(lo).max_addr(lo + len);
    // 1 rounds to one quantum, 16 units: an 8-unit window is too small.
    xalloc_refused(
        16,
        AllocError::Overconstrained,
        &[(64, window(48)), (1, window(8))],
    );
}

/// Alignment, phase and `nocross` that no address satisfies: an odd phase
/// with `nocross` 2 and a size of 2 puts every candidate across a boundary.
/// Refused up front, not after a search of every free segment (which held
/// the arena's lock for seconds to minutes with a large alignment).
#[test]
fn phase_straddles_every_nocross_boundary() {
    xalloc_refused(
        1,
        AllocError::Overconstrained,
        &[
            (2, Constraints::new().nocross(2).align(1 << 24).phase(1)),
            (3, Constraints::new().nocross(4).align(1 << 22).phase(2)),
        ],
    );
}

/// test_vmalloc's `align_shift`: one unit at every alignment 2^0..2^63 in
/// a span that holds only the small ones; the others are refused with
/// `Exhausted` (an aligned start exists in the address space, not in the
/// arena), never a panic.
#[test]
fn every_alignment_fits_or_is_exhausted() {
    with_arena(1, |a, _| {
        for shift in 0..usize::BITS {
            let c = Constraints::new().align(1 << shift);
            match a.xalloc(1, &c) {
                Ok(x) => {
                    assert_eq!(x % (1 << shift), 0);
                    a.xfree(x, 1).unwrap();
                }
                Err(e) => {
                    assert_eq!(e, AllocError::Exhausted, "alignment 2^{shift}");
                    assert!(shift >= 12, "alignment 2^{shift} refused");
                }
            }
        }
    });
}

/// A window holding no aligned start is refused up front, though it is
/// larger than the size.
#[test]
fn window_without_an_aligned_start() {
    let lo = 0x1_0010;
    let c = Constraints::new()
        .align(0x100)
        .min_addr(lo)
        .max_addr(lo + 0xe0);
    xalloc_refused(16, AllocError::Overconstrained, &[(16, c)]);
}

/// As [`assert_refused`], for a refusal the arena counts as a failed
/// allocation (its `failures` statistic grows by one; nothing else
/// changes).
#[track_caller]
fn assert_failed(
    a: &Arena<'_>,
    expected: AllocError,
    op: impl FnOnce() -> Result<usize, AllocError>,
) {
    ok(a);
    let before = state(a);
    assert_eq!(op(), Err(expected));
    assert_displays(&expected);
    let mut after = state(a);
    after.stats.failures -= 1;
    assert_eq!(after, before, "arena {:?} changed", a.name());
    ok(a);
}

/// `xalloc_at` on a range part of which is allocated: `Busy`, wherever the
/// allocated part lies (at the start, after a free stretch, or at the
/// span's start for a range beginning below it).
#[test]
fn xalloc_at_busy_range() {
    with_arena(16, |a, live| {
        let (first, second, third) = (live[0], live[1], live[2]);
        for (addr, size) in [
            (first.0, 16),
            (first.0 + 16, 16),
            (first.0 + 0x30, second.0 - first.0),
            (third.0 + 0x30, 16),
            (first.0 - 16, 32),
        ] {
            assert_failed(a, AllocError::Busy, || a.xalloc_at(addr, size));
        }
    });
}

/// `xalloc_at` on a range the arena does not hold (outside its span, or
/// running past its end): `Exhausted`, not `Busy`.
#[test]
fn xalloc_at_range_not_held() {
    with_arena(16, |a, _| {
        for (addr, size) in [(0x3_0000, 16), (0x1_fff0, 32), (0, 16)] {
            assert_failed(a, AllocError::Exhausted, || a.xalloc_at(addr, size));
        }
    });
}

/// `xalloc_at` with an address off the quantum, zero units, or an end
/// past the address space.
#[test]
fn xalloc_at_bad_arguments() {
    with_arena(16, |a, _| {
        assert_refused(a, AllocError::Misaligned, || a.xalloc_at(0x1_0038, 16));
        assert_refused(a, AllocError::ZeroSize, || a.xalloc_at(0x1_0040, 0));
        assert_refused(a, AllocError::Overflow, || a.xalloc_at(usize::MAX - 15, 32));
    });
}

// ---------------------------------------------------------------------------
// Bad spans.

#[test]
fn add_misaligned_base() {
    add_refused(16, AddError::Misaligned, &[(0x10_0008, 0x100)]);
}

#[test]
fn add_misaligned_size() {
    add_refused(16, AddError::Misaligned, &[(0x10_0000, 0x108)]);
}

/// The fixture's span is `[0x10000, 0x20000)` (quantum 16); a second span
/// sits at `[0x30000, 0x40000)`. Adding `[start, end)` must be refused.
fn assert_overlap_refused(start: usize, end: usize) {
    with_arena(16, |a, _| {
        a.add(0x3_0000, 0x1_0000).unwrap();
        assert_refused(a, AddError::Overlap, || a.add(start, end - start));
        // The neighbours on both sides of the first span are still free to add.
        a.add(0x8000, 0x8000).unwrap();
        a.add(0x2_0000, 0x1_0000).unwrap();
        ok(a);
    });
}

#[test]
fn add_overlap_below() {
    assert_overlap_refused(0x8000, 0x1_0010);
}

#[test]
fn add_overlap_above() {
    assert_overlap_refused(0x1_fff0, 0x2_8000);
}

#[test]
fn add_overlap_contained() {
    // Inside a free segment, inside an allocated one, and a single quantum.
    assert_overlap_refused(0x1_8000, 0x1_9000);
    assert_overlap_refused(0x1_0010, 0x1_0020);
    assert_overlap_refused(0x1_0090, 0x1_00a0);
}

#[test]
fn add_overlap_containing() {
    assert_overlap_refused(0x8000, 0x2_8000);
    // Covers both spans and the gap between them.
    assert_overlap_refused(0x8000, 0x4_8000);
}

#[test]
fn add_overlap_duplicate() {
    assert_overlap_refused(0x1_0000, 0x2_0000);
    assert_overlap_refused(0x3_0000, 0x4_0000);
}

#[test]
fn add_end_overflows() {
    let top = usize::MAX - 0xfff;
    // Ending exactly at 2^64 is not representable either.
    add_refused(4096, AddError::Overflow, &[(top, 0x2000), (top, 0x1000)]);
}

#[test]
fn add_on_sourced_arena() {
    with_sourced(16, 16, |a, _| {
        assert_refused(a, AddError::Sourced, || a.add(0x10_0000, 0x1000));
    });
}

#[test]
fn add_on_base_arena() {
    with_base(|base| {
        let ram = PhysMem::new(4 * PAGE_SIZE);
        assert_refused(base, AddError::MemoryArena, || {
            base.add(ram.start(), ram.len())
        });
    });
}

// ---------------------------------------------------------------------------
// Bad arena construction.

#[test]
fn build_span_with_source() {
    let imports = AtomicUsize::new(0);
    let src = FnSource::new(
        |_| {
            imports.fetch_add(1, Ordering::Relaxed);
            Err(AllocError::Exhausted)
        },
        |_, _| {},
    );
    with_base(|base| {
        let before = state(base);
        let e = Arena::builder("both")
            .span(0x1000, 0x1000)
            .source(&src)
            .tags_from(base)
            .build()
            .err();
        assert_eq!(e, Some(CreateError::SpanWithSource));
        assert_displays(&e.unwrap());
        assert_unchanged(base, &before);
    });
    assert_eq!(imports.load(Ordering::Relaxed), 0);
}

#[test]
fn build_quantum_zero() {
    let e = Arena::builder("q0").quantum(0).build().err();
    assert_eq!(e, Some(CreateError::BadQuantum));
    assert_displays(&e.unwrap());

    let e = Arena::builder("q0")
        .quantum(0)
        .span(0, 0x1000)
        .build()
        .err();
    assert_eq!(e, Some(CreateError::BadQuantum));

    let ram = PhysMem::new(4 * PAGE_SIZE);
    // SAFETY: `ram` is a fresh region used by nothing else, and it outlives
    // the (refused) arena.
    let e = unsafe { Arena::new_base("q0", ram.start(), ram.len(), 0) }.err();
    assert_eq!(e, Some(CreateError::BadQuantum));
}

#[test]
fn base_quantum_not_multiple_of_8() {
    let ram = PhysMem::new(4 * PAGE_SIZE);
    for quantum in [1, 4, 12, 4095] {
        // SAFETY: `ram` is a fresh region used by nothing else, and it
        // outlives the (refused) arena.
        let e = unsafe { Arena::new_base("q", ram.start(), ram.len(), quantum) }.err();
        assert_eq!(e, Some(CreateError::BadQuantum), "quantum {quantum}");
        assert_displays(&e.unwrap());
    }
}

#[test]
fn tags_from_non_memory_arena() {
    with_arena(16, |ids, _| {
        let before = state(ids);
        let e = Arena::builder("tags-from-ids").tags_from(ids).build().err();
        assert_eq!(e, Some(CreateError::TagsNotMemory));
        assert_displays(&e.unwrap());
        assert_unchanged(ids, &before);
    });
}

#[test]
fn tags_from_arena_with_bad_quantum() {
    // A base arena of quantum 8192, which does not divide a 4096-byte tag
    // page; its memory must be aligned to 8192.
    let q = 2 * PAGE_SIZE;
    let ram = PhysMem::new(RAM + q);
    let start = ram.start().next_multiple_of(q);
    // SAFETY: `[start, start + RAM)` lies inside `ram`, which nothing else
    // uses and which outlives the arena.
    let big = unsafe { Arena::new_base("big-quantum", start, RAM, q) }.unwrap();
    let before = state(&big);
    let e = Arena::builder("tags-from-big")
        .tags_from(&big)
        .build()
        .err();
    assert_eq!(e, Some(CreateError::TagsQuantum));
    assert_displays(&e.unwrap());
    assert_unchanged(&big, &before);
}

#[test]
fn build_misaligned_span() {
    with_base(|base| {
        let before = state(base);
        let e = Arena::builder("misaligned")
            .quantum(16)
            .span(0x1008, 0x1000)
            .tags_from(base)
            .build()
            .err();
        assert_eq!(e, Some(CreateError::Span(AddError::Misaligned)));
        assert_displays(&e.unwrap());
        assert_unchanged(base, &before);
    });
}

// ---------------------------------------------------------------------------
// Frees of addresses that are not allocated.

#[test]
fn free_never_allocated() {
    with_arena(16, |a, _| {
        let free = some_free(a).start;
        for addr in [free + 0x40, 0, 0x5_0000, usize::MAX - 15] {
            assert_refused(a, FreeError::NotAllocated { addr }, || a.free(addr, 16));
            assert_refused(a, FreeError::NotAllocated { addr }, || a.xfree(addr, 16));
        }
    });
}

#[test]
fn double_free() {
    with_arena(16, |a, _| {
        let x = a.alloc(48, Policy::InstantFit).unwrap();
        a.free(x, 48).unwrap();
        ok(a);
        assert_refused(a, FreeError::NotAllocated { addr: x }, || a.free(x, 48));
        assert_refused(a, FreeError::NotAllocated { addr: x }, || a.xfree(x, 48));
    });
}

#[test]
fn free_interior_address() {
    with_arena(16, |a, live| {
        let (at, size) = live[2];
        for addr in [at + 16, at + 1, at + size - 16] {
            assert_refused(a, FreeError::NotAllocated { addr }, || a.free(addr, 16));
            assert_refused(a, FreeError::NotAllocated { addr }, || {
                a.free(addr, size - (addr - at))
            });
        }
    });
}

#[test]
fn free_address_of_free_segment() {
    with_arena(16, |a, _| {
        let seg = some_free(a);
        assert_refused(a, FreeError::NotAllocated { addr: seg.start }, || {
            a.free(seg.start, seg.size)
        });
        assert_refused(a, FreeError::NotAllocated { addr: seg.start }, || {
            a.xfree(seg.start, 16)
        });
    });
}

#[test]
fn free_metadata_page() {
    with_base(|base| {
        // Enough live pages that the hash outgrows its 64 inline chains and
        // the base arena allocates a table for it: metadata of both kinds
        // (tag pages and a hash table).
        let pages: Vec<usize> = (0..64)
            .map(|_| base.alloc(PAGE_SIZE, Policy::InstantFit).unwrap())
            .collect();
        assert!(base.stats().hash_chains > 64);
        let meta: Vec<Segment> = segments(base, WalkKinds::ALL)
            .into_iter()
            .filter(|s| s.metadata)
            .collect();
        assert!(meta.len() >= 2, "tag pages and a hash table: {meta:?}");
        for m in meta {
            assert_eq!(m.kind, SegmentKind::Allocated);
            let addr = m.start;
            // A base arena refuses the safe frees outright ...
            assert_refused(base, FreeError::MemoryArena { addr }, || {
                base.free(addr, m.size)
            });
            assert_refused(base, FreeError::MemoryArena { addr }, || {
                base.xfree(addr, m.size)
            });
            // ... and the unsafe ones still check what they are given.
            // SAFETY: a test of that check: metadata is never handed out,
            // so the free is refused and gives nothing away.
            assert_refused(base, FreeError::NotAllocated { addr }, || unsafe {
                base.free_memory(addr, m.size)
            });
            // SAFETY: as above.
            assert_refused(base, FreeError::NotAllocated { addr }, || unsafe {
                base.xfree_memory(addr, m.size)
            });
            // SAFETY: as above.
            assert_refused(base, FreeError::NotAllocated { addr }, || unsafe {
                base.free_memory(addr, PAGE_SIZE)
            });
        }
        for p in pages {
            // SAFETY: allocated above with this size, not used after.
            unsafe { base.free_memory(p, PAGE_SIZE) }.unwrap();
        }
    });
}

// ---------------------------------------------------------------------------
// Frees with the wrong size.

#[test]
fn free_smaller_size() {
    with_arena(16, |a, _| {
        let x = a.alloc(40, Policy::InstantFit).unwrap(); // 48 units
        for (size, rounded) in [(16, 16), (20, 32), (32, 32)] {
            let e = FreeError::WrongSize {
                addr: x,
                size: rounded,
                expected: 48,
            };
            assert_refused(a, e, || a.free(x, size));
            assert_refused(a, e, || a.xfree(x, size));
        }
        // Still allocated, and freeable with any size that rounds to 48.
        a.free(x, 33).unwrap();
        ok(a);
    });
}

#[test]
fn free_larger_size() {
    with_arena(16, |a, live| {
        let (at, size) = live[1];
        for (bad, rounded) in [(size + 1, size + 16), (size * 2, size * 2)] {
            let e = FreeError::WrongSize {
                addr: at,
                size: rounded,
                expected: size,
            };
            assert_refused(a, e, || a.free(at, bad));
        }
        // A size so large its rounding saturates.
        assert!(matches!(
            a.xfree(at, usize::MAX),
            Err(FreeError::WrongSize { addr, expected, .. }) if addr == at && expected == size
        ));
        ok(a);
        // The fixture frees it with the right size afterwards.
    });
}

// ---------------------------------------------------------------------------
// Destroying an arena with live allocations.

#[test]
fn destroy_with_live_allocations() {
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let mut a = Arena::builder("ids")
        .quantum(16)
        .span(0x1_0000, 0x1_0000)
        .tags_from(&base)
        .build()
        .unwrap();
    let x = a.alloc(16, Policy::InstantFit).unwrap();
    let y = a.alloc(100, Policy::BestFit).unwrap(); // 112 units
    let z = a.xalloc(64, &Constraints::new().align(256)).unwrap();
    ok(&a);

    let before = state(&a);
    let e = a.destroy().unwrap_err();
    assert_eq!(
        e,
        DestroyError::LiveAllocations {
            count: 3,
            bytes: 16 + 112 + 64
        }
    );
    assert_displays(&e);
    assert_unchanged(&a, &before);

    // The arena still works.
    let w = a.alloc(32, Policy::InstantFit).unwrap();
    ok(&a);
    for (addr, size) in [(w, 32), (x, 16), (y, 100)] {
        a.free(addr, size).unwrap();
        ok(&a);
    }
    assert_eq!(
        a.destroy(),
        Err(DestroyError::LiveAllocations {
            count: 1,
            bytes: 64
        })
    );
    a.xfree(z, 64).unwrap();
    a.destroy().unwrap();
    assert_eq!(a.amt_total(), 0);
    ok(&a);
    ok(&base);
}

#[test]
fn destroy_base_with_live_allocations() {
    let ram = PhysMem::new(RAM);
    let mut base = ram.base_arena("base", PAGE_SIZE);
    let x = base.alloc(3 * PAGE_SIZE, Policy::InstantFit).unwrap();
    let before = state(&base);
    // The base arena's own tag pages are not live allocations.
    assert_eq!(
        base.destroy(),
        Err(DestroyError::LiveAllocations {
            count: 1,
            bytes: 3 * PAGE_SIZE
        })
    );
    assert_unchanged(&base, &before);
    // SAFETY: allocated above with this size, not used after.
    unsafe { base.free_memory(x, 3 * PAGE_SIZE) }.unwrap();
    ok(&base);
    base.destroy().unwrap();
}

#[test]
fn destroy_sourced_with_live_allocations() {
    with_sourced(16, 16, |a, src| {
        let before = state(a);
        assert_eq!(
            a.destroy(),
            Err(DestroyError::LiveAllocations {
                count: 1,
                bytes: 16
            })
        );
        assert_unchanged(a, &before);
        // No span went back under the live allocation.
        assert_eq!(src.outstanding.load(Ordering::Relaxed), PAGE_SIZE);
    });
}
