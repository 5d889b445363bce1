//! Arena benchmarks: instant fit against fragmentation, and kmem against the
//! `vmem`, `vm-allocator` and `range-alloc` crates at 10^4 live segments.
//! Targets, results and the exact command: `benches/BENCHMARKS.md`.
//!
//! Each group runs under criterion (medians in `target/criterion/`), then,
//! unless criterion was asked to `--list`, `--test` or `--profile-time`,
//! once more with its contenders interleaved round by round, printing the
//! per-round ratios that the targets are stated in.

use core::time::Duration;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use kmem_benches::args::Args;
use kmem_benches::contender::{fill, pair, replace, RangeAlloc};
use kmem_benches::fixture::{
    id_arena, tag_memory_bytes, Fragmented, PAGE_QUANTUM, SPACE_BASE, SPACE_SIZE,
};
use kmem_benches::interleave::{self, Contender};
use kmem_benches::range_alloc_peer::RangeAllocPeer;
use kmem_benches::trace::IndexTrace;
use kmem_benches::vm_allocator_peer::VmAllocator;
use kmem_benches::vmem_peer;
use kmem_physmem::{PhysMem, PAGE_SIZE};

/// Free-segment counts of the fragmentation sweep.
const FREE_SEGMENTS: [usize; 4] = [1, 1_000, 100_000, 1_000_000];

/// Live segments of the comparison with the peers.
const LIVE: usize = 10_000;

/// The contenders of the peer groups, as named in their benchmark ids
/// (`<group>/<contender>/<variant>`).
const PEERS: [&str; 4] = ["kmem", "vmem", "vm-allocator", "range-alloc"];

/// log2 of the index trace's length (2^16 indices, reused cyclically).
const TRACE_LOG2: u32 = 16;

/// Interleaved rounds per comparison, and the length of one batch.
const ROUNDS: usize = 31;
const BATCH: Duration = Duration::from_millis(10);

fn main() {
    let args = Args::from_env();
    let mut c = Criterion::default().configure_from_args();
    if args.wants("instant_fit_flat") {
        instant_fit(&mut c, &args, "instant_fit_flat", 1);
    }
    if args.wants("instant_fit_split") {
        instant_fit(&mut c, &args, "instant_fit_split", 2);
    }
    for (group, quantum) in [
        ("peers_10k_live", 1),
        ("peers_10k_live_pages", PAGE_QUANTUM),
    ] {
        if args.wants_any(group, &PEERS) {
            peers(&mut c, &args, group, quantum);
        }
    }
    c.final_summary();
}

/// Instant-fit alloc+free of one quantum in arenas holding F holes of
/// `hole` quanta (figure 4.5.1 of the paper): the time should not depend on
/// F. `hole == 1`: the pair fills a hole exactly and frees it again (the
/// `instant_fit_flat` target). `hole == 2`: the pair splits a hole and the
/// free coalesces it, so it also inserts into and removes from the
/// address-ordered tag tree.
fn instant_fit(c: &mut Criterion, args: &Args, group: &str, hole: usize) {
    let segments: usize = FREE_SEGMENTS.iter().map(|f| (hole + 1) * f + 2).sum();
    let ram = PhysMem::new(tag_memory_bytes(segments));
    let base = ram.base_arena("tags", PAGE_SIZE);
    let fixtures: Vec<Fragmented<'_>> = FREE_SEGMENTS
        .iter()
        .map(|&f| {
            let t = Instant::now();
            let fx = Fragmented::new(&base, f, hole);
            eprintln!("{group}: built F = {f} in {:.2?}", t.elapsed());
            // The timed pair must use a hole, not the tail.
            let a = RangeAlloc::alloc(&fx.arena, PAGE_QUANTUM);
            assert!(fx.in_holes(a), "F = {f}: instant fit missed the holes");
            RangeAlloc::free(&fx.arena, a, PAGE_QUANTUM);
            fx
        })
        .collect();

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    for (fx, f) in fixtures.iter().zip(FREE_SEGMENTS) {
        g.bench_with_input(BenchmarkId::new("kmem", f), &fx.arena, |b, a| {
            b.iter(|| pair(a, PAGE_QUANTUM));
        });
    }
    g.finish();

    if !args.no_extras {
        let mut contenders: Vec<Contender<'_>> = fixtures
            .iter()
            .zip(FREE_SEGMENTS)
            .map(|(fx, f)| Contender::new(format!("kmem F={f}"), || pair(&fx.arena, PAGE_QUANTUM)))
            .collect();
        let rounds = interleave::run(&mut contenders, ROUNDS, BATCH);
        rounds.print(&format!("{group}: ns per alloc+free pair"), 0);
        println!(
            "{group}: slowest/fastest F, median per round: {:.2}",
            rounds.median_spread()
        );
    }
    for fx in &fixtures {
        fx.arena
            .check()
            .expect("fixture inconsistent after the run");
    }
}

/// kmem against its peers at [`LIVE`] live segments of one `quantum`:
/// vmem 1.0, vm-allocator 0.1 and range-alloc 0.1, each behind the same
/// `spin::Mutex` and driven through [`RangeAlloc`]. `same` allocates and
/// frees at once; `random` allocates a new segment and frees a random live
/// one (the same pre-generated index trace for every contender).
fn peers(c: &mut Criterion, args: &Args, group: &str, quantum: usize) {
    let ram = PhysMem::new(tag_memory_bytes(4 * LIVE));
    let base = ram.base_arena("tags", PAGE_SIZE);
    let seed = kmem_physmem::seed(0x5eed_cafe);
    let trace = || IndexTrace::new(seed, LIVE, TRACE_LOG2);

    let t = Instant::now();
    let kmem_same = id_arena("kmem-same", &base, quantum);
    let kmem_rand = id_arena("kmem-random", &base, quantum);
    let mut kmem_live = prepare(&kmem_same, &kmem_rand, quantum, seed);
    let vmem_same = vmem_peer::arena("vmem-same", quantum, SPACE_BASE, SPACE_SIZE, 4 * LIVE);
    let vmem_rand = vmem_peer::arena("vmem-random", quantum, SPACE_BASE, SPACE_SIZE, 4 * LIVE);
    let mut vmem_live = prepare(&vmem_same, &vmem_rand, quantum, seed);
    let vma_same = VmAllocator::new(quantum, SPACE_BASE, SPACE_SIZE);
    let vma_rand = VmAllocator::new(quantum, SPACE_BASE, SPACE_SIZE);
    let mut vma_live = prepare(&vma_same, &vma_rand, quantum, seed);
    let ra_same = RangeAllocPeer::new(SPACE_BASE, SPACE_SIZE);
    let ra_rand = RangeAllocPeer::new(SPACE_BASE, SPACE_SIZE);
    let mut ra_live = prepare(&ra_same, &ra_rand, quantum, seed);
    eprintln!("{group}: built and pre-warmed in {:.2?}", t.elapsed());
    kmem_same.check().expect("kmem-same inconsistent");
    kmem_rand.check().expect("kmem-random inconsistent");
    assert_eq!(kmem_rand.stats().live, LIVE);

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("kmem/same", |b| b.iter(|| pair(&kmem_same, quantum)));
    g.bench_function("vmem/same", |b| b.iter(|| pair(&vmem_same, quantum)));
    g.bench_function("vm-allocator/same", |b| {
        b.iter(|| pair(&vma_same, quantum));
    });
    g.bench_function("range-alloc/same", |b| {
        b.iter(|| pair(&ra_same, quantum));
    });
    let mut tr = trace();
    g.bench_function("kmem/random", |b| {
        b.iter(|| replace(&kmem_rand, &mut kmem_live, tr.next_index(), quantum));
    });
    let mut tr = trace();
    g.bench_function("vmem/random", |b| {
        b.iter(|| replace(&vmem_rand, &mut vmem_live, tr.next_index(), quantum));
    });
    let mut tr = trace();
    g.bench_function("vm-allocator/random", |b| {
        b.iter(|| replace(&vma_rand, &mut vma_live, tr.next_index(), quantum));
    });
    let mut tr = trace();
    g.bench_function("range-alloc/random", |b| {
        b.iter(|| replace(&ra_rand, &mut ra_live, tr.next_index(), quantum));
    });
    g.finish();

    if !args.no_extras {
        let mut same = [
            Contender::new("kmem same", || pair(&kmem_same, quantum)),
            Contender::new("vmem same", || pair(&vmem_same, quantum)),
            Contender::new("vm-allocator same", || pair(&vma_same, quantum)),
            Contender::new("range-alloc same", || pair(&ra_same, quantum)),
        ];
        interleave::run(&mut same, ROUNDS, BATCH).print(&format!("{group}/same"), 0);
        let (mut kt, mut vt, mut at, mut rt) = (trace(), trace(), trace(), trace());
        let mut random = [
            Contender::new("kmem random", || {
                replace(&kmem_rand, &mut kmem_live, kt.next_index(), quantum)
            }),
            Contender::new("vmem random", || {
                replace(&vmem_rand, &mut vmem_live, vt.next_index(), quantum)
            }),
            Contender::new("vm-allocator random", || {
                replace(&vma_rand, &mut vma_live, at.next_index(), quantum)
            }),
            Contender::new("range-alloc random", || {
                replace(&ra_rand, &mut ra_live, rt.next_index(), quantum)
            }),
        ];
        interleave::run(&mut random, ROUNDS, BATCH).print(&format!("{group}/random"), 0);
    }
    assert_eq!(kmem_rand.stats().live, LIVE);
    kmem_rand
        .check()
        .expect("kmem-random inconsistent after the run");
}

/// Fills `same` and `rand` with [`LIVE`] segments of `quantum` each, then
/// pre-warms `rand` into its steady state with 4 × [`LIVE`] untimed
/// replacements along the trace seeded with `!seed`; returns `rand`'s live
/// segments. (`same`'s live segments stay allocated for the whole run.)
fn prepare<A: RangeAlloc>(same: &A, rand: &A, quantum: usize, seed: u64) -> Vec<usize> {
    let _ = fill(same, LIVE, quantum);
    let mut live = fill(rand, LIVE, quantum);
    churn(
        rand,
        &mut live,
        &mut IndexTrace::new(!seed, LIVE, TRACE_LOG2),
        4 * LIVE,
        quantum,
    );
    live
}

/// `n` untimed replacements along `trace`.
fn churn<A: RangeAlloc>(a: &A, live: &mut [usize], trace: &mut IndexTrace, n: usize, size: usize) {
    for _ in 0..n {
        replace(a, live, trace.next_index(), size);
    }
}
