//! Boundary tags for the kmem vmem arena: free, allocated and span tags, an
//! address list and two address-ordered red-black trees over them, lists
//! threaded through them, and tag storage that needs no heap.
//!
//! # Representation, and why
//!
//! Tags are named by `u32` [`TagId`]s (a chunk number and a byte offset) into
//! 4 KiB chunks of donated
//! memory (pages from a source arena, the base arena's own free segment, or a
//! static buffer), found through a two-level chunk directory ([`store`]). We
//! chose typed indices over an intrusive tree of raw pointers because:
//!
//! - **Soundness stays local.** The only `unsafe` is in [`store`]: carving
//!   donated memory and turning a checked index into a reference. Tree and
//!   list code is safe Rust; a stale or foreign id hits a bounds check or
//!   corrupts only this set's structure, never memory.
//! - **Small tags.** `u32` links make a tag 48 bytes (start, size, three tree
//!   links, two address-list links, two list links, kind, tree and colour,
//!   the subtree's largest key, a list index), and
//!   hash chains cost 4 bytes a head.
//! - **No relocation.** Chunks never move, so the arena can hand out ids that
//!   stay valid while more memory is donated.
//!
//! The cost is one directory lookup per link followed (two dependent loads
//! that stay in L1 for any realistic working set).
//!
//! # Order, trees and lists
//!
//! Every tag in use sits on the **address list** (doubly linked, in address
//! order; a span sorts before the segment that shares its start): neighbours,
//! splits and merges are O(1) there. A tag can also be in one of two
//! red-black **trees** ([`Tree::Segments`], [`Tree::Spans`]) with the same
//! order, for O(log n) searches ([`Tags::lower_bound`], [`Tags::floor`]);
//! the owner decides which tags are worth searching (the arena keeps spans
//! and free segments there, so a split or merge never rebalances a tree).
//! [`Tags::insert_after`]/[`Tags::insert_before`] add a neighbour without a
//! search. Each tag can also sit on one doubly linked list ([`ListHead`]):
//! the arena's free lists and hash chains (`Tags` implements
//! [`kmem_hash::Links`], so allocated tags chain in a
//! [`kmem_hash::AddrHash`]). Unused tags wait on an internal list until
//! [`Tags::take`] hands them out.
//!
//! ```
//! use kmem_btag::{ListHead, TagKind, Tags, Tree, CHUNK_BYTES};
//!
//! #[repr(align(4096))]
//! struct Page([u8; CHUNK_BYTES]);
//! let mut pages = Box::new([Page([0; CHUNK_BYTES]), Page([0; CHUNK_BYTES])]);
//!
//! let mut tags = Tags::new();
//! // SAFETY: the pages outlive `tags` and nothing else touches them.
//! let added = unsafe { tags.donate(pages.as_mut_ptr().cast(), 2 * CHUNK_BYTES, kmem_btag::Donation::Kept) };
//! assert_eq!(added, 85); // the first page became the chunk directory
//!
//! let span = tags.take(0x1000, 0x3000, TagKind::Span).unwrap();
//! let seg = tags.take(0x1000, 0x3000, TagKind::Free).unwrap();
//! // Everything in use is on the address list, in address order...
//! tags.addr_push_back(span);
//! tags.addr_insert_after(span, seg);
//! assert_eq!(tags.addr_next(span), Some(seg));
//! // ...and the tags worth searching are in a tree.
//! tags.insert(Tree::Spans, span);
//! tags.insert(Tree::Segments, seg);
//! assert_eq!(tags.floor(Tree::Spans, 0x2000), Some(span));
//! assert_eq!(tags.lower_bound(Tree::Segments, 0x1001), None);
//!
//! let mut free_list = ListHead::new();
//! tags.list_push(&mut free_list, seg);
//! assert_eq!(tags.list_iter(free_list).count(), 1);
//! tags.verify_tree(Tree::Segments).unwrap();
//! assert_eq!(tags.verify_addr(), Ok(2));
//! drop(tags);
//! drop(pages);
//! ```
#![no_std]

mod addr;
mod list;
pub mod store;
mod tag;
mod tree;
mod verify;

pub use addr::AddrError;
pub use list::ListHead;
pub use store::{Donation, HeadTable, TagStore, CHUNK_BYTES, MAX_TAGS, TAGS_PER_CHUNK};
pub use tag::{Tag, TagId, TagKind};
pub use tree::Tree;
pub use verify::TreeError;

use tag::NIL;

/// A set of boundary tags: their storage, the address list of the tags in
/// use, two address-ordered trees over chosen tags, and the unused tags.
pub struct Tags {
    store: TagStore,
    roots: [u32; 2],
    in_tree: [usize; 2],
    addr_head: u32,
    addr_tail: u32,
    addr_len: usize,
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
            roots: [NIL; 2],
            in_tree: [0; 2],
            addr_head: NIL,
            addr_tail: NIL,
            addr_len: 0,
            unused: ListHead::new(),
            nr_unused: 0,
        }
    }

    /// Donates memory for tags; returns how many new tags it yielded (a page
    /// may become a directory page and yield none). See [`TagStore::donate`].
    ///
    /// # Safety
    /// As [`TagStore::donate`]: the region is valid, writable and used by
    /// nothing else while the set holds it, and overlaps no region donated
    /// to the set before.
    pub unsafe fn donate(&mut self, ptr: *mut u8, len: usize, donation: Donation) -> usize {
        // SAFETY: forwarded caller obligation.
        let chunks = unsafe { self.store.donate(ptr, len, donation) };
        let n = chunks.len() * TAGS_PER_CHUNK;
        for id in chunks.rev().flat_map(|c| TagStore::chunk_ids(c).rev()) {
            self.push_unused(id);
        }
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

    /// Tags on the address list (the tags in use).
    #[inline]
    pub fn len(&self) -> usize {
        self.addr_len
    }

    /// True when no tag is on the address list.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.addr_len == 0
    }

    /// Pages of storage held (chunks plus directory pages).
    #[inline]
    pub fn pages(&self) -> usize {
        self.store.pages()
    }

    /// Takes an unused tag and fills in its range and kind. It is on no list
    /// and in no tree. `None` when no unused tag is left.
    #[inline]
    pub fn take(&mut self, start: usize, size: usize, kind: TagKind) -> Option<TagId> {
        // The unused tags form a stack linked through `next` alone.
        let id = self.unused.first()?;
        let t = self.store.get_mut(id);
        let next = t.next;
        t.next = NIL;
        t.prev = NIL;
        t.start = start;
        t.size = size;
        t.kind = kind;
        t.list = 0;
        self.unused = ListHead::from_raw(next);
        self.nr_unused -= 1;
        Some(id)
    }

    /// Pushes `id` on the stack of unused tags.
    #[inline]
    fn push_unused(&mut self, id: TagId) {
        let t = self.store.get_mut(id);
        Self::make_unused(t, id, &mut self.unused, &mut self.nr_unused);
    }

    /// Marks `t` (the tag `id`) unused and pushes it on the stack `unused`.
    #[inline(always)]
    fn make_unused(t: &mut Tag, id: TagId, unused: &mut ListHead, count: &mut usize) {
        t.kind = TagKind::Unused;
        t.aprev = NIL;
        t.anext = NIL;
        t.next = unused.raw();
        *unused = ListHead::from_raw(id.0);
        *count += 1;
    }

    /// Splits the tag `id` on the address list: an unused tag takes its
    /// first `size` units, with `kind`, and goes right before it on the
    /// address list; `id` keeps the rest (its start moves up by `size`, which
    /// keeps its place in a tree, as nothing lies between the two starts).
    /// The new tag is on no list and in no tree. One lookup per tag touched
    /// (`id`, the new tag, the one before): the split of an allocation path.
    /// `None` when no unused tag is left.
    ///
    /// # Panics
    /// Panics if `size` is not below the size of `id`.
    #[inline(always)]
    pub fn carve_front(&mut self, id: TagId, size: usize, kind: TagKind) -> Option<TagId> {
        self.carve(id, size, kind, None)
    }

    /// [`carve_front`](Self::carve_front), pushing the new tag on the list
    /// `head` at once (an allocation's hash chain): one lookup fewer than
    /// a [`list_push`](Self::list_push) after it.
    #[inline(always)]
    pub fn carve_front_onto(
        &mut self,
        id: TagId,
        size: usize,
        kind: TagKind,
        head: &mut ListHead,
    ) -> Option<TagId> {
        self.carve(id, size, kind, Some(head))
    }

    #[inline(always)]
    fn carve(
        &mut self,
        id: TagId,
        size: usize,
        kind: TagKind,
        head: Option<&mut ListHead>,
    ) -> Option<TagId> {
        let new = self.unused.first()?;
        let (t, n) = self.store.get2_mut(id, new);
        assert!(size < t.size, "kmem-btag: carve_front of a whole tag");
        let (start, prev) = (t.start, t.aprev);
        t.start = start + size;
        t.size -= size;
        t.aprev = new.0;
        self.unused = ListHead::from_raw(n.next);
        let first = head.as_ref().map_or(NIL, |h| h.raw());
        *n = Tag {
            start,
            size,
            kind,
            aprev: prev,
            anext: id.0,
            next: first,
            ..Tag::blank()
        };
        self.nr_unused -= 1;
        match TagId::from_raw(prev) {
            Some(p) => self.store.get_mut(p).anext = new.0,
            None => self.addr_head = new.0,
        }
        self.addr_len += 1;
        if let Some(head) = head {
            if let Some(f) = TagId::from_raw(first) {
                self.store.get_mut(f).prev = new.0;
            }
            *head = ListHead::from_raw(new.0);
        }
        Some(new)
    }

    /// Merges `id` into the tag after it on the address list, which then
    /// starts where `id` started and grows by its size; `id` leaves the
    /// address list and becomes unused. `id` must be on no list and in no
    /// tree. Returns the tag after, and a copy of that tag as it now reads.
    ///
    /// # Panics
    /// Panics if `id` is last on the address list.
    #[inline]
    pub fn merge_into_next(&mut self, id: TagId) -> (TagId, Tag) {
        let next = self
            .addr_next(id)
            .expect("kmem-btag: merge of the last tag");
        self.merge_into(id, next)
    }

    /// [`merge_into_next`](Self::merge_into_next) where the caller knows
    /// the tag after `id` is `next` (from a copy of `id`'s tag): one lookup
    /// fewer.
    ///
    /// # Panics
    /// Panics if `next` is `id`; a `next` that does not follow `id` is a
    /// logic error that corrupts only this set's address list.
    #[inline(always)]
    pub fn merge_into(&mut self, id: TagId, next: TagId) -> (TagId, Tag) {
        let (t, n) = self.store.get2_mut(id, next);
        debug_assert_eq!(
            t.anext, next.0,
            "kmem-btag: merge into a tag that does not follow"
        );
        debug_assert_eq!(t.tree, tree::NO_TREE, "kmem-btag: merge of a tag in a tree");
        let prev = t.aprev;
        n.start = t.start;
        n.size += t.size;
        n.aprev = prev;
        Self::make_unused(t, id, &mut self.unused, &mut self.nr_unused);
        let n = *n;
        match TagId::from_raw(prev) {
            Some(p) => self.store.get_mut(p).anext = next.0,
            None => self.addr_head = next.0,
        }
        self.addr_len -= 1;
        (next, n)
    }

    /// Merges `id` into the tag before it on the address list, which grows
    /// by its size; `id` leaves the address list and becomes unused. `id`
    /// must be on no list and in no tree. Returns the tag before, and a copy
    /// of that tag as it now reads.
    ///
    /// # Panics
    /// Panics if `id` is first on the address list.
    #[inline(always)]
    pub fn merge_into_prev(&mut self, id: TagId) -> (TagId, Tag) {
        let prev = self
            .addr_prev(id)
            .expect("kmem-btag: merge of the first tag");
        let (t, p) = self.store.get2_mut(id, prev);
        debug_assert_eq!(t.tree, tree::NO_TREE, "kmem-btag: merge of a tag in a tree");
        let next = t.anext;
        p.size += t.size;
        p.anext = next;
        Self::make_unused(t, id, &mut self.unused, &mut self.nr_unused);
        let p = *p;
        match TagId::from_raw(next) {
            Some(n) => self.store.get_mut(n).aprev = prev.0,
            None => self.addr_tail = prev.0,
        }
        self.addr_len -= 1;
        (prev, p)
    }

    /// Returns a tag that is on no list, not on the address list and in no
    /// tree to the unused list.
    #[inline]
    pub fn put(&mut self, id: TagId) {
        debug_assert_eq!(
            self.store.get(id).tree,
            tree::NO_TREE,
            "kmem-btag: put of a tag in a tree"
        );
        self.push_unused(id);
    }

    /// The tag `id`.
    ///
    /// # Panics
    /// Panics if `id` was not issued by this set.
    #[inline(always)]
    pub fn get(&self, id: TagId) -> &Tag {
        self.store.get(id)
    }

    /// The tag `id`, mutably. Changing `start` or `kind` of a tag on the
    /// address list or in a tree is allowed only when it keeps their order
    /// (e.g. moving a start to a point no other tag lies between).
    #[inline(always)]
    pub fn get_mut(&mut self, id: TagId) -> &mut Tag {
        self.store.get_mut(id)
    }

    /// Sets a tag's kind and `list` and pushes it on the list `head` (a tag
    /// on no list), with one lookup of the tag: an exact fit moving from a
    /// free list to a hash chain. A member of a tree has its subtree key
    /// maxima brought up to date, as [`set_kind`](Self::set_kind) does.
    #[inline]
    pub fn set_kind_onto(&mut self, id: TagId, kind: TagKind, list: u8, head: &mut ListHead) {
        let old = head.raw();
        let t = self.store.get_mut(id);
        t.kind = kind;
        t.list = list;
        t.next = old;
        t.prev = NIL;
        let in_tree = t.in_tree();
        if let Some(o) = TagId::from_raw(old) {
            self.store.get_mut(o).prev = id.0;
        }
        *head = ListHead::from_raw(id.0);
        if in_tree {
            self.refresh_from(id.0);
        }
    }

    /// Sets a tag's kind; a member of a tree has its subtree key maxima
    /// brought up to date ([`refresh_key`](Self::refresh_key)), as its key
    /// (or, after a change of `list`, the key it had) may change with it.
    #[inline]
    pub fn set_kind(&mut self, id: TagId, kind: TagKind) {
        let t = self.store.get_mut(id);
        t.kind = kind;
        if t.in_tree() {
            self.refresh_from(id.0);
        }
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
