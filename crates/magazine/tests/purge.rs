//! Purging every CPU's magazines on a live layer (`Magazines::purge`,
//! `purge_idle`): idle slots give their magazines up at once, busy ones
//! at their holder's next operation, and nothing is lost or handed out
//! twice.

mod common;

use core::sync::atomic::Ordering;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use common::{Heap, OneHeap};
use kmem_magazine::{Cpu, CpuCache, Magazines, ManualCpus, Purge, ThreadCpus};
use kmem_physmem::{leak, leak_mut};

const SLOTS: usize = 3;

fn slots(n: usize) -> Vec<CpuCache> {
    (0..n).map(|_| CpuCache::new()).collect()
}

/// `ManualCpus` without the heavy fence: a purge can only ask.
struct NoFence(ManualCpus<SLOTS>);

// SAFETY: forwards to `ManualCpus`, keeping its default `fence_slots`
// (none), which the contract allows.
unsafe impl Cpu for NoFence {
    type Guard<'a> = <ManualCpus<SLOTS> as Cpu>::Guard<'a>;
    fn slots(&self) -> usize {
        self.0.slots()
    }
    fn pin(&self) -> Self::Guard<'_> {
        self.0.pin()
    }
    fn now_ns(&self) -> u64 {
        self.0.now_ns()
    }
}

#[test]
fn a_purge_takes_every_idle_slots_magazines() {
    let (cpus, heap) = (ManualCpus::<SLOTS>::new(), Heap::default());
    let mut s = slots(SLOTS);
    let mut m = Magazines::new(&cpus, &mut s, 64).unwrap();
    let magsize = m.stats().magsize;
    // Slots 0 and 1 hold rounds in both their magazines, slot 2 nothing;
    // three full magazines wait in the depot.
    let mut next = 0;
    for slot in [0, 1] {
        cpus.set_slot(slot);
        for _ in 0..magsize * 2 + if slot == 0 { 3 * magsize } else { 0 } {
            m.put(next, &heap).unwrap();
            next += 1;
        }
    }
    let mut got = HashSet::new();
    let purge = m.purge_to(&heap, |o| assert!(got.insert(o), "round {o} twice"));
    assert_eq!(
        purge,
        Purge {
            slots_taken: 2,
            slots_asked: 0,
            rounds: next
        }
    );
    assert_eq!(got, (0..next).collect());
    assert_eq!(
        heap.live.load(Ordering::SeqCst),
        0,
        "every magazine went back"
    );
    let st = m.stats();
    assert_eq!((st.purges, st.purge_slots_taken), (1, 2));
    // The slots work on as before.
    cpus.set_slot(1);
    m.put(7, &heap).unwrap();
    assert_eq!(m.alloc(), Some(7));
    assert_eq!(m.drain_all_to(&heap, |_| ()), 0);
}

#[test]
fn without_the_fence_holders_flush_at_their_next_operation() {
    let (cpus, heap) = (NoFence(ManualCpus::new()), Heap::default());
    let mut s = slots(SLOTS);
    let mut m = Magazines::new(&cpus, &mut s, 64).unwrap();
    for (slot, objs) in [(1, 10..15), (0, 0..5)] {
        cpus.0.set_slot(slot);
        for o in objs {
            m.put(o, &heap).unwrap();
        }
    }
    // Nothing can be taken: every slot is asked. The purge's own drain of
    // the depot is an operation of the caller's slot (0), which honours
    // its request first: its rounds come back; slot 1's stay.
    let mut got = HashSet::new();
    let purge = m.purge_to(&heap, |o| assert!(got.insert(o)));
    assert_eq!((purge.slots_taken, purge.slots_asked), (0, SLOTS));
    assert_eq!(got, (0..5).collect());
    assert_eq!(m.stats().purge_requests_honoured, 1);
    // Slot 1's next operation moves its magazine to the depot first, then
    // takes it back for the allocation (the depot serves the CPU).
    cpus.0.set_slot(1);
    assert_eq!(m.alloc(), Some(14));
    let st = m.stats();
    assert_eq!(st.purge_requests_honoured, 2);
    assert_eq!(st.depot_not_empty_out, 1);
    // Slot 2 never operates again: its request stays, harmlessly.
    let mut rest = HashSet::new();
    m.drain_all_to(&heap, |o| assert!(rest.insert(o)));
    assert_eq!(rest, (10..14).collect());
    assert_eq!(heap.live.load(Ordering::SeqCst), 0);
}

#[test]
fn purge_idle_takes_only_slots_idle_for_an_interval() {
    let (cpus, heap) = (ManualCpus::<SLOTS>::new(), Heap::default());
    let mut s = slots(SLOTS);
    let mut m = Magazines::new(&cpus, &mut s, 64).unwrap();
    for slot in [0, 1] {
        cpus.set_slot(slot);
        m.put(10 * slot, &heap).unwrap();
    }
    // The first look only notes each slot's operation count.
    let first = m.purge_idle_to(&heap, |_| panic!("nothing idle yet"));
    assert_eq!(first, Purge::default());
    // Slot 1 works on; slot 0 stays idle through the interval.
    cpus.set_slot(1);
    m.put(11, &heap).unwrap();
    let mut got = Vec::new();
    let second = m.purge_idle_to(&heap, |o| got.push(o));
    assert_eq!((second.slots_taken, second.slots_asked), (1, 0));
    assert_eq!(got, [0]);
    // Slot 0 emptied and still idle: not looked at again; slot 1 was idle
    // through the last interval now.
    let third = m.purge_idle_to(&heap, |o| got.push(o));
    assert_eq!((third.slots_taken, third.rounds), (1, 2));
    got.sort_unstable();
    assert_eq!(got, [0, 10, 11]);
    let fourth = m.purge_idle_to(&heap, |_| panic!("all emptied"));
    assert_eq!(fourth, Purge::default());
    let st = m.stats();
    assert_eq!(
        (st.purges, st.purge_slots_taken),
        (0, 2),
        "idle purges count slots, not purges"
    );
    m.drain_all_to(&heap, |_| ());
    assert_eq!(heap.live.load(Ordering::SeqCst), 0);
}

/// A thread's own slot on the std platform, with a real membarrier: its
/// magazines go while it sleeps, and its next operations carry on.
#[test]
fn a_sleeping_threads_magazines_go_on_thread_cpus() {
    let cpus = ThreadCpus::global();
    let heap: &'static Heap = leak(Heap::default());
    let s: &'static mut Vec<CpuCache> = leak_mut(slots(cpus.slots()));
    let m: &'static Magazines<'static, ThreadCpus> = leak(Magazines::new(cpus, s, 64).unwrap());
    let (parked, resume) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let (p, r) = (parked.clone(), resume.clone());
    let worker = std::thread::spawn(move || {
        for o in 1..=20 {
            m.put(o, heap).unwrap();
        }
        p.wait();
        r.wait();
        // Its magazines are gone: the allocation misses, frees go on.
        let got = m.alloc();
        m.put(100, heap).unwrap();
        got
    });
    parked.wait();
    let mut got = HashSet::new();
    let purge = m.purge_to(heap, |o| assert!(got.insert(o)));
    resume.wait();
    assert_eq!(worker.join().unwrap(), None);
    assert!(purge.slots_taken >= 1, "{purge:?}");
    assert_eq!(got, (1..=20).collect());
    let mut rest = Vec::new();
    m.drain_depot_to(heap, |o| rest.push(o));
    assert!(
        rest.is_empty(),
        "the exited worker's slot flushed nothing left: {rest:?}"
    );
}
