//! B10, Larson (as mimalloc-bench's `larson`): T chains of short-lived
//! threads, each chain owning a live set of [`LIVE`] objects of the B2
//! trace's Pareto sizes; a thread replaces [`STEPS`] objects at random
//! slots (100 times its live set, as mimalloc-bench's `larson 5 8 1000 5000
//! 100 ...`: a life of a millisecond or more, longer than a time slice),
//! then starts the chain's next thread, hands it the live set and exits
//! ([`crate::handoff`]). So objects are freed by a thread other than the
//! one that allocated them, and threads start and exit all the time (for
//! kmem: a CPU slot claimed, then flushed and given back). At 1, 2, 4, 16
//! and 64 threads (`--threads`) on whatever CPUs there are, so a 2-CPU
//! machine is oversubscribed and its threads are preempted mid-life. kmem is kmalloc in its global-allocator form
//! ([`KmallocGlobal`], a `static` of its own, called through
//! `GlobalAlloc`); the peers are mimalloc, glibc (`System`) and talc behind
//! one spin lock (up to [`TALC_QUICK`] threads in quick mode: beyond, its
//! lock makes it tens of times slower than the others). A control starts and ends the same threads and, instead
//! of each replacement, runs a short multiply-add chain: its speedup over
//! one thread is the parallelism the machine gave (on a shared VM a
//! neighbour may hold a CPU).

use core::hint::black_box;
use std::alloc::System;

use kmalloc::KmallocGlobal;
use mimalloc::MiMalloc;

use crate::handoff::{self, chains, Contender, Handoff, Lanes, Plan};
use crate::larson::LarsonTrace;
use crate::results::{Bench, Results};
use crate::suite::b3::kmalloc_mags;
use crate::suite::Config;

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B10",
    title: "Larson (short-lived threads, cross-thread frees)",
};

/// Thread counts without `--threads`.
pub const THREADS: [usize; 5] = [1, 2, 4, 16, 64];
/// Live objects per chain.
pub const LIVE: usize = 1000;
/// Replacements per thread life: 100 times the live set.
pub const STEPS: u64 = 100 * LIVE as u64;
/// The most threads talc runs at in quick mode.
pub const TALC_QUICK: usize = 4;
/// Seed of the trace.
pub const SEED: u64 = 0x1a45_0b10;
/// The control's label.
pub const CONTROL: &str = "control (no allocator)";
/// The control's multiply-adds per replacement.
const CONTROL_MULS: u64 = 4;
/// Bytes of talc's region.
const TALC_BYTES: usize = 64 << 20;

/// kmalloc as a program's global allocator would have it (booted on its
/// first allocation, its reaper thread on), used here through `GlobalAlloc`.
static KMALLOC: KmallocGlobal = KmallocGlobal::new();

fn plan(cfg: &Config) -> Plan {
    Plan {
        rounds: cfg.pick(7, 9),
        // One thread life per chain at 64 threads in quick mode.
        pairs: cfg.pick(64, 128) * STEPS,
        steps: STEPS,
    }
}

/// Runs B10.
pub fn run(cfg: &Config, res: &mut Results) {
    let counts = cfg.threads_or(&THREADS);
    let most = *counts.iter().max().expect("thread counts");
    let trace = LarsonTrace::new(SEED, LIVE);
    let talc = crate::mixed::talc(TALC_BYTES);
    let mut lk = Lanes::new(&KMALLOC, &trace, most);
    let mut lm = Lanes::new(&MiMalloc, &trace, most);
    let mut ls = Lanes::new(&System, &trace, most);
    let mut lt = Lanes::new(talc, &trace, most);
    let mut units = vec![(); most];
    let k = KMALLOC
        .get()
        .expect("kmalloc booted by its first allocation");
    // kmalloc's magazine counters over its measurements, per thread count.
    let mut mags = vec![[0u64; 4]; counts.len()];
    let mut cs = [
        Contender::new("kmalloc", |t, g| {
            let before = kmalloc_mags(k);
            let d = lk.run(&KMALLOC, t, g, STEPS);
            let i = counts.iter().position(|&n| n == t).expect("a thread count");
            for (m, (a, b)) in mags[i].iter_mut().zip(kmalloc_mags(k).iter().zip(before)) {
                *m += a - b;
            }
            d
        }),
        Contender::new("mimalloc", |t, g| lm.run(&MiMalloc, t, g, STEPS)),
        Contender::new("System", |t, g| ls.run(&System, t, g, STEPS)),
        Contender::new("talc", |t, g| lt.run(talc, t, g, STEPS))
            .up_to(cfg.pick(TALC_QUICK, usize::MAX)),
        Contender::new(CONTROL, |t, g| {
            chains(&mut units[..t], g, &|_: &mut ()| spin(STEPS * CONTROL_MULS))
        }),
    ];
    let h = handoff::run(&mut cs, counts, &plan(cfg));
    drop(cs);
    lk.finish(&KMALLOC);
    lm.finish(&MiMalloc);
    ls.finish(&System);
    lt.finish(talc);
    record(res, &h);
    for (n, d) in counts.iter().zip(&mags) {
        let per_m = |x: u64| x as f64 * 1e6 / d[0].max(1) as f64;
        res.note(
            BENCH.id,
            format!(
                "{n} thr, kmalloc's class caches over its measurements: {:.1} % of \
                 allocations missed the CPU magazines, {:.0} depot exchanges and {:.1} \
                 contended depot locks per 10^6 allocations",
                per_m(d[0] - d[1]) / 1e4,
                per_m(d[2]),
                per_m(d[3])
            ),
        );
    }
    if counts.iter().any(|&n| n > TALC_QUICK) && !cfg.full {
        res.note(
            BENCH.id,
            format!("talc is measured up to {TALC_QUICK} threads in quick mode (--full: all)"),
        );
    }
    let cpus = kmem_magazine::ThreadCpus::global();
    let lives: Vec<String> = h
        .counts
        .iter()
        .zip(&h.generations)
        .map(|(n, g)| format!("{n}x{g}"))
        .collect();
    res.note(
        BENCH.id,
        format!(
            "{LIVE} live objects per chain, {STEPS} replacements per thread life; chains x \
             threads per chain per measurement: {}; the live sets are filled on the main \
             thread and kept across rounds; {} CPUs, so {} exclusive CPU slots for \
             kmalloc's magazines (the main thread holds one) and {} shared ones for the \
             threads beyond",
            lives.join(", "),
            res.machine.nproc,
            cpus.exclusive_slots(),
            cpus.shared_slots()
        ),
    );
}

/// `n` steps of a dependent multiply-add chain (through `black_box`, so it
/// is neither folded nor vectorised); touches no shared memory.
fn spin(n: u64) {
    let mut x = black_box(1u64);
    for _ in 0..n {
        x = black_box(x)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
    }
    black_box(x);
}

/// Records per (contender, thread count): wall ns per pair over all
/// threads, the time ratio to kmalloc's and, in the note, to glibc's, both
/// medians of per-round ratios.
fn record(res: &mut Results, h: &Handoff) {
    let sys = h.labels.iter().position(|l| l == "System").expect("glibc");
    for (w, label) in h.labels.iter().enumerate() {
        let control = label == CONTROL;
        for (t, &n) in h.counts.iter().enumerate() {
            if !h.measured(w, t) {
                continue;
            }
            let ns = crate::stats::median(&h.ns_per_pair(w, t));
            let rec = res.push(
                BENCH,
                &format!("{n} thr"),
                label,
                "ns/pair (all threads)",
                ns,
                h.wall[w][t].len(),
                (!control).then(|| h.time_ratio(w, 0, t)),
                w == 0,
            );
            rec.note = if control {
                let speedup: Vec<f64> = h
                    .ns_per_pair(w, 0)
                    .iter()
                    .zip(h.ns_per_pair(w, t))
                    .map(|(a, b)| a / b)
                    .collect();
                format!(
                    "{CONTROL_MULS} multiply-adds per pair; {:.2}x its throughput at {} thr",
                    crate::stats::median(&speedup),
                    h.counts[0]
                )
            } else {
                format!(
                    "{:.1} M pairs/s; {:.2}x glibc's time",
                    1e3 / ns,
                    h.time_ratio(w, sys, t)
                )
            };
        }
    }
}
