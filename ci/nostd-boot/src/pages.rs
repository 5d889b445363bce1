//! Constrained allocation from the booted page arena (`kpages`): `xalloc`
//! with alignment, phase and a boundary not to cross (bypassing its quantum
//! caches, importing from the base arena as needed), then `xfree`; a free of
//! the wrong size is refused.

use core::ops::Range;

use kmem_arena::Constraints;

use crate::check::{ensure, fail, ok};
use crate::rt::outln;
use crate::stack::{in_ram, K};

/// The page size, `kpages`' quantum.
const PAGE: usize = 4096;

/// Runs the `xalloc` checks on `k.pages()`.
pub(crate) fn run(k: &K, ram: &Range<usize>) {
    let pages = k.pages();
    ensure!(
        pages.quantum() == PAGE,
        "kpages: quantum {:#x}",
        pages.quantum()
    );
    let free0 = pages.amt_free();
    const ALIGN: usize = 64 << 10;
    const NOCROSS: usize = 128 << 10;
    let cases = [
        (
            3 * PAGE,
            Constraints::new().align(ALIGN).phase(PAGE).nocross(NOCROSS),
        ),
        (16 * PAGE, Constraints::new().align(ALIGN)),
        (PAGE, Constraints::new().align(2 * PAGE).phase(PAGE)),
    ];
    let mut got = [0usize; 3];
    for (slot, (size, c)) in got.iter_mut().zip(&cases) {
        let x = ok(pages.xalloc(*size, c), "kpages: xalloc");
        ensure!(
            in_ram(ram, x, *size) && pages.contains(x, *size),
            "kpages: xalloc returned [{x:#x}, +{size:#x}), outside its spans or the region"
        );
        *slot = x;
    }
    let [a, b, c] = got;
    ensure!(
        a % ALIGN == PAGE && a / NOCROSS == (a + 3 * PAGE - 1) / NOCROSS,
        "kpages: [{a:#x}, +{:#x}) is not at phase {PAGE:#x} of {ALIGN:#x} or crosses {NOCROSS:#x}",
        3 * PAGE
    );
    ensure!(b % ALIGN == 0, "kpages: {b:#x} is not {ALIGN:#x}-aligned");
    ensure!(
        c % (2 * PAGE) == PAGE,
        "kpages: {c:#x} is not at phase {PAGE:#x} of {:#x}",
        2 * PAGE
    );
    if let Err(err) = pages.check() {
        fail(format_args!("kpages: check() after xalloc: {err}"));
    }
    ensure!(
        pages.xfree(a, 3 * PAGE).is_err(),
        "kpages: the safe xfree of memory was accepted"
    );
    ensure!(
        // SAFETY: the wrong size: refused, so `a` stays allocated.
        unsafe { pages.xfree_memory(a, PAGE) }.is_err(),
        "kpages: xfree of {a:#x} with the wrong size was accepted"
    );
    for (x, (size, _)) in got.into_iter().zip(&cases) {
        // SAFETY: allocated by `xalloc` above with this size, not used after.
        ok(unsafe { pages.xfree_memory(x, *size) }, "kpages: xfree");
    }
    if let Err(err) = pages.check() {
        fail(format_args!("kpages: check() after xfree: {err}"));
    }
    ensure!(
        pages.amt_free() == free0,
        "kpages: amt_free() = {:#x} after xfree, was {free0:#x}",
        pages.amt_free()
    );
    outln!(
        "  kpages xalloc: {a:#x} (align {ALIGN:#x}, phase {PAGE:#x}, nocross {NOCROSS:#x}), \
         {b:#x} (align {ALIGN:#x}), {c:#x} (phase {PAGE:#x} of {:#x}); xfreed",
        2 * PAGE
    );
}
