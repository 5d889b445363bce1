//! `cargo xtask lint`: formatting, clippy and the docs, warnings denied.
//! `cargo xtask test` (what CI runs) runs it first.
//!
//! 1. `cargo fmt --check` over the workspace and over `ci/nostd-boot` (which
//!    is its own workspace, so `--all` does not reach it);
//! 2. `cargo clippy --workspace --all-targets --all-features -- -D warnings`
//!    (every feature's code paths and their tests; a missing `// SAFETY:`
//!    comment is `clippy::undocumented_unsafe_blocks`, denied here);
//! 3. the same clippy for `ci/nostd-boot`, with its own manifest and target
//!    directory (see [`crate::nostd`]);
//! 4. `cargo doc --workspace --no-deps --all-features` with `RUSTDOCFLAGS=-D
//!    warnings`, so a broken intra-doc link fails.
//!
//! The lint levels themselves live once, in the root `[workspace.lints]`.

use crate::nostd::{self, BOOT_MANIFEST};
use crate::shell::{Cmd, Result};

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
            "--all-features",
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    nostd::boot_cargo("clippy")
        .args(["--all-targets", "--", "-D", "warnings"])
        .run()?;
    Cmd::cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .run()
}
