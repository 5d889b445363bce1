//! [`AddrHash`]: a chained hash of [`HashNode`]s keyed by address, with its
//! chain heads in memory from the cache's metadata arena. Resizing is split
//! so the table is allocated and freed outside the cache lock.

use core::ptr::{self, NonNull};

use kmem_hash::{hash_usize, LoadPolicy};

use crate::raw::HashNode;

/// Bytes of a table of `2^bits` chains.
pub(crate) const fn table_bytes(bits: u32) -> usize {
    (1usize << bits) * core::mem::size_of::<*mut HashNode>()
}

pub(crate) struct AddrHash {
    heads: NonNull<*mut HashNode>,
    policy: LoadPolicy,
}

impl AddrHash {
    /// A hash over a table of `2^INIT_BITS` chains at `table`.
    ///
    /// # Safety
    /// `table` is `table_bytes(INIT_BITS)` bytes of memory, aligned to 8,
    /// that the hash owns until it is handed back by `rehash` or `table`.
    pub(crate) unsafe fn new(table: NonNull<u8>) -> Self {
        let policy = LoadPolicy::new();
        let heads = table.cast::<*mut HashNode>();
        // SAFETY: the caller's guarantee.
        unsafe { ptr::write_bytes(heads.as_ptr(), 0, policy.chains()) };
        Self { heads, policy }
    }

    pub(crate) fn len(&self) -> u64 {
        self.policy.items()
    }

    pub(crate) fn bits(&self) -> u32 {
        self.policy.bits()
    }

    /// The table's memory and size, for freeing.
    pub(crate) fn table(&self) -> (usize, usize) {
        (
            self.heads.as_ptr() as usize,
            table_bytes(self.policy.bits()),
        )
    }

    /// The size (in bits) the table should move to, if any.
    pub(crate) fn resize_target(&self, allow_shrink: bool) -> Option<u32> {
        let bits = self.policy.resize_target()?;
        (bits > self.policy.bits() || allow_shrink).then_some(bits)
    }

    fn head(&self, key: usize) -> *mut *mut HashNode {
        let i = hash_usize(key, self.policy.bits());
        // SAFETY: `i < chains`, inside the table.
        unsafe { self.heads.as_ptr().add(i) }
    }

    /// # Safety
    /// `node` is live, owned by the cache and in no chain.
    pub(crate) unsafe fn insert(&mut self, node: NonNull<HashNode>) {
        let head = self.head(
            // SAFETY: the caller's guarantee.
            unsafe { (*node.as_ptr()).key },
        );
        // SAFETY: `head` is in the table; `node` is live (caller).
        unsafe {
            (*node.as_ptr()).next = *head;
            *head = node.as_ptr();
        }
        self.policy.inc();
    }

    pub(crate) fn find(&self, key: usize) -> Option<NonNull<HashNode>> {
        // SAFETY: chains hold live nodes only (insert/remove contracts).
        let mut at = unsafe { *self.head(key) };
        while let Some(node) = NonNull::new(at) {
            // SAFETY: a live node in a chain.
            let n = unsafe { &*node.as_ptr() };
            if n.key == key {
                return Some(node);
            }
            at = n.next;
        }
        None
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<NonNull<HashNode>> {
        let mut link = self.head(key);
        // SAFETY: `link` points at a head or at a live node's `next`.
        while let Some(node) = NonNull::new(unsafe { *link }) {
            // SAFETY: a live node in a chain.
            let n = unsafe { &mut *node.as_ptr() };
            if n.key == key {
                // SAFETY: as above.
                unsafe { *link = n.next };
                n.next = ptr::null_mut();
                self.policy.dec();
                return Some(node);
            }
            link = &mut n.next;
        }
        None
    }

    /// Moves every node to a table of `2^bits` chains at `table` and returns
    /// the old table's memory and size.
    ///
    /// # Safety
    /// `table` is `table_bytes(bits)` bytes, aligned to 8, owned by the hash
    /// from now on.
    pub(crate) unsafe fn rehash(&mut self, table: NonNull<u8>, bits: u32) -> (usize, usize) {
        let old = self.table();
        let (old_heads, old_chains) = (self.heads, self.policy.chains());
        let items = self.policy.items();
        let heads = table.cast::<*mut HashNode>();
        // SAFETY: the caller's guarantee.
        unsafe { ptr::write_bytes(heads.as_ptr(), 0, 1usize << bits) };
        self.heads = heads;
        self.policy = LoadPolicy::new();
        self.policy.set_bits(bits);
        for i in 0..old_chains {
            // SAFETY: `i` is inside the old table.
            let mut at = unsafe { *old_heads.as_ptr().add(i) };
            while let Some(node) = NonNull::new(at) {
                // SAFETY: a live node of the old chains.
                at = unsafe { (*node.as_ptr()).next };
                // SAFETY: the node left its old chain above.
                unsafe { self.insert(node) };
            }
        }
        debug_assert_eq!(self.policy.items(), items);
        old
    }

    /// Every node (the hash must not change meanwhile).
    pub(crate) fn nodes(&self) -> impl Iterator<Item = NonNull<HashNode>> + '_ {
        let mut chain = 0;
        let mut at: *mut HashNode = ptr::null_mut();
        core::iter::from_fn(move || loop {
            if let Some(node) = NonNull::new(at) {
                // SAFETY: a live node in a chain.
                at = unsafe { (*node.as_ptr()).next };
                return Some(node);
            }
            if chain == self.policy.chains() {
                return None;
            }
            // SAFETY: `chain` is inside the table.
            at = unsafe { *self.heads.as_ptr().add(chain) };
            chain += 1;
        })
    }
}
