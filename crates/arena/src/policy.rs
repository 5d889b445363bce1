//! Allocation policies, xalloc constraints and the arithmetic that finds a
//! start inside a free segment that satisfies them.

use crate::AllocError;

/// How `alloc` picks a free segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// O(1): the first segment of the smallest power-of-two list whose every
    /// member fits; falls back to the first fit among 64 members of the
    /// request's own list, then to a search of the rest (in address order).
    #[default]
    InstantFit,
    /// The smallest fitting segment among 64 members of the request's own
    /// list, else any segment of a larger list, else a search of the rest
    /// of the own list (in address order).
    BestFit,
    /// The first fit at or above the previous next-fit result, wrapping
    /// around: cycles through the resource (IDs, PIDs).
    NextFit,
}

/// The builder methods of [`Constraints`]: `name(field: Type)` is a
/// `const fn` that sets `field` and returns the constraints.
macro_rules! setters {
    ($($(#[doc = $doc:literal])* $name:ident($field:ident: $ty:ty);)*) => {
        $(
            $(#[doc = $doc])*
            pub const fn $name(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}

/// Constraints for [`Arena::xalloc`](crate::Arena::xalloc).
///
/// The result `r` satisfies: `r % lcm(quantum, align) == phase`;
/// `[r, r + size)` does not cross a multiple of `nocross` (when non-zero);
/// `r >= min` and `r + size <= max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Constraints {
    pub(crate) align: usize,
    pub(crate) phase: usize,
    pub(crate) nocross: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) policy: Policy,
    pub(crate) top: bool,
}

impl Default for Constraints {
    fn default() -> Self {
        Self::new()
    }
}

impl Constraints {
    /// No constraint beyond the quantum.
    pub const fn new() -> Self {
        Self {
            align: 1,
            phase: 0,
            nocross: 0,
            min: 0,
            max: usize::MAX,
            policy: Policy::InstantFit,
            top: false,
        }
    }
    setters! {
        /// Alignment (a power of two); the effective alignment is
        /// `lcm(quantum, align)`.
        align(align: usize);
        /// Offset from the alignment (a multiple of the quantum, below the
        /// effective alignment).
        phase(phase: usize);
        /// The result must not cross a multiple of `nocross` (a power of
        /// two; a multiple of the quantum when the quantum is a power of
        /// two; 0 for none).
        nocross(nocross: usize);
        /// Lowest acceptable start.
        min_addr(min: usize);
        /// The result must end at or below `max` (exclusive bound).
        max_addr(max: usize);
        /// Search policy.
        policy(policy: Policy);
    }
    /// The highest fitting start instead of the lowest (illumos'
    /// `VM_ENDALLOC`): the search runs down from `max` in address order,
    /// whatever the policy.
    pub const fn from_top(mut self) -> Self {
        self.top = true;
        self
    }
}

/// Where a span that a constrained import asks for must lie (see
/// [`Source::import_fit`](crate::Source::import_fit)): its base `b` has
/// `b % align == phase`, `[b, b + size)` lies inside `[min, max)`, and
/// when `nocross` is not zero it does not cross a multiple of `nocross`.
/// Unlike [`Constraints`], `align` may be any non-zero number (an
/// importer of quantum 3 asks for multiples of 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanFit {
    /// The span's size (a multiple of the source's import quantum).
    pub size: usize,
    /// The base's modulus: any non-zero number.
    pub align: usize,
    /// The base's remainder modulo `align` (below it).
    pub phase: usize,
    /// A power of two the span must not cross a multiple of; 0 for none.
    pub nocross: usize,
    /// Lowest acceptable base.
    pub min: usize,
    /// The span must end at or below `max` (exclusive bound).
    pub max: usize,
    /// A preference, not a constraint: the highest such base rather than
    /// the lowest (see [`Constraints::from_top`]).
    pub top: bool,
}

impl SpanFit {
    /// A span of `size` units anywhere.
    pub const fn anywhere(size: usize) -> Self {
        Self {
            size,
            align: 1,
            phase: 0,
            nocross: 0,
            min: 0,
            max: usize::MAX,
            top: false,
        }
    }

    /// True when `base` meets every constraint.
    pub fn holds(&self, base: usize) -> bool {
        let Some(end) = base.checked_add(self.size) else {
            return false;
        };
        self.align != 0
            && base % self.align == self.phase
            && base >= self.min
            && end <= self.max
            && (self.nocross == 0
                || self.size == 0
                || base / self.nocross == (end - 1) / self.nocross)
    }

    /// The constraint is an alignment alone (`Some(align)`; 1 for none).
    pub(crate) fn alignment_only(&self) -> Option<usize> {
        (self.phase == 0 && self.nocross == 0 && self.min == 0 && self.max == usize::MAX)
            .then_some(self.align)
    }
}

/// Constraints checked against an arena's quantum: the effective alignment
/// is resolved, every bad input already rejected.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fit {
    pub(crate) size: usize,
    /// Effective alignment: lcm(quantum, align).
    pub(crate) align: usize,
    pub(crate) phase: usize,
    pub(crate) nocross: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
    /// The highest fitting start rather than the lowest.
    pub(crate) top: bool,
}

/// The greatest common divisor of `a` and `b` (Euclid's algorithm).
fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The least common multiple of `a` and `b` (both non-zero), or `None` on
/// overflow.
pub(crate) fn lcm(a: usize, b: usize) -> Option<usize> {
    (a / gcd(a, b)).checked_mul(b)
}

/// Rounds `size` up to a multiple of `quantum`, or `None` on overflow.
/// A power-of-two quantum (the common case) takes a mask, not a division.
#[inline]
pub(crate) fn round_up(size: usize, quantum: usize) -> Option<usize> {
    if quantum.is_power_of_two() {
        let mask = quantum - 1;
        size.checked_add(mask).map(|s| s & !mask)
    } else {
        size.div_ceil(quantum).checked_mul(quantum)
    }
}

/// Rounds a request of `size` units up to a multiple of `quantum`.
#[inline]
pub(crate) fn round_size(size: usize, quantum: usize) -> Result<usize, AllocError> {
    if size == 0 {
        return Err(AllocError::ZeroSize);
    }
    round_up(size, quantum).ok_or(AllocError::Overflow)
}

impl Fit {
    /// Validates `c` for a request of `size` units in an arena of `quantum`.
    pub(crate) fn new(size: usize, c: &Constraints, quantum: usize) -> Result<Self, AllocError> {
        let size = round_size(size, quantum)?;
        if c.align == 0 || !c.align.is_power_of_two() {
            return Err(AllocError::BadAlign);
        }
        let fit = Self::checked(size, c.align, c.phase, c.nocross, c.min, c.max, quantum)?;
        Ok(Self { top: c.top, ..fit })
    }

    /// Validates a constrained import's `want` for an arena of `quantum`
    /// (whose spans it would come from): as [`new`](Self::new), but any
    /// non-zero alignment, and the size taken as it is (the importer
    /// rounded it to both quanta).
    pub(crate) fn for_span(want: &SpanFit, quantum: usize) -> Result<Self, AllocError> {
        if want.size == 0 {
            return Err(AllocError::ZeroSize);
        }
        if want.align == 0 {
            return Err(AllocError::BadAlign);
        }
        if !want.size.is_multiple_of(quantum) {
            return Err(AllocError::Misaligned);
        }
        let fit = Self::checked(
            want.size,
            want.align,
            want.phase,
            want.nocross,
            want.min,
            want.max,
            quantum,
        )?;
        Ok(Self {
            top: want.top,
            ..fit
        })
    }

    /// The checks after the size and the alignment's form.
    fn checked(
        size: usize,
        align: usize,
        phase: usize,
        nocross: usize,
        min: usize,
        max: usize,
        quantum: usize,
    ) -> Result<Self, AllocError> {
        if nocross != 0 && !nocross.is_power_of_two() {
            return Err(AllocError::BadNocross);
        }
        // Under a power-of-two quantum, nocross must be a multiple of it; an
        // odd quantum (Akaros' quantum 3, nocross 4) cannot have one, so
        // there boundaries are checked against quantum-aligned candidates.
        let nocross_misaligned = quantum.is_power_of_two() && !nocross.is_multiple_of(quantum);
        if !phase.is_multiple_of(quantum) || nocross_misaligned {
            return Err(AllocError::Misaligned);
        }
        let align = lcm(quantum, align).ok_or(AllocError::Overflow)?;
        if phase >= align {
            return Err(AllocError::BadPhase);
        }
        size.checked_add(align)
            .and_then(|s| s.checked_add(phase))
            .ok_or(AllocError::Overflow)?;
        if nocross != 0 && size > nocross {
            return Err(AllocError::Overconstrained);
        }
        if min >= max || max - min < size {
            return Err(AllocError::Overconstrained);
        }
        let fit = Self {
            phase,
            nocross,
            min,
            max,
            ..Self::plain(size, align)
        };
        // No placement anywhere in the window (say, an odd phase with
        // `nocross` 2 and a size of 2): refused before any search.
        if fit.find_in(min, max - min).is_none() {
            return Err(AllocError::Overconstrained);
        }
        Ok(fit)
    }

    /// A plain request of `size` units aligned to `quantum`: no phase, no
    /// `nocross`, no window. Other fits start from one, with `quantum`
    /// their effective alignment.
    pub(crate) fn plain(size: usize, quantum: usize) -> Self {
        Self {
            size,
            align: quantum,
            phase: 0,
            nocross: 0,
            min: 0,
            max: usize::MAX,
            top: false,
        }
    }

    /// The size from which every free segment holds a fitting range: the
    /// valid starts (multiples of the quantum, as segment starts are)
    /// repeat every `lcm(align, nocross)` units, so a segment with that many
    /// candidate starts holds one whenever any start fits at all (which
    /// `new` checked). `None` on overflow.
    pub(crate) fn sure_size(&self, quantum: usize) -> Option<usize> {
        let period = if self.nocross == 0 {
            self.align
        } else {
            lcm(self.align, self.nocross)?
        };
        self.size.checked_add(period - quantum.min(period))
    }

    /// True when a `[min, max)` window restricts the search.
    pub(crate) fn has_window(&self) -> bool {
        self.min != 0 || self.max != usize::MAX
    }

    /// True when any quantum-aligned range of the size fits (alignment the
    /// quantum, no phase, no `nocross`, no window).
    pub(crate) fn is_plain(&self, quantum: usize) -> bool {
        self.align == quantum
            && self.phase == 0
            && self.nocross == 0
            && !self.has_window()
            && !self.top
    }

    /// A span of `size` units (the request's size rounded up to the
    /// import quantum) that is itself a placement of this request: what a
    /// constrained import asks the source for. `None` when the rounding
    /// makes the span cross the `nocross` boundary the request must not.
    pub(crate) fn as_span(&self, size: usize) -> Option<SpanFit> {
        if self.nocross != 0 && size > self.nocross {
            return None;
        }
        Some(SpanFit {
            size,
            align: self.align,
            phase: self.phase,
            nocross: self.nocross,
            min: self.min,
            max: self.max,
            top: self.top,
        })
    }

    /// Span size to import so that the request surely fits in it.
    pub(crate) fn import_size(&self) -> Option<usize> {
        let extra = if self.nocross != 0 { self.size } else { 0 };
        self.size
            .checked_add(extra)?
            .checked_add(self.align)?
            .checked_add(self.phase)
    }

    /// The smallest `x >= from` with `x % align == phase`.
    fn candidate(&self, from: usize) -> Option<usize> {
        if from <= self.phase {
            return Some(self.phase);
        }
        let k = (from - self.phase).div_ceil(self.align);
        k.checked_mul(self.align)?.checked_add(self.phase)
    }

    /// The lowest start inside the free range `[start, start + len)` that
    /// satisfies every constraint, if any. Constant work apart from one
    /// Euclid-like descent (`O(log nocross)` steps), however the alignment,
    /// `nocross` and the range compare.
    pub(crate) fn find_in(&self, start: usize, len: usize) -> Option<usize> {
        let end = start.checked_add(len)?.min(self.max);
        let x = self.candidate(start.max(self.min))?;
        let x = if self.nocross == 0 {
            x
        } else {
            // Candidates are `x + j * align`; one fits its `nocross` window
            // when its offset in the window leaves room for the size:
            // `(x + j * align) % nocross <= nocross - size`. The least such
            // `j`, by the descent.
            let n = self.nocross as u128;
            let j = first_hit(
                self.align as u128 % n,
                x as u128 % n,
                n,
                (self.nocross - self.size) as u128,
            )?;
            let x = (x as u128).checked_add(j.checked_mul(self.align as u128)?)?;
            usize::try_from(x).ok()?
        };
        let x_end = x.checked_add(self.size)?;
        (x_end <= end).then_some(x)
    }
}

impl Fit {
    /// The highest start inside the free range `[start, start + len)` that
    /// satisfies every constraint, if any: [`find_in`](Self::find_in) run
    /// downwards (candidates `x - j * align`, the descent on the step
    /// `-align` modulo `nocross`).
    pub(crate) fn find_in_top(&self, start: usize, len: usize) -> Option<usize> {
        let end = start.checked_add(len)?.min(self.max);
        let lo = start.max(self.min);
        let hi = end.checked_sub(self.size)?;
        if hi < lo || hi < self.phase {
            return None;
        }
        // The highest candidate at or below `hi`.
        let x = hi - (hi - self.phase) % self.align;
        let x = if self.nocross == 0 {
            x
        } else {
            let n = self.nocross as u128;
            let j = first_hit(
                (n - self.align as u128 % n) % n,
                x as u128 % n,
                n,
                (self.nocross - self.size) as u128,
            )?;
            let down = j.checked_mul(self.align as u128)?;
            usize::try_from((x as u128).checked_sub(down)?).ok()?
        };
        (x >= lo).then_some(x)
    }
}

/// The least `j >= 0` with `(a * j + b) % m <= l`, given `a, b < m` and
/// `l < m`; `None` if there is none.
fn first_hit(a: u128, b: u128, m: u128, l: u128) -> Option<u128> {
    if b <= l {
        return Some(0);
    }
    // `(a * j + b) % m <= l` is `(a * j) % m` in `[m - b, m - b + l]`
    // (no wrap: `b > l`).
    least_multiple_in(a, m, m - b, m - b + l)
}

/// The least `x >= 0` with `lo <= (a * x) % m <= hi`, given `a < m` and
/// `lo <= hi < m`; `None` if there is none. Each step swaps the roles of
/// `a` and `m` as Euclid's algorithm does; with `a` first brought to at
/// most `m / 2`, the modulus at least halves each step, so the recursion
/// is at most about `2 log2 m` (under 260) deep.
fn least_multiple_in(a: u128, m: u128, lo: u128, hi: u128) -> Option<u128> {
    if lo == 0 {
        return Some(0);
    }
    if a == 0 {
        return None;
    }
    if 2 * a > m {
        // `((m - a) * x) % m` is `m - (a * x) % m` whenever the latter is
        // not 0 (as here, `lo > 0`): the same `x` in the mirrored range.
        return least_multiple_in(m - a, m, m - hi, m - lo);
    }
    // The first multiple of `a` at or above `lo`, if it is not past `hi`.
    let x = lo.div_ceil(a);
    if a * x <= hi {
        return Some(x);
    }
    // No multiple of `a` lies in `[lo, hi]`, so `hi - lo < a` and
    // `lo % a <= hi % a`. `(a * x) % m = a * x - m * y` lies in the range
    // for some `y` exactly when `(-m * y) % a` lies in `[lo % a, hi % a]`;
    // the least such `y` gives the least `x`.
    let y = least_multiple_in((a - m % a) % a, a, lo % a, hi % a)?;
    Some((lo + m * y).div_ceil(a))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    fn fit(size: usize, c: Constraints, q: usize) -> Fit {
        Fit::new(size, &c, q).unwrap()
    }

    #[test]
    fn rejects_bad_constraints() {
        let c = Constraints::new();
        // (size, constraints, quantum, the error).
        let cases = [
            (0, c, 1, AllocError::ZeroSize),
            (usize::MAX, c, 4096, AllocError::Overflow),
            (1, c.align(3), 1, AllocError::BadAlign),
            (1, c.align(0), 1, AllocError::BadAlign),
            (1, c.nocross(12), 1, AllocError::BadNocross),
            (1, c.align(8).phase(3), 2, AllocError::Misaligned),
            (1, c.nocross(2), 4, AllocError::Misaligned),
            (1, c.align(8).phase(8), 1, AllocError::BadPhase),
            (16, c.nocross(8), 1, AllocError::Overconstrained),
            (1, c.min_addr(5).max_addr(5), 1, AllocError::Overconstrained),
            (8, c.min_addr(0).max_addr(7), 1, AllocError::Overconstrained),
            (
                usize::MAX - 4096,
                c.align(1 << 13).phase(4096),
                4096,
                AllocError::Overflow,
            ),
        ];
        for (size, c, q, err) in cases {
            let got = Fit::new(size, &c, q).unwrap_err();
            assert_eq!(got, err, "size {size}, {c:?}, quantum {q}");
        }
    }

    #[test]
    fn effective_alignment_is_lcm() {
        assert_eq!(fit(1, Constraints::new().align(4), 3).align, 12);
        assert_eq!(fit(1, Constraints::new().align(4), 4096).align, 4096);
        assert_eq!(
            fit(1, Constraints::new().align(1 << 16), 4096).align,
            1 << 16
        );
    }

    /// `find_in` on hand-worked examples: each fit with its
    /// `(start, len, want)` cases.
    #[test]
    fn find_in_examples() {
        // `(start, len, want)`.
        type Cases = &'static [(usize, usize, Option<usize>)];
        let q = Constraints::new();
        let examples: [(Fit, Cases); 3] = [
            // An alignment with a phase.
            (
                fit(0x1000, q.align(0x10000).phase(0x1000), 0x1000),
                &[
                    (0x3000, 0x20000, Some(0x11000)),
                    (0x11000, 0x1000, Some(0x11000)),
                    (0x11001, 0x1000, None),
                    (0, 0x2000, Some(0x1000)),
                ],
            ),
            // `nocross`.
            (
                fit(0x40, q.nocross(0x100), 0x10),
                &[
                    (0xf0, 0x200, Some(0x100)),
                    (0xf0, 0x50, Some(0x100)),
                    (0xf0, 0x4f, None),
                    (0xc0, 0x40, Some(0xc0)),
                ],
            ),
            // A `[min, max)` window.
            (
                fit(4, q.min_addr(10).max_addr(20), 1),
                &[(0, 100, Some(10)), (17, 100, None), (16, 100, Some(16))],
            ),
        ];
        for (f, cases) in examples {
            for &(start, len, want) in cases {
                assert_eq!(f.find_in(start, len), want, "{f:?} start={start} len={len}");
            }
        }
    }

    #[test]
    fn nocross_with_odd_quantum_searches_windows() {
        let f = fit(3, Constraints::new().align(1).nocross(8), 1);
        assert_eq!(f.find_in(6, 10), Some(8));
        let g = Fit {
            nocross: 4,
            ..Fit::plain(3, 3)
        };
        // Candidates 3 and 6 cross a multiple of 4; 9..12 does not.
        assert_eq!(g.find_in(1, 20), Some(9));
    }

    /// The descent against a plain scan, for every argument up to a bound.
    #[test]
    fn first_hit_is_the_least() {
        for m in 1..=40u128 {
            for a in 0..m {
                for b in 0..m {
                    for l in 0..m {
                        let scan = (0..m).find(|&j| (a * j + b) % m <= l);
                        assert_eq!(first_hit(a, b, m, l), scan, "a={a} b={b} m={m} l={l}");
                    }
                }
            }
        }
    }

    /// Every small fit (alignments that are and are not powers of two,
    /// phases, `nocross`, windows) and free range `[start, start + len)`,
    /// with the starts that fit in it, lowest first: the scan both
    /// searches are checked against.
    fn each_small_case(mut check: impl FnMut(&Fit, usize, usize, &[usize])) -> usize {
        let mut tried = 0;
        for align in [1, 2, 3, 4, 6, 8, 12, 16, 24, 40] {
            for phase in (0..align).step_by(1 + align / 4) {
                for nocross in [0, 1, 2, 4, 8, 16, 32] {
                    for size in 1..=9 {
                        if nocross != 0 && size > nocross {
                            continue;
                        }
                        for (min, max) in [(0, usize::MAX), (5, 70), (17, 30)] {
                            let window = Fit {
                                min,
                                max,
                                ..Fit::plain(size, align)
                            };
                            let f = Fit {
                                phase,
                                nocross,
                                ..window
                            };
                            for start in [0, 1, 7, 13, 32] {
                                for len in [0, 1, 5, 9, 20, 64, 100] {
                                    let fits: Vec<usize> = (start..start + len)
                                        .filter(|&x| {
                                            x % align == phase
                                                && x >= min
                                                && x + size <= max
                                                && x + size <= start + len
                                                && (nocross == 0
                                                    || x / nocross == (x + size - 1) / nocross)
                                        })
                                        .collect();
                                    check(&f, start, len, &fits);
                                    tried += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        tried
    }

    /// `find_in` finds the lowest fitting start.
    #[test]
    fn find_in_matches_a_scan() {
        let tried = each_small_case(|f, start, len, fits| {
            let want = fits.first().copied();
            assert_eq!(f.find_in(start, len), want, "{f:?} start={start} len={len}");
        });
        assert!(tried > 10_000);
    }

    /// `find_in_top` finds the highest fitting start.
    #[test]
    fn find_in_top_matches_a_scan() {
        let tried = each_small_case(|f, start, len, fits| {
            let want = fits.last().copied();
            assert_eq!(
                f.find_in_top(start, len),
                want,
                "{f:?} start={start} len={len}"
            );
        });
        assert!(tried > 10_000);
    }

    /// The descent at large moduli, where no scan reaches: every answer is
    /// a hit, and no smaller `j` is one among the first 20 000; and the
    /// worst case for a plain recursion (a step of `m - 1`) stays shallow.
    #[test]
    fn first_hit_at_large_moduli() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u128
        };
        for _ in 0..50_000 {
            let m: u128 = 1 << (1 + next() % 63);
            let a = match next() % 4 {
                0 => next() % m,
                1 => (3 << (next() % 62)) % m,
                2 => m - 1 - next() % m.min(8),
                _ => next() % m.min(1000),
            };
            let (b, l) = (next() % m, next() % m);
            let got = first_hit(a, b, m, l);
            if let Some(j) = got {
                assert!((a * j + b) % m <= l, "a={a} b={b} m={m} l={l} j={j}");
            }
            let scan = (0..20_000.min(m)).find(|&j| (a * j + b) % m <= l);
            match scan {
                Some(s) => assert_eq!(got, Some(s), "a={a} b={b} m={m} l={l}"),
                None => assert!(got.is_none_or(|j| j >= 20_000.min(m))),
            }
        }
        // A step of m - 1 (quantum 2^k - 1 against nocross 2^k).
        let m = 1u128 << 62;
        assert_eq!(first_hit(m - 1, 1, m, 0), Some(1));
    }

    /// Constraints no range can meet are refused up front, whatever the
    /// arena holds: an odd phase with `nocross` 2 and a size of 2 (every
    /// candidate straddles a boundary), and a window with no candidate.
    #[test]
    fn unsatisfiable_combinations_are_refused() {
        let c = Constraints::new();
        assert_eq!(
            Fit::new(2, &c.nocross(2).align(1 << 24).phase(1), 1).unwrap_err(),
            AllocError::Overconstrained
        );
        assert_eq!(
            Fit::new(4, &c.nocross(8).align(16).phase(6), 2).unwrap_err(),
            AllocError::Overconstrained
        );
        assert_eq!(
            Fit::new(4, &c.align(64).min_addr(65).max_addr(127), 1).unwrap_err(),
            AllocError::Overconstrained
        );
        // Satisfiable neighbours of each.
        assert!(Fit::new(1, &c.nocross(2).align(1 << 24).phase(1), 1).is_ok());
        assert!(Fit::new(2, &c.nocross(8).align(16).phase(6), 2).is_ok());
        assert!(Fit::new(4, &c.align(64).min_addr(65).max_addr(132), 1).is_ok());
    }

    #[test]
    fn no_overflow_near_top() {
        let f = fit(0x1000, Constraints::new().align(0x1000), 0x1000);
        // The aligned candidate ends past usize::MAX.
        assert_eq!(f.find_in(usize::MAX - 0x1ffe, 0x1ffe), None);
        assert_eq!(
            f.find_in(usize::MAX - 0x1fff, 0x1000),
            Some(usize::MAX - 0x1fff)
        );
    }
}
