//! kmalloc's paths: every class, alignment for every size, zeroing,
//! realloc in place and moving, large and over-aligned requests, the
//! standard allocator interfaces, and a mixed multi-threaded workload.

mod common;

use core::alloc::GlobalAlloc;
use core::sync::atomic::{AtomicUsize, Ordering};

use common::{check, layout, snapshot, with_kmalloc};
use kmalloc::{class_size, AllocError, CLASSES, MAX_CLASS};
use kmem_physmem::{seed, Rng};

const MEM: usize = 64 << 20;

#[test]
fn every_class_round_trips_and_holds_its_size() {
    with_kmalloc(MEM, |k| {
        for i in 0..CLASSES {
            let size = class_size(i);
            let l = layout(size, 8);
            let p = k.alloc(l).unwrap();
            assert_eq!(k.usable_size(l), Some(size));
            // SAFETY: `size` bytes, ours.
            unsafe { p.as_ptr().write_bytes(0xA5, size) };
            let c = k.class_for(l).unwrap();
            assert_eq!(c.size(), size);
            assert!(c.owns(p.as_ptr() as usize) || c.stats().buf_in_use == 1);
            // SAFETY: allocated above.
            unsafe { k.free(p, l) }.unwrap();
        }
    });
}

#[test]
fn alignment_up_to_the_page_is_honoured_for_every_size() {
    with_kmalloc(MEM, |k| {
        for shift in 0..=12 {
            let align = 1usize << shift;
            for size in (1..=MAX_CLASS + 9000).step_by(97).chain([align, 3 * align]) {
                let l = layout(size, align);
                let p = k.alloc(l).unwrap();
                assert_eq!(p.as_ptr() as usize % align, 0, "{size}/{align}");
                // SAFETY: allocated above.
                unsafe { k.free(p, l) }.unwrap();
            }
        }
        // Beyond the page: xalloc from the page arena.
        for align in [8192, 1 << 16, 1 << 20] {
            let l = layout(100, align);
            let p = k.alloc(l).unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: allocated above.
            unsafe { k.free(p, l) }.unwrap();
        }
    });
}

#[test]
fn zeroed_allocations_are_zero_even_when_reused() {
    with_kmalloc(MEM, |k| {
        for size in [24, 1000, 5000, MAX_CLASS, 3 * MAX_CLASS] {
            let l = layout(size, 8);
            let p = k.alloc(l).unwrap();
            // SAFETY: ours.
            unsafe { p.as_ptr().write_bytes(0xFF, size) };
            // SAFETY: allocated above.
            unsafe { k.free(p, l) }.unwrap();
            let z = k.alloc_zeroed(l).unwrap();
            // SAFETY: `size` bytes, ours.
            let bytes = unsafe { core::slice::from_raw_parts(z.as_ptr(), size) };
            assert!(bytes.iter().all(|&b| b == 0), "{size}");
            // SAFETY: allocated above.
            unsafe { k.free(z, l) }.unwrap();
        }
    });
}

#[test]
fn realloc_stays_in_place_within_a_class_and_copies_across() {
    with_kmalloc(MEM, |k| {
        let l = layout(100, 8);
        let p = k.alloc(l).unwrap();
        // SAFETY: 100 bytes, ours.
        unsafe { (0..100).for_each(|i| p.as_ptr().add(i).write(i as u8)) };
        // 100 and 104 share kmalloc_104.
        // SAFETY: allocated with `l`.
        let q = unsafe { k.realloc(p, l, 104) }.unwrap();
        assert_eq!(p, q);
        // Growing to another class moves and keeps the contents.
        // SAFETY: now an allocation of 104 bytes.
        let r = unsafe { k.realloc(q, layout(104, 8), 5000) }.unwrap();
        assert_ne!(r, q);
        // SAFETY: 5000 bytes, the first 100 copied.
        assert!((0..100).all(|i| unsafe { r.as_ptr().add(i).read() } == i as u8));
        // Large runs: in place while the page count stays.
        // SAFETY: an allocation of 5000 bytes.
        let s = unsafe { k.realloc(r, layout(5000, 8), 100_000) }.unwrap();
        // SAFETY: an allocation of 100000 bytes.
        let t = unsafe { k.realloc(s, layout(100_000, 8), 100_100) }.unwrap();
        assert_eq!(s, t);
        // SAFETY: first 100 bytes kept through every move.
        assert!((0..100).all(|i| unsafe { t.as_ptr().add(i).read() } == i as u8));
        // SAFETY: an allocation of 100100 bytes.
        unsafe { k.free(t, layout(100_100, 8)) }.unwrap();
    });
}

#[test]
fn reap_gives_every_idle_page_back() {
    with_kmalloc(MEM, |k| {
        let ls: Vec<_> = (1..200).map(|i| layout(i * 37, 8)).collect();
        let ps: Vec<_> = ls.iter().map(|&l| k.alloc(l).unwrap()).collect();
        for (p, l) in ps.into_iter().zip(ls) {
            // SAFETY: allocated above.
            unsafe { k.free(p, l) }.unwrap();
        }
        assert!(k.pages().stats().allocated > 0);
        assert!(k.reap() > 0);
        assert_eq!(k.pages().stats().allocated, 0, "pages still held");
        check(k);
    });
}

/// The upkeep pass gives idle pages back without `reap`: the objects after
/// two passes, the pages out of the page arena's quantum caches (where the
/// pass's own frees land, in the caller's magazines) at the fourth.
#[test]
fn four_ticks_give_every_idle_page_back() {
    with_kmalloc(MEM, |k| {
        let ls: Vec<_> = (1..2000).map(|i| layout(i % 700 + 1, 8)).collect();
        let ps: Vec<_> = ls.iter().map(|&l| k.alloc(l).unwrap()).collect();
        for (p, l) in ps.into_iter().zip(ls) {
            // SAFETY: allocated above.
            unsafe { k.free(p, l) }.unwrap();
        }
        let held = k.pages().stats().allocated;
        assert!(held > 0);
        let mut given = 0;
        for _ in 0..4 {
            given += k.tick();
        }
        assert!(given > 0);
        let mut r = String::new();
        k.report(&mut r).unwrap();
        assert_eq!(k.pages().stats().allocated, 0, "pages still held\n{r}");
        check(k);
    });
}

/// A size class's cache reserves objects like any cache; they are
/// kmalloc blocks, freed with their layout.
#[test]
fn a_class_reserve_hands_out_kmalloc_blocks() {
    with_kmalloc(MEM, |k| {
        let l = layout(100, 8);
        let class = k.class_for(l).unwrap();
        let mut r = class.reserve(kmem_slab::AllocFlags::empty(), 8).unwrap();
        let p = r.alloc().unwrap();
        drop(r);
        let p = core::ptr::NonNull::new(p as *mut u8).unwrap();
        // SAFETY: a block of the class of `l`, the caller's now.
        unsafe { p.as_ptr().write_bytes(7, 100) };
        // SAFETY: as above, freed once.
        unsafe { k.free(p, l) }.unwrap();
        assert_eq!(class.stats().buf_in_use, 0);
        check(k);
    });
}

#[test]
fn large_requests_take_pages_and_give_them_back() {
    with_kmalloc(MEM, |k| {
        let before = k.pages().stats().allocated;
        let l = layout(MAX_CLASS + 1, 8);
        let p = k.alloc(l).unwrap();
        assert_eq!(p.as_ptr() as usize % 4096, 0);
        assert_eq!(k.usable_size(l), Some(MAX_CLASS + 4096));
        assert_eq!(k.large_counts(), (1, 0, 0));
        // SAFETY: allocated above.
        unsafe { k.free(p, l) }.unwrap();
        assert_eq!(k.pages().stats().allocated, before);
        assert_eq!(k.large_counts(), (1, 1, 0));
    });
}

#[test]
fn exhaustion_is_an_error_and_changes_nothing() {
    with_kmalloc(8 << 20, |k| {
        let l = layout(1 << 20, 4096);
        let mut held = Vec::new();
        let err = loop {
            match k.alloc(l) {
                Ok(p) => held.push(p),
                Err(e) => break e,
            }
        };
        assert_eq!(err, AllocError::Exhausted);
        let snap = snapshot(k);
        assert_eq!(k.alloc(l), Err(AllocError::Exhausted));
        assert_eq!(snapshot(k).pages_live, snap.pages_live);
        for p in held {
            // SAFETY: allocated above.
            unsafe { k.free(p, l) }.unwrap();
        }
        // Small requests still work once memory is back.
        let s = k.alloc(layout(64, 8)).unwrap();
        // SAFETY: allocated above.
        unsafe { k.free(s, layout(64, 8)) }.unwrap();
    });
}

#[test]
fn global_alloc_and_allocator_api2_interfaces() {
    with_kmalloc(MEM, |k| {
        let l = layout(48, 16);
        // SAFETY: a non-zero layout; freed below with it.
        unsafe {
            let p = GlobalAlloc::alloc(k, l);
            assert!(!p.is_null() && (p as usize).is_multiple_of(16));
            let q = GlobalAlloc::realloc(k, p, l, 4000);
            assert!(!q.is_null());
            GlobalAlloc::dealloc(k, q, layout(4000, 16));
            let z = GlobalAlloc::alloc_zeroed(k, l);
            assert_eq!(core::slice::from_raw_parts(z, 48), &[0u8; 48]);
            GlobalAlloc::dealloc(k, z, l);
            // Errors are null, not panics.
            assert!(GlobalAlloc::alloc(k, layout(isize::MAX as usize - 8, 8)).is_null());
        }
        let mut v: allocator_api2::vec::Vec<u64, _> = allocator_api2::vec::Vec::new_in(k);
        for i in 0..10_000u64 {
            v.push(i);
        }
        assert!(v.iter().copied().eq(0..10_000));
        v.truncate(10);
        v.shrink_to_fit();
        assert_eq!(v.len(), 10);
        drop(v);
        // Zero-size blocks never reach the caches.
        let zst: allocator_api2::vec::Vec<(), _> = allocator_api2::vec::Vec::with_capacity_in(5, k);
        drop(zst);
        let b = allocator_api2::boxed::Box::new_in([7u8; 0], k);
        drop(b);
    });
}

/// Threads allocate mixed sizes, write a canary into every object, hand a
/// share of them to the other thread, check and free; nothing is lost.
#[test]
fn mixed_sizes_across_threads() {
    with_kmalloc(MEM, |k| {
        let ops = 40_000 * kmem_physmem::scale();
        let freed = AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, usize, usize)>(256);
        std::thread::scope(|s| {
            let freed = &freed;
            let producer = s.spawn(move || {
                let mut rng = Rng::new(seed(41));
                let mut held: Vec<(usize, usize, usize)> = Vec::new();
                for n in 0..ops {
                    let size = match pick(&mut rng, 10) {
                        0 => 1 + pick(&mut rng, 200_000),
                        1..=3 => 1 + pick(&mut rng, 4096),
                        _ => 1 + pick(&mut rng, 256),
                    };
                    let align = 1 << pick(&mut rng, 7);
                    let l = layout(size, align);
                    let p = k.alloc(l).unwrap().as_ptr() as usize;
                    assert_eq!(p % align, 0);
                    // SAFETY: at least one byte, ours.
                    unsafe { (p as *mut u8).write(n as u8) };
                    if pick(&mut rng, 3) == 0 {
                        tx.send((p, size, align | ((n as u8 as usize) << 16)))
                            .unwrap();
                    } else {
                        held.push((p, size, align | ((n as u8 as usize) << 16)));
                    }
                    if held.len() > 500 {
                        let (p, size, tag) = held.swap_remove(pick(&mut rng, held.len()));
                        free_checked(k, p, size, tag);
                        freed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                for (p, size, tag) in held {
                    free_checked(k, p, size, tag);
                    freed.fetch_add(1, Ordering::Relaxed);
                }
            });
            for (p, size, tag) in rx {
                free_checked(k, p, size, tag);
                freed.fetch_add(1, Ordering::Relaxed);
            }
            producer.join().unwrap();
        });
        assert_eq!(freed.load(Ordering::Relaxed), ops);
        let mut in_use = 0;
        k.caches().stats(|s| {
            if s.name.as_str().starts_with("kmalloc_") {
                in_use += s.buf_in_use;
            }
        });
        assert_eq!(in_use, 0, "objects lost");
        let (a, f, _) = k.large_counts();
        assert_eq!(a, f, "large allocations lost");
        check(k);
    });
}

fn pick(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

fn free_checked(
    k: &kmalloc::Kmalloc<'_, kmem_magazine::ThreadCpus>,
    p: usize,
    size: usize,
    tag: usize,
) {
    let align = tag & 0xFFFF;
    // SAFETY: `p` holds at least one byte, written at allocation.
    let canary = unsafe { (p as *const u8).read() };
    assert_eq!(canary, (tag >> 16) as u8, "canary");
    // SAFETY: allocated with this layout, freed once.
    unsafe {
        k.free(
            core::ptr::NonNull::new(p as *mut u8).unwrap(),
            layout(size, align),
        )
    }
    .unwrap();
}

/// A `'static` stack's page arena asks the caches for what they hold idle
/// when it runs out: pages that freed small objects keep (in magazines,
/// the depot and empty slabs) serve a large request without a `reap`. A
/// stack booted with `boot` (not registered: its kmalloc is not `'static`)
/// may refuse the same request until reaped (or not: the batch flushes at
/// exhaustion give some empty slabs back at once).
#[test]
fn the_page_arena_reclaims_from_the_caches_when_it_runs_out() {
    fn fill_and_free(k: &kmalloc::Kmalloc<'_, kmem_magazine::ThreadCpus>) {
        let small = layout(64, 8);
        let mut held = Vec::new();
        while let Ok(p) = k.alloc(small) {
            held.push(p);
        }
        for p in held {
            // SAFETY: allocated above.
            unsafe { k.free(p, small) }.unwrap();
        }
    }
    let big = layout(1 << 20, 4096);
    // Not registered: idle pages stay with the caches.
    with_kmalloc(4 << 20, |k| {
        fill_and_free(k);
        match k.alloc(big) {
            Err(e) => assert_eq!(e, AllocError::Exhausted),
            // SAFETY: allocated just now.
            Ok(p) => unsafe { k.free(p, big) }.unwrap(),
        }
        assert!(k.reap() > 0);
        let p = k.alloc(big).unwrap();
        // SAFETY: allocated above.
        unsafe { k.free(p, big) }.unwrap();
    });
    // Registered by `boot_static`.
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 4 << 20].into_boxed_slice());
    let k = kmalloc::boot_static(
        mem,
        kmem_magazine::ThreadCpus::global(),
        &kmalloc::Config::default(),
    )
    .unwrap();
    fill_and_free(k);
    let p = k
        .alloc(big)
        .expect("the page arena's reclaim gives the idle pages back");
    // SAFETY: allocated above.
    unsafe { k.free(p, big) }.unwrap();
    check(k);
}
