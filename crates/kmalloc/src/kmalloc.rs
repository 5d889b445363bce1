//! [`Kmalloc`]: size-class object caches in front of a page arena.

use core::alloc::Layout;
use core::fmt::{self, Write as _};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayVec;
use kmem_arena::{Arena, Constraints, Policy};
use kmem_magazine::Cpu;
use kmem_slab::{AllocFlags, Cache, CacheBuilder, Caches, CreateError};

use crate::classes::{class_align, class_size, route, Route, CLASSES};
use crate::error::{AllocError, FreeError};

/// The kmalloc facade: one object cache per size class (named
/// `kmalloc_<size>`, slabs from the page arena) and whole pages from the
/// page arena above [`MAX_CLASS`](crate::MAX_CLASS).
///
/// The API is sized: a free gives back the [`Layout`] of the allocation, so
/// objects carry no header. See the [crate documentation](crate).
pub struct Kmalloc<'a, C: Cpu> {
    pages: &'a Arena<'a>,
    caches: &'a Caches<'a, C>,
    classes: ArrayVec<Cache<'a, C>, CLASSES>,
    large_allocs: AtomicU64,
    large_frees: AtomicU64,
    large_fails: AtomicU64,
}

/// Formats `kmalloc_<size>` into a stack buffer.
fn class_name(buf: &mut [u8; 32], size: usize) -> &str {
    struct W<'b>(&'b mut [u8; 32], usize);
    impl fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut w = W(buf, 0);
    let _ = write!(w, "kmalloc_{size}");
    let len = w.1;
    core::str::from_utf8(&buf[..len]).unwrap_or("kmalloc")
}

impl<'a, C: Cpu> Kmalloc<'a, C> {
    /// Creates the size-class caches in `caches`, their slabs from `pages`
    /// (a memory arena with a page quantum, normally with quantum caches so
    /// one-page slabs come from magazines).
    pub fn new(caches: &'a Caches<'a, C>, pages: &'a Arena<'a>) -> Result<Self, CreateError> {
        if !pages.is_memory() {
            return Err(CreateError::NotMemory);
        }
        let mut classes = ArrayVec::new();
        for i in 0..CLASSES {
            let mut name = [0; 32];
            let name = class_name(&mut name, class_size(i));
            let builder = CacheBuilder::new(name, class_size(i))
                .align(class_align(i))
                .source(pages);
            // On failure the caches made so far are destroyed as they drop.
            classes.push(caches.create(builder)?);
        }
        Ok(Self {
            pages,
            caches,
            classes,
            large_allocs: AtomicU64::new(0),
            large_frees: AtomicU64::new(0),
            large_fails: AtomicU64::new(0),
        })
    }

    /// The page arena large requests and slabs come from.
    pub fn pages(&self) -> &'a Arena<'a> {
        self.pages
    }

    /// The object caches (class caches, bootstrap caches, quantum caches
    /// and any created by users).
    pub fn caches(&self) -> &'a Caches<'a, C> {
        self.caches
    }

    /// The class cache serving `size` bytes aligned to `align`, if a class
    /// serves it.
    pub fn class_for(&self, layout: Layout) -> Option<&Cache<'a, C>> {
        match route(layout.size().max(1), layout.align())? {
            Route::Class(i) => self.classes.get(i),
            Route::Pages { .. } => None,
        }
    }

    /// Allocates memory for `layout`: from its size class's cache (the
    /// caller CPU's magazine, usually), or whole pages for large or
    /// over-aligned requests.
    #[inline]
    pub fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.alloc_with(layout, AllocFlags::empty())
    }

    /// [`alloc`](Self::alloc), zero-filled.
    #[inline]
    pub fn alloc_zeroed(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.alloc_with(layout, AllocFlags::ZERO)
    }

    #[inline(always)]
    fn alloc_with(&self, layout: Layout, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
        if layout.size() == 0 {
            return Err(AllocError::ZeroSize);
        }
        match route(layout.size(), layout.align()) {
            Some(Route::Class(i)) => {
                let obj = self.classes[i]
                    .alloc(flags)
                    .map_err(|_| AllocError::Exhausted)?;
                // Objects are memory: never at address 0.
                NonNull::new(obj as *mut u8).ok_or(AllocError::Exhausted)
            }
            Some(Route::Pages { bytes, align }) => self.alloc_pages(bytes, align, flags),
            None => Err(AllocError::TooLarge),
        }
    }

    #[inline(never)]
    fn alloc_pages(
        &self,
        bytes: usize,
        align: usize,
        flags: AllocFlags,
    ) -> Result<NonNull<u8>, AllocError> {
        let got = if align > self.pages.quantum() {
            self.pages.xalloc(bytes, &Constraints::new().align(align))
        } else {
            self.pages.alloc(bytes, Policy::InstantFit)
        };
        let Ok(addr) = got else {
            self.large_fails.fetch_add(1, Ordering::Relaxed);
            return Err(AllocError::Exhausted);
        };
        self.large_allocs.fetch_add(1, Ordering::Relaxed);
        let ptr = NonNull::new(addr as *mut u8).ok_or(AllocError::Exhausted)?;
        if flags.contains(AllocFlags::ZERO) {
            // SAFETY: `bytes` of page-arena memory, just allocated and ours.
            unsafe { ptr.as_ptr().write_bytes(0, bytes) };
        }
        Ok(ptr)
    }

    /// Frees `ptr`, allocated with `layout` by this allocator.
    ///
    /// A class object goes to the caller CPU's magazine; what the slab
    /// layer finds wrong (a double free, an object of another class, a
    /// pointer no cache owns) is refused when the object reaches it, here or
    /// when its magazine drains. A large free is checked at once against
    /// the page arena (address and size).
    ///
    /// # Safety
    /// `ptr` came from this allocator with `layout` and is not used after.
    #[inline]
    pub unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let addr = ptr.as_ptr() as usize;
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize { addr });
        }
        match route(layout.size(), layout.align()) {
            Some(Route::Class(i)) => {
                // SAFETY: the caller's guarantee: an object of this class.
                unsafe { self.classes[i].free(addr) }
                    .map_err(|e| FreeError::Refused { addr, kind: e.kind })
            }
            Some(Route::Pages { bytes, align }) => self.free_pages(addr, bytes, align),
            None => Err(FreeError::TooLarge { addr }),
        }
    }

    #[inline(never)]
    fn free_pages(&self, addr: usize, bytes: usize, align: usize) -> Result<(), FreeError> {
        let freed = if align > self.pages.quantum() {
            self.pages.xfree(addr, bytes)
        } else {
            self.pages.free(addr, bytes)
        };
        freed.map_err(|e| FreeError::Pages { addr, err: e })?;
        self.large_frees.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// True when an object of `old` may simply be used for `new` (same
    /// class, or the same run of pages).
    fn same_home(old: Layout, new: Layout) -> bool {
        match (
            route(old.size(), old.align()),
            route(new.size(), new.align()),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Resizes the allocation at `ptr` (made with `layout`) to `new_size`
    /// bytes with the same alignment, keeping its contents up to the
    /// smaller size. Stays in place when the size class (or page run) does
    /// not change; otherwise allocates, copies and frees. On error the old
    /// allocation is untouched.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    pub unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        if new_size == 0 || layout.size() == 0 {
            return Err(AllocError::ZeroSize);
        }
        let new =
            Layout::from_size_align(new_size, layout.align()).map_err(|_| AllocError::TooLarge)?;
        if Self::same_home(layout, new) {
            return Ok(ptr);
        }
        let fresh = self.alloc(new)?;
        // SAFETY: both blocks are at least the smaller size, distinct (the
        // old one is still allocated), and the caller owns the old one.
        unsafe {
            fresh
                .as_ptr()
                .copy_from_nonoverlapping(ptr.as_ptr(), layout.size().min(new_size));
        }
        // SAFETY: forwarded; a refused free leaves the old block allocated
        // and is reported by the slab layer's counters.
        let _ = unsafe { self.free(ptr, layout) };
        Ok(fresh)
    }

    /// Bytes actually usable in an allocation of `layout` (its class size,
    /// or the page run), or `None` for a zero-size or oversized layout.
    pub fn usable_size(&self, layout: Layout) -> Option<usize> {
        if layout.size() == 0 {
            return None;
        }
        Some(match route(layout.size(), layout.align())? {
            Route::Class(i) => class_size(i),
            Route::Pages { bytes, .. } => bytes,
        })
    }

    /// Gives idle memory back: flushes the calling CPU's magazines of every
    /// cache (only a CPU's owner may; other CPUs keep theirs), reaps every
    /// cache (depots into slabs, empty slabs to their arenas), then reaps
    /// the page arena (its quantum caches), twice, since the first pass
    /// returns slabs into those quantum caches. Returns the bytes of slabs
    /// given back to the page arena and the units it gave back.
    pub fn reap(&self) -> usize {
        let mut freed = 0;
        for _ in 0..2 {
            self.caches.for_each(|c| {
                if let Some(m) = c.magazines() {
                    m.flush_current();
                }
                freed += c.reap();
            });
            freed += self.pages.reap();
        }
        freed
    }

    /// Large allocations: made, freed, failed.
    pub fn large_counts(&self) -> (u64, u64, u64) {
        (
            self.large_allocs.load(Ordering::Relaxed),
            self.large_frees.load(Ordering::Relaxed),
            self.large_fails.load(Ordering::Relaxed),
        )
    }

    /// Writes the `::kmastat`-style report: every object cache, then every
    /// arena of the stack (name indented by source depth).
    pub fn report(&self, w: &mut impl fmt::Write) -> fmt::Result {
        self.caches.report(w)?;
        writeln!(w)?;
        Arena::vmem_header(w)?;
        self.caches.base().vmem_row(w)?;
        self.pages.vmem_row(w)
    }
}
