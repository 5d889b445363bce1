//! Multi-threaded stress on shared arenas over real memory:
//!
//! ```text
//! base (PhysMem, page quantum, carves its own tags)
//!  └ kpages (page quantum, sourced from base, tags from base)
//!     └ bytes (quantum 64, import_scale 2, sourced from kpages, tags from base)
//! ```
//!
//! Worker threads allocate (`alloc` with every policy, `xalloc` with
//! alignment and nocross) from all three arenas, write a canary (owner
//! thread and address) into every cache line of each allocation, verify it
//! before freeing, and hand some allocations to other threads to free. One
//! more thread keeps calling `rescale_hash()` and `check()` on every arena.
//! Workers meet at a barrier now and then to check the accounting while
//! nothing moves; at the end everything is freed, every arena passes its
//! check, the sourced arenas hold nothing, and after destroying them the base
//! is back where it started, but for its own metadata.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::{Condvar, Mutex};

use kmem_arena::{AllocError, Arena, Constraints, WalkKinds};
use kmem_physmem::kit::{assert_emptied, POLICIES};
use kmem_physmem::{scale, seed, PhysMem, Rng, PAGE_SIZE};

const WORKERS: usize = 3;
const OPS_PER_WORKER: usize = 150_000;
/// Workers check the accounting together every this many operations.
const CHECKPOINT: usize = 3_000;
const MAX_LIVE: usize = 100;
const RAM: usize = 64 << 20;

/// Which arena an allocation came from.
const BASE: usize = 0;
const KPAGES: usize = 1;
const BYTES: usize = 2;
const QUANTA: [usize; 3] = [PAGE_SIZE, PAGE_SIZE, 64];

#[derive(Clone, Copy, Debug)]
struct Block {
    arena: usize,
    addr: usize,
    /// Size asked for; `QUANTA[arena]`-rounded is what was handed out.
    size: usize,
    owner: usize,
    xalloc: bool,
}

impl Block {
    fn rounded(&self) -> usize {
        self.size.div_ceil(QUANTA[self.arena]) * QUANTA[self.arena]
    }

    fn canary(&self, offset: usize) -> u64 {
        ((self.owner as u64 + 1) << 56) ^ (self.addr as u64) ^ (offset as u64).rotate_left(29)
    }

    /// Writes the canary into the first word of every 64-byte line.
    fn write(&self) {
        for off in (0..self.rounded()).step_by(64) {
            // SAFETY: `[addr, addr + rounded)` was handed out by an arena over
            // the test's PhysMem (checked by the caller) and is owned by this
            // block until it is freed; addresses are 64-byte aligned.
            unsafe { ((self.addr + off) as *mut u64).write_volatile(self.canary(off)) };
        }
    }

    /// Panics unless every canary is intact.
    fn verify(&self, who: usize) {
        for off in (0..self.rounded()).step_by(64) {
            // SAFETY: as in `write`: the block is live and owned by the caller.
            let got = unsafe { ((self.addr + off) as *const u64).read_volatile() };
            assert_eq!(
                got,
                self.canary(off),
                "thread {who}: canary of {self:x?} overwritten at +{off:#x}"
            );
        }
    }
}

/// A barrier that a panicking worker breaks, so the others fail instead of
/// waiting for it for ever.
struct Gate {
    /// (generation, arrived)
    state: Mutex<(usize, usize)>,
    cv: Condvar,
    broken: AtomicBool,
    parties: usize,
}

impl Gate {
    fn new(parties: usize) -> Self {
        Self {
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
            broken: AtomicBool::new(false),
            parties,
        }
    }

    /// Waits for every party; true for the last to arrive.
    fn wait(&self) -> bool {
        let mut g = self.state.lock().unwrap();
        let generation = g.0;
        g.1 += 1;
        if g.1 == self.parties {
            *g = (generation + 1, 0);
            self.cv.notify_all();
            return true;
        }
        while g.0 == generation {
            assert!(
                !self.broken.load(Ordering::Relaxed),
                "another worker failed"
            );
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        false
    }

    fn break_gate(&self) {
        self.broken.store(true, Ordering::Relaxed);
        self.cv.notify_all();
    }
}

/// Breaks the gate if its worker panics.
struct BreakOnPanic<'g>(&'g Gate);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.break_gate();
        }
    }
}

struct Shared<'a> {
    ram: &'a PhysMem,
    arenas: [&'a Arena<'a>; 3],
    handoff: Mutex<Vec<Block>>,
    /// Units each arena has handed to callers (not counting spans it
    /// lends to the arena above), updated around each operation.
    live_units: [AtomicUsize; 3],
    exhausted: AtomicUsize,
    gate: Gate,
    stop: AtomicBool,
}

impl Shared<'_> {
    fn alloc(&self, rng: &mut Rng, me: usize) -> Option<Block> {
        let arena = match rng.below(10) {
            0..=4 => BYTES,
            5..=7 => KPAGES,
            _ => BASE,
        };
        let q = QUANTA[arena];
        let size = match arena {
            BYTES => rng.range(1, 2048),
            _ if rng.chance(1, 20) => rng.range(1, 64) * q,
            _ => rng.range(1, 8) * q - rng.range(0, q - 1),
        };
        let a = self.arenas[arena];
        let xalloc = rng.chance(1, 3);
        let got = if xalloc {
            let align = if arena == BYTES {
                rng.pow2(6, 12)
            } else {
                rng.pow2(12, 16)
            };
            let mut c = Constraints::new()
                .align(align)
                .policy(POLICIES[rng.below(3) as usize]);
            let rounded = size.div_ceil(q) * q;
            if rng.chance(1, 3) {
                c = c.nocross(rounded.next_power_of_two() << rng.below(3));
            }
            a.xalloc(size, &c)
                .inspect(|&x| assert_eq!(x % align, 0, "xalloc ignored align {align:#x}"))
        } else {
            a.alloc(size, POLICIES[rng.below(3) as usize])
        };
        match got {
            Ok(addr) => {
                let b = Block {
                    arena,
                    addr,
                    size,
                    owner: me,
                    xalloc,
                };
                assert!(
                    self.ram.contains(addr, b.rounded()),
                    "{b:x?} outside the memory"
                );
                assert_eq!(addr % q, 0);
                self.live_units[arena].fetch_add(b.rounded(), Ordering::Relaxed);
                b.write();
                Some(b)
            }
            Err(AllocError::Exhausted) => {
                if self.exhausted.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!(
                        "thread {me}: {} exhausted for {size:#x} (xalloc {xalloc}): {:#?}",
                        a.name(),
                        self.arenas.map(|a| a.stats())
                    );
                }
                None
            }
            Err(e) => panic!("thread {me}: {size:#x} from {}: {e}", a.name()),
        }
    }

    fn free(&self, b: Block, me: usize) {
        b.verify(me);
        // Scribble over the canary so a stale reader would notice.
        // SAFETY: the block is still live and owned by this thread.
        unsafe { (b.addr as *mut u64).write_volatile(!0) };
        let a = self.arenas[b.arena];
        self.live_units[b.arena].fetch_sub(b.rounded(), Ordering::Relaxed);
        // SAFETY: the block was allocated from `a` with this size (by
        // `xalloc` when `b.xalloc`); it is freed once, by the one thread that
        // holds it, which does not touch it afterwards.
        unsafe {
            if b.xalloc {
                a.xfree_memory(b.addr, b.size)
            } else {
                a.free_memory(b.addr, b.size)
            }
        }
        .unwrap_or_else(|e| panic!("thread {me}: freeing {b:x?}: {e}"));
    }

    /// Accounting while every worker waits at the gate (the rescaler may
    /// still move hash tables between the base and the others).
    fn checkpoint(&self) {
        let [base, kpages, bytes] = self.arenas;
        for a in self.arenas {
            a.check().unwrap();
        }
        let live = |i: usize| self.live_units[i].load(Ordering::Relaxed);
        // bytes: exactly the callers' blocks; kpages: callers' blocks plus
        // the spans lent to bytes.
        assert_eq!(bytes.stats().allocated, live(BYTES));
        assert_eq!(kpages.stats().allocated, live(KPAGES) + bytes.amt_total());
        assert_eq!(bytes.amt_total(), bytes.stats().imported);
        assert_eq!(kpages.amt_total(), kpages.stats().imported);
        // base: callers' blocks, kpages' spans, and tag pages and hash tables
        // of the other two.
        let st = base.stats();
        assert!(st.allocated - st.metadata >= live(BASE) + kpages.amt_total());
        let mut spans = 0;
        kpages.walk(WalkKinds::SPANS, |_| spans += 1);
        assert_eq!(spans, kpages.stats().spans);
    }

    fn worker(&self, me: usize, seed: u64) {
        let mut rng = Rng::new(seed ^ (me as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let _guard = BreakOnPanic(&self.gate);
        let mut mine: Vec<Block> = Vec::new();
        let ops = OPS_PER_WORKER * scale();
        for step in 1..=ops {
            // Fill up and drain in turns, so the hashes grow and shrink.
            let cap = if (step / 1500) % 2 == 0 { MAX_LIVE } else { 4 };
            let r = rng.below(100);
            if r < 45 && mine.len() < cap {
                if let Some(b) = self.alloc(&mut rng, me) {
                    mine.push(b);
                }
            } else if r < 55 && !mine.is_empty() {
                let mut h = self.handoff.lock().unwrap();
                if h.len() < MAX_LIVE {
                    h.push(mine.swap_remove(rng.below(mine.len() as u64) as usize));
                }
            } else if r < 70 {
                let b = {
                    let mut h = self.handoff.lock().unwrap();
                    let n = h.len();
                    (n > 0).then(|| h.swap_remove(rng.below(n as u64) as usize))
                };
                if let Some(b) = b {
                    self.free(b, me);
                }
            } else if !mine.is_empty() {
                let b = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                self.free(b, me);
            }
            if step % CHECKPOINT == 0 {
                if self.gate.wait() {
                    self.checkpoint();
                }
                self.gate.wait();
            }
        }
        for b in mine {
            self.free(b, me);
        }
    }

    /// Resizes every arena's hash and runs the checker, over and over;
    /// returns (rounds, tables replaced).
    fn rescaler(&self) -> (usize, usize) {
        let (mut rounds, mut resized) = (0, 0);
        while !self.stop.load(Ordering::Relaxed) {
            for a in self.arenas {
                resized += usize::from(a.rescale_hash());
                a.check().unwrap();
            }
            rounds += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        (rounds, resized)
    }
}

#[test]
fn threads_share_base_kpages_and_bytes() {
    let seed = seed(0x7374_7265_7373);
    let ram = PhysMem::new(RAM);
    let base = ram.base_arena("base", PAGE_SIZE);
    let (free0, meta0, total0) = (base.amt_free(), base.stats().metadata, base.amt_total());
    let mut kpages = Arena::builder("kpages")
        .quantum(PAGE_SIZE)
        .source(&base)
        .tags_from(&base)
        .build()
        .unwrap();
    let mut bytes = Arena::builder("bytes")
        .quantum(64)
        .source(&kpages)
        .tags_from(&base)
        .import_scale(2)
        .build()
        .unwrap();

    let shared = Shared {
        ram: &ram,
        arenas: [&base, &kpages, &bytes],
        handoff: Mutex::new(Vec::new()),
        live_units: Default::default(),
        exhausted: AtomicUsize::new(0),
        gate: Gate::new(WORKERS),
        stop: AtomicBool::new(false),
    };
    let (rounds, resized) = std::thread::scope(|s| {
        let rescaler = s.spawn(|| shared.rescaler());
        let workers: Vec<_> = (0..WORKERS)
            .map(|me| {
                let shared = &shared;
                s.spawn(move || shared.worker(me, seed))
            })
            .collect();
        let mut panicked = None;
        for w in workers {
            if let Err(e) = w.join() {
                panicked.get_or_insert(e);
            }
        }
        shared.stop.store(true, Ordering::Relaxed);
        let rounds = rescaler.join();
        if let Some(e) = panicked {
            eprintln!("stress: failed with KMEM_TEST_SEED={seed}");
            std::panic::resume_unwind(e);
        }
        rounds.unwrap()
    });
    for b in shared.handoff.lock().unwrap().drain(..) {
        shared.free(b, WORKERS);
    }
    let exhausted = shared.exhausted.load(Ordering::Relaxed);
    eprintln!(
        "stress: {WORKERS} workers x {} ops, seed {seed}: {rounds} rescale rounds \
         ({resized} tables replaced), {exhausted} exhausted",
        OPS_PER_WORKER * scale()
    );
    // 64 MiB hold a few hundred blocks of at most 256 KiB many times over.
    assert_eq!(exhausted, 0, "allocations failed with memory to spare");
    assert!(resized > 0, "rescale_hash never resized a table");

    for a in [&base, &kpages, &bytes] {
        a.check().unwrap();
        a.rescale_hash();
        a.check().unwrap();
    }
    for a in [&kpages, &bytes] {
        assert_emptied(a);
    }
    assert_eq!(
        shared
            .live_units
            .each_ref()
            .map(|u| u.load(Ordering::Relaxed)),
        [0; 3]
    );
    drop(shared);

    bytes.destroy().unwrap();
    drop(bytes);
    kpages.destroy().unwrap();
    drop(kpages);

    // Exactly invariant: the base's span, and everything it ever handed out
    // back but its own metadata (tag pages and hash tables it carved, which
    // only grow).
    base.check().unwrap();
    let st = base.stats();
    assert_eq!(st.total, total0);
    assert_eq!(st.live, 0, "{st:?}");
    assert_eq!(st.allocs, st.frees, "{st:?}");
    assert_eq!(st.allocated, st.metadata);
    assert_eq!(base.amt_free() + st.metadata, free0 + meta0);
    assert!(st.metadata >= meta0);
}
