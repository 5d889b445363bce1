//! Boundary tags: what a tag records and how it is named.

/// What a boundary tag describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TagKind {
    /// Not in use: on the store's unused list.
    Unused = 0,
    /// A free segment.
    Free = 1,
    /// An allocated segment.
    Allocated = 2,
    /// A span: a range added to or imported by the arena. Segments tile it.
    Span = 3,
}

/// A boundary tag: a range `[start, start + size)` of some resource, its kind,
/// and the links that put it on the address list, in one of the trees and on
/// one list.
///
/// 48 bytes: links are `u32` [`TagId`]s rather than pointers.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Tag {
    /// First resource unit of the range.
    pub start: usize,
    /// Length of the range.
    pub size: usize,
    pub(crate) left: u32,
    pub(crate) right: u32,
    pub(crate) parent: u32,
    pub(crate) next: u32,
    pub(crate) prev: u32,
    pub(crate) anext: u32,
    pub(crate) aprev: u32,
    pub(crate) kind: TagKind,
    /// Which tree the tag is in (`Tree as u8`, or `NO_TREE`) in the low
    /// bits; its colour in [`RED`](crate::tree::RED).
    pub(crate) tree: u8,
    /// The largest [key](Tag::key) in the tag's subtree (its own included)
    /// while it is in a tree: what the keyed searches descend by.
    pub(crate) maxkey: u8,
    /// Index of the list the tag is on (e.g. a free list or hash chain), kept
    /// by list users for their own checks; the tree ignores it.
    pub list: u8,
}

const _: () = assert!(core::mem::size_of::<Tag>() == 48);

/// The null link.
pub(crate) const NIL: u32 = u32::MAX;

impl Tag {
    pub(crate) const fn blank() -> Self {
        Self {
            start: 0,
            size: 0,
            left: NIL,
            right: NIL,
            parent: NIL,
            next: NIL,
            prev: NIL,
            anext: NIL,
            aprev: NIL,
            kind: TagKind::Unused,
            tree: crate::tree::NO_TREE,
            maxkey: 0,
            list: 0,
        }
    }

    /// The tag's kind.
    #[inline]
    pub fn kind(&self) -> TagKind {
        self.kind
    }

    /// The tag after this one on the address list (as this copy read it).
    #[inline]
    pub fn addr_next(&self) -> Option<TagId> {
        TagId::from_raw(self.anext)
    }

    /// The tag before this one on the address list (as this copy read it).
    #[inline]
    pub fn addr_prev(&self) -> Option<TagId> {
        TagId::from_raw(self.aprev)
    }

    /// The tag after this one on its list (as this copy read it).
    #[inline]
    pub fn list_next(&self) -> Option<TagId> {
        TagId::from_raw(self.next)
    }

    /// True when the tag is in one of the trees.
    #[inline]
    pub fn in_tree(&self) -> bool {
        self.tree & !crate::tree::RED != crate::tree::NO_TREE
    }

    /// The tag's key for the keyed tree searches
    /// ([`first_keyed_from`](crate::Tags::first_keyed_from),
    /// [`last_keyed_below`](crate::Tags::last_keyed_below)): `list + 1` for a
    /// free tag (an arena keeps a free segment's size class in `list`), 0 for
    /// any other.
    #[inline]
    pub fn key(&self) -> u8 {
        if self.kind == TagKind::Free {
            self.list.saturating_add(1)
        } else {
            0
        }
    }

    /// One past the last unit of the range (saturating at `usize::MAX`).
    #[inline]
    pub fn end(&self) -> usize {
        self.start.saturating_add(self.size)
    }
}

/// The name of a tag inside one [`Tags`](crate::Tags) set: its chunk of
/// storage and its slot there.
///
/// Ids are only meaningful to the set that issued them. Using one elsewhere
/// is a logic error that the set catches with a bounds check or that
/// corrupts only that set's structure, never memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagId(pub(crate) u32);

impl TagId {
    /// The raw value of this id (`chunk * 4096 + the tag's byte offset`):
    /// distinct tags of a set have distinct values, not consecutive ones.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }

    #[inline]
    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        (raw != NIL).then_some(Self(raw))
    }
}
