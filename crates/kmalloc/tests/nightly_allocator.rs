//! kmalloc as core's `Allocator` (the `nightly` feature, the unstable
//! `allocator_api`): std's `Vec` and `Box` over `&Kmalloc`, and the trait's
//! methods themselves — zeroing, growing and shrinking at several
//! alignments, in place and moving — with every block back in kmalloc
//! once dropped.
#![feature(allocator_api)]

mod common;

use core::alloc::{AllocError, Allocator};
use core::ptr::NonNull;

use common::{check, layout, snapshot, with_kmalloc};
use kmalloc::Kmalloc;
use kmem_magazine::ThreadCpus;

const MEM: usize = 64 << 20;

/// The alignments the tests take: a word, a cache line, a page.
const ALIGNS: [usize; 3] = [8, 64, 4096];

type K<'a> = Kmalloc<'a, ThreadCpus>;

/// What users hold from kmalloc: objects in use in each size class, and
/// large blocks (runs of pages) not freed. (The bootstrap caches are left
/// out: frees fill magazines, which come from one of them.)
#[derive(Debug, PartialEq, Eq)]
struct Held {
    classes: Vec<(String, u64)>,
    large: u64,
}

fn held(k: &K<'_>) -> Held {
    let s = snapshot(k);
    Held {
        classes: s
            .in_use
            .into_iter()
            .filter(|(name, ..)| name.starts_with("kmalloc_"))
            .map(|(name, in_use, _)| (name, in_use))
            .collect(),
        large: s.large.0 - s.large.1,
    }
}

/// The bytes of a block.
///
/// # Safety
/// `p` is a live block of at least `len` bytes, initialised.
unsafe fn bytes<'a>(p: NonNull<u8>, len: usize) -> &'a [u8] {
    // SAFETY: the caller's guarantee.
    unsafe { core::slice::from_raw_parts(p.as_ptr(), len) }
}

/// Fills `len` bytes at `p` with the pattern [`pattern`] reads back.
///
/// # Safety
/// `p` is a live block of at least `len` bytes.
unsafe fn fill(p: NonNull<u8>, len: usize) {
    for i in 0..len {
        // SAFETY: `i < len`, inside the block.
        unsafe { p.as_ptr().add(i).write(i as u8 ^ 0x5A) };
    }
}

/// Whether the first `len` bytes at `p` hold what [`fill`] wrote.
///
/// # Safety
/// As for [`bytes`].
unsafe fn pattern(p: NonNull<u8>, len: usize) -> bool {
    // SAFETY: forwarded.
    unsafe { bytes(p, len) }
        .iter()
        .enumerate()
        .all(|(i, &b)| b == i as u8 ^ 0x5A)
}

fn aligned(p: NonNull<[u8]>, align: usize) -> bool {
    (p.cast::<u8>().as_ptr() as usize).is_multiple_of(align)
}

/// std's `Vec` over `&Kmalloc`: grows through small classes into large
/// blocks, shrinks to fit, and gives everything back when dropped.
#[test]
fn std_vec_pushes_grows_and_shrinks_in_kmalloc() {
    with_kmalloc(MEM, |k| {
        let before = held(k);
        let mut v: Vec<u64, &K<'_>> = Vec::new_in(k);
        assert_eq!(held(k), before, "an empty Vec allocates nothing");
        v.push(1);
        assert_ne!(held(k), before, "the Vec's buffer is not from kmalloc");
        for i in 2..100_000u64 {
            v.push(i);
        }
        assert!(v.capacity() * 8 > 512 << 10);
        assert_eq!(held(k).large, before.large + 1, "800 KB is a large block");
        assert!(v.iter().copied().eq(1..100_000));
        v.truncate(1000);
        v.shrink_to_fit();
        assert_eq!(v.capacity(), 1000);
        assert_eq!(held(k).large, before.large, "shrunk into a size class");
        assert!(v.iter().copied().eq(1..1001));
        v.truncate(3);
        v.shrink_to_fit();
        assert_eq!(v, [1, 2, 3]);
        let w = v.clone();
        drop(v);
        assert_eq!(w, [1, 2, 3]);
        drop(w);
        assert_eq!(held(k), before);
        check(k);
    });
}

/// std's `Box` over `&Kmalloc`, small and over-aligned; zero-size boxes
/// never reach the caches.
#[test]
fn std_box_new_in_kmalloc() {
    #[repr(align(4096))]
    struct Page([u8; 4096]);

    with_kmalloc(MEM, |k| {
        let before = held(k);
        let small = Box::new_in([7u64; 5], k);
        let page = Box::new_in(Page([9; 4096]), k);
        assert_eq!(*small, [7; 5]);
        assert!(page.0.iter().all(|&b| b == 9));
        assert!((&raw const *page as usize).is_multiple_of(4096));
        assert_ne!(held(k), before);
        drop((small, page));
        assert_eq!(held(k), before);
        let empty = Box::new_in([0u64; 0], k);
        let unit = Box::new_in((), k);
        assert_eq!(held(k), before, "a zero-size box allocated");
        drop((empty, unit));
        assert_eq!(held(k), before);
    });
}

/// `allocate_zeroed` hands out zeros even where the same block was just
/// written and freed, at every size (class objects and large blocks) and
/// alignment.
#[test]
fn allocate_zeroed_is_zero_over_a_dirty_block() {
    with_kmalloc(MEM, |k| {
        let before = held(k);
        for size in [1, 48, 200, 4000, 32 << 10, 100_000] {
            for align in ALIGNS {
                let l = layout(size, align);
                let dirty = k.allocate(l).unwrap();
                assert!(aligned(dirty, align));
                assert_eq!(dirty.len(), size);
                // SAFETY: `size` bytes, just allocated.
                unsafe { dirty.cast::<u8>().as_ptr().write_bytes(0xA5, size) };
                // SAFETY: allocated above with `l`.
                unsafe { k.deallocate(dirty.cast(), l) };
                let z = k.allocate_zeroed(l).unwrap();
                assert!(aligned(z, align));
                // SAFETY: `size` bytes, allocated (zeroed) above.
                let zeros = unsafe { bytes(z.cast(), size) };
                assert!(zeros.iter().all(|&b| b == 0), "{size}/{align}");
                // SAFETY: allocated above with `l`.
                unsafe { k.deallocate(z.cast(), l) };
            }
        }
        assert_eq!(held(k), before);
    });
}

/// `grow`, `grow_zeroed` and `shrink` through the trait: the contents stay,
/// the alignment holds (kept, raised or lowered), blocks cross from size
/// classes to page runs and back, and the old block is freed each time.
#[test]
fn grow_and_shrink_keep_contents_at_every_alignment() {
    with_kmalloc(MEM, |k| {
        let before = held(k);
        for align in ALIGNS {
            // Sizes in a class, in a larger class, a large block, back.
            let steps = [24, 200, 5000, 200_000, 3000, 100];
            let mut l = layout(steps[0], align);
            let mut p = k.allocate(l).unwrap();
            // SAFETY: `steps[0]` bytes, ours.
            unsafe { fill(p.cast(), l.size()) };
            for &size in &steps[1..] {
                let new = layout(size, align);
                // SAFETY: `p` was allocated by `k` with `l`, and `new` is
                // at least as large (grow) or at most (shrink).
                let q = unsafe {
                    if size > l.size() {
                        k.grow(p.cast(), l, new)
                    } else {
                        k.shrink(p.cast(), l, new)
                    }
                }
                .unwrap();
                assert!(aligned(q, align), "{size}/{align}");
                assert!(q.len() >= size);
                let kept = l.size().min(size);
                // SAFETY: `kept` bytes of the block, written by `fill`.
                assert!(unsafe { pattern(q.cast(), kept) }, "{size}/{align}");
                // SAFETY: `size` bytes, ours.
                unsafe { fill(q.cast(), size) };
                (p, l) = (q, new);
            }
            assert_eq!(held(k).large, before.large, "no large block left");
            // A new alignment moves the block (allocate, copy, free).
            let up = layout(l.size() * 2, 4096.max(align * 2));
            // SAFETY: `p` is `k`'s with `l`; `up` is larger.
            let q = unsafe { k.grow(p.cast(), l, up) }.unwrap();
            assert!(aligned(q, up.align()));
            // SAFETY: `l.size()` bytes kept.
            assert!(unsafe { pattern(q.cast(), l.size()) });
            let down = layout(l.size(), 8);
            // SAFETY: `q` is `k`'s with `up`; `down` is smaller.
            let r = unsafe { k.shrink(q.cast(), up, down) }.unwrap();
            // SAFETY: as above.
            assert!(unsafe { pattern(r.cast(), l.size()) });
            // `grow_zeroed`: the new tail is zero, the old bytes stay.
            let wide = layout(50_000, align);
            // SAFETY: `r` is `k`'s with `down`; `wide` is larger.
            let z = unsafe { k.grow_zeroed(r.cast(), down, wide) }.unwrap();
            assert!(aligned(z, align));
            // SAFETY: 50 000 bytes: the kept ones, then the zeroed tail.
            unsafe {
                assert!(pattern(z.cast(), down.size()));
                assert!(bytes(z.cast(), wide.size())[down.size()..]
                    .iter()
                    .all(|&b| b == 0));
            }
            assert_ne!(held(k), before);
            // SAFETY: allocated by `k` with `wide`.
            unsafe { k.deallocate(z.cast(), wide) };
            assert_eq!(held(k), before, "align {align}");
        }
    });
}

/// Requests kmalloc cannot meet fail with `AllocError`, not a panic, and
/// leave nothing held; zero-size blocks are dangling and aligned.
#[test]
fn failures_and_zero_sizes() {
    with_kmalloc(MEM, |k| {
        let before = held(k);
        let huge = layout(isize::MAX as usize - 4096, 8);
        assert_eq!(k.allocate(huge), Err(AllocError));
        assert_eq!(k.allocate_zeroed(huge), Err(AllocError));
        // More than the 64 MiB the stack has.
        assert_eq!(k.allocate(layout(MEM, 4096)), Err(AllocError));
        let mut v: Vec<u8, &K<'_>> = Vec::new_in(k);
        assert!(v.try_reserve(MEM).is_err());
        let small = layout(64, 8);
        let p = k.allocate(small).unwrap();
        // SAFETY: `p` is `k`'s with `small`; the new layout is larger.
        let grown = unsafe { k.grow(p.cast(), small, layout(MEM, 8)) };
        assert_eq!(grown, Err(AllocError));
        // SAFETY: a failed grow leaves the block allocated with `small`.
        unsafe { k.deallocate(p.cast(), small) };
        assert_eq!(held(k), before);
        for align in ALIGNS {
            let z = k.allocate(layout(0, align)).unwrap();
            assert_eq!(z.len(), 0);
            assert!(aligned(z, align));
            // SAFETY: allocated above with this layout.
            unsafe { k.deallocate(z.cast(), layout(0, align)) };
        }
        assert_eq!(held(k), before, "a zero-size block reached the caches");
    });
}
