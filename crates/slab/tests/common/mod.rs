//! Shared kit of the slab tests: a booted machine with caches, and object
//! operations that count and can be told to fail.
#![allow(dead_code, unreachable_pub)]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kmem_arena::Arena;
use kmem_magazine::{Cpu, ThreadCpus};
use kmem_physmem::{boot, PhysMem};
use kmem_slab::{AllocFlags, Caches, CtorError, ObjectOps};

/// Boots `mem` bytes of fake RAM (base + kpages arenas), builds `Caches`
/// on `cpu`, runs `f(caches, kpages)`, then checks every cache and both
/// arenas.
pub fn with_caches_on<C: Cpu, R>(
    cpu: &C,
    mem: usize,
    f: impl FnOnce(&Caches<'_, C>, &Arena<'_>) -> R,
) -> R {
    let ram = PhysMem::new(mem);
    boot(&ram, |base, kpages| {
        let caches = Caches::new(base, cpu).expect("bootstrap caches");
        let r = f(&caches, kpages);
        caches.for_each(|c| {
            c.check()
                .unwrap_or_else(|e| panic!("cache {}: {e}", c.name()))
        });
        drop(caches);
        kpages.check().expect("kpages check");
        r
    })
}

/// [`with_caches_on`] with the std platform.
pub fn with_caches<R>(mem: usize, f: impl FnOnce(&Caches<'_, ThreadCpus>, &Arena<'_>) -> R) -> R {
    with_caches_on(ThreadCpus::global(), mem, f)
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
