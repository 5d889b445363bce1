//! `cargo xtask bench --programs`: B11, real programs.
//!
//! 1. `cargo build --release --locked --manifest-path
//!    benches/programs/Cargo.toml` three times, with no feature (glibc's
//!    malloc, `System`), `--features kmalloc` and `--features mimalloc`,
//!    into one target directory (`$CARGO_TARGET_DIR/programs`, default
//!    `target/programs`: the dependencies are built once), each binary
//!    copied aside to `bins/kmem-programs-<allocator>` there.
//! 2. `kmem-programs list` names the workloads and their scales; the
//!    arguments after `--` may pick some of them.
//! 3. Each workload at its default scale, [`QUICK_RUNS`] times per
//!    allocator ([`FULL_RUNS`] with `--full`), the allocators in a rotating
//!    order each round; each run under GNU time ([`GNU_TIME`]) for its peak
//!    resident set (`%M`: the child's `ru_maxrss` from `wait4`), its wall
//!    time taken here around the whole run.
//! 4. Each workload once per allocator under `valgrind --tool=callgrind`
//!    at its `--valgrind` scale: the instructions it reports as
//!    `Collected`. kmalloc's timed reaper thread is off there
//!    ([`UPKEEP_ENV`]). Skipped, with a note, without valgrind.
//! 5. The table (median time, median peak RSS, instructions, each with its
//!    ratio to glibc, and a geometric-mean row per allocator) on stdout and
//!    in `programs.md`, JSON records in `programs.json`, both in the report
//!    directory (`--report DIR`, default `target/bench-report`; `--json
//!    PATH` puts the JSON elsewhere).
//!
//! Every run of a workload must print the same checksum, whatever the
//! allocator (the valgrind runs among themselves: another scale); a
//! mismatch or a failed run fails the task.

use core::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use serde::Serialize;

use crate::flags::BenchOpts;
use crate::shell::{project_root, Cmd, Error, Result};

/// The programs' manifest, relative to the project root.
const MANIFEST: &str = "benches/programs/Cargo.toml";

/// The binary's name.
const BIN: &str = "kmem-programs";

/// The allocators: the name printed and the cargo feature that installs it
/// (none: `System`, glibc's malloc). glibc, the baseline, comes first.
const ALLOCATORS: [(&str, Option<&str>); 3] = [
    ("glibc", None),
    ("kmalloc", Some("kmalloc")),
    ("mimalloc", Some("mimalloc")),
];

/// Runs per workload and allocator in quick mode.
const QUICK_RUNS: usize = 3;

/// Runs per workload and allocator with `--full`.
const FULL_RUNS: usize = 11;

/// GNU time, for the peak resident set.
const GNU_TIME: &str = "/usr/bin/time";

/// What GNU time prints before the peak resident set (KiB).
const RSS_TAG: &str = "kmem-programs-maxrss-kib";

/// kmalloc's reaper interval (ms; `0`: no reaper thread), set to `0` for
/// the callgrind runs. The reaper runs on a timer (500 ms), and under
/// valgrind a program runs some 50 times slower, so it would make many
/// more passes per unit of the program's work than it does natively, and
/// a different number each run: kmalloc's count for `syn` varied from
/// 1 476 M to 1 507 M over three runs with it, and was 1 391 M in each of
/// two runs without it.
const UPKEEP_ENV: &str = "KMEM_UPKEEP_MS";

/// A workload as `kmem-programs list` names it.
#[derive(Debug, PartialEq, Eq)]
struct Workload {
    name: String,
    scale: u64,
    valgrind_scale: u64,
}

/// The measurements of one workload with one allocator.
#[derive(Default)]
struct Cell {
    times_ms: Vec<f64>,
    rss_kib: Vec<f64>,
    instructions: Option<f64>,
}

impl Cell {
    fn time(&self) -> Option<f64> {
        median(&self.times_ms)
    }

    fn rss(&self) -> Option<f64> {
        median(&self.rss_kib)
    }
}

/// Builds, runs, measures and reports.
pub(crate) fn run(opts: &BenchOpts) -> Result {
    let start = Instant::now();
    let bins = build()?;
    let workloads = select(list(&bins[0])?, &opts.extra)?;
    let runs = if opts.full { FULL_RUNS } else { QUICK_RUNS };
    let gnu_time = Path::new(GNU_TIME).is_file();
    if !gnu_time {
        eprintln!("note: no {GNU_TIME}: peak resident sets not measured");
    }
    let mut cells: Vec<[Cell; 3]> = workloads.iter().map(|_| Default::default()).collect();
    for (w, cells) in workloads.iter().zip(&mut cells) {
        let mut checksum = None;
        for round in 0..runs {
            for k in 0..ALLOCATORS.len() {
                let a = (round + k) % ALLOCATORS.len();
                let (ms, rss, sum) = timed(&bins[a], w, gnu_time)?;
                agree(&mut checksum, sum, &w.name, ALLOCATORS[a].0)?;
                cells[a].times_ms.push(ms);
                cells[a].rss_kib.extend(rss);
            }
        }
        let line: Vec<String> = ALLOCATORS
            .iter()
            .zip(cells.iter())
            .map(|((name, _), c)| {
                format!(
                    "{name} {} ms {} MiB",
                    fmt_opt(c.time(), 0),
                    fmt_opt(c.rss().map(mib), 1)
                )
            })
            .collect();
        eprintln!("{}: {} (medians of {runs})", w.name, line.join(", "));
    }
    let valgrind = Cmd::new("valgrind").arg("--version").probe().is_some();
    if valgrind {
        for (w, cells) in workloads.iter().zip(&mut cells) {
            let mut checksum = None;
            for (a, (name, _)) in ALLOCATORS.iter().enumerate() {
                let (instructions, sum) = callgrind(&bins[a], w)?;
                agree(&mut checksum, sum, &w.name, name)?;
                cells[a].instructions = Some(instructions as f64);
            }
        }
    } else {
        eprintln!("note: no valgrind: instruction counts not measured");
    }
    let table = table(&workloads, &cells, runs);
    println!("{table}");
    let root = project_root();
    let report_dir = root.join(opts.report.as_deref().unwrap_or("target/bench-report"));
    fs::create_dir_all(&report_dir)
        .map_err(|e| Error::new(format!("creating {}: {e}", report_dir.display())))?;
    let json_path = match &opts.json {
        Some(path) => root.join(path),
        None => report_dir.join("programs.json"),
    };
    let md_path = report_dir.join("programs.md");
    write(&md_path, &table)?;
    write(&json_path, &json(&workloads, &cells, runs, opts.full))?;
    eprintln!(
        "bench --programs: wrote {} and {}; {:.0} s in all",
        md_path.display(),
        json_path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The programs' target directory: `programs` under `$CARGO_TARGET_DIR`,
/// or under the project's `target`.
fn target_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_relative() {
                std::env::current_dir()
                    .map_err(|e| Error::new(format!("the current directory: {e}")))?
                    .join(dir)
            } else {
                dir
            }
        }
        None => project_root().join("target"),
    };
    Ok(base.join("programs"))
}

/// Builds the binary once per allocator; their paths, in [`ALLOCATORS`]'
/// order.
fn build() -> Result<Vec<PathBuf>> {
    let target = target_dir()?;
    let bins = target.join("bins");
    fs::create_dir_all(&bins)
        .map_err(|e| Error::new(format!("creating {}: {e}", bins.display())))?;
    let mut out = Vec::new();
    for (name, feature) in ALLOCATORS {
        let mut cmd = Cmd::cargo()
            .args([
                "build",
                "--release",
                "--locked",
                "--manifest-path",
                MANIFEST,
            ])
            .arg("--target-dir")
            .arg(&target);
        if let Some(feature) = feature {
            cmd = cmd.args(["--features", feature]);
        }
        cmd.run()?;
        let built = target.join("release").join(BIN);
        let aside = bins.join(format!("{BIN}-{name}"));
        fs::copy(&built, &aside).map_err(|e| {
            Error::new(format!(
                "copying {} to {}: {e}",
                built.display(),
                aside.display()
            ))
        })?;
        out.push(aside);
    }
    Ok(out)
}

/// The workloads `kmem-programs list` names.
fn list(bin: &Path) -> Result<Vec<Workload>> {
    let cmd = Cmd::new(bin).arg("list");
    let out = cmd.output()?;
    check(&cmd, &out)?;
    parse_list(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| Error::new(format!("`{cmd}` printed no workloads")))
}

/// Parses `list`'s lines: `name scale valgrind_scale about...`.
fn parse_list(text: &str) -> Option<Vec<Workload>> {
    let workloads: Option<Vec<Workload>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            Some(Workload {
                name: words.next()?.to_owned(),
                scale: words.next()?.parse().ok()?,
                valgrind_scale: words.next()?.parse().ok()?,
            })
        })
        .collect();
    workloads.filter(|w| !w.is_empty())
}

/// The workloads named in `names` (all if none), in `list`'s order.
fn select(all: Vec<Workload>, names: &[String]) -> Result<Vec<Workload>> {
    if let Some(bad) = names.iter().find(|n| !all.iter().any(|w| &w.name == *n)) {
        let known: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        return Err(Error::new(format!(
            "no workload `{bad}` (there are: {})",
            known.join(", ")
        )));
    }
    Ok(all
        .into_iter()
        .filter(|w| names.is_empty() || names.contains(&w.name))
        .collect())
}

/// One timed run at the default scale: milliseconds, peak RSS in KiB (if
/// GNU time is there), checksum.
fn timed(bin: &Path, w: &Workload, gnu_time: bool) -> Result<(f64, Option<f64>, String)> {
    let cmd = if gnu_time {
        Cmd::new(GNU_TIME)
            .args(["-f", &format!("{RSS_TAG} %M")])
            .arg(bin)
    } else {
        Cmd::new(bin)
    }
    .arg(&w.name);
    let t = Instant::now();
    let out = cmd.output_quiet()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    check(&cmd, &out)?;
    let sum = checksum(&out.stdout).ok_or_else(|| no_checksum(&cmd))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(RSS_TAG))
        .next_back()
        .and_then(|v| v.trim().parse().ok());
    if gnu_time && rss.is_none() {
        return Err(Error::new(format!("`{cmd}`: no peak RSS from GNU time")));
    }
    Ok((ms, rss, sum))
}

/// One run under callgrind at the valgrind scale: instructions, checksum.
fn callgrind(bin: &Path, w: &Workload) -> Result<(u64, String)> {
    let cmd = Cmd::new("valgrind")
        .env(UPKEEP_ENV, "0")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(bin)
        .args([w.name.as_str(), "--valgrind"]);
    let out = cmd.output()?;
    check(&cmd, &out)?;
    let sum = checksum(&out.stdout).ok_or_else(|| no_checksum(&cmd))?;
    let instructions = collected(&String::from_utf8_lossy(&out.stderr))
        .ok_or_else(|| Error::new(format!("`{cmd}`: no `Collected` line from callgrind")))?;
    Ok((instructions, sum))
}

/// Callgrind's `==pid== Collected : N`.
fn collected(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("Collected :"))
        .next_back()
        .and_then(|(_, n)| n.trim().parse().ok())
}

/// The `checksum=<hex>` word of a program's output.
fn checksum(stdout: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("checksum="))
        .map(str::to_owned)
}

fn no_checksum(cmd: &Cmd) -> Error {
    Error::new(format!("`{cmd}` printed no checksum"))
}

/// Fails unless the command exited 0; shows its stderr if not.
fn check(cmd: &Cmd, out: &Output) -> Result {
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "`{cmd}` failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// Records the first checksum of a workload; fails on a different one.
fn agree(seen: &mut Option<String>, sum: String, workload: &str, allocator: &str) -> Result {
    match seen {
        None => {
            *seen = Some(sum);
            Ok(())
        }
        Some(first) if *first == sum => Ok(()),
        Some(first) => Err(Error::new(format!(
            "{workload} with {allocator}: checksum {sum}, another run printed {first}"
        ))),
    }
}

/// The median of `xs` (the mean of the middle two for an even count).
fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The geometric mean of the ratios `x / base` over the pairs where both
/// are known and positive.
fn geomean(pairs: impl IntoIterator<Item = (Option<f64>, Option<f64>)>) -> Option<f64> {
    let logs: Vec<f64> = pairs
        .into_iter()
        .filter_map(|(x, base)| match (x, base) {
            (Some(x), Some(base)) if x > 0.0 && base > 0.0 => Some((x / base).ln()),
            _ => None,
        })
        .collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

fn ratio(x: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (x, base) {
        (Some(x), Some(base)) if base > 0.0 => Some(x / base),
        _ => None,
    }
}

fn fmt_opt(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{x:.decimals$}"))
}

/// The three metrics of a cell, in table order: time (ms), peak RSS (MiB),
/// instructions (millions).
fn metrics(c: &Cell) -> [Option<f64>; 3] {
    [c.time(), c.rss().map(mib), c.instructions.map(|i| i / 1e6)]
}

/// Per allocator, the geometric means of the three metrics' ratios to
/// glibc over the workloads.
fn geomeans(cells: &[[Cell; 3]]) -> Vec<[Option<f64>; 3]> {
    (0..ALLOCATORS.len())
        .map(|a| {
            let mut g = [None; 3];
            for (m, slot) in g.iter_mut().enumerate() {
                *slot = geomean(cells.iter().map(|c| (metrics(&c[a])[m], metrics(&c[0])[m])));
            }
            g
        })
        .collect()
}

/// The markdown table.
fn table(workloads: &[Workload], cells: &[[Cell; 3]], runs: usize) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "| workload | allocator | time (ms) | x glibc | peak RSS (MiB) | x glibc | instructions (M) | x glibc |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for (w, cells) in workloads.iter().zip(cells) {
        let base = metrics(&cells[0]);
        for ((name, _), c) in ALLOCATORS.iter().zip(cells) {
            let m = metrics(c);
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {} | {} | {} | {} | {} |",
                w.name,
                fmt_opt(m[0], 0),
                fmt_opt(ratio(m[0], base[0]), 2),
                fmt_opt(m[1], 1),
                fmt_opt(ratio(m[1], base[1]), 2),
                fmt_opt(m[2], 0),
                fmt_opt(ratio(m[2], base[2]), 2),
            );
        }
    }
    for ((name, _), g) in ALLOCATORS.iter().zip(geomeans(cells)) {
        let _ = writeln!(
            s,
            "| **geomean** | {name} | | {} | | {} | | {} |",
            fmt_opt(g[0], 2),
            fmt_opt(g[1], 2),
            fmt_opt(g[2], 2),
        );
    }
    let scales: Vec<String> = workloads
        .iter()
        .map(|w| format!("{} {} ({})", w.name, w.scale, w.valgrind_scale))
        .collect();
    let _ = write!(
        s,
        "\nTime and peak RSS: medians of {runs} runs per allocator, interleaved; \
         instructions: one callgrind run at the smaller scale, kmalloc's reaper thread off \
         ({UPKEEP_ENV}=0).\n\
         Scales (valgrind's in parentheses): {}.\n",
        scales.join(", ")
    );
    s
}

/// `x` rounded to `decimals` decimals, if finite.
fn rounded(x: f64, decimals: i32) -> Option<f64> {
    let scale = 10f64.powi(decimals);
    x.is_finite().then(|| (x * scale).round() / scale)
}

/// `programs.json`: the run, its records and the geometric means.
#[derive(Serialize)]
struct Report<'a> {
    schema: u32,
    benchmark: &'static str,
    mode: &'static str,
    runs: usize,
    baseline: &'static str,
    records: Vec<Record<'a>>,
    geomean: Vec<Geomean>,
}

/// One workload with one allocator. Times in ms (3 decimals), peak RSS in
/// KiB, medians and ratios to glibc with 4 decimals; `null` where not
/// measured.
#[derive(Serialize)]
struct Record<'a> {
    workload: &'a str,
    allocator: &'static str,
    scale: u64,
    valgrind_scale: u64,
    times_ms: Vec<Option<f64>>,
    median_ms: Option<f64>,
    time_ratio: Option<f64>,
    peak_rss_kib: Vec<u64>,
    median_peak_rss_kib: Option<u64>,
    rss_ratio: Option<f64>,
    instructions: Option<u64>,
    instructions_ratio: Option<f64>,
}

/// One allocator's geometric means of its ratios to glibc.
#[derive(Serialize)]
struct Geomean {
    allocator: &'static str,
    time_ratio: Option<f64>,
    rss_ratio: Option<f64>,
    instructions_ratio: Option<f64>,
}

/// The JSON records: one per workload and allocator, then the geometric
/// means.
fn json(workloads: &[Workload], cells: &[[Cell; 3]], runs: usize, full: bool) -> String {
    let r4 = |x: Option<f64>| x.and_then(|x| rounded(x, 4));
    let mut records = Vec::new();
    for (w, cells) in workloads.iter().zip(cells) {
        let base = metrics(&cells[0]);
        for ((name, _), c) in ALLOCATORS.iter().zip(cells) {
            let m = metrics(c);
            records.push(Record {
                workload: &w.name,
                allocator: name,
                scale: w.scale,
                valgrind_scale: w.valgrind_scale,
                times_ms: c.times_ms.iter().map(|&t| rounded(t, 3)).collect(),
                median_ms: r4(m[0]),
                time_ratio: r4(ratio(m[0], base[0])),
                peak_rss_kib: c.rss_kib.iter().map(|&r| r.round() as u64).collect(),
                median_peak_rss_kib: c.rss().map(|r| r.round() as u64),
                rss_ratio: r4(ratio(m[1], base[1])),
                instructions: c.instructions.map(|i| i.round() as u64),
                instructions_ratio: r4(ratio(m[2], base[2])),
            });
        }
    }
    let geomean = ALLOCATORS
        .iter()
        .zip(geomeans(cells))
        .map(|((name, _), g)| Geomean {
            allocator: name,
            time_ratio: r4(g[0]),
            rss_ratio: r4(g[1]),
            instructions_ratio: r4(g[2]),
        })
        .collect();
    let report = Report {
        schema: 1,
        benchmark: "B11",
        mode: if full { "full" } else { "quick" },
        runs,
        baseline: "glibc",
        records,
        geomean,
    };
    let mut text = serde_json::to_string_pretty(&report).expect("the records serialize");
    text.push('\n');
    text
}

fn write(path: &Path, text: &str) -> Result {
    fs::write(path, text).map_err(|e| Error::new(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_parse() {
        let w = parse_list("json 40000 10000 serde_json round trips\nsyn 9 2 about\n").unwrap();
        assert_eq!(
            w[1],
            Workload {
                name: "syn".into(),
                scale: 9,
                valgrind_scale: 2
            }
        );
        assert_eq!(w.len(), 2);
        assert!(parse_list("").is_none());
        assert!(parse_list("json many 1 x").is_none());
    }

    #[test]
    fn selection_keeps_order_and_rejects_unknown_names() {
        let all = || parse_list("a 1 1 x\nb 1 1 x\nc 1 1 x").unwrap();
        let names = |v: Vec<Workload>| v.into_iter().map(|w| w.name).collect::<Vec<_>>();
        assert_eq!(names(select(all(), &[]).unwrap()), ["a", "b", "c"]);
        assert_eq!(
            names(select(all(), &["c".into(), "a".into()]).unwrap()),
            ["a", "c"]
        );
        assert!(select(all(), &["d".into()]).is_err());
    }

    #[test]
    fn outputs_parse() {
        let err = "==12== Events    : Ir\n==12== Collected : 533591230\n==12==\n";
        assert_eq!(collected(err), Some(533_591_230));
        assert_eq!(collected("nothing"), None);
        let out = b"json allocator=glibc scale=4 checksum=f5603b7f770b8753\n";
        assert_eq!(checksum(out).as_deref(), Some("f5603b7f770b8753"));
        assert_eq!(checksum(b"json"), None);
    }

    #[test]
    fn medians_and_geomeans() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let g = geomean([
            (Some(2.0), Some(1.0)),
            (Some(1.0), Some(2.0)),
            (None, Some(1.0)),
        ]);
        assert!((g.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(geomean([(Some(1.0), None)]), None);
    }

    #[test]
    fn checksums_must_agree() {
        let mut seen = None;
        assert!(agree(&mut seen, "ab".into(), "json", "glibc").is_ok());
        assert!(agree(&mut seen, "ab".into(), "json", "kmalloc").is_ok());
        assert!(agree(&mut seen, "cd".into(), "json", "mimalloc").is_err());
    }

    #[test]
    fn json_records() {
        let workloads = parse_list("json 40 10 x\nsyn 9 2 y").unwrap();
        let cell = |ms: &[f64], rss: &[f64], instructions| Cell {
            times_ms: ms.to_vec(),
            rss_kib: rss.to_vec(),
            instructions,
        };
        let cells = vec![
            [
                cell(&[10.0, 12.0, 11.0], &[1000.0, 1002.0, 1001.0], Some(3e6)),
                cell(&[20.123_456, 22.0, 21.0], &[1500.0, 1500.0, 1500.0], None),
                cell(&[5.0, 5.0, 5.0], &[], Some(1.5e6)),
            ],
            Default::default(),
        ];
        let text = json(&workloads, &cells, 3, false);
        assert!(text.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["benchmark"], "B11");
        assert_eq!(v["mode"], "quick");
        assert_eq!(v["runs"], 3);
        assert_eq!(v["baseline"], "glibc");
        let records = v["records"].as_array().unwrap();
        assert_eq!(records.len(), 6);
        let kmalloc = &records[1];
        assert_eq!(kmalloc["workload"], "json");
        assert_eq!(kmalloc["allocator"], "kmalloc");
        assert_eq!(kmalloc["scale"], 40);
        assert_eq!(kmalloc["valgrind_scale"], 10);
        assert_eq!(kmalloc["times_ms"], serde_json::json!([20.123, 22.0, 21.0]));
        assert_eq!(kmalloc["median_ms"], 21.0);
        assert_eq!(kmalloc["time_ratio"], 1.9091);
        assert_eq!(
            kmalloc["peak_rss_kib"],
            serde_json::json!([1500, 1500, 1500])
        );
        assert_eq!(kmalloc["median_peak_rss_kib"], 1500);
        assert_eq!(kmalloc["rss_ratio"], 1.4985);
        assert!(kmalloc["instructions"].is_null() && kmalloc["instructions_ratio"].is_null());
        let mimalloc = &records[2];
        assert_eq!(mimalloc["instructions"], 1_500_000);
        assert_eq!(mimalloc["instructions_ratio"], 0.5);
        assert!(mimalloc["median_peak_rss_kib"].is_null() && mimalloc["rss_ratio"].is_null());
        assert!(
            records[3]["median_ms"].is_null() && records[3]["times_ms"] == serde_json::json!([])
        );
        let geomean = v["geomean"].as_array().unwrap();
        assert_eq!(geomean.len(), 3);
        assert_eq!(geomean[0]["allocator"], "glibc");
        assert_eq!(geomean[0]["time_ratio"], 1.0);
        assert_eq!(geomean[2]["time_ratio"], 0.4545);
        // The fields in the order written.
        let first = text.find("\"workload\"").unwrap();
        assert!(first < text.find("\"instructions_ratio\"").unwrap());
        assert!(text.find("\"schema\"").unwrap() < text.find("\"records\"").unwrap());
    }
}
