//! B8's first part, utilisation at first failure (talc's heap-efficiency
//! method): random actions (60 % allocations, 40 % frees of a random live
//! block) until the first allocation fails; the figure is the live
//! requested size over the space given, at that moment. Range allocators
//! over a span of 2^20 units (sizes log-uniform 1..=4096 units); heaps over
//! 32 MiB (sizes log-uniform 16 B..4 KiB, 8-aligned), median over seeds.

use core::alloc::{GlobalAlloc, Layout};

use kmalloc::Config as KConfig;
use kmem_arena::{Arena, Policy};
use kmem_magazine::ThreadCpus;
use kmem_physmem::{PhysMem, Rng, PAGE_SIZE};

use crate::heap_peers::{self, By, Region};
use crate::mixed::Talc;
use crate::range_alloc_peer::RangeAllocPeer;
use crate::range_peers::OffsetAlloc;
use crate::results::{Bench, Results};
use crate::slabmalloc_peer;
use crate::stats::median;
use crate::vm_allocator_peer::VmAllocator;
use crate::vmem_peer::{self, VmemArena};

/// Units of the range allocators' span.
pub const SPAN: usize = 1 << 20;
/// Bytes of the heaps' memory.
pub const HEAP: usize = 32 << 20;

fn log_uniform(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
    let x = a + (b - a) * (rng.below(1 << 30) as f64 / (1u64 << 30) as f64);
    (x.exp() as usize).clamp(lo, hi)
}

/// A fallible range allocator (units; `None` on failure).
trait TryRange {
    fn try_alloc(&self, size: usize) -> Option<usize>;
    fn free(&self, addr: usize, size: usize);
}

struct Kmem<'a>(Arena<'a>, Policy);

impl TryRange for Kmem<'_> {
    fn try_alloc(&self, size: usize) -> Option<usize> {
        self.0.alloc(size, self.1).ok()
    }
    fn free(&self, addr: usize, size: usize) {
        self.0.free(addr, size).expect("kmem free");
    }
}

struct Vmem(VmemArena, vmem::AllocPolicy);

impl TryRange for Vmem {
    fn try_alloc(&self, size: usize) -> Option<usize> {
        self.0.alloc(size, self.1).ok()
    }
    fn free(&self, addr: usize, _: usize) {
        self.0.free(addr).expect("vmem free");
    }
}

impl TryRange for RangeAllocPeer {
    fn try_alloc(&self, size: usize) -> Option<usize> {
        self.try_alloc_aligned(size, 1)
    }
    fn free(&self, addr: usize, size: usize) {
        crate::contender::RangeAlloc::free(self, addr, size);
    }
}

impl TryRange for VmAllocator {
    fn try_alloc(&self, size: usize) -> Option<usize> {
        VmAllocator::try_alloc(self, size, 1)
    }
    fn free(&self, addr: usize, size: usize) {
        crate::contender::RangeAlloc::free(self, addr, size);
    }
}

impl TryRange for OffsetAlloc {
    fn try_alloc(&self, size: usize) -> Option<usize> {
        OffsetAlloc::try_alloc(self, size)
    }
    fn free(&self, addr: usize, size: usize) {
        crate::contender::RangeAlloc::free(self, addr, size);
    }
}

/// Live units over the span at the first failure.
fn range_trial<R: TryRange>(r: &R, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(usize, usize)> = Vec::new();
    let mut used = 0usize;
    loop {
        if live.is_empty() || rng.below(100) < 60 {
            let size = log_uniform(&mut rng, 1, 4096);
            match r.try_alloc(size) {
                Some(a) => {
                    live.push((a, size));
                    used += size;
                }
                None => break,
            }
        } else {
            let (a, n) = live.swap_remove(rng.below(live.len() as u64) as usize);
            r.free(a, n);
            used -= n;
        }
    }
    for (a, n) in live {
        r.free(a, n);
    }
    used as f64 / SPAN as f64 * 100.0
}

/// Live requested bytes over the heap at the first failure.
fn heap_trial<A: GlobalAlloc>(a: &A, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(usize, Layout)> = Vec::new();
    let mut used = 0usize;
    loop {
        if live.is_empty() || rng.below(100) < 60 {
            let l = Layout::from_size_align(log_uniform(&mut rng, 16, 4096), 8).expect("layout");
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(l) };
            if p.is_null() {
                break;
            }
            live.push((p as usize, l));
            used += l.size();
        } else {
            let (p, l) = live.swap_remove(rng.below(live.len() as u64) as usize);
            // SAFETY: allocated above with `l`, freed once.
            unsafe { a.dealloc(p as *mut u8, l) };
            used -= l.size();
        }
    }
    for (p, l) in live {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { a.dealloc(p as *mut u8, l) };
    }
    used as f64 / HEAP as f64 * 100.0
}

/// Heap memory that is given back when dropped (unlike [`Region::leak`]).
struct Owned {
    mem: Vec<u64>,
}

impl Owned {
    fn new() -> Self {
        Self {
            mem: vec![0u64; HEAP / 8 + PAGE_SIZE / 8],
        }
    }
    fn region(&mut self) -> Region {
        let start = (self.mem.as_mut_ptr() as usize).next_multiple_of(PAGE_SIZE);
        Region { start, len: HEAP }
    }
}

/// Runs the utilisation part of B8.
pub fn run(bench: Bench, seeds: u64, res: &mut Results) {
    let trials = |f: &dyn Fn(u64) -> f64| -> Vec<f64> { (0..seeds).map(|s| f(0xb8 + s)).collect() };
    let ram = PhysMem::new(64 << 20);
    let tags = ram.base_arena("tags", PAGE_SIZE);
    let tags = &tags;
    let kmem = |p: Policy| {
        move |s: u64| {
            let a = Arena::builder("b8")
                .quantum(1)
                .span(0, SPAN)
                .tags_from(tags)
                .build()
                .expect("B8 arena");
            range_trial(&Kmem(a, p), s)
        }
    };
    let ranges: Vec<(&str, Vec<f64>)> = vec![
        ("kmem instant", trials(&kmem(Policy::InstantFit))),
        ("kmem best", trials(&kmem(Policy::BestFit))),
        (
            "vmem instant",
            trials(&|s| {
                range_trial(
                    &Vmem(
                        vmem_peer::arena("b8", 1, 1, SPAN, 8192),
                        vmem::AllocPolicy::InstantFit,
                    ),
                    s,
                )
            }),
        ),
        (
            "vmem best",
            trials(&|s| {
                range_trial(
                    &Vmem(
                        vmem_peer::arena("b8", 1, 1, SPAN, 8192),
                        vmem::AllocPolicy::BestFit,
                    ),
                    s,
                )
            }),
        ),
        (
            "vm-allocator",
            trials(&|s| range_trial(&VmAllocator::new(1, 4096, SPAN), s)),
        ),
        (
            "range-alloc",
            trials(&|s| range_trial(&RangeAllocPeer::new(4096, SPAN), s)),
        ),
        (
            "offset-allocator",
            trials(&|s| range_trial(&OffsetAlloc::new(SPAN, 1 << 16), s)),
        ),
    ];
    for (name, u) in &ranges {
        let k = median(&ranges[0].1);
        let rec = res.push(
            bench,
            "range utilisation at first failure",
            name,
            "%",
            median(u),
            u.len(),
            Some(median(u) / k),
            *name == "kmem instant",
        );
        rec.note = format!(
            "min {:.1} max {:.1}",
            u.iter().copied().fold(f64::MAX, f64::min),
            u.iter().copied().fold(f64::MIN, f64::max)
        );
    }

    let heaps: Vec<(&str, Vec<f64>)> = vec![
        (
            "kmalloc",
            trials(&|s| {
                let mut mem = vec![0u8; HEAP];
                kmalloc::boot(&mut mem, ThreadCpus::global(), &KConfig::default(), |k| {
                    heap_trial(k, s)
                })
                .expect("B8 kmalloc boot")
            }),
        ),
        (
            "talc",
            trials(&|s| {
                let mut o = Owned::new();
                let r = o.region();
                let t = Talc::new(talc::source::Manual);
                // SAFETY: the region is ours until `o` drops, after the trial.
                let claimed = unsafe { t.lock().claim(r.start as *mut u8, r.len) };
                assert!(claimed.is_some(), "talc refused");
                heap_trial(&t, s)
            }),
        ),
        (
            "linked_list",
            trials(&|s| {
                let mut o = Owned::new();
                heap_trial(&heap_peers::linked_list(o.region()), s)
            }),
        ),
        (
            "buddy",
            trials(&|s| {
                let mut o = Owned::new();
                heap_trial(&heap_peers::buddy(o.region()), s)
            }),
        ),
        (
            "rlsf",
            trials(&|s| {
                let mut o = Owned::new();
                let r = heap_peers::rlsf(o.region());
                heap_trial(&By(&r), s)
            }),
        ),
        (
            "slabmalloc",
            trials(&|s| heap_trial(&slabmalloc_peer::slabmalloc(4 << 20, HEAP - (4 << 20)), s)),
        ),
    ];
    for (name, u) in &heaps {
        let k = median(&heaps[0].1);
        res.push(
            bench,
            "heap utilisation at first failure (32 MiB)",
            name,
            "%",
            median(u),
            u.len(),
            Some(median(u) / k),
            *name == "kmalloc",
        );
    }
    res.note(
        bench.id,
        "utilisation: kmalloc's 32 MiB also hold its own boot structures (base arena, \
         bootstrap and 80 class caches); slabmalloc's 32 MiB are 4 MiB of 4 KiB pages and 28 MiB \
         of 2 MiB pages (a class that runs out of its pages fails even when another has room); \
         slabmalloc's regions are leaked per trial",
    );
}
