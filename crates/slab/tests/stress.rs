//! Multi-threaded stress on object caches over fake physical memory.
//!
//! Seven caches share one `kpages` arena: small objects (8, 24, 64, 200
//! bytes), a `DEBUG` cache of 512-byte objects and bufctl objects (1024,
//! 3000 bytes), some `NOMAGAZINE`, some with counting constructors. Workers allocate from all of
//! them, write a canary over every object (derived from its address, its
//! cache and a serial number unique to the allocation, so two owners of one
//! object overwrite each other's canaries), verify it before freeing, and
//! hand objects to each other through a shared pool, so most frees happen on
//! another thread (and CPU slot) than the allocation, often after the
//! allocating thread has exited. Workers run in short-lived waves, so
//! `ThreadCpus` flushes exiting threads' magazines to the depots. A checker
//! thread meanwhile checks and reaps every cache.
//!
//! At the end everything is freed and every cache must agree with the
//! workers' own counts; after destroying the caches every constructed
//! object was destructed and `kpages` holds no slab.

mod common;

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;

use common::{with_caches_using, Counting, CONSTRUCTED};
use kmem_arena::Arena;
use kmem_magazine::{Cpu, ThreadCpus};
use kmem_physmem::{scale, seed, Rng};
use kmem_slab::{AllocFlags, Cache, CacheBuilder, CacheFlags, Caches};

const RAM: usize = 128 << 20;
/// Objects a worker holds at most.
const MAX_LIVE: usize = 64;
/// Objects the pool holds at most (more go in only at a worker's end).
const POOL_MAX: usize = 512;

/// One cache of the mix.
struct Spec {
    name: &'static str,
    size: usize,
    flags: CacheFlags,
    /// Has counting constructor/destructor ops.
    counted: bool,
}

const fn spec(name: &'static str, size: usize, flags: CacheFlags, counted: bool) -> Spec {
    Spec {
        name,
        size,
        flags,
        counted,
    }
}

const MIX: [Spec; 7] = [
    spec("s8", 8, CacheFlags::empty(), false),
    spec("s24", 24, CacheFlags::empty(), true),
    spec("s64-nomag", 64, CacheFlags::NOMAGAZINE, false),
    spec("s200", 200, CacheFlags::empty(), true),
    spec("d512-debug", 512, CacheFlags::DEBUG, true),
    spec("b1024-nomag", 1024, CacheFlags::NOMAGAZINE, true),
    spec("b3000", 3000, CacheFlags::empty(), false),
];

/// A live object as the workers know it.
#[derive(Clone, Copy, Debug)]
struct Obj {
    cache: usize,
    addr: usize,
    /// Unique per allocation.
    serial: u64,
}

/// The caches of one test and what the workers did to them.
struct Rig<'c, 'a> {
    caches: &'c [Cache<'a, ThreadCpus>],
    specs: &'c [Spec],
    allocs: Vec<AtomicU64>,
    frees: Vec<AtomicU64>,
    /// Objects handed between threads.
    pool: Mutex<Vec<Obj>>,
    serial: AtomicU64,
}

impl<'c, 'a> Rig<'c, 'a> {
    fn new(caches: &'c [Cache<'a, ThreadCpus>], specs: &'c [Spec]) -> Self {
        Self {
            caches,
            specs,
            allocs: specs.iter().map(|_| AtomicU64::new(0)).collect(),
            frees: specs.iter().map(|_| AtomicU64::new(0)).collect(),
            pool: Mutex::new(Vec::new()),
            serial: AtomicU64::new(1),
        }
    }

    /// The first canary word: word 0 of a counted object holds the
    /// constructor's tag.
    fn first_word(&self, cache: usize) -> usize {
        usize::from(self.specs[cache].counted)
    }

    fn words(&self, cache: usize) -> usize {
        self.caches[cache].size() / 8
    }

    fn canary(o: &Obj, word: usize) -> u64 {
        let a = (o.addr + 8 * word) as u64;
        a.rotate_left(13)
            ^ ((o.cache as u64 + 1) << 56)
            ^ o.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn alloc(&self, rng: &mut Rng) -> Obj {
        let cache = rng.below(self.caches.len() as u64) as usize;
        let c = &self.caches[cache];
        let counted = self.specs[cache].counted;
        let zero = !counted && rng.chance(1, 8);
        let flags = if zero {
            AllocFlags::ZERO
        } else {
            AllocFlags::empty()
        };
        let addr = c
            .alloc(flags)
            .unwrap_or_else(|e| panic!("cache {}: alloc failed: {e}", c.name()));
        self.allocs[cache].fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            addr % c.align(),
            0,
            "cache {}: misaligned {addr:#x}",
            c.name()
        );
        let o = Obj {
            cache,
            addr,
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
        };
        let p = addr as *mut u64;
        if counted {
            // SAFETY: a live object of at least 8 bytes, owned by the caller.
            let tag = unsafe { p.read_volatile() };
            assert_eq!(
                tag,
                CONSTRUCTED,
                "cache {}: {addr:#x} not constructed",
                c.name()
            );
        }
        for w in self.first_word(cache)..self.words(cache) {
            // SAFETY: `w < size / 8`: inside the live object, 8-aligned.
            unsafe {
                if zero {
                    assert_eq!(p.add(w).read_volatile(), 0, "{}: ZERO not zeroed", c.name());
                }
                p.add(w).write_volatile(Self::canary(&o, w));
            }
        }
        o
    }

    fn free(&self, o: Obj) {
        let c = &self.caches[o.cache];
        let p = o.addr as *mut u64;
        if self.specs[o.cache].counted {
            // SAFETY: a live object of at least 8 bytes, owned by the caller.
            let tag = unsafe { p.read_volatile() };
            assert_eq!(
                tag,
                CONSTRUCTED,
                "{}: {o:x?} lost its constructor tag",
                c.name()
            );
        }
        for w in self.first_word(o.cache)..self.words(o.cache) {
            // SAFETY: as in `alloc`.
            let got = unsafe { p.add(w).read_volatile() };
            assert_eq!(
                got,
                Self::canary(&o, w),
                "{}: {o:x?} overwritten at word {w}",
                c.name()
            );
        }
        // SAFETY: a live object of this cache, freed once (it left every
        // list of the workers when it was taken).
        unsafe { c.free(o.addr) }.unwrap_or_else(|e| panic!("free of {o:x?}: {e}"));
        self.frees[o.cache].fetch_add(1, Ordering::Relaxed);
    }

    /// A worker's run: `ops` random operations; at the end it hands all of
    /// its objects to the pool, for a later thread to free.
    fn work(&self, mut rng: Rng, ops: usize) {
        let mut mine: Vec<Obj> = Vec::with_capacity(MAX_LIVE);
        for _ in 0..ops {
            match rng.below(100) {
                0..=47 if mine.len() < MAX_LIVE => mine.push(self.alloc(&mut rng)),
                0..=81 => {
                    if !mine.is_empty() {
                        let i = rng.below(mine.len() as u64) as usize;
                        self.free(mine.swap_remove(i));
                    }
                }
                82..=90 => {
                    let mut pool = self.pool.lock().unwrap();
                    let n = rng
                        .range(1, 8)
                        .min(mine.len())
                        .min(POOL_MAX.saturating_sub(pool.len()));
                    for _ in 0..n {
                        let i = rng.below(mine.len() as u64) as usize;
                        pool.push(mine.swap_remove(i));
                    }
                }
                _ => {
                    let room = MAX_LIVE - mine.len();
                    let mut pool = self.pool.lock().unwrap();
                    let n = rng.range(1, 8).min(room).min(pool.len());
                    for _ in 0..n {
                        let i = rng.below(pool.len() as u64) as usize;
                        mine.push(pool.swap_remove(i));
                    }
                }
            }
        }
        self.pool.lock().unwrap().extend(mine);
    }

    /// Frees everything in the pool.
    fn free_pool(&self) {
        let left = core::mem::take(&mut *self.pool.lock().unwrap());
        for o in left {
            self.free(o);
        }
    }

    /// Checks every cache against the workers' counts: nothing in use,
    /// every allocation counted.
    fn check_balance(&self) {
        for (i, c) in self.caches.iter().enumerate() {
            let s = c.stats();
            let (a, f) = (
                self.allocs[i].load(Ordering::SeqCst),
                self.frees[i].load(Ordering::SeqCst),
            );
            assert_eq!(a, f, "cache {}: workers' allocs and frees differ", c.name());
            assert_eq!(s.allocs, a, "cache {}: allocs miscounted", c.name());
            assert_eq!(s.buf_in_use, 0, "cache {}: objects in use", c.name());
            assert_eq!(s.bad_frees, 0, "cache {}: a bad free", c.name());
            assert_eq!(s.alloc_fails, 0, "cache {}", c.name());
            assert_eq!(c.last_bad_free(), None, "cache {}", c.name());
            assert!(a > 0, "cache {}: never used", c.name());
            c.check()
                .unwrap_or_else(|e| panic!("cache {}: {e}", c.name()));
        }
    }
}

/// Bytes `a` has handed out.
fn allocated(a: &Arena<'_>) -> usize {
    a.amt_total() - a.amt_free()
}

/// Creates the mix's caches over `kpages`.
fn create<'s, 'a>(
    caches: &'s Caches<'a, ThreadCpus>,
    kpages: &'a Arena<'a>,
    specs: &[Spec],
    ops: &'a [Counting],
) -> Vec<Cache<'s, ThreadCpus>> {
    specs
        .iter()
        .zip(ops)
        .map(|(s, ops)| {
            let mut b = CacheBuilder::new(s.name, s.size)
                .flags(s.flags)
                .source(kpages);
            if s.counted {
                b = b.ops(ops);
            }
            caches.create(b).unwrap()
        })
        .collect()
}

/// The tests take turns: each wants both cores, and the wave test counts on
/// its workers getting exclusive slots.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `body(rig)` on fresh caches of `specs`, then frees what is left,
/// checks the balance, destroys the caches and checks that every object was
/// destructed and every slab given back.
fn with_rig(specs: &[Spec], body: impl FnOnce(&Rig<'_, '_>, &Arena<'_>)) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ops: Vec<Counting> = specs.iter().map(|_| Counting::default()).collect();
    with_caches_using(ops.as_slice(), RAM, |caches, kpages, ops| {
        let start = allocated(kpages);
        let handles = create(caches, kpages, specs, ops);
        let rig = Rig::new(&handles, specs);
        body(&rig, kpages);
        rig.free_pool();
        rig.check_balance();
        caches.for_each(|c| {
            c.check()
                .unwrap_or_else(|e| panic!("cache {}: {e}", c.name()))
        });
        kpages.check().unwrap();
        drop(rig);
        for c in handles {
            let name = c.name().to_owned();
            c.destroy()
                .unwrap_or_else(|e| panic!("cache {name}: destroy: {e}"));
        }
        for (s, o) in specs.iter().zip(ops) {
            let (ctors, dtors) = (
                o.ctors.load(Ordering::SeqCst),
                o.dtors.load(Ordering::SeqCst),
            );
            assert_eq!(ctors, dtors, "cache {}: constructed objects left", s.name);
            if s.counted {
                assert!(ctors > 0, "cache {}: constructor never ran", s.name);
            }
        }
        caches.for_each(|c| {
            c.reap();
        });
        kpages.check().unwrap();
        assert_eq!(allocated(kpages), start, "kpages: slabs leaked");
    });
}

/// Sets its flag when dropped, so a checker stops even when a worker's
/// panic unwinds the scope that would have stopped it.
struct StopOnDrop<'f>(&'f AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Checks (and now and then reaps) every cache until `done`.
fn checker(rig: &Rig<'_, '_>, kpages: &Arena<'_>, done: &AtomicBool) -> usize {
    let mut rounds = 0;
    while !done.load(Ordering::Relaxed) {
        for c in rig.caches {
            c.check()
                .unwrap_or_else(|e| panic!("cache {}: {e}", c.name()));
            if rounds % 4 == 0 {
                c.reap();
            }
        }
        kpages.check().unwrap();
        rounds += 1;
        thread::yield_now();
    }
    rounds
}

/// Objects of cache `i` in the pool.
fn pooled(rig: &Rig<'_, '_>, i: usize) -> u64 {
    rig.pool
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.cache == i)
        .count() as u64
}

#[test]
fn many_caches_threads_in_waves() {
    const WAVES: usize = 8;
    const THREADS: usize = 4;
    let ops = 60_000 * scale();
    let seed = seed(0x5eed_51ab);
    let cpus = ThreadCpus::global();
    with_rig(&MIX, |rig, kpages| {
        let done = AtomicBool::new(false);
        let on_shared = AtomicUsize::new(0);
        thread::scope(|s| {
            let check = s.spawn(|| checker(rig, kpages, &done));
            let stop = StopOnDrop(&done);
            for wave in 0..WAVES {
                let workers: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let rng = Rng::new(seed ^ (((wave * THREADS + t) as u64 + 1) << 32));
                        let on_shared = &on_shared;
                        s.spawn(move || {
                            if !cpus.pin().is_exclusive() {
                                on_shared.fetch_add(1, Ordering::Relaxed);
                            }
                            rig.work(rng, ops);
                        })
                    })
                    .collect();
                // A native join: the thread is gone, its thread-locals
                // dropped and its slot flushed.
                for w in workers {
                    w.join().unwrap();
                }
            }
            drop(stop);
            assert!(check.join().unwrap() > 0, "the checker never ran");
        });
        // Every worker exited: the magazines of their (exclusive) slots were
        // flushed to the depots, which reap empties. What stays out of the
        // slabs is exactly what the pool holds.
        if on_shared.load(Ordering::Relaxed) == 0 {
            for (i, c) in rig.caches.iter().enumerate() {
                c.reap();
                assert_eq!(
                    c.stats().slab_busy,
                    pooled(rig, i),
                    "cache {}: an exited thread's magazines were not flushed",
                    c.name()
                );
            }
        }
    });
}

#[test]
fn more_threads_than_exclusive_slots() {
    let cpus = ThreadCpus::global();
    let threads = cpus.exclusive_slots() + cpus.shared_slots() + 2;
    // The same work in all however many slots the machine has.
    let ops = (480_000 / threads).max(500) * scale();
    let seed = seed(0x51075);
    let specs = [
        spec("s64", 64, CacheFlags::empty(), false),
        spec("s200", 200, CacheFlags::empty(), true),
        spec("d512-debug", 512, CacheFlags::DEBUG, true),
        spec("b1024", 1024, CacheFlags::empty(), true),
        spec("b1024-nomag", 1024, CacheFlags::NOMAGAZINE, false),
    ];
    with_rig(&specs, |rig, kpages| {
        let barrier = Barrier::new(threads);
        let shared = AtomicUsize::new(0);
        let done = AtomicBool::new(false);
        thread::scope(|s| {
            let check = s.spawn(|| checker(rig, kpages, &done));
            let stop = StopOnDrop(&done);
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (barrier, shared) = (&barrier, &shared);
                    let rng = Rng::new(seed ^ ((t as u64 + 1) << 32));
                    s.spawn(move || {
                        // Claim a slot, and keep it until every thread has one.
                        if !cpus.pin().is_exclusive() {
                            shared.fetch_add(1, Ordering::Relaxed);
                        }
                        barrier.wait();
                        rig.work(rng, ops);
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            drop(stop);
            check.join().unwrap();
        });
        let shared = shared.load(Ordering::Relaxed);
        assert!(
            shared >= threads - cpus.exclusive_slots(),
            "only {shared} of {threads} threads on shared slots"
        );
    });
}

/// Statistics are read while objects allocated on one slot are freed on
/// another: `buf_in_use` is a racy snapshot, but must not underflow.
#[test]
fn stats_while_objects_cross_slots() {
    let specs = [
        spec("s64", 64, CacheFlags::empty(), false),
        spec("b1024", 1024, CacheFlags::empty(), false),
    ];
    let rounds = 100_000 * scale();
    with_rig(&specs, |rig, _| {
        let done = AtomicBool::new(false);
        thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Obj>(64);
            let producer = s.spawn(move || {
                let mut rng = Rng::new(seed(7));
                for _ in 0..rounds {
                    tx.send(rig.alloc(&mut rng)).unwrap();
                }
            });
            let consumer = s.spawn(move || {
                for o in rx {
                    rig.free(o);
                }
            });
            let stop = StopOnDrop(&done);
            let reader = s.spawn(|| {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    for c in rig.caches {
                        let st = c.stats();
                        assert!(st.buf_in_use <= 1 << 20, "{}: {st:?}", c.name());
                    }
                    reads += 1;
                }
                reads
            });
            producer.join().unwrap();
            consumer.join().unwrap();
            drop(stop);
            assert!(reader.join().unwrap() > 0);
        });
    });
}
