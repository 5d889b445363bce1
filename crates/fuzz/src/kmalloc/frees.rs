//! The kmalloc target's frees, good and bad, and the final teardown.

use core::alloc::Layout;

use kmalloc::{AllocError, FreeError, MAX_CLASS};
use kmem_arena::{FreeError as ArenaFreeError, WalkKinds};

use super::{World, ALIGN_LOG_MAX, FREED_KEPT, MEM};

impl World<'_, '_> {
    pub(super) fn free(&mut self, which: u16) {
        let Some((p, b)) = self.pick(which) else {
            return;
        };
        self.verify(p, b.layout.size(), b.seed, usize::MAX, "before free");
        self.live.remove(&p);
        self.live_bytes -= b.usable;
        // SAFETY: a live block allocated with `b.layout`, freed once (the
        // model forgets it here).
        let got = unsafe { self.k.free(Self::ptr(p), b.layout) };
        assert_eq!(got, Ok(()), "kmem-fuzz: free({p:#x}, {:?})", b.layout);
        if self.page_backed(b.layout) {
            if self.freed_large.len() == FREED_KEPT {
                self.freed_large.remove(0);
            }
            self.freed_large.push((p, b.layout));
        }
    }

    /// Runs the refused free `f` and checks it changed nothing.
    pub(super) fn refused(
        &self,
        what: &str,
        expected: FreeError,
        f: impl FnOnce() -> Result<(), FreeError>,
    ) {
        let before = self.snapshot();
        let got = f();
        assert_eq!(got, Err(expected), "kmem-fuzz: {what}");
        assert_eq!(
            self.snapshot(),
            before,
            "kmem-fuzz: refused {what} changed the stack"
        );
    }

    pub(super) fn zero_size(&mut self, align: u8, which: u16) {
        let Some(layout) = Self::layout(0, align) else {
            return;
        };
        let before = self.snapshot();
        assert_eq!(self.k.alloc(layout), Err(AllocError::ZeroSize));
        assert_eq!(self.k.alloc_zeroed(layout), Err(AllocError::ZeroSize));
        if let Some((p, b)) = self.pick(which) {
            // SAFETY: a live block with its layout; a realloc to zero bytes
            // is refused and leaves it allocated.
            let got = unsafe { self.k.realloc(Self::ptr(p), b.layout, 0) };
            assert_eq!(
                got,
                Err(AllocError::ZeroSize),
                "kmem-fuzz: realloc to 0 bytes"
            );
            self.verify(p, b.layout.size(), b.seed, usize::MAX, "after realloc to 0");
        }
        assert_eq!(
            self.snapshot(),
            before,
            "kmem-fuzz: zero-size requests changed the stack"
        );
    }

    pub(super) fn bad_layout_free(&mut self, which: u16, align: u8) {
        let Some((p, _)) = self.pick(which) else {
            return;
        };
        let zero = Self::layout(0, align).expect("layout");
        self.refused(
            "free with a zero-size layout",
            FreeError::ZeroSize { addr: p },
            || {
                // SAFETY: a zero-size layout is refused before anything is touched.
                unsafe { self.k.free(Self::ptr(p), zero) }
            },
        );
        let impossible = Layout::from_size_align(isize::MAX as usize - 100, 8).expect("layout");
        self.refused(
            "free with an impossible layout",
            FreeError::TooLarge { addr: p },
            || {
                // SAFETY: no allocation has this layout; it is refused at once.
                unsafe { self.k.free(Self::ptr(p), impossible) }
            },
        );
    }

    /// True when an allocated segment of the page arena starts at `addr`.
    fn page_segment_at(&self, addr: usize) -> bool {
        let mut found = false;
        self.k
            .pages()
            .walk(WalkKinds::ALLOCATED, |s| found |= s.start == addr);
        found
    }

    pub(super) fn double_free(&mut self, which: u16) {
        if self.freed_large.is_empty() {
            return;
        }
        let (p, layout) = self.freed_large[usize::from(which) % self.freed_large.len()];
        if self.page_segment_at(p) {
            return; // handed out again (perhaps as a slab): not ours to free
        }
        let err = ArenaFreeError::NotAllocated { addr: p };
        self.refused(
            "large double free",
            FreeError::Pages { addr: p, err },
            || {
                // SAFETY: no page segment starts at `p`: the page arena refuses the
                // free by its address before anything is touched.
                unsafe { self.k.free(Self::ptr(p), layout) }
            },
        );
    }

    pub(super) fn wrong_size(&mut self, which: u16, k: u8, up: bool) {
        let large: Vec<_> = self
            .live
            .iter()
            .filter(|(_, b)| self.page_backed(b.layout))
            .map(|(&p, &b)| (p, b))
            .collect();
        if large.is_empty() {
            return;
        }
        let (p, b) = large[usize::from(which) % large.len()];
        let align = b.layout.align();
        let step = align.max(4096) * (usize::from(k % 3) + 1);
        let size = if up {
            b.layout.size() + step
        } else {
            b.layout.size().saturating_sub(step)
        };
        let Some(wrong) = Layout::from_size_align(size, align)
            .ok()
            .filter(|l| l.size() > 0)
        else {
            return;
        };
        let Some(bytes) = self.k.usable_size(wrong) else {
            return;
        };
        if !self.page_backed(wrong) || bytes == b.usable {
            return;
        }
        let err = ArenaFreeError::WrongSize {
            addr: p,
            size: bytes,
            expected: b.usable,
        };
        self.refused(
            "large free with the wrong size",
            FreeError::Pages { addr: p, err },
            || {
                // SAFETY: `p` is a live page-backed block; the page arena checks
                // the size against its segment before anything is touched.
                unsafe { self.k.free(Self::ptr(p), wrong) }
            },
        );
        self.verify(
            p,
            b.layout.size(),
            b.seed,
            usize::MAX,
            "after a wrong-size free",
        );
    }

    pub(super) fn foreign_free(&mut self, off: u32, align: u8) {
        let p = (self.mem.start + off as usize % MEM) & !4095;
        if p < self.mem.start || self.page_segment_at(p) {
            return;
        }
        let layout = Layout::from_size_align(MAX_CLASS + 1, 1 << (align % (ALIGN_LOG_MAX + 1)))
            .expect("layout");
        let err = ArenaFreeError::NotAllocated { addr: p };
        self.refused(
            "large free of a foreign address",
            FreeError::Pages { addr: p, err },
            || {
                // SAFETY: no page segment starts at `p`: the page arena refuses the
                // free by its address before anything is touched.
                unsafe { self.k.free(Self::ptr(p), layout) }
            },
        );
    }

    pub(super) fn reap(&self, both: bool) {
        if both {
            self.reap_both();
        } else {
            self.k.reap();
        }
    }

    /// Frees every block, reaps both CPUs, and checks that nothing is in
    /// use.
    pub(super) fn finish(&mut self) {
        self.check();
        while !self.live.is_empty() {
            self.free(0);
        }
        assert_eq!(self.live_bytes, 0);
        self.reap_both();
        self.check();
        let mut in_use = Vec::new();
        self.k.caches().stats(|s| {
            if s.buf_in_use != 0 && s.name.as_str().starts_with("kmalloc_") {
                in_use.push((s.name.as_str().to_owned(), s.buf_in_use));
            }
        });
        assert!(
            in_use.is_empty(),
            "kmem-fuzz: objects in use after every free: {in_use:?}"
        );
        let (allocs, frees, _) = self.k.large_counts();
        assert_eq!(allocs, frees, "kmem-fuzz: large allocations never freed");
    }
}
