//! `cargo xtask stress --threads N --ops M --seed S`: multi-threaded
//! operation mixes over every layer at once, each object carrying canaries,
//! objects freed on other threads, every checker at the end, counts that
//! must balance. Prints the operations done and the violations found; exits
//! non-zero on any violation.
//!
//! Each thread, in a random mix:
//! - kmalloc: `alloc`/`alloc_zeroed`/`realloc`/`free` of 8 B to 256 KiB,
//!   alignments up to 4 KiB;
//! - an object cache with a counting constructor and destructor;
//! - a memory arena (`bytes`, quantum 64, importing from `kpages`): `alloc`
//!   and `xalloc` with alignment, phase and nocross;
//! - an ID arena with quantum caches (`ids`, quantum 1, sizes 1-8 cached):
//!   every ID is claimed in a shared table, so one handed out twice shows;
//! - a third of everything allocated goes to a shared queue that every
//!   thread frees from (objects freed on other threads).

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::process::ExitCode;
use std::time::Instant;

use kmalloc::{boot, Config, Kmalloc};
use kmem_arena::{Arena, Constraints, Policy};
use kmem_magazine::ThreadCpus;
use kmem_physmem::{PhysMem, Rng};
use kmem_slab::{AllocFlags, CacheBuilder, CtorError, KmemCache, ObjectOps};

/// IDs the `ids` arena hands out: `[1, IDS]`.
const IDS: usize = 1 << 18;

/// Objects one thread keeps before it frees some.
const KEEP: usize = 400;

struct Args {
    threads: usize,
    ops: u64,
    seed: u64,
    mib: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        threads: 4,
        ops: 200_000,
        seed: 1,
        mib: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--threads" => a.threads = n.max(1) as usize,
            "--ops" => a.ops = n,
            "--seed" => a.seed = n,
            "--mib" => a.mib = n.max(32) as usize,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// A constructor and destructor that count and tag their objects.
struct Counted {
    built: AtomicU64,
    torn: AtomicU64,
    bad: AtomicU64,
}

const TAG: u64 = 0xC0FF_EE00_0000_0000;

/// The object cache's operations. A cache's operations must outlive the
/// cache set, and the set `boot` builds has a lifetime the closure cannot
/// name: only a `'static` borrow is known to outlive it.
static COUNTED: Counted = Counted {
    built: AtomicU64::new(0),
    torn: AtomicU64::new(0),
    bad: AtomicU64::new(0),
};

impl ObjectOps for Counted {
    fn construct(&self, obj: usize, _: AllocFlags) -> Result<(), CtorError> {
        // SAFETY: a 96-byte object of a memory cache, being constructed.
        unsafe { (obj as *mut u64).write(TAG) };
        self.built.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn destruct(&self, obj: usize) {
        // SAFETY: as above; constructed earlier.
        if unsafe { (obj as *const u64).read() } != TAG {
            self.bad.fetch_add(1, Ordering::Relaxed);
        }
        self.torn.fetch_add(1, Ordering::Relaxed);
    }
}

/// Something a thread holds.
#[derive(Clone, Copy)]
enum Held {
    Heap { addr: usize, layout: Layout },
    Object { addr: usize },
    Bytes { addr: usize, size: usize, x: bool },
    Ids { id: usize, n: usize, x: bool },
}

/// What every thread shares, borrowed for `'w`; `'k` is kmalloc's (its
/// cache set's) own lifetime.
struct World<'w, 'k> {
    k: &'w Kmalloc<'k, ThreadCpus>,
    cache: &'w KmemCache<'k, ThreadCpus>,
    bytes: &'w Arena<'w>,
    ids: &'w Arena<'w>,
    /// Owner (thread + 1) of every ID, 0 when free.
    id_owner: Vec<AtomicUsize>,
    handoff: spin::Mutex<Vec<(Held, u64)>>,
    violations: AtomicU64,
    ops: AtomicU64,
}

/// The canary of an allocation: address and a per-allocation stamp.
fn canary(addr: usize, stamp: u64) -> u64 {
    (addr as u64).rotate_left(17) ^ stamp
}

impl World<'_, '_> {
    fn violation(&self, what: &str) {
        if self.violations.fetch_add(1, Ordering::Relaxed) < 10 {
            eprintln!("kmem stress: VIOLATION: {what}");
        }
    }

    /// Where the second canary goes: the last whole word, if it is not the
    /// first.
    fn tail(addr: usize, len: usize) -> Option<usize> {
        (len >= 16).then(|| addr + (len - 8) / 8 * 8)
    }

    /// Writes the canary at both ends of `[addr, addr + len)` (len >= 8).
    fn mark(addr: usize, len: usize, c: u64) {
        // SAFETY: the caller's allocation of `len >= 8` bytes, 8-aligned.
        unsafe { (addr as *mut u64).write(c) };
        if let Some(t) = Self::tail(addr, len) {
            // SAFETY: as above; `t + 8 <= addr + len`.
            unsafe { (t as *mut u64).write(!c) };
        }
    }

    fn check_mark(&self, addr: usize, len: usize, c: u64, what: &str) {
        // SAFETY: as in `mark`: still allocated to the caller.
        let head = unsafe { (addr as *const u64).read() };
        // SAFETY: as above.
        let tail = Self::tail(addr, len).map(|t| unsafe { (t as *const u64).read() });
        if head != c || tail.is_some_and(|t| t != !c) {
            self.violation(&format!("{what} {addr:#x}: canary overwritten"));
        }
    }

    fn alloc(&self, me: usize, rng: &mut Rng, stamp: u64) -> Option<Held> {
        Some(match rng.below(10) {
            0..=4 => {
                let size = match rng.below(20) {
                    0 => rng.range(32 << 10, 256 << 10),
                    1..=5 => rng.range(1024, 32 << 10),
                    _ => rng.range(8, 1024),
                };
                let layout = Layout::from_size_align(size, rng.pow2(3, 12)).ok()?;
                let p = if rng.chance(1, 4) {
                    self.k.alloc_zeroed(layout)
                } else {
                    self.k.alloc(layout)
                }
                .ok()?;
                let addr = p.as_ptr() as usize;
                if !addr.is_multiple_of(layout.align()) {
                    self.violation(&format!("kmalloc {addr:#x} misaligned for {layout:?}"));
                }
                Self::mark(addr, size, canary(addr, stamp));
                Held::Heap { addr, layout }
            }
            5..=6 => {
                let addr = self.cache.alloc(AllocFlags::empty()).ok()?;
                // SAFETY: a constructed 96-byte object.
                if unsafe { (addr as *const u64).read() } != TAG {
                    self.violation(&format!("cache object {addr:#x} not constructed"));
                }
                Self::mark(addr + 8, 88, canary(addr, stamp));
                Held::Object { addr }
            }
            7..=8 => {
                let size = 64 * rng.range(1, 64);
                let x = rng.chance(1, 2);
                let addr = if x {
                    let c = Constraints::new()
                        .align(64 << rng.below(4))
                        .nocross(1 << 16);
                    self.bytes.xalloc(size, &c).ok()?
                } else {
                    self.bytes.alloc(size, Policy::InstantFit).ok()?
                };
                Self::mark(addr, size, canary(addr, stamp));
                Held::Bytes { addr, size, x }
            }
            _ => {
                let n = rng.range(1, 12);
                let x = rng.chance(1, 4);
                let id = if x {
                    self.ids.xalloc(n, &Constraints::new().align(16)).ok()?
                } else {
                    self.ids.alloc(n, Policy::InstantFit).ok()?
                };
                for i in id..id + n {
                    let was = self.id_owner[i].swap(me + 1, Ordering::Relaxed);
                    if was != 0 {
                        self.violation(&format!("ID {i} handed out twice"));
                    }
                }
                Held::Ids { id, n, x }
            }
        })
    }

    fn free(&self, h: Held, stamp: u64) {
        match h {
            Held::Heap { addr, layout } => {
                self.check_mark(
                    addr,
                    layout.size(),
                    canary(addr, stamp),
                    &format!("kmalloc {layout:?}"),
                );
                let p = NonNull::new(addr as *mut u8).unwrap();
                // SAFETY: allocated with `layout`, freed once.
                let freed = unsafe { self.k.free(p, layout) };
                if let Err(e) = freed {
                    self.violation(&format!("kmalloc free refused: {e}"));
                }
            }
            Held::Object { addr } => {
                self.check_mark(addr + 8, 88, canary(addr, stamp), "cache object");
                // The destructor checks the tag in the first word.
                // SAFETY: allocated from the cache, freed once.
                if let Err(e) = unsafe { self.cache.free(addr) } {
                    self.violation(&format!("cache free refused: {e}"));
                }
            }
            Held::Bytes { addr, size, x } => {
                self.check_mark(addr, size, canary(addr, stamp), "bytes segment");
                // SAFETY: allocated from `bytes` with this size (by
                // `xalloc` when `x`), freed once, not used afterwards.
                let r = unsafe {
                    if x {
                        self.bytes.xfree_memory(addr, size)
                    } else {
                        self.bytes.free_memory(addr, size)
                    }
                };
                if let Err(e) = r {
                    self.violation(&format!("bytes free refused: {e}"));
                }
            }
            Held::Ids { id, n, x } => {
                for i in id..id + n {
                    self.id_owner[i].store(0, Ordering::Relaxed);
                }
                let r = if x {
                    self.ids.xfree(id, n)
                } else {
                    self.ids.free(id, n)
                };
                if let Err(e) = r {
                    self.violation(&format!("ids free refused: {e}"));
                }
            }
        }
    }

    /// Every checker and count, once the threads are done.
    fn check_all(&self, ids: &Arena<'_>, qc: &kmem_slab::QCaches<'_, ThreadCpus>) {
        let caches = self.k.caches();
        caches.for_each(|c| {
            if let Err(e) = c.check() {
                self.violation(&format!("cache {}: {e}", c.name()));
            }
        });
        for ar in [caches.base(), self.k.pages(), self.bytes, ids] {
            if let Err(e) = ar.check() {
                self.violation(&format!("arena {}: {e}", ar.name()));
            }
        }
        if self.bytes.stats().live != 0 || user_segments(ids) != 0 || qc.in_use() != 0 {
            self.violation("arena segments or IDs left allocated");
        }
        let mut in_use = 0;
        caches.stats(|s| {
            if s.name.as_str().starts_with("kmalloc_") || s.name.as_str() == "stress_obj" {
                in_use += s.buf_in_use;
            }
        });
        if in_use != 0 {
            self.violation(&format!("{in_use} objects never freed"));
        }
        let (la, lf, _) = self.k.large_counts();
        if la != lf {
            self.violation("large allocations unbalanced");
        }
    }

    /// Resizes a kmalloc allocation: the head canary must survive (in place
    /// or copied); both canaries are written again for the new size.
    fn realloc(&self, h: Held, stamp: u64, rng: &mut Rng) -> Held {
        let Held::Heap { addr, layout } = h else {
            return h;
        };
        self.check_mark(addr, layout.size(), canary(addr, stamp), "kmalloc");
        let new_size = rng.range(8, 2 * layout.size().max(64));
        let p = NonNull::new(addr as *mut u8).unwrap();
        // SAFETY: allocated with `layout`; on success the old block is
        // gone, on failure it is untouched.
        match unsafe { self.k.realloc(p, layout, new_size) } {
            Ok(q) => {
                let naddr = q.as_ptr() as usize;
                // SAFETY: at least 8 bytes, ours; the first 8 were copied.
                if unsafe { (naddr as *const u64).read() } != canary(addr, stamp) {
                    self.violation(&format!(
                        "realloc {addr:#x} -> {naddr:#x} lost the contents"
                    ));
                }
                let layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                Self::mark(naddr, new_size, canary(naddr, stamp));
                Held::Heap {
                    addr: naddr,
                    layout,
                }
            }
            Err(_) => h,
        }
    }

    fn work(&self, me: usize, seed: u64, ops: u64) {
        let mut rng = Rng::new(seed ^ ((me as u64 + 1) << 40));
        let mut held: Vec<(Held, u64)> = Vec::new();
        for op in 0..ops {
            let stamp = rng.next_u64() | 1;
            match rng.below(8) {
                0..=3 => {
                    if let Some(h) = self.alloc(me, &mut rng, stamp) {
                        if rng.chance(1, 3) {
                            self.handoff.lock().push((h, stamp));
                        } else {
                            held.push((h, stamp));
                        }
                    }
                }
                4 => {
                    let theirs = self.handoff.lock().pop();
                    if let Some((h, s)) = theirs {
                        self.free(h, s);
                    }
                }
                5 if !held.is_empty() => {
                    let i = rng.below(held.len() as u64) as usize;
                    let (h, s) = held[i];
                    held[i] = (self.realloc(h, s, &mut rng), s);
                }
                _ if !held.is_empty() => {
                    let (h, s) = held.swap_remove(rng.below(held.len() as u64) as usize);
                    self.free(h, s);
                }
                _ => {}
            }
            while held.len() > KEEP {
                let (h, s) = held.swap_remove(rng.below(held.len() as u64) as usize);
                self.free(h, s);
            }
            if op % 50_000 == 49_999 {
                self.bytes.rescale_hash();
                self.ids.reap();
            }
        }
        for (h, s) in held {
            self.free(h, s);
        }
        self.ops.fetch_add(ops, Ordering::Relaxed);
    }
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "kmem stress: {e}\nusage: stress [--threads N] [--ops M] [--seed S] [--mib RAM]"
            );
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let mut ram = PhysMem::new(a.mib << 20);
    let violations = boot(
        ram.bytes_mut(),
        ThreadCpus::global(),
        &Config::default(),
        |k| {
            let caches = k.caches();
            let cache = caches
                .create(
                    CacheBuilder::new("stress_obj", 96)
                        .source(k.pages())
                        .ops(&COUNTED),
                )
                .unwrap();
            let qc = caches
                .qcaches("ids", 1, 8, kmem_slab::ArenaValues::Integers)
                .unwrap();
            let mut ids = Arena::builder("ids")
                .quantum(1)
                .span(1, IDS)
                .tags_from(caches.base())
                .qcaches(&qc)
                .build()
                .unwrap();
            let mut bytes = Arena::builder("bytes")
                .quantum(64)
                .source(k.pages())
                .tags_from(caches.base())
                .import_scale(2)
                .build()
                .unwrap();
            let (ops, mut violations) = {
                let world = World {
                    k,
                    cache: &cache,
                    bytes: &bytes,
                    ids: &ids,
                    id_owner: (0..=IDS).map(|_| AtomicUsize::new(0)).collect(),
                    handoff: spin::Mutex::new(Vec::new()),
                    violations: AtomicU64::new(0),
                    ops: AtomicU64::new(0),
                };
                std::thread::scope(|s| {
                    let workers: Vec<_> = (0..a.threads)
                        .map(|me| {
                            let world = &world;
                            s.spawn(move || world.work(me, a.seed, a.ops))
                        })
                        .collect();
                    // Native joins: each thread's exit flush has run when they
                    // return.
                    for w in workers {
                        w.join().unwrap();
                    }
                });
                let leftovers: Vec<_> = world.handoff.lock().drain(..).collect();
                for (h, s) in leftovers {
                    world.free(h, s);
                }
                world.check_all(&ids, &qc);
                (
                    world.ops.load(Ordering::Relaxed),
                    world.violations.load(Ordering::Relaxed),
                )
            };
            let mut fail = |what: &str| {
                eprintln!("kmem stress: VIOLATION: {what}");
                violations += 1;
            };
            if ids.destroy().is_err() || bytes.destroy().is_err() {
                fail("an arena refused to be destroyed");
            }
            if cache.destroy().is_err() {
                fail("the object cache refused to be destroyed");
            }
            let (built, torn, bad) = (
                COUNTED.built.load(Ordering::Relaxed),
                COUNTED.torn.load(Ordering::Relaxed),
                COUNTED.bad.load(Ordering::Relaxed),
            );
            if built != torn || bad != 0 {
                fail(&format!(
                    "constructed {built}, destructed {torn}, {bad} bad tags"
                ));
            }
            println!(
                "kmem stress: {} threads, {ops} operations (seed {}), {built} constructions = \
             {torn} destructions, {violations} violations, {:.1} s",
                a.threads,
                a.seed,
                start.elapsed().as_secs_f64()
            );
            violations
        },
    )
    .expect("boot");
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Allocated segments of the ID arena other than its quantum caches' slabs
/// (`next_pow2(3 * 8)` = 32 IDs each; no request of the workload is 32).
fn user_segments(ids: &Arena<'_>) -> usize {
    let mut n = 0;
    ids.walk(kmem_arena::WalkKinds::ALLOCATED, |s| {
        n += usize::from(s.size != 32)
    });
    n
}
