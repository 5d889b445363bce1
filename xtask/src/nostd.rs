//! `cargo xtask nostd`: proof that the library crates need neither `std` nor
//! `alloc`, and that the whole stack runs in a program without std or libc.
//!
//! 1. `cargo build -p <crate> --no-default-features` for every library crate
//!    under `crates/` except the std-only ones ([`STD_ONLY`]), one cargo run
//!    per crate so that feature unification with other members cannot hide a
//!    `std` dependency. Each crate root must declare `no_std`. Then
//!    `kmalloc` with its `fail-inject` and `site-stats` features
//!    ([`FEATURES_BUILD`]), which turn failure injection on in every crate
//!    below it and per-call-site accounting in `kmem-slab`.
//! 2. The same builds for each installed bare-metal target ([`BARE_TARGETS`]);
//!    skipped, with a note, when `rustup` lists none.
//! 3. `ci/nostd-boot`: a `#![no_std] #![no_main]` static Linux executable
//!    (its own `_start`, raw syscalls, no libc) that boots a base arena over a
//!    static buffer and runs a self-test, then boots the whole stack (base
//!    arena, `kpages`, object caches, kmalloc) over a static region as its
//!    `#[global_allocator]` and checks it through `alloc`'s collections, the
//!    kmalloc API, `xalloc` and a cache with a constructor and destructor,
//!    printing the `::kmastat` report. It is its own workspace (excluded
//!    from the root one) with `panic = "abort"` profiles, built in release mode
//!    into `target/nostd-boot`, run, and required to exit 0 after printing
//!    [`BOOT_SUCCESS`]. It is built for the host target, so this step runs only
//!    on x86_64 Linux.

use std::fs;
use std::path::Path;

use crate::shell::{project_root, Cmd, Error, Result};

/// Library crates that are std-only by design and skipped here: the test
/// harness (fake physical memory), the fuzz harness and the C malloc (a
/// shared library for `LD_PRELOAD` over the std platform).
const STD_ONLY: &[&str] = &["kmem-physmem", "kmem-fuzz", "kmem-malloc"];

/// Bare-metal targets the crates are built for when rustup has them.
const BARE_TARGETS: &[&str] = &[
    "x86_64-unknown-none",
    "thumbv7em-none-eabi",
    "thumbv7em-none-eabihf",
    "riscv64gc-unknown-none-elf",
    "aarch64-unknown-none",
];

/// The build that proves failure injection and per-call-site accounting
/// need no std either: kmalloc's `fail-inject` feature turns the first on
/// in every library crate below, its `site-stats` the second in
/// `kmem-slab`.
const FEATURES_BUILD: [&str; 6] = [
    "build",
    "-p",
    "kmalloc",
    "--no-default-features",
    "--features",
    "fail-inject,site-stats",
];

/// Manifest of the freestanding program, relative to the project root.
pub(crate) const BOOT_MANIFEST: &str = "ci/nostd-boot/Cargo.toml";

/// Its target directory, relative to the project root.
const BOOT_TARGET_DIR: &str = "target/nostd-boot";

/// Its executable, relative to the project root.
const BOOT_EXE: &str = "target/nostd-boot/release/kmem-nostd-boot";

/// The line the freestanding program prints when every check passed.
const BOOT_SUCCESS: &str = "kmem-nostd-boot: all checks passed";

/// Runs the three steps.
pub(crate) fn run() -> Result {
    let crates = no_std_crates()?;
    for name in &crates {
        Cmd::cargo()
            .args(["build", "-p", name, "--no-default-features"])
            .run()?;
    }
    Cmd::cargo().args(FEATURES_BUILD).run()?;
    bare_targets(&crates)?;
    boot()
}

/// `cargo <subcommand>` on the freestanding program, in release mode, with
/// its own manifest and target directory.
pub(crate) fn boot_cargo(subcommand: &str) -> Cmd {
    Cmd::cargo().args([
        subcommand,
        "--release",
        "--manifest-path",
        BOOT_MANIFEST,
        "--target-dir",
        BOOT_TARGET_DIR,
    ])
}

/// Package names of the library crates under `crates/` that must build
/// without std, sorted.
fn no_std_crates() -> Result<Vec<String>> {
    let crates_dir = project_root().join("crates");
    let entries = fs::read_dir(&crates_dir)
        .map_err(|e| Error::new(format!("reading {}: {e}", crates_dir.display())))?;
    let mut names = Vec::new();
    for entry in entries {
        let dir = entry
            .map_err(|e| Error::new(format!("reading {}: {e}", crates_dir.display())))?
            .path();
        let lib = dir.join("src/lib.rs");
        if !lib.is_file() {
            continue;
        }
        let name = package_name(&dir.join("Cargo.toml"))?;
        if STD_ONLY.contains(&name.as_str()) {
            continue;
        }
        let source = read(&lib)?;
        let declares_no_std = source
            .lines()
            .map(str::trim_start)
            .any(|line| line.starts_with("#![") && line.contains("no_std"));
        if !declares_no_std {
            return Err(Error::new(format!(
                "{} ({name}) does not declare #![no_std]; every library crate except \
                 {STD_ONLY:?} must build without std",
                lib.display()
            )));
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// The `name` in the `[package]` table of `manifest`.
fn package_name(manifest: &Path) -> Result<String> {
    let text = read(manifest)?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("name").map(str::trim_start) {
                if let Some(value) = value.strip_prefix('=') {
                    return Ok(value.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    Err(Error::new(format!(
        "{}: no `name` in [package]",
        manifest.display()
    )))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::new(format!("reading {}: {e}", path.display())))
}

/// Step 2: builds `crates` for every installed bare-metal target.
fn bare_targets(crates: &[String]) -> Result {
    let installed = Cmd::new("rustup")
        .args(["target", "list", "--installed"])
        .probe()
        .unwrap_or_default();
    let targets: Vec<&str> = BARE_TARGETS
        .iter()
        .copied()
        .filter(|t| installed.lines().any(|line| line.trim() == *t))
        .collect();
    if targets.is_empty() {
        println!(
            "xtask: no bare-metal target installed ({}); skipping cross builds",
            BARE_TARGETS.join(", ")
        );
        return Ok(());
    }
    for target in targets {
        for name in crates {
            Cmd::cargo()
                .args([
                    "build",
                    "-p",
                    name,
                    "--no-default-features",
                    "--target",
                    target,
                ])
                .run()?;
        }
        Cmd::cargo()
            .args(FEATURES_BUILD)
            .args(["--target", target])
            .run()?;
    }
    Ok(())
}

/// Step 3: builds and runs the freestanding program.
fn boot() -> Result {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        println!("xtask: ci/nostd-boot is an x86_64 Linux program; skipping it on this host");
        return Ok(());
    }
    // Outer RUSTFLAGS would replace nothing here (the link arguments come
    // from the program's build script) but could add flags the freestanding
    // link cannot take (sanitizers, instrumentation); keep the build hermetic.
    boot_cargo("build")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .run()?;
    let exe = project_root().join(BOOT_EXE);
    let out = Cmd::new(&exe).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(Error::new(format!("{BOOT_EXE} failed: {}", out.status)));
    }
    if !stdout.lines().any(|line| line == BOOT_SUCCESS) {
        return Err(Error::new(format!(
            "{BOOT_EXE} exited 0 but did not print `{BOOT_SUCCESS}`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_no_std_crates() {
        let crates = no_std_crates().unwrap();
        assert!(crates.iter().any(|c| c == "kmem-hash"));
        assert!(!crates.iter().any(|c| c == "kmem-physmem"));
    }

    #[test]
    fn boot_manifest_names_the_program() {
        let manifest = project_root().join(BOOT_MANIFEST);
        assert_eq!(package_name(&manifest).unwrap(), "kmem-nostd-boot");
    }
}
