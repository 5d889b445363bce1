//! Tag storage without a heap: the only module of this crate with `unsafe`.
//!
//! Tags live in 4 KiB *chunks* of memory that the owner donates (pages from a
//! source arena, the arena's own free segment, or a static buffer). A
//! [`TagId`] is a `u32` made of a chunk number and the byte offset of the
//! tag in its chunk (`chunk << 12 | offset`, so finding a tag takes shifts
//! and masks, no multiplication or division); the chunk is found through a
//! two-level directory: an
//! inline top array of [`TOP_ENTRIES`] pointers to directory pages, each a
//! donated 4 KiB page of [`DIR_ENTRIES`] chunk addresses. Nothing is ever
//! relocated, so ids stay valid for the life of the store, and a stale or
//! foreign id is caught by a bounds check (`chunk < chunks`) instead of
//! dereferencing freed memory.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::list::ListHead;
use crate::tag::{Tag, TagId};

/// Bytes in one chunk of tags (and in one directory page).
pub const CHUNK_BYTES: usize = 4096;
/// Tags carved from one chunk.
pub const TAGS_PER_CHUNK: usize = CHUNK_BYTES / size_of::<Tag>();
/// Chunk addresses held by one directory page.
pub const DIR_ENTRIES: usize = CHUNK_BYTES / size_of::<usize>();
/// Directory pages the store can index.
pub const TOP_ENTRIES: usize = 128;
/// The most tags a store can hold (128 x 512 x 85, about 5.6 million).
pub const MAX_TAGS: usize = TOP_ENTRIES * DIR_ENTRIES * TAGS_PER_CHUNK;
/// Bits of a [`TagId`] that give the tag's byte offset in its chunk.
const OFFSET_BITS: u32 = CHUNK_BYTES.trailing_zeros();
const _: () = assert!(CHUNK_BYTES == 1 << OFFSET_BITS);
// Every id fits a u32 below the null link (`u32::MAX`).
const _: () = assert!(((TOP_ENTRIES * DIR_ENTRIES) << OFFSET_BITS) < u32::MAX as usize);

/// Where in a chunk, past its tags, a word says whether the chunk came from
/// the owner's metadata source (1) or not (0): see
/// [`TagStore::drain_owned`].
const OWNED_MARK_AT: usize = TAGS_PER_CHUNK * size_of::<Tag>();
const _: () = assert!(OWNED_MARK_AT + size_of::<usize>() <= CHUNK_BYTES);
const _: () = assert!(OWNED_MARK_AT.is_multiple_of(align_of::<usize>()));

/// The id of slot `slot` of chunk `chunk`.
#[inline]
pub(crate) const fn id_of(chunk: usize, slot: usize) -> TagId {
    // The invariant `slot` relies on: every id names a whole tag inside
    // its chunk.
    assert!(slot < TAGS_PER_CHUNK);
    TagId(((chunk << OFFSET_BITS) | (slot * size_of::<Tag>())) as u32)
}

/// Whose memory a donation of tag storage is ([`TagStore::donate`],
/// [`Tags::donate`](crate::Tags::donate)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Donation {
    /// The donor's for good: the tags use it for as long as they exist.
    Kept,
    /// One page from the owner's metadata source, handed back by
    /// [`TagStore::drain_owned`].
    Owned,
}

/// Storage for boundary tags carved from donated memory.
pub struct TagStore {
    /// Directory pages.
    top: [usize; TOP_ENTRIES],
    /// Bit `i`: directory page `i` came from the owner's metadata source
    /// and must be handed back by [`drain_owned`](Self::drain_owned).
    owned_dirs: u128,
    /// Tags carved: `chunks * TAGS_PER_CHUNK`, kept for the bounds check.
    len: usize,
    /// Directory pages in use.
    dirs: usize,
    /// Chunks registered.
    chunks: usize,
}

// SAFETY: the store exclusively owns the memory donated to it (a caller
// obligation of `donate`); moving it to another thread moves that ownership.
unsafe impl Send for TagStore {}

impl Default for TagStore {
    fn default() -> Self {
        Self::new()
    }
}

impl TagStore {
    /// An empty store: no tags until memory is donated.
    pub const fn new() -> Self {
        Self {
            top: [0; TOP_ENTRIES],
            owned_dirs: 0,
            len: 0,
            dirs: 0,
            chunks: 0,
        }
    }

    /// Tags carved so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no memory has been donated.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.chunks == 0
    }

    /// Pages (chunks and directory pages) the store holds.
    #[inline]
    pub fn pages(&self) -> usize {
        self.chunks + self.dirs
    }

    /// Pages the next donation must span to yield tags: 2 when its first page
    /// will become a directory page, 1 otherwise, 0 when the directory is full.
    pub fn pages_for_next_chunk(&self) -> usize {
        if self.chunks / DIR_ENTRIES >= TOP_ENTRIES {
            0
        } else if self.chunks / DIR_ENTRIES == self.dirs {
            2
        } else {
            1
        }
    }

    /// Carves `[ptr, ptr + len)` into directory pages and tag chunks, writes a
    /// blank [`Tag`] into every new slot, and returns the range of new chunk
    /// numbers (their tags are `chunk_ids(chunk)`).
    ///
    /// [`Donation::Owned`] marks memory that came from the owner's metadata
    /// source: it must be exactly one [`CHUNK_BYTES`] page, 8-byte aligned,
    /// and is handed back by [`drain_owned`](Self::drain_owned).
    /// [`Donation::Kept`] memory is kept until the store is dropped and
    /// never handed back. Bytes that do not
    /// fill a whole page are left unused. Returns an empty range when the
    /// region is too small or the directory is full.
    ///
    /// # Safety
    /// - `[ptr, ptr + len)` is valid for reads and writes and is used by
    ///   nothing else for as long as this store exists, or, for owned pages,
    ///   until `drain_owned` hands it back.
    /// - It overlaps no region donated to this store before (and not handed
    ///   back since): distinct ids must name distinct tags.
    pub unsafe fn donate(
        &mut self,
        ptr: *mut u8,
        len: usize,
        donation: Donation,
    ) -> core::ops::Range<usize> {
        let owned = donation == Donation::Owned;
        let first = self.chunks;
        let pad = ptr.align_offset(align_of::<usize>().max(align_of::<Tag>()));
        if pad >= len {
            return first..first;
        }
        debug_assert!(!owned || (pad == 0 && len == CHUNK_BYTES));
        let mut at = ptr.wrapping_add(pad);
        let mut left = len - pad;
        while left >= CHUNK_BYTES {
            let dir_slot = self.chunks / DIR_ENTRIES;
            if dir_slot >= TOP_ENTRIES {
                break;
            }
            if dir_slot == self.dirs {
                // The next chunk needs a directory page first: this page becomes it.
                // SAFETY: `at..at + CHUNK_BYTES` lies inside the donated region
                // (caller obligation) and is aligned for usize (aligned above,
                // and CHUNK_BYTES is a multiple of the alignment).
                unsafe { at.cast::<usize>().write_bytes(0, DIR_ENTRIES) };
                self.top[dir_slot] = at as usize;
                self.owned_dirs |= u128::from(owned) << dir_slot;
                self.dirs += 1;
            } else {
                let dir = self.top[dir_slot] as *mut usize;
                let tags = at.cast::<Tag>();
                for i in 0..TAGS_PER_CHUNK {
                    // SAFETY: slot `i` of the chunk lies inside the donated
                    // region, aligned for Tag; writing initializes it.
                    unsafe { tags.add(i).write(Tag::blank()) };
                }
                // SAFETY: the mark lies in the chunk past its tags (asserted
                // at compile time), aligned for usize as the chunk is.
                unsafe {
                    at.add(OWNED_MARK_AT)
                        .cast::<usize>()
                        .write(usize::from(owned))
                };
                // SAFETY: `dir` is a live directory page of DIR_ENTRIES usizes
                // (written when it was installed); the index is in bounds.
                unsafe { dir.add(self.chunks % DIR_ENTRIES).write(at as usize) };
                self.chunks += 1;
                self.len += TAGS_PER_CHUNK;
            }
            at = at.wrapping_add(CHUNK_BYTES);
            left -= CHUNK_BYTES;
        }
        first..self.chunks
    }

    /// The ids of the tags of chunk `chunk`, in slot order.
    pub(crate) fn chunk_ids(chunk: usize) -> impl DoubleEndedIterator<Item = TagId> {
        (0..TAGS_PER_CHUNK).map(move |slot| id_of(chunk, slot))
    }

    /// Address of the tag `id`; panics when `id` was never carved.
    ///
    /// Only the chunk needs a check: every id of every store is made by
    /// [`id_of`], whose offset names a whole tag inside a chunk (ids cannot
    /// be built outside this crate, and links only ever hold ids), so an id
    /// from another store is caught by the chunk bound alone.
    #[inline(always)]
    fn slot(&self, id: TagId) -> *mut Tag {
        let id = id.index();
        let chunk = id >> OFFSET_BITS;
        let offset = id & (CHUNK_BYTES - 1);
        debug_assert!(offset.is_multiple_of(size_of::<Tag>()) && offset < OWNED_MARK_AT);
        if chunk >= self.chunks {
            out_of_range();
        }
        // (The modulo, a mask, spares a bounds check: `chunk < self.chunks`
        // keeps the index in range already.)
        let dir = self.top[chunk / DIR_ENTRIES % TOP_ENTRIES] as *const usize;
        // SAFETY: `chunk < self.chunks`, so its directory page is installed and
        // its entry was written by `donate`.
        let base = unsafe { dir.add(chunk % DIR_ENTRIES).read() };
        (base as *mut u8).wrapping_add(offset).cast::<Tag>()
    }

    /// The tag `id`.
    ///
    /// # Panics
    /// Panics if `id` was not carved by this store.
    #[inline(always)]
    pub fn get(&self, id: TagId) -> &Tag {
        let p = self.slot(id);
        // SAFETY: `slot` returned an initialized tag inside memory this store
        // owns; the shared borrow of `self` prevents mutation meanwhile.
        unsafe { &*p }
    }

    /// The tag `id`, mutably.
    ///
    /// # Panics
    /// Panics if `id` was not carved by this store.
    #[inline(always)]
    pub fn get_mut(&mut self, id: TagId) -> &mut Tag {
        let p = self.slot(id);
        // SAFETY: as in `get`; the unique borrow of `self` makes this the only
        // reference into the store's memory.
        unsafe { &mut *p }
    }

    /// Two distinct tags, mutably, for an operation that changes both (a
    /// split or a merge) with one lookup each.
    ///
    /// # Panics
    /// Panics if `a == b` or either id was not carved by this store.
    #[inline(always)]
    pub fn get2_mut(&mut self, a: TagId, b: TagId) -> (&mut Tag, &mut Tag) {
        assert!(a != b, "kmem-btag: get2_mut of one tag twice");
        let pa = self.slot(a);
        let pb = self.slot(b);
        // Distinct ids name distinct slots (an id is its chunk and slot, and
        // donated chunks never overlap), so the two references are disjoint.
        // SAFETY: both are initialized tags in memory this store owns, and
        // the unique borrow of `self` makes these the only references to them.
        unsafe { (&mut *pa, &mut *pb) }
    }

    /// Hands every owned page (chunks and directory pages) to `give_back` as
    /// `(address, CHUNK_BYTES)` and empties the store. Ids become invalid.
    pub fn drain_owned(&mut self, mut give_back: impl FnMut(usize, usize)) {
        for chunk in 0..self.chunks {
            let dir = self.top[chunk / DIR_ENTRIES] as *const usize;
            // SAFETY: as in `slot`: chunk < self.chunks, so the entry is written.
            let base = unsafe { dir.add(chunk % DIR_ENTRIES).read() };
            // SAFETY: `donate` wrote the mark inside the chunk, which the
            // store still holds.
            let owned = unsafe {
                (base as *const u8)
                    .add(OWNED_MARK_AT)
                    .cast::<usize>()
                    .read()
            };
            if owned != 0 {
                give_back(base, CHUNK_BYTES);
            }
        }
        for (i, &dir) in self.top[..self.dirs].iter().enumerate() {
            if self.owned_dirs & (1 << i) != 0 {
                give_back(dir, CHUNK_BYTES);
            }
        }
        *self = Self::new();
    }
}

/// The panic of a lookup of an id this store never carved (kept out of the
/// lookup's inline code).
#[cold]
#[inline(never)]
fn out_of_range() -> ! {
    panic!("kmem-btag: tag id out of range")
}

/// A table of list heads (e.g. hash chains) in donated memory.
pub struct HeadTable {
    ptr: NonNull<ListHead>,
    len: usize,
}

// SAFETY: the table exclusively owns its memory (a caller obligation of
// `from_raw`); moving it to another thread moves that ownership.
unsafe impl Send for HeadTable {}

impl HeadTable {
    /// Bytes needed for a table of `len` heads.
    pub const fn bytes_for(len: usize) -> usize {
        len * size_of::<ListHead>()
    }

    /// Makes a table of `len` empty heads in `[ptr, ptr + bytes_for(len))`.
    ///
    /// # Safety
    /// - The region is valid for reads and writes, aligned to 4 bytes, and used
    ///   by nothing else until the table is dropped or given back with
    ///   [`into_raw`](Self::into_raw).
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Self {
        let heads = ptr.cast::<ListHead>();
        for i in 0..len {
            // SAFETY: slot `i` is inside the region the caller handed over.
            unsafe { heads.add(i).write(ListHead::new()) };
        }
        Self {
            ptr: NonNull::new(heads).expect("kmem-btag: null head table"),
            len,
        }
    }

    /// The region's address and length in bytes, ending the table.
    pub fn into_raw(self) -> (usize, usize) {
        (self.ptr.as_ptr() as usize, Self::bytes_for(self.len))
    }

    /// The heads.
    pub fn as_slice(&self) -> &[ListHead] {
        // SAFETY: `len` initialized heads live at `ptr` (from_raw), owned by self.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The heads, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [ListHead] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[ListHead]> for HeadTable {
    fn as_ref(&self) -> &[ListHead] {
        self.as_slice()
    }
}

impl AsMut<[ListHead]> for HeadTable {
    fn as_mut(&mut self) -> &mut [ListHead] {
        self.as_mut_slice()
    }
}
