//! `cargo xtask bench`: the side-by-side benchmark suite in `benches/`
//! (package `kmem-benches`, binary `kmem-suite`), and optionally the
//! criterion benches.
//!
//! 1. `cargo run --profile bench -p kmem-benches --bin kmem-suite -- [--full]
//!    [--json PATH] [--report DIR] [args after --]`: B1-B10, B12-B14 against
//!    the peers, interleaved in one process; a table on the terminal, a
//!    markdown report with SVG charts (default `target/bench-report`), JSON
//!    records with `--json`. Quick by default (a few minutes here). The
//!    `bench` profile (thin LTO, one codegen unit: what `cargo bench`
//!    builds) puts kmem's inlined fast paths on the same footing as the
//!    peers' C code, which its build script compiles at `-O3` either way;
//!    plain `--release` (16 codegen units, no LTO) costs kmem's fast paths
//!    about 1.6x and the peers much less.
//! 2. With `--full` or `--criterion`: `cargo bench -p kmem-benches --bench
//!    '*'` (every criterion bench target: arena, slab, kmalloc), with short
//!    windows (`--warm-up-time 1 --measurement-time 2`) unless `--full`.
//!
//! 3. Unless filters after `--` leave it out (run it with the filter
//!    `idle`): `kmem-idle`, a program whose global allocator is kmalloc,
//!    allocates a burst of 32-byte boxes (256 MiB; 1 GiB with `--full`),
//!    frees it and idles 2 s, and prints its resident set over that time
//!    as one JSON line (it needs a process of its own).
//!
//! With `--programs`, none of that: B11 instead ([`programs`]), real
//! workloads from well-known crates (serde_json, syn, regex, std's
//! collections, rayon, crossbeam-channel) in `benches/programs`, a package
//! with its own workspace and lock file, built with `--release` three
//! times, with glibc (`System`), kmalloc and mimalloc as the
//! `#[global_allocator]`. Each workload runs 3 times per allocator (11 with
//! `--full`), the allocators interleaved: median wall time and peak
//! resident set (GNU time's `%M`, the child's `ru_maxrss`); then once per
//! allocator under callgrind at a smaller scale for its instruction count
//! (kmalloc's timed reaper thread off: `KMEM_UPKEEP_MS=0`).
//! Every run's checksum must match the others'. A markdown table with the
//! ratios to glibc and their geometric means, written with JSON records to
//! `target/bench-report/programs.{md,json}`. Arguments after `--` name
//! workloads.
//!
//! With `--malloc`, none of that either: B15 instead ([`preload`]),
//! programs of the distribution with each C malloc preloaded, measured and
//! reported the same way ([`whole`]).
//!
//! A benchmark never fails the command: targets are reported met or not.
//! (B11 and B15 fail only if a program fails or the checksums disagree.)

mod preload;
mod programs;
mod whole;

use crate::flags::BenchOpts;
use crate::shell::{Cmd, Result};

/// The benchmarks package.
const PACKAGE: &str = "kmem-benches";

/// Criterion arguments for the quick windows.
const QUICK: [&str; 4] = ["--warm-up-time", "1", "--measurement-time", "2"];

/// Runs the suite, then the criterion benches if asked.
pub(crate) fn run(opts: &BenchOpts) -> Result {
    if opts.programs {
        return programs::run(opts);
    }
    if opts.malloc {
        return preload::run(opts);
    }
    let mut suite = bench_bin("kmem-suite");
    if opts.full {
        suite = suite.arg("--full");
    }
    if let Some(json) = &opts.json {
        suite = suite.args(["--json", json.as_str()]);
    }
    if let Some(report) = &opts.report {
        suite = suite.args(["--report", report.as_str()]);
    }
    suite.args(&opts.extra).run()?;
    let filters = suite_filters(&opts.extra);
    if filters.is_empty() || filters.iter().any(|f| f.eq_ignore_ascii_case("idle")) {
        let mib = if opts.full { "1024" } else { "256" };
        bench_bin("kmem-idle").args([mib, "32", "2000"]).run()?;
    }
    if opts.full || opts.criterion {
        let mut criterion = Cmd::cargo().args(["bench", "-p", PACKAGE, "--bench", "*", "--"]);
        if !opts.full {
            criterion = criterion.args(QUICK);
        }
        criterion.run()?;
    }
    Ok(())
}

/// `cargo run` of one of the package's binaries with the `bench` profile,
/// ready for its arguments.
fn bench_bin(name: &str) -> Cmd {
    Cmd::cargo().args([
        "run",
        "--profile",
        "bench",
        "-p",
        PACKAGE,
        "--bin",
        name,
        "--",
    ])
}

/// The filters among the suite's extra arguments: the words that are not
/// flags or a flag's value (`--threads 1,2`, `--json PATH`, `--report DIR`).
fn suite_filters(extra: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut args = extra.iter();
    while let Some(a) = args.next() {
        if matches!(a.as_str(), "--threads" | "--json" | "--report") {
            args.next();
        } else if !a.starts_with('-') {
            out.push(a.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::suite_filters;

    #[test]
    fn filters_skip_flags_and_their_values() {
        let args: Vec<String> = ["--threads", "1,2", "B5", "--full", "idle"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(suite_filters(&args), ["B5", "idle"]);
        assert!(suite_filters(&[]).is_empty());
    }
}
