//! Searches that must look at many free segments: they stay exhaustive
//! (a fit found wherever it is, a refusal only when there is none), and
//! they hold the lock for a batch of segments at a time, so another
//! thread's allocations go on while one search walks 10^5 segments.

mod common;

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;

use common::span_arena;
use kmem_arena::{AllocError, Arena, Constraints, Policy};
use kmem_physmem::PhysMem;

/// `n` one-unit free segments at odd addresses, each fenced by a live one,
/// in a span of quantum 1 that has nothing else free.
fn odd_holes<'a>(base: &'a Arena<'a>, n: usize) -> Arena<'a> {
    let a = span_arena("holes", 1, 0x10_0000, 2 * n, base);
    let all: Vec<usize> = (0..2 * n)
        .map(|_| a.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    for &x in all.iter().filter(|&&x| x % 2 == 1) {
        a.free(x, 1).unwrap();
    }
    a
}

/// Every fitting address is found however many misfits come first, by
/// each policy and from either end; a request nothing fits is refused.
#[test]
fn exhaustive_past_many_misfits() {
    let ram = PhysMem::new(64 << 20);
    let base = ram.base_arena("base", 4096);
    let n = 4000;
    let a = odd_holes(&base, n);
    // Even addresses are all taken: align 2 fits nowhere, but must be
    // looked for in all `n` holes.
    for policy in [Policy::InstantFit, Policy::BestFit, Policy::NextFit] {
        let c = Constraints::new().align(2).policy(policy);
        assert_eq!(a.xalloc(1, &c), Err(AllocError::Exhausted), "{policy:?}");
        let top = c.from_top();
        assert_eq!(
            a.xalloc(1, &top),
            Err(AllocError::Exhausted),
            "{policy:?} top"
        );
    }
    // Phase 1 fits every hole: the lowest, the highest, and inside a window.
    let c = Constraints::new().align(2).phase(1);
    assert_eq!(a.xalloc(1, &c), Ok(0x10_0001));
    assert_eq!(a.xalloc(1, &c.from_top()), Ok(0x10_0000 + 2 * n - 1));
    let w = c.min_addr(0x10_0000 + n).max_addr(0x10_0000 + n + 10);
    assert_eq!(a.xalloc(1, &w), Ok(0x10_0000 + n + 1));
    for x in [0x10_0001, 0x10_0000 + 2 * n - 1, 0x10_0000 + n + 1] {
        a.xfree(x, 1).unwrap();
    }
    // A hole that fits align 4 only after thousands that do not: free
    // the even address between the last two odd holes, making one
    // 3-unit segment whose second unit is 2 mod 4.
    let last = 0x10_0000 + 2 * n - 2;
    assert_eq!(last % 4, 2);
    a.free(last, 1).unwrap();
    for policy in [Policy::InstantFit, Policy::BestFit, Policy::NextFit] {
        let c = Constraints::new().align(4).phase(2).policy(policy);
        let got = a.xalloc(2, &c).unwrap();
        assert_eq!(got, last, "{policy:?}");
        a.xfree(got, 2).unwrap();
    }
    // Plain allocation of 2 units: only that segment holds them, behind
    // thousands of one-unit holes on the same list.
    assert_eq!(a.alloc(2, Policy::InstantFit), Ok(last - 1));
    a.free(last - 1, 2).unwrap();
    assert_eq!(a.alloc(2, Policy::BestFit), Ok(last - 1));
    a.check().unwrap();
}

/// A search through 10^5 free segments that all misfit lets go of the
/// lock after every batch (counted in `search_pauses`), and another
/// thread's allocations go on meanwhile and afterwards.
#[test]
fn a_long_search_lets_go_of_the_lock() {
    let ram = PhysMem::new(256 << 20);
    let base = ram.base_arena("base", 4096);
    let n = 100_000;
    let a = odd_holes(&base, n);
    // A separate range for the other thread's pairs.
    a.add(0x1000_0000, 1 << 20).unwrap();
    let c = Constraints::new()
        .align(2)
        .min_addr(0)
        .max_addr(0x1000_0000);
    let before = a.stats().search_pauses;
    assert_eq!(a.xalloc(1, &c), Err(AllocError::Exhausted));
    let pauses = a.stats().search_pauses - before;
    // Batches of at most 16 segments (32 would halve this).
    assert!(
        pauses as usize >= n / 16 - 1,
        "{pauses} pauses for {n} segments"
    );
    let done = AtomicBool::new(false);
    let pairs = AtomicUsize::new(0);
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            for _ in 0..3 {
                assert_eq!(a.xalloc(1, &c), Err(AllocError::Exhausted));
            }
            done.store(true, Ordering::SeqCst);
        });
        start.wait();
        let pair = Constraints::new().min_addr(0x1000_0000);
        while !done.load(Ordering::SeqCst) {
            let x = a.xalloc(1, &pair).unwrap();
            a.xfree(x, 1).unwrap();
            pairs.fetch_add(1, Ordering::Relaxed);
        }
    });
    assert!(pairs.load(Ordering::Relaxed) > 0);
    a.check().unwrap();
}

/// `alloc` whose own size class holds thousands of segments too small
/// for it, and the one that fits last on that list: instant and best fit
/// find it (the first look covers a batch; the search does the rest).
#[test]
fn own_list_longer_than_a_look() {
    let ram = PhysMem::new(64 << 20);
    let base = ram.base_arena("base", 4096);
    let n = 3000;
    let a = span_arena("twos", 1, 0x10_0000, 3 * n + 4, &base);
    // Units: [live][2 free] repeated, and a 3-unit free segment first.
    let three = a.alloc(3, Policy::InstantFit).unwrap();
    let _fence = a.alloc(1, Policy::InstantFit).unwrap();
    let mut twos = Vec::new();
    for _ in 0..n {
        a.alloc(1, Policy::InstantFit).unwrap();
        twos.push(a.alloc(2, Policy::InstantFit).unwrap());
    }
    // The 3-unit segment is freed first: last on its list.
    a.free(three, 3).unwrap();
    for &x in &twos {
        a.free(x, 2).unwrap();
    }
    for policy in [Policy::InstantFit, Policy::BestFit] {
        assert_eq!(a.alloc(3, policy), Ok(three), "{policy:?}");
        a.free(three, 3).unwrap();
    }
    a.check().unwrap();
}
