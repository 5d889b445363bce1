//! Cache and allocation flags.

bitflags::bitflags! {
    /// How a cache lays out and caches its objects.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct CacheFlags: u32 {
        /// Never write to free objects: keep them on bufctls found through
        /// a hash instead of linking them through their first word. Needed
        /// for sources that are not memory (a quantum cache over IDs).
        const NOTOUCH = 1;
        /// A quantum cache of an arena: slabs are
        /// `next_pow2(3 * qcache_max)` bytes (see
        /// [`CacheBuilder::qcache`](crate::CacheBuilder::qcache)).
        const QCACHE = 1 << 1;
        /// No per-CPU magazines: every allocation and free goes to the slab
        /// layer under the cache lock.
        const NOMAGAZINE = 1 << 2;
        /// Track every object's state (bufctls, like `NOTOUCH`), so double
        /// frees, frees to the wrong cache and foreign pointers are caught
        /// when they reach the magazine layer, not only the slab layer.
        const DEBUG = 1 << 3;
    }
}

bitflags::bitflags! {
    /// Flags of one allocation; the constructor receives them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct AllocFlags: u32 {
        /// The caller cannot wait (interrupt context, or a free path).
        const ATOMIC = 1;
        /// Zero the object before returning it (memory caches only).
        const ZERO = 1 << 1;
    }
}
