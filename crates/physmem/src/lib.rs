//! Fake physical memory and a kernel-style boot of kmem arenas, for std
//! tests, benchmarks and demos.
//!
//! [`PhysMem`] is a page-aligned, zeroed region of ordinary process memory
//! standing in for a machine's RAM. [`PhysMem::base_arena`] builds a
//! self-sufficient base arena over it, and [`boot`] then builds a page arena
//! sourced from the base, as a kernel's early memory setup does. The shared
//! test kit ([`Rng`], [`scale`], the helpers of [`kit`] and [`faults`])
//! lives here too, so every test and benchmark uses the same generator,
//! length knob and helpers. [`model::ArenaModel`] is a
//! simple, slow reference model of an arena that randomized tests (and
//! fuzzers) compare arenas with.
//!
//! ```
//! use kmem_arena::Policy;
//! use kmem_physmem::{boot, PhysMem, PAGE_SIZE};
//!
//! let ram = PhysMem::new(16 << 20);
//! boot(&ram, |base, kpages| {
//!     let page = kpages.alloc(PAGE_SIZE, Policy::InstantFit).unwrap();
//!     assert!(ram.contains(page, PAGE_SIZE));
//!     // SAFETY: allocated above with this size, not used after.
//!     unsafe { kpages.free_memory(page, PAGE_SIZE) }.unwrap();
//!     base.check().unwrap();
//! });
//! ```

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use std::alloc::{alloc_zeroed, dealloc};

use kmem_arena::Arena;

pub mod faults;
pub mod kit;
pub mod model;
mod rng;
pub use rng::{scale, seed, Rng};

/// What tests leak on purpose (`'static` stacks), kept reachable so that
/// LeakSanitizer does not report it.
static LEAKED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// Leaks `value` for the rest of the test binary, reachable (for
/// LeakSanitizer) from a process-wide list: for a test that needs a
/// `'static` stack or layer.
pub fn leak<T>(value: T) -> &'static T {
    let r: &'static T = Box::leak(Box::new(value));
    LEAKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(core::ptr::from_ref(r) as usize);
    r
}

/// Runs the tests of a binary that take it one at a time (hold the guard
/// for the test): for tests over process-wide state, such as the
/// `ThreadCpus` slots every thread of the process shares, or counters.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`leak`] for a value the test goes on changing (a slot array handed to
/// a layer as `&'static mut`).
pub fn leak_mut<T>(value: T) -> &'static mut T {
    let r: &'static mut T = Box::leak(Box::new(value));
    LEAKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(core::ptr::from_mut(r) as usize);
    r
}

/// The page size of the fake machine.
pub const PAGE_SIZE: usize = 4096;

/// A page-aligned region of zeroed memory posing as physical memory.
pub struct PhysMem {
    ptr: NonNull<u8>,
    layout: Layout,
    /// A base arena was built over the region: it is not the kit's any more.
    given: AtomicBool,
}

// SAFETY: PhysMem owns its region exclusively; arenas built over it hand out
// parts of it under their own locks.
unsafe impl Send for PhysMem {}
// SAFETY: `&PhysMem` only exposes the region's address and length.
unsafe impl Sync for PhysMem {}

impl PhysMem {
    /// Allocates `bytes` (rounded up to whole pages) of zeroed memory.
    ///
    /// # Panics
    /// Panics if `bytes` is zero or the process is out of memory.
    pub fn new(bytes: usize) -> Self {
        assert!(bytes > 0, "kmem-physmem: empty memory");
        let layout = Layout::from_size_align(bytes.next_multiple_of(PAGE_SIZE), PAGE_SIZE)
            .expect("kmem-physmem: size overflows");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).expect("kmem-physmem: out of memory");
        Self {
            ptr,
            layout,
            given: AtomicBool::new(false),
        }
    }

    /// Address of the first byte.
    pub fn start(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Always false: a `PhysMem` has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when `[addr, addr + size)` lies inside the region.
    pub fn contains(&self, addr: usize, size: usize) -> bool {
        addr >= self.start()
            && addr
                .checked_add(size)
                .is_some_and(|e| e <= self.start() + self.len())
    }

    /// The whole region as bytes, for a boot that takes its memory as a
    /// slice (`kmalloc::boot`).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the region is valid, initialized (zeroed) memory owned by
        // `self`, and `&mut self` makes this the only access for the
        // borrow's length.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len()) }
    }

    /// A self-sufficient base arena over the whole region. The region goes
    /// to one base arena only: a second call panics.
    ///
    /// # Panics
    /// Panics if `quantum` is not a multiple of 8, or does not divide the
    /// region's length, or if a base arena was built over the region before.
    pub fn base_arena(&self, name: &str, quantum: usize) -> Arena<'_> {
        assert!(
            !self.given.swap(true, Ordering::AcqRel),
            "kmem-physmem: the region already has a base arena"
        );
        // SAFETY: the region is exclusively owned by `self` and outlives the
        // returned arena, which borrows `self`; `given` makes this the only
        // arena ever built over it, and nothing else accesses it.
        unsafe { Arena::new_base(name, self.start(), self.len(), quantum) }
            .expect("kmem-physmem: base arena refused the region")
    }
}

impl Drop for PhysMem {
    fn drop(&mut self) {
        // Arenas over it (AddressSanitizer builds) leave free parts
        // poisoned; the system allocator gets it back clean.
        kmem_arena::asan::unpoison(self.start(), self.len());
        // SAFETY: allocated in `new` with this layout; arenas over it borrow
        // `self`, so none outlives this point.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Boots the memory stack over `ram` as a kernel does: a base arena over all
/// of it (page quantum, carving its own tags), then a `kpages` arena sourced
/// from the base with its tags from the base; runs `f(base, kpages)`, then
/// checks both arenas and destroys `kpages`.
///
/// # Panics
/// Panics if either arena fails its consistency check afterwards.
pub fn boot<R>(ram: &PhysMem, f: impl FnOnce(&Arena<'_>, &Arena<'_>) -> R) -> R {
    let base = ram.base_arena("base", PAGE_SIZE);
    let mut kpages = Arena::builder("kpages")
        .quantum(PAGE_SIZE)
        .source(&base)
        .tags_from(&base)
        .build()
        .expect("kmem-physmem: kpages arena");
    let r = f(&base, &kpages);
    kpages.check().expect("kmem-physmem: kpages check");
    base.check().expect("kmem-physmem: base check");
    let _ = kpages.destroy();
    r
}
