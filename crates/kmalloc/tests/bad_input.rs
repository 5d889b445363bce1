//! One test per bad input to kmalloc: each asserts the typed error and that
//! nothing changed (objects in use, bad-free counts, the page arena's live
//! segments and bytes, the large-allocation counters), and every checker
//! passes afterwards (`with_kmalloc` runs them).

mod common;

use core::ptr::NonNull;

use common::{layout, snapshot, with_kmalloc};
use kmalloc::{AllocError, FreeError, Kmalloc, MAX_CLASS};
use kmem_arena::FreeError as ArenaFreeError;
use kmem_magazine::ThreadCpus;
use kmem_slab::BadFree;

const MEM: usize = 32 << 20;

type K<'a> = Kmalloc<'a, ThreadCpus>;

/// Runs `f` and asserts the stack looks the same before and after.
fn unchanged<R>(k: &K<'_>, f: impl FnOnce() -> R) -> R {
    let before = snapshot(k);
    let r = f();
    assert_eq!(snapshot(k), before, "a refused operation changed state");
    r
}

/// Flushes this CPU's magazines of the class cache for `size` and reaps it,
/// so what they hold reaches the slab layer; returns the last bad free.
fn drain(k: &K<'_>, size: usize) -> Option<kmem_slab::FreeError> {
    let c = k.class_for(layout(size, 8)).unwrap();
    c.flush_current();
    c.reap();
    c.last_bad_free()
}

#[test]
fn zero_size_alloc() {
    with_kmalloc(MEM, |k| {
        let e = unchanged(k, || k.alloc(layout(0, 8)));
        assert_eq!(e, Err(AllocError::ZeroSize));
        assert_eq!(k.alloc_zeroed(layout(0, 1)), Err(AllocError::ZeroSize));
    });
}

#[test]
fn size_too_large_for_pages() {
    with_kmalloc(MEM, |k| {
        let e = unchanged(k, || k.alloc(layout(isize::MAX as usize - 100, 8)));
        assert_eq!(e, Err(AllocError::TooLarge));
    });
}

#[test]
fn size_larger_than_memory() {
    with_kmalloc(MEM, |k| {
        let e = k.alloc(layout(1 << 40, 4096));
        assert_eq!(e, Err(AllocError::Exhausted));
        assert_eq!(k.large_counts(), (0, 0, 1));
    });
}

#[test]
fn zero_size_free() {
    with_kmalloc(MEM, |k| {
        let p = k.alloc(layout(8, 8)).unwrap();
        let addr = p.as_ptr() as usize;
        // SAFETY: a refused free touches nothing.
        let e = unchanged(k, || unsafe { k.free(p, layout(0, 8)) });
        assert_eq!(e, Err(FreeError::ZeroSize { addr }));
        // SAFETY: allocated above.
        unsafe { k.free(p, layout(8, 8)) }.unwrap();
    });
}

#[test]
fn large_double_free() {
    with_kmalloc(MEM, |k| {
        let l = layout(MAX_CLASS * 2, 8);
        let p = k.alloc(l).unwrap();
        // SAFETY: allocated above.
        unsafe { k.free(p, l) }.unwrap();
        let addr = p.as_ptr() as usize;
        // SAFETY: the page arena checks large frees before changing anything.
        let e = unchanged(k, || unsafe { k.free(p, l) });
        assert_eq!(
            e,
            Err(FreeError::Pages {
                addr,
                err: ArenaFreeError::NotAllocated { addr }
            })
        );
    });
}

#[test]
fn large_free_with_the_wrong_size() {
    with_kmalloc(MEM, |k| {
        let l = layout(MAX_CLASS * 2, 8);
        let p = k.alloc(l).unwrap();
        let addr = p.as_ptr() as usize;
        // SAFETY: as above.
        let e = unchanged(k, || unsafe { k.free(p, layout(MAX_CLASS * 3, 8)) });
        assert_eq!(
            e,
            Err(FreeError::Pages {
                addr,
                err: ArenaFreeError::WrongSize {
                    addr,
                    size: MAX_CLASS * 3,
                    expected: MAX_CLASS * 2
                }
            })
        );
        // SAFETY: allocated above.
        unsafe { k.free(p, l) }.unwrap();
    });
}

#[test]
fn large_free_of_a_foreign_pointer() {
    with_kmalloc(MEM, |k| {
        let mut own = vec![0u8; 3 * MAX_CLASS];
        let p = NonNull::new(own.as_mut_ptr()).unwrap();
        let addr = p.as_ptr() as usize;
        // SAFETY: as above; the memory is never written.
        let e = unchanged(k, || unsafe { k.free(p, layout(2 * MAX_CLASS, 8)) });
        assert_eq!(
            e,
            Err(FreeError::Pages {
                addr,
                err: ArenaFreeError::NotAllocated { addr }
            })
        );
        assert!(own.iter().all(|&b| b == 0));
    });
}

#[test]
fn free_with_an_impossible_layout() {
    with_kmalloc(MEM, |k| {
        let p = k.alloc(layout(8, 8)).unwrap();
        let addr = p.as_ptr() as usize;
        // SAFETY: refused before anything is looked up.
        let e = unchanged(k, || unsafe {
            k.free(p, layout(isize::MAX as usize - 100, 8))
        });
        assert_eq!(e, Err(FreeError::TooLarge { addr }));
        // SAFETY: allocated above.
        unsafe { k.free(p, layout(8, 8)) }.unwrap();
    });
}

/// A class double free goes into the magazine unchecked and is found when
/// the magazine reaches the slab layer; users' counts stay right.
#[test]
fn class_double_free_found_at_the_slab_layer() {
    with_kmalloc(MEM, |k| {
        let l = layout(200, 8);
        let keep = k.alloc(l).unwrap();
        let p = k.alloc(l).unwrap();
        // SAFETY: allocated above; the second free is the bad input.
        unsafe {
            k.free(p, l).unwrap();
            k.free(p, l).unwrap();
        }
        let found = drain(k, 200).unwrap();
        assert_eq!(found.addr, p.as_ptr() as usize);
        assert_eq!(found.kind, BadFree::DoubleFree);
        let c = k.class_for(l).unwrap();
        assert_eq!(c.stats().buf_in_use, 1, "only `keep` is out");
        assert_eq!(c.stats().bad_frees, 1);
        // SAFETY: allocated above.
        unsafe { k.free(keep, l) }.unwrap();
    });
}

/// A free with a size of another class reaches that class's cache, which
/// names the right owner when the object gets to its slab layer.
#[test]
fn class_free_with_the_wrong_size_found_at_the_slab_layer() {
    with_kmalloc(MEM, |k| {
        let p = k.alloc(layout(200, 8)).unwrap();
        // SAFETY: the bad input: freed as a 40-byte object.
        unsafe { k.free(p, layout(40, 8)) }.unwrap();
        let found = drain(k, 40).unwrap();
        assert_eq!(found.addr, p.as_ptr() as usize);
        assert!(
            matches!(found.kind, BadFree::WrongCache(n) if n.as_str() == "kmalloc_208"),
            "{found}"
        );
        assert_eq!(k.class_for(layout(200, 8)).unwrap().stats().buf_in_use, 1);
        // SAFETY: still allocated (the bad free was refused).
        unsafe { k.free(p, layout(200, 8)) }.unwrap();
    });
}

#[test]
fn class_free_of_a_foreign_pointer_found_at_the_slab_layer() {
    with_kmalloc(MEM, |k| {
        let mut own = [0u64; 8];
        let p = NonNull::new(own.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the bad input; the slab layer never writes to it.
        unsafe { k.free(p, layout(64, 8)) }.unwrap();
        let found = drain(k, 64).unwrap();
        assert_eq!(found.kind, BadFree::Foreign);
        assert_eq!(own, [0; 8], "foreign memory written");
        assert_eq!(k.class_for(layout(64, 8)).unwrap().stats().buf_in_use, 0);
    });
}

#[test]
fn realloc_to_zero_bytes() {
    with_kmalloc(MEM, |k| {
        let l = layout(100, 8);
        let p = k.alloc(l).unwrap();
        // SAFETY: refused before anything changes.
        let e = unchanged(k, || unsafe { k.realloc(p, l, 0) });
        assert_eq!(e, Err(AllocError::ZeroSize));
        // SAFETY: still allocated.
        unsafe { k.free(p, l) }.unwrap();
    });
}

#[test]
fn realloc_beyond_any_size() {
    with_kmalloc(MEM, |k| {
        let l = layout(100, 8);
        let p = k.alloc(l).unwrap();
        // SAFETY: refused before anything changes.
        let e = unchanged(k, || unsafe { k.realloc(p, l, usize::MAX - 3) });
        assert_eq!(e, Err(AllocError::TooLarge));
        // SAFETY: still allocated.
        unsafe { k.free(p, l) }.unwrap();
    });
}
