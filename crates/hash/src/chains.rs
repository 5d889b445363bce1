//! [`AddrHash`]: the chained, intrusive address hash of the stack, with
//! incremental rehash (its docs say how it is used).

use crate::{hash_usize, LoadPolicy, INIT_BITS};

/// Chains stored inline in an [`AddrHash`] (unless its owner asks for
/// none): `2^INIT_BITS`.
pub const INIT_CHAINS: usize = 1 << INIT_BITS;

/// Chains of the previous table moved to the new one by each insert and
/// remove during a rehash. With tables that double or halve, 4 chains per
/// operation finish a rehash long before the load can call for the next.
pub const STEP_CHAINS: usize = 4;

/// Empty chains of the previous table a step may pass over for each
/// non-empty one it may move (a table emptied by removals moves fast).
const EMPTY_PER_STEP: usize = 16;

/// How the nodes of an [`AddrHash`] are linked into chains.
///
/// The nodes belong to the implementer (an index into a store, or a
/// pointer to a live header); the hash only follows and changes the links
/// through these methods. Every node on a chain stays valid for these
/// methods until it is removed: that is the implementer's invariant, and
/// what lets the hash walk its chains with safe calls.
pub trait Links {
    /// A handle of a node: an index or a pointer, compared by identity.
    type Node: Copy + Eq;
    /// The head of a chain as a table stores it.
    type Head: Copy;
    /// The head of an empty chain.
    const EMPTY: Self::Head;

    /// The key the node is hashed by: its address or start.
    fn key(&self, node: Self::Node) -> usize;
    /// The first node of the chain `head`.
    fn first(&self, head: &Self::Head) -> Option<Self::Node>;
    /// The node after `node` on its chain.
    fn next(&self, node: Self::Node) -> Option<Self::Node>;
    /// Puts `node`, on no chain, at the front of the chain `head`.
    fn push(&mut self, head: &mut Self::Head, node: Self::Node);
    /// Takes `node` off the chain `head`; `prev` is the node before it on
    /// that chain (`None`: it is the first).
    fn unlink(&mut self, head: &mut Self::Head, node: Self::Node, prev: Option<Self::Node>);
}

/// A rehash under way: the previous table, whose chains from `next` on
/// still hold their nodes.
struct Moving<T> {
    /// The previous table; `None`: the inline chains.
    from: Option<T>,
    bits: u32,
    next: usize,
}

/// Where [`AddrHash::find`] found a node: enough to take it off its chain
/// with [`AddrHash::remove_found`] without walking the chain again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found<N> {
    /// The node.
    pub node: N,
    /// The node before it on its chain (`None`: it is the first).
    prev: Option<N>,
    /// Its chain's index in the current table (`None`: it is in the
    /// previous table, whose chain has not moved yet).
    chain: Option<usize>,
}

/// A chained, intrusive address hash with incremental rehash.
///
/// `L` links the nodes ([`Links`]): the chains run through them, so the
/// hash never allocates. `T` is an external table of chain heads, a
/// power-of-two number of them from [`INIT_CHAINS`] up, in memory the owner
/// allocated; until one is installed the hash uses its 64 inline chains.
/// `INLINE` is [`INIT_CHAINS`] (the default) or 0, for an owner that keeps
/// the hash in a structure it wants small: such a hash has no chains until
/// its first table is installed, which must come before the first insert
/// or lookup, and it never goes back to inline chains.
///
/// The owner asks [`needs_grow`](Self::needs_grow) or
/// [`wanted_bits`](Self::wanted_bits) under its lock, allocates the table
/// after unlocking and [`install`](Self::install)s it under the lock again
/// in `O(1)`. Each insert and remove then moves [`STEP_CHAINS`] chains of
/// the previous table over (a node sits there while its chain has not
/// moved); [`move_chains`](Self::move_chains) moves a batch on demand and
/// [`finish_moving`](Self::finish_moving) all at once. The emptied table
/// comes back from [`take_retired`](Self::take_retired) for the owner to
/// free outside its lock.
///
/// ```
/// use kmem_hash::{AddrHash, Links};
///
/// /// Nodes in an array, linked by index; `u32::MAX` ends a chain.
/// struct Nodes { key: [usize; 100], next: [u32; 100] }
///
/// impl Links for Nodes {
///     type Node = u32;
///     type Head = u32;
///     const EMPTY: u32 = u32::MAX;
///     fn key(&self, n: u32) -> usize { self.key[n as usize] }
///     fn first(&self, head: &u32) -> Option<u32> { (*head != u32::MAX).then_some(*head) }
///     fn next(&self, n: u32) -> Option<u32> { self.first(&self.next[n as usize]) }
///     fn push(&mut self, head: &mut u32, n: u32) {
///         self.next[n as usize] = *head;
///         *head = n;
///     }
///     fn unlink(&mut self, head: &mut u32, n: u32, prev: Option<u32>) {
///         let after = self.next[n as usize];
///         match prev {
///             Some(p) => self.next[p as usize] = after,
///             None => *head = after,
///         }
///     }
/// }
///
/// let mut nodes = Nodes { key: [0; 100], next: [u32::MAX; 100] };
/// let mut hash = AddrHash::<Nodes, [u32; 128]>::new();
/// for n in 0..100 {
///     nodes.key[n as usize] = 0x1000 * n as usize;
///     hash.insert(&mut nodes, n);
/// }
/// // 100 nodes on 64 chains: the policy asks for 128.
/// assert_eq!(hash.wanted_bits(), Some(7));
/// hash.install(Some([u32::MAX; 128]));
/// assert_eq!(hash.remove(&mut nodes, 0x5000), Some(5));
/// assert_eq!(hash.find(&nodes, 0x6000).map(|f| f.node), Some(6));
/// hash.finish_moving(&mut nodes);
/// assert_eq!((hash.len(), hash.chains()), (99, 128));
/// ```
pub struct AddrHash<L: Links, T, const INLINE: usize = INIT_CHAINS> {
    inline: [L::Head; INLINE],
    table: Option<T>,
    policy: LoadPolicy,
    moving: Option<Moving<T>>,
    /// A table emptied by a finished rehash, for the owner to free.
    retired: Option<T>,
}

impl<L: Links, T, const INLINE: usize> Default for AddrHash<L, T, INLINE>
where
    T: AsRef<[L::Head]> + AsMut<[L::Head]>,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Links, T, const INLINE: usize> AddrHash<L, T, INLINE>
where
    T: AsRef<[L::Head]> + AsMut<[L::Head]>,
{
    /// An empty hash on its 64 inline chains (none with `INLINE` 0).
    pub const fn new() -> Self {
        const {
            assert!(
                INLINE == 0 || INLINE == INIT_CHAINS,
                "kmem-hash: INLINE is 0 or INIT_CHAINS"
            )
        };
        Self {
            inline: [L::EMPTY; INLINE],
            table: None,
            policy: LoadPolicy::new(),
            moving: None,
            retired: None,
        }
    }

    #[inline]
    fn heads(&self) -> &[L::Head] {
        match &self.table {
            Some(t) => t.as_ref(),
            None => &self.inline,
        }
    }

    #[inline]
    fn heads_mut(&mut self) -> &mut [L::Head] {
        match &mut self.table {
            Some(t) => t.as_mut(),
            None => &mut self.inline,
        }
    }

    /// The previous table's chain holding the node keyed `key`, if a
    /// rehash is under way and that chain has not moved.
    #[inline]
    fn old_chain(&self, key: usize) -> Option<usize> {
        let m = self.moving.as_ref()?;
        let c = hash_usize(key, m.bits);
        (c >= m.next).then_some(c)
    }

    fn old_heads(&self) -> &[L::Head] {
        match self.moving.as_ref().and_then(|m| m.from.as_ref()) {
            Some(t) => t.as_ref(),
            None => &self.inline,
        }
    }

    fn old_heads_mut(&mut self) -> &mut [L::Head] {
        match self.moving.as_mut().and_then(|m| m.from.as_mut()) {
            Some(t) => t.as_mut(),
            None => &mut self.inline,
        }
    }

    /// The head of the chain a node keyed `key` belongs on now, and its
    /// index in the current table (`None`: the previous one's).
    #[inline(always)]
    fn home(&self, key: usize) -> (&L::Head, Option<usize>) {
        match self.old_chain(key) {
            Some(c) => (&self.old_heads()[c], None),
            None => {
                let c = self.policy.chain_of(key as u64);
                (&self.heads()[c], Some(c))
            }
        }
    }

    /// [`home`](Self::home), mutably.
    #[inline(always)]
    fn home_mut(&mut self, key: usize) -> &mut L::Head {
        match self.old_chain(key) {
            Some(c) => &mut self.old_heads_mut()[c],
            None => {
                let c = self.policy.chain_of(key as u64);
                &mut self.heads_mut()[c]
            }
        }
    }

    /// Nodes in the hash.
    #[inline]
    pub fn len(&self) -> usize {
        self.policy.items() as usize
    }

    /// True when the hash holds no node.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.policy.items() == 0
    }

    /// Chains of the current table.
    #[inline]
    pub fn chains(&self) -> usize {
        self.policy.chains()
    }

    /// log2 of [`chains`](Self::chains).
    #[inline]
    pub fn bits(&self) -> u32 {
        self.policy.bits()
    }

    /// True while a rehash is under way, or its emptied table waits to be
    /// taken: no new table may be installed.
    #[inline]
    pub fn busy(&self) -> bool {
        self.moving.is_some() || self.retired.is_some()
    }

    /// True while a rehash is moving nodes.
    #[inline]
    pub fn moving(&self) -> bool {
        self.moving.is_some()
    }

    /// Adds `node`, on no chain, to the chain of its key.
    #[inline(always)]
    pub fn insert(&mut self, links: &mut L, node: L::Node) {
        let key = links.key(node);
        let head = self.chain_for_insert(links, key);
        links.push(head, node);
    }

    /// The chain a new node keyed `key` goes on, with the node counted in:
    /// for an owner that links the node itself, as
    /// [`Links::push`] would (at the front). Runs a rehash step first, as
    /// an insert does.
    #[inline(always)]
    pub fn chain_for_insert(&mut self, links: &mut L, key: usize) -> &mut L::Head {
        self.step(links);
        self.policy.inc();
        self.home_mut(key)
    }

    /// The node keyed `key`, and where it is.
    #[inline(always)]
    pub fn find(&self, links: &L, key: usize) -> Option<Found<L::Node>> {
        let (head, chain) = self.home(key);
        let mut prev = None;
        let mut cur = links.first(head);
        while let Some(node) = cur {
            if links.key(node) == key {
                return Some(Found { node, prev, chain });
            }
            prev = cur;
            cur = links.next(node);
        }
        None
    }

    /// Takes off its chain what [`find`](Self::find) found, nothing having
    /// changed in the hash since.
    #[inline(always)]
    pub fn remove_found(&mut self, links: &mut L, found: &Found<L::Node>) {
        match found.chain {
            Some(c) if self.moving.is_none() => {
                links.unlink(&mut self.heads_mut()[c], found.node, found.prev);
            }
            _ => self.remove_moving(links, found.node),
        }
        self.policy.dec();
    }

    /// Takes `node` off its chain during a rehash: a step first (which may
    /// move it to another chain), then a walk of its chain for the node
    /// before it.
    #[cold]
    #[inline(never)]
    fn remove_moving(&mut self, links: &mut L, node: L::Node) {
        self.step(links);
        let key = links.key(node);
        let found = self
            .find(links, key)
            .filter(|f| f.node == node)
            .expect("kmem-hash: removed node is not on its chain");
        let head = self.home_mut(key);
        links.unlink(head, node, found.prev);
    }

    /// Removes and returns the node keyed `key`.
    #[inline]
    pub fn remove(&mut self, links: &mut L, key: usize) -> Option<L::Node> {
        let found = self.find(links, key)?;
        self.remove_found(links, &found);
        Some(found.node)
    }

    /// Moves up to [`STEP_CHAINS`] chains of a rehash under way.
    #[inline(always)]
    fn step(&mut self, links: &mut L) {
        if self.moving.is_some() {
            self.step_moving(links);
        }
    }

    #[cold]
    #[inline(never)]
    fn step_moving(&mut self, links: &mut L) {
        self.move_chains(links, STEP_CHAINS);
    }

    /// Moves up to `chains` non-empty chains (and up to 16 times as many
    /// empty ones) of a rehash under way, retiring the previous table as
    /// soon as its last chain has moved.
    pub fn move_chains(&mut self, links: &mut L, chains: usize) {
        let (mut full, mut empty) = (0, 0);
        while full < chains && empty < chains.saturating_mul(EMPTY_PER_STEP) {
            let Some(m) = self.moving.as_mut() else {
                return;
            };
            let c = m.next;
            m.next += 1;
            let done = m.next == 1usize << m.bits;
            let mut head = core::mem::replace(&mut self.old_heads_mut()[c], L::EMPTY);
            if links.first(&head).is_none() {
                empty += 1;
            } else {
                full += 1;
                let bits = self.policy.bits();
                while let Some(node) = links.first(&head) {
                    links.unlink(&mut head, node, None);
                    let to = hash_usize(links.key(node), bits);
                    links.push(&mut self.heads_mut()[to], node);
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

    /// Finishes a rehash under way at once.
    pub fn finish_moving(&mut self, links: &mut L) {
        while self.moving.is_some() {
            self.move_chains(links, usize::MAX);
        }
    }

    /// A table a finished rehash emptied, for the owner to free.
    #[inline(always)]
    pub fn take_retired(&mut self) -> Option<T> {
        self.retired.take()
    }

    /// True when the load is above the growth limit and no rehash is under
    /// way (a cheap check for an allocation path; the owner allocates the
    /// table after unlocking).
    #[inline]
    pub fn needs_grow(&self) -> bool {
        self.policy.needs_grow() && !self.busy()
    }

    /// The table size (in bits) the load policy wants, if it differs
    /// (`None` while a rehash is under way); see
    /// [`LoadPolicy::resize_target`].
    pub fn wanted_bits(&self) -> Option<u32> {
        if self.busy() {
            return None;
        }
        self.policy.resize_target()
    }

    /// Installs `new`, a table of a power-of-two number of chains from
    /// [`INIT_CHAINS`] up (or the inline chains, `None`), and starts moving
    /// the nodes over; `O(1)`.
    ///
    /// # Panics
    /// If a rehash is under way ([`busy`](Self::busy)), `new` has a number
    /// of chains that is not a power of two of at least [`INIT_CHAINS`] (or
    /// above [`MAX_BITS`](crate::MAX_BITS) bits), or `new` is `None` in a
    /// hash without inline chains.
    pub fn install(&mut self, new: Option<T>) {
        assert!(!self.busy(), "kmem-hash: rehash under way");
        let bits = match &new {
            Some(t) => {
                let chains = t.as_ref().len();
                assert!(
                    chains.is_power_of_two() && chains >= INIT_CHAINS,
                    "kmem-hash: a table of {chains} chains"
                );
                chains.trailing_zeros()
            }
            None => {
                assert!(INLINE != 0, "kmem-hash: no inline chains to go back to");
                INIT_BITS
            }
        };
        if new.is_none() && self.table.is_none() {
            // Inline to inline: nothing to move.
            return;
        }
        if INLINE == 0 && self.table.is_none() {
            // The first table of a hash without inline chains: there was
            // nowhere to put a node, so nothing to move.
            assert!(self.is_empty(), "kmem-hash: nodes without chains");
            self.policy.set_bits(bits);
            self.table = new;
            return;
        }
        let old_bits = self.policy.bits();
        self.policy.set_bits(bits);
        let from = core::mem::replace(&mut self.table, new);
        if from.is_some() && self.table.is_none() {
            // Back to the inline chains, unused while the table served.
            self.inline = [L::EMPTY; INLINE];
        }
        self.moving = Some(Moving {
            from,
            bits: old_bits,
            next: 0,
        });
    }

    /// Empties the hash (every node must already be gone, or be abandoned
    /// with it) and returns its external tables, current and retired.
    pub fn take_tables(&mut self, links: &mut L) -> [Option<T>; 2] {
        self.finish_moving(links);
        let tables = [self.table.take(), self.retired.take()];
        *self = Self::new();
        tables
    }

    /// Walks every chain: each node must pass `valid` and sit on the chain
    /// of its key (in the previous table while its chain there has not
    /// moved), and no more than `limit` nodes may be found (a cycle).
    /// Returns the node count and the longest chain, or the key of the
    /// first node out of place.
    pub fn scan(
        &self,
        links: &L,
        limit: usize,
        valid: impl Fn(&L, L::Node) -> bool,
    ) -> Result<(usize, usize), usize> {
        let (mut n, mut longest) = (0, 0);
        let mut walk = |heads: &[L::Head], home: &dyn Fn(usize) -> Option<usize>| {
            for (c, head) in heads.iter().enumerate() {
                let mut len = 0;
                let mut cur = links.first(head);
                while let Some(node) = cur {
                    let key = links.key(node);
                    if !valid(links, node) || home(key) != Some(c) || n + len >= limit {
                        return Err(key);
                    }
                    len += 1;
                    cur = links.next(node);
                }
                n += len;
                longest = longest.max(len);
            }
            Ok(())
        };
        let new_home = |key: usize| match self.old_chain(key) {
            Some(_) => None,
            None => Some(self.policy.chain_of(key as u64)),
        };
        walk(self.heads(), &new_home)?;
        if self.moving.is_some() {
            walk(self.old_heads(), &|key| self.old_chain(key))?;
        }
        Ok((n, longest))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::BTreeMap;
    use std::vec::Vec;

    use super::{AddrHash, Links, INIT_CHAINS, STEP_CHAINS};

    const NIL: u32 = u32::MAX;

    /// Nodes in a vector, linked by index, singly: `prev` is trusted.
    #[derive(Default)]
    struct Nodes {
        keys: Vec<usize>,
        next: Vec<u32>,
    }

    impl Links for Nodes {
        type Node = u32;
        type Head = u32;
        const EMPTY: u32 = NIL;

        fn key(&self, node: u32) -> usize {
            self.keys[node as usize]
        }
        fn first(&self, head: &u32) -> Option<u32> {
            (*head != NIL).then_some(*head)
        }
        fn next(&self, node: u32) -> Option<u32> {
            let n = self.next[node as usize];
            (n != NIL).then_some(n)
        }
        fn push(&mut self, head: &mut u32, node: u32) {
            self.next[node as usize] = *head;
            *head = node;
        }
        fn unlink(&mut self, head: &mut u32, node: u32, prev: Option<u32>) {
            let after = self.next[node as usize];
            match prev {
                None => {
                    assert_eq!(*head, node, "unlink of a node that is not first");
                    *head = after;
                }
                Some(p) => {
                    assert_eq!(self.next[p as usize], node, "a wrong prev");
                    self.next[p as usize] = after;
                }
            }
            self.next[node as usize] = NIL;
        }
    }

    type Hash = AddrHash<Nodes, Vec<u32>>;

    impl Nodes {
        /// A node keyed `key`: one of `free`, or a new one.
        fn add(&mut self, free: &mut Vec<u32>, key: usize) -> u32 {
            let id = free.pop().unwrap_or_else(|| {
                self.keys.push(0);
                self.next.push(NIL);
                self.keys.len() as u32 - 1
            });
            self.keys[id as usize] = key;
            id
        }
    }

    /// xorshift64* seeded with `x`: numbers below the bound asked.
    fn below(mut x: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    fn table(chains: usize) -> Vec<u32> {
        std::vec![NIL; chains]
    }

    /// Inserts, removes and lookups against a map, with tables installed
    /// (growing and shrinking, back to the inline chains too) at random
    /// while earlier rehashes may still be moving: every node stays
    /// findable, the scan passes, and each rehash ends within
    /// `chains / STEP_CHAINS` inserts and removes.
    #[test]
    fn rehash_moves_a_few_chains_per_operation() {
        let mut nodes = Nodes::default();
        let mut h = Hash::new();
        let mut live = BTreeMap::new();
        let mut free: Vec<u32> = Vec::new();
        let mut rng = below(0x2545_f491_4f6c_dd1d);
        let (mut installs, mut ops_since) = (0, 0usize);
        for step in 0..60_000 {
            let r = rng(100);
            if r < 55 && live.len() < 3000 {
                let key = (rng(1 << 40) as usize) << 4;
                if live.contains_key(&key) {
                    continue;
                }
                let id = nodes.add(&mut free, key);
                h.insert(&mut nodes, id);
                live.insert(key, id);
            } else if r < 95 && !live.is_empty() {
                let k = *live.keys().nth(rng(live.len() as u64) as usize).unwrap();
                let id = live.remove(&k).unwrap();
                if r.is_multiple_of(2) {
                    let found = h.find(&nodes, k).unwrap();
                    assert_eq!(found.node, id);
                    h.remove_found(&mut nodes, &found);
                } else {
                    assert_eq!(h.remove(&mut nodes, k), Some(id));
                }
                free.push(id);
                assert_eq!(h.find(&nodes, k), None);
            } else if !h.busy() {
                let bits = rng(6) as u32;
                h.install((bits > 0).then(|| table(INIT_CHAINS << bits)));
                installs += 1;
                ops_since = 0;
            }
            ops_since += 1;
            let _ = h.take_retired();
            // A rehash of the largest table (4096 chains) ends within
            // 4096 / STEP_CHAINS mutating operations, plus lookups between.
            assert!(
                !h.busy() || ops_since < 4 * (4096 / STEP_CHAINS) + 8,
                "step {step}"
            );
            if step % 97 == 0 {
                let scanned = h.scan(&nodes, usize::MAX, |_, _| true);
                assert_eq!(scanned.map(|(n, _)| n), Ok(live.len()), "step {step}");
                for (&k, &id) in live.iter().take(50) {
                    assert_eq!(h.find(&nodes, k).map(|f| f.node), Some(id), "step {step}");
                }
            }
        }
        assert!(installs > 100);
        assert_eq!(h.len(), live.len());
        h.take_tables(&mut nodes);
        assert!(h.is_empty());
    }

    /// `finish_moving` moves everything at once and retires the old table.
    #[test]
    fn finish_moving_retires_the_previous_table() {
        let mut nodes = Nodes::default();
        let mut h = Hash::new();
        for i in 0..200u32 {
            nodes.keys.push(i as usize * 4096);
            nodes.next.push(NIL);
            h.insert(&mut nodes, i);
        }
        assert_eq!(h.wanted_bits(), Some(7));
        h.install(Some(table(128)));
        assert!(h.moving());
        h.finish_moving(&mut nodes);
        // The inline chains are not retired: nothing waits to be freed.
        assert!(!h.busy());
        assert_eq!(h.take_retired(), None);
        h.install(Some(table(1024)));
        h.finish_moving(&mut nodes);
        assert!(h.busy());
        assert_eq!(h.take_retired().map(|t| t.len()), Some(128));
        assert_eq!(h.chains(), 1024);
        assert_eq!(
            h.scan(&nodes, usize::MAX, |_, _| true).map(|s| s.0),
            Ok(200)
        );
        for i in 0..200 {
            assert_eq!(h.find(&nodes, i * 4096).map(|f| f.node), Some(i as u32));
        }
    }

    /// The scan reports a node on the wrong chain, one `valid` refuses,
    /// and more nodes than the limit.
    #[test]
    fn scan_finds_misplaced_invalid_and_too_many_nodes() {
        let mut nodes = Nodes::default();
        let mut h = Hash::new();
        for i in 0..10u32 {
            nodes.keys.push(i as usize * 64);
            nodes.next.push(NIL);
            h.insert(&mut nodes, i);
        }
        assert_eq!(h.scan(&nodes, 10, |_, _| true).map(|s| s.0), Ok(10));
        assert!(h.scan(&nodes, 9, |_, _| true).is_err());
        assert_eq!(h.scan(&nodes, 100, |_, n| n != 3), Err(3 * 64));
        // Node 5's key changes behind the hash's back: off its chain now.
        let moved = (1..1000)
            .map(|k| 5 * 64 + k * 8)
            .find(|&k| {
                h.find(&nodes, k).is_none()
                    && h.policy.chain_of(k as u64) != h.policy.chain_of(5 * 64)
            })
            .unwrap();
        nodes.keys[5] = moved;
        assert_eq!(h.scan(&nodes, 100, |_, _| true), Err(moved));
    }

    /// A table that knows which one it is, to check that every table
    /// installed comes back exactly once, and empty.
    struct Tab {
        id: usize,
        heads: Vec<u32>,
    }

    impl AsRef<[u32]> for Tab {
        fn as_ref(&self) -> &[u32] {
            &self.heads
        }
    }

    impl AsMut<[u32]> for Tab {
        fn as_mut(&mut self) -> &mut [u32] {
            &mut self.heads
        }
    }

    /// Every public operation, in random order, against a map, with long
    /// chains (up to 2000 nodes on as few as 64 chains): installs of every size (the inline chains,
    /// an external table of 64, growing and shrinking), batches of every
    /// size (0 and `usize::MAX` included), retired tables left untaken a
    /// while, `Found`s used after other lookups, and the hash emptied with
    /// `take_tables` mid-rehash and filled again. After each operation the
    /// scan finds exactly the live nodes on their chains; every table
    /// installed comes back once, with no node left on it.
    #[test]
    fn every_operation_in_any_order_keeps_every_node() {
        let mut rng = below(0x9e37_79b9_7f4a_7c15);
        let mut nodes = Nodes::default();
        let mut h = AddrHash::<Nodes, Tab>::new();
        let mut live: BTreeMap<usize, u32> = BTreeMap::new();
        let mut free: Vec<u32> = Vec::new();
        let (mut next_tab, mut out) = (0usize, std::collections::BTreeSet::new());
        let back = |t: Tab, out: &mut std::collections::BTreeSet<usize>| {
            assert!(
                t.heads.iter().all(|&h| h == NIL),
                "a table came back with nodes"
            );
            assert!(out.remove(&t.id), "table {} came back twice", t.id);
        };
        for step in 0..200_000u32 {
            match rng(100) {
                0..=39 if live.len() < 2000 => {
                    // 4096 keys on a page grid: inserts often find theirs taken.
                    let key = (rng(4096) as usize) << 12;
                    if live.contains_key(&key) {
                        continue;
                    }
                    let id = nodes.add(&mut free, key);
                    h.insert(&mut nodes, id);
                    live.insert(key, id);
                }
                40..=74 if !live.is_empty() => {
                    let k = *live.keys().nth(rng(live.len() as u64) as usize).unwrap();
                    let id = live.remove(&k).unwrap();
                    match rng(3) {
                        0 => assert_eq!(h.remove(&mut nodes, k), Some(id)),
                        1 => {
                            let found = h.find(&nodes, k).unwrap();
                            // Lookups change nothing.
                            for _ in 0..3 {
                                let other = (rng(4096) as usize) << 12;
                                let _ = h.find(&nodes, other);
                            }
                            assert_eq!(found.node, id);
                            h.remove_found(&mut nodes, &found);
                        }
                        _ => {
                            let found = h.find(&nodes, k).unwrap();
                            h.remove_found(&mut nodes, &found);
                        }
                    }
                    free.push(id);
                    assert_eq!(h.find(&nodes, k), None, "step {step}");
                }
                75..=82 => {
                    let n = [0, 1, 3, 64, usize::MAX][rng(5) as usize];
                    h.move_chains(&mut nodes, n);
                }
                83 => h.finish_moving(&mut nodes),
                84..=90 if !h.busy() => {
                    let bits = rng(7) as u32;
                    let tab = (bits > 0).then(|| {
                        next_tab += 1;
                        out.insert(next_tab);
                        Tab {
                            id: next_tab,
                            heads: std::vec![NIL; INIT_CHAINS << (bits - 1)],
                        }
                    });
                    h.install(tab);
                }
                91..=95 => {
                    if let Some(t) = h.take_retired() {
                        back(t, &mut out);
                    }
                }
                96 => {
                    // Abandon every node with the hash, and put them back.
                    for t in h.take_tables(&mut nodes).into_iter().flatten() {
                        // The current table still holds its nodes.
                        for &head in &t.heads {
                            let mut cur = head;
                            while cur != NIL {
                                let n = nodes.next[cur as usize];
                                nodes.next[cur as usize] = NIL;
                                cur = n;
                            }
                        }
                        out.remove(&t.id);
                    }
                    for i in 0..nodes.next.len() {
                        nodes.next[i] = NIL;
                    }
                    assert!(h.is_empty() && !h.busy() && h.chains() == INIT_CHAINS);
                    for &id in live.values() {
                        h.insert(&mut nodes, id);
                    }
                }
                _ => {}
            }
            assert_eq!(h.len(), live.len(), "step {step}");
            let scanned = h.scan(&nodes, live.len(), |_, _| true);
            assert_eq!(scanned.map(|s| s.0), Ok(live.len()), "step {step}");
            if step % 101 == 0 {
                for (&k, &id) in &live {
                    assert_eq!(h.find(&nodes, k).map(|f| f.node), Some(id), "step {step}");
                }
            }
        }
        h.finish_moving(&mut nodes);
        if let Some(t) = h.take_retired() {
            back(t, &mut out);
        }
        // Only the current table is still out.
        let [cur, retired] = h.take_tables(&mut nodes);
        assert!(retired.is_none());
        assert_eq!(out.len(), cur.is_some() as usize);
        assert!(next_tab > 1000);
    }

    /// A hash without inline chains: its first table comes before any node
    /// and moves nothing; later tables move as usual; it never goes back
    /// to inline chains.
    #[test]
    fn a_hash_without_inline_chains_lives_in_its_tables() {
        let mut nodes = Nodes::default();
        let mut free = Vec::new();
        let mut h = AddrHash::<Nodes, Vec<u32>, 0>::new();
        h.install(Some(table(64)));
        assert!(!h.busy(), "nothing to move into the first table");
        for i in 0..100 {
            let id = nodes.add(&mut free, i * 64);
            h.insert(&mut nodes, id);
        }
        assert_eq!(h.wanted_bits(), Some(7));
        h.install(Some(table(128)));
        h.finish_moving(&mut nodes);
        assert_eq!(h.take_retired().map(|t| t.len()), Some(64));
        assert_eq!(
            h.scan(&nodes, usize::MAX, |_, _| true).map(|s| s.0),
            Ok(100)
        );
        for i in 0..100 {
            assert_eq!(h.remove(&mut nodes, i * 64), Some(i as u32));
        }
        let [t, r] = h.take_tables(&mut nodes);
        assert_eq!((t.map(|t| t.len()), r), (Some(128), None));
    }

    #[test]
    #[should_panic(expected = "no inline chains")]
    fn a_hash_without_inline_chains_cannot_go_back_to_them() {
        let mut h = AddrHash::<Nodes, Vec<u32>, 0>::new();
        h.install(Some(table(128)));
        h.install(None);
    }

    #[test]
    #[should_panic(expected = "a table of 100 chains")]
    fn install_refuses_a_table_that_is_not_a_power_of_two() {
        Hash::new().install(Some(table(100)));
    }

    #[test]
    #[should_panic(expected = "rehash under way")]
    fn install_during_a_rehash_panics() {
        let mut h = Hash::new();
        h.install(Some(table(128)));
        h.install(Some(table(256)));
    }
}
