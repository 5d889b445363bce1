//! The address list: every tag in use, in address order, doubly linked.
//!
//! It gives O(1) neighbours, splits and merges; the trees are only for
//! searching by address.

use crate::tag::{TagId, TagKind, NIL};
use crate::Tags;

/// A broken address list, found by [`Tags::verify_addr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// A link does not point back, or the list is longer than the set.
    Link(TagId),
    /// Two neighbours are out of address order (spans sort before the
    /// segment sharing their start).
    Order(TagId),
    /// The count kept differs from the tags reached.
    Count,
}

#[inline]
fn key(t: &crate::Tag) -> (usize, bool) {
    (t.start, t.kind != TagKind::Span)
}

impl Tags {
    /// The first tag in address order.
    #[inline]
    pub fn addr_first(&self) -> Option<TagId> {
        TagId::from_raw(self.addr_head)
    }

    /// The last tag in address order.
    #[inline]
    pub fn addr_last(&self) -> Option<TagId> {
        TagId::from_raw(self.addr_tail)
    }

    /// The tag after `id` in address order. O(1).
    #[inline]
    pub fn addr_next(&self, id: TagId) -> Option<TagId> {
        TagId::from_raw(self.get(id).anext)
    }

    /// The tag before `id` in address order. O(1).
    #[inline]
    pub fn addr_prev(&self, id: TagId) -> Option<TagId> {
        TagId::from_raw(self.get(id).aprev)
    }

    /// Links `new` between `prev` and `next` (either may be NIL).
    #[inline]
    fn addr_link(&mut self, new: TagId, prev: u32, next: u32) {
        {
            let t = self.get_mut(new);
            t.aprev = prev;
            t.anext = next;
        }
        match TagId::from_raw(prev) {
            Some(p) => self.get_mut(p).anext = new.0,
            None => self.addr_head = new.0,
        }
        match TagId::from_raw(next) {
            Some(n) => self.get_mut(n).aprev = new.0,
            None => self.addr_tail = new.0,
        }
        self.addr_len += 1;
    }

    /// Puts `new` right after `at`. The caller keeps the order.
    #[inline]
    pub fn addr_insert_after(&mut self, at: TagId, new: TagId) {
        let next = self.get(at).anext;
        self.addr_link(new, at.0, next);
    }

    /// Puts `new` right before `at`. The caller keeps the order.
    #[inline]
    pub fn addr_insert_before(&mut self, at: TagId, new: TagId) {
        let prev = self.get(at).aprev;
        self.addr_link(new, prev, at.0);
    }

    /// Puts `new` at the end of the list.
    #[inline]
    pub fn addr_push_back(&mut self, new: TagId) {
        self.addr_link(new, self.addr_tail, NIL);
    }

    /// Unlinks `id` from the address list.
    #[inline]
    pub fn addr_remove(&mut self, id: TagId) {
        let (prev, next) = {
            let t = self.get_mut(id);
            let links = (t.aprev, t.anext);
            t.aprev = NIL;
            t.anext = NIL;
            links
        };
        match TagId::from_raw(prev) {
            Some(p) => self.get_mut(p).anext = next,
            None => self.addr_head = next,
        }
        match TagId::from_raw(next) {
            Some(n) => self.get_mut(n).aprev = prev,
            None => self.addr_tail = prev,
        }
        self.addr_len -= 1;
    }

    /// The tags in address order.
    pub fn addr_iter(&self) -> impl Iterator<Item = TagId> + '_ {
        let mut cur = self.addr_first();
        core::iter::from_fn(move || {
            let id = cur?;
            cur = self.addr_next(id);
            Some(id)
        })
    }

    /// Checks the address list: back links, strict address order and the
    /// count. Returns the number of tags on it. O(n).
    pub fn verify_addr(&self) -> Result<usize, AddrError> {
        let (mut n, mut prev) = (0usize, NIL);
        let mut cur = self.addr_head;
        while let Some(id) = TagId::from_raw(cur) {
            let t = self.get(id);
            if t.aprev != prev || n >= self.capacity() {
                return Err(AddrError::Link(id));
            }
            if let Some(p) = TagId::from_raw(prev) {
                if key(self.get(p)) >= key(t) {
                    return Err(AddrError::Order(id));
                }
            }
            n += 1;
            prev = cur;
            cur = t.anext;
        }
        if prev != self.addr_tail || n != self.addr_len {
            return Err(AddrError::Count);
        }
        Ok(n)
    }
}
