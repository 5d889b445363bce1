//! Fake RAM that costs only what is touched.
//!
//! [`PhysMem`](kmem_physmem::PhysMem) allocates page-aligned zeroed memory,
//! which the system allocator can only zero by writing every page; for a
//! fuzzer that boots a machine per input that was most of the time spent.
//! [`Ram`] takes its memory from `calloc` (fresh pages, zeroed by the
//! kernel when first touched) and aligns the start itself; [`Ram::boot`]
//! builds the same machine as [`kmem_physmem::boot`].

use core::sync::atomic::{AtomicBool, Ordering};

use kmem_arena::Arena;
use kmem_physmem::PAGE_SIZE;

/// A page-aligned region of lazily zeroed memory posing as RAM.
pub(crate) struct Ram {
    buf: Vec<u8>,
    start: usize,
    len: usize,
    /// A base arena was built over the region: it is not ours any more.
    given: AtomicBool,
}

impl Ram {
    /// `len` bytes (a multiple of the page size) of zeroed memory.
    pub(crate) fn new(len: usize) -> Self {
        assert!(
            len > 0 && len.is_multiple_of(PAGE_SIZE),
            "kmem-fuzz: RAM of {len} bytes"
        );
        let buf = vec![0u8; len + PAGE_SIZE];
        let start = (buf.as_ptr() as usize).next_multiple_of(PAGE_SIZE);
        Self {
            buf,
            start,
            len,
            given: AtomicBool::new(false),
        }
    }

    /// Address of the first byte.
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when `[addr, addr + size)` lies inside the region.
    pub(crate) fn contains(&self, addr: usize, size: usize) -> bool {
        addr >= self.start
            && addr
                .checked_add(size)
                .is_some_and(|e| e <= self.start + self.len)
    }

    /// A self-sufficient base arena over the whole region. The region goes
    /// to one base arena only (as with `PhysMem::base_arena`).
    ///
    /// # Panics
    /// Panics if a base arena was built over the region before.
    pub(crate) fn base_arena(&self, name: &str, quantum: usize) -> Arena<'_> {
        assert!(
            !self.given.swap(true, Ordering::AcqRel),
            "kmem-fuzz: the region already has a base arena"
        );
        debug_assert!(self.buf.len() >= self.len + (self.start - self.buf.as_ptr() as usize));
        // `[start, start + len)` lies inside `buf`, which `self` owns and
        // keeps until it drops; the arena borrows `self`, so it cannot
        // outlive it.
        // SAFETY: that region, which `given` makes the only arena ever built
        // over it, and which nothing else touches.
        unsafe { Arena::new_base(name, self.start, self.len, quantum) }
            .expect("kmem-fuzz: base arena refused the region")
    }

    /// [`kmem_physmem::boot`] over this region: a base arena (page quantum)
    /// and a `kpages` arena sourced from it; runs `f(base, kpages)`, checks
    /// both and destroys `kpages`.
    pub(crate) fn boot<R>(&self, f: impl FnOnce(&Arena<'_>, &Arena<'_>) -> R) -> R {
        let base = self.base_arena("base", PAGE_SIZE);
        let mut kpages = Arena::builder("kpages")
            .quantum(PAGE_SIZE)
            .source(&base)
            .tags_from(&base)
            .build()
            .expect("kmem-fuzz: kpages arena");
        let r = f(&base, &kpages);
        kpages.check().expect("kmem-fuzz: kpages check");
        base.check().expect("kmem-fuzz: base check");
        kpages.destroy().expect("kmem-fuzz: kpages destroy");
        r
    }
}
