//! Benchmark drivers shared by the kmem benches: fixtures, the peers'
//! adapters, the common contender interface and the interleaved-ratio
//! runner. The bench targets under `benches/` only wire these together.
//!
//! Fairness rules (from the project's performance anchors): every contender
//! is driven through the same thin trait ([`contender::RangeAlloc`] for range
//! allocators, [`object::ObjectAlloc`] for object allocators) with the same
//! pre-generated trace ([`trace::IndexTrace`]), fixtures are built and
//! pre-touched outside the timed loop, and ratios are taken within one
//! process run by interleaving the contenders round by round
//! ([`interleave`]; [`threads`] for several threads sharing one allocator,
//! [`handoff`] for short-lived threads handing their objects on).

/// The lock every lockable peer sits behind: the one kmem's layers take
/// in a `std` build, `spin`'s mutex whose waiters yield the CPU, so that
/// no contender pays for a lock the others do not.
pub type PeerLock<T> = spin::mutex::Mutex<T, spin::relax::Yield>;

pub mod args;
pub mod contender;
pub mod fitcheck;
pub mod fixture;
pub mod handoff;
pub mod heap_peers;
pub mod interleave;
pub mod larson;
pub mod machine;
pub mod mixed;
pub mod object;
pub mod range_alloc_peer;
pub mod range_peers;
pub mod report;
pub mod results;
pub mod slab_fixture;
pub mod slabmalloc_peer;
pub mod stats;
pub mod suite;
pub mod svg;
pub mod threads;
pub mod trace;
pub mod vm_allocator_peer;
pub mod vmem_peer;
pub mod xthread;
