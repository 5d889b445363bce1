//! A vmem arena, after Bonwick & Adams' "Magazines and Vmem" and Akaros'
//! `arena.c`: a general allocator of integer ranges (addresses, IDs,
//! offsets) that works without a heap.
//!
//! An [`Arena`] holds *spans* (ranges added with [`Arena::add`] or imported
//! from a [`Source`]) carved into free and allocated *segments*, each tracked
//! by a boundary tag on an address-ordered list (`kmem-btag`); spans and free
//! segments are also in address-ordered trees for searching, and the
//! segment tree keeps, for every subtree, the largest size class of a free
//! segment in it, so a search reaches its next candidate in O(log n),
//! skipping allocated segments and free ones too small to fit. Free
//! segments sit on 64 power-of-two lists with a bitmap of non-empty lists,
//! so [`Policy::InstantFit`] is O(1); allocated segments sit in a hash
//! keyed by start, so [`Arena::free`] is O(1) and checks the size.
//! [`Arena::xalloc`] adds alignment, phase, a no-cross boundary and an
//! address window; constraints no address could meet are refused before
//! any search ([`AllocError::Overconstrained`]).
//!
//! **Bounded work.** A search looks at no more than 64 candidate free
//! segments per hold of the arena lock; one that must look at more lets go
//! of the lock, takes it again and goes on where it stopped (counted in
//! [`ArenaStats::search_pauses`]), so no caller keeps the lock for more
//! than a bounded amount of work however the arena is fragmented. A free
//! segment that must fit (every one of at least `size + lcm(align,
//! nocross) - quantum` units) is found in O(1) from the lists; the ones
//! that may fit are walked list by list (windows, the top and next fit:
//! in address order through the segment tree, O(log n) per candidate).
//!
//! **Exhaustive.** An arena without a source never fails an `xalloc` (or
//! an `alloc`) while one of its free ranges fits, except that a range
//! freed by another thread behind a search that had let go of the lock may
//! be missed by that search, and that a request whose size, alignment and
//! phase add up past `usize::MAX` is refused as [`AllocError::Overflow`].
//! A sourced arena passes the constraints to
//! its source ([`Source::import_fit`], which an arena serves with an
//! `xalloc` of its own): when at every level the request's alignment and
//! phase are multiples of the source's quantum (and, for a size the
//! source's quantum rounds up, its window ends on that quantum and it has
//! no `nocross`), a chain of arenas fails it only when no arena of the
//! chain holds a fitting free range. Otherwise, and for a source that is not an arena,
//! the importer goes on to ask for a span large enough to hold a placement
//! wherever it lies (inside the window, then anywhere), which can miss a
//! fit that only a window allows.
//!
//! - Quantum caches ([`QuantumCaches`], implemented by `kmem-slab`): an
//!   arena built with [`ArenaBuilder::qcaches`] serves `alloc`/`free` of
//!   sizes up to `qcache_max` from object caches with per-CPU magazines.
//! - Upkeep between operations, for a periodic timer: [`Arena::tick`]
//!   (the quantum caches' working-set trim, the allocated-segment hash
//!   resized either way, in batches with the lock let go), [`Arena::reap`]
//!   (everything idle at once), and [`Arena::purge`] (free memory handed
//!   to the platform, e.g. `madvise`, in pieces under the lock, while the
//!   arena keeps it).
//! - Results are `Result<usize, AllocError>`: resource 0 is a valid result.
//! - Every bad input returns a typed error and changes nothing.
//! - No operation calls into the same arena under its lock, and only a
//!   search drops the lock mid-operation, between batches, with nothing
//!   half done (see [`arena`] for the protocol).
//! - `#![no_std]` without `alloc`: tags and hash tables come from a base
//!   arena ([`Arena::new_base`], which carves its own from its memory), from
//!   [`ArenaBuilder::tags_from`], or from donated memory.
//! - Failure injection (feature `fail-inject`, off by default and compiled
//!   out without it): span imports and boundary-tag refills fail when the
//!   plan set through `kmem_arena::fail` (the `kmem-fail` crate: every k-th
//!   attempt, or a seeded 1 in n) says so, exactly as real exhaustion fails
//!   them (`Exhausted`, counted in `failures`; `NoTags`), so debug builds
//!   and tests run the error paths.
//!
//! ```
//! use kmem_arena::{Arena, Constraints, Policy};
//!
//! #[repr(align(4096))]
//! struct Mem([u8; 1 << 20]);
//! let mut mem = Box::new(Mem([0; 1 << 20]));
//! let start = mem.0.as_mut_ptr() as usize;
//!
//! // SAFETY: the buffer outlives the arenas and is used only through them.
//! let base = unsafe { Arena::new_base("base", start, 1 << 20, 4096) }.unwrap();
//! let page = base.alloc(4096, Policy::InstantFit).unwrap();
//! let aligned = base
//!     .xalloc(8192, &Constraints::new().align(64 * 1024))
//!     .unwrap();
//! assert_eq!(aligned % (64 * 1024), 0);
//!
//! // A page arena importing spans from the base, 4 pages at a time.
//! let mut pages = Arena::builder("kpages")
//!     .quantum(4096)
//!     .source(&base)
//!     .tags_from(&base)
//!     .import_scale(2)
//!     .build()
//!     .unwrap();
//! let p = pages.alloc(4096, Policy::BestFit).unwrap();
//! // A memory arena refuses the safe `free`: giving memory back is the
//! // `unsafe` `free_memory`, whose caller vouches it is no longer used.
//! assert!(pages.free(p, 4096).is_err());
//! // SAFETY: allocated above with this size, not used after.
//! unsafe { pages.free_memory(p, 4096) }.unwrap();
//! assert_eq!(pages.amt_total(), 0); // the span went back to the base
//! pages.check().unwrap();
//! pages.destroy().unwrap();
//! drop(pages);
//!
//! // SAFETY: allocated above with these sizes, not used after.
//! unsafe { base.free_memory(page, 4096) }.unwrap();
//! // SAFETY: as above (`aligned` came from `xalloc`).
//! unsafe { base.xfree_memory(aligned, 8192) }.unwrap();
//! base.check().unwrap();
//! # drop(base);
//! ```
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod arena;
// Plumbing between the layers for `--cfg kmem_asan` builds (kmem-slab
// poisons its free objects through it); not part of the API.
#[doc(hidden)]
pub mod asan;
mod builder;
mod check;
mod error;
mod hash;
mod policy;
mod qcache;
mod reclaim;
mod segments;
mod source;
mod stats;
mod upkeep;
mod wait;

/// The arena's lock: `spin`'s, whose waiters, with `std`, yield the CPU
/// (the holder may be a preempted thread: spinning would only wait out
/// the scheduler's time slice).
#[cfg(feature = "std")]
pub(crate) type Mutex<T> = spin::mutex::Mutex<T, spin::relax::Yield>;
#[cfg(not(feature = "std"))]
pub(crate) type Mutex<T> = spin::mutex::Mutex<T>;

pub use arena::Arena;
pub use builder::{ArenaBuilder, Name};
pub use check::CheckError;
pub use error::{AddError, AllocError, CreateError, DestroyError, FreeError};
pub use policy::{Constraints, Policy, SpanFit};
pub use qcache::QuantumCaches;
pub use reclaim::{Reclaim, ReclaimHandle, TooManyReclaimers, MAX_RECLAIMERS};
pub use source::{FnSource, Source};
pub use stats::{ArenaStats, ReportDetail, Segment, SegmentKind, SizeKind, WalkKinds};
pub use upkeep::PURGE_CHUNK;
#[cfg(feature = "std")]
pub use wait::CondvarWaiter;
pub use wait::Waiter;

/// Failure injection (`kmem-fail`), with the `fail-inject` feature: set a
/// [`Plan`](fail::Plan) for a [`Layer`](fail::Layer) here.
#[cfg(feature = "fail-inject")]
pub use kmem_fail as fail;

/// Arenas are shared between threads (each has its own spin lock).
const _: () = {
    const fn assert_sync<T: Sync + Send>() {}
    assert_sync::<Arena<'static>>();
};
