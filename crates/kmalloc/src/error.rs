//! Typed errors of the kmalloc facade.

use core::fmt;

use kmem_slab::BadFree;

/// Why an allocation failed. Nothing changes when it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// A request for zero bytes.
    ZeroSize,
    /// The size, rounded to the alignment or the page size, overflows (or
    /// exceeds `isize::MAX`).
    TooLarge,
    /// The page arena (or its source) has no memory left.
    Exhausted,
    /// Called from a signal or interrupt handler that interrupted an
    /// allocator call of its own context (thread, or CPU), which may hold
    /// the slot's magazines or a lock: refused rather than corrupt them or
    /// wait for ever.
    Reentrant,
    /// [`realloc`](crate::Kmalloc::realloc) of a block the allocator
    /// refused to free (a double free, a wrong layout, a foreign pointer):
    /// the block is untouched and nothing was allocated.
    BadPointer(FreeError),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroSize => "allocation of zero bytes",
            Self::TooLarge => "allocation size overflows",
            Self::Exhausted => "out of memory",
            Self::Reentrant => "refused inside a handler that interrupted an allocator call",
            Self::BadPointer(e) => return write!(f, "realloc: {e}"),
        })
    }
}

impl core::error::Error for AllocError {}

/// A free that was refused; the allocator is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// A layout of zero bytes (nothing of that size is ever allocated).
    ZeroSize {
        /// The pointer passed.
        addr: usize,
    },
    /// A layout no allocation can have.
    TooLarge {
        /// The pointer passed.
        addr: usize,
    },
    /// The size class's cache refused it (found at its slab layer).
    Refused {
        /// The pointer passed.
        addr: usize,
        /// What the slab layer found.
        kind: BadFree,
    },
    /// The page arena refused a large free (not allocated, or another size).
    Pages {
        /// The pointer passed.
        addr: usize,
        /// The arena's error.
        err: kmem_arena::FreeError,
    },
    /// An unsized free ([`Kmalloc::free_unsized`](crate::Kmalloc::free_unsized))
    /// of an address that is neither in a slab of a size class nor the
    /// start of a large block: a foreign pointer (another allocator's, or
    /// one from before this allocator was in use), or the inside of a
    /// large block.
    Unknown {
        /// The pointer passed.
        addr: usize,
    },
    /// An unsized free on an allocator built without a page map: it cannot
    /// tell an object's size.
    NoPageMap {
        /// The pointer passed.
        addr: usize,
    },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSize { addr } => write!(f, "free of {addr:#x} with a zero-size layout"),
            Self::TooLarge { addr } => write!(f, "free of {addr:#x} with an impossible layout"),
            Self::Refused { addr, kind } => write!(f, "free of {addr:#x} refused: {kind}"),
            Self::Pages { addr, err } => write!(f, "free of {addr:#x} refused: {err}"),
            Self::Unknown { addr } => {
                write!(
                    f,
                    "free of {addr:#x} refused: no block of this allocator starts there"
                )
            }
            Self::NoPageMap { addr } => {
                write!(f, "free of {addr:#x} refused: no page map, so no size")
            }
        }
    }
}

impl core::error::Error for FreeError {}

/// Why the stack could not be booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The memory cannot hold the stack's structures and 16 pages.
    TooSmall,
    /// An arena refused to be built.
    Arena(kmem_arena::CreateError),
    /// A cache refused to be built (out of memory for metadata).
    Cache(kmem_slab::CreateError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall => f.write_str("memory too small to boot the stack"),
            Self::Arena(e) => write!(f, "arena: {e}"),
            Self::Cache(e) => write!(f, "cache: {e}"),
        }
    }
}

impl core::error::Error for BootError {}
