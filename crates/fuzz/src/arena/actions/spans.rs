//! The arena target's spans, queries and teardown of the child.

use kmem_arena::AddError;
use kmem_physmem::faults::ArenaState;
use kmem_physmem::model::ArenaModel;

use super::super::{
    assert_destroy_refused, assert_refused, assert_unchanged, free_to, Mirror, Point, Side, Size,
    Span,
};
use super::{build_child, World};

impl World<'_> {
    pub(super) fn add(&mut self, s: Side, span: Span) {
        let arena = self.arena(s);
        let q = arena.quantum();
        let (base, size) = match span {
            Span::At(p, units) => (self.point(s, p) / q * q, (usize::from(units) + 1) * q),
            Span::Misaligned(p, units) => (
                (self.point(s, p) / q * q).wrapping_add(usize::from(q > 1)),
                (usize::from(units) + 1) * q,
            ),
            Span::Empty(p) => (self.point(s, p), 0),
            Span::Raw(b, z) => (b, z),
        };
        let mut allowed = Vec::new();
        if size == 0 {
            allowed.push(AddError::ZeroSize);
        }
        if base % q != 0 || size % q != 0 {
            allowed.push(AddError::Misaligned);
        }
        if base.checked_add(size).is_none() {
            allowed.push(AddError::Overflow);
        }
        if arena.source().is_some() {
            allowed.push(AddError::Sourced);
        }
        if arena.is_base() {
            allowed.push(AddError::MemoryArena);
        }
        if size != 0 && self.model(s).overlaps_span(base, size) {
            allowed.push(AddError::Overlap);
        }
        let before = ArenaState::of(arena);
        let got = arena.add(base, size);
        self.sync();
        let what = format!("{} add({base:#x}, {size:#x})", Self::name(s));
        if allowed.is_empty() {
            assert_eq!(got, Ok(()), "kmem-fuzz: {what}");
            self.mirror(s).model.add_span(base, size);
        } else {
            assert_refused(&what, &got, &allowed);
            assert_unchanged(self.arena(s), &before, &format!("refused {what}"));
        }
    }

    pub(super) fn contains(&self, s: Side, p: Point, size: Size) {
        let (addr, size) = (self.point(s, p), self.size(s, size));
        if size == 0 {
            return;
        }
        assert_eq!(
            self.arena(s).contains(addr, size),
            self.model(s).contains(addr, size),
            "kmem-fuzz: {} contains({addr:#x}, {size:#x})",
            Self::name(s)
        );
    }

    pub(super) fn destroy_child(&mut self) {
        let Some(c) = &mut self.child else { return };
        let arena = c.arena.as_mut().expect("kmem-fuzz: child arena");
        if c.m.model.live() > 0 {
            assert_destroy_refused(arena, &c.m.model, "the child");
            return;
        }
        assert_eq!(
            arena.destroy(),
            Ok(()),
            "kmem-fuzz: destroy of an empty child"
        );
        c.arena = None;
        let (setup, source) = (c.setup, c.source);
        self.sync();
        let c = self.child.as_mut().expect("child");
        assert_eq!(c.m.model.total(), 0, "kmem-fuzz: the child kept spans");
        c.m = Mirror::new(ArenaModel::new(setup.quantum()));
        c.arena = Some(build_child(setup, source, self.tags));
    }

    /// Frees what is left in the child, checks that every span went back,
    /// and destroys it.
    pub(in crate::arena) fn finish_child(&mut self) {
        let Some(c) = &mut self.child else { return };
        let lives = core::mem::take(&mut c.m.live);
        for l in lives {
            let c = self.child.as_mut().expect("child");
            c.m.model.record_free(l.addr, l.size).expect("model free");
            let arena = c.arena.as_ref().expect("child");
            let freed = free_to(arena, l.addr, l.size, !l.xalloc);
            assert_eq!(
                freed,
                Ok(()),
                "kmem-fuzz: final free of {l:x?} in the child"
            );
            self.sync();
            self.verify();
        }
        let c = self.child.as_mut().expect("child");
        assert_eq!(c.m.model.total(), 0, "kmem-fuzz: the child kept spans");
        let mut arena = c.arena.take().expect("child");
        assert_eq!(
            arena.destroy(),
            Ok(()),
            "kmem-fuzz: destroy of the emptied child"
        );
        drop(arena);
        self.sync();
        let c = self.child.take().expect("child");
        assert!(
            c.imports.is_empty(),
            "kmem-fuzz: spans never released: {:x?}",
            c.imports
        );
        assert_eq!(c.source.stats().outstanding_spans, 0);
        assert_eq!(
            self.parent.importers(),
            0,
            "kmem-fuzz: parent importers after destroy"
        );
        if let Err(e) = self.pm.model.check_against(self.parent) {
            panic!("kmem-fuzz: {e}");
        }
    }
}
