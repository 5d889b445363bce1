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

/// Runs `f`, a refused free: nothing changes but one cache's count of bad
/// frees, which goes up by one.
#[track_caller]
fn refused<R>(k: &K<'_>, f: impl FnOnce() -> R) -> R {
    let mut before = snapshot(k);
    let r = f();
    let mut after = snapshot(k);
    assert_eq!(
        after.take_bad_frees(),
        before.take_bad_frees() + 1,
        "one bad free counted"
    );
    assert_eq!(after, before, "a refused free changed state");
    r
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

/// A class double free is refused at once, in the magazine or back in
/// its slab, on this thread or another: no two allocations get the object.
#[test]
fn class_double_free_refused_at_once() {
    with_kmalloc(MEM, |k| {
        for size in [8, 16, 200, 1024, 3000, 32 << 10] {
            let l = layout(size, 8);
            let keep = k.alloc(l).unwrap();
            let p = k.alloc(l).unwrap();
            let addr = p.as_ptr() as usize;
            let double = || FreeError::Refused {
                addr,
                kind: BadFree::DoubleFree,
            };
            // SAFETY: allocated above; the second free is the bad input.
            unsafe { k.free(p, l) }.unwrap();
            // SAFETY: the bad input, refused before anything changes.
            assert_eq!(refused(k, || unsafe { k.free(p, l) }), Err(double()));
            let p_addr = addr;
            let again = std::thread::scope(|s| {
                s.spawn(|| {
                    let p = NonNull::new(p_addr as *mut u8).unwrap();
                    // SAFETY: the bad input, from another thread.
                    unsafe { k.free(p, l) }
                })
                .join()
                .unwrap()
            });
            assert_eq!(again, Err(double()));
            let x = k.alloc(l).unwrap();
            let y = k.alloc(l).unwrap();
            assert_ne!(x, y, "{size}: one object, two owners");
            // SAFETY: allocated above, freed once.
            unsafe {
                k.free(x, l).unwrap();
                k.free(y, l).unwrap();
                k.free(keep, l).unwrap();
            }
            let c = k.class_for(l).unwrap();
            assert_eq!(c.stats().buf_in_use, 0, "{size}");
            assert_eq!(c.stats().bad_frees, 2, "{size}");
            assert_eq!(
                c.last_bad_free(),
                None,
                "{size}: nothing bad reached a slab"
            );
        }
    });
}

/// A free with a size of another class is refused at once by that class,
/// which names the owner; the object stays allocated.
#[test]
fn class_free_with_the_wrong_size_refused_at_once() {
    with_kmalloc(MEM, |k| {
        for (size, wrong, owner) in [
            (200, 40, "kmalloc_208"),
            (40, 200, "kmalloc_40"),
            (8, 4096, "kmalloc_8"),
            (4096, 8, "kmalloc_4096"),
            (1024, 32 << 10, "kmalloc_1024"),
        ] {
            let p = k.alloc(layout(size, 8)).unwrap();
            // SAFETY: the bad input: freed with another class's size.
            let e = refused(k, || unsafe { k.free(p, layout(wrong, 8)) });
            match e {
                Err(FreeError::Refused {
                    kind: BadFree::WrongCache(n),
                    ..
                }) => assert_eq!(n.as_str(), owner),
                other => panic!("{size} freed as {wrong}: {other:?}"),
            }
            assert_eq!(k.class_for(layout(size, 8)).unwrap().stats().buf_in_use, 1);
            // SAFETY: still allocated (the bad free was refused).
            unsafe { k.free(p, layout(size, 8)) }.unwrap();
        }
    });
}

/// A pointer into an object, or memory kmalloc never handed out, is
/// refused at once; nothing is written to it.
#[test]
fn class_free_of_a_foreign_or_interior_pointer_refused_at_once() {
    with_kmalloc(MEM, |k| {
        let mut own = [0u64; 8];
        let p = NonNull::new(own.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the bad input; nothing is written to it.
        let e = refused(k, || unsafe { k.free(p, layout(64, 8)) });
        assert!(
            matches!(
                e,
                Err(FreeError::Refused {
                    kind: BadFree::Foreign,
                    ..
                })
            ),
            "{e:?}"
        );
        assert_eq!(own, [0; 8], "foreign memory written");
        let q = k.alloc(layout(64, 8)).unwrap();
        // SAFETY: the bad input: 8 bytes into an object.
        let inner = unsafe { NonNull::new_unchecked(q.as_ptr().add(8)) };
        // SAFETY: as above.
        let e = refused(k, || unsafe { k.free(inner, layout(64, 8)) });
        assert!(
            matches!(
                e,
                Err(FreeError::Refused {
                    kind: BadFree::NotObjectStart,
                    ..
                })
            ),
            "{e:?}"
        );
        // SAFETY: allocated above.
        unsafe { k.free(q, layout(64, 8)) }.unwrap();
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

// ---------------------------------------------------------------------------
// Findings of the review of the release-mode checks, each a regression test.

/// A double free of an object that a signal handler freed (waiting on its
/// slot's deferred stack) is refused: the stack links through the second
/// word, so the free mark stays.
#[test]
fn double_free_of_a_deferred_object_is_refused() {
    with_kmalloc(MEM, |k| {
        let l = layout(48, 8);
        let a = k.alloc(l).unwrap();
        {
            // As a handler that interrupted an allocator call would.
            let _s = kmem_magazine::Section::enter(kmem_magazine::ThreadCpus::global()).unwrap();
            // SAFETY: allocated above; deferred.
            unsafe { k.free(a, l) }.unwrap();
        }
        // SAFETY: the bad input: `a`'s second free.
        let r = unsafe { k.free(a, l) };
        assert!(
            matches!(
                r,
                Err(FreeError::Refused {
                    kind: BadFree::DoubleFree,
                    ..
                })
            ),
            "{r:?}"
        );
        let got: Vec<_> = (0..300).map(|_| k.alloc(l).unwrap()).collect();
        assert!(
            got.iter().filter(|&&p| p == a).count() <= 1,
            "handed out twice"
        );
        for p in got {
            // SAFETY: allocated above, freed once.
            unsafe { k.free(p, l) }.unwrap();
        }
    });
}

/// Bytes copied from a free object never mark another one: a reaped
/// slab's pages reused for large blocks, whose uninitialised contents
/// `realloc` copies into class objects, whose frees must all succeed.
#[test]
fn stale_free_marks_copied_elsewhere_are_no_double_free() {
    with_kmalloc(MEM, |k| {
        let l = layout(64, 8);
        let objs: Vec<_> = (0..20_000).map(|_| k.alloc(l).unwrap()).collect();
        for p in objs {
            // SAFETY: allocated above, freed once.
            unsafe { k.free(p, l) }.unwrap();
        }
        k.reap();
        let bl = layout(40 << 10, 8);
        let mut blocks = Vec::new();
        while let Ok(b) = k.alloc(bl) {
            blocks.push(b);
            if blocks.len() == 64 {
                break;
            }
        }
        for b in blocks {
            // SAFETY: `b` is ours; realloc copies its first 64 bytes (stale
            // free marks, if the page was a slab's) into a class object.
            let q = unsafe { k.realloc(b, bl, 64) }.unwrap();
            // SAFETY: allocated by realloc with 64 bytes, freed once.
            unsafe { k.free(q, l) }.unwrap();
        }
    });
}

/// `realloc` of a freed block is refused before anything is copied (the
/// allocator would hand the same block back) or, with another layout,
/// undone completely: nothing leaks.
#[test]
fn realloc_of_a_freed_block_is_refused_and_undone() {
    with_kmalloc(MEM, |k| {
        let l = layout(200, 8);
        let keep = k.alloc(l).unwrap();
        let p = k.alloc(l).unwrap();
        // SAFETY: allocated above, freed once.
        unsafe { k.free(p, l) }.unwrap();
        let c = k.class_for(l).unwrap();
        let before = c.stats().buf_in_use;
        // SAFETY: the bad input: `p` is free (and comes back first).
        let r = unsafe { k.realloc(p, l, 4000) };
        assert!(matches!(r, Err(AllocError::BadPointer(_))), "{r:?}");
        let q = k.alloc(l).unwrap();
        // SAFETY: allocated above, freed once.
        unsafe { k.free(q, l) }.unwrap();
        // SAFETY: the bad input: `q` is free, and the old layout is wrong.
        let r = unsafe { k.realloc(q, layout(40, 8), 200) };
        assert!(matches!(r, Err(AllocError::BadPointer(_))), "{r:?}");
        assert_eq!(c.stats().buf_in_use, before, "the undo leaked");
        // SAFETY: allocated above.
        unsafe { k.free(keep, l) }.unwrap();
    });
}

/// A handler's free goes onto the deferred stack, linked through the
/// object's second word (the first keeps the free mark): an 8-byte object
/// has none, so its free is refused (`Reentrant`) and the object stays the
/// caller's, unchanged (its first word, which the free mark had replaced,
/// put back), to be freed again later.
#[test]
fn a_handlers_free_of_an_8_byte_object_is_refused() {
    with_kmalloc(MEM, |k| {
        let (l8, l16) = (layout(8, 8), layout(16, 8));
        let a = k.alloc(l8).unwrap();
        let b = k.alloc(l16).unwrap();
        // SAFETY: `a` is 8 bytes of ours.
        unsafe { a.cast::<u64>().write(0x1234_5678) };
        // The allocations loaded this CPU's magazines (batch refill), where
        // a free finds room without leaving the fast path: given back with
        // the depot's magazines, so the frees below find no magazine.
        k.reap();
        {
            // As a handler that interrupted an allocator call would.
            let _s = kmem_magazine::Section::enter(kmem_magazine::ThreadCpus::global()).unwrap();
            // SAFETY: allocated above; refused, so still ours.
            let r = unsafe { k.free(a, l8) };
            assert!(
                matches!(
                    r,
                    Err(FreeError::Refused {
                        kind: BadFree::Reentrant,
                        ..
                    })
                ),
                "{r:?}"
            );
            // SAFETY: allocated above, deferred.
            unsafe { k.free(b, l16) }.unwrap();
        }
        assert_eq!(k.class_for(l8).unwrap().stats().buf_in_use, 1);
        // SAFETY: still ours: the refused free changed nothing in it.
        assert_eq!(unsafe { a.cast::<u64>().read() }, 0x1234_5678);
        // SAFETY: still ours (the free was refused), freed once now.
        unsafe { k.free(a, l8) }.unwrap();
    });
}
