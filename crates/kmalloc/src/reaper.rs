//! `std` feature: the reaper thread of [`KmallocGlobal`](crate::KmallocGlobal),
//! which runs the upkeep pass ([`Kmalloc::tick`](crate::Kmalloc::tick)) of
//! every booted global allocator at a steady interval, so that what a
//! program stops using goes back to the OS while it idles.
//!
//! The thread is a bare `pthread` (`pthread_create`, not `std::thread`, which
//! would allocate through the allocator being booted). It starts after the
//! first boot; a `fork()` child has no threads but the forking one, so the
//! child's handler marks the reaper stopped and the child's next import of
//! pages from the OS starts a new one. `KMEM_UPKEEP_MS` sets the interval
//! (`0` turns the reaper off), read once at the first boot.

use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::global::no_unwind;
use crate::os::ProcessLock;
use kmem_arena::ArenaStats;

/// The reaper's default interval between two upkeep passes, in milliseconds.
///
/// Objects a program frees and leaves idle go back to their slabs after two
/// passes, and their pages to the OS then, or at the fourth pass for pages
/// the page arena's quantum caches take back first (see
/// [`Kmalloc::tick`](crate::Kmalloc::tick)): within 2 s.
pub const UPKEEP_INTERVAL_MS: u64 = 500;

/// No reaper runs; one may start.
const STOPPED: u8 = 0;
/// A reaper runs (or is being started).
const RUNNING: u8 = 1;
/// Turned off (`KMEM_UPKEEP_MS=0`), or the thread could not be created.
const OFF: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(STOPPED);

/// The interval in ms; 0 until the first boot reads the environment.
static INTERVAL_MS: AtomicU64 = AtomicU64::new(0);

/// Bytes of spans from the OS before the thread starts
/// (`KmallocGlobal::reaper_after`; the smallest of the booted allocators').
static START_AFTER: AtomicUsize = AtomicUsize::new(usize::MAX);

static PASSES: AtomicU64 = AtomicU64::new(0);
static TOTAL_NS: AtomicU64 = AtomicU64::new(0);
static MAX_NS: AtomicU64 = AtomicU64::new(0);
static LAST_NS: AtomicU64 = AtomicU64::new(0);
static GIVEN_BACK: AtomicU64 = AtomicU64::new(0);
static PURGED: AtomicU64 = AtomicU64::new(0);

/// What the reaper thread has done, for [`KmallocGlobal::upkeep`](crate::KmallocGlobal::upkeep).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpkeepStats {
    /// Milliseconds between passes; 0 when the reaper is off.
    pub interval_ms: u64,
    /// True while a reaper thread runs in this process.
    pub running: bool,
    /// Passes made (each over every booted global allocator).
    pub passes: u64,
    /// Nanoseconds all passes took together.
    pub total_ns: u64,
    /// The longest pass, in nanoseconds.
    pub max_ns: u64,
    /// The last pass, in nanoseconds.
    pub last_ns: u64,
    /// What the passes gave back: bytes of slabs plus page-arena units.
    pub given_back: u64,
    /// Bytes of free memory the passes handed to the OS with
    /// `madvise(MADV_DONTNEED)`, from the page and base arenas, counted at
    /// every purge (free memory purged before, or never touched, counts
    /// again): the work done, not the memory given back.
    pub purged: u64,
}

pub(crate) fn stats() -> UpkeepStats {
    UpkeepStats {
        interval_ms: INTERVAL_MS.load(Ordering::Relaxed),
        running: STATE.load(Ordering::Relaxed) == RUNNING,
        passes: PASSES.load(Ordering::Relaxed),
        total_ns: TOTAL_NS.load(Ordering::Relaxed),
        max_ns: MAX_NS.load(Ordering::Relaxed),
        last_ns: LAST_NS.load(Ordering::Relaxed),
        given_back: GIVEN_BACK.load(Ordering::Relaxed),
        purged: PURGED.load(Ordering::Relaxed),
    }
}

/// Reads `KMEM_UPKEEP_MS` (once, at the first boot, under the boot lock):
/// unset or not a number, the default; `0`, off. Every boot lowers the
/// threshold to start at to its allocator's `start_after`.
pub(crate) fn configure(start_after: usize) {
    // The smallest threshold of the booted allocators (the first boot
    // sets it from `usize::MAX`).
    START_AFTER.fetch_min(start_after, Ordering::Relaxed);
    if INTERVAL_MS.load(Ordering::Relaxed) != 0 || STATE.load(Ordering::Relaxed) == OFF {
        return;
    }
    // SAFETY: a NUL-terminated name; the result is read at once, under the
    // boot lock on the program's first allocation.
    let p = unsafe { libc::getenv(c"KMEM_UPKEEP_MS".as_ptr()) };
    let ms = if p.is_null() {
        UPKEEP_INTERVAL_MS
    } else {
        // SAFETY: `getenv` returns a NUL-terminated string.
        let s = unsafe { core::ffi::CStr::from_ptr(p) };
        s.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(UPKEEP_INTERVAL_MS)
    };
    if ms == 0 {
        STATE.store(OFF, Ordering::Relaxed);
    } else {
        INTERVAL_MS.store(ms, Ordering::Relaxed);
    }
}

/// Starts the reaper thread unless one runs or it is off. Cheap when one
/// runs (one load). Allocates nothing through the global allocator.
pub(crate) fn ensure() {
    if STATE.load(Ordering::Relaxed) != STOPPED
        || INTERVAL_MS.load(Ordering::Relaxed) == 0
        || crate::KmallocGlobal::os_pages().span_bytes() < START_AFTER.load(Ordering::Relaxed)
    {
        return;
    }
    if STATE
        .compare_exchange(STOPPED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let mut tid: libc::pthread_t = 0;
    // The thread starts with every signal blocked (it inherits the mask):
    // a handler that allocates must never run on it while it holds an
    // arena's or a cache's lock outside any section.
    // SAFETY: plain out-parameters for the signal sets.
    let (mut all, mut old): (libc::sigset_t, libc::sigset_t) = unsafe { core::mem::zeroed() };
    // SAFETY: valid sets; the caller's mask is put back just below.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `run` is an `extern "C"` function that lives for the whole
    // program and ignores its argument; default attributes.
    let r = unsafe { libc::pthread_create(&mut tid, ptr::null(), run, ptr::null_mut()) };
    // SAFETY: the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    if r != 0 {
        // Out of threads or memory: no reaper; memory goes back only on
        // `reap` or `tick` calls. Not retried, so no path keeps failing.
        STATE.store(OFF, Ordering::Relaxed);
        return;
    }
    // SAFETY: a thread just created, not joined or detached before.
    unsafe { libc::pthread_detach(tid) };
}

/// Held by the reaper for the whole of a pass, and by `fork()` from its
/// prepare handler to its parent and child handlers, so that a child is
/// never copied in the middle of a pass (with rounds, slabs or a hash
/// table in flight on the reaper's stack, which the child does not have).
static PASS: ProcessLock = ProcessLock::new();

/// `fork()`'s prepare handler: waits for a pass under way to end.
pub(crate) fn fork_prepare() {
    PASS.lock();
}

/// `fork()`'s parent handler.
pub(crate) fn fork_parent() {
    PASS.unlock();
}

/// `fork()`'s child handler: the reaper thread was not copied.
pub(crate) fn fork_child() {
    PASS.unlock();
    let _ = STATE.compare_exchange(RUNNING, STOPPED, Ordering::Relaxed, Ordering::Relaxed);
}

/// Free segments of the base arena smaller than this are not purged (a
/// `madvise` call each would cost more than the few pages they hold).
const BASE_PURGE_MIN: usize = 64 << 10;

/// When an arena's free memory goes back to the OS: what the reaper saw of
/// it at the previous pass.
#[derive(Clone, Copy, Default)]
struct PurgeState {
    /// Its allocation count at the previous pass.
    allocs: u64,
    /// Its free count after the last purge.
    frees: u64,
    /// The most units it held allocated at a pass since the last purge.
    peak: usize,
    /// Its free units right after the last purge.
    free: usize,
}

/// Free memory that grows by this much since the last purge is purged at
/// the next pass, whatever else the program does (or by a quarter of
/// what the arena holds allocated, if that is more).
const PURGE_GROWTH: usize = 4 << 20;

impl PurgeState {
    /// Purges `arena`'s free segments of at least `min` bytes when it has
    /// freed memory since the last purge and then either allocated nothing
    /// during the last interval (idle), holds at most half of what it held
    /// at a pass since the last purge (shrinking), or has more free memory
    /// than after the last purge by [`PURGE_GROWTH`] or a quarter of what
    /// it holds: a program in a steady state does not have its memory
    /// purged and faulted in again at every pass, and one that frees a
    /// large block between two passes gets it purged at the next. Returns
    /// the bytes handed to `madvise`.
    fn pass(&mut self, arena: &kmem_arena::Arena<'_>, min: usize) -> usize {
        if !self.due(&arena.stats()) {
            return 0;
        }
        let purged = arena.purge(min, dont_need);
        self.purged(&arena.stats());
        purged
    }

    /// Takes in the arena's figures at a pass; true when it is to be
    /// purged (see [`pass`](Self::pass)).
    fn due(&mut self, st: &ArenaStats) -> bool {
        self.peak = self.peak.max(st.allocated);
        let idle = st.allocs == self.allocs;
        self.allocs = st.allocs;
        let grown = st.free.saturating_sub(self.free) >= PURGE_GROWTH.max(st.allocated / 4);
        st.frees != self.frees && (idle || grown || st.allocated * 2 <= self.peak)
    }

    /// Takes in the arena's figures right after a purge.
    fn purged(&mut self, st: &ArenaStats) {
        (self.frees, self.free, self.peak) = (st.frees, st.free, st.allocated);
    }
}

/// Tells the OS that the whole pages in `[start, start + size)` are unused:
/// they leave the resident set, and read as zeroes when touched again.
/// Runs under the arena's lock (`Arena::purge`), on the reaper thread,
/// whose signals are blocked.
fn dont_need(start: usize, size: usize) {
    let page = kmem_slab::PAGE_SIZE;
    let (from, to) = (start.next_multiple_of(page), (start + size) / page * page);
    if to > from {
        // SAFETY: `[from, to)` lies in a free segment of the arena, whose
        // lock `Arena::purge` holds during this call: no one uses its
        // contents, and the mapping stays (only its pages are dropped).
        unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED) };
    }
}

/// The reaper thread: sleeps an interval, then ticks every booted global
/// allocator and purges what its arenas hold free, for ever.
extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    let mut purge = [[PurgeState::default(); 2]; crate::os::MAX_GLOBALS];
    let ms = INTERVAL_MS.load(Ordering::Relaxed).max(1);
    let pause = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    loop {
        let mut rest = pause;
        // SAFETY: valid timespecs; an interrupted sleep goes on with the rest.
        while unsafe { libc::nanosleep(&rest, &mut rest) } != 0 {}
        PASS.lock();
        let start = crate::os::monotonic_ns();
        let given: usize = no_unwind(|| {
            let mut given = 0;
            for (k, p) in crate::os::booted().zip(&mut purge) {
                given += k.tick();
                let purged = p[0].pass(k.pages(), kmem_slab::PAGE_SIZE)
                    + p[1].pass(k.caches().base(), BASE_PURGE_MIN);
                PURGED.fetch_add(purged as u64, Ordering::Relaxed);
            }
            given
        });
        let ns = crate::os::monotonic_ns().saturating_sub(start);
        PASSES.fetch_add(1, Ordering::Relaxed);
        TOTAL_NS.fetch_add(ns, Ordering::Relaxed);
        MAX_NS.fetch_max(ns, Ordering::Relaxed);
        LAST_NS.store(ns, Ordering::Relaxed);
        GIVEN_BACK.fetch_add(given as u64, Ordering::Relaxed);
        PASS.unlock();
    }
}

#[cfg(test)]
mod tests {
    use kmem_arena::ArenaStats;

    use super::{PurgeState, PURGE_GROWTH};

    /// An arena's figures at a pass.
    fn at(allocs: u64, frees: u64, allocated: usize, free: usize) -> ArenaStats {
        ArenaStats {
            allocs,
            frees,
            allocated,
            free,
            ..ArenaStats::default()
        }
    }

    /// The purge policy the docs describe: only after frees, and then when
    /// the arena idled, shrank to half its high mark, or gained
    /// `PURGE_GROWTH` of free memory; a steady state is left alone.
    #[test]
    fn purges_after_frees_when_idle_shrinking_or_grown() {
        let mb = 1 << 20;
        let mut p = PurgeState::default();
        // The first pass with frees: free memory grew by a quarter of
        // what is held (from none): purged.
        assert!(p.due(&at(10, 5, 64 * mb, 20 * mb)));
        p.purged(&at(10, 5, 64 * mb, 20 * mb));
        // No frees since: nothing to purge, busy or idle.
        assert!(!p.due(&at(20, 5, 64 * mb, 20 * mb)));
        assert!(!p.due(&at(20, 5, 64 * mb, 20 * mb)));
        // A steady state: allocations and frees, little memory freed.
        assert!(!p.due(&at(30, 15, 64 * mb, 21 * mb)));
        // Idle (no allocation since the last pass) after frees: purged.
        assert!(p.due(&at(30, 16, 64 * mb, 21 * mb)));
        p.purged(&at(30, 16, 64 * mb, 21 * mb));
        // Busy, holding as much, but free memory grew by a quarter of it
        // (and at least PURGE_GROWTH): purged.
        assert!(p.due(&at(40, 30, 64 * mb, 37 * mb)));
        p.purged(&at(40, 30, 64 * mb, 37 * mb));
        // Busy, holding less, but not half the high mark: left alone.
        assert!(!p.due(&at(50, 40, 40 * mb, 38 * mb)));
        // Half the high mark: purged.
        assert!(p.due(&at(60, 50, 30 * mb, 38 * mb)));
        assert!(16 * mb >= PURGE_GROWTH);
    }
}
