//! The no_std heap peers of kmalloc, each over its own pre-touched region
//! and behind one [`PeerLock`](crate::PeerLock) (the lock kmem uses), so every contender
//! pays the same uncontended lock: linked_list_allocator's `Heap`,
//! buddy_system_allocator's `Heap<32>` and rlsf's `Tlsf`. slabmalloc has
//! its own module (it needs pages on demand); talc is in [`crate::mixed`].
//!
//! [`RawHeap`] is the one method pair each needs; [`Locked`] turns any
//! `RawHeap` into a `GlobalAlloc`; [`By`] lends a `GlobalAlloc` by
//! reference (for the fixed-layout [`Heap`](crate::object::Heap) adapter).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

/// A single-threaded heap: what a peer offers under its lock.
pub trait RawHeap {
    /// Allocates `layout` (non-zero size); null on failure.
    fn alloc(&mut self, layout: Layout) -> *mut u8;
    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` came from [`alloc`](Self::alloc) of this heap with `layout`,
    /// and is freed once.
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout);
}

/// A region of process memory, pre-touched (every page written once) and
/// leaked: it lives as long as the process, like a kernel's RAM.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// First byte.
    pub start: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Region {
    /// `len` bytes aligned to `align` (a power of two), every 4 KiB page
    /// written once.
    ///
    /// # Panics
    /// Panics if the process is out of memory or the layout is invalid.
    pub fn leak(len: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(len, align.max(4096)).expect("region layout");
        assert!(len > 0, "empty region");
        // SAFETY: non-zero size checked above.
        let p = unsafe { std::alloc::alloc(layout) };
        assert!(!p.is_null(), "region: out of memory");
        pretouch(p as usize, len);
        Self {
            start: p as usize,
            len,
        }
    }

    /// True when `[addr, addr + size)` lies inside the region.
    pub fn contains(&self, addr: usize, size: usize) -> bool {
        addr >= self.start && addr + size <= self.start + self.len
    }
}

/// Writes one zero byte per 4 KiB page of `[start, start + len)`, so no
/// timed operation takes a first-touch page fault.
pub fn pretouch(start: usize, len: usize) {
    for off in (0..len).step_by(4096) {
        // SAFETY: callers pass memory they own and nobody else uses yet;
        // a volatile write keeps the touch from being optimised out.
        unsafe { ptr::write_volatile((start + off) as *mut u8, 0) };
    }
}

/// A [`RawHeap`] behind a [`PeerLock`](crate::PeerLock), as a `GlobalAlloc`.
pub struct Locked<H> {
    heap: crate::PeerLock<H>,
    /// The region the heap manages.
    pub region: Region,
}

impl<H> Locked<H> {
    /// `heap` (managing `region`) behind a lock.
    pub fn new(heap: H, region: Region) -> Self {
        Self {
            heap: crate::PeerLock::new(heap),
            region,
        }
    }

    /// Runs `f` on the heap under its lock (untimed inspection).
    pub fn with<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        f(&mut self.heap.lock())
    }
}

// SAFETY: every call is forwarded under the lock to a heap whose blocks are
// distinct, live and of at least the layout's size and alignment (each
// peer's contract), and freed blocks come back with their layout.
unsafe impl<H: RawHeap + Send> GlobalAlloc for Locked<H> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.heap.lock().alloc(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantee, forwarded.
        unsafe { self.heap.lock().dealloc(ptr, layout) }
    }
}

/// A `GlobalAlloc` lent by reference.
pub struct By<'a, A: ?Sized>(pub &'a A);

// SAFETY: forwards every call unchanged.
unsafe impl<A: GlobalAlloc + ?Sized> GlobalAlloc for By<'_, A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// linked_list_allocator 0.10: first fit over an address-ordered hole list.
pub type LinkedList = Locked<linked_list_allocator::Heap>;

impl RawHeap for linked_list_allocator::Heap {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.allocate_first_fit(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantee; `ptr` is non-null (it came from
        // a successful allocation).
        unsafe { self.deallocate(NonNull::new_unchecked(ptr), layout) }
    }
}

/// A linked_list_allocator heap over `region`.
pub fn linked_list(region: Region) -> LinkedList {
    let mut heap = linked_list_allocator::Heap::empty();
    // SAFETY: the region is leaked, owned by this heap alone from now on.
    unsafe { heap.init(region.start as *mut u8, region.len) };
    Locked::new(heap, region)
}

/// buddy_system_allocator 0.13: binary buddy, orders up to 2^31 bytes.
pub type Buddy = Locked<buddy_system_allocator::Heap<32>>;

impl RawHeap for buddy_system_allocator::Heap<32> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        buddy_system_allocator::Heap::alloc(self, layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantee; `ptr` is non-null.
        unsafe { buddy_system_allocator::Heap::dealloc(self, NonNull::new_unchecked(ptr), layout) }
    }
}

/// A buddy heap over `region`.
pub fn buddy(region: Region) -> Buddy {
    let mut heap = buddy_system_allocator::Heap::<32>::new();
    // SAFETY: the region is leaked, owned by this heap alone from now on.
    unsafe { heap.init(region.start, region.len) };
    Locked::new(heap, region)
}

/// rlsf 0.2 TLSF: 28 first-level classes (blocks up to 8 GiB), 32
/// second-level ones.
pub type RlsfTlsf = rlsf::Tlsf<'static, u32, u32, 28, 32>;

/// rlsf's heap behind the lock.
pub type Rlsf = Locked<RlsfTlsf>;

impl RawHeap for RlsfTlsf {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        self.allocate(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantee (rlsf needs the alignment only).
        unsafe { self.deallocate(NonNull::new_unchecked(ptr), layout.align()) }
    }
}

/// An rlsf heap over `region`.
///
/// # Panics
/// Panics if rlsf refuses the region.
pub fn rlsf(region: Region) -> Rlsf {
    Locked::new(rlsf_tlsf(region), region)
}

/// A bare rlsf allocator over `region` (the heap peer and the range peer
/// each put their own lock around it).
///
/// # Panics
/// Panics if rlsf refuses the region.
pub fn rlsf_tlsf(region: Region) -> RlsfTlsf {
    let mut heap = RlsfTlsf::new();
    let block = NonNull::slice_from_raw_parts(
        NonNull::new(region.start as *mut u8).expect("region"),
        region.len,
    );
    // SAFETY: a `Region` is leaked memory; the caller hands it to this
    // allocator alone from now on.
    let got = unsafe { heap.insert_free_block_ptr(block) };
    assert!(got.is_some(), "rlsf refused its region");
    heap
}

#[cfg(test)]
mod tests {
    use core::alloc::{GlobalAlloc, Layout};

    use super::{buddy, linked_list, rlsf, By, Region};

    fn round_trip<A: GlobalAlloc>(a: &A, region: Region) {
        let mut held = Vec::new();
        for (i, size) in [8usize, 24, 64, 100, 1024, 3000]
            .iter()
            .cycle()
            .take(60)
            .enumerate()
        {
            let l = Layout::from_size_align(*size, if i % 5 == 0 { 64 } else { 8 }).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null() && (p as usize).is_multiple_of(l.align()));
            assert!(region.contains(p as usize, *size));
            held.push((p, l));
        }
        for (p, l) in held {
            // SAFETY: allocated above with `l`, freed once.
            unsafe { a.dealloc(p, l) };
        }
    }

    #[test]
    fn peers_allocate_inside_their_regions() {
        let r = Region::leak(1 << 20, 4096);
        round_trip(&linked_list(r), r);
        let r = Region::leak(1 << 20, 4096);
        round_trip(&buddy(r), r);
        let r = Region::leak(1 << 20, 4096);
        let t = rlsf(r);
        round_trip(&By(&t), r);
    }
}
