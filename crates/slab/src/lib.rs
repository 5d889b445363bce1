//! The slab allocator of Bonwick's 1994 paper with the magazines of
//! Bonwick & Adams (2001), as Akaros' `slab.c` builds it: object caches over
//! any `kmem-arena` arena.
//!
//! - [`Caches`] bootstraps the internal caches over a base arena and
//!   creates [`Cache`]s from a [`CacheBuilder`]: object size and alignment
//!   (up to [`PAGE_SIZE`]), [`CacheFlags`] (`NOTOUCH`, `QCACHE`,
//!   `NOMAGAZINE`, and debug mode: `DEBUG`, `REDZONE`, `POISON`,
//!   `AUDIT`), a source arena, and [`ObjectOps`]
//!   (constructor that may fail and receives the [`AllocFlags`], destructor,
//!   private state).
//! - A cache that may write to its objects keeps them in headed slabs: a
//!   power-of-two buffer aligned to its size, objects from its colour, the
//!   allocated bitmap and the header at its end, the header's last word
//!   an owner word made from the cache's key and the slab's colour. Objects up to [`SMALL_MAX`] take one page;
//!   larger ones the smallest power of two that wastes at most 1/16 (up
//!   to [`HEADED_MAX`]). The slab layer never writes into free objects.
//!   Slabs are coloured (Bonwick's slab colouring): each new slab of a
//!   cache starts its objects 64 bytes (or the alignment, if larger)
//!   further into the slack its layout leaves than the one before, back
//!   to 0 after the largest that fits, so the same object of different
//!   slabs uses different cache lines.
//!   `NOTOUCH`, debug and `QCACHE` caches (and objects past `HEADED_MAX`)
//!   use bufctls found through an address hash (`kmem-hash`) whose
//!   tables are allocated and freed outside the cache lock and filled a
//!   few chains per lock hold; their slabs hold 8 objects rounded
//!   up to a page, or `next_pow2(3 * qcache_max)` bytes for quantum
//!   caches.
//! - In front of the slabs sits the magazine layer (`kmem-magazine`):
//!   objects in magazines stay constructed; the destructor runs when an
//!   object goes back to a slab. When a plain cache's magazines and depot
//!   run dry, the caller's magazine is loaded from the slabs in one pass
//!   (a batch refill), and when no empty magazine can be had a full one
//!   goes back in one pass (a batch flush, for caches without a
//!   destructor); partial slabs at least half full are allocated from
//!   first, so the emptiest drain. A memory cache without a destructor
//!   keeps at most 4 MiB of objects in its depot: past it, frees flush
//!   full magazines to the slabs, and once the cache holds more than twice
//!   the 1 MiB of empty slabs it keeps, those past the keep go back to the
//!   source at once, so a burst of frees serves other caches before the
//!   upkeep pass runs.
//! - Memory pressure: [`Caches::tick`] is the upkeep pass for a periodic
//!   timer (each depot's working-set trim gives back what sat idle through
//!   a whole interval, and so do the magazines of threads idle through
//!   one; empty slabs go back; hashes are resized);
//!   [`KmemCache::reap`] returns every idle object and empty slab at once;
//!   [`KmemCache::purge_magazines`] every thread's magazines too (as the
//!   source's exhaustion path does);
//!   a cache's user may register a shrinker ([`CacheBuilder::reclaim`],
//!   [`CacheReclaim`]), which the pass, `reap` and the source's exhaustion
//!   path call; [`CacheBuilder::max_objects`] bounds a cache;
//!   [`KmemCache::reserve`] takes objects ahead so that later allocations
//!   cannot fail; [`KmemCache::alloc_bulk`] and
//!   [`KmemCache::free_bulk`] fill or drain an array in one call.
//! - [`Cache::destroy`] drains every magazine and refuses, with the live
//!   count, while objects are allocated; [`CacheStats`] carries the
//!   `::kmastat` columns.
//! - Bad frees are refused with a [`FreeError`] naming the cache and
//!   address, before the object reaches a magazine: a headed cache checks
//!   without a lock that the address is an object start of one of its live
//!   slabs (the owner word) and, without a constructor, that the object does
//!   not carry its free mark (a double free); a bufctl cache with
//!   magazines checks every free under its lock. A constructed cache's
//!   double free is found only when its magazine drains (counted in
//!   [`CacheStats::bad_frees`], kept in [`KmemCache::last_bad_free`]),
//!   unless the cache is `DEBUG`. The README's "Bad frees" table lists what
//!   each mode catches.
//! - Debug mode ([`CacheFlags::DEBUG`] and its parts): every free checked
//!   under the lock; a redzone after each object; poisoned free objects;
//!   an audit trail of each object's last allocation and free
//!   ([`Caller`], [`Site`]), a transaction log and leak reports by site
//!   ([`KmemCache::leaks`], [`Caches::report_leaks`]); [`Report`]s to the
//!   [`DebugHooks`] of the set.
//! - Safe code cannot cause undefined behaviour: a free is `unsafe` (the
//!   caller vouches for the object), the magazine layer is not reachable
//!   from outside, and a signal or interrupt handler that interrupts an
//!   allocation or free of its own context is refused or deferred
//!   ([`AllocError::Reentrant`], [`BadFree::Reentrant`]) rather than let in.
//! - Failure injection (feature `fail-inject`, off by default and compiled
//!   out without it; it turns on `kmem-arena`'s and `kmem-magazine`'s too):
//!   slab growth fails when the plan set through `kmem_slab::fail` (the
//!   `kmem-fail` crate, `Layer::SlabGrow`: every k-th, or a seeded 1 in n)
//!   says so, exactly as a source arena out of memory fails it
//!   ([`AllocError::Exhausted`], counted in [`CacheStats::alloc_fails`]).
//! - Per-call-site accounting (feature `site-stats`, off by default and
//!   compiled out without it; the idea of Linux's `/proc/allocinfo`): for
//!   every call site that allocated through [`KmemCache::alloc`] or
//!   [`alloc_by`](KmemCache::alloc_by), the bytes and objects its callers
//!   hold now and its allocations so far, process-wide over every cache
//!   (`site_stats`, and `report_sites` for a `::kmastat`-style table). A
//!   site is a `#[track_caller]` location; callers without one
//!   (`GlobalAlloc`, [`Caller::Unknown`], [`Caller::Code`],
//!   [`Caller::Stack`]) share the *unknown site* row, so the rows add up
//!   to the objects users hold. Each object carries its site in 4 bytes
//!   (its bufctl's padding, or an array below a headed slab's bitmap, so
//!   small slabs hold fewer objects); the magazine fast paths record the
//!   site when they hand an object out and clear it when it is freed (a
//!   free into a magazine is a free), which costs a table lookup and a few
//!   atomic adds per allocation. The caches' own allocations (bootstrap
//!   caches, quantum caches serving their arena) are not counted.
//!
//! Lock order: cache registry, CPU slot, depot, cache (slab layer),
//! bootstrap caches, arena, the arena's source. No cache lock is held while a constructor,
//! destructor, arena or another cache's slab layer runs, except the
//! bootstrap caches under a cache that is growing.
//!
//! ```
//! use kmem_magazine::ThreadCpus;
//! use kmem_physmem::{boot, PhysMem};
//! use kmem_slab::{AllocFlags, CacheBuilder, Caches};
//!
//! let ram = PhysMem::new(8 << 20);
//! boot(&ram, |base, kpages| {
//!     let caches = Caches::new(base, ThreadCpus::global()).unwrap();
//!     let inodes = caches
//!         .create(CacheBuilder::new("inode", 200).align(8).source(kpages))
//!         .unwrap();
//!     let a = inodes.alloc(AllocFlags::ZERO).unwrap();
//!     // SAFETY: `a` came from this cache and is freed once.
//!     unsafe { inodes.free(a) }.unwrap();
//!     assert_eq!(inodes.stats().buf_in_use, 0);
//!     inodes.check().unwrap();
//!     inodes.destroy().unwrap();
//! });
//! ```
#![no_std]
// `unsafe` lives in `raw` (the slab layer's memory) and `handle` (pointers
// and locks behind safe handles), plus the lock primitive `rwlock`; the
// rest of the crate may not use it. The public API's own unsafe items
// (`KmemCache::free`, the `QuantumCaches` impl) are allowed one by one.
#![deny(unsafe_code)]

/// A cache's lock: `spin`'s, whose waiters, with `std`, yield the CPU (the
/// holder may be a preempted thread).
#[cfg(feature = "std")]
type Mutex<T> = spin::mutex::Mutex<T, spin::relax::Yield>;
#[cfg(not(feature = "std"))]
type Mutex<T> = spin::mutex::Mutex<T>;

mod builder;
mod cache;
mod caches;
mod debug;
mod error;
mod flags;
mod geometry;
#[allow(unsafe_code, reason = "pointers and locks behind safe handles")]
mod handle;
mod qcache;
#[allow(unsafe_code, reason = "the slab layer's memory")]
mod raw;
mod reserve;
#[allow(unsafe_code, reason = "the registry's lock")]
mod rwlock;
#[cfg(feature = "site-stats")]
mod sites;
mod slabs;
mod stats;
mod supply;

pub use builder::{CacheBuilder, CacheReclaim, CtorError, ObjectOps, PageMap, Pressure};
pub use cache::KmemCache;
pub use caches::{Caches, DestroyError};
pub use debug::{Caller, DebugHooks, Finding, LeakGroup, Report, Site, Transaction, TxnOp};
pub use error::{AllocError, BadFree, CheckError, CreateError, FreeError};
pub use flags::{AllocFlags, CacheFlags};
pub use geometry::{HEADED_MAX, SMALL_MAX};
pub use handle::Cache;
pub use qcache::{ArenaValues, QCaches, QCACHE_MAX_CACHES};
pub use raw::POISON;
pub use reserve::{Reserve, RESERVE_MAX};
#[cfg(feature = "site-stats")]
pub use sites::{report_sites, site_stats, SiteStat};
pub use stats::CacheStats;

/// Failure injection (`kmem-fail`), with the `fail-inject` feature: set a
/// [`Plan`](fail::Plan) for a [`Layer`](fail::Layer) here.
#[cfg(feature = "fail-inject")]
pub use kmem_fail as fail;

/// The page size slabs are built from (at least; a source with a larger
/// quantum gives larger slabs), and the largest object alignment.
pub const PAGE_SIZE: usize = 4096;
