//! How a cache lays out its slabs, from the object size, alignment, flags
//! and source — the seed's rules, made explicit.

use core::mem::size_of;

use crate::raw::{site_bytes, SlabHeader, SITE_SLOT};
use crate::{CacheFlags, CreateError, PAGE_SIZE};

/// Objects up to this size live in one-page headed slabs (the seed's
/// `SLAB_LARGE_CUTOFF`, `PGSIZE / 8`); larger ones in larger headed slabs
/// (up to [`HEADED_MAX`]) or, past that or when the cache cannot use the
/// headed layout, on bufctls.
pub const SMALL_MAX: usize = PAGE_SIZE / 8;

/// The largest headed slab (unless the source's quantum is larger):
/// objects that would need more use bufctls.
pub const HEADED_MAX: usize = 1 << 20;

/// Objects per bufctl slab the slab size aims for (the seed's
/// `NUM_BUF_PER_SLAB`).
const BUFS_PER_SLAB: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Headed: a power-of-two slab aligned to its size, header and
    /// allocated bitmap at its end (with `site-stats`, the objects' site
    /// slots below the bitmap); free objects found through the bitmap.
    Small { bitmap_words: usize },
    /// Buffers tracked by bufctls in a hash; header in a `kmem_slab` object.
    Bufctl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Buffer size, the distance between objects: the object size and, in
    /// debug mode, the trailer (guard word and audit record), rounded.
    pub(crate) size: usize,
    /// Object size, rounded to the alignment (and to 8 if touched): what
    /// users get.
    pub(crate) obj: usize,
    pub(crate) align: usize,
    /// Bytes of one slab, taken from the source in one allocation.
    pub(crate) slab_size: usize,
    pub(crate) per_slab: u32,
    pub(crate) layout: Layout,
}

pub(crate) struct Request {
    pub(crate) size: usize,
    pub(crate) align: usize,
    pub(crate) flags: CacheFlags,
    pub(crate) qcache_max: usize,
    pub(crate) quantum: usize,
    pub(crate) memory: bool,
    /// Bootstrap caches are always small (they feed the bufctl layout).
    pub(crate) force_small: bool,
    /// Bytes of debug trailer after each object (0 without).
    pub(crate) trailer: usize,
}

fn round_up(x: usize, to: usize) -> Option<usize> {
    x.checked_next_multiple_of(to)
}

impl Geometry {
    pub(crate) fn plan(r: &Request) -> Result<Self, CreateError> {
        if r.size == 0 {
            return Err(CreateError::ZeroSize);
        }
        if !r.align.is_power_of_two() {
            return Err(CreateError::BadAlign);
        }
        if r.align > PAGE_SIZE {
            return Err(CreateError::AlignTooLarge);
        }
        let touch = !r.flags.contains(CacheFlags::NOTOUCH);
        if touch && !r.memory {
            return Err(CreateError::NotMemory);
        }
        let mut size = round_up(r.size, r.align).ok_or(CreateError::TooLarge)?;
        if touch {
            size = round_up(size, 8).ok_or(CreateError::TooLarge)?;
        }
        let obj = size;
        if r.trailer > 0 {
            if !touch {
                return Err(CreateError::NotMemory);
            }
            size = size
                .checked_add(r.trailer)
                .and_then(|s| round_up(s, r.align))
                .ok_or(CreateError::TooLarge)?;
        }
        let headed = r.force_small
            || (touch && !r.flags.contains(CacheFlags::DEBUG) && r.quantum.is_power_of_two());
        if headed && r.trailer == 0 {
            if let Some(geo) = Self::headed(size, r) {
                return Ok(geo);
            }
            if r.force_small {
                return Err(CreateError::TooLarge);
            }
        }
        let slab_size = if r.flags.contains(CacheFlags::QCACHE) {
            if r.qcache_max < size {
                return Err(CreateError::BadQcacheMax);
            }
            r.qcache_max
                .checked_mul(3)
                .and_then(usize::checked_next_power_of_two)
        } else {
            let page = if r.memory {
                r.quantum.max(PAGE_SIZE)
            } else {
                r.quantum
            };
            size.checked_mul(BUFS_PER_SLAB)
                .and_then(|s| round_up(s, page))
        };
        let slab_size = slab_size
            .and_then(|s| round_up(s, r.quantum))
            .ok_or(CreateError::TooLarge)?;
        Ok(Self {
            size,
            obj,
            align: r.align,
            slab_size,
            per_slab: u32::try_from(slab_size / size).map_err(|_| CreateError::TooLarge)?,
            layout: Layout::Bufctl,
        })
    }

    /// The headed (small) layout for objects of `size`: slabs of a power
    /// of two bytes aligned to their size, header and bitmap at the end.
    /// Objects up to [`SMALL_MAX`] take one page (or quantum); larger ones
    /// the smallest power of two that wastes at most 1/16 of it, up to
    /// [`HEADED_MAX`]. `None` past that.
    fn headed(size: usize, r: &Request) -> Option<Self> {
        let mut slab_size = r.quantum.max(PAGE_SIZE);
        loop {
            if !slab_size.is_power_of_two() || slab_size > HEADED_MAX.max(r.quantum) {
                return None;
            }
            let room = slab_size - size_of::<SlabHeader>();
            // n objects, ceil(n / 64) bitmap words and (`site-stats`) n
            // site slots must fit the room.
            let mut n = room * 8 / (size * 8 + 1 + SITE_SLOT * 8);
            while n > 0 && n * size + n.div_ceil(64) * 8 + site_bytes(n) > room {
                n -= 1;
            }
            let fits = n > 0 && (size <= SMALL_MAX || slab_size - n * size <= slab_size / 16);
            if fits || r.force_small && n > 0 {
                return Some(Self {
                    size,
                    obj: size,
                    align: r.align,
                    slab_size,
                    per_slab: u32::try_from(n).ok()?,
                    layout: Layout::Small {
                        bitmap_words: n.div_ceil(64),
                    },
                });
            }
            slab_size = slab_size.checked_mul(2)?;
        }
    }

    /// Offset of object `obj` in its slab, if it is an object start.
    pub(crate) fn index(&self, base: usize, obj: usize) -> Option<usize> {
        let off = obj.checked_sub(base)?;
        (off % self.size == 0 && off / self.size < self.per_slab as usize)
            .then_some(off / self.size)
    }
}
