//! The free check of headed caches' fast path: with no lock taken, a free
//! is refused unless the object is an object start of a live slab of this
//! cache and, for a plain cache, is not free already.
//!
//! A headed slab (the small layout) is a buffer of `2^k` bytes aligned to
//! its size, with its header at its end; the header's last word is the
//! slab's *owner word*, made from the cache's *owner key* and the slab's
//! colour, written when the slab is built and cleared when it is taken
//! apart. From an object's address, `addr | (slab_size - 1)` is
//! the slab's last byte, so one load finds the owner of the slab an address
//! falls in. The object-start test is a multiply and a rotate (an exact
//! divisibility test) and a compare, no division. A slab's colour (the
//! offset of its first object from its base) costs the test nothing: the
//! owner word is the key plus the colour times the object size's odd
//! inverse, so its difference from the key is what the colour adds to the
//! multiply, and subtracting it gives the object's index. An address in
//! the colour gap, off the grid, past the last object or in the header
//! gives an index past every object's; so does a foreign slab's word, but
//! for a chance of `per_slab / 2^64` per address (2^-52 for a page of
//! 16-byte objects).
//!
//! A *plain* cache (memory, no constructor or destructor) also keeps a
//! free mark in the first word of every free object: the key XOR the
//! object's address, written by the free (before the object enters a
//! magazine or its slab), by a slab's build for every object, and cleared
//! when the object is handed out. The slab layer of a headed slab never
//! writes into objects (free objects are found through its bitmap), and
//! the deferred stack links through the second word, so the mark stays
//! while the object is free, wherever it is. A free that finds the mark is
//! a double free. The check is exact for double frees made one after the
//! other (on one thread or several); it can be fooled by a user who writes
//! the mark into an object, writes over a freed object's first word before
//! freeing it again, or frees one object from two threads at the same
//! instant (a data race of the program's; the read and the write of the
//! mark are not one atomic step). Debug mode catches all three.
//!
//! With `site-stats`, the same index arithmetic finds an object's site
//! slot (below its slab's bitmap, see `slab.rs`) without a lock, so the
//! magazine fast paths record the site of an object handed out and clear
//! it when the object is freed.

use core::mem::size_of;
use core::ptr;
#[cfg(feature = "site-stats")]
use core::sync::atomic::AtomicU32;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::error::BadFree;
#[cfg(feature = "site-stats")]
use crate::sites::{resite, SiteId};

use super::{Freed, Taken};

/// Draws a fresh owner key: odd (never an aligned address, never zero),
/// different for every cache of the process (a counter through a
/// bijective mixer; the counter's address adds the load address).
pub(crate) fn new_key() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as u64;
    let seed = ptr::addr_of!(NEXT) as u64;
    // splitmix64's finalizer: a bijection of u64.
    let mut z = n
        .wrapping_add(seed.rotate_left(29))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z as usize) | 1
}

/// The free mark of the object at `addr` of the cache with `key`: odd
/// (never an aligned address, never zero), and different at every address,
/// so bytes copied from a free object (a reaped slab's memory reused, say)
/// never mark another one.
#[inline(always)]
pub(crate) const fn mark(key: usize, addr: usize) -> usize {
    key ^ addr
}

/// The multiplicative inverse of odd `d` modulo `2^64`.
const fn inverse(d: u64) -> u64 {
    // Newton's iteration doubles the correct low bits: 3, 6, 12, 24, 48, 96.
    let mut x = d;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(d.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// A free that [`FreeCheck::admit_owned`] admitted; with `site-stats`,
/// where its object's site slot is (found while the object's index was at
/// hand).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admitted {
    #[cfg(feature = "site-stats")]
    slot: usize,
    /// The first word the free mark replaced (`admit_tagged`; 0 for
    /// `admit_owned`), for [`FreeCheck::unmark`].
    pub(crate) prev: usize,
}

/// A free the fast check refused; [`FreeCheck::why`] says why.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refusal;

/// A headed cache's fast free check (see the [module docs](self)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FreeCheck {
    /// The cache's owner key.
    key: usize,
    /// Plain: free objects carry `key` in their first word.
    tagged: bool,
    /// `slab_size - 1`: ORed into an address, its slab's last byte.
    low: usize,
    /// Objects per slab.
    per_slab: u64,
    /// The object size as `odd << shift`, and `odd`'s inverse modulo
    /// `2^64`.
    inv: u64,
    shift: u32,
    /// `site-stats`: the offset of the site slots from a slab's base.
    #[cfg(feature = "site-stats")]
    sites: usize,
    /// `site-stats`: the bytes an object counts for at its site.
    #[cfg(feature = "site-stats")]
    bytes: u64,
}

impl FreeCheck {
    /// The check for a cache whose headed slabs are `slab_size` bytes (a
    /// power of two) holding `per_slab` objects of `size` bytes from their
    /// colour (kept in each slab's header, 0 for a cache whose slabs are
    /// not coloured); `tagged` for a plain cache (objects of memory, a
    /// word at least, no constructed state).
    ///
    /// # Panics
    /// If `slab_size` is not a power of two or the objects do not fit.
    pub(crate) fn new(slab_size: usize, size: usize, per_slab: usize, tagged: bool) -> Self {
        assert!(
            slab_size.is_power_of_two()
                && size > 0
                && per_slab.checked_mul(size).is_some_and(|s| s < slab_size)
                && (!tagged || size >= size_of::<usize>()),
            "kmem-slab: free check for a layout that is not headed"
        );
        let shift = size.trailing_zeros();
        let odd = (size >> shift) as u64;
        Self {
            key: new_key(),
            tagged,
            low: slab_size - 1,
            per_slab: per_slab as u64,
            inv: inverse(odd),
            shift,
            #[cfg(feature = "site-stats")]
            sites: slab_size
                - size_of::<super::SlabHeader>()
                - per_slab.div_ceil(64) * 8
                - super::site_bytes(per_slab),
            #[cfg(feature = "site-stats")]
            bytes: size as u64,
        }
    }

    /// The check of a cache that is not headed: never used on a fast path
    /// (its key is no slab's).
    pub(crate) const fn unused() -> Self {
        Self {
            key: 0,
            tagged: false,
            low: 0,
            per_slab: 0,
            inv: 1,
            shift: 0,
            #[cfg(feature = "site-stats")]
            sites: 0,
            #[cfg(feature = "site-stats")]
            bytes: 0,
        }
    }

    /// True for a plain cache, whose free objects carry the free mark.
    pub(crate) fn tagged(&self) -> bool {
        self.tagged
    }

    /// The owner key (free marks are made from it).
    pub(crate) fn key(&self) -> usize {
        self.key
    }

    /// The owner word of a slab of this cache whose objects start `colour`
    /// bytes into it, written at the end of its header: the key plus what
    /// the colour adds to the index computation's multiply (see
    /// [`index_at`](Self::index_at)).
    pub(crate) fn owner_word(&self, colour: usize) -> usize {
        self.key
            .wrapping_add((colour as u64).wrapping_mul(self.inv) as usize)
    }

    /// The mark free objects carry, for a plain cache.
    pub(crate) fn tag(&self) -> Option<usize> {
        self.tagged.then_some(self.key)
    }

    /// The index of the object at `addr` in the slab it falls in, from
    /// `delta`, its slab's owner word less this cache's key
    /// ([`owner_delta`](Self::owner_delta)): below `per_slab` when `addr`
    /// is an object start of a slab of this cache, above it when the slab
    /// is this cache's and `addr` is not an object start (the colour gap
    /// included), and for another slab above it but for a chance of
    /// `per_slab / 2^64`.
    #[inline(always)]
    fn index_at(&self, addr: usize, delta: usize) -> u64 {
        // With `size = odd << shift`, `inv = odd^-1 mod 2^64`, and the
        // colour `c` (an owner word `key + c * inv`), an address at `c + x`
        // into the slab gives `(c + x) * inv - c * inv = x * inv`, and
        // `rotr(x * inv, shift)` is `x / size` when `size` divides `x` and
        // above `(2^64 - 1) / size` when it does not (the divisibility
        // test of Hacker's Delight, 10-17); `x` below 0 (the colour gap)
        // wraps to a huge offset, not a multiple of the size or past every
        // object. Every index is below `per_slab <= (2^64 - 1) / size`, so
        // one compare tests both. A foreign word makes the product less it
        // arbitrary. The unit tests try every offset of real layouts.
        ((addr & self.low) as u64)
            .wrapping_mul(self.inv)
            .wrapping_sub(delta as u64)
            .rotate_right(self.shift)
    }

    /// The owner word of the slab that `addr` falls in, less this cache's
    /// key: `colour * inv` for a slab of this cache (0 uncoloured).
    #[inline(always)]
    fn owner_delta(&self, addr: usize) -> usize {
        let owner = (addr | self.low) - (size_of::<usize>() - 1);
        // The header's words stay unpoisoned; a bad pointer's may not be.
        #[cfg(kmem_asan)]
        kmem_arena::asan::unpoison(owner, size_of::<usize>());
        // `Freed`'s promise (every caller has one for `addr`):
        // `addr` is an object of this cache, so `owner` is the last word of
        // its slab's header, which lives as long as the slab, aligned (a
        // slab is aligned to its power-of-two size). If the promise is
        // broken, which is what this check is for, the word is in the same
        // aligned block of `slab_size` bytes as `addr`: mapped when the
        // source's spans are aligned to the largest slab size, or are one
        // page and every slab too (else a bad pointer can fault:
        // documented). The load is atomic because the word is an
        // `AtomicUsize` of a live header.
        // SAFETY: as just said.
        let found = unsafe { (*(owner as *const AtomicUsize)).load(Ordering::Relaxed) };
        found.wrapping_sub(self.key)
    }

    /// The colour a slab's owner word says, if it is one of this cache's
    /// (off the fast path: for [`why`](Self::why)).
    fn colour_of(&self, delta: usize) -> Option<usize> {
        // `delta = colour * inv`, so `colour = delta * odd`.
        let colour = (delta as u64).wrapping_mul(inverse(self.inv)) as usize;
        // Colours are multiples of 8 (of the alignment) inside the slab.
        (colour <= self.low && colour.is_multiple_of(8)).then_some(colour)
    }

    /// Admits a free of `obj` to the magazines: `Err` if it does not lie in
    /// a live slab of this cache or is not an object start
    /// ([`why`](Self::why) says which). Takes no lock.
    #[inline(always)]
    pub(crate) fn admit_owned(&self, obj: &Freed) -> Result<Admitted, Refusal> {
        let addr = obj.addr();
        let i = self.index_at(addr, self.owner_delta(addr));
        if i >= self.per_slab {
            return Err(Refusal);
        }
        Ok(Admitted {
            #[cfg(feature = "site-stats")]
            slot: self.site_slot(addr, i),
            prev: 0,
        })
    }

    /// [`admit_owned`](Self::admit_owned), then the free mark: `Err` if
    /// the object carries it, else marks it free. For plain caches (see
    /// [`tagged`](Self::tagged)); on another, the mark would overwrite the
    /// first word of constructed state.
    #[inline(always)]
    pub(crate) fn admit_tagged(&self, obj: &Freed) -> Result<Admitted, Refusal> {
        let mut admitted = self.admit_owned(obj)?;
        let addr = obj.addr();
        let word = addr as *mut usize;
        #[cfg(kmem_asan)]
        kmem_arena::asan::unpoison(addr, size_of::<usize>());
        let mark = mark(self.key, addr);
        // an object start of a live slab of this cache (checked
        // above; headed slabs are memory, objects a word at least and
        // aligned to 8): a word of memory that the free gives back to the
        // cache.
        // SAFETY: as just said.
        admitted.prev = unsafe { word.read() };
        if admitted.prev == mark {
            #[cfg(kmem_asan)]
            kmem_arena::asan::poison(addr, size_of::<usize>());
            return Err(Refusal);
        }
        // SAFETY: as above; the object is the cache's from now on.
        unsafe { word.write(mark) };
        Ok(admitted)
    }

    /// Why [`admit_owned`](Self::admit_owned) or
    /// [`admit_tagged`](Self::admit_tagged) refused `obj` (which they left
    /// as it was): the tests again, off the fast path, which keeps no
    /// reason at hand.
    #[cold]
    #[inline(never)]
    pub(crate) fn why(&self, obj: &Freed) -> BadFree {
        let addr = obj.addr();
        let delta = self.owner_delta(addr);
        if self.colour_of(delta).is_none() {
            BadFree::Foreign
        } else if self.index_at(addr, delta) >= self.per_slab {
            BadFree::NotObjectStart
        } else {
            // The mark: the one test left (or, for a cache without marks,
            // the slab was taken apart and built again for this cache in
            // between, which only a free racing with another can see).
            BadFree::DoubleFree
        }
    }

    /// Puts back the first word [`admit_tagged`](Self::admit_tagged)
    /// replaced with the free mark, for a free refused after its admission
    /// (a signal handler's free that cannot be deferred): the object is
    /// its caller's again, unchanged. Nothing for a cache without marks.
    pub(crate) fn unmark(&self, obj: &Freed, prev: usize) {
        if self.tagged {
            #[cfg(kmem_asan)]
            kmem_arena::asan::unpoison(obj.addr(), size_of::<usize>());
            // SAFETY: `Freed`'s promise: an object of this plain cache, a
            // word of memory at least, aligned; the free was refused, so it
            // is its caller's, who waits in this call.
            unsafe { (obj.addr() as *mut usize).write(prev) };
        }
    }

    /// `site-stats`: the address of the site slot of object `i` of the
    /// slab that `addr` lies in.
    #[cfg(feature = "site-stats")]
    #[inline(always)]
    fn site_slot(&self, addr: usize, i: u64) -> usize {
        (addr & !self.low) + self.sites + i as usize * size_of::<u32>()
    }

    /// `site-stats`: `obj`, being handed out, now counts for `site`.
    #[cfg(feature = "site-stats")]
    #[inline(always)]
    pub(crate) fn hand_out_site(&self, obj: &Taken, site: SiteId) {
        let addr = obj.addr();
        let i = self.index_at(addr, self.owner_delta(addr));
        if i >= self.per_slab {
            return;
        }
        // a `Taken` of this (headed) cache is an object start
        // (checked: `i < per_slab`) of one of its live slabs, which it keeps
        // alive; the slab's base is `addr & !low` (aligned to its
        // power-of-two size), and slot `i` of the site slots that
        // `build_small` initialized at `sites` from it lies in the slab,
        // aligned to 4. An atomic: shared with the set's users under the
        // cache lock.
        // SAFETY: as just said.
        let slot = unsafe { &*(self.site_slot(addr, i) as *const AtomicU32) };
        resite(slot, site, self.bytes);
    }

    /// `site-stats`: the object whose free [`admit_owned`](Self::admit_owned)
    /// or [`admit_tagged`](Self::admit_tagged) admitted as `admitted` no
    /// longer counts for its site.
    #[cfg(feature = "site-stats")]
    #[inline(always)]
    pub(crate) fn free_site(&self, admitted: Admitted) {
        // `admitted.slot` is the site slot of the object, an object
        // start of a live slab of this cache (the admission checked both:
        // the slab's owner key, and the object start); the free keeps the
        // slab alive until the object is back in it. Aligned to 4, and
        // initialized by `build_small`, as in `hand_out_site`.
        // SAFETY: as just said.
        let slot = unsafe { &*(admitted.slot as *const AtomicU32) };
        resite(slot, SiteId::NONE, self.bytes);
    }

    /// Puts the free mark on an object of a plain (tagged) cache taken
    /// from its slab for a batch refill, as a free into the magazines
    /// does, and gives up the token: the object becomes a round.
    pub(crate) fn mark_cached(&self, obj: Taken) -> usize {
        debug_assert!(self.tagged && obj.bytes() >= size_of::<usize>());
        let addr = obj.addr();
        // SAFETY: the holder of a `Taken` owns its memory, a word at least
        // and aligned for a plain cache (as in `hand_out_tagged`).
        unsafe { (addr as *mut usize).write(mark(self.key, addr)) };
        obj.hand_out()
    }

    /// Clears the free mark of an object of a plain (tagged) cache being
    /// handed out.
    #[inline(always)]
    pub(crate) fn hand_out_tagged(obj: &Taken) {
        debug_assert!(obj.bytes() >= size_of::<usize>());
        // The holder of a `Taken` owns its memory, which for a plain cache
        // is a word at least (`new` refuses a tagged check for smaller
        // objects) and aligned (objects of plain caches are multiples of 8
        // from an aligned base).
        // SAFETY: as just said.
        unsafe { (obj.addr() as *mut usize).write(0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_inverse() {
        for d in (1u64..10_000).step_by(2) {
            assert_eq!(d.wrapping_mul(inverse(d)), 1);
        }
    }

    #[test]
    fn object_start_test_is_exact() {
        for size in (8usize..=1024)
            .step_by(8)
            .chain([1536, 4096, 5000, 12_288, 32 << 10])
        {
            let slab = (size * 8).next_power_of_two().max(4096);
            let slack = (slab - 80) % size;
            let per = (slab - 80) / size;
            let c = FreeCheck::new(slab, size, per, true);
            // Every colour a slab of this layout may have (and 0).
            for colour in (0..=slack).step_by(64) {
                let delta = c.owner_word(colour).wrapping_sub(c.key());
                assert_eq!(c.colour_of(delta), Some(colour));
                for off in 0..slab {
                    let want =
                        off >= colour && (off - colour) % size == 0 && (off - colour) / size < per;
                    let got = c.index_at(off, delta) < per as u64;
                    assert_eq!(got, want, "size {size} colour {colour} off {off}");
                }
            }
        }
    }

    #[test]
    fn a_foreign_owner_word_is_refused() {
        let c = FreeCheck::new(4096, 64, 62, true);
        // Another cache's key, zeroed memory, all ones.
        for word in [new_key(), 0, usize::MAX] {
            let delta = word.wrapping_sub(c.key());
            assert_eq!(c.colour_of(delta), None, "{word:#x}");
            for off in (0..4096).step_by(8) {
                assert!(c.index_at(off, delta) >= 62, "{word:#x} {off}");
            }
        }
        // The key's neighbours are no colour (which `why` tells), though
        // the fast test alone, like any word, may take one for some offset.
        for word in [c.key() + 2, c.key() - 2] {
            assert_eq!(c.colour_of(word.wrapping_sub(c.key())), None);
        }
    }

    #[test]
    fn keys_are_odd_and_distinct() {
        let a = new_key();
        let b = new_key();
        assert!(a & 1 == 1 && b & 1 == 1 && a != b);
    }
}
