//! slabmalloc 0.11 (Theseus, NrOS) as its README intends a kernel to use it:
//! a `ZoneAllocator` (power-of-two classes 8 B..128 KiB, bitmap slabs)
//! behind our [`PeerLock`](crate::PeerLock), refilled on `OutOfMemory` with a 4 KiB page
//! (sizes up to 256 B) or a 2 MiB page (larger) from page pools over
//! pre-touched regions. Empty pages go back to the pools only when
//! [`SlabZone::reclaim`] is called (slabmalloc's `try_reclaim_*`).

use core::alloc::Layout;
use core::cell::RefCell;
use core::ptr::{self, NonNull};

use slabmalloc::{AllocationError, Allocator as _, LargeObjectPage, ObjectPage, ZoneAllocator};

use crate::heap_peers::{Locked, RawHeap, Region};

/// Bytes of a small (4 KiB) and a large (2 MiB) slabmalloc page.
pub const SMALL_PAGE: usize = 4096;
/// See [`SMALL_PAGE`].
pub const LARGE_PAGE: usize = 2 << 20;

/// Pages of one size carved from a region, recycled through a free list.
pub struct PagePool {
    region: Region,
    page: usize,
    next: usize,
    free: Vec<usize>,
    /// Pages handed out and not given back.
    pub outstanding: usize,
    /// Largest `outstanding` so far.
    pub peak: usize,
}

impl PagePool {
    fn new(region: Region, page: usize) -> Self {
        Self {
            region,
            page,
            next: region.start.next_multiple_of(page),
            free: Vec::new(),
            outstanding: 0,
            peak: 0,
        }
    }

    fn take(&mut self) -> Option<usize> {
        let p = match self.free.pop() {
            Some(p) => p,
            None if self.next + self.page <= self.region.start + self.region.len => {
                self.next += self.page;
                self.next - self.page
            }
            None => return None,
        };
        self.outstanding += 1;
        self.peak = self.peak.max(self.outstanding);
        Some(p)
    }

    fn give(&mut self, p: usize) {
        self.outstanding -= 1;
        self.free.push(p);
    }
}

/// A slabmalloc zone and its page pools.
pub struct SlabZone {
    zone: ZoneAllocator<'static>,
    /// 4 KiB pages.
    pub small: PagePool,
    /// 2 MiB pages.
    pub large: PagePool,
}

// SAFETY: the zone's pages come from leaked regions owned by this value
// alone; all access goes through the `Locked` mutex.
unsafe impl Send for SlabZone {}

impl SlabZone {
    /// Gives every empty page back to the pools.
    pub fn reclaim(&mut self) {
        let small = RefCell::new(Vec::new());
        let large = RefCell::new(Vec::new());
        self.zone
            .try_reclaim_base_pages(usize::MAX, |p| small.borrow_mut().push(p as usize));
        self.zone
            .try_reclaim_large_pages(usize::MAX, |p| large.borrow_mut().push(p as usize));
        small
            .into_inner()
            .into_iter()
            .for_each(|p| self.small.give(p));
        large
            .into_inner()
            .into_iter()
            .for_each(|p| self.large.give(p));
    }

    /// Bytes of pages handed to the zone and not given back.
    pub fn outstanding_bytes(&self) -> usize {
        self.small.outstanding * SMALL_PAGE + self.large.outstanding * LARGE_PAGE
    }

    #[cold]
    fn refill(&mut self, layout: Layout) -> bool {
        if layout.size() <= ZoneAllocator::MAX_BASE_ALLOC_SIZE {
            let Some(p) = self.small.take() else {
                return false;
            };
            // SAFETY: `p` is a fresh, page-aligned 4 KiB page of a leaked
            // region, ours alone; slabmalloc initialises its metadata.
            let page = unsafe { &mut *(p as *mut ObjectPage<'static>) };
            // SAFETY: as above: an unused page.
            unsafe { self.zone.refill(layout, page) }.is_ok()
        } else {
            let Some(p) = self.large.take() else {
                return false;
            };
            // SAFETY: a fresh, 2 MiB-aligned 2 MiB page, ours alone.
            let page = unsafe { &mut *(p as *mut LargeObjectPage<'static>) };
            // SAFETY: as above: an unused page.
            unsafe { self.zone.refill_large(layout, page) }.is_ok()
        }
    }
}

impl RawHeap for SlabZone {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        loop {
            match self.zone.allocate(layout) {
                Ok(p) => return p.as_ptr(),
                Err(AllocationError::OutOfMemory) if self.refill(layout) => {}
                Err(_) => return ptr::null_mut(),
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is non-null (a successful allocation's).
        let p = unsafe { NonNull::new_unchecked(ptr) };
        let _ = self.zone.deallocate(p, layout);
    }
}

/// slabmalloc behind the lock.
pub type Slabmalloc = Locked<SlabZone>;

/// A slabmalloc zone over `small_bytes` of 4 KiB pages and `large_bytes`
/// of 2 MiB pages (both regions pre-touched).
pub fn slabmalloc(small_bytes: usize, large_bytes: usize) -> Slabmalloc {
    let small = Region::leak(small_bytes, SMALL_PAGE);
    let large = Region::leak(large_bytes, LARGE_PAGE);
    let zone = SlabZone {
        zone: ZoneAllocator::new(),
        small: PagePool::new(small, SMALL_PAGE),
        large: PagePool::new(large, LARGE_PAGE),
    };
    Locked::new(zone, small)
}

#[cfg(test)]
mod tests {
    use core::alloc::{GlobalAlloc, Layout};

    use super::slabmalloc;

    #[test]
    fn refills_and_reclaims() {
        let s = slabmalloc(1 << 20, 8 << 20);
        let mut held = Vec::new();
        for size in [8usize, 64, 256, 300, 1024, 4000] {
            let l = Layout::from_size_align(size, 8).unwrap();
            for _ in 0..200 {
                // SAFETY: non-zero size.
                let p = unsafe { s.alloc(l) };
                assert!(!p.is_null());
                held.push((p, l));
            }
        }
        assert!(s.with(|z| z.outstanding_bytes()) > 0);
        for (p, l) in held {
            // SAFETY: allocated above, freed once.
            unsafe { s.dealloc(p, l) };
        }
        s.with(|z| z.reclaim());
        assert_eq!(s.with(|z| z.outstanding_bytes()), 0);
    }
}
