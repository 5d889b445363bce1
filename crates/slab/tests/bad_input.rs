//! One test per bad input at the slab layer (the table in RELIABILITY.md).
//!
//! Each asserts the exact typed error, that its `Display` text is not empty,
//! that the cache is exactly as it was (objects in use, objects and slabs,
//! busy objects, counters, magazine layer) and so are its source arena and
//! the base arena, and that [`KmemCache::check`] passes afterwards.
//!
//! Bad frees are tried on every kind of cache: without magazines (small
//! and bufctl objects, checked by the slab layer at once); with magazines
//! and no constructor (the release-mode check before the magazine: owner,
//! object start, free mark), on headed slabs of one page and of several,
//! and on `NOTOUCH` bufctls (checked under the cache lock); `DEBUG` (every
//! free checked under the lock). A constructed cache with magazines takes
//! a double free into a magazine and finds it when the magazine drains;
//! those tests drain before anything could allocate the object again.

mod common;

use core::error::Error;
use core::sync::atomic::Ordering;
use core::time::Duration;

use common::{create_with_ops, with_caches, with_caches_using, with_ids, Counting, CONSTRUCTED};
use kmem_arena::{Arena, Name, Policy};
use kmem_magazine::{MagazineStats, ThreadCpus};
use kmem_physmem::{PhysMem, PAGE_SIZE};
use kmem_slab::{
    AllocError, AllocFlags, BadFree, CacheBuilder, CacheFlags, CacheStats, Caches, CreateError,
    FreeError, KmemCache,
};

// ---------------------------------------------------------------------------
// Shared helpers.

/// Fake RAM for every test.
const RAM: usize = 8 << 20;

type Kc<'a> = KmemCache<'a, ThreadCpus>;

/// Everything a refused operation must leave alone.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    buf_in_use: u64,
    buf_total: u64,
    slab_busy: u64,
    slabs: usize,
    empty_slabs: usize,
    memory_in_use: usize,
    slab_creates: u64,
    slab_destroys: u64,
    allocs: u64,
    alloc_fails: u64,
    ctor_fails: u64,
    magazines: Option<MagazineStats>,
    source_free: usize,
    source_total: usize,
    base_free: usize,
    base_total: usize,
}

fn state(c: &Kc<'_>, source: &Arena<'_>, base: &Arena<'_>) -> State {
    State {
        source_free: source.amt_free(),
        source_total: source.amt_total(),
        base_free: base.amt_free(),
        base_total: base.amt_total(),
        ..state_of(&c.stats())
    }
}

fn state_of(s: &CacheStats) -> State {
    State {
        buf_in_use: s.buf_in_use,
        buf_total: s.buf_total,
        slab_busy: s.slab_busy,
        slabs: s.slabs,
        empty_slabs: s.empty_slabs,
        memory_in_use: s.memory_in_use,
        slab_creates: s.slab_creates,
        slab_destroys: s.slab_destroys,
        allocs: s.allocs,
        alloc_fails: s.alloc_fails,
        ctor_fails: s.ctor_fails,
        // Depot visits count activity, not state: a refused allocation may
        // have looked in the depot first.
        magazines: s.magazines.map(|m| MagazineStats {
            depot_locks: 0,
            ..m
        }),
        source_free: 0,
        source_total: 0,
        base_free: 0,
        base_total: 0,
    }
}

/// The cache's own part of [`state`]: a free into a magazine may grow the
/// magazine cache from the base arena.
fn own(c: &Kc<'_>) -> State {
    let s = c.stats();
    State {
        source_free: 0,
        source_total: 0,
        base_free: 0,
        base_total: 0,
        ..state_of(&s)
    }
}

/// Fails at the caller's line unless `c` passes its consistency check.
#[track_caller]
fn ok(c: &Kc<'_>) {
    if let Err(e) = c.check() {
        panic!("cache {:?} failed its check: {e}", c.name());
    }
}

/// Fails unless `e` is a `core::error::Error` with a `Display` text.
#[track_caller]
fn assert_displays(e: &dyn Error) {
    assert!(!e.to_string().is_empty(), "{e:?} displays as nothing");
}

/// Frees `addr` to `c` and fails unless the free is refused with exactly
/// `kind`, counted in `bad_frees`, and leaves `c` (and the arenas) exactly
/// as they were.
#[track_caller]
fn assert_free_refused(
    c: &Kc<'_>,
    source: &Arena<'_>,
    base: &Arena<'_>,
    addr: usize,
    kind: BadFree,
) {
    ok(c);
    let before = state(c, source, base);
    let bad_before = c.stats().bad_frees;
    // SAFETY: the address is bad on purpose; the cache must refuse it before
    // it touches the address (every caller passes an address the cache must
    // recognise as not its live object without dereferencing it).
    let got = unsafe { c.free(addr) };
    let expected = FreeError {
        cache: Name::new(c.name()),
        addr,
        kind,
    };
    match got {
        Ok(()) => panic!("expected Err({expected:?}), got Ok(())"),
        Err(e) => {
            assert_eq!(e, expected);
            assert_displays(&e);
        }
    }
    assert_eq!(
        state(c, source, base),
        before,
        "cache {:?} changed",
        c.name()
    );
    assert_eq!(c.stats().bad_frees, bad_before + 1, "bad free not counted");
    ok(c);
}

/// Frees `obj`, which must succeed.
#[track_caller]
fn free_ok(c: &Kc<'_>, obj: usize) {
    // SAFETY: every caller passes a live object of `c`, freed once.
    unsafe { c.free(obj) }.unwrap_or_else(|e| panic!("free of {obj:#x}: {e}"));
}

/// Flushes the caller's magazines and drains the depot of `c`.
fn drain(c: &Kc<'_>) {
    c.flush_current();
    c.reap();
}

/// The three cache kinds the bad-free tests run on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// 64-byte objects, small layout, `NOMAGAZINE`.
    Small,
    /// 1024-byte objects, bufctl layout (`NOTOUCH`), `NOMAGAZINE`.
    Bufctl,
    /// 200-byte objects, `DEBUG` (bufctls, state tracked), with magazines.
    Debug,
    /// 64-byte objects with magazines, no constructor: the release-mode
    /// check (owner, object start, free mark) before the magazine.
    Plain,
    /// 1024-byte objects with magazines, no constructor: a headed slab of
    /// several pages, checked as `Plain`.
    PlainLarge,
    /// 1024-byte objects with magazines over `NOTOUCH` bufctls: checked
    /// under the cache lock before the magazine, as `Debug`.
    Tracked,
    /// 512-byte objects, small layout, `NOMAGAZINE`: one-page slabs with
    /// room for colours.
    ColouredSmall,
    /// 512-byte objects with magazines, no constructor: `ColouredSmall`,
    /// checked as `Plain`.
    ColouredPlain,
}

impl Kind {
    fn builder<'a>(self, name: &str, source: &'a Arena<'a>) -> CacheBuilder<'a> {
        let (size, flags) = match self {
            Kind::Small => (64, CacheFlags::NOMAGAZINE),
            Kind::Bufctl => (1024, CacheFlags::NOTOUCH | CacheFlags::NOMAGAZINE),
            Kind::Debug => (200, CacheFlags::DEBUG),
            Kind::Plain => (64, CacheFlags::empty()),
            Kind::PlainLarge => (1024, CacheFlags::empty()),
            Kind::Tracked => (1024, CacheFlags::NOTOUCH),
            Kind::ColouredSmall => (512, CacheFlags::NOMAGAZINE),
            Kind::ColouredPlain => (512, CacheFlags::empty()),
        };
        CacheBuilder::new(name, size).flags(flags).source(source)
    }

    /// Objects on bufctls, known by their start address only.
    fn bufctls(self) -> bool {
        matches!(self, Kind::Bufctl | Kind::Debug | Kind::Tracked)
    }
}

/// What a bad-free test gets: the cache under test (`victim`), another
/// cache of the same kind (`other`), the arenas, and an object of each
/// cache that stays allocated throughout (so both have a slab).
struct Fixture<'f, 'c, 'a> {
    caches: &'f Caches<'a, ThreadCpus>,
    victim: &'f Kc<'c>,
    other: &'f Kc<'c>,
    kpages: &'a Arena<'a>,
    base: &'a Arena<'a>,
    victim_live: usize,
    other_live: usize,
}

impl Fixture<'_, '_, '_> {
    #[track_caller]
    fn refused(&self, addr: usize, kind: BadFree) {
        assert_free_refused(self.victim, self.kpages, self.base, addr, kind);
    }
}

/// Runs `f` on a fixture of `kind`; afterwards frees the live objects,
/// destroys both caches (which must succeed) and checks everything.
fn with_fixture(kind: Kind, f: impl FnOnce(&Fixture<'_, '_, '_>)) {
    with_caches(RAM, |caches, kpages| {
        let victim = caches.create(kind.builder("victim", kpages)).unwrap();
        let other = caches.create(kind.builder("other", kpages)).unwrap();
        assert_eq!(victim.uses_bufctls(), kind.bufctls());
        let fx = Fixture {
            caches,
            victim: &victim,
            other: &other,
            kpages,
            base: caches.base(),
            victim_live: victim.alloc(AllocFlags::empty()).unwrap(),
            other_live: other.alloc(AllocFlags::empty()).unwrap(),
        };
        ok(&victim);
        ok(&other);
        f(&fx);
        ok(&victim);
        ok(&other);
        free_ok(&victim, fx.victim_live);
        free_ok(&other, fx.other_live);
        assert_eq!(victim.stats().buf_in_use, 0);
        assert_eq!(other.stats().buf_in_use, 0);
        victim.destroy().unwrap();
        other.destroy().unwrap();
    });
}

#[test]
fn every_error_displays() {
    let name = Name::new("c");
    let create = [
        CreateError::ZeroSize,
        CreateError::BadAlign,
        CreateError::AlignTooLarge,
        CreateError::TooLarge,
        CreateError::NotMemory,
        CreateError::BadQcacheMax,
        CreateError::NoMemory,
        CreateError::BaseQuantum,
        CreateError::BaseQcaches,
    ];
    let alloc = [
        AllocError::Exhausted,
        AllocError::Ctor,
        AllocError::NotMemory,
        AllocError::Reentrant,
    ];
    let free = [
        BadFree::DoubleFree,
        BadFree::WrongCache(Name::new("owner")),
        BadFree::Foreign,
        BadFree::NotObjectStart,
        BadFree::Reentrant,
    ]
    .map(|kind| FreeError {
        cache: name,
        addr: 0x1000,
        kind,
    });
    let all = create.iter().map(|e| e as &dyn Error);
    let all = all.chain(alloc.iter().map(|e| e as &dyn Error));
    for e in all.chain(free.iter().map(|e| e as &dyn Error)) {
        assert_displays(e);
    }
    // The owner's name is in the wrong-cache message.
    assert!(free[1].to_string().contains("owner"));
}

// ---------------------------------------------------------------------------
// Create errors. None may leave anything behind in the base arena, the
// source, or the registry.

/// Registry entries and the base and kpages accounting.
fn world(caches: &Caches<'_, ThreadCpus>, kpages: &Arena<'_>) -> (usize, usize, usize, usize) {
    let mut n = 0;
    caches.for_each(|_| n += 1);
    (
        n,
        caches.base().amt_free(),
        kpages.amt_free(),
        kpages.amt_total(),
    )
}

/// Fails unless creating `builder` is refused with exactly `expected` and
/// leaves the registry and the arenas as they were.
#[track_caller]
fn assert_create_refused<'a>(
    caches: &Caches<'a, ThreadCpus>,
    kpages: &Arena<'_>,
    builder: CacheBuilder<'a>,
    expected: CreateError,
) {
    let before = world(caches, kpages);
    match caches.create(builder) {
        Ok(c) => panic!("expected Err({expected:?}), created {:?}", c.name()),
        Err(e) => {
            assert_eq!(e, expected);
            assert_displays(&e);
        }
    }
    assert_eq!(
        world(caches, kpages),
        before,
        "create left something behind"
    );
    caches.for_each(|c| ok(c));
}

/// The IDs `[1, 1 + 2^20)` of [`with_ids`]: not memory.
const IDS: (usize, usize) = (1, 1 << 20);

#[test]
fn create_zero_size() {
    with_caches(RAM, |caches, kpages| {
        for flags in [
            CacheFlags::empty(),
            CacheFlags::NOMAGAZINE,
            CacheFlags::DEBUG,
        ] {
            let b = CacheBuilder::new("zero", 0).flags(flags).source(kpages);
            assert_create_refused(caches, kpages, b, CreateError::ZeroSize);
        }
    });
}

#[test]
fn create_align_zero() {
    with_caches(RAM, |caches, kpages| {
        let b = CacheBuilder::new("a0", 64).align(0).source(kpages);
        assert_create_refused(caches, kpages, b, CreateError::BadAlign);
    });
}

#[test]
fn create_align_not_power_of_two() {
    with_caches(RAM, |caches, kpages| {
        for align in [3, 24, 4095, usize::MAX] {
            let b = CacheBuilder::new("a3", 64).align(align).source(kpages);
            assert_create_refused(caches, kpages, b, CreateError::BadAlign);
        }
    });
}

#[test]
fn create_align_above_page() {
    with_caches(RAM, |caches, kpages| {
        for align in [2 * PAGE_SIZE, 1 << 40] {
            let b = CacheBuilder::new("a8192", 64).align(align).source(kpages);
            assert_create_refused(caches, kpages, b, CreateError::AlignTooLarge);
        }
        // PAGE_SIZE itself is fine.
        let c = caches
            .create(
                CacheBuilder::new("a4096", 64)
                    .align(PAGE_SIZE)
                    .source(kpages),
            )
            .unwrap();
        let obj = c.alloc(AllocFlags::ZERO).unwrap();
        assert_eq!(obj % PAGE_SIZE, 0);
        free_ok(&c, obj);
        c.destroy().unwrap();
    });
}

#[test]
fn create_touching_cache_over_ids() {
    with_ids(RAM, IDS, |caches, kpages, ids| {
        for flags in [
            CacheFlags::empty(),
            CacheFlags::NOMAGAZINE,
            CacheFlags::DEBUG,
        ] {
            for size in [8, 64, 1024] {
                let b = CacheBuilder::new("touch", size).flags(flags).source(ids);
                assert_create_refused(caches, kpages, b, CreateError::NotMemory);
            }
        }
        assert_eq!(ids.amt_free(), 1 << 20);
    });
}

#[test]
fn create_notouch_cache_over_ids_works() {
    with_ids(RAM, IDS, |caches, _, ids| {
        let c = caches
            .create(
                CacheBuilder::new("notouch", 16)
                    .flags(CacheFlags::NOTOUCH)
                    .source(ids),
            )
            .unwrap();
        assert!(c.uses_bufctls());
        let got: Vec<usize> = (0..100)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        for &id in &got {
            assert!((1..1 + (1 << 20)).contains(&id), "{id:#x} is not from ids");
            assert!(c.owns(id));
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "an ID was handed out twice");
        ok(&c);
        for id in got {
            free_ok(&c, id);
        }
        c.destroy().unwrap();
        assert_eq!(ids.amt_free(), 1 << 20, "slabs of IDs not given back");
        ids.check().unwrap();
    });
}

#[test]
fn create_qcache_max_below_object_size() {
    with_ids(RAM, IDS, |caches, kpages, ids| {
        for qmax in [0, 16, 63] {
            let b = CacheBuilder::new("q", 64).qcache(qmax).source(ids);
            assert_create_refused(caches, kpages, b, CreateError::BadQcacheMax);
        }
        // qcache_max == size is fine.
        let c = caches
            .create(CacheBuilder::new("q64", 64).qcache(64).source(ids))
            .unwrap();
        let id = c.alloc(AllocFlags::empty()).unwrap();
        free_ok(&c, id);
        c.destroy().unwrap();
    });
}

#[test]
fn alloc_zero_flag_on_notouch_cache() {
    with_ids(RAM, IDS, |caches, kpages, ids| {
        for flags in [
            CacheFlags::NOTOUCH,
            CacheFlags::NOTOUCH | CacheFlags::NOMAGAZINE,
        ] {
            let c = caches
                .create(CacheBuilder::new("ids16", 16).flags(flags).source(ids))
                .unwrap();
            // Once with an empty cache, once with a slab and a cached object.
            for round in 0..2 {
                let before = state(&c, ids, kpages);
                let got = c.alloc(AllocFlags::ZERO);
                assert_eq!(got, Err(AllocError::NotMemory), "round {round}");
                assert_displays(&got.unwrap_err());
                assert_eq!(state(&c, ids, kpages), before);
                ok(&c);
                let id = c.alloc(AllocFlags::empty()).unwrap();
                free_ok(&c, id);
            }
            c.destroy().unwrap();
        }
        assert_eq!(ids.amt_free(), 1 << 20);
    });
}

// ---------------------------------------------------------------------------
// Bad frees: small objects without magazines.

#[test]
fn small_double_free() {
    with_fixture(Kind::Small, |fx| {
        let a = fx.victim.alloc(AllocFlags::empty()).unwrap();
        free_ok(fx.victim, a);
        fx.refused(a, BadFree::DoubleFree);
        fx.refused(a, BadFree::DoubleFree);
    });
}

#[test]
fn small_free_to_wrong_cache() {
    with_fixture(Kind::Small, |fx| {
        let before = state(fx.other, fx.kpages, fx.base);
        fx.refused(fx.other_live, BadFree::WrongCache(Name::new("other")));
        assert_eq!(state(fx.other, fx.kpages, fx.base), before);
    });
}

/// Heap, stack, null and top-of-memory addresses freed to a cache of
/// `kind`: foreign, and nothing changes. (A headed cache with magazines
/// reads the last word of the slab-sized block holding the address, so
/// it is given addresses in mapped memory only: null and the top of
/// memory would fault, as documented.)
fn foreign_heap_and_stack(kind: Kind) {
    with_fixture(kind, |fx| {
        let heap = vec![0u64; 64];
        let stack = [0u64; 8];
        fx.refused(heap.as_ptr() as usize, BadFree::Foreign);
        fx.refused(stack.as_ptr() as usize, BadFree::Foreign);
        if !matches!(kind, Kind::Plain | Kind::PlainLarge) {
            fx.refused(0, BadFree::Foreign);
            fx.refused(usize::MAX & !7, BadFree::Foreign);
        }
        assert!(
            heap.iter().chain(&stack).all(|&w| w == 0),
            "foreign memory written"
        );
    });
}

/// A page of the cache's own source that is no slab of it, freed at its
/// start and `offset` into it: foreign, and nothing changes.
fn foreign_source_memory(kind: Kind, offset: usize) {
    with_fixture(kind, |fx| {
        let page = fx.kpages.alloc(PAGE_SIZE, Policy::InstantFit).unwrap();
        fx.refused(page, BadFree::Foreign);
        fx.refused(page + offset, BadFree::Foreign);
        // SAFETY: allocated above with this size; not used after.
        unsafe { fx.kpages.free_memory(page, PAGE_SIZE) }.unwrap();
    });
}

#[test]
fn small_free_of_heap_and_stack_pointers() {
    foreign_heap_and_stack(Kind::Small);
}

#[test]
fn small_free_of_kpages_memory_outside_slabs() {
    foreign_source_memory(Kind::Small, 64);
}

#[test]
fn small_free_inside_an_object() {
    with_fixture(Kind::Small, |fx| {
        let a = fx.victim_live;
        fx.refused(a + 8, BadFree::NotObjectStart);
        fx.refused(a + 63, BadFree::NotObjectStart);
        // Past the last object: the bitmap and header at the slab's end.
        let (slab_size, per_slab) = fx.victim.slab_geometry();
        let slab = a & !(slab_size - 1);
        fx.refused(slab + per_slab * fx.victim.size(), BadFree::NotObjectStart);
        fx.refused(slab + slab_size - 8, BadFree::NotObjectStart);
    });
}

// ---------------------------------------------------------------------------
// Bad frees: coloured headed slabs, whose first object sits the slab's
// colour past its base.

/// Allocates objects of the victim until one of its slabs with a non-zero
/// colour is wholly allocated; returns every object allocated, that slab's
/// base and its colour.
fn coloured_slab(fx: &Fixture<'_, '_, '_>) -> (Vec<usize>, usize, usize) {
    let (slab_size, per_slab) = fx.victim.slab_geometry();
    let mut objs = Vec::new();
    for _ in 0..16 {
        objs.extend((0..per_slab).map(|_| fx.victim.alloc(AllocFlags::empty()).unwrap()));
        let mut bases: Vec<usize> = objs.iter().map(|o| o & !(slab_size - 1)).collect();
        bases.sort_unstable();
        bases.dedup();
        for base in bases {
            let mine: Vec<usize> = objs
                .iter()
                .copied()
                .filter(|o| o & !(slab_size - 1) == base)
                .collect();
            let first = mine.iter().copied().min().unwrap();
            if mine.len() == per_slab && first != base {
                return (objs, base, first - base);
            }
        }
    }
    panic!("no coloured slab in 16 slabs' worth of objects");
}

/// Pointers into a coloured slab that are not on its (shifted) object
/// grid: its base and the rest of the colour gap, the uncoloured grid,
/// inside an object, past the last one. Each is refused as not an object
/// start, changing nothing; a double free of its objects is still caught.
fn coloured_free_off_the_grid(kind: Kind) {
    with_fixture(kind, |fx| {
        let (mut objs, base, colour) = coloured_slab(fx);
        let (_, per_slab) = fx.victim.slab_geometry();
        let size = fx.victim.size();
        assert!(colour > 0 && colour % 64 == 0 && colour < size, "{colour}");
        fx.refused(base, BadFree::NotObjectStart);
        fx.refused(base + colour - 8, BadFree::NotObjectStart);
        fx.refused(base + size, BadFree::NotObjectStart);
        fx.refused(base + colour + 8, BadFree::NotObjectStart);
        fx.refused(base + colour + size - 8, BadFree::NotObjectStart);
        fx.refused(base + colour + per_slab * size, BadFree::NotObjectStart);
        // The slab's objects are exactly the coloured grid.
        let first = base + colour;
        let last = first + (per_slab - 1) * size;
        assert!(objs.contains(&first) && objs.contains(&last));
        free_ok(fx.victim, last);
        fx.refused(last, BadFree::DoubleFree);
        objs.retain(|&o| o != last);
        for o in objs {
            free_ok(fx.victim, o);
        }
        ok(fx.victim);
    });
}

#[test]
fn coloured_small_free_off_the_grid() {
    coloured_free_off_the_grid(Kind::ColouredSmall);
}

#[test]
fn coloured_plain_free_off_the_grid() {
    coloured_free_off_the_grid(Kind::ColouredPlain);
}

// ---------------------------------------------------------------------------
// Bad frees: bufctl objects without magazines.

#[test]
fn bufctl_double_free() {
    with_fixture(Kind::Bufctl, |fx| {
        let a = fx.victim.alloc(AllocFlags::empty()).unwrap();
        free_ok(fx.victim, a);
        fx.refused(a, BadFree::DoubleFree);
        fx.refused(a, BadFree::DoubleFree);
    });
}

#[test]
fn bufctl_free_to_wrong_cache() {
    with_fixture(Kind::Bufctl, |fx| {
        let before = state(fx.other, fx.kpages, fx.base);
        fx.refused(fx.other_live, BadFree::WrongCache(Name::new("other")));
        assert_eq!(state(fx.other, fx.kpages, fx.base), before);
    });
}

#[test]
fn bufctl_free_of_heap_and_stack_pointers() {
    foreign_heap_and_stack(Kind::Bufctl);
}

#[test]
fn bufctl_free_of_kpages_memory_outside_slabs() {
    foreign_source_memory(Kind::Bufctl, 1024);
}

/// A bufctl cache knows its objects by their start address only (see
/// `KmemCache::owns`), so an address inside an object is foreign to it.
#[test]
fn bufctl_free_inside_an_object() {
    with_fixture(Kind::Bufctl, |fx| {
        let a = fx.victim_live;
        fx.refused(a + 8, BadFree::Foreign);
        fx.refused(a + 1023, BadFree::Foreign);
    });
}

// ---------------------------------------------------------------------------
// Bad frees: a DEBUG cache with magazines, checked before the magazine.

#[test]
fn debug_double_free() {
    with_fixture(Kind::Debug, |fx| {
        let a = fx.victim.alloc(AllocFlags::empty()).unwrap();
        free_ok(fx.victim, a);
        // `a` sits in this CPU's magazine, constructed: still refused.
        fx.refused(a, BadFree::DoubleFree);
        // Back in its slab: refused too.
        drain(fx.victim);
        fx.refused(a, BadFree::DoubleFree);
        assert_eq!(
            fx.victim.last_bad_free(),
            None,
            "nothing bad reached the slabs"
        );
    });
}

#[test]
fn debug_free_to_wrong_cache() {
    with_fixture(Kind::Debug, |fx| {
        let before = state(fx.other, fx.kpages, fx.base);
        fx.refused(fx.other_live, BadFree::WrongCache(Name::new("other")));
        assert_eq!(state(fx.other, fx.kpages, fx.base), before);
        // An object of a small cache is another cache's too.
        let c = fx
            .caches
            .create(Kind::Small.builder("small", fx.kpages))
            .unwrap();
        let obj = c.alloc(AllocFlags::empty()).unwrap();
        fx.refused(obj, BadFree::WrongCache(Name::new("small")));
        free_ok(&c, obj);
        c.destroy().unwrap();
    });
}

#[test]
fn debug_free_of_heap_and_stack_pointers() {
    foreign_heap_and_stack(Kind::Debug);
}

#[test]
fn debug_free_of_kpages_memory_outside_slabs() {
    foreign_source_memory(Kind::Debug, 200);
}

/// `DEBUG` caches keep bufctls, which know objects by their start address
/// only: an address inside an object is foreign.
#[test]
fn debug_free_inside_an_object() {
    with_fixture(Kind::Debug, |fx| {
        let a = fx.victim_live;
        fx.refused(a + 8, BadFree::Foreign);
        fx.refused(a + 199, BadFree::Foreign);
    });
}

// ---------------------------------------------------------------------------
// Bad frees into the magazines of caches without DEBUG: refused at once by
// the release-mode checks.

/// A double free into a plain cache: refused while the object sits in this
/// CPU's magazine, in the depot, and back in its slab.
fn plain_double_free(kind: Kind) {
    with_fixture(kind, |fx| {
        let a = fx.victim.alloc(AllocFlags::empty()).unwrap();
        free_ok(fx.victim, a);
        fx.refused(a, BadFree::DoubleFree);
        fx.victim.flush_current();
        fx.refused(a, BadFree::DoubleFree);
        drain(fx.victim);
        fx.refused(a, BadFree::DoubleFree);
        // Handed out again, it may be freed again, once.
        let b = fx.victim.alloc(AllocFlags::empty()).unwrap();
        free_ok(fx.victim, b);
        fx.refused(b, BadFree::DoubleFree);
        // Never handed out: every free object of a fresh slab is refused.
        let (slab_size, per_slab) = fx.victim.slab_geometry();
        let base = fx.victim_live & !(slab_size - 1);
        let last = base + (per_slab - 1) * fx.victim.size();
        if last != fx.victim_live && last != a && last != b {
            fx.refused(last, BadFree::DoubleFree);
        }
        assert_eq!(
            fx.victim.last_bad_free(),
            None,
            "nothing bad reached the slabs"
        );
    });
}

#[test]
fn plain_double_free_small() {
    plain_double_free(Kind::Plain);
}

#[test]
fn plain_double_free_large() {
    plain_double_free(Kind::PlainLarge);
}

/// The second free comes from another thread (another CPU slot).
#[test]
fn plain_double_free_from_another_thread() {
    for kind in [Kind::Plain, Kind::PlainLarge, Kind::Tracked] {
        with_fixture(kind, |fx| {
            let a = fx.victim.alloc(AllocFlags::empty()).unwrap();
            free_ok(fx.victim, a);
            let victim = fx.victim;
            let got = std::thread::scope(|s| {
                // SAFETY: a double free: the call under test.
                s.spawn(|| unsafe { victim.free(a) }).join().unwrap()
            });
            assert_eq!(got.unwrap_err().kind, BadFree::DoubleFree, "{kind:?}");
            // Only one of the next allocations gets `a`.
            let x = fx.victim.alloc(AllocFlags::empty()).unwrap();
            let y = fx.victim.alloc(AllocFlags::empty()).unwrap();
            assert_ne!(x, y);
            free_ok(fx.victim, x);
            free_ok(fx.victim, y);
        });
    }
}

#[test]
fn plain_free_to_wrong_cache() {
    for kind in [Kind::Plain, Kind::PlainLarge, Kind::Tracked] {
        with_fixture(kind, |fx| {
            let before = state(fx.other, fx.kpages, fx.base);
            fx.refused(fx.other_live, BadFree::WrongCache(Name::new("other")));
            assert_eq!(state(fx.other, fx.kpages, fx.base), before);
            // A freed object of the other cache, into this one: still the
            // other's (its free mark is not this cache's).
            let o = fx.other.alloc(AllocFlags::empty()).unwrap();
            free_ok(fx.other, o);
            let got = {
                let bad_before = fx.victim.stats().bad_frees;
                // SAFETY: a bad free: the call under test.
                let got = unsafe { fx.victim.free(o) };
                assert_eq!(fx.victim.stats().bad_frees, bad_before + 1);
                got
            };
            assert!(
                matches!(got.unwrap_err().kind, BadFree::WrongCache(_)),
                "{kind:?}"
            );
            // Objects of caches with other slab sizes.
            for (name, size) in [("k64", 64), ("k1024", 1024), ("k8", 8), ("k4096", 4096)] {
                let c = fx
                    .caches
                    .create(CacheBuilder::new(name, size).source(fx.kpages))
                    .unwrap();
                let obj = c.alloc(AllocFlags::empty()).unwrap();
                fx.refused(obj, BadFree::WrongCache(Name::new(name)));
                free_ok(&c, obj);
                c.destroy().unwrap();
            }
        });
    }
}

#[test]
fn plain_free_of_heap_and_stack_pointers() {
    foreign_heap_and_stack(Kind::Plain);
    foreign_heap_and_stack(Kind::PlainLarge);
    foreign_heap_and_stack(Kind::Tracked);
}

#[test]
fn plain_free_of_kpages_memory_outside_slabs() {
    foreign_source_memory(Kind::Plain, 64);
    foreign_source_memory(Kind::PlainLarge, 1024);
    foreign_source_memory(Kind::Tracked, 1024);
}

#[test]
fn plain_free_inside_an_object() {
    for kind in [Kind::Plain, Kind::PlainLarge] {
        with_fixture(kind, |fx| {
            let a = fx.victim_live;
            let size = fx.victim.size();
            fx.refused(a + 8, BadFree::NotObjectStart);
            fx.refused(a + size - 1, BadFree::NotObjectStart);
            let (slab_size, per_slab) = fx.victim.slab_geometry();
            let slab = a & !(slab_size - 1);
            fx.refused(slab + per_slab * size, BadFree::NotObjectStart);
            fx.refused(slab + slab_size - 8, BadFree::NotObjectStart);
        });
    }
    with_fixture(Kind::Tracked, |fx| {
        fx.refused(fx.victim_live + 8, BadFree::Foreign);
    });
}

/// A slab given back to its source no longer vouches for its objects: a
/// free of a pointer into it is refused as foreign, not accepted.
#[test]
fn plain_free_into_a_reaped_slab() {
    for kind in [Kind::Plain, Kind::PlainLarge] {
        with_fixture(kind, |fx| {
            let (slab_size, _) = fx.victim.slab_geometry();
            // Fill a slab of its own, free it all, reap it.
            let objs: Vec<usize> = (0..4 * slab_size / fx.victim.size())
                .map(|_| fx.victim.alloc(AllocFlags::empty()).unwrap())
                .collect();
            let lone = *objs.last().unwrap();
            for &o in &objs {
                free_ok(fx.victim, o);
            }
            drain(fx.victim);
            if fx.victim.owns(lone) {
                return; // its slab was not reaped (it holds `victim_live`)
            }
            fx.refused(lone, BadFree::Foreign);
        });
    }
}

// ---------------------------------------------------------------------------
// Bad frees into the magazines of constructed caches: a double free is
// found when the magazine drains (a constructed object's memory cannot
// carry the free mark); wrong-cache and foreign frees are refused at once.

/// A 64-byte cache with magazines and counting ops.
fn mag_builder<'a>(name: &str, source: &'a Arena<'a>, ops: &'a Counting) -> CacheBuilder<'a> {
    CacheBuilder::new(name, 64).source(source).ops(ops)
}

/// Drains `c` and fails unless exactly one more bad free was found, and it
/// is `expected`; the slabs must be consistent and hold `busy` objects.
#[track_caller]
fn assert_found_at_drain(c: &Kc<'_>, expected: FreeError, busy: u64) {
    let bad_before = c.stats().bad_frees;
    drain(c);
    let s = c.stats();
    assert_eq!(s.bad_frees, bad_before + 1, "bad free not counted at drain");
    assert_eq!(c.last_bad_free(), Some(expected));
    assert_eq!(s.slab_busy, busy);
    let m = s.magazines.unwrap();
    assert_eq!(
        (m.not_empty, m.empty, m.depot_rounds),
        (0, 0, 0),
        "depot not drained"
    );
    ok(c);
}

#[test]
fn magazine_double_free_found_at_drain() {
    let ops = Counting::default();
    with_caches_using(&ops, RAM, |caches, kpages, ops| {
        let c = caches.create(mag_builder("mag", kpages, ops)).unwrap();
        // `keep` stays allocated so the counters never go below zero (see
        // `magazine_double_free_buf_in_use_recovers`).
        let keep = c.alloc(AllocFlags::empty()).unwrap();
        let a = c.alloc(AllocFlags::empty()).unwrap();
        free_ok(&c, a);
        // Undetected: `a` now sits twice in this CPU's magazine. Nothing may
        // allocate from `c` before the drain below.
        free_ok(&c, a);
        assert_eq!(c.last_bad_free(), None);
        let expected = FreeError {
            cache: Name::new("mag"),
            addr: a,
            kind: BadFree::DoubleFree,
        };
        assert_found_at_drain(&c, expected, 1);
        // The destructor ran once for `a`, not twice.
        assert_eq!(ops.dtors.load(Ordering::SeqCst), 1);
        assert_eq!(ops.live_constructed(), 1);
        // The cache works on.
        let b = c.alloc(AllocFlags::empty()).unwrap();
        free_ok(&c, b);
        free_ok(&c, keep);
        c.destroy().unwrap();
        assert_eq!(ops.live_constructed(), 0);
    });
}

/// After a double free found at drain, `buf_in_use` must say what users
/// hold: here nothing.
#[test]
fn magazine_double_free_buf_in_use_recovers() {
    let ops = Counting::default();
    with_caches_using(&ops, RAM, |caches, kpages, ops| {
        let c = caches.create(mag_builder("mag", kpages, ops)).unwrap();
        let a = c.alloc(AllocFlags::empty()).unwrap();
        free_ok(&c, a);
        free_ok(&c, a);
        drain(&c);
        let s = c.stats();
        assert_eq!(s.bad_frees, 1);
        assert_eq!(s.buf_in_use, 0);
        assert_eq!(s.slab_busy, 0);
        c.destroy().unwrap();
    });
}

#[test]
fn magazine_foreign_free_refused_at_once() {
    let ops = Counting::default();
    with_caches_using(&ops, RAM, |caches, kpages, ops| {
        let c = caches.create(mag_builder("mag", kpages, ops)).unwrap();
        let keep: Vec<usize> = (0..4)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        let heap = vec![0u64; 64];
        let addr = heap.as_ptr() as usize;
        assert_free_refused(&c, kpages, caches.base(), addr, BadFree::Foreign);
        assert!(heap.iter().all(|&w| w == 0), "foreign memory written");
        assert_eq!(
            ops.dtors.load(Ordering::SeqCst),
            0,
            "foreign object destructed"
        );
        for obj in keep {
            free_ok(&c, obj);
        }
        c.destroy().unwrap();
        assert_eq!(ops.live_constructed(), 0);
    });
}

#[test]
fn magazine_free_to_wrong_cache_refused_at_once() {
    let both = (Counting::default(), Counting::default());
    with_caches_using(&both, RAM, |caches, kpages, (ops, other_ops)| {
        let c = caches.create(mag_builder("mag", kpages, ops)).unwrap();
        let other = caches
            .create(mag_builder("other", kpages, other_ops))
            .unwrap();
        let keep: Vec<usize> = (0..4)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        let obj = other.alloc(AllocFlags::empty()).unwrap();
        let other_before = own(&other);
        assert_free_refused(
            &c,
            kpages,
            caches.base(),
            obj,
            BadFree::WrongCache(Name::new("other")),
        );
        // The object is still `other`'s, live and constructed.
        assert_eq!(own(&other), other_before);
        // SAFETY: `obj` is a live 64-byte object of `other`.
        assert_eq!(unsafe { (obj as *const u64).read() }, CONSTRUCTED);
        assert_eq!(ops.dtors.load(Ordering::SeqCst), 0);
        free_ok(&other, obj);
        for obj in keep {
            free_ok(&c, obj);
        }
        c.destroy().unwrap();
        other.destroy().unwrap();
        assert_eq!(ops.live_constructed(), 0);
        assert_eq!(other_ops.live_constructed(), 0);
    });
}

// ---------------------------------------------------------------------------
// Destroy with live objects.

#[test]
fn destroy_with_live_objects() {
    for (name, size, flags) in [
        ("small", 64, CacheFlags::empty()),
        ("small-nomag", 64, CacheFlags::NOMAGAZINE),
        ("large", 1024, CacheFlags::empty()),
        ("debug", 200, CacheFlags::DEBUG),
    ] {
        let ops = Counting::default();
        with_caches_using(&ops, RAM, |caches, kpages, ops| {
            let c = caches
                .create(
                    CacheBuilder::new(name, size)
                        .flags(flags)
                        .source(kpages)
                        .ops(ops),
                )
                .unwrap();
            let mut live: Vec<usize> = (0..20)
                .map(|_| c.alloc(AllocFlags::empty()).unwrap())
                .collect();
            // Some objects freed into magazines, to be drained by destroy.
            for obj in live.drain(..5) {
                free_ok(&c, obj);
            }
            let in_use = c.stats().buf_in_use;
            assert_eq!(in_use, 15);
            let err = c.destroy().unwrap_err();
            assert_eq!(err.live, 15, "{name}");
            assert_displays(&err);
            assert!(err.to_string().contains(name));
            let c = err.cache;
            // Unchanged for its users; still registered; still working.
            let s = c.stats();
            assert_eq!(s.buf_in_use, 15);
            assert_eq!(s.slab_busy, 15, "{name}: destroy drains the magazines");
            ok(&c);
            let mut found = false;
            caches.for_each(|k| found |= k.name() == name);
            assert!(found, "{name}: refused destroy unregistered the cache");
            let more = c.alloc(AllocFlags::empty()).unwrap();
            assert!(!live.contains(&more));
            free_ok(&c, more);
            // Refused again, with the same count.
            let err = c.destroy().unwrap_err();
            assert_eq!(err.live, 15);
            let c = err.cache;
            for obj in live {
                free_ok(&c, obj);
            }
            assert_eq!(c.stats().buf_in_use, 0);
            c.destroy().unwrap();
            assert_eq!(
                ops.live_constructed(),
                0,
                "{name}: objects left constructed"
            );
            assert_eq!(
                kpages.amt_total() - kpages.amt_free(),
                0,
                "{name}: slabs leaked"
            );
        });
    }
}

// ---------------------------------------------------------------------------
// Exhaustion and constructor failure.

/// Allocates from `c` until it fails, which must be with `Exhausted`, and
/// returns what it got.
fn fill(c: &Kc<'_>) -> Vec<usize> {
    let mut got = Vec::new();
    loop {
        match c.alloc(AllocFlags::empty()) {
            Ok(obj) => got.push(obj),
            Err(e) => {
                assert_eq!(e, AllocError::Exhausted);
                return got;
            }
        }
        assert!(got.len() < 1 << 20, "never exhausted");
    }
}

#[test]
fn exhausted_source() {
    for (size, flags) in [
        (64, CacheFlags::NOMAGAZINE),
        (64, CacheFlags::empty()),
        (1024, CacheFlags::NOMAGAZINE),
        (200, CacheFlags::DEBUG),
    ] {
        // A source of 16 pages (less its own boundary tags), made before
        // the caches: it outlives them.
        let ram = PhysMem::new(16 * PAGE_SIZE);
        let tiny = ram.base_arena("tiny", PAGE_SIZE);
        with_caches_using(&tiny, RAM, |caches, kpages, tiny| {
            let start = tiny.amt_free();
            let c = caches
                .create(CacheBuilder::new("c", size).flags(flags).source(tiny))
                .unwrap();
            let got = fill(&c);
            assert!(!got.is_empty());
            let (slab_size, per_slab) = c.slab_geometry();
            assert_eq!(got.len() % per_slab, 0, "{size}: a slab not filled");
            assert!(tiny.amt_free() < slab_size);
            // Failing again changes nothing but the failure count.
            let mut before = state(&c, tiny, kpages);
            let got_err = c.alloc(AllocFlags::empty());
            assert_eq!(got_err, Err(AllocError::Exhausted));
            assert_displays(&got_err.unwrap_err());
            before.alloc_fails += 1;
            assert_eq!(state(&c, tiny, kpages), before);
            ok(&c);
            for obj in got {
                free_ok(&c, obj);
            }
            // Room again.
            let obj = c.alloc(AllocFlags::empty()).unwrap();
            free_ok(&c, obj);
            c.destroy().unwrap();
            assert_eq!(tiny.amt_free(), start, "{size}: slabs leaked");
            tiny.check().unwrap();
        });
    }
}

/// Takes every page of `base`; returns them.
fn exhaust(base: &Arena<'_>) -> Vec<usize> {
    // One free first: works around kmem-arena's `counters.frees -= 1`
    // before the increment in `free_segment` (arena.rs), which underflows
    // when a base arena that never freed replaces its hash table.
    let p = base.alloc(PAGE_SIZE, Policy::InstantFit).unwrap();
    // SAFETY: allocated just above with this size; not used after.
    unsafe { base.free_memory(p, PAGE_SIZE) }.unwrap();
    let mut pages = Vec::new();
    while let Ok(p) = base.alloc(PAGE_SIZE, Policy::InstantFit) {
        pages.push(p);
    }
    pages
}

/// Slabs of the bootstrap cache `name`.
fn slabs_of(caches: &Caches<'_, ThreadCpus>, name: &str) -> usize {
    // `name`, or its sized family (`kmem_magazine` is `kmem_magazine_6`
    // to `kmem_magazine_62`).
    let mut n = None;
    caches.for_each(|k| {
        let family = k
            .name()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|rounds| rounds.parse::<u32>().is_ok());
        if k.name() == name || family {
            *n.get_or_insert(0) += k.stats().slabs;
        }
    });
    n.expect("no such cache")
}

/// A bufctl slab needs a header and bufctls from the bootstrap caches,
/// which grow from the base arena. When the base runs out part-way, the
/// half-built slab is undone: nothing leaks from the source or the caches.
#[test]
fn exhausted_metadata() {
    // The cache's source, made before the caches: it outlives them.
    let ram = PhysMem::new(64 * PAGE_SIZE);
    let src = ram.base_arena("src", PAGE_SIZE);
    with_caches_using(&src, RAM, |caches, _, src| {
        let c = caches
            .create(
                CacheBuilder::new("large", 1024)
                    .flags(CacheFlags::NOTOUCH | CacheFlags::NOMAGAZINE)
                    .source(src),
            )
            .unwrap();
        let base = caches.base();
        let mut pages = exhaust(base);
        let src_start = src.amt_free();
        let mut totals = Vec::new();
        caches.for_each(|k| totals.push((k.name().to_owned(), k.stats().slab_busy)));
        let mut before = state(&c, src, base);
        // Nothing at all: no header.
        assert_eq!(c.alloc(AllocFlags::empty()), Err(AllocError::Exhausted));
        before.alloc_fails += 1;
        assert_eq!(state(&c, src, base), before);
        // One page: a header, but no page for the bufctls.
        assert_eq!(slabs_of(caches, "kmem_slab"), 0);
        assert_eq!(slabs_of(caches, "kmem_bufctl"), 0);
        // SAFETY: a page `exhaust` allocated with this size; not used after.
        unsafe { base.free_memory(pages.pop().unwrap(), PAGE_SIZE) }.unwrap();
        before = state(&c, src, base);
        assert_eq!(c.alloc(AllocFlags::empty()), Err(AllocError::Exhausted));
        before.alloc_fails += 1;
        assert_eq!(slabs_of(caches, "kmem_slab"), 1, "no header was taken");
        assert_eq!(slabs_of(caches, "kmem_bufctl"), 0);
        // The header's slab may stay with `kmem_slab` (empty, reapable);
        // the base's free memory went there, nothing else moved.
        before.base_free = base.amt_free();
        assert_eq!(state(&c, src, base), before);
        assert_eq!(src.amt_free(), src_start, "slab buffer leaked");
        let mut after = Vec::new();
        caches.for_each(|k| after.push((k.name().to_owned(), k.stats().slab_busy)));
        assert_eq!(after, totals, "a header or bufctl leaked");
        caches.for_each(|k| ok(k));
        // With memory back, the cache grows.
        for p in pages {
            // SAFETY: pages `exhaust` allocated with this size; not used
            // after.
            unsafe { base.free_memory(p, PAGE_SIZE) }.unwrap();
        }
        let obj = c.alloc(AllocFlags::empty()).unwrap();
        free_ok(&c, obj);
        c.destroy().unwrap();
        assert_eq!(src.amt_free(), src_start);
    });
}

#[test]
fn constructor_failure() {
    for (size, flags) in [
        (64, CacheFlags::NOMAGAZINE),
        (64, CacheFlags::empty()),
        (1024, CacheFlags::NOMAGAZINE),
        (1024, CacheFlags::empty()),
        (200, CacheFlags::DEBUG),
    ] {
        let ops = Counting::default();
        with_caches_using(&ops, RAM, |caches, kpages, ops| {
            let c = create_with_ops(caches, "ctor", (size, flags), kpages, ops);
            let base = caches.base();
            // A fresh cache: the slab grown for the failed object is empty
            // and goes back on reap.
            ops.fail.store(true, Ordering::SeqCst);
            let got = c.alloc(AllocFlags::ATOMIC);
            assert_eq!(got, Err(AllocError::Ctor));
            assert_displays(&got.unwrap_err());
            assert_eq!(
                ops.seen_flags.load(Ordering::SeqCst),
                AllocFlags::ATOMIC.bits() as usize
            );
            let s = c.stats();
            assert_eq!((s.buf_in_use, s.slab_busy, s.allocs), (0, 0, 0));
            assert_eq!((s.alloc_fails, s.ctor_fails), (1, 1));
            assert_eq!(s.empty_slabs, s.slabs);
            ok(&c);
            c.reap();
            assert_eq!(c.stats().slabs, 0);
            assert_eq!(kpages.amt_total() - kpages.amt_free(), 0, "slab leaked");
            // With an object live (and so a slab), nothing changes at all
            // but the failure counts.
            ops.fail.store(false, Ordering::SeqCst);
            let keep = c.alloc(AllocFlags::empty()).unwrap();
            drain(&c);
            ops.fail.store(true, Ordering::SeqCst);
            let mut before = state(&c, kpages, base);
            for _ in 0..3 {
                assert_eq!(c.alloc(AllocFlags::empty()), Err(AllocError::Ctor));
            }
            before.alloc_fails += 3;
            before.ctor_fails += 3;
            assert_eq!(state(&c, kpages, base), before);
            assert_eq!(ops.live_constructed(), 1);
            ok(&c);
            // Cleared: allocations succeed and are constructed.
            ops.fail.store(false, Ordering::SeqCst);
            let obj = c.alloc(AllocFlags::empty()).unwrap();
            // SAFETY: a live object of at least 8 bytes.
            assert_eq!(unsafe { (obj as *const u64).read() }, CONSTRUCTED);
            free_ok(&c, obj);
            free_ok(&c, keep);
            c.destroy().unwrap();
            assert_eq!(ops.live_constructed(), 0);
            assert_eq!(kpages.amt_total() - kpages.amt_free(), 0, "slabs leaked");
        });
    }
}

// ---------------------------------------------------------------------------
// Finding a bad free inside `Caches::for_each`.

/// `reap` names the owner of a bad free it drains by asking every cache;
/// called from inside `Caches::for_each` (which allows anything but
/// creating and destroying caches), that must not deadlock.
#[test]
fn reap_inside_for_each_finds_bad_free() {
    use std::sync::mpsc;
    // Leaked, so a deadlocked thread cannot outlive what it borrows.
    let ram: &'static PhysMem = Box::leak(Box::new(PhysMem::new(RAM)));
    let base: &'static Arena<'static> = Box::leak(Box::new(ram.base_arena("base", PAGE_SIZE)));
    let caches: &'static Caches<'static, ThreadCpus> =
        Box::leak(Box::new(Caches::new(base, ThreadCpus::global()).unwrap()));
    // A constructed cache: its magazines take a double free, found when
    // they drain.
    let ops: &'static Counting = Box::leak(Box::default());
    let c: &'static kmem_slab::Cache<'static, ThreadCpus> = Box::leak(Box::new(
        caches
            .create(CacheBuilder::new("mag", 64).ops(ops))
            .unwrap(),
    ));
    let keep = c.alloc(AllocFlags::empty()).unwrap();
    let a = c.alloc(AllocFlags::empty()).unwrap();
    free_ok(c, a);
    free_ok(c, a);
    c.flush_current();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        caches.for_each(|k| {
            k.reap();
        });
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("reap inside Caches::for_each deadlocked");
    assert_eq!(c.last_bad_free().map(|e| e.kind), Some(BadFree::DoubleFree));
    free_ok(c, keep);
    ok(c);
}

/// A free into a magazine cache whose magazines cannot be allocated (the
/// base arena is out of memory) goes to the slab layer, destructed.
#[test]
fn free_without_memory_for_magazines() {
    // The cache's source and ops, made before the caches: they outlive
    // them.
    let ram = PhysMem::new(16 * PAGE_SIZE);
    let src = ram.base_arena("src", PAGE_SIZE);
    let ops = Counting::default();
    with_caches_using(&(src, ops), RAM, |caches, _, (src, ops)| {
        let c = caches.create(mag_builder("mag", src, ops)).unwrap();
        let objs: Vec<usize> = (0..3)
            .map(|_| c.alloc(AllocFlags::empty()).unwrap())
            .collect();
        let base = caches.base();
        let pages = exhaust(base);
        assert_eq!(slabs_of(caches, "kmem_magazine"), 0);
        for (i, &obj) in objs.iter().enumerate() {
            free_ok(&c, obj);
            let s = c.stats();
            assert_eq!(s.buf_in_use, (objs.len() - i - 1) as u64);
            assert_eq!(s.slab_busy, s.buf_in_use, "object not back in its slab");
            assert_eq!(ops.dtors.load(Ordering::SeqCst), i + 1, "not destructed");
            assert_eq!(s.magazines.unwrap().magazines_allocated, 0);
            ok(&c);
        }
        for p in pages {
            // SAFETY: pages `exhaust` allocated with this size; not used
            // after.
            unsafe { base.free_memory(p, PAGE_SIZE) }.unwrap();
        }
        // With memory, frees are cached again.
        let obj = c.alloc(AllocFlags::empty()).unwrap();
        free_ok(&c, obj);
        assert_eq!(c.stats().slab_busy, 1, "free not cached in a magazine");
        c.destroy().unwrap();
        assert_eq!(ops.live_constructed(), 0);
    });
}
