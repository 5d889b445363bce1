//! [`AddrHash`]: the set's hash of slab headers or bufctls keyed by
//! address: [`kmem_hash::AddrHash`] over [`HashNode`]s linked by pointer,
//! with its larger tables in metadata memory. Resizing is split so the
//! table is allocated and freed outside the cache lock.
//!
//! The hash belongs to one [`SlabSet`](super::SlabSet): every node in a
//! chain is a live header or bufctl of that set (it inserts a node when a
//! slab joins and removes it before the slab leaves), which is what lets
//! the chains be followed here.

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
    hash: kmem_hash::AddrHash<Nodes, HeadMem<'a>>,
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
        // From the empty inline chains: nothing to move, nothing retired.
        hash.finish_moving(&mut Nodes);
        debug_assert!(!hash.busy());
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

    /// The size (in bits) the table should move to, if any.
    pub(crate) fn resize_target(&self, allow_shrink: bool) -> Option<u32> {
        let bits = self.hash.wanted_bits()?;
        (bits > self.hash.bits() || allow_shrink).then_some(bits)
    }

    /// Adds `node` to its chain.
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

    /// The node keyed `key`.
    #[inline]
    pub(super) fn find(&self, key: usize) -> Option<NonNull<HashNode>> {
        self.hash.find(&Nodes, key).map(|f| f.node.0)
    }

    /// Unlinks the node keyed `key` and returns it.
    pub(super) fn remove(&mut self, key: usize) -> Option<NonNull<HashNode>> {
        self.hash.remove(&mut Nodes, key).map(|n| n.0)
    }

    /// Moves every node to `table`, of `2^bits` chains, and returns the
    /// memory to give back: the old table, or `table` itself if it is too
    /// small or the hash was retired.
    pub(crate) fn rehash(&mut self, table: MetaMem<'a>, bits: u32) -> MetaMem<'a> {
        if self.retired || self.hash.busy() {
            return table;
        }
        let table = match HeadMem::new(table, bits) {
            Ok(t) => t,
            Err(mem) => return mem,
        };
        self.hash.install(Some(table));
        self.hash.finish_moving(&mut Nodes);
        self.hash
            .take_retired()
            .expect("kmem-slab: the hash always has a table of its own")
            .mem
    }

    /// Nodes found by walking every chain (the checker's count).
    pub(crate) fn count_nodes(&self) -> u64 {
        self.hash
            .scan(&Nodes, usize::MAX, |_, _| true)
            .map_or(u64::MAX, |(n, _)| n as u64)
    }

    /// Takes the table out, to be given back: the hash finds nothing from
    /// now on (a torn-down cache's, whose set is empty).
    pub(crate) fn retire(&mut self) -> Option<MetaMem<'a>> {
        if self.retired {
            return None;
        }
        self.retired = true;
        let [table, spare] = self.hash.take_tables(&mut Nodes);
        debug_assert!(spare.is_none());
        table.map(|t| t.mem)
    }
}
