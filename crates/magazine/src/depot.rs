//! The depot: a cache's lists of not-empty and empty magazines behind one
//! lock, and Akaros' rule for growing magazines when that lock is
//! contended.

use crate::magazine::{MagBox, MagList, MAGAZINE_ROUNDS};
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

/// When the depot lock is contended more than `threshold` times within
/// `window_ns` while not-empty magazines exist, magazines grow by one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResizePolicy {
    /// Length of the counting window.
    pub window_ns: u64,
    /// Contended acquisitions tolerated per window.
    pub threshold: u32,
}

impl ResizePolicy {
    /// Akaros' tunables: more than 1 contended acquisition within 1 s.
    pub const AKAROS: Self = Self {
        window_ns: 1_000_000_000,
        threshold: 1,
    };
}

impl Default for ResizePolicy {
    fn default() -> Self {
        Self::AKAROS
    }
}

pub(crate) struct DepotState {
    /// Magazines holding at least one round ("full" in the paper).
    pub(crate) not_empty: MagList,
    pub(crate) empty: MagList,
    /// The fill target CPUs adopt on their next free-path visit.
    pub(crate) magsize: usize,
    /// Rounds in `not_empty`.
    pub(crate) rounds: usize,
    /// At this many rounds in `not_empty`, a free with both CPU magazines
    /// full gets no empty magazine from the depot: it is handed back, for
    /// the layer below to take a full magazine's rounds back in one pass
    /// (`Magazines::set_depot_cap`). `usize::MAX`: no cap.
    pub(crate) round_cap: usize,
    /// The working set: the fewest not-empty and empty magazines the depot
    /// held since the last [`ws_update`](Self::ws_update) (illumos'
    /// `ml_min`), and what that was at the update (`ml_reaplimit`): that many
    /// magazines stayed unused for a whole interval.
    ws: [WorkingSet; 2],
    busy_count: u32,
    busy_start: u64,
    /// Acquisitions of the lock by allocations and frees looking for a
    /// magazine ([`Depot::lock`]), contended or not: a plain count under
    /// the lock (an atomic would be one more step for the loom models to
    /// interleave).
    pub(crate) locks: u64,
}

/// One list's working-set figures (see `DepotState::ws`).
#[derive(Clone, Copy, Default)]
struct WorkingSet {
    min: usize,
    reap_limit: usize,
}

/// Index of the not-empty list's [`WorkingSet`].
const NOT_EMPTY: usize = 0;
/// Index of the empty list's [`WorkingSet`].
const EMPTY: usize = 1;

impl DepotState {
    pub(crate) fn put(&mut self, mag: MagBox) {
        if mag.is_empty() {
            self.empty.push(mag);
        } else {
            self.rounds += mag.len();
            self.not_empty.push(mag);
        }
    }

    pub(crate) fn take_not_empty(&mut self) -> Option<MagBox> {
        let mag = self.not_empty.pop()?;
        self.rounds -= mag.len();
        let ws = &mut self.ws[NOT_EMPTY];
        ws.min = ws.min.min(self.not_empty.len());
        Some(mag)
    }

    pub(crate) fn take_empty(&mut self) -> Option<MagBox> {
        let mag = self.empty.pop()?;
        let ws = &mut self.ws[EMPTY];
        ws.min = ws.min.min(self.empty.len());
        Some(mag)
    }

    /// Both lists, leaving the depot empty.
    pub(crate) fn take_all(&mut self) -> (MagList, MagList) {
        self.rounds = 0;
        for ws in &mut self.ws {
            ws.min = 0;
        }
        (self.not_empty.take(), self.empty.take())
    }

    /// Ends a working-set interval: the fewest magazines each list held
    /// during it become the reap limits, and a new interval starts from the
    /// lists' lengths now.
    pub(crate) fn ws_update(&mut self) {
        let lens = [self.not_empty.len(), self.empty.len()];
        for (ws, len) in self.ws.iter_mut().zip(lens) {
            ws.reap_limit = ws.min;
            ws.min = len;
        }
    }

    /// Takes up to `max` magazines of each list that nobody used during
    /// the last whole interval (illumos' `kmem_depot_ws_reap`): at most the
    /// reap limit, and at most the fewest held since (a magazine taken
    /// meanwhile was needed after all). Taking lowers both.
    pub(crate) fn ws_take(&mut self, max: usize, out: &mut MagList) {
        for list in [NOT_EMPTY, EMPTY] {
            let ws = self.ws[list];
            let n = ws.reap_limit.min(ws.min).min(max);
            for _ in 0..n {
                let mag = if list == NOT_EMPTY {
                    self.take_not_empty()
                } else {
                    self.take_empty()
                };
                let Some(mag) = mag else { break };
                out.push(mag);
            }
            let ws = &mut self.ws[list];
            ws.reap_limit -= n.min(ws.reap_limit);
        }
    }

    /// Magazines the working set says nobody needed last interval and that
    /// are still there: what [`ws_take`](Self::ws_take) would take.
    pub(crate) fn ws_idle(&self) -> usize {
        self.ws.iter().map(|ws| ws.reap_limit.min(ws.min)).sum()
    }
}

/// Depot counters, readable without the lock.
#[derive(Default)]
pub(crate) struct DepotCounters {
    pub(crate) contended: AtomicU64,
    pub(crate) resizes: AtomicU64,
    pub(crate) not_empty_out: AtomicU64,
    pub(crate) empty_out: AtomicU64,
    /// Magazines the working-set trim gave back.
    pub(crate) trimmed: AtomicU64,
}

/// On cache lines of its own: the lock and counters are written on every
/// depot visit, and would otherwise share a line with the fields every
/// fast-path operation reads (the platform and the per-CPU array).
#[repr(align(64))]
pub(crate) struct Depot {
    state: Mutex<DepotState>,
    policy: ResizePolicy,
    pub(crate) counters: DepotCounters,
}

impl Depot {
    pub(crate) fn new(magsize: usize, policy: ResizePolicy) -> Self {
        Self {
            state: Mutex::new(DepotState {
                not_empty: MagList::new(),
                empty: MagList::new(),
                magsize: magsize.clamp(1, MAGAZINE_ROUNDS),
                rounds: 0,
                round_cap: usize::MAX,
                ws: [WorkingSet::default(); 2],
                busy_count: 0,
                busy_start: 0,
                locks: 0,
            }),
            policy,
            counters: DepotCounters::default(),
        }
    }

    /// Takes the lock; a contended acquisition counts toward growing the
    /// magazines. `now` is read before spinning, as Akaros does, so a long
    /// wait does not stretch the window.
    pub(crate) fn lock(&self, now: impl FnOnce() -> u64) -> MutexGuard<'_, DepotState> {
        if let Some(mut guard) = self.state.try_lock() {
            guard.locks += 1;
            return guard;
        }
        let time = now();
        self.counters.contended.fetch_add(1, Ordering::Relaxed);
        let mut depot = self.state.lock();
        depot.locks += 1;
        // Without not-empty magazines the fight is over too few magazines,
        // not too small ones.
        if depot.not_empty.len() == 0 {
            return depot;
        }
        if time.wrapping_sub(depot.busy_start) > self.policy.window_ns {
            depot.busy_count = 0;
            depot.busy_start = time;
        }
        depot.busy_count += 1;
        if depot.busy_count > self.policy.threshold {
            depot.busy_count = 0;
            if depot.magsize < MAGAZINE_ROUNDS {
                depot.magsize += 1;
                self.counters.resizes.fetch_add(1, Ordering::Relaxed);
            }
        }
        depot
    }

    /// Takes the lock without counting contention (draining, statistics).
    pub(crate) fn lock_quiet(&self) -> MutexGuard<'_, DepotState> {
        self.state.lock()
    }

    /// Releases a lock whose guard was forgotten (`fork_lock`).
    ///
    /// # Safety
    /// The lock is held and no guard of it is alive.
    #[cfg(not(loom))]
    pub(crate) unsafe fn force_unlock(&self) {
        // SAFETY: the caller's guarantee.
        unsafe { self.state.force_unlock() }
    }

    /// Holds the lock for the duration of `f` (tests drive contention).
    pub(crate) fn hold<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.state.lock();
        f()
    }
}
