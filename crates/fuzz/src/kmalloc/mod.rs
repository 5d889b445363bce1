//! The `kmalloc` target: the whole stack booted by `kmalloc::boot` over a
//! `Vec<u8>` on two manual CPUs, driven by fuzzer-chosen `alloc`,
//! `alloc_zeroed`, `realloc` and `free` calls (1 byte to 300 KiB, alignment
//! 1 to 64 KiB) and the bad inputs that are safe to make.
//!
//! The model is the set of live blocks (address, layout, pattern seed), at
//! most [`LIVE_MAX`] bytes of them. Checked per action:
//! - a block lies in the managed memory, is aligned as asked, and overlaps
//!   no live block (over the whole usable size); `alloc_zeroed` gives zeros;
//! - every live block keeps the pattern written into it (whole blocks up to
//!   4 KiB; the first and last 256 bytes and 64 bytes of every page of
//!   larger ones), checked before it is freed or reallocated; `realloc`
//!   keeps the contents up to the smaller size, and a failed one leaves the
//!   block as it was;
//! - zero-size layouts (`alloc`, `free`, `realloc` to zero bytes), a layout
//!   no allocation can have, and, for blocks backed by whole pages (whose
//!   frees the page arena checks at once), a double free, a wrong size and
//!   a free of an address no allocation starts at, are refused with their
//!   typed error and change nothing;
//! - `Exhausted` after reaping both CPUs only while something is live (an
//!   empty 16 MiB stack must serve any request of the target).
//!
//! Every cache's and both arenas' checkers run every 16 actions and at the
//! end, after every block is freed and both CPUs are reaped, when no object
//! may be in use and every large allocation must have been freed.

use core::alloc::Layout;
use core::ops::Range;
use core::ptr::NonNull;
use core::slice;
use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use kmalloc::{boot, AllocError, Config, Kmalloc, MAX_CLASS};
use kmem_magazine::ManualCpus;

use crate::input::{decode, Report};

mod frees;

/// Memory the stack manages.
const MEM: usize = 16 << 20;
/// Most bytes (usable sizes) live at once.
pub const LIVE_MAX: usize = 2 << 20;
/// Largest request.
const LARGE_MAX: usize = 300 << 10;
/// Most alignment: `2^16`.
const ALIGN_LOG_MAX: u8 = 16;
/// Large frees kept for double frees.
const FREED_KEPT: usize = 16;
/// Checkers run every this many actions.
const CHECK_EVERY: usize = 16;

type Cpus = ManualCpus<2>;
type K<'a> = Kmalloc<'a, Cpus>;

/// A request size.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Size {
    /// 1..=256 bytes.
    Tiny(u8),
    /// 1..=32 KiB (the size classes).
    Small(u16),
    /// 1..=300 KiB.
    Large(u32),
    /// Far beyond any memory, up to `isize::MAX`.
    Huge(u8),
}

impl Size {
    fn bytes(self) -> usize {
        match self {
            Self::Tiny(n) => usize::from(n) + 1,
            Self::Small(n) => usize::from(n) % MAX_CLASS + 1,
            Self::Large(n) => n as usize % LARGE_MAX + 1,
            Self::Huge(k) => isize::MAX as usize >> (k % 24),
        }
    }
}

/// One step of the run.
#[derive(Arbitrary, Debug)]
pub enum Action {
    /// `alloc` (or `alloc_zeroed`) with alignment `2^(a % 17)`.
    Alloc(Size, u8, bool),
    /// `realloc` of a live block.
    Realloc(u16, Size),
    /// `free` of a live block.
    Free(u16),
    /// `alloc`/`alloc_zeroed` of zero bytes, and `realloc` of a live block
    /// to zero bytes.
    ZeroSize(u8, u16),
    /// `free` of a live block with a zero-size layout, and with a layout no
    /// allocation can have.
    BadLayoutFree(u16, u8),
    /// A page-backed block freed again.
    DoubleFree(u16),
    /// A live page-backed block freed with another size.
    WrongSize(u16, u8, bool),
    /// A page-sized free of an address in the memory that no allocation
    /// starts at.
    ForeignFree(u32, u8),
    /// `reap` on this CPU, or on both.
    Reap(bool),
    /// Moves to CPU `n % 2`.
    Cpu(u8),
    /// Runs every checker.
    Check,
}

/// A live block.
#[derive(Clone, Copy, Debug)]
struct Block {
    layout: Layout,
    usable: usize,
    seed: u8,
}

/// Where the pattern is written in a block of `len` bytes.
fn pattern_ranges(len: usize) -> Vec<Range<usize>> {
    let mut r = Vec::with_capacity(len / 4096 + 2);
    if len <= 4096 {
        r.push(0..len);
        return r;
    }
    r.extend([0..256, len - 256..len]);
    r.extend(
        (4096..len - 256)
            .step_by(4096)
            .map(|p| p..(p + 64).min(len - 256)),
    );
    r
}

/// The pattern byte at `offset` of a block seeded `seed`.
fn pattern(seed: u8, offset: usize) -> u8 {
    seed.wrapping_add((offset as u8).wrapping_mul(13)) ^ (offset >> 12) as u8
}

/// What a refused operation must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// Objects in use and bad frees, per cache.
    caches: Vec<(u64, u64)>,
    /// The page arena's live segments and allocated units.
    pages: (usize, usize),
    /// Large allocations made, freed, failed.
    large: (u64, u64, u64),
}

struct World<'k, 'a> {
    k: &'k K<'a>,
    cpus: &'k Cpus,
    mem: Range<usize>,
    live: BTreeMap<usize, Block>,
    live_bytes: usize,
    freed_large: Vec<(usize, Layout)>,
    seeds: u8,
}

/// Runs the `kmalloc` target on `data`.
///
/// # Panics
/// Panics when the allocator breaks its contract or disagrees with the
/// model.
pub fn run(data: &[u8]) {
    let (setup, actions): ((), Vec<Action>) = decode(data);
    let report = Report::new("kmalloc", &setup, &actions);
    let mut mem = vec![0u8; MEM];
    let range = mem.as_ptr() as usize..mem.as_ptr() as usize + MEM;
    let cpus = Cpus::new();
    boot(&mut mem, &cpus, &Config::default(), |k| {
        let mut w = World {
            k,
            cpus: &cpus,
            mem: range,
            live: BTreeMap::new(),
            live_bytes: 0,
            freed_large: Vec::new(),
            seeds: 0,
        };
        for (i, a) in actions.iter().enumerate() {
            report.at(Some(i));
            w.step(a);
            if i % CHECK_EVERY == CHECK_EVERY - 1 {
                w.check();
            }
        }
        report.at(None);
        w.finish();
    })
    .expect("kmem-fuzz: boot");
}

impl World<'_, '_> {
    fn step(&mut self, a: &Action) {
        match *a {
            Action::Alloc(size, align, zeroed) => self.alloc(size, align, zeroed),
            Action::Realloc(which, size) => self.realloc(which, size),
            Action::Free(which) => self.free(which),
            Action::ZeroSize(align, which) => self.zero_size(align, which),
            Action::BadLayoutFree(which, align) => self.bad_layout_free(which, align),
            Action::DoubleFree(which) => self.double_free(which),
            Action::WrongSize(which, k, up) => self.wrong_size(which, k, up),
            Action::ForeignFree(off, align) => self.foreign_free(off, align),
            Action::Reap(both) => self.reap(both),
            Action::Cpu(n) => self.cpus.set_slot(usize::from(n % 2)),
            Action::Check => self.check(),
        }
    }

    /// Every checker of the stack.
    fn check(&self) {
        self.k.caches().for_each(|c| {
            if let Err(e) = c.check() {
                panic!("kmem-fuzz: cache {} failed its check: {e}", c.name());
            }
        });
        if let Err(e) = self.k.pages().check() {
            panic!("kmem-fuzz: kpages failed its check: {e}");
        }
        if let Err(e) = self.k.caches().base().check() {
            panic!("kmem-fuzz: the base arena failed its check: {e}");
        }
    }

    /// What a refused operation must leave as it was: objects in use and
    /// bad frees per cache, the page arena's live segments and units, the
    /// large-allocation counters.
    fn snapshot(&self) -> Snapshot {
        let mut caches = Vec::new();
        self.k
            .caches()
            .stats(|s| caches.push((s.buf_in_use, s.bad_frees)));
        let st = self.k.pages().stats();
        Snapshot {
            caches,
            pages: (st.live, st.allocated),
            large: self.k.large_counts(),
        }
    }

    fn layout(size: usize, align: u8) -> Option<Layout> {
        Layout::from_size_align(size, 1 << (align % (ALIGN_LOG_MAX + 1))).ok()
    }

    /// The `which`-th live block.
    fn pick(&self, which: u16) -> Option<(usize, Block)> {
        let n = self.live.len();
        (n > 0).then(|| {
            let (&p, &b) = self.live.iter().nth(usize::from(which) % n).expect("block");
            (p, b)
        })
    }

    /// True when the page arena checks frees of `layout` at once: no size
    /// class serves it (and then it is larger than the quantum caches).
    fn page_backed(&self, layout: Layout) -> bool {
        self.k.class_for(layout).is_none()
    }

    fn ptr(addr: usize) -> NonNull<u8> {
        NonNull::new(addr as *mut u8).expect("kmem-fuzz: null block")
    }

    // ---------------------------------------------------------------------
    // Contents.

    fn fill(&mut self, p: usize, len: usize, seed: u8) {
        // SAFETY: `[p, p + len)` is a live block of at least `len` bytes
        // that the model owns.
        let bytes = unsafe { slice::from_raw_parts_mut(p as *mut u8, len) };
        for r in pattern_ranges(len) {
            for k in r {
                bytes[k] = pattern(seed, k);
            }
        }
    }

    /// Checks the pattern of the block at `p` (seeded `seed`, written over
    /// `len` bytes) up to `upto` bytes.
    fn verify(&self, p: usize, len: usize, seed: u8, upto: usize, what: &str) {
        // SAFETY: `[p, p + len)` is a block the model owns (live, or just
        // reallocated from it with at least `upto` bytes copied).
        let bytes = unsafe { slice::from_raw_parts(p as *const u8, len.min(upto)) };
        for r in pattern_ranges(len) {
            let r = r.start..r.end.min(upto);
            if let Some(k) = r.clone().find(|&k| bytes[k] != pattern(seed, k)) {
                panic!("kmem-fuzz: {what}: block {p:#x} of {len} bytes changed at byte {k}");
            }
        }
    }

    // ---------------------------------------------------------------------
    // Allocation.

    /// Checks and records a block just allocated with `layout`.
    fn received(&mut self, p: usize, layout: Layout, zeroed: bool, seed: Option<u8>) {
        let usable = self.k.usable_size(layout).expect("usable size");
        assert!(
            usable >= layout.size(),
            "kmem-fuzz: usable size below the request"
        );
        assert_eq!(
            p % layout.align(),
            0,
            "kmem-fuzz: {p:#x} misaligned for {layout:?}"
        );
        assert!(
            p >= self.mem.start && p + usable <= self.mem.end,
            "kmem-fuzz: block {p:#x} + {usable} outside the managed memory"
        );
        if let Some((&a, b)) = self.live.range(..p + usable).next_back() {
            assert!(
                a + b.usable <= p,
                "kmem-fuzz: block [{p:#x}, +{usable}) overlaps live [{a:#x}, +{})",
                b.usable
            );
        }
        if zeroed {
            // SAFETY: a fresh block of `layout.size()` bytes.
            let bytes = unsafe { slice::from_raw_parts(p as *const u8, layout.size()) };
            if let Some(k) = bytes.iter().position(|&b| b != 0) {
                panic!("kmem-fuzz: alloc_zeroed({layout:?}) gave {p:#x}, byte {k} not zero");
            }
        }
        let seed = seed.unwrap_or_else(|| {
            self.seeds = self.seeds.wrapping_add(1);
            self.seeds
        });
        self.fill(p, layout.size(), seed);
        self.live.insert(
            p,
            Block {
                layout,
                usable,
                seed,
            },
        );
        self.live_bytes += usable;
    }

    /// Reaps on both CPUs, coming back to the current one.
    fn reap_both(&self) {
        let here = usize::from(self.cpus_slot());
        for slot in [1 - here, here] {
            self.cpus.set_slot(slot);
            self.k.reap();
        }
    }

    fn cpus_slot(&self) -> u8 {
        use kmem_magazine::{Cpu, CpuGuard};
        self.cpus.pin().slot() as u8
    }

    fn alloc(&mut self, size: Size, align: u8, zeroed: bool) {
        let Some(layout) = Self::layout(size.bytes(), align) else {
            return;
        };
        let get = |k: &K<'_>| {
            if zeroed {
                k.alloc_zeroed(layout)
            } else {
                k.alloc(layout)
            }
        };
        if let Size::Huge(_) = size {
            let before = self.snapshot();
            match get(self.k) {
                Err(AllocError::TooLarge) => assert_eq!(self.snapshot(), before),
                Err(AllocError::Exhausted) => {}
                got => panic!("kmem-fuzz: alloc({layout:?}) gave {got:?}"),
            }
            return;
        }
        let usable = self.k.usable_size(layout).expect("usable size");
        if self.live_bytes + usable > LIVE_MAX {
            return;
        }
        let got = match get(self.k) {
            Err(AllocError::Exhausted) => {
                self.reap_both();
                get(self.k)
            }
            got => got,
        };
        match got {
            Ok(p) => self.received(p.as_ptr() as usize, layout, zeroed, None),
            Err(AllocError::Exhausted) => assert!(
                !self.live.is_empty(),
                "kmem-fuzz: alloc({layout:?}) exhausted with nothing live, after reaping"
            ),
            Err(e) => panic!("kmem-fuzz: alloc({layout:?}) failed with {e:?}"),
        }
    }

    fn realloc(&mut self, which: u16, size: Size) {
        let Some((p, b)) = self.pick(which) else {
            return;
        };
        let new_size = size.bytes();
        let new = Layout::from_size_align(new_size, b.layout.align()).ok();
        let new_usable = new.and_then(|l| self.k.usable_size(l));
        if let Some(u) = new_usable {
            if self.live_bytes - b.usable + u > LIVE_MAX {
                return;
            }
        }
        self.verify(p, b.layout.size(), b.seed, usize::MAX, "before realloc");
        // SAFETY: `p` is a live block allocated with `b.layout`; on success
        // the model moves it to the result.
        let got = unsafe { self.k.realloc(Self::ptr(p), b.layout, new_size) };
        match (got, new) {
            (Ok(q), Some(layout)) if new_usable.is_some() => {
                let q = q.as_ptr() as usize;
                self.live.remove(&p);
                self.live_bytes -= b.usable;
                let keep = b.layout.size().min(new_size);
                self.verify(q, b.layout.size(), b.seed, keep, "realloc");
                self.received(q, layout, false, Some(b.seed));
            }
            (Err(AllocError::TooLarge), _) if new_usable.is_none() => {
                self.verify(
                    p,
                    b.layout.size(),
                    b.seed,
                    usize::MAX,
                    "after a failed realloc",
                );
            }
            (Err(AllocError::Exhausted), _) => {
                self.verify(
                    p,
                    b.layout.size(),
                    b.seed,
                    usize::MAX,
                    "after a failed realloc",
                );
            }
            (got, _) => panic!(
                "kmem-fuzz: realloc({p:#x}, {:?}, {new_size}) gave {got:?}",
                b.layout
            ),
        }
    }
}
