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

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number, or `null`.
fn json_num(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        _ => "null".to_owned(),
    }
}

/// A JSON array of numbers with `decimals` decimals.
fn json_nums(xs: &[f64], decimals: usize) -> String {
    let items: Vec<String> = xs.iter().map(|x| format!("{x:.decimals$}")).collect();
    format!("[{}]", items.join(", "))
}

/// The JSON records: one per workload and allocator, then the geometric
/// means.
fn json(workloads: &[Workload], cells: &[[Cell; 3]], runs: usize, full: bool) -> String {
    let mut records = Vec::new();
    for (w, cells) in workloads.iter().zip(cells) {
        let base = metrics(&cells[0]);
        for ((name, _), c) in ALLOCATORS.iter().zip(cells) {
            let m = metrics(c);
            records.push(format!(
                "    {{\"workload\": {}, \"allocator\": {}, \"scale\": {}, \"valgrind_scale\": {}, \
                 \"times_ms\": {}, \"median_ms\": {}, \"time_ratio\": {}, \
                 \"peak_rss_kib\": {}, \"median_peak_rss_kib\": {}, \"rss_ratio\": {}, \
                 \"instructions\": {}, \"instructions_ratio\": {}}}",
                json_str(&w.name),
                json_str(name),
                w.scale,
                w.valgrind_scale,
                json_nums(&c.times_ms, 3),
                json_num(m[0]),
                json_num(ratio(m[0], base[0])),
                json_nums(&c.rss_kib, 0),
                c.rss().map_or_else(|| "null".to_owned(), |r| format!("{r:.0}")),
                json_num(ratio(m[1], base[1])),
                c.instructions.map_or_else(|| "null".to_owned(), |i| format!("{i:.0}")),
                json_num(ratio(m[2], base[2])),
            ));
        }
    }
    let means: Vec<String> = ALLOCATORS
        .iter()
        .zip(geomeans(cells))
        .map(|((name, _), g)| {
            format!(
                "    {{\"allocator\": {}, \"time_ratio\": {}, \"rss_ratio\": {}, \"instructions_ratio\": {}}}",
                json_str(name),
                json_num(g[0]),
                json_num(g[1]),
                json_num(g[2]),
            )
        })
        .collect();
    format!(
        "{{\n  \"schema\": 1,\n  \"benchmark\": \"B11\",\n  \"mode\": {},\n  \"runs\": {runs},\n  \
         \"baseline\": \"glibc\",\n  \"records\": [\n{}\n  ],\n  \"geomean\": [\n{}\n  ]\n}}\n",
        json_str(if full { "full" } else { "quick" }),
        records.join(",\n"),
        means.join(",\n"),
    )
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
    fn json_strings_escape() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_num(None), "null");
        assert_eq!(json_num(Some(1.5)), "1.5000");
        assert_eq!(json_nums(&[1.0, 2.25], 1), "[1.0, 2.2]");
    }
}
