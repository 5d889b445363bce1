//! Regression tests for the soundness review's findings (S1-S16 in
//! RELIABILITY.md) that stay legal calls after the fix: each did something
//! undefined, deadlocked, panicked or leaked before it. The findings whose fix
//! makes the misuse fail to compile (S2b, S4, S5, S6, S9) are `compile_fail`
//! examples in the crate docs (`kmalloc::soundness`); the fork and signal
//! findings (S11, S13) have test programs of their own (`fork.rs`,
//! `signal.rs`), since each needs kmalloc as its global allocator.

mod common;

use core::alloc::Layout;
use core::panic::AssertUnwindSafe;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::collections::BTreeSet;
use std::panic::catch_unwind;
use std::sync::{Mutex, PoisonError};

use allocator_api2::vec::Vec as ApiVec;
use common::with_kmalloc;
use kmalloc::{boot, AllocError, Config, Kmalloc};
use kmem_arena::{AllocError as ArenaAllocError, Arena, CreateError as ArenaCreateError};
use kmem_arena::{FreeError as ArenaFreeError, Policy, Source};
use kmem_magazine::{Cpu, CpuGuard, ManualCpus, Section, SlotHook, ThreadCpus};
use kmem_physmem::PhysMem;
use kmem_slab::{
    AllocFlags, BadFree, CacheBuilder, Caches, CreateError, CtorError, DestroyError, ObjectOps,
};

type V<'k, 'a, T> = ApiVec<T, &'k Kmalloc<'a, ThreadCpus>>;

const PAGE: usize = 4096;

/// Fake RAM of `bytes` bytes, its base arena (4 KiB quantum) and a
/// `Caches` set over it on the std platform (`Caches::new`: no exit
/// hooks); `env` (object operations, say) was made before them and so
/// outlives them. Runs `f(base, caches, env)`, then drops the set.
fn with_set<E: ?Sized, R>(
    bytes: usize,
    env: &E,
    f: impl for<'a> FnOnce(&'a Arena<'a>, &Caches<'a, ThreadCpus>, &'a E) -> R,
) -> R {
    let ram = PhysMem::new(bytes);
    let base = ram.base_arena("base", PAGE);
    let caches = Caches::new(&base, ThreadCpus::global()).unwrap();
    f(&base, &caches, env)
}

/// A thread that holds a slot exits: the platform's exit hooks run.
fn exit_a_pinned_thread() {
    std::thread::spawn(|| {
        let guard = ThreadCpus::global().pin();
        assert!(guard.slot() < ThreadCpus::global().slots());
    })
    .join()
    .unwrap();
}

/// Boots a stack over 16 MiB, runs `f`, then scribbles over the memory,
/// gives it back and lets a thread that holds a slot exit: a hook left
/// behind into the memory would run on the scribbles.
fn boot_forget_and_exit(f: impl FnOnce(&Kmalloc<'_, ThreadCpus>)) {
    let mut mem = vec![0u8; 16 << 20];
    boot(&mut mem, ThreadCpus::global(), &Config::default(), f).unwrap();
    mem.fill(0xAA);
    drop(mem);
    exit_a_pinned_thread();
}

/// S1: the stack's own memory arenas refuse safe frees, so safe code can no
/// longer give away a page a cache uses, nor free a page twice.
#[test]
fn s1_memory_arenas_refuse_safe_frees() {
    with_kmalloc(16 << 20, |k| {
        let mut a: V<'_, '_, u64> = V::with_capacity_in(8, k);
        a.push(1);
        let slab = a.as_ptr() as usize & !(PAGE - 1);
        assert_eq!(
            k.pages().free(slab, PAGE),
            Err(ArenaFreeError::MemoryArena { addr: slab })
        );
        let mut b: V<'_, '_, u64> = V::with_capacity_in(16, k);
        b.push(42);
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_eq!(a[0], 1);

        let p = k.pages().alloc(PAGE, Policy::InstantFit).unwrap();
        assert_eq!(
            k.pages().free(p, PAGE),
            Err(ArenaFreeError::MemoryArena { addr: p })
        );
        let base = k.caches().base();
        let q = base.alloc(PAGE, Policy::InstantFit).unwrap();
        assert_eq!(
            base.xfree(q, PAGE),
            Err(ArenaFreeError::MemoryArena { addr: q })
        );
        // SAFETY: allocated above with these sizes, not used after.
        unsafe {
            k.pages().free_memory(p, PAGE).unwrap();
            base.free_memory(q, PAGE).unwrap();
        }
        // A double free through the unsafe call is still checked where the
        // checks are (here the kpages quantum caches, at their slab layer).
        let x = k.pages().alloc(PAGE, Policy::InstantFit).unwrap();
        let y = k.pages().alloc(PAGE, Policy::InstantFit).unwrap();
        assert_ne!(x, y);
        // SAFETY: allocated above, not used after.
        unsafe {
            k.pages().free_memory(x, PAGE).unwrap();
            k.pages().free_memory(y, PAGE).unwrap();
        }
    });
}

/// S1: arenas of integers keep their safe, checked `free`.
#[test]
fn s1_integer_arenas_keep_a_safe_free() {
    let ram = PhysMem::new(1 << 20);
    let base = ram.base_arena("base", PAGE);
    let ids = Arena::builder("ids")
        .quantum(1)
        .span(1, 1000)
        .tags_from(&base)
        .build()
        .unwrap();
    let id = ids.alloc(1, Policy::InstantFit).unwrap();
    ids.free(id, 1).unwrap();
    assert_eq!(
        ids.free(id, 1),
        Err(ArenaFreeError::NotAllocated { addr: id })
    );
}

/// S2a: a leaked cache handle (`mem::forget`) is withdrawn from the
/// platform when its `Caches` goes away, so a thread exit after the memory
/// was handed back does not call into it.
#[test]
fn s2_a_forgotten_cache_leaves_no_hook_behind() {
    boot_forget_and_exit(|k| {
        let c = k.caches().create(CacheBuilder::new("leaked", 64)).unwrap();
        let obj = c.alloc(AllocFlags::empty()).unwrap();
        // SAFETY: allocated above; put into this thread's magazine, so the
        // cache has per-slot state a thread-exit hook would flush.
        unsafe { c.free(obj) }.unwrap();
        core::mem::forget(c);
    });
}

/// An arena of IDs 1..2^20 with quantum caches, its tags from `base`.
fn ids_over<'q>(
    base: &'q Arena<'q>,
    qc: &'q dyn kmem_arena::QuantumCaches,
) -> Result<Arena<'q>, ArenaCreateError> {
    Arena::builder("ids")
        .quantum(1)
        .span(1, 1 << 20)
        .tags_from(base)
        .qcaches(qc)
        .build()
}

/// S2a, the quantum-cache path: a bad free sitting in a magazine no longer
/// makes the counters say "nothing live", so `destroy` refuses rather than
/// tearing down a cache that is still in use and leaking its hook.
#[test]
fn s2_quantum_cache_destroy_counts_live_objects_from_the_slabs() {
    with_set(8 << 20, &(), |base, caches, ()| {
        let qc = caches
            .qcaches("ids", 1, 4, kmem_slab::ArenaValues::Integers)
            .unwrap();
        let mut ids = ids_over(base, &qc).unwrap();
        let live = ids.alloc(1, Policy::InstantFit).unwrap();
        // A bogus free of a value the caches never handed out: refused at
        // once (quantum caches check every free before their magazines).
        assert_eq!(
            ids.free(live + 1000, 1),
            Err(kmem_arena::FreeError::Cached { addr: live + 1000 })
        );
        assert_eq!(
            ids.destroy(),
            Err(kmem_arena::DestroyError::LiveCachedObjects { count: 1 })
        );
        ids.free(live, 1).unwrap();
        ids.destroy().unwrap();
    });
    exit_a_pinned_thread();
}

/// S3: `QCaches::stats` copies the statistics out before calling back, so
/// a callback that destroys the arena (and with it the caches) reads
/// nothing freed, and caches created meanwhile are not reported.
#[test]
fn s3_qcache_stats_survive_a_destroy_from_the_callback() {
    with_set(8 << 20, &(), |base, caches, ()| {
        let qc = caches
            .qcaches("ids", 1, 4, kmem_slab::ArenaValues::Integers)
            .unwrap();
        let mut ids = ids_over(base, &qc).unwrap();
        let mut seen = Vec::new();
        let mut impostors = Vec::new();
        qc.stats(|st| {
            seen.push(st.name.as_str().to_owned());
            if seen.len() == 1 {
                ids.destroy().unwrap();
                for i in 0..3 {
                    let name = format!("impostor{i}");
                    impostors.push(caches.create(CacheBuilder::new(&name, 64)).unwrap());
                }
            }
        });
        assert_eq!(seen, ["ids_1", "ids_2", "ids_3", "ids_4"]);
        assert_eq!(qc.in_use(), 0);
        let mut after = 0;
        qc.stats(|_| after += 1);
        assert_eq!(after, 0, "destroyed caches are gone from the list");
        memory_qcaches_over_ids_are_refused(base, caches);
    });
}

/// S7: a page arena whose quantum is not a power of two still gives every
/// large request its alignment.
#[test]
fn s7_non_power_of_two_page_quantum_keeps_alignment() {
    const Q: usize = 3 * PAGE;
    // `Kmalloc::new` borrows its `Caches` for as long as the allocator
    // lives (`boot` places them together); here they are leaked. The pages
    // are a base arena of their own with the 12 KiB quantum, over memory
    // that starts at a multiple of it.
    let ram: &'static PhysMem = Box::leak(Box::new(PhysMem::new(8 << 20)));
    let base: &'static Arena<'static> = Box::leak(Box::new(ram.base_arena("base", PAGE)));
    let ram12k: &'static PhysMem = Box::leak(Box::new(PhysMem::new(Q * 2049)));
    let start = ram12k.start().next_multiple_of(Q);
    // SAFETY: `Q * 2048` bytes of `ram12k` from a multiple of `Q`: inside
    // it (it has one `Q` to spare), leaked (so it outlives the arena), and
    // used by nothing else.
    let pages = unsafe { Arena::new_base("pages12k", start, Q * 2048, Q) }.unwrap();
    let pages: &'static Arena<'static> = Box::leak(Box::new(pages));
    let caches = Box::leak(Box::new(Caches::new(base, ThreadCpus::global()).unwrap()));
    let k = Kmalloc::new(caches, pages).unwrap();
    for align in [PAGE, 2 * PAGE, 8 * PAGE, 16 * PAGE] {
        let l = Layout::from_size_align(40_000, align).unwrap();
        let ps: Vec<_> = (0..6)
            .map(|i| {
                // Vary what sits below, so alignment is not luck.
                let pad = pages.alloc(Q * (i % 2 + 1), Policy::InstantFit).unwrap();
                // (A 12 KiB run below each request shifts its page parity.)
                (k.alloc(l).unwrap(), pad, Q * (i % 2 + 1))
            })
            .collect();
        for &(p, pad, n) in &ps {
            assert_eq!(p.as_ptr() as usize % align, 0, "align {align}");
            // SAFETY: allocated above with these layouts, not used after.
            unsafe {
                k.free(p, l).unwrap();
                pages.free_memory(pad, n).unwrap();
            }
        }
    }
    drop(k);
}

/// S8: a second base arena over the same fake RAM is refused.
#[test]
#[should_panic(expected = "already has a base arena")]
fn s8_one_base_arena_per_physmem() {
    let ram = PhysMem::new(1 << 20);
    let _a = ram.base_arena("a", PAGE);
    let _b = ram.base_arena("b", PAGE);
}

/// A platform that forwards to `ManualCpus` but panics on demand: in
/// `pin` (a panic inside the allocator) or after `unregister` (a panic in
/// a teardown step).
struct Panicky {
    inner: ManualCpus<1>,
    panic_in_pin: AtomicBool,
    panic_in_unregister: AtomicBool,
    /// Addresses of the hooks registered now (as a real platform's list:
    /// withdrawing a hook that is not there does nothing).
    registered: Mutex<BTreeSet<usize>>,
}

impl Panicky {
    const fn new() -> Self {
        Self {
            inner: ManualCpus::new(),
            panic_in_pin: AtomicBool::new(false),
            panic_in_unregister: AtomicBool::new(false),
            registered: Mutex::new(BTreeSet::new()),
        }
    }

    fn registered(&self) -> usize {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

// SAFETY: every guard and slot comes from `ManualCpus`; hooks are counted,
// never called.
unsafe impl Cpu for Panicky {
    type Guard<'a> = kmem_magazine::ManualGuard<'a>;

    fn slots(&self) -> usize {
        self.inner.slots()
    }

    fn pin(&self) -> Self::Guard<'_> {
        assert!(
            !self.panic_in_pin.load(Ordering::SeqCst),
            "test: panic in pin"
        );
        self.inner.pin()
    }

    fn now_ns(&self) -> u64 {
        self.inner.now_ns()
    }

    unsafe fn register(&self, hook: &SlotHook) {
        let mut set = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.insert(ptr::from_ref(hook) as usize);
    }

    fn unregister(&self, hook: &SlotHook) {
        let mut set = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        set.remove(&(ptr::from_ref(hook) as usize));
        drop(set);
        if self.panic_in_unregister.swap(false, Ordering::SeqCst) {
            panic!("test: panic in unregister");
        }
    }
}

/// S10: `boot`'s teardown is panic-safe: when its first step (dropping the
/// class caches) panics, the later steps still run, so no hook stays
/// registered with the platform once the memory goes back.
#[test]
fn s10_boot_teardown_survives_a_panicking_step() {
    static CPUS: Panicky = Panicky::new();
    let mut mem = vec![0u8; 16 << 20];
    let r = catch_unwind(AssertUnwindSafe(|| {
        boot(&mut mem, &CPUS, &Config::default(), |k| {
            let l = Layout::from_size_align(64, 8).unwrap();
            let p = k.alloc(l).unwrap();
            // SAFETY: allocated above.
            unsafe { k.free(p, l) }.unwrap();
            assert!(CPUS.registered() > 80);
            CPUS.panic_in_unregister.store(true, Ordering::SeqCst);
        })
    }));
    assert!(r.is_err(), "the teardown's panic propagates");
    assert_eq!(
        CPUS.registered(),
        0,
        "every step after the panicking one ran"
    );
}

/// S10: a panic inside the allocator never unwinds out of `GlobalAlloc` or
/// `Allocator`: the process aborts. Run in a child process (this test binary
/// again, filtered to the body below), which must die of SIGABRT after
/// printing the panic.
#[test]
fn s10_a_panic_inside_global_alloc_aborts() {
    if std::env::var_os("KMEM_PANIC_CHILD").is_some() {
        return;
    }
    for which in ["global", "allocator"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "panicking_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KMEM_PANIC_CHILD", which)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc_sigabrt()),
            "{which}: {:?}\n{err}",
            out.status
        );
        assert!(err.contains("test: panic in pin"), "{which}: {err}");
        assert!(err.contains("cannot unwind"), "{which}: {err}");
        assert!(!err.contains("unwound"), "{which}: {err}");
    }
}

fn libc_sigabrt() -> i32 {
    6
}

/// The child of the test above (does nothing unless asked to).
#[test]
fn panicking_child() {
    let Some(which) = std::env::var_os("KMEM_PANIC_CHILD") else {
        return;
    };
    static CPUS: Panicky = Panicky::new();
    let mut mem = vec![0u8; 16 << 20];
    let r = catch_unwind(AssertUnwindSafe(|| {
        boot(&mut mem, &CPUS, &Config::default(), |k| {
            let l = Layout::from_size_align(64, 8).unwrap();
            CPUS.panic_in_pin.store(true, Ordering::SeqCst);
            if which == "global" {
                // SAFETY: a valid layout; the result is not used.
                let _ = unsafe { core::alloc::GlobalAlloc::alloc(k, l) };
            } else {
                let _ = allocator_api2::alloc::Allocator::allocate(&k, l);
            }
        })
    }));
    // Reached only if the panic unwound out of the allocator.
    eprintln!("unwound: {}", r.is_err());
}

/// Object operations whose constructor or destructor panics on demand.
#[derive(Default)]
struct PanickyOps {
    ctor_panics: AtomicBool,
    dtor_panics: AtomicBool,
    ctors: AtomicUsize,
    dtors: AtomicUsize,
}

impl ObjectOps for PanickyOps {
    fn construct(&self, _obj: usize, _flags: AllocFlags) -> Result<(), CtorError> {
        assert!(
            !self.ctor_panics.swap(false, Ordering::SeqCst),
            "test: constructor panics"
        );
        self.ctors.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn destruct(&self, _obj: usize) {
        self.dtors.fetch_add(1, Ordering::SeqCst);
        assert!(
            !self.dtor_panics.swap(false, Ordering::SeqCst),
            "test: destructor panics"
        );
    }
}

/// S14: a panicking constructor or destructor leaks nothing, and the cache
/// can still be destroyed.
#[test]
fn s14_panicking_object_operations_leak_nothing() {
    with_panicky(|c, ops| {
        ops.ctor_panics.store(true, Ordering::SeqCst);
        let r = catch_unwind(AssertUnwindSafe(|| c.alloc(AllocFlags::empty())));
        assert!(r.is_err());
        assert_eq!(c.stats().slab_busy, 0, "the object went back to its slab");
        c.check().unwrap();
        let objs: Vec<_> = (0..40)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        for &o in &objs {
            // SAFETY: allocated above, freed once.
            unsafe { c.free(o) }.unwrap();
        }
        c.flush_current();
        ops.dtor_panics.store(true, Ordering::SeqCst);
        let r = catch_unwind(AssertUnwindSafe(|| c.reap()));
        assert!(r.is_err(), "the destructor's panic propagates");
        c.check().unwrap();
        // Nothing was lost: every round is back in a slab or still cached, and
        // the cache can be destroyed.
        c.reap();
        assert_eq!(c.stats().slab_busy, 0);
        assert_eq!(
            ops.ctors.load(Ordering::SeqCst),
            ops.dtors.load(Ordering::SeqCst)
        );
    });
}

/// Runs `f` on a 64-byte cache with [`PanickyOps`] over a fresh base arena
/// (the S14 tests), then destroys the cache: nothing may be left live.
fn with_panicky(f: impl FnOnce(&kmem_slab::KmemCache<'_, ThreadCpus>, &PanickyOps)) {
    let ops = PanickyOps::default();
    with_set(8 << 20, &ops, |_, caches, ops| {
        let c = caches
            .create(CacheBuilder::new("panicky", 64).ops(ops))
            .unwrap();
        f(&c, ops);
        c.destroy()
            .map_err(|e: DestroyError<'_, ThreadCpus>| e.live)
            .unwrap();
    });
}

/// S12: `Caches::new` refuses a base arena with quantum caches, whose slot
/// would be pinned again by the magazine cache's growth (a deadlock on
/// `ManualCpus`).
#[test]
fn s12_base_with_quantum_caches_is_refused() {
    static CPUS: ManualCpus<1> = ManualCpus::new();
    let ram = PhysMem::new(32 << 20);
    let base = ram.base_arena("base", PAGE);
    let outer = Caches::new(&base, &CPUS).unwrap();
    let qc = outer
        .qcaches("kpages", PAGE, 8 * PAGE, kmem_slab::ArenaValues::Memory)
        .unwrap();
    let kpages = Arena::builder("kpages")
        .quantum(PAGE)
        .source(&base)
        .tags_from(&base)
        .qcaches(&qc)
        .build()
        .unwrap();
    assert!(matches!(
        Caches::new(&kpages, &CPUS),
        Err(CreateError::BaseQcaches)
    ));
}

/// S15: `Caches::new` refuses a base arena whose quantum is a multiple of
/// 8 but not a power of two (the bootstrap caches round addresses down to
/// their slab size).
#[test]
fn s15_non_power_of_two_base_quantum_is_refused() {
    for q in [4104, 3 * PAGE, 6 * PAGE] {
        let ram = PhysMem::new(q * 600);
        let start = ram.start().next_multiple_of(q);
        let len = (ram.start() + ram.len() - start) / q * q;
        // SAFETY: a quantum-aligned part of `ram`, which outlives the arena
        // and is used by nothing else.
        let base = unsafe { Arena::new_base("base", start, len, q) }.unwrap();
        assert!(
            matches!(
                Caches::new(&base, ThreadCpus::global()),
                Err(CreateError::BaseQuantum)
            ),
            "quantum {q}"
        );
    }
}

/// A source whose import quantum is 0.
struct ZeroQuantum;

// SAFETY: not a memory source (`is_memory` keeps its default, false).
unsafe impl Source for ZeroQuantum {
    fn import(&self, _size: usize) -> Result<usize, ArenaAllocError> {
        Ok(1 << 20)
    }
    unsafe fn release(&self, _base: usize, _size: usize) {}
    fn import_quantum(&self) -> usize {
        0
    }
}

/// S16: a source whose import quantum is 0 is refused when the arena is
/// built, instead of every allocation dividing by zero.
#[test]
fn s16_zero_import_quantum_is_refused() {
    let r = Arena::builder("ids")
        .quantum(1)
        .source(&ZeroQuantum)
        .build();
    assert!(matches!(r, Err(ArenaCreateError::SourceQuantum)));
}

/// S13, the mechanism without signals: inside an allocator operation of
/// this thread (a section, as a signal handler would find it), allocations
/// are refused and frees are deferred, never touching the slot; afterwards
/// the deferred objects come back.
#[test]
fn s13_nested_calls_are_refused_or_deferred() {
    with_kmalloc(16 << 20, |k| {
        let small = Layout::from_size_align(48, 8).unwrap();
        let large = Layout::from_size_align(100_000, 8).unwrap();
        let a = k.alloc(small).unwrap();
        let b = k.alloc(large).unwrap();
        // The first allocation loaded this CPU's magazine (batch refill),
        // from which a nested allocation may take (the slot is not busy):
        // emptied, so the calls below must go past the magazines.
        k.reap();
        let class = k.class_for(small).unwrap();
        let before = class.stats();
        {
            let _interrupted = Section::enter(ThreadCpus::global()).unwrap();
            assert_eq!(k.alloc(small), Err(AllocError::Reentrant));
            assert_eq!(k.alloc(large), Err(AllocError::Reentrant));
            // SAFETY: allocated above with these layouts, not used after.
            unsafe {
                k.free(a, small).unwrap();
                k.free(b, large).unwrap();
            }
            assert!(Section::enter(ThreadCpus::global()).is_none());
        }
        let after = class.stats();
        assert_eq!(after.reentrant, before.reentrant + 2);
        let mags = after.magazines.unwrap();
        assert_eq!(
            mags.deferred_frees,
            before.magazines.unwrap().deferred_frees + 1
        );
        // The deferred small object is handed out again once the slot's
        // loaded magazine runs dry.
        let got: Vec<_> = (0..200).map(|_| k.alloc(small).unwrap()).collect();
        assert!(got.contains(&a), "the deferred object came back");
        for p in got {
            // SAFETY: allocated above.
            unsafe { k.free(p, small) }.unwrap();
        }
        // The deferred large block is freed by the next large call.
        let c = k.alloc(large).unwrap();
        // SAFETY: allocated above.
        unsafe { k.free(c, large) }.unwrap();
        let (allocs, frees, _) = k.large_counts();
        assert_eq!(allocs, frees);
    });
}

/// S13, for a cache with constructed state: a nested free is refused
/// (the object stays the caller's), a nested allocation too.
#[test]
fn s13_nested_frees_of_constructed_objects_are_refused() {
    let ops = PanickyOps::default();
    with_set(8 << 20, &ops, |_, caches, ops| {
        let c = caches
            .create(CacheBuilder::new("ctor", 64).ops(ops))
            .unwrap();
        assert_nested_calls_refused(&c);
        c.flush_current();
        c.reap();
        c.destroy().map_err(|e| e.live).unwrap();
    });
}

/// Found while confining the slab layer's unsafe code: quantum caches told
/// (safely) that their values are memory would zero integer "addresses" on
/// an `AllocFlags::ZERO` allocation; an arena now refuses caches that
/// disagree with it, and quantum caches refuse `ZERO` anyway.
#[test]
fn quantum_caches_must_agree_with_their_arena_on_memory() {
    with_set(8 << 20, &(), |base, caches, ()| {
        memory_qcaches_over_ids_are_refused(base, caches);
    });
}

/// Quantum caches that say their values are memory: an arena of IDs over
/// `base` refuses them, and each of their 4 caches refuses a `ZERO`
/// allocation.
fn memory_qcaches_over_ids_are_refused<'a>(base: &'a Arena<'a>, caches: &Caches<'a, ThreadCpus>) {
    let lying = caches
        .qcaches("ids", 1, 4, kmem_slab::ArenaValues::Memory)
        .unwrap();
    let r = ids_over(base, &lying);
    assert!(matches!(r, Err(ArenaCreateError::QcacheMemory)));
    let mut zeroed = 0;
    caches.for_each(|c| {
        if c.name().starts_with("ids_") {
            assert_eq!(
                c.alloc(AllocFlags::ZERO),
                Err(kmem_slab::AllocError::NotMemory)
            );
            zeroed += 1;
        }
    });
    assert_eq!(zeroed, 4);
}

/// Found by the hostile review after the fixes: `Source::release` was safe,
/// so safe code could free a live segment of a memory arena (two live
/// `Vec`s on one buffer through `Kmalloc::pages()`) or unmap memory through
/// `OsPages`; it is `unsafe` now (a `compile_fail` example on `Source`
/// shows the misuse no longer compiles). And a leaked `Caches` (safe
/// `mem::forget`) left thread-exit hooks pointing into memory that was
/// reused: a set made by `Caches::new` registers none.
#[test]
fn a_forgotten_caches_set_leaves_no_hook_behind() {
    boot_forget_and_exit(|k| {
        let set = Caches::new(k.caches().base(), ThreadCpus::global()).unwrap();
        let c = set.create(CacheBuilder::new("leaked", 64)).unwrap();
        let obj = c.alloc(AllocFlags::empty()).unwrap();
        // SAFETY: allocated above, freed once (into this slot's magazine).
        unsafe { c.free(obj) }.unwrap();
        core::mem::forget(c);
        core::mem::forget(set);
    });
}

/// Found by the second review: a `NOMAGAZINE` cache knew no platform, so a
/// handler that interrupted its slab path could wait for its lock for ever.
/// Every created cache now gates its slab path on the context's section.
#[test]
fn nested_calls_on_a_cache_without_magazines_are_refused() {
    with_set(8 << 20, &(), |_, caches, ()| {
        let c = caches
            .create(CacheBuilder::new("nomag", 64).flags(kmem_slab::CacheFlags::NOMAGAZINE))
            .unwrap();
        assert_nested_calls_refused(&c);
        c.destroy().map_err(|e| e.live).unwrap();
    });
}

/// Inside an operation of this thread (as a signal handler finds it), an
/// allocation from `c` and a free to it are both refused (the object stays
/// the caller's); afterwards the free goes through.
fn assert_nested_calls_refused(c: &kmem_slab::KmemCache<'_, ThreadCpus>) {
    let obj = c.alloc(AllocFlags::empty()).unwrap();
    {
        let _interrupted = Section::enter(ThreadCpus::global()).unwrap();
        assert_eq!(
            c.alloc(AllocFlags::empty()),
            Err(kmem_slab::AllocError::Reentrant)
        );
        // SAFETY: allocated above; refused, so still ours.
        let e = unsafe { c.free(obj) }.unwrap_err();
        assert_eq!(e.kind, BadFree::Reentrant);
    }
    // SAFETY: still allocated (the nested free was refused).
    unsafe { c.free(obj) }.unwrap();
}

/// S14 with the upkeep pass instead of `reap`: a destructor that panics
/// while `tick` trims the depot loses nothing (the rest of its magazine's
/// rounds once were in neither a slab nor a magazine; found in review).
#[test]
fn s14_tick_with_a_panicking_destructor_loses_no_round() {
    with_panicky(|c, ops| {
        let objs: Vec<_> = (0..400)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        for &o in &objs {
            // SAFETY: allocated above, freed once.
            unsafe { c.free(o) }.unwrap();
        }
        c.flush_current();
        c.tick(); // ends the interval
        ops.dtor_panics.store(true, Ordering::SeqCst);
        let r = catch_unwind(AssertUnwindSafe(|| c.tick()));
        assert!(r.is_err(), "the destructor's panic propagates");
        c.check().unwrap();
        c.reap();
        let st = c.stats();
        assert_eq!(st.slab_busy, 0, "rounds lost by the panicking trim");
    });
}
