//! Replays the saved fuzz corpus through the harnesses: every file of
//! `fuzz/corpus/<target>/` and, where crashes were fixed, of
//! `fuzz/artifacts/<target>/` (their reproducers). This is how
//! `cargo xtask test` keeps what the fuzzer learnt. Then a few hundred
//! random inputs per target (seed from `KMEM_TEST_SEED`, count times
//! `KMEM_TEST_SCALE`).

use std::fs;
use std::path::{Path, PathBuf};

use kmem_physmem::{scale, seed, Rng};

/// Inputs that are known to fail and not fixed yet: `(target, file name)`.
/// Each names the issue it waits for; remove the entry with the fix.
const SKIP: &[(&str, &str)] = &[];

/// `fuzz/` at the repository root.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("reading a corpus folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every saved input of `target`; returns how many ran.
fn replay(target: &str) -> usize {
    let mut ran = 0;
    for folder in ["corpus", "artifacts"] {
        for file in files(&fuzz_dir().join(folder).join(target)) {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if SKIP.contains(&(target, name)) {
                eprintln!("{target}: skipping {name} (known failure, see SKIP)");
                continue;
            }
            let data = fs::read(&file).expect("reading a corpus file");
            eprintln!("{target}: {}", file.display());
            kmem_fuzz::run(target, &data);
            ran += 1;
        }
    }
    ran
}

#[test]
fn arena_corpus() {
    assert!(replay("arena") > 0, "no saved inputs for arena");
}

#[test]
fn caches_corpus() {
    assert!(replay("caches") > 0, "no saved inputs for caches");
}

#[test]
fn kmalloc_corpus() {
    assert!(replay("kmalloc") > 0, "no saved inputs for kmalloc");
}

/// Random inputs: `count` byte strings of up to `max_len` bytes each.
fn random(target: &str, salt: u64, count: usize, max_len: usize) {
    let seed = seed(0x6b6d_656d_6675_7a7a ^ salt);
    let mut rng = Rng::new(seed);
    for i in 0..count * scale() {
        let len = rng.range(0, max_len);
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        eprintln!("{target}: random input {i} (seed {seed})");
        kmem_fuzz::run(target, &data);
    }
}

#[test]
fn arena_random() {
    random("arena", 1, 150, 2048);
}

#[test]
fn caches_random() {
    random("caches", 2, 100, 2048);
}

#[test]
fn kmalloc_random() {
    random("kmalloc", 3, 60, 2048);
}
