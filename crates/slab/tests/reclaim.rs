//! Per-cache shrinkers (`CacheBuilder::reclaim`): the upkeep pass asks
//! with `Pressure::Upkeep`, `reap` and the source's exhaustion path with
//! `Pressure::Low`, outside every lock, and what they free goes back.

mod common;

use std::sync::Mutex;

use common::{leak, limited_stack as stack};

use kmem_magazine::ThreadCpus;
use kmem_slab::{AllocError, AllocFlags, CacheBuilder, CacheReclaim, Caches, KmemCache, Pressure};

/// A user's pool of objects of one cache (a dentry cache, say): it frees
/// half of them on the upkeep pass and all of them when memory is low.
struct Pool {
    cache: Mutex<Option<&'static KmemCache<'static, ThreadCpus>>>,
    held: Mutex<Vec<usize>>,
    calls: Mutex<Vec<Pressure>>,
}

impl Pool {
    const fn new() -> Self {
        Self {
            cache: Mutex::new(None),
            held: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl CacheReclaim for Pool {
    fn reclaim(&self, pressure: Pressure) -> usize {
        self.calls.lock().unwrap().push(pressure);
        let cache = self.cache.lock().unwrap().expect("set");
        let mut held = self.held.lock().unwrap();
        let keep = match pressure {
            Pressure::Upkeep => held.len() / 2,
            Pressure::Low => 0,
        };
        let freed = held.len() - keep;
        for obj in held.drain(keep..) {
            // SAFETY: allocated from `cache` by the test, held only here.
            unsafe { cache.free(obj) }.unwrap();
        }
        freed
    }
}

#[test]
fn the_upkeep_pass_and_reap_call_the_shrinker() {
    static POOL: Pool = Pool::new();
    let (small, caches) = stack(256);
    let c = caches
        .create(
            CacheBuilder::new("pooled", 256)
                .source(small)
                .reclaim(&POOL),
        )
        .unwrap();
    let c = leak(c);
    let c: &'static KmemCache<'static, ThreadCpus> = c;
    *POOL.cache.lock().unwrap() = Some(c);
    POOL.held
        .lock()
        .unwrap()
        .extend((0..400).map(|_| c.alloc(AllocFlags::empty()).unwrap()));
    caches.tick();
    assert_eq!(*POOL.calls.lock().unwrap(), [Pressure::Upkeep]);
    assert_eq!(POOL.held.lock().unwrap().len(), 200);
    assert_eq!(c.stats().reclaim_calls, 1);
    c.reap();
    assert_eq!(
        *POOL.calls.lock().unwrap(),
        [Pressure::Upkeep, Pressure::Low]
    );
    assert!(POOL.held.lock().unwrap().is_empty());
    c.flush_current();
    c.reap();
    assert_eq!(small.stats().allocated, 0, "every slab back");
    c.check().unwrap();
}

#[test]
fn an_exhausted_source_calls_the_shrinker_and_the_allocation_succeeds() {
    static POOL: Pool = Pool::new();
    let (small, caches) = stack(16);
    small.add_reclaim(caches).unwrap();
    let c = caches
        .create(
            CacheBuilder::new("pooled", 1024)
                .source(small)
                .reclaim(&POOL),
        )
        .unwrap();
    let c = leak(c);
    let c: &'static KmemCache<'static, ThreadCpus> = c;
    *POOL.cache.lock().unwrap() = Some(c);
    // The pool takes objects until the limit is reached: the allocation
    // that finds the source exhausted has the shrinker called (the pool
    // frees everything), and succeeds on the retry.
    let mut survivor = None;
    for _ in 0..1000 {
        let obj = c.alloc(AllocFlags::empty()).unwrap();
        if POOL.calls.lock().unwrap().is_empty() {
            POOL.held.lock().unwrap().push(obj);
        } else {
            survivor = Some(obj);
            break;
        }
    }
    let obj = survivor.expect("the limit was reached and the shrinker asked");
    assert_eq!(POOL.calls.lock().unwrap()[0], Pressure::Low);
    assert!(POOL.held.lock().unwrap().is_empty());
    assert!(c.stats().reclaim_calls >= 1);
    // SAFETY: allocated above.
    unsafe { c.free(obj) }.unwrap();
    // A cache without a shrinker over the same limit is refused.
    let plain = caches
        .create(CacheBuilder::new("plain", 1024).source(small))
        .unwrap();
    let mut held = Vec::new();
    let err = loop {
        match plain.alloc(AllocFlags::empty()) {
            Ok(obj) => held.push(obj),
            Err(e) => break e,
        }
        assert!(held.len() < 1000, "the limit did not hold");
    };
    assert_eq!(err, AllocError::Exhausted);
    for obj in held {
        // SAFETY: allocated above.
        unsafe { plain.free(obj) }.unwrap();
    }
    c.check().unwrap();
}

/// A shrinker that creates and drops a cache (so takes the registry's
/// write lock) under `Caches::tick`: shrinkers run outside the registry's
/// lock (this once hung for ever; found in review).
#[test]
fn a_shrinker_may_create_and_destroy_caches() {
    use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
    static CACHES: AtomicPtr<Caches<'static, ThreadCpus>> = AtomicPtr::new(core::ptr::null_mut());
    static DONE: AtomicBool = AtomicBool::new(false);
    struct MakesACache;
    impl CacheReclaim for MakesACache {
        fn reclaim(&self, _: Pressure) -> usize {
            // SAFETY: set before the pass, leaked ('static).
            let caches = unsafe { &*CACHES.load(Ordering::SeqCst) };
            drop(caches.create(CacheBuilder::new("scratch", 64)).unwrap());
            0
        }
    }
    static SHRINK: MakesACache = MakesACache;
    let (small, caches) = stack(64);
    CACHES.store(core::ptr::from_ref(caches).cast_mut(), Ordering::SeqCst);
    let c = leak(
        caches
            .create(
                CacheBuilder::new("with-shrinker", 64)
                    .source(small)
                    .reclaim(&SHRINK),
            )
            .unwrap(),
    );
    std::thread::spawn(|| {
        // SAFETY: as above.
        let caches = unsafe { &*CACHES.load(Ordering::SeqCst) };
        caches.tick();
        caches.reap();
        DONE.store(true, Ordering::SeqCst);
    });
    let start = std::time::Instant::now();
    while !DONE.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < core::time::Duration::from_secs(20),
            "Caches::tick hung: a shrinker under the registry's lock"
        );
        std::thread::sleep(core::time::Duration::from_millis(10));
    }
    assert_eq!(c.stats().reclaim_calls, 2);
}

/// A shrinker that allocates under `Pressure::Upkeep` until the source is
/// exhausted is not called again inside its own call (the exhaustion path
/// skips a shrinker that is running; found in review).
#[test]
fn a_shrinker_is_not_reentered_from_its_own_allocation() {
    use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
    static CACHE: AtomicPtr<KmemCache<'static, ThreadCpus>> = AtomicPtr::new(core::ptr::null_mut());
    static INSIDE: AtomicBool = AtomicBool::new(false);
    static NESTED: AtomicBool = AtomicBool::new(false);
    struct Allocates;
    impl CacheReclaim for Allocates {
        fn reclaim(&self, p: Pressure) -> usize {
            if INSIDE.swap(true, Ordering::SeqCst) {
                NESTED.store(true, Ordering::SeqCst);
                return 0;
            }
            if p == Pressure::Upkeep {
                // SAFETY: set before the pass.
                let c = unsafe { &*CACHE.load(Ordering::SeqCst) };
                let mut v = Vec::new();
                while let Ok(o) = c.alloc(AllocFlags::empty()) {
                    v.push(o);
                }
                for o in v {
                    // SAFETY: allocated just above.
                    unsafe { c.free(o) }.unwrap();
                }
            }
            INSIDE.store(false, Ordering::SeqCst);
            0
        }
    }
    static SHRINK: Allocates = Allocates;
    let (small, caches) = stack(16);
    small.add_reclaim(caches).unwrap();
    let c = caches
        .create(
            CacheBuilder::new("reentered", 1024)
                .source(small)
                .reclaim(&SHRINK),
        )
        .unwrap();
    let c = leak(c);
    let c: &'static KmemCache<'static, ThreadCpus> = c;
    CACHE.store(core::ptr::from_ref(c).cast_mut(), Ordering::SeqCst);
    c.tick();
    caches.tick();
    assert!(
        !NESTED.load(Ordering::SeqCst),
        "the shrinker was called inside its own call"
    );
    assert_eq!(c.stats().reclaim_calls, 2);
}
