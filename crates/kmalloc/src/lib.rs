//! kmem's `kmalloc`: general-purpose memory allocation on top of the vmem
//! arena, quantum caches, magazines and slabs, as a kernel boots it.
//!
//! - [`boot`] / [`boot_static`]: the boot sequence, written once — a base
//!   arena over a range of memory (which carves its own metadata), the slab
//!   layer's bootstrap caches, a page arena `kpages` with quantum caches
//!   (sourced from the base, or from an outside [`Source`](kmem_arena::Source)
//!   such as the OS), then the size-class caches. The structures live at the
//!   start of the memory given, so no heap is needed.
//! - [`Kmalloc`]: [`CLASSES`] size classes, eight per power of two from 64
//!   bytes (no request of 64 bytes or more wastes more than 1/8 of its
//!   class) up to [`MAX_CLASS`]; larger or over-aligned requests take whole
//!   pages from `kpages`. Alignment up to the page size is honoured for
//!   every size (more, for page allocations). The API is sized — a free
//!   takes the [`Layout`](core::alloc::Layout) back — so objects carry no
//!   header. `alloc`, `alloc_zeroed`, `realloc` (in place while the class
//!   does not change) and `free` return typed errors; zero-size and
//!   oversized requests are errors, never a panic.
//! - [`GlobalAlloc`](core::alloc::GlobalAlloc) for `Kmalloc` and for
//!   [`StaticKmalloc`] (a `#[global_allocator]` booted by the program, as in
//!   a kernel or the freestanding demo), and `allocator_api2`'s `Allocator`
//!   for `&Kmalloc` (with the `nightly` feature, core's `Allocator` too).
//!   A panic inside the allocator never unwinds out of them: the process
//!   aborts with the message. So does a free the allocator refuses (a
//!   double free, a wrong layout, a foreign pointer), which these
//!   interfaces cannot report.
//! - Debug mode ([`Config::debug`], or `KMEM_DEBUG` for [`KmallocGlobal`],
//!   parsed by [`debug_flags`]): every class cache checks every free under
//!   its lock, with a redzone, poisoned free objects and an audit trail as
//!   asked; reports go to [`Config::debug_hooks`] (under `KMEM_DEBUG`:
//!   printed with symbol names, then the process aborts).
//! - With the `std` feature (Linux only: it calls `mmap`, `futex`,
//!   `membarrier` and `pthread_atfork`), [`KmallocGlobal`]: a `#[global_allocator]` for
//!   ordinary programs that boots itself on first use over memory from the
//!   OS (`mmap`), and survives `fork()` (its `pthread_atfork` handlers take
//!   every lock) and signal handlers that allocate (refused or deferred,
//!   never let into the interrupted call's state). A reaper thread runs the
//!   upkeep pass ([`Kmalloc::tick`]) every 500 ms, so that idle freed
//!   memory goes back to the OS.
//! - Failure injection (feature `fail-inject`, off by default and compiled
//!   out without it; it turns on the feature of every crate below):
//!   allocations fail when the plan set through `kmalloc::fail` (the
//!   `kmem-fail` crate, `Layer::Kmalloc`: every k-th, or a seeded 1 in n)
//!   says so, exactly as when memory runs out ([`AllocError::Exhausted`];
//!   large ones counted in [`Kmalloc::large_counts`]); plans for the lower
//!   layers (imports, tag refills, magazines, slab growth) reach the whole
//!   stack.
//! - Per-call-site accounting (feature `site-stats`, off by default and
//!   compiled out without it; `kmem-slab`'s, the idea of Linux's
//!   `/proc/allocinfo`): `site_stats` and `report_sites` give, per call
//!   site of [`Kmalloc::alloc`], `alloc_zeroed` and `realloc`
//!   (`#[track_caller]`), the bytes (class sizes) and objects held now and
//!   the allocations so far; `GlobalAlloc` and `Allocator` callers share
//!   the unknown site's row. Large allocations (runs of pages) are counted
//!   in [`Kmalloc::large_counts`] only, not per site.
//! - The standard library's own allocator API (feature `nightly`, off by
//!   default; it needs a nightly compiler): `core::alloc::Allocator`, the
//!   unstable `allocator_api`, for `&Kmalloc`, so that std's `Vec::new_in`,
//!   `Box::new_in` and the other collections allocate from kmalloc. The
//!   `allocator_api2` implementation, whose trait has the same methods, is
//!   the same code. Ready for the trait's stabilisation: the feature turns
//!   on `#![feature(allocator_api)]`, which a stable trait will not need.
//!
//! `#![no_std]` without `alloc`.
//!
//! ```
//! use core::alloc::Layout;
//! use kmalloc::{boot, Config};
//! use kmem_magazine::ThreadCpus;
//!
//! let mut ram = vec![0u8; 16 << 20];
//! boot(&mut ram, ThreadCpus::global(), &Config::default(), |k| {
//!     let small = Layout::from_size_align(200, 8).unwrap();
//!     let p = k.alloc_zeroed(small).unwrap(); // kmalloc_208, this CPU's magazine
//!     // SAFETY: 200 bytes, just allocated.
//!     assert!(unsafe { core::slice::from_raw_parts(p.as_ptr(), 200) }.iter().all(|&b| b == 0));
//!     // Grows in place while the class stays the same.
//!     // SAFETY: allocated above with `small`.
//!     let q = unsafe { k.realloc(p, small, 208) }.unwrap();
//!     assert_eq!(p, q);
//!     let big = Layout::from_size_align(1 << 20, 4096).unwrap();
//!     let r = k.alloc(big).unwrap(); // 256 pages from kpages
//!     // SAFETY: each freed once with its layout.
//!     unsafe {
//!         k.free(q, Layout::from_size_align(208, 8).unwrap()).unwrap();
//!         k.free(r, big).unwrap();
//!     }
//!     let mut report = String::new();
//!     k.report(&mut report).unwrap();
//!     assert!(report.contains("kmalloc_208") && report.contains("kpages"));
//! })
//! .unwrap();
//! ```
#![no_std]
#![cfg_attr(feature = "nightly", feature(allocator_api))]

#[cfg(feature = "std")]
extern crate std;

mod boot;
mod classes;
mod error;
mod global;
mod kmalloc;
#[cfg(feature = "std")]
mod os;
#[cfg(feature = "std")]
mod pagemap;
#[cfg(feature = "std")]
mod reaper;

pub use boot::{boot, boot_static, debug_flags, Config};

pub use classes::{class_align, class_size, CLASSES, MAX_CLASS};
pub use error::{AllocError, BootError, FreeError};
pub use global::StaticKmalloc;
pub use kmalloc::Kmalloc;
/// The layers below, whole, for what this crate's API names from them (a
/// `Source` for [`Config::page_source`], the `Caches` behind
/// [`Kmalloc::caches`], errors inside [`FreeError`] and [`BootError`]):
/// `kmalloc` alone is enough as a dependency.
pub use kmem_arena as arena;
pub use kmem_magazine as magazine;
#[cfg(feature = "std")]
pub use kmem_magazine::ThreadCpus;
/// What most users name: the platform ([`Cpu`], [`ManualCpus`], and with
/// `std` [`ThreadCpus`]), flags, callers and hooks.
pub use kmem_magazine::{Cpu, ManualCpus, Section};
pub use kmem_slab as slab;
pub use kmem_slab::{AllocFlags, CacheFlags, Caller, DebugHooks, PageMap, Report, PAGE_SIZE};

/// The README's examples (arena, caches, kmalloc), compiled and run as
/// doctests here, the top crate, whose dependencies cover them.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
#[cfg(feature = "std")]
pub use os::{KmallocGlobal, OsPages};
#[cfg(feature = "std")]
pub use pagemap::OsPageMap;
#[cfg(feature = "std")]
pub use reaper::{UpkeepStats, UPKEEP_INTERVAL_MS};

/// Failure injection (`kmem-fail`), with the `fail-inject` feature: set a
/// [`Plan`](fail::Plan) for a [`Layer`](fail::Layer) here.
#[cfg(feature = "fail-inject")]
pub use kmem_fail as fail;

/// Per-call-site accounting, with the `site-stats` feature (see
/// `kmem_slab`'s).
#[cfg(feature = "site-stats")]
pub use kmem_slab::{report_sites, site_stats, SiteStat};
