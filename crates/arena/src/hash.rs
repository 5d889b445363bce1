//! The allocated-segment hash: chains of allocated tags keyed by start.
//!
//! It starts with 64 chains stored inline; larger tables live in memory the
//! arena obtains *outside* its lock and installs afterwards
//! ([`AllocHash::install`]), so no allocation ever resizes it mid-operation.

use kmem_btag::{HeadTable, ListHead, TagId, Tags};
use kmem_hash::{hash_usize, LoadPolicy, INIT_BITS};

const INIT_CHAINS: usize = 1 << INIT_BITS;

pub(crate) struct AllocHash {
    inline: [ListHead; INIT_CHAINS],
    table: Option<HeadTable>,
    policy: LoadPolicy,
}

impl AllocHash {
    pub(crate) const fn new() -> Self {
        Self {
            inline: [ListHead::new(); INIT_CHAINS],
            table: None,
            policy: LoadPolicy::new(),
        }
    }

    #[inline]
    fn heads(&self) -> &[ListHead] {
        match &self.table {
            Some(t) => t.as_slice(),
            None => &self.inline,
        }
    }

    #[inline]
    fn heads_mut(&mut self) -> &mut [ListHead] {
        match &mut self.table {
            Some(t) => t.as_mut_slice(),
            None => &mut self.inline,
        }
    }

    #[inline]
    fn chain_of(&self, start: usize) -> usize {
        hash_usize(start, self.policy.bits())
    }

    pub(crate) fn len(&self) -> usize {
        self.policy.items() as usize
    }

    pub(crate) fn chains(&self) -> usize {
        self.policy.chains()
    }

    pub(crate) fn insert(&mut self, tags: &mut Tags, id: TagId) {
        let c = self.chain_of(tags.get(id).start);
        tags.list_push(&mut self.heads_mut()[c], id);
        self.policy.inc();
    }

    /// The allocated tag starting at `start`, left in place.
    pub(crate) fn find(&self, tags: &Tags, start: usize) -> Option<TagId> {
        let head = self.heads()[self.chain_of(start)];
        tags.list_iter(head).find(|&id| tags.get(id).start == start)
    }

    pub(crate) fn remove(&mut self, tags: &mut Tags, id: TagId) {
        let c = self.chain_of(tags.get(id).start);
        tags.list_remove(&mut self.heads_mut()[c], id);
        self.policy.dec();
    }

    /// True when the load is above the growth limit (a cheap check for the
    /// allocation path; the resize itself happens after unlocking).
    #[inline]
    pub(crate) fn needs_grow(&self) -> bool {
        self.policy.needs_grow()
    }

    /// The table size (in chains) the load policy wants, if it differs.
    pub(crate) fn wanted_chains(&self) -> Option<usize> {
        self.policy.resize_target().map(|bits| 1usize << bits)
    }

    /// Rehashes every entry into `new` (an external table of a power-of-two
    /// number of chains above the inline 64), or into the inline table when
    /// `new` is `None`. Returns the previous external table, if any, for the
    /// caller to free outside the lock.
    pub(crate) fn install(&mut self, tags: &mut Tags, new: Option<HeadTable>) -> Option<HeadTable> {
        let old = core::mem::replace(&mut self.table, new);
        let bits = match &self.table {
            Some(t) => t.as_slice().len().trailing_zeros(),
            None => INIT_BITS,
        };
        debug_assert!(self
            .table
            .as_ref()
            .is_none_or(|t| t.as_slice().len() > INIT_CHAINS));
        let mut moving = [ListHead::new(); INIT_CHAINS];
        if old.is_some() {
            // The inline table is the destination or unused: start it empty.
            self.inline = [ListHead::new(); INIT_CHAINS];
        } else {
            moving = core::mem::replace(&mut self.inline, [ListHead::new(); INIT_CHAINS]);
        }
        self.policy.set_bits(bits);
        let rehash = |tags: &mut Tags, mut head: ListHead, this: &mut Self| {
            while let Some(id) = tags.list_pop(&mut head) {
                let c = hash_usize(tags.get(id).start, bits);
                tags.list_push(&mut this.heads_mut()[c], id);
            }
        };
        match &old {
            Some(t) => {
                for &head in t.as_slice() {
                    rehash(tags, head, self);
                }
            }
            None => {
                for head in moving {
                    rehash(tags, head, self);
                }
            }
        }
        old
    }

    /// Empties the hash (for destroy; every entry must already be gone) and
    /// returns its external table, if any.
    pub(crate) fn take_table(&mut self) -> Option<HeadTable> {
        let table = self.table.take();
        *self = Self::new();
        table
    }

    /// Checks that every entry is allocated and on its own chain; returns the
    /// entry count and the longest chain.
    pub(crate) fn scan(&self, tags: &Tags) -> Result<(usize, usize), usize> {
        let (mut n, mut longest) = (0, 0);
        for (c, &head) in self.heads().iter().enumerate() {
            let mut len = 0;
            for id in tags.list_iter(head) {
                let t = tags.get(id);
                if t.kind() != kmem_btag::TagKind::Allocated || self.chain_of(t.start) != c {
                    return Err(t.start);
                }
                len += 1;
                if n + len > tags.capacity() {
                    return Err(t.start);
                }
            }
            n += len;
            longest = longest.max(len);
        }
        Ok((n, longest))
    }
}
