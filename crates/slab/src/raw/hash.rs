//! [`AddrHash`]: a chained hash of slab headers or bufctls keyed by
//! address, with its chain heads in metadata memory. Resizing is split so
//! the table is allocated and freed outside the cache lock.
//!
//! The hash belongs to one [`SlabSet`](super::SlabSet): every node in a
//! chain is a live header or bufctl of that set (it inserts a node when a
//! slab joins and removes it before the slab leaves), which is what lets
//! the chains be followed here.

use core::mem::size_of;
use core::ptr::{self, NonNull};

use kmem_hash::{hash_usize, LoadPolicy, INIT_BITS};

use super::memory::MetaMem;
use super::slab::HashNode;

/// Bytes of a table of `2^bits` chains.
pub(crate) const fn table_bytes(bits: u32) -> usize {
    (1usize << bits) * size_of::<*mut HashNode>()
}

pub(crate) struct AddrHash<'a> {
    /// The chain heads, `policy.chains()` of them at the start of this
    /// memory; `None` once the cache is torn down.
    table: Option<MetaMem<'a>>,
    policy: LoadPolicy,
}

/// True when `table` can hold `2^bits` chain heads.
fn fits(table: &MetaMem<'_>, bits: u32) -> bool {
    table.addr() != 0
        && table.addr().is_multiple_of(size_of::<*mut HashNode>())
        && table.len() >= table_bytes(bits)
}

/// Sets every head of a table of `2^bits` chains to "empty".
fn clear(table: &MetaMem<'_>, bits: u32) {
    debug_assert!(fits(table, bits));
    // SAFETY: the table is memory owned by its token, aligned and large
    // enough for `2^bits` heads (`fits`, checked by every caller).
    unsafe { ptr::write_bytes(table.addr() as *mut *mut HashNode, 0, 1usize << bits) }
}

impl<'a> AddrHash<'a> {
    /// An empty hash over a table of `2^INIT_BITS` chains, or `None` (the
    /// memory leaked) when `table` cannot hold them.
    pub(crate) fn new(table: MetaMem<'a>) -> Option<Self> {
        let policy = LoadPolicy::new();
        debug_assert_eq!(policy.bits(), INIT_BITS);
        if !fits(&table, policy.bits()) {
            return None;
        }
        clear(&table, policy.bits());
        Some(Self {
            table: Some(table),
            policy,
        })
    }

    /// Nodes in the hash.
    pub(crate) fn len(&self) -> u64 {
        self.policy.items()
    }

    /// The table holds `2^bits()` chains.
    pub(crate) fn bits(&self) -> u32 {
        self.policy.bits()
    }

    /// The size (in bits) the table should move to, if any.
    pub(crate) fn resize_target(&self, allow_shrink: bool) -> Option<u32> {
        let bits = self.policy.resize_target()?;
        (bits > self.policy.bits() || allow_shrink).then_some(bits)
    }

    /// The head of `key`'s chain, `None` once torn down.
    #[inline]
    fn head(&self, key: usize) -> Option<*mut *mut HashNode> {
        let heads = self.table.as_ref()?.addr() as *mut *mut HashNode;
        // In bounds: `hash_usize` is below `2^bits`, the table's chains.
        Some(heads.wrapping_add(hash_usize(key, self.policy.bits())))
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
        let n = node.as_ptr();
        // SAFETY: live (the caller's guarantee).
        let key = unsafe { (*n).key };
        let head = self
            .head(key)
            .expect("kmem-slab: slab added after teardown");
        // SAFETY: `head` is a head of the live table; `node` is live and
        // ours to link (the caller's guarantee).
        unsafe {
            (*n).next = *head;
            *head = n;
        }
        self.policy.inc();
    }

    /// The node keyed `key`.
    #[inline]
    pub(super) fn find(&self, key: usize) -> Option<NonNull<HashNode>> {
        // SAFETY: a head of the live table.
        let mut at = unsafe { *self.head(key)? };
        while let Some(node) = NonNull::new(at) {
            // SAFETY: chains hold live nodes only (see the module docs).
            let n = unsafe { &*node.as_ptr() };
            if n.key == key {
                return Some(node);
            }
            at = n.next;
        }
        None
    }

    /// Unlinks the node keyed `key` and returns it.
    pub(super) fn remove(&mut self, key: usize) -> Option<NonNull<HashNode>> {
        let mut link = self.head(key)?;
        // SAFETY: `link` points at a head of the live table or at a live
        // node's `next`; nodes in chains are live (see the module docs) and
        // `&mut self` keeps them from being touched meanwhile.
        while let Some(node) = NonNull::new(unsafe { *link }) {
            let n = node.as_ptr();
            // SAFETY: as above.
            unsafe {
                if (*n).key == key {
                    *link = (*n).next;
                    (*n).next = ptr::null_mut();
                    self.policy.dec();
                    return Some(node);
                }
                link = &raw mut (*n).next;
            }
        }
        None
    }

    /// Moves every node to `table`, of `2^bits` chains, and returns the
    /// memory to give back: the old table, or `table` itself if it is too
    /// small or the hash was retired.
    pub(crate) fn rehash(&mut self, table: MetaMem<'a>, bits: u32) -> MetaMem<'a> {
        if !fits(&table, bits) || self.table.is_none() {
            return table;
        }
        clear(&table, bits);
        let items = self.policy.items();
        let old_chains = self.policy.chains();
        let old = self.table.replace(table).expect("checked above");
        self.policy = LoadPolicy::new();
        self.policy.set_bits(bits);
        let old_heads = old.addr() as *const *mut HashNode;
        for i in 0..old_chains {
            // SAFETY: `i` is a head of the old table, which is still ours.
            let mut at = unsafe { *old_heads.add(i) };
            while let Some(node) = NonNull::new(at) {
                // SAFETY: a live node of the old chains.
                at = unsafe { (*node.as_ptr()).next };
                // SAFETY: live, and out of its old chain (the old table is
                // dropped as a whole).
                unsafe { self.insert(node) };
            }
        }
        debug_assert_eq!(self.policy.items(), items);
        old
    }

    /// Nodes found by walking every chain (the checker's count).
    pub(crate) fn count_nodes(&self) -> u64 {
        let Some(table) = &self.table else {
            return 0;
        };
        let heads = table.addr() as *const *mut HashNode;
        let mut n = 0;
        for i in 0..self.policy.chains() {
            // SAFETY: `i` is a head of the live table.
            let mut at = unsafe { *heads.add(i) };
            while let Some(node) = NonNull::new(at) {
                n += 1;
                // SAFETY: a live node in a chain.
                at = unsafe { (*node.as_ptr()).next };
            }
        }
        n
    }

    /// Takes the table out, to be given back: the hash finds nothing from
    /// now on (a torn-down cache's, whose set is empty).
    pub(crate) fn retire(&mut self) -> Option<MetaMem<'a>> {
        self.table.take()
    }
}
