//! Unsized frees (a C `free`): a page map finds a block's class or run of
//! pages from its address; every bad pointer is refused with a typed error
//! and changes nothing.

mod common;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use std::collections::HashMap;
use std::sync::Mutex;

use common::{layout, snapshot, with_kmalloc_config};
use kmalloc::{AllocError, Config, FreeError, Kmalloc, MAX_CLASS};
use kmem_magazine::ThreadCpus;
use kmem_slab::{BadFree, PageMap, PAGE_SIZE};

const MEM: usize = 32 << 20;

/// A page map in a hash map, that can be told to refuse.
#[derive(Default)]
struct TestMap {
    pages: Mutex<HashMap<usize, u32>>,
    refuse: AtomicBool,
}

// SAFETY: `owner` answers what `set` last recorded for the page and
// `clear` did not remove (a hash map by page number, under a lock).
unsafe impl PageMap for TestMap {
    fn set(&self, base: usize, len: usize, owner: u32) -> bool {
        if self.refuse.load(Ordering::Relaxed) {
            return false;
        }
        let mut pages = self.pages.lock().unwrap();
        for p in (base..base + len).step_by(PAGE_SIZE) {
            pages.insert(p / PAGE_SIZE, owner);
        }
        true
    }
    fn clear(&self, base: usize, len: usize) {
        let mut pages = self.pages.lock().unwrap();
        for p in (base..base + len).step_by(PAGE_SIZE) {
            pages.remove(&(p / PAGE_SIZE));
        }
    }
    fn owner(&self, addr: usize) -> u32 {
        let pages = self.pages.lock().unwrap();
        pages.get(&(addr / PAGE_SIZE)).copied().unwrap_or(0)
    }
}

/// Boots a stack over `MEM` bytes with `map`, runs `f`, checks the stack.
fn with_map<R>(map: &dyn PageMap, f: impl FnOnce(&Kmalloc<'_, ThreadCpus>) -> R) -> R {
    let config = Config {
        page_map: Some(map),
        ..Config::default()
    };
    with_kmalloc_config(MEM, &config, f)
}

/// The refusal of an address of the page arena where no block starts.
fn not_allocated(addr: usize) -> FreeError {
    FreeError::Pages {
        addr,
        err: kmem_arena::FreeError::NotAllocated { addr },
    }
}

/// Sizes and alignments across the classes, the large runs and the
/// over-aligned (`xalloc`ed) runs.
const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (8, 8),
    (24, 16),
    (100, 16),
    (1000, 16),
    (4096, 16),
    (MAX_CLASS, 16),
    (MAX_CLASS + 1, 16),
    (3 * PAGE_SIZE + 5, 16),
    (1 << 20, 16),
    (100, 64 << 10),
    (5 * PAGE_SIZE, 1 << 20),
];

#[test]
fn every_block_is_freed_by_its_address_alone() {
    let map = TestMap::default();
    with_map(&map, |k| {
        let before = snapshot(k).without_large();
        let blocks: Vec<_> = SHAPES
            .iter()
            .map(|&(size, align)| {
                let l = layout(size, align);
                let p = k.alloc(l).unwrap();
                assert!((p.as_ptr() as usize).is_multiple_of(align));
                assert_eq!(k.usable_size_of(p), Ok(k.usable_size(l).unwrap()), "{l:?}");
                p
            })
            .collect();
        for p in blocks {
            // SAFETY: allocated above, freed once.
            unsafe { k.free_unsized(p) }.unwrap();
        }
        k.reap();
        assert_eq!(snapshot(k).without_large(), before);
        assert!(
            map.pages.lock().unwrap().is_empty(),
            "a large block stayed in the map"
        );
    });
}

#[test]
fn bad_unsized_frees_are_refused() {
    let map = TestMap::default();
    with_map(&map, |k| {
        let small = k.alloc(layout(100, 16)).unwrap();
        let large = k.alloc(layout(MAX_CLASS + 5 * PAGE_SIZE, 16)).unwrap();
        let before = snapshot(k).without_large();
        let at = |p: NonNull<u8>, off: usize| NonNull::new(p.as_ptr().wrapping_add(off)).unwrap();
        let local = 0u64;
        let foreign = Box::new(0u64);
        let cases = [
            // Inside a class object: its slab's check.
            (at(small, 8), None),
            // Inside a large block: the page arena's, but no block starts
            // there.
            (
                at(large, PAGE_SIZE),
                Some(not_allocated(large.as_ptr() as usize + PAGE_SIZE)),
            ),
            (
                at(large, 16),
                Some(not_allocated(large.as_ptr() as usize + 16)),
            ),
            // Another allocator's block, and the stack.
            (
                NonNull::from(&*foreign).cast(),
                Some(FreeError::Unknown {
                    addr: &*foreign as *const u64 as usize,
                }),
            ),
            (
                NonNull::from(&local).cast(),
                Some(FreeError::Unknown {
                    addr: &local as *const u64 as usize,
                }),
            ),
        ];
        for (p, want) in cases {
            // SAFETY: each is refused before anything is freed (asserted).
            let got = unsafe { k.free_unsized(p) };
            match want {
                Some(e) => assert_eq!(got, Err(e)),
                None => assert!(
                    matches!(
                        got,
                        Err(FreeError::Refused {
                            kind: BadFree::NotObjectStart,
                            ..
                        })
                    ),
                    "{got:?}"
                ),
            }
        }
        let mut after = snapshot(k).without_large();
        // The refused interior free is counted as a bad free of its class.
        let mut want = before;
        after.take_bad_frees();
        want.take_bad_frees();
        assert_eq!(after, want);
        // SAFETY: allocated above, freed once.
        unsafe {
            k.free_unsized(small).unwrap();
            k.free_unsized(large).unwrap();
        }
        // Double frees: the class's free mark; the large block's entry is gone.
        // SAFETY: refused (asserted).
        let again = unsafe { k.free_unsized(small) };
        assert!(
            matches!(
                again,
                Err(FreeError::Refused {
                    kind: BadFree::DoubleFree,
                    ..
                })
            ),
            "{again:?}"
        );
        // SAFETY: refused (asserted).
        let again = unsafe { k.free_unsized(large) };
        // (Unknown once its span went back to the page arena's source.)
        let addr = large.as_ptr() as usize;
        assert!(
            again == Err(not_allocated(addr)) || again == Err(FreeError::Unknown { addr }),
            "{again:?}"
        );
    });
}

#[test]
fn realloc_by_address_keeps_the_contents() {
    let map = TestMap::default();
    with_map(&map, |k| {
        let before = snapshot(k).without_large();
        let caller = kmem_slab::Caller::Unknown;
        let mut p = k.alloc(layout(10, 8)).unwrap();
        let mut len = 10usize;
        // SAFETY: `p` holds `len` bytes.
        unsafe { p.as_ptr().write_bytes(0x5a, len) };
        for new in [
            16,
            17,
            200,
            5000,
            MAX_CLASS + 100,
            1 << 20,
            3 * PAGE_SIZE,
            500,
            9,
        ] {
            // SAFETY: `p` is ours and replaced by the result.
            let q = unsafe { k.realloc_unsized_by(p, new, 16, caller) }.unwrap();
            assert!((q.as_ptr() as usize).is_multiple_of(16));
            let kept = len.min(new);
            // SAFETY: `q` holds at least `new` bytes, `kept` of them the old ones.
            let bytes = unsafe { core::slice::from_raw_parts(q.as_ptr(), kept) };
            assert!(bytes.iter().all(|&b| b == 0x5a), "lost contents at {new}");
            // SAFETY: as above.
            unsafe { q.as_ptr().write_bytes(0x5a, new) };
            assert!(k.usable_size_of(q).unwrap() >= new);
            p = q;
            len = new;
        }
        // SAFETY: the last block, freed once.
        unsafe { k.free_unsized(p) }.unwrap();
        k.reap();
        assert_eq!(snapshot(k).without_large(), before);
    });
}

#[test]
fn realloc_by_address_refuses_freed_and_interior_blocks() {
    let map = TestMap::default();
    with_map(&map, |k| {
        let caller = kmem_slab::Caller::Unknown;
        let p = k.alloc(layout(100, 16)).unwrap();
        let q = k.alloc(layout(100, 16)).unwrap();
        let inner = NonNull::new(q.as_ptr().wrapping_add(8)).unwrap();
        // SAFETY: `p` freed once; the reallocs below are refused (asserted).
        unsafe { k.free_unsized(p) }.unwrap();
        for (bad, kind) in [(p, BadFree::DoubleFree), (inner, BadFree::NotObjectStart)] {
            // The same class (in place) and another one (a move).
            for size in [104, 1000] {
                // SAFETY: refused (asserted).
                let got = unsafe { k.realloc_unsized_by(bad, size, 16, caller) };
                assert!(
                    matches!(got, Err(AllocError::BadPointer(FreeError::Refused { kind: k, .. })) if k == kind),
                    "{size}: {got:?}"
                );
            }
        }
        // The refused realloc handed nothing out twice.
        let r = k.alloc(layout(100, 16)).unwrap();
        assert_ne!(r, q);
        // SAFETY: allocated above, freed once.
        unsafe {
            k.free_unsized(q).unwrap();
            k.free_unsized(r).unwrap();
        }
    });
}

#[test]
fn a_growing_large_block_moves_a_logarithmic_number_of_times() {
    let map = TestMap::default();
    with_map(&map, |k| {
        let caller = kmem_slab::Caller::Unknown;
        let mut p = k.alloc(layout(MAX_CLASS + 1, 16)).unwrap();
        let mut moves = 0;
        for size in (MAX_CLASS + 1..8 << 20).step_by(16 << 10) {
            // SAFETY: `p` is ours and replaced by the result.
            let q = unsafe { k.realloc_unsized_by(p, size, 16, caller) }.unwrap();
            moves += usize::from(q != p);
            p = q;
        }
        // 8 MiB in 16 KiB steps: 510 reallocs; half again each move.
        assert!(moves <= 16, "{moves} moves");
        // Shrinking to half its pages stays; below that it moves.
        let bytes = k.usable_size_of(p).unwrap();
        // SAFETY: as above.
        let q = unsafe { k.realloc_unsized_by(p, bytes / 2 + 1, 16, caller) }.unwrap();
        assert_eq!(q, p);
        // SAFETY: as above.
        let q = unsafe { k.realloc_unsized_by(q, bytes / 4, 16, caller) }.unwrap();
        assert_ne!(q, p);
        assert_eq!(
            k.usable_size_of(q).unwrap(),
            (bytes / 4).next_multiple_of(PAGE_SIZE)
        );
        // SAFETY: the last block, freed once.
        unsafe { k.free_unsized(q) }.unwrap();
    });
}

#[test]
fn a_map_that_refuses_fails_the_allocation_cleanly() {
    let map = TestMap::default();
    with_map(&map, |k| {
        // A block longer than the map records (2^30 - 1 pages) is refused
        // before anything is allocated (with no map, this stack would
        // answer Exhausted).
        let before = snapshot(k).without_large();
        assert_eq!(k.alloc(layout(5 << 40, 16)), Err(AllocError::TooLarge));
        assert_eq!(snapshot(k).without_large(), before);
        map.refuse.store(true, Ordering::Relaxed);
        assert_eq!(
            k.alloc(layout(5 * PAGE_SIZE, 16)),
            Err(AllocError::Exhausted)
        );
        // A class with no slab yet cannot grow one.
        assert_eq!(k.alloc(layout(MAX_CLASS, 16)), Err(AllocError::Exhausted));
        k.reap();
        assert_eq!(snapshot(k).without_large(), before);
        map.refuse.store(false, Ordering::Relaxed);
        let p = k.alloc(layout(MAX_CLASS, 16)).unwrap();
        // SAFETY: allocated above, freed once.
        unsafe { k.free_unsized(p) }.unwrap();
    });
}

#[test]
fn without_a_map_unsized_frees_are_refused() {
    common::with_kmalloc(MEM, |k| {
        let l = layout(100, 16);
        let p = k.alloc(l).unwrap();
        let addr = p.as_ptr() as usize;
        // SAFETY: refused (asserted).
        let refused = unsafe { k.free_unsized(p) };
        assert_eq!(refused, Err(FreeError::NoPageMap { addr }));
        assert_eq!(k.usable_size_of(p), Err(FreeError::NoPageMap { addr }));
        // SAFETY: allocated above with `l`, freed once.
        unsafe { k.free(p, l) }.unwrap();
    });
}

/// The std page map: entries for addresses across the user address space,
/// cleared ones, and addresses past it.
#[cfg(feature = "std")]
#[test]
fn the_os_page_map_records_and_forgets() {
    let map = kmalloc::OsPageMap::new().unwrap();
    let local = 0u8;
    let addrs = [
        PAGE_SIZE,
        1 << 30,
        (1 << 47) - PAGE_SIZE,
        &local as *const u8 as usize & !(PAGE_SIZE - 1),
    ];
    for (i, &a) in addrs.iter().enumerate() {
        assert_eq!(map.owner(a), 0);
        assert!(map.set(a, 2 * PAGE_SIZE, i as u32 + 7));
        assert_eq!(map.owner(a + 5), i as u32 + 7);
        assert_eq!(map.owner(a + PAGE_SIZE + 5), i as u32 + 7);
        assert_eq!(map.owner(a + 2 * PAGE_SIZE), 0);
    }
    for &a in &addrs {
        map.clear(a, 2 * PAGE_SIZE);
        assert_eq!(map.owner(a), 0);
    }
    assert!(!map.set(1 << 48, PAGE_SIZE, 1));
    assert_eq!(map.owner(usize::MAX), 0);
}
