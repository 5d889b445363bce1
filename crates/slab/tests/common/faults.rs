//! The slab fault-injection tests' kit (`fault_injection.rs`, with the
//! test kit's failure schedules, and `fail_inject.rs`, with the
//! `fail-inject` feature): object operations that count and fail on a
//! schedule, and a randomized driver that checks every refusal and every
//! invariant after each step.

use core::sync::atomic::{AtomicUsize, Ordering};

use kmem_arena::Arena;
use kmem_magazine::{Cpu, ManualCpus};
use kmem_physmem::faults::{ArenaState, FailingSource, Faults, Plan};
use kmem_physmem::{Rng, PAGE_SIZE};
use kmem_slab::{AllocError, AllocFlags, CacheFlags, CacheStats, CtorError, KmemCache, ObjectOps};

/// Fake RAM for every test.
pub const RAM: usize = 16 << 20;

/// The kinds of cache tried: small objects with and without magazines,
/// bufctl objects with magazines, and a `DEBUG` cache.
pub const KINDS: [(usize, CacheFlags); 4] = [
    (64, CacheFlags::empty()),
    (64, CacheFlags::NOMAGAZINE),
    (1024, CacheFlags::empty()),
    (200, CacheFlags::DEBUG),
];

/// The same kinds with objects large enough that a few hundred of them
/// take many slabs, so the source is asked for spans again and again.
pub const GROWING_KINDS: [(usize, CacheFlags); 4] = [
    (512, CacheFlags::empty()),
    (512, CacheFlags::NOMAGAZINE),
    (1024, CacheFlags::empty()),
    (1024, CacheFlags::DEBUG),
];

/// Counts constructions and destructions, and fails constructions on a
/// [`Faults`] schedule.
pub struct FaultyOps {
    pub faults: Faults,
    pub ctors: AtomicUsize,
    pub dtors: AtomicUsize,
}

impl FaultyOps {
    pub fn new(plan: Plan) -> Self {
        Self {
            faults: Faults::new(plan),
            ctors: AtomicUsize::new(0),
            dtors: AtomicUsize::new(0),
        }
    }

    pub fn constructed(&self) -> u64 {
        (self.ctors.load(Ordering::SeqCst) - self.dtors.load(Ordering::SeqCst)) as u64
    }
}

impl ObjectOps for FaultyOps {
    fn construct(&self, _obj: usize, _flags: AllocFlags) -> Result<(), CtorError> {
        if self.faults.fail_now() {
            return Err(CtorError);
        }
        self.ctors.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn destruct(&self, _obj: usize) {
        self.dtors.fetch_add(1, Ordering::SeqCst);
    }
}

/// The counters a refused allocation may change (and how): `alloc_fails`
/// and `ctor_fails` go up; a slab grown for an object whose constructor
/// then failed stays, empty, until reaped.
pub fn objects(s: &CacheStats) -> (u64, u64, u64) {
    (s.buf_in_use, s.slab_busy, s.allocs)
}

/// What one randomized run saw.
#[derive(Default, Debug)]
pub struct Tally {
    pub allocs: u64,
    pub refused: u64,
}

/// What is being injected into, for [`drive`].
pub struct Injection<'f> {
    /// Reads the count of faults injected so far.
    pub injected: &'f dyn Fn() -> u64,
    /// The one error such a fault may cause.
    pub expected: AllocError,
    /// Objects held at the peak of a growth phase.
    pub peak: usize,
}

/// Random allocations (random flags) and frees on `c`, in phases of growth
/// and shrinkage with a reap every 100 steps, with every invariant of the
/// file checked after each step. `source` is `c`'s source arena.
pub fn drive<C: Cpu>(
    c: &KmemCache<'_, C>,
    ops: &FaultyOps,
    source: &Arena<'_>,
    inj: &Injection<'_>,
    rng: &mut Rng,
    steps: usize,
) -> Tally {
    let (injected, expected) = (inj.injected, inj.expected);
    let mut live = Vec::new();
    let mut tally = Tally::default();
    for step in 0..steps {
        let ctx = || format!("cache {} ({:?}), step {step}", c.name(), c.flags());
        // Growth phases long enough to reach the peak.
        let target = if (step / (inj.peak * 3 / 2)).is_multiple_of(2) {
            inj.peak
        } else {
            10
        };
        if live.len() < target && rng.chance(2, 3) {
            let flags =
                [AllocFlags::empty(), AllocFlags::ATOMIC, AllocFlags::ZERO][rng.below(3) as usize];
            let (before, arena, faults) = (c.stats(), ArenaState::of(source), injected());
            tally.allocs += 1;
            match c.alloc(flags) {
                Ok(obj) => live.push(obj),
                Err(e) => {
                    assert_eq!(e, expected, "{}", ctx());
                    assert!(injected() > faults, "{}: refused without a fault", ctx());
                    let after = c.stats();
                    assert_eq!(objects(&after), objects(&before), "{}", ctx());
                    assert_eq!(after.alloc_fails, before.alloc_fails + 1, "{}", ctx());
                    if expected == AllocError::Exhausted {
                        assert_eq!(after.slabs, before.slabs, "{}", ctx());
                        assert_eq!(ArenaState::of(source), arena, "{}: source changed", ctx());
                    }
                    tally.refused += 1;
                }
            }
        } else if !live.is_empty() {
            let obj = live.swap_remove(rng.below(live.len() as u64) as usize);
            // SAFETY: allocated from `c` above, freed once.
            unsafe { c.free(obj) }.unwrap_or_else(|e| panic!("{}: {e}", ctx()));
        }
        if step % 100 == 99 {
            // Give idle objects and empty slabs back, so slabs (and the
            // source's spans) come and go.
            c.flush_current();
            c.reap();
        }
        c.check().unwrap_or_else(|e| panic!("{}: {e}", ctx()));
        source
            .check()
            .unwrap_or_else(|e| panic!("{}: source: {e}", ctx()));
        let s = c.stats();
        assert_eq!(s.buf_in_use, live.len() as u64, "{}", ctx());
        assert_eq!(
            ops.constructed(),
            s.slab_busy,
            "{}: constructed objects",
            ctx()
        );
    }
    for obj in live {
        // SAFETY: as above.
        unsafe { c.free(obj) }.unwrap();
    }
    tally
}

/// Frees everything `c` holds back to `source` and destroys `c`; the source
/// must then hold nothing of it.
pub fn tear_down<C: Cpu>(c: kmem_slab::Cache<'_, C>, ops: &FaultyOps, source: &Arena<'_>) {
    c.reap();
    c.check().unwrap();
    c.destroy().unwrap();
    assert_eq!(ops.constructed(), 0, "an object was not destructed");
    source.check().unwrap();
    let st = source.stats();
    assert_eq!((st.live, st.allocated), (0, 0), "slabs leaked: {st:?}");
}

/// One CPU slot, chosen by hand: runs are reproducible.
pub fn cpu() -> ManualCpus<1> {
    ManualCpus::new()
}

/// A page arena importing from the base through `source`, its tags from
/// the base.
pub fn pages<'a>(source: &'a FailingSource<'a>, base: &'a Arena<'a>) -> Arena<'a> {
    Arena::builder("faulty_pages")
        .quantum(PAGE_SIZE)
        .source(source)
        .tags_from(base)
        .build()
        .unwrap()
}
