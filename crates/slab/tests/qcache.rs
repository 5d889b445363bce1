//! Quantum caches: Akaros' qcache ktests (`test_qcache`,
//! `test_qc_odd_quantum`, `test_qc_large_quantum`), frees that round-trip
//! through the caches, the paths that bypass them, destroy order, and one
//! test per bad input.

mod common;

use common::with_caches;
use kmem_arena::{
    AllocError, Arena, ArenaBuilder, Constraints, CreateError, DestroyError, FreeError, Policy,
    QuantumCaches, SizeKind,
};
use kmem_magazine::{Section, ThreadCpus};
use kmem_slab::{ArenaValues, Caches, QCaches, QCACHE_MAX_CACHES};

const RAM: usize = 8 << 20;

/// An ID arena `[start, start + len)` with these quantum caches, its tags
/// from the caches' base arena.
fn id_arena<'q, 'c: 'q>(
    caches: &Caches<'c, ThreadCpus>,
    qc: &'q dyn QuantumCaches,
    quantum: usize,
    start: usize,
    len: usize,
) -> Arena<'q> {
    id_builder("qc", caches, quantum, start, len)
        .qcaches(qc)
        .build()
        .unwrap()
}

/// The builder of an ID arena `name` over `[start, start + len)`, its
/// tags from the caches' base arena.
fn id_builder<'q, 'c: 'q>(
    name: &'static str,
    caches: &Caches<'c, ThreadCpus>,
    quantum: usize,
    start: usize,
    len: usize,
) -> ArenaBuilder<'q> {
    Arena::builder(name)
        .quantum(quantum)
        .span(start, len)
        .tags_from(caches.base())
}

/// Runs `f(caches, qc, a)` on caches over `RAM` bytes, integer quantum
/// caches `qc` ("qc", `quantum` up to `qcache_max`) and an ID arena `a`
/// `[start, start + len)` of that quantum that uses them; then checks and
/// destroys `a`, which leaves it empty and destroys its caches.
fn with_id_arena(
    (quantum, qcache_max): (usize, usize),
    (start, len): (usize, usize),
    f: impl FnOnce(&Caches<'_, ThreadCpus>, &QCaches<'_, ThreadCpus>, &mut Arena<'_>),
) {
    with_caches(RAM, |caches, _| {
        let qc = caches
            .qcaches("qc", quantum, qcache_max, ArenaValues::Integers)
            .unwrap();
        let mut a = id_arena(caches, &qc, quantum, start, len);
        f(caches, &qc, &mut a);
        a.check().unwrap();
        a.destroy().unwrap();
        assert_eq!(a.qcache_max(), 0);
        assert_eq!(a.size(SizeKind::Allocated), 0, "nothing leaked");
        assert_eq!(a.size(SizeKind::Total), 0);
        let mut names = 0;
        caches.for_each(|c| names += usize::from(c.name().starts_with("qc_")));
        assert_eq!(names, 0, "the caches were destroyed");
    });
}

/// Segments (not counting metadata) the arena has handed out.
fn live(a: &Arena<'_>) -> usize {
    a.stats().live
}

/// Allocates 1-unit objects from `a` until it runs out (at most 10,000),
/// frees them all, and answers how many there were.
fn exhaust_and_free(a: &Arena<'_>) -> usize {
    let objs: Vec<usize> = core::iter::from_fn(|| a.alloc(1, Policy::InstantFit).ok())
        .take(10_000)
        .collect();
    let n = objs.len();
    for o in objs {
        a.free(o, 1).unwrap();
    }
    n
}

/// Akaros `test_qcache`: three caches (quantum 1, qcache_max 3), one
/// allocation from each and one from the arena proper.
#[test]
fn akaros_qcache() {
    with_id_arena((1, 3), (1, 10_000), |_, qc, a| {
        assert_eq!(a.qcache_max(), 3);
        let objs: Vec<(usize, usize)> = (1..=4)
            .map(|n| (a.alloc(n, Policy::InstantFit).unwrap(), n))
            .collect();
        // Sizes 1-3 came from slabs (three slab segments of next_pow2(9) =
        // 16 units), size 4 from a segment of its own.
        assert_eq!(live(a), 4);
        assert_eq!(a.size(SizeKind::Allocated), 3 * 16 + 4);
        assert_eq!(qc.in_use(), 3);
        for (o, n) in objs {
            a.free(o, n).unwrap();
        }
        assert_eq!(qc.in_use(), 0);
    });
}

/// Akaros `test_qc_odd_quantum`: quantum 7, caches of 7, 14 and 21 units;
/// every object is a multiple of the quantum.
#[test]
fn akaros_qc_odd_quantum() {
    with_id_arena((7, 21), (7, 10_003), |_, _, a| {
        for i in 1..4 {
            let amt = 7 * i;
            let o: Vec<usize> = (0..4)
                .map(|_| a.alloc(amt, Policy::InstantFit).unwrap())
                .collect();
            assert!(o.iter().all(|x| x % 7 == 0), "{amt}: {o:?}");
            for x in o {
                a.free(x, amt).unwrap();
            }
        }
    });
}

/// Akaros `test_qc_large_quantum`: a quantum larger than the page size.
#[test]
fn akaros_qc_large_quantum() {
    with_id_arena((8192, 8192), (8192, 8192 * 4), |_, _, a| {
        let o = a.alloc(8192, Policy::InstantFit).unwrap();
        assert_eq!(o % 8192, 0);
        a.free(o, 8192).unwrap();
    });
}

/// Objects freed through the arena come back from the same CPU's magazine,
/// without touching the arena's segments; reap gives the slabs back.
#[test]
fn frees_round_trip_through_the_caches() {
    with_id_arena((4096, 4 * 4096), (1 << 30, 1 << 30), |caches, _, a| {
        for size in [1, 4096, 4097, 3 * 4096, 4 * 4096] {
            let x = a.alloc(size, Policy::InstantFit).unwrap();
            let segments = a.stats().allocs;
            a.free(x, size).unwrap();
            let y = a.alloc(size, Policy::InstantFit).unwrap();
            assert_eq!(x, y, "size {size}: not the magazine's round");
            assert_eq!(a.stats().allocs, segments, "size {size}: went to the arena");
            a.free(y, size).unwrap();
        }
        assert!(a.size(SizeKind::Allocated) > 0, "slabs held by the caches");
        // This CPU's magazines hold the objects: reap leaves them.
        assert_eq!(a.reap(), 0);
        caches.for_each(|c| {
            if c.name().starts_with("qc_") {
                c.flush_current();
            }
        });
        // Flushed to the depots: reap drains them and frees every slab.
        assert!(a.reap() > 0);
        assert_eq!(a.size(SizeKind::Allocated), 0);
    });
}

/// `xalloc`/`xfree` and sizes above `qcache_max` use segments; next fit on
/// a cached size is refused.
#[test]
fn xalloc_large_sizes_and_next_fit_bypass_the_caches() {
    with_id_arena((1, 8), (0, 1 << 20), |_, qc, a| {
        let x = a.xalloc(4, &Constraints::new().align(64)).unwrap();
        assert_eq!(x % 64, 0);
        assert_eq!(qc.in_use(), 0);
        let y = a.alloc(9, Policy::NextFit).unwrap();
        let z = a.alloc(100, Policy::BestFit).unwrap();
        assert_eq!(qc.in_use(), 0);
        assert_eq!(live(a), 3);
        // Next fit on a cached size bypasses the caches too; xfree frees
        // it, and free (which sends the size to the caches) is refused.
        let n = a.alloc(8, Policy::NextFit).unwrap();
        assert_eq!(qc.in_use(), 0);
        assert_eq!(a.free(n, 8), Err(FreeError::Cached { addr: n }));
        a.xfree(n, 8).unwrap();
        a.xfree(x, 4).unwrap();
        a.free(y, 9).unwrap();
        a.free(z, 100).unwrap();
        // Resource 0 is a valid quantum-cache object too.
        let objs: Vec<usize> = (0..64)
            .map(|_| a.alloc(1, Policy::InstantFit).unwrap())
            .collect();
        assert!(objs.contains(&0));
        for o in objs {
            a.free(o, 1).unwrap();
        }
    });
}

/// A `qcache_max` above 16 quanta is cut to 16 caches.
#[test]
fn at_most_sixteen_caches() {
    with_caches(RAM, |caches, _| {
        let qc = caches.qcaches("qc", 1, 100, ArenaValues::Integers).unwrap();
        assert_eq!(qc.max(), QCACHE_MAX_CACHES);
        let mut n = 0;
        qc.stats(|_| n += 1);
        assert_eq!(n, QCACHE_MAX_CACHES);
        let mut report = String::new();
        caches.report(&mut report).unwrap();
        assert!(
            report.contains("qc_1 ") && report.contains("qc_16 "),
            "{report}"
        );
    });
}

/// Destroying the arena destroys its caches first; with a cached object
/// still out, both refuse and keep working (and `with_id_arena` then sees
/// the arena destroyed with its caches).
#[test]
fn destroy_refuses_live_cached_objects() {
    with_id_arena((1, 4), (0, 1 << 20), |_, _, a| {
        let x = a.alloc(2, Policy::InstantFit).unwrap();
        assert_eq!(
            a.destroy(),
            Err(DestroyError::LiveCachedObjects { count: 1 })
        );
        // Still working.
        let y = a.alloc(2, Policy::InstantFit).unwrap();
        a.free(y, 2).unwrap();
        a.free(x, 2).unwrap();
    });
}

/// An arena other arenas or caches import from refuses to be destroyed.
#[test]
fn destroy_refuses_live_importers() {
    with_caches(RAM, |caches, _| {
        let base = caches.base();
        let mut parent = Arena::builder("parent")
            .quantum(4096)
            .span(1 << 40, 1 << 30)
            .tags_from(base)
            .build()
            .unwrap();
        let child = Arena::builder("child")
            .quantum(4096)
            .source(&parent)
            .tags_from(base)
            .build()
            .unwrap();
        let c = child.alloc(4096, Policy::InstantFit).unwrap();
        assert_eq!(parent.importers(), 1);
        // The child leaks (dropped with a live allocation), so it never
        // stops importing.
        drop(child);
        assert_eq!(
            parent.destroy(),
            Err(DestroyError::LiveImporters { count: 1 })
        );
        parent.check().unwrap();
        assert_eq!(parent.stats().live, 1, "nothing changed");
        let _ = c;
    });
}

// ---------------------------------------------------------------------------
// Bad input.

#[test]
fn qcaches_for_another_quantum_are_refused() {
    with_caches(RAM, |caches, _| {
        let qc = caches.qcaches("qc", 8, 32, ArenaValues::Integers).unwrap();
        let r = id_builder("qc", caches, 4, 0, 1 << 20).qcaches(&qc).build();
        assert_eq!(r.err(), Some(CreateError::QcacheQuantum));
        // Still free to serve an arena of the right quantum.
        let mut a = id_arena(caches, &qc, 8, 0, 1 << 20);
        a.destroy().unwrap();
    });
}

#[test]
fn qcaches_serve_one_arena_only() {
    with_id_arena((1, 4), (0, 1 << 20), |caches, qc, _| {
        let r = id_builder("other", caches, 1, 0, 1 << 20)
            .qcaches(qc)
            .build();
        assert_eq!(r.err(), Some(CreateError::QcachesInUse));
    });
}

#[test]
fn qcache_max_below_the_quantum_is_refused() {
    with_caches(RAM, |caches, _| {
        assert_eq!(
            caches.qcaches("qc", 4096, 100, ArenaValues::Memory).err(),
            Some(kmem_slab::CreateError::BadQcacheMax)
        );
        assert_eq!(
            caches.qcaches("qc", 0, 100, ArenaValues::Memory).err(),
            Some(kmem_slab::CreateError::ZeroSize)
        );
    });
}

/// Calling the caches with an arena they do not serve changes nothing.
#[test]
fn foreign_arena_is_refused() {
    with_id_arena((1, 4), (0, 1 << 20), |caches, qc, _| {
        let other = id_builder("other", caches, 1, 0, 1 << 20).build().unwrap();
        assert_eq!(qc.alloc(&other, 1), Err(AllocError::Exhausted));
        // SAFETY: `other` is an integer arena (no memory behind 5); the
        // call is checked and refused.
        let r = unsafe { qc.free(&other, 5, 1) };
        assert_eq!(r, Err(FreeError::NotAllocated { addr: 5 }));
        assert_eq!(qc.in_use(), 0);
        assert_eq!(other.stats().live, 0);
    });
}

/// A double free of a cached size is refused at once (a quantum cache
/// checks every free under its lock before the magazine): the ID is never
/// handed out twice, and the arena's accounting stays exact.
#[test]
fn double_free_of_a_cached_size_is_refused_at_once() {
    with_id_arena((1, 4), (0, 1 << 20), |_, qc, a| {
        let x = a.alloc(3, Policy::InstantFit).unwrap();
        a.free(x, 3).unwrap();
        assert_eq!(a.free(x, 3), Err(FreeError::Cached { addr: x }));
        // Freed into a magazine and then again on another thread.
        let y = a.alloc(3, Policy::InstantFit).unwrap();
        a.free(y, 3).unwrap();
        let again = std::thread::scope(|s| s.spawn(|| a.free(y, 3)).join().unwrap());
        assert_eq!(again, Err(FreeError::Cached { addr: y }));
        // No ID goes to two owners.
        let got: Vec<usize> = (0..4)
            .map(|_| a.alloc(3, Policy::InstantFit).unwrap())
            .collect();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "an ID handed out twice");
        for id in got {
            a.free(id, 3).unwrap();
        }
        let mut bad = 0;
        qc.stats(|s| bad += s.bad_frees);
        assert_eq!(bad, 2);
        assert_eq!(qc.in_use(), 0);
    });
}

/// A free of a cached size with the wrong size (another quantum cache's
/// object) is refused at once, and the object stays its owner's.
#[test]
fn free_of_a_cached_size_with_the_wrong_size_is_refused() {
    with_id_arena((1, 4), (0, 1 << 20), |_, _, a| {
        let x = a.alloc(3, Policy::InstantFit).unwrap();
        assert_eq!(a.free(x, 2), Err(FreeError::Cached { addr: x }));
        assert_eq!(a.free(x, 4), Err(FreeError::Cached { addr: x }));
        a.free(x, 3).unwrap();
    });
}

/// A free of a cached size that no cache handed out (a segment from
/// `xalloc`, freed with `free`) is refused at once by the quantum cache;
/// the segment stays allocated and can still be `xfree`d.
#[test]
fn free_of_an_xalloc_segment_with_a_cached_size_is_refused() {
    with_id_arena((1, 4), (0, 1 << 20), |_, _, a| {
        let x = a.xalloc(2, &Constraints::new().align(1024)).unwrap();
        assert_eq!(a.free(x, 2), Err(FreeError::Cached { addr: x }));
        a.check().unwrap();
        a.xfree(x, 2).unwrap();
    });
}

/// Quantum caches of a memory arena whose quantum is not a power of two
/// stay on bufctls (`NOTOUCH`): their objects keep sizes that are
/// multiples of the quantum (headed slabs would round them to 8 bytes, and
/// hand out values that are not). With a power-of-two quantum they are
/// headed.
#[test]
fn memory_quantum_caches_are_headed_only_with_a_power_of_two_quantum() {
    with_caches(RAM, |caches, _| {
        let odd = caches.qcaches("q12", 12, 48, ArenaValues::Memory).unwrap();
        let pow2 = caches.qcaches("q16", 16, 64, ArenaValues::Memory).unwrap();
        let ids = caches
            .qcaches("i16", 16, 64, ArenaValues::Integers)
            .unwrap();
        let mut seen = Vec::new();
        caches.for_each(|c| {
            if let Some(q) = c
                .name()
                .strip_prefix("q12_")
                .or(c.name().strip_prefix("q16_"))
                .or(c.name().strip_prefix("i16_"))
            {
                let size: usize = q.parse().unwrap();
                seen.push((c.name().to_owned(), c.size(), c.uses_bufctls()));
                assert_eq!(c.size(), size, "{}: object size", c.name());
            }
        });
        for (name, size, bufctls) in &seen {
            let headed = name.starts_with("q16_");
            assert_eq!(!bufctls, headed, "{name} ({size} B)");
        }
        assert_eq!(seen.len(), 4 + 4 + 4);
        drop((odd, pow2, ids));
    });
}

/// An arena that runs out first has its quantum caches give back what
/// their magazines and slabs hold, then tries again: a large request after
/// every cached object was freed succeeds without a `reap` by hand.
#[test]
fn exhaustion_drains_the_quantum_caches() {
    with_id_arena((1, 8), (0, 4096), |_, _, a| {
        assert!(exhaust_and_free(a) > 1000);
        // The freed objects sit in magazines and slabs of the caches.
        assert!(a.amt_free() < 4096);
        let big = a.alloc(4096, Policy::InstantFit).unwrap();
        assert_eq!(big, 0);
        a.free(big, 4096).unwrap();
    });
}

/// The same from inside an allocator operation (as kmalloc's page
/// allocations and slab growth call their arena): the caller's own
/// magazines are flushed all the same. (Found by review.)
#[test]
fn exhaustion_inside_an_operation_drains_the_quantum_caches() {
    with_id_arena((1, 8), (0, 4096), |_, _, a| {
        exhaust_and_free(a);
        let big = {
            let _section = Section::enter(ThreadCpus::global()).expect("not inside one");
            a.alloc(4096, Policy::InstantFit)
        };
        assert_eq!(big, Ok(0));
        a.free(0, 4096).unwrap();
    });
}

/// Quantum caches over memory with a power-of-two quantum are headed and
/// coloured, but their colours are multiples of the quantum: every object
/// stays a multiple of the quantum from its slab's base (what an arena
/// asks of its quantum caches), here with 4-page objects whose 256 KiB
/// slabs have room for colours of 0 to 3 pages. (Colours of 64 bytes
/// handed out misaligned pages; found by kmalloc's tests.)
#[test]
fn memory_quantum_caches_colour_by_the_quantum() {
    const PAGE: usize = 4096;
    const SIZE: usize = 4 * PAGE;
    with_caches(32 << 20, |caches, _| {
        let qc = caches
            .qcaches("mq", PAGE, 8 * PAGE, ArenaValues::Memory)
            .unwrap();
        let mut a = Arena::builder("mq")
            .quantum(PAGE)
            .source(caches.base())
            .tags_from(caches.base())
            .qcaches(&qc)
            .build()
            .unwrap();
        let mut geometry = Vec::new();
        caches.for_each(|c| {
            if c.name() == "mq_16384" {
                assert!(!c.uses_bufctls());
                geometry.push(c.slab_geometry());
            }
        });
        assert_eq!(geometry, [(256 << 10, 15)]);
        let slab = 256 << 10;
        let objs: Vec<usize> = (0..100)
            .map(|_| a.alloc(SIZE, Policy::InstantFit).unwrap())
            .collect();
        assert!(objs.iter().all(|o| o % PAGE == 0), "a misaligned page");
        let mut colours: Vec<usize> = objs.iter().map(|o| o % slab % SIZE).collect();
        colours.sort_unstable();
        colours.dedup();
        assert_eq!(colours, [0, PAGE, 2 * PAGE, 3 * PAGE]);
        for o in objs {
            // SAFETY: allocated above with this size, not used after.
            unsafe { a.free_memory(o, SIZE) }.unwrap();
        }
        a.check().unwrap();
        a.destroy().unwrap();
    });
}
