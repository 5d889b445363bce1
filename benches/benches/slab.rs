//! Slab and magazine benchmarks: a kmem cache of 64-byte objects (magazines
//! on, and `NOMAGAZINE` as the ablation) against the `mimalloc` crate and
//! `std`'s `System` allocator (glibc), one thread and several threads
//! sharing one cache. Targets, results and the exact command:
//! `benches/BENCHMARKS.md`.
//!
//! `slab/pair_64` and `slab/lifo_1000` run under criterion (medians in
//! `target/criterion/`), then, unless criterion was asked to `--list`,
//! `--test` or `--profile-time`, once more with the contenders interleaved
//! round by round, printing the per-round ratios the targets are stated in.
//! `slab/threads` is not a criterion benchmark: it prints interleaved
//! throughput medians for 1 and 2 threads (`KMEM_BENCH_THREADS=1,2,4,8,16`
//! for more); under `--test` it runs one short round as a smoke test.

use core::time::Duration;
use std::alloc::System;

use criterion::{Criterion, Throughput};
use kmem_benches::args::Args;
use kmem_benches::interleave::{self, Contender, Rounds};
use kmem_benches::object::{lifo, pair, Heap};
use kmem_benches::slab_fixture::{mag_stats, mag_summary, with_caches, SlabPair};
use kmem_benches::threads::{self, Plan, Workload, BATCH, PAIRS_PER_CYCLE};
use mimalloc::MiMalloc;

/// Object size of every benchmark here.
const OBJ_SIZE: usize = 64;

/// Objects per LIFO batch.
const LIFO: usize = 1000;

/// The contenders, as named in the benchmark ids (`<group>/<contender>`).
const CONTENDERS: [&str; 4] = ["kmem", "kmem-nomag", "mimalloc", "system"];

/// Interleaved rounds per single-thread comparison, and one batch's length.
const ROUNDS: usize = 31;
const BATCH_TIME: Duration = Duration::from_millis(10);

/// Rounds of the thread-scaling comparison, and one thread's share of one
/// measurement.
const THREAD_PLAN: Plan = Plan {
    rounds: 31,
    target: Duration::from_millis(20),
};

fn main() {
    let args = Args::from_env();
    let test_mode = std::env::args().any(|a| a == "--test");
    let mut c = Criterion::default().configure_from_args();
    let mi = Heap::new(MiMalloc, OBJ_SIZE);
    let sys = Heap::new(System, OBJ_SIZE);
    with_caches(OBJ_SIZE, |k| {
        if args.wants_any("slab/pair_64", &CONTENDERS) {
            pairs(&mut c, &args, &k, &mi, &sys);
        }
        if args.wants_any("slab/lifo_1000", &CONTENDERS) {
            batches(&mut c, &args, &k, &mi, &sys);
        }
        if args.wants("slab/threads") && (test_mode || !args.no_extras) {
            scaling(&k, &mi, &sys, test_mode);
        }
    });
    c.final_summary();
}

/// One 64-byte alloc+free pair per iteration, one thread.
fn pairs(
    c: &mut Criterion,
    args: &Args,
    k: &SlabPair<'_, '_>,
    mi: &Heap<MiMalloc>,
    sys: &Heap<System>,
) {
    let group = "slab/pair_64";
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("kmem", |b| b.iter(|| pair(k.mag)));
    g.bench_function("kmem-nomag", |b| b.iter(|| pair(k.nomag)));
    g.bench_function("mimalloc", |b| b.iter(|| pair(mi)));
    g.bench_function("system", |b| b.iter(|| pair(sys)));
    g.finish();

    if !args.no_extras {
        let mut cs = [
            Contender::new("kmem", || pair(k.mag)),
            Contender::new("kmem NOMAGAZINE", || pair(k.nomag)),
            Contender::new("mimalloc", || pair(mi)),
            Contender::new("System (glibc)", || pair(sys)),
        ];
        let rounds = interleave::run(&mut cs, ROUNDS, BATCH_TIME);
        print_rounds(&format!("{group}: ns per alloc+free pair"), &rounds, 1.0);
    }
}

/// [`LIFO`] allocations, then their frees newest first, per iteration.
fn batches(
    c: &mut Criterion,
    args: &Args,
    k: &SlabPair<'_, '_>,
    mi: &Heap<MiMalloc>,
    sys: &Heap<System>,
) {
    let group = "slab/lifo_1000";
    let before = mag_stats(k.mag);
    let mut held = vec![0usize; LIFO];
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(LIFO as u64));
    g.bench_function("kmem", |b| b.iter(|| lifo(k.mag, &mut held)));
    g.bench_function("kmem-nomag", |b| b.iter(|| lifo(k.nomag, &mut held)));
    g.bench_function("mimalloc", |b| b.iter(|| lifo(mi, &mut held)));
    g.bench_function("system", |b| b.iter(|| lifo(sys, &mut held)));
    g.finish();

    if !args.no_extras {
        let mut h = [
            vec![0usize; LIFO],
            vec![0; LIFO],
            vec![0; LIFO],
            vec![0; LIFO],
        ];
        let [h0, h1, h2, h3] = &mut h;
        let mut cs = [
            Contender::new("kmem", || lifo(k.mag, h0)),
            Contender::new("kmem NOMAGAZINE", || lifo(k.nomag, h1)),
            Contender::new("mimalloc", || lifo(mi, h2)),
            Contender::new("System (glibc)", || lifo(sys, h3)),
        ];
        let rounds = interleave::run(&mut cs, ROUNDS, BATCH_TIME);
        print_rounds(
            &format!("{group}: ns per alloc+free pair (batch time / {LIFO})"),
            &rounds,
            LIFO as f64,
        );
        let after = mag_stats(k.mag);
        let ops = after.cpu_allocs - before.cpu_allocs;
        println!(
            "{group}: kmem magazines: {}",
            mag_summary(&before, &after, ops)
        );
    }
}

/// Prints an interleaved comparison whose contenders are kmem, kmem
/// `NOMAGAZINE`, mimalloc and System, in that order: median ns per pair
/// (ns per operation / `per_op`) and median per-round ratios to mimalloc
/// and System.
fn print_rounds(title: &str, r: &Rounds, per_op: f64) {
    let (mi, sys) = (2, 3);
    println!("\n{title} (interleaved, {} rounds, medians)", r.ns[0].len());
    println!("| contender | ns/pair | / mimalloc | / System |");
    println!("|---|---:|---:|---:|");
    for (i, label) in r.labels.iter().enumerate() {
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} |",
            r.median_ns(i) / per_op,
            r.median_ratio(i, mi),
            r.median_ratio(i, sys)
        );
    }
}

/// Throughput of 1, 2, ... threads on one shared allocator.
fn scaling(k: &SlabPair<'_, '_>, mi: &Heap<MiMalloc>, sys: &Heap<System>, smoke: bool) {
    let counts = if smoke {
        vec![1, 2]
    } else {
        threads::thread_counts()
    };
    let plan = if smoke {
        Plan {
            rounds: 1,
            target: Duration::from_millis(1),
        }
    } else {
        THREAD_PLAN
    };
    let loads: [Workload<'_>; 5] = [
        Workload::new("kmem", k.mag),
        Workload::new("kmem NOMAGAZINE", k.nomag),
        Workload::new("mimalloc", mi),
        Workload::new("System (glibc)", sys),
        Workload::control("control (no allocator)"),
    ];
    let before = mag_stats(k.mag);
    let s = threads::run(&loads, &counts, plan);
    let after = mag_stats(k.mag);
    if smoke {
        println!("slab/threads: smoke run ok ({counts:?} threads)");
        return;
    }
    s.print(
        &format!(
            "slab/threads: one shared allocator, per thread {PAIRS_PER_CYCLE} pairs + a LIFO batch \
             of {BATCH} per cycle, {:?} threads",
            counts
        ),
        2,
    );
    println!(
        "slab/threads: cycles per thread per measurement: {}",
        s.labels
            .iter()
            .zip(&s.cycles)
            .map(|(l, n)| format!("{l} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Calibration and the warm-up round ran too; the counters cover them.
    println!(
        "slab/threads: kmem magazines (whole pass incl. warm-up): {}",
        mag_summary(&before, &after, after.cpu_allocs - before.cpu_allocs)
    );
}
