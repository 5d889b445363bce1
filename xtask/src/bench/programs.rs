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
//! 3. Each workload measured as [`whole`](super::whole) does for every
//!    whole-program benchmark: timed runs at its default scale under GNU
//!    time (3 per allocator, 11 with `--full`, interleaved), then one
//!    callgrind run per allocator at its `--valgrind` scale with kmalloc's
//!    timed reaper off ([`UPKEEP_ENV`]); the table in `programs.md`, the
//!    JSON records in `programs.json`.
//!
//! Every run of a workload must print the same checksum, whatever the
//! allocator (the valgrind runs among themselves: another scale); a
//! mismatch or a failed run fails the task.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::whole::{cargo_target_dir, check, measure, select, Plan, Run, Workload};
use crate::flags::BenchOpts;
use crate::shell::{Cmd, Error, Result};

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

/// kmalloc's reaper interval (ms; `0`: no reaper thread), set to `0` for
/// the callgrind runs. The reaper runs on a timer (500 ms), and under
/// valgrind a program runs some 50 times slower, so it would make many
/// more passes per unit of the program's work than it does natively, and
/// a different number each run: kmalloc's count for `syn` varied from
/// 1 476 M to 1 507 M over three runs with it, and was 1 391 M in each of
/// two runs without it.
const UPKEEP_ENV: &str = "KMEM_UPKEEP_MS";

/// Builds, runs, measures and reports.
pub(crate) fn run(opts: &BenchOpts) -> Result {
    let start = Instant::now();
    let bins = build()?;
    let workloads = select(list(&bins[0])?, &opts.extra, |w| &w.name)?;
    let scales: Vec<String> = workloads
        .iter()
        .map(|w| format!("{} {} ({})", w.name, w.scale, w.valgrind_scale))
        .collect();
    let timed = |w: &Workload, a: usize| Run::new(&bins[a], &[&w.name]);
    let counted =
        |w: &Workload, a: usize| Run::new(&bins[a], &[&w.name, "--valgrind"]).env(UPKEEP_ENV, "0");
    let plan = Plan {
        benchmark: "B11",
        stem: "programs",
        allocators: &ALLOCATORS.map(|(name, _)| name),
        workloads,
        timed: &timed,
        counted: &counted,
        checksum,
        footnote: format!(
            "The callgrind runs at the smaller scale, kmalloc's reaper thread off \
             ({UPKEEP_ENV}=0).\nScales (valgrind's in parentheses): {}.",
            scales.join(", ")
        ),
    };
    measure(&plan, opts, start)
}

/// Builds the binary once per allocator; their paths, in [`ALLOCATORS`]'
/// order.
fn build() -> Result<Vec<PathBuf>> {
    let target = cargo_target_dir()?.join("programs");
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

/// The `checksum=<hex>` word of a program's output.
fn checksum(stdout: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("checksum="))
        .map(str::to_owned)
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
    fn outputs_parse() {
        let out = b"json allocator=glibc scale=4 checksum=f5603b7f770b8753\n";
        assert_eq!(checksum(out).as_deref(), Some("f5603b7f770b8753"));
        assert_eq!(checksum(b"json"), None);
    }
}
