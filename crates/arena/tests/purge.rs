//! `Arena::purge`: every free segment of the size asked for is handed out
//! once, in address order, while no allocation can return it; afterwards
//! the arena is as it was. `Arena::tick`: the hash shrinks on the upkeep
//! pass.

mod common;

use core::cell::RefCell;

use common::{span_arena, tag_arena};

use kmem_arena::{Arena, Policy};
use kmem_physmem::{PhysMem, Rng};

/// Free segments of an arena, `(start, size)` in address order.
fn free_segments(a: &Arena<'_>) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    a.walk(kmem_arena::WalkKinds::FREE, |s| v.push((s.start, s.size)));
    v
}

#[test]
fn purge_hands_each_large_free_segment_out_once() {
    let ram = PhysMem::new(8 << 20);
    let tags = tag_arena(&ram);
    let a = span_arena("purged", 1, 0x10_0000, 1 << 20, &tags);
    // Random segments, every other freed: holes of random sizes.
    let mut rng = Rng::new(7);
    let mut live = Vec::new();
    while let Ok(addr) = a.alloc(rng.range(1, 64), Policy::InstantFit) {
        live.push(addr);
        if live.len() == 4000 {
            break;
        }
    }
    let sizes: Vec<usize> = {
        let mut v = Vec::new();
        a.walk(kmem_arena::WalkKinds::ALLOCATED, |s| v.push(s.size));
        v
    };
    for (i, (&addr, &size)) in live.iter().zip(&sizes).enumerate() {
        if i % 2 == 0 {
            a.free(addr, size).unwrap();
        }
    }
    let before = a.stats();
    let min = 16;
    let want: Vec<(usize, usize)> = free_segments(&a)
        .into_iter()
        .filter(|&(_, size)| size >= min)
        .collect();
    assert!(want.len() > 100, "{}", want.len());
    let seen = RefCell::new(Vec::new());
    let purged = a.purge(min, |start, size| {
        // The segment is out of the arena while it is handed out: no
        // allocation can take any of it.
        if let Ok(x) = a.xalloc_at(start, 1) {
            panic!("{x:#x} allocated out of a segment being purged");
        }
        seen.borrow_mut().push((start, size));
    });
    let seen = seen.into_inner();
    assert_eq!(seen, want, "each free segment of at least {min}, in order");
    assert_eq!(purged, want.iter().map(|s| s.1).sum::<usize>());
    let after = a.stats();
    assert_eq!(
        (
            after.allocated,
            after.free,
            after.allocs,
            after.frees,
            after.free_segments
        ),
        (
            before.allocated,
            before.free,
            before.allocs,
            before.frees,
            before.free_segments
        ),
        "the arena is as it was"
    );
    a.check().unwrap();
    assert_eq!(a.purge(usize::MAX, |_, _| panic!("nothing that large")), 0);
}

#[test]
fn a_span_that_a_purge_leaves_wholly_free_goes_back_to_its_source() {
    let ram = PhysMem::new(8 << 20);
    let tags = tag_arena(&ram);
    let parent = span_arena("parent", 4096, 0x40_0000, 4 << 20, &tags);
    // Spans of 4 times the request: `x` and `y` share one.
    let child = Arena::builder("child")
        .quantum(4096)
        .source(&parent)
        .tags_from(&tags)
        .import_scale(2)
        .build()
        .unwrap();
    let x = child.alloc(4096, Policy::InstantFit).unwrap();
    let y = child.alloc(4096, Policy::InstantFit).unwrap();
    assert_eq!(child.stats().imported, 4 * 4096);
    let mut handed = Vec::new();
    // While the free rest of the span is out for purging, the last two
    // segments of it are freed: the span is wholly free once the purged
    // segment comes back, and goes back to the parent then.
    child.purge(4096, |start, size| {
        handed.push((start, size));
        child.free(x, 4096).unwrap();
        child.free(y, 4096).unwrap();
    });
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert_eq!(child.stats().imported, 0, "the span went back");
    assert_eq!(parent.stats().allocated, 0);
    child.check().unwrap();
    parent.check().unwrap();
}

#[test]
fn tick_shrinks_the_hash() {
    let ram = PhysMem::new(16 << 20);
    let base = ram.base_arena("base", 64);
    let v: Vec<usize> = (0..20_000)
        .map(|_| base.alloc(64, Policy::InstantFit).unwrap())
        .collect();
    let chains = base.stats().hash_chains;
    for a in v {
        // SAFETY: allocated above with this size, not used after.
        unsafe { base.free_memory(a, 64) }.unwrap();
    }
    assert_eq!(base.stats().hash_chains, chains, "frees never shrink it");
    base.tick();
    assert!(base.stats().hash_chains < chains / 8);
    base.check().unwrap();
}
