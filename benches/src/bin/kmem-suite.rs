//! `kmem-suite`: the side-by-side benchmark suite. It shows, in a few
//! minutes, how kmem compares with the allocators a Rust user picks today.
//!
//! ```sh
//! cargo run --release -p kmem-benches --bin kmem-suite -- \
//!     [--full] [--json PATH] [--report DIR] [--threads 1,2,4] [FILTER...]
//! ```
//!
//! - Quick mode by default: the whole suite in about 5 minutes on a
//!   2-core machine (the release build not counted). `--full` runs longer
//!   batches and more rounds (31 instead of 11) and larger sweeps.
//! - `FILTER` selects benchmarks by a substring of their id or title,
//!   any case: `B5`, `scaling`.
//! - `--threads` sets B3's thread counts (default `1,2,4`; 4 oversubscribes
//!   a 2-core machine on purpose) and B10's (default `1,2,4,16,64`).
//! - `--json PATH` writes one record per (benchmark, parameter,
//!   contender): median, unit, samples, ratio to kmem, and the machine
//!   (field names in `benches/BENCHMARKS.md`).
//! - `--report DIR` (default `target/bench-report`) receives `report.md`
//!   and its SVG charts (B5 latency against free segments, B3 scaling).
//!
//! The benchmarks (B1-B9 of the project's performance anchors, B10,
//! B12-B14): B1 fast path, B2 working set, B3 scaling, B4 cross-thread
//! producer/consumer, B5 vmem latency against free segments, B6 quantum
//! cache, B7 constrained xalloc, B8 memory (utilisation, metadata,
//! internal waste), B9 import chains and reap, B10 Larson (short-lived
//! threads freeing what their predecessors allocated), B12 Linux's
//! test_vmalloc range tests, B13 bounded work (the slowest single alloc,
//! xalloc and free against 10^6 free segments), B14 slab_test bursts. Every
//! table gives each contender's median and its ratio to the benchmark's
//! kmem contender; the project's targets are reported as met or
//! not met, never as a failure (the exit status is 0 whatever was
//! measured).

use std::process::ExitCode;

use kmem_benches::report;
use kmem_benches::suite::{self, Config};

fn main() -> ExitCode {
    let cfg = match Config::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return if msg == suite::cli::USAGE {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; run with --release for meaningful figures");
    }
    let start = std::time::Instant::now();
    let res = suite::run(&cfg);
    res.print_targets();
    if let Some(path) = &cfg.json {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let written = dir.map_or(Ok(()), std::fs::create_dir_all);
        match written.and_then(|()| std::fs::write(path, report::json(&res))) {
            Ok(()) => println!("\nJSON records: {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
    match report::write_dir(&res, &cfg.report) {
        Ok(p) => println!("report: {}", p.display()),
        Err(e) => eprintln!(
            "cannot write the report under {}: {e}",
            cfg.report.display()
        ),
    }
    println!(
        "kmem-suite: {} records in {:.0} s",
        res.records.len(),
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
