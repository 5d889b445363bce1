//! Shrinkers that destroy caches, shrinkers and handlers, a limit and
//! batch refills, bulk allocation of integers, and a panicking destructor
//! during a reap: each test once failed (found in review).

mod common;

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::sync::Mutex;

use common::{leak, with_caches, with_ids};
use kmem_arena::Arena;
use kmem_magazine::ThreadCpus;
use kmem_physmem::PhysMem;
use kmem_slab::{
    AllocError, AllocFlags, Cache, CacheBuilder, CacheFlags, CacheReclaim, Caches, Pressure,
};

fn stack() -> &'static Caches<'static, ThreadCpus> {
    let ram: &'static PhysMem = leak(PhysMem::new(16 << 20));
    let base: &'static Arena<'static> = leak(ram.base_arena("base", 64));
    leak(Caches::new(base, ThreadCpus::global()).unwrap())
}

/// A shrinker that frees nothing.
struct Nothing;

impl CacheReclaim for Nothing {
    fn reclaim(&self, _: Pressure) -> usize {
        0
    }
}

/// A [`stack`] with cache B (64-byte objects, a shrinker that frees
/// nothing) put in `b`, then cache A (64-byte objects, shrinker `a`)
/// leaked: A is listed (and its shrinker runs) before B, as the registry
/// pushes at its head.
fn b_then_a(
    b: &Mutex<Option<Cache<'static, ThreadCpus>>>,
    a: &'static dyn CacheReclaim,
) -> &'static Caches<'static, ThreadCpus> {
    static NOTHING: Nothing = Nothing;
    let caches = stack();
    *b.lock().unwrap() = Some(
        caches
            .create(CacheBuilder::new("b", 64).reclaim(&NOTHING))
            .unwrap(),
    );
    leak(
        caches
            .create(CacheBuilder::new("a", 64).reclaim(a))
            .unwrap(),
    );
    caches
}

/// A's shrinker drops the handle of B, which has a shrinker too, during
/// `Caches::tick`: only the running shrinker is marked, so B's destroy does
/// not wait for a mark nobody will clear (it once waited for ever).
#[test]
fn a_shrinker_may_destroy_another_cache_with_a_shrinker() {
    static B: Mutex<Option<Cache<'static, ThreadCpus>>> = Mutex::new(None);
    static DONE: AtomicBool = AtomicBool::new(false);
    struct DropsB;
    impl CacheReclaim for DropsB {
        fn reclaim(&self, _: Pressure) -> usize {
            let b = B.lock().unwrap().take();
            drop(b); // destroys cache B
            0
        }
    }
    static DROPS_B: DropsB = DropsB;
    let caches = b_then_a(&B, &DROPS_B);
    std::thread::spawn(move || {
        caches.tick();
        DONE.store(true, Ordering::SeqCst);
    });
    let start = std::time::Instant::now();
    while !DONE.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "Caches::tick hung: a shrinker destroyed a cache its own walk had claimed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The same across threads: A's shrinker waits for a thread that destroys
/// B.
#[test]
fn a_shrinker_may_wait_for_a_thread_that_destroys_another_cache() {
    static B: Mutex<Option<Cache<'static, ThreadCpus>>> = Mutex::new(None);
    static GO: AtomicBool = AtomicBool::new(false);
    static DESTROYED: AtomicBool = AtomicBool::new(false);
    static DONE: AtomicBool = AtomicBool::new(false);
    static TIMED_OUT: AtomicBool = AtomicBool::new(false);
    struct WaitsForDestroyer;
    impl CacheReclaim for WaitsForDestroyer {
        fn reclaim(&self, _: Pressure) -> usize {
            GO.store(true, Ordering::SeqCst);
            let start = std::time::Instant::now();
            // Bounded so the test ends; a real shrinker would wait for ever.
            while !DESTROYED.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(5));
            }
            TIMED_OUT.store(!DESTROYED.load(Ordering::SeqCst), Ordering::SeqCst);
            0
        }
    }
    static WAITS: WaitsForDestroyer = WaitsForDestroyer;
    let caches = b_then_a(&B, &WAITS);
    std::thread::spawn(|| {
        while !GO.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(B.lock().unwrap().take());
        DESTROYED.store(true, Ordering::SeqCst);
    });
    std::thread::spawn(move || {
        caches.tick();
        DONE.store(true, Ordering::SeqCst);
    });
    while !DONE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !TIMED_OUT.load(Ordering::SeqCst),
        "destroying B waited for A's walk, A's shrinker waited for the destroyer: a deadlock \
         (broken here only by the shrinker's timeout)"
    );
}

/// `max_objects(8)`: objects allocated on one thread leave the rest of the
/// limit to another (a batch refill once loaded the whole limit into the
/// first thread's magazine).
#[test]
fn a_cache_with_a_limit_keeps_no_refill_for_one_thread() {
    with_caches(32 << 20, |caches, kpages| {
        let c = caches
            .create(
                CacheBuilder::new("capped", 64)
                    .source(kpages)
                    .max_objects(8),
            )
            .unwrap();
        // The first allocation grows a slab (one object); the second finds
        // the magazines empty and refills from that slab.
        let mine = [
            c.alloc(AllocFlags::empty()).unwrap(),
            c.alloc(AllocFlags::empty()).unwrap(),
        ];
        let theirs = std::thread::scope(|s| {
            s.spawn(|| {
                // Even after a reap and an upkeep pass from this thread.
                c.reap();
                caches.tick();
                let r = c.alloc(AllocFlags::empty());
                if let Ok(o) = r {
                    // SAFETY: allocated just above.
                    unsafe { c.free(o) }.unwrap();
                }
                r
            })
            .join()
            .unwrap()
        });
        let st = c.stats();
        // SAFETY: allocated above.
        unsafe { c.free_bulk(&mine) }.unwrap();
        assert!(
            theirs.is_ok(),
            "2 of 8 objects in use, yet another thread got {theirs:?} (slab_busy {}, in use {})",
            st.slab_busy,
            st.buf_in_use
        );
    });
}

/// `alloc_bulk(ZERO)` on a cache of integers is refused with `NotMemory`,
/// as `alloc(ZERO)` is.
#[test]
fn alloc_bulk_zero_on_integers_is_refused() {
    with_ids(8 << 20, (1, 1 << 20), |caches, _, ids| {
        let c = caches
            .create(
                CacheBuilder::new("ids", 16)
                    .flags(CacheFlags::NOTOUCH | CacheFlags::NOMAGAZINE)
                    .source(ids),
            )
            .unwrap();
        assert_eq!(c.alloc(AllocFlags::ZERO), Err(AllocError::NotMemory));
        let mut out = [0usize; 4];
        let r = c.alloc_bulk(AllocFlags::ZERO, &mut out);
        if r.is_ok() {
            // SAFETY: allocated just above.
            unsafe { c.free_bulk(&out) }.unwrap();
        }
        assert_eq!(
            r,
            Err(AllocError::NotMemory),
            "alloc_bulk(ZERO) on integers"
        );
    });
}

/// From a handler that interrupted an operation of its context,
/// `Caches::reap` and `Caches::tick` do nothing, as each cache's own do:
/// no shrinker runs with the interrupted operation's mark lifted.
#[test]
fn caches_reap_and_tick_in_a_handler_run_no_shrinker() {
    use core::sync::atomic::AtomicPtr;
    use kmem_magazine::Section;
    use kmem_slab::KmemCache;
    static CACHE: AtomicPtr<KmemCache<'static, ThreadCpus>> = AtomicPtr::new(core::ptr::null_mut());
    static GOT: Mutex<Vec<Result<usize, AllocError>>> = Mutex::new(Vec::new());
    struct Allocates;
    impl CacheReclaim for Allocates {
        fn reclaim(&self, _: Pressure) -> usize {
            // SAFETY: set before, leaked.
            let c = unsafe { &*CACHE.load(Ordering::SeqCst) };
            let r = c.alloc(AllocFlags::empty());
            if let Ok(o) = r {
                // SAFETY: allocated just above.
                unsafe { c.free(o) }.unwrap();
            }
            GOT.lock().unwrap().push(r);
            0
        }
    }
    static ALLOCATES: Allocates = Allocates;
    let caches = stack();
    let c = leak(
        caches
            .create(CacheBuilder::new("x", 64).reclaim(&ALLOCATES))
            .unwrap(),
    );
    let c: &'static KmemCache<'static, ThreadCpus> = c;
    CACHE.store(core::ptr::from_ref(c).cast_mut(), Ordering::SeqCst);
    {
        // What a signal handler sees when it interrupted an allocation.
        let _interrupted = Section::enter(ThreadCpus::global()).unwrap();
        assert_eq!(c.alloc(AllocFlags::empty()), Err(AllocError::Reentrant));
        assert_eq!(c.reap(), 0);
        assert_eq!(c.tick(), 0);
        assert_eq!(c.stats().reclaim_calls, 0, "KmemCache::reap/tick: nothing");
        caches.reap();
        caches.tick();
    }
    assert_eq!(
        c.stats().reclaim_calls,
        0,
        "Caches::reap/tick ran the shrinker inside an interrupted operation; its allocations got {:?}",
        GOT.lock().unwrap()
    );
}

/// A destructor that panics while `reap` drains the depot loses no
/// magazine: the empty ones are given back first.
#[test]
fn a_panicking_destructor_during_reap_loses_no_magazine() {
    use kmem_slab::{CtorError, ObjectOps};
    struct PanicOnce(AtomicBool);
    impl ObjectOps for PanicOnce {
        fn construct(&self, _: usize, _: AllocFlags) -> Result<(), CtorError> {
            Ok(())
        }
        fn destruct(&self, _: usize) {
            if self.0.swap(false, Ordering::SeqCst) {
                panic!("destructor");
            }
        }
    }
    static OPS: PanicOnce = PanicOnce(AtomicBool::new(false));
    with_caches(32 << 20, |caches, kpages| {
        let c = caches
            .create(CacheBuilder::new("p", 64).ops(&OPS).source(kpages))
            .unwrap();
        let v: Vec<usize> = (0..200)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        // SAFETY: allocated above.
        unsafe { c.free_bulk(&v) }.unwrap();
        let held: Vec<usize> = (0..100)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        c.flush_current();
        let before = c.magazine_stats().unwrap();
        assert!(before.not_empty > 0 && before.empty > 0, "{before:?}");
        OPS.0.store(true, Ordering::SeqCst);
        let r = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| c.reap()));
        assert!(r.is_err());
        let mid = c.magazine_stats().unwrap();
        // SAFETY: allocated above.
        unsafe { c.free_bulk(&held) }.unwrap();
        c.flush_current();
        c.reap();
        let m = c.magazine_stats().unwrap();
        assert_eq!(
            m.magazines_allocated, m.magazines_freed,
            "magazines lost: before {before:?}\n after the panic {mid:?}\n at the end {m:?}"
        );
        drop(c);
    });
}
