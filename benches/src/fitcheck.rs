//! B7's constrained requests and the brute-force answer to "did a fitting
//! range exist?": a seeded trace of xalloc requests (alignment, phase,
//! nocross, `[min, max)` windows, alone and together) and frees, a check
//! that a result honours its constraints, and [`fit_exists`], which scans
//! every free segment for a start that satisfies them. Units throughout
//! (quantum 1).

use std::collections::BTreeMap;

use kmem_arena::SpanFit;
use kmem_physmem::Rng;

/// One constrained request: the arena's own description of a range that
/// fits, [`SpanFit`] (its `top` unused here). The result `r` must satisfy
/// `r % align == phase` (`align` here a power of two, `phase` below it),
/// `[r, r + size)` inside `[min, max)`, and not cross a multiple of
/// `nocross` (0, or a power of two at least `size`).
pub type Req = SpanFit;

/// What the benchmarks ask of a [`Req`] beyond [`SpanFit::holds`] (which
/// checks a result).
pub trait ReqExt {
    /// True when only the alignment constrains it (what range-alloc and
    /// vm-allocator can express).
    fn align_only(&self) -> bool;
    /// True when nothing constrains it (what offset-allocator can express).
    fn is_plain(&self) -> bool;
    /// The first start inside the free range `[lo, hi)` that honours every
    /// constraint, if any.
    fn first_fit_in(&self, lo: usize, hi: usize) -> Option<usize>;
}

impl ReqExt for Req {
    fn align_only(&self) -> bool {
        self.phase == 0 && self.nocross == 0 && self.min == 0 && self.max == usize::MAX
    }

    fn is_plain(&self) -> bool {
        self.align == 1 && self.align_only()
    }

    fn first_fit_in(&self, lo: usize, hi: usize) -> Option<usize> {
        let lo = lo.max(self.min);
        let hi = hi.min(self.max);
        if lo >= hi {
            return None;
        }
        let mut x = candidate(self, lo);
        // Past the first boundary every later one gives the same offset
        // (align and nocross are powers of two), so two jumps suffice.
        for _ in 0..3 {
            if x + self.size > hi {
                return None;
            }
            if self.holds(x) {
                return Some(x);
            }
            if self.nocross == 0 {
                return None;
            }
            x = candidate(self, (x / self.nocross + 1) * self.nocross);
        }
        None
    }
}

/// The smallest `x >= from` with `x % r.align == r.phase`.
fn candidate(r: &Req, from: usize) -> usize {
    let base = from - from % r.align + r.phase;
    if base >= from {
        base
    } else {
        base + r.align
    }
}

/// True when some free segment `(start, size)` holds a start honouring `r`.
pub fn fit_exists(r: &Req, free: impl IntoIterator<Item = (usize, usize)>) -> bool {
    free.into_iter()
        .any(|(s, n)| r.first_fit_in(s, s + n).is_some())
}

/// One step of a trace.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Allocate.
    Alloc(Req),
    /// Free the live allocation at this index (modulo the live count).
    Free(u32),
}

/// Which constraints a trace's requests carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kinds {
    /// Plain, aligned, aligned with a phase, nocross, windowed, or all of
    /// these at once (one in six each).
    All,
    /// Plain or aligned (one in two each): what range-alloc and
    /// vm-allocator can express.
    AlignOnly,
    /// No constraint: what offset-allocator can express.
    Plain,
}

impl Kinds {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Kinds::All => "all constraints",
            Kinds::AlignOnly => "alignment only",
            Kinds::Plain => "unconstrained",
        }
    }
}

/// A trace of `n` steps over the span `[base, base + len)`: allocations
/// (55 %) of sizes log-uniform in 1..=1024 units carrying the constraints
/// `kinds` allows, and frees of a random live allocation.
pub fn trace(seed: u64, n: usize, base: usize, len: usize, kinds: Kinds) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            if rng.below(100) >= 55 {
                return Step::Free(rng.below(u32::MAX as u64) as u32);
            }
            let size = 1usize << rng.below(11);
            let size = rng.range(size / 2 + 1, size + 1).max(1);
            let mut r = Req::anywhere(size);
            let kind = match kinds {
                Kinds::All => rng.below(6),
                Kinds::AlignOnly => rng.below(2),
                Kinds::Plain => 0,
            };
            if matches!(kind, 1 | 2 | 5) {
                r.align = 1 << rng.below(13);
            }
            if matches!(kind, 2 | 5) && r.align > 1 {
                r.phase = rng.below(r.align as u64) as usize;
            }
            if matches!(kind, 3 | 5) {
                r.nocross = (size.next_power_of_two() << rng.below(4)).max(1);
            }
            if matches!(kind, 4 | 5) {
                let lo = base + rng.below(len as u64 - size as u64) as usize;
                let room = rng.range(size + r.align, len / 4 + size + r.align);
                r.min = lo;
                r.max = (lo + room).min(base + len);
                if r.max - r.min < size {
                    r.min = r.max - size;
                }
            }
            Step::Alloc(r)
        })
        .collect()
}

/// The free space of a range allocator as its caller sees it: the span
/// minus what it holds (for peers that cannot list their free segments).
pub struct Shadow {
    base: usize,
    end: usize,
    live: BTreeMap<usize, usize>,
}

impl Shadow {
    /// An empty span `[base, base + len)`.
    pub fn new(base: usize, len: usize) -> Self {
        Self {
            base,
            end: base + len,
            live: BTreeMap::new(),
        }
    }

    /// Records an allocation; false when it overlaps a live one or leaves
    /// the span (an allocator bug).
    pub fn insert(&mut self, start: usize, size: usize) -> bool {
        let ok = start >= self.base
            && start + size <= self.end
            && self
                .live
                .range(..start + size)
                .next_back()
                .is_none_or(|(&s, &n)| s + n <= start);
        self.live.insert(start, size);
        ok
    }

    /// Forgets an allocation.
    pub fn remove(&mut self, start: usize) {
        self.live.remove(&start);
    }

    /// The free ranges `(start, size)`, in address order.
    pub fn free(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = self.base;
        for (&s, &n) in &self.live {
            if s > at {
                out.push((at, s - at));
            }
            at = at.max(s + n);
        }
        if self.end > at {
            out.push((at, self.end - at));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{fit_exists, trace, Kinds, Req, ReqExt, Shadow, Step};

    #[test]
    fn first_fit_honours_every_constraint() {
        let r = Req {
            size: 8,
            align: 16,
            phase: 4,
            nocross: 16,
            min: 0,
            max: usize::MAX,
            top: false,
        };
        // 4..12 lies inside one 16-unit block.
        assert_eq!(r.first_fit_in(0, 100), Some(4));
        assert_eq!(r.first_fit_in(5, 100), Some(20));
        assert_eq!(r.first_fit_in(5, 27), None);
        let crossing = Req { phase: 12, ..r };
        // 12..20 crosses 16, and so does every later candidate.
        assert_eq!(crossing.first_fit_in(0, 1 << 20), None);
        let window = Req {
            min: 40,
            max: 60,
            ..Req::anywhere(10)
        };
        assert_eq!(window.first_fit_in(0, 100), Some(40));
        assert_eq!(window.first_fit_in(55, 100), None);
        assert!(window.holds(50) && !window.holds(51));
        let nc = Req {
            nocross: 8,
            ..Req::anywhere(8)
        };
        assert_eq!(nc.first_fit_in(3, 100), Some(8));
        assert!(fit_exists(&nc, [(3, 4), (9, 20)]));
        assert!(!fit_exists(&nc, [(3, 12)]));
    }

    #[test]
    fn shadow_tracks_free_space() {
        let mut s = Shadow::new(100, 100);
        assert!(s.insert(110, 10));
        assert!(s.insert(150, 50));
        assert!(!s.insert(115, 2), "overlap detected");
        s.remove(115);
        assert_eq!(s.free(), [(100, 10), (120, 30)]);
        s.remove(150);
        assert_eq!(s.free(), [(100, 10), (120, 80)]);
    }

    #[test]
    fn traces_are_valid() {
        let t = trace(9, 5000, 1 << 20, 1 << 16, Kinds::All);
        let allocs: Vec<Req> = t
            .iter()
            .filter_map(|s| match s {
                Step::Alloc(r) => Some(*r),
                Step::Free(_) => None,
            })
            .collect();
        assert!(allocs.len() > 2000);
        for r in &allocs {
            assert!(r.align.is_power_of_two() && r.phase < r.align);
            assert!(r.nocross == 0 || (r.nocross.is_power_of_two() && r.nocross >= r.size));
            assert!(r.min < r.max && r.max - r.min >= r.size);
        }
        assert!(allocs.iter().any(Req::is_plain) && allocs.iter().any(|r| !r.align_only()));
        let only = |k| {
            trace(9, 2000, 1 << 20, 1 << 16, k)
                .into_iter()
                .filter_map(|s| match s {
                    Step::Alloc(r) => Some(r),
                    Step::Free(_) => None,
                })
                .collect::<Vec<Req>>()
        };
        assert!(only(Kinds::AlignOnly).iter().all(Req::align_only));
        assert!(only(Kinds::Plain).iter().all(Req::is_plain));
    }
}
