//! `cargo xtask bench`: the side-by-side benchmarks in `benches/`
//! (package `kmem-benches`).
//!
//! Runs `cargo bench -p kmem-benches --bench '*'`: every bench target and
//! nothing else (the package's library would otherwise run under libtest's
//! bench harness, which rejects criterion's flags). Quick by default —
//! criterion gets `--warm-up-time 1 --measurement-time 2` — so a pass stays
//! short on a shared machine; `--full` keeps criterion's defaults for numbers
//! worth reporting. Arguments after `--` are passed on to criterion (a
//! benchmark name filter, `--save-baseline`, ...). Until the package has a
//! bench target this says so and succeeds.

use std::fs;

use crate::flags::BenchOpts;
use crate::shell::{project_root, Cmd, Result};

/// The benchmarks package.
const PACKAGE: &str = "kmem-benches";

/// Criterion arguments for the default quick mode.
const QUICK: [&str; 4] = ["--warm-up-time", "1", "--measurement-time", "2"];

/// Runs the benchmarks, or explains that there are none yet.
pub(crate) fn run(opts: &BenchOpts) -> Result {
    if !has_bench_targets() {
        println!("xtask: {PACKAGE} (benches/) has no bench targets yet; nothing to benchmark");
        return Ok(());
    }
    let mut cargo = Cmd::cargo().args(["bench", "-p", PACKAGE, "--bench", "*", "--"]);
    if !opts.full {
        cargo = cargo.args(QUICK);
    }
    cargo.args(&opts.extra).run()
}

/// Whether `benches/` is a package with at least one bench target: a
/// `[[bench]]` table or a file cargo discovers under `benches/benches/`.
fn has_bench_targets() -> bool {
    let dir = project_root().join("benches");
    let Ok(manifest) = fs::read_to_string(dir.join("Cargo.toml")) else {
        return false;
    };
    if manifest.lines().any(|line| line.trim() == "[[bench]]") {
        return true;
    }
    fs::read_dir(dir.join("benches")).is_ok_and(|entries| {
        entries.filter_map(|entry| entry.ok()).any(|entry| {
            let path = entry.path();
            path.extension().is_some_and(|ext| ext == "rs") || path.join("main.rs").is_file()
        })
    })
}
