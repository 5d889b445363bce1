//! `cargo xtask demo`: the whole stack working, in seconds — kmalloc booted
//! over fake physical memory, a mixed workload on two threads, and the
//! `::kmastat` report (`crates/kmalloc/examples/demo.rs`).

use crate::shell::{Cmd, Result};

/// Builds and runs the demo.
pub(crate) fn run() -> Result {
    Cmd::cargo()
        .args([
            "run",
            "--release",
            "-p",
            "kmalloc",
            "--features",
            "std",
            "--example",
            "demo",
        ])
        .run()
}
