//! The arena self-test: boots a base arena over the static heap and checks
//! every allocation path and the bookkeeping (`amt_free`, `amt_total`,
//! `check`) after each step, then runs [`crate::child`] and
//! [`crate::slab`] over the same base arena and checks that everything came
//! back. Any failed check prints what failed and exits 1.

use core::ops::Range;

use kmem_arena::{Arena, Constraints, FreeError, Policy, ReportDetail, WalkKinds};

use crate::check::{ensure, fail, ok};
use crate::rt::{self, outln};

/// The base arena's quantum, and the child's.
pub(crate) const PAGE: usize = 4096;

/// Runs the consistency checker of `arena`.
pub(crate) fn check(arena: &Arena<'_>, after: &str) {
    if let Err(err) = arena.check() {
        fail(format_args!(
            "{}: check() after {after}: {err}",
            arena.name()
        ));
    }
}

/// `addr` is a fresh allocation of `size` from `arena`: inside the heap,
/// a multiple of `align` and inside one of the arena's spans.
pub(crate) fn check_block(
    arena: &Arena<'_>,
    heap: &Range<usize>,
    addr: usize,
    size: usize,
    align: usize,
) {
    ensure!(
        addr >= heap.start && addr.checked_add(size).is_some_and(|end| end <= heap.end),
        "{}: [{addr:#x}, +{size:#x}) is outside the heap {heap:#x?}",
        arena.name()
    );
    ensure!(
        addr.is_multiple_of(align),
        "{}: {addr:#x} is not {align:#x}-aligned",
        arena.name()
    );
    ensure!(
        arena.contains(addr, size),
        "{}: contains({addr:#x}, {size:#x}) is false for a live allocation",
        arena.name()
    );
}

/// Allocates `size` with `policy` and checks the result.
pub(crate) fn alloc(arena: &Arena<'_>, heap: &Range<usize>, size: usize, policy: Policy) -> usize {
    let addr = ok(arena.alloc(size, policy), "alloc");
    check_block(arena, heap, addr, size, arena.quantum());
    addr
}

/// Frees and runs the checker. Every arena here hands out memory, so the
/// free is the unsafe `free_memory` (the safe `free` refuses them).
///
/// # Safety
/// `addr` was allocated from `arena` with `alloc` and this size, and is not
/// used afterwards.
pub(crate) unsafe fn free(arena: &Arena<'_>, addr: usize, size: usize) {
    // SAFETY: the caller's guarantee.
    ok(unsafe { arena.free_memory(addr, size) }, "free");
    check(arena, "free");
}

/// Up to 64 free segments `(start, size)` of an arena, gathered without a heap.
struct FreeSegments {
    segs: [(usize, usize); 64],
    len: usize,
}

impl FreeSegments {
    fn of(arena: &Arena<'_>) -> Self {
        let mut this = Self {
            segs: [(0, 0); 64],
            len: 0,
        };
        arena.walk(WalkKinds::FREE, |seg| {
            if this.len < this.segs.len() {
                this.segs[this.len] = (seg.start, seg.size);
                this.len += 1;
            }
        });
        this
    }

    fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.segs[..self.len].iter().copied()
    }

    /// The free segment holding `addr`.
    fn holding(&self, addr: usize) -> Option<(usize, usize)> {
        self.iter()
            .find(|&(start, size)| start <= addr && addr - start < size)
    }
}

/// Power-of-two size class of `size` (floor of log2).
fn size_class(size: usize) -> u32 {
    size.ilog2()
}

/// Boots the base arena over `[heap, heap + len)` and runs every check.
///
/// # Safety
///
/// - `[heap, heap + len)` must be writable memory that lives for the rest of
///   the program and that nothing else reads or writes from now on: the base
///   arena keeps its boundary tags in it;
/// - it must be aligned to 4096 bytes.
pub(crate) unsafe fn run(heap: usize, len: usize) {
    outln!("kmem-nostd-boot: base arena over [{heap:#x}, +{len:#x})");
    // The region is page aligned: a multiple of the quantum 4096, itself a
    // multiple of 8 as a base arena requires.
    // SAFETY: the caller hands over `[heap, heap + len)`: writable, 'static,
    // used by nothing else.
    let base = unsafe { Arena::new_base("nostd-base", heap, len, PAGE) };
    let base = ok(base, "Arena::new_base");
    let heap = heap..heap + len;
    check(&base, "new_base");
    let free0 = base.amt_free();
    let total0 = base.amt_total();
    ensure!(
        total0 == len,
        "base: amt_total() = {total0:#x}, expected {len:#x}"
    );
    ensure!(
        free0 <= total0 && free0 >= total0 / 2,
        "base: amt_free() = {free0:#x} of {total0:#x} after boot"
    );
    outln!("  booted: {free0:#x} of {total0:#x} bytes free");

    instant_fit(&base, &heap);
    best_fit(&base, &heap);
    next_fit(&base, &heap);
    xalloc(&base, &heap);
    bad_input(&base, &heap);
    ensure!(
        base.amt_free() == free0 && base.amt_total() == total0,
        "base: amt_free/amt_total = {:#x}/{:#x} after freeing everything, expected {free0:#x}/{total0:#x}",
        base.amt_free(),
        base.amt_total()
    );
    outln!("  base arena back to {free0:#x} of {total0:#x} bytes free");

    crate::child::run(&base, &heap);
    ensure!(
        base.amt_free() == free0 && base.amt_total() == total0,
        "base: amt_free/amt_total = {:#x}/{:#x} after the child was destroyed, expected {free0:#x}/{total0:#x}",
        base.amt_free(),
        base.amt_total()
    );
    check(&base, "the child arena's destroy");

    crate::slab::run(&base, &heap);
    ensure!(
        base.amt_free() == free0 && base.amt_total() == total0,
        "base: amt_free/amt_total = {:#x}/{:#x} after the caches were destroyed, expected {free0:#x}/{total0:#x}",
        base.amt_free(),
        base.amt_total()
    );
    check(&base, "the caches' teardown");
    let _ = base.report(&mut rt::Fd(rt::STDOUT), ReportDetail::Summary);
}

/// Instant fit: allocate, check the accounting, free.
fn instant_fit(base: &Arena<'_>, heap: &Range<usize>) {
    let free0 = base.amt_free();
    let size = 3 * PAGE;
    let a = alloc(base, heap, size, Policy::InstantFit);
    check(base, "instant-fit alloc");
    ensure!(
        base.amt_free() <= free0 - size,
        "base: amt_free() = {:#x} after allocating {size:#x} of {free0:#x}",
        base.amt_free()
    );
    // SAFETY: allocated above with this size, not used after.
    unsafe { free(base, a, size) };
    outln!("  instant fit: {size:#x} bytes at {a:#x}");
}

/// Best fit: with a 2-page and an 8-page hole punched between live guards, a
/// 2-page best-fit request comes from a free segment in the size class of
/// the smallest one that fits (vmem's best fit is exact up to the
/// power-of-two free lists).
fn best_fit(base: &Arena<'_>, heap: &Range<usize>) {
    let g0 = alloc(base, heap, PAGE, Policy::InstantFit);
    let small = alloc(base, heap, 2 * PAGE, Policy::InstantFit);
    let g1 = alloc(base, heap, PAGE, Policy::InstantFit);
    let big = alloc(base, heap, 8 * PAGE, Policy::InstantFit);
    let g2 = alloc(base, heap, PAGE, Policy::InstantFit);
    // SAFETY: (both) allocated above with this size, not used after.
    unsafe {
        free(base, small, 2 * PAGE);
        free(base, big, 8 * PAGE);
    }

    let size = 2 * PAGE;
    let before = FreeSegments::of(base);
    let smallest = before
        .iter()
        .map(|(_, s)| s)
        .filter(|&s| s >= size)
        .min()
        .unwrap_or_else(|| fail(format_args!("base: no free segment of {size:#x} bytes")));
    let b = alloc(base, heap, size, Policy::BestFit);
    check(base, "best-fit alloc");
    let Some((_, from)) = before.holding(b) else {
        fail(format_args!(
            "base: best fit returned {b:#x}, which was not free"
        ));
    };
    ensure!(
        size_class(from) == size_class(smallest),
        "base: best fit took {size:#x} from a free segment of {from:#x} although one of {smallest:#x} fits"
    );
    for (addr, size) in [(b, size), (g0, PAGE), (g1, PAGE), (g2, PAGE)] {
        // SAFETY: allocated above with this size, not used after.
        unsafe { free(base, addr, size) };
    }
    outln!("  best fit: {size:#x} bytes at {b:#x}, from a free segment of {from:#x}");
}

/// Next fit: a segment just freed is not handed out again at once.
fn next_fit(base: &Arena<'_>, heap: &Range<usize>) {
    let n1 = alloc(base, heap, PAGE, Policy::NextFit);
    let n2 = alloc(base, heap, PAGE, Policy::NextFit);
    ensure!(n1 != n2, "base: next fit returned {n1:#x} twice");
    // SAFETY: allocated above with this size, not used after.
    unsafe { free(base, n1, PAGE) };
    let n3 = alloc(base, heap, PAGE, Policy::NextFit);
    ensure!(
        n3 != n1,
        "base: next fit reused {n1:#x} right after it was freed"
    );
    // SAFETY: (both) allocated above with this size, not used after.
    unsafe {
        free(base, n2, PAGE);
        free(base, n3, PAGE);
    }
    outln!("  next fit: {n1:#x}, {n2:#x}, then {n3:#x}");
}

/// A constrained `xalloc`: 64 KiB alignment with a one-page phase, no
/// 128 KiB boundary crossed, inside the middle half of the heap.
fn xalloc(base: &Arena<'_>, heap: &Range<usize>) {
    const ALIGN: usize = 64 << 10;
    const NOCROSS: usize = 128 << 10;
    let size = 3 * PAGE;
    let (lo, hi) = (heap.start + (256 << 10), heap.start + (768 << 10));
    let constraints = Constraints::new()
        .align(ALIGN)
        .phase(PAGE)
        .nocross(NOCROSS)
        .min_addr(lo)
        .max_addr(hi);
    let x = ok(base.xalloc(size, &constraints), "xalloc");
    check(base, "xalloc");
    check_block(base, heap, x, size, PAGE);
    ensure!(
        x % ALIGN == PAGE,
        "base: xalloc returned {x:#x}, not at phase {PAGE:#x} of {ALIGN:#x}"
    );
    ensure!(
        x >= lo && x + size <= hi,
        "base: xalloc returned [{x:#x}, +{size:#x}) outside [{lo:#x}, {hi:#x})"
    );
    ensure!(
        x / NOCROSS == (x + size - 1) / NOCROSS,
        "base: xalloc returned [{x:#x}, +{size:#x}), which crosses a {NOCROSS:#x} boundary"
    );
    // SAFETY: allocated by `xalloc` above with this size, not used after.
    ok(unsafe { base.xfree_memory(x, size) }, "xfree");
    check(base, "xfree");
    outln!("  xalloc: {size:#x} bytes at {x:#x} (align {ALIGN:#x}, phase {PAGE:#x}, nocross {NOCROSS:#x})");
}

/// Bad input is refused with an error and changes nothing.
fn bad_input(base: &Arena<'_>, heap: &Range<usize>) {
    let size = 2 * PAGE;
    let a = alloc(base, heap, size, Policy::InstantFit);
    let free0 = base.amt_free();
    // The unsafe frees below check what they are given, as the safe ones
    // do: each is refused, so nothing is given away (the caller keeps `a`).
    let refused = [
        ("alloc(0)", base.alloc(0, Policy::InstantFit).is_err()),
        (
            "safe free in a memory arena",
            base.free(a, size) == Err(FreeError::MemoryArena { addr: a }),
        ),
        (
            "free of an interior address",
            // SAFETY: refused (see above).
            unsafe { base.free_memory(a + PAGE, PAGE) }.is_err(),
        ),
        (
            "free with the wrong size",
            // SAFETY: refused (see above).
            unsafe { base.free_memory(a, PAGE) }.is_err(),
        ),
        (
            "xalloc with nocross below the size",
            base.xalloc(size, &Constraints::new().nocross(PAGE))
                .is_err(),
        ),
    ];
    for (what, was_refused) in refused {
        ensure!(was_refused, "base: {what} was accepted");
        ensure!(
            base.amt_free() == free0,
            "base: amt_free() changed after a refused {what}"
        );
        check(base, what);
    }
    // SAFETY: allocated above with this size, not used after.
    unsafe { free(base, a, size) };
    ensure!(
        // SAFETY: a double free, refused: `a` is no one's any more.
        unsafe { base.free_memory(a, size) }.is_err(),
        "base: a double free was accepted"
    );
    check(base, "a refused double free");
    outln!(
        "  bad input: {} requests refused, nothing changed",
        refused.len() + 1
    );
}
