//! Reclaim on exhaustion: an allocation that finds the arena exhausted
//! asks the callbacks registered on it (and on its source arena) to give
//! back, and tries once more.

mod common;

use common::{sourced_arena, span_arena};

use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kmem_arena::{
    AllocError, Arena, Constraints, Policy, Reclaim, TooManyReclaimers, MAX_RECLAIMERS,
};
use kmem_physmem::PhysMem;

/// A pool holding units of an arena of integers, giving them all back on
/// request (or none, if `stingy`).
struct Pool {
    held: Mutex<Vec<(usize, usize)>>,
    calls: AtomicUsize,
    stingy: bool,
}

impl Pool {
    const fn new(stingy: bool) -> Self {
        Self {
            held: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            stingy,
        }
    }

    fn take_all(&self, a: &Arena<'_>) {
        while let Ok(x) = a.alloc(1, Policy::InstantFit) {
            self.held.lock().unwrap().push((x, 1));
        }
    }
}

impl Reclaim for Pool {
    fn reclaim(&self, arena: &Arena<'_>, _wanted: usize) -> usize {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.stingy {
            return 0;
        }
        let mut given = 0;
        for (x, n) in self.held.lock().unwrap().drain(..) {
            arena.free(x, n).unwrap();
            given += n;
        }
        given
    }
}

#[test]
fn an_exhausted_arena_asks_its_callbacks_and_retries() {
    static POOL: Pool = Pool::new(false);
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    POOL.take_all(&ids);
    assert_eq!(ids.amt_free(), 0);
    ids.add_reclaim(&POOL).unwrap();
    let x = ids.alloc(4, Policy::InstantFit).unwrap();
    assert_eq!(POOL.calls.load(Ordering::SeqCst), 1);
    let y = ids.xalloc(4, &Constraints::new().align(4)).unwrap();
    assert_eq!(
        POOL.calls.load(Ordering::SeqCst),
        1,
        "nothing to reclaim yet"
    );
    ids.free(x, 4).unwrap();
    ids.xfree(y, 4).unwrap();
    assert!(ids.remove_reclaim(&POOL));
}

#[test]
fn a_callback_that_gives_nothing_means_no_retry() {
    static STINGY: Pool = Pool::new(true);
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    STINGY.take_all(&ids);
    ids.add_reclaim(&STINGY).unwrap();
    assert_eq!(ids.alloc(4, Policy::InstantFit), Err(AllocError::Exhausted));
    assert_eq!(STINGY.calls.load(Ordering::SeqCst), 1);
    assert!(ids.remove_reclaim(&STINGY));
    for (x, n) in STINGY.held.lock().unwrap().drain(..) {
        ids.free(x, n).unwrap();
    }
}

/// A sourced arena that runs out asks its source arena's callbacks too.
#[test]
fn reclaim_goes_down_to_the_source() {
    static PARENT_POOL: Pool = Pool::new(false);
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let parent = span_arena("parent", 1, 0x1000, 16, &base);
    let child = sourced_arena("child", 1, &parent, &base);
    PARENT_POOL.take_all(&parent);
    parent.add_reclaim(&PARENT_POOL).unwrap();
    let x = child.alloc(8, Policy::InstantFit).unwrap();
    assert_eq!(PARENT_POOL.calls.load(Ordering::SeqCst), 1);
    child.free(x, 8).unwrap();
    assert_eq!(child.amt_total(), 0);
    assert!(parent.remove_reclaim(&PARENT_POOL));
}

#[test]
fn callbacks_are_bounded_and_withdrawn() {
    static POOLS: [Pool; MAX_RECLAIMERS + 1] = [const { Pool::new(true) }; MAX_RECLAIMERS + 1];
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    for p in &POOLS[..MAX_RECLAIMERS] {
        ids.add_reclaim(p).unwrap();
    }
    assert_eq!(
        ids.add_reclaim(&POOLS[MAX_RECLAIMERS]),
        Err(TooManyReclaimers)
    );
    assert!(!TooManyReclaimers.to_string().is_empty());
    assert!(ids.remove_reclaim(&POOLS[3]));
    assert!(!ids.remove_reclaim(&POOLS[3]));
    ids.add_reclaim(&POOLS[MAX_RECLAIMERS]).unwrap();
}
