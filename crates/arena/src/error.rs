//! Typed errors. Every error leaves the arena exactly as it was.

use core::fmt;

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// A request for zero units.
    ZeroSize,
    /// The size, rounded to the quantum and padded for alignment and phase,
    /// does not fit in a `usize`.
    Overflow,
    /// `align` is zero or not a power of two.
    BadAlign,
    /// `nocross` is not a power of two.
    BadNocross,
    /// `phase` or `nocross` is not a multiple of the quantum.
    Misaligned,
    /// `phase` is not below the effective alignment.
    BadPhase,
    /// No range could ever satisfy the constraints, whatever the arena
    /// holds: `nocross` smaller than the size, a `[min, max)` window
    /// smaller than the size or holding no start with the alignment and
    /// phase, or a phase that puts every aligned start across a `nocross`
    /// boundary. Decided before any search.
    Overconstrained,
    /// No free range satisfies the request and the source (if any) could not
    /// supply one.
    Exhausted,
    /// No boundary tag could be obtained for the bookkeeping.
    NoTags,
    /// The source returned a span not aligned to this arena's quantum.
    BadImport,
    /// [`Arena::alloc_wait`](crate::Arena::alloc_wait): the timeout passed
    /// with the arena still exhausted.
    TimedOut,
    /// The import this request needs would take the arena past the limit
    /// set with [`Arena::set_limit`](crate::Arena::set_limit).
    LimitReached,
    /// [`Arena::xalloc_at`](crate::Arena::xalloc_at): part of the range
    /// is allocated already (as opposed to [`Exhausted`](Self::Exhausted):
    /// the range is not the arena's, and its source could not supply it).
    Busy,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroSize => "allocation of zero units",
            Self::Overflow => "allocation size overflows with its alignment and phase",
            Self::BadAlign => "alignment is not a power of two",
            Self::BadNocross => "nocross boundary is not a power of two",
            Self::Misaligned => "phase or nocross is not a multiple of the quantum",
            Self::BadPhase => "phase is not below the alignment",
            Self::Overconstrained => "constraints can never be satisfied",
            Self::Exhausted => "arena exhausted",
            Self::NoTags => "no boundary tags available",
            Self::BadImport => "source returned a span misaligned for this arena",
            Self::Busy => "part of the requested range is allocated",
            Self::LimitReached => "the import would exceed the arena's size limit",
            Self::TimedOut => "timed out waiting for the arena to free enough",
        })
    }
}

impl core::error::Error for AllocError {}

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// A free of zero units.
    ZeroSize,
    /// No allocated segment starts at this address (double free, or a
    /// foreign or interior address).
    NotAllocated {
        /// The address passed in.
        addr: usize,
    },
    /// The quantum caches refused the free: a double free, an address they
    /// did not hand out, or a size of another quantum cache (each free is
    /// checked under the cache's lock before its magazine).
    Cached {
        /// The address passed in.
        addr: usize,
    },
    /// A segment starts here, but with another size.
    WrongSize {
        /// The address passed in.
        addr: usize,
        /// The size passed in, rounded to the quantum.
        size: usize,
        /// The size of the allocated segment.
        expected: usize,
    },
    /// The arena hands out memory, which only its owner may give back: use
    /// the `unsafe` [`Arena::free_memory`](crate::Arena::free_memory) or
    /// [`Arena::xfree_memory`](crate::Arena::xfree_memory).
    MemoryArena {
        /// The address passed in.
        addr: usize,
    },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSize => f.write_str("free of zero units"),
            Self::NotAllocated { addr } => write!(f, "free of unallocated address {addr:#x}"),
            Self::Cached { addr } => write!(f, "quantum cache refused the free of {addr:#x}"),
            Self::WrongSize {
                addr,
                size,
                expected,
            } => write!(
                f,
                "free of {addr:#x} with size {size:#x}, but it was allocated with {expected:#x}"
            ),
            Self::MemoryArena { addr } => write!(
                f,
                "free of {addr:#x} refused: a memory arena's frees are unsafe (free_memory)"
            ),
        }
    }
}

impl core::error::Error for FreeError {}

/// Why adding a span was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// A span of zero units.
    ZeroSize,
    /// Base or size is not a multiple of the quantum.
    Misaligned,
    /// `base + size` overflows.
    Overflow,
    /// The span overlaps one the arena already has.
    Overlap,
    /// The arena imports from a source; spans come only from there.
    Sourced,
    /// The arena writes its metadata into its resources: use the unsafe
    /// `add_memory`, which states that promise.
    MemoryArena,
    /// No boundary tag could be obtained for the bookkeeping.
    NoTags,
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroSize => "span of zero units",
            Self::Misaligned => "span base or size is not a multiple of the quantum",
            Self::Overflow => "span end overflows",
            Self::Overlap => "span overlaps an existing span",
            Self::Sourced => "arenas with a source cannot add spans by hand",
            Self::MemoryArena => "a base arena takes memory only through add_memory",
            Self::NoTags => "no boundary tags available",
        })
    }
}

impl core::error::Error for AddError {}

/// Why an arena could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The quantum is zero (or, for a base arena, not a multiple of 8).
    BadQuantum,
    /// An initial span was given together with a source.
    SpanWithSource,
    /// The arena named by `tags_from` does not manage real memory.
    TagsNotMemory,
    /// The `tags_from` arena's quantum does not divide the tag page size.
    TagsQuantum,
    /// The initial span was refused.
    Span(AddError),
    /// The quantum caches were built for another quantum.
    QcacheQuantum,
    /// The quantum caches already serve (or served) another arena.
    QcachesInUse,
    /// The source's import quantum is zero.
    SourceQuantum,
    /// The quantum caches were built for memory and the arena manages
    /// integers, or the other way round.
    QcacheMemory,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadQuantum => f.write_str("bad quantum"),
            Self::SpanWithSource => f.write_str("an arena cannot have both a source and a span"),
            Self::TagsNotMemory => f.write_str("tag memory must come from a memory arena"),
            Self::TagsQuantum => f.write_str("tag arena quantum must divide the tag page size"),
            Self::Span(e) => write!(f, "initial span refused: {e}"),
            Self::QcacheQuantum => f.write_str("quantum caches built for another quantum"),
            Self::QcachesInUse => f.write_str("quantum caches already attached to an arena"),
            Self::SourceQuantum => f.write_str("the source's import quantum is zero"),
            Self::QcacheMemory => f.write_str(
                "quantum caches built for memory on an arena of integers, or the reverse",
            ),
        }
    }
}

impl core::error::Error for CreateError {}

/// Why `destroy` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyError {
    /// Segments are still allocated.
    LiveAllocations {
        /// Allocated segments (excluding the arena's own metadata).
        count: usize,
        /// Units they hold.
        bytes: usize,
    },
    /// Other arenas or object caches still import from this arena.
    LiveImporters {
        /// How many.
        count: usize,
    },
    /// The quantum caches still have objects allocated.
    LiveCachedObjects {
        /// How many.
        count: usize,
    },
}

impl fmt::Display for DestroyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LiveAllocations { count, bytes } => {
                write!(f, "{count} segments ({bytes:#x} units) still allocated")
            }
            Self::LiveImporters { count } => {
                write!(f, "{count} arenas or caches still import from it")
            }
            Self::LiveCachedObjects { count } => {
                write!(f, "{count} objects still allocated from its quantum caches")
            }
        }
    }
}

impl core::error::Error for DestroyError {}
