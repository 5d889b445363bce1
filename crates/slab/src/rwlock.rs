//! [`RwLock`]: the registry's read-write spin lock, kept to what `fork()`
//! needs. A reader joins only while no writer holds the lock (a
//! compare-and-swap on the state), so while a writer holds it the state is
//! exactly "one writer": `fork()` handlers can hold it across the fork and
//! release it in the child, where the readers that were spinning do not
//! exist (a lock whose waiting readers count themselves in first would keep
//! their phantom counts there, and no writer would get in again).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The state's writer bit; the rest counts readers.
const WRITER: usize = 1;
const READER: usize = 2;

pub(crate) struct RwLock<T> {
    state: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through the guards, which the state
// makes exclusive (writer) or shared (readers, `&T` only).
unsafe impl<T: Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self {
            state: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Shared access; waits while a writer holds the lock. Readers nest.
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & WRITER == 0 {
                match self.state.compare_exchange_weak(
                    s,
                    s + READER,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return ReadGuard(self),
                    Err(now) => s = now,
                }
            } else {
                core::hint::spin_loop();
                s = self.state.load(Ordering::Relaxed);
            }
        }
    }

    /// Exclusive access; waits for every reader and writer to leave.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        while self
            .state
            .compare_exchange_weak(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        WriteGuard(self)
    }

    /// Releases a write lock whose guard was forgotten.
    ///
    /// # Safety
    /// The lock is held for writing and no guard of it is alive.
    pub(crate) unsafe fn force_write_unlock(&self) {
        self.state.store(0, Ordering::Release);
    }

    /// The value, for a caller that holds the write lock (a forgotten
    /// guard).
    ///
    /// # Safety
    /// The caller holds the write lock for as long as the reference lives.
    pub(crate) unsafe fn get_locked(&self) -> &T {
        // SAFETY: the caller's guarantee: no writer but it, no reader.
        unsafe { &*self.value.get() }
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

pub(crate) struct ReadGuard<'l, T>(&'l RwLock<T>);

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: readers exclude writers; only `&T` is handed out.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        self.0.state.fetch_sub(READER, Ordering::Release);
    }
}

pub(crate) struct WriteGuard<'l, T>(&'l RwLock<T>);

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer is alone.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the writer is alone.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.0.state.store(0, Ordering::Release);
    }
}
