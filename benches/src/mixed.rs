//! The kmalloc benchmarks' workload and fixtures: a seeded trace of mixed
//! sizes (a kernel-like histogram, 8 B to 8 KiB), driven through
//! `GlobalAlloc` for every contender (kmalloc, mimalloc, glibc's `System`,
//! talc behind a spin lock), and a booted kmalloc stack.

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;

use kmalloc::{boot, Config, Kmalloc};
use kmem_magazine::ThreadCpus;
use kmem_physmem::Rng;
use talc::source::Manual;
use talc::TalcLock;

/// talc 5 behind a `spin` mutex whose waiters yield (the lock kmem's layers
/// take in a `std` build), over a claimed region.
pub type Talc = TalcLock<spin::mutex::SpinMutex<(), spin::relax::Yield>, Manual>;

/// Layouts in the trace (cycled).
pub const TRACE_LEN: usize = 4096;

/// Live slots of the churn workload.
pub const LIVE: usize = 1024;

/// One size drawn from the mix: half 8-128 B, 30 % 129 B-1 KiB, 15 %
/// 1-4 KiB, 5 % 4-8 KiB, uniform within each band; one in eight aligned to
/// 16, the rest to 8.
fn draw(rng: &mut Rng) -> Layout {
    let band = rng.below(100);
    let (lo, hi) = match band {
        0..=49 => (8, 128),
        50..=79 => (129, 1024),
        80..=94 => (1025, 4096),
        _ => (4097, 8192),
    };
    let size = rng.range(lo, hi);
    let align = if rng.chance(1, 8) { 16 } else { 8 };
    Layout::from_size_align(size, align).expect("layout")
}

/// The pre-generated trace every contender replays: layouts, and for the
/// churn workload the slot each step replaces.
pub struct Trace {
    /// Layouts, in order.
    pub layouts: Vec<Layout>,
    /// Slot (below [`LIVE`]) replaced at each step.
    pub slots: Vec<usize>,
}

impl Trace {
    /// The trace for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let layouts = (0..TRACE_LEN).map(|_| draw(&mut rng)).collect();
        let slots = (0..TRACE_LEN)
            .map(|_| rng.below(LIVE as u64) as usize)
            .collect();
        Self { layouts, slots }
    }

    /// Mean requested bytes per allocation.
    pub fn mean_size(&self) -> f64 {
        self.layouts.iter().map(|l| l.size() as f64).sum::<f64>() / self.layouts.len() as f64
    }
}

/// Allocates through `a`, panicking on failure (one branch for everyone).
#[inline(always)]
fn alloc<A: GlobalAlloc + ?Sized>(a: &A, l: Layout) -> *mut u8 {
    // SAFETY: every layout of the trace has a non-zero size.
    let p = unsafe { a.alloc(l) };
    assert!(!p.is_null(), "allocation failed");
    p
}

/// One alloc+free pair per layout of the trace, from `*at` on, `n` pairs;
/// advances `*at`.
#[inline]
pub fn pairs<A: GlobalAlloc + ?Sized>(a: &A, trace: &Trace, at: &mut usize, n: u64) {
    for _ in 0..n {
        let l = trace.layouts[*at];
        *at = (*at + 1) % TRACE_LEN;
        let p = alloc(a, l);
        // SAFETY: just allocated with `l`, freed once.
        unsafe { a.dealloc(black_box(p), l) };
    }
}

/// A live set of [`LIVE`] objects of mixed sizes, replaced one at a time in
/// the trace's random slot order.
pub struct Churn {
    held: Vec<(usize, Layout)>,
    at: usize,
}

impl Churn {
    /// Fills the live set from `a`.
    pub fn new<A: GlobalAlloc + ?Sized>(a: &A, trace: &Trace) -> Self {
        let held = (0..LIVE)
            .map(|i| {
                let l = trace.layouts[i % TRACE_LEN];
                (alloc(a, l) as usize, l)
            })
            .collect();
        Self { held, at: 0 }
    }

    /// `n` steps: free the object in the step's slot, allocate the step's
    /// layout into it.
    #[inline]
    pub fn steps<A: GlobalAlloc + ?Sized>(&mut self, a: &A, trace: &Trace, n: u64) {
        for _ in 0..n {
            let slot = trace.slots[self.at];
            let l = trace.layouts[self.at];
            self.at = (self.at + 1) % TRACE_LEN;
            let (p, old) = self.held[slot];
            // SAFETY: allocated from `a` with `old`, freed once.
            unsafe { a.dealloc(p as *mut u8, old) };
            self.held[slot] = (alloc(a, l) as usize, l);
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

/// A talc heap over `bytes` of memory taken (and leaked) from the system.
pub fn talc(bytes: usize) -> &'static Talc {
    let region: &'static mut [u8] = Box::leak(vec![0u8; bytes].into_boxed_slice());
    let talc: &'static Talc = Box::leak(Box::new(Talc::new(Manual)));
    // SAFETY: the region is leaked, so it stays valid and unused otherwise
    // for the rest of the process.
    let claimed = unsafe { talc.lock().claim(region.as_mut_ptr(), region.len()) };
    assert!(claimed.is_some(), "talc refused its region");
    talc
}

/// Boots kmalloc over `bytes` of memory on the std platform and runs `f`;
/// afterwards checks every cache and arena.
pub fn with_kmalloc<R>(bytes: usize, f: impl FnOnce(&Kmalloc<'_, ThreadCpus>) -> R) -> R {
    let mut mem = vec![0u8; bytes];
    boot(&mut mem, ThreadCpus::global(), &Config::default(), |k| {
        let r = f(k);
        k.caches().for_each(|c| {
            c.check()
                .unwrap_or_else(|e| panic!("kmalloc bench: cache {}: {e}", c.name()))
        });
        k.pages().check().expect("kmalloc bench: kpages check");
        r
    })
    .expect("kmalloc bench: boot")
}
