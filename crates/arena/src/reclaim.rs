//! Reclaim on exhaustion: what an arena does before it answers
//! `Exhausted` (or `LimitReached`) to a caller — its quantum caches give
//! back what they hold, then the [`Reclaim`] callbacks registered on it (a
//! kernel's shrinkers), then its source's, and the request is tried once
//! more. No arena lock is held while any of them runs.

use core::fmt;

use crate::{AllocError, Arena};

/// Callbacks an arena keeps at most.
pub const MAX_RECLAIMERS: usize = 8;

/// Something that holds memory or resources of an arena and can give some
/// back when the arena runs out (a kernel's shrinker: an object cache, a
/// pool of buffers, a dentry cache).
pub trait Reclaim: Sync {
    /// Gives back to `arena`, which ran out, what this can spare, `wanted`
    /// units or more if it can; returns about how many units it gave back
    /// (0: nothing, and the arena does not retry on its account). Runs with
    /// no arena lock held; it must not allocate from `arena`, directly or
    /// through what it calls (a cache's reap may allocate metadata: not
    /// from the arena that ran out).
    ///
    /// On a base arena, a callback may instead give it more memory with
    /// [`Arena::add_memory`] and return the units added: that is how a base
    /// arena grows on demand (kmalloc's global allocator grows its metadata
    /// so). A base arena also calls its callbacks when it has no memory left
    /// to carve boundary tags from, which for it is running out.
    fn reclaim(&self, arena: &Arena<'_>, wanted: usize) -> usize;
}

/// A registration of [`Arena::add_reclaim`], to withdraw it with
/// [`Arena::remove_reclaim`] (callbacks are told apart by registration,
/// not by address: two zero-sized ones may share one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReclaimHandle {
    slot: usize,
    generation: u64,
}

/// [`Arena::add_reclaim`] found all [`MAX_RECLAIMERS`] places taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyReclaimers;

impl fmt::Display for TooManyReclaimers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the arena already has {MAX_RECLAIMERS} reclaim callbacks"
        )
    }
}

impl core::error::Error for TooManyReclaimers {}

impl Arena<'_> {
    /// Registers `r`, to be called when an allocation finds the arena
    /// exhausted (or at its `set_limit`): its quantum caches give back
    /// what they hold first, then the callbacks, then the source arena's,
    /// with no arena lock held, and the request is tried once more.
    /// `'static`, as a kernel's shrinkers are: the arena may call it until
    /// it is withdrawn with the returned handle, from any thread (one call
    /// may still be finishing when the withdrawal returns).
    pub fn add_reclaim(&self, r: &'static dyn Reclaim) -> Result<ReclaimHandle, TooManyReclaimers> {
        let mut list = self.reclaimers.lock();
        let (slot, entry) = list
            .iter_mut()
            .enumerate()
            .find(|(_, e)| e.0.is_none())
            .ok_or(TooManyReclaimers)?;
        entry.0 = Some(r);
        Ok(ReclaimHandle {
            slot,
            generation: entry.1,
        })
    }

    /// Withdraws the callback `add_reclaim` registered as `h`; false if it
    /// was withdrawn already.
    pub fn remove_reclaim(&self, h: ReclaimHandle) -> bool {
        let mut list = self.reclaimers.lock();
        match list.get_mut(h.slot) {
            Some(entry) if entry.1 == h.generation && entry.0.is_some() => {
                entry.0 = None;
                entry.1 = entry.1.wrapping_add(1);
                true
            }
            _ => false,
        }
    }

    /// Has the quantum caches give back what they hold (the caller's own
    /// magazines too, also from inside an operation), as the first step of
    /// a reclaim does: for a [`Reclaim`] callback that has just freed into
    /// them (slabs of its caches). Returns the units given back.
    pub fn reclaim_qcaches(&self) -> usize {
        self.qcaches.map_or(0, |q| q.reclaim(self))
    }

    /// True when `e` says the arena ran out: `Exhausted` or `LimitReached`,
    /// and for a base arena `NoTags` too (it carves its tags from its own
    /// free memory, so having none to carve is running out of memory).
    pub(crate) fn ran_out(&self, e: AllocError) -> bool {
        matches!(e, AllocError::Exhausted | AllocError::LimitReached)
            || (self.base && e == AllocError::NoTags)
    }

    /// Asks the quantum caches, the callbacks and the source (if an arena)
    /// to give back `wanted` units; true when any of them gave something.
    pub(crate) fn reclaim(&self, wanted: usize) -> bool {
        let mut freed = self.qcaches.map_or(0, |q| q.reclaim(self));
        // A copy, called without the list's lock (a callback may register
        // or withdraw one).
        let list = *self.reclaimers.lock();
        for r in list.into_iter().filter_map(|e| e.0) {
            freed = freed.saturating_add(r.reclaim(self, wanted));
        }
        if let Some(src) = self.source.and_then(|s| s.as_arena()) {
            if src.reclaim(wanted) {
                freed = freed.max(1);
            }
        }
        freed > 0
    }
}
