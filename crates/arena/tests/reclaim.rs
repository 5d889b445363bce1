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
    let h = ids.add_reclaim(&POOL).unwrap();
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
    assert!(ids.remove_reclaim(h));
}

#[test]
fn a_callback_that_gives_nothing_means_no_retry() {
    static STINGY: Pool = Pool::new(true);
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    STINGY.take_all(&ids);
    let h = ids.add_reclaim(&STINGY).unwrap();
    assert_eq!(ids.alloc(4, Policy::InstantFit), Err(AllocError::Exhausted));
    assert_eq!(STINGY.calls.load(Ordering::SeqCst), 1);
    assert!(ids.remove_reclaim(h));
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
    let h = parent.add_reclaim(&PARENT_POOL).unwrap();
    let x = child.alloc(8, Policy::InstantFit).unwrap();
    assert_eq!(PARENT_POOL.calls.load(Ordering::SeqCst), 1);
    child.free(x, 8).unwrap();
    assert_eq!(child.amt_total(), 0);
    assert!(parent.remove_reclaim(h));
}

#[test]
fn callbacks_are_bounded_and_withdrawn() {
    static POOLS: [Pool; MAX_RECLAIMERS + 1] = [const { Pool::new(true) }; MAX_RECLAIMERS + 1];
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    let handles: Vec<_> = POOLS[..MAX_RECLAIMERS]
        .iter()
        .map(|p| ids.add_reclaim(p).unwrap())
        .collect();
    assert_eq!(
        ids.add_reclaim(&POOLS[MAX_RECLAIMERS]),
        Err(TooManyReclaimers)
    );
    assert!(!TooManyReclaimers.to_string().is_empty());
    assert!(ids.remove_reclaim(handles[3]));
    assert!(!ids.remove_reclaim(handles[3]));
    // The freed place is taken again; the old handle does not reach it.
    let again = ids.add_reclaim(&POOLS[MAX_RECLAIMERS]).unwrap();
    assert!(!ids.remove_reclaim(handles[3]));
    assert!(ids.remove_reclaim(again));
}

/// Zero-sized callbacks of different types may share an address: they are
/// withdrawn by handle, never one for the other. (Found by review.)
#[test]
fn zero_sized_callbacks_are_told_apart() {
    struct ShrinkA;
    struct ShrinkB;
    impl Reclaim for ShrinkA {
        fn reclaim(&self, _: &Arena<'_>, _: usize) -> usize {
            0
        }
    }
    impl Reclaim for ShrinkB {
        fn reclaim(&self, _: &Arena<'_>, _: usize) -> usize {
            0
        }
    }
    static A: ShrinkA = ShrinkA;
    static B: ShrinkB = ShrinkB;
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let ids = span_arena("ids", 1, 0x1000, 16, &base);
    let a = ids.add_reclaim(&A).unwrap();
    let b = ids.add_reclaim(&B).unwrap();
    assert_ne!(a, b);
    assert!(ids.remove_reclaim(b));
    assert!(!ids.remove_reclaim(b));
    assert!(ids.remove_reclaim(a));
}

/// An arena at its import limit reclaims before it refuses: what its
/// callbacks give back serves the request with no import. (Found by
/// review.)
#[test]
fn an_arena_at_its_limit_reclaims() {
    static LIMITED: Pool = Pool::new(false);
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", 4096);
    let pages = span_arena("pages", 1, 0x10_0000, 64, &base);
    let a = sourced_arena("limited", 1, &pages, &base);
    a.set_limit(Some(4));
    LIMITED.take_all(&a);
    assert_eq!(a.amt_total(), 4);
    let h = a.add_reclaim(&LIMITED).unwrap();
    let x = a.alloc(1, Policy::InstantFit).unwrap();
    assert_eq!(LIMITED.calls.load(Ordering::SeqCst), 1);
    a.free(x, 1).unwrap();
    assert!(a.remove_reclaim(h));
}

/// Adds a fresh region of `step` bytes to the base arena that ran out: a
/// base arena grows on demand this way (kmalloc's global allocator grows
/// its metadata so).
struct Grower {
    step: usize,
    calls: AtomicUsize,
}

impl Reclaim for Grower {
    fn reclaim(&self, arena: &Arena<'_>, wanted: usize) -> usize {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let size = self.step.max(2 * wanted.next_multiple_of(4096));
        let ram = kmem_physmem::leak(PhysMem::new(size));
        // SAFETY: a fresh region, leaked (it outlives the arena), used by
        // nothing else.
        unsafe { arena.add_memory(ram.start(), ram.len()) }.unwrap();
        size
    }
}

/// A base arena that runs out of memory to carve boundary tags from
/// (`NoTags`, which is how a base arena of small segments runs out) or of
/// memory asks its callbacks; one that adds memory lets it go on.
#[test]
fn a_base_arena_grows_through_a_callback() {
    static GROWER: Grower = Grower {
        step: 64 << 10,
        calls: AtomicUsize::new(0),
    };
    let ram = PhysMem::new(16 * 4096);
    let base = ram.base_arena("base", 8);
    let mut held = Vec::new();
    // Without the callback it runs out: 8-byte segments use up the tags
    // (85 to a 4 KiB tag page) before the memory.
    let ran_out = loop {
        match base.alloc(8, Policy::InstantFit) {
            Ok(x) => held.push(x),
            Err(e) => break e,
        }
    };
    assert_eq!(ran_out, AllocError::NoTags);
    let h = base.add_reclaim(&GROWER).unwrap();
    for _ in 0..20_000 {
        held.push(base.alloc(8, Policy::InstantFit).unwrap());
    }
    let calls = GROWER.calls.load(Ordering::SeqCst);
    assert!(calls > 1, "{calls}");
    // A request larger than a step gets a region of its size.
    let big = base
        .xalloc(1 << 20, &Constraints::new().align(1 << 16))
        .unwrap();
    assert!(GROWER.calls.load(Ordering::SeqCst) > calls);
    base.check().unwrap();
    // SAFETY: segments allocated above, unused, freed once.
    unsafe {
        base.xfree_memory(big, 1 << 20).unwrap();
        for x in held {
            base.free_memory(x, 8).unwrap();
        }
    }
    base.check().unwrap();
    assert!(base.remove_reclaim(h));
}
