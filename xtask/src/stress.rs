//! `cargo xtask stress [--threads N] [--ops M] [--seed S]`: the
//! multi-threaded stress binary (`crates/kmalloc/examples/stress.rs`) in
//! release mode: operation mixes over every layer at once, canaries in every
//! object, objects freed on other threads, every checker at the end. It
//! prints the operations done and the violations found, and fails on any.
//!
//! `cargo xtask stress --big-heap [--gib G]` runs the big-heap program
//! (`crates/kmalloc/examples/big_heap.rs`) instead: kmalloc as the global
//! allocator, tens of millions of small objects freed, then G GiB (default
//! 6) of mixed sizes live; it fails on a corrupted object and aborts if an
//! allocation fails.

use crate::flags::StressOpts;
use crate::shell::{Cmd, Result};

/// The cargo arguments that build and run the stress binary (the sanitizer
/// runs add a target and a target directory in front of `--`).
pub(crate) const STRESS: [&str; 6] = ["-p", "kmalloc", "--features", "std", "--example", "stress"];

/// The binary's own arguments for `opts`.
pub(crate) fn stress_args(opts: &StressOpts) -> Vec<String> {
    vec![
        "--threads".into(),
        opts.threads.to_string(),
        "--ops".into(),
        opts.ops.to_string(),
        "--seed".into(),
        opts.seed.to_string(),
    ]
}

/// Builds and runs the stress binary (or the big-heap program).
pub(crate) fn run(opts: &StressOpts) -> Result {
    if let Some(gib) = opts.big_heap {
        return Cmd::cargo()
            .args(["run", "--release", "-p", "kmalloc", "--features", "std"])
            .args(["--example", "big_heap", "--"])
            .arg(gib.to_string())
            .run();
    }
    Cmd::cargo()
        .args(["run", "--release"])
        .args(STRESS)
        .arg("--")
        .args(stress_args(opts))
        .run()
}
