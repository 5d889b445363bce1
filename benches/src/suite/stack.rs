//! The object-layer contenders of B1-B4, built once per run: kmem caches of
//! each B1 size (and a `NOMAGAZINE` 64-byte one), a booted kmalloc, and the
//! peers (mimalloc, glibc's `System`, talc, linked_list_allocator,
//! buddy_system_allocator, slabmalloc, rlsf), each lockable peer behind
//! one `spin::Mutex`, every region pre-touched. [`Stack::each`] hands
//! every `GlobalAlloc` contender to a [`Visit`]or, monomorphised, so the
//! timed loops have no dynamic call per operation.

use core::alloc::GlobalAlloc;
use std::alloc::System;

use kmalloc::{Config as KConfig, Kmalloc};
use kmem_arena::Arena;
use kmem_magazine::ThreadCpus;
use kmem_physmem::{boot, PhysMem};
use kmem_slab::{CacheBuilder, CacheFlags, Caches};
use mimalloc::MiMalloc;

use crate::heap_peers::{self, pretouch, Buddy, LinkedList, Region, Rlsf};
use crate::mixed::Talc;
use crate::slab_fixture::StdCache;
use crate::slabmalloc_peer::{self, Slabmalloc};

/// Object sizes of B1's fixed-size pairs.
pub const SIZES: [usize; 4] = [16, 64, 256, 1024];

/// How a contender's footprint (memory taken from its backing store) is
/// read.
pub enum Footprint<'c> {
    /// kmalloc: bytes allocated in its base arena (spans of `kpages`,
    /// slabs, metadata), after a reap.
    BaseArena(&'c dyn KmallocProbe),
    /// A heap over one region: the highest end address handed out, minus
    /// the region's start.
    HighWater(Region),
    /// slabmalloc: pages handed to the zone and not given back.
    Pages(&'c Slabmalloc),
    /// buddy: the bytes its own statistics say are allocated, power-of-two
    /// rounding included (its highest address is no measure: it splits
    /// from the top of its region).
    Buddy(&'c Buddy),
    /// A process heap (mimalloc, glibc): not separable from the rest of
    /// the process.
    Opaque,
}

/// What [`Footprint::BaseArena`] reads of kmalloc. A trait object, so that
/// a footprint names one lifetime: [`Kmalloc`] is invariant in its own,
/// which is not the borrow's.
pub trait KmallocProbe: Sync {
    /// Gives idle memory back ([`Kmalloc::reap`]); returns what it freed.
    fn reap(&self) -> usize;
    /// Bytes the base arena has allocated ([`kmalloc_base_bytes`]).
    fn base_bytes(&self) -> usize;
}

impl KmallocProbe for Kmalloc<'_, ThreadCpus> {
    fn reap(&self) -> usize {
        Kmalloc::reap(self)
    }

    fn base_bytes(&self) -> usize {
        kmalloc_base_bytes(self)
    }
}

/// One object-layer contender, as [`Stack::each`] hands it to a [`Visit`].
pub struct Entry<'c, A> {
    /// Its label.
    pub name: &'static str,
    /// The allocator.
    pub a: &'c A,
    /// How to read its footprint.
    pub fp: Footprint<'c>,
    /// A linear-time peer (linked_list, buddy) that large live sets must
    /// skip.
    pub linear: bool,
}

impl<'c, A> Entry<'c, A> {
    /// The contender `name`.
    pub fn new(name: &'static str, a: &'c A, fp: Footprint<'c>, linear: bool) -> Self {
        Self {
            name,
            a,
            fp,
            linear,
        }
    }
}

/// Receives each object-layer contender.
pub trait Visit<'c> {
    /// One contender.
    fn visit<A: GlobalAlloc + Sync + 'c>(&mut self, e: Entry<'c, A>);
}

/// The heap peers (everything but kmem).
pub struct Peers {
    /// talc over its region.
    pub talc: &'static Talc,
    /// talc's region.
    pub talc_region: Region,
    /// linked_list_allocator.
    pub ll: LinkedList,
    /// buddy_system_allocator.
    pub buddy: Buddy,
    /// slabmalloc.
    pub slab: Slabmalloc,
    /// rlsf.
    pub rlsf: Rlsf,
}

impl Peers {
    /// Every peer over a fresh pre-touched region.
    pub fn new() -> Self {
        let talc_region = Region::leak(128 << 20, 4096);
        let talc: &'static Talc = Box::leak(Box::new(Talc::new(talc::source::Manual)));
        // SAFETY: the region is leaked, pre-touched and used by talc alone.
        let claimed = unsafe {
            talc.lock()
                .claim(talc_region.start as *mut u8, talc_region.len)
        };
        assert!(claimed.is_some(), "talc refused its region");
        Self {
            talc,
            talc_region,
            ll: heap_peers::linked_list(Region::leak(64 << 20, 4096)),
            buddy: heap_peers::buddy(Region::leak(128 << 20, 4096)),
            slab: slabmalloc_peer::slabmalloc(32 << 20, 256 << 20),
            rlsf: heap_peers::rlsf(Region::leak(128 << 20, 4096)),
        }
    }
}

impl Default for Peers {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything B1-B4 measure: borrowed for `'s`; the caches' set lives for
/// `'c` and kmalloc's stack for `'k` (both invariant lifetimes, so kept
/// apart from `'s` and from each other).
pub struct Stack<'s, 'c, 'k> {
    /// kmem caches of [`SIZES`], magazines on.
    pub caches: Vec<&'s StdCache<'c>>,
    /// A 64-byte `NOMAGAZINE` cache (the ablation).
    pub nomag64: &'s StdCache<'c>,
    /// 64-byte caches whose partial slabs are taken in FIFO order (B14's
    /// ablation, `CacheBuilder::fifo_partial_slabs`): magazines on, and
    /// `NOMAGAZINE`.
    pub fifo64: &'s StdCache<'c>,
    /// See [`fifo64`](Self::fifo64).
    pub nomag_fifo64: &'s StdCache<'c>,
    /// kmalloc.
    pub kmalloc: &'s Kmalloc<'k, ThreadCpus>,
    /// The peers.
    pub peers: &'s Peers,
}

impl<'s, 'c> Stack<'s, 'c, '_> {
    /// The kmem cache of `size` (one of [`SIZES`]).
    ///
    /// # Panics
    /// Panics for another size.
    pub fn cache(&self, size: usize) -> &'s StdCache<'c> {
        let i = SIZES.iter().position(|&s| s == size).expect("a B1 size");
        self.caches[i]
    }

    /// Hands every `GlobalAlloc` contender to `v`: kmalloc first (the kmem
    /// contender), then mimalloc, System, talc, linked_list, buddy,
    /// slabmalloc, rlsf.
    pub fn each<'v, V: Visit<'v>>(&'v self, v: &mut V) {
        let p = self.peers;
        let kmalloc = Footprint::BaseArena(self.kmalloc);
        v.visit(Entry::new("kmalloc", self.kmalloc, kmalloc, false));
        v.visit(Entry::new("mimalloc", &MiMalloc, Footprint::Opaque, false));
        v.visit(Entry::new("System", &System, Footprint::Opaque, false));
        let talc = Footprint::HighWater(p.talc_region);
        v.visit(Entry::new("talc", p.talc, talc, false));
        let ll = Footprint::HighWater(p.ll.region);
        v.visit(Entry::new("linked_list", &p.ll, ll, true));
        let buddy = Footprint::Buddy(&p.buddy);
        v.visit(Entry::new("buddy", &p.buddy, buddy, true));
        let slab = Footprint::Pages(&p.slab);
        v.visit(Entry::new("slabmalloc", &p.slab, slab, false));
        let rlsf = Footprint::HighWater(p.rlsf.region);
        v.visit(Entry::new("rlsf", &p.rlsf, rlsf, false));
    }
}

/// Runs every contender's working set once before anything is timed (the
/// fairness rules' pre-warm): a batch of 10^4 Pareto-sized objects freed
/// in random order, then 2 * 10^5 pairs of each B1 size. mimalloc, for one,
/// runs the first group it meets several times slower without it.
struct Warm<'t> {
    trace: &'t crate::larson::LarsonTrace,
}

impl<'c> Visit<'c> for Warm<'_> {
    fn visit<A: GlobalAlloc + Sync + 'c>(&mut self, e: Entry<'c, A>) {
        let Entry { a, .. } = e;
        let mut held = vec![0usize; self.trace.live];
        crate::larson::batch(
            a,
            self.trace,
            &mut held,
            crate::larson::Order::Random,
            || {},
        );
        for size in SIZES {
            let l = core::alloc::Layout::from_size_align(size, 8).expect("layout");
            for _ in 0..200_000 {
                crate::object::layout_pair(a, l);
            }
        }
    }
}

/// Memory behind kmalloc.
pub const KMALLOC_BYTES: usize = 256 << 20;
/// Memory behind the kmem caches.
pub const CACHE_BYTES: usize = 64 << 20;

/// Builds the stack (kmem booted over pre-touched memory) and runs `f` on
/// it; afterwards checks every kmem cache and arena.
///
/// Debug-mode flags from `KMEM_DEBUG` (none when unset).
///
/// # Panics
/// If `KMEM_DEBUG` holds a part kmalloc does not know.
pub fn debug_from_env() -> CacheFlags {
    std::env::var("KMEM_DEBUG").map_or(CacheFlags::empty(), |spec| {
        kmalloc::debug_flags(&spec).expect("KMEM_DEBUG: unknown part")
    })
}

/// # Panics
/// Panics if a boot fails or a check fails afterwards.
pub fn with_stack<R>(peers: &Peers, f: impl FnOnce(&Stack<'_, '_, '_>) -> R) -> R {
    let ram = PhysMem::new(CACHE_BYTES);
    pretouch(ram.start(), ram.len());
    let mut kmem = vec![0u8; KMALLOC_BYTES];
    pretouch(kmem.as_mut_ptr() as usize, kmem.len());
    boot(&ram, |base, kpages| {
        let caches = Caches::new(base, ThreadCpus::global()).expect("kmem slab: bootstrap");
        // `KMEM_DEBUG` (as `KmallocGlobal` reads it) puts the kmem caches
        // and kmalloc in debug mode: what its parts cost, in the same run
        // as the peers.
        let debug = debug_from_env();
        let made: Vec<_> = SIZES
            .iter()
            .map(|&s| {
                caches
                    .create(
                        CacheBuilder::new(&format!("obj{s}"), s)
                            .flags(debug)
                            .source(kpages),
                    )
                    .expect("kmem cache")
            })
            .collect();
        let nomag = caches
            .create(
                CacheBuilder::new("obj64-nomag", 64)
                    .source(kpages)
                    .flags(CacheFlags::NOMAGAZINE),
            )
            .expect("kmem NOMAGAZINE cache");
        let fifo = caches
            .create(
                CacheBuilder::new("obj64-fifo", 64)
                    .source(kpages)
                    .fifo_partial_slabs(),
            )
            .expect("kmem FIFO cache");
        let nomag_fifo = caches
            .create(
                CacheBuilder::new("obj64-nomag-fifo", 64)
                    .source(kpages)
                    .flags(CacheFlags::NOMAGAZINE)
                    .fifo_partial_slabs(),
            )
            .expect("kmem NOMAGAZINE FIFO cache");
        let config = KConfig {
            debug,
            ..KConfig::default()
        };
        let r = kmalloc::boot(&mut kmem, ThreadCpus::global(), &config, |k| {
            let stack = Stack {
                caches: made.iter().map(|c| &**c).collect(),
                nomag64: &nomag,
                fifo64: &fifo,
                nomag_fifo64: &nomag_fifo,
                kmalloc: k,
                peers,
            };
            let trace = crate::larson::LarsonTrace::new(0x3a53, 10_000);
            stack.each(&mut Warm { trace: &trace });
            for &c in stack.caches.iter().chain([&stack.fifo64]) {
                for _ in 0..200_000 {
                    crate::object::pair(c);
                }
            }
            let r = f(&stack);
            k.caches().for_each(|c| {
                c.check()
                    .unwrap_or_else(|e| panic!("kmalloc cache {}: {e}", c.name()))
            });
            k.pages().check().expect("kmalloc: kpages check");
            r
        })
        .expect("kmalloc boot");
        for c in made.iter().chain([&nomag, &fifo, &nomag_fifo]) {
            c.check().expect("kmem cache inconsistent after the run");
            assert_eq!(
                c.stats().buf_in_use,
                0,
                "{}: objects still allocated",
                c.name()
            );
        }
        r
    })
}

/// Bytes kmalloc's base arena has allocated (spans, slabs, metadata).
pub fn kmalloc_base_bytes(k: &Kmalloc<'_, ThreadCpus>) -> usize {
    base_of(k).stats().allocated
}

fn base_of<'a>(k: &Kmalloc<'a, ThreadCpus>) -> &'a Arena<'a> {
    k.caches().base()
}
