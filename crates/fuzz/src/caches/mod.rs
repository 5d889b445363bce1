//! The `caches` target: object caches of every layout and flag over a
//! booted fake machine (a base arena and `kpages`, as `kmem_physmem::boot`
//! builds them)
//! and an ID arena, on two manual CPUs, driven by fuzzer-chosen actions.
//!
//! Up to six caches live at once, each created by an action: small objects
//! (8..=512 bytes, free list through the objects), bufctl objects
//! (513..=4096 bytes), or `NOTOUCH` caches of IDs; each optionally `DEBUG`,
//! `NOMAGAZINE`, and with counting constructor and destructor whose
//! constructor fails on a [`Plan`]. The model is the set of
//! live objects of each cache and the owner of every live address.
//!
//! Checked per action:
//! - an allocated object lies in the cache's source (fake RAM or the ID
//!   span), is aligned, owned by its cache, overlaps no live object of any
//!   cache, and comes constructed (the constructor's tag in its first word)
//!   or zeroed when `ZERO` was asked; a failure is a constructor the plan
//!   failed, or `ZERO` of an ID cache (`NotMemory`, changing nothing);
//! - live memory objects carry a canary written at allocation and checked
//!   before they are freed (so a second user or a stray write shows);
//! - a good free succeeds; a double free, an interior or foreign address,
//!   or another cache's object is refused with exactly the [`BadFree`](kmem_slab::BadFree) the
//!   owners call for, on caches that check frees at once (`DEBUG`,
//!   `NOMAGAZINE`), changing nothing but the bad-free count; so is a double
//!   free on every cache whose release-mode check refuses it at once
//!   (bufctl caches with magazines, headed caches without a constructor);
//! - `destroy` with live objects refuses with the live count and leaves a
//!   working cache; bad `create` arguments get their typed error and leave
//!   nothing behind.
//!
//! After every action: `KmemCache::check` of every cache, `buf_in_use`
//! equal to the live count, constructed objects (constructor calls less
//! destructor calls) equal to the objects out of slabs, no bad free found
//! while draining, and the arenas' checkers. At the end every object is
//! freed, every cache destroyed, constructors and destructors balance, and
//! the ID arena and `kpages` have nothing allocated.

mod lifecycle;
mod objects;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use kmem_arena::Arena;
use kmem_magazine::{MagazineStats, ManualCpus};
use kmem_physmem::faults::Faults;
use kmem_slab::{AllocFlags, Cache, Caches, CtorError, ObjectOps};

use crate::input::{decode, Plan, Report};
use crate::ram::Ram;

/// Fake RAM.
const RAM: usize = 8 << 20;
/// Most bytes (or IDs) of live objects at once: with objects cached in the
/// magazines of two CPUs and partly used slabs, far less than `RAM`, so the
/// caches never run out (an allocation failure is a bug).
const LIVE_MAX: usize = 1 << 20;
/// Caches alive at once.
const SLOTS: usize = 6;
/// The ID arena: `[ID_BASE, ID_BASE + ID_UNITS)`, quantum 1.
const ID_BASE: usize = 1 << 20;
const ID_UNITS: usize = 1 << 24;
/// Recent frees kept per cache for double frees.
const FREED_KEPT: usize = 16;
/// What the constructor writes into a memory object's first word.
const CONSTRUCTED: u64 = 0xC0_5E_C7_ED_0B_1E_C7_5A;

type Cpus = ManualCpus<2>;

/// The objects a cache is made of.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 8..=512-byte memory objects (small layout unless `DEBUG`).
    Small,
    /// 513..=4096-byte memory objects (bufctls).
    Bufctl,
    /// 1..=64 IDs from the ID arena (`NOTOUCH`).
    Ids,
}

/// Where a bad free aims.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Foreign {
    /// Inside a live object of the cache.
    Interior(u16, u16),
    /// A live object of another cache.
    OtherLive(u8, u16),
    /// A heap address.
    Heap,
    /// Null.
    Zero,
    /// Anywhere in the fake RAM.
    InRam(u32),
    /// Anything.
    Raw(usize),
}

/// A `create` the cache layer must refuse.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum BadCreate {
    /// Object size zero.
    ZeroSize,
    /// An alignment that is not a power of two.
    BadAlign(u8),
    /// An alignment above the page size.
    AlignTooLarge(u8),
    /// Objects the cache would write to, over the ID arena.
    NotMemory,
}

/// A cache to create in an empty slot: kind, size, alignment `2^(a % 4)`
/// times 8 (IDs: times 1), `DEBUG`, `NOMAGAZINE`, counting ops.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct NewCache {
    /// Slot.
    pub slot: u8,
    /// Objects.
    pub kind: Kind,
    /// Size selector.
    pub size: u16,
    /// Alignment selector.
    pub align: u8,
    /// `DEBUG`.
    pub debug: bool,
    /// `NOMAGAZINE`.
    pub nomagazine: bool,
    /// Counting constructor and destructor.
    pub ops: bool,
}

/// One step of the run.
#[derive(Arbitrary, Debug)]
pub enum Action {
    /// Creates a cache in an empty slot.
    Create(NewCache),
    /// A refused `create`.
    BadCreate(BadCreate),
    /// `n % 8 + 1` allocations (`ZERO`, `ATOMIC` as flagged).
    Alloc(u8, u8, bool, bool),
    /// `n % 8 + 1` frees of live objects.
    Free(u8, u16, u8),
    /// A double free (caches that check frees at once).
    DoubleFree(u8, u16),
    /// A foreign or interior free (caches that check frees at once).
    ForeignFree(u8, Foreign),
    /// `reap` of one cache, or of all.
    Reap(Option<u8>),
    /// Flushes the current CPU's magazines of a cache.
    Flush(u8),
    /// Moves to CPU `n % 2`.
    Cpu(u8),
    /// A new failure plan for a cache's constructor.
    CtorPlan(u8, Plan),
    /// `destroy` (refused while objects are live).
    Destroy(u8),
    /// The `::kmastat` report.
    Report,
    /// `tick` of one cache, or `Caches::tick`.
    Tick(Option<u8>),
    /// `alloc_bulk` of `n % 16 + 1` objects (`ZERO` as flagged): all or
    /// nothing.
    AllocBulk(u8, u8, bool),
    /// `reserve` of `n % 8 + 1` objects, `k` of them taken, the rest given
    /// back when the reserve drops.
    Reserve(u8, u8, u8),
    /// `purge_magazines` of one cache, or `Caches::purge_magazines`: every
    /// CPU's magazines back to the slabs.
    Purge(Option<u8>),
}

/// A counting constructor and destructor that fail on a schedule.
struct Counting {
    ctors: AtomicU64,
    dtors: AtomicU64,
    faults: Faults,
    memory: AtomicBool,
}

impl Counting {
    fn new() -> Self {
        Self {
            ctors: AtomicU64::new(0),
            dtors: AtomicU64::new(0),
            faults: Faults::new(kmem_physmem::faults::Plan::Never),
            memory: AtomicBool::new(false),
        }
    }

    /// Constructed objects: constructor calls less destructor calls.
    fn constructed(&self) -> u64 {
        self.ctors.load(Ordering::Relaxed) - self.dtors.load(Ordering::Relaxed)
    }
}

impl ObjectOps for Counting {
    fn construct(&self, obj: usize, _flags: AllocFlags) -> Result<(), CtorError> {
        if self.faults.fail_now() {
            return Err(CtorError);
        }
        if self.memory.load(Ordering::Relaxed) {
            // SAFETY: memory caches given these ops hold objects of at least
            // 8 bytes aligned to 8, and `obj` is one, handed to us to build.
            unsafe { (obj as *mut u64).write(CONSTRUCTED) };
        }
        self.ctors.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn destruct(&self, obj: usize) {
        if self.memory.load(Ordering::Relaxed) {
            // SAFETY: as in `construct`; the object is constructed.
            let tag = unsafe { (obj as *const u64).read() };
            assert_eq!(
                tag, CONSTRUCTED,
                "kmem-fuzz: destructing {obj:#x}, which is not constructed"
            );
        }
        self.dtors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A cache and what the harness knows of it.
struct Slot<'a> {
    cache: Cache<'a, Cpus>,
    name: String,
    kind: Kind,
    /// Object bytes (or IDs), as the cache rounded them.
    size: usize,
    align: usize,
    ops: bool,
    /// Frees are checked at once (`DEBUG` or `NOMAGAZINE`).
    checked: bool,
    /// Double frees are refused at once: checked, or the release-mode
    /// check does it (a bufctl cache with magazines checks under its lock;
    /// a headed one without a constructor carries free marks).
    double_checked: bool,
    /// Live objects and their canary seeds.
    live: BTreeMap<usize, u8>,
    freed: Vec<usize>,
}

impl Slot<'_> {
    fn memory(&self) -> bool {
        self.kind != Kind::Ids
    }
}

/// A cache's counters that a refused operation must leave alone.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    counts: [u64; 9],
    sizes: [usize; 4],
    magazines: Option<MagazineStats>,
}

fn state(c: &Cache<'_, Cpus>) -> State {
    let s = c.stats();
    State {
        counts: [
            s.buf_in_use,
            s.buf_total,
            s.slab_busy,
            s.slab_creates,
            s.slab_destroys,
            s.allocs,
            s.alloc_fails,
            s.ctor_fails,
            0,
        ],
        sizes: [s.slabs, s.empty_slabs, s.memory_in_use, s.hash_chains],
        magazines: s.magazines,
    }
}

/// The byte a canary seeded with `seed` has at `offset`.
fn canary(seed: u8, offset: usize) -> u8 {
    seed ^ (offset as u8).wrapping_mul(31) ^ (offset >> 8) as u8
}

/// Everything the run works with: `'a` is what the caches are built on
/// (arenas, ops, the platform), which outlives the caches; `'s` is the
/// borrow of the caches their handles hold.
struct World<'w, 's, 'a> {
    ram: &'w Ram,
    base: &'a Arena<'a>,
    kpages: &'a Arena<'a>,
    ids: &'a Arena<'a>,
    cpus: &'a Cpus,
    caches: &'s Caches<'a, Cpus>,
    ops: &'a [Counting; SLOTS],
    slots: Vec<Option<Slot<'s>>>,
    /// Live objects of every cache by address space (memory, IDs):
    /// start -> (slot, size).
    owners: [BTreeMap<usize, (usize, usize)>; 2],
    /// Canary seeds handed out so far.
    seeds: u8,
    /// Bytes (or IDs) of live objects.
    live_bytes: usize,
    created: usize,
}

/// Runs the `caches` target on `data`.
///
/// # Panics
/// Panics when a cache breaks its contract or disagrees with the model.
pub fn run(data: &[u8]) {
    let (setup, actions): ((), Vec<Action>) = decode(data);
    let report = Report::new("caches", &setup, &actions);
    let ram = Ram::new(RAM);
    let cpus = Cpus::new();
    ram.boot(|base, kpages| {
        let ids = Arena::builder("fuzz_ids")
            .quantum(1)
            .span(ID_BASE, ID_UNITS)
            .tags_from(base)
            .build()
            .expect("kmem-fuzz: ID arena");
        let ops: [Counting; SLOTS] = core::array::from_fn(|_| Counting::new());
        let caches = Caches::new(base, &cpus).expect("kmem-fuzz: bootstrap caches");
        let mut world = World {
            ram: &ram,
            base,
            kpages,
            ids: &ids,
            cpus: &cpus,
            caches: &caches,
            ops: &ops,
            slots: (0..SLOTS).map(|_| None).collect(),
            owners: [BTreeMap::new(), BTreeMap::new()],
            seeds: 0,
            live_bytes: 0,
            created: 0,
        };
        for (i, a) in actions.iter().enumerate() {
            report.at(Some(i));
            world.step(a);
            world.verify();
        }
        report.at(None);
        world.finish();
        drop(world);
        drop(caches);
        assert_eq!(ids.stats().live, 0, "kmem-fuzz: slabs left in the ID arena");
        ids.check().expect("kmem-fuzz: ID arena check");
    });
}

impl<'s> World<'_, 's, '_> {
    fn step(&mut self, a: &Action) {
        match *a {
            Action::Create(new) => self.create(new),
            Action::BadCreate(bad) => self.bad_create(bad),
            Action::Alloc(slot, n, zero, atomic) => {
                for _ in 0..=n % 8 {
                    self.alloc(slot, zero, atomic);
                }
            }
            Action::Free(slot, which, n) => {
                for k in 0..=u16::from(n % 8) {
                    self.free(slot, which.wrapping_add(k));
                }
            }
            Action::DoubleFree(slot, which) => self.double_free(slot, which),
            Action::ForeignFree(slot, target) => self.foreign_free(slot, target),
            Action::Reap(Some(slot)) => {
                if let Some(s) = self.slot(slot) {
                    s.cache.reap();
                }
            }
            Action::Reap(None) => self.caches.for_each(|c| {
                c.reap();
            }),
            Action::Flush(slot) => {
                if let Some(s) = self.slot(slot) {
                    s.cache.flush_current();
                }
            }
            Action::Cpu(n) => self.cpus.set_slot(usize::from(n % 2)),
            Action::CtorPlan(slot, plan) => {
                self.ops[usize::from(slot) % SLOTS]
                    .faults
                    .set(plan.faults());
            }
            Action::Destroy(slot) => self.destroy(slot),
            Action::Tick(Some(slot)) => {
                if let Some(s) = self.slot(slot) {
                    s.cache.tick();
                }
            }
            Action::Tick(None) => {
                self.caches.tick();
            }
            Action::AllocBulk(slot, n, zero) => {
                self.alloc_bulk(slot, usize::from(n % 16) + 1, zero)
            }
            Action::Reserve(slot, n, k) => {
                self.reserve(slot, usize::from(n % 8) + 1, usize::from(k))
            }
            Action::Purge(Some(slot)) => {
                if let Some(s) = self.slot(slot) {
                    s.cache.purge_magazines();
                }
            }
            Action::Purge(None) => {
                self.caches.purge_magazines();
            }
            Action::Report => {
                let mut out = String::new();
                self.caches.report(&mut out).expect("kmem-fuzz: report");
                for s in self.slots.iter().flatten() {
                    assert!(
                        out.contains(&s.name),
                        "kmem-fuzz: {} not in the report",
                        s.name
                    );
                }
            }
        }
    }

    fn slot(&self, slot: u8) -> Option<&Slot<'s>> {
        self.slots[usize::from(slot) % SLOTS].as_ref()
    }

    /// The checks after every action.
    fn verify(&self) {
        for (i, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            if let Err(e) = s.cache.check() {
                panic!("kmem-fuzz: cache {} failed its check: {e}", s.name);
            }
            let st = s.cache.stats();
            assert_eq!(
                st.buf_in_use,
                s.live.len() as u64,
                "kmem-fuzz: cache {} counts {} objects in use, the model {}",
                s.name,
                st.buf_in_use,
                s.live.len()
            );
            if s.ops {
                assert_eq!(
                    self.ops[i].constructed(),
                    st.slab_busy,
                    "kmem-fuzz: cache {}: constructed objects vs objects out of slabs",
                    s.name
                );
            }
            assert_eq!(s.cache.last_bad_free(), None, "kmem-fuzz: cache {}", s.name);
        }
        for (name, arena) in [
            ("base", self.base),
            ("kpages", self.kpages),
            ("ids", self.ids),
        ] {
            if let Err(e) = arena.check() {
                panic!("kmem-fuzz: arena {name} failed its check: {e}");
            }
        }
    }
}
