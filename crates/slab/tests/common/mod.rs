//! Shared kit of the slab tests: a booted machine with caches (and with an
//! arena of IDs), object operations that count and can be told to fail,
//! steps that create a cache or allocate and free many objects, and
//! (`faults`) the fault-injection tests' driver.
#![allow(dead_code, unreachable_pub)]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kmem_arena::Arena;
use kmem_magazine::{Cpu, ThreadCpus};
use kmem_physmem::{boot, PhysMem};
use kmem_slab::{
    AllocFlags, Cache, CacheBuilder, CacheFlags, Caches, CtorError, KmemCache, ObjectOps,
};

pub mod faults;

/// Boots `mem` bytes of fake RAM (base + kpages arenas) and runs
/// `f(base, kpages)`; both arenas are checked afterwards.
///
/// For tests whose caches use arenas built over the base: make them in `f`,
/// then build the caches with [`caches_over`], so that they outlive the
/// caches as `Caches` requires.
pub fn with_ram<R>(mem: usize, f: impl FnOnce(&Arena<'_>, &Arena<'_>) -> R) -> R {
    let ram = PhysMem::new(mem);
    boot(&ram, f)
}

/// Builds `Caches` over `base` on `cpu`, runs `f(caches)`, then checks
/// every cache and drops the set. Whatever the caches use (source arenas,
/// object operations) must exist before this call: it outlives the set.
pub fn caches_over<'a, C: Cpu, R>(
    base: &'a Arena<'a>,
    cpu: &'a C,
    f: impl FnOnce(&Caches<'a, C>) -> R,
) -> R {
    // SAFETY: the set is dropped at the end of this function (never leaked),
    // before the fake RAM of the base arena goes away. With the exit hooks,
    // an exiting thread's magazines go back to the depots.
    let caches = unsafe { Caches::with_exit_hooks(base, cpu) }.expect("bootstrap caches");
    let r = f(&caches);
    caches.for_each(|c| {
        c.check()
            .unwrap_or_else(|e| panic!("cache {}: {e}", c.name()))
    });
    r
}

/// Boots `mem` bytes of fake RAM (base + kpages arenas), builds `Caches`
/// on `cpu`, runs `f(caches, kpages)`, then checks every cache and both
/// arenas.
pub fn with_caches_on<C: Cpu, R>(
    cpu: &C,
    mem: usize,
    f: impl for<'a> FnOnce(&Caches<'a, C>, &'a Arena<'a>) -> R,
) -> R {
    with_caches_using_on(cpu, &(), mem, |caches, kpages, ()| f(caches, kpages))
}

/// [`with_caches_on`] with the std platform.
pub fn with_caches<R>(
    mem: usize,
    f: impl for<'a> FnOnce(&Caches<'a, ThreadCpus>, &'a Arena<'a>) -> R,
) -> R {
    with_caches_on(ThreadCpus::global(), mem, f)
}

/// [`with_caches_on`] for caches that use `env` (object operations, say),
/// which the caller made before and which so outlives the caches: `f` gets
/// it back as `f(caches, kpages, env)`, borrowed for the caches' lifetime.
pub fn with_caches_using_on<C: Cpu, E: ?Sized, R>(
    cpu: &C,
    env: &E,
    mem: usize,
    f: impl for<'a> FnOnce(&Caches<'a, C>, &'a Arena<'a>, &'a E) -> R,
) -> R {
    with_ram(mem, |base, kpages| {
        let r = caches_over(base, cpu, |caches| f(caches, kpages, env));
        kpages.check().expect("kpages check");
        r
    })
}

/// [`with_caches_using_on`] with the std platform.
pub fn with_caches_using<E: ?Sized, R>(
    env: &E,
    mem: usize,
    f: impl for<'a> FnOnce(&Caches<'a, ThreadCpus>, &'a Arena<'a>, &'a E) -> R,
) -> R {
    with_caches_using_on(ThreadCpus::global(), env, mem, f)
}

/// An arena of IDs `[start, start + len)` (quantum 1: not memory), its
/// tags from `base`.
pub fn id_arena<'a>(base: &'a Arena<'a>, (start, len): (usize, usize)) -> Arena<'a> {
    Arena::builder("ids")
        .quantum(1)
        .span(start, len)
        .tags_from(base)
        .build()
        .unwrap()
}

/// [`with_caches`] with an [`id_arena`] `[start, start + len)` over the
/// base arena, made before the caches (which may use it as a source, so it
/// must outlive them): runs `f(caches, kpages, ids)`, then checks every
/// cache and the kpages arena.
pub fn with_ids<R>(
    mem: usize,
    span: (usize, usize),
    f: impl for<'a> FnOnce(&Caches<'a, ThreadCpus>, &'a Arena<'a>, &'a Arena<'a>) -> R,
) -> R {
    with_ram(mem, |base, kpages| {
        let ids = id_arena(base, span);
        let r = caches_over(base, ThreadCpus::global(), |caches| f(caches, kpages, &ids));
        kpages.check().expect("kpages check");
        r
    })
}

/// Creates cache `name` of `size`-byte objects with `flags` over `source`,
/// its objects constructed by `ops`.
pub fn create_with_ops<'s, 'a, C: Cpu>(
    caches: &'s Caches<'a, C>,
    name: &str,
    (size, flags): (usize, CacheFlags),
    source: &'a Arena<'a>,
    ops: &'a dyn ObjectOps,
) -> Cache<'s, C> {
    caches
        .create(
            CacheBuilder::new(name, size)
                .flags(flags)
                .source(source)
                .ops(ops),
        )
        .unwrap()
}

/// Allocates `n` objects from `c` with `flags`; every allocation must
/// succeed.
pub fn alloc_n<C: Cpu>(c: &KmemCache<'_, C>, n: usize, flags: AllocFlags) -> Vec<usize> {
    (0..n).map(|_| c.alloc(flags).unwrap()).collect()
}

/// Frees every object of `objs` to `c` (every free must succeed), then
/// checks the cache.
///
/// # Safety
///
/// Each object of `objs` was allocated from `c`, is freed nowhere else, and
/// is not used after this call.
pub unsafe fn free_all<C: Cpu>(c: &KmemCache<'_, C>, objs: impl IntoIterator<Item = usize>) {
    for o in objs {
        // SAFETY: the caller's promise.
        unsafe { c.free(o) }.unwrap();
    }
    c.check().unwrap();
}

/// Counts constructions and destructions; fails constructions on demand.
/// Writes a tag into constructed objects and checks it on destruction.
#[derive(Default)]
pub struct Counting {
    pub ctors: AtomicUsize,
    pub dtors: AtomicUsize,
    pub fail: AtomicBool,
    pub seen_flags: AtomicUsize,
}

pub const CONSTRUCTED: u64 = 0xC0_5E_C7_ED;

impl Counting {
    pub fn live_constructed(&self) -> usize {
        self.ctors.load(Ordering::SeqCst) - self.dtors.load(Ordering::SeqCst)
    }
}

impl ObjectOps for Counting {
    fn construct(&self, obj: usize, flags: AllocFlags) -> Result<(), CtorError> {
        self.seen_flags
            .store(flags.bits() as usize, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(CtorError);
        }
        // SAFETY: tests give these ops to memory caches of >= 8-byte objects.
        unsafe { (obj as *mut u64).write(CONSTRUCTED) };
        self.ctors.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn destruct(&self, obj: usize) {
        // SAFETY: as in `construct`.
        let tag = unsafe { (obj as *const u64).read() };
        assert_eq!(tag, CONSTRUCTED, "destructing an unconstructed object");
        self.dtors.fetch_add(1, Ordering::SeqCst);
    }
}

#[allow(unused_imports, reason = "not every test binary leaks a stack")]
pub use kmem_physmem::leak;

/// A `'static` stack: fake RAM, its base arena, a page arena of at most
/// `pages` pages over it, and caches over the base on `ThreadCpus`.
pub fn limited_stack(
    pages: usize,
) -> (
    &'static Arena<'static>,
    &'static Caches<'static, ThreadCpus>,
) {
    let ram: &'static PhysMem = leak(PhysMem::new(16 << 20));
    let base: &'static Arena<'static> = leak(ram.base_arena("base", 64));
    let small: &'static Arena<'static> = leak(
        Arena::builder("small")
            .quantum(4096)
            .source(base)
            .tags_from(base)
            .build()
            .unwrap(),
    );
    small.set_limit(Some(pages * 4096));
    let caches = leak(Caches::new(base, ThreadCpus::global()).unwrap());
    (small, caches)
}
