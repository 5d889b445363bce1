//! Doubly linked lists threaded through tags (free lists, hash chains).
//!
//! A tag is on at most one list at a time; the list owner passes the head.

use crate::tag::{TagId, NIL};
use crate::Tags;

/// The head of a list of tags. Four bytes, so tables of heads stay small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct ListHead(u32);

impl Default for ListHead {
    fn default() -> Self {
        Self::new()
    }
}

impl ListHead {
    /// An empty list.
    pub const fn new() -> Self {
        Self(NIL)
    }

    /// True when the list holds no tag.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == NIL
    }

    /// The first tag on the list.
    #[inline]
    pub fn first(self) -> Option<TagId> {
        TagId::from_raw(self.0)
    }

    #[inline]
    pub(crate) fn raw(self) -> u32 {
        self.0
    }

    #[inline]
    pub(crate) fn from_raw(raw: u32) -> Self {
        Self(raw)
    }
}

impl Tags {
    /// Pushes `id` at the front of the list `head`.
    #[inline]
    pub fn list_push(&mut self, head: &mut ListHead, id: TagId) {
        let old = head.0;
        {
            let t = self.store.get_mut(id);
            t.next = old;
            t.prev = NIL;
        }
        if old != NIL {
            self.store.get_mut(TagId(old)).prev = id.0;
        }
        head.0 = id.0;
    }

    /// Unlinks `id` from the list `head`, which must be the list it is on.
    #[inline]
    pub fn list_remove(&mut self, head: &mut ListHead, id: TagId) {
        let (next, prev) = {
            let t = self.store.get_mut(id);
            let links = (t.next, t.prev);
            t.next = NIL;
            t.prev = NIL;
            links
        };
        self.unlink(head, id, next, prev);
    }

    /// Links `prev` to `next` (or `head`, when `id` was first), around `id`.
    #[inline]
    fn unlink(&mut self, head: &mut ListHead, id: TagId, next: u32, prev: u32) {
        if prev == NIL {
            debug_assert_eq!(head.0, id.0, "kmem-btag: tag is not on this list");
            head.0 = next;
        } else {
            self.store.get_mut(TagId(prev)).next = next;
        }
        if next != NIL {
            self.store.get_mut(TagId(next)).prev = prev;
        }
    }

    /// Unlinks `id` from the list `head` by the links of `t`, a copy of its
    /// tag read since it last changed (a lookup saved on a hot path). The
    /// tag's own links are left as they were: the caller puts it on another
    /// list, or makes it unused, before any other list operation on it.
    #[inline]
    pub fn list_remove_as(&mut self, head: &mut ListHead, id: TagId, t: &crate::Tag) {
        self.unlink(head, id, t.next, t.prev);
    }

    /// Removes and returns the first tag of the list.
    #[inline]
    pub fn list_pop(&mut self, head: &mut ListHead) -> Option<TagId> {
        let id = head.first()?;
        self.list_remove(head, id);
        Some(id)
    }

    /// The tag after `id` on its list.
    #[inline]
    pub fn list_next(&self, id: TagId) -> Option<TagId> {
        TagId::from_raw(self.store.get(id).next)
    }

    /// The tags on the list `head`, front to back.
    pub fn list_iter(&self, head: ListHead) -> impl Iterator<Item = TagId> + '_ {
        let mut cur = head.first();
        core::iter::from_fn(move || {
            let id = cur?;
            cur = self.list_next(id);
            Some(id)
        })
    }
}

/// Allocated tags chain through their list links in the arena's hash of
/// allocated segments, keyed by their start. The lists are doubly linked,
/// so `unlink` needs no `prev`; it leaves the unlinked tag's own links as
/// they were, as [`Tags::list_remove_as`] does (the hash pushes the tag
/// somewhere else, or the arena frees it, before its links are read).
impl kmem_hash::Links for Tags {
    type Node = TagId;
    type Head = ListHead;
    const EMPTY: ListHead = ListHead::new();

    #[inline(always)]
    fn key(&self, id: TagId) -> usize {
        self.store.get(id).start
    }

    #[inline(always)]
    fn first(&self, head: &ListHead) -> Option<TagId> {
        head.first()
    }

    #[inline(always)]
    fn next(&self, id: TagId) -> Option<TagId> {
        self.list_next(id)
    }

    #[inline(always)]
    fn push(&mut self, head: &mut ListHead, id: TagId) {
        self.list_push(head, id);
    }

    #[inline(always)]
    fn unlink(&mut self, head: &mut ListHead, id: TagId, _prev: Option<TagId>) {
        let (next, prev) = {
            let t = self.store.get(id);
            (t.next, t.prev)
        };
        Tags::unlink(self, head, id, next, prev);
    }
}
