//! The magazine layer of Bonwick & Adams' "Magazines and Vmem", as Akaros'
//! `slab.c` builds it: per-CPU `loaded` and `prev` magazines in front of any
//! object source, and a depot of not-empty and empty magazines per cache.
//!
//! - Magazines: stacks of rounds in four sizes ([`MAGAZINE_SIZES`], 64 to
//!   512 bytes for 6 to [`MAGAZINE_ROUNDS`] rounds, after illumos' magazine
//!   types); the layer's fill target (`magsize`) starts by object size
//!   ([`start_size`]) and grows by one when the depot lock is contended
//!   ([`ResizePolicy`]); CPUs adopt the new target on their next depot
//!   visit on the free path, and new magazines come in the smallest size
//!   that holds it ([`size_for`]).
//! - [`Magazines`]: one cache's layer. [`alloc`](Magazines::alloc) and
//!   [`free`](Magazines::free) follow Akaros: use `loaded`, swap with
//!   `prev`, exchange with the depot, allocate an empty magazine without
//!   blocking; a miss falls through to the caller's layer below, which may
//!   load the caller's magazine in one pass ([`refill`](Magazines::refill)).
//!   [`trim`](Magazines::trim) is the upkeep pass's working-set reap
//!   (illumos' `kmem_depot_ws_update`/`ws_reap`): the magazines neither
//!   depot list needed through a whole interval go back.
//! - [`Cpu`]: the platform's "which CPU am I" — slot count, current slot, a
//!   guard that keeps the caller on it, and a clock. With exclusive use of a
//!   slot the fast path has no atomic read-modify-write. [`ManualCpus`]
//!   lets tests pick slots by hand; with the `std` feature, [`ThreadCpus`]
//!   gives threads slots of their own and flushes them when threads exit.
//!
//! `#![no_std]` without `alloc`: magazines live in memory a
//! [`MagazineSource`] supplies, per-CPU state in an array of [`CpuCache`]
//! the caller provides.
//!
//! **Failure injection.** With the `fail-inject` feature (off by default
//! and compiled out without it), allocations of empty magazines fail when
//! the plan set through `kmem_magazine::fail` (the `kmem-fail` crate,
//! `Layer::Magazine`: every k-th, or a seeded 1 in n) says so, exactly as a
//! [`MagazineSource`] out of memory fails them: the free returns the object
//! for the layer below.
//!
//! **Loom models.** Built with `--cfg loom` and the `loom` feature, the
//! crate's atomics, locks and per-CPU cells are [loom]'s (one `sync` module
//! holds them all; a normal build compiles to the same code as without it),
//! and `tests/loom.rs` checks the depot exchange, magazine resizing, shared
//! slots and the thread-exit flush under every interleaving up to a
//! preemption bound: `cargo xtask loom`. loom is a dependency beyond the
//! project's usual set because it is the model checker for Rust's memory
//! model (a data race or a lost update is found by construction, not by
//! chance as in a stress test); it is optional and gated on `cfg(loom)`, so
//! no other build compiles it or records it in a lock file.
//!
//! [loom]: https://docs.rs/loom
//!
//! ```
//! use core::ptr::NonNull;
//! use kmem_magazine::{CpuCache, MagazineSource, Magazines, ManualCpus, MAGAZINE_ALIGN};
//!
//! // Magazine memory from the heap, for the example.
//! struct Heap;
//! // SAFETY: hands out fresh heap blocks of the magazine size and alignment.
//! unsafe impl MagazineSource for Heap {
//!     fn alloc_magazine(&self, bytes: usize) -> Option<NonNull<u8>> {
//!         let layout = std::alloc::Layout::from_size_align(bytes, MAGAZINE_ALIGN).unwrap();
//!         // SAFETY: non-zero size.
//!         NonNull::new(unsafe { std::alloc::alloc(layout) })
//!     }
//!     unsafe fn free_magazine(&self, mem: NonNull<u8>, bytes: usize) {
//!         let layout = std::alloc::Layout::from_size_align(bytes, MAGAZINE_ALIGN).unwrap();
//!         // SAFETY: allocated above with this layout.
//!         unsafe { std::alloc::dealloc(mem.as_ptr(), layout) }
//!     }
//! }
//!
//! let cpus = ManualCpus::<2>::new();
//! let mut slots = [CpuCache::new(), CpuCache::new()];
//! let mut mags = Magazines::new(&cpus, &mut slots, 64).unwrap();
//!
//! assert_eq!(mags.alloc(), None); // nothing cached: use the layer below
//! // SAFETY (here and below): `Heap` is the only magazine source used.
//! unsafe { mags.free(0x1000, &Heap) }.unwrap(); // cached in CPU 0's magazine
//! cpus.set_slot(1);
//! assert_eq!(mags.alloc(), None); // CPU 1 has its own magazines
//! cpus.set_slot(0);
//! assert_eq!(mags.alloc(), Some(0x1000));
//!
//! // SAFETY: as above, `Heap` is the only magazine source.
//! unsafe { mags.free(0x2000, &Heap) }.unwrap();
//! // SAFETY: as above; and no other call runs on the layer.
//! let drained = unsafe { mags.drain_all(&Heap, |obj| assert_eq!(obj, 0x2000)) };
//! assert_eq!(drained, 1);
//! ```
#![no_std]

mod cpu;
mod depot;
mod layer;
mod magazine;
mod percpu;
mod stats;
mod sync;
#[cfg(feature = "std")]
mod thread_cpus;

pub use cpu::{Cpu, CpuGuard, ManualCpus, ManualGuard, Section, SlotHook};
pub use depot::ResizePolicy;
pub use layer::{Magazines, Purge, RefillSink, TooFewSlots, TRIM_BATCH};
pub use magazine::{
    rounds_of, size_for, start_size, MagazineSource, MAGAZINE_ALIGN, MAGAZINE_ROUNDS,
    MAGAZINE_SIZES,
};
pub use percpu::CpuCache;
pub use stats::MagazineStats;

/// Failure injection (`kmem-fail`), with the `fail-inject` feature: set a
/// [`Plan`](fail::Plan) for a [`Layer`](fail::Layer) here.
#[cfg(feature = "fail-inject")]
pub use kmem_fail as fail;
#[cfg(feature = "std")]
pub use thread_cpus::{ThreadCpus, ThreadGuard};
