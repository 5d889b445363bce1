//! Per-CPU magazine state: one cache-line-padded [`CpuCache`] per slot.
//!
//! The state sits in a [`SlotCell`] and is reached only through
//! [`CpuCache::state`], whose caller holds a guard for the slot; this is the
//! crate's unsafe module for per-CPU state.

use crate::magazine::MagBox;
use core::sync::atomic::compiler_fence;

use crate::sync::{
    const_fn, light_fence, AtomicU32, AtomicU64, AtomicUsize, Ordering, SlotCell, SlotMut,
};

/// In [`CpuCache::claim`]: a purge asks the slot's holder to move its
/// magazines to the depot at its next operation.
pub(crate) const REQUEST: u32 = 1;
/// In [`CpuCache::claim`]: a purge has the slot (its holder was idle): every
/// operation on it is refused until the purge is done with it.
pub(crate) const FORCE: u32 = 2;

/// In [`CpuCache::seen`]: a purge left the slot without magazines at that
/// operation count.
const EMPTIED: u64 = 1 << 63;

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
    /// handler runs on the same CPU); the store that ends an operation is a
    /// release, for a purge that finds the slot idle (see `claim`).
    busy: AtomicU32,
    /// A purge's claim on the slot: 0, [`REQUEST`] or [`FORCE`]. Written by
    /// purges (one at a time) and, to clear a request it honoured, by the
    /// slot's holder; read by the holder after it marks itself busy, with
    /// only a compiler fence between ([`light_fence`]): a purge stores its
    /// claim, runs the platform's heavy fence
    /// ([`Cpu::fence_slots`](crate::Cpu::fence_slots)) and then reads
    /// `busy`, so either the holder sees the claim or the purge sees the
    /// holder busy (Dekker's handshake, the fence split unevenly so that
    /// the fast path pays a plain load).
    claim: AtomicU32,
    /// The slot's operation count when a purge of idle slots last looked
    /// at it (written by purges only, one at a time).
    seen: AtomicU64,
}

/// The mark of [`CpuCache::enter_busy`]; clears it when dropped.
pub(crate) struct Busy<'c>(&'c CpuCache);

impl Drop for Busy<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        self.0.busy.store(0, Ordering::Release);
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
                busy: AtomicU32::new(0),
                claim: AtomicU32::new(0),
                seen: AtomicU64::new(0),
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
    /// it is busy already (the caller interrupted its holder: a signal or
    /// interrupt handler on the same context) or claimed by a purge
    /// ([`enter_claimed`](Self::enter_claimed) sorts that out): the caller
    /// must leave it alone.
    #[inline(always)]
    pub(crate) fn enter_busy(&self) -> Option<Busy<'_>> {
        // One test for both refusals on the fast path. Marking a slot that
        // is busy already (by the operation the caller interrupted) busy
        // again changes nothing, and `refused` leaves it so.
        let before = self.busy.load(Ordering::Relaxed);
        self.busy.store(1, Ordering::Relaxed);
        light_fence();
        let claim = self.claim.load(Ordering::Acquire);
        if before | claim != 0 {
            self.refused(before);
            return None;
        }
        Some(Busy(self))
    }

    /// [`enter_busy`](Self::enter_busy) refused the slot: unmark it unless
    /// it was busy before.
    #[cold]
    fn refused(&self, before: u32) {
        if before == 0 {
            self.busy.store(0, Ordering::Release);
        }
    }

    /// [`enter_busy`](Self::enter_busy) on a slot a purge claimed: `None`
    /// while the purge has it ([`FORCE`]) or when the slot is busy; with a
    /// [`REQUEST`], the mark and `true`: the caller moves the slot's
    /// magazines to the depot, then calls
    /// [`clear_request`](Self::clear_request).
    #[cold]
    pub(crate) fn enter_claimed(&self) -> Option<(Busy<'_>, bool)> {
        if self.busy.load(Ordering::Relaxed) != 0 {
            return None;
        }
        self.busy.store(1, Ordering::Relaxed);
        light_fence();
        let busy = Busy(self);
        match self.claim.load(Ordering::Acquire) {
            0 => Some((busy, false)),
            REQUEST => Some((busy, true)),
            _ => None,
        }
    }

    /// The holder honoured a purge's request (a purge that claimed the slot
    /// again since keeps its claim).
    pub(crate) fn clear_request(&self) {
        let _ = self
            .claim
            .compare_exchange(REQUEST, 0, Ordering::Release, Ordering::Relaxed);
    }

    /// A purge claims the slot (`FORCE`), or asks its holder (`REQUEST`).
    /// Purges run one at a time.
    pub(crate) fn set_claim(&self, claim: u32) {
        self.claim.store(claim, Ordering::Release);
    }

    /// For a purge that claimed the slot and then ran the platform's heavy
    /// fence: true if no holder is inside an operation on it, so that the
    /// purge may use its state until it drops the claim (every holder's
    /// next operation sees the claim and keeps out; the last one's accesses
    /// happen before this load).
    pub(crate) fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// The purge's claim on the slot.
    pub(crate) fn claim(&self) -> u32 {
        self.claim.load(Ordering::Relaxed)
    }

    /// True when a purge holds the slot ([`FORCE`]) and the caller did not
    /// interrupt its holder: waiting for the purge to finish is then all
    /// it takes.
    pub(crate) fn held_by_purge(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 && self.claim() == FORCE
    }

    /// A purge claims the slot unless another has it (`FORCE`), keeping a
    /// pending request otherwise; true if it did. Only `idle_only` purges
    /// leave a request alone (`requests`).
    pub(crate) fn try_force(&self, requests: bool) -> bool {
        let claim = self.claim();
        (claim == 0 || (requests && claim == REQUEST))
            && self
                .claim
                .compare_exchange(claim, FORCE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// For a purge of idle slots (purges run one at a time): true when no
    /// operation used the slot since the last call, unless a purge found
    /// it without magazines since its last operation
    /// ([`mark_emptied`](Self::mark_emptied)).
    pub(crate) fn idle_with_magazines(&self) -> bool {
        let ops = self.allocs() + self.frees();
        let seen = self.seen.load(Ordering::Relaxed);
        if seen & !EMPTIED != ops {
            self.seen.store(ops, Ordering::Relaxed);
            return false;
        }
        seen & EMPTIED == 0
    }

    /// A purge left the slot without magazines (see
    /// [`idle_with_magazines`](Self::idle_with_magazines)); the caller
    /// holds the slot's claim.
    pub(crate) fn mark_emptied(&self) {
        let ops = self.allocs() + self.frees();
        self.seen.store(ops | EMPTIED, Ordering::Relaxed);
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
