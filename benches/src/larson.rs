//! B2's working-set workload (Larson-like): a seeded trace of object sizes
//! from a Pareto distribution truncated at 1 KiB (the shape of
//! mimalloc-bench's alloc-test), replayed through `GlobalAlloc` either as a
//! live set of K objects replaced one at a time in random slot order
//! ([`Churn`]), or as batches of K allocations freed in LIFO, FIFO or
//! random order ([`batch`]).

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;

use kmem_physmem::Rng;

/// Smallest size and tail index of the Pareto distribution.
pub const PARETO_MIN: f64 = 8.0;
/// See [`PARETO_MIN`].
pub const PARETO_ALPHA: f64 = 0.7;
/// Largest size drawn.
pub const MAX_SIZE: usize = 1024;
/// Layouts in a trace (cycled).
pub const TRACE_LEN: usize = 1 << 16;

/// In which order a batch is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Newest first.
    Lifo,
    /// Oldest first.
    Fifo,
    /// A seeded random permutation.
    Random,
}

impl Order {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Order::Lifo => "lifo",
            Order::Fifo => "fifo",
            Order::Random => "random",
        }
    }
}

/// One Pareto size: `PARETO_MIN / u^(1/alpha)`, capped at [`MAX_SIZE`],
/// rounded down to whole bytes.
pub fn pareto(rng: &mut Rng) -> usize {
    // u in (0, 1]: never zero, so the power is finite.
    let u = (rng.below(1 << 30) + 1) as f64 / (1u64 << 30) as f64;
    let s = PARETO_MIN / u.powf(1.0 / PARETO_ALPHA);
    (s as usize).clamp(PARETO_MIN as usize, MAX_SIZE)
}

/// The pre-generated trace every contender replays.
pub struct LarsonTrace {
    /// Layouts, cycled.
    pub layouts: Vec<Layout>,
    /// Slot replaced at each churn step (below `live`).
    pub slots: Vec<u32>,
    /// A permutation of `0..live`: the random free order.
    pub perm: Vec<u32>,
    /// Live objects K.
    pub live: usize,
}

impl LarsonTrace {
    /// The trace for `live` objects from `seed`.
    ///
    /// # Panics
    /// Panics if `live` is zero or above `u32::MAX`.
    pub fn new(seed: u64, live: usize) -> Self {
        assert!(live > 0 && u32::try_from(live).is_ok(), "bad live count");
        let mut rng = Rng::new(seed);
        let layouts = (0..TRACE_LEN)
            .map(|_| Layout::from_size_align(pareto(&mut rng), 8).expect("layout"))
            .collect();
        let slots = (0..TRACE_LEN)
            .map(|_| rng.below(live as u64) as u32)
            .collect();
        let mut perm: Vec<u32> = (0..live as u32).collect();
        for i in (1..live).rev() {
            perm.swap(i, rng.below(i as u64 + 1) as usize);
        }
        Self {
            layouts,
            slots,
            perm,
            live,
        }
    }

    /// Mean requested bytes.
    pub fn mean_size(&self) -> f64 {
        self.layouts.iter().map(|l| l.size() as f64).sum::<f64>() / self.layouts.len() as f64
    }

    /// The layout of object `i` of a batch or fill.
    #[inline]
    pub fn layout(&self, i: usize) -> Layout {
        self.layouts[i % TRACE_LEN]
    }
}

#[inline(always)]
fn alloc<A: GlobalAlloc + ?Sized>(a: &A, l: Layout) -> usize {
    // SAFETY: every layout of the trace has a non-zero size.
    let p = unsafe { a.alloc(l) };
    assert!(!p.is_null(), "allocation failed");
    p as usize
}

/// One batch: `trace.live` allocations into `held` (which must be that
/// long), `at_peak()` (untimed probes), then their frees in `order`.
#[inline]
pub fn batch<A: GlobalAlloc + ?Sized>(
    a: &A,
    trace: &LarsonTrace,
    held: &mut [usize],
    order: Order,
    at_peak: impl FnOnce(),
) {
    for (i, slot) in held.iter_mut().enumerate() {
        *slot = alloc(a, trace.layout(i));
    }
    black_box(&mut *held);
    at_peak();
    let free = |i: usize| {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { a.dealloc(held[i] as *mut u8, trace.layout(i)) }
    };
    match order {
        Order::Lifo => (0..held.len()).rev().for_each(free),
        Order::Fifo => (0..held.len()).for_each(free),
        Order::Random => trace.perm.iter().for_each(|&i| free(i as usize)),
    }
}

/// A live set of `trace.live` objects, replaced one at a time.
pub struct Churn {
    held: Vec<(usize, Layout)>,
    at: usize,
}

impl Churn {
    /// Fills the live set from `a`.
    pub fn new<A: GlobalAlloc + ?Sized>(a: &A, trace: &LarsonTrace) -> Self {
        Self::new_at(a, trace, 0)
    }

    /// Fills the live set from `a` with the trace's layouts from `at` on,
    /// and starts the steps there (live sets that share one trace follow
    /// it from different points).
    pub fn new_at<A: GlobalAlloc + ?Sized>(a: &A, trace: &LarsonTrace, at: usize) -> Self {
        let at = at % TRACE_LEN;
        let held = (0..trace.live)
            .map(|i| {
                let l = trace.layout(at + i);
                (alloc(a, l), l)
            })
            .collect();
        Self { held, at }
    }

    /// `n` steps: free the object in the step's slot, allocate the step's
    /// layout into it.
    #[inline]
    pub fn steps<A: GlobalAlloc + ?Sized>(&mut self, a: &A, trace: &LarsonTrace, n: u64) {
        for _ in 0..n {
            let slot = trace.slots[self.at] as usize;
            let l = trace.layouts[self.at];
            self.at = (self.at + 1) % TRACE_LEN;
            let (p, old) = self.held[slot];
            // SAFETY: allocated from `a` with `old`, freed once.
            unsafe { a.dealloc(p as *mut u8, old) };
            self.held[slot] = (alloc(a, l), l);
        }
    }

    /// Frees the live set.
    pub fn finish<A: GlobalAlloc + ?Sized>(self, a: &A) {
        for (p, l) in self.held {
            // SAFETY: allocated from `a` with `l`, freed once.
            unsafe { a.dealloc(p as *mut u8, l) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;

    use super::{batch, Churn, LarsonTrace, Order, MAX_SIZE, PARETO_MIN};

    #[test]
    fn trace_is_seeded_bounded_and_heavy_tailed() {
        let t = LarsonTrace::new(42, 1000);
        let u = LarsonTrace::new(42, 1000);
        assert_eq!(t.layouts, u.layouts);
        assert_eq!(t.slots, u.slots);
        let sizes: Vec<usize> = t.layouts.iter().map(|l| l.size()).collect();
        assert!(sizes
            .iter()
            .all(|&s| s >= PARETO_MIN as usize && s <= MAX_SIZE));
        let small = sizes.iter().filter(|&&s| s < 64).count() as f64 / sizes.len() as f64;
        let capped = sizes.iter().filter(|&&s| s == MAX_SIZE).count() as f64 / sizes.len() as f64;
        assert!(small > 0.6 && small < 0.9, "small share {small}");
        assert!(capped > 0.01 && capped < 0.08, "capped share {capped}");
        assert!(t.slots.iter().all(|&s| s < 1000));
        let mut p = t.perm.clone();
        p.sort_unstable();
        assert!(p.iter().enumerate().all(|(i, &x)| i as u32 == x));
        assert_ne!(LarsonTrace::new(43, 1000).layouts, t.layouts);
    }

    #[test]
    fn batches_and_churn_run() {
        let t = LarsonTrace::new(1, 300);
        let mut held = vec![0; 300];
        let mut peaked = false;
        for order in [Order::Lifo, Order::Fifo, Order::Random] {
            batch(&System, &t, &mut held, order, || peaked = true);
        }
        assert!(peaked);
        let mut c = Churn::new(&System, &t);
        c.steps(&System, &t, 5000);
        c.finish(&System);
    }
}
