//! `alloc_bulk` and `free_bulk`: every object distinct and the cache's,
//! all or nothing on a failure, a refused free stops the bulk free where
//! it is; for plain caches (the slab path under one lock hold), bufctl
//! caches and constructed ones.

mod common;

use std::collections::HashSet;

use common::{caches_over, with_caches, with_caches_using, with_ram, Counting};
use kmem_arena::Arena;
use kmem_magazine::ThreadCpus;
use kmem_slab::{AllocError, AllocFlags, BadFree, CacheBuilder, CacheFlags, Caches, RESERVE_MAX};

#[test]
fn bulk_objects_are_distinct_and_go_back() {
    for flags in [
        CacheFlags::empty(),
        CacheFlags::NOTOUCH,
        CacheFlags::NOMAGAZINE,
    ] {
        with_caches(32 << 20, |caches, kpages| {
            let c = caches
                .create(CacheBuilder::new("bulk", 96).flags(flags).source(kpages))
                .unwrap();
            // Some objects in the magazines first: the bulk takes those,
            // then goes to the slabs.
            let warm: Vec<usize> = (0..40)
                .map(|_| c.alloc(AllocFlags::empty()).unwrap())
                .collect();
            // SAFETY: allocated just above.
            unsafe { c.free_bulk(&warm) }.unwrap();
            let mut out = vec![0; 5000];
            c.alloc_bulk(AllocFlags::ZERO, &mut out).unwrap();
            let set: HashSet<usize> = out.iter().copied().collect();
            assert_eq!(set.len(), out.len(), "{flags:?}: distinct");
            for &o in &out {
                assert!(c.owns(o));
                // SAFETY: a 96-byte object just allocated with `ZERO`.
                assert!(unsafe { core::slice::from_raw_parts(o as *const u8, 96) }
                    .iter()
                    .all(|&b| b == 0));
            }
            assert_eq!(c.stats().buf_in_use, 5000);
            // SAFETY: each allocated above, freed once.
            unsafe { c.free_bulk(&out) }.unwrap();
            assert_eq!(c.stats().buf_in_use, 0);
            c.check().unwrap();
        });
    }
}

/// Caches over fake RAM, and an arena over its `kpages` that may import
/// at most `pages` pages, for `f`.
fn with_limited(pages: usize, f: impl for<'a> FnOnce(&Caches<'a, ThreadCpus>, &'a Arena<'a>)) {
    with_ram(32 << 20, |base, kpages| {
        let small = Arena::builder("small")
            .quantum(4096)
            .source(kpages)
            .tags_from(kpages)
            .build()
            .unwrap();
        small.set_limit(Some(pages * 4096));
        caches_over(base, ThreadCpus::global(), |caches| f(caches, &small));
    });
}

#[test]
fn a_failed_bulk_allocation_takes_nothing() {
    with_limited(8, |caches, small| {
        {
            let c = caches
                .create(CacheBuilder::new("limited", 512).source(small))
                .unwrap();
            let mut out = vec![0; 1000];
            assert_eq!(
                c.alloc_bulk(AllocFlags::empty(), &mut out),
                Err(AllocError::Exhausted)
            );
            assert_eq!(c.stats().buf_in_use, 0, "all or nothing");
            // What fits still comes.
            let mut fits = vec![0; 32];
            c.alloc_bulk(AllocFlags::empty(), &mut fits).unwrap();
            // SAFETY: allocated just above.
            unsafe { c.free_bulk(&fits) }.unwrap();
            c.check().unwrap();
            c.destroy().unwrap();
        }
    });
}

#[test]
fn constructed_bulk_objects_are_constructed() {
    let ops = Counting::default();
    with_caches_using(&ops, 32 << 20, |caches, kpages, ops| {
        let c = caches
            .create(CacheBuilder::new("ctor", 64).ops(ops).source(kpages))
            .unwrap();
        let mut out = vec![0; 300];
        c.alloc_bulk(AllocFlags::empty(), &mut out).unwrap();
        for &o in &out {
            // SAFETY: a constructed 64-byte object.
            assert_eq!(unsafe { (o as *const u64).read() }, common::CONSTRUCTED);
        }
        // A failing constructor: the bulk fails and gives back what it took,
        // here the constructed objects of this CPU's magazines first. With
        // `ZERO` too they go back constructed, not zeroed (they once went
        // back zeroed, and their destructor found them unconstructed; found
        // by the fuzzer).
        // SAFETY: allocated above, each freed once.
        unsafe { c.free_bulk(&out[200..]) }.unwrap();
        let before = c.stats().buf_in_use;
        ops.fail.store(true, core::sync::atomic::Ordering::SeqCst);
        let mut more = vec![0; 2000];
        for flags in [AllocFlags::empty(), AllocFlags::ZERO] {
            assert_eq!(c.alloc_bulk(flags, &mut more), Err(AllocError::Ctor));
            assert_eq!(c.stats().buf_in_use, before);
        }
        ops.fail.store(false, core::sync::atomic::Ordering::SeqCst);
        // The destructor checks each object's constructed tag.
        c.flush_current();
        c.reap();
        // SAFETY: allocated above.
        unsafe { c.free_bulk(&out[..200]) }.unwrap();
        c.check().unwrap();
    });
}

#[test]
fn a_refused_bulk_free_stops_where_it_is() {
    with_caches(32 << 20, |caches, kpages| {
        let c = caches
            .create(CacheBuilder::new("stop", 128).source(kpages))
            .unwrap();
        let mut out = vec![0; 100];
        c.alloc_bulk(AllocFlags::empty(), &mut out).unwrap();
        let mut objs = out.clone();
        let stack = 0u64;
        objs.insert(60, core::ptr::from_ref(&stack) as usize);
        // SAFETY: the first 60 are the cache's; the 61st is refused before
        // anything is done to it.
        let (at, e) = unsafe { c.free_bulk(&objs) }.unwrap_err();
        assert_eq!(at, 60);
        assert!(
            matches!(e.kind, BadFree::Foreign | BadFree::WrongCache(_)),
            "{e:?}"
        );
        assert_eq!(c.stats().buf_in_use, 40, "the rest still allocated");
        // SAFETY: the 40 after the refused one, still allocated.
        unsafe { c.free_bulk(&out[60..]) }.unwrap();
        assert_eq!(c.stats().buf_in_use, 0);
        c.check().unwrap();
    });
}

/// `max_objects`: users and magazines together never hold more; the limit
/// is refused with its own error, and frees make room again.
#[test]
fn max_objects_bounds_what_users_and_magazines_hold() {
    for flags in [CacheFlags::empty(), CacheFlags::NOTOUCH] {
        with_caches(32 << 20, |caches, kpages| {
            let c = caches
                .create(
                    CacheBuilder::new("capped", 64)
                        .flags(flags)
                        .source(kpages)
                        .max_objects(100),
                )
                .unwrap();
            let mut held: Vec<usize> = Vec::new();
            let err = loop {
                match c.alloc(AllocFlags::empty()) {
                    Ok(o) => held.push(o),
                    Err(e) => break e,
                }
                assert!(held.len() <= 100);
            };
            assert_eq!((err, held.len()), (AllocError::LimitReached, 100));
            let mut more = vec![0; 5];
            assert_eq!(
                c.alloc_bulk(AllocFlags::empty(), &mut more),
                Err(AllocError::LimitReached)
            );
            // Freed into the magazines, the objects still count; handed out
            // again, they come from there.
            // SAFETY: allocated above.
            unsafe { c.free_bulk(&held[..50]) }.unwrap();
            let mut again = vec![0; 50];
            c.alloc_bulk(AllocFlags::empty(), &mut again).unwrap();
            assert_eq!(c.alloc(AllocFlags::empty()), Err(AllocError::LimitReached));
            // SAFETY: allocated above, each once.
            unsafe {
                c.free_bulk(&held[50..]).unwrap();
                c.free_bulk(&again).unwrap();
            }
            assert!(c.stats().alloc_fails >= 3);
            c.check().unwrap();
        });
    }
}

/// A reserve: taken before memory runs out, its allocations cannot fail
/// afterwards; what is left goes back when it drops; too large a reserve
/// is refused, and one that cannot be met takes nothing.
#[test]
fn a_reserve_keeps_allocations_from_failing() {
    with_limited(4, |caches, small| {
        {
            let c = caches
                .create(CacheBuilder::new("reserved", 256).source(small))
                .unwrap();
            assert_eq!(
                c.reserve(AllocFlags::empty(), RESERVE_MAX + 1).err(),
                Some(AllocError::TooMany)
            );
            let mut r = c.reserve(AllocFlags::ZERO, 20).unwrap();
            assert_eq!((r.len(), c.stats().reserved), (20, 20));
            // Everything else the limit allows, taken by others.
            let mut others = Vec::new();
            while let Ok(o) = c.alloc(AllocFlags::empty()) {
                others.push(o);
            }
            assert_eq!(
                c.reserve(AllocFlags::empty(), 10).err(),
                Some(AllocError::Exhausted),
                "nothing left to reserve"
            );
            let held_before = c.stats().buf_in_use;
            let got: Vec<usize> = (0..15).map(|_| r.alloc().expect("reserved")).collect();
            assert_eq!(c.stats().buf_in_use, held_before, "already counted");
            assert_eq!((r.len(), c.stats().reserved), (5, 5));
            for &o in &got {
                assert!(c.owns(o));
                // SAFETY: a 256-byte object reserved with `ZERO`.
                assert!(unsafe { core::slice::from_raw_parts(o as *const u8, 256) }
                    .iter()
                    .all(|&b| b == 0));
            }
            drop(r);
            assert_eq!(c.stats().reserved, 0);
            assert_eq!(c.stats().buf_in_use, held_before - 5, "the rest went back");
            // SAFETY: allocated above, each once.
            unsafe {
                c.free_bulk(&got).unwrap();
                c.free_bulk(&others).unwrap();
            }
            let mut report = String::new();
            caches.report(&mut report).unwrap();
            assert!(report.lines().next().unwrap().ends_with("reserved"));
            c.check().unwrap();
            c.destroy().unwrap();
        }
    });
}
