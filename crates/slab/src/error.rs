//! Typed errors of the slab layer.

use core::fmt;

use kmem_arena::Name;

/// Why a cache could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The object size is zero.
    ZeroSize,
    /// The alignment is zero or not a power of two.
    BadAlign,
    /// The alignment is larger than [`PAGE_SIZE`](crate::PAGE_SIZE).
    AlignTooLarge,
    /// The object size, rounded, overflows or no object fits a slab.
    TooLarge,
    /// The cache would write to free objects, but its source's values are
    /// not memory; use [`CacheFlags::NOTOUCH`](crate::CacheFlags::NOTOUCH).
    NotMemory,
    /// `QCACHE` without a `qcache_max` (or one smaller than the object).
    BadQcacheMax,
    /// The metadata arena could not supply per-CPU state or a hash table,
    /// or the cache of caches could not supply the cache itself.
    NoMemory,
    /// The base arena's quantum is not a power of two: the bootstrap
    /// caches find a slab by rounding an address down to its size, which
    /// must then be one.
    BaseQuantum,
    /// The base arena has quantum caches: the magazine cache grows from it
    /// while a CPU slot is held, and its quantum caches would pin that slot
    /// again (a deadlock on a platform whose slots are locks).
    BaseQcaches,
    /// `POISON` on a cache with a constructor: free objects keep their
    /// constructed state, which the poison would destroy.
    PoisonCtor,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroSize => "object size is zero",
            Self::BadAlign => "alignment is not a power of two",
            Self::AlignTooLarge => "alignment is larger than the page size",
            Self::TooLarge => "object size is too large",
            Self::NotMemory => "source is not memory; the cache needs NOTOUCH",
            Self::BadQcacheMax => "QCACHE needs a qcache_max at least the object size",
            Self::NoMemory => "no memory for the cache's metadata",
            Self::BaseQuantum => "the base arena's quantum is not a power of two",
            Self::BaseQcaches => "the base arena has quantum caches",
            Self::PoisonCtor => "POISON on a cache with a constructor",
        })
    }
}

impl core::error::Error for CreateError {}

/// Why an allocation failed. Nothing is leaked either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The source arena (or the metadata caches) had nothing to grow by.
    Exhausted,
    /// The constructor failed; the object went back to its slab.
    Ctor,
    /// `ZERO` was asked of a cache whose objects are not memory.
    NotMemory,
    /// The cache is one of an arena's quantum caches, which grow only
    /// through their arena: allocate with `Arena::alloc`.
    QuantumCache,
    /// Called from a signal or interrupt handler that interrupted an
    /// operation of its own context, which may hold the slot or a lock.
    Reentrant,
    /// The cache holds as many objects as its
    /// [`max_objects`](crate::CacheBuilder::max_objects) allows (counting
    /// those in magazines).
    LimitReached,
    /// A [`reserve`](crate::KmemCache::reserve) of more than
    /// [`RESERVE_MAX`](crate::RESERVE_MAX) objects.
    TooMany,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exhausted => "out of memory",
            Self::Ctor => "constructor failed",
            Self::NotMemory => "ZERO on a cache whose objects are not memory",
            Self::QuantumCache => "a quantum cache grows only through its arena",
            Self::Reentrant => "refused inside a handler that interrupted an allocator call",
            Self::LimitReached => "the cache holds as many objects as its limit allows",
            Self::TooMany => "more objects than one reserve holds",
        })
    }
}

impl core::error::Error for AllocError {}

/// What was wrong with a freed address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFree {
    /// The object is already free (or already cached in a magazine).
    DoubleFree,
    /// The address belongs to another cache, named here.
    WrongCache(Name),
    /// No cache owns the address.
    Foreign,
    /// The address is inside one of the cache's slabs but not at the start
    /// of an object.
    NotObjectStart,
    /// Nothing is wrong with the address, but the free came from a signal
    /// or interrupt handler that interrupted an operation of its own
    /// context, and the object cannot wait on the deferred stack (it is
    /// not memory, has constructed state, or the cache is `DEBUG`): it is
    /// still the caller's.
    Reentrant,
    /// Debug mode (`REDZONE`): the guard word after the object was
    /// overwritten while it was allocated; the free is refused and the
    /// object stays the caller's.
    Overrun,
    /// Debug mode: freed with another size than it was allocated with (a
    /// facade's sized free, such as kmalloc's); the free is refused.
    WrongSize {
        /// The size the allocation asked for.
        allocated: usize,
    },
}

impl fmt::Display for BadFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DoubleFree => f.write_str("double free"),
            Self::WrongCache(owner) => write!(f, "object of cache {}", owner.as_str()),
            Self::Foreign => f.write_str("not allocated from any cache"),
            Self::NotObjectStart => f.write_str("not the start of an object"),
            Self::Reentrant => f.write_str("inside a handler that interrupted an allocator call"),
            Self::Overrun => f.write_str("the redzone after the object was overwritten"),
            Self::WrongSize { allocated } => {
                write!(f, "freed with another size (allocated with {allocated})")
            }
        }
    }
}

/// A free the cache refused; the cache is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeError {
    /// The cache `free` was called on.
    pub cache: Name,
    /// The address passed.
    pub addr: usize,
    /// What was wrong.
    pub kind: BadFree,
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kmem cache {}: ", self.cache.as_str())?;
        match self.kind {
            BadFree::DoubleFree => write!(f, "double free of {:#x}", self.addr),
            BadFree::WrongCache(owner) => {
                write!(f, "{:#x} belongs to cache {}", self.addr, owner.as_str())
            }
            BadFree::Foreign => write!(f, "{:#x} was not allocated from any cache", self.addr),
            BadFree::NotObjectStart => {
                write!(f, "{:#x} is not the start of an object", self.addr)
            }
            BadFree::Reentrant => write!(
                f,
                "free of {:#x} refused inside a handler that interrupted an allocator call",
                self.addr
            ),
            BadFree::Overrun => write!(
                f,
                "{:#x} was overrun: the redzone after it was overwritten",
                self.addr
            ),
            BadFree::WrongSize { allocated } => write!(
                f,
                "{:#x} freed with another size than it was allocated with ({allocated})",
                self.addr
            ),
        }
    }
}

impl core::error::Error for FreeError {}

/// Why a cache failed its consistency check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// A slab is on the wrong list for its busy count.
    WrongList {
        /// The slab's base.
        slab: usize,
    },
    /// A slab's free objects and busy count disagree.
    FreeCount {
        /// The slab's base.
        slab: usize,
    },
    /// A free object is outside its slab or not at an object start (or a
    /// headed slab's colour is not one its cache gives).
    BadFreeObject {
        /// The slab's base.
        slab: usize,
    },
    /// The allocated bitmap or bufctl states disagree with the free list
    /// (or, with `site-stats`, a free object still counts for a site).
    BadState {
        /// The slab's base.
        slab: usize,
    },
    /// The cache's totals disagree with its slabs.
    Totals,
    /// The hash holds a different number of entries than the slabs need.
    HashCount,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongList { slab } => write!(f, "slab {slab:#x} is on the wrong list"),
            Self::FreeCount { slab } => write!(f, "slab {slab:#x}: free count mismatch"),
            Self::BadFreeObject { slab } => write!(f, "slab {slab:#x}: bad free object"),
            Self::BadState { slab } => write!(f, "slab {slab:#x}: object state mismatch"),
            Self::Totals => f.write_str("cache totals disagree with its slabs"),
            Self::HashCount => f.write_str("hash entry count disagrees with the slabs"),
        }
    }
}

impl core::error::Error for CheckError {}
