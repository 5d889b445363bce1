//! Arena benchmarks: instant fit against fragmentation, and kmem against the
//! `vmem` crate at 10^4 live segments. Targets: DESIGN.md section 6;
//! method: `reference/perf-reliability-anchors.md` (A4, B5) of the shared
//! design notes. Results and the exact command: `benches/BENCHMARKS.md`.
//!
//! Each group runs under criterion (medians in `target/criterion/`), then,
//! unless criterion was asked to `--list`, `--test` or `--profile-time`,
//! once more with its contenders interleaved round by round, printing the
//! per-round ratios that DESIGN.md's targets are stated in.

use core::time::Duration;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use kmem_benches::args::Args;
use kmem_benches::contender::{fill, pair, replace, RangeAlloc};
use kmem_benches::fixture::{
    id_arena, tag_memory_bytes, Fragmented, PAGE_QUANTUM, SPACE_BASE, SPACE_SIZE,
};
use kmem_benches::interleave::{self, Contender};
use kmem_benches::trace::IndexTrace;
use kmem_benches::vmem_peer;
use kmem_physmem::{PhysMem, PAGE_SIZE};

/// Free-segment counts of the fragmentation sweep.
const FREE_SEGMENTS: [usize; 4] = [1, 1_000, 100_000, 1_000_000];

/// Live segments of the kmem-vs-vmem comparison.
const LIVE: usize = 10_000;

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
    if args.wants("vs_vmem_10k_live") {
        vs_vmem(&mut c, &args, "vs_vmem_10k_live", 1);
    }
    if args.wants("vs_vmem_10k_live_pages") {
        vs_vmem(&mut c, &args, "vs_vmem_10k_live_pages", PAGE_QUANTUM);
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

/// kmem against vmem 1.0 at [`LIVE`] live segments of one `quantum`:
/// `same` allocates and frees at once; `random` allocates a new segment and
/// frees a random live one (the same index trace for both).
fn vs_vmem(c: &mut Criterion, args: &Args, group: &str, quantum: usize) {
    let ram = PhysMem::new(tag_memory_bytes(4 * LIVE));
    let base = ram.base_arena("tags", PAGE_SIZE);
    let seed = kmem_physmem::seed(0x5eed_cafe);
    let trace_log2 = 16;

    let kmem_same = id_arena("kmem-same", &base, quantum);
    let vmem_same = vmem_peer::arena("vmem-same", quantum, SPACE_BASE, SPACE_SIZE, 4 * LIVE);
    let kmem_rand = id_arena("kmem-random", &base, quantum);
    let vmem_rand = vmem_peer::arena("vmem-random", quantum, SPACE_BASE, SPACE_SIZE, 4 * LIVE);
    let _kmem_same_live = fill(&kmem_same, LIVE, quantum);
    let _vmem_same_live = fill(&vmem_same, LIVE, quantum);
    let mut kmem_live = fill(&kmem_rand, LIVE, quantum);
    let mut vmem_live = fill(&vmem_rand, LIVE, quantum);
    // Pre-warm the random case into its steady state: 4 rounds of the live set.
    let t = Instant::now();
    churn(
        &kmem_rand,
        &mut kmem_live,
        &mut IndexTrace::new(!seed, LIVE, trace_log2),
        4 * LIVE,
        quantum,
    );
    churn(
        &vmem_rand,
        &mut vmem_live,
        &mut IndexTrace::new(!seed, LIVE, trace_log2),
        4 * LIVE,
        quantum,
    );
    eprintln!("{group}: built and pre-warmed in {:.2?}", t.elapsed());
    kmem_same.check().expect("kmem-same inconsistent");
    kmem_rand.check().expect("kmem-random inconsistent");
    assert_eq!(kmem_rand.stats().live, LIVE);

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("kmem/same", |b| b.iter(|| pair(&kmem_same, quantum)));
    g.bench_function("vmem/same", |b| b.iter(|| pair(&vmem_same, quantum)));
    let mut trace = IndexTrace::new(seed, LIVE, trace_log2);
    g.bench_function("kmem/random", |b| {
        b.iter(|| replace(&kmem_rand, &mut kmem_live, trace.next_index(), quantum));
    });
    let mut trace = IndexTrace::new(seed, LIVE, trace_log2);
    g.bench_function("vmem/random", |b| {
        b.iter(|| replace(&vmem_rand, &mut vmem_live, trace.next_index(), quantum));
    });
    g.finish();

    if !args.no_extras {
        let mut same = [
            Contender::new("kmem same", || pair(&kmem_same, quantum)),
            Contender::new("vmem same", || pair(&vmem_same, quantum)),
        ];
        interleave::run(&mut same, ROUNDS, BATCH).print(&format!("{group}/same"), 0);
        let (mut kt, mut vt) = (
            IndexTrace::new(seed, LIVE, trace_log2),
            IndexTrace::new(seed, LIVE, trace_log2),
        );
        let mut random = [
            Contender::new("kmem random", || {
                replace(&kmem_rand, &mut kmem_live, kt.next_index(), quantum)
            }),
            Contender::new("vmem random", || {
                replace(&vmem_rand, &mut vmem_live, vt.next_index(), quantum)
            }),
        ];
        interleave::run(&mut random, ROUNDS, BATCH).print(&format!("{group}/random"), 0);
    }
    assert_eq!(kmem_rand.stats().live, LIVE);
    kmem_rand
        .check()
        .expect("kmem-random inconsistent after the run");
}

/// `n` untimed replacements along `trace`.
fn churn<A: RangeAlloc>(a: &A, live: &mut [usize], trace: &mut IndexTrace, n: usize, size: usize) {
    for _ in 0..n {
        replace(a, live, trace.next_index(), size);
    }
}
