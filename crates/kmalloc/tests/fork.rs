//! S11: `fork()` in a multi-threaded program whose global allocator is
//! kmalloc. Three threads allocate without pause (small sizes: magazines,
//! depots, slabs; large ones: the page arena's lock and `mmap`) while the
//! main thread forks; each child allocates every kind of size, writes and
//! checks what it got, and leaves. Before the `pthread_atfork` handlers, a
//! lock held by another thread at the fork stayed held for ever in the child
//! (75 of 100 children hung). Idle threads hold every exclusive CPU slot
//! first, so the workers share slots (under the shared slots' locks), and
//! one worker reaps now and then (the cache registry's lock, under which it
//! pins a slot). `KMEM_FORKS` sets the number of forks.

use core::hint::black_box;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::time::Instant;

use kmalloc::KmallocGlobal;
use kmem_magazine::{Cpu, ThreadCpus};

#[global_allocator]
static KMALLOC: KmallocGlobal = KmallocGlobal::new();

static STOP: AtomicBool = AtomicBool::new(false);

/// What a child does: allocate, write, check, free; its exit status says
/// whether every block held what was written.
fn child() -> i32 {
    let mut ok = true;
    for size in [24, 100, 1000, 5000, 40_000, 100_000, 300_000] {
        let v: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ok &= v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8);
        black_box(&v);
    }
    i32::from(!ok)
}

/// A child has no reaper thread (threads are not copied) until it imports
/// pages: then it starts its own.
#[test]
fn a_child_starts_its_own_reaper() {
    let _ = black_box(vec![0u8; 64]);
    assert!(KmallocGlobal::upkeep().running);
    // SAFETY: the child only allocates and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let before = KmallocGlobal::upkeep().running;
        // Larger than any span imported so far: an import.
        let v: Vec<u8> = black_box(Vec::with_capacity(512 << 20));
        let after = KmallocGlobal::upkeep().running;
        drop(v);
        // SAFETY: leaves the child without running the test harness's exit.
        unsafe { libc::_exit(if !before && after { 0 } else { 1 }) };
    }
    assert_eq!(wait(pid, Duration::from_secs(60)), Some(0));
}

/// The purge's heavy fence (`membarrier`) works in a child too (its
/// registration is inherited, or `fence_slots` registers it again).
#[test]
fn a_child_has_the_purge_fence() {
    assert!(
        ThreadCpus::global().fence_slots(),
        "membarrier in the parent"
    );
    // SAFETY: the child only makes syscalls and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let fenced = ThreadCpus::global().fence_slots();
        // SAFETY: leaves the child without running the test harness's exit.
        unsafe { libc::_exit(if fenced { 0 } else { 1 }) };
    }
    assert_eq!(wait(pid, Duration::from_secs(60)), Some(0));
}

/// Waits up to `limit` for `pid`; `None` if it had to be killed.
fn wait(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: plain syscalls on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            });
        }
        if start.elapsed() > limit {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn children_of_a_busy_multithreaded_program_allocate() {
    let forks: usize = std::env::var("KMEM_FORKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let cpus = ThreadCpus::global();
    let claimed = std::sync::Arc::new(std::sync::Barrier::new(cpus.exclusive_slots() + 1));
    let idle: Vec<_> = (0..cpus.exclusive_slots())
        .map(|_| {
            let claimed = claimed.clone();
            std::thread::spawn(move || {
                drop(ThreadCpus::global().pin());
                claimed.wait();
                while !STOP.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_millis(10));
                }
            })
        })
        .collect();
    claimed.wait();
    let workers: Vec<_> = (0..3)
        .map(|t| {
            std::thread::spawn(move || {
                let mut i: usize = t * 7919 + 1;
                let mut ops = 0u64;
                while !STOP.load(Ordering::Relaxed) {
                    if t == 0 && ops % 1000 == 999 {
                        KMALLOC.get().unwrap().reap();
                    }
                    i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let size = if i.is_multiple_of(4) {
                        40_000 + i % 300_000
                    } else {
                        1 + i % 2000
                    };
                    let v: Vec<u8> = Vec::with_capacity(size);
                    black_box(&v);
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let (mut hung, mut failed) = (0, 0);
    for _ in 0..forks {
        // SAFETY: the child only allocates (the point of the test) and
        // leaves with `_exit`, running no exit handlers.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child();
            // SAFETY: as above.
            unsafe { libc::_exit(code) };
        }
        match wait(pid, Duration::from_secs(10)) {
            None => hung += 1,
            Some(0) => {}
            Some(_) => failed += 1,
        }
    }
    STOP.store(true, Ordering::Relaxed);
    let ops: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    for t in idle {
        t.join().unwrap();
    }
    println!("{forks} forks while 3 threads made {ops} allocations: {hung} hung, {failed} failed");
    assert!(ops > 0);
    assert_eq!((hung, failed), (0, 0), "of {forks} children");
}
