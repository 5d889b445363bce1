//! A base arena keeps its own hash tables as metadata segments: growing the
//! hash twice frees the first external table before any user free has
//! happened, which must not disturb the counters (it once underflowed the
//! free count).

use kmem_arena::Policy;
use kmem_physmem::{PhysMem, PAGE_SIZE};

#[test]
fn base_hash_grows_twice_before_any_free() {
    let ram = PhysMem::new(8 << 20);
    let base = ram.base_arena("base", PAGE_SIZE);
    let start = base.stats();
    let pages: Vec<usize> = (0..400)
        .map(|_| base.alloc(PAGE_SIZE, Policy::InstantFit).unwrap())
        .collect();
    let grown = base.stats();
    assert!(grown.hash_chains >= 512, "hash did not grow twice");
    assert_eq!(
        grown.allocs,
        start.allocs + 400,
        "metadata counted as allocations"
    );
    assert_eq!(grown.frees, start.frees, "metadata frees counted");
    assert_eq!(grown.live, 400);
    for p in pages {
        // SAFETY: allocated above with this size, not used after.
        unsafe { base.free_memory(p, PAGE_SIZE) }.unwrap();
    }
    base.check().unwrap();
    assert_eq!(base.stats().frees, start.frees + 400);
}
