//! Boundary tags for the kmem vmem arena: free, allocated and span tags, an
//! address-ordered red-black tree over them, lists threaded through them, and
//! tag storage that needs no heap.
//!
//! # Representation, and why
//!
//! Tags are named by dense `u32` [`TagId`]s into 4 KiB chunks of donated
//! memory (pages from a source arena, the base arena's own free segment, or a
//! static buffer), found through a two-level chunk directory ([`store`]). We
//! chose typed indices over an intrusive tree of raw pointers because:
//!
//! - **Soundness stays local.** The only `unsafe` is in [`store`]: carving
//!   donated memory and turning a checked index into a reference. Tree and
//!   list code is safe Rust; a stale or foreign id hits a bounds check or
//!   corrupts only this set's structure, never memory.
//! - **Small tags.** `u32` links make a tag 40 bytes (start, size, three tree
//!   links, two list links, kind, colour), and hash chains cost 4 bytes a head.
//! - **No relocation.** Chunks never move, so the arena can hand out ids that
//!   stay valid while more memory is donated.
//!
//! The cost is one directory lookup per link followed (two dependent loads
//! that stay in L1 for any realistic working set).
//!
//! # Order and lists
//!
//! The tree orders tags by start; at equal starts a span tag sorts before the
//! segment that shares its start. `next`/`prev` follow parent links (O(1)
//! amortized); [`Tags::lower_bound`] and [`Tags::floor`] search in O(log n).
//! Each tag can additionally sit on one doubly linked list ([`ListHead`]):
//! the arena uses them for its power-of-two free lists and hash chains. Unused
//! tags wait on an internal list until [`Tags::take`] hands them out.
//!
//! ```
//! use kmem_btag::{ListHead, TagKind, Tags, CHUNK_BYTES};
//!
//! #[repr(align(4096))]
//! struct Page([u8; CHUNK_BYTES]);
//! let mut pages = Box::new([Page([0; CHUNK_BYTES]), Page([0; CHUNK_BYTES])]);
//!
//! let mut tags = Tags::new();
//! // SAFETY: the pages outlive `tags` and nothing else touches them.
//! let added = unsafe { tags.donate(pages.as_mut_ptr().cast(), 2 * CHUNK_BYTES, false) };
//! assert_eq!(added, 102); // the first page became the chunk directory
//!
//! let span = tags.take(0x1000, 0x3000, TagKind::Span).unwrap();
//! let seg = tags.take(0x1000, 0x3000, TagKind::Free).unwrap();
//! tags.insert(seg);
//! tags.insert(span);
//! assert_eq!(tags.first(), Some(span));
//! assert_eq!(tags.next(span), Some(seg));
//! assert_eq!(tags.lower_bound(0x1001), None);
//!
//! let mut free_list = ListHead::new();
//! tags.list_push(&mut free_list, seg);
//! assert_eq!(tags.list_iter(free_list).count(), 1);
//! tags.verify_tree().unwrap();
//! drop(tags);
//! drop(pages);
//! ```
#![no_std]

mod list;
pub mod store;
mod tag;
mod tree;

pub use list::ListHead;
pub use store::{HeadTable, TagStore, CHUNK_BYTES, MAX_TAGS, TAGS_PER_CHUNK};
pub use tag::{Tag, TagId, TagKind};
pub use tree::TreeError;

use tag::NIL;

/// A set of boundary tags: their storage, the address-ordered tree over the
/// tags in use, and the list of unused tags.
pub struct Tags {
    store: TagStore,
    root: u32,
    in_tree: usize,
    unused: ListHead,
    nr_unused: usize,
}

impl Default for Tags {
    fn default() -> Self {
        Self::new()
    }
}

impl Tags {
    /// An empty set with no storage.
    pub const fn new() -> Self {
        Self {
            store: TagStore::new(),
            root: NIL,
            in_tree: 0,
            unused: ListHead::new(),
            nr_unused: 0,
        }
    }

    /// Donates memory for tags; returns how many new tags it yielded (a page
    /// may become a directory page and yield none). See [`TagStore::donate`].
    ///
    /// # Safety
    /// As [`TagStore::donate`]: the region is valid, writable and used by
    /// nothing else while the set holds it.
    pub unsafe fn donate(&mut self, ptr: *mut u8, len: usize, owned: bool) -> usize {
        // SAFETY: forwarded caller obligation.
        let ids = unsafe { self.store.donate(ptr, len, owned) };
        let n = ids.len();
        for raw in ids.rev() {
            let mut head = self.unused;
            self.list_push(&mut head, TagId(raw));
            self.unused = head;
        }
        self.nr_unused += n;
        n
    }

    /// Pages of [`CHUNK_BYTES`] the next donation must span to yield tags
    /// (see [`TagStore::pages_for_next_chunk`]).
    #[inline]
    pub fn pages_for_next_chunk(&self) -> usize {
        self.store.pages_for_next_chunk()
    }

    /// Unused tags ready to be taken.
    #[inline]
    pub fn unused(&self) -> usize {
        self.nr_unused
    }

    /// Tags carved so far (in use or not).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.store.len()
    }

    /// Tags in the address tree.
    #[inline]
    pub fn len(&self) -> usize {
        self.in_tree
    }

    /// True when the tree is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.in_tree == 0
    }

    /// Pages of storage held (chunks plus directory pages).
    #[inline]
    pub fn pages(&self) -> usize {
        self.store.pages()
    }

    /// Takes an unused tag and fills in its range and kind. It is on no list
    /// and not in the tree. `None` when no unused tag is left.
    #[inline]
    pub fn take(&mut self, start: usize, size: usize, kind: TagKind) -> Option<TagId> {
        let mut head = self.unused;
        let id = self.list_pop(&mut head)?;
        self.unused = head;
        self.nr_unused -= 1;
        let t = self.store.get_mut(id);
        t.start = start;
        t.size = size;
        t.kind = kind;
        t.list = 0;
        Some(id)
    }

    /// Returns a tag that is on no list and not in the tree to the unused list.
    #[inline]
    pub fn put(&mut self, id: TagId) {
        self.store.get_mut(id).kind = TagKind::Unused;
        let mut head = self.unused;
        self.list_push(&mut head, id);
        self.unused = head;
        self.nr_unused += 1;
    }

    /// The tag `id`.
    ///
    /// # Panics
    /// Panics if `id` was not issued by this set.
    #[inline(always)]
    pub fn get(&self, id: TagId) -> &Tag {
        self.store.get(id)
    }

    /// The tag `id`, mutably. Changing `start` or `kind` of a tag in the tree
    /// is allowed only when it keeps the tree's order (e.g. moving a start up
    /// to a point no other tag lies between).
    #[inline(always)]
    pub fn get_mut(&mut self, id: TagId) -> &mut Tag {
        self.store.get_mut(id)
    }

    /// Sets a tag's kind.
    #[inline]
    pub fn set_kind(&mut self, id: TagId, kind: TagKind) {
        self.store.get_mut(id).kind = kind;
    }

    /// Hands every owned storage page back through `give_back(addr, len)` and
    /// resets the set to empty. Every id becomes invalid.
    pub fn drain_owned(&mut self, give_back: impl FnMut(usize, usize)) {
        self.store.drain_owned(give_back);
        *self = Self::new();
    }

    /// Counts the unused list, checking that each tag on it is marked unused.
    /// Returns the count, or `None` on a mismatch.
    pub fn verify_unused(&self) -> Option<usize> {
        let mut n = 0;
        for id in self.list_iter(self.unused) {
            if self.get(id).kind != TagKind::Unused || n >= self.capacity() {
                return None;
            }
            n += 1;
        }
        (n == self.nr_unused).then_some(n)
    }
}

#[cfg(test)]
mod tests;
