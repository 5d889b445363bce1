//! The reaper thread of `KmallocGlobal` against `fork()` and signal
//! handlers, each test run again in a child process with
//! `KMEM_UPKEEP_MS=1` (read at boot), so that the reaper passes every
//! millisecond. Both were found in review: a child forked in the middle of
//! a purge kept the purged segment for good, and a handler that allocated
//! on the reaper thread while it held the page arena's lock spun for ever.
//! `KMEM_REAPER_SECS` sets the signal test's length (default 5).

use core::alloc::Layout;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::alloc::{alloc, dealloc};
use std::time::Instant;

use kmalloc::KmallocGlobal;

#[global_allocator]
static KMALLOC: KmallocGlobal = KmallocGlobal::new();

fn rerun(name: &str, env: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env("KMEM_UPKEEP_MS", "1")
        .env(env, "1")
        .output()
        .unwrap()
}

/// Waits up to 20 s for `pid`'s exit status; -1 if it was killed or had
/// to be (a child that hangs on a lock it inherited held).
fn wait(pid: libc::pid_t) -> i32 {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: a child of ours.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            };
        }
        if start.elapsed() > Duration::from_secs(20) {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return -1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `fork()` while the reaper passes every millisecond over memory just
/// freed (so mostly in the middle of a trim or a purge): every child finds
/// the page arena consistent and usable, with no lock held and nothing
/// taken out of it (a first purge took segments out of the arena with its
/// lock let go, and a child kept them for good; found in review).
#[test]
fn children_forked_during_passes_find_the_page_arena_whole() {
    if std::env::var_os("KMEM_REAPER_CHILD").is_none() {
        let out = rerun(
            "children_forked_during_passes_find_the_page_arena_whole",
            "KMEM_REAPER_CHILD",
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        return;
    }
    let k = KMALLOC.get().expect("booted");
    let mut bad = Vec::new();
    for i in 0..20 {
        let v = vec![1u8; 64 << 20];
        std::thread::sleep(Duration::from_millis(2));
        drop(core::hint::black_box(v));
        std::thread::sleep(Duration::from_micros(500 * (i % 5)));
        // SAFETY: the child allocates, checks and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let pages = k.pages();
            let ok = pages.check().is_ok() && pages.stats().metadata == 0 && {
                let w = core::hint::black_box(vec![2u8; 64 << 20]);
                w[w.len() - 1] == 2
            };
            // SAFETY: leaves without the harness.
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        let status = wait(pid);
        if status != 0 {
            bad.push((i, status));
        }
    }
    assert!(
        bad.is_empty(),
        "children that failed (round, status): {bad:?}"
    );
}

static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    let l = Layout::from_size_align(1 << 20, 8).unwrap();
    // SAFETY: a valid layout; null is a refusal.
    let p = unsafe { alloc(l) };
    if !p.is_null() {
        // SAFETY: allocated just above.
        unsafe { dealloc(p, l) };
    }
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Signals that allocate, sent to every thread without pause while the
/// reaper passes every millisecond: the reaper keeps passing (it blocks
/// signals; a handler once ran on it while it held the page arena's lock,
/// and spun on that lock for ever).
#[test]
fn the_reaper_runs_no_handler() {
    if std::env::var_os("KMEM_REAPER_CHILD").is_none() {
        let out = rerun("the_reaper_runs_no_handler", "KMEM_REAPER_CHILD");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(42), "reaper deadlocked: {text}");
        assert!(out.status.success(), "{text}");
        return;
    }
    // SAFETY: installing a handler.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut());
    }
    let secs: u64 = std::env::var("KMEM_REAPER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // Watchdog: no allocation.
    std::thread::spawn(|| {
        // SAFETY: blocks SIGUSR1 in this thread only.
        unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut());
        }
        let mut last = KmallocGlobal::upkeep().passes;
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = KmallocGlobal::upkeep().passes;
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > Duration::from_secs(10) {
                let msg = b"DEADLOCK: reaper made no pass for 10 s\n";
                // SAFETY: plain write.
                unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
                // SAFETY: exit.
                unsafe { libc::_exit(42) };
            }
        }
    });
    // Signal every thread of the process but this sender, without pause.
    std::thread::spawn(|| {
        // SAFETY: plain syscalls.
        let (pid, me) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
        let mut tids = Vec::new();
        loop {
            tids.clear();
            for e in std::fs::read_dir("/proc/self/task").unwrap() {
                let tid: i32 = e.unwrap().file_name().to_str().unwrap().parse().unwrap();
                if tid != me {
                    tids.push(tid);
                }
            }
            for _ in 0..1000 {
                for &t in &tids {
                    // SAFETY: a thread of this process.
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, t, libc::SIGUSR1) };
                }
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        // Grow and shrink: the reaper purges at most passes.
        let v = vec![1u8; 4 << 20];
        std::thread::sleep(Duration::from_millis(2));
        drop(core::hint::black_box(v));
        std::thread::sleep(Duration::from_millis(2));
    }
    println!(
        "handled {} signals, {:?}",
        HANDLED.load(Ordering::Relaxed),
        KmallocGlobal::upkeep()
    );
}
