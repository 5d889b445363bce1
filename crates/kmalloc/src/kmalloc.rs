//! [`Kmalloc`]: size-class object caches in front of a page arena.

use core::alloc::Layout;
use core::fmt::{self, Write as _};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use kmem_arena::{Arena, Constraints, Policy};
use kmem_magazine::{Cpu, Section};
use kmem_slab::{
    AllocError as CacheAllocError, AllocFlags, Cache, CacheBuilder, CacheFlags, Caches, Caller,
    CreateError, PageMap, PAGE_SIZE,
};

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
    /// Debug-mode flags of every class cache.
    debug: CacheFlags,
    large_allocs: AtomicU64,
    large_frees: AtomicU64,
    large_fails: AtomicU64,
    /// Large frees made by a handler that interrupted an allocator call of
    /// its context: a stack linked through the blocks (`Deferred`), freed
    /// by the next large allocation or free that can take the arena's lock.
    deferred: AtomicUsize,
    /// Where slabs and large blocks are recorded, for unsized frees.
    map: Option<&'a dyn PageMap>,
}

/// The head of a deferred large block: what `free_pages` needs.
#[repr(C)]
struct Deferred {
    next: usize,
    bytes: usize,
    xalloc: bool,
}

/// A large block's entry in the page map (on its first page): this bit,
/// [`LARGE_XALLOC`] if it was `xalloc`ed (an alignment past the quantum's),
/// and its length in pages.
const LARGE: u32 = 1 << 31;
/// See [`LARGE`].
const LARGE_XALLOC: u32 = 1 << 30;
/// The most pages a large block recorded in a page map can have (4 TiB
/// of 4 KiB pages).
const LARGE_MAX_PAGES: usize = (LARGE_XALLOC - 1) as usize;

/// What the page map says is at an address (see [`Kmalloc::block_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    /// A slab of class `i`.
    Class(usize),
    /// The start of a large block of `bytes`, `xalloc`ed or not.
    Pages { bytes: usize, xalloc: bool },
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
        Self::with_debug(caches, pages, CacheFlags::empty())
    }

    /// [`new`](Self::new), with debug mode on every class cache: `debug`
    /// is any of [`CacheFlags::DEBUG_ALL`] (see the [crate docs](crate)).
    /// Large (whole-page) allocations are checked by the page arena as
    /// always.
    pub fn with_debug(
        caches: &'a Caches<'a, C>,
        pages: &'a Arena<'a>,
        debug: CacheFlags,
    ) -> Result<Self, CreateError> {
        Self::with_page_map(caches, pages, debug, None)
    }

    /// [`with_debug`](Self::with_debug), recording every slab of the class
    /// caches and the first page of every large block in `map`, so that
    /// [`free_unsized`](Self::free_unsized) and
    /// [`usable_size_of`](Self::usable_size_of) can find a block's size from its
    /// address alone (a C `free`). A large block of more than 2^30 - 1
    /// pages is then refused ([`AllocError::TooLarge`]).
    pub fn with_page_map(
        caches: &'a Caches<'a, C>,
        pages: &'a Arena<'a>,
        debug: CacheFlags,
        map: Option<&'a dyn PageMap>,
    ) -> Result<Self, CreateError> {
        let debug = debug & CacheFlags::DEBUG_ALL;
        if !pages.is_memory() {
            return Err(CreateError::NotMemory);
        }
        let mut classes = ArrayVec::new();
        for i in 0..CLASSES {
            let mut name = [0; 32];
            let name = class_name(&mut name, class_size(i));
            let mut builder = CacheBuilder::new(name, class_size(i))
                .align(class_align(i))
                .flags(debug)
                .source(pages);
            if let Some(map) = map {
                builder = builder.page_map(map, i as u32 + 1);
            }
            // On failure the caches made so far are destroyed as they drop.
            classes.push(caches.create(builder)?);
        }
        Ok(Self {
            pages,
            caches,
            classes,
            debug,
            large_allocs: AtomicU64::new(0),
            large_frees: AtomicU64::new(0),
            large_fails: AtomicU64::new(0),
            deferred: AtomicUsize::new(0),
            map,
        })
    }

    /// The debug-mode flags of the class caches (empty in release mode).
    pub fn debug(&self) -> CacheFlags {
        self.debug
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
    ///
    /// From a signal or interrupt handler that interrupted an allocator
    /// call of its own context (see [`Section`]) it fails with
    /// [`AllocError::Reentrant`], touching nothing.
    #[inline]
    #[track_caller]
    pub fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let caller = Caller::Location(core::panic::Location::caller());
        self.alloc_by(layout, AllocFlags::empty(), caller)
    }

    /// [`alloc`](Self::alloc), zero-filled.
    #[inline]
    #[track_caller]
    pub fn alloc_zeroed(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let caller = Caller::Location(core::panic::Location::caller());
        self.alloc_by(layout, AllocFlags::ZERO, caller)
    }

    /// [`alloc`](Self::alloc) (or, with `ZERO`, `alloc_zeroed`) on behalf
    /// of `caller`, whom debug mode's audit records.
    #[inline(always)]
    pub fn alloc_by(
        &self,
        layout: Layout,
        flags: AllocFlags,
        caller: Caller,
    ) -> Result<NonNull<u8>, AllocError> {
        if layout.size() == 0 {
            return Err(AllocError::ZeroSize);
        }
        match route(layout.size(), layout.align()) {
            Some(Route::Class(i)) => {
                // An injected failure is a class cache out of memory.
                #[cfg(feature = "fail-inject")]
                if kmem_fail::should_fail(kmem_fail::Layer::Kmalloc) {
                    return Err(AllocError::Exhausted);
                }
                let obj = self.classes[i]
                    .alloc_sized_by(flags, caller, layout.size())
                    .map_err(|e| match e {
                        CacheAllocError::Reentrant => AllocError::Reentrant,
                        _ => AllocError::Exhausted,
                    })?;
                // Objects are memory: never at address 0.
                NonNull::new(obj as *mut u8).ok_or(AllocError::Exhausted)
            }
            Some(Route::Pages { bytes, align }) => self.alloc_pages(bytes, align, flags),
            None => Err(AllocError::TooLarge),
        }
    }

    /// True when a run of pages aligned to `align` needs `xalloc`: the
    /// quantum (a power of two or not) is not a multiple of `align`.
    fn needs_xalloc(&self, align: usize) -> bool {
        !self.pages.quantum().is_multiple_of(align)
    }

    #[inline(never)]
    fn alloc_pages(
        &self,
        bytes: usize,
        align: usize,
        flags: AllocFlags,
    ) -> Result<NonNull<u8>, AllocError> {
        let Some(_section) = Section::enter(self.caches.cpu()) else {
            return Err(AllocError::Reentrant);
        };
        self.free_deferred();
        // A page map records a large block's length in 30 bits of pages.
        if self.map.is_some() && bytes / PAGE_SIZE > LARGE_MAX_PAGES {
            self.large_fails.fetch_add(1, Ordering::Relaxed);
            return Err(AllocError::TooLarge);
        }
        // An injected failure is a page arena out of memory.
        #[cfg(feature = "fail-inject")]
        if kmem_fail::should_fail(kmem_fail::Layer::Kmalloc) {
            self.large_fails.fetch_add(1, Ordering::Relaxed);
            return Err(AllocError::Exhausted);
        }
        let got = if self.needs_xalloc(align) {
            self.pages.xalloc(bytes, &Constraints::new().align(align))
        } else {
            self.pages.alloc(bytes, Policy::InstantFit)
        };
        let Ok(addr) = got else {
            self.large_fails.fetch_add(1, Ordering::Relaxed);
            return Err(AllocError::Exhausted);
        };
        if let Some(map) = self.map {
            let xalloc = self.needs_xalloc(align);
            let owner = LARGE | if xalloc { LARGE_XALLOC } else { 0 };
            // At most `LARGE_MAX_PAGES` (checked above): fits the 30 bits.
            let pages = (bytes / PAGE_SIZE) as u32;
            if !map.set(addr, PAGE_SIZE, owner | pages) {
                // SAFETY: just allocated from the page arena this way, and
                // not handed out.
                let _ = unsafe { self.free_pages_now(addr, bytes, xalloc) };
                self.large_fails.fetch_add(1, Ordering::Relaxed);
                return Err(AllocError::Exhausted);
            }
        }
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
    /// A class object goes to the caller CPU's magazine, after its class's
    /// check: a double free, an object of another class, a pointer into an
    /// object or one no cache owns is refused ([`FreeError::Refused`]). A
    /// large free is checked at once against the page arena (address and
    /// size).
    ///
    /// From a signal or interrupt handler that interrupted an allocator call
    /// of its own context (see [`Section`]) the free takes no lock: the
    /// object waits on a stack (its class's, per slot, or the large blocks')
    /// until a later call of the context's frees it.
    ///
    /// # Safety
    /// `ptr` came from this allocator with `layout` and is not used after.
    #[inline]
    #[track_caller]
    pub unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let caller = Caller::Location(core::panic::Location::caller());
        // SAFETY: forwarded.
        unsafe { self.free_by(ptr, layout, caller) }
    }

    /// [`free`](Self::free) on behalf of `caller` (see
    /// [`alloc_by`](Self::alloc_by)).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(always)]
    pub unsafe fn free_by(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        caller: Caller,
    ) -> Result<(), FreeError> {
        let addr = ptr.as_ptr() as usize;
        if layout.size() == 0 {
            return Err(FreeError::ZeroSize { addr });
        }
        match route(layout.size(), layout.align()) {
            Some(Route::Class(i)) => {
                // SAFETY: the caller's guarantee: an object of this class.
                unsafe { self.classes[i].free_sized_by(addr, caller, layout.size()) }
                    .map_err(|e| FreeError::Refused { addr, kind: e.kind })
            }
            // SAFETY: the caller's guarantee: a run of pages of this layout.
            Some(Route::Pages { bytes, align }) => unsafe {
                self.free_pages(addr, bytes, self.needs_xalloc(align))
            },
            None => Err(FreeError::TooLarge { addr }),
        }
    }

    /// # Safety
    /// `addr` is a run of `bytes` allocated by `alloc_pages` (by `xalloc`
    /// exactly when `xalloc`), the caller's, not used after.
    #[inline(never)]
    unsafe fn free_pages(&self, addr: usize, bytes: usize, xalloc: bool) -> Result<(), FreeError> {
        let Some(_section) = Section::enter(self.caches.cpu()) else {
            // SAFETY: the caller's guarantee: at least a page of memory that
            // is ours now, enough for the `Deferred` head (page-aligned).
            unsafe { self.defer_pages(addr, bytes, xalloc) };
            return Ok(());
        };
        self.free_deferred();
        // SAFETY: forwarded.
        unsafe { self.free_pages_now(addr, bytes, xalloc) }
    }

    /// # Safety
    /// As for [`free_pages`](Self::free_pages).
    unsafe fn free_pages_now(
        &self,
        addr: usize,
        bytes: usize,
        xalloc: bool,
    ) -> Result<(), FreeError> {
        if let Some(map) = self.map {
            map.clear(addr, PAGE_SIZE);
        }
        // SAFETY: the caller's guarantee.
        let freed = unsafe {
            if xalloc {
                self.pages.xfree_memory(addr, bytes)
            } else {
                self.pages.free_memory(addr, bytes)
            }
        };
        freed.map_err(|e| FreeError::Pages { addr, err: e })?;
        self.large_frees.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Pushes a large block onto the deferred stack.
    ///
    /// # Safety
    /// As for [`free_pages`](Self::free_pages).
    #[cold]
    unsafe fn defer_pages(&self, addr: usize, bytes: usize, xalloc: bool) {
        let mut head = self.deferred.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller's guarantee: the block is ours, page-aligned
            // and at least a page long.
            unsafe {
                (addr as *mut Deferred).write(Deferred {
                    next: head,
                    bytes,
                    xalloc,
                })
            };
            match self.deferred.compare_exchange_weak(
                head,
                addr,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Frees the deferred large blocks, if any (inside a section).
    #[inline]
    fn free_deferred(&self) {
        if self.deferred.load(Ordering::Relaxed) != 0 {
            self.free_deferred_slow();
        }
    }

    #[cold]
    fn free_deferred_slow(&self) {
        let mut at = self.deferred.swap(0, Ordering::Acquire);
        while at != 0 {
            // SAFETY: pushed by `defer_pages`, which wrote the head; the swap
            // made the whole stack ours.
            let d = unsafe { (at as *const Deferred).read() };
            // SAFETY: `defer_pages`' caller gave the block up with this
            // layout. A refusal (a bad free that was deferred unchecked) is
            // counted, as a refused free of a magazine round is.
            if unsafe { self.free_pages_now(at, d.bytes, d.xalloc) }.is_err() {
                self.large_fails.fetch_add(1, Ordering::Relaxed);
            }
            at = d.next;
        }
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
    #[track_caller]
    pub unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let caller = Caller::Location(core::panic::Location::caller());
        // SAFETY: forwarded.
        unsafe { self.realloc_by(ptr, layout, new_size, caller) }
    }

    /// [`realloc`](Self::realloc) on behalf of `caller` (see
    /// [`alloc_by`](Self::alloc_by)).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    pub unsafe fn realloc_by(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
        caller: Caller,
    ) -> Result<NonNull<u8>, AllocError> {
        if new_size == 0 || layout.size() == 0 {
            return Err(AllocError::ZeroSize);
        }
        let new =
            Layout::from_size_align(new_size, layout.align()).map_err(|_| AllocError::TooLarge)?;
        if Self::same_home(layout, new) {
            if let Some(Route::Class(i)) = route(new.size(), new.align()) {
                // Debug mode's audit keeps the size a sized free must give.
                self.classes[i].note_size(ptr.as_ptr() as usize, new_size);
            }
            return Ok(ptr);
        }
        // A class block is checked before anything is read from it: a
        // bad one is refused, nothing allocated or copied.
        if let Some(Route::Class(i)) = route(layout.size(), layout.align()) {
            let Some(_section) = Section::enter(self.caches.cpu()) else {
                return Err(AllocError::Reentrant);
            };
            let addr = ptr.as_ptr() as usize;
            // SAFETY: the caller's guarantee: `ptr` is theirs, so no other
            // thread writes it.
            unsafe { self.classes[i].check_allocated(addr) }
                .map_err(|e| AllocError::BadPointer(FreeError::Refused { addr, kind: e.kind }))?;
        }
        // SAFETY: forwarded; the old block holds `layout.size()` bytes. A
        // refused free (the caller's promise broken) leaves it as it was.
        unsafe {
            self.move_block(ptr, new, layout.size(), caller, || {
                self.free_by(ptr, layout, caller)
            })
        }
    }

    /// A realloc's move: a fresh block for `new`, the first
    /// `min(old_size, new.size())` bytes of `ptr` copied into it, then
    /// `ptr` freed by `free_old`; if the fresh block is `ptr` itself (the
    /// old one was free already) or `free_old` refuses, the fresh block goes
    /// back and the old one stays as it was.
    ///
    /// # Safety
    /// `ptr` is the caller's, checked as an allocated block of at least
    /// `old_size` bytes (the caller's promise, or its class's check), and
    /// `free_old` frees it as it was allocated.
    unsafe fn move_block(
        &self,
        ptr: NonNull<u8>,
        new: Layout,
        old_size: usize,
        caller: Caller,
        free_old: impl FnOnce() -> Result<(), FreeError>,
    ) -> Result<NonNull<u8>, AllocError> {
        let fresh = self.alloc_by(new, AllocFlags::empty(), caller)?;
        if fresh == ptr {
            // The old block was free already (and passed its check: a
            // constructed-cache round, or a large run): the allocator just
            // handed it out again. It goes back; nothing was copied.
            // SAFETY: allocated just above with `new`, not handed out.
            let _ = unsafe { self.free_by(fresh, new, caller) };
            return Err(AllocError::BadPointer(FreeError::Refused {
                addr: ptr.as_ptr() as usize,
                kind: kmem_slab::BadFree::DoubleFree,
            }));
        }
        // SAFETY: both blocks are at least the smaller size, distinct (the
        // old one is still allocated), and the caller owns the old one.
        unsafe {
            fresh
                .as_ptr()
                .copy_from_nonoverlapping(ptr.as_ptr(), old_size.min(new.size()));
        }
        if let Err(e) = free_old() {
            // SAFETY: allocated just above with `new`, not handed out.
            let _ = unsafe { self.free_by(fresh, new, caller) };
            return Err(AllocError::BadPointer(e));
        }
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

    /// What the page map records at `addr`: `Err(NoPageMap)` without a
    /// map; `Err(Pages(NotAllocated))` for an address of the page arena
    /// where no block starts (inside a large block, or a large block freed
    /// already: a large block is found only by its first byte);
    /// `Err(Unknown)` for an address outside the page arena.
    fn block_at(&self, addr: usize) -> Result<Block, FreeError> {
        let map = self.map.ok_or(FreeError::NoPageMap { addr })?;
        let owner = map.owner(addr);
        // An address of the page arena where no block starts: the inside
        // of a large block, or one freed already.
        let not_a_block = FreeError::Pages {
            addr,
            err: kmem_arena::FreeError::NotAllocated { addr },
        };
        if owner & LARGE != 0 {
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(not_a_block);
            }
            let pages = (owner & !(LARGE | LARGE_XALLOC)) as usize;
            return Ok(Block::Pages {
                bytes: pages * PAGE_SIZE,
                xalloc: owner & LARGE_XALLOC != 0,
            });
        }
        match owner as usize {
            i @ 1..=CLASSES => Ok(Block::Class(i - 1)),
            // Off the path of a good free: the arena's lock.
            _ if self.pages.contains(addr, 1) => Err(not_a_block),
            _ => Err(FreeError::Unknown { addr }),
        }
    }

    /// The usable size of the block at `ptr`, found from its address by
    /// the page map (see [`with_page_map`](Self::with_page_map)): its class
    /// size, or its run of pages. An address inside a slab of a class
    /// answers that class's size whether or not an object starts there;
    /// anything else, or an allocator without a page map, is an error.
    pub fn usable_size_of(&self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        Ok(match self.block_at(ptr.as_ptr() as usize)? {
            Block::Class(i) => class_size(i),
            Block::Pages { bytes, .. } => bytes,
        })
    }

    /// Frees the block at `ptr` without being told its layout (a C
    /// `free`): the page map gives its class or its run of pages, then it
    /// goes where [`free`](Self::free) would send it, with the same checks
    /// (a double free, a pointer into an object, one no class owns are
    /// refused); an address where no block of this allocator starts is
    /// refused as [`FreeError::Unknown`], and every unsized free of an
    /// allocator without a page map as [`FreeError::NoPageMap`]. Debug
    /// mode's audit does not check the size (none is given).
    ///
    /// # Safety
    /// `ptr`, if it is a block of this allocator, is the caller's and is
    /// not used after.
    #[track_caller]
    pub unsafe fn free_unsized(&self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        let caller = Caller::Location(core::panic::Location::caller());
        // SAFETY: forwarded.
        unsafe { self.free_unsized_by(ptr, caller) }
    }

    /// [`free_unsized`](Self::free_unsized) on behalf of `caller`.
    ///
    /// # Safety
    /// As for [`free_unsized`](Self::free_unsized).
    pub unsafe fn free_unsized_by(
        &self,
        ptr: NonNull<u8>,
        caller: Caller,
    ) -> Result<(), FreeError> {
        let addr = ptr.as_ptr() as usize;
        match self.block_at(addr)? {
            // SAFETY: the caller's guarantee; the class's checks refuse
            // anything but one of its allocated objects.
            Block::Class(i) => unsafe { self.classes[i].free_sized_by(addr, caller, 0) }
                .map_err(|e| FreeError::Refused { addr, kind: e.kind }),
            // SAFETY: the map's entry for a large block starting at `addr`,
            // recorded by `alloc_pages` with its length and kind; the caller
            // gives it up.
            Block::Pages { bytes, xalloc } => unsafe { self.free_pages(addr, bytes, xalloc) },
        }
    }

    /// Resizes the block at `ptr` to `new_size` bytes aligned to `align`
    /// without being told its layout (a C `realloc`), keeping its contents
    /// up to the smaller size. The old block is checked first (as
    /// [`realloc`](Self::realloc) does: a freed block or a pointer into one
    /// is refused); on error it is untouched. It stays in place when the
    /// new size lands in its class, or for a large block (not over-aligned)
    /// when the new size needs no more pages than it has and at least half
    /// of them. Otherwise it moves: allocated, copied and freed unsized. A
    /// large block that grows gets at least half again its size, so that a
    /// buffer grown step by step moves a logarithmic number of times.
    ///
    /// # Safety
    /// As for [`free_unsized`](Self::free_unsized).
    pub unsafe fn realloc_unsized_by(
        &self,
        ptr: NonNull<u8>,
        new_size: usize,
        align: usize,
        caller: Caller,
    ) -> Result<NonNull<u8>, AllocError> {
        let addr = ptr.as_ptr() as usize;
        let new = Layout::from_size_align(new_size, align).map_err(|_| AllocError::TooLarge)?;
        if new_size == 0 {
            return Err(AllocError::ZeroSize);
        }
        let old = self.block_at(addr).map_err(AllocError::BadPointer)?;
        let mut new = new;
        let old_size = match (old, route(new_size, align)) {
            (Block::Class(i), to) => {
                {
                    let Some(_section) = Section::enter(self.caches.cpu()) else {
                        return Err(AllocError::Reentrant);
                    };
                    // SAFETY: the caller's guarantee: `ptr` is theirs, so no
                    // other thread writes it.
                    unsafe { self.classes[i].check_allocated(addr) }.map_err(|e| {
                        AllocError::BadPointer(FreeError::Refused { addr, kind: e.kind })
                    })?;
                }
                if to == Some(Route::Class(i)) {
                    self.classes[i].note_size(addr, new_size);
                    return Ok(ptr);
                }
                class_size(i)
            }
            (Block::Pages { bytes, xalloc }, to) => {
                if let Some(Route::Pages { bytes: b, align: a }) = to {
                    if !xalloc && !self.needs_xalloc(a) && b <= bytes && b >= bytes / 2 {
                        return Ok(ptr);
                    }
                    if b > bytes {
                        let grown = bytes.saturating_add(bytes / 2).max(new_size);
                        new = Layout::from_size_align(grown, align).unwrap_or(new);
                    }
                }
                bytes
            }
        };
        // SAFETY: the caller's promise; the old block is its whole class
        // (checked above) or its run of pages; a refused free leaves it as
        // it was.
        unsafe {
            self.move_block(ptr, new, old_size, caller, || {
                self.free_unsized_by(ptr, caller)
            })
        }
    }

    /// The page arena's reclaim (see [`Reclaim`]): the shrinkers of the
    /// caches whose slabs come from the page arena run, then every such
    /// cache gives back the caller's magazines, its depot and its empty
    /// slabs, then the page arena's quantum caches give back what that
    /// freed into them. Allocates nothing itself (a shrinker is the user's
    /// code). [`boot_static`]
    /// registers a `'static` stack's kmalloc on its page arena.
    ///
    /// [`boot_static`]: crate::boot_static
    fn reclaim_pages(&self, arena: &Arena<'_>) -> usize {
        if !core::ptr::addr_eq(arena, self.pages) {
            return 0;
        }
        let mut freed = self.caches.reclaim_to(arena);
        if freed > 0 {
            freed += arena.reclaim_qcaches();
        }
        freed
    }

    /// Gives idle memory back: flushes the calling CPU's magazines of every
    /// cache (only a CPU's owner may; other CPUs keep theirs), reaps every
    /// cache (depots into slabs, empty slabs to their arenas), then reaps
    /// the page arena (its quantum caches), twice, since the first pass
    /// returns slabs into those quantum caches. Returns the bytes of slabs
    /// given back to the page arena and the units it gave back.
    pub fn reap(&self) -> usize {
        if let Some(_section) = Section::enter(self.caches.cpu()) {
            self.free_deferred();
        }
        let mut freed = 0;
        for _ in 0..2 {
            freed += self.caches.reap();
            // The page arena's reap takes its quantum caches' locks and its
            // own: in a section (not from a handler that interrupted one).
            if let Some(_section) = Section::enter(self.caches.cpu()) {
                freed += self.pages.reap();
            }
        }
        freed
    }

    /// The upkeep pass, for a periodic timer (a kernel's; with the `std`
    /// feature, [`KmallocGlobal`](crate::KmallocGlobal)'s reaper thread
    /// calls it every [`UPKEEP_INTERVAL_MS`](crate::UPKEEP_INTERVAL_MS)):
    /// every cache trims its depot's working set and gives its empty slabs
    /// back ([`Caches::tick`]), then the page arena (its quantum caches
    /// likewise, and its hash) and the base arena ([`Arena::tick`]). What a
    /// program stops using goes back to the page source within four
    /// passes: the objects to their slabs after two, the slabs' pages,
    /// which land in the calling CPU's magazines of the page arena's
    /// quantum caches, out of them at the fourth (each pass first moves
    /// the calling CPU's magazines to the depots). Returns the bytes of
    /// slabs given back plus the units the page arena's quantum caches
    /// gave back. Each call ends a working-set interval: call it from one
    /// timer at a steady rate (a [`KmallocGlobal`](crate::KmallocGlobal)'s
    /// reaper already does; another call in between shortens the interval,
    /// and what was in use during the short one may be trimmed).
    pub fn tick(&self) -> usize {
        if let Some(_section) = Section::enter(self.caches.cpu()) {
            self.free_deferred();
        }
        let mut freed = self.caches.tick();
        // The arenas' passes take their quantum caches' locks and their own:
        // in a section (not from a handler that interrupted one).
        if let Some(_section) = Section::enter(self.caches.cpu()) {
            freed += self.pages.tick();
            self.caches.base().tick();
        }
        freed
    }

    /// Takes every lock of the stack and keeps them, for a `fork()`, in
    /// the stack's lock order: first the cache registry's
    /// ([`Caches::fork_lock_registry`]); then the platform's, which the
    /// caller takes (a platform may serve several stacks); then, with
    /// [`fork_lock`](Self::fork_lock), the caches' depots and slabs, the page
    /// arena and the base arena. [`fork_unlock`](Self::fork_unlock), the
    /// platform's unlock and [`fork_unlock_registry`](Self::fork_unlock_registry)
    /// undo them in the parent and in the child.
    /// [`KmallocGlobal`](crate::KmallocGlobal) installs `pthread_atfork`
    /// handlers that do all this.
    pub fn fork_lock_registry(&self) {
        self.caches.fork_lock_registry();
    }

    /// The caches', page arena's and base arena's locks; see
    /// [`fork_lock_registry`](Self::fork_lock_registry).
    ///
    /// # Safety
    /// [`fork_lock_registry`](Self::fork_lock_registry) was called and not
    /// undone since.
    pub unsafe fn fork_lock(&self) {
        // SAFETY: the caller's guarantee.
        unsafe { self.caches.fork_lock() };
        self.pages.fork_lock();
        self.caches.base().fork_lock();
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took.
    ///
    /// # Safety
    /// [`fork_lock`](Self::fork_lock) was called (here, or in the parent
    /// before the `fork()` that made this process) and not undone since.
    pub unsafe fn fork_unlock(&self) {
        // SAFETY: (each) taken by `fork_lock`, the caller's guarantee.
        unsafe {
            self.caches.base().fork_unlock();
            self.pages.fork_unlock();
            self.caches.fork_unlock();
        }
    }

    /// Releases what [`fork_lock_registry`](Self::fork_lock_registry) took.
    ///
    /// # Safety
    /// It was called and not undone since, and
    /// [`fork_unlock`](Self::fork_unlock) ran first if
    /// [`fork_lock`](Self::fork_lock) did.
    pub unsafe fn fork_unlock_registry(&self) {
        // SAFETY: the caller's guarantee.
        unsafe { self.caches.fork_unlock_registry() };
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

/// When the page arena runs out, the caches give back what they hold idle
/// (see `reclaim_pages`); [`boot_static`](crate::boot_static) registers it.
impl<C: Cpu> kmem_arena::Reclaim for Kmalloc<'_, C> {
    fn reclaim(&self, arena: &Arena<'_>, _wanted: usize) -> usize {
        self.reclaim_pages(arena)
    }
}
