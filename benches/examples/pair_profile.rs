//! Runs one arena workload in a loop for instruction-count profiling
//! (`valgrind --tool=callgrind`): `same` allocates one quantum from a large
//! free segment and frees it at once, with 10^4 live segments around; `hole`
//! fills and frees a one-unit hole among them.
//!
//! `cache` and `mimalloc` run 64-byte object pairs through a kmem cache
//! (magazines on, one exclusive CPU slot) and through mimalloc, the same
//! `ObjectAlloc` driver as the slab bench; run each with two counts and
//! divide the difference in instructions by the difference in pairs.
//!
//! `kmalloc64` runs 64-byte pairs through kmalloc's `GlobalAlloc` (the
//! facade's fast path on top of the cache's).
//!
//! `churn` and `churn-mimalloc` replace objects of a 1024-object live set
//! of mixed sizes (the kmalloc bench's churn workload) through kmalloc and
//! mimalloc.
//!
//! `replace N LIVE` is B2-like: `LIVE` objects of 8 B to 1 KiB through
//! kmalloc's `GlobalAlloc`, then `N` steps each freeing a random one and
//! allocating a replacement (run under `--cache-sim=yes` to count the
//! cache misses a free costs).
//!
//! `metadata` instead measures the memory an ID arena takes from its tag
//! arena (tag pages and hash tables) per live segment, at 10^3..10^6 live
//! segments fragmented so every one is a separate segment.
//!
//! ```sh
//! cargo build --release -p kmem-benches --example pair_profile
//! valgrind --tool=callgrind target/release/examples/pair_profile same 100000
//! valgrind --tool=callgrind target/release/examples/pair_profile cache 1000000
//! target/release/examples/pair_profile metadata
//! ```

use kmem_arena::{Arena, Policy};
use kmem_benches::mixed::{with_kmalloc, Churn, Trace};
use kmem_benches::object::{pair, Heap};
use kmem_benches::slab_fixture::with_caches;
use kmem_benches::suite::b8::metadata_per_segment;
use kmem_physmem::{PhysMem, PAGE_SIZE};

/// Prints the tag arena's bytes per live segment of an ID arena, with the
/// live segments packed (contiguous) and fragmented (a free segment between
/// each two, so the arena holds two tags per live segment): the measurement
/// B8 of `kmem-suite` reports.
fn metadata() {
    println!("| live segments | layout | bytes per live segment |");
    println!("|---:|---|---:|");
    for live in [1_000usize, 10_000, 100_000, 1_000_000] {
        for fragmented in [false, true] {
            let layout = if fragmented { "fragmented" } else { "packed" };
            let per = metadata_per_segment(live, fragmented);
            println!("| {live} | {layout} | {per:.1} |");
        }
    }
}

/// Debug mode's cost: `debug-cache PARTS N` runs 64-byte pairs through a
/// kmem cache with the debug parts `PARTS` (a `KMEM_DEBUG` spec: `1`,
/// `checks`, `redzone`, `poison`, `audit`, `0` for none), and
/// `debug-churn PARTS N` the churn workload through kmalloc booted with
/// them.
fn debug(what: &str, parts: &str, n: Option<String>) {
    let n: usize = n.and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let flags = kmalloc::debug_flags(parts).expect("a KMEM_DEBUG spec");
    match what {
        "cache" => {
            let ram = PhysMem::new(64 << 20);
            kmem_physmem::boot(&ram, |base, kpages| {
                let caches = kmem_slab::Caches::new(base, kmem_magazine::ThreadCpus::global())
                    .expect("caches");
                let c = caches
                    .create(
                        kmem_slab::CacheBuilder::new("obj64", 64)
                            .flags(flags)
                            .source(kpages),
                    )
                    .expect("cache");
                for _ in 0..n {
                    let o = c.alloc(kmem_slab::AllocFlags::empty()).expect("alloc");
                    // SAFETY: just allocated, freed once.
                    unsafe { c.free(core::hint::black_box(o)) }.expect("free");
                }
                assert_eq!(c.stats().reports, 0);
                c.destroy().expect("destroy");
            });
        }
        "churn" => {
            let trace = Trace::new(0x6b6d_616c);
            let mut mem = vec![0u8; 256 << 20];
            let config = kmalloc::Config {
                debug: flags,
                ..kmalloc::Config::default()
            };
            kmalloc::boot(
                &mut mem,
                kmem_magazine::ThreadCpus::global(),
                &config,
                |k| {
                    let mut c = Churn::new(k, &trace);
                    c.steps(k, &trace, n as u64);
                    c.finish(k);
                },
            )
            .expect("boot");
        }
        other => panic!("unknown debug mode {other}"),
    }
    println!("debug-{what} {parts}: {n}");
}

/// B2-like: `live` objects of 8..=1024 bytes (half of them up to 128),
/// then `n` steps that each free a random one and allocate a replacement,
/// through kmalloc's `GlobalAlloc`.
fn replace(live: usize, n: usize) {
    use core::alloc::{GlobalAlloc, Layout};
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let size = |r: u64| {
        let s = if r.is_multiple_of(2) {
            8 + r % 121
        } else {
            129 + r % 896
        };
        Layout::from_size_align(s as usize, 8).unwrap()
    };
    with_kmalloc(512 << 20, |k| {
        // SAFETY: every block is allocated with its layout and freed once.
        unsafe {
            let mut held: Vec<(*mut u8, Layout)> = (0..live)
                .map(|_| {
                    let l = size(next());
                    (GlobalAlloc::alloc(k, l), l)
                })
                .collect();
            for _ in 0..n {
                let i = (next() % live as u64) as usize;
                let (p, l) = held[i];
                GlobalAlloc::dealloc(k, p, l);
                let l = size(next());
                held[i] = (GlobalAlloc::alloc(k, l), l);
            }
            for (p, l) in held {
                GlobalAlloc::dealloc(k, p, l);
            }
        }
    });
    println!("replace: {live} live, {n} steps");
}

/// slab_test-like bursts through kmalloc's `GlobalAlloc`: `n` objects of
/// 64 bytes allocated, then all freed, in rounds of 10^4.
fn burst(n: usize) {
    use core::alloc::{GlobalAlloc, Layout};
    let l = Layout::from_size_align(64, 8).unwrap();
    with_kmalloc(512 << 20, |k| {
        let mut held = vec![core::ptr::null_mut::<u8>(); 10_000];
        for _ in 0..n / held.len() {
            // SAFETY: every block is allocated with `l` and freed once.
            unsafe {
                for p in &mut held {
                    *p = GlobalAlloc::alloc(k, l);
                }
                for &p in &held {
                    GlobalAlloc::dealloc(k, p, l);
                }
            }
        }
    });
    println!("burst: {n} objects");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "same".into());
    if mode == "metadata" {
        metadata();
        return;
    }
    if let Some(parts) = mode.strip_prefix("debug-") {
        debug(parts, args.next().as_deref().unwrap_or(""), args.next());
        return;
    }
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    if mode == "burst" {
        burst(n);
        return;
    }
    if mode == "replace" {
        let live: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
        replace(live, n);
        return;
    }
    match mode.as_str() {
        "cache" => {
            with_caches(64, |k| (0..n).for_each(|_| pair(k.mag)));
            println!("cache: {n} pairs");
            return;
        }
        "churn" | "churn-mimalloc" => {
            let trace = Trace::new(0x6b6d_616c);
            if mode == "churn" {
                with_kmalloc(256 << 20, |k| {
                    let mut c = Churn::new(k, &trace);
                    c.steps(k, &trace, n as u64);
                    c.finish(k);
                });
            } else {
                let mut c = Churn::new(&mimalloc::MiMalloc, &trace);
                c.steps(&mimalloc::MiMalloc, &trace, n as u64);
                c.finish(&mimalloc::MiMalloc);
            }
            println!("{mode}: {n} steps");
            return;
        }
        "kmalloc64" => {
            /// `GlobalAlloc` through a reference to a booted kmalloc.
            struct K<'k, 'a>(&'k kmalloc::Kmalloc<'a, kmem_magazine::ThreadCpus>);
            // SAFETY: forwards to kmalloc's own `GlobalAlloc`.
            unsafe impl core::alloc::GlobalAlloc for K<'_, '_> {
                unsafe fn alloc(&self, l: core::alloc::Layout) -> *mut u8 {
                    // SAFETY: forwarded.
                    unsafe { core::alloc::GlobalAlloc::alloc(self.0, l) }
                }
                unsafe fn dealloc(&self, p: *mut u8, l: core::alloc::Layout) {
                    // SAFETY: forwarded.
                    unsafe { core::alloc::GlobalAlloc::dealloc(self.0, p, l) }
                }
            }
            with_kmalloc(64 << 20, |k| {
                let h = Heap::new(K(k), 64);
                (0..n).for_each(|_| pair(&h));
            });
            println!("kmalloc64: {n} pairs");
            return;
        }
        "mimalloc" => {
            let mi = Heap::new(mimalloc::MiMalloc, 64);
            (0..n).for_each(|_| pair(&mi));
            println!("mimalloc: {n} pairs");
            return;
        }
        _ => {}
    }
    let ram = PhysMem::new(64 << 20);
    let base = ram.base_arena("base", PAGE_SIZE);
    let ids = Arena::builder("ids")
        .quantum(1)
        .span(1 << 32, 1 << 40)
        .tags_from(&base)
        .build()
        .unwrap();
    let live: Vec<usize> = (0..10_000)
        .map(|_| ids.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    match mode.as_str() {
        "same" => {
            for _ in 0..n {
                let a = ids.alloc(1, Policy::InstantFit).unwrap();
                ids.free(a, 1).unwrap();
            }
        }
        "hole" => {
            ids.free(live[5000], 1).unwrap();
            for _ in 0..n {
                let a = ids.alloc(1, Policy::InstantFit).unwrap();
                ids.free(a, 1).unwrap();
            }
            ids.alloc(1, Policy::InstantFit).unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
    ids.check().unwrap();
    println!("{mode}: {n} pairs, {} live", live.len());
}
