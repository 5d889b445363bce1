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

/// The lock of one shared slot, on its own cache line. A bare flag rather
/// than a `spin::Mutex`, so that a [`ThreadGuard`] is two words and comes
/// back from a call in registers.
#[repr(align(64))]
struct SharedSlot(AtomicBool);

impl SharedSlot {
    fn lock(&self) {
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.0.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

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

std::thread_local! {
    /// This thread's slot, or `UNCLAIMED`. No destructor, so reading it is a
    /// plain thread-local load with no registration check, and it stays
    /// readable while the thread's other thread-locals are torn down.
    static SLOT: Cell<usize> = const { Cell::new(UNCLAIMED) };
    /// A shared slot's lock is held by a guard of this thread.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
    /// Gives an exclusive slot back when its thread exits; touched once, on
    /// the claim, so that its destructor is registered.
    static OWNER: Owner = const { Owner };
}

/// The exit hook of a thread that owns an exclusive slot.
struct Owner;

impl Drop for Owner {
    fn drop(&mut self) {
        let Some(cpus) = GLOBAL.get() else { return };
        let slot = SLOT.get();
        if slot < cpus.exclusive {
            // From here on the thread (its remaining thread-local
            // destructors) pins a shared slot under its lock.
            SLOT.set(cpus.next_shared_slot());
            cpus.release(slot);
        }
    }
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
                .map(|_| SharedSlot(AtomicBool::new(false)))
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

    /// A thread's first pin: an exclusive slot if one is free and the thread
    /// can still run its exit hook, else a shared one.
    fn claim(&self) -> usize {
        for (slot, owned) in self.owned.iter().enumerate() {
            if !owned.load(Ordering::Relaxed)
                && owned
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                if OWNER.try_with(|_| ()).is_ok() {
                    return slot;
                }
                // The thread is exiting: nothing would give the slot back.
                owned.store(false, Ordering::Release);
                break;
            }
        }
        self.next_shared_slot()
    }

    fn next_shared_slot(&self) -> usize {
        self.exclusive + self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared
    }

    /// Pins a thread that has no exclusive slot: claims one on the first
    /// pin, else takes its shared slot's lock (not again if this thread
    /// already holds it).
    #[cold]
    #[inline(never)]
    fn pin_slow(&self, mut slot: usize) -> ThreadGuard<'_> {
        if slot == UNCLAIMED {
            slot = self.claim();
            SLOT.set(slot);
            if slot < self.exclusive {
                return ThreadGuard {
                    slot,
                    lock: None,
                    _not_send: PhantomData,
                };
            }
        }
        let nested = HOLDING.replace(true);
        self.lock_shared(slot, nested)
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
        let lock = (!nested).then(|| {
            let lock = &self.shared_locks[slot - self.exclusive];
            lock.lock();
            lock
        });
        ThreadGuard {
            slot,
            lock,
            _not_send: PhantomData,
        }
    }
}

/// The guard of [`ThreadCpus`].
pub struct ThreadGuard<'a> {
    slot: usize,
    /// The shared slot's lock this guard took (and releases on drop).
    lock: Option<&'a SharedSlot>,
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
        if let Some(lock) = self.lock {
            HOLDING.set(false);
            lock.unlock();
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

    #[inline(always)]
    fn pin(&self) -> ThreadGuard<'_> {
        let slot = SLOT.get();
        if slot < self.exclusive {
            return ThreadGuard {
                slot,
                lock: None,
                _not_send: PhantomData,
            };
        }
        self.pin_slow(slot)
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
