//! `cargo xtask lint`: formatting and clippy, warnings denied.
//!
//! 1. `cargo fmt --check` over the workspace and over `ci/nostd-boot` (which
//!    is its own workspace, so `--all` does not reach it);
//! 2. `cargo clippy --workspace --all-targets --features kmalloc/std -- -D
//!    warnings` (the std code paths and their tests included);
//! 3. the same clippy for `ci/nostd-boot`, with its own manifest and target
//!    directory (see [`crate::nostd`]).
//!
//! The lint levels themselves live once, in the root `[workspace.lints]`.

use crate::nostd::{self, BOOT_MANIFEST};
use crate::shell::{Cmd, Result};
use crate::test::STD_FEATURES;

/// Runs every lint step, stopping at the first failure.
pub(crate) fn run() -> Result {
    Cmd::cargo().args(["fmt", "--all", "--", "--check"]).run()?;
    Cmd::cargo()
        .args(["fmt", "--manifest-path", BOOT_MANIFEST, "--", "--check"])
        .run()?;
    Cmd::cargo()
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            STD_FEATURES,
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    nostd::boot_cargo("clippy")
        .args(["--all-targets", "--", "-D", "warnings"])
        .run()
}
