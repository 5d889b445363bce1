//! Memory the slab layer takes from arenas and gives back: slab buffers
//! (from the arena slabs come from) and metadata (hash tables, per-CPU
//! arrays, from the cache's metadata arena). Each is a token freed by
//! consuming it; dropping one leaks the memory.

use kmem_arena::{Arena, Constraints, FreeError, Policy};

/// How a cache's slab buffers are allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BufferShape {
    size: usize,
    /// A buffer's base must be a multiple of this (the slab size for the
    /// small layout, found by rounding an object's address down).
    align: usize,
    /// The source's quantum does not give `align` by itself: `xalloc`.
    xalloc: bool,
}

impl BufferShape {
    pub(crate) const fn new(size: usize, align: usize, xalloc: bool) -> Self {
        Self {
            size,
            align,
            xalloc,
        }
    }

    pub(crate) const fn size(&self) -> usize {
        self.size
    }

    pub(crate) const fn align(&self) -> usize {
        self.align
    }
}

/// A slab's buffer, owned until it is built into a slab or given back.
pub(crate) struct SlabBuffer {
    base: usize,
    shape: BufferShape,
    /// The arena's values are memory (`Arena::is_memory`).
    memory: bool,
}

impl SlabBuffer {
    /// A buffer of `shape` from `src`, or `None` when `src` has none.
    pub(crate) fn alloc(src: &Arena<'_>, shape: BufferShape) -> Option<Self> {
        let base = if shape.xalloc {
            src.xalloc(shape.size, &Constraints::new().align(shape.align))
        } else {
            src.alloc(shape.size, Policy::InstantFit)
        }
        .ok()?;
        Some(Self {
            base,
            shape,
            memory: src.is_memory(),
        })
    }

    /// The buffer of a slab taken apart (see `EmptySlab`).
    pub(super) const fn of_slab(base: usize, shape: BufferShape, memory: bool) -> Self {
        Self {
            base,
            shape,
            memory,
        }
    }

    pub(crate) const fn base(&self) -> usize {
        self.base
    }

    pub(super) const fn shape(&self) -> BufferShape {
        self.shape
    }

    pub(super) const fn is_memory(&self) -> bool {
        self.memory
    }

    /// Gives the buffer back to `src`, which must be the arena it came from
    /// (a trusted input: see the [module docs](super)). A refusal leaves it
    /// leaked.
    pub(crate) fn free(self, src: &Arena<'_>) -> Result<(), FreeError> {
        // The buffer was allocated from `src` (the trusted input above)
        // with this size, by `xalloc` exactly when `shape.xalloc` (`alloc`),
        // and is owned by this token, now consumed: a slab built over it
        // was emptied and taken out of its set first (`EmptySlab`), so
        // nothing uses it any more.
        // SAFETY: as just said.
        unsafe {
            if self.shape.xalloc {
                src.xfree_memory(self.base, self.shape.size)
            } else {
                src.free_memory(self.base, self.shape.size)
            }
        }
    }
}

/// Metadata memory from a memory arena: at least the bytes asked for,
/// aligned to 64, owned until given back.
pub(crate) struct MetaMem<'a> {
    arena: &'a Arena<'a>,
    addr: usize,
    len: usize,
}

impl<'a> MetaMem<'a> {
    /// `bytes` rounded up to the arena's quantum, or `None` when `arena`
    /// has no room or is not a memory arena.
    pub(crate) fn alloc(arena: &'a Arena<'a>, bytes: usize) -> Option<Self> {
        if !arena.is_memory() {
            return None;
        }
        let len = bytes.next_multiple_of(arena.quantum());
        let addr = arena.xalloc(len, &Constraints::new().align(64)).ok()?;
        Some(Self { arena, addr, len })
    }

    pub(crate) const fn addr(&self) -> usize {
        self.addr
    }

    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    /// Gives the memory back to its arena. A refusal leaves it leaked.
    pub(crate) fn free(self) -> Result<(), FreeError> {
        // SAFETY: `xalloc`ed from `arena` with this length (`alloc`) and
        // owned by this token, now consumed: its users (a hash table, a
        // per-CPU array) hand it back only when done with it.
        unsafe { self.arena.xfree_memory(self.addr, self.len) }
    }
}
