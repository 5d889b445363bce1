//! Proof that `kmalloc` alone is enough as a dependency: a booted stack
//! over this program's own memory, and `KmallocGlobal` as its global
//! allocator, named only through `kmalloc`'s paths.

use core::alloc::Layout;

use kmalloc::{boot, AllocFlags, CacheFlags, Caller, Config, KmallocGlobal, ThreadCpus};

#[global_allocator]
static GLOBAL: KmallocGlobal = KmallocGlobal::new();

fn main() {
    // The global allocator: a Vec and a String.
    let v: Vec<u64> = (0..10_000).collect();
    let s = format!("{} numbers, {}", v.len(), v.iter().sum::<u64>());
    assert_eq!(s, "10000 numbers, 49995000");
    assert!(GLOBAL.get().is_some(), "the global allocator booted");

    // A stack of its own, in debug mode, over 16 MiB of this program's.
    let mut mem = vec![0u8; 16 << 20];
    let config = Config {
        debug: CacheFlags::DEBUG_ALL,
        ..Config::default()
    };
    let total = boot(&mut mem, ThreadCpus::global(), &config, |k| {
        let layout = Layout::from_size_align(200, 8).unwrap();
        let p = k
            .alloc_by(layout, AllocFlags::ZERO, Caller::Unknown)
            .expect("an allocation");
        // SAFETY: 200 zeroed bytes, ours.
        let sum: u32 = unsafe { core::slice::from_raw_parts(p.as_ptr(), 200) }
            .iter()
            .map(|&b| u32::from(b))
            .sum();
        // SAFETY: allocated above with `layout`, freed once.
        unsafe { k.free(p, layout) }.expect("a free");
        let mut report = String::new();
        k.report(&mut report).expect("a report");
        assert!(report.contains("kmalloc_208"), "{report}");
        sum
    })
    .expect("a boot");
    assert_eq!(total, 0);
    println!("kmem-one-dep: kmalloc alone booted, allocated and freed");
}
