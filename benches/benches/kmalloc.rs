//! kmalloc benchmarks: alloc+free pairs over a mixed size distribution and
//! a churning live set of mixed sizes, kmalloc against the `mimalloc`
//! crate, glibc's `System` and talc (behind one spin lock), every
//! contender driven through `GlobalAlloc` by the same seeded trace; and the
//! quantum cache: a one-page `kpages` pair served by its quantum cache
//! against the same pair on a page arena without quantum caches (the
//! arena's segment path). Targets, results and the
//! exact command: `benches/BENCHMARKS.md`.
//!
//! Each group runs under criterion, then (unless criterion was asked to
//! `--list`, `--test` or `--profile-time`) once more with the contenders
//! interleaved round by round, printing median ns and per-round ratios.

use core::alloc::GlobalAlloc;
use core::time::Duration;
use std::alloc::System;

use criterion::{Criterion, Throughput};
use kmem_arena::Arena;
use kmem_benches::args::Args;
use kmem_benches::interleave::{self, Contender, Rounds};
use kmem_benches::mixed::{pairs, talc, with_kmalloc, Churn, Trace};
use kmem_benches::suite::b6::{pair, PlainPages};
use kmem_physmem::PAGE_SIZE;
use mimalloc::MiMalloc;

/// Memory behind kmalloc and talc each.
const HEAP: usize = 256 << 20;
const ROUNDS: usize = 31;
const BATCH_TIME: Duration = Duration::from_millis(10);
const CONTENDERS: [&str; 4] = ["kmalloc", "mimalloc", "system", "talc"];
const SEED: u64 = 0x6b6d_616c;

fn main() {
    let args = Args::from_env();
    let mut c = Criterion::default().configure_from_args();
    let trace = Trace::new(SEED);
    let tl = talc(HEAP);
    with_kmalloc(HEAP, |k| {
        if args.wants_any("kmalloc/pairs_mixed", &CONTENDERS) {
            pairs_mixed(&mut c, &args, k, tl, &trace);
        }
        if args.wants_any("kmalloc/churn_mixed", &CONTENDERS) {
            churn_mixed(&mut c, &args, k, tl, &trace);
        }
        if args.wants_any("kmalloc/qcache", &["qcache", "segment"]) {
            qcache(&mut c, &args, k.pages(), k.caches().base());
        }
    });
    c.final_summary();
}

/// Contender index of mimalloc and talc in the tables.
const MI: usize = 1;
const TALC: usize = 3;

fn print(title: &str, r: &Rounds) {
    println!("\n{title} (interleaved, {} rounds, medians)", r.ns[0].len());
    println!("| contender | ns/op | / kmalloc | / mimalloc | / talc |");
    println!("|---|---:|---:|---:|---:|");
    for (i, label) in r.labels.iter().enumerate() {
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.median_ns(i),
            r.median_ratio(i, 0),
            r.median_ratio(i, MI),
            r.median_ratio(i, TALC)
        );
    }
}

fn pairs_mixed<K: GlobalAlloc, T: GlobalAlloc>(
    c: &mut Criterion,
    args: &Args,
    k: &K,
    tl: &T,
    trace: &Trace,
) {
    let group = "kmalloc/pairs_mixed";
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    let mut at = 0;
    g.bench_function("kmalloc", |b| b.iter(|| pairs(k, trace, &mut at, 1)));
    g.bench_function("mimalloc", |b| {
        b.iter(|| pairs(&MiMalloc, trace, &mut at, 1))
    });
    g.bench_function("system", |b| b.iter(|| pairs(&System, trace, &mut at, 1)));
    g.bench_function("talc", |b| b.iter(|| pairs(tl, trace, &mut at, 1)));
    g.finish();
    if args.no_extras {
        return;
    }
    let mut ats = [0usize; 4];
    let [a0, a1, a2, a3] = &mut ats;
    let mut cs = [
        Contender::new("kmalloc", || pairs(k, trace, a0, 1)),
        Contender::new("mimalloc", || pairs(&MiMalloc, trace, a1, 1)),
        Contender::new("System (glibc)", || pairs(&System, trace, a2, 1)),
        Contender::new("talc (spin lock)", || pairs(tl, trace, a3, 1)),
    ];
    let r = interleave::run(&mut cs, ROUNDS, BATCH_TIME);
    drop(cs);
    print(
        &format!(
            "{group}: ns per alloc+free pair, sizes 8 B-8 KiB (mean {:.0} B)",
            trace.mean_size()
        ),
        &r,
    );
}

fn churn_mixed<K: GlobalAlloc, T: GlobalAlloc>(
    c: &mut Criterion,
    args: &Args,
    k: &K,
    tl: &T,
    trace: &Trace,
) {
    let group = "kmalloc/churn_mixed";
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    let mut ck = Churn::new(k, trace);
    let mut cm = Churn::new(&MiMalloc, trace);
    let mut cy = Churn::new(&System, trace);
    let mut ct = Churn::new(tl, trace);
    g.bench_function("kmalloc", |b| b.iter(|| ck.steps(k, trace, 1)));
    g.bench_function("mimalloc", |b| b.iter(|| cm.steps(&MiMalloc, trace, 1)));
    g.bench_function("system", |b| b.iter(|| cy.steps(&System, trace, 1)));
    g.bench_function("talc", |b| b.iter(|| ct.steps(tl, trace, 1)));
    g.finish();
    if !args.no_extras {
        let mut cs = [
            Contender::new("kmalloc", || ck.steps(k, trace, 1)),
            Contender::new("mimalloc", || cm.steps(&MiMalloc, trace, 1)),
            Contender::new("System (glibc)", || cy.steps(&System, trace, 1)),
            Contender::new("talc (spin lock)", || ct.steps(tl, trace, 1)),
        ];
        let r = interleave::run(&mut cs, ROUNDS, BATCH_TIME);
        drop(cs);
        print(
            &format!(
                "{group}: ns per free+alloc step, {} live objects of 8 B-8 KiB",
                kmem_benches::mixed::LIVE
            ),
            &r,
        );
    }
    ck.finish(k);
    cm.finish(&MiMalloc);
    cy.finish(&System);
    ct.finish(tl);
}

/// One-page pair on `kpages` (a quantum-cache hit) against the same pair
/// on a page arena over the same base without quantum caches.
fn qcache(c: &mut Criterion, args: &Args, kpages: &Arena<'_>, base: &Arena<'_>) {
    let group = "kmalloc/qcache";
    // Both are memory arenas (see [`pair`]); `plain` keeps a page live so
    // that the pairs do not time its span's import and release.
    let plain = PlainPages::new(base);
    let page_pair = |a: &Arena<'_>| pair(a, PAGE_SIZE);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function("qcache", |b| b.iter(|| page_pair(kpages)));
    g.bench_function("segment", |b| b.iter(|| page_pair(&plain.arena)));
    g.finish();
    if !args.no_extras {
        let mut cs = [
            Contender::new("kpages, quantum cache hit", || page_pair(kpages)),
            Contender::new("page arena, segment path", || page_pair(&plain.arena)),
        ];
        let r = interleave::run(&mut cs, ROUNDS, BATCH_TIME);
        drop(cs);
        r.print(&format!("{group}: ns per one-page alloc+free pair"), 1);
    }
    plain.destroy();
}
