//! One slab's memory: its header, its bufctls, and a headed slab's
//! allocated bitmap. Building a slab is `build.rs`.
//!
//! A headed (small-layout) slab is one buffer of a power-of-two size,
//! aligned to it: objects from its colour (an offset from its base, kept
//! in the header: see `crate::geometry`), then the bitmap, then the header
//! at its end, whose last word is the owning cache's key (`guard.rs`).
//! Free objects are found through the bitmap: the slab layer never writes
//! into them. A bufctl slab's header and bufctls are objects of the
//! bootstrap caches `kmem_slab` and `kmem_bufctl`; its buffer is never
//! touched (its objects may not be memory).
//!
//! Headers and bufctls are made only here, so a `&SlabHeader` or `&Bufctl`
//! always names a live one of some [`SlabSet`](super::SlabSet), borrowed
//! from it; they change only through `&mut` of that set.
//!
//! With `site-stats`, each object also has a *site slot* (a `u32`, see
//! `crate::sites`): a bufctl's, in what was its padding; for a headed slab,
//! an array of one per object right below the bitmap ([`site_bytes`]).

use core::ptr::{self, NonNull};
#[cfg(feature = "site-stats")]
use core::sync::atomic::AtomicU32;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::error::BadFree;

use super::Freed;

/// "No object" in a free-object chain (0 may be a valid address).
pub(crate) const NONE: usize = usize::MAX;

/// A node of an [`AddrHash`](super::AddrHash) chain, first in the structs
/// the hash holds.
#[repr(C)]
pub(crate) struct HashNode {
    pub(super) key: usize,
    pub(super) next: *mut HashNode,
}

/// Which list a slab is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SlabList {
    Full,
    Partial,
    Empty,
}

/// A slab: at the end of its buffer for small objects, or in a `kmem_slab`
/// object for bufctl slabs.
#[repr(C)]
pub(crate) struct SlabHeader {
    /// Keyed by the slab base in the small-slab membership hash.
    pub(super) node: HashNode,
    pub(super) next: *mut SlabHeader,
    pub(super) prev: *mut SlabHeader,
    /// First byte of the slab's buffer.
    pub(super) base: usize,
    /// Small slabs: every bitmap word below this one is full.
    pub(super) hint: usize,
    /// Bufctl slabs: first free bufctl.
    pub(super) free_bufctl: *mut Bufctl,
    pub(super) busy: u32,
    pub(super) total: u32,
    pub(super) list: SlabList,
    /// Small slabs: the colour, the offset of the first object from
    /// `base`; 0 for a bufctl slab. In what was the header's padding, and
    /// never changed after the slab is built (the free check finds it in
    /// the owner word instead, see `guard.rs`).
    pub(super) colour: u16,
    /// Small slabs: the object size (the allocated bitmap, `total` bits,
    /// sits right below the header); 0 for a bufctl slab. In what was the
    /// header's padding, so the header keeps its size.
    obj_size: u32,
    /// Small slabs: the owning cache's owner word for this slab's colour
    /// (`FreeCheck::owner_word`) while the slab is built into a set, 0
    /// before and after; the header's last word, read without a lock by
    /// the free check (`guard.rs`).
    pub(super) owner: AtomicUsize,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<SlabHeader>() == 80);

/// Bytes of an object's site slot: a `u32` with `site-stats`, none
/// without.
pub(crate) const SITE_SLOT: usize = if cfg!(feature = "site-stats") {
    size_of::<u32>()
} else {
    0
};

/// Bytes a headed slab of `objects` objects keeps below its bitmap for
/// their site slots, rounded up to 8 (the bitmap's alignment).
pub(crate) const fn site_bytes(objects: usize) -> usize {
    (objects * SITE_SLOT).next_multiple_of(8)
}

/// The state of a bufctl's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum BufState {
    /// In its slab, unconstructed: exactly the bufctls on its free list.
    Free,
    /// Held by the user.
    Allocated,
    /// In a magazine, constructed (tracked only by `DEBUG` caches).
    Cached,
}

/// Controls one buffer of a bufctl slab; stays in the cache's hash for the
/// life of its slab, so a lookup tells "not ours" from "not allocated".
#[repr(C)]
pub(crate) struct Bufctl {
    pub(super) node: HashNode,
    pub(super) next_free: *mut Bufctl,
    pub(super) slab: *mut SlabHeader,
    pub(super) state: BufState,
    /// `site-stats`: the site slot of its buffer (in the padding after
    /// `state`, so the bufctl keeps its size).
    #[cfg(feature = "site-stats")]
    pub(super) site: AtomicU32,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<Bufctl>() == 40);

/// Reads the link in the first word of `obj`.
///
/// # Safety
/// `obj` is a word of memory, aligned, that the caller owns.
pub(super) unsafe fn read_link(obj: usize) -> usize {
    // SAFETY: the caller's guarantee.
    unsafe { ptr::read(obj as *const usize) }
}

/// Stores `next` in the first word of `obj`.
///
/// # Safety
/// As [`read_link`].
pub(super) unsafe fn write_link(obj: usize, next: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { ptr::write(obj as *mut usize, next) }
}

impl SlabHeader {
    pub(super) const fn empty(base: usize, total: u32, obj_size: u32, colour: u16) -> Self {
        Self {
            node: HashNode {
                key: base,
                next: ptr::null_mut(),
            },
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            base,
            hint: 0,
            free_bufctl: ptr::null_mut(),
            busy: 0,
            total,
            list: SlabList::Empty,
            colour,
            obj_size,
            owner: AtomicUsize::new(0),
        }
    }

    /// First byte of the slab's buffer.
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// Small slabs: the offset of the first object from the base (0 for a
    /// bufctl slab).
    pub(crate) fn colour(&self) -> usize {
        self.colour as usize
    }

    /// Objects out of this slab.
    pub(crate) fn busy(&self) -> u32 {
        self.busy
    }

    /// Objects in this slab.
    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    /// The list the slab is on.
    pub(crate) fn list(&self) -> SlabList {
        self.list
    }

    pub(super) fn is_small(&self) -> bool {
        self.obj_size != 0
    }

    /// Small slabs: true when every bitmap word below the search hint is
    /// full (the hint never skips a free object).
    pub(crate) fn hint_ok(&self) -> bool {
        let bm = self.bitmap();
        self.hint <= bm.len() && bm[..self.hint].iter().all(|w| *w == u64::MAX)
    }

    /// Small slabs: the owner word in the header.
    pub(crate) fn owner(&self) -> usize {
        self.owner.load(Ordering::Relaxed)
    }

    /// Small slabs: the slab leaves its cache; the free check no longer
    /// finds an owner here.
    pub(super) fn disown(&self) {
        self.owner.store(0, Ordering::Relaxed);
    }

    /// Bufctl slabs: the first free bufctl.
    pub(crate) fn first_free_bufctl(&self) -> Option<&Bufctl> {
        // SAFETY: a live slab's free bufctls are live bufctls of it, for as
        // long as the borrow of the set this header came from.
        unsafe { self.free_bufctl.as_ref() }
    }

    /// Words of the allocated bitmap.
    fn words(&self) -> usize {
        if self.is_small() {
            (self.total as usize).div_ceil(64)
        } else {
            0
        }
    }

    /// The allocated bitmap of a small slab (empty for a bufctl slab).
    fn bitmap(&self) -> &[u64] {
        let words = self.words();
        let at = (ptr::from_ref(self) as usize - words * 8) as *const u64;
        // A small slab's header sits at the end of its buffer with `words`
        // bitmap words right below it, aligned to 8 (`build_small` checked
        // the layout); the words belong to the slab, and the borrow of its
        // set keeps them from changing. No words: an empty slice at the
        // (aligned, non-null) header.
        // SAFETY: as just said.
        unsafe { core::slice::from_raw_parts(at, words) }
    }

    /// [`bitmap`](Self::bitmap), to change.
    pub(super) fn bitmap_mut(&mut self) -> &mut [u64] {
        let words = self.words();
        let at = (ptr::from_mut(self) as usize - words * 8) as *mut u64;
        // SAFETY: as in `bitmap`; `&mut` of the header (from `&mut` of its
        // set) makes this the only access to the slab.
        unsafe { core::slice::from_raw_parts_mut(at, words) }
    }

    /// Small slabs: the site slots, one per object, right below the bitmap
    /// (empty for a bufctl slab).
    #[cfg(feature = "site-stats")]
    fn sites(&self) -> &[AtomicU32] {
        let n = if self.is_small() {
            self.total as usize
        } else {
            0
        };
        let at =
            (ptr::from_ref(self) as usize - self.words() * 8 - site_bytes(n)) as *const AtomicU32;
        // A small slab has `total` site slots right below its bitmap
        // (`site_bytes` of them, from an address aligned to 8: the
        // bitmap's; `build_small` checked the layout and initialized
        // them), in the slab's memory, for as long as the borrow of its
        // set. Atomics, so the lock-free users (`guard.rs`) may share
        // them. None: an empty slice at the (aligned) header.
        // SAFETY: as just said.
        unsafe { core::slice::from_raw_parts(at, n) }
    }

    /// Small slabs: the site slot of `obj`, if it is an object start.
    #[cfg(feature = "site-stats")]
    pub(super) fn site_slot(&self, obj: usize) -> Option<&AtomicU32> {
        self.sites().get(self.index(obj)?)
    }

    /// Small slabs: true when every free object's site slot is clear.
    #[cfg(feature = "site-stats")]
    pub(crate) fn free_sites_clear(&self) -> bool {
        let none = crate::sites::SiteId::NONE.slot_value();
        self.sites()
            .iter()
            .enumerate()
            .all(|(i, s)| self.is_allocated(i) || s.load(Ordering::Relaxed) == none)
    }

    /// Small slabs: bit `i` of the allocated bitmap.
    ///
    /// # Panics
    /// If `i` is past the bitmap.
    pub(crate) fn is_allocated(&self, i: usize) -> bool {
        self.bitmap()[i / 64] & (1 << (i % 64)) != 0
    }

    /// Small slabs: the bits set in the allocated bitmap.
    pub(crate) fn allocated(&self) -> u32 {
        self.bitmap().iter().map(|w| w.count_ones()).sum()
    }

    /// Small slabs: the index of `obj`, if it is an object start.
    fn index(&self, obj: usize) -> Option<usize> {
        if !self.is_small() {
            return None;
        }
        let size = self.obj_size as usize;
        let off = obj.checked_sub(self.base + self.colour())?;
        (off % size == 0 && off / size < self.total as usize).then_some(off / size)
    }

    /// Small slabs: the index of `obj` if it is an allocated object of
    /// this slab.
    pub(super) fn check_object(&self, obj: usize) -> Result<usize, BadFree> {
        let i = self.index(obj).ok_or(BadFree::NotObjectStart)?;
        if !self.is_allocated(i) {
            return Err(BadFree::DoubleFree);
        }
        Ok(i)
    }

    /// Small slabs: takes the lowest free object, marking it allocated.
    ///
    /// # Panics
    /// If the slab has no free object.
    pub(super) fn pop_object(&mut self) -> usize {
        let first = self.base + self.colour();
        let (size, total) = (self.obj_size as usize, self.total as usize);
        let start = self.hint;
        let bm = self.bitmap_mut();
        for (w, word) in bm.iter_mut().enumerate().skip(start) {
            // The lowest clear bit; bits past `total` are clear too, but
            // above every object's.
            let bit = word.trailing_ones() as usize;
            let i = w * 64 + bit;
            if bit < 64 && i < total {
                *word |= 1 << bit;
                self.hint = w;
                return first + i * size;
            }
        }
        panic!("kmem-slab: no free object in a slab with room");
    }

    /// Small slabs: marks `obj`, one of its allocated objects, free;
    /// refuses anything else, changing nothing. The object's memory is not
    /// touched.
    pub(super) fn give_object(&mut self, obj: Freed) -> Result<(), BadFree> {
        let i = self.check_object(obj.addr())?;
        self.bitmap_mut()[i / 64] &= !(1 << (i % 64));
        self.hint = self.hint.min(i / 64);
        Ok(())
    }

    /// Bufctl slabs: takes the first free bufctl into `state`, and returns
    /// its buffer.
    pub(super) fn pop_bufctl(&mut self, state: BufState) -> usize {
        debug_assert_ne!(state, BufState::Free);
        let bc = NonNull::new(self.free_bufctl).expect("kmem-slab: corrupt bufctl list");
        // SAFETY: a live slab's free bufctls are live bufctls of it; `&mut`
        // of the header (from `&mut` of its set) makes this the only access.
        let b = unsafe { &mut *bc.as_ptr() };
        self.free_bufctl = b.next_free;
        b.next_free = ptr::null_mut();
        b.state = state;
        b.node.key
    }

    /// Bufctl slabs: puts `bc` back on the free list.
    ///
    /// # Safety
    /// `bc` is a live bufctl of this slab, off its free list, and nothing
    /// else accesses it meanwhile.
    pub(super) unsafe fn push_bufctl(&mut self, bc: NonNull<Bufctl>) {
        // SAFETY: the caller's guarantee.
        let b = unsafe { &mut *bc.as_ptr() };
        b.state = BufState::Free;
        b.next_free = self.free_bufctl;
        self.free_bufctl = bc.as_ptr();
    }
}

impl Bufctl {
    /// The buffer it controls.
    pub(crate) fn key(&self) -> usize {
        self.node.key
    }

    pub(crate) fn state(&self) -> BufState {
        self.state
    }

    /// True when it belongs to `slab`.
    pub(crate) fn is_of(&self, slab: &SlabHeader) -> bool {
        ptr::eq(self.slab, slab)
    }

    /// The next bufctl on its slab's free list.
    pub(crate) fn next_free(&self) -> Option<&Bufctl> {
        // SAFETY: as in `SlabHeader::first_free_bufctl`.
        unsafe { self.next_free.as_ref() }
    }

    /// Its buffer's site slot.
    #[cfg(feature = "site-stats")]
    pub(crate) fn site(&self) -> &AtomicU32 {
        &self.site
    }
}
