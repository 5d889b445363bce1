//! The slab layer's raw memory: slab headers, bufctls, intrusive lists and
//! the free-object links kept inside free objects. This module and
//! [`hash`](crate::hash) are the crate's unsafe code.
//!
//! Every pointer here points into memory the cache owns: slab buffers it
//! allocated from its source, headers and bufctls from its bootstrap caches.
//! All of it is reached only under the cache lock.

use core::ptr::{self, NonNull};

/// "No object" in a free-object chain (0 may be a valid address).
pub(crate) const NONE: usize = usize::MAX;

/// A node of an [`AddrHash`](crate::hash::AddrHash) chain, embedded first in
/// the structs the hash holds.
#[repr(C)]
pub(crate) struct HashNode {
    pub(crate) key: usize,
    pub(crate) next: *mut HashNode,
}

/// Which list a slab is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SlabList {
    Full,
    Partial,
    Empty,
}

/// A slab: at the end of its page for small objects, or in a `kmem_slab`
/// object for bufctl slabs. Small slabs keep an allocated-object bitmap of
/// `bitmap_words` words right below the header.
#[repr(C)]
pub(crate) struct SlabHeader {
    /// Keyed by the slab base in the small-slab membership hash.
    pub(crate) node: HashNode,
    pub(crate) next: *mut SlabHeader,
    pub(crate) prev: *mut SlabHeader,
    /// First byte of the slab's buffer.
    pub(crate) base: usize,
    /// Small slabs: first free object, its link in its first word.
    pub(crate) free_obj: usize,
    /// Bufctl slabs: first free bufctl.
    pub(crate) free_bufctl: *mut Bufctl,
    pub(crate) busy: u32,
    pub(crate) total: u32,
    pub(crate) list: SlabList,
}

/// The state of a bufctl's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum BufState {
    /// In its slab, unconstructed.
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
    pub(crate) node: HashNode,
    pub(crate) next_free: *mut Bufctl,
    pub(crate) slab: *mut SlabHeader,
    pub(crate) state: BufState,
}

impl SlabHeader {
    /// Writes a header for an empty slab at `at`.
    ///
    /// # Safety
    /// `at` is valid for writes of a `SlabHeader`, aligned, owned by the
    /// cache and unused.
    pub(crate) unsafe fn init(at: NonNull<u8>, base: usize, total: u32) -> NonNull<SlabHeader> {
        let slab = at.cast::<SlabHeader>();
        // SAFETY: the caller's guarantee.
        unsafe {
            slab.as_ptr().write(SlabHeader {
                node: HashNode {
                    key: base,
                    next: ptr::null_mut(),
                },
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                base,
                free_obj: NONE,
                free_bufctl: ptr::null_mut(),
                busy: 0,
                total,
                list: SlabList::Empty,
            })
        };
        slab
    }
}

/// Reads the free-chain link stored in the first word of free object `obj`.
///
/// # Safety
/// `obj` is a free object of a small slab of this cache (the lock held).
#[inline]
pub(crate) unsafe fn read_link(obj: usize) -> usize {
    // SAFETY: free small objects are at least a word, aligned to 8, and
    // owned by the cache while free.
    unsafe { ptr::read(obj as *const usize) }
}

/// Stores `next` in the first word of free object `obj`.
///
/// # Safety
/// As [`read_link`]: `obj` is owned by the cache and being freed.
#[inline]
pub(crate) unsafe fn write_link(obj: usize, next: usize) {
    // SAFETY: as in `read_link`.
    unsafe { ptr::write(obj as *mut usize, next) }
}

/// [`read_link`] of a free small object, whose memory AddressSanitizer
/// builds keep poisoned: the link word is unpoisoned just for the read.
///
/// # Safety
/// As [`read_link`].
#[inline]
pub(crate) unsafe fn read_free_link(obj: usize) -> usize {
    kmem_arena::asan::unpoison(obj, 8);
    // SAFETY: forwarded.
    let next = unsafe { read_link(obj) };
    kmem_arena::asan::poison(obj, 8);
    next
}

/// [`write_link`] of an object being freed, leaving the link word poisoned
/// (in AddressSanitizer builds) like the rest of a free object.
///
/// # Safety
/// As [`write_link`].
#[inline]
pub(crate) unsafe fn write_free_link(obj: usize, next: usize) {
    kmem_arena::asan::unpoison(obj, 8);
    // SAFETY: forwarded.
    unsafe { write_link(obj, next) };
    kmem_arena::asan::poison(obj, 8);
}

/// Fills `len` bytes at `obj` with zeroes.
///
/// # Safety
/// `obj..obj + len` is memory the caller owns.
pub(crate) unsafe fn zero(obj: usize, len: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { ptr::write_bytes(obj as *mut u8, 0, len) }
}

/// The words of a small slab's allocated bitmap, right below its header.
///
/// # Safety
/// `slab` is a live small slab header with `words` bitmap words below it,
/// reached under the cache lock, and no other reference to the bitmap
/// lives meanwhile.
#[allow(clippy::mut_from_ref)]
pub(crate) unsafe fn bitmap<'s>(slab: NonNull<SlabHeader>, words: usize) -> &'s mut [u64] {
    // SAFETY: the caller's guarantee; the words sit between the last object
    // and the header, inside the slab's buffer, aligned by construction.
    unsafe { core::slice::from_raw_parts_mut(slab.as_ptr().cast::<u64>().sub(words), words) }
}

/// A doubly linked list of slab headers.
pub(crate) struct SlabQueue {
    pub(crate) head: *mut SlabHeader,
    pub(crate) len: usize,
}

impl SlabQueue {
    pub(crate) const fn new() -> Self {
        Self {
            head: ptr::null_mut(),
            len: 0,
        }
    }

    /// # Safety
    /// `slab` is a live header of this cache on no list.
    pub(crate) unsafe fn push(&mut self, slab: NonNull<SlabHeader>, list: SlabList) {
        let s = slab.as_ptr();
        // SAFETY: live headers of this cache, under its lock.
        unsafe {
            (*s).list = list;
            (*s).prev = ptr::null_mut();
            (*s).next = self.head;
            if !self.head.is_null() {
                (*self.head).prev = s;
            }
        }
        self.head = s;
        self.len += 1;
    }

    /// # Safety
    /// `slab` is a live header on this list.
    pub(crate) unsafe fn remove(&mut self, slab: NonNull<SlabHeader>) {
        let s = slab.as_ptr();
        // SAFETY: live headers of this cache on this list, under its lock.
        unsafe {
            if (*s).prev.is_null() {
                self.head = (*s).next;
            } else {
                (*(*s).prev).next = (*s).next;
            }
            if !(*s).next.is_null() {
                (*(*s).next).prev = (*s).prev;
            }
            (*s).next = ptr::null_mut();
            (*s).prev = ptr::null_mut();
        }
        self.len -= 1;
    }

    pub(crate) fn first(&self) -> Option<NonNull<SlabHeader>> {
        NonNull::new(self.head)
    }

    /// Iterates the headers; the list must not change meanwhile.
    pub(crate) fn iter(&self) -> impl Iterator<Item = NonNull<SlabHeader>> + '_ {
        let mut at = self.head;
        core::iter::from_fn(move || {
            let s = NonNull::new(at)?;
            // SAFETY: a live header on this list, under the cache lock.
            at = unsafe { (*s.as_ptr()).next };
            Some(s)
        })
    }
}
