//! The slab layer's paths one by one: geometry, constructed-object
//! semantics, reap, destroy, the bufctl hash, quantum caches, non-memory
//! sources, the bootstrap caches and the report.

mod common;

use core::sync::atomic::Ordering;

use common::{
    alloc_n, caches_over, free_all, with_caches, with_caches_on, with_caches_using, with_ids,
    with_ram, Counting,
};
use kmem_arena::{Arena, SizeKind};
use kmem_magazine::{ManualCpus, ThreadCpus};
use kmem_slab::{AllocFlags, CacheBuilder, CacheFlags, PAGE_SIZE, SMALL_MAX};

/// Units the arena has handed out.
fn used(arena: &Arena<'_>) -> usize {
    arena.size(SizeKind::Allocated)
}

#[test]
#[cfg_attr(
    feature = "site-stats",
    ignore = "the geometry without `site-stats`, whose site slots take 4 bytes per object"
)]
fn small_geometry_packs_objects_below_the_header() {
    with_caches(4 << 20, |caches, kpages| {
        for (size, align) in [(8, 8), (24, 8), (40, 64), (64, 8), (200, 8), (SMALL_MAX, 8)] {
            let c = caches
                .create(CacheBuilder::new("g", size).align(align).source(kpages))
                .unwrap();
            let (slab, per) = c.slab_geometry();
            assert!(!c.uses_bufctls());
            assert_eq!(slab, PAGE_SIZE);
            assert_eq!(c.size() % align, 0);
            // The header takes the slab's last 80 bytes.
            assert!(per * c.size() + per.div_ceil(64) * 8 + 80 <= PAGE_SIZE);
            assert!((per + 1) * c.size() + (per + 1).div_ceil(64) * 8 + 80 > PAGE_SIZE);
            let objs = alloc_n(&c, per + 1, AllocFlags::empty());
            assert!(objs.iter().all(|o| o % align == 0 && ram_word(*o)));
            assert_eq!(
                c.stats().slabs,
                2,
                "{size}: one object more than a slab holds"
            );
            // SAFETY: allocated above, freed once.
            unsafe { free_all(&c, objs) };
        }
    });
}

/// The object is writable memory (writes a word and reads it back).
fn ram_word(obj: usize) -> bool {
    // SAFETY: objects of memory caches are at least 8 writable bytes.
    unsafe {
        (obj as *mut u64).write(0x5A5A);
        (obj as *const u64).read() == 0x5A5A
    }
}

/// Large objects of a cache that may write to them live in headed slabs
/// too: the smallest power of two, aligned to its size, that wastes at
/// most 1/16 of it. `NOTOUCH` keeps them on bufctls, 8 per slab.
#[test]
#[cfg_attr(
    feature = "site-stats",
    ignore = "the geometry without `site-stats`, whose site slots take 4 bytes per object"
)]
fn large_objects_use_headed_slabs_and_notouch_bufctls() {
    with_caches(4 << 20, |caches, kpages| {
        for (size, align, slab, per) in [
            (1000, 8, PAGE_SIZE, 4),
            (1024, 8, 16 * 1024, 15),
            (1536, 8, 8 * 1024, 5),
            (100, PAGE_SIZE, 64 * 1024, 15),
            (32 * 1024, 8, 512 * 1024, 15),
        ] {
            let c = caches
                .create(CacheBuilder::new("big", size).align(align).source(kpages))
                .unwrap();
            assert!(!c.uses_bufctls(), "{size}");
            assert_eq!(c.slab_geometry(), (slab, per), "{size}");
            let (slab, per) = c.slab_geometry();
            assert!(
                slab - per * c.size() <= slab / 16,
                "{size}: wastes too much"
            );
            let objs = alloc_n(&c, per + 1, AllocFlags::empty());
            for &o in &objs {
                assert_eq!(o % align, 0);
                let base = o & !(slab - 1);
                assert!(
                    o + c.size() <= base + slab - 80,
                    "{size}: object over the header"
                );
                assert!(ram_word(o));
            }
            assert_eq!(c.stats().slabs, 2);
            // SAFETY: allocated above, freed once.
            unsafe { free_all(&c, objs) };
            c.destroy().unwrap();
        }
        let c = caches
            .create(
                CacheBuilder::new("big", 1000)
                    .flags(CacheFlags::NOTOUCH)
                    .source(kpages),
            )
            .unwrap();
        assert!(c.uses_bufctls());
        assert_eq!(c.size(), 1000);
        assert_eq!(c.slab_geometry(), (8192, 8));
        // Past the largest headed slab: bufctls.
        let huge = caches
            .create(CacheBuilder::new("huge", 512 * 1024).source(kpages))
            .unwrap();
        assert!(huge.uses_bufctls());
    });
}

/// What a headed slab of `per` objects of `size` bytes in `slab` bytes
/// leaves unused below its site slots (`site-stats`), bitmap and 80-byte
/// header: the room its colours take.
fn slack(slab: usize, per: usize, size: usize) -> usize {
    let sites = if cfg!(feature = "site-stats") {
        (per * 4).next_multiple_of(8)
    } else {
        0
    };
    slab - 80 - per.div_ceil(64) * 8 - sites - per * size
}

/// Headed slabs are coloured: the `k`-th slab of a cache puts its first
/// object `(k % colours) * step` bytes past its base, `step` the cache line
/// (64) or the alignment when larger, up to the slab's slack; a slab
/// without that much slack is never coloured. Objects stay aligned and
/// inside their slab, below the bitmap, and the checker agrees.
#[test]
fn successive_slabs_get_rotating_colours() {
    with_caches(16 << 20, |caches, kpages| {
        for (size, align) in [
            (512, 8),
            (256, 8),
            (384, 128),
            (1024, 8),
            (64, 8),
            (100, PAGE_SIZE),
        ] {
            let c = caches
                .create(
                    CacheBuilder::new("colour", size)
                        .align(align)
                        .flags(CacheFlags::NOMAGAZINE)
                        .source(kpages),
                )
                .unwrap();
            assert!(!c.uses_bufctls(), "{size}");
            let (slab, per) = c.slab_geometry();
            let size = c.size();
            let step = align.max(64);
            let slack = slack(slab, per, size);
            let colours = slack / step + 1;
            if (size, align) == (512, 8) {
                assert!(colours > 2, "a 512-byte cache has room for colours");
            }
            if (size, align) == (64, 8) && !cfg!(feature = "site-stats") {
                assert_eq!(colours, 1, "a 64-byte cache has no room for one");
            }
            // Each slab filled before the next is grown (no magazines).
            let n = colours + 2;
            let objs = alloc_n(&c, n * per, AllocFlags::empty());
            assert_eq!(c.stats().slabs, n, "{size}");
            let mut seen = Vec::new();
            for (k, chunk) in objs.chunks(per).enumerate() {
                let base = chunk[0] & !(slab - 1);
                let colour = chunk[0] - base;
                assert_eq!(colour, (k % colours) * step, "{size}/{align}: slab {k}");
                seen.push(colour);
                for (i, &o) in chunk.iter().enumerate() {
                    assert_eq!(o & !(slab - 1), base, "{size}: one slab per chunk");
                    assert_eq!(o, base + colour + i * size, "{size}: lowest first");
                    assert_eq!(o % align, 0, "{size}/{align}: misaligned");
                    assert!(
                        o + size <= base + slab - 80 - per.div_ceil(64) * 8,
                        "{size}: object {i} of slab {k} over the bitmap or header"
                    );
                    assert!(
                        o - base + size <= per * size + slack,
                        "{size}: object {i} of slab {k} over the site slots"
                    );
                    assert!(ram_word(o));
                }
            }
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), colours, "{size}/{align}: every colour used");
            c.check().unwrap();
            let st = c.stats();
            assert_eq!(st.buf_in_use, (n * per) as u64);
            assert_eq!(st.buf_total, (n * per) as u64);
            // SAFETY: allocated above, freed once.
            unsafe { free_all(&c, objs) };
            assert_eq!(c.stats().buf_in_use, 0);
            c.destroy().unwrap();
        }
    });
}

/// A plain cache with magazines takes its coloured objects back through
/// the lock-free free check (owner key, object start from the slab's
/// colour, free mark), and hands them out again.
#[test]
fn coloured_objects_go_through_the_magazines() {
    with_caches(16 << 20, |caches, kpages| {
        for size in [512, 1024, 3000] {
            let c = caches
                .create(CacheBuilder::new("colour", size).source(kpages))
                .unwrap();
            let (slab, per) = c.slab_geometry();
            for round in 0..3 {
                let objs = alloc_n(&c, 8 * per, AllocFlags::ZERO);
                let mut colours: Vec<usize> =
                    objs.iter().map(|&o| (o & (slab - 1)) % c.size()).collect();
                colours.sort_unstable();
                colours.dedup();
                if round == 0 && slack(slab, per, c.size()) >= 64 {
                    assert!(colours.len() > 1, "{size}: slabs of one colour");
                }
                for &o in &objs {
                    assert!(ram_word(o));
                }
                c.check().unwrap();
                // SAFETY: allocated above, freed once.
                unsafe { free_all(&c, objs) };
            }
            assert_eq!(c.stats().bad_frees, 0);
            c.destroy().unwrap();
        }
    });
}

#[test]
fn quantum_cache_slabs_are_next_pow2_of_three_qcache_max() {
    with_caches(8 << 20, |caches, kpages| {
        let qcache_max = 8 * PAGE_SIZE;
        let c = caches
            .create(
                CacheBuilder::new("kpages_12288", 3 * PAGE_SIZE)
                    .align(PAGE_SIZE)
                    .source(kpages)
                    .qcache(qcache_max),
            )
            .unwrap();
        assert!(c.flags().contains(CacheFlags::QCACHE | CacheFlags::NOTOUCH));
        assert_eq!(c.slab_geometry(), (128 * 1024, 10));
        let o = c.alloc(AllocFlags::empty()).unwrap();
        assert_eq!(o % PAGE_SIZE, 0);
        // SAFETY: allocated above.
        unsafe { c.free(o) }.unwrap();
    });
}

#[test]
fn notouch_cache_over_ids_hands_out_zero() {
    with_ids(4 << 20, (0, 4096), |caches, _, ids| {
        let c = caches
            .create(
                CacheBuilder::new("id8", 8)
                    .source(ids)
                    .flags(CacheFlags::NOTOUCH),
            )
            .unwrap();
        let (_, per) = c.slab_geometry();
        let got = alloc_n(&c, per, AllocFlags::empty());
        assert!(got.contains(&0), "resource 0 is an object like any other");
        assert!(got.iter().all(|&id| id < 4096 && id % 8 == 0));
        // SAFETY: allocated above.
        unsafe { free_all(&c, got) };
        drop(c);
        assert_eq!(ids.amt_free(), 4096, "destroy gave the slab back");
    });
}

#[test]
fn objects_stay_constructed_in_magazines() {
    let ops = Counting::default();
    with_caches_using(&ops, 4 << 20, |caches, kpages, ops| {
        let c = caches
            .create(CacheBuilder::new("ctor", 64).source(kpages).ops(ops))
            .unwrap();
        let objs = alloc_n(&c, 20, AllocFlags::ATOMIC);
        assert_eq!(
            ops.seen_flags.load(Ordering::SeqCst),
            AllocFlags::ATOMIC.bits() as usize
        );
        assert_eq!(ops.ctors.load(Ordering::SeqCst), 20);
        for &o in &objs {
            // SAFETY: allocated above.
            unsafe { c.free(o) }.unwrap();
        }
        assert_eq!(
            ops.dtors.load(Ordering::SeqCst),
            0,
            "cached, still constructed"
        );
        let again = alloc_n(&c, 20, AllocFlags::empty());
        assert_eq!(
            ops.ctors.load(Ordering::SeqCst),
            20,
            "served constructed from magazines"
        );
        for &o in &again {
            // SAFETY: allocated above.
            unsafe { c.free(o) }.unwrap();
        }
        // Reap drains the depot; the CPU's own magazines stay loaded until
        // their owner flushes them.
        c.flush_current();
        c.reap();
        assert_eq!(ops.live_constructed(), 0);
        assert_eq!(c.stats().buf_total, 0, "every slab went back");
    });
}

#[test]
fn nomagazine_caches_destruct_on_every_free() {
    let ops = Counting::default();
    with_caches_using(&ops, 4 << 20, |caches, kpages, ops| {
        let c = caches
            .create(
                CacheBuilder::new("plain", 64)
                    .source(kpages)
                    .ops(ops)
                    .flags(CacheFlags::NOMAGAZINE),
            )
            .unwrap();
        assert!(c.magazine_stats().is_none());
        let o = c.alloc(AllocFlags::empty()).unwrap();
        // SAFETY: allocated above.
        unsafe { c.free(o) }.unwrap();
        assert_eq!(
            (
                ops.ctors.load(Ordering::SeqCst),
                ops.dtors.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
    });
}

#[test]
fn destroy_runs_every_destructor_and_returns_every_page() {
    let ops = Counting::default();
    with_caches_using(&ops, 8 << 20, |caches, kpages, ops| {
        let before = used(kpages);
        for size in [64, 1000] {
            let c = caches
                .create(CacheBuilder::new("d", size).source(kpages).ops(ops))
                .unwrap();
            let objs = alloc_n(&c, 500, AllocFlags::empty());
            // SAFETY: allocated above.
            unsafe { free_all(&c, objs) };
            assert!(c.stats().magazines.unwrap().magazines_live() > 0);
            c.destroy().unwrap();
            assert_eq!(ops.live_constructed(), 0, "size {size}");
            assert_eq!(used(kpages), before, "size {size}: a slab leaked");
        }
        caches.stats(|s| {
            if s.name.as_str().starts_with("kmem_magazine") || s.name.as_str() == "kmem_bufctl" {
                assert_eq!(s.buf_in_use, 0, "{}", s.name.as_str());
            }
        });
    });
}

#[test]
fn reap_returns_empty_slabs_and_shrinks_the_hash() {
    with_caches(32 << 20, |caches, kpages| {
        let before = used(kpages);
        let c = caches
            .create(
                CacheBuilder::new("r", 1024)
                    .flags(CacheFlags::NOTOUCH)
                    .source(kpages),
            )
            .unwrap();
        let objs = alloc_n(&c, 4000, AllocFlags::empty());
        let grown = c.stats();
        assert!(
            grown.hash_chains > 64,
            "4000 bufctls grew the hash: {}",
            grown.hash_chains
        );
        assert_eq!(grown.slabs, 500);
        c.check().unwrap();
        // SAFETY: allocated above.
        unsafe { free_all(&c, objs) };
        c.flush_current();
        let freed = c.reap();
        let st = c.stats();
        assert_eq!(freed, 500 * 8192);
        assert_eq!((st.slabs, st.buf_total, st.slab_busy), (0, 0, 0));
        assert_eq!(st.hash_chains, 64, "the hash shrank back");
        assert_eq!(used(kpages), before);
        c.check().unwrap();
    });
}

/// Akaros `test_import_slab` (`kern/src/ktest/kt_arena.c`): caches keep
/// the guarantees of the arena they import from, and their own. Over an
/// arena of quantum 7 holding IDs 7 to 70 006, a `NOTOUCH` cache of
/// 14-unit objects (alignment 1) hands out multiples of 7; a `NOTOUCH`
/// cache of 1-byte objects aligned to 16, over the default source, hands
/// out multiples of 16. Three objects each, freed, the caches destroyed,
/// and the arena of sevens back to empty.
#[test]
fn akaros_import_slab() {
    with_ram(32 << 20, |base, _| {
        let sevens = Arena::builder("sevens")
            .quantum(7)
            .span(7, 70_000)
            .tags_from(base)
            .build()
            .unwrap();
        caches_over(base, ThreadCpus::global(), |caches| {
            let shapes = [
                (
                    CacheBuilder::new("import_slab-QP", 14)
                        .align(1)
                        .source(&sevens),
                    7,
                ),
                (CacheBuilder::new("import_slab-AG", 1).align(16), 16),
            ];
            for (builder, multiple) in shapes {
                let c = caches.create(builder.flags(CacheFlags::NOTOUCH)).unwrap();
                let objs = alloc_n(&c, 3, AllocFlags::empty());
                assert!(
                    objs.iter().all(|o| o % multiple == 0),
                    "{multiple}: {objs:x?}"
                );
                // SAFETY: allocated above.
                unsafe { free_all(&c, objs) };
                c.destroy().unwrap();
            }
        });
        assert_eq!(used(&sevens), 0, "the caches gave every slab back");
        sevens.check().unwrap();
    });
}

/// The hash's tables come from the base arena and go back to it: grown
/// to 8192 chains and shrunk back to 64 (each table
/// installed, its nodes moved over a batch of chains per lock hold, the
/// emptied one freed), then the cache destroyed, the base holds as many
/// allocations as before the cache was made. The first round warms the
/// bootstrap caches (what they set up on first use stays); the second
/// must leave nothing behind.
#[test]
fn hash_tables_go_back_to_the_base_arena() {
    with_ram(64 << 20, |base, kpages| {
        caches_over(base, ThreadCpus::global(), |caches| {
            for round in 0..2 {
                caches.reap();
                let before = base.stats().live;
                let c = caches
                    .create(
                        CacheBuilder::new("h", 512)
                            .flags(CacheFlags::NOTOUCH | CacheFlags::NOMAGAZINE)
                            .source(kpages),
                    )
                    .unwrap();
                let objs = alloc_n(&c, 5000, AllocFlags::empty());
                assert_eq!(c.stats().hash_chains, 8192, "5000 bufctls");
                c.check().unwrap();
                // SAFETY: allocated above.
                unsafe { free_all(&c, objs) };
                c.reap();
                assert_eq!(c.stats().hash_chains, 64, "back to 64 chains");
                c.check().unwrap();
                c.destroy().unwrap();
                caches.reap();
                if round == 1 {
                    assert_eq!(base.stats().live, before, "a table or the cache leaked");
                }
            }
        });
    });
}

/// The upkeep pass: the first tick ends the interval in which the depot
/// filled, the second gives its idle magazines back (objects destructed
/// into their slabs, the slabs to the source); a working set in use
/// between ticks stays.
#[test]
fn tick_trims_what_sat_idle_for_a_whole_interval() {
    with_caches(32 << 20, |caches, kpages| {
        let before = used(kpages);
        let c = caches
            .create(CacheBuilder::new("t", 256).source(kpages))
            .unwrap();
        let objs = alloc_n(&c, 4000, AllocFlags::empty());
        for &o in &objs {
            // SAFETY: allocated above.
            unsafe { c.free(o) }.unwrap();
        }
        // (Each pass moves the caller's own magazines to the depot first.)
        c.flush_current();
        let full = c.magazine_stats().unwrap().not_empty;
        assert!(full > 100, "{full}");
        assert_eq!(caches.tick(), 0, "the first pass only ends the interval");
        assert_eq!(c.magazine_stats().unwrap().not_empty, full);
        // A working set of 100 objects, used during the next interval.
        let ws = alloc_n(&c, 100, AllocFlags::empty());
        for &o in &ws {
            // SAFETY: allocated just above.
            unsafe { c.free(o) }.unwrap();
        }
        assert!(caches.tick() > 0, "idle slabs went back");
        let m = c.magazine_stats().unwrap();
        assert!(m.magazines_trimmed > 0);
        assert!(
            m.not_empty > 0 && m.not_empty < full,
            "the magazines the working set took stay: {m:?}"
        );
        // Nothing used through another interval: all of it goes back.
        caches.tick();
        let (m, st) = (c.magazine_stats().unwrap(), c.stats());
        assert_eq!((m.not_empty, m.empty), (0, 0), "{m:?}");
        // Only the objects in this CPU's two magazines hold slabs.
        assert!(st.slab_busy <= 2 * m.magsize as u64, "{st:?}");
        c.flush_current();
        caches.tick();
        caches.tick();
        assert_eq!(used(kpages), before, "every page back");
        c.check().unwrap();
    });
}

/// Allocations fill the fullest partial slabs first, and the slabs that
/// frees left less than half full drain until they are empty and go back;
/// for headed slabs and for bufctl slabs.
#[test]
fn allocations_take_from_the_fullest_partial_slabs() {
    for flags in [
        CacheFlags::NOMAGAZINE,
        CacheFlags::NOMAGAZINE | CacheFlags::NOTOUCH,
    ] {
        with_caches(32 << 20, |caches, kpages| {
            let c = caches
                .create(CacheBuilder::new("order", 128).flags(flags).source(kpages))
                .unwrap();
            let (slab_size, per) = c.slab_geometry();
            let slab_of = |o: usize| o / slab_size;
            // Ten slabs, full.
            let mut objs = alloc_n(&c, 10 * per, AllocFlags::empty());
            objs.sort_unstable();
            let slabs: Vec<Vec<usize>> = objs.chunks(per).map(<[usize]>::to_vec).collect();
            assert!(slabs
                .iter()
                .all(|s| s.iter().all(|&o| slab_of(o) == slab_of(s[0]))));
            // The first five keep one object each; the last five lose one
            // each. The nearly empty ones are freed into last, which a
            // last-freed-first order would take from next.
            for s in &slabs[5..] {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(s[0]) }.unwrap();
            }
            for s in &slabs[..5] {
                for &o in &s[1..] {
                    // SAFETY: as above.
                    unsafe { c.free(o) }.unwrap();
                }
            }
            let nearly_full: Vec<usize> = slabs[5..].iter().map(|s| slab_of(s[0])).collect();
            let again = alloc_n(&c, 5, AllocFlags::empty());
            for &o in &again {
                assert!(
                    nearly_full.contains(&slab_of(o)),
                    "{flags:?}: {o:#x} came from a nearly empty slab"
                );
            }
            // The nearly empty slabs lose their last objects: empty, reaped.
            let before = c.stats().slabs;
            for s in &slabs[..5] {
                // SAFETY: as above.
                unsafe { c.free(s[0]) }.unwrap();
            }
            c.reap();
            assert_eq!(c.stats().slabs, before - 5);
            for o in again
                .into_iter()
                .chain(slabs[5..].iter().flat_map(|s| s[1..].to_vec()))
            {
                // SAFETY: as above.
                unsafe { c.free(o) }.unwrap();
            }
            c.check().unwrap();
        });
    }
}

/// The FIFO ablation (`CacheBuilder::fifo_partial_slabs`, for B14): slabs
/// are taken in the order they became partial, not fullest first. Five
/// slabs are left nearly empty first, then five lose one object each: the
/// ablation takes from the first nearly empty one, the default from the
/// nearly full ones.
#[test]
fn fifo_ablation_takes_partial_slabs_in_the_order_they_became_partial() {
    for flags in [
        CacheFlags::NOMAGAZINE,
        CacheFlags::NOMAGAZINE | CacheFlags::NOTOUCH,
    ] {
        for fifo in [false, true] {
            with_caches(32 << 20, |caches, kpages| {
                let mut b = CacheBuilder::new("order", 128).flags(flags).source(kpages);
                if fifo {
                    b = b.fifo_partial_slabs();
                }
                let c = caches.create(b).unwrap();
                let (slab_size, per) = c.slab_geometry();
                let slab_of = |o: usize| o / slab_size;
                let mut objs = alloc_n(&c, 10 * per, AllocFlags::empty());
                objs.sort_unstable();
                let slabs: Vec<Vec<usize>> = objs.chunks(per).map(<[usize]>::to_vec).collect();
                for s in &slabs[..5] {
                    for &o in &s[1..] {
                        // SAFETY: allocated above, freed once.
                        unsafe { c.free(o) }.unwrap();
                    }
                }
                for s in &slabs[5..] {
                    // SAFETY: as above.
                    unsafe { c.free(s[0]) }.unwrap();
                }
                let again = alloc_n(&c, 5, AllocFlags::empty());
                let first_partial = slab_of(slabs[0][0]);
                let nearly_full: Vec<usize> = slabs[5..].iter().map(|s| slab_of(s[0])).collect();
                for &o in &again {
                    if fifo {
                        assert_eq!(slab_of(o), first_partial, "{flags:?}: FIFO");
                    } else {
                        assert!(nearly_full.contains(&slab_of(o)), "{flags:?}: fullest");
                    }
                }
                c.check().unwrap();
                for o in again
                    .into_iter()
                    .chain(slabs[..5].iter().map(|s| s[0]))
                    .chain(slabs[5..].iter().flat_map(|s| s[1..].to_vec()))
                {
                    // SAFETY: as above.
                    unsafe { c.free(o) }.unwrap();
                }
                c.check().unwrap();
                assert_eq!(c.stats().buf_in_use, 0);
            });
        }
    }
}

#[test]
fn zero_flag_zeroes_objects() {
    with_caches(4 << 20, |caches, kpages| {
        let c = caches
            .create(CacheBuilder::new("z", 128).source(kpages))
            .unwrap();
        let o = c.alloc(AllocFlags::empty()).unwrap();
        // SAFETY: a 128-byte object of this cache.
        unsafe { core::ptr::write_bytes(o as *mut u8, 0xAB, 128) };
        // SAFETY: allocated above.
        unsafe { c.free(o) }.unwrap();
        let z = c.alloc(AllocFlags::ZERO).unwrap();
        assert_eq!(z, o, "LIFO from the magazine");
        // SAFETY: as above.
        let bytes = unsafe { core::slice::from_raw_parts(z as *const u8, 128) };
        assert!(bytes.iter().all(|&b| b == 0));
        // SAFETY: allocated above.
        unsafe { c.free(z) }.unwrap();
    });
}

#[test]
fn objects_move_between_cpus_through_magazines() {
    let cpus = ManualCpus::<2>::new();
    with_caches_on(&cpus, 4 << 20, |caches, kpages| {
        let c = caches
            .create(CacheBuilder::new("x", 64).source(kpages))
            .unwrap();
        let o = c.alloc(AllocFlags::empty()).unwrap();
        cpus.set_slot(1);
        // SAFETY: allocated above.
        unsafe { c.free(o) }.unwrap();
        cpus.set_slot(0);
        assert_ne!(
            c.alloc(AllocFlags::empty()).unwrap(),
            o,
            "CPU 0 cannot see CPU 1's magazine"
        );
        cpus.set_slot(1);
        assert_eq!(c.alloc(AllocFlags::empty()).unwrap(), o);
        let st = c.stats();
        assert_eq!(st.buf_in_use, 2);
        // CPU 0's allocation loaded its magazine from the slab (a batch
        // refill); CPU 1's took `o` from its own.
        let m = st.magazines.unwrap();
        assert_eq!((m.cpu_allocs, m.refills), (2, 1));
    });
}

#[test]
#[cfg_attr(
    feature = "site-stats",
    ignore = "the geometry without `site-stats`, whose site slots take 4 bytes per object"
)]
fn report_lists_bootstrap_and_user_caches() {
    with_caches(4 << 20, |caches, kpages| {
        let c = caches
            .create(CacheBuilder::new("inode_cache", 200).source(kpages))
            .unwrap();
        let o = c.alloc(AllocFlags::empty()).unwrap();
        let mut out = String::new();
        caches.report(&mut out).unwrap();
        for name in [
            "kmem_magazine",
            "kmem_slab",
            "kmem_bufctl",
            "kmem_cache",
            "inode_cache",
        ] {
            assert!(out.contains(name), "{name} missing from\n{out}");
        }
        let line = out.lines().find(|l| l.starts_with("inode_cache")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[1..4], ["200", "1", "20"], "{line}");
        // SAFETY: allocated above.
        unsafe { c.free(o) }.unwrap();
    });
}

#[test]
fn objects_keep_their_alignment_over_a_fine_grained_source() {
    with_ram(8 << 20, |base, kpages| {
        let bytes = Arena::builder("bytes")
            .quantum(64)
            .source(kpages)
            .tags_from(base)
            .build()
            .unwrap();
        caches_over(base, ThreadCpus::global(), |caches| {
            for (size, align) in [(1000, 256), (100, 128), (3000, 4096)] {
                let c = caches
                    .create(CacheBuilder::new("a", size).align(align).source(&bytes))
                    .unwrap();
                let objs = alloc_n(&c, 40, AllocFlags::empty());
                assert!(
                    objs.iter().all(|o| o % align == 0),
                    "{size}/{align}: {objs:x?}"
                );
                // SAFETY: allocated above.
                unsafe { free_all(&c, objs) };
                c.destroy().unwrap();
            }
            bytes.check().unwrap();
        });
    });
}
