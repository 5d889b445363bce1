//! [`ThreadCpus`]: the std platform. Each thread gets a slot of its own
//! while slots last, returns it (flushing its magazines to the depots) when
//! it exits, and shares lock-protected slots beyond that.

extern crate std;

use core::cell::Cell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::boxed::Box;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use std::vec::Vec;

use crate::cpu::{Cpu, CpuGuard, SlotHook};

const UNCLAIMED: usize = usize::MAX;

#[repr(align(64))]
struct SharedSlot(spin::Mutex<()>);

/// The process's CPU slots for the magazine layer in user space.
///
/// Slots `0..exclusive` are owned by one thread each, claimed on the thread's
/// first [`pin`](Cpu::pin): pinning is a thread-local read, no atomic
/// read-modify-write. When they are all taken, further threads share the
/// slots `exclusive..exclusive + shared`, taking a per-slot lock (reentrant
/// on the thread) while pinned. When an owning thread exits, every
/// registered magazine layer flushes that slot's magazines to its depot and
/// the slot is free again.
pub struct ThreadCpus {
    exclusive: usize,
    shared: usize,
    owned: Box<[AtomicBool]>,
    shared_locks: Box<[SharedSlot]>,
    next_shared: AtomicUsize,
    hooks: Mutex<Vec<SlotHook>>,
    epoch: Instant,
}

static GLOBAL: OnceLock<ThreadCpus> = OnceLock::new();

struct Claim {
    slot: Cell<usize>,
    /// A shared slot's lock is held by a guard of this thread.
    holding: Cell<bool>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let slot = self.slot.get();
        if let Some(cpus) = GLOBAL.get() {
            if slot < cpus.exclusive {
                cpus.release(slot);
            }
        }
    }
}

std::thread_local! {
    static CLAIM: Claim = const {
        Claim { slot: Cell::new(UNCLAIMED), holding: Cell::new(false) }
    };
}

impl ThreadCpus {
    /// The process-wide instance: `4 × available_parallelism` exclusive
    /// slots (at least 8, at most 256) and `available_parallelism` shared
    /// ones.
    pub fn global() -> &'static ThreadCpus {
        GLOBAL.get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(4, |n| n.get());
            ThreadCpus::new((4 * n).clamp(8, 256), n.max(1))
        })
    }

    fn new(exclusive: usize, shared: usize) -> Self {
        Self {
            exclusive,
            shared,
            owned: (0..exclusive).map(|_| AtomicBool::new(false)).collect(),
            shared_locks: (0..shared)
                .map(|_| SharedSlot(spin::Mutex::new(())))
                .collect(),
            next_shared: AtomicUsize::new(0),
            hooks: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        }
    }

    /// Slots owned by one thread each.
    pub fn exclusive_slots(&self) -> usize {
        self.exclusive
    }

    /// Slots shared under a lock.
    pub fn shared_slots(&self) -> usize {
        self.shared
    }

    fn claim(&self) -> usize {
        for (slot, owned) in self.owned.iter().enumerate() {
            if !owned.load(Ordering::Relaxed)
                && owned
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return slot;
            }
        }
        self.exclusive + self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared
    }

    fn release(&self, slot: usize) {
        let hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        for hook in hooks.iter() {
            // SAFETY: this thread owns `slot` until the store below, and a
            // registered hook stays valid while it is in the list, which
            // `unregister` cannot change while we hold the lock.
            unsafe { (hook.flush)(hook.data, slot) };
        }
        drop(hooks);
        self.owned[slot].store(false, Ordering::Release);
    }

    fn lock_shared(&self, slot: usize, nested: bool) -> ThreadGuard<'_> {
        ThreadGuard {
            slot,
            lock: (!nested).then(|| self.shared_locks[slot - self.exclusive].0.lock()),
            _not_send: PhantomData,
        }
    }
}

/// The guard of [`ThreadCpus`].
pub struct ThreadGuard<'a> {
    slot: usize,
    lock: Option<spin::MutexGuard<'a, ()>>,
    _not_send: PhantomData<*const ()>,
}

impl ThreadGuard<'_> {
    /// True when the slot is this thread's own (no lock taken).
    pub fn is_exclusive(&self) -> bool {
        self.lock.is_none() && GLOBAL.get().is_some_and(|c| self.slot < c.exclusive)
    }
}

impl CpuGuard for ThreadGuard<'_> {
    #[inline]
    fn slot(&self) -> usize {
        self.slot
    }
}

impl Drop for ThreadGuard<'_> {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = CLAIM.try_with(|c| c.holding.set(false));
        }
    }
}

// SAFETY: an exclusive slot is owned by one thread from its claim (an
// acquire CAS) until its release (a release store after the hooks ran on
// that thread); shared slots are pinned under their lock, nested only on the
// thread that holds it; slots() is fixed at construction; hooks run on the
// owning thread under `hooks`, which `unregister` takes.
unsafe impl Cpu for ThreadCpus {
    type Guard<'a> = ThreadGuard<'a>;

    fn slots(&self) -> usize {
        self.exclusive + self.shared
    }

    #[inline]
    fn pin(&self) -> ThreadGuard<'_> {
        let pinned = CLAIM.try_with(|c| {
            let mut slot = c.slot.get();
            if slot == UNCLAIMED {
                slot = self.claim();
                c.slot.set(slot);
            }
            if slot < self.exclusive {
                return ThreadGuard {
                    slot,
                    lock: None,
                    _not_send: PhantomData,
                };
            }
            let nested = c.holding.replace(true);
            self.lock_shared(slot, nested)
        });
        // A thread whose slot is gone (its thread-locals are being torn
        // down) pins a shared slot under its lock.
        pinned.unwrap_or_else(|_| {
            let slot =
                self.exclusive + self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared;
            self.lock_shared(slot, false)
        })
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    unsafe fn register(&self, hook: SlotHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    fn unregister(&self, data: *const ()) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|h| h.data != data);
    }
}
