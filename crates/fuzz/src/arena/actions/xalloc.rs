//! The arena target's `xalloc`: constraints from the fuzzer's choices,
//! the typed errors bad ones call for, and the checks of the result.

use kmem_arena::{AllocError, Constraints, Policy};
use kmem_physmem::faults::ArenaState;
use kmem_physmem::kit::lcm;
use kmem_physmem::model::{ArenaModel, Placement};

use super::super::{Num, Side, Size, Window, Xc};
use super::{round, World};

/// An `xalloc` request in plain numbers.
#[derive(Clone, Copy, Debug)]
struct Req {
    align: usize,
    phase: usize,
    nocross: usize,
    min: usize,
    max: usize,
    policy: Policy,
}

impl Req {
    /// Where the arena may place it, with `eff` the effective alignment.
    fn place(&self, eff: usize) -> Placement {
        Placement {
            align: eff,
            phase: self.phase,
            nocross: self.nocross,
            min: self.min,
            max: self.max,
        }
    }
}

/// Every typed error whose condition `r` meets (the arena's bad-input
/// errors); the arena must refuse with one of them, or accept when none
/// applies.
fn xalloc_errors(size: usize, q: usize, r: &Req) -> Vec<AllocError> {
    let mut errs = Vec::new();
    if size == 0 {
        errs.push(AllocError::ZeroSize);
    }
    let size_r = round(size, q);
    if size_r.is_none() {
        errs.push(AllocError::Overflow);
    }
    let align_ok = r.align.is_power_of_two();
    if !align_ok {
        errs.push(AllocError::BadAlign);
    }
    if r.nocross != 0 && !r.nocross.is_power_of_two() {
        errs.push(AllocError::BadNocross);
    }
    if !r.phase.is_multiple_of(q) || (q.is_power_of_two() && !r.nocross.is_multiple_of(q)) {
        errs.push(AllocError::Misaligned);
    }
    if align_ok {
        match lcm(q, r.align) {
            None => errs.push(AllocError::Overflow),
            Some(eff) if r.phase >= eff => errs.push(AllocError::BadPhase),
            Some(eff) => {
                let end = size_r.and_then(|s| s.checked_add(eff)?.checked_add(r.phase));
                if size_r.is_some() && end.is_none() {
                    errs.push(AllocError::Overflow);
                }
            }
        }
    }
    if let Some(s) = size_r {
        if (r.nocross != 0 && s > r.nocross) || r.min >= r.max || r.max - r.min < s {
            errs.push(AllocError::Overconstrained);
        } else if errs.is_empty() {
            // Well formed, but maybe no start in the window meets them.
            let eff = lcm(q, r.align).expect("no Overflow");
            let any = ArenaModel::window_fit(s, &r.place(eff));
            if any.is_none() {
                errs.push(AllocError::Overconstrained);
            }
        }
    }
    errs
}
impl World<'_> {
    /// A number for `xalloc` from the fuzzer's choice.
    fn num(
        n: Num,
        small: impl Fn(u8) -> usize,
        fitted: impl Fn(u8) -> usize,
        default: usize,
    ) -> usize {
        match n {
            Num::Default => default,
            Num::Small(k) => small(k),
            Num::Fitted(k) => fitted(k),
            Num::Raw(v) => v,
        }
    }

    fn request(&self, s: Side, size: usize, xc: Xc) -> Req {
        let q = self.arena(s).quantum();
        let size_r = round(size, q).unwrap_or(usize::MAX);
        let align = Self::num(xc.align, |k| 1 << (k % 24), |k| 1 << (k % 13), 1);
        let eff = lcm(q, align)
            .filter(|_| align.is_power_of_two())
            .unwrap_or(q);
        let phase = Self::num(
            xc.phase,
            |k| usize::from(k) * q,
            |k| usize::from(k) % (eff / q).max(1) * q,
            0,
        );
        let nocross = Self::num(
            xc.nocross,
            |k| 1usize << (k % 40),
            |k| {
                let n = size_r.checked_next_power_of_two().unwrap_or(0);
                let n = if q.is_power_of_two() { n.max(q) } else { n };
                n.checked_shl(u32::from(k % 4)).unwrap_or(0)
            },
            0,
        );
        let (min, max) = match xc.window {
            Window::None => (0, usize::MAX),
            Window::From(p) => (self.point(s, p), usize::MAX),
            Window::Below(p) => (0, self.point(s, p)),
            Window::Around(p, slack) => {
                let at = self.point(s, p);
                let len = size_r.saturating_add(usize::from(slack) * q);
                (at, at.saturating_add(len))
            }
            Window::Raw(a, b) => (a, b),
        };
        Req {
            align,
            phase,
            nocross,
            min,
            max,
            policy: xc.fit.policy(),
        }
    }

    pub(super) fn xalloc(&mut self, s: Side, size: Size, xc: Xc) {
        let size = self.size(s, size);
        let q = self.arena(s).quantum();
        let r = self.request(s, size, xc);
        let c = Constraints::new()
            .align(r.align)
            .phase(r.phase)
            .nocross(r.nocross)
            .min_addr(r.min)
            .max_addr(r.max)
            .policy(r.policy);
        let bad = xalloc_errors(size, q, &r);
        let before = ArenaState::of(self.arena(s));
        let got = self.arena(s).xalloc(size, &c);
        self.sync();
        let what = format!("xalloc({size:#x}, {r:x?})");
        if self.refused(s, &what, &got, &bad, &before) {
            return;
        }
        let size_r = round(size, q).expect("validated");
        let place = r.place(lcm(q, r.align).expect("validated"));
        match got {
            Ok(x) => {
                if let Some(why) = place.broken_by(x, size_r) {
                    panic!("kmem-fuzz: {what} gave {x:#x}: {why}");
                }
                self.hold(s, x, size, true);
            }
            Err(e) => {
                let fit = self.model(s).find_fit(size, &place);
                let extra = if r.nocross != 0 { size_r } else { 0 };
                let import = 2 * size_r as u128
                    + extra as u128
                    + place.align as u128
                    + r.phase as u128
                    + self.parent.quantum() as u128;
                self.failed(s, e, fit, import, &what, &before);
            }
        }
    }
}
