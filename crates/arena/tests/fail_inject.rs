//! Failure injection at the arena layer with the `fail-inject` feature
//! (`kmem_arena::fail`): span imports (`Layer::ArenaImport`) and
//! boundary-tag refills (`Layer::TagReserve`) failing every k-th time or at
//! a seeded random 1 in n. Every refused request returns the error real
//! exhaustion returns (`Exhausted`, counted in `failures`; `NoTags`), only
//! when a failure was injected into it, and leaves the arena as it was; the
//! checkers pass after every step; and once everything is freed and the
//! arenas destroyed, every source and tag arena is back where it started.
//!
//! The plans are process-wide: each test holds a [`FailPlans`] guard, so
//! the tests of this file take turns. Each prints a `fail-inject ...` line
//! with what it injected (`--nocapture` shows them).

mod common;

use common::{assert_base_restored, base_start, drive, free, run_imports, tag_arena, Injection};
use kmem_arena::fail::{self, Layer, Plan};
use kmem_arena::{AddError, AllocError, Arena};
use kmem_physmem::faults::{ArenaState, FailPlans, FailingSource};
use kmem_physmem::{seed, PhysMem, Rng};

/// Every k-th attempt failing, and a seeded 1 in n. (Not every attempt:
/// an arena whose every tag refill fails can never be given a span.)
fn plans(seed: u64) -> [Plan; 5] {
    [
        Plan::EveryKth(2),
        Plan::EveryKth(3),
        Plan::EveryKth(7),
        Plan::OneIn { n: 2, seed },
        Plan::OneIn { n: 5, seed },
    ]
}

/// Imports of an arena over a base arena fail as the plan says; the base is
/// wrapped in a `FailingSource` that injects nothing itself and accounts
/// for every span, so a refusal that kept a span would be caught.
#[test]
fn imports_fail_every_kth_or_one_in_n() {
    let _plans = FailPlans::take();
    let seed = seed(0x6661_696c_0000_0001);
    let mut rng = Rng::new(seed);
    for import_scale in [0, 1] {
        for plan in plans(seed) {
            let run = run_imports(
                &format!("{plan:?}"),
                import_scale,
                &mut rng,
                &|_| {
                    fail::clear_all();
                    fail::set(Layer::ArenaImport, plan);
                },
                &|_| fail::injected(Layer::ArenaImport),
            );
            assert_eq!(run.source.injected, 0, "the source itself never fails");
            println!(
                "fail-inject arena imports {plan:?}, import scale {import_scale} (seed {seed}): \
                 {} imports made, {} failed on purpose, {} requests refused, 0 bytes leaked",
                run.source.imports, run.injected, run.refused
            );
        }
    }
}

/// The arenas whose tag refills fail in [`tag_refills_fail_every_kth_or_one_in_n`].
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// An arena of integers, tags from a base arena.
    Ids,
    /// A memory arena importing from a base arena, tags from the same base
    /// (a refill can fail after the import: the span goes back).
    Sourced,
    /// A base arena, which carves its own tags.
    Base,
}

/// Rounds per plan and kind: each builds a fresh arena, whose tags run out
/// a few times as it grows.
const ROUNDS: usize = 16;

/// Steps of each round.
const STEPS: usize = 300;

/// One round of [`tag_refills_fail_every_kth_or_one_in_n`], under the
/// plan in force: returns the requests refused (`add`s included).
fn tag_round(kind: Kind, rng: &mut Rng) -> u64 {
    let label = format!("{kind:?}");
    let ram = PhysMem::new(16 << 20);
    let base = match kind {
        Kind::Base => ram.base_arena("base", 64),
        Kind::Ids | Kind::Sourced => tag_arena(&ram),
    };
    let start = base_start(&base);
    let source = FailingSource::new(&base, kmem_physmem::faults::Plan::Never);
    // Built without a span, so the build takes no tags.
    let built = match kind {
        Kind::Ids => Some(Arena::builder("ids").quantum(1)),
        Kind::Sourced => Some(Arena::builder("sourced").quantum(256).source(&source)),
        Kind::Base => None,
    };
    let mut arena = built.map(|b| b.tags_from(&base).build().unwrap());
    let a = arena.as_ref().unwrap_or(&base);
    let mut refused = 0;
    if let Kind::Ids = kind {
        // `add` takes two tags: refused with `AddError::NoTags` when the
        // refill fails, changing nothing.
        loop {
            let (before, injected) = (ArenaState::of(a), fail::injected(Layer::TagReserve));
            match a.add(0, 1 << 40) {
                Ok(()) => break,
                Err(e) => {
                    assert_eq!(e, AddError::NoTags);
                    assert!(fail::injected(Layer::TagReserve) > injected);
                    assert_eq!(ArenaState::of(a), before);
                    refused += 1;
                }
            }
        }
    }
    let mut live = Vec::new();
    refused += drive(
        a,
        &mut live,
        rng,
        STEPS,
        &Injection {
            label: &label,
            injected: &|| fail::injected(Layer::TagReserve),
            expected: AllocError::NoTags,
            counted: false,
            after_step: &|ctx| {
                base.check().unwrap_or_else(|e| panic!("{ctx}: base: {e}"));
                if let Kind::Sourced = kind {
                    let (st, src) = (a.stats(), source.stats());
                    assert_eq!(src.outstanding_bytes, st.imported, "{ctx}");
                    assert_eq!(src.outstanding_spans, st.spans, "{ctx}");
                }
            },
        },
    );
    for l in live {
        free(a, l);
    }
    a.check().unwrap();
    match kind {
        Kind::Ids => assert_eq!(a.amt_free(), 1 << 40, "{label}"),
        Kind::Sourced => assert_eq!(a.amt_total(), 0, "{label}: spans kept"),
        Kind::Base => {}
    }
    if let Some(a) = arena.as_mut() {
        a.destroy().unwrap();
    }
    drop(arena);
    let src = source.stats();
    assert_eq!((src.outstanding_spans, src.imports), (0, src.releases));
    assert_base_restored(&base, start);
    refused
}

/// Tag-reserve refills fail as the plan says (set once for all the rounds
/// of a kind), for an arena of integers, a sourced memory arena and a base
/// arena. Each injected failure refuses exactly one request, with `NoTags`
/// (`AddError::NoTags` from `add`), changing nothing.
#[test]
fn tag_refills_fail_every_kth_or_one_in_n() {
    let _plans = FailPlans::take();
    let seed = seed(0x6661_696c_0000_0002);
    let mut rng = Rng::new(seed);
    for plan in plans(seed) {
        let mut bites = 0;
        for kind in [Kind::Ids, Kind::Sourced, Kind::Base] {
            fail::clear_all();
            fail::set(Layer::TagReserve, plan);
            let refused: u64 = (0..ROUNDS).map(|_| tag_round(kind, &mut rng)).sum();
            let injected = fail::injected(Layer::TagReserve);
            assert_eq!(
                refused, injected,
                "{kind:?} {plan:?}: a failure without a refusal"
            );
            bites += injected;
            println!(
                "fail-inject arena tag refills {kind:?} {plan:?} (seed {seed}): {injected} \
                 failed on purpose, {refused} requests refused with NoTags, 0 tags or bytes \
                 leaked"
            );
        }
        // A base arena carves its first tags when built and needs few
        // refills after, so it may go unbitten under a sparse plan.
        assert!(bites > 0, "{plan:?} never bit");
    }
}
