//! B10, Larson (as mimalloc-bench's `larson`): T chains of short-lived
//! threads, each chain owning a live set of [`LIVE`] objects of the B2
//! trace's Pareto sizes; a thread replaces [`STEPS`] objects at random
//! slots, then starts the chain's next thread, hands it the live set and
//! exits ([`crate::handoff`]). So objects are freed by a thread other than
//! the one that allocated them, and threads start and exit all the time
//! (for kmem: a CPU slot claimed, then flushed and given back). At 1, 2, 4,
//! 16 and 64 threads (`--threads`) on whatever CPUs there are, so a 2-CPU
//! machine is oversubscribed. kmem is kmalloc in its global-allocator form
//! ([`KmallocGlobal`], a `static` of its own, called through
//! `GlobalAlloc`); the peers are mimalloc, glibc (`System`) and talc behind
//! one spin lock. A control starts and ends the same threads and, instead
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
/// Replacements per thread life.
pub const STEPS: u64 = 1 << 14;
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
        rounds: cfg.pick(5, 11),
        pairs: cfg.pick(1 << 21, 1 << 23),
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
    let mut cs = [
        Contender::new("kmalloc", |t, g| lk.run(&KMALLOC, t, g, STEPS)),
        Contender::new("mimalloc", |t, g| lm.run(&MiMalloc, t, g, STEPS)),
        Contender::new("System", |t, g| ls.run(&System, t, g, STEPS)),
        Contender::new("talc", |t, g| lt.run(talc, t, g, STEPS)),
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
             thread and kept across rounds; {} CPUs",
            lives.join(", "),
            res.machine.nproc
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
