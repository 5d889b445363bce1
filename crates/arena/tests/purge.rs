//! `Arena::purge`: every free segment of the size asked for is handed out
//! once, in address order and in pieces, with the lock held (no allocation
//! can return it, none finds it missing); afterwards the arena is as it
//! was. `Arena::tick`: the hash shrinks on the upkeep
//! pass.

mod common;

use common::{grow_and_empty_hash, span_arena, tag_arena};

use kmem_arena::{Arena, Policy, PURGE_CHUNK};
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
    let mut seen: Vec<(usize, usize)> = Vec::new();
    let purged = a.purge(min, |start, size| {
        // Pieces of one free segment come in order, back to back.
        match seen.last_mut() {
            Some(last) if last.0 + last.1 == start => last.1 += size,
            _ => seen.push((start, size)),
        }
    });
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

/// A segment larger than a piece is handed over a piece at a time (the
/// lock is let go between pieces), and an allocation on another thread
/// meanwhile never fails while the arena has room: the free memory never
/// leaves the arena (it once did, for the whole purge of a segment, and a
/// half-free arena answered `Exhausted`).
#[test]
fn purge_goes_piece_by_piece_and_never_hides_free_memory() {
    let ram = PhysMem::new(72 << 20);
    let a = ram.base_arena("memory", 4096);
    let held = a.alloc(32 << 20, Policy::InstantFit).unwrap();
    let stop = core::sync::atomic::AtomicBool::new(false);
    let mut pieces = 0;
    let allocated = std::thread::scope(|s| {
        let (a, stop) = (&a, &stop);
        let user = s.spawn(move || {
            let mut n = 0u64;
            while !stop.load(core::sync::atomic::Ordering::Relaxed) {
                let Ok(x) = a.alloc(1 << 20, Policy::InstantFit) else {
                    return Err(n);
                };
                // SAFETY: allocated just above with this size, never used.
                unsafe { a.free_memory(x, 1 << 20) }.unwrap();
                n += 1;
            }
            Ok(n)
        });
        for _ in 0..20 {
            a.purge(4096, |at, size| {
                assert!(size <= PURGE_CHUNK && at % 4096 == 0 && size % 4096 == 0);
                // Pieces end at multiples of the chunk: none splits a page.
                assert_eq!(at / PURGE_CHUNK, (at + size - 1) / PURGE_CHUNK);
                pieces += 1;
                std::thread::sleep(core::time::Duration::from_micros(200));
            });
        }
        stop.store(true, core::sync::atomic::Ordering::Relaxed);
        user.join().unwrap()
    });
    let n = allocated
        .unwrap_or_else(|n| panic!("an allocation failed after {n}: the arena is half free"));
    assert!(n > 0);
    assert!(pieces >= 20 * 31, "{pieces}");
    // SAFETY: allocated above with this size, never used.
    unsafe { a.free_memory(held, 32 << 20) }.unwrap();
    a.check().unwrap();
}

#[test]
fn tick_shrinks_the_hash() {
    let ram = PhysMem::new(16 << 20);
    let base = ram.base_arena("base", 64);
    let chains = grow_and_empty_hash(&base);
    assert_eq!(base.stats().hash_chains, chains, "frees never shrink it");
    base.tick();
    assert!(base.stats().hash_chains < chains / 8);
    base.check().unwrap();
}
