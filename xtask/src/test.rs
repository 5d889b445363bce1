//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! 0. `cargo xtask lint` — formatting, clippy on every target and feature,
//!    and the docs, each with warnings denied (see [`crate::lint`]).
//! 1. `cargo test --workspace --features kmalloc/std` — unit, integration
//!    and doc tests of every workspace member (`--workspace` is explicit
//!    because the root manifest's `default-members` leaves `xtask` out;
//!    kmalloc's `std` feature brings in its test binary whose
//!    `#[global_allocator]` is kmalloc). The freestanding program in
//!    `ci/nostd-boot` is not a member, so it is not part of this step.
//! 2. `cargo xtask nostd` — the no_std builds and the freestanding program.
//!
//! `--release` adds `--release` to step 1. The randomized tests scale their
//! iteration counts by `KMEM_TEST_SCALE` (default 1), which passes through
//! from the environment; `--long` sets it to 10 for the child processes.

use crate::flags::TestOpts;
use crate::shell::{Cmd, Result};
use crate::{lint, nostd};

/// Features the test build turns on: kmalloc's std global allocator.
pub(crate) const STD_FEATURES: &str = "kmalloc/std";

/// `KMEM_TEST_SCALE` under `--long`.
const LONG_SCALE: &str = "10";

/// Runs the test suite and then the no_std checks.
pub(crate) fn run(opts: &TestOpts) -> Result {
    lint::run()?;
    let mut cargo = Cmd::cargo().args(["test", "--workspace", "--features", STD_FEATURES]);
    if opts.release {
        cargo = cargo.arg("--release");
    }
    if opts.long {
        cargo = cargo.env("KMEM_TEST_SCALE", LONG_SCALE);
    }
    cargo.run()?;
    nostd::run()
}
