//! A child arena sourced from the base arena: it imports spans for its
//! allocations (tags from the base too) and gives each span back as soon as
//! it is wholly free, then is destroyed.

use core::ops::Range;

use kmem_arena::{Arena, Constraints, Policy};

use crate::check::{ensure, ok};
use crate::rt::outln;
use crate::selftest::{alloc, check, check_block, free, PAGE};

/// A child arena sourced from the base imports spans for its allocations and
/// releases each span as soon as it is entirely free.
pub(crate) fn run(base: &Arena<'_>, heap: &Range<usize>) {
    let base_free = base.amt_free();
    let mut child = ok(
        Arena::builder("nostd-child")
            .quantum(PAGE)
            .source(base)
            .tags_from(base)
            .build(),
        "building the child arena",
    );
    check(&child, "build");
    ensure!(
        child.amt_total() == 0,
        "child: amt_total() = {:#x} before any import",
        child.amt_total()
    );

    let c1 = alloc(&child, heap, PAGE, Policy::InstantFit);
    let c2 = alloc(&child, heap, 16 * PAGE, Policy::BestFit);
    let aligned = Constraints::new().align(64 << 10);
    let c3 = ok(child.xalloc(4 * PAGE, &aligned), "child: xalloc");
    check_block(&child, heap, c3, 4 * PAGE, 64 << 10);
    check(&child, "allocations");
    check(base, "the child's imports");
    let imported = child.amt_total();
    ensure!(
        imported >= 21 * PAGE,
        "child: amt_total() = {imported:#x} with {:#x} bytes live",
        21 * PAGE
    );
    ensure!(
        base.amt_free() + imported <= base_free,
        "base: amt_free() = {:#x} while the child holds {imported:#x} of {base_free:#x}",
        base.amt_free()
    );
    for (addr, size) in [(c1, PAGE), (c2, 16 * PAGE)] {
        // SAFETY: allocated above with this size, not used after.
        unsafe { free(&child, addr, size) };
    }
    // SAFETY: allocated by `xalloc` above with this size, not used after.
    ok(unsafe { child.xfree_memory(c3, 4 * PAGE) }, "child: xfree");
    check(&child, "xfree");
    check(base, "the child's releases");
    ensure!(
        child.amt_total() == 0 && child.amt_free() == 0,
        "child: amt_total/amt_free = {:#x}/{:#x} after freeing everything; spans were not returned",
        child.amt_total(),
        child.amt_free()
    );
    let stats = child.stats();
    ensure!(
        stats.imports > 0 && stats.releases == stats.imports && stats.spans == 0,
        "child: {} imports, {} releases, {} spans left after freeing everything",
        stats.imports,
        stats.releases,
        stats.spans
    );
    ok(child.destroy(), "child: destroy");
    drop(child);
    outln!(
        "  child arena: {} imports ({imported:#x} bytes) for 3 allocations, all released, destroyed",
        stats.imports
    );
}
