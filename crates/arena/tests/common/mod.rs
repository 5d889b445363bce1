//! Shared kit of the arena's integration tests: arenas built over spans or
//! a source, and, for the fault-injection tests (`fault_injection.rs`, with
//! the test kit's failing source, and `fail_inject.rs`, with the
//! `fail-inject` feature), freeing what a test holds, a randomized driver
//! that checks every refusal, and the import run both files make.
#![allow(dead_code, unreachable_pub)]

use kmem_arena::{AllocError, Arena, Constraints, Policy};
use kmem_physmem::faults::{ArenaState, FailingSource, Plan, SourceStats};
pub use kmem_physmem::kit::{Live, POLICIES};
use kmem_physmem::{scale, PhysMem, Rng};

/// Frees `l` from `a` ([`Live::free`]: the safe `free`/`xfree` in an
/// arena of integers, their unsafe twins in a memory arena), failing on an
/// error.
pub fn free(a: &Arena<'_>, l: Live) {
    // SAFETY: every caller frees an allocation it made from `a` with this
    // size (by `xalloc` when `l.xalloc`), once; these tests never touch it.
    unsafe { l.free(a) }.unwrap_or_else(|e| panic!("free of {l:x?}: {e}"));
}

/// [`free`] of an allocation made by `alloc`.
pub fn free_alloc(a: &Arena<'_>, addr: usize, size: usize) {
    free(
        a,
        Live {
            addr,
            size,
            xalloc: false,
        },
    );
}

/// What a base arena must get back: its free memory plus what went into
/// its own metadata (its hash table may have grown meanwhile), and no
/// allocation left.
pub fn assert_base_restored(base: &Arena<'_>, free_plus_meta: usize) {
    base.check().unwrap();
    let st = base.stats();
    assert_eq!(
        st.live,
        0,
        "allocations leaked from {}: {st:?}",
        base.name()
    );
    assert_eq!(st.allocs, st.frees, "{st:?}");
    assert_eq!(st.free + st.metadata, free_plus_meta, "{st:?}");
}

/// A base arena's free memory plus its metadata: what
/// [`assert_base_restored`] expects back.
pub fn base_start(base: &Arena<'_>) -> usize {
    base.amt_free() + base.stats().metadata
}

/// A base arena (quantum 64) over `ram` that other arenas take their
/// boundary tags (and hash tables) from.
pub fn tag_arena(ram: &PhysMem) -> Arena<'_> {
    ram.base_arena("tags", 64)
}

/// What a [`drive`] run injects into, and what it checks.
pub struct Injection<'f> {
    /// Names the run in failure messages.
    pub label: &'f str,
    /// Failures injected so far.
    pub injected: &'f dyn Fn() -> u64,
    /// The one error such a failure may cause.
    pub expected: AllocError,
    /// Each refusal counts in the arena's `failures` (a failed import
    /// does).
    pub counted: bool,
    /// Further checks after every step (a source's accounting, the arenas
    /// behind), given the step's context.
    pub after_step: &'f dyn Fn(&str),
}

/// Random allocations (all three policies, aligned `xalloc`; sizes up to
/// 256 KiB) and frees on `a`, in phases of growth and shrinkage, adding to
/// and taking from `live`. A request fails only with `inj.expected`, only
/// when a failure was injected into it, and then changes nothing; the
/// checker passes and the arena holds exactly `live` after every step.
/// Returns the requests refused.
pub fn drive(
    a: &Arena<'_>,
    live: &mut Vec<Live>,
    rng: &mut Rng,
    steps: usize,
    inj: &Injection<'_>,
) -> u64 {
    let quantum = a.quantum();
    let mut refused = 0;
    for step in 0..steps {
        let ctx = || format!("{}, step {step}", inj.label);
        // Phases of growth and shrinkage, so spans come and go.
        let target = if (step / 250) % 2 == 0 { 120 } else { 8 };
        if live.len() < target && rng.chance(2, 3) {
            let size = if rng.chance(1, 10) {
                rng.range(1, 256 << 10)
            } else {
                rng.range(1, 8192)
            };
            let xalloc = rng.chance(1, 3);
            let policy = POLICIES[rng.below(3) as usize];
            let align = if xalloc { rng.pow2(8, 16) } else { quantum };
            let before = ArenaState::of(a);
            let (injected, failures) = ((inj.injected)(), a.stats().failures);
            let got = if xalloc {
                a.xalloc(size, &Constraints::new().align(align).policy(policy))
            } else {
                a.alloc(size, policy)
            };
            match got {
                Ok(addr) => {
                    assert_eq!(addr % align, 0, "{}", ctx());
                    assert!(a.contains(addr, size), "{}", ctx());
                    live.push(Live { addr, size, xalloc });
                }
                Err(e) => {
                    assert_eq!(e, inj.expected, "{}", ctx());
                    assert!(
                        (inj.injected)() > injected,
                        "{}: refused without an injected fault",
                        ctx()
                    );
                    assert_eq!(ArenaState::of(a), before, "{}: refusal changed it", ctx());
                    if inj.counted {
                        assert!(a.stats().failures > failures, "{}: not counted", ctx());
                    }
                    refused += 1;
                }
            }
        } else if !live.is_empty() {
            free(a, live.swap_remove(rng.below(live.len() as u64) as usize));
        }
        a.check().unwrap_or_else(|e| panic!("{}: {e}", ctx()));
        let st = a.stats();
        let held: usize = live.iter().map(|l| l.size.next_multiple_of(quantum)).sum();
        assert_eq!(st.allocated - st.metadata, held, "{}", ctx());
        (inj.after_step)(&ctx());
    }
    refused
}

/// What [`run_imports`] saw.
#[derive(Debug)]
pub struct ImportRun {
    /// The source's counts at the end.
    pub source: SourceStats,
    /// Failures injected.
    pub injected: u64,
    /// Requests refused.
    pub refused: u64,
}

/// [`drive`] over an arena (quantum 256, `import_scale`) importing from a
/// base arena through a [`FailingSource`], whose imports fail once `arm`
/// has armed the failures (`injected` counts them). The arena's spans are
/// exactly the source's outstanding spans after every step. Without import
/// scaling each injected failure refuses one request; with it, a failed
/// scaled import falls back to the size the request needs, so a failure can
/// be absorbed. At the end every span is back and the base arena whole.
pub fn run_imports(
    label: &str,
    import_scale: u32,
    rng: &mut Rng,
    arm: &dyn Fn(&FailingSource<'_>),
    injected: &dyn Fn(&FailingSource<'_>) -> u64,
) -> ImportRun {
    let ram = PhysMem::new(32 << 20);
    let base = ram.base_arena("base", 64);
    let start = base_start(&base);
    let source = FailingSource::new(&base, Plan::Never);
    let mut a = Arena::builder("faulty")
        .quantum(256)
        .source(&source)
        .tags_from(&base)
        .import_scale(import_scale)
        .build()
        .unwrap();
    arm(&source);
    let label = format!("{label}, import scale {import_scale}");
    let mut live = Vec::new();
    let mut refused = drive(
        &a,
        &mut live,
        rng,
        1500 * scale(),
        &Injection {
            label: &label,
            injected: &|| injected(&source),
            expected: AllocError::Exhausted,
            counted: true,
            after_step: &|ctx| {
                base.check().unwrap_or_else(|e| panic!("{ctx}: base: {e}"));
                let (st, src) = (a.stats(), source.stats());
                assert_eq!(src.outstanding_bytes, st.imported, "{ctx}");
                assert_eq!(src.outstanding_spans, st.spans, "{ctx}");
                assert_eq!(st.imported, st.total, "{ctx}");
            },
        },
    );
    // How many imports the random phase makes depends on where the base
    // arena's memory lies (alignment), so a late schedule may not have come
    // due: force imports (a size no span holds) until it has.
    while injected(&source) == 0 {
        let size = (a.amt_total() + 256).next_multiple_of(256);
        let (before, was) = (ArenaState::of(&a), injected(&source));
        match a.alloc(size, Policy::InstantFit) {
            Ok(addr) => free_alloc(&a, addr, size),
            Err(e) => {
                assert_eq!(e, AllocError::Exhausted, "{label}");
                assert!(injected(&source) > was, "{label}");
                assert_eq!(ArenaState::of(&a), before, "{label}: refusal changed it");
                refused += 1;
            }
        }
        a.check().unwrap();
    }
    for l in live.drain(..) {
        free(&a, l);
        a.check().unwrap();
    }
    let src = source.stats();
    let injected = injected(&source);
    assert_eq!(a.amt_total(), 0, "{label}: spans kept");
    assert_eq!((src.outstanding_spans, src.outstanding_bytes), (0, 0));
    assert_eq!(src.imports, src.releases);
    if import_scale == 0 {
        assert_eq!(refused, injected, "{label}: a fault without a refusal");
    } else {
        assert!(refused <= injected);
    }
    a.destroy().unwrap();
    drop(a);
    assert_base_restored(&base, start);
    ImportRun {
        source: src,
        injected,
        refused,
    }
}

/// An arena of integers of quantum `q` holding `[start, start + len)`,
/// with its tags from `tags`.
pub fn span_arena<'a>(
    name: &str,
    q: usize,
    start: usize,
    len: usize,
    tags: &'a Arena<'a>,
) -> Arena<'a> {
    Arena::builder(name)
        .quantum(q)
        .span(start, len)
        .tags_from(tags)
        .build()
        .unwrap()
}

/// An arena of quantum `q` importing from `src`, with its tags from `tags`.
pub fn sourced_arena<'a>(
    name: &str,
    q: usize,
    src: &'a dyn kmem_arena::Source,
    tags: &'a Arena<'a>,
) -> Arena<'a> {
    Arena::builder(name)
        .quantum(q)
        .source(src)
        .tags_from(tags)
        .build()
        .unwrap()
}

/// An arena of integers of quantum `q` holding `spans`, with its tags from
/// `tags`.
pub fn spans_arena<'a>(
    name: &str,
    q: usize,
    spans: &[(usize, usize)],
    tags: &'a Arena<'a>,
) -> Arena<'a> {
    let a = Arena::builder(name)
        .quantum(q)
        .tags_from(tags)
        .build()
        .unwrap();
    for &(start, len) in spans {
        a.add(start, len).unwrap();
    }
    a
}

/// Grows the hash of `base` (a base arena of quantum 64) with 20 000 live
/// allocations of 64 bytes, then frees them all; returns the hash's chains
/// at the largest.
pub fn grow_and_empty_hash(base: &Arena<'_>) -> usize {
    let v: Vec<usize> = (0..20_000)
        .map(|_| base.alloc(64, Policy::InstantFit).unwrap())
        .collect();
    let chains = base.stats().hash_chains;
    for a in v {
        // SAFETY: allocated above with this size, not used after.
        unsafe { base.free_memory(a, 64) }.unwrap();
    }
    chains
}
