//! "Which CPU am I": the platform trait the magazine layer runs on, and
//! [`ManualCpus`], a provider whose current slot is chosen explicitly.

use core::marker::PhantomData;
use core::sync::atomic::AtomicPtr;

use crate::sync::{const_fn, mutexes, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};

/// A platform's CPUs as the magazine layer sees them: a fixed number of
/// slots, the caller's current slot, and a clock.
///
/// A kernel implements [`pin`](Cpu::pin) by disabling preemption (and
/// interrupts, if interrupt handlers allocate); a user-space platform gives a
/// thread exclusive use of a slot, or takes a per-slot lock when it must
/// share one ([`ThreadCpus`](crate::ThreadCpus) does both).
///
/// # Safety
/// The magazine layer reads and writes a slot's state without atomics while
/// it holds a guard for that slot, so implementors promise:
/// - while a guard for slot `s` is alive on one thread, no guard for `s` is
///   alive on any other thread (guards nested on the same thread are
///   allowed);
/// - [`CpuGuard::slot`] is below [`slots`](Cpu::slots), and `slots` never
///   changes;
/// - a registered [`SlotHook`] is only called for a slot while the caller
///   has exclusive use of that slot, and never after
///   [`unregister`](Cpu::unregister) for it has returned;
/// - a slot that [`owned_slot`](Cpu::owned_slot) returns is below `slots`
///   and the calling thread's alone, as if it held a guard for it, until
///   the thread gives the slot up (at its exit): no guard for it is alive
///   on another thread, and no other thread is told it owns it;
/// - when [`fence_slots`](Cpu::fence_slots) returns true, it was a heavy
///   fence paired with every slot holder's compiler fences (see there).
pub unsafe trait Cpu: Sync {
    /// What [`pin`](Cpu::pin) returns; dropping it releases the slot.
    type Guard<'a>: CpuGuard
    where
        Self: 'a;

    /// Number of slots; per-CPU state is an array of this length.
    fn slots(&self) -> usize;

    /// Keeps the caller on its current slot until the guard drops.
    fn pin(&self) -> Self::Guard<'_>;

    /// [`pin`](Cpu::pin), unless the caller interrupted code of its own
    /// context that holds a guard (a signal or interrupt handler: the slot's
    /// state may be half-changed) or would have to wait for a guard that
    /// such code may be needed to release: then `None`, and the magazine
    /// layer leaves its magazines alone. The default never refuses.
    #[inline(always)]
    fn try_pin(&self) -> Option<Self::Guard<'_>> {
        Some(self.pin())
    }

    /// True when [`owned_slot`](Cpu::owned_slot) may say `Some`: the
    /// magazine layer then inlines its fast paths for an owned slot only,
    /// and calls out for a pinned one. False (the default): the pinned
    /// path is the one inlined.
    const OWNED_SLOTS: bool = false;

    /// The caller's slot when it is the caller's own with no guard at all
    /// (pinning it would take nothing, and dropping the guard would do
    /// nothing): the magazine layer's fast paths then skip the guard.
    /// `None` makes them [`try_pin`](Cpu::try_pin), which is the default.
    /// A platform whose pinning does work (disables preemption, takes a
    /// lock) must return `None` whenever that work is needed. Only asked
    /// when [`OWNED_SLOTS`](Cpu::OWNED_SLOTS) is true.
    #[inline(always)]
    fn owned_slot(&self) -> Option<usize> {
        None
    }

    /// Monotonic time in nanoseconds, for the magazine resize window.
    fn now_ns(&self) -> u64;

    /// Asks to hear when a slot's owner goes away (a thread exits), so the
    /// layer can move that slot's magazines to its depot. Platforms whose
    /// slots never go away keep the default, which ignores the hook. The
    /// hook lives in its registrant and carries the link a platform needs
    /// to keep it on a list, so registering allocates nothing.
    ///
    /// # Safety
    /// `hook` stays at its address and valid (its registrant alive) until
    /// [`unregister`](Cpu::unregister) has been called with it.
    unsafe fn register(&self, hook: &SlotHook) {
        let _ = hook;
    }

    /// Withdraws a registered hook; when this returns, no call to it is
    /// running or will start.
    fn unregister(&self, hook: &SlotHook) {
        let _ = hook;
    }

    /// Marks the caller's context (its thread; in a kernel, its CPU and
    /// interrupt level) as inside an allocator operation, until
    /// [`leave`](Cpu::leave). Returns false, changing nothing, when the
    /// context already is: the caller interrupted an operation of its own
    /// context (a signal or interrupt handler), so it must not touch the
    /// slot's magazines nor wait for a lock, which the interrupted operation
    /// may hold. Use it through [`Section`].
    ///
    /// The default detects nothing and always returns true: right for a
    /// platform whose interrupt handlers never allocate, or whose
    /// [`pin`](Cpu::pin) masks interrupts for whole operations.
    #[inline(always)]
    fn enter(&self) -> bool {
        true
    }

    /// The caller's slot if the platform can tell without pinning (a
    /// thread-local read), for work that needs no exclusive use of it: a
    /// handler that interrupted an allocator call pushes deferred frees onto
    /// a lock-free stack of its slot this way, since pinning could wait for
    /// a lock (a shared slot's) whose holder waits for one the interrupted
    /// call holds. Any slot below [`slots`](Cpu::slots) is correct; the
    /// default, `None`, makes such callers pin instead.
    #[inline(always)]
    fn current_slot(&self) -> Option<usize> {
        None
    }

    /// A fence that, for every thread holding or about to hold a slot,
    /// orders the caller against that thread as a sequentially consistent
    /// fence would if the thread had one where it has a compiler fence
    /// (`compiler_fence(SeqCst)`): either the thread's stores before its
    /// compiler fence are visible to the caller's loads after this call, or
    /// the caller's stores before this call are visible to the thread's
    /// loads after its compiler fence. Returns false, having done nothing,
    /// when the platform cannot (the default).
    ///
    /// A purge ([`Magazines::purge`](crate::Magazines::purge)) needs it to
    /// take an idle slot's magazines without making the slot's holders pay
    /// for an atomic read-modify-write on every operation: holders mark
    /// themselves busy, compiler-fence and read the purge's claim; the
    /// purge writes its claim, runs this fence and reads the mark. Without
    /// it a purge only asks the holders to flush at their next operation.
    ///
    /// Linux user space gets it from `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`
    /// ([`ThreadCpus`](crate::ThreadCpus) does); a kernel from an
    /// inter-processor interrupt to every CPU (each runs a full barrier),
    /// and a platform whose guards hold a lock per slot from taking and
    /// releasing every slot's lock ([`ManualCpus`], which says false if
    /// one is held: a purge must not wait for a guard its caller may
    /// hold). Returning true
    /// without this ordering breaks the trait's contract.
    fn fence_slots(&self) -> bool {
        false
    }

    /// Ends the operation a successful [`enter`](Cpu::enter) began.
    ///
    /// # Safety
    /// The context entered successfully and has not left since (sections
    /// end in the reverse order they began).
    #[inline(always)]
    unsafe fn leave(&self) {}
}

/// An allocator operation in progress in the caller's context (see
/// [`Cpu::enter`]): made by [`Section::enter`], ended when dropped.
///
/// Operations that take the magazine layer's or the slab layer's locks run
/// inside a section, so that a signal or interrupt handler which interrupts
/// one and allocates finds the context busy and takes a path that touches
/// neither the slot nor a lock. Forgetting a section leaves the context
/// busy: every later operation there is refused, nothing is corrupted.
#[must_use = "the section ends when dropped"]
pub struct Section<'c, C: Cpu + ?Sized> {
    cpu: &'c C,
    /// Tied to the context that entered.
    _not_send: PhantomData<*const ()>,
}

impl<'c, C: Cpu + ?Sized> Section<'c, C> {
    /// Begins an operation, or `None` if the context is inside one already.
    #[inline(always)]
    pub fn enter(cpu: &'c C) -> Option<Self> {
        // Not `then_some`: its argument, a section, would be built (and,
        // dropped, would leave) even when `enter` says no.
        if cpu.enter() {
            Some(Self {
                cpu,
                _not_send: PhantomData,
            })
        } else {
            None
        }
    }

    /// Runs `f` with the context's mark lifted, if it is inside an
    /// operation, and puts the mark back afterwards: a call-out to code that
    /// may allocate (a constructor, a destructor) from the middle of an
    /// operation.
    ///
    /// # Safety
    /// The caller holds no slot state and no lock that an allocation made by
    /// `f` could reach: lifting the mark lets such an allocation use them.
    pub unsafe fn outside<R>(cpu: &C, f: impl FnOnce() -> R) -> R {
        // Entering says whether the context was inside; leaving then undoes
        // that entry, or lifts the outer operation's mark.
        let inside = !cpu.enter();
        // SAFETY: the context is entered at this point, either way.
        unsafe { cpu.leave() };
        let r = f();
        if inside {
            // A section `f` forgot leaves the context marked, which is what
            // is wanted here anyway.
            let _ = cpu.enter();
        }
        r
    }
}

impl<C: Cpu + ?Sized> Drop for Section<'_, C> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: `enter` succeeded for this section; sections are dropped
        // in reverse order of creation on their (single) context.
        unsafe { self.cpu.leave() }
    }
}

/// Proof that the caller stays on one slot; see [`Cpu::pin`].
pub trait CpuGuard {
    /// The slot the caller is on.
    fn slot(&self) -> usize;
}

/// A callback a [`Cpu`] makes when a slot's owner goes away: a function,
/// the registrant it is bound to, and a link for the platform's list of
/// hooks (touched only by the platform, under its own lock).
#[derive(Debug)]
pub struct SlotHook {
    flush: unsafe fn(data: *const (), slot: usize),
    data: AtomicPtr<()>,
    next: AtomicPtr<SlotHook>,
}

impl SlotHook {
    /// A hook calling `flush(data, slot)`, not yet bound to a registrant.
    pub const fn new(flush: unsafe fn(data: *const (), slot: usize)) -> Self {
        Self {
            flush,
            data: AtomicPtr::new(core::ptr::null_mut()),
            next: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Binds the hook to its registrant (before registering it).
    ///
    /// # Safety
    /// The hook is not registered (or the platform calls it only after
    /// this), and `data` is what `flush` expects until it is unregistered.
    pub unsafe fn bind(&self, data: *const ()) {
        self.data.store(data.cast_mut(), Ordering::Relaxed);
    }

    /// Runs the hook for `slot`.
    ///
    /// # Safety
    /// The [`Cpu`] contract: the caller has exclusive use of `slot`, and
    /// the hook is registered (its registrant alive).
    pub unsafe fn call(&self, slot: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { (self.flush)(self.data.load(Ordering::Relaxed), slot) }
    }

    /// The next hook on the platform's list.
    pub fn next(&self) -> *const SlotHook {
        self.next.load(Ordering::Relaxed)
    }

    /// Links the next hook on the platform's list (under its lock). Only a
    /// platform may, so the call is `unsafe`:
    ///
    /// ```compile_fail,E0133
    /// use kmem_magazine::SlotHook;
    ///
    /// unsafe fn flush(_data: *const (), _slot: usize) {}
    /// let hook = SlotHook::new(flush);
    /// hook.set_next(0x1000 as *const SlotHook); // a platform would walk into it
    /// ```
    ///
    /// # Safety
    /// Only the platform that registered the hook calls this, under the lock
    /// of its list, and `next` is null or a hook on that list.
    pub unsafe fn set_next(&self, next: *const SlotHook) {
        self.next.store(next.cast_mut(), Ordering::Relaxed);
    }
}

/// A [`Cpu`] with `N` slots whose current slot and clock are set by hand.
///
/// Every thread is on the slot last passed to [`set_slot`](Self::set_slot);
/// [`pin`](Cpu::pin) takes that slot's lock, so any use is safe, and tests
/// can move magazines between "CPUs" deterministically. Not reentrant:
/// pinning again on a thread that holds a guard for the same slot spins
/// forever.
pub struct ManualCpus<const N: usize> {
    current: AtomicUsize,
    clock: AtomicU64,
    locks: [Mutex<()>; N],
}

impl<const N: usize> Default for ManualCpus<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ManualCpus<N> {
    const_fn! {
        /// `N` slots, the current one 0, the clock at 0.
        pub fn new() -> Self {
            assert!(N > 0, "kmem-magazine: ManualCpus needs a slot");
            Self {
                current: AtomicUsize::new(0),
                clock: AtomicU64::new(0),
                locks: mutexes(),
            }
        }
    }

    /// Moves every caller to `slot`.
    ///
    /// # Panics
    /// Panics if `slot >= N`.
    pub fn set_slot(&self, slot: usize) {
        assert!(slot < N, "kmem-magazine: slot {slot} of {N}");
        self.current.store(slot, Ordering::Relaxed);
    }

    /// Advances the clock by `ns`.
    pub fn advance(&self, ns: u64) {
        self.clock.fetch_add(ns, Ordering::Relaxed);
    }
}

/// The guard of [`ManualCpus`]: holds the slot's lock.
pub struct ManualGuard<'a> {
    slot: usize,
    _lock: MutexGuard<'a, ()>,
}

impl CpuGuard for ManualGuard<'_> {
    fn slot(&self) -> usize {
        self.slot
    }
}

// SAFETY: a guard holds its slot's lock, so guards for one slot exclude each
// other; `slot < N` by `set_slot`; hooks are never called; `fence_slots`
// says true only after taking and releasing every slot's lock, which orders
// the caller after every holder that released it and before every holder
// that takes it next (a stronger order than the heavy fence's).
unsafe impl<const N: usize> Cpu for ManualCpus<N> {
    type Guard<'a> = ManualGuard<'a>;

    fn slots(&self) -> usize {
        N
    }

    fn pin(&self) -> ManualGuard<'_> {
        let slot = self.current.load(Ordering::Relaxed);
        ManualGuard {
            slot,
            _lock: self.locks[slot].lock(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// True when every slot's lock could be taken (and released) without
    /// waiting: a slot held meanwhile (perhaps by the caller) makes it
    /// false, so that a purge asks instead of waiting.
    fn fence_slots(&self) -> bool {
        self.locks.iter().all(|lock| lock.try_lock().is_some())
    }
}
