//! `cargo xtask lint`: formatting, clippy and the docs, warnings denied, and
//! the library crates' packages. `cargo xtask test` (what CI runs) runs it
//! first.
//!
//! 1. `cargo fmt --check` over the workspace and over `ci/nostd-boot` and
//!    `ci/one-dep` (each its own workspace, so `--all` does not reach them);
//! 2. `cargo clippy --workspace --all-targets --features <every feature>
//!    -- -D warnings` (every feature's code paths and their tests; a missing
//!    `// SAFETY:` comment is `clippy::undocumented_unsafe_blocks`, denied
//!    here). Every feature is each member's features as `cargo metadata`
//!    lists them, but [`NIGHTLY_FEATURES`]: `--all-features` would take
//!    those too, and they do not build on stable;
//! 3. the same clippy for `ci/nostd-boot`, with its own manifest and target
//!    directory (see [`crate::nostd`]);
//! 4. `cargo +nightly clippy -p kmalloc --features nightly --all-targets
//!    --target-dir target/nightly -- -D warnings`: kmalloc's `nightly`
//!    feature (core's unstable `Allocator`) and its test. Skipped, saying
//!    so, without a nightly toolchain;
//! 5. `cargo doc --workspace --no-deps --features <every feature>` (as in
//!    step 2) with `RUSTDOCFLAGS=-D warnings`, so a broken intra-doc link
//!    fails;
//! 6. `cargo package --workspace --allow-dirty --exclude xtask --exclude
//!    kmem-benches`: every library crate under `crates/` is packaged as
//!    crates.io would take it (its README, metadata, a version on every
//!    dependency) and the unpacked package builds with its default
//!    features. Packaged together, the crates resolve each other from a
//!    local registry of the packages made before them (in dependency
//!    order), so none needs to be on crates.io yet (built in
//!    `target/package-check`, emptied first, and what cargo unpacked of
//!    the siblings before removed: cargo would reuse both for a sibling of
//!    the same version whose API has changed); other dependencies
//!    come from the crates.io index (the network, or a warm cache with
//!    `CARGO_NET_OFFLINE=true`). `xtask` and `kmem-benches` are
//!    `publish = false`. Uncommitted changes are allowed, so that lint
//!    runs before a commit.
//!
//! The lint levels themselves live once, in the root `[workspace.lints]`.

use crate::nostd::{self, BOOT_MANIFEST};
use crate::shell::{has_nightly, nightly, Cmd, Error, Result, NIGHTLY_TARGET};

/// The features that need a nightly compiler (they turn on `#![feature]`),
/// as `package/feature`: left out of the stable steps, linted by step 4.
pub(crate) const NIGHTLY_FEATURES: [&str; 1] = ["kmalloc/nightly"];

/// Runs every lint step, stopping at the first failure.
pub(crate) fn run() -> Result {
    let features = stable_features()?.join(",");
    Cmd::cargo().args(["fmt", "--all", "--", "--check"]).run()?;
    for manifest in [BOOT_MANIFEST, crate::test::ONE_DEP_MANIFEST] {
        Cmd::cargo()
            .args(["fmt", "--manifest-path", manifest, "--", "--check"])
            .run()?;
    }
    Cmd::cargo()
        .args(["clippy", "--workspace", "--all-targets", "--features"])
        .arg(&features)
        .args(["--", "-D", "warnings"])
        .run()?;
    nostd::boot_cargo("clippy")
        .args(["--all-targets", "--", "-D", "warnings"])
        .run()?;
    if has_nightly() {
        nightly()
            .args(["clippy", "-p", "kmalloc", "--features", "nightly"])
            .args(["--all-targets", "--target-dir", NIGHTLY_TARGET])
            .args(["--", "-D", "warnings"])
            .run()?;
    } else {
        eprintln!(
            "xtask lint: skipped clippy on kmalloc's `nightly` feature: `cargo +nightly \
             --version` failed. It needs a nightly toolchain (`rustup toolchain install \
             nightly`)."
        );
    }
    Cmd::cargo()
        .args(["doc", "--workspace", "--no-deps", "--features"])
        .arg(&features)
        .env("RUSTDOCFLAGS", "-D warnings")
        .run()?;
    // A target directory of its own, emptied first: cargo keys what it
    // built for a registry crate by name and version only, so a sibling
    // whose API changed since the last run, still 0.1.0, would be linked
    // stale into the next one's verification.
    let check_dir = crate::shell::project_root().join(PACKAGE_TARGET);
    if check_dir.exists() {
        std::fs::remove_dir_all(&check_dir).map_err(|e| {
            crate::shell::Error::new(format!("emptying {}: {e}", check_dir.display()))
        })?;
    }
    forget_unpacked_siblings()?;
    Cmd::cargo()
        .args(["package", "--workspace", "--allow-dirty", "--target-dir"])
        .arg(&check_dir)
        .args(UNPUBLISHED.iter().flat_map(|&name| ["--exclude", name]))
        .run()
}

/// Where step 6 builds, from scratch each time.
const PACKAGE_TARGET: &str = "target/package-check";

/// Every feature of every workspace member (`cargo metadata --no-deps`),
/// as `package/feature`.
fn all_features() -> Result<Vec<String>> {
    let out = Cmd::cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "`cargo metadata` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::new(format!("reading `cargo metadata`: {e}")))?;
    let mut features = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        for feature in package["features"]
            .as_object()
            .into_iter()
            .flat_map(|f| f.keys())
        {
            features.push(format!("{name}/{feature}"));
        }
    }
    Ok(features)
}

/// What `--all-features` turns on that stable builds: [`all_features`]
/// less [`NIGHTLY_FEATURES`].
fn stable_features() -> Result<Vec<String>> {
    let mut features = all_features()?;
    features.retain(|f| !NIGHTLY_FEATURES.contains(&f.as_str()));
    Ok(features)
}

/// Removes what cargo unpacked from the packaging's local registry on an
/// earlier run (`$CARGO_HOME/registry/src/-<hash>/kmem-*`, `kmalloc-*`):
/// it unpacks a crate of a name and version only once, so a sibling whose
/// API changed since, still 0.1.0, would be verified against its old
/// source. Only directories of local registries (named `-<hash>`, without
/// an index host) are touched, and in them only this workspace's crates.
fn forget_unpacked_siblings() -> crate::shell::Result {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(unpacked) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for dir in unpacked.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if name.starts_with("kmem-") || name.starts_with("kmalloc-") {
                std::fs::remove_dir_all(dir.path()).map_err(|e| {
                    crate::shell::Error::new(format!("removing {}: {e}", dir.path().display()))
                })?;
            }
        }
    }
    Ok(())
}

/// The workspace members that are not for crates.io (`publish = false`),
/// left out of step 6; every other member is a library crate under
/// `crates/` and must package.
const UNPUBLISHED: &[&str] = &["xtask", "kmem-benches"];

#[cfg(test)]
mod tests {
    use super::{all_features, stable_features, NIGHTLY_FEATURES, UNPUBLISHED};
    use crate::shell::project_root;
    use std::fs;

    /// The stable steps take every feature but the nightly ones, and each
    /// of those names a feature that exists.
    #[test]
    fn stable_features_are_all_but_the_nightly_ones() {
        let all = all_features().unwrap();
        let stable = stable_features().unwrap();
        for f in NIGHTLY_FEATURES {
            assert!(all.iter().any(|a| a == f), "no feature {f}");
            assert!(!stable.iter().any(|s| s == f), "{f} left in");
        }
        for f in ["kmalloc/std", "kmalloc/site-stats", "kmem-magazine/loom"] {
            assert!(stable.iter().any(|s| s == f), "{f} missing");
        }
        assert_eq!(stable.len() + NIGHTLY_FEATURES.len(), all.len());
    }

    /// Every crate under `crates/` carries what crates.io and docs.rs show
    /// (step 6 checks the rest: that it packages and builds), and is not
    /// `publish = false`.
    #[test]
    fn library_crates_carry_their_package_metadata() {
        let crates = project_root().join("crates");
        let mut seen = 0;
        for entry in fs::read_dir(&crates).unwrap() {
            let dir = entry.unwrap().path();
            let manifest = dir.join("Cargo.toml");
            let Ok(text) = fs::read_to_string(&manifest) else {
                continue;
            };
            seen += 1;
            let name = manifest.display();
            for key in [
                "description = ",
                "readme = \"README.md\"",
                "documentation = \"https://docs.rs/",
                "keywords = ",
                "categories = ",
                "[package.metadata.docs.rs]",
            ] {
                assert!(
                    text.lines().any(|line| line.starts_with(key)),
                    "{name} lacks `{key}`"
                );
            }
            assert!(
                !text.lines().any(|line| line.starts_with("publish = false")),
                "{name} is unpublished"
            );
            assert!(dir.join("README.md").is_file(), "{name}: no README.md");
        }
        assert!(seen >= 10, "only {seen} crates under crates/");
    }

    /// The members step 6 leaves out are exactly those marked
    /// `publish = false`.
    #[test]
    fn unpublished_members_are_marked() {
        let root = project_root();
        for (name, dir) in UNPUBLISHED.iter().zip(["xtask", "benches"]) {
            let text = fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
            assert!(
                text.contains(&format!("name = \"{name}\"")),
                "{dir}: not {name}"
            );
            assert!(
                text.lines().any(|line| line.starts_with("publish = false")),
                "{name} is publishable"
            );
        }
    }

    /// No placeholder URL in the manifests.
    #[test]
    fn no_placeholder_urls() {
        let root = project_root();
        let mut manifests = vec![root.join("Cargo.toml")];
        for entry in fs::read_dir(root.join("crates")).unwrap() {
            manifests.push(entry.unwrap().path().join("Cargo.toml"));
        }
        for manifest in manifests.into_iter().filter(|m| m.is_file()) {
            let text = fs::read_to_string(&manifest).unwrap();
            assert!(
                !text.contains("example.invalid") && !text.contains("example.com"),
                "{} names a placeholder host",
                manifest.display()
            );
        }
    }
}
