//! `std` feature: [`OsPageMap`], a two-level radix map from every page of
//! the user address space to its owner, for unsized frees (a C `free`).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use kmem_slab::{PageMap, PAGE_SIZE};

/// Bits of a user-space address on x86_64 and aarch64 Linux (47 and 48:
/// the map covers 48).
const ADDRESS_BITS: u32 = 48;
/// Pages one leaf covers: 2^18 (1 GiB of 4 KiB pages), a leaf of 1 MiB.
const LEAF_BITS: u32 = 18;
const LEAF_LEN: usize = 1 << LEAF_BITS;
/// Leaves the root points at: 2^18 (a root of 2 MiB).
const ROOT_LEN: usize = 1 << (ADDRESS_BITS - PAGE_SIZE.trailing_zeros() - LEAF_BITS);

/// The owner of every 4 KiB page of the address space, 4 bytes each: a
/// root of pointers to leaves of entries, each part `mmap`ed
/// (`MAP_NORESERVE`) on first use, so that only the pages of the map that
/// cover pages in use take memory (4 KiB of map per 4 MiB of heap). Leaves
/// are never unmapped. Lookups take no lock: two loads.
pub struct OsPageMap {
    root: NonNull<AtomicPtr<AtomicU32>>,
}

// SAFETY: the root and the leaves are arrays of atomics, mapped for the
// rest of the program; every access goes through them.
unsafe impl Sync for OsPageMap {}
// SAFETY: as above.
unsafe impl Send for OsPageMap {}

impl OsPageMap {
    /// A map with nothing recorded; `None` if the root cannot be mapped.
    /// The map is never unmapped: make one per allocator, for the rest of
    /// the program.
    pub fn new() -> Option<Self> {
        let root = crate::os::map(ROOT_LEN * size_of::<AtomicPtr<AtomicU32>>())?;
        Some(Self { root: root.cast() })
    }

    /// The leaf slot for the page of `addr`, and the entry's index in it;
    /// `None` past the address bits.
    fn slot(&self, addr: usize) -> Option<(&AtomicPtr<AtomicU32>, usize)> {
        let page = addr >> PAGE_SIZE.trailing_zeros();
        let leaf = page >> LEAF_BITS;
        if leaf >= ROOT_LEN {
            return None;
        }
        // SAFETY: the root is `ROOT_LEN` zero-initialized atomics, mapped
        // for the map's life (`new`); `leaf` is below `ROOT_LEN`.
        let slot = unsafe { &*self.root.as_ptr().add(leaf) };
        Some((slot, page & (LEAF_LEN - 1)))
    }

    /// The entry for the page of `addr`, mapping its leaf if `make`.
    fn entry(&self, addr: usize, make: bool) -> Option<&AtomicU32> {
        let (slot, i) = self.slot(addr)?;
        let mut leaf = slot.load(Ordering::Acquire);
        if leaf.is_null() {
            if !make {
                return None;
            }
            let fresh = crate::os::map(LEAF_LEN * size_of::<AtomicU32>())?
                .cast::<AtomicU32>()
                .as_ptr();
            match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => leaf = fresh,
                Err(theirs) => {
                    // SAFETY: the mapping just made, which nothing else saw.
                    unsafe { crate::os::unmap(fresh as usize, LEAF_LEN * size_of::<AtomicU32>()) };
                    leaf = theirs;
                }
            }
        }
        // SAFETY: a leaf is `LEAF_LEN` zero-initialized atomics, mapped for
        // the rest of the program; `i` is below `LEAF_LEN`.
        Some(unsafe { &*leaf.add(i) })
    }
}

// SAFETY: `owner` reads the entry `set` last wrote for the page (0 after
// `clear`, or where no leaf was ever mapped): the map is exactly what it
// was told.
unsafe impl PageMap for OsPageMap {
    fn set(&self, base: usize, len: usize, owner: u32) -> bool {
        let mut at = base;
        while at < base.saturating_add(len) {
            let Some(e) = self.entry(at, true) else {
                // Undo what was set: nobody owns part of a buffer.
                self.clear(base, at - base);
                return false;
            };
            e.store(owner, Ordering::Relaxed);
            at += PAGE_SIZE;
        }
        true
    }

    fn clear(&self, base: usize, len: usize) {
        let mut at = base;
        while at < base.saturating_add(len) {
            if let Some(e) = self.entry(at, false) {
                e.store(0, Ordering::Relaxed);
            }
            at += PAGE_SIZE;
        }
    }

    #[inline]
    fn owner(&self, addr: usize) -> u32 {
        self.entry(addr, false)
            .map_or(0, |e| e.load(Ordering::Relaxed))
    }
}
