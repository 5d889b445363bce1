//! The size classes: eight per power of two (illumos' `kmem_alloc_sizes`
//! spacing), so no request of 64 bytes or more wastes more than 1/8 of its
//! class, from 8 bytes up to [`MAX_CLASS`].
//!
//! Classes are 8, 16, ... 64 (8 apart), then for every power of two `2^k`
//! from 64 to 16 KiB the eight classes `2^k + j * 2^(k-3)`, `j = 1..=8`. A
//! request of `n > 2^k` bytes lands in a class less than `2^(k-3)` above it,
//! so it wastes less than `2^(k-3) / (2^k + 2^(k-3)) = 1/9` of the class.
//!
//! A class's objects are aligned to the largest power of two dividing its
//! size (capped at the page size): slabs are page-aligned and objects sit a
//! multiple of their size from the slab's start.

use kmem_slab::PAGE_SIZE;

/// The largest size served by a class cache; larger requests take whole
/// pages from the page arena.
pub const MAX_CLASS: usize = 32 << 10;

/// Number of size classes.
pub const CLASSES: usize = 8 + 8 * 9;

/// Classes up to 64 bytes are this far apart.
const SMALL_STEP: usize = 8;

/// The size of class `i`.
pub const fn class_size(i: usize) -> usize {
    if i < 8 {
        return (i + 1) * SMALL_STEP;
    }
    let k = 6 + (i - 8) / 8;
    let j = (i - 8) % 8 + 1;
    (1 << k) + j * (1 << (k - 3))
}

/// The alignment every object of class `i` has.
pub const fn class_align(i: usize) -> usize {
    let size = class_size(i);
    let natural = 1 << size.trailing_zeros();
    if natural > PAGE_SIZE {
        PAGE_SIZE
    } else {
        natural
    }
}

/// Requests up to this size find their class in [`SMALL_CLASS`].
const TABLE_MAX: usize = 1024;

/// The class of every size up to [`TABLE_MAX`], by `(size + 7) / 8`: one
/// load instead of the arithmetic of [`class_by_log`].
static SMALL_CLASS: [u8; TABLE_MAX / SMALL_STEP + 1] = {
    let mut t = [0u8; TABLE_MAX / SMALL_STEP + 1];
    let mut i = 1;
    while i < t.len() {
        t[i] = class_by_log(i * SMALL_STEP) as u8;
        i += 1;
    }
    t
};

/// The class of `size` (`1..=MAX_CLASS`) by its logarithm.
const fn class_by_log(size: usize) -> usize {
    if size <= 64 {
        return (size - 1) / SMALL_STEP;
    }
    let s = size - 1;
    let k = (usize::BITS - 1 - s.leading_zeros()) as usize;
    8 + (k - 6) * 8 + ((s >> (k - 3)) - 8)
}

/// The class of a request of `size` bytes (`1..=MAX_CLASS`) with no
/// alignment beyond 8. Every class is a multiple of 8, so the class of
/// `size` is that of `size` rounded up to 8.
#[inline(always)]
pub(crate) fn class_of(size: usize) -> usize {
    debug_assert!(size != 0 && size <= MAX_CLASS);
    if size <= TABLE_MAX {
        return SMALL_CLASS[size.div_ceil(SMALL_STEP)] as usize;
    }
    class_by_log(size)
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The class cache with this index.
    Class(usize),
    /// Whole pages from the page arena: `bytes` (a multiple of the page
    /// size) aligned to `align` (at least the page size).
    Pages { bytes: usize, align: usize },
}

/// Routes a request of `size` bytes (non-zero) aligned to `align` (a power
/// of two); `None` when the size, rounded, overflows.
///
/// Rounding the size up to the alignment first is enough: that size's class
/// is then a multiple of the alignment (see the module docs), so its
/// objects are aligned.
#[inline(always)]
pub(crate) fn route(size: usize, align: usize) -> Option<Route> {
    if size <= MAX_CLASS {
        // Every class is a multiple of 8: nothing to round.
        if align <= SMALL_STEP {
            return Some(Route::Class(class_of(size)));
        }
        if align <= PAGE_SIZE {
            // No overflow: both are at most a few pages.
            let rounded = (size + align - 1) & !(align - 1);
            if rounded <= MAX_CLASS {
                return Some(Route::Class(class_of(rounded)));
            }
        }
    }
    route_pages(size, align)
}

/// [`route`] for what no class serves: whole pages.
#[inline(never)]
fn route_pages(size: usize, align: usize) -> Option<Route> {
    // The size in pages only: the arena places the run at the alignment
    // (`xalloc`), so a small over-aligned request takes no more than it
    // asks (one byte aligned to 1 GiB is one page, not 1 GiB).
    let bytes = size.checked_next_multiple_of(PAGE_SIZE)?;
    // A `Layout` never exceeds isize::MAX; neither may what it maps to.
    if bytes > isize::MAX as usize {
        return None;
    }
    Some(Route::Pages {
        bytes,
        align: align.max(PAGE_SIZE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_grow_and_end_at_the_maximum() {
        for i in 1..CLASSES {
            assert!(class_size(i) > class_size(i - 1));
        }
        assert_eq!(class_size(0), 8);
        assert_eq!(class_size(7), 64);
        assert_eq!(class_size(8), 72);
        assert_eq!(class_size(CLASSES - 1), MAX_CLASS);
    }

    #[test]
    fn the_table_agrees_with_the_arithmetic() {
        for size in 1..=TABLE_MAX {
            assert_eq!(class_of(size), class_by_log(size), "{size}");
        }
    }

    #[test]
    fn every_size_lands_in_the_smallest_class_that_fits() {
        for size in 1..=MAX_CLASS {
            let i = class_of(size);
            assert!(class_size(i) >= size, "{size} in {}", class_size(i));
            assert!(i == 0 || class_size(i - 1) < size, "{size}: class too big");
        }
    }

    #[test]
    fn waste_is_at_most_an_eighth_from_64_bytes() {
        for size in 64..=MAX_CLASS {
            let class = class_size(class_of(size));
            assert!(
                8 * (class - size) <= class,
                "{size} wastes {}",
                class - size
            );
        }
    }

    #[test]
    fn aligned_requests_get_aligned_classes() {
        for align in (0..=12).map(|s| 1usize << s) {
            for size in (1..=MAX_CLASS).step_by(7) {
                match route(size, align).unwrap() {
                    Route::Class(i) => {
                        assert!(class_size(i) >= size);
                        assert_eq!(class_align(i) % align, 0, "{size}/{align}");
                    }
                    Route::Pages { bytes, align: a } => {
                        assert!(bytes >= size && a >= align && bytes % PAGE_SIZE == 0);
                    }
                }
            }
        }
    }

    #[test]
    fn large_and_over_aligned_requests_take_pages() {
        assert_eq!(
            route(MAX_CLASS + 1, 8),
            Some(Route::Pages {
                bytes: MAX_CLASS + PAGE_SIZE,
                align: PAGE_SIZE
            })
        );
        // Over-aligned: the run takes the pages its size needs, placed at
        // the alignment.
        assert_eq!(
            route(8, 2 * PAGE_SIZE),
            Some(Route::Pages {
                bytes: PAGE_SIZE,
                align: 2 * PAGE_SIZE
            })
        );
        assert_eq!(
            route(1, 1 << 40),
            Some(Route::Pages {
                bytes: PAGE_SIZE,
                align: 1 << 40
            })
        );
        assert_eq!(route(usize::MAX - 5, 8), None);
        assert_eq!(route(isize::MAX as usize, 8), None);
    }
}
