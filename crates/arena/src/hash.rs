//! The allocated-segment hash: [`kmem_hash::AddrHash`] over the boundary
//! tags, whose list links chain the allocated ones by start.
//!
//! It starts with 64 chains stored inline; larger tables live in memory the
//! arena obtains *outside* its lock and installs afterwards, so no
//! allocation ever resizes it mid-operation. Installing a table is `O(1)`:
//! the entries move over a few chains at a time, on each insert and remove
//! that follows, so no operation holds the lock for a whole rehash. The
//! emptied table is retired for the arena to free outside its lock. An
//! explicit rescale (`reap`, `rescale_hash`) finishes its move at once, a
//! batch of chains per lock hold, and frees the old table before it
//! returns.

use kmem_btag::{HeadTable, ListHead, Tag, TagId, TagKind, Tags};

/// An entry [`AllocHash::find_tag`] found: its tag as read, and where it is.
pub(crate) struct Found {
    pub(crate) id: TagId,
    pub(crate) tag: Tag,
    at: kmem_hash::Found<TagId>,
}

pub(crate) struct AllocHash(kmem_hash::AddrHash<Tags, HeadTable>);

impl AllocHash {
    pub(crate) const fn new() -> Self {
        Self(kmem_hash::AddrHash::new())
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn chains(&self) -> usize {
        self.0.chains()
    }

    #[inline]
    pub(crate) fn insert(&mut self, tags: &mut Tags, id: TagId) {
        self.0.insert(tags, id);
    }

    /// The chain that a new entry starting at `start` goes on, with the
    /// entry counted in: for a caller that links the entry itself (see
    /// `Tags::carve_front_onto`). Runs a rehash step first, as an insert does.
    #[inline(always)]
    pub(crate) fn chain_for_insert(&mut self, tags: &mut Tags, start: usize) -> &mut ListHead {
        self.0.chain_for_insert(tags, start)
    }

    /// The allocated tag starting at `start`, left in place.
    pub(crate) fn find(&self, tags: &Tags, start: usize) -> Option<TagId> {
        self.0.find(tags, start).map(|f| f.node)
    }

    /// [`find`](Self::find), with a copy of the tag found and where it is.
    #[inline(always)]
    pub(crate) fn find_tag(&self, tags: &Tags, start: usize) -> Option<Found> {
        let at = self.0.find(tags, start)?;
        Some(Found {
            id: at.node,
            tag: *tags.get(at.node),
            at,
        })
    }

    /// Removes what [`find_tag`](Self::find_tag) found (nothing changed
    /// since).
    #[inline(always)]
    pub(crate) fn remove_found(&mut self, tags: &mut Tags, f: &Found) {
        self.0.remove_found(tags, &f.at);
    }

    /// Moves up to `chains` non-empty chains of a rehash under way.
    pub(crate) fn move_chains(&mut self, tags: &mut Tags, chains: usize) {
        self.0.move_chains(tags, chains);
    }

    /// True while a rehash is moving entries.
    pub(crate) fn moving(&self) -> bool {
        self.0.moving()
    }

    /// A table a finished rehash emptied, for the caller to free outside
    /// the lock.
    #[inline(always)]
    pub(crate) fn take_retired(&mut self) -> Option<HeadTable> {
        self.0.take_retired()
    }

    /// True when the load is above the growth limit (a cheap check for the
    /// allocation path; the resize itself happens after unlocking).
    #[inline]
    pub(crate) fn needs_grow(&self) -> bool {
        self.0.needs_grow()
    }

    /// The table size (in chains) the load policy wants, if it differs
    /// (none while a rehash is under way).
    pub(crate) fn wanted_chains(&self) -> Option<usize> {
        self.0.wanted_bits().map(|bits| 1usize << bits)
    }

    /// Installs `new` (an external table, or the inline chains when
    /// `None`) and starts moving the entries over; `O(1)`.
    pub(crate) fn install(&mut self, new: Option<HeadTable>) {
        self.0.install(new);
    }

    /// Empties the hash (for destroy; every entry must already be gone) and
    /// returns its external tables, if any.
    pub(crate) fn take_tables(&mut self, tags: &mut Tags) -> [Option<HeadTable>; 2] {
        self.0.take_tables(tags)
    }

    /// Checks that every entry is allocated and on its own chain; returns
    /// the entry count and the longest chain, or the start of an entry out
    /// of place.
    pub(crate) fn scan(&self, tags: &Tags) -> Result<(usize, usize), usize> {
        self.0.scan(tags, tags.capacity(), |tags, id| {
            tags.get(id).kind() == TagKind::Allocated
        })
    }
}
