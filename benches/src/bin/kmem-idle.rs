//! `kmem-idle`: memory given back after a burst, with kmalloc as the
//! program's global allocator (`KmallocGlobal`, its reaper thread on).
//!
//! ```sh
//! cargo run --release -p kmem-benches --bin kmem-idle -- [MIB] [OBJECT_BYTES] [IDLE_MS]
//! ```
//!
//! Allocates `MIB` MiB (default 1024) of `OBJECT_BYTES`-byte boxes (default
//! 32), frees them all, and idles `IDLE_MS` (default 2000), sampling the
//! resident set (`/proc/self/statm`) every 100 ms. Prints one JSON object:
//! the resident set before, when the burst is allocated, right after the
//! frees, at the end and the highest of them all (bytes), the end as a
//! share of the highest, the first sample at most 10 % of it, right after
//! the frees the bytes of magazines alive against the bytes of the objects
//! their depots held, and the reaper's passes and their cost.

use core::time::Duration;
use std::time::Instant;

use kmalloc::KmallocGlobal;
use serde::Serialize;

#[global_allocator]
static KMALLOC: KmallocGlobal = KmallocGlobal::new();

/// Resident bytes of this process.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's resident field");
    pages * 4096
}

/// Bytes of magazines alive and of the rounds their depots hold, over
/// every cache.
fn magazines() -> (u64, u64) {
    let k = KMALLOC.get().expect("booted");
    let (mut mags, mut cached) = (0, 0);
    k.caches().for_each(|c| {
        if let Some(m) = c.magazine_stats() {
            mags += m.magazine_bytes;
            cached += m.depot_rounds as u64 * c.size() as u64;
        }
    });
    (mags, cached)
}

/// The line printed (fields in the module docs).
#[derive(Serialize)]
struct Idle {
    mib: u64,
    object: u64,
    objects: usize,
    burst_ms: u128,
    rss_before: u64,
    rss_peak: u64,
    rss_after_free: u64,
    rss_end: u64,
    rss_high: u64,
    /// `rss_end / rss_high`, 4 decimals.
    end_of_high: f64,
    /// `-1`: never at or below 10 % of the highest.
    ms_to_10pct: i64,
    magazine_bytes_after_free: u64,
    cached_bytes_after_free: u64,
    upkeep_passes: u64,
    upkeep_max_ns: u64,
    upkeep_mean_ns: u64,
    purged: u64,
}

/// `[MIB] [OBJECT_BYTES] [IDLE_MS]`, each defaulted.
const USAGE: &str = "usage: kmem-idle [MIB] [OBJECT_BYTES] [IDLE_MS] (defaults 1024 32 2000)";

/// The positional numbers, read with lexopt; the defaults for those not
/// given.
fn args() -> Result<[u64; 3], lexopt::Error> {
    use lexopt::prelude::*;
    let mut out = [1024, 32, 2000];
    let mut given = 0;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Value(v) if given < out.len() => {
                out[given] = v.parse()?;
                given += 1;
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(out)
}

/// One box of the burst: `N` bytes.
fn burst<const N: usize>(bytes: u64) -> Vec<Box<[u8; N]>> {
    let n = (bytes / N as u64) as usize;
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(Box::new([i as u8; N]));
    }
    v
}

fn main() {
    let [mib, object, idle_ms] = args().unwrap_or_else(|e| {
        eprintln!("kmem-idle: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let idle = Duration::from_millis(idle_ms);
    let before = rss();
    let bytes = mib << 20;
    let t = Instant::now();
    macro_rules! run {
        ($n:literal) => {{
            let v = burst::<$n>(bytes);
            let peak = rss();
            let objects = v.len();
            drop(v);
            (peak, objects)
        }};
    }
    let (peak, objects) = match object {
        16 => run!(16),
        32 => run!(32),
        64 => run!(64),
        256 => run!(256),
        other => panic!("object size {other}: one of 16, 32, 64, 256"),
    };
    let burst_ms = t.elapsed().as_millis();
    let (mag_bytes, cached_bytes) = magazines();
    let freed = rss();
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < idle {
        std::thread::sleep(Duration::from_millis(100));
        samples.push((start.elapsed().as_millis(), rss()));
    }
    let end = rss();
    let high = samples
        .iter()
        .map(|&(_, r)| r)
        .chain([peak, freed])
        .max()
        .unwrap_or(peak);
    if std::env::var_os("KMEM_IDLE_REPORT").is_some() {
        let mut r = String::new();
        KMALLOC.get().unwrap().report(&mut r).unwrap();
        eprintln!("{r}\nOS mapped {}", KmallocGlobal::os_pages().mapped());
    }
    let up = KmallocGlobal::upkeep();
    let below_10 = samples
        .iter()
        .find(|&&(_, r)| r * 10 <= high)
        .map_or(-1, |&(ms, _)| ms as i64);
    let line = Idle {
        mib,
        object,
        objects,
        burst_ms,
        rss_before: before,
        rss_peak: peak,
        rss_after_free: freed,
        rss_end: end,
        rss_high: high,
        end_of_high: (end as f64 / high as f64 * 1e4).round() / 1e4,
        ms_to_10pct: below_10,
        magazine_bytes_after_free: mag_bytes,
        cached_bytes_after_free: cached_bytes,
        upkeep_passes: up.passes,
        upkeep_max_ns: up.max_ns,
        upkeep_mean_ns: up.total_ns.checked_div(up.passes).unwrap_or(0),
        purged: up.purged,
    };
    println!(
        "{}",
        serde_json::to_string(&line).expect("the line serializes")
    );
}
