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
        /// Debug mode: track every object's state (bufctls, like
        /// `NOTOUCH`), so every double, wrong-cache, foreign and interior
        /// free is caught before the magazine layer, with no shortcut, and
        /// reported (see [`Report`](crate::Report)). The parts below add to
        /// it; each implies `DEBUG`.
        const DEBUG = 1 << 3;
        /// Debug mode: a guard word after each object, written when the
        /// object is handed out and checked when it is freed: an overrun
        /// is reported and the free refused
        /// ([`BadFree::Overrun`](crate::BadFree::Overrun)). Memory caches
        /// only.
        const REDZONE = 1 << 4;
        /// Debug mode: free objects are filled with [`POISON`](crate::POISON)
        /// and checked when handed out again: a write after free is
        /// reported. Memory caches without a constructor only.
        const POISON = 1 << 5;
        /// Debug mode: each object's last allocation and free (call site,
        /// CPU slot, time), a per-cache transaction log, and leak reports
        /// grouped by allocation site. Memory caches only.
        const AUDIT = 1 << 6;
        /// Every debug part.
        const DEBUG_ALL = Self::DEBUG.bits()
            | Self::REDZONE.bits()
            | Self::POISON.bits()
            | Self::AUDIT.bits();
    }
}

impl CacheFlags {
    /// The debug parts that need a trailer after each object (a guard word
    /// and the audit record).
    pub(crate) fn trailer(self) -> bool {
        self.intersects(Self::REDZONE | Self::AUDIT)
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
