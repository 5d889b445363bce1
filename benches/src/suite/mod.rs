//! The side-by-side suite (`kmem-suite`): B1-B9 of the project's
//! performance anchors, every contender driven through one thin trait by
//! the same seeded trace, ratios taken in one process by interleaving the
//! contenders round by round. [`run`] measures; [`crate::report`] writes
//! the JSON and markdown; [`targets`] reads DESIGN.md's section 6 targets
//! off the records.

pub mod b1;
pub mod b2;
pub mod cli;
pub mod footprint;
pub mod stack;

pub use cli::Config;

use std::time::Instant;

use crate::machine::Machine;
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
            b1::run as fn(&Config, &stack::Stack<'_>, &mut Results),
        ),
        (b2::BENCH, b2::run),
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
    res
}

/// The report's charts: file name, title, chart.
pub fn charts(res: &Results) -> Vec<(&'static str, &'static str, crate::svg::LineChart)> {
    let _ = res;
    Vec::new()
}

/// Runs one benchmark, prints its table and how long it took.
fn timed(res: &mut Results, id: &str, f: impl FnOnce(&mut Results)) {
    let from = res.records.len();
    let t = Instant::now();
    f(res);
    res.print_since(from);
    println!("({id} took {:.1} s)", t.elapsed().as_secs_f64());
}
