//! Per-CPU magazine state: one cache-line-padded [`CpuCache`] per slot.
//!
//! The state sits in a [`SlotCell`] and is reached only through
//! [`CpuCache::state`], whose caller holds a guard for the slot; this is the
//! crate's unsafe module for per-CPU state.

use crate::magazine::MagBox;
use core::sync::atomic::compiler_fence;

use crate::sync::{const_fn, AtomicU64, AtomicUsize, Ordering, SlotCell, SlotMut};

pub(crate) struct CpuState {
    pub(crate) loaded: Option<MagBox>,
    pub(crate) prev: Option<MagBox>,
    /// Fill target for frees; adopted from the depot on free-path visits.
    pub(crate) magsize: usize,
}

/// One slot's magazines and counters, on its own cache line.
///
/// Build an array of [`Cpu::slots`](crate::Cpu::slots) of them with
/// [`CpuCache::new`] and hand it to [`Magazines::new`](crate::Magazines::new).
#[repr(align(64))]
pub struct CpuCache {
    state: SlotCell<CpuState>,
    /// Rounds handed out from this slot's magazines. Written only by the
    /// slot's holder, with a plain load and store: no atomic
    /// read-modify-write on the fast path.
    allocs: AtomicU64,
    /// Rounds put into this slot's magazines.
    frees: AtomicU64,
    /// Rounds freed by operations that interrupted one of this slot's (a
    /// signal or interrupt handler): a stack linked through the rounds'
    /// first words, pushed with compare-and-swap from any context, popped
    /// only by the slot's holder.
    deferred: AtomicUsize,
    /// The slot's state is being changed (or the depot lock is held for
    /// this slot): a signal or interrupt handler that interrupts its holder
    /// on the same context finds it set and keeps out. Plain loads and
    /// stores, ordered against the state's accesses by compiler fences (the
    /// handler runs on the same CPU).
    busy: AtomicUsize,
}

/// The mark of [`CpuCache::enter_busy`]; clears it when dropped.
pub(crate) struct Busy<'c>(&'c CpuCache);

impl Drop for Busy<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        self.0.busy.store(0, Ordering::Relaxed);
    }
}

// (loom's cells and atomics carry bookkeeping of their own.)
#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<CpuCache>() == 64);

// SAFETY: `state` is only reached through `state()`, whose callers hold the
// slot's guard (exclusive per the `Cpu` contract) or `&mut` to the layer.
unsafe impl Sync for CpuCache {}

impl Default for CpuCache {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuCache {
    const_fn! {
        /// An idle slot: no magazines yet.
        pub fn new() -> Self {
            Self {
                state: SlotCell::new(CpuState {
                    loaded: None,
                    prev: None,
                    magsize: 1,
                }),
                allocs: AtomicU64::new(0),
                frees: AtomicU64::new(0),
                deferred: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
            }
        }
    }

    /// Forgets any magazines (they must have been drained) and sets the
    /// fill target.
    pub(crate) fn reset(&mut self, magsize: usize) {
        let st = self.state.get_mut();
        debug_assert!(st.loaded.is_none() && st.prev.is_none());
        st.magsize = magsize;
    }

    /// The slot's state: a `&mut CpuState` (under loom, a guard that loom
    /// tracks, which callers keep alive with `let st = &mut *cc.state();`
    /// for the block that uses it).
    ///
    /// # Safety
    /// The caller has exclusive use of this slot (holds its guard, or `&mut`
    /// to the layer) for as long as the access lives, and makes no call
    /// that could reach this slot's state again meanwhile.
    #[inline]
    pub(crate) unsafe fn state(&self) -> SlotMut<'_, CpuState> {
        // SAFETY: exclusivity is the caller's obligation.
        unsafe { self.state.get() }
    }

    #[inline]
    pub(crate) fn count_alloc(&self) {
        let n = self.allocs.load(Ordering::Relaxed);
        self.allocs.store(n + 1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn count_free(&self) {
        let n = self.frees.load(Ordering::Relaxed);
        self.frees.store(n + 1, Ordering::Relaxed);
    }

    /// Marks the slot busy for the caller, who holds its guard; `None` when
    /// it is busy already: the caller interrupted its holder (a signal or
    /// interrupt handler on the same context) and must leave it alone.
    #[inline(always)]
    pub(crate) fn enter_busy(&self) -> Option<Busy<'_>> {
        if self.busy.load(Ordering::Relaxed) != 0 {
            return None;
        }
        self.busy.store(1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        Some(Busy(self))
    }

    /// Pushes `obj` onto the deferred stack, its link `link_at` bytes into
    /// it.
    ///
    /// # Safety
    /// `obj` is a free round of this layer, with a word of writable memory
    /// at `obj + link_at` that nothing else uses until it is popped; every
    /// push and pop of this slot passes the same `link_at`.
    pub(crate) unsafe fn push_deferred(&self, obj: usize, link_at: usize) {
        let mut head = self.deferred.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller's guarantee; the link is read back only by
            // `pop_deferred`, after the push is published below.
            unsafe { ((obj + link_at) as *mut usize).write_unaligned(head) };
            match self.deferred.compare_exchange_weak(
                head,
                obj,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Pops a deferred round. Only the slot's holder pops, so the head it
    /// read cannot be popped and pushed again under it (no ABA); pushes
    /// interrupting it only make its compare-and-swap fail and retry.
    ///
    /// # Safety
    /// The caller has exclusive use of this slot.
    pub(crate) unsafe fn pop_deferred(&self, link_at: usize) -> Option<usize> {
        let mut head = self.deferred.load(Ordering::Acquire);
        while head != 0 {
            // SAFETY: `head` was pushed by `push_deferred` with the same
            // `link_at` (one per layer), whose caller made it a writable
            // round holding the link there; only we pop it.
            let next = unsafe { ((head + link_at) as *const usize).read_unaligned() };
            match self.deferred.compare_exchange_weak(
                head,
                next,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(head),
                Err(now) => head = now,
            }
        }
        None
    }

    pub(crate) fn allocs(&self) -> u64 {
        self.allocs.load(Ordering::Relaxed)
    }

    pub(crate) fn frees(&self) -> u64 {
        self.frees.load(Ordering::Relaxed)
    }
}
