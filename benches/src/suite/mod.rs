//! The side-by-side suite (`kmem-suite`): B1-B10, B12, B13 and B14 of the project's
//! performance anchors, every contender driven through one thin trait by
//! the same seeded trace, ratios taken in one process by interleaving the
//! contenders round by round. [`run`] measures; [`crate::report`] writes
//! the JSON and markdown; [`targets`] reads the project's targets
//! off the records.

pub mod b1;
pub mod b10;
pub mod b12;
pub mod b13;
pub mod b14;
pub mod b2;
pub mod b3;
pub mod b4;
pub mod b5;
pub mod b6;
pub mod b7;
pub mod b8;
pub mod b8_util;
pub mod b9;
pub mod cli;
pub mod footprint;
pub mod stack;
pub mod targets;

pub use cli::Config;

use std::time::Instant;

use crate::machine::{CpuTicks, Machine};
use crate::results::Results;

/// Runs every selected benchmark.
pub fn run(cfg: &Config) -> Results {
    let mut res = Results::new(Machine::detect(), cfg.mode());
    println!(
        "kmem-suite ({} mode): {}",
        cfg.mode(),
        res.machine.summary()
    );
    let object = [
        (
            b1::BENCH,
            b1::run as fn(&Config, &stack::Stack<'_, '_, '_>, &mut Results),
        ),
        (b2::BENCH, b2::run),
        (b3::BENCH, b3::run),
        (b4::BENCH, b4::run),
        (b6::BENCH, b6::run),
        (b14::BENCH, b14::run),
    ];
    if object.iter().any(|(b, _)| cfg.wants(b.id, b.title)) {
        let peers = stack::Peers::new();
        stack::with_stack(&peers, |s| {
            for (b, f) in object {
                if cfg.wants(b.id, b.title) {
                    timed(&mut res, b.id, |res| f(cfg, s, res));
                }
            }
        });
    }
    let standalone = [
        (b5::BENCH, b5::run as fn(&Config, &mut Results)),
        (b7::BENCH, b7::run),
        (b8::BENCH, b8::run),
        (b9::BENCH, b9::run),
        (b10::BENCH, b10::run),
        (b12::BENCH, b12::run),
        (b13::BENCH, b13::run),
    ];
    for (b, f) in standalone {
        if cfg.wants(b.id, b.title) {
            timed(&mut res, b.id, |res| f(cfg, res));
        }
    }
    res.records.sort_by_key(|r| r.bench);
    targets::evaluate(&mut res);
    res
}

/// The report's charts: file name, title, chart.
pub fn charts(res: &Results) -> Vec<(&'static str, &'static str, crate::svg::LineChart)> {
    use crate::report::{chart_from, line_chart};
    let mut out = Vec::new();
    let b5 = chart_from(res, "B5", "ns/pair", |p| {
        let f = p.strip_prefix("F=")?;
        let x = match f.strip_prefix("10^") {
            Some(k) => 10f64.powi(k.parse().ok()?),
            None => f.parse().ok()?,
        };
        Some((x, String::new()))
    });
    if !b5.is_empty() {
        out.push((
            "b5-latency.svg",
            "B5: 2-unit alloc+free pair against free segments",
            line_chart(
                "B5: alloc+free pair vs free segments (log-log)",
                "free segments F",
                "ns per pair (median)",
                true,
                true,
                b5,
            ),
        ));
    }
    for (prefix, file, title) in [
        (
            "B1 64 B, ",
            "b3-scaling-b1.svg",
            "B3: 64-byte pairs, threads sharing one allocator",
        ),
        (
            "B2 10^4 replace, ",
            "b3-scaling-b2.svg",
            "B3: 10^4-object working set per thread",
        ),
    ] {
        let mut series = chart_from(res, "B3", "ns/pair (all threads)", |p| {
            let n = p.strip_prefix(prefix)?.strip_suffix(" thr")?.parse().ok()?;
            Some((n, String::new()))
        });
        for s in &mut series {
            for pt in &mut s.points {
                pt.1 = 1e3 / pt.1;
            }
        }
        if !series.is_empty() {
            out.push((
                file,
                title,
                line_chart(
                    title,
                    "threads",
                    "M pairs/s, all threads (median)",
                    false,
                    false,
                    series,
                ),
            ));
        }
    }
    out
}

/// Runs one benchmark, prints its table, how long it took and how much
/// CPU other processes took meanwhile (recorded as a note: the noise).
fn timed(res: &mut Results, id: &'static str, f: impl FnOnce(&mut Results)) {
    let from = res.records.len();
    let t = Instant::now();
    let ticks = CpuTicks::now();
    f(res);
    let others = CpuTicks::now().others_since(&ticks);
    let wall = t.elapsed().as_secs_f64();
    res.print_since(from);
    println!("({id} took {wall:.1} s)");
    res.note(
        id,
        format!(
            "other processes used {others:.1} CPU-s during this benchmark's {wall:.1} s \
             ({:.0} % of one CPU)",
            others / wall * 100.0
        ),
    );
}
