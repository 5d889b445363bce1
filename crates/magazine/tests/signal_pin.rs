//! Signal handlers that pin a `ThreadCpus` slot while their thread is
//! taking or letting go of a shared slot's lock (found in review,
//! 2026-12-05): a handler on a thread waiting for the lock got a "nested"
//! guard for the slot while another thread held it (two live guards for
//! one slot on two threads, which `unsafe impl Cpu for ThreadCpus` promises
//! never happens), and a handler landing between a guard's release of the
//! thread's holding mark and of the lock waited for ever for the lock its
//! own thread held. Both tests take every exclusive slot, so they run one
//! at a time.
#![cfg(feature = "std")]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::mpsc;
use std::time::Instant;

use kmem_magazine::{Cpu, CpuGuard, ThreadCpus};

/// This thread's id.
fn me() -> libc::pthread_t {
    // SAFETY: no arguments; always succeeds.
    unsafe { libc::pthread_self() }
}

static TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);
static HANDLED: AtomicBool = AtomicBool::new(false);
static SECOND_GUARD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // What the magazine layer's fast path does from a handler.
    if let Some(g) = ThreadCpus::global().try_pin() {
        if g.slot() == TARGET.load(Ordering::SeqCst) {
            SECOND_GUARD.store(true, Ordering::SeqCst);
        }
    }
    HANDLED.store(true, Ordering::SeqCst);
}

enum Cmd {
    Pin,
    Release,
    Exit,
}

#[test]
fn a_handler_on_a_thread_waiting_for_a_shared_slot_gets_no_guard_for_it() {
    let _serial = kmem_physmem::serial();
    let cpus = ThreadCpus::global();
    // SAFETY: installs a plain handler for SIGUSR1.
    unsafe { libc::signal(libc::SIGUSR1, on_signal as *const () as libc::sighandler_t) };
    std::thread::scope(|sc| {
        // Each worker claims a slot (first pin), reports it, then obeys.
        let mut workers = Vec::new();
        let mut by_slot = std::collections::HashMap::<usize, usize>::new();
        let (mut holder, mut waiter) = (None, None);
        let limit = cpus.exclusive_slots() + 2 * cpus.shared_slots() + 8;
        for i in 0..limit {
            let (tx, rx) = mpsc::channel::<Cmd>();
            let (rtx, rrx) = mpsc::channel::<(usize, bool, libc::pthread_t)>();
            sc.spawn(move || {
                let g = cpus.pin();
                rtx.send((g.slot(), g.is_exclusive(), me())).unwrap();
                drop(g);
                let mut held = None;
                for c in rx {
                    match c {
                        Cmd::Pin => {
                            held = Some(cpus.pin());
                            rtx.send((0, false, 0)).unwrap();
                        }
                        Cmd::Release => held = None,
                        Cmd::Exit => break,
                    }
                }
                drop(held);
            });
            let (slot, excl, tid) = rrx.recv().unwrap();
            workers.push((tx, rrx, tid));
            if !excl {
                if let Some(&h) = by_slot.get(&slot) {
                    holder = Some(h);
                    waiter = Some(i);
                    TARGET.store(slot, Ordering::SeqCst);
                    break;
                }
                by_slot.insert(slot, i);
            }
        }
        let (h, w) = (
            holder.expect("two threads on a shared slot"),
            waiter.unwrap(),
        );
        // The holder takes the slot's lock and keeps it.
        workers[h].0.send(Cmd::Pin).unwrap();
        workers[h].1.recv().unwrap();
        // The waiter blocks on it (HOLDING set, lock not taken).
        workers[w].0.send(Cmd::Pin).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: a live thread of this process.
        unsafe { libc::pthread_kill(workers[w].2, libc::SIGUSR1) };
        let t = Instant::now();
        while !HANDLED.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = SECOND_GUARD.load(Ordering::SeqCst);
        workers[h].0.send(Cmd::Release).unwrap();
        workers[w].1.recv().unwrap();
        workers[w].0.send(Cmd::Release).unwrap();
        for (tx, _, _) in &workers {
            let _ = tx.send(Cmd::Exit);
        }
        assert!(
            !second,
            "a signal handler got a guard for shared slot {} while another thread holds it",
            TARGET.load(Ordering::SeqCst)
        );
    });
}

static STRESS_HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn pin_in_handler(_: libc::c_int) {
    drop(ThreadCpus::global().try_pin());
    STRESS_HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// A handler that lands while its thread lets go of a shared slot (its
/// holding mark cleared, the lock not yet) must not wait for that lock: a
/// thread pinning and unpinning a shared slot in a loop under a storm of
/// signals whose handler pins keeps making progress.
#[test]
fn a_handler_between_holding_cleared_and_unlock_does_not_deadlock() {
    let _serial = kmem_physmem::serial();
    let cpus = ThreadCpus::global();
    // SAFETY: a plain handler for SIGUSR2.
    unsafe {
        libc::signal(
            libc::SIGUSR2,
            pin_in_handler as *const () as libc::sighandler_t,
        )
    };
    // Take every exclusive slot (threads parked for the rest of the run).
    let (tx, rx) = mpsc::channel::<bool>();
    for _ in 0..cpus.exclusive_slots() + 1 {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let excl = cpus.pin().is_exclusive();
            tx.send(excl).unwrap();
            drop(tx);
            if excl {
                std::thread::park();
            }
        });
    }
    drop(tx);
    for _ in 0..cpus.exclusive_slots() + 1 {
        rx.recv().unwrap();
    }
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    let (ttx, trx) = mpsc::channel();
    let pinner = std::thread::spawn(move || {
        assert!(!cpus.pin().is_exclusive(), "all exclusive slots taken");
        ttx.send(me()).unwrap();
        while !STOP.load(Ordering::Relaxed) {
            drop(cpus.pin());
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    });
    let tid = trx.recv().unwrap();
    let start = Instant::now();
    let mut last = (COUNT.load(Ordering::Relaxed), Instant::now());
    while start.elapsed() < Duration::from_secs(3) {
        for _ in 0..100 {
            // SAFETY: a live thread of this process (it never exits).
            unsafe { libc::pthread_kill(tid, libc::SIGUSR2) };
        }
        std::thread::sleep(Duration::from_micros(200));
        let now = COUNT.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(2),
            "the pinning thread made no progress for 2 s after {} pins and {} handled signals: deadlocked",
            now,
            STRESS_HANDLED.load(Ordering::Relaxed)
        );
    }
    STOP.store(true, Ordering::Relaxed);
    pinner.join().unwrap();
}
