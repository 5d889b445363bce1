//! Debug mode: each detection (bad frees of every kind, overruns, writes
//! after free), the audit trail and its reports, leak reports, the
//! transaction log, the hooks, and the flags a cache may not combine.

mod common;

use core::panic::Location;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use common::{with_caches, with_caches_using, Counting};
use kmem_arena::Name;
use kmem_magazine::ThreadCpus;
use kmem_slab::{
    AllocFlags, BadFree, CacheBuilder, CacheFlags, Caches, Caller, CreateError, DebugHooks,
    Finding, KmemCache, LeakGroup, Report, TxnOp, POISON,
};

const RAM: usize = 16 << 20;

type Kc<'a> = KmemCache<'a, ThreadCpus>;

/// Every debug part, with or without magazines.
const KINDS: [CacheFlags; 2] = [
    CacheFlags::DEBUG_ALL,
    CacheFlags::DEBUG_ALL.union(CacheFlags::NOMAGAZINE),
];

/// Allocates from `c`, recording the call site.
#[track_caller]
fn alloc(c: &Kc<'_>) -> (usize, &'static Location<'static>) {
    let at = Location::caller();
    (c.alloc(AllocFlags::empty()).unwrap(), at)
}

/// Frees `obj` into `c`, recording the call site.
#[track_caller]
fn free(c: &Kc<'_>, obj: usize) -> (Result<(), kmem_slab::FreeError>, &'static Location<'static>) {
    let at = Location::caller();
    // SAFETY: the tests pass live objects of `c`, or the bad input whose
    // refusal is under test (which touches nothing).
    (unsafe { c.free(obj) }, at)
}

fn caller_is(site: Option<kmem_slab::Site>, at: &'static Location<'static>) -> bool {
    matches!(site.map(|s| s.caller), Some(Caller::Location(l)) if l == at)
}

#[test]
fn double_free_is_refused_and_reported_with_both_sites() {
    for flags in KINDS {
        with_caches(RAM, |caches, kpages| {
            let c = caches
                .create(CacheBuilder::new("dbg", 200).flags(flags).source(kpages))
                .unwrap();
            let (a, alloc_at) = alloc(&c);
            let (r, free_at) = free(&c, a);
            r.unwrap();
            let (r, again_at) = free(&c, a);
            assert_eq!(r.unwrap_err().kind, BadFree::DoubleFree, "{flags:?}");
            let rep = c.last_report().expect("a report");
            assert_eq!(rep.finding, Finding::BadFree(BadFree::DoubleFree));
            assert_eq!((rep.addr, rep.size, rep.cache), (a, 200, Name::new("dbg")));
            assert!(caller_is(Some(rep.at), again_at), "{rep}");
            assert!(caller_is(rep.last_alloc, alloc_at), "{rep}");
            assert!(caller_is(rep.last_free, free_at), "{rep}");
            let text = rep.to_string();
            assert!(
                text.contains("double free") && text.contains("last freed by"),
                "{text}"
            );
            assert!(text.contains(file!()), "{text}");
            assert_eq!(c.stats().bad_frees, 1);
            c.destroy().unwrap();
        });
    }
}

#[test]
fn wrong_cache_foreign_and_interior_frees_are_reported() {
    for flags in KINDS {
        with_caches(RAM, |caches, kpages| {
            let c = caches
                .create(CacheBuilder::new("dbg", 64).flags(flags).source(kpages))
                .unwrap();
            let other = caches
                .create(CacheBuilder::new("other", 64).source(kpages))
                .unwrap();
            let (keep, _) = alloc(&c);
            let o = other.alloc(AllocFlags::empty()).unwrap();
            let heap = Box::new([0u64; 16]);
            for (addr, kind) in [
                (o, BadFree::WrongCache(Name::new("other"))),
                (heap.as_ptr() as usize, BadFree::Foreign),
                (keep + 8, BadFree::Foreign),
            ] {
                let (r, at) = free(&c, addr);
                assert_eq!(r.unwrap_err().kind, kind, "{flags:?}");
                let rep = c.last_report().unwrap();
                assert_eq!((rep.finding, rep.addr), (Finding::BadFree(kind), addr));
                assert!(caller_is(Some(rep.at), at));
            }
            assert!(heap.iter().all(|&w| w == 0), "foreign memory written");
            assert_eq!(c.stats().bad_frees, 3);
            free(&c, keep).0.unwrap();
            // SAFETY: allocated above, freed once.
            unsafe { other.free(o) }.unwrap();
            c.destroy().unwrap();
            other.destroy().unwrap();
        });
    }
}

#[test]
#[cfg_attr(kmem_asan, ignore = "AddressSanitizer reports the bad write itself")]
fn overrun_is_refused_at_free_and_the_object_stays_allocated() {
    for flags in KINDS {
        with_caches(RAM, |caches, kpages| {
            let c = caches
                .create(CacheBuilder::new("dbg", 40).flags(flags).source(kpages))
                .unwrap();
            let (a, alloc_at) = alloc(&c);
            let guard = (a + 40) as *mut u8;
            // SAFETY: the overrun under test: one byte past the 40-byte
            // object, into its redzone (memory of the cache's slab). Saved
            // to be put back.
            let saved = unsafe { guard.read() };
            // SAFETY: as above.
            unsafe { guard.write(saved ^ 0xff) };
            let (r, _) = free(&c, a);
            assert_eq!(r.unwrap_err().kind, BadFree::Overrun, "{flags:?}");
            let rep = c.last_report().unwrap();
            assert_eq!(rep.finding, Finding::BadFree(BadFree::Overrun));
            assert!(caller_is(rep.last_alloc, alloc_at));
            assert!(rep.to_string().contains("overrun"), "{rep}");
            assert_eq!(c.stats().buf_in_use, 1, "refused: still allocated");
            // SAFETY: putting back what the overrun changed.
            unsafe { guard.write(saved) };
            free(&c, a).0.unwrap();
            c.destroy().unwrap();
        });
    }
}

#[test]
#[cfg_attr(kmem_asan, ignore = "AddressSanitizer reports the bad write itself")]
fn write_after_free_is_reported_when_the_object_is_handed_out_again() {
    for flags in KINDS {
        with_caches(RAM, |caches, kpages| {
            let c = caches
                .create(CacheBuilder::new("dbg", 64).flags(flags).source(kpages))
                .unwrap();
            let (a, _) = alloc(&c);
            let (r, free_at) = free(&c, a);
            r.unwrap();
            // SAFETY: reading the freed object's memory (the cache's slab,
            // mapped; nothing else uses it): it holds the poison.
            let word = |i: usize| unsafe { ((a + 8 * i) as *const u64).read_volatile() };
            assert!((0..8).all(|i| word(i) == POISON), "{flags:?}: not poisoned");
            // SAFETY: the write after free under test, into memory the
            // cache owns.
            unsafe { ((a + 24) as *mut u64).write_volatile(7) };
            assert_eq!(c.stats().reports, 0);
            // The freed object comes back first (LIFO), and is checked.
            let (b, _) = alloc(&c);
            assert_eq!(b, a, "{flags:?}");
            let rep = c.last_report().expect("reported");
            assert_eq!(rep.finding, Finding::WriteAfterFree { offset: 24 });
            assert!(caller_is(rep.last_free, free_at), "{rep}");
            assert!(rep.to_string().contains("write after free"), "{rep}");
            // Handed out all the same, and usable.
            free(&c, b).0.unwrap();
            c.destroy().unwrap();
        });
    }
}

#[test]
fn poison_covers_fresh_slabs_too() {
    with_caches(RAM, |caches, kpages| {
        let c = caches
            .create(
                CacheBuilder::new("dbg", 128)
                    .flags(CacheFlags::POISON)
                    .source(kpages),
            )
            .unwrap();
        assert!(
            c.flags().contains(CacheFlags::DEBUG),
            "POISON implies DEBUG"
        );
        let objs: Vec<usize> = (0..100).map(|_| alloc(&c).0).collect();
        assert_eq!(c.stats().reports, 0, "a fresh object failed the check");
        for o in objs {
            free(&c, o).0.unwrap();
        }
        c.destroy().unwrap();
    });
}

#[test]
fn leaks_are_grouped_by_allocation_site() {
    with_caches(RAM, |caches, kpages| {
        let c = caches
            .create(
                CacheBuilder::new("dbg", 96)
                    .flags(CacheFlags::AUDIT)
                    .source(kpages),
            )
            .unwrap();
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut site_a = None;
        let mut site_b = None;
        for _ in 0..3 {
            let (o, at) = alloc(&c);
            a.push(o);
            site_a = Some(at);
        }
        for _ in 0..2 {
            let (o, at) = alloc(&c);
            b.push(o);
            site_b = Some(at);
        }
        let mut groups: Vec<LeakGroup> = Vec::new();
        c.leaks(|g| groups.push(*g));
        groups.sort_by_key(|g| g.objects);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!((groups[0].objects, groups[0].bytes), (2, 2 * 96));
        assert_eq!((groups[1].objects, groups[1].bytes), (3, 3 * 96));
        assert_eq!(groups[0].caller, Caller::Location(site_b.unwrap()));
        assert_eq!(groups[1].caller, Caller::Location(site_a.unwrap()));
        // The whole set's report, as a table.
        let mut text = String::new();
        caches.report_leaks(&mut text).unwrap();
        assert!(text.contains("dbg") && text.contains(file!()), "{text}");
        for o in a.into_iter().chain(b) {
            free(&c, o).0.unwrap();
        }
        let mut n = 0;
        c.leaks(|_| n += 1);
        assert_eq!(n, 0, "objects in magazines are not leaks");
        c.destroy().unwrap();
    });
}

#[test]
fn leaks_are_available_at_a_refused_destroy() {
    with_caches(RAM, |caches, kpages| {
        let c = caches
            .create(
                CacheBuilder::new("dbg", 32)
                    .flags(CacheFlags::DEBUG_ALL)
                    .source(kpages),
            )
            .unwrap();
        let (o, at) = alloc(&c);
        let err = c.destroy().unwrap_err();
        assert_eq!(err.live, 1);
        let mut groups = Vec::new();
        err.cache.leaks(|g| groups.push(*g));
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].caller, Caller::Location(at));
        free(&err.cache, o).0.unwrap();
        err.cache.destroy().unwrap();
    });
}

#[test]
fn the_transaction_log_keeps_the_last_operations_in_order() {
    with_caches(RAM, |caches, kpages| {
        let c = caches
            .create(
                CacheBuilder::new("dbg", 48)
                    .flags(CacheFlags::AUDIT)
                    .source(kpages),
            )
            .unwrap();
        let (a, _) = alloc(&c);
        free(&c, a).0.unwrap();
        let _ = free(&c, a);
        let mut log = Vec::new();
        c.transactions(|t| log.push(*t));
        let ops: Vec<TxnOp> = log.iter().map(|t| t.op).collect();
        assert_eq!(ops, [TxnOp::Alloc, TxnOp::Free, TxnOp::Refused]);
        assert!(log.iter().all(|t| t.addr == a));
        assert!(log.windows(2).all(|w| w[0].site.time < w[1].site.time));
        // Bounded: only the last entries stay.
        for _ in 0..200 {
            let (o, _) = alloc(&c);
            free(&c, o).0.unwrap();
        }
        let mut n = 0;
        c.transactions(|_| n += 1);
        assert_eq!(n, Kc::LOG_ENTRIES);
        c.destroy().unwrap();
    });
}

static REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static CLOCK: AtomicU64 = AtomicU64::new(1000);
static CALLERS: AtomicUsize = AtomicUsize::new(0);

fn record(r: &Report) {
    REPORTS.lock().unwrap().push(r.to_string());
}

fn tick() -> u64 {
    CLOCK.fetch_add(10, Ordering::Relaxed)
}

fn code_address(marker: usize) -> [usize; 3] {
    assert_eq!(marker, 0xabc0, "the facade's marker");
    CALLERS.fetch_add(1, Ordering::Relaxed);
    [0x1234_5678, 0x9abc, 0]
}

static HOOKS: DebugHooks = DebugHooks {
    report: Some(record),
    caller: Some(code_address),
    now: Some(tick),
};

#[test]
fn hooks_receive_reports_name_unknown_callers_and_keep_time() {
    with_caches(RAM, |caches, kpages| {
        caches.set_debug_hooks(&HOOKS);
        let c = caches
            .create(
                CacheBuilder::new("hooked", 64)
                    .flags(CacheFlags::DEBUG_ALL)
                    .source(kpages),
            )
            .unwrap();
        // A facade's allocation with no Rust location: the hook names it.
        let a = c
            .alloc_by(AllocFlags::empty(), Caller::Stack(0xabc0))
            .unwrap();
        assert!(CALLERS.load(Ordering::Relaxed) >= 1);
        let (r, _) = free(&c, a);
        r.unwrap();
        let _ = free(&c, a);
        let rep = c.last_report().unwrap();
        assert_eq!(
            rep.last_alloc.map(|s| s.caller),
            Some(Caller::Code(0x1234_5678))
        );
        assert!(rep.at.time >= 1000, "the hook's clock");
        let seen = REPORTS.lock().unwrap();
        assert!(
            seen.iter()
                .any(|t| t.contains("hooked") && t.contains("code 0x12345678")),
            "{seen:?}"
        );
        drop(seen);
        c.destroy().unwrap();
    });
}

#[test]
fn debug_parts_that_cannot_apply_are_refused() {
    let ops = Counting::default();
    with_caches_using(&ops, RAM, |caches, kpages, ops| {
        let poison_ctor = caches.create(
            CacheBuilder::new("p", 64)
                .flags(CacheFlags::POISON)
                .source(kpages)
                .ops(ops),
        );
        assert_eq!(poison_ctor.err(), Some(CreateError::PoisonCtor));
        for part in [CacheFlags::REDZONE, CacheFlags::POISON, CacheFlags::AUDIT] {
            let notouch = caches.create(
                CacheBuilder::new("n", 64)
                    .flags(part | CacheFlags::NOTOUCH)
                    .source(kpages),
            );
            assert_eq!(notouch.err(), Some(CreateError::NotMemory), "{part:?}");
        }
        // A constructed cache may have the other parts.
        let c = caches
            .create(
                CacheBuilder::new("c", 64)
                    .flags(CacheFlags::REDZONE | CacheFlags::AUDIT)
                    .source(kpages)
                    .ops(ops),
            )
            .unwrap();
        let (a, _) = alloc(&c);
        free(&c, a).0.unwrap();
        assert_eq!(free(&c, a).0.unwrap_err().kind, BadFree::DoubleFree);
        c.destroy().unwrap();
        assert_eq!(ops.live_constructed(), 0);
    });
}

/// Debug mode keeps the object's size for its users: the trailer is
/// extra, and objects stay aligned.
#[test]
fn debug_objects_keep_their_size_and_alignment() {
    with_caches(RAM, |caches: &Caches<'_, ThreadCpus>, kpages| {
        for (size, align) in [(8, 8), (24, 8), (100, 64), (1000, 8), (4096, 4096)] {
            let c = caches
                .create(
                    CacheBuilder::new("sz", size)
                        .align(align)
                        .flags(CacheFlags::DEBUG_ALL)
                        .source(kpages),
                )
                .unwrap();
            assert_eq!(c.size() % align, 0);
            assert!(c.size() >= size);
            let objs: Vec<usize> = (0..20)
                .map(|_| c.alloc(AllocFlags::ZERO).unwrap())
                .collect();
            for &o in &objs {
                assert_eq!(o % align, 0);
                // SAFETY: a fresh, zeroed object of `c.size()` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(o as *const u8, c.size()) };
                assert!(bytes.iter().all(|&b| b == 0));
            }
            for o in objs {
                free(&c, o).0.unwrap();
            }
            assert_eq!(c.stats().reports, 0, "{size}");
            c.destroy().unwrap();
        }
    });
}

/// A facade's sized frees: debug mode records the size each allocation
/// asked for and refuses a free with another (`BadFree::WrongSize`),
/// leaving the object allocated; an in-place resize updates it.
#[test]
fn sized_frees_must_give_the_size_the_allocation_asked_for() {
    for flags in KINDS {
        with_caches(RAM, |caches, kpages| {
            let c = caches
                .create(CacheBuilder::new("dbg", 64).flags(flags).source(kpages))
                .unwrap();
            let here = Caller::Location(Location::caller());
            let a = c.alloc_sized_by(AllocFlags::empty(), here, 50).unwrap();
            // SAFETY: the bad input: a free with another size, refused.
            let r = unsafe { c.free_sized_by(a, here, 51) };
            assert_eq!(
                r.unwrap_err().kind,
                BadFree::WrongSize { allocated: 50 },
                "{flags:?}"
            );
            let rep = c.last_report().unwrap();
            assert!(rep.to_string().contains("another size"), "{rep}");
            assert_eq!(c.stats().buf_in_use, 1, "refused: still allocated");
            c.note_size(a, 60);
            // SAFETY: the old size is refused now, the new one is right.
            unsafe {
                assert!(c.free_sized_by(a, here, 50).is_err());
                c.free_sized_by(a, here, 60).unwrap();
            }
            // An unsized free (size 0) is not checked.
            let b = c.alloc_sized_by(AllocFlags::empty(), here, 10).unwrap();
            free(&c, b).0.unwrap();
            c.destroy().unwrap();
        });
    }
}
