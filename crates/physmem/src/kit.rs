//! Small helpers that the arena's tests, the fuzz harness and
//! [`ArenaModel`](crate::model::ArenaModel) share: the allocation
//! [`POLICIES`], the arithmetic of effective alignments ([`gcd`], [`lcm`]),
//! the consistency check at the caller's line ([`assert_check`]), an arena's segments as a list
//! ([`segments`], [`ranges`]), and an allocation a test holds ([`Live`]),
//! freed the way it was made ([`Live::free`], which also checks that a
//! memory arena refuses the safe frees).
//!
//! ```
//! use kmem_arena::{Arena, Constraints, WalkKinds};
//! use kmem_physmem::kit::{lcm, ranges, Live};
//! use kmem_physmem::{PhysMem, PAGE_SIZE};
//!
//! let ram = PhysMem::new(1 << 20);
//! let base = ram.base_arena("base", PAGE_SIZE);
//! let ids = Arena::builder("ids")
//!     .quantum(3)
//!     .span(0, 300)
//!     .tags_from(&base)
//!     .build()
//!     .unwrap();
//! let addr = ids.xalloc(3, &Constraints::new().align(4)).unwrap();
//! assert_eq!(addr % lcm(3, 4).unwrap(), 0);
//! assert_eq!(ranges(&ids, WalkKinds::ALLOCATED), [(addr, 3)]);
//! let held = Live { addr, size: 3, xalloc: true };
//! // SAFETY: an arena of integers: its frees are always safe.
//! unsafe { held.free(&ids) }.unwrap();
//! assert_eq!(ranges(&ids, WalkKinds::ALLOCATED), []);
//! ```

use kmem_arena::{Arena, FreeError, Policy, Segment, WalkKinds};

use crate::faults::{ArenaState, Leave};

/// The three allocation policies, for tests that try each.
pub const POLICIES: [Policy; 3] = [Policy::InstantFit, Policy::BestFit, Policy::NextFit];

/// Greatest common divisor (`gcd(a, 0) == a`).
pub fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Least common multiple, or `None` if it does not fit a `usize`.
///
/// # Panics
/// Panics if both are zero.
pub fn lcm(a: usize, b: usize) -> Option<usize> {
    (a / gcd(a, b)).checked_mul(b)
}

/// Fails at the caller's line unless `arena` passes its consistency check
/// ([`Arena::check`]).
#[track_caller]
pub fn assert_check(arena: &Arena<'_>) {
    if let Err(e) = arena.check() {
        panic!("arena {:?} failed its check: {e}", arena.name());
    }
}

/// Every span and segment of the `kinds` selected, in address order (as
/// [`Arena::walk`] visits them).
pub fn segments(arena: &Arena<'_>, kinds: WalkKinds) -> Vec<Segment> {
    let mut v = Vec::new();
    arena.walk(kinds, |s| v.push(s));
    v
}

/// [`segments`] as `(start, size)` pairs.
pub fn ranges(arena: &Arena<'_>, kinds: WalkKinds) -> Vec<(usize, usize)> {
    segments(arena, kinds)
        .into_iter()
        .map(|s| (s.start, s.size))
        .collect()
}

/// Fails unless `arena`, an arena with a source that takes its tags from
/// elsewhere, is back to empty: no span, allocation or import held, every
/// allocation freed and every span imported released.
#[track_caller]
pub fn assert_emptied(arena: &Arena<'_>) {
    let st = arena.stats();
    assert_eq!(
        (st.total, st.spans, st.live, st.allocated, st.imported),
        (0, 0, 0, 0, 0),
        "{} still holds spans or allocations: {st:?}",
        arena.name()
    );
    assert_eq!(st.allocs, st.frees, "{}: {st:?}", arena.name());
    assert_eq!(st.imports, st.releases, "{}: {st:?}", arena.name());
}

/// An allocation a test holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    /// Its first unit.
    pub addr: usize,
    /// The size asked for.
    pub size: usize,
    /// Made by `xalloc` (freed by `xfree`), not `alloc`.
    pub xalloc: bool,
}

impl Live {
    /// Frees the allocation from `arena` as it was made, by `free` or
    /// `xfree` in an arena of integers (the safe calls). A memory arena
    /// must refuse those with [`FreeError::MemoryArena`], changing nothing
    /// ([`Leave::UnusedTags`]); it is then freed by `free_memory` or
    /// `xfree_memory`.
    ///
    /// # Safety
    /// In a memory arena, as for [`Arena::free_memory`]: when this
    /// allocation is one `arena` handed out with this size, the caller owns
    /// it and does not use it afterwards (any other free is refused).
    ///
    /// # Panics
    /// Panics if a memory arena answers a safe free otherwise, or changes
    /// in refusing it (so not for an arena other threads use meanwhile).
    pub unsafe fn free(self, arena: &Arena<'_>) -> Result<(), FreeError> {
        let Self { addr, size, xalloc } = self;
        let safe = || {
            if xalloc {
                arena.xfree(addr, size)
            } else {
                arena.free(addr, size)
            }
        };
        if !arena.is_memory() {
            return safe();
        }
        let before = ArenaState::leaving(arena, Leave::UnusedTags);
        assert_eq!(
            safe(),
            Err(FreeError::MemoryArena { addr }),
            "kmem-physmem: memory arena {:?} answered a safe free of {self:x?}",
            arena.name()
        );
        assert_eq!(
            ArenaState::leaving(arena, Leave::UnusedTags),
            before,
            "kmem-physmem: memory arena {:?} changed refusing a safe free",
            arena.name()
        );
        // SAFETY: the caller's promise, for a memory arena.
        unsafe {
            if xalloc {
                arena.xfree_memory(addr, size)
            } else {
                arena.free_memory(addr, size)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcd_and_lcm() {
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(7, 0), 7);
        assert_eq!(gcd(0, 7), 7);
        assert_eq!(lcm(3, 16), Some(48));
        assert_eq!(lcm(4096, 24), Some(12288));
        assert_eq!(lcm(usize::MAX, 2), None);
    }
}
