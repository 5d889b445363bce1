//! B3, scaling: B1's 64-byte workload (per thread, cycles of 48 pairs and
//! a LIFO batch of 32: `threads.rs`) and B2's replacement workload (a live
//! set of 10^4 Pareto-sized objects per thread) at 1, 2 and 4 threads
//! (`--threads`) sharing one allocator: kmem with and without magazines
//! (NOMAGAZINE), mimalloc, System and talc behind one spin lock, with the
//! allocation-free control; all interleaved round by round by
//! [`threads::run`].

use core::alloc::GlobalAlloc;
use core::time::Duration;
use std::alloc::System;

use mimalloc::MiMalloc;

use crate::heap_peers::By;
use crate::larson::{Churn, LarsonTrace};
use crate::object::Heap;
use crate::results::{Bench, Results};
use crate::slab_fixture::{mag_stats, mag_summary};
use crate::suite::stack::Stack;
use crate::suite::Config;
use crate::threads::{self, Plan, Scaling, Workload};

/// Id and title.
pub const BENCH: Bench = Bench {
    id: "B3",
    title: "scaling (threads sharing one allocator)",
};

/// Thread counts without `--threads`.
pub const THREADS: [usize; 3] = [1, 2, 4];

/// Live objects per thread of the B2 workload.
pub const LIVE: usize = 10_000;
/// Replacements per cycle of the B2 workload.
pub const STEPS: u64 = 256;

/// One worker's live set, on cache lines of its own: its cursor is written
/// on every step, and two workers' cursors on one line would slow every
/// contender alike (false sharing).
#[repr(align(128))]
struct LiveSet(spin::Mutex<Option<Churn>>);

/// Per-worker live sets of the B2 workload (each locked once per
/// measurement by its own worker, so never contended).
struct LiveSets<'t> {
    trace: &'t LarsonTrace,
    sets: Vec<LiveSet>,
}

impl<'t> LiveSets<'t> {
    fn new<A: GlobalAlloc>(a: &A, trace: &'t LarsonTrace, workers: usize) -> Self {
        let sets = (0..workers)
            .map(|_| LiveSet(spin::Mutex::new(Some(Churn::new(a, trace)))))
            .collect();
        Self { trace, sets }
    }

    fn run<A: GlobalAlloc>(&self, a: &A, worker: usize, cycles: u64) {
        let mut g = self.sets[worker].0.lock();
        g.as_mut()
            .expect("live set")
            .steps(a, self.trace, cycles * STEPS);
    }

    fn finish<A: GlobalAlloc>(self, a: &A) {
        for s in self.sets {
            s.0.into_inner().expect("live set").finish(a);
        }
    }
}

fn plan(cfg: &Config) -> Plan {
    Plan {
        rounds: cfg.pick(11, 31),
        target: Duration::from_millis(cfg.pick(10, 20)),
    }
}

/// Records per (contender, thread count): aggregate ns per pair (wall time
/// over all threads' pairs; ratio to kmem's in the same rounds), and the
/// speedup over one thread.
fn record(res: &mut Results, s: &Scaling, workload: &str, kmem: usize) {
    for (w, label) in s.labels.iter().enumerate() {
        if s.control == Some(w) {
            continue;
        }
        for (t, &n) in s.counts.iter().enumerate() {
            let tput = s.ops_per_s(w, t);
            let ns: Vec<f64> = tput.iter().map(|x| 1e9 / x).collect();
            let ratio = s.median_ratio((kmem, t), (w, t));
            res.push(
                BENCH,
                &format!("{workload}, {n} thr"),
                label,
                "ns/pair (all threads)",
                crate::stats::median(&ns),
                ns.len(),
                Some(ratio),
                w == kmem,
            );
        }
        for (t, &n) in s.counts.iter().enumerate().skip(1) {
            let rec = res.push(
                BENCH,
                &format!("{workload}, speedup {n}/{} thr", s.counts[0]),
                label,
                "x throughput",
                s.median_ratio((w, t), (w, 0)),
                s.wall[w][t].len(),
                None,
                w == kmem,
            );
            if let Some(c) = s.control {
                rec.note = format!(
                    "{:.2} of the control's speedup",
                    s.relative_speedup(w, t, c)
                );
            }
        }
    }
    if let Some(c) = s.control {
        for (t, &n) in s.counts.iter().enumerate().skip(1) {
            res.push(
                BENCH,
                &format!("{workload}, speedup {n}/{} thr", s.counts[0]),
                "control (no allocator)",
                "x throughput",
                s.median_ratio((c, t), (c, 0)),
                s.wall[c][t].len(),
                None,
                false,
            );
        }
    }
}

/// Totals over every kmalloc class cache: allocations, allocations the
/// CPU magazines served, depot exchanges, contended depot locks (B10's
/// notes too).
pub(crate) fn kmalloc_mags(k: &kmalloc::Kmalloc<'_, kmem_magazine::ThreadCpus>) -> [u64; 4] {
    let mut t = [0u64; 4];
    k.caches().for_each(|c| {
        let st = c.stats();
        if let Some(m) = st.magazines {
            t[0] += st.allocs;
            t[1] += m.cpu_allocs;
            t[2] += m.depot_not_empty_out + m.depot_empty_out;
            t[3] += m.contended;
        }
    });
    t
}

/// Runs B3.
pub fn run(cfg: &Config, s: &Stack<'_, '_, '_>, res: &mut Results) {
    let counts = cfg.threads_or(&THREADS);
    let workers = *counts.iter().max().expect("thread counts");
    let mi = Heap::new(MiMalloc, 64);
    let sys = Heap::new(System, 64);
    let talc = Heap::new(By(s.peers.talc), 64);
    let kmem = s.cache(64);
    let loads = [
        Workload::new("kmem cache", kmem),
        Workload::new("kmem NOMAGAZINE", s.nomag64),
        Workload::new("mimalloc", &mi),
        Workload::new("System", &sys),
        Workload::new("talc", &talc),
        Workload::control("control (no allocator)"),
    ];
    let before = mag_stats(kmem);
    let sc = threads::run(&loads, counts, plan(cfg));
    let after = mag_stats(kmem);
    record(res, &sc, "B1 64 B", 0);
    res.note(
        BENCH.id,
        format!(
            "B1 64 B: kmem magazines over the pass: {}; start skew {:.1} us",
            mag_summary(&before, &after, after.cpu_allocs - before.cpu_allocs),
            sc.start_skew * 1e6
        ),
    );
    drop(loads);

    let trace = LarsonTrace::new(super::b2::SEED, LIVE);
    let k = s.kmalloc;
    let tl = s.peers.talc;
    let (lk, lm, ls, lt) = (
        LiveSets::new(k, &trace, workers),
        LiveSets::new(&MiMalloc, &trace, workers),
        LiveSets::new(&System, &trace, workers),
        LiveSets::new(tl, &trace, workers),
    );
    let loads = [
        Workload::custom("kmalloc", STEPS, |w, n| lk.run(k, w, n)),
        Workload::custom("mimalloc", STEPS, |w, n| lm.run(&MiMalloc, w, n)),
        Workload::custom("System", STEPS, |w, n| ls.run(&System, w, n)),
        Workload::custom("talc", STEPS, |w, n| lt.run(tl, w, n)),
        Workload::control("control (no allocator)"),
    ];
    let before = kmalloc_mags(k);
    let sc = threads::run(&loads, counts, plan(cfg));
    let after = kmalloc_mags(k);
    drop(loads);
    record(res, &sc, "B2 10^4 replace", 0);
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let per_m = |x: u64| x as f64 * 1e6 / d[0].max(1) as f64;
    res.note(
        BENCH.id,
        format!(
            "B2 10^4 replace, kmalloc's class caches over the pass: {:.1} % of allocations \
             missed the CPU magazines, {:.0} depot exchanges and {:.1} contended depot locks \
             per 10^6 allocations",
            per_m(d[0] - d[1]) / 1e4,
            per_m(d[2]),
            per_m(d[3])
        ),
    );
    lk.finish(k);
    lm.finish(&MiMalloc);
    ls.finish(&System);
    lt.finish(tl);
    res.note(
        BENCH.id,
        "B2 10^4 replace: kmem is kmalloc, which has no NOMAGAZINE boot option, so the \
         ablation is measured on the 64-byte cache only; each thread replaces objects in its \
         own live set of 10^4 (filled on the main thread, so the first replacement of each \
         slot frees an object allocated elsewhere).",
    );
}
