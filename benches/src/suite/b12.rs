//! B12, the range-allocation tests of Linux's `lib/test_vmalloc.c` ported
//! to range allocators, with pages as units: `fix_size` (3 pages),
//! `full_fit` (1-page requests into 1-page holes left between 16 live
//! pages), `long_busy_list` (1-page pairs beside 15 000 live pages),
//! `random_size` (1-100 pages), `fix_align` (5 pages aligned to 8, Linux's
//! `THREAD_ALIGN << 1`), `random_size_align` (1-4 pages aligned to 2^1 to
//! 2^11 pages) and `align_shift` (one page at every alignment 2^0..2^63,
//! where the large ones cannot be met: they must fail cleanly, with no
//! panic). Each test runs on 1 and 2 threads sharing one allocator; ns per
//! operation (an allocation and its free) over the whole run, median of the
//! rounds. kmem is an arena of quantum 1 (instant fit; `xalloc` for
//! aligned requests); the peers run the tests they can express (vmem's
//! arena cannot be shared between threads: 1 thread only; vm-allocator
//! skips `long_busy_list`, linear in live ranges).

use std::time::Instant;

use kmem_arena::Arena;
use kmem_physmem::{PhysMem, Rng, PAGE_SIZE};

use crate::fitcheck::Req;
use crate::range_alloc_peer::RangeAllocPeer;
use crate::range_peers::OffsetAlloc;
use crate::results::{Bench, Results};
use crate::stats::median;
use crate::suite::b7::{guarded, XAlloc};
use crate::suite::Config;
use crate::vm_allocator_peer::VmAllocator;
use crate::vmem_peer;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B12",
    title: "test_vmalloc range tests (1 and 2 threads)",
};

/// The span, in pages.
const BASE: usize = 1 << 20;
const LEN: usize = 1 << 24;

/// One test: its name, whether it asks for alignment, and its body
/// (`loops` operations on `x` from one thread); returns the operations done
/// and the allocations refused.
struct Test {
    name: &'static str,
    aligned: bool,
    run: fn(&dyn XAlloc, usize, u64) -> (u64, u64),
}

fn alloc(x: &dyn XAlloc, size: usize, align: usize) -> Option<usize> {
    let r = Req {
        align,
        ..Req::anywhere(size)
    };
    x.xalloc(&r)
}

/// `loops` pairs of `size` pages aligned to `align(rng)`.
fn pairs(
    x: &dyn XAlloc,
    loops: usize,
    seed: u64,
    mut size_align: impl FnMut(&mut Rng) -> (usize, usize),
) -> (u64, u64) {
    let mut rng = Rng::new(seed);
    let mut refused = 0;
    for _ in 0..loops {
        let (size, align) = size_align(&mut rng);
        match alloc(x, size, align) {
            Some(a) => {
                x.xfree(a, size);
            }
            None => refused += 1,
        }
    }
    (loops as u64, refused)
}

fn fix_size(x: &dyn XAlloc, loops: usize, seed: u64) -> (u64, u64) {
    pairs(x, loops, seed, |_| (3, 1))
}

fn full_fit(x: &dyn XAlloc, loops: usize, seed: u64) -> (u64, u64) {
    const JUNK: usize = 16;
    let mut held = Vec::new();
    let mut junk = Vec::new();
    for _ in 0..JUNK {
        held.extend(alloc(x, 1, 1));
        junk.extend(alloc(x, 1, 1));
    }
    for j in junk {
        x.xfree(j, 1);
    }
    let r = pairs(x, loops, seed, |_| (1, 1));
    for h in held {
        x.xfree(h, 1);
    }
    r
}

fn long_busy_list(x: &dyn XAlloc, loops: usize, seed: u64) -> (u64, u64) {
    let busy: Vec<usize> = (0..15_000).filter_map(|_| alloc(x, 1, 1)).collect();
    let r = pairs(x, loops, seed, |_| (1, 1));
    for b in busy {
        x.xfree(b, 1);
    }
    r
}

fn random_size(x: &dyn XAlloc, loops: usize, seed: u64) -> (u64, u64) {
    pairs(x, loops, seed, |rng| (rng.range(1, 100), 1))
}

fn fix_align(x: &dyn XAlloc, loops: usize, seed: u64) -> (u64, u64) {
    pairs(x, loops, seed, |_| (5, 8))
}

fn random_size_align(x: &dyn XAlloc, loops: usize, seed: u64) -> (u64, u64) {
    pairs(x, loops, seed, |rng| {
        (rng.range(1, 4), 1 << rng.range(1, 11))
    })
}

/// Every alignment 2^0..2^63 (in rounds of 64), one page each; only the
/// ones the span can hold can succeed.
fn align_shift(x: &dyn XAlloc, loops: usize, _seed: u64) -> (u64, u64) {
    let mut refused = 0;
    let mut ops = 0;
    for round in 0..loops.div_ceil(64) {
        for shift in 0..usize::BITS {
            if round * 64 + shift as usize >= loops.max(64) {
                break;
            }
            ops += 1;
            match alloc(x, 1, 1 << shift) {
                Some(a) => {
                    x.xfree(a, 1);
                }
                None => refused += 1,
            }
        }
    }
    (ops, refused)
}

const TESTS: [Test; 7] = [
    Test {
        name: "fix_size",
        aligned: false,
        run: fix_size,
    },
    Test {
        name: "full_fit",
        aligned: false,
        run: full_fit,
    },
    Test {
        name: "long_busy_list",
        aligned: false,
        run: long_busy_list,
    },
    Test {
        name: "random_size",
        aligned: false,
        run: random_size,
    },
    Test {
        name: "fix_align",
        aligned: true,
        run: fix_align,
    },
    Test {
        name: "random_size_align",
        aligned: true,
        run: random_size_align,
    },
    Test {
        name: "align_shift",
        aligned: true,
        run: align_shift,
    },
];

/// Runs `t` on `threads` threads sharing `x`: ns per operation, and the
/// allocations refused.
fn timed(x: &(dyn XAlloc + Sync), t: &Test, threads: usize, loops: usize) -> (f64, u64) {
    let start = Instant::now();
    let (ops, refused) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|i| s.spawn(move || (t.run)(x, loops, 0xb12 + i as u64)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("B12 worker"))
            .fold((0, 0), |(o, r), (a, b)| (o + a, r + b))
    });
    (
        start.elapsed().as_nanos() as f64 / ops.max(1) as f64,
        refused,
    )
}

/// [`timed`] on the calling thread alone, for an allocator that cannot be
/// shared (vmem's arena).
fn timed_here(x: &dyn XAlloc, t: &Test, loops: usize) -> (f64, u64) {
    let start = Instant::now();
    let (ops, refused) = (t.run)(x, loops, 0xb12);
    (
        start.elapsed().as_nanos() as f64 / ops.max(1) as f64,
        refused,
    )
}

/// How a contender is made: shareable between threads, or not.
enum Maker<'m> {
    Shared(Box<dyn Fn() -> Box<dyn XAlloc + Sync + 'm> + 'm>),
    Local(Box<dyn Fn() -> Box<dyn XAlloc + 'm> + 'm>),
}

/// Runs B12.
pub fn run(cfg: &Config, res: &mut Results) {
    let ram = PhysMem::new(64 << 20);
    let tags = ram.base_arena("tags", PAGE_SIZE);
    let loops = cfg.pick(20_000, 200_000);
    let rounds = cfg.pick(5, 9);
    let kmem = || {
        Arena::builder("b12")
            .quantum(1)
            .span(BASE, LEN)
            .tags_from(&tags)
            .build()
            .expect("B12: kmem arena")
    };
    let contenders: Vec<(&str, bool, Maker<'_>)> = vec![
        ("kmem", true, Maker::Shared(Box::new(|| Box::new(kmem())))),
        (
            "vmem",
            true,
            Maker::Local(Box::new(|| {
                Box::new(vmem_peer::arena("b12", 1, BASE, LEN, 1 << 16))
            })),
        ),
        (
            "vm-allocator",
            true,
            Maker::Shared(Box::new(|| Box::new(VmAllocator::new(1, BASE, LEN)))),
        ),
        (
            "range-alloc",
            true,
            Maker::Shared(Box::new(|| Box::new(RangeAllocPeer::new(BASE, LEN)))),
        ),
        (
            "offset-allocator",
            false,
            Maker::Shared(Box::new(|| Box::new(OffsetAlloc::new(LEN, 1 << 16)))),
        ),
    ];
    for t in &TESTS {
        for threads in [1, 2] {
            let param = format!("{} x{threads}", t.name);
            for (name, aligns, make) in &contenders {
                if t.aligned && !aligns {
                    continue;
                }
                if threads > 1 && matches!(make, Maker::Local(_)) {
                    continue;
                }
                // vm-allocator walks its ranges linearly: 15 000 live ones
                // take it minutes.
                if t.name == "long_busy_list" && *name == "vm-allocator" {
                    continue;
                }
                let mut times = Vec::new();
                let mut refused = 0;
                let mut panicked = None;
                for _ in 0..rounds {
                    let got = guarded(|| match make {
                        Maker::Shared(m) => timed(&*m(), t, threads, loops),
                        Maker::Local(m) => timed_here(&*m(), t, loops),
                    });
                    match got {
                        Ok((ns, r)) => {
                            times.push(ns);
                            refused = refused.max(r);
                        }
                        Err(msg) => {
                            panicked = Some(msg);
                            break;
                        }
                    }
                }
                let kmem = *name == "kmem";
                let value = if panicked.is_some() {
                    f64::NAN
                } else {
                    median(&times)
                };
                let rec = res.push(BENCH, &param, name, "ns/op", value, times.len(), None, kmem);
                rec.note = match panicked {
                    Some(msg) => format!("panicked: {msg}"),
                    None if refused > 0 => format!("{refused} allocations refused in a round"),
                    None => String::new(),
                };
            }
        }
    }
}
