//! The slab layer's raw memory: with [`handle`](crate::handle), the only
//! module of this crate with `unsafe` code.
//!
//! Everything here is memory a cache owns and reaches through addresses:
//!
//! - [`SlabSet`] (`set.rs`): one cache's slabs. It owns their headers and
//!   bufctls, the links that free objects of small slabs carry, the
//!   allocated bitmaps, the full/partial/empty lists and the address hash
//!   (`AddrHash`, `hash.rs`: its tables in metadata memory, 64 chains to
//!   start, rehashed a few chains at a time). Headers and
//!   bufctls are only ever reached through a borrow of their set
//!   (`&SlabHeader`, `&Bufctl`), and a slab leaves its set only as an
//!   [`EmptySlab`], taken with `&mut`: no reference into a slab outlives
//!   its memory. How one slab is laid out is `slab.rs`; building one over
//!   a fresh buffer, `build.rs`.
//! - Memory from arenas (`memory.rs`): [`SlabBuffer`] (a slab's buffer) and
//!   [`MetaMem`] (hash tables, per-CPU arrays), each given back by
//!   consuming it.
//! - Objects: [`Taken`] (out of a slab or a magazine, not handed out yet:
//!   its holder owns it) and [`Freed`] (given back: nothing uses it any
//!   more), the tokens that let the slab layer write into an object.
//!
//! The unsafe entry points are two token constructors: [`Freed::new`] (the
//! promise a caller of `KmemCache::free` makes) and [`Taken::from_round`]
//! (a round the magazine layer just handed out). Everything else is safe:
//! the size and alignment of memory a struct is placed into are checked,
//! and so is a slab's layout against its buffer when it is built.
//!
//! Two inputs are trusted rather than checked:
//! - whether a cache's objects are memory (`memory` in [`SlabSet::new`]):
//!   its source's `Arena::is_memory()`, or for a quantum cache the flag its
//!   creator gave `Caches::qcaches`. `ZERO` writes rely on it.
//! - that a [`SlabBuffer`] goes back to the arena it came from: every path
//!   passes the cache's own source, or for a quantum cache (which stores
//!   none) the arena its `QCaches` checked it is attached to.

mod build;
mod debug;
mod guard;
mod hash;
mod memory;
mod set;
mod slab;

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

pub(crate) use build::{build_bufctl, build_small, NewSlab, Stock};
pub use debug::POISON;
#[cfg(feature = "site-stats")]
pub(crate) use debug::SITE_SLOTS;
pub(crate) use debug::{
    site_at, site_index, DebugLayout, LogEntry, LogRing, RawSite, RED, TRAILER,
};
pub(crate) use guard::FreeCheck;
pub(crate) use hash::{table_bytes, AddrHash};
pub(crate) use memory::{BufferShape, MetaMem, SlabBuffer};
pub(crate) use set::{EmptySlab, SlabSet};
pub(crate) use slab::{site_bytes, BufState, Bufctl, SlabHeader, SlabList, SITE_SLOT};

/// An object given back to the cache it came from: nothing uses it any
/// more. The slab layer writes a free object's link into it, or a magazine
/// keeps it as a round until it is handed out again.
///
/// Not `Clone`: one token, one give-back. Tokens are not tied to a cache by
/// their type; every path gives a token to the cache it was made for.
pub(crate) struct Freed(usize);

impl Freed {
    /// The token for `addr`.
    ///
    /// # Safety
    /// `addr` came from the slab layer of the cache it will be given back to
    /// (that cache's `alloc`, or a slab of it) and was not given back since;
    /// if it is memory, nothing uses it after this call.
    #[inline(always)]
    pub(crate) const unsafe fn new(addr: usize) -> Self {
        Self(addr)
    }

    /// The object's address.
    #[inline(always)]
    pub(crate) const fn addr(&self) -> usize {
        self.0
    }
}

/// An object taken out of a cache (its slab layer, or its magazines) and
/// not handed out yet: its holder owns it. `bytes` is the object's size
/// when the cache's objects are memory, 0 when they are not.
#[must_use = "an object taken and dropped is leaked"]
pub(crate) struct Taken {
    addr: usize,
    bytes: usize,
}

impl Taken {
    /// The token for a round the magazine layer of a cache just handed out.
    ///
    /// # Safety
    /// `addr` is that round (an object of the cache that nothing else uses
    /// now), and `bytes` is the cache's [`SlabSet::object_bytes`].
    #[inline(always)]
    pub(crate) const unsafe fn from_round(addr: usize, bytes: usize) -> Self {
        Self { addr, bytes }
    }

    /// The object's address.
    #[inline(always)]
    pub(crate) const fn addr(&self) -> usize {
        self.addr
    }

    /// The object's size if it is memory, else 0.
    #[inline(always)]
    pub(crate) const fn bytes(&self) -> usize {
        self.bytes
    }

    /// Hands the object to a user, who owns it from now on.
    #[inline(always)]
    pub(crate) const fn hand_out(self) -> usize {
        self.addr
    }

    /// Gives the object back unused.
    #[inline(always)]
    pub(crate) const fn into_freed(self) -> Freed {
        Freed(self.addr)
    }

    /// Fills the object with zeroes (nothing for a cache whose objects are
    /// not memory).
    pub(crate) fn zero(&self) {
        if self.bytes != 0 {
            // SAFETY: `bytes` is the size of the object at `addr`, memory
            // (the invariant of `Taken`), and its holder owns it.
            unsafe { ptr::write_bytes(self.addr as *mut u8, 0, self.bytes) }
        }
    }

    /// Moves `value` into the object and returns where it now lives; the
    /// object then belongs to whoever keeps that pointer.
    ///
    /// # Panics
    /// If the object is not memory enough, and aligned, for a `T`.
    pub(crate) fn place<T>(self, value: T) -> NonNull<T> {
        assert!(
            self.bytes >= size_of::<T>() && self.addr.is_multiple_of(align_of::<T>()),
            "kmem-slab: object too small or misaligned for its struct"
        );
        let at = NonNull::new(self.addr as *mut T).expect("kmem-slab: object at address 0");
        // SAFETY: the holder owns `bytes` bytes of memory at `addr` (the
        // invariant of `Taken`), enough and aligned for a `T` (checked).
        unsafe { at.as_ptr().write(value) };
        at
    }
}
