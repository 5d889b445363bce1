//! [`Magazines`]: the per-CPU layer of one object cache — Akaros'
//! `kmem_cache_alloc`/`kmem_cache_free` front end, minus the slab layer,
//! which the caller falls through to.

use crate::cpu::{Cpu, CpuGuard, Section, SlotHook};
use crate::depot::{Depot, DepotState, ResizePolicy};
use crate::magazine::{size_for, start_size, MagBox, MagList, MagazineSource, MAGAZINE_ROUNDS};
use crate::percpu::{Busy, CpuCache, CpuState, FORCE, REQUEST};
use crate::stats::MagazineStats;
use crate::sync::{spin_wait, AtomicU64, Mutex, MutexGuard, Ordering};

/// What a [`Magazines::purge`] or [`Magazines::purge_idle`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purge {
    /// Slots whose magazines the purge took (their holders were idle).
    pub slots_taken: usize,
    /// Slots whose holders were asked to flush at their next operation.
    pub slots_asked: usize,
    /// Rounds given back to the layer below.
    pub rounds: usize,
}

/// Purge counters (see [`MagazineStats`]).
#[derive(Default)]
struct PurgeCounters {
    purges: AtomicU64,
    taken: AtomicU64,
    asked: AtomicU64,
    honoured: AtomicU64,
}

/// The per-CPU slot array is shorter than the platform's slot count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooFewSlots {
    /// Slots the platform has.
    pub needed: usize,
    /// Length of the array given.
    pub given: usize,
}

impl core::fmt::Display for TooFewSlots {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "per-CPU array has {} slots, the platform has {}",
            self.given, self.needed
        )
    }
}

impl core::error::Error for TooFewSlots {}

/// New magazines a free may allocate before it gives the object back.
const NEW_MAGAZINE_TRIES: usize = 2;

/// Magazines of each depot list [`Magazines::trim`] takes per hold of the
/// depot lock.
pub const TRIM_BATCH: usize = 16;

/// A cache's magazine layer: a `loaded` and a `prev` magazine per CPU slot
/// and a depot of not-empty and empty magazines.
///
/// Rounds are opaque `usize` values (object addresses, or resource values
/// for a quantum cache, where 0 is valid). A miss is the caller's cue to use
/// the layer below: [`alloc`](Self::alloc) returns `None` and
/// [`free`](Self::free) hands the object back. Objects in magazines stay
/// constructed.
///
/// Lock order: the slot (the [`Cpu`] guard), then the depot, then whatever
/// the [`MagazineSource`] takes. No callback runs under the depot lock.
pub struct Magazines<'a, C: Cpu> {
    cpu: &'a C,
    cpus: &'a [CpuCache],
    depot: Depot,
    start: usize,
    mags_allocated: AtomicU64,
    mags_freed: AtomicU64,
    /// Bytes of the magazines alive.
    mag_bytes: AtomicU64,
    /// Rounds freed through [`defer`](Self::defer).
    deferred: AtomicU64,
    /// Batch refills ([`refill`](Self::refill)).
    refills: AtomicU64,
    /// Batch flushes ([`free_after_flush`](Self::free_after_flush)).
    flushes: AtomicU64,
    /// Frees handed back because the depot held its cap
    /// ([`set_depot_cap`](Self::set_depot_cap)).
    capped: AtomicU64,
    /// Where the deferred stack's link lives in each deferred round.
    link_at: usize,
    /// Flushes a slot into the depot when its owner goes away; linked into
    /// the platform's list by [`register`](Self::register).
    hook: SlotHook,
    /// Held by a purge: purges claim slots one at a time.
    purging: Mutex<()>,
    purge_counters: PurgeCounters,
}

impl<'a, C: Cpu> Magazines<'a, C> {
    /// A layer for objects of `obj_size` bytes (which picks the starting
    /// magazine size), with per-CPU state in `cpus` (at least
    /// `cpu.slots()` long) and Akaros' [`ResizePolicy`].
    pub fn new(cpu: &'a C, cpus: &'a mut [CpuCache], obj_size: usize) -> Result<Self, TooFewSlots> {
        Self::with_policy(cpu, cpus, obj_size, ResizePolicy::AKAROS)
    }

    /// As [`new`](Self::new), with a chosen resize policy.
    pub fn with_policy(
        cpu: &'a C,
        cpus: &'a mut [CpuCache],
        obj_size: usize,
        policy: ResizePolicy,
    ) -> Result<Self, TooFewSlots> {
        if cpus.len() < cpu.slots() {
            return Err(TooFewSlots {
                needed: cpu.slots(),
                given: cpus.len(),
            });
        }
        let start = start_size(obj_size);
        for cc in cpus.iter_mut() {
            cc.reset(start);
        }
        Ok(Self {
            cpu,
            cpus,
            depot: Depot::new(start, policy),
            start,
            mags_allocated: AtomicU64::new(0),
            mags_freed: AtomicU64::new(0),
            mag_bytes: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            refills: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            capped: AtomicU64::new(0),
            link_at: 0,
            hook: SlotHook::new(flush_hook::<C>),
            purging: Mutex::new(()),
            purge_counters: PurgeCounters::default(),
        })
    }

    /// Links the deferred stack (see [`defer`](Self::defer)) through the
    /// word `bytes` into each deferred round instead of its first word, so
    /// that a cache can keep a mark of its own in the first word of free
    /// objects. `bytes` must be a multiple of 8.
    ///
    /// # Panics
    /// If `bytes` is not a multiple of 8, or a round was deferred already
    /// (its link is where the old offset said).
    #[must_use]
    pub fn with_link_offset(mut self, bytes: usize) -> Self {
        assert!(bytes.is_multiple_of(8), "kmem-magazine: link offset");
        assert_eq!(
            self.deferred.load(Ordering::Relaxed),
            0,
            "kmem-magazine: link offset changed after a deferred free"
        );
        self.link_at = bytes;
        self
    }

    /// Caps the rounds the depot keeps in its not-empty magazines (`None`:
    /// no cap, the default). Past it, a free that finds both of its CPU's
    /// magazines full gets no empty magazine from the depot and is handed
    /// back (`Err`), so that the caller flushes a full magazine to the layer
    /// below in one pass ([`free_after_flush`](Self::free_after_flush)):
    /// the depot stops growing with a burst of frees, and the objects go
    /// back to where their memory can serve others (a slab cache's empty
    /// slabs, other caches' slabs). Allocations still take what the depot
    /// holds first.
    pub fn set_depot_cap(&self, rounds: Option<usize>) {
        self.depot.lock_quiet().round_cap = rounds.unwrap_or(usize::MAX);
    }

    /// The platform this layer runs on.
    pub fn cpu(&self) -> &'a C {
        self.cpu
    }

    /// The per-CPU state of the guard's slot.
    #[inline(always)]
    fn slot_of(&self, guard: &C::Guard<'_>) -> &CpuCache {
        self.slot_at(guard.slot())
    }

    /// The per-CPU state of `slot`, a slot the platform gave (a guard's,
    /// or [`Cpu::owned_slot`]).
    #[inline(always)]
    fn slot_at(&self, slot: usize) -> &CpuCache {
        debug_assert!(slot < self.cpus.len());
        // SAFETY: the `Cpu` contract keeps the slots it gives below
        // `cpu.slots()`, and `with_policy` refused a `cpus` array shorter
        // than that.
        unsafe { self.cpus.get_unchecked(slot) }
    }

    /// Takes a round from the caller's magazines or the depot; `None` means
    /// the caller allocates from the layer below. Also `None`, touching
    /// nothing, when the caller interrupted its own context's pinned
    /// section ([`Cpu::try_pin`]).
    #[inline(always)]
    pub fn alloc(&self) -> Option<usize> {
        if !C::OWNED_SLOTS {
            return self.alloc_pinned();
        }
        // A slot of the caller's own needs no guard (`Cpu::owned_slot`):
        // the common case gets a path of its own, with no guard to drop,
        // and the pinned one is called.
        let Some(slot) = self.cpu.owned_slot() else {
            return self.alloc_pinned_out();
        };
        let cc = self.slot_at(slot);
        // The hit inline, all else called: one way out each.
        match self.pop_loaded(cc) {
            Some(obj) => Some(obj),
            None => self.alloc_on_out(cc),
        }
    }

    /// The top round of `cc`'s loaded magazine (`cc` the caller's slot,
    /// which it holds); `None` on a miss or a busy slot, which
    /// [`alloc_on`](Self::alloc_on) sorts out.
    #[inline(always)]
    fn pop_loaded(&self, cc: &CpuCache) -> Option<usize> {
        let _busy = cc.enter_busy()?;
        // SAFETY: the caller holds the slot; nothing calls out while the
        // access lives.
        let st = &mut *unsafe { cc.state() };
        let obj = st.loaded.as_mut().and_then(|m| m.pop())?;
        cc.count_alloc();
        Some(obj)
    }

    /// [`alloc_on`](Self::alloc_on), out of line.
    #[inline(never)]
    fn alloc_on_out(&self, cc: &CpuCache) -> Option<usize> {
        self.alloc_on(cc)
    }

    /// [`alloc`](Self::alloc) under a guard.
    #[inline(always)]
    fn alloc_pinned(&self) -> Option<usize> {
        let guard = self.cpu.try_pin()?;
        self.alloc_on(self.slot_of(&guard))
    }

    /// [`alloc_pinned`](Self::alloc_pinned), out of line.
    #[inline(never)]
    fn alloc_pinned_out(&self) -> Option<usize> {
        self.alloc_pinned()
    }

    /// [`alloc`](Self::alloc) on `cc`, the caller's slot, which it holds.
    #[inline(always)]
    fn alloc_on(&self, cc: &CpuCache) -> Option<usize> {
        let _busy = self.enter(cc)?;
        let hit = {
            // SAFETY: the caller holds the slot (a guard, or it owns it);
            // nothing calls out while the access lives.
            let st = &mut *unsafe { cc.state() };
            st.loaded.as_mut().and_then(|m| m.pop())
        };
        if let Some(obj) = hit {
            cc.count_alloc();
            return Some(obj);
        }
        let obj = self.alloc_slow(cc)?;
        cc.count_alloc();
        Some(obj)
    }

    /// Akaros' alloc path after a loaded miss: swap with a non-empty
    /// `prev`, else exchange the empty `prev` for a not-empty depot magazine.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, cc: &CpuCache) -> Option<usize> {
        // SAFETY: called from `alloc_on`, whose caller holds the slot.
        if let Some(obj) = unsafe { cc.pop_deferred(self.link_at) } {
            return Some(obj);
        }
        // SAFETY: called from `alloc_on`, whose caller holds the slot and
        // no other access to it; no call-outs below.
        let st = &mut *unsafe { cc.state() };
        if st.prev.as_ref().is_some_and(|m| !m.is_empty()) {
            core::mem::swap(&mut st.loaded, &mut st.prev);
            return st.loaded.as_mut().and_then(|m| m.pop());
        }
        let mut depot = self.depot.lock(|| self.cpu.now_ns());
        let full = depot.take_not_empty()?;
        self.load_from_depot(st, depot, full, &self.depot.counters.not_empty_out);
        st.loaded.as_mut().and_then(|m| m.pop())
    }

    /// The depot exchange: `mag`, just taken from the depot, becomes the
    /// CPU's `loaded` magazine (frees fill it to the CPU's target), the
    /// old `loaded` its `prev`, and the old `prev` goes to the depot; the
    /// lock is let go and the exchange counted in `out`.
    fn load_from_depot(
        &self,
        st: &mut CpuState,
        mut depot: MutexGuard<'_, DepotState>,
        mut mag: MagBox,
        out: &AtomicU64,
    ) {
        mag.set_limit(st.magsize);
        if let Some(old) = st.prev.take() {
            depot.put(old);
        }
        drop(depot);
        out.fetch_add(1, Ordering::Relaxed);
        st.prev = st.loaded.replace(mag);
    }

    /// Puts `obj` into the caller's magazines, exchanging with the depot or
    /// allocating an empty magazine from `mags` as Akaros does. `Err(obj)`
    /// means no room could be found: the caller returns `obj` to the layer
    /// below (destructing it first).
    ///
    /// Also `Err(obj)`, touching nothing, when the caller interrupted its
    /// own context's pinned section ([`Cpu::try_pin`]).
    ///
    /// # Safety
    /// `mags` is the source of every magazine this layer holds: every call
    /// that takes a source passes the same one.
    #[inline(always)]
    pub unsafe fn free<S: MagazineSource + ?Sized>(
        &self,
        obj: usize,
        mags: &S,
    ) -> Result<(), usize> {
        if !C::OWNED_SLOTS {
            // SAFETY: forwarded.
            return unsafe { self.free_pinned(obj, mags) };
        }
        let Some(slot) = self.cpu.owned_slot() else {
            // SAFETY: forwarded.
            return unsafe { self.free_pinned_out(obj, mags) };
        };
        // The caller owns `slot` (see `alloc`).
        let cc = self.slot_at(slot);
        if self.push_loaded(cc, obj) {
            return Ok(());
        }
        // SAFETY: forwarded.
        unsafe { self.free_on_out(cc, obj, mags) }
    }

    /// Puts `obj` into `cc`'s loaded magazine (`cc` the caller's slot,
    /// which it holds) if it has room; false on a busy slot or no room,
    /// which [`free_on`](Self::free_on) sorts out.
    #[inline(always)]
    fn push_loaded(&self, cc: &CpuCache, obj: usize) -> bool {
        let Some(_busy) = cc.enter_busy() else {
            return false;
        };
        // SAFETY: the caller holds the slot; nothing calls out while the
        // access lives.
        let st = &mut *unsafe { cc.state() };
        match st.loaded.as_mut() {
            Some(m) if m.has_room() => {
                // SAFETY: room below the limit is room below the capacity.
                unsafe { m.push(obj) };
                cc.count_free();
                true
            }
            _ => false,
        }
    }

    /// [`free_on`](Self::free_on), out of line.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(never)]
    unsafe fn free_on_out<S: MagazineSource + ?Sized>(
        &self,
        cc: &CpuCache,
        obj: usize,
        mags: &S,
    ) -> Result<(), usize> {
        // SAFETY: forwarded.
        unsafe { self.free_on(cc, obj, mags) }
    }

    /// [`free`](Self::free) under a guard.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(always)]
    unsafe fn free_pinned<S: MagazineSource + ?Sized>(
        &self,
        obj: usize,
        mags: &S,
    ) -> Result<(), usize> {
        let Some(guard) = self.cpu.try_pin() else {
            return Err(obj);
        };
        // SAFETY: forwarded; the guard holds the slot.
        unsafe { self.free_on(self.slot_of(&guard), obj, mags) }
    }

    /// [`free_pinned`](Self::free_pinned), out of line.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(never)]
    unsafe fn free_pinned_out<S: MagazineSource + ?Sized>(
        &self,
        obj: usize,
        mags: &S,
    ) -> Result<(), usize> {
        // SAFETY: forwarded.
        unsafe { self.free_pinned(obj, mags) }
    }

    /// [`free`](Self::free) on `cc`, the caller's slot, which it holds.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline(always)]
    unsafe fn free_on<S: MagazineSource + ?Sized>(
        &self,
        cc: &CpuCache,
        obj: usize,
        mags: &S,
    ) -> Result<(), usize> {
        let Some(_busy) = self.enter(cc) else {
            return Err(obj);
        };
        let done = {
            // SAFETY: the caller holds the slot (a guard, or it owns it); no
            // call-outs while the access lives.
            let st = &mut *unsafe { cc.state() };
            match st.loaded.as_mut() {
                Some(m) if m.has_room() => {
                    // SAFETY: room below the limit is room below the capacity.
                    unsafe { m.push(obj) };
                    true
                }
                _ => false,
            }
        };
        if done {
            cc.count_free();
            return Ok(());
        }
        self.free_slow(cc, obj, mags)?;
        cc.count_free();
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn free_slow<S: MagazineSource + ?Sized>(
        &self,
        cc: &CpuCache,
        obj: usize,
        mags: &S,
    ) -> Result<(), usize> {
        let mut tries = 0;
        loop {
            // An empty magazine from the depot too small for the fill
            // target (made before it grew): given back, for a fresh one.
            let (retired, target) = {
                // SAFETY: the caller holds the slot and no other access to
                // it; this one ends before `mags` is called.
                let st = &mut *unsafe { cc.state() };
                if let Some(m) = st.loaded.as_mut().filter(|m| m.has_room()) {
                    // SAFETY: room below the limit is room below the capacity.
                    unsafe { m.push(obj) };
                    return Ok(());
                }
                // Akaros checks "prev is empty"; room is what matters, since
                // a resize can leave prev part-filled.
                if st.prev.as_ref().is_some_and(|m| m.has_room()) {
                    core::mem::swap(&mut st.loaded, &mut st.prev);
                    continue;
                }
                let mut depot = self.depot.lock(|| self.cpu.now_ns());
                // Where a resize takes effect: the CPU's magazines fill to
                // it, as far as they hold.
                if st.magsize != depot.magsize {
                    st.magsize = depot.magsize;
                    for m in [&mut st.loaded, &mut st.prev].into_iter().flatten() {
                        m.set_limit(st.magsize);
                    }
                    if st.loaded.as_ref().is_some_and(|m| m.has_room()) {
                        continue;
                    }
                }
                if depot.rounds >= depot.round_cap {
                    // The depot holds its share: the caller flushes a full
                    // magazine to the layer below instead
                    // (`free_after_flush`), where the objects' memory can
                    // serve other caches once their slabs empty.
                    drop(depot);
                    self.capped.fetch_add(1, Ordering::Relaxed);
                    return Err(obj);
                }
                let retired = match depot.take_empty() {
                    Some(empty) if empty.cap() < st.magsize && tries < NEW_MAGAZINE_TRIES => {
                        Some(empty)
                    }
                    Some(empty) => {
                        self.load_from_depot(st, depot, empty, &self.depot.counters.empty_out);
                        continue;
                    }
                    None => None,
                };
                (retired, st.magsize)
            };
            if tries == NEW_MAGAZINE_TRIES {
                return Err(obj);
            }
            tries += 1;
            // The source takes locks (a slab's, an arena's): only in an
            // operation of its own, not inside one that is under way on this
            // context (it may be the one a signal handler interrupted, holding
            // them); then the object goes below, as when memory runs out.
            let Some(_section) = Section::enter(self.cpu) else {
                // No new magazine can be had here: the small one serves.
                let Some(mag) = retired else {
                    return Err(obj);
                };
                // SAFETY: the caller holds the slot, marked busy; the
                // access ends before the next loop turn makes another.
                let st = &mut *unsafe { cc.state() };
                let depot = self.depot.lock_quiet();
                self.load_from_depot(st, depot, mag, &self.depot.counters.empty_out);
                continue;
            };
            if let Some(mag) = retired {
                // SAFETY: `mags` is the source of every magazine (the
                // caller's guarantee); `mag` is empty and off every list.
                unsafe { self.free_magazine(mag, mags) };
            }
            // An injected failure is a source with no memory.
            #[cfg(feature = "fail-inject")]
            if kmem_fail::should_fail(kmem_fail::Layer::Magazine) {
                return Err(obj);
            }
            // Never wait on a free: if no memory, the object goes below.
            let mag = self.new_magazine(mags, target).ok_or(obj)?;
            self.depot.lock_quiet().put(mag);
        }
    }

    /// A fresh empty magazine from `mags`, of the size for the fill target
    /// `target`, or `None` (the source has no memory).
    fn new_magazine<S: MagazineSource + ?Sized>(&self, mags: &S, target: usize) -> Option<MagBox> {
        let bytes = size_for(target);
        let mem = mags.alloc_magazine(bytes)?;
        self.mags_allocated.fetch_add(1, Ordering::Relaxed);
        self.mag_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        // SAFETY: `MagazineSource`'s contract (an unsafe trait): fresh
        // magazine memory of `bytes` bytes, aligned, used by nothing else.
        Some(unsafe { MagBox::init(mem, bytes, target) })
    }

    /// Gives an empty magazine, off every list, back to `mags`.
    ///
    /// # Safety
    /// `mags` supplied it (it is the source of every magazine).
    unsafe fn free_magazine<S: MagazineSource + ?Sized>(&self, mag: MagBox, mags: &S) {
        let (mem, bytes) = mag.into_raw();
        self.mags_freed.fetch_add(1, Ordering::Relaxed);
        self.mag_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
        // SAFETY: the caller's guarantee: `mags` supplied it, with the size
        // it was made for.
        unsafe { mags.free_magazine(mem, bytes) };
    }

    /// Batch flush, for a free that [`free`](Self::free) handed back (no
    /// empty magazine could be had: the depot has none and the magazine
    /// source gave none): the caller's full `prev` magazine (else its
    /// `loaded` one) hands its rounds to `flush` (the layer below, which
    /// takes them back in one pass, destructing them) and takes `obj`,
    /// instead of `obj` going below alone and every free after it doing
    /// the same. `flush` runs with the slot held and marked busy, inside
    /// the caller's operation ([`Section`]): it must call no code that may
    /// allocate or take the slot (a destructor: the slab layer flushes
    /// only caches without one), and must not panic (the rounds it has not
    /// taken stay in their magazine, but `obj` would be lost). `Err(obj)` when the caller interrupted its
    /// own context, has no magazine, or `flush` left no room.
    pub fn free_after_flush(
        &self,
        obj: usize,
        flush: impl FnOnce(&mut dyn Iterator<Item = usize>),
    ) -> Result<(), usize> {
        if C::OWNED_SLOTS {
            if let Some(slot) = self.cpu.owned_slot() {
                return self.flush_on(self.slot_at(slot), obj, flush);
            }
        }
        let Some(guard) = self.cpu.try_pin() else {
            return Err(obj);
        };
        self.flush_on(self.slot_of(&guard), obj, flush)
    }

    /// [`free_after_flush`](Self::free_after_flush) on `cc`, the caller's
    /// slot, which it holds.
    fn flush_on(
        &self,
        cc: &CpuCache,
        obj: usize,
        flush: impl FnOnce(&mut dyn Iterator<Item = usize>),
    ) -> Result<(), usize> {
        let Some(_busy) = self.enter(cc) else {
            return Err(obj);
        };
        // SAFETY: the caller holds the slot, marked busy; `flush` is the
        // layer below, which does not use this layer's slots (an operation
        // it makes here finds the slot busy).
        let st = &mut *unsafe { cc.state() };
        if let Some(m) = st.loaded.as_mut().filter(|m| m.has_room()) {
            // Room meanwhile (a shared slot's other user).
            // SAFETY: room below the limit is room below the capacity.
            unsafe { m.push(obj) };
            cc.count_free();
            return Ok(());
        }
        // `prev` first: `loaded` is the one the CPU allocates from next.
        let from_prev = st.prev.is_some();
        let Some(victim) = (if from_prev {
            st.prev.as_mut()
        } else {
            st.loaded.as_mut()
        }) else {
            return Err(obj);
        };
        let before = victim.len();
        flush(&mut core::iter::from_fn(|| victim.pop()));
        if victim.len() < before {
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
        if !victim.has_room() {
            return Err(obj);
        }
        // SAFETY: room below the limit is room below the capacity.
        unsafe { victim.push(obj) };
        if from_prev {
            core::mem::swap(&mut st.loaded, &mut st.prev);
        }
        cc.count_free();
        Ok(())
    }

    /// Batch refill (the caller's magazines and the depot came up empty):
    /// loads the caller's loaded magazine, emptied or fresh, with rounds
    /// that `fill` takes from the layer below in one pass, at most the
    /// `room` it is given (the slot's fill target), and hands out the top
    /// one. `None`, without calling `fill`, when the slot is busy (the
    /// caller interrupted its own context) or no empty magazine can be had
    /// (from `prev`, the depot, or `mags`); `None` too when `fill` took
    /// nothing. Runs inside the caller's operation (its [`Section`]), which
    /// the allocation of a new magazine needs.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine;
    /// and every round `fill` loads into the [`RefillSink`] is an object the
    /// layer may hand out (as if it had been freed into it).
    pub unsafe fn refill<S: MagazineSource + ?Sized>(
        &self,
        mags: &S,
        fill: impl FnOnce(&mut RefillSink<'_>),
    ) -> Option<usize> {
        if C::OWNED_SLOTS {
            if let Some(slot) = self.cpu.owned_slot() {
                // SAFETY: forwarded.
                return unsafe { self.refill_on(self.slot_at(slot), mags, fill) };
            }
        }
        let guard = self.cpu.try_pin()?;
        // SAFETY: forwarded.
        unsafe { self.refill_on(self.slot_of(&guard), mags, fill) }
    }

    /// [`refill`](Self::refill) on `cc`, the caller's slot, which it holds.
    unsafe fn refill_on<S: MagazineSource + ?Sized>(
        &self,
        cc: &CpuCache,
        mags: &S,
        fill: impl FnOnce(&mut RefillSink<'_>),
    ) -> Option<usize> {
        let _busy = self.enter(cc)?;
        // SAFETY: the caller holds the slot and it is marked busy; the only
        // call out below (`mags`, `fill`) does not touch this layer's slots.
        let st = &mut *unsafe { cc.state() };
        if let Some(obj) = st.loaded.as_mut().and_then(|m| m.pop()) {
            // Loaded meanwhile (a shared slot's other user).
            cc.count_alloc();
            return Some(obj);
        }
        if st.loaded.is_none() {
            if st.prev.as_ref().is_some_and(|m| m.is_empty()) {
                core::mem::swap(&mut st.loaded, &mut st.prev);
            } else {
                // The depot's fill target too: a fresh magazine is made
                // for it (the CPU's may lag behind a resize).
                let (empty, target) = {
                    let mut depot = self.depot.lock(|| self.cpu.now_ns());
                    (depot.take_empty(), depot.magsize)
                };
                st.magsize = target;
                st.loaded = match empty {
                    Some(mag) => Some(mag),
                    None => {
                        #[cfg(feature = "fail-inject")]
                        if kmem_fail::should_fail(kmem_fail::Layer::Magazine) {
                            return None;
                        }
                        Some(self.new_magazine(mags, st.magsize)?)
                    }
                };
            }
        }
        let loaded = st.loaded.as_mut()?;
        loaded.set_limit(st.magsize);
        // `fill` loads the empty magazine in place, up to its limit (no
        // batch copied through the stack).
        fill(&mut RefillSink { mag: loaded });
        let obj = loaded.pop()?;
        self.refills.fetch_add(1, Ordering::Relaxed);
        cc.count_alloc();
        Some(obj)
    }

    /// Frees `obj` from an operation that interrupted one of the caller's
    /// context (see [`Section`](crate::Section)): it goes onto a stack of the
    /// caller's slot that takes no lock and leaves the slot's magazines
    /// alone; the slot's next allocation that misses its `loaded` magazine
    /// takes it from there.
    ///
    /// # Safety
    /// `obj` is an object of this layer's cache, not used by anyone after
    /// this call, with a word of writable memory at its link offset (see
    /// [`with_link_offset`](Self::with_link_offset); the stack is linked
    /// through it): a cache of memory objects without constructed state.
    pub unsafe fn defer(&self, obj: usize) {
        // The stack takes pushes from anyone: no need to hold the slot (and
        // no waiting for a shared slot's lock, see `Cpu::current_slot`).
        // Without a slot of its own yet, any slot's stack will do (its
        // holder takes the object): never wait to be given one.
        let slot = self
            .cpu
            .current_slot()
            .or_else(|| self.cpu.try_pin().map(|g| g.slot()))
            .unwrap_or(0);
        let cc = self.cpus.get(slot).unwrap_or(&self.cpus[0]);
        // SAFETY: the caller's guarantee.
        unsafe { cc.push_deferred(obj, self.link_at) };
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves the caller's `loaded` and `prev` magazines to the depot (not
    /// when it interrupted its own context's pinned section).
    pub fn flush_current(&self) {
        if let Some(guard) = self.cpu.try_pin() {
            // SAFETY: the guard gives exclusive use of the slot.
            unsafe { self.flush_slot(guard.slot()) };
        }
    }

    /// Runs `f` with the caller's slot pinned and marked busy, so that a
    /// signal or interrupt handler interrupting `f` on this context keeps
    /// out of this layer's magazines and depot; `None` (without running it)
    /// if the caller is such a handler itself.
    fn with_slot_busy<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        match self.cpu.try_pin() {
            Some(guard) => {
                let _busy = self.enter_waiting(self.slot_of(&guard))?;
                Some(f())
            }
            // A caller with no slot of its own on this platform (a test
            // platform's unclaimed thread): no slot to mark, nothing nested.
            None if self.cpu.current_slot().is_none() => Some(f()),
            None => None,
        }
    }

    /// Moves slot `slot`'s magazines to the depot.
    ///
    /// # Safety
    /// The caller has exclusive use of `slot` (holds its guard, or is the
    /// platform calling a [`SlotHook`] for it).
    pub unsafe fn flush_slot(&self, slot: usize) {
        // Busy while the depot lock is held (see `with_slot_busy`); busy
        // already means the caller interrupted the slot's holder.
        let cc = &self.cpus[slot];
        let Some(_busy) = self.enter_waiting(cc) else {
            return;
        };
        self.flush_held(cc);
    }

    /// [`enter`](Self::enter) for work off the fast path (a flush, a depot
    /// drain or trim, statistics), which waits out a purge holding the
    /// slot rather than be refused: `None` only when the caller
    /// interrupted the slot's holder. The wait is bounded: a purge holds a
    /// slot for its pass over the slots only, and never the caller's own
    /// slot where the platform says which that is (a signal handler that
    /// interrupted a purge on its thread does not wait for it).
    fn enter_waiting<'c>(&self, cc: &'c CpuCache) -> Option<Busy<'c>> {
        loop {
            if let Some(busy) = self.enter(cc) {
                return Some(busy);
            }
            if !cc.held_by_purge() {
                return None;
            }
            spin_wait();
        }
    }

    /// Moves `cc`'s magazines to the depot; the caller holds the slot and
    /// has marked it busy.
    fn flush_held(&self, cc: &CpuCache) {
        // SAFETY: the caller holds the slot, marked busy; no call-outs.
        let st = &mut *unsafe { cc.state() };
        let (loaded, prev) = (st.loaded.take(), st.prev.take());
        if loaded.is_none() && prev.is_none() {
            return;
        }
        let mut depot = self.depot.lock_quiet();
        for mag in [loaded, prev].into_iter().flatten() {
            depot.put(mag);
        }
    }

    /// Marks `cc` (the caller's slot, which it holds) busy, as
    /// [`CpuCache::enter_busy`] does; a purge's request is honoured first
    /// (the slot's magazines go to the depot).
    #[inline(always)]
    fn enter<'c>(&self, cc: &'c CpuCache) -> Option<Busy<'c>> {
        match cc.enter_busy() {
            Some(busy) => Some(busy),
            None => self.enter_claimed(cc),
        }
    }

    /// [`enter`](Self::enter) when the slot is busy or claimed.
    #[cold]
    #[inline(never)]
    fn enter_claimed<'c>(&self, cc: &'c CpuCache) -> Option<Busy<'c>> {
        let (busy, requested) = cc.enter_claimed()?;
        if requested {
            self.flush_held(cc);
            cc.clear_request();
            self.purge_counters.honoured.fetch_add(1, Ordering::Relaxed);
        }
        Some(busy)
    }

    /// Purges every CPU's magazines (illumos' `kmem_cache_magazine_purge`)
    /// on a live layer: each slot whose holder is not inside an operation
    /// right now gives its `loaded` and `prev` magazines up at once, and
    /// the holders of the others move theirs to the depot at their next
    /// operation; then the depot is drained as by
    /// [`drain_depot`](Self::drain_depot), its rounds to `sink` and its
    /// magazines to `mags`. Needs the platform's heavy fence
    /// ([`Cpu::fence_slots`]) to take idle slots; without it every slot is
    /// only asked. Holders never wait for a purge: an operation on a slot
    /// the purge holds falls through to the layer below, as on a miss. A
    /// kernel whose platform has cross-calls can instead run
    /// [`flush_slot`](Self::flush_slot) on each CPU, then
    /// [`drain_depot`](Self::drain_depot).
    ///
    /// Rounds a slot's deferred stack holds (see [`defer`](Self::defer))
    /// stay for its holder, who takes them at its next allocation miss.
    /// The caller's own slot (where [`Cpu::current_slot`] tells) is
    /// flushed as its holder would, after the others. Purges run one at a
    /// time: one that finds another under way (on another thread, or the
    /// one a signal handler interrupted) leaves the slots to it and only
    /// drains the depot.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine.
    pub unsafe fn purge<S: MagazineSource + ?Sized>(
        &self,
        mags: &S,
        mut sink: impl FnMut(usize),
    ) -> Purge {
        // SAFETY: forwarded.
        let mut purge = unsafe { self.purge_slots(mags, &mut sink, false) };
        // SAFETY: forwarded.
        purge.rounds += unsafe { self.drain_depot(mags, sink) };
        purge
    }

    /// [`purge`](Self::purge) of the slots that were idle since the last
    /// call of this (no allocation or free through their magazines), as
    /// long as they hold magazines: an upkeep pass's drain of threads that
    /// stopped allocating, or exited with no platform hook to flush them.
    /// The depot is left to the working-set trim. A slot that is busy at
    /// the time, or has a purge's request pending, is left alone, and so
    /// is the caller's own. Without the platform's heavy fence
    /// ([`Cpu::fence_slots`]) nothing is done.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine.
    pub unsafe fn purge_idle<S: MagazineSource + ?Sized>(
        &self,
        mags: &S,
        sink: impl FnMut(usize),
    ) -> Purge {
        // SAFETY: forwarded.
        unsafe { self.purge_slots(mags, sink, true) }
    }

    /// The slots' part of a purge: claims every slot but the caller's
    /// (with `idle_only`, those idle since the last look that hold
    /// magazines and have no request pending), takes the magazines of
    /// those idle after the platform's heavy fence, asks the others'
    /// holders (unless `idle_only`), and gives what it took back below.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine.
    unsafe fn purge_slots<S: MagazineSource + ?Sized>(
        &self,
        mags: &S,
        mut sink: impl FnMut(usize),
        idle_only: bool,
    ) -> Purge {
        let mut purge = Purge::default();
        let mut taken = MagList::new();
        // The caller's own slot, where the platform says which: not held by
        // this purge (a signal handler interrupting it may use it), but
        // flushed as a holder flushes, after the others.
        let own = self.cpu.current_slot();
        {
            // One purge at a time; a purge meanwhile (another thread's, or
            // the one a signal handler interrupted) leaves the slots to it.
            let Some(_one_at_a_time) = self.purging.try_lock() else {
                return purge;
            };
            let mut any = false;
            for (i, cc) in self.cpus.iter().enumerate() {
                let picked = !idle_only || cc.idle_with_magazines();
                if Some(i) != own && picked && cc.try_force(!idle_only) {
                    any = true;
                }
            }
            let fenced = any && self.cpu.fence_slots();
            // Only purges set `FORCE`, one at a time.
            for cc in self.cpus.iter().filter(|cc| cc.claim() == FORCE) {
                if fenced && cc.idle() {
                    // SAFETY: the slot is claimed and, after the platform's
                    // heavy fence, idle: its holders keep out until the
                    // claim is dropped below (see `CpuCache::claim`).
                    let st = &mut *unsafe { cc.state() };
                    let mut held = false;
                    for mag in [st.loaded.take(), st.prev.take()].into_iter().flatten() {
                        taken.push(mag);
                        held = true;
                    }
                    purge.slots_taken += usize::from(held);
                    cc.mark_emptied();
                    cc.set_claim(0);
                } else if idle_only {
                    // Picked only without a request pending.
                    cc.set_claim(0);
                } else {
                    cc.set_claim(REQUEST);
                    purge.slots_asked += 1;
                }
            }
            if any && !idle_only {
                self.purge_counters.purges.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !idle_only {
            self.flush_current();
        }
        let c = &self.purge_counters;
        c.taken
            .fetch_add(purge.slots_taken as u64, Ordering::Relaxed);
        c.asked
            .fetch_add(purge.slots_asked as u64, Ordering::Relaxed);
        // SAFETY: the caller's guarantee: `mags` is the source.
        purge.rounds = unsafe { self.release(taken, mags, &mut sink) };
        purge
    }

    /// Empties the depot: every round goes to `sink` (the layer below, which
    /// destructs it) and every magazine back to `mags`. Runs `sink` and
    /// `mags` without the depot lock. Returns the rounds drained.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine.
    pub unsafe fn drain_depot<S: MagazineSource + ?Sized>(
        &self,
        mags: &S,
        mut sink: impl FnMut(usize),
    ) -> usize {
        // The depot lock is held with the slot busy, as on every path, so
        // that a signal handler interrupting this keeps out of the depot (it
        // would wait for this lock for ever).
        let Some((not_empty, empty)) = self.with_slot_busy(|| self.depot.lock_quiet().take_all())
        else {
            return 0;
        };
        // The empty magazines first: their release calls no sink, so a
        // sink that panics (a destructor) cannot leave them behind.
        // SAFETY: the caller's guarantee: `mags` is the source.
        let none = unsafe { self.release(empty, mags, &mut sink) };
        // SAFETY: as above.
        none + unsafe { self.release(not_empty, mags, &mut sink) }
    }

    /// The upkeep pass's trim (illumos' `kmem_depot_ws_update` and
    /// `kmem_depot_ws_reap`): ends the depot's working-set interval, then
    /// gives back the magazines that neither list needed during it — the
    /// fewest not-empty and empty magazines the depot held since the
    /// previous call. Their rounds go to `sink` (the layer below, which
    /// destructs them) and the magazines to `mags`, without the depot lock,
    /// which is held for at most [`TRIM_BATCH`] magazines at a time.
    /// `sink` gets one magazine's rounds at a time, as an iterator, so the
    /// layer below can take them back in one pass (one lock hold); if it
    /// panics, the rounds it did not take go back to the depot in their
    /// magazine, as with [`drain_depot`](Self::drain_depot).
    ///
    /// Called once per upkeep interval, it returns what a cache holds idle
    /// after two intervals without use: magazines taken during an interval
    /// are its working set and stay. CPU magazines are not touched. Returns
    /// the rounds given back.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine.
    pub unsafe fn trim<S: MagazineSource + ?Sized>(
        &self,
        mags: &S,
        mut sink: impl FnMut(&mut dyn Iterator<Item = usize>),
    ) -> usize {
        if self
            .with_slot_busy(|| self.depot.lock_quiet().ws_update())
            .is_none()
        {
            return 0;
        }
        let mut rounds = 0;
        loop {
            let mut taken = MagList::new();
            let Some(more) = self.with_slot_busy(|| {
                let mut depot = self.depot.lock_quiet();
                depot.ws_take(TRIM_BATCH, &mut taken);
                depot.ws_idle() > 0
            }) else {
                return rounds;
            };
            let n = taken.len() as u64;
            // SAFETY: the caller's guarantee: `mags` is the source.
            rounds += unsafe { self.release_batched(taken, mags, &mut sink) };
            self.depot.counters.trimmed.fetch_add(n, Ordering::Relaxed);
            if !more || n == 0 {
                return rounds;
            }
        }
    }

    /// Empties `list`, one magazine's rounds per call of `sink`, as an
    /// iterator that takes each round out of the magazine as it hands it
    /// over, and every emptied magazine back to `mags`: if `sink` panics (a
    /// destructor), the rounds it did not take stay in their magazine,
    /// which goes back to the depot with the others not drained yet; so
    /// does a magazine whose rounds `sink` left.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine.
    unsafe fn release_batched<S: MagazineSource + ?Sized>(
        &self,
        list: MagList,
        mags: &S,
        sink: &mut impl FnMut(&mut dyn Iterator<Item = usize>),
    ) -> usize {
        let mut rest = Rest {
            depot: &self.depot,
            list,
        };
        let mut rounds = 0;
        while let Some(mag) = rest.list.head_mut() {
            let before = mag.len();
            sink(&mut core::iter::from_fn(|| mag.pop()));
            rounds += before - mag.len();
            let Some(mag) = rest.list.pop() else { break };
            if !mag.is_empty() {
                self.depot.lock_quiet().put(mag);
                continue;
            }
            // SAFETY: the caller's guarantee: `mags` supplied it; empty, and
            // off every list.
            unsafe { self.free_magazine(mag, mags) };
        }
        rounds
    }

    /// [`release_batched`](Self::release_batched), one round per call of
    /// `sink`.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine.
    unsafe fn release<S: MagazineSource + ?Sized>(
        &self,
        list: MagList,
        mags: &S,
        sink: &mut impl FnMut(usize),
    ) -> usize {
        let mut batch = |rounds: &mut dyn Iterator<Item = usize>| rounds.for_each(&mut *sink);
        // SAFETY: forwarded.
        unsafe { self.release_batched(list, mags, &mut batch) }
    }

    /// Flushes every slot (and its deferred frees), then drains the depot:
    /// afterwards the layer holds no rounds and no magazines.
    ///
    /// # Safety
    /// As for [`free`](Self::free): `mags` is the source of every magazine.
    /// And no other call on this layer runs during this one (no slot is in
    /// use: the caller owns them all).
    pub unsafe fn drain_all<S: MagazineSource + ?Sized>(
        &self,
        mags: &S,
        mut sink: impl FnMut(usize),
    ) -> usize {
        let mut rounds = 0;
        for slot in 0..self.cpus.len() {
            // SAFETY: no other user of any slot exists (the contract).
            unsafe { self.flush_slot(slot) };
            // SAFETY: as above.
            while let Some(obj) = unsafe { self.cpus[slot].pop_deferred(self.link_at) } {
                sink(obj);
                rounds += 1;
            }
        }
        // SAFETY: forwarded.
        rounds + unsafe { self.drain_depot(mags, sink) }
    }

    /// Asks the platform to flush a slot's magazines to the depot when its
    /// owner goes away (a thread exits).
    ///
    /// # Safety
    /// `self` stays at its address, alive, until
    /// [`unregister`](Self::unregister) is called.
    pub unsafe fn register(&self) {
        // SAFETY: not registered yet; `flush_hook::<C>` expects this layer.
        unsafe { self.hook.bind((self as *const Self).cast()) };
        // SAFETY: the hook is a field of `self`, which the caller keeps in
        // place and alive until `unregister`.
        unsafe { self.cpu.register(&self.hook) }
    }

    /// Withdraws [`register`](Self::register); no flush runs afterwards.
    pub fn unregister(&self) {
        self.cpu.unregister(&self.hook);
    }

    /// Runs `f` while holding the depot lock, so tests can make a CPU's
    /// depot visit contended deterministically. Test plumbing: hidden from
    /// the docs, and may change.
    #[doc(hidden)]
    pub fn with_depot_locked<R>(&self, f: impl FnOnce() -> R) -> R {
        self.depot.hold(f)
    }

    /// Takes the depot lock and keeps it, for a `fork()` (a
    /// `pthread_atfork` prepare handler), so that no other thread holds it
    /// while the process is copied.
    /// A purge in progress (its claims on slots would stay in the child)
    /// is waited for first.
    #[cfg(not(loom))]
    pub fn fork_lock(&self) {
        core::mem::forget(self.purging.lock());
        core::mem::forget(self.depot.lock_quiet());
    }

    /// Releases what [`fork_lock`](Self::fork_lock) took, in the parent
    /// and in the child.
    ///
    /// # Safety
    /// [`fork_lock`](Self::fork_lock) was called and not undone since.
    #[cfg(not(loom))]
    pub unsafe fn fork_unlock(&self) {
        // SAFETY: held since `fork_lock`, whose guards were forgotten.
        unsafe {
            self.depot.force_unlock();
            self.purging.force_unlock();
        }
    }

    /// Contended depot acquisitions so far, read without the depot lock.
    pub fn contended(&self) -> u64 {
        self.depot.counters.contended.load(Ordering::Relaxed)
    }

    /// The current counters.
    pub fn stats(&self) -> MagazineStats {
        let deferred = self.deferred.load(Ordering::Relaxed);
        let (cpu_allocs, cpu_frees) = self.cpus.iter().fold((0, deferred), |(a, f), cc| {
            (a + cc.allocs(), f + cc.frees())
        });
        // The slot busy while the depot lock is held, as in `drain_depot`; a
        // handler that interrupted that reads no depot state.
        let (magsize, not_empty, empty, depot_rounds, depot_locks) = self
            .with_slot_busy(|| {
                let d = self.depot.lock_quiet();
                (
                    d.magsize,
                    d.not_empty.len(),
                    d.empty.len(),
                    d.rounds,
                    d.locks,
                )
            })
            .unwrap_or((self.start, 0, 0, 0, 0));
        let c = &self.depot.counters;
        MagazineStats {
            magsize,
            start_magsize: self.start,
            max_magsize: MAGAZINE_ROUNDS,
            not_empty,
            empty,
            depot_rounds,
            cpu_allocs,
            cpu_frees,
            deferred_frees: deferred,
            depot_locks,
            contended: c.contended.load(Ordering::Relaxed),
            resizes: c.resizes.load(Ordering::Relaxed),
            depot_not_empty_out: c.not_empty_out.load(Ordering::Relaxed),
            depot_empty_out: c.empty_out.load(Ordering::Relaxed),
            magazines_allocated: self.mags_allocated.load(Ordering::Relaxed),
            magazines_freed: self.mags_freed.load(Ordering::Relaxed),
            magazine_bytes: self.mag_bytes.load(Ordering::Relaxed),
            magazines_trimmed: c.trimmed.load(Ordering::Relaxed),
            refills: self.refills.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            depot_capped: self.capped.load(Ordering::Relaxed),
            purges: self.purge_counters.purges.load(Ordering::Relaxed),
            purge_slots_taken: self.purge_counters.taken.load(Ordering::Relaxed),
            purge_slots_asked: self.purge_counters.asked.load(Ordering::Relaxed),
            purge_requests_honoured: self.purge_counters.honoured.load(Ordering::Relaxed),
        }
    }
}

/// Magazines not drained yet: they go back to the depot if a sink panics
/// (a destructor), so no round and no magazine is lost.
struct Rest<'d> {
    depot: &'d Depot,
    list: MagList,
}

impl Drop for Rest<'_> {
    fn drop(&mut self) {
        if self.list.len() > 0 {
            let mut depot = self.depot.lock_quiet();
            while let Some(mag) = self.list.pop() {
                depot.put(mag);
            }
        }
    }
}

/// The slot-exit hook of a [`Magazines`].
///
/// # Safety
/// `data` is the live `Magazines<C>` the hook was bound to (registered
/// until `unregister`), and the caller owns `slot`.
unsafe fn flush_hook<C: Cpu>(data: *const (), slot: usize) {
    // SAFETY: the registration contract keeps `data` alive until
    // `unregister`, and the platform owns `slot` exclusively.
    unsafe { (*data.cast::<Magazines<'_, C>>()).flush_slot(slot) }
}

/// Where a batch refill ([`Magazines::refill`]) loads the rounds it takes
/// from the layer below: the caller's empty magazine, in place, up to its
/// fill target.
pub struct RefillSink<'m> {
    mag: &'m mut MagBox,
}

impl RefillSink<'_> {
    /// Rounds it still takes.
    #[inline]
    pub fn room(&self) -> usize {
        self.mag.room()
    }

    /// Loads `obj`; false, leaving `obj` to the caller, when the sink is
    /// full.
    #[inline]
    pub fn push(&mut self, obj: usize) -> bool {
        if !self.mag.has_room() {
            return false;
        }
        // SAFETY: room below the limit is room below the capacity.
        unsafe { self.mag.push(obj) };
        true
    }
}
