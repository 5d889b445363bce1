//! Waiting allocations: `alloc_wait` sleeps on an exhausted arena until a
//! free, or until its timeout, and never without a waiter set.

mod common;

use common::span_arena;

use core::time::Duration;
use std::time::Instant;

use kmem_arena::{AllocError, CondvarWaiter, Policy};
use kmem_physmem::PhysMem;

static WAITER: CondvarWaiter = CondvarWaiter::new();

/// A caller waiting on a full arena gets the range another thread frees.
#[test]
fn a_free_wakes_the_waiting_allocation() {
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    ids.set_waiter(&WAITER);
    let all = ids.alloc(16, Policy::InstantFit).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| ids.alloc_wait(4, Policy::InstantFit, None));
        std::thread::sleep(Duration::from_millis(50));
        ids.free(all, 16).unwrap();
        let got = waiter.join().unwrap().unwrap();
        ids.free(got, 4).unwrap();
    });
    assert_eq!(ids.stats().live, 0);
}

/// With nothing freed, the wait ends at its timeout with `TimedOut`, and
/// the arena is as it was.
#[test]
fn the_wait_ends_at_its_timeout() {
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    ids.set_waiter(&WAITER);
    let all = ids.alloc(16, Policy::InstantFit).unwrap();
    let start = Instant::now();
    let got = ids.alloc_wait(4, Policy::InstantFit, Some(Duration::from_millis(40)));
    assert_eq!(got, Err(AllocError::TimedOut));
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!(ids.stats().live, 1);
    ids.free(all, 16).unwrap();
}

/// Without a waiter, `alloc_wait` is `alloc`: it never sleeps.
#[test]
fn no_waiter_no_wait() {
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    let all = ids.alloc(16, Policy::InstantFit).unwrap();
    assert_eq!(
        ids.alloc_wait(4, Policy::InstantFit, None),
        Err(AllocError::Exhausted)
    );
    ids.free(all, 16).unwrap();
}
