//! Per-call-site accounting of kmalloc with the `site-stats` feature
//! (`kmalloc::site_stats`, `report_sites`): the Rust API's call sites
//! (`alloc`, `alloc_zeroed`, `realloc`) count class sizes, frees lower
//! them, large allocations are not counted per site, and `GlobalAlloc`
//! and `Allocator` callers land on the unknown site's row; the rows add
//! up to the class caches' `buf_in_use`.
//!
//! The counters are process-wide, so the tests of this binary take turns
//! ([`serial`]); each frees what it allocated.

mod common;

use core::alloc::{GlobalAlloc, Layout};
use core::panic::Location;
use core::ptr::NonNull;

use common::{layout, with_kmalloc};
use kmalloc::{report_sites, site_stats, Kmalloc, SiteStat};
use kmem_magazine::ThreadCpus;
use kmem_slab::Caller;

const MEM: usize = 64 << 20;

type K<'a> = Kmalloc<'a, ThreadCpus>;

// One test at a time (`serial`): the counters are the process's.
use kmem_physmem::serial;

/// `k.alloc(l)`, and the call site it records.
#[track_caller]
fn alloc(k: &K<'_>, l: Layout) -> (NonNull<u8>, &'static Location<'static>) {
    (k.alloc(l).unwrap(), Location::caller())
}

/// `k.alloc_zeroed(l)`, and the call site it records.
#[track_caller]
fn alloc_zeroed(k: &K<'_>, l: Layout) -> (NonNull<u8>, &'static Location<'static>) {
    (k.alloc_zeroed(l).unwrap(), Location::caller())
}

/// `k.realloc(p, l, new_size)`, and the call site it records.
#[track_caller]
fn realloc(
    k: &K<'_>,
    p: NonNull<u8>,
    l: Layout,
    new_size: usize,
) -> (NonNull<u8>, &'static Location<'static>) {
    // SAFETY: the tests pass a live block of `l`, not used after.
    let q = unsafe { k.realloc(p, l, new_size) }.unwrap();
    (q, Location::caller())
}

/// Frees `p`, allocated with `l`.
fn free(k: &K<'_>, p: NonNull<u8>, l: Layout) {
    // SAFETY: the tests free only what they allocated, with its layout,
    // once.
    unsafe { k.free(p, l) }.unwrap();
}

/// `(objects, bytes, allocs)` of the row of `caller` (zeros if none).
fn counts(caller: Caller) -> (u64, u64, u64) {
    let mut found = (0, 0, 0);
    site_stats(|s: &SiteStat| {
        if s.caller == caller {
            found = (s.objects, s.bytes, s.allocs);
        }
    });
    found
}

/// Objects over every row.
fn total_objects() -> u64 {
    let mut n = 0;
    site_stats(|s| n += s.objects);
    n
}

/// Objects users hold from the class caches.
fn class_objects(k: &K<'_>) -> u64 {
    let mut n = 0;
    k.caches().stats(|s| {
        if s.name.as_str().starts_with("kmalloc_") {
            n += s.buf_in_use;
        }
    });
    n
}

#[test]
fn rust_api_calls_count_class_sizes_per_site() {
    let _turn = serial();
    with_kmalloc(MEM, |k| {
        let base = total_objects();
        let small = layout(200, 8);
        let (s208, s1024) = (
            k.usable_size(small).unwrap() as u64,
            k.usable_size(layout(1000, 8)).unwrap() as u64,
        );
        assert_eq!(s208, 208);
        let mut a = Vec::new();
        let mut site_a = None;
        for _ in 0..20 {
            let (p, at) = alloc(k, small);
            a.push(p);
            site_a = Some(Caller::Location(at));
        }
        let mut b = Vec::new();
        let mut site_b = None;
        for _ in 0..5 {
            let (p, at) = alloc_zeroed(k, layout(1000, 8));
            b.push(p);
            site_b = Some(Caller::Location(at));
        }
        let (site_a, site_b) = (site_a.unwrap(), site_b.unwrap());
        assert_eq!(counts(site_a), (20, 20 * s208, 20));
        assert_eq!(counts(site_b), (5, 5 * s1024, 5));
        assert_eq!(total_objects() - base, class_objects(k));
        // A large allocation (a run of pages) has no row.
        let big = layout(1 << 20, 4096);
        let (p, at) = alloc(k, big);
        assert_eq!(counts(Caller::Location(at)), (0, 0, 0));
        free(k, p, big);
        for p in a.drain(..10) {
            free(k, p, small);
        }
        assert_eq!(counts(site_a), (10, 10 * s208, 20));
        // Within its class, a realloc keeps the object and its site; into
        // another class, the new object counts for the realloc's site.
        let p = a.pop().unwrap();
        // SAFETY: allocated above with `small`.
        let same = unsafe { k.realloc(p, small, 205) }.unwrap();
        assert_eq!(same, p);
        assert_eq!(counts(site_a), (10, 10 * s208, 20));
        let (moved, at) = realloc(k, same, layout(205, 8), 300);
        let s304 = k.usable_size(layout(300, 8)).unwrap() as u64;
        assert_eq!(counts(site_a), (9, 9 * s208, 20));
        assert_eq!(counts(Caller::Location(at)), (1, s304, 1));
        free(k, moved, layout(300, 8));
        assert_eq!(counts(Caller::Location(at)), (0, 0, 1));
        for p in a {
            free(k, p, small);
        }
        for p in b {
            free(k, p, layout(1000, 8));
        }
        assert_eq!(counts(site_a), (0, 0, 20));
        assert_eq!(counts(site_b), (0, 0, 5));
        assert_eq!(total_objects() - base, class_objects(k));
    });
}

#[test]
fn global_alloc_and_allocator_callers_count_at_the_unknown_site() {
    let _turn = serial();
    with_kmalloc(MEM, |k| {
        let before = counts(Caller::Unknown);
        let l = layout(100, 8);
        let size = k.usable_size(l).unwrap() as u64;
        // SAFETY: `l` has a non-zero size; each block is freed below.
        let ps: Vec<*mut u8> = (0..3)
            .map(|_| unsafe { GlobalAlloc::alloc(k, l) })
            .collect();
        assert!(ps.iter().all(|p| !p.is_null()));
        let now = counts(Caller::Unknown);
        assert_eq!(
            (now.0 - before.0, now.1 - before.1, now.2 - before.2),
            (3, 3 * size, 3)
        );
        {
            // allocator-api2's `Vec` through `&Kmalloc`.
            let mut v = allocator_api2::vec::Vec::with_capacity_in(10, k);
            v.extend_from_slice(&[1u64; 10]);
            let with_vec = counts(Caller::Unknown);
            assert_eq!(with_vec.0 - now.0, 1);
        }
        for p in ps {
            // SAFETY: allocated above with `l`.
            unsafe { GlobalAlloc::dealloc(k, p, l) };
        }
        let after = counts(Caller::Unknown);
        assert_eq!((after.0, after.1), (before.0, before.1));
    });
}

#[test]
fn report_sites_prints_a_row_per_site() {
    let _turn = serial();
    with_kmalloc(MEM, |k| {
        let l = layout(64, 8);
        let (p, at) = alloc(k, l);
        let mut text = String::new();
        report_sites(&mut text).unwrap();
        let line = text
            .lines()
            .find(|line| line.ends_with(&format!("  {at}")))
            .unwrap_or_else(|| panic!("no row for {at}:\n{text}"));
        assert_eq!(
            line.split_whitespace().take(3).collect::<Vec<_>>(),
            ["64", "1", "1"]
        );
        free(k, p, l);
    });
}
