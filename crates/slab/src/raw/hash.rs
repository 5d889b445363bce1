//! [`AddrHash`]: the set's hash of slab headers or bufctls keyed by
//! address: [`kmem_hash::AddrHash`] over [`HashNode`]s linked by pointer,
//! with its larger tables in metadata memory. Resizing is split so the
//! table is allocated and freed outside the cache lock.
//!
//! The hash belongs to one [`SlabSet`](super::SlabSet): every node in a
//! chain is a live header or bufctl of that set (it inserts a node when a
//! slab joins and removes it before the slab leaves), which is what lets
//! the chains be followed here. The unsafe code below also relies on
//! `kmem_hash::AddrHash` handing [`Links`] only nodes that are on its
//! chains (never one it was not given, nor one already unlinked): the
//! workspace's own crate, checked against a model by its tests
//! (`every_operation_in_any_order_keeps_every_node`).

use core::mem::size_of;
use core::ptr::{self, NonNull};

use kmem_hash::Links;

use super::memory::MetaMem;
use super::slab::HashNode;

/// Bytes of a table of `2^bits` chains.
pub(crate) const fn table_bytes(bits: u32) -> usize {
    (1usize << bits) * size_of::<Option<Linked>>()
}

/// A node on a chain: a live header or bufctl of the hash's set, from the
/// time [`AddrHash::insert`] took it until it is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
struct Linked(NonNull<HashNode>);

/// The set's nodes, as the shared hash follows them: every [`Linked`] it
/// holds is live (the module's invariant).
struct Nodes;

impl Links for Nodes {
    type Node = Linked;
    type Head = Option<Linked>;
    const EMPTY: Option<Linked> = None;

    #[inline(always)]
    fn key(&self, node: Linked) -> usize {
        // SAFETY: a node on a chain is live (see the module docs).
        unsafe { (*node.0.as_ptr()).key }
    }

    #[inline(always)]
    fn first(&self, head: &Option<Linked>) -> Option<Linked> {
        *head
    }

    #[inline(always)]
    fn next(&self, node: Linked) -> Option<Linked> {
        // SAFETY: as in `key`.
        NonNull::new(unsafe { (*node.0.as_ptr()).next }).map(Linked)
    }

    #[inline(always)]
    fn push(&mut self, head: &mut Option<Linked>, node: Linked) {
        let first = head.map_or(ptr::null_mut(), |h| h.0.as_ptr());
        // SAFETY: live, and the set's to link (`AddrHash::insert`).
        unsafe { (*node.0.as_ptr()).next = first };
        *head = Some(node);
    }

    #[inline(always)]
    fn unlink(&mut self, head: &mut Option<Linked>, node: Linked, prev: Option<Linked>) {
        let n = node.0.as_ptr();
        // SAFETY: `node` and `prev` are live nodes of this chain.
        unsafe {
            let next = (*n).next;
            match prev {
                None => *head = NonNull::new(next).map(Linked),
                Some(p) => (*p.0.as_ptr()).next = next,
            }
            (*n).next = ptr::null_mut();
        }
    }
}

/// A table of `chains` heads in metadata memory, set empty when made.
struct HeadMem<'a> {
    mem: MetaMem<'a>,
    chains: usize,
}

impl<'a> HeadMem<'a> {
    /// `mem` as a table of `2^bits` empty chains, or `mem` back when it
    /// cannot hold them.
    fn new(mem: MetaMem<'a>, bits: u32) -> Result<Self, MetaMem<'a>> {
        let fits = mem.addr() != 0
            && mem.addr().is_multiple_of(align_of::<Option<Linked>>())
            && mem.len() >= table_bytes(bits);
        if !fits {
            return Err(mem);
        }
        let chains = 1usize << bits;
        let heads = mem.addr() as *mut Option<Linked>;
        // SAFETY: owned by the token, aligned and large enough (just
        // checked); an all-zero head is `None`.
        unsafe { ptr::write_bytes(heads, 0, chains) };
        Ok(Self { mem, chains })
    }
}

impl AsRef<[Option<Linked>]> for HeadMem<'_> {
    fn as_ref(&self) -> &[Option<Linked>] {
        // SAFETY: `chains` heads, initialized by `new`, in memory this
        // token owns.
        unsafe { core::slice::from_raw_parts(self.mem.addr() as *const _, self.chains) }
    }
}

impl AsMut<[Option<Linked>]> for HeadMem<'_> {
    fn as_mut(&mut self) -> &mut [Option<Linked>] {
        // SAFETY: as in `as_ref`; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.mem.addr() as *mut _, self.chains) }
    }
}

pub(crate) struct AddrHash<'a> {
    /// Without inline chains: they would grow every cache by 512 bytes,
    /// and so the pages a `fork()` writes (each cache's locks).
    hash: kmem_hash::AddrHash<Nodes, HeadMem<'a>, 0>,
    /// Torn down: the cache is gone, no slab may join.
    retired: bool,
}

impl<'a> AddrHash<'a> {
    /// An empty hash over `table`, installed as a table of `2^INIT_BITS`
    /// chains, or `None` (the memory leaked) when it cannot hold them.
    pub(crate) fn new(table: MetaMem<'a>) -> Option<Self> {
        let table = HeadMem::new(table, kmem_hash::INIT_BITS).ok()?;
        let mut hash = kmem_hash::AddrHash::new();
        hash.install(Some(table));
        Some(Self {
            hash,
            retired: false,
        })
    }

    /// Nodes in the hash.
    pub(crate) fn len(&self) -> u64 {
        self.hash.len() as u64
    }

    /// The table holds `2^bits()` chains.
    pub(crate) fn bits(&self) -> u32 {
        self.hash.bits()
    }

    /// The size (in bits) the table should move to, if any (none while a
    /// rehash is under way).
    pub(crate) fn resize_target(&self, allow_shrink: bool) -> Option<u32> {
        if self.retired {
            return None;
        }
        let bits = self.hash.wanted_bits()?;
        (bits > self.hash.bits() || allow_shrink).then_some(bits)
    }

    /// Adds `node` to its chain (and moves a few chains of a rehash under
    /// way).
    ///
    /// # Safety
    /// `node` is a live header or bufctl of this hash's set, in no chain,
    /// that stays live until it is removed.
    ///
    /// # Panics
    /// If the hash was retired (a slab added to a torn-down cache).
    pub(super) unsafe fn insert(&mut self, node: NonNull<HashNode>) {
        assert!(!self.retired, "kmem-slab: slab added after teardown");
        self.hash.insert(&mut Nodes, Linked(node));
    }

    /// The node keyed `key` (none once retired: the hash has no chains).
    #[inline]
    pub(super) fn find(&self, key: usize) -> Option<NonNull<HashNode>> {
        if self.retired {
            return None;
        }
        self.hash.find(&Nodes, key).map(|f| f.node.0)
    }

    /// Unlinks the node keyed `key` and returns it (and moves a few chains
    /// of a rehash under way).
    pub(super) fn remove(&mut self, key: usize) -> Option<NonNull<HashNode>> {
        if self.retired {
            return None;
        }
        self.hash.remove(&mut Nodes, key).map(|n| n.0)
    }

    /// Installs `table` as a table of `2^bits` chains in `O(1)`. The nodes
    /// move over a few chains per insert and remove, and with
    /// [`move_chains`](Self::move_chains). Returns the memory back when the
    /// table is refused: too small, a rehash already under way, or the hash
    /// retired.
    pub(crate) fn install(&mut self, table: MetaMem<'a>, bits: u32) -> Option<MetaMem<'a>> {
        if self.retired || self.hash.busy() {
            return Some(table);
        }
        match HeadMem::new(table, bits) {
            Ok(t) => self.hash.install(Some(t)),
            Err(mem) => return Some(mem),
        }
        None
    }

    /// Moves up to `chains` chains of a rehash under way; true while some
    /// are left.
    pub(crate) fn move_chains(&mut self, chains: usize) -> bool {
        self.hash.move_chains(&mut Nodes, chains);
        self.hash.moving()
    }

    /// The table a finished rehash emptied, to be given back.
    pub(crate) fn take_retired(&mut self) -> Option<MetaMem<'a>> {
        self.hash.take_retired().map(|t| t.mem)
    }

    /// Nodes found by walking every chain (the checker's count; `u64::MAX`
    /// when a node is off its chain, or the chains hold more nodes than the
    /// hash counted: a cycle, whose walk stops there).
    pub(crate) fn count_nodes(&self) -> u64 {
        if self.retired {
            return 0;
        }
        self.hash
            .scan(&Nodes, self.hash.len(), |_, _| true)
            .map_or(u64::MAX, |(n, _)| n as u64)
    }

    /// Takes the tables out, to be given back: the hash finds nothing from
    /// now on (a torn-down cache's, whose set is empty).
    pub(crate) fn retire(&mut self) -> [Option<MetaMem<'a>>; 2] {
        self.retired = true;
        self.hash.take_tables(&mut Nodes).map(|t| t.map(|t| t.mem))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use core::ptr::{self, NonNull};
    use core::time::Duration;
    use std::sync::mpsc;

    use super::{table_bytes, AddrHash};
    use crate::raw::memory::MetaMem;
    use crate::raw::slab::HashNode;

    /// A chain that loops back on itself (a header overwritten by a buffer
    /// overrun) is reported by the checker's count, not walked for ever.
    #[test]
    fn count_nodes_stops_on_a_cycle() {
        let (tx, rx) = mpsc::channel();
        // The count runs on its own thread so that a walk that never ends
        // fails the test instead of hanging it.
        std::thread::spawn(move || {
            let mut node = HashNode {
                key: 0x1000,
                next: ptr::null_mut(),
            };
            let p = NonNull::from(&mut node);
            let ram = kmem_physmem::PhysMem::new(1 << 20);
            let base = ram.base_arena("base", 64);
            let table = MetaMem::alloc(&base, table_bytes(kmem_hash::INIT_BITS)).unwrap();
            let mut hash = AddrHash::new(table).unwrap();
            // SAFETY: `node` outlives `hash` and is on no chain.
            unsafe { hash.insert(p) };
            assert_eq!(hash.count_nodes(), 1);
            // SAFETY: `node` is live; the corruption under test.
            unsafe { (*p.as_ptr()).next = p.as_ptr() };
            let _ = tx.send(hash.count_nodes());
        });
        let counted = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(counted, Ok(u64::MAX), "the count walks a cycle for ever");
    }
}
