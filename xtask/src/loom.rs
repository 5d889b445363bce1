//! `cargo xtask loom`: the loom models of the magazine layer
//! (`crates/magazine/tests/loom.rs`), then a summary of what they explored.
//!
//! Runs
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p kmem-magazine --features loom \
//!     --test loom --release --target-dir target/loom \
//!     -- --nocapture --test-threads=1
//! ```
//!
//! with the release profile's debug assertions and overflow checks turned on
//! (`CARGO_PROFILE_RELEASE_*`), so the layer's internal assertions run inside
//! the models. The separate target directory keeps the `--cfg loom` build
//! from invalidating the normal one. Models run one at a time, so the times
//! they print are their own. `--preemptions <n>` sets `LOOM_MAX_PREEMPTIONS`
//! (each model's bound otherwise; see the test file); arguments after `--`
//! go to the test binary (a model name filters).
//!
//! Each model prints a `loom-model <name>: <n> executions, ...` line; the
//! summary repeats them, and the task fails if none was printed.

use crate::flags::LoomOpts;
use crate::shell::{Cmd, Error, Result};

/// Where the `--cfg loom` build goes.
const TARGET_DIR: &str = "target/loom";

/// The marker of a model's result line.
const MARKER: &str = "loom-model ";

/// Builds and runs the models, then prints the summary.
pub(crate) fn run(opts: &LoomOpts) -> Result {
    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg loom"),
        _ => "--cfg loom".to_owned(),
    };
    let mut cmd = Cmd::cargo()
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", "true")
        .env("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", "true")
        .args(["test", "-p", "kmem-magazine", "--features", "loom"])
        .args(["--test", "loom", "--release"])
        .args(["--target-dir", TARGET_DIR])
        .args(["--", "--nocapture", "--test-threads=1"])
        .args(&opts.extra);
    if let Some(n) = opts.preemptions {
        cmd = cmd.env("LOOM_MAX_PREEMPTIONS", n.to_string());
    }
    let stdout = cmd.run_tee()?;
    let lines = summary(&stdout);
    if lines.is_empty() {
        return Err(Error::new(
            "the loom run printed no `loom-model` line: no model ran",
        ));
    }
    println!();
    println!("loom summary:");
    for line in lines {
        println!("  {line}");
    }
    Ok(())
}

/// The models' result lines in `stdout`, without the test harness's prefix.
fn summary(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|line| line.find(MARKER).map(|at| &line[at + MARKER.len()..]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_model_lines_only() {
        let out = "running 2 tests\n\
                   test a ... loom-model a: 10 executions, preemption bound 3, 0.1 s\n\
                   ok\n\
                   loom-model b: caught\n\
                   test result: ok.\n";
        assert_eq!(
            summary(out),
            ["a: 10 executions, preemption bound 3, 0.1 s", "b: caught"]
        );
        assert!(summary("test result: ok.\n").is_empty());
    }
}
