//! The caches target's cache lifecycle: create (good and bad) and destroy.

use core::sync::atomic::Ordering;
use std::collections::BTreeMap;

use kmem_slab::{CacheBuilder, CacheFlags, CreateError};

use super::{BadCreate, Kind, NewCache, Slot, World, SLOTS};

impl World<'_, '_, '_> {
    pub(super) fn create(&mut self, new: NewCache) {
        let i = usize::from(new.slot) % SLOTS;
        if self.slots[i].is_some() {
            return;
        }
        let (kind, align, with_ops) = (new.kind, new.align, new.ops);
        let size = usize::from(new.size);
        let (size, align, source, memory) = match kind {
            Kind::Small => (8 + size % 505, 8 << (align % 4), self.kpages, true),
            Kind::Bufctl => (513 + size % 3584, 8 << (align % 4), self.kpages, true),
            Kind::Ids => (1 + size % 64, 1 << (align % 4), self.ids, false),
        };
        let name = format!("fz{i}_{}", self.created);
        self.created += 1;
        let mut flags = CacheFlags::empty();
        if kind == Kind::Ids {
            flags |= CacheFlags::NOTOUCH;
        }
        if new.debug {
            flags |= CacheFlags::DEBUG;
        }
        if new.nomagazine {
            flags |= CacheFlags::NOMAGAZINE;
        }
        let mut b = CacheBuilder::new(&name, size)
            .align(align)
            .flags(flags)
            .source(source);
        let ops = &self.ops[i];
        if with_ops {
            ops.memory.store(memory, Ordering::Relaxed);
            ops.faults.set(kmem_physmem::faults::Plan::Never);
            b = b.ops(ops);
        }
        let cache = match self.caches.create(b) {
            Ok(c) => c,
            Err(e) => panic!(
                "kmem-fuzz: create {name} ({kind:?}, {size} bytes, align {align}, {flags:?}): {e}"
            ),
        };
        assert!(cache.size() >= size && cache.align() >= align.min(cache.align()));
        let bufctls = cache.uses_bufctls();
        self.slots[i] = Some(Slot {
            size: cache.size(),
            cache,
            name,
            kind,
            align,
            ops: with_ops,
            checked: new.debug || new.nomagazine,
            double_checked: new.debug || new.nomagazine || bufctls || !with_ops,
            live: BTreeMap::new(),
            freed: Vec::new(),
        });
    }

    /// What refused operations must leave alone around the registry.
    pub(super) fn world_state(&self) -> (usize, usize, usize, usize, usize) {
        let mut n = 0;
        self.caches.for_each(|_| n += 1);
        (
            n,
            self.base.amt_free(),
            self.kpages.amt_free(),
            self.kpages.amt_total(),
            self.ids.amt_free(),
        )
    }

    pub(super) fn bad_create(&mut self, bad: BadCreate) {
        let (b, expected) = match bad {
            BadCreate::ZeroSize => (
                CacheBuilder::new("fz_bad", 0).source(self.kpages),
                CreateError::ZeroSize,
            ),
            BadCreate::BadAlign(k) => (
                CacheBuilder::new("fz_bad", 64)
                    .align([0, 3, 24, 4097][usize::from(k % 4)])
                    .source(self.kpages),
                CreateError::BadAlign,
            ),
            BadCreate::AlignTooLarge(k) => (
                CacheBuilder::new("fz_bad", 64)
                    .align(8192 << (k % 4))
                    .source(self.kpages),
                CreateError::AlignTooLarge,
            ),
            BadCreate::NotMemory => (
                CacheBuilder::new("fz_bad", 64).source(self.ids),
                CreateError::NotMemory,
            ),
        };
        let before = self.world_state();
        match self.caches.create(b) {
            Ok(c) => panic!(
                "kmem-fuzz: {bad:?}: created {}, expected {expected:?}",
                c.name()
            ),
            Err(e) => assert_eq!(e, expected, "kmem-fuzz: {bad:?}"),
        }
        assert_eq!(
            self.world_state(),
            before,
            "kmem-fuzz: refused create left something"
        );
    }

    pub(super) fn destroy(&mut self, slot: u8) {
        let i = usize::from(slot) % SLOTS;
        let Some(s) = self.slots[i].take() else {
            return;
        };
        let live = s.live.len() as u64;
        let name = s.name.as_str();
        match s.cache.destroy() {
            Ok(()) => {
                assert_eq!(
                    live, 0,
                    "kmem-fuzz: destroyed {name} with {live} live objects"
                );
                assert_eq!(
                    self.ops[i].constructed(),
                    0,
                    "kmem-fuzz: objects left constructed by {name}"
                );
            }
            Err(e) => {
                assert_eq!(e.live, live, "kmem-fuzz: {name}: destroy's live count");
                assert!(live > 0, "kmem-fuzz: destroy of the empty {name} refused");
                let mut found = false;
                self.caches.for_each(|c| found |= c.name() == name);
                assert!(found, "kmem-fuzz: a refused destroy unregistered {name}");
                self.slots[i] = Some(Slot {
                    cache: e.cache,
                    ..s
                });
            }
        }
    }
}
