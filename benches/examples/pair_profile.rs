//! Runs one arena workload in a loop for instruction-count profiling
//! (`valgrind --tool=callgrind`): `same` allocates one quantum from a large
//! free segment and frees it at once, with 10^4 live segments around.
//!
//! ```sh
//! cargo build --release -p kmem-benches --example pair_profile
//! valgrind --tool=callgrind target/release/examples/pair_profile same 100000
//! ```

use kmem_arena::{Arena, Policy};
use kmem_physmem::{PhysMem, PAGE_SIZE};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "same".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let ram = PhysMem::new(64 << 20);
    let base = ram.base_arena("base", PAGE_SIZE);
    let ids = Arena::builder("ids")
        .quantum(1)
        .span(1 << 32, 1 << 40)
        .tags_from(&base)
        .build()
        .unwrap();
    let live: Vec<usize> = (0..10_000)
        .map(|_| ids.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    match mode.as_str() {
        "same" => {
            for _ in 0..n {
                let a = ids.alloc(1, Policy::InstantFit).unwrap();
                ids.free(a, 1).unwrap();
            }
        }
        "hole" => {
            ids.free(live[5000], 1).unwrap();
            for _ in 0..n {
                let a = ids.alloc(1, Policy::InstantFit).unwrap();
                ids.free(a, 1).unwrap();
            }
            ids.alloc(1, Policy::InstantFit).unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
    ids.check().unwrap();
    println!("{mode}: {n} pairs, {} live", live.len());
}
