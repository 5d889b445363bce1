//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! 0. `cargo xtask lint` — formatting, clippy on every target and feature
//!    (kmalloc's `nightly` with the nightly toolchain, where there is one),
//!    and the docs, each with warnings denied (see [`crate::lint`]).
//! 1. `cargo test --workspace --features kmalloc/std` — unit, integration
//!    and doc tests of every workspace member (`--workspace` is explicit
//!    because the root manifest's `default-members` leaves `xtask` out;
//!    kmalloc's `std` feature brings in its test binary whose
//!    `#[global_allocator]` is kmalloc). The freestanding program in
//!    `ci/nostd-boot` is not a member, so it is not part of this step.
//! 2. `cargo test -p kmem-arena -p kmem-magazine -p kmem-slab -p kmalloc
//!    --features <each>/fail-inject,kmalloc/std --test fail_inject` — the
//!    failure-injection tests, which need the `fail-inject` feature
//!    (`required-features`, so step 1 skips them). Only these binaries run:
//!    the feature's plans are process-wide, so they must not share a
//!    process with tests that do not expect failures. Then kmalloc's doc
//!    tests with the same features and `kmalloc/site-stats`, for the
//!    README's failure-injection and per-site accounting examples (each doc
//!    test is a process of its own).
//! 3. `cargo test -p kmem-slab -p kmalloc --features
//!    kmem-slab/site-stats,kmalloc/site-stats,kmalloc/std --test
//!    site_stats` — the per-call-site accounting tests, which need the
//!    `site-stats` feature (`required-features`). Only these binaries run
//!    with it: the feature changes the slab geometry that other tests pin.
//! 4. `cargo +nightly test -p kmalloc --features nightly --test
//!    nightly_allocator --target-dir target/nightly` — std's collections
//!    over kmalloc as core's unstable `Allocator` (kmalloc's `nightly`
//!    feature, `required-features`), in a target directory of its own so
//!    that the stable builds are not redone. Skipped, saying so, without a
//!    nightly toolchain (`cargo +nightly --version` fails).
//! 5. `cargo run --locked --manifest-path ci/one-dep/Cargo.toml` — a
//!    program that depends on `kmalloc` alone (its own workspace, so no
//!    other crate of the project is in reach) boots a stack and uses
//!    `KmallocGlobal` through `kmalloc`'s paths only.
//! 6. `cargo xtask nostd` — the no_std builds and the freestanding program.
//!
//! `--release` adds `--release` to steps 1 to 4. The randomized tests
//! scale their iteration counts by `KMEM_TEST_SCALE` (default 1), which
//! passes through from the environment; `--long` sets it to 10 for the
//! child processes.

use crate::flags::TestOpts;
use crate::shell::{has_nightly, nightly, Cmd, Result, NIGHTLY_TARGET};
use crate::{lint, nostd};

/// Features the test build turns on: kmalloc's std global allocator.
pub(crate) const STD_FEATURES: &str = "kmalloc/std";

/// The crates with a `fail-inject` feature and a `fail_inject` test binary.
const FAIL_INJECT_CRATES: [&str; 4] = ["kmem-arena", "kmem-magazine", "kmem-slab", "kmalloc"];

/// The test binary each of [`FAIL_INJECT_CRATES`] has.
const FAIL_INJECT_TEST: &str = "fail_inject";

/// The crates with a `site-stats` feature and a `site_stats` test binary.
const SITE_STATS_CRATES: [&str; 2] = ["kmem-slab", "kmalloc"];

/// The test binary each of [`SITE_STATS_CRATES`] has.
const SITE_STATS_TEST: &str = "site_stats";

/// `KMEM_TEST_SCALE` under `--long`.
const LONG_SCALE: &str = "10";

/// Runs the test suite and then the no_std checks.
pub(crate) fn run(opts: &TestOpts) -> Result {
    lint::run()?;
    with_opts(
        Cmd::cargo().args(["test", "--workspace", "--features", STD_FEATURES]),
        opts,
    )
    .run()?;
    let mut features: Vec<String> = FAIL_INJECT_CRATES
        .iter()
        .map(|c| format!("{c}/fail-inject"))
        .collect();
    features.push(STD_FEATURES.to_owned());
    let features = features.join(",");
    let mut cargo = Cmd::cargo().arg("test");
    for c in FAIL_INJECT_CRATES {
        cargo = cargo.args(["-p", c]);
    }
    cargo = cargo.args(["--features", &features, "--test", FAIL_INJECT_TEST]);
    with_opts(cargo, opts).run()?;
    let doc_features = format!("{features},kmalloc/site-stats");
    let doc = Cmd::cargo().args([
        "test",
        "-p",
        "kmalloc",
        "--features",
        &doc_features,
        "--doc",
    ]);
    with_opts(doc, opts).run()?;
    let mut features: Vec<String> = SITE_STATS_CRATES
        .iter()
        .map(|c| format!("{c}/site-stats"))
        .collect();
    features.push(STD_FEATURES.to_owned());
    let features = features.join(",");
    let mut cargo = Cmd::cargo().arg("test");
    for c in SITE_STATS_CRATES {
        cargo = cargo.args(["-p", c]);
    }
    cargo = cargo.args(["--features", &features, "--test", SITE_STATS_TEST]);
    with_opts(cargo, opts).run()?;
    nightly_allocator(opts)?;
    Cmd::cargo()
        .args(["run", "--locked", "--manifest-path", ONE_DEP_MANIFEST])
        .args(["--target-dir", "target/one-dep"])
        .run()?;
    nostd::run()
}

/// kmalloc's test of core's `Allocator`, which needs its `nightly` feature.
const NIGHTLY_TEST: &str = "nightly_allocator";

/// Step 4: [`NIGHTLY_TEST`] with the nightly toolchain, or a line saying
/// it is skipped where there is none.
fn nightly_allocator(opts: &TestOpts) -> Result {
    if !has_nightly() {
        eprintln!(
            "xtask test: skipped kmalloc's `{NIGHTLY_TEST}` test (its `nightly` feature, core's \
             unstable `Allocator`): `cargo +nightly --version` failed. It needs a nightly \
             toolchain (`rustup toolchain install nightly`)."
        );
        return Ok(());
    }
    let cargo = nightly()
        .args(["test", "-p", "kmalloc", "--features", "nightly"])
        .args(["--test", NIGHTLY_TEST, "--target-dir", NIGHTLY_TARGET]);
    with_opts(cargo, opts).run()
}

/// The program that depends on `kmalloc` alone (step 5).
pub(crate) const ONE_DEP_MANIFEST: &str = "ci/one-dep/Cargo.toml";

/// Adds what `--release` and `--long` ask for to a `cargo test`.
fn with_opts(mut cargo: Cmd, opts: &TestOpts) -> Cmd {
    if opts.release {
        cargo = cargo.arg("--release");
    }
    if opts.long {
        cargo = cargo.env("KMEM_TEST_SCALE", LONG_SCALE);
    }
    cargo
}
