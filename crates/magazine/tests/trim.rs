//! The depot's working-set trim (`Magazines::trim`): magazines nobody took
//! during a whole interval go back, those a workload cycles through stay.

mod common;

use core::sync::atomic::Ordering;
use std::collections::HashSet;

use common::{put_all, Heap, OneHeap};
use kmem_magazine::{Magazines, ManualCpus, ResizePolicy, TRIM_BATCH};

const SLOTS: usize = 2;

/// [`common::with_layer`] on `SLOTS` slots for 64-byte objects, Akaros'
/// resize policy; `f` also gets the layer's magazine size.
fn with_layer<R>(
    f: impl FnOnce(&ManualCpus<SLOTS>, &Heap, &Magazines<'_, ManualCpus<SLOTS>>, usize) -> R,
) -> (R, Vec<usize>) {
    common::with_layer(64, ResizePolicy::AKAROS, |cpus, heap, m| {
        f(cpus, heap, m, m.stats().magsize)
    })
}

#[test]
fn an_idle_depot_goes_back_after_two_intervals() {
    // Far more than one trim batch of full magazines, plus the CPU's two.
    let full = 3 * TRIM_BATCH + 5;
    let ((magsize, rounds), rest) = with_layer(|_, heap, m, magsize| {
        put_all(m, heap, 0..(full + 2) * magsize);
        let before = m.stats();
        assert_eq!(before.not_empty, full);
        // The first pass only ends the interval in which the depot filled
        // up.
        let mut got = HashSet::new();
        assert_eq!(m.trim_to(heap, |o| assert!(got.insert(o))), 0);
        assert_eq!(m.stats().not_empty, full);
        // Nobody took any during the next one: all of them go.
        let rounds = m.trim_to(heap, |o| assert!(got.insert(o)));
        assert_eq!(rounds, full * magsize);
        assert_eq!(got.len(), rounds, "every round came out once");
        let after = m.stats();
        assert_eq!(
            (after.not_empty, after.empty, after.depot_rounds),
            (0, 0, 0)
        );
        assert_eq!(after.magazines_trimmed, full as u64);
        assert_eq!(after.magazines_freed, full as u64);
        // The CPU's own magazines stay; nothing else is left.
        assert_eq!(heap.live.load(Ordering::SeqCst), 2);
        (magsize, rounds)
    });
    assert_eq!(rest.len() + rounds, (full + 2) * magsize);
}

#[test]
fn the_working_set_stays() {
    with_layer(|cpus, heap, m, magsize| {
        // Slot 0 fills 10 magazines into the depot.
        put_all(m, heap, 0..12 * magsize);
        assert_eq!(m.stats().not_empty, 10);
        m.trim_to(heap, |_| panic!("first pass ends the interval only"));
        // During each interval slot 1 takes 3 full magazines out and puts
        // them back: the depot's low mark is 7, so 7 go and 3 stay.
        cpus.set_slot(1);
        let cycle = || {
            let taken: Vec<usize> = (0..3 * magsize).map(|_| m.alloc().unwrap()).collect();
            put_all(m, heap, taken);
        };
        cycle();
        let trimmed = m.trim_to(heap, |_| {});
        let st = m.stats();
        assert_eq!(trimmed, 7 * magsize, "{st:?}");
        assert_eq!(st.magazines_trimmed, 7);
        // Steady use keeps its magazines: the next intervals trim nothing
        // the cycle needs (it holds two on the CPU, the rest in the depot).
        for _ in 0..3 {
            cycle();
            let before = m.stats();
            m.trim_to(heap, |_| {});
            let after = m.stats();
            assert!(
                after.not_empty + after.empty >= before.not_empty + before.empty - 1,
                "{before:?} -> {after:?}"
            );
        }
    });
}

#[test]
fn empty_magazines_are_trimmed_too() {
    with_layer(|cpus, heap, m, magsize| {
        put_all(m, heap, 0..8 * magsize);
        // Slot 1 empties the 6 depot magazines: 4 come back empty, slot 1
        // keeps 2 as its loaded and previous.
        cpus.set_slot(1);
        for _ in 0..6 * magsize {
            m.alloc().unwrap();
        }
        let st = m.stats();
        assert_eq!((st.not_empty, st.empty), (0, 4), "{st:?}");
        m.trim_to(heap, |_| {});
        assert_eq!(m.trim_to(heap, |_| panic!("no rounds")), 0);
        let st = m.stats();
        assert_eq!((st.not_empty, st.empty, st.magazines_trimmed), (0, 0, 4));
    });
}

#[test]
fn a_drain_resets_the_working_set() {
    with_layer(|_, heap, m, magsize| {
        put_all(m, heap, 0..6 * magsize);
        m.trim_to(heap, |_| {});
        m.drain_depot_to(heap, |_| {});
        // Refilled within the interval: those magazines were needed, after
        // the drain took the low mark to zero.
        put_all(m, heap, 1000..1000 + 4 * magsize);
        assert_eq!(m.trim_to(heap, |_| panic!("refilled this interval")), 0);
    });
}
