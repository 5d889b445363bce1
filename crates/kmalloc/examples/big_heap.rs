//! `cargo xtask stress --big-heap [--gib G]`: kmalloc as the global
//! allocator of a program with a big heap, the case a fixed metadata
//! reservation could not hold.
//!
//! 1. 28 million `Box<u64>` collected and dropped (the depots fill with
//!    full magazines: metadata), then 1 000 1200-byte `Vec`s (a size class
//!    not used before, whose slabs need metadata of their own);
//! 2. mixed sizes (16 B to 1 MiB, most small) allocated and filled until
//!    `G` GiB (default 6) are live, a random half freed and allocated
//!    again, every object checked, everything freed.
//!
//! Prints what each phase took and the metadata's size (the base arena's
//! memory); exits non-zero if an object was corrupted. An allocation that
//! fails aborts the program, as Rust's global allocators do.

use std::process::ExitCode;
use std::time::Instant;

use kmalloc::KmallocGlobal;
use kmem_physmem::Rng;

#[global_allocator]
static KMALLOC: KmallocGlobal = KmallocGlobal::new();

const GIB: usize = 1 << 30;

/// The metadata now: the base arena's memory in use, and all of it
/// (reserved address space, touched as used).
fn metadata() -> (usize, usize) {
    KMALLOC.get().map_or((0, 0), |k| {
        let base = k.caches().base();
        (base.amt_total() - base.amt_free(), base.amt_total())
    })
}

/// The process's peak resident set in bytes (`VmHWM`).
fn peak_rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map_or(0, |kib| kib << 10)
}

fn report(phase: &str, t: Instant) {
    let (used, reserved) = metadata();
    println!(
        "{phase}: {:.1} s, metadata {} of {} MiB, peak RSS {} MiB",
        t.elapsed().as_secs_f64(),
        used >> 20,
        reserved >> 20,
        peak_rss() >> 20
    );
}

/// A size for the mixed phase: most small, some medium, a few large.
fn size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=69 => rng.range(16, 512),
        70..=96 => rng.range(512, 16 << 10),
        _ => rng.range(16 << 10, 1 << 20),
    }
}

/// An object of `size` bytes, every byte `tag`.
fn object(size: usize, tag: u8) -> Box<[u8]> {
    vec![tag; size].into_boxed_slice()
}

fn intact(o: &[u8], tag: u8) -> bool {
    o.first() == Some(&tag) && o.last() == Some(&tag) && o[o.len() / 2] == tag
}

fn main() -> ExitCode {
    let gib: usize = std::env::args()
        .nth(1)
        .map_or(6, |a| a.parse().expect("usage: big_heap [GiB]"));
    let start = Instant::now();
    let t = Instant::now();
    let boxes: Vec<Box<u64>> = (0..28_000_000u64).map(Box::new).collect();
    let sum: u64 = boxes.iter().map(|b| **b).sum();
    drop(boxes);
    let vecs: Vec<Vec<u8>> = (0..1000u32).map(|i| vec![i as u8; 1200]).collect();
    let mut bad = usize::from(sum != 27_999_999 * 14_000_000);
    bad += vecs
        .iter()
        .enumerate()
        .filter(|(i, v)| !intact(v, *i as u8))
        .count();
    drop(vecs);
    report("28 M boxes dropped, then 1 000 x 1200 B", t);

    let t = Instant::now();
    let mut rng = Rng::new(42);
    let mut live: Vec<(Box<[u8]>, u8)> = Vec::new();
    let mut bytes = 0;
    while bytes < gib * GIB {
        let tag = rng.below(256) as u8;
        let o = object(size(&mut rng), tag);
        bytes += o.len();
        live.push((o, tag));
    }
    report(
        &format!(
            "{} objects, {:.2} GiB live",
            live.len(),
            bytes as f64 / GIB as f64
        ),
        t,
    );
    let t = Instant::now();
    for slot in &mut live {
        if rng.chance(1, 2) {
            let tag = rng.below(256) as u8;
            // The old object goes first, as a program replacing it would.
            let len = slot.0.len();
            *slot = (Box::new([]), 0);
            *slot = (object(len, tag), tag);
        }
    }
    bad += live.iter().filter(|(o, tag)| !intact(o, *tag)).count();
    drop(live);
    report(
        "a random half freed and allocated again, all checked and freed",
        t,
    );
    println!(
        "big heap: {:.1} s in all, {bad} corrupted objects",
        start.elapsed().as_secs_f64()
    );
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
