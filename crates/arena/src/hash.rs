//! The allocated-segment hash: chains of allocated tags keyed by start.
//!
//! It starts with 64 chains stored inline; larger tables live in memory the
//! arena obtains *outside* its lock and installs afterwards
//! ([`AllocHash::install`]), so no allocation ever resizes it mid-operation.
//! Installing a table is `O(1)`: the entries move over from the previous
//! table a few chains at a time, on each insert and remove that follows
//! ([`STEP_CHAINS`]), so no operation holds the lock for a whole rehash.
//! Meanwhile an entry sits in the previous table while its chain there has
//! not moved yet, in the new one otherwise. The emptied table is retired
//! for the arena to free outside its lock. An explicit rescale (`reap`,
//! `rescale_hash`) finishes its move at once, a batch of chains per lock
//! hold, and frees the old table before it returns.

use kmem_btag::{HeadTable, ListHead, Tag, TagId, Tags};
use kmem_hash::{hash_usize, LoadPolicy, INIT_BITS};

const INIT_CHAINS: usize = 1 << INIT_BITS;

/// Chains of the previous table moved to the new one by each insert and
/// remove during a rehash. With tables that double or halve, 4 chains per
/// operation finish a rehash long before the load can call for the next.
pub(crate) const STEP_CHAINS: usize = 4;

/// Empty chains of the previous table a step may pass over for each
/// non-empty one it may move (a table emptied by frees moves fast).
const EMPTY_PER_STEP: usize = 16;

/// A rehash under way: the previous table, whose chains from `next` on
/// still hold their entries.
struct Moving {
    /// The previous table; `None`: the inline chains.
    from: Option<HeadTable>,
    bits: u32,
    next: usize,
}

/// An entry [`AllocHash::find_tag`] found: its tag as read, and its chain.
pub(crate) struct Found {
    pub(crate) id: TagId,
    pub(crate) tag: Tag,
    chain: usize,
}

pub(crate) struct AllocHash {
    inline: [ListHead; INIT_CHAINS],
    table: Option<HeadTable>,
    policy: LoadPolicy,
    moving: Option<Moving>,
    /// A table emptied by a finished rehash, to be freed outside the lock.
    retired: Option<HeadTable>,
}

impl AllocHash {
    pub(crate) const fn new() -> Self {
        Self {
            inline: [ListHead::new(); INIT_CHAINS],
            table: None,
            policy: LoadPolicy::new(),
            moving: None,
            retired: None,
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
        self.policy.chain_of(start as u64)
    }

    /// The previous table's chain holding the entry that starts at
    /// `start`, if a rehash is under way and that chain has not moved.
    #[inline]
    fn old_chain(&self, start: usize) -> Option<usize> {
        let m = self.moving.as_ref()?;
        let c = hash_usize(start, m.bits);
        (c >= m.next).then_some(c)
    }

    fn old_heads(&self) -> &[ListHead] {
        match self.moving.as_ref().and_then(|m| m.from.as_ref()) {
            Some(t) => t.as_slice(),
            None => &self.inline,
        }
    }

    fn old_heads_mut(&mut self) -> &mut [ListHead] {
        match self.moving.as_mut().and_then(|m| m.from.as_mut()) {
            Some(t) => t.as_mut_slice(),
            None => &mut self.inline,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.policy.items() as usize
    }

    pub(crate) fn chains(&self) -> usize {
        self.policy.chains()
    }

    /// True while a rehash is under way, or its emptied table waits to be
    /// freed: no new table may be installed.
    pub(crate) fn busy(&self) -> bool {
        self.moving.is_some() || self.retired.is_some()
    }

    pub(crate) fn insert(&mut self, tags: &mut Tags, id: TagId) {
        let start = tags.get(id).start;
        self.insert_at(tags, id, start);
    }

    /// The chain that a new entry starting at `start` goes on, with the
    /// entry counted in: for a caller that links the entry itself (see
    /// `Tags::carve_front_onto`). Runs a rehash step first, as an insert does.
    #[inline(always)]
    pub(crate) fn chain_for_insert(&mut self, tags: &mut Tags, start: usize) -> &mut ListHead {
        self.step(tags);
        self.policy.inc();
        match self.old_chain(start) {
            Some(c) => &mut self.old_heads_mut()[c],
            None => {
                let c = self.chain_of(start);
                &mut self.heads_mut()[c]
            }
        }
    }

    /// [`insert`](Self::insert) of a tag known to start at `start`.
    #[inline(always)]
    pub(crate) fn insert_at(&mut self, tags: &mut Tags, id: TagId, start: usize) {
        self.step(tags);
        match self.old_chain(start) {
            Some(c) => tags.list_push(&mut self.old_heads_mut()[c], id),
            None => {
                let c = self.chain_of(start);
                tags.list_push(&mut self.heads_mut()[c], id);
            }
        }
        self.policy.inc();
    }

    /// The allocated tag starting at `start`, left in place.
    pub(crate) fn find(&self, tags: &Tags, start: usize) -> Option<TagId> {
        self.find_tag(tags, start).map(|f| f.id)
    }

    /// [`find`](Self::find), with a copy of the tag found and where it is.
    #[inline(always)]
    pub(crate) fn find_tag(&self, tags: &Tags, start: usize) -> Option<Found> {
        let (head, chain) = match self.old_chain(start) {
            Some(c) => (self.old_heads()[c], c),
            None => {
                let c = self.chain_of(start);
                (self.heads()[c], c)
            }
        };
        let mut cur = head.first();
        while let Some(id) = cur {
            let t = tags.get(id);
            if t.start == start {
                return Some(Found { id, tag: *t, chain });
            }
            cur = t.list_next();
        }
        None
    }

    /// Removes what [`find_tag`](Self::find_tag) found (nothing changed
    /// since).
    #[inline(always)]
    pub(crate) fn remove_found(&mut self, tags: &mut Tags, f: &Found) {
        if self.moving.is_some() {
            // A step may move the entry to another chain: its links change.
            self.step_moving(tags);
            let t = *tags.get(f.id);
            match self.old_chain(t.start) {
                Some(c) => tags.list_remove_as(&mut self.old_heads_mut()[c], f.id, &t),
                None => {
                    let c = self.chain_of(t.start);
                    tags.list_remove_as(&mut self.heads_mut()[c], f.id, &t);
                }
            }
        } else {
            // No rehash: the entry is in the current table, at `chain`.
            tags.list_remove_as(&mut self.heads_mut()[f.chain], f.id, &f.tag);
        }
        self.policy.dec();
    }

    /// Moves up to [`STEP_CHAINS`] chains of a rehash under way; retires
    /// the previous table when the last one has moved.
    #[inline(always)]
    fn step(&mut self, tags: &mut Tags) {
        if self.moving.is_some() {
            self.step_moving(tags);
        }
    }

    #[cold]
    #[inline(never)]
    fn step_moving(&mut self, tags: &mut Tags) {
        self.move_chains(tags, STEP_CHAINS);
    }

    /// Moves up to `chains` non-empty chains (and up to [`EMPTY_PER_STEP`]
    /// times as many empty ones) of a rehash under way, retiring the
    /// previous table as soon as its last chain has moved.
    pub(crate) fn move_chains(&mut self, tags: &mut Tags, chains: usize) {
        let (mut full, mut empty) = (0, 0);
        while full < chains && empty < chains * EMPTY_PER_STEP {
            let Some(m) = self.moving.as_mut() else {
                return;
            };
            let c = m.next;
            m.next += 1;
            let done = m.next == 1usize << m.bits;
            let mut head = core::mem::take(&mut self.old_heads_mut()[c]);
            if head.first().is_none() {
                empty += 1;
            } else {
                full += 1;
                let bits = self.policy.bits();
                while let Some(id) = tags.list_pop(&mut head) {
                    let to = hash_usize(tags.get(id).start, bits);
                    tags.list_push(&mut self.heads_mut()[to], id);
                }
            }
            if done {
                let m = self.moving.take().expect("a rehash under way");
                debug_assert!(self.retired.is_none());
                self.retired = m.from;
                return;
            }
        }
    }

    /// Finishes a rehash under way at once (for `destroy`).
    pub(crate) fn finish_moving(&mut self, tags: &mut Tags) {
        while self.moving.is_some() {
            self.move_chains(tags, usize::MAX / EMPTY_PER_STEP);
        }
    }

    /// True while a rehash is moving entries.
    pub(crate) fn moving(&self) -> bool {
        self.moving.is_some()
    }

    /// A table a finished rehash emptied, for the caller to free outside
    /// the lock.
    #[inline(always)]
    pub(crate) fn take_retired(&mut self) -> Option<HeadTable> {
        self.retired.take()
    }

    /// True when the load is above the growth limit (a cheap check for the
    /// allocation path; the resize itself happens after unlocking).
    #[inline]
    pub(crate) fn needs_grow(&self) -> bool {
        self.policy.needs_grow() && !self.busy()
    }

    /// The table size (in chains) the load policy wants, if it differs
    /// (none while a rehash is under way).
    pub(crate) fn wanted_chains(&self) -> Option<usize> {
        if self.busy() {
            return None;
        }
        self.policy.resize_target().map(|bits| 1usize << bits)
    }

    /// Installs `new` (an external table of a power-of-two number of chains
    /// above the inline 64, or the inline table when `None`) and starts
    /// moving the entries over; `O(1)`. The caller checked that no rehash
    /// is under way ([`wanted_chains`](Self::wanted_chains)).
    pub(crate) fn install(&mut self, new: Option<HeadTable>) {
        assert!(!self.busy(), "kmem-arena: hash rehash under way");
        debug_assert!(new
            .as_ref()
            .is_none_or(|t| t.as_slice().len() > INIT_CHAINS));
        let bits = match &new {
            Some(t) => t.as_slice().len().trailing_zeros(),
            None => INIT_BITS,
        };
        if new.is_none() && self.table.is_none() {
            // Inline to inline: nothing to move.
            return;
        }
        let from = core::mem::replace(&mut self.table, new);
        let old_bits = self.policy.bits();
        if from.is_some() && self.table.is_none() {
            // Back to the inline chains, unused while the table served.
            self.inline = [ListHead::new(); INIT_CHAINS];
        }
        self.moving = Some(Moving {
            from,
            bits: old_bits,
            next: 0,
        });
        self.policy.set_bits(bits);
    }

    /// Empties the hash (for destroy; every entry must already be gone) and
    /// returns its external tables, if any.
    pub(crate) fn take_tables(&mut self, tags: &mut Tags) -> [Option<HeadTable>; 2] {
        self.finish_moving(tags);
        let tables = [self.table.take(), self.retired.take()];
        *self = Self::new();
        tables
    }

    /// Checks that every entry is allocated and on its own chain (in the
    /// previous table while its chain there has not moved); returns the
    /// entry count and the longest chain.
    pub(crate) fn scan(&self, tags: &Tags) -> Result<(usize, usize), usize> {
        let (mut n, mut longest) = (0, 0);
        let mut walk = |heads: &[ListHead], home: &dyn Fn(usize) -> Option<usize>| {
            for (c, &head) in heads.iter().enumerate() {
                let mut len = 0;
                for id in tags.list_iter(head) {
                    let t = tags.get(id);
                    if t.kind() != kmem_btag::TagKind::Allocated || home(t.start) != Some(c) {
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
            Ok(())
        };
        let new_home = |start: usize| match self.old_chain(start) {
            Some(_) => None,
            None => Some(self.chain_of(start)),
        };
        walk(self.heads(), &new_home)?;
        if self.moving.is_some() {
            walk(self.old_heads(), &|start| self.old_chain(start))?;
        }
        Ok((n, longest))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::boxed::Box;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    use kmem_btag::{HeadTable, TagKind, Tags, CHUNK_BYTES};

    use super::{AllocHash, INIT_CHAINS, STEP_CHAINS};

    #[repr(C, align(4096))]
    struct Page([u8; CHUNK_BYTES]);

    /// A table of `chains` heads in heap memory that `bufs` keeps.
    fn table(bufs: &mut Vec<Vec<u64>>, chains: usize) -> HeadTable {
        let mut mem = std::vec![0u64; chains / 2 + 1];
        let ptr = mem.as_mut_ptr();
        // The buffer stays where it is when its `Vec` moves into `bufs`.
        bufs.push(mem);
        // SAFETY: fresh memory, 8-aligned, large enough, kept alive by
        // `bufs` for the test and used by nothing else.
        unsafe { HeadTable::from_raw(ptr.cast(), chains) }
    }

    /// Inserts, removes and lookups against a map, with tables installed
    /// (growing and shrinking, back to the inline chains too) at random
    /// while earlier rehashes may still be moving: every entry stays
    /// findable, the scan passes, and each rehash ends within
    /// `chains / STEP_CHAINS` inserts and removes.
    #[test]
    fn rehash_moves_a_few_chains_per_operation() {
        let pages = 64;
        let mut mem: Box<[Page]> = (0..pages).map(|_| Page([0; CHUNK_BYTES])).collect();
        let mut tags = Tags::new();
        // SAFETY: `mem` outlives `tags` in this test and is not touched
        // otherwise.
        unsafe {
            tags.donate(
                mem.as_mut_ptr().cast(),
                pages * CHUNK_BYTES,
                kmem_btag::Donation::Kept,
            )
        };
        let mut h = AllocHash::new();
        let mut bufs = Vec::new();
        let mut live = BTreeMap::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut rng = move |n: u64| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        };
        let (mut installs, mut ops_since) = (0, 0usize);
        for step in 0..60_000 {
            let r = rng(100);
            if r < 55 && live.len() < 3000 {
                let start = (rng(1 << 40) as usize) << 4;
                if live.contains_key(&start) {
                    continue;
                }
                let id = tags.take(start, 16, TagKind::Allocated).unwrap();
                h.insert(&mut tags, id);
                live.insert(start, id);
            } else if r < 95 && !live.is_empty() {
                let k = *live.keys().nth(rng(live.len() as u64) as usize).unwrap();
                let id = live.remove(&k).unwrap();
                let found = h.find_tag(&tags, k).unwrap();
                assert_eq!(found.id, id);
                h.remove_found(&mut tags, &found);
                tags.put(id);
                assert_eq!(h.find(&tags, k), None);
            } else if !h.busy() {
                let bits = rng(6) as u32;
                let new = (bits > 0).then(|| table(&mut bufs, INIT_CHAINS << bits));
                h.install(new);
                installs += 1;
                ops_since = 0;
            }
            ops_since += 1;
            if let Some(t) = h.take_retired() {
                let _ = t.into_raw();
            }
            // A rehash of the largest table (4096 chains) ends within
            // 4096 / STEP_CHAINS mutating operations, plus lookups between.
            assert!(
                !h.busy() || ops_since < 4 * (4096 / STEP_CHAINS) + 8,
                "step {step}"
            );
            if step % 97 == 0 {
                assert_eq!(h.scan(&tags).map(|(n, _)| n), Ok(live.len()), "step {step}");
                for (&k, &id) in live.iter().take(50) {
                    assert_eq!(h.find(&tags, k), Some(id), "step {step}");
                }
            }
        }
        assert!(installs > 100);
        assert_eq!(h.len(), live.len());
        for t in h.take_tables(&mut tags).into_iter().flatten() {
            let _ = t.into_raw();
        }
    }
}
