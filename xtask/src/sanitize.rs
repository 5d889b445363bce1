//! `cargo xtask sanitize`: the test suite and the stress binary under
//! nightly AddressSanitizer, then the stress binary under ThreadSanitizer.
//!
//! 1. AddressSanitizer (`-Zsanitizer=address`) with `--cfg kmem_asan`, which
//!    makes memory arenas poison their free segments and object caches their
//!    free objects (including those waiting in magazines), and the base
//!    arena its unused memory: a use after free inside the managed memory
//!    is reported. `cargo test --workspace` (benches excluded: their C peer
//!    is not built for the sanitizer) and the stress binary; leaks are
//!    checked, with the suppressions in `ci/lsan.supp` (tests that leak on
//!    purpose). `crates/kmalloc/tests/asan.rs` proves the poisoning works:
//!    its children must die with a `use-after-poison` report.
//! 2. ThreadSanitizer (`-Zsanitizer=thread`) over the stress binary. The
//!    standard library is not rebuilt with the sanitizer (no `rust-src`
//!    here), hence `-Cunsafe-allow-abi-mismatch=sanitizer`; the stress
//!    binary's own synchronization (the shared queue) is a spin lock built
//!    in instrumented code.
//!
//! Builds go to `target/asan` and `target/tsan` for the host target
//! (`--target` keeps build scripts and proc macros uninstrumented). Without
//! a nightly toolchain it says so and succeeds.

use crate::flags::StressOpts;
use crate::shell::{has_nightly, nightly, project_root, Result};
use crate::stress::{stress_args, STRESS};

/// The only target the sanitizer runtimes are installed for here.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The stress run under each sanitizer: smaller than the default, since
/// instrumented code runs several times slower.
fn stress_opts() -> StressOpts {
    StressOpts {
        threads: 4,
        ops: 100_000,
        seed: 1,
        big_heap: None,
    }
}

/// Runs both sanitizers.
pub(crate) fn run() -> Result {
    if !has_nightly() {
        println!("xtask: no nightly toolchain (`cargo +nightly`); skipping the sanitizer runs");
        return Ok(());
    }
    let supp = project_root().join("ci").join("lsan.supp");
    let asan = "-Zsanitizer=address --cfg kmem_asan";
    nightly()
        .args(["test", "--target", TARGET, "--target-dir", "target/asan"])
        .args(["--workspace", "--exclude", "kmem-benches"])
        .args(["--features", "kmalloc/std"])
        .env("RUSTFLAGS", asan)
        // Doctests too: their binaries link the instrumented crates.
        .env("RUSTDOCFLAGS", asan)
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .env("LSAN_OPTIONS", format!("suppressions={}", supp.display()))
        .run()?;
    let opts = stress_opts();
    // The stress binary, released, built for `TARGET` into `dir`.
    let stress = |dir: &str| {
        nightly()
            .args(["run", "--release", "--target", TARGET, "--target-dir", dir])
            .args(STRESS)
            .arg("--")
            .args(stress_args(&opts))
    };
    stress("target/asan")
        .env("RUSTFLAGS", asan)
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .run()?;
    stress("target/tsan")
        .env(
            "RUSTFLAGS",
            "-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer",
        )
        .env("TSAN_OPTIONS", "halt_on_error=1")
        .run()?;
    println!(
        "xtask: sanitizers: AddressSanitizer (tests + stress) and ThreadSanitizer (stress) clean"
    );
    Ok(())
}
