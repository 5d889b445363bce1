//! Whole-program benchmarks (B11, B15): every workload runs under every
//! allocator, [`QUICK_RUNS`] times each ([`FULL_RUNS`] with `--full`), the
//! allocators in a rotating order each round, each run under GNU time
//! ([`GNU_TIME`]) for its peak resident set (`%M`: the child's `ru_maxrss`
//! from `wait4`), its wall time taken here around the whole run; then once
//! per allocator under `valgrind --tool=callgrind` for the instructions it
//! reports as `Collected` (skipped, with a note, without valgrind). Every
//! run of a workload must print the same checksum, whatever the allocator
//! (the callgrind runs among themselves); a mismatch or a failed run fails
//! the task. The table (median time, median peak RSS, instructions, each
//! with its ratio to the first allocator, the baseline, and a
//! geometric-mean row per allocator) goes to stdout and `<stem>.md`, JSON
//! records to `<stem>.json`, both in the report directory (`--report DIR`,
//! default `target/bench-report`; `--json PATH` puts the JSON elsewhere).

use core::fmt::Write as _;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use serde::Serialize;

use crate::flags::BenchOpts;
use crate::shell::{project_root, Cmd, Error, Result};

/// Runs per workload and allocator in quick mode.
const QUICK_RUNS: usize = 3;

/// Runs per workload and allocator with `--full`.
const FULL_RUNS: usize = 11;

/// GNU time, for the peak resident set.
const GNU_TIME: &str = "/usr/bin/time";

/// What GNU time prints before the peak resident set (KiB).
const RSS_TAG: &str = "kmem-programs-maxrss-kib";

/// A workload: its name and the scales it runs at (natively, and under
/// valgrind), as the JSON records them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Workload {
    pub(super) name: String,
    pub(super) scale: u64,
    pub(super) valgrind_scale: u64,
}

/// One command: a program, its arguments, and variables set for it.
pub(super) struct Run {
    pub(super) program: OsString,
    pub(super) args: Vec<OsString>,
    pub(super) env: Vec<(&'static str, OsString)>,
}

impl Run {
    /// `program args...` with no variables.
    pub(super) fn new(program: impl Into<OsString>, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
        }
    }

    /// The same, with `key=value` set.
    pub(super) fn env(mut self, key: &'static str, value: impl Into<OsString>) -> Self {
        self.env.push((key, value.into()));
        self
    }

    /// The command `prefix... program args...` (no prefix: the program
    /// itself) with the variables.
    fn cmd(&self, prefix: Option<Cmd>) -> Cmd {
        let mut cmd = match prefix {
            Some(p) => p.arg(&self.program),
            None => Cmd::new(&self.program),
        }
        .args(&self.args);
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        cmd
    }
}

/// What a whole-program benchmark measures.
pub(super) struct Plan<'a> {
    /// Its id in the JSON (`B11`).
    pub(super) benchmark: &'static str,
    /// The report files' stem (`programs`).
    pub(super) stem: &'static str,
    /// The allocators, the baseline first.
    pub(super) allocators: &'a [&'static str],
    pub(super) workloads: Vec<Workload>,
    /// The timed run of a workload with the allocator of that index.
    pub(super) timed: &'a dyn Fn(&Workload, usize) -> Run,
    /// The callgrind run of a workload with the allocator of that index.
    pub(super) counted: &'a dyn Fn(&Workload, usize) -> Run,
    /// A run's checksum, from its standard output.
    pub(super) checksum: fn(&[u8]) -> Option<String>,
    /// The paragraph under the table: what the runs were.
    pub(super) footnote: String,
}

/// The items of `all` named in `names` (all if none), in `all`'s order;
/// an unknown name is an error that lists the known ones.
pub(super) fn select<T>(
    all: Vec<T>,
    names: &[String],
    name: impl Fn(&T) -> &str,
) -> Result<Vec<T>> {
    if let Some(bad) = names
        .iter()
        .find(|n| !all.iter().any(|w| name(w) == n.as_str()))
    {
        let known: Vec<&str> = all.iter().map(&name).collect();
        return Err(Error::new(format!(
            "no workload `{bad}` (there are: {})",
            known.join(", ")
        )));
    }
    Ok(all
        .into_iter()
        .filter(|w| names.is_empty() || names.iter().any(|n| n == name(w)))
        .collect())
}

/// The workspace's target directory: `$CARGO_TARGET_DIR` (relative to the
/// current directory), or the project's `target`.
pub(super) fn cargo_target_dir() -> Result<PathBuf> {
    Ok(match std::env::var_os("CARGO_TARGET_DIR") {
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
    })
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

/// Runs, measures and reports `plan`; `start` is when the task began.
pub(super) fn measure(plan: &Plan<'_>, opts: &BenchOpts, start: Instant) -> Result {
    let runs = if opts.full { FULL_RUNS } else { QUICK_RUNS };
    let n = plan.allocators.len();
    let gnu_time = Path::new(GNU_TIME).is_file();
    if !gnu_time {
        eprintln!("note: no {GNU_TIME}: peak resident sets not measured");
    }
    let mut cells: Vec<Vec<Cell>> = plan
        .workloads
        .iter()
        .map(|_| (0..n).map(|_| Cell::default()).collect())
        .collect();
    for (w, cells) in plan.workloads.iter().zip(&mut cells) {
        let mut checksum = None;
        for round in 0..runs {
            for k in 0..n {
                let a = (round + k) % n;
                let (ms, rss, sum) = timed(plan, &(plan.timed)(w, a), gnu_time)?;
                agree(&mut checksum, sum, &w.name, plan.allocators[a])?;
                cells[a].times_ms.push(ms);
                cells[a].rss_kib.extend(rss);
            }
        }
        let line: Vec<String> = plan
            .allocators
            .iter()
            .zip(cells.iter())
            .map(|(name, c)| {
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
        for (w, cells) in plan.workloads.iter().zip(&mut cells) {
            let mut checksum = None;
            for (a, name) in plan.allocators.iter().enumerate() {
                let (instructions, sum) = callgrind(plan, &(plan.counted)(w, a))?;
                agree(&mut checksum, sum, &w.name, name)?;
                cells[a].instructions = Some(instructions as f64);
            }
        }
    } else {
        eprintln!("note: no valgrind: instruction counts not measured");
    }
    let table = table(plan, &cells, runs);
    println!("{table}");
    let root = project_root();
    let report_dir = root.join(opts.report.as_deref().unwrap_or("target/bench-report"));
    fs::create_dir_all(&report_dir)
        .map_err(|e| Error::new(format!("creating {}: {e}", report_dir.display())))?;
    let json_path = match &opts.json {
        Some(path) => root.join(path),
        None => report_dir.join(format!("{}.json", plan.stem)),
    };
    let md_path = report_dir.join(format!("{}.md", plan.stem));
    write(&md_path, &table)?;
    write(&json_path, &json(plan, &cells, runs, opts.full))?;
    eprintln!(
        "bench: wrote {} and {}; {:.0} s in all",
        md_path.display(),
        json_path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One timed run: milliseconds, peak RSS in KiB (if GNU time is there),
/// checksum.
fn timed(plan: &Plan<'_>, run: &Run, gnu_time: bool) -> Result<(f64, Option<f64>, String)> {
    let time = Cmd::new(GNU_TIME).args(["-f", &format!("{RSS_TAG} %M")]);
    let cmd = run.cmd(gnu_time.then_some(time));
    let t = Instant::now();
    let out = cmd.output_quiet()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    check(&cmd, &out)?;
    let sum = (plan.checksum)(&out.stdout).ok_or_else(|| no_checksum(&cmd))?;
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

/// One run under callgrind: instructions, checksum.
fn callgrind(plan: &Plan<'_>, run: &Run) -> Result<(u64, String)> {
    let cmd = run.cmd(Some(
        Cmd::new("valgrind").args(["--tool=callgrind", "--callgrind-out-file=/dev/null"]),
    ));
    let out = cmd.output()?;
    check(&cmd, &out)?;
    let sum = (plan.checksum)(&out.stdout).ok_or_else(|| no_checksum(&cmd))?;
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

fn no_checksum(cmd: &Cmd) -> Error {
    Error::new(format!("`{cmd}` printed no checksum"))
}

/// Fails unless the command exited 0; shows its stderr if not.
pub(super) fn check(cmd: &Cmd, out: &Output) -> Result {
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
/// the baseline's over the workloads.
fn geomeans(cells: &[Vec<Cell>], allocators: usize) -> Vec<[Option<f64>; 3]> {
    (0..allocators)
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
fn table(plan: &Plan<'_>, cells: &[Vec<Cell>], runs: usize) -> String {
    let mut s = String::new();
    let base_name = plan.allocators[0];
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "| workload | allocator | time (ms) | x {base_name} | peak RSS (MiB) | x {base_name} | \
         instructions (M) | x {base_name} |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for (w, cells) in plan.workloads.iter().zip(cells) {
        let base = metrics(&cells[0]);
        for (name, c) in plan.allocators.iter().zip(cells) {
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
    for (name, g) in plan
        .allocators
        .iter()
        .zip(geomeans(cells, plan.allocators.len()))
    {
        let _ = writeln!(
            s,
            "| **geomean** | {name} | | {} | | {} | | {} |",
            fmt_opt(g[0], 2),
            fmt_opt(g[1], 2),
            fmt_opt(g[2], 2),
        );
    }
    let _ = write!(
        s,
        "\nTime and peak RSS: medians of {runs} runs per allocator, interleaved; \
         instructions: one callgrind run. {}\n",
        plan.footnote
    );
    s
}

/// `x` rounded to `decimals` decimals, if finite.
fn rounded(x: f64, decimals: i32) -> Option<f64> {
    let scale = 10f64.powi(decimals);
    x.is_finite().then(|| (x * scale).round() / scale)
}

/// The JSON report: the run, its records and the geometric means.
#[derive(Serialize)]
struct Report<'a> {
    schema: u32,
    benchmark: &'static str,
    mode: &'static str,
    runs: usize,
    baseline: &'a str,
    records: Vec<Record<'a>>,
    geomean: Vec<Geomean<'a>>,
}

/// One workload with one allocator. Times in ms (3 decimals), peak RSS in
/// KiB, medians and ratios to the baseline with 4 decimals; `null` where
/// not measured.
#[derive(Serialize)]
struct Record<'a> {
    workload: &'a str,
    allocator: &'a str,
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

/// One allocator's geometric means of its ratios to the baseline.
#[derive(Serialize)]
struct Geomean<'a> {
    allocator: &'a str,
    time_ratio: Option<f64>,
    rss_ratio: Option<f64>,
    instructions_ratio: Option<f64>,
}

/// The JSON records: one per workload and allocator, then the geometric
/// means.
fn json(plan: &Plan<'_>, cells: &[Vec<Cell>], runs: usize, full: bool) -> String {
    let r4 = |x: Option<f64>| x.and_then(|x| rounded(x, 4));
    let mut records = Vec::new();
    for (w, cells) in plan.workloads.iter().zip(cells) {
        let base = metrics(&cells[0]);
        for (name, c) in plan.allocators.iter().zip(cells) {
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
    let geomean = plan
        .allocators
        .iter()
        .zip(geomeans(cells, plan.allocators.len()))
        .map(|(name, g)| Geomean {
            allocator: name,
            time_ratio: r4(g[0]),
            rss_ratio: r4(g[1]),
            instructions_ratio: r4(g[2]),
        })
        .collect();
    let report = Report {
        schema: 1,
        benchmark: plan.benchmark,
        mode: if full { "full" } else { "quick" },
        runs,
        baseline: plan.allocators[0],
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
    fn callgrind_counts_parse() {
        let err = "==12== Events    : Ir\n==12== Collected : 533591230\n==12==\n";
        assert_eq!(collected(err), Some(533_591_230));
        assert_eq!(collected("nothing"), None);
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
    fn the_table_and_json_records() {
        let workload = |name: &str, scale, valgrind_scale| Workload {
            name: name.into(),
            scale,
            valgrind_scale,
        };
        let run = |_: &Workload, _: usize| Run::new("true", &[]);
        let plan = Plan {
            benchmark: "B11",
            stem: "programs",
            allocators: &["glibc", "kmalloc", "mimalloc"],
            workloads: vec![workload("json", 40, 10), workload("syn", 9, 2)],
            timed: &run,
            counted: &run,
            checksum: |_| None,
            footnote: "Scales: made up.".into(),
        };
        let cell = |ms: &[f64], rss: &[f64], instructions| Cell {
            times_ms: ms.to_vec(),
            rss_kib: rss.to_vec(),
            instructions,
        };
        let cells = vec![
            vec![
                cell(&[10.0, 12.0, 11.0], &[1000.0, 1002.0, 1001.0], Some(3e6)),
                cell(&[20.123_456, 22.0, 21.0], &[1500.0, 1500.0, 1500.0], None),
                cell(&[5.0, 5.0, 5.0], &[], Some(1.5e6)),
            ],
            (0..3).map(|_| Cell::default()).collect(),
        ];
        let md = table(&plan, &cells, 3);
        assert!(
            md.contains("| json | kmalloc | 21 | 1.91 | 1.5 | 1.50 | - | - |"),
            "{md}"
        );
        assert!(
            md.contains("| x glibc |") && md.ends_with("Scales: made up.\n"),
            "{md}"
        );
        let text = json(&plan, &cells, 3, false);
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

    #[test]
    fn selection_keeps_order_and_rejects_unknown_names() {
        let all = || vec!["a", "b", "c"];
        let pick = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            select(all(), &names, |w| w)
        };
        assert_eq!(pick(&[]).unwrap(), ["a", "b", "c"]);
        assert_eq!(pick(&["c", "a"]).unwrap(), ["a", "c"]);
        assert!(pick(&["d"]).is_err());
    }

    #[test]
    fn runs_make_their_commands() {
        let r = Run::new("prog", &["a", "b"]).env("LD_PRELOAD", "/lib.so");
        let cmd = r.cmd(Some(Cmd::new("valgrind").arg("--tool=callgrind")));
        let shown = cmd.to_string();
        assert!(
            shown.contains("valgrind --tool=callgrind prog a b"),
            "{shown}"
        );
    }
}
