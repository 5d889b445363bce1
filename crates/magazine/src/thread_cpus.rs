//! [`ThreadCpus`]: the std platform. Each thread gets a slot of its own
//! while slots last, returns it (flushing its magazines to the depots) when
//! it exits, and shares lock-protected slots beyond that (a waiter for a
//! shared slot's lock sleeps on a futex, so a preempted holder costs the
//! waiters no CPU).
//!
//! Nothing here allocates — the instance is a `static`, the hooks form an
//! intrusive list, the CPU count and the clock come from `libc` — so the
//! platform can sit under a `#[global_allocator]` (`kmalloc::KmallocGlobal`).

extern crate std;

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use crate::cpu::{Cpu, CpuGuard, SlotHook};

/// At most this many exclusive slots (and shared ones), whatever the
/// machine: the static arrays are this long.
const MAX_EXCLUSIVE: usize = 1024;
const MAX_SHARED: usize = 64;

/// In [`SLOT`]: the slot is a shared one (the rest of the bits say which),
/// so pinning takes its lock. The fast path tests this bit alone, without
/// reading the instance.
const SHARED: usize = 1 << (usize::BITS - 1);

/// In [`SLOT`]: no slot yet (has the [`SHARED`] bit, so it takes the slow
/// path).
const UNCLAIMED: usize = usize::MAX;

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;

/// [`HOLDING`] states: no shared lock; taking or letting go of one (a
/// handler must neither nest nor wait); held.
const NOT_HELD: u8 = 0;
const TAKING: u8 = 1;
const HELD_HERE: u8 = 2;

/// The lock of one shared slot, on its own cache line: a futex lock
/// (Drepper's three states: free, held, held with sleepers). A waiter
/// spins a few tries while the holder may still be running, then sleeps
/// in the kernel until the holder lets go: with more threads than CPUs the
/// holder may have been preempted, and spinning on would burn the waiter's
/// time slice while the holder cannot run. A bare word rather than a
/// `spin::Mutex`, so that a [`ThreadGuard`] is two words and comes back
/// from a call in registers.
#[repr(align(64))]
struct SharedSlot(AtomicU32);

/// [`SharedSlot`] states.
const FREE: u32 = 0;
const HELD: u32 = 1;
const SLEEPERS: u32 = 2;

/// Tries a waiter makes on a shared slot's lock before it sleeps.
const SPINS_BEFORE_SLEEP: u32 = 64;

/// `futex(2)` on `word`: `FUTEX_WAIT_PRIVATE` while it holds `expected`,
/// or `FUTEX_WAKE_PRIVATE` of one sleeper.
fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: the futex word is a live, aligned `u32` of this process; the
    // kernel only reads it (a wait compares it with `val`); no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            ptr::null::<libc::timespec>(),
        );
    }
}

impl SharedSlot {
    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        for _ in 0..SPINS_BEFORE_SLEEP {
            match self.0.load(Ordering::Relaxed) {
                FREE if self.try_lock() => return,
                SLEEPERS => break,
                _ => core::hint::spin_loop(),
            }
        }
        // Announce a sleeper; whoever lets go next wakes one.
        while self.0.swap(SLEEPERS, Ordering::Acquire) != FREE {
            futex(
                &self.0,
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                SLEEPERS,
            );
        }
    }

    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn unlock(&self) {
        if self.0.swap(FREE, Ordering::Release) == SLEEPERS {
            futex(&self.0, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
        }
    }
}

/// The head of the intrusive list of registered hooks.
struct Hooks(*const SlotHook);

// SAFETY: the pointers are only followed under the `hooks` lock, and a hook
// stays valid while it is on the list (the `Cpu::register` contract).
unsafe impl Send for Hooks {}

/// The process's CPU slots for the magazine layer in user space.
///
/// Slots `0..exclusive` are owned by one thread each, claimed on the thread's
/// first [`pin`](Cpu::pin): pinning is a thread-local read, no atomic
/// read-modify-write. When they are all taken, further threads share the
/// slots `exclusive..exclusive + shared`, taking a per-slot futex lock
/// (reentrant on the thread) while pinned. When an owning thread exits, every
/// registered magazine layer flushes that slot's magazines to its depot and
/// the slot is free again.
///
/// There is one instance, [`ThreadCpus::global`]: a thread's slot number is
/// a thread-local, so it can only index one set of slots.
pub struct ThreadCpus {
    state: AtomicU8,
    /// Set once, by `init`, before `state` becomes `READY`.
    exclusive: AtomicUsize,
    shared: AtomicUsize,
    owned: [AtomicBool; MAX_EXCLUSIVE],
    shared_locks: [SharedSlot; MAX_SHARED],
    next_shared: AtomicUsize,
    hooks: spin::Mutex<Hooks>,
}

static GLOBAL: ThreadCpus = ThreadCpus {
    state: AtomicU8::new(UNINIT),
    exclusive: AtomicUsize::new(0),
    shared: AtomicUsize::new(0),
    owned: [const { AtomicBool::new(false) }; MAX_EXCLUSIVE],
    shared_locks: [const { SharedSlot(AtomicU32::new(FREE)) }; MAX_SHARED],
    next_shared: AtomicUsize::new(0),
    hooks: spin::Mutex::new(Hooks(ptr::null())),
};

std::thread_local! {
    /// This thread's exclusive slot; a shared slot with the `SHARED` bit
    /// set; or `UNCLAIMED`. No destructor, so reading it is a plain
    /// thread-local load with no registration check, and it stays readable
    /// while the thread's other thread-locals are torn down.
    static SLOT: Cell<usize> = const { Cell::new(UNCLAIMED) };
    /// Whether a guard of this thread holds a shared slot's lock:
    /// `NOT_HELD`, `HELD_HERE`, or `TAKING` while it is being taken or let
    /// go (a signal handler that interrupts then must neither nest into
    /// the slot, which another thread may hold, nor wait for the lock,
    /// which this thread may hold).
    static HOLDING: Cell<u8> = const { Cell::new(NOT_HELD) };
    /// Gives an exclusive slot back when its thread exits; touched once, on
    /// the claim, so that its destructor is registered.
    static OWNER: Owner = const { Owner };
    /// The thread is inside an allocator operation ([`Cpu::enter`]); a
    /// signal handler that interrupts it finds this set. No destructor.
    static ENTERED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the thread busy (or says it was) for as long as `f` runs, so a
/// signal handler allocating meanwhile is turned away from its slot.
fn busy<R>(f: impl FnOnce() -> R) -> R {
    let was = ENTERED.replace(true);
    compiler_fence(Ordering::SeqCst);
    let r = f();
    compiler_fence(Ordering::SeqCst);
    ENTERED.set(was);
    r
}

/// The exit hook of a thread that owns an exclusive slot.
struct Owner;

impl Drop for Owner {
    fn drop(&mut self) {
        let cpus = &GLOBAL;
        let slot = SLOT.get();
        if slot & SHARED == 0 {
            // From here on the thread (its remaining thread-local
            // destructors) pins a shared slot under its lock.
            SLOT.set(cpus.next_shared_slot() | SHARED);
            busy(|| cpus.release(slot));
        }
    }
}

/// `membarrier(2)` commands (`linux/membarrier.h`).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// A private expedited `membarrier`: a full memory barrier on every CPU
/// running a thread of this process. Registers the process when the
/// kernel says it is not registered (first use); false if the kernel has
/// no such command.
fn membarrier() -> bool {
    let call = |cmd: libc::c_long| {
        // SAFETY: membarrier takes integers and touches no memory of ours.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        }
    };
    if call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0 {
        return true;
    }
    // EPERM: not registered yet. Registering twice is harmless.
    call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
        && call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0
}

/// CPUs this process may run on (its affinity mask), at least 1.
fn online_cpus() -> usize {
    // SAFETY: `set` is a plain bitmask the call fills in; `CPU_COUNT` reads
    // it. Neither allocates.
    let affinity = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set) as usize
        } else {
            0
        }
    };
    if affinity > 0 {
        return affinity;
    }
    // SAFETY: a query with no pointers.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(1).max(1)
}

impl ThreadCpus {
    /// The process-wide instance: one shared slot per CPU (at most 64),
    /// and `4 × CPUs` exclusive slots, at least 64 (so that a program with
    /// tens of threads on a small machine gives each its own), rounded up
    /// so that all the slots make a multiple of 64 (at most 1024
    /// exclusive): 126 and 2 on 2 CPUs. Sized on first use from the
    /// process's CPU affinity. Every object cache keeps a 64-byte slot
    /// record per slot, so 64 slots fill a 4 KiB page.
    #[inline]
    pub fn global() -> &'static ThreadCpus {
        if GLOBAL.state.load(Ordering::Acquire) != READY {
            GLOBAL.init();
        }
        &GLOBAL
    }

    #[cold]
    fn init(&self) {
        if self
            .state
            .compare_exchange(UNINIT, INITIALIZING, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
        {
            let n = online_cpus();
            let shared = n.min(MAX_SHARED);
            // All the slots a multiple of 64: a cache's 64-byte slot records
            // then fill whole 4 KiB pages, the extra exclusive slots in the
            // last page costing no memory.
            let exclusive = ((4 * n).max(64) + shared).next_multiple_of(64) - shared;
            self.exclusive
                .store(exclusive.min(MAX_EXCLUSIVE), Ordering::Relaxed);
            self.shared.store(shared, Ordering::Relaxed);
            self.state.store(READY, Ordering::Release);
            return;
        }
        while self.state.load(Ordering::Acquire) != READY {
            core::hint::spin_loop();
        }
    }

    /// Takes the platform's locks (every shared slot's, then the hook
    /// list's) and keeps them, for a `fork()`: call it first in a
    /// `pthread_atfork` prepare handler, before the locks of the layers
    /// above, and [`fork_unlock`](Self::fork_unlock) in the parent and the
    /// child. In the child, the exclusive slots of the threads that were not
    /// copied stay claimed (their magazines are lost to it, not corrupted).
    pub fn fork_lock(&self) {
        for lock in &self.shared_locks[..self.shared_slots()] {
            lock.lock();
        }
        core::mem::forget(self.hooks.lock());
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took.
    ///
    /// # Safety
    /// [`fork_lock`](Self::fork_lock) was called (in this process, or in
    /// the parent before the `fork()` that made it) and not undone since.
    pub unsafe fn fork_unlock(&self) {
        // SAFETY: held since `fork_lock`, whose guard was forgotten.
        unsafe { self.hooks.force_unlock() };
        for lock in &self.shared_locks[..self.shared_slots()] {
            lock.unlock();
        }
    }

    /// Slots owned by one thread each.
    #[inline]
    pub fn exclusive_slots(&self) -> usize {
        self.exclusive.load(Ordering::Relaxed)
    }

    /// Exclusive slots a thread owns now (each thread gives its slot back
    /// when it exits).
    pub fn owned_slots(&self) -> usize {
        self.owned[..self.exclusive_slots()]
            .iter()
            .filter(|o| o.load(Ordering::Relaxed))
            .count()
    }

    /// Slots shared under a lock.
    pub fn shared_slots(&self) -> usize {
        self.shared.load(Ordering::Relaxed)
    }

    /// A thread's first pin: an exclusive slot if one is free and the thread
    /// can still run its exit hook, else a shared one.
    fn claim(&self) -> usize {
        for (slot, owned) in self.owned[..self.exclusive_slots()].iter().enumerate() {
            if !owned.load(Ordering::Relaxed)
                && owned
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // The slot is the thread's from here on: registering the
                // exit hook may allocate (glibc's thread-exit list, through
                // this very allocator when it is the process's C malloc),
                // and that nested pin must find this slot rather than
                // claim another that no hook would give back.
                SLOT.set(slot);
                if OWNER.try_with(|_| ()).is_ok() {
                    return slot;
                }
                // The thread is exiting: nothing would give the slot back.
                SLOT.set(UNCLAIMED);
                owned.store(false, Ordering::Release);
                break;
            }
        }
        self.next_shared_slot()
    }

    fn next_shared_slot(&self) -> usize {
        self.exclusive_slots()
            + self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared_slots()
    }

    /// Pins a thread that has no exclusive slot: claims one on the first
    /// pin, else takes its shared slot's lock (not again if this thread
    /// already holds it).
    #[cold]
    #[inline(never)]
    fn pin_slow(&self, slot: usize) -> ThreadGuard<'_> {
        let slot = match self.claimed(slot) {
            Ok(guard) => return guard,
            Err(shared) => shared,
        };
        let nested = HOLDING.get() == HELD_HERE;
        self.lock_shared(slot, nested)
    }

    /// A thread with no slot yet claims one: an exclusive one comes back
    /// pinned (`Ok`); otherwise, or for a thread on a shared slot already,
    /// the shared slot it is to lock (`Err`).
    fn claimed(&self, slot: usize) -> Result<ThreadGuard<'_>, usize> {
        if slot != UNCLAIMED {
            return Err(slot & !SHARED);
        }
        let slot = self.claim();
        if slot < self.exclusive_slots() {
            SLOT.set(slot);
            return Ok(ThreadGuard {
                slot,
                lock: None,
                _not_send: PhantomData,
            });
        }
        SLOT.set(slot | SHARED);
        Err(slot)
    }

    /// `try_pin` past the fast path: inside an operation (a signal handler
    /// may be running on this thread), no waiting for a shared slot's lock,
    /// whose holder may wait for a lock the interrupted code holds.
    #[cold]
    #[inline(never)]
    fn try_pin_slow(&self, slot: usize) -> Option<ThreadGuard<'_>> {
        match HOLDING.get() {
            HELD_HERE => return Some(self.pin_slow(slot)),
            TAKING => return None,
            _ if !ENTERED.get() => return Some(self.pin_slow(slot)),
            _ => {}
        }
        let slot = match self.claimed(slot) {
            Ok(guard) => return Some(guard),
            Err(shared) => shared,
        };
        let lock = &self.shared_locks[slot - self.exclusive_slots()];
        if !lock.try_lock() {
            return None;
        }
        compiler_fence(Ordering::SeqCst);
        HOLDING.set(HELD_HERE);
        Some(ThreadGuard {
            slot,
            lock: Some(lock),
            _not_send: PhantomData,
        })
    }

    fn release(&self, slot: usize) {
        let hooks = self.hooks.lock();
        let mut at = hooks.0;
        while !at.is_null() {
            // SAFETY: a registered hook stays valid while it is on the list,
            // which `unregister` cannot change while we hold the lock; this
            // thread owns `slot` until the store below.
            let hook = unsafe { &*at };
            // SAFETY: as above.
            unsafe { hook.call(slot) };
            at = hook.next();
        }
        drop(hooks);
        self.owned[slot].store(false, Ordering::Release);
    }

    fn lock_shared(&self, slot: usize, nested: bool) -> ThreadGuard<'_> {
        let lock = (!nested).then(|| {
            let lock = &self.shared_locks[slot - self.exclusive_slots()];
            HOLDING.set(TAKING);
            compiler_fence(Ordering::SeqCst);
            lock.lock();
            compiler_fence(Ordering::SeqCst);
            HOLDING.set(HELD_HERE);
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
        self.lock.is_none() && self.slot < GLOBAL.exclusive_slots()
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
            HOLDING.set(TAKING);
            compiler_fence(Ordering::SeqCst);
            lock.unlock();
            compiler_fence(Ordering::SeqCst);
            HOLDING.set(NOT_HELD);
        }
    }
}

// SAFETY: an exclusive slot is owned by one thread from its claim (an
// acquire CAS) until its release (a release store after the hooks ran on
// that thread); shared slots are pinned under their lock, nested only on the
// thread that holds it; slots() is fixed once `global()` has returned (the
// only way to reach the instance); hooks run on the owning thread under the
// hook lock, which `unregister` takes; `fence_slots` says true only after a
// private expedited `membarrier`, which runs a full barrier on every running
// thread of the process (and a thread that is not running passes one when
// it is scheduled), so every thread's compiler fence stands as a full fence
// paired with it.
unsafe impl Cpu for ThreadCpus {
    type Guard<'a> = ThreadGuard<'a>;

    fn slots(&self) -> usize {
        self.exclusive_slots() + self.shared_slots()
    }

    #[inline(always)]
    fn pin(&self) -> ThreadGuard<'_> {
        let slot = SLOT.get();
        // Only `claim` stores a slot without the `SHARED` bit, and only an
        // exclusive slot this thread owns.
        if slot & SHARED == 0 {
            return ThreadGuard {
                slot,
                lock: None,
                _not_send: PhantomData,
            };
        }
        self.pin_slow(slot)
    }

    #[inline(always)]
    fn try_pin(&self) -> Option<ThreadGuard<'_>> {
        let slot = SLOT.get();
        if slot & SHARED == 0 {
            return Some(ThreadGuard {
                slot,
                lock: None,
                _not_send: PhantomData,
            });
        }
        self.try_pin_slow(slot)
    }

    fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-parameter; the monotonic clock always
        // exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }

    fn fence_slots(&self) -> bool {
        membarrier()
    }

    unsafe fn register(&self, hook: &SlotHook) {
        let mut hooks = self.hooks.lock();
        // SAFETY: under the list's lock; the old head is on the list.
        unsafe { hook.set_next(hooks.0) };
        hooks.0 = hook;
    }

    const OWNED_SLOTS: bool = true;

    #[inline(always)]
    fn owned_slot(&self) -> Option<usize> {
        let slot = SLOT.get();
        // As in `pin`: only `claim` stores a slot without the `SHARED` bit,
        // an exclusive slot this thread owns until its exit hook runs
        // (which sets the bit first).
        (slot & SHARED == 0).then_some(slot)
    }

    fn current_slot(&self) -> Option<usize> {
        let slot = SLOT.get();
        (slot != UNCLAIMED).then_some(slot & !SHARED)
    }

    #[inline(always)]
    fn enter(&self) -> bool {
        if ENTERED.get() {
            return false;
        }
        ENTERED.set(true);
        // A signal handler runs on this thread: what it sees is ordered by
        // the compiler alone.
        compiler_fence(Ordering::SeqCst);
        true
    }

    #[inline(always)]
    unsafe fn leave(&self) {
        compiler_fence(Ordering::SeqCst);
        ENTERED.set(false);
    }

    fn unregister(&self, hook: &SlotHook) {
        let mut hooks = self.hooks.lock();
        let target: *const SlotHook = hook;
        if hooks.0 == target {
            hooks.0 = hook.next();
            return;
        }
        let mut at = hooks.0;
        while !at.is_null() {
            // SAFETY: registered hooks are valid while on the list, which the
            // held lock keeps still.
            let h = unsafe { &*at };
            if h.next() == target {
                // SAFETY: under the list's lock; `hook`'s successor is on
                // the list (or null).
                unsafe { h.set_next(hook.next()) };
                return;
            }
            at = h.next();
        }
    }
}
