//! How a cache lays out its slabs, from the object size, alignment, flags
//! and source — Akaros' rules, made explicit.
//!
//! Headed slabs are *coloured*, as in Bonwick's allocator: the bytes that
//! the objects, bitmap and header leave unused (the slack) go before the
//! first object, a different amount in each new slab (0, 64, 128, ... up
//! to the slack, then 0 again), so that the same object of different slabs
//! falls on different cache lines instead of competing for the same
//! cache sets. The colour is a multiple of 64 and of the alignment, and
//! the objects of a coloured slab still end below its site slots, bitmap
//! and header.

use core::mem::size_of;

use crate::raw::{site_bytes, SlabHeader, SITE_SLOT};
use crate::{CacheFlags, CreateError, PAGE_SIZE};

/// Objects up to this size live in one-page headed slabs (Akaros'
/// `SLAB_LARGE_CUTOFF`, `PGSIZE / 8`); larger ones in larger headed slabs
/// (up to [`HEADED_MAX`]) or, past that or when the cache cannot use the
/// headed layout, on bufctls.
pub const SMALL_MAX: usize = PAGE_SIZE / 8;

/// The largest headed slab (unless the source's quantum is larger):
/// objects that would need more use bufctls.
pub const HEADED_MAX: usize = 1 << 20;

/// Objects per bufctl slab the slab size aims for (Akaros'
/// `NUM_BUF_PER_SLAB`).
const BUFS_PER_SLAB: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Headed: a power-of-two slab aligned to its size, header and
    /// allocated bitmap at its end (with `site-stats`, the objects' site
    /// slots below the bitmap), objects from the slab's colour; free
    /// objects found through the bitmap.
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
    /// Slab colouring (headed layout): how many colours the cache's slabs
    /// cycle through, 1 (every slab at colour 0) when a slab has less
    /// slack than one step, and for the bufctl layout. See
    /// [`colour`](Self::colour).
    pub(crate) colours: u32,
    /// The distance between two colours: the cache line, or the
    /// alignment when that is larger.
    pub(crate) colour_step: usize,
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

/// The largest colour, so that a slab header keeps it in 16 bits: slabs
/// with more slack than this (a source quantum past [`HEADED_MAX`]) use
/// only the first 64 KiB of it.
pub(crate) const MAX_COLOUR: usize = u16::MAX as usize;

/// The distance between colours for objects aligned to `align` (for a
/// quantum cache, to its quantum too): a cache line (64 bytes), or the
/// alignment when larger, so colouring keeps the objects aligned.
const fn colour_step(align: usize) -> usize {
    if align > 64 {
        align
    } else {
        64
    }
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
            colours: 1,
            colour_step: colour_step(r.align),
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
                // What the objects, bitmap, site slots and header leave
                // unused: the room colours take.
                let slack = room - n * size - n.div_ceil(64) * 8 - site_bytes(n);
                // A quantum cache's objects are segments of its arena: a
                // multiple of the quantum from their slab's base, so its
                // colours are too (`QuantumCaches`' promise).
                let step = colour_step(if r.flags.contains(CacheFlags::QCACHE) {
                    r.align.max(r.quantum)
                } else {
                    r.align
                });
                return Some(Self {
                    size,
                    obj: size,
                    align: r.align,
                    slab_size,
                    per_slab: u32::try_from(n).ok()?,
                    layout: Layout::Small {
                        bitmap_words: n.div_ceil(64),
                    },
                    colours: u32::try_from(slack.min(MAX_COLOUR) / step + 1).ok()?,
                    colour_step: step,
                });
            }
            slab_size = slab_size.checked_mul(2)?;
        }
    }

    /// The colour of the `k`-th slab the cache builds: the offset of its
    /// first object from the slab's base, `0, step, 2 * step, ...` up to
    /// the largest the slab's slack allows, then 0 again. Always a
    /// multiple of the alignment (and of 64), at most [`MAX_COLOUR`].
    pub(crate) fn colour(&self, k: u32) -> usize {
        (k % self.colours) as usize * self.colour_step
    }

    /// The largest colour a slab of the cache has.
    pub(crate) fn max_colour(&self) -> usize {
        (self.colours as usize - 1) * self.colour_step
    }

    /// Offset of object `obj` in its bufctl slab, if it is an object start.
    pub(crate) fn index(&self, base: usize, obj: usize) -> Option<usize> {
        let off = obj.checked_sub(base)?;
        (off % self.size == 0 && off / self.size < self.per_slab as usize)
            .then_some(off / self.size)
    }
}
