//! `kmem-programs`: B11's real workloads, built from well-known crates, with
//! the global allocator chosen at build time (feature `kmalloc`, feature
//! `mimalloc`, or neither for glibc's malloc through `std::alloc::System`).
//!
//! ```text
//! kmem-programs <workload> [--scale N | --valgrind]
//! kmem-programs list
//! ```
//!
//! Each workload is deterministic: it prints one line,
//! `<workload> allocator=<name> scale=<n> checksum=<hex>`, and the checksum
//! must be the same whatever the allocator (`cargo xtask bench --programs`
//! checks it). `--valgrind` picks the workload's smaller scale, for runs
//! under callgrind. `list` prints each workload with its two scales.

mod channel;
mod collections;
mod json;
mod par;
mod regexes;
mod rng;
mod rust_syn;

use std::process::ExitCode;
use std::time::Instant;

#[cfg(all(feature = "kmalloc", feature = "mimalloc"))]
compile_error!("features `kmalloc` and `mimalloc` each pick the global allocator: enable one");

/// kmem's kmalloc as the global allocator.
#[cfg(feature = "kmalloc")]
#[global_allocator]
static GLOBAL: kmalloc::KmallocGlobal = kmalloc::KmallocGlobal::new();

/// mimalloc as the global allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The global allocator's name, as printed.
const ALLOCATOR: &str = if cfg!(feature = "kmalloc") {
    "kmalloc"
} else if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "glibc"
};

/// One workload: its name, a line about it, the function that runs it at a
/// scale and returns its checksum, and its default and valgrind scales.
struct Workload {
    name: &'static str,
    about: &'static str,
    run: fn(u64) -> u64,
    scale: u64,
    valgrind_scale: u64,
}

/// Every workload, in the order `list` prints them.
const WORKLOADS: &[Workload] = &[
    Workload {
        name: "json",
        about: "serde_json round trips of a document of nested orders (scale: orders)",
        run: json::run,
        scale: 40_000,
        valgrind_scale: 10_000,
    },
    Workload {
        name: "syn",
        about: "syn parses a generated Rust file (full syntax), walks it, prints and reparses it (scale: items)",
        run: rust_syn::run,
        scale: 9_000,
        valgrind_scale: 2_000,
    },
    Workload {
        name: "regex",
        about: "regexes compiled per chunk of log lines, captures, replace_all, a RegexSet (scale: lines)",
        run: regexes::run,
        scale: 180_000,
        valgrind_scale: 40_000,
    },
    Workload {
        name: "collections",
        about: "BTreeMap, HashMap, Vec<String> and VecDeque churn (scale: operations)",
        run: collections::run,
        scale: 6_000_000,
        valgrind_scale: 1_500_000,
    },
    Workload {
        name: "rayon",
        about: "rayon: strings built, collected and sorted in parallel, Vec<Vec<u32>> built and summed (scale: items)",
        run: par::run,
        scale: 1_500_000,
        valgrind_scale: 400_000,
    },
    Workload {
        name: "channel",
        about: "crossbeam-channel: 4 producer/consumer pairs, boxes allocated by one thread and freed by another (scale: messages per pair)",
        run: channel::run,
        scale: 1_200_000,
        valgrind_scale: 300_000,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("kmem-programs: {msg}");
            eprintln!("usage: kmem-programs <workload> [--scale N | --valgrind] | list");
            ExitCode::from(2)
        }
    }
}

/// Parses the command line and runs what it names.
fn run(args: &[String]) -> Result<(), String> {
    let Some((name, rest)) = args.split_first() else {
        return Err("no workload named".into());
    };
    if name == "list" {
        for w in WORKLOADS {
            println!("{} {} {} {}", w.name, w.scale, w.valgrind_scale, w.about);
        }
        return Ok(());
    }
    let w = WORKLOADS
        .iter()
        .find(|w| w.name == name)
        .ok_or_else(|| format!("unknown workload `{name}`"))?;
    let mut scale = w.scale;
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--valgrind" => scale = w.valgrind_scale,
            "--scale" => {
                scale = rest
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("`--scale` needs a positive number")?;
            }
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    let start = Instant::now();
    let checksum = (w.run)(scale);
    let elapsed = start.elapsed();
    println!(
        "{} allocator={ALLOCATOR} scale={scale} checksum={checksum:016x}",
        w.name
    );
    eprintln!(
        "{}: {:.1} ms in the workload",
        w.name,
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
