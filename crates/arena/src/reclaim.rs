//! Reclaim on exhaustion: what an arena does before it answers
//! `Exhausted` to a caller — its quantum caches give back what they hold,
//! then the [`Reclaim`] callbacks registered on it (a kernel's shrinkers),
//! then its source's, and the request is tried once more. No arena lock is
//! held while any of them runs.

use core::fmt;

use crate::Arena;

/// Callbacks an arena keeps at most.
pub const MAX_RECLAIMERS: usize = 8;

/// Something that holds memory or resources of an arena and can give some
/// back when the arena runs out (a kernel's shrinker: an object cache, a
/// pool of buffers, a dentry cache).
pub trait Reclaim: Sync {
    /// Gives back to `arena`, which ran out, what this can spare, `wanted`
    /// units or more if it can; returns about how many units it gave back
    /// (0: nothing, and the arena does not retry on its account). Runs with
    /// no arena lock held; it must not allocate from `arena`.
    fn reclaim(&self, arena: &Arena<'_>, wanted: usize) -> usize;
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
    /// exhausted: its quantum caches give back what they hold first, then
    /// the callbacks, then the source arena's, with no arena lock held,
    /// and the request is tried once more. `'static`, as a kernel's
    /// shrinkers are: the arena may call it until it is withdrawn, from any
    /// thread (a callback that must die sooner is withdrawn first, and one
    /// call may still be finishing).
    pub fn add_reclaim(&self, r: &'static dyn Reclaim) -> Result<(), TooManyReclaimers> {
        let mut list = self.reclaimers.lock();
        let free = list.iter_mut().find(|slot| slot.is_none());
        *free.ok_or(TooManyReclaimers)? = Some(r);
        Ok(())
    }

    /// Withdraws `r`; false if it was not registered. A call already under
    /// way may still finish.
    pub fn remove_reclaim(&self, r: &dyn Reclaim) -> bool {
        let mut list = self.reclaimers.lock();
        let at = list.iter_mut().find(|slot| {
            slot.is_some_and(|s| {
                core::ptr::addr_eq(s as *const dyn Reclaim, r as *const dyn Reclaim)
            })
        });
        at.map(|slot| *slot = None).is_some()
    }

    /// Asks the quantum caches, the callbacks and the source (if an arena)
    /// to give back `wanted` units; true when any of them gave something.
    pub(crate) fn reclaim(&self, wanted: usize) -> bool {
        let mut freed = self.qcaches.map_or(0, |q| q.reclaim(self));
        // A copy, called without the list's lock (a callback may register
        // or withdraw one).
        let list = *self.reclaimers.lock();
        for r in list.into_iter().flatten() {
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
