//! The slab layer of one cache: its [`SlabSet`] and counters, objects out
//! and back, slabs in and out, and the checker. Everything here runs under
//! the cache lock; the memory itself is [`raw`](crate::raw)'s.

use crate::error::{BadFree, CheckError};
use crate::geometry::{Geometry, Layout};
use crate::raw::{
    BufState, EmptySlab, FreeCheck, Freed, LogRing, NewSlab, SlabList, SlabSet, Taken,
};
#[cfg(feature = "site-stats")]
use crate::sites::SiteId;

pub(crate) struct SlabState<'a> {
    /// Every slab, on its list and in the address hash (small layout: slab
    /// headers by slab base; bufctl layout: every bufctl by buffer address).
    pub(crate) set: SlabSet<'a>,
    /// Objects out of slabs (held by users or cached in magazines).
    pub(crate) busy: u64,
    /// Objects in all slabs.
    pub(crate) total: u64,
    /// User allocations served by the slab layer, and user frees returned
    /// straight to it.
    pub(crate) direct_allocs: u64,
    pub(crate) direct_frees: u64,
    pub(crate) slab_creates: u64,
    pub(crate) slab_destroys: u64,
    /// `AUDIT` caches: the transaction log.
    pub(crate) log: Option<LogRing<'a>>,
}

/// Which state a returned object must be in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// Straight from its user.
    User,
    /// From a magazine of a checked cache (state `Cached`; see
    /// `KmemCache::checked`).
    Cached,
}

impl From {
    /// The state a bufctl must be in to come back this way.
    fn want(self) -> BufState {
        match self {
            From::User => BufState::Allocated,
            From::Cached => BufState::Cached,
        }
    }
}

impl<'a> SlabState<'a> {
    pub(crate) fn new(set: SlabSet<'a>) -> Self {
        Self {
            set,
            busy: 0,
            total: 0,
            direct_allocs: 0,
            direct_frees: 0,
            slab_creates: 0,
            slab_destroys: 0,
            log: None,
        }
    }

    pub(crate) fn slabs(&self) -> usize {
        self.set.len(SlabList::Full) + self.set.len(SlabList::Partial) + self.empty_slabs()
    }

    pub(crate) fn partial_slabs(&self) -> usize {
        self.set.len(SlabList::Partial)
    }

    pub(crate) fn empty_slabs(&self) -> usize {
        self.set.len(SlabList::Empty)
    }

    /// Takes a free object from a partial slab, else an empty one (with
    /// `site-stats`: counted for `site`).
    pub(crate) fn take(
        &mut self,
        state: BufState,
        #[cfg(feature = "site-stats")] site: SiteId,
    ) -> Option<Taken> {
        let obj = self.set.take(
            state,
            #[cfg(feature = "site-stats")]
            site,
        )?;
        self.busy += 1;
        Some(obj)
    }

    /// True when `obj` lies in one of this cache's slabs.
    pub(crate) fn owns(&self, obj: usize) -> bool {
        self.set.owns(obj)
    }

    /// Checks that `obj` may come back `from` where it is, without changing
    /// anything.
    pub(crate) fn validate(&self, obj: usize, from: From) -> Result<(), BadFree> {
        self.set.validate(obj, from.want())
    }

    /// Marks a tracked (bufctl) object's state; `validate` must have passed.
    pub(crate) fn mark(&mut self, obj: usize, state: BufState) {
        self.set.mark(obj, state);
    }

    /// Returns `obj` (already destructed) to its slab.
    pub(crate) fn give(&mut self, obj: Freed, from: From) -> Result<(), BadFree> {
        self.set.give(obj, from.want())?;
        self.busy -= 1;
        Ok(())
    }

    /// Adds a freshly built, empty slab.
    pub(crate) fn insert(&mut self, geo: &Geometry, slab: NewSlab) {
        self.set.insert(slab);
        self.total += u64::from(geo.per_slab);
        self.slab_creates += 1;
    }

    /// Unlinks an empty slab (and its hash entries) for the caller to free.
    pub(crate) fn pop_empty(&mut self, geo: &Geometry) -> Option<EmptySlab> {
        let slab = self.set.pop_empty()?;
        self.total -= u64::from(geo.per_slab);
        self.slab_destroys += 1;
        Some(slab)
    }

    /// Verifies lists, free chains, bitmaps, owner words (`owner`: the
    /// cache's free check, for the headed layout), colours, bufctl states and totals; with
    /// `site-stats`, that no free object counts for a site.
    pub(crate) fn check(
        &self,
        geo: &Geometry,
        owner: Option<&FreeCheck>,
    ) -> Result<(), CheckError> {
        let (mut busy, mut total, mut bufctls) = (0u64, 0u64, 0u64);
        for list in [SlabList::Full, SlabList::Partial, SlabList::Empty] {
            let mut n = 0;
            for s in self.set.iter(list) {
                n += 1;
                let err_base = s.base();
                let want = match s.busy() {
                    0 => SlabList::Empty,
                    b if b == s.total() => SlabList::Full,
                    _ => SlabList::Partial,
                };
                if s.list() != list || want != list || s.total() != geo.per_slab {
                    return Err(CheckError::WrongList { slab: err_base });
                }
                let free = (s.total() - s.busy()) as usize;
                match geo.layout {
                    Layout::Small { .. } => {
                        if s.allocated() != s.busy() {
                            return Err(CheckError::BadState { slab: err_base });
                        }
                        if !s.hint_ok()
                            || Some(s.owner()) != owner.map(|c| c.owner_word(s.colour()))
                        {
                            return Err(CheckError::FreeCount { slab: err_base });
                        }
                        if s.colour() > geo.max_colour()
                            || !s.colour().is_multiple_of(geo.colour_step)
                        {
                            return Err(CheckError::BadFreeObject { slab: err_base });
                        }
                        #[cfg(feature = "site-stats")]
                        if !s.free_sites_clear() {
                            return Err(CheckError::BadState { slab: err_base });
                        }
                    }
                    Layout::Bufctl => {
                        let mut at = s.first_free_bufctl();
                        for _ in 0..free {
                            let b = at.ok_or(CheckError::FreeCount { slab: err_base })?;
                            if !b.is_of(s) || b.state() != BufState::Free {
                                return Err(CheckError::BadState { slab: err_base });
                            }
                            #[cfg(feature = "site-stats")]
                            if b.site().load(core::sync::atomic::Ordering::Relaxed)
                                != SiteId::NONE.slot_value()
                            {
                                return Err(CheckError::BadState { slab: err_base });
                            }
                            if geo.index(s.base(), b.key()).is_none() {
                                return Err(CheckError::BadFreeObject { slab: err_base });
                            }
                            at = b.next_free();
                        }
                        if at.is_some() {
                            return Err(CheckError::FreeCount { slab: err_base });
                        }
                        bufctls += u64::from(s.total());
                    }
                }
                busy += u64::from(s.busy());
                total += u64::from(s.total());
            }
            if n != self.set.len(list) {
                return Err(CheckError::Totals);
            }
        }
        if busy != self.busy || total != self.total {
            return Err(CheckError::Totals);
        }
        let want = match geo.layout {
            Layout::Small { .. } => self.slabs() as u64,
            Layout::Bufctl => bufctls,
        };
        let hash = self.set.hash();
        if hash.len() != want || hash.count_nodes() != want {
            return Err(CheckError::HashCount);
        }
        Ok(())
    }
}
