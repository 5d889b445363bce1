//! AddressSanitizer annotations for memory arenas and the layers above.
//!
//! Built with `--cfg kmem_asan` (and `-Zsanitizer=address`, as `cargo xtask
//! sanitize` does), memory arenas poison their free segments and object
//! caches their free objects, so a use after free inside the managed memory
//! is reported by AddressSanitizer; otherwise both functions are empty and
//! the layers call them only under `#[cfg(kmem_asan)]`.

#[cfg(kmem_asan)]
extern "C" {
    fn __asan_poison_memory_region(addr: *const u8, size: usize);
    fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
}

/// The sanitizer's shadow granule: one shadow byte per 8 bytes, which can
/// only say "the first k bytes are addressable".
#[cfg(kmem_asan)]
const GRANULE: usize = 8;

/// Marks `[addr, addr + size)` as not to be touched (free): the whole
/// granules inside it, so a neighbour sharing a granule at either end (an
/// arena whose quantum is not a multiple of 8) is never poisoned.
#[inline(always)]
pub fn poison(addr: usize, size: usize) {
    #[cfg(kmem_asan)]
    {
        let start = addr.next_multiple_of(GRANULE);
        let end = (addr + size) & !(GRANULE - 1);
        if end > start {
            // SAFETY: the sanitizer only records the range in its shadow
            // memory; callers pass memory they manage.
            unsafe { __asan_poison_memory_region(start as *const u8, end - start) };
        }
    }
    let _ = (addr, size);
}

/// Marks `[addr, addr + size)` as usable again (allocated), with the whole
/// granules it touches, for the same reason.
#[inline(always)]
pub fn unpoison(addr: usize, size: usize) {
    #[cfg(kmem_asan)]
    {
        let start = addr & !(GRANULE - 1);
        let end = (addr + size).next_multiple_of(GRANULE);
        // SAFETY: as in `poison`.
        unsafe { __asan_unpoison_memory_region(start as *const u8, end - start) };
    }
    let _ = (addr, size);
}
