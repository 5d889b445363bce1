//! Failure injection for the kmem allocator stack, after illumos'
//! `vmem_mtbf` and `kmem_mtbf`: make every k-th allocation, or a seeded
//! random 1 in n, fail at a chosen [`Layer`], so that a debug build runs the
//! error paths that real exhaustion reaches only rarely.
//!
//! The library crates consult this crate only when built with their
//! `fail-inject` feature (off by default; without it the call sites are
//! compiled out, no code and no cost). Each call site asks
//! [`should_fail`] just before the step that can run out, and on `true`
//! takes the very failure path that step takes when the resource is really
//! exhausted: the same typed error, the same clean-up, the same counters.
//!
//! | layer | crate (feature `fail-inject`) | the attempt | the injected failure |
//! |---|---|---|---|
//! | [`Layer::ArenaImport`] | `kmem-arena` | an arena asks its source for a span | the source refused: the allocation fails with `AllocError::Exhausted`, counted in the arena's `failures` |
//! | [`Layer::TagReserve`] | `kmem-arena` | an arena refills its boundary-tag reserve (carves or allocates a tag page) | `AllocError::NoTags` (`AddError::NoTags` from `add`); a span imported for the request goes back |
//! | [`Layer::Magazine`] | `kmem-magazine` | a free needs a new empty magazine from the magazine source | no magazine: the object goes to the layer below (a cache's slab, destructed first) |
//! | [`Layer::SlabGrow`] | `kmem-slab` | a cache grows a new slab | `AllocError::Exhausted`, counted in the cache's `alloc_fails` |
//! | [`Layer::Kmalloc`] | `kmalloc` | an allocation of a valid layout | `AllocError::Exhausted` (null through `GlobalAlloc`); a large one counted in `large_counts` |
//!
//! Turning the feature on for `kmalloc` turns it on for the crates below
//! (`kmem-slab` for `kmem-arena` and `kmem-magazine`); each of those crates
//! re-exports this one as `fail`, so a user needs no extra dependency.
//!
//! Plans are process-wide (statics of atomics): one per layer, set with
//! [`set`] and cleared with [`clear_all`]. [`should_fail`] costs one relaxed
//! load and a branch while its layer's plan is [`Plan::Off`]. Decisions are
//! atomic, so any number of threads may consult a plan: [`Plan::EveryKth`]
//! fails exactly one attempt in k of all threads' attempts, [`Plan::OneIn`]
//! draws from one seeded sequence; which thread gets which decision is up to
//! the scheduler. A plan may be changed while other threads consult it
//! (decisions made during the change follow either plan). Tests that set
//! plans must not run beside other tests of the same process that allocate
//! through the same layers, or those may see the failures too.
//!
//! ```
//! use kmem_fail::{injected, set, should_fail, Layer, Plan};
//!
//! // Every third slab growth fails.
//! set(Layer::SlabGrow, Plan::EveryKth(3));
//! let seen: Vec<bool> = (0..6).map(|_| should_fail(Layer::SlabGrow)).collect();
//! assert_eq!(seen, [false, false, true, false, false, true]);
//! assert_eq!(injected(Layer::SlabGrow), 2);
//! assert!(!should_fail(Layer::Kmalloc)); // other layers are off
//!
//! // A random one in four kmalloc calls fails; a seed replays its sequence.
//! let run = || {
//!     set(Layer::Kmalloc, Plan::OneIn { n: 4, seed: 42 });
//!     (0..64).map(|_| should_fail(Layer::Kmalloc)).collect::<Vec<_>>()
//! };
//! let first = run();
//! assert_eq!(first, run());
//! assert!(first.contains(&true) && first.contains(&false));
//!
//! kmem_fail::clear_all(); // every plan off, every count zero
//! assert_eq!(injected(Layer::SlabGrow), 0);
//! ```
#![no_std]
#![forbid(unsafe_code)]

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

/// Where a failure is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// `kmem-arena`: an arena asks its source for a span (each request to
    /// the source is an attempt: with import scaling, the scaled request
    /// and the fallback to what the allocation needs are two).
    ArenaImport,
    /// `kmem-arena`: an arena holds fewer unused boundary tags than an
    /// operation needs and would carve (a base arena) or allocate (an arena
    /// with a tag arena) a page of tags.
    TagReserve,
    /// `kmem-magazine`: a free finds no room in its CPU's magazines or the
    /// depot and would allocate an empty magazine from its source.
    Magazine,
    /// `kmem-slab`: an object cache (created, bootstrap or quantum cache)
    /// grows a new slab.
    SlabGrow,
    /// `kmalloc`: an allocation of a valid, non-zero layout (`alloc`,
    /// `alloc_zeroed`, a `realloc` that moves, and the `GlobalAlloc` and
    /// `Allocator` adapters).
    Kmalloc,
}

impl Layer {
    /// Every layer.
    pub const ALL: [Self; 5] = [
        Self::ArenaImport,
        Self::TagReserve,
        Self::Magazine,
        Self::SlabGrow,
        Self::Kmalloc,
    ];

    fn slot(self) -> &'static Slot {
        &SLOTS[self as usize]
    }
}

/// When a layer's attempts fail. Attempts are counted from the moment the
/// plan is [`set`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plan {
    /// Nothing fails.
    #[default]
    Off,
    /// The k-th, 2k-th, 3k-th, ... attempts fail (`EveryKth(1)`: all of
    /// them). `EveryKth(0)` is [`Off`](Self::Off).
    EveryKth(u64),
    /// Each attempt fails with probability 1/n, drawn from a pseudo-random
    /// sequence (SplitMix64) that `seed` determines: one thread making the
    /// same attempts under the same seed sees the same failures.
    /// `n == 0` is [`Off`](Self::Off).
    OneIn {
        /// One attempt in `n` fails, on average.
        n: u64,
        /// Where the sequence starts.
        seed: u64,
    },
}

/// A layer's plan and counts.
struct Slot {
    /// The plan in one word, so that an off layer costs one load: 0 is off;
    /// otherwise the period (k or n) in the low 63 bits, with [`RANDOM`]
    /// set for [`Plan::OneIn`].
    plan: AtomicU64,
    /// [`Plan::EveryKth`]: attempts since the plan was set;
    /// [`Plan::OneIn`]: the SplitMix64 state.
    state: AtomicU64,
    /// Failures injected.
    injected: AtomicU64,
}

/// Marks a [`Plan::OneIn`] in [`Slot::plan`].
const RANDOM: u64 = 1 << 63;

/// The largest period a plan word holds (larger ones are clamped to it).
const PERIOD: u64 = RANDOM - 1;

/// SplitMix64's increment (2^64 divided by the golden ratio, odd).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

static SLOTS: [Slot; Layer::ALL.len()] = [const {
    Slot {
        plan: AtomicU64::new(0),
        state: AtomicU64::new(0),
        injected: AtomicU64::new(0),
    }
}; Layer::ALL.len()];

/// Sets `layer`'s plan, restarting its count of attempts (or its random
/// sequence, from `seed`). The count of injected failures is kept; see
/// [`clear_all`].
pub fn set(layer: Layer, plan: Plan) {
    let (word, state) = match plan {
        Plan::Off | Plan::EveryKth(0) | Plan::OneIn { n: 0, .. } => (0, 0),
        Plan::EveryKth(k) => (k.min(PERIOD), 0),
        Plan::OneIn { n, seed } => (n.min(PERIOD) | RANDOM, seed),
    };
    let slot = layer.slot();
    // Off while the state changes, so the new plan starts from its own.
    slot.plan.store(0, Relaxed);
    slot.state.store(state, Relaxed);
    slot.plan.store(word, Relaxed);
}

/// Turns every layer's plan off and zeroes every count of injected
/// failures.
pub fn clear_all() {
    for layer in Layer::ALL {
        set(layer, Plan::Off);
        layer.slot().injected.store(0, Relaxed);
    }
}

/// Counts an attempt at `layer` and says whether it is to fail (then
/// counted in [`injected`]). One relaxed load while the plan is off.
#[inline]
pub fn should_fail(layer: Layer) -> bool {
    let slot = layer.slot();
    let plan = slot.plan.load(Relaxed);
    plan != 0 && decide(slot, plan)
}

/// [`should_fail`] under a plan that is on.
#[cold]
#[inline(never)]
fn decide(slot: &Slot, plan: u64) -> bool {
    let period = plan & PERIOD;
    let fail = if plan & RANDOM == 0 {
        let attempt = slot.state.fetch_add(1, Relaxed).wrapping_add(1);
        attempt.is_multiple_of(period)
    } else {
        let state = slot.state.fetch_add(GAMMA, Relaxed).wrapping_add(GAMMA);
        splitmix64(state).is_multiple_of(period)
    };
    if fail {
        slot.injected.fetch_add(1, Relaxed);
    }
    fail
}

/// SplitMix64's output function.
fn splitmix64(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Failures injected at `layer` since the last [`clear_all`] (under every
/// plan set since).
pub fn injected(layer: Layer) -> u64 {
    layer.slot().injected.load(Relaxed)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    fn pattern(layer: Layer, plan: Plan, n: usize) -> Vec<bool> {
        set(layer, plan);
        (0..n).map(|_| should_fail(layer)).collect()
    }

    // One test: the plans are process-wide, and tests run in parallel.
    #[test]
    fn plans_fail_where_they_say() {
        let l = Layer::Magazine;
        clear_all();
        assert_eq!(pattern(l, Plan::Off, 3), [false; 3]);
        assert_eq!(pattern(l, Plan::EveryKth(0), 3), [false; 3]);
        assert_eq!(pattern(l, Plan::OneIn { n: 0, seed: 1 }, 3), [false; 3]);
        assert_eq!(pattern(l, Plan::EveryKth(1), 3), [true; 3]);
        assert_eq!(pattern(l, Plan::OneIn { n: 1, seed: 9 }, 3), [true; 3]);
        assert_eq!(
            pattern(l, Plan::EveryKth(3), 7),
            [false, false, true, false, false, true, false]
        );
        assert_eq!(injected(l), 8);
        // Setting a plan restarts its count, and touches no other layer.
        assert_eq!(pattern(l, Plan::EveryKth(2), 2), [false, true]);
        assert!(Layer::ALL
            .iter()
            .all(|&o| o == l || (injected(o) == 0 && !should_fail(o))));

        // Seeded: the same seed replays, another seed differs, and about
        // one attempt in n fails.
        let one_in = |seed| pattern(l, Plan::OneIn { n: 8, seed }, 8000);
        let (a, b) = (one_in(1), one_in(2));
        assert_eq!(a, one_in(1));
        assert_ne!(a, b);
        for run in [a, b] {
            let failed = run.iter().filter(|&&f| f).count();
            assert!((800..1200).contains(&failed), "{failed} of 8000");
        }
        let huge = pattern(l, Plan::EveryKth(u64::MAX), 3);
        assert_eq!(huge, [false; 3]);

        clear_all();
        assert_eq!(injected(l), 0);
        assert!(!should_fail(l));
    }
}
