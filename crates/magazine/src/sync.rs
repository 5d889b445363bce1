//! The synchronization primitives the layer is built from, in one place, so
//! that the loom models (`tests/loom.rs`) run the real code paths.
//!
//! Normally these are `core`'s atomics, `spin`'s mutex and a plain
//! `UnsafeCell`: re-exports and `#[inline(always)]` wrappers that compile to
//! exactly what the code would be without this module. Under `cfg(loom)`
//! (with the `loom` feature, which brings the dependency in) they are
//! [loom]'s twins, which record every access so that loom can run a model
//! through all its interleavings and report data races:
//!
//! - atomics: `loom::sync::atomic`;
//! - [`Mutex`]: what `spin::Mutex` is, a compare-and-swap lock, built on a
//!   loom atomic (spinning with `loom::thread::yield_now`, as loom requires)
//!   with the data in a loom cell: the release store is a point where
//!   another thread's `try_lock` can fail, so the depot's contended path is
//!   explored (loom's own mutex gives other threads no chance to run while
//!   it is held in a section without loom operations);
//! - [`SlotCell`]: the per-CPU state cell; under loom, [`SlotCell::get`]
//!   returns a guard that marks the state as written for as long as the
//!   caller uses it, so two threads inside one slot at once (or a nested
//!   access on one thread) fail the model.
//!
//! loom's primitives cannot be built in a `const` context, so the few
//! `const fn` constructors are plain `fn`s under loom ([`const_fn!`]).
//! [`ThreadCpus`](crate::ThreadCpus) keeps `core`'s atomics in every build:
//! its thread-locals and process-wide instance cannot be reset between loom
//! executions, so the models use a platform of their own that follows its
//! protocol.
//!
//! [loom]: https://docs.rs/loom

#[cfg(all(loom, not(feature = "loom")))]
compile_error!("`--cfg loom` needs the `loom` feature: run the models with `cargo xtask loom`");

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use spin::MutexGuard;
/// With `std`, waiters yield the CPU: the holder may be a preempted thread.
#[cfg(all(not(loom), feature = "std"))]
pub(crate) type Mutex<T> = spin::mutex::Mutex<T, spin::relax::Yield>;
#[cfg(all(not(loom), not(feature = "std")))]
pub(crate) type Mutex<T> = spin::mutex::Mutex<T>;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The slot holder's half of the asymmetric fence that lets a purge take
/// an idle slot's magazines (see `CpuCache::enter_busy` and
/// [`Cpu::fence_slots`](crate::Cpu::fence_slots)): a compiler fence, which
/// the platform's heavy fence (a `membarrier`, an IPI, the slot locks)
/// turns into a full one when a purge needs it. Under loom, whose model has
/// no such heavy fence, both halves are sequentially consistent fences,
/// which is what the pair amounts to.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn light_fence() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// See the non-loom `light_fence`.
#[cfg(loom)]
pub(crate) fn light_fence() {
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// One turn of a wait for another thread (a purge holding a slot).
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn spin_wait() {
    core::hint::spin_loop();
}

/// See the non-loom `spin_wait`; loom must be told to run another thread.
#[cfg(loom)]
pub(crate) fn spin_wait() {
    loom::thread::yield_now();
}
#[cfg(loom)]
pub(crate) use loom_impl::{Mutex, MutexGuard};

/// Declares a function `const` except under loom, whose primitives have no
/// `const` constructors.
macro_rules! const_fn {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use const_fn;

/// `N` unlocked mutexes.
#[cfg(not(loom))]
pub(crate) const fn mutexes<const N: usize>() -> [Mutex<()>; N] {
    [const { Mutex::new(()) }; N]
}

/// `N` unlocked mutexes.
#[cfg(loom)]
pub(crate) fn mutexes<const N: usize>() -> [Mutex<()>; N] {
    core::array::from_fn(|_| Mutex::new(()))
}

/// A cell whose contents one holder at a time reads and writes: a CPU slot's
/// state, reached under the slot's guard.
#[cfg(not(loom))]
pub(crate) struct SlotCell<T>(core::cell::UnsafeCell<T>);

/// The access [`SlotCell::get`] gives: a plain `&mut T`.
#[cfg(not(loom))]
pub(crate) type SlotMut<'a, T> = &'a mut T;

#[cfg(not(loom))]
impl<T> SlotCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// The contents, for as long as the returned access lives.
    ///
    /// # Safety
    /// No other access to the contents exists or is made, on any thread,
    /// while the returned one lives.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get(&self) -> SlotMut<'_, T> {
        // SAFETY: exclusivity is the caller's obligation.
        unsafe { &mut *self.0.get() }
    }

    /// The contents, through `&mut self`.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }
}

#[cfg(loom)]
pub(crate) use loom_impl::{SlotCell, SlotMut};

#[cfg(loom)]
mod loom_impl {
    use core::marker::PhantomData;
    use core::mem::ManuallyDrop;
    use core::ops::{Deref, DerefMut};

    use loom::cell::{MutPtr, UnsafeCell};
    use loom::sync::atomic::{AtomicBool, Ordering};

    /// `spin::Mutex`'s twin: a compare-and-swap lock over a loom cell.
    pub(crate) struct Mutex<T> {
        locked: AtomicBool,
        data: UnsafeCell<T>,
    }

    // SAFETY: the data is reached only through a guard, and one guard at a
    // time exists (the compare-and-swap on `locked`), as for `spin::Mutex`.
    unsafe impl<T: Send> Sync for Mutex<T> {}

    /// The guard of [`Mutex`]: a tracked write access to the data, then the
    /// release store.
    pub(crate) struct MutexGuard<'a, T> {
        lock: &'a Mutex<T>,
        data: ManuallyDrop<MutPtr<T>>,
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self {
                locked: AtomicBool::new(false),
                data: UnsafeCell::new(value),
            }
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            loop {
                if let Some(guard) = self.try_lock() {
                    return guard;
                }
                while self.locked.load(Ordering::Relaxed) {
                    loom::thread::yield_now();
                }
            }
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .ok()?;
            Some(MutexGuard {
                lock: self,
                data: ManuallyDrop::new(self.data.get_mut()),
            })
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: the lock is held, so this guard's access is the only
            // one (which loom checks); the cell outlives `'a`.
            unsafe { MutPtr::deref(&self.data) }
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`; `&mut self` makes this use unique.
            unsafe { MutPtr::deref(&self.data) }
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            // SAFETY: dropped once, here; the access ends before the unlock.
            unsafe { ManuallyDrop::drop(&mut self.data) };
            self.lock.locked.store(false, Ordering::Release);
        }
    }

    /// `loom::cell::UnsafeCell`, whose accesses loom checks.
    pub(crate) struct SlotCell<T>(UnsafeCell<T>);

    /// A tracked write access to a [`SlotCell`]'s contents; loom fails the
    /// model if another access overlaps it or is not ordered after it.
    pub(crate) struct SlotMut<'a, T> {
        ptr: MutPtr<T>,
        _cell: PhantomData<&'a SlotCell<T>>,
    }

    impl<T> SlotCell<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(UnsafeCell::new(value))
        }

        /// As the non-loom `get`.
        ///
        /// # Safety
        /// As the non-loom `get` (which loom checks).
        pub(crate) unsafe fn get(&self) -> SlotMut<'_, T> {
            SlotMut {
                ptr: self.0.get_mut(),
                _cell: PhantomData,
            }
        }

        pub(crate) fn get_mut(&mut self) -> &mut T {
            // SAFETY: `&mut self` excludes every other access; the tracked
            // access ends before the reference is used, which is sound
            // because nothing else can reach the contents meanwhile.
            self.0.with_mut(|p| unsafe { &mut *p })
        }
    }

    impl<T> Deref for SlotMut<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: the pointer is into a live `SlotCell` (borrowed for
            // `'a`), and this tracked access is exclusive by `get`'s contract.
            unsafe { self.ptr.deref() }
        }
    }

    impl<T> DerefMut for SlotMut<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`; `&mut self` makes this use unique.
            unsafe { self.ptr.deref() }
        }
    }
}
