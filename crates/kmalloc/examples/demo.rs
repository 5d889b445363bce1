//! `cargo xtask demo`: the whole stack working, in seconds.
//!
//! Boots kmalloc over 64 MiB of fake physical memory (a base arena over
//! it, `kpages` with quantum caches, the size-class caches), runs a mixed
//! workload on two threads — objects of every size from 8 bytes to 256 KiB,
//! half of them handed to the other thread to free, an ID arena with
//! `xalloc`, an object cache with a constructor — and prints the
//! `::kmastat` report: every cache, then every arena indented by its source
//! depth.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use kmalloc::{boot, Config, Kmalloc};
use kmem_arena::{Arena, Constraints, Policy};
use kmem_magazine::ThreadCpus;
use kmem_physmem::{PhysMem, Rng};
use kmem_slab::{AllocFlags, CacheBuilder, CtorError, ObjectOps};

/// Operations per thread.
const OPS: usize = 200_000;

/// An object cache's constructor and destructor, counted.
struct Inodes {
    built: AtomicUsize,
    torn: AtomicUsize,
}

/// The inode cache's operations. A cache's operations must outlive the
/// cache set, and the set `boot` builds has a lifetime the closure cannot
/// name: only a `'static` borrow is known to outlive it.
static INODES: Inodes = Inodes {
    built: AtomicUsize::new(0),
    torn: AtomicUsize::new(0),
};

impl ObjectOps for Inodes {
    fn construct(&self, obj: usize, _: AllocFlags) -> Result<(), CtorError> {
        // SAFETY: a 256-byte object of a memory cache, being constructed.
        unsafe { (obj as *mut u64).write(0x1_0DE) };
        self.built.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn destruct(&self, obj: usize) {
        // SAFETY: as above; constructed earlier.
        assert_eq!(unsafe { (obj as *const u64).read() }, 0x1_0DE);
        self.torn.fetch_add(1, Ordering::Relaxed);
    }
}

/// A size from 8 bytes to 256 KiB, mostly small.
fn size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=59 => rng.range(8, 256),
        60..=89 => rng.range(257, 4096),
        90..=98 => rng.range(4097, 32 << 10),
        _ => rng.range((32 << 10) + 1, 256 << 10),
    }
}

/// One worker: allocate, write, keep or hand over, free.
fn work(k: &Kmalloc<'_, ThreadCpus>, seed: u64, tx: mpsc::SyncSender<(usize, Layout)>) {
    let mut rng = Rng::new(seed);
    let mut held: Vec<(usize, Layout)> = Vec::new();
    for _ in 0..OPS {
        let layout = Layout::from_size_align(size(&mut rng), 8).unwrap();
        let p = k.alloc(layout).expect("out of memory").as_ptr();
        // SAFETY: `layout.size()` bytes, just allocated.
        unsafe { p.write_bytes(0x5A, layout.size()) };
        if rng.chance(1, 2) {
            tx.send((p as usize, layout)).unwrap();
        } else {
            held.push((p as usize, layout));
        }
        if held.len() > 300 {
            let (p, l) = held.swap_remove(rng.below(held.len() as u64) as usize);
            free(k, p, l);
        }
    }
    for (p, l) in held {
        free(k, p, l);
    }
}

fn free(k: &Kmalloc<'_, ThreadCpus>, p: usize, l: Layout) {
    // SAFETY: allocated by `work` with `l`, freed once.
    unsafe { k.free(NonNull::new(p as *mut u8).unwrap(), l) }.expect("free refused");
}

fn main() {
    let start = Instant::now();
    let mut ram = PhysMem::new(64 << 20);
    boot(
        ram.bytes_mut(),
        ThreadCpus::global(),
        &Config::default(),
        |k| {
            // An object cache with a constructor, and an ID arena using xalloc.
            let cache = k
                .caches()
                .create(
                    CacheBuilder::new("inode_cache", 256)
                        .source(k.pages())
                        .ops(&INODES),
                )
                .unwrap();
            let pids = Arena::builder("pids")
                .quantum(1)
                .span(1, 1 << 16)
                .tags_from(k.caches().base())
                .build()
                .unwrap();
            let objs: Vec<usize> = (0..1000)
                .map(|_| cache.alloc(AllocFlags::empty()).unwrap())
                .collect();
            let pid_block = pids
                .xalloc(64, &Constraints::new().align(64).nocross(1024))
                .unwrap();
            let pid = pids.alloc(1, Policy::NextFit).unwrap();

            // Two threads of mixed sizes; the main thread frees what they hand over.
            let (tx, rx) = mpsc::sync_channel(1024);
            thread::scope(|s| {
                for seed in [1, 2] {
                    let tx = tx.clone();
                    s.spawn(move || work(k, seed, tx));
                }
                drop(tx);
                for (p, l) in rx {
                    free(k, p, l);
                }
            });

            for o in objs.iter().take(500) {
                // SAFETY: allocated above, freed once.
                unsafe { cache.free(*o) }.unwrap();
            }
            println!(
                "kmem demo: {} ops on 2 threads (sizes 8 B-256 KiB, half freed on another \
             thread), 1000 inodes ({} constructed), PIDs {pid} and {pid_block}..{}",
                2 * OPS,
                INODES.built.load(Ordering::Relaxed),
                pid_block + 64
            );
            println!();
            let mut report = String::new();
            k.report(&mut report).unwrap();
            pids.vmem_row(&mut report).unwrap();
            print!("{report}");

            for o in objs.into_iter().skip(500) {
                // SAFETY: allocated above, freed once.
                unsafe { cache.free(o) }.unwrap();
            }
            cache.destroy().unwrap();
            pids.free(pid, 1).unwrap();
            pids.xfree(pid_block, 64).unwrap();
            k.caches().for_each(|c| c.check().unwrap());
            k.pages().check().unwrap();
        },
    )
    .unwrap();
    println!(
        "\nkmem demo: done in {:.2} s; every cache and arena passed its checker",
        start.elapsed().as_secs_f64()
    );
}
