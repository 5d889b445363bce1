//! A burst of frees past a cache's depot cap goes back to its slabs in
//! batches, and the slabs it empties go back to the source at once (past
//! the few the cache keeps), without a reap or an upkeep pass; a cache
//! with a destructor keeps its depot uncapped.

mod common;

use common::{with_caches, with_caches_using, Counting};
use kmem_slab::{AllocFlags, CacheBuilder};

/// 16 MiB of 64-byte objects: four times the depot's cap.
const OBJECTS: usize = (16 << 20) / 64;

#[test]
fn a_burst_of_frees_past_the_depot_cap_gives_slabs_back() {
    with_caches(64 << 20, |caches, kpages| {
        let c = caches
            .create(CacheBuilder::new("burst", 64).source(kpages))
            .unwrap();
        let objs: Vec<usize> = (0..OBJECTS)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        let peak = c.stats();
        for &o in &objs {
            // SAFETY: allocated above, freed once.
            unsafe { c.free(o) }.unwrap();
        }
        let after = c.stats();
        let mags = after.magazines.unwrap();
        assert!(mags.depot_capped > 0 && mags.flushes > 0, "{mags:?}");
        // The depot holds its cap (4 MiB: 65 536 objects), the CPU's two
        // magazines at most 124 more, the empty slabs the cache keeps at
        // most twice 1 MiB (32 768); the rest went back to the slabs, and
        // the slabs they emptied to the source.
        let cached = after.buf_total - after.buf_in_use;
        assert!(
            cached <= 65_536 + 124 + 32_768 + 64,
            "{cached} objects cached"
        );
        assert!(after.slab_destroys > 0);
        assert!(
            after.memory_in_use < peak.memory_in_use / 2,
            "{} of {} bytes still held",
            after.memory_in_use,
            peak.memory_in_use
        );
        // The objects come back.
        let again: Vec<usize> = (0..OBJECTS)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        for &o in &again {
            // SAFETY: as above.
            unsafe { c.free(o) }.unwrap();
        }
        c.check().unwrap();
    });
}

#[test]
fn a_cache_with_a_destructor_keeps_its_depot() {
    let ops = Counting::default();
    with_caches_using(&ops, 64 << 20, |caches, kpages, ops| {
        let c = caches
            .create(CacheBuilder::new("dtor", 64).ops(ops).source(kpages))
            .unwrap();
        let objs: Vec<usize> = (0..OBJECTS)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        for &o in &objs {
            // SAFETY: allocated above, freed once.
            unsafe { c.free(o) }.unwrap();
        }
        let mags = c.stats().magazines.unwrap();
        assert_eq!(mags.depot_capped, 0, "{mags:?}");
        c.check().unwrap();
    });
}
