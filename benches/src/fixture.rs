//! kmem arena fixtures: ID-like arenas whose boundary tags and hash tables
//! come from a base arena over fake physical memory, prepared with a given
//! number of free or live segments before any timing starts.

use kmem_arena::{Arena, Policy};
use kmem_btag::TAGS_PER_CHUNK;

/// Quantum of the fragmentation fixtures: one page of an ID-like space.
pub const PAGE_QUANTUM: usize = 4096;

/// Start of the resource space every fixture manages (the same for the kmem
/// and vmem fixtures, so both hash the same keys).
pub const SPACE_BASE: usize = 1 << 32;

/// Size of that space: far more than any fixture uses, so the tail stays one
/// large free segment on a high list.
pub const SPACE_SIZE: usize = 1 << 44;

/// Bytes of fake physical memory a base arena needs to hold the boundary
/// tags and hash tables of arenas with `segments` segments in all (with
/// headroom for a hash table being replaced by its double).
pub fn tag_memory_bytes(segments: usize) -> usize {
    let tags = segments + segments / 8 + 64;
    let tag_bytes = tags.div_ceil(TAGS_PER_CHUNK) * 4096;
    // The hash keeps at most ~1.5 chains (4 bytes each) per live segment
    // before it doubles; old and new coexist for a moment.
    let hash_bytes = segments.next_power_of_two() * 4 * 6;
    (tag_bytes + hash_bytes + (16 << 20)).next_multiple_of(1 << 20)
}

/// An arena of `quantum` over `[SPACE_BASE, SPACE_BASE + SPACE_SIZE)` that
/// takes its tag pages and hash tables from `tags`.
///
/// # Panics
/// Panics if the arena cannot be built.
pub fn id_arena<'a>(name: &str, tags: &'a Arena<'a>, quantum: usize) -> Arena<'a> {
    Arena::builder(name)
        .quantum(quantum)
        .span(SPACE_BASE, SPACE_SIZE)
        .tags_from(tags)
        .build()
        .expect("kmem arena: build failed")
}

/// An arena with exactly `free_segments` free segments of `hole` quanta
/// each, every one between two allocated single-quantum segments, below the
/// arena's large free tail (Bonwick & Adams' figure 4.5.1 setup: allocate,
/// then free all but every `hole + 1`-th segment).
///
/// With `hole == 1` an instant-fit request for one quantum fills a hole
/// exactly; with `hole == 2` it splits a hole, and the free coalesces again.
pub struct Fragmented<'a> {
    /// The prepared arena.
    pub arena: Arena<'a>,
    /// Quanta per hole.
    hole: usize,
    /// The segments still allocated (freed when the fixture is dropped).
    held: Vec<usize>,
}

impl<'a> Fragmented<'a> {
    /// Builds the fixture: `(hole + 1) * free_segments` allocations of one
    /// [`PAGE_QUANTUM`], then frees all but every `hole + 1`-th, starting
    /// with the first (so the first hole sits at the span start and the last
    /// before an allocated segment, not touching the tail), then checks the
    /// arena and counts its segments.
    ///
    /// # Panics
    /// Panics if `hole` is zero, the tag memory runs out, or the result is
    /// not as described.
    pub fn new(tags: &'a Arena<'a>, free_segments: usize, hole: usize) -> Self {
        assert!(hole > 0, "fixture: empty holes");
        let arena = id_arena("fragmented", tags, PAGE_QUANTUM);
        let all: Vec<usize> = (0..(hole + 1) * free_segments)
            .map(|_| {
                arena
                    .alloc(PAGE_QUANTUM, Policy::InstantFit)
                    .expect("fixture: alloc failed")
            })
            .collect();
        let mut held = Vec::with_capacity(free_segments);
        for (i, &addr) in all.iter().enumerate() {
            if i % (hole + 1) < hole {
                arena
                    .free(addr, PAGE_QUANTUM)
                    .expect("fixture: free failed");
            } else {
                held.push(addr);
            }
        }
        arena.check().expect("fixture: arena inconsistent");
        let stats = arena.stats();
        assert_eq!(stats.live, free_segments, "fixture: live segments");
        // The holes plus the free tail.
        assert_eq!(
            stats.free_segments,
            free_segments + 1,
            "fixture: free segments"
        );
        Self { arena, hole, held }
    }

    /// True when `addr` lies in one of the fixture's holes (below the tail).
    pub fn in_holes(&self, addr: usize) -> bool {
        let end = SPACE_BASE + (self.hole + 1) * self.held.len() * PAGE_QUANTUM;
        (SPACE_BASE..end).contains(&addr)
    }
}

impl Drop for Fragmented<'_> {
    fn drop(&mut self) {
        for &addr in &self.held {
            let _ = self.arena.free(addr, PAGE_QUANTUM);
        }
    }
}

#[cfg(test)]
mod tests {
    use kmem_physmem::{PhysMem, PAGE_SIZE};

    use super::{tag_memory_bytes, Fragmented, PAGE_QUANTUM};
    use crate::contender::{pair, RangeAlloc};

    #[test]
    fn holes_are_used_and_given_back() {
        let ram = PhysMem::new(tag_memory_bytes(3 * 500));
        let base = ram.base_arena("tags", PAGE_SIZE);
        let free_before = base.amt_free();
        for hole in [1, 2] {
            let fx = Fragmented::new(&base, 500, hole);
            let a = RangeAlloc::alloc(&fx.arena, PAGE_QUANTUM);
            assert!(fx.in_holes(a));
            RangeAlloc::free(&fx.arena, a, PAGE_QUANTUM);
            for _ in 0..100 {
                pair(&fx.arena, PAGE_QUANTUM);
            }
            fx.arena.check().unwrap();
            assert_eq!(fx.arena.stats().free_segments, 501);
        }
        // Dropped fixtures return their tag pages and hash tables.
        base.check().unwrap();
        assert_eq!(base.amt_free(), free_before);
    }
}
