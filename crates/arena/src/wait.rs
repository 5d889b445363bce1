//! Waiting allocations (illumos' `VM_SLEEP`, FreeBSD's `M_WAITOK`):
//! [`Arena::alloc_wait`] retries an exhausted arena each time one of its
//! segments is freed, until it succeeds or its timeout passes, through a
//! [`Waiter`] the platform provides (std: [`CondvarWaiter`] with the `std`
//! feature; a kernel: its wait queue). Only `alloc_wait` waits: `alloc`
//! and `xalloc` never do.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::{AllocError, Arena, Policy};

/// How a caller sleeps until an arena frees something.
pub trait Waiter: Sync {
    /// Blocks the caller while `changed` still reads `seen`, at most for
    /// `timeout` (`None`: no limit); returns false when the timeout passed
    /// first. May return early (the caller checks again). The check of
    /// `changed` and the sleep must not let a [`wake_all`](Self::wake_all)
    /// slip between them (take the lock `wake_all` takes around both).
    fn wait(&self, changed: &AtomicU64, seen: u64, timeout: Option<Duration>) -> bool;

    /// Wakes every caller in [`wait`](Self::wait); `changed` was bumped
    /// before.
    fn wake_all(&self);
}

impl Arena<'_> {
    /// Sets the [`Waiter`] through which [`alloc_wait`](Self::alloc_wait)
    /// sleeps (replacing any earlier one). `'static`, as a platform's wait
    /// queue is.
    pub fn set_waiter(&self, w: &'static dyn Waiter) {
        *self.waiter.lock() = Some(w);
    }

    /// [`alloc`](Self::alloc) that waits, while the arena is exhausted (or
    /// at its limit; for a base arena, also out of memory to carve boundary
    /// tags from), for segments to be freed, retrying after each free,
    /// at most for `timeout` (`None`: no limit); then
    /// [`AllocError::TimedOut`]. Without a waiter set, it does not wait:
    /// it is `alloc`. Frees of segments wake it; objects freed into quantum
    /// caches do not (the retry's reclaim asks them). Without the `std`
    /// feature the time already waited is not known, and `timeout` bounds
    /// each wait rather than the whole call.
    pub fn alloc_wait(
        &self,
        size: usize,
        policy: Policy,
        timeout: Option<Duration>,
    ) -> Result<usize, AllocError> {
        let Some(waiter) = *self.waiter.lock() else {
            return self.alloc(size, policy);
        };
        // Counted before the first try, so a free after it wakes us.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _done = Waiting(self);
        let mut left = timeout;
        loop {
            let seen = self.freed.load(Ordering::SeqCst);
            match self.alloc(size, policy) {
                Err(e) if self.ran_out(e) => {}
                r => return r,
            }
            let start = Now::start();
            if !waiter.wait(&self.freed, seen, left) {
                return Err(AllocError::TimedOut);
            }
            left = left.map(|l| l.saturating_sub(start.elapsed()));
        }
    }

    /// After a free of a segment: wakes the callers of `alloc_wait`, if
    /// any (one atomic load otherwise).
    #[inline]
    pub(crate) fn wake_waiters(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.freed.fetch_add(1, Ordering::SeqCst);
        if let Some(w) = *self.waiter.lock() {
            w.wake_all();
        }
    }
}

/// Uncounts a caller of `alloc_wait` however it leaves.
struct Waiting<'x, 'a>(&'x Arena<'a>);

impl Drop for Waiting<'_, '_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Time spent waiting, where the platform can tell (std); elsewhere the
/// whole timeout is passed to each wait.
struct Now {
    #[cfg(feature = "std")]
    at: std::time::Instant,
}

impl Now {
    fn start() -> Self {
        Self {
            #[cfg(feature = "std")]
            at: std::time::Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        #[cfg(feature = "std")]
        return self.at.elapsed();
        #[cfg(not(feature = "std"))]
        Duration::ZERO
    }
}

/// A [`Waiter`] over std's `Mutex` and `Condvar` (futexes on Linux: no
/// allocation, so it serves under a global allocator too).
#[cfg(feature = "std")]
#[derive(Debug, Default)]
pub struct CondvarWaiter {
    lock: std::sync::Mutex<()>,
    cv: std::sync::Condvar,
}

#[cfg(feature = "std")]
impl CondvarWaiter {
    /// A waiter with no one waiting.
    pub const fn new() -> Self {
        Self {
            lock: std::sync::Mutex::new(()),
            cv: std::sync::Condvar::new(),
        }
    }
}

#[cfg(feature = "std")]
impl Waiter for CondvarWaiter {
    fn wait(&self, changed: &AtomicU64, seen: u64, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while changed.load(Ordering::SeqCst) == seen {
            match deadline {
                None => {
                    g = self
                        .cv
                        .wait(g)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        return false;
                    }
                    g = self
                        .cv
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
        }
        true
    }

    fn wake_all(&self) {
        let _g = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.cv.notify_all();
    }
}
