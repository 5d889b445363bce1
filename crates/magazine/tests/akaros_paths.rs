//! Akaros' magazine paths one by one, driven deterministically with
//! `ManualCpus` (slots chosen by hand, a hand-set clock), plus the std
//! platform's slot handling.

mod common;

use core::sync::atomic::Ordering;

use common::{put_all, Heap, OneHeap, GROW_ON_CONTENTION};
use kmem_magazine::{CpuCache, Magazines, ManualCpus, ResizePolicy};

const SLOTS: usize = 4;

fn slots() -> Vec<CpuCache> {
    (0..SLOTS).map(|_| CpuCache::new()).collect()
}

/// Objects are just distinct integers here; 0 is a valid round.
fn objs(n: usize) -> impl Iterator<Item = usize> {
    0..n
}

/// [`common::with_layer`] on `SLOTS` slots.
fn with_layer<R>(
    size: usize,
    policy: ResizePolicy,
    f: impl FnOnce(&ManualCpus<SLOTS>, &Heap, &Magazines<'_, ManualCpus<SLOTS>>) -> R,
) -> (R, Vec<usize>) {
    common::with_layer(size, policy, f)
}

/// [`with_layer`] for 64-byte objects and Akaros' resize policy.
fn with_layer_64<R>(
    f: impl FnOnce(&ManualCpus<SLOTS>, &Heap, &Magazines<'_, ManualCpus<SLOTS>>) -> R,
) -> (R, Vec<usize>) {
    with_layer(64, ResizePolicy::AKAROS, f)
}

#[test]
fn start_size_follows_object_size() {
    let cpus = ManualCpus::<SLOTS>::new();
    for (size, want) in [(8, 14), (64, 14), (65, 6), (256, 6), (1024, 3), (4096, 1)] {
        let mut s = slots();
        let m = Magazines::new(&cpus, &mut s, size).unwrap();
        assert_eq!(m.stats().magsize, want, "object size {size}");
    }
}

#[test]
fn magazines_are_sized_by_their_capacity() {
    // Object size, its starting fill target, the magazine size that holds it.
    for (size, rounds, bytes) in [(64, 14, 128), (200, 6, 64), (4096, 1, 64)] {
        assert_eq!(kmem_magazine::size_for(rounds), bytes);
        with_layer(size, ResizePolicy::AKAROS, |_, heap, m| {
            // Ten full magazines' worth (and the CPU's two).
            put_all(m, heap, objs(12 * rounds));
            let st = m.stats();
            assert_eq!(st.not_empty, 10, "object size {size}");
            assert_eq!(st.depot_rounds, 10 * rounds, "filled to the target");
            assert_eq!(
                st.magazine_bytes,
                st.magazines_live() * bytes as u64,
                "object size {size}: {st:?}"
            );
        });
    }
}

/// Past what its magazines hold, a grown fill target takes larger ones:
/// the depot's too small empty magazines are given back for them.
#[test]
fn growth_past_a_size_takes_larger_magazines() {
    with_layer(4096, GROW_ON_CONTENTION, |cpus, heap, m| {
        put_all(m, heap, objs(4000));
        m.flush_current();
        // From 1 round (64-byte magazines, 6 rounds) past 6.
        while m.stats().magsize < 8 {
            contended_alloc(m, cpus, 1);
        }
        // Slot 0 frees until its magazines fill to the new target: the
        // empty magazines it gets are 128-byte ones holding 8.
        cpus.set_slot(0);
        let before = m.stats();
        put_all(m, heap, 5000..5100);
        let after = m.stats();
        let grown = after.magazines_allocated - before.magazines_allocated;
        let retired = after.magazines_freed - before.magazines_freed;
        assert!(grown > 0 && retired > 0, "{before:?} {after:?}");
        // The new ones are 128 bytes, the retired 64.
        assert_eq!(
            after.magazine_bytes + retired * 64,
            before.magazine_bytes + grown * 128,
            "{after:?}"
        );
    });
}

#[test]
fn too_few_slots_is_an_error() {
    let cpus = ManualCpus::<SLOTS>::new();
    let mut s: Vec<CpuCache> = (0..2).map(|_| CpuCache::new()).collect();
    let err = Magazines::new(&cpus, &mut s, 64).err().unwrap();
    assert_eq!((err.needed, err.given), (SLOTS, 2));
}

#[test]
fn empty_layer_misses() {
    let cpus = ManualCpus::<SLOTS>::new();
    let mut s = slots();
    let m = Magazines::new(&cpus, &mut s, 64).unwrap();
    assert_eq!(m.alloc(), None);
    assert_eq!(m.stats().cpu_allocs, 0);
}

#[test]
fn first_free_allocates_an_empty_magazine() {
    let ((), drained) = with_layer_64(|_, heap, m| {
        m.put(0, heap).unwrap();
        let st = m.stats();
        assert_eq!(st.magazines_allocated, 1);
        assert_eq!(
            st.depot_empty_out, 1,
            "the new magazine went through the depot"
        );
        assert_eq!(m.alloc(), Some(0), "round 0 is a valid object");
    });
    assert!(drained.is_empty(), "nothing cached");
}

#[test]
fn loaded_and_prev_swap_without_the_depot() {
    let (magsize, drained) = with_layer_64(|_, heap, m| {
        let magsize = m.stats().magsize;
        // Fill loaded, then one more: loaded becomes prev, a new loaded
        // takes it.
        put_all(m, heap, objs(magsize + 1));
        let before = m.stats();
        assert_eq!(before.magazines_allocated, 2);
        // LIFO from loaded (1 round), then a swap to the full prev.
        assert_eq!(m.alloc(), Some(magsize));
        assert_eq!(m.alloc(), Some(magsize - 1), "swapped to prev");
        // Frees go back into the (now loaded) prev's room: swap back and
        // forth.
        m.put(100, heap).unwrap();
        m.put(101, heap).unwrap();
        let after = m.stats();
        assert_eq!(after.depot_not_empty_out, before.depot_not_empty_out);
        assert_eq!(after.depot_empty_out, before.depot_empty_out);
        assert_eq!(
            after.magazines_allocated, 2,
            "no depot visit, no new magazine"
        );
        magsize
    });
    assert_eq!(drained.len(), magsize + 1);
}

#[test]
fn depot_exchange_both_ways_and_between_cpus() {
    let (magsize, drained) = with_layer_64(|cpus, heap, m| {
        let magsize = m.stats().magsize;
        // CPU 0 fills loaded and prev, then one more: the full prev goes to
        // the depot as a not-empty magazine.
        put_all(m, heap, objs(2 * magsize + 1));
        let st = m.stats();
        assert_eq!((st.not_empty, st.depot_rounds), (1, magsize));
        // CPU 1 has nothing: its first alloc takes the not-empty magazine.
        cpus.set_slot(1);
        let got: Vec<usize> = (0..magsize).map(|_| m.alloc().unwrap()).collect();
        assert_eq!(m.stats().depot_not_empty_out, 1);
        assert!(got.iter().all(|&o| o < magsize), "CPU 0's first magazine");
        assert_eq!(m.alloc(), None, "CPU 1 is dry and the depot has no rounds");
        // CPU 0's loaded (1 round) and prev (full) go to the depot; CPU 1
        // keeps its emptied magazine until it is drained.
        cpus.set_slot(0);
        m.flush_current();
        let st = m.stats();
        assert_eq!(
            (st.empty, st.not_empty, st.depot_rounds),
            (0, 2, magsize + 1)
        );
        cpus.set_slot(1);
        magsize
    });
    assert_eq!(drained.len(), magsize + 1);
}

#[test]
fn free_exchanges_a_full_prev_for_a_depot_empty() {
    with_layer_64(|cpus, heap, m| {
        let magsize = m.stats().magsize;
        // Three magazines exist; CPU 1 empties one and returns it to the
        // depot.
        put_all(m, heap, objs(2 * magsize + 1));
        cpus.set_slot(1);
        for _ in 0..magsize {
            m.alloc().unwrap();
        }
        m.flush_current();
        assert_eq!(m.stats().empty, 1);
        // CPU 0 (loaded holds 1, prev full) fills loaded, then needs room:
        // it takes the depot's empty magazine and parks the full prev there.
        cpus.set_slot(0);
        put_all(m, heap, objs(magsize).map(|o| 1000 + o));
        let st = m.stats();
        assert_eq!(st.empty, 0);
        assert_eq!(st.not_empty, 1);
        assert_eq!(st.magazines_allocated, 3, "the empty one was reused");
    });
}

#[test]
fn free_falls_through_without_magazine_memory() {
    with_layer_64(|_, heap, m| {
        heap.fail.store(true, Ordering::SeqCst);
        assert_eq!(m.put(7, heap), Err(7), "no magazine: back to the caller");
        heap.fail.store(false, Ordering::SeqCst);
        let magsize = m.stats().magsize;
        put_all(m, heap, objs(2 * magsize));
        heap.fail.store(true, Ordering::SeqCst);
        assert_eq!(
            m.put(99, heap),
            Err(99),
            "loaded and prev full, no depot room"
        );
        assert_eq!(m.stats().cpu_frees, 2 * magsize as u64);
        heap.fail.store(false, Ordering::SeqCst);
    });
}

/// Makes CPU `slot`'s next alloc visit the depot while another thread holds
/// the depot lock, so the visit is contended exactly once.
fn contended_alloc(m: &Magazines<'_, ManualCpus<SLOTS>>, cpus: &ManualCpus<SLOTS>, slot: usize) {
    cpus.set_slot(slot);
    contended_alloc_here(m);
}

/// [`contended_alloc`] on the caller's own slot, on any platform.
fn contended_alloc_here<C: kmem_magazine::Cpu>(m: &Magazines<'_, C>) {
    m.flush_current();
    let before = m.contended();
    under_a_held_depot(m, || assert!(m.alloc().is_some()));
    assert_eq!(m.contended(), before + 1);
}

/// Runs `f` (which must visit the depot) while another thread holds the
/// depot lock; that thread lets go once the layer has counted a contended
/// visit.
fn under_a_held_depot<C: kmem_magazine::Cpu>(m: &Magazines<'_, C>, f: impl FnOnce()) {
    let before = m.contended();
    std::thread::scope(|sc| {
        let (tx, rx) = std::sync::mpsc::channel();
        sc.spawn(move || {
            m.with_depot_locked(|| {
                tx.send(()).unwrap();
                while m.contended() == before {
                    core::hint::spin_loop();
                }
            })
        });
        rx.recv().unwrap();
        f();
    });
}

#[test]
fn magazines_grow_under_depot_contention() {
    with_layer_64(|cpus, heap, m| {
        let start = m.stats().magsize;
        put_all(m, heap, objs(400));
        m.flush_current();
        // One contended visit is within the threshold (seed: more than 1).
        contended_alloc(m, cpus, 1);
        assert_eq!(m.stats().magsize, start);
        // A second one inside the 1 s window grows the magazines by one
        // round.
        cpus.advance(500_000_000);
        contended_alloc(m, cpus, 2);
        let st = m.stats();
        assert_eq!((st.magsize, st.resizes), (start + 1, 1));
        // A CPU adopts the size on its next free-path depot visit: a fresh
        // CPU now fills start + 1 rounds into one magazine.
        cpus.set_slot(3);
        let visits = m.stats().depot_empty_out + m.stats().magazines_allocated;
        put_all(m, heap, objs(start + 1).map(|o| 10_000 + o));
        let st = m.stats();
        assert_eq!(
            st.depot_empty_out + st.magazines_allocated,
            visits + 2,
            "one depot visit (a new magazine through the depot) for start + 1 frees"
        );
    });
}

#[test]
fn contention_outside_the_window_does_not_grow() {
    with_layer_64(|cpus, heap, m| {
        let start = m.stats().magsize;
        put_all(m, heap, objs(400));
        m.flush_current();
        contended_alloc(m, cpus, 1);
        cpus.advance(2_000_000_000); // past the 1 s window: the count restarts
        contended_alloc(m, cpus, 2);
        assert_eq!(m.stats().magsize, start);
        assert_eq!(m.stats().contended, 2);
    });
}

#[test]
fn contention_without_full_magazines_does_not_grow() {
    with_layer(64, GROW_ON_CONTENTION, |_, _, m| {
        let start = m.stats().magsize;
        under_a_held_depot(m, || assert_eq!(m.alloc(), None, "the depot is empty"));
        assert_eq!(m.stats().magsize, start);
    });
}

#[test]
fn growth_stops_at_the_capacity() {
    with_layer(8192, GROW_ON_CONTENTION, |cpus, heap, m| {
        put_all(m, heap, objs(4000));
        m.flush_current();
        for _ in 0..kmem_magazine::MAGAZINE_ROUNDS + 5 {
            contended_alloc(m, cpus, 1);
        }
        assert_eq!(m.stats().magsize, kmem_magazine::MAGAZINE_ROUNDS);
    });
}

#[test]
fn drain_depot_returns_rounds_and_magazines() {
    let ((), drained) = with_layer_64(|_, heap, m| {
        put_all(m, heap, objs(100));
        m.flush_current();
        let mut seen = Vec::new();
        let n = m.drain_depot_to(heap, |o| seen.push(o));
        seen.sort_unstable();
        assert_eq!(n, 100);
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(heap.live.load(Ordering::SeqCst), 0);
        let st = m.stats();
        assert_eq!((st.not_empty, st.empty, st.depot_rounds), (0, 0, 0));
        assert_eq!(st.magazines_live(), 0);
    });
    assert!(drained.is_empty(), "the depot drain took every round");
}

#[cfg(feature = "std")]
mod threads {
    use core::sync::atomic::AtomicUsize;

    // The process's slots are one set: a test that takes every exclusive
    // slot would send another test's threads to the shared ones, so these
    // tests run one at a time (`kmem_physmem::serial`).

    use super::*;
    use kmem_magazine::{Cpu, CpuGuard, ThreadCpus};

    /// A free inside an operation already under way on its thread (a
    /// [`Section`](kmem_magazine::Section): the quantum caches' frees, a
    /// checked cache's) may not make a magazine: with the fill target
    /// grown past what the depot's empty magazines hold, it uses one of
    /// those rather than give the object back (review, 2026-12-05: it
    /// handed every such free back while empty magazines waited).
    #[test]
    fn a_free_in_a_section_uses_a_too_small_empty_magazine() {
        let _serial = kmem_physmem::serial();
        let cpus = ThreadCpus::global();
        let heap = Heap::default();
        let mut s: Vec<CpuCache> = (0..cpus.slots()).map(|_| CpuCache::new()).collect();
        // 4 KiB objects: 1-round targets in 64-byte magazines (6 rounds).
        let mut m = Magazines::with_policy(cpus, &mut s, 4096, GROW_ON_CONTENTION).unwrap();
        let (m_ref, heap_ref) = (&m, &heap);
        std::thread::scope(|sc| {
            sc.spawn(move || {
                let (m, heap) = (m_ref, heap_ref);
                // Full one-round magazines in the depot, then empty ones.
                put_all(m, heap, objs(100));
                for _ in 0..50 {
                    assert!(m.alloc().is_some());
                }
                // Contended depot visits grow the target past 6.
                while m.stats().magsize <= 6 {
                    contended_alloc_here(m);
                }
                let empty = m.stats().empty;
                assert!(empty > 0, "{:?}", m.stats());
                m.flush_current();
                let section = kmem_magazine::Section::enter(cpus).expect("a fresh section");
                for o in 1000..1010 {
                    assert_eq!(m.put(o, heap), Ok(()), "free {o} handed back");
                }
                drop(section);
            });
        });
        m.drain_all_to(&heap, |_| {});
        assert_eq!(heap.live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn thread_exit_flushes_its_magazines_to_the_depot() {
        let _serial = kmem_physmem::serial();
        let cpus = ThreadCpus::global();
        let heap = Heap::default();
        let mut s: Vec<CpuCache> = (0..cpus.slots()).map(|_| CpuCache::new()).collect();
        let mut m = Magazines::new(cpus, &mut s, 64).unwrap();
        // SAFETY: `m` stays put until `unregister` below.
        unsafe { m.register() };
        let rounds = std::thread::scope(|sc| {
            // Unregisters even if an assertion below fails, so no exiting
            // thread of another test calls a hook into a dead frame.
            struct Unregister<'m, 'a>(&'m Magazines<'a, ThreadCpus>);
            impl Drop for Unregister<'_, '_> {
                fn drop(&mut self) {
                    self.0.unregister();
                }
            }
            let _unregister = Unregister(&m);
            let worker = sc.spawn(|| {
                put_all(&m, &heap, objs(5));
                assert_eq!(m.stats().depot_rounds, 0);
            });
            // A native join: it returns once the thread is gone, its
            // thread-local destructors (which flush its slot) included. The
            // scope's implicit join does not wait for those.
            worker.join().unwrap();
            m.stats().depot_rounds
        });
        // The thread has exited: its slot's rounds are in the depot.
        assert_eq!(rounds, 5);
        assert_eq!(m.drain_all_to(&heap, |_| {}), 5);
        assert_eq!(heap.live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn threads_beyond_the_exclusive_slots_share_locked_slots() {
        let _serial = kmem_physmem::serial();
        let cpus = ThreadCpus::global();
        let n = cpus.exclusive_slots() + 2;
        let barrier = std::sync::Barrier::new(n);
        let shared = AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..n {
                sc.spawn(|| {
                    let g = cpus.pin();
                    assert!(g.slot() < cpus.slots());
                    let exclusive = g.is_exclusive();
                    // Only an exclusive slot is used with no guard.
                    let owned = if exclusive { Some(g.slot()) } else { None };
                    assert_eq!(cpus.owned_slot(), owned);
                    drop(g);
                    barrier.wait(); // everyone holds a slot claim now
                    if !exclusive {
                        shared.fetch_add(1, Ordering::SeqCst);
                        // Nested pins on a shared slot do not deadlock.
                        let a = cpus.pin();
                        let b = cpus.pin();
                        assert_eq!(a.slot(), b.slot());
                    }
                });
            }
        });
        assert!(shared.load(Ordering::SeqCst) >= 2);
    }

    /// This thread's CPU time.
    fn cpu_time() -> core::time::Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-parameter.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        core::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// A thread waiting for a shared slot whose holder does not let go (as
    /// a preempted holder would not) sleeps instead of spinning: its CPU
    /// time stays a small part of the wait.
    #[test]
    fn a_waiter_on_a_held_shared_slot_sleeps() {
        let _serial = kmem_physmem::serial();
        use core::time::Duration;
        use std::sync::{mpsc, Mutex};
        use std::time::Instant;
        let cpus = ThreadCpus::global();
        let hold = Duration::from_millis(300);
        // Threads that got an exclusive slot keep it until the gate opens,
        // so that the next ones go to the shared slots.
        let gate = Mutex::new(());
        std::thread::scope(|sc| {
            // Closed until the end (opened by unwinding too, so a failure
            // does not leave the scope waiting for the threads behind it).
            let closed = gate.lock().unwrap();
            // Joined at the end, so that the exclusive slots are given back
            // (at thread exit) before the next test.
            let threads = core::cell::RefCell::new(Vec::new());
            // What a thread got: an exclusive slot (`None`), or a shared
            // one, the time its pin took and the CPU time it used meanwhile.
            let probe = |hold_for: Option<Duration>| {
                let (tx, rx) = mpsc::channel();
                let gate = &gate;
                let thread = sc.spawn(move || {
                    let (t, c) = (Instant::now(), cpu_time());
                    let g = cpus.pin();
                    let took = (t.elapsed(), cpu_time() - c);
                    if g.is_exclusive() {
                        drop(g);
                        tx.send(None).unwrap();
                        drop(gate.lock());
                        return;
                    }
                    tx.send(Some((g.slot(), took))).unwrap();
                    if let Some(d) = hold_for {
                        std::thread::sleep(d);
                    }
                });
                threads.borrow_mut().push(thread);
                rx.recv().unwrap()
            };
            let limit = cpus.exclusive_slots() + 8 * cpus.shared_slots() + 64;
            let held = (0..limit)
                .find_map(|_| probe(Some(hold)))
                .expect("a shared slot")
                .0;
            // Shared slots are handed out round robin: one of the next
            // threads lands on the held one and waits.
            let waited = (0..limit).find_map(|_| {
                probe(None).filter(|&(slot, (wall, _))| slot == held && wall >= hold / 2)
            });
            let (_, (wall, cpu)) = waited.expect("no thread waited for the held slot");
            drop(closed);
            for t in threads.take() {
                t.join().unwrap();
            }
            assert!(cpu < wall / 5, "spun: {cpu:?} of CPU in {wall:?}");
        });
    }
}

/// The deferred stack links through the word at the layer's link offset,
/// both ways, and the offset cannot change once a round waits there.
#[test]
fn deferred_rounds_link_through_the_link_offset() {
    let cpus = ManualCpus::<SLOTS>::new();
    let mut s = slots();
    let m = Magazines::new(&cpus, &mut s, 64)
        .unwrap()
        .with_link_offset(8);
    let mut objs = [[0u64; 2]; 3];
    let addrs: Vec<usize> = objs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    for &a in &addrs {
        // SAFETY: two words of memory nothing else uses until popped; the
        // layer has no magazines to hand them to anyone else.
        unsafe { m.defer(a) };
    }
    // The first words were left alone.
    assert!(objs.iter().all(|o| o[0] == 0));
    let mut got: Vec<usize> = core::iter::from_fn(|| m.alloc()).take(3).collect();
    got.sort_unstable();
    let mut want = addrs.clone();
    want.sort_unstable();
    assert_eq!(got, want);
    let changed = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        let _ = m.with_link_offset(16);
    }));
    assert!(changed.is_err(), "the offset changed after a deferred free");
}

/// No empty magazine to be had (the depot has none, the source gives
/// none): a free handed back gets a batch flush of the full `prev`
/// magazine, then goes into it.
#[test]
fn a_batch_flush_makes_room_when_no_magazine_can_be_had() {
    let ((magsize, flushed), rest) = with_layer_64(|_, heap, m| {
        let magsize = m.stats().magsize;
        // Both CPU magazines full, nothing in the depot.
        put_all(m, heap, objs(2 * magsize));
        heap.fail.store(true, Ordering::SeqCst);
        let obj = 1000;
        assert_eq!(m.put(obj, heap), Err(obj));
        let mut flushed = Vec::new();
        assert_eq!(
            m.free_after_flush(obj, |rounds| flushed.extend(rounds)),
            Ok(())
        );
        assert_eq!(flushed.len(), magsize, "one full magazine in one pass");
        assert_eq!(m.stats().flushes, 1);
        // The next frees go into the flushed magazine.
        put_all(m, heap, 2000..2000 + magsize - 1);
        assert_eq!(m.put(3000, heap), Err(3000));
        // A flush that takes nothing leaves no room: handed back.
        assert_eq!(m.free_after_flush(3000, |_| {}), Err(3000));
        heap.fail.store(false, Ordering::SeqCst);
        (magsize, flushed.len())
    });
    assert_eq!(rest.len() + flushed, 3 * magsize);
}

/// A depot at its cap takes no more full magazines: a free with both CPU
/// magazines full is handed back, and a batch flush makes room; below the
/// cap, the depot exchanges as before; `None` lifts the cap.
#[test]
fn a_depot_at_its_cap_hands_frees_back() {
    let ((magsize, flushed), rest) = with_layer_64(|_, heap, m| {
        let magsize = m.stats().magsize;
        m.set_depot_cap(Some(2 * magsize));
        // The CPU's two magazines, then two exchanged into the depot.
        put_all(m, heap, objs(4 * magsize));
        assert_eq!(m.stats().depot_rounds, 2 * magsize);
        let obj = 1000;
        assert_eq!(m.put(obj, heap), Err(obj), "the depot is at its cap");
        assert_eq!(m.stats().depot_capped, 1);
        let mut flushed = Vec::new();
        assert_eq!(
            m.free_after_flush(obj, |rounds| flushed.extend(rounds)),
            Ok(())
        );
        assert_eq!(flushed.len(), magsize);
        assert_eq!(
            m.stats().depot_rounds,
            2 * magsize,
            "the depot kept its cap"
        );
        // Lifted: the depot takes full magazines again.
        m.set_depot_cap(None);
        put_all(m, heap, 2000..2000 + 2 * magsize);
        assert!(m.stats().depot_rounds > 2 * magsize);
        (magsize, flushed.len())
    });
    assert_eq!(rest.len() + flushed, 6 * magsize + 1);
}
