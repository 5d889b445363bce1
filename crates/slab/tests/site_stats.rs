//! Per-call-site accounting with the `site-stats` feature
//! (`kmem_slab::site_stats`, `report_sites`): each call site's row counts
//! the objects its callers hold and their bytes, frees lower it wherever
//! they happen (into a magazine, to a slab, on another thread), callers
//! without a location share the unknown site's row, and the rows add up to
//! the caches' `buf_in_use`, for every layout (headed with and without a
//! constructor or magazines, bufctl, debug).
//!
//! The counters are process-wide, so the tests of this binary take turns
//! ([`serial`]); each frees what it allocated.

mod common;

use core::panic::Location;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::HashMap;

use common::{with_caches, with_caches_using, Counting};
use kmem_magazine::ThreadCpus;
use kmem_physmem::{scale, seed, Rng};
use kmem_slab::{
    report_sites, site_stats, AllocError, AllocFlags, CacheBuilder, CacheFlags, Caller, DebugHooks,
    KmemCache, SiteStat,
};

const RAM: usize = 32 << 20;

type Kc<'a> = KmemCache<'a, ThreadCpus>;

// One test at a time (`serial`): the counters are the process's.
use kmem_physmem::serial;

/// Allocates from `c` with `flags`, and says at which call site (the
/// caller's: the location `alloc` records).
#[track_caller]
fn alloc(c: &Kc<'_>, flags: AllocFlags) -> (Result<usize, AllocError>, &'static Location<'static>) {
    (c.alloc(flags), Location::caller())
}

/// Frees `obj` into `c`.
fn free(c: &Kc<'_>, obj: usize) {
    // SAFETY: the tests free only live objects of `c`, once.
    unsafe { c.free(obj) }.unwrap();
}

/// The row of `site` (all zero if it has none).
fn row(site: &'static Location<'static>) -> SiteStat {
    let mut found = SiteStat {
        caller: Caller::Location(site),
        objects: 0,
        bytes: 0,
        allocs: 0,
    };
    site_stats(|s| {
        if s.caller == Caller::Location(site) {
            found = *s;
        }
    });
    found
}

/// The unknown site's row (all zero if it has none).
fn unknown() -> SiteStat {
    let mut found = SiteStat {
        caller: Caller::Unknown,
        objects: 0,
        bytes: 0,
        allocs: 0,
    };
    site_stats(|s| {
        if s.caller == Caller::Unknown {
            found = *s;
        }
    });
    found
}

/// Objects and bytes over every row.
fn totals() -> (u64, u64) {
    let mut t = (0, 0);
    site_stats(|s| t = (t.0 + s.objects, t.1 + s.bytes));
    t
}

/// `(objects, bytes, allocs)` of a row.
fn counts(s: &SiteStat) -> (u64, u64, u64) {
    (s.objects, s.bytes, s.allocs)
}

#[test]
fn two_sites_count_their_objects_and_bytes() {
    let _turn = serial();
    with_caches(RAM, |caches, kpages| {
        // A headed cache with magazines, and a bufctl one (`NOTOUCH`).
        let small = caches
            .create(CacheBuilder::new("small", 100).source(kpages))
            .unwrap();
        let big = caches
            .create(
                CacheBuilder::new("big", 300)
                    .flags(CacheFlags::NOTOUCH)
                    .source(kpages),
            )
            .unwrap();
        assert!(!small.uses_bufctls() && big.uses_bufctls());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut site_a, mut site_b) = (None, None);
        for _ in 0..10 {
            let (o, at) = alloc(&small, AllocFlags::empty());
            a.push(o.unwrap());
            site_a = Some(at);
        }
        for _ in 0..5 {
            let (o, at) = alloc(&big, AllocFlags::empty());
            b.push(o.unwrap());
            site_b = Some(at);
        }
        let (site_a, site_b) = (site_a.unwrap(), site_b.unwrap());
        let (sa, sb) = (small.size() as u64, big.size() as u64);
        assert_eq!(counts(&row(site_a)), (10, 10 * sa, 10));
        assert_eq!(counts(&row(site_b)), (5, 5 * sb, 5));
        for o in a.drain(..4) {
            free(&small, o);
        }
        for o in b.drain(..2) {
            free(&big, o);
        }
        assert_eq!(counts(&row(site_a)), (6, 6 * sa, 10));
        assert_eq!(counts(&row(site_b)), (3, 3 * sb, 5));
        for o in a {
            free(&small, o);
        }
        for o in b {
            free(&big, o);
        }
        assert_eq!(counts(&row(site_a)), (0, 0, 10));
        assert_eq!(counts(&row(site_b)), (0, 0, 5));
        small.check().unwrap();
        big.check().unwrap();
        small.destroy().unwrap();
        big.destroy().unwrap();
    });
}

#[test]
fn frees_into_magazines_and_on_other_threads_lower_the_counts() {
    let _turn = serial();
    with_caches(RAM, |caches, kpages| {
        let c = caches
            .create(CacheBuilder::new("objs", 64).source(kpages))
            .unwrap();
        let mut held = Vec::new();
        let mut site = None;
        for _ in 0..100 {
            let (o, at) = alloc(&c, AllocFlags::empty());
            held.push(o.unwrap());
            site = Some(at);
        }
        let site = site.unwrap();
        assert_eq!(counts(&row(site)), (100, 6400, 100));
        // Into this thread's magazines: out of the slabs still, but freed.
        for o in held.drain(..50) {
            free(&c, o);
        }
        let st = c.stats();
        assert!(st.magazines.unwrap().cpu_frees >= 50);
        // (Out of the slabs: the 100 allocated, and what batch refills
        // loaded into this thread's magazines beyond them.)
        assert_eq!(st.buf_in_use, 50);
        assert!(st.slab_busy >= 100, "{}", st.slab_busy);
        assert_eq!(counts(&row(site)), (50, 3200, 100));
        // Freed on another thread, into its magazines.
        std::thread::scope(|s| {
            s.spawn(|| {
                for &o in &held {
                    free(&c, o);
                }
            });
        });
        assert_eq!(counts(&row(site)), (0, 0, 100));
        // Handed out of the magazines again: they count for the new site.
        let mut again = Vec::new();
        let mut site2 = None;
        for _ in 0..50 {
            let (o, at) = alloc(&c, AllocFlags::empty());
            again.push(o.unwrap());
            site2 = Some(at);
        }
        let site2 = site2.unwrap();
        assert_eq!(counts(&row(site2)), (50, 3200, 50));
        assert_eq!(counts(&row(site)), (0, 0, 100));
        for o in again {
            free(&c, o);
        }
        assert_eq!(counts(&row(site2)), (0, 0, 50));
        c.check().unwrap();
        c.destroy().unwrap();
    });
}

/// Counts the calls of [`caller_hook`].
static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

fn caller_hook(_marker: usize) -> [usize; 3] {
    HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
    [0x1234, 0, 0]
}

static HOOKS: DebugHooks = DebugHooks {
    report: None,
    caller: Some(caller_hook),
    now: None,
};

#[test]
fn callers_without_a_location_count_at_the_unknown_site() {
    let _turn = serial();
    with_caches(RAM, |caches, kpages| {
        // The stack-walking hook is set, and not used for the counts.
        caches.set_debug_hooks(&HOOKS);
        let c = caches
            .create(CacheBuilder::new("anon", 40).source(kpages))
            .unwrap();
        let size = c.size() as u64;
        let before = counts(&unknown());
        let callers = [
            Caller::Unknown,
            Caller::Code(0x4000),
            Caller::Stack(0x7000),
            Caller::Unknown,
        ];
        let objs: Vec<usize> = callers
            .iter()
            .map(|&caller| c.alloc_by(AllocFlags::empty(), caller).unwrap())
            .collect();
        let now = counts(&unknown());
        assert_eq!(
            (now.0 - before.0, now.1 - before.1, now.2 - before.2),
            (4, 4 * size, 4)
        );
        assert_eq!(HOOK_CALLS.load(Ordering::Relaxed), 0);
        for o in objs {
            // SAFETY: allocated above, freed once.
            unsafe { c.free_by(o, Caller::Unknown) }.unwrap();
        }
        let after = counts(&unknown());
        assert_eq!((after.0, after.1), (before.0, before.1));
        c.destroy().unwrap();
    });
}

#[test]
fn failed_constructions_are_not_counted() {
    let _turn = serial();
    let ops = Counting::default();
    with_caches_using(&ops, RAM, |caches, kpages, ops| {
        let c = caches
            .create(CacheBuilder::new("ctor", 64).source(kpages).ops(ops))
            .unwrap();
        ops.fail.store(true, Ordering::SeqCst);
        let (got, site) = alloc(&c, AllocFlags::empty());
        assert_eq!(got, Err(AllocError::Ctor));
        assert_eq!(counts(&row(site)), (0, 0, 0));
        ops.fail.store(false, Ordering::SeqCst);
        let (got, site) = alloc(&c, AllocFlags::empty());
        let o = got.unwrap();
        assert_eq!(counts(&row(site)), (1, 64, 1));
        free(&c, o);
        assert_eq!(counts(&row(site)), (0, 0, 1));
        c.destroy().unwrap();
    });
}

/// Allocates from `c` at one of four call sites.
fn alloc_at(
    which: u64,
    c: &Kc<'_>,
    flags: AllocFlags,
) -> (Result<usize, AllocError>, &'static Location<'static>) {
    match which % 4 {
        0 => alloc(c, flags),
        1 => alloc(c, flags),
        2 => alloc(c, flags),
        _ => alloc(c, flags),
    }
}

#[test]
fn rows_add_up_to_the_caches_buf_in_use() {
    let _turn = serial();
    let ops = Counting::default();
    let kinds: [(&str, usize, CacheFlags, bool); 7] = [
        ("headed", 64, CacheFlags::empty(), false),
        ("headed_ctor", 96, CacheFlags::empty(), true),
        ("headed_nomag", 48, CacheFlags::NOMAGAZINE, false),
        ("bufctl", 200, CacheFlags::NOTOUCH, false),
        (
            "bufctl_nomag",
            200,
            CacheFlags::NOTOUCH.union(CacheFlags::NOMAGAZINE),
            false,
        ),
        ("debug", 128, CacheFlags::DEBUG_ALL, false),
        (
            "debug_nomag",
            128,
            CacheFlags::DEBUG_ALL.union(CacheFlags::NOMAGAZINE),
            false,
        ),
    ];
    with_caches_using(&ops, RAM, |caches, kpages, ops| {
        let cs: Vec<_> = kinds
            .iter()
            .map(|&(name, size, flags, ctor)| {
                let mut b = CacheBuilder::new(name, size).flags(flags).source(kpages);
                if ctor {
                    b = b.ops(ops);
                }
                caches.create(b).unwrap()
            })
            .collect();
        let base = totals();
        // The model: per site, objects and bytes held and allocations.
        let mut model: HashMap<&'static Location<'static>, (u64, u64, u64)> = HashMap::new();
        // Held objects: cache index, address, site.
        let mut held: Vec<(usize, usize, &'static Location<'static>)> = Vec::new();
        let mut rng = Rng::new(seed(0x5175_5f57));
        let check = |model: &HashMap<_, (u64, u64, u64)>| {
            for (&site, &want) in model {
                assert_eq!(counts(&row(site)), want, "site {site}");
            }
            let in_use: u64 = cs.iter().map(|c| c.stats().buf_in_use).sum();
            let bytes: u64 = cs
                .iter()
                .map(|c| c.stats().buf_in_use * c.size() as u64)
                .sum();
            let t = totals();
            assert_eq!((t.0 - base.0, t.1 - base.1), (in_use, bytes));
        };
        for step in 0..3000 * scale() {
            match rng.below(100) {
                0..=54 => {
                    let i = rng.below(cs.len() as u64) as usize;
                    let c = &cs[i];
                    // `ZERO` where it may write: not over constructed
                    // state, not into `NOTOUCH` objects.
                    let zero =
                        !kinds[i].3 && !c.flags().contains(CacheFlags::NOTOUCH) && rng.chance(1, 4);
                    let flags = if zero {
                        AllocFlags::ZERO
                    } else {
                        AllocFlags::empty()
                    };
                    ops.fail.store(rng.chance(1, 8), Ordering::SeqCst);
                    let (got, site) = alloc_at(rng.next_u64(), c, flags);
                    match got {
                        Ok(o) => {
                            let m = model.entry(site).or_default();
                            *m = (m.0 + 1, m.1 + c.size() as u64, m.2 + 1);
                            held.push((i, o, site));
                        }
                        Err(e) => assert_eq!(e, AllocError::Ctor),
                    }
                }
                55..=94 if !held.is_empty() => {
                    let k = rng.below(held.len() as u64) as usize;
                    let (i, o, site) = held.swap_remove(k);
                    free(&cs[i], o);
                    let m = model.get_mut(site).unwrap();
                    *m = (m.0 - 1, m.1 - cs[i].size() as u64, m.2);
                }
                95..=97 if !held.is_empty() => {
                    // A batch freed on another thread.
                    let n = held.len().min(rng.range(1, 20));
                    let batch: Vec<_> = held.drain(..n).collect();
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            for &(i, o, _) in &batch {
                                free(&cs[i], o);
                            }
                        });
                    });
                    for (i, _, site) in batch {
                        let m = model.get_mut(site).unwrap();
                        *m = (m.0 - 1, m.1 - cs[i].size() as u64, m.2);
                    }
                }
                _ => {
                    for c in &cs {
                        c.flush_current();
                        c.reap();
                    }
                }
            }
            if step % 16 == 0 {
                check(&model);
            }
        }
        check(&model);
        for (i, o, site) in held.drain(..) {
            free(&cs[i], o);
            let m = model.get_mut(site).unwrap();
            *m = (m.0 - 1, m.1 - cs[i].size() as u64, m.2);
        }
        check(&model);
        assert!(model.values().all(|m| m.0 == 0 && m.1 == 0));
        assert!(model.len() == 4, "four sites used: {}", model.len());
        for c in cs {
            c.check().unwrap();
            c.destroy().unwrap();
        }
    });
}

#[test]
fn the_report_lists_each_site_and_the_totals() {
    let _turn = serial();
    with_caches(RAM, |caches, kpages| {
        let c = caches
            .create(CacheBuilder::new("reported", 200).source(kpages))
            .unwrap();
        let mut held = Vec::new();
        let mut site = None;
        for _ in 0..10 {
            let (o, at) = alloc(&c, AllocFlags::empty());
            held.push(o.unwrap());
            site = Some(at);
        }
        held.push(c.alloc_by(AllocFlags::empty(), Caller::Unknown).unwrap());
        let mut text = String::new();
        report_sites(&mut text).unwrap();
        println!("{text}");
        let site = site.unwrap();
        let line = text
            .lines()
            .find(|l| l.ends_with(&format!("  {site}")))
            .unwrap_or_else(|| panic!("no row for {site}:\n{text}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&fields[..3], ["2000", "10", "10"], "{line}");
        assert!(text.starts_with("memory in use"), "{text}");
        assert!(text.contains("  unknown site\n"), "{text}");
        assert!(text.lines().last().unwrap().ends_with("  total"), "{text}");
        for o in held {
            free(&c, o);
        }
        c.destroy().unwrap();
    });
}
