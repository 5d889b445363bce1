//! S13: allocation in a signal handler that interrupts an allocation of the
//! same thread, with kmalloc as the global allocator. An interval timer
//! fires every 20 us; the SIGALRM handler frees one of its 8 blocks and
//! allocates a fresh one (a null result is a refusal: the handler
//! interrupted an allocator call), filled with a marker. The main thread
//! replaces random blocks of a 64-block ring of the same size class, each
//! holding its own address, and checks every block before freeing it.
//! Before the re-entrancy guard, the handler and the interrupted call shared
//! the slot's magazine: 626,343 corrupted words in 5 s and blocks held
//! twice. `KMEM_SIGNAL_SECS` sets the run's length (default 5 s).

use core::alloc::Layout;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use core::time::Duration;
use std::alloc::{alloc, dealloc};
use std::time::Instant;

use kmalloc::KmallocGlobal;

#[global_allocator]
static KMALLOC: KmallocGlobal = KmallocGlobal::new();

const L: Layout = match Layout::from_size_align(32, 8) {
    Ok(l) => l,
    Err(_) => panic!(),
};
const MARK: u64 = 0xDEAD_BEEF_0000_0000;

static HANDLER_RING: [AtomicPtr<u64>; 8] = [const { AtomicPtr::new(core::ptr::null_mut()) }; 8];
static HANDLER_AT: AtomicUsize = AtomicUsize::new(0);
static HANDLER_BAD: AtomicUsize = AtomicUsize::new(0);
static HANDLER_REFUSED: AtomicUsize = AtomicUsize::new(0);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
    let i = HANDLER_AT.fetch_add(1, Ordering::Relaxed) % 8;
    let old = HANDLER_RING[i].swap(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: the handler's own blocks, allocated below with `L`.
    unsafe {
        if !old.is_null() {
            for w in 0..4 {
                if old.add(w).read_volatile() != MARK + w as u64 {
                    HANDLER_BAD.fetch_add(1, Ordering::Relaxed);
                }
            }
            dealloc(old.cast(), L);
        }
        let p = alloc(L).cast::<u64>();
        if p.is_null() {
            HANDLER_REFUSED.fetch_add(1, Ordering::Relaxed);
        } else {
            for w in 0..4 {
                p.add(w).write_volatile(MARK + w as u64);
            }
        }
        HANDLER_RING[i].store(p, Ordering::Relaxed);
    }
}

/// Starts (or, with 0, stops) a `SIGALRM` every `usec` microseconds.
fn timer(usec: libc::suseconds_t) {
    let t = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: usec,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: usec,
        },
    };
    // SAFETY: sets this process's real-time interval timer.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &t, core::ptr::null_mut()) };
}

/// Runs without the test harness (`harness = false`), so the main thread is
/// the only thread and takes every signal, in the middle of its allocations.
fn main() {
    let secs: u64 = std::env::var("KMEM_SIGNAL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // SAFETY: installs a handler for SIGALRM, which nothing else uses.
    unsafe {
        libc::signal(
            libc::SIGALRM,
            on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    timer(20);
    let mut ring = [core::ptr::null_mut::<u64>(); 64];
    let mut bad = 0usize;
    let mut x: usize = 1;
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..1000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let i = (x >> 33) % 64;
            let p = ring[i];
            // SAFETY: main's own blocks, allocated below with `L`.
            unsafe {
                if !p.is_null() {
                    let a = p as u64;
                    for w in 0..4 {
                        let want = if w % 2 == 0 { a } else { !a };
                        if p.add(w).read_volatile() != want {
                            bad += 1;
                        }
                    }
                    dealloc(p.cast(), L);
                }
                let q = alloc(L).cast::<u64>();
                assert!(!q.is_null(), "main thread's allocation failed");
                let a = q as u64;
                for w in 0..4 {
                    q.add(w).write_volatile(if w % 2 == 0 { a } else { !a });
                }
                ring[i] = q;
            }
            ops += 1;
        }
    }
    timer(0);
    let mut all: Vec<usize> = ring.iter().map(|&p| p as usize).collect();
    all.extend(
        HANDLER_RING
            .iter()
            .map(|p| p.load(Ordering::Relaxed) as usize),
    );
    all.sort_unstable();
    let held_twice = all.windows(2).filter(|w| w[0] == w[1] && w[0] != 0).count();
    let k = KMALLOC.get().unwrap();
    let class = k.class_for(L).unwrap();
    let st = class.stats();
    let signals = SIGNALS.load(Ordering::Relaxed);
    println!(
        "{ops} main ops, {signals} signals, {} handler allocations refused, {} frees deferred: \
         {bad} corrupted words seen by main, {} by the handler, {held_twice} blocks held twice",
        HANDLER_REFUSED.load(Ordering::Relaxed),
        st.magazines.map_or(0, |m| m.deferred_frees),
        HANDLER_BAD.load(Ordering::Relaxed),
    );
    assert!(signals > 100, "the timer fired only {signals} times");
    assert_eq!(bad, 0);
    assert_eq!(HANDLER_BAD.load(Ordering::Relaxed), 0);
    assert_eq!(held_twice, 0);
    class.check().unwrap();
    assert_eq!(st.bad_frees, 0);
    println!("signal: 1 passed, 0 failed");
}
