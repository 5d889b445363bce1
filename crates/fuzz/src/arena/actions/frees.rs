//! The arena target's frees, good and bad.

use kmem_arena::FreeError;
use kmem_physmem::faults::ArenaState;
use kmem_physmem::model::ArenaModel;

use super::super::{assert_unchanged, free_to, BadFree, Side};
use super::{round, World};

/// What freeing `[addr, +size)` must return, by the model.
fn predict_free(model: &ArenaModel, addr: usize, size: usize) -> Result<(), FreeError> {
    if size == 0 {
        return Err(FreeError::ZeroSize);
    }
    let rounded = round(size, model.quantum()).unwrap_or(usize::MAX);
    match model.allocation(addr) {
        None => Err(FreeError::NotAllocated { addr }),
        Some(z) if z != rounded => Err(FreeError::WrongSize {
            addr,
            size: rounded,
            expected: z,
        }),
        Some(_) => Ok(()),
    }
}

impl World<'_> {
    pub(super) fn free(&mut self, s: Side, which: u16, shave: u16, by_free: bool) {
        let q = self.arena(s).quantum();
        let m = self.mirror(s);
        if m.live.is_empty() {
            return;
        }
        let l = m.live.swap_remove(usize::from(which) % m.live.len());
        // Any size that rounds to the same quanta is the right size.
        let size = round(l.size, q).expect("allocated") - usize::from(shave) % q;
        // Recorded first: the free may release the span to the parent.
        m.model.record_free(l.addr, size).expect("model free");
        m.remember_free(l.addr, size);
        let got = free_to(self.arena(s), l.addr, size, by_free);
        self.sync();
        assert_eq!(
            got,
            Ok(()),
            "kmem-fuzz: free({:#x}, {size:#x}) of {l:x?}",
            l.addr
        );
    }

    /// The address and size of a bad free, if there is something to aim at.
    fn bad_target(&self, s: Side, bad: BadFree) -> Option<(usize, usize)> {
        let q = self.arena(s).quantum();
        let m = match (s, &self.child) {
            (Side::Child, Some(c)) => &c.m,
            _ => &*self.pm,
        };
        let live =
            |which: u16| (!m.live.is_empty()).then(|| m.live[usize::from(which) % m.live.len()]);
        Some(match bad {
            BadFree::WrongSize(which, k, down) => {
                let l = live(which)?;
                let r = round(l.size, q)?;
                let d = q * (usize::from(k % 3) + 1);
                let size = if down && r > d {
                    r - d
                } else {
                    r.checked_add(d)?
                };
                (l.addr, size)
            }
            BadFree::Interior(which, off) => {
                let l = live(which)?;
                let r = round(l.size, q)?;
                (
                    l.addr + 1 + off as usize % r.max(2).saturating_sub(1).max(1),
                    l.size,
                )
            }
            BadFree::ZeroSize(which) => (live(which)?.addr, 0),
            BadFree::Double(which) => {
                if m.freed.is_empty() {
                    return None;
                }
                m.freed[usize::from(which) % m.freed.len()]
            }
            BadFree::Foreign(p, size) => (self.point(s, p), self.size(s, size)),
        })
    }

    pub(super) fn bad_free(&mut self, s: Side, bad: BadFree, by_free: bool) {
        let Some((addr, size)) = self.bad_target(s, bad) else {
            return;
        };
        let expected = predict_free(self.model(s), addr, size);
        if expected.is_ok() && s == Side::Parent {
            // A legal free after all; but not of a span the child holds.
            if self
                .child
                .as_ref()
                .is_some_and(|c| c.imports.contains_key(&addr))
            {
                return;
            }
        }
        if expected.is_ok() {
            // Recorded first: the free may release the span to the parent.
            let m = self.mirror(s);
            let i = m
                .live
                .iter()
                .position(|l| l.addr == addr)
                .expect("kmem-fuzz: the model has an allocation the harness does not hold");
            m.live.swap_remove(i);
            m.model.record_free(addr, size).expect("model free");
            m.remember_free(addr, size);
        }
        let before = ArenaState::of(self.arena(s));
        let got = free_to(self.arena(s), addr, size, by_free);
        self.sync();
        assert_eq!(
            got,
            expected,
            "kmem-fuzz: {} free({addr:#x}, {size:#x})",
            Self::name(s)
        );
        if got.is_err() {
            assert_unchanged(self.arena(s), &before, "refused free");
        }
    }
}
