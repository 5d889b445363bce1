//! The `caches` target's object actions: allocation, good and bad frees,
//! and the final teardown.

use core::slice;
use std::collections::BTreeMap;

use kmem_arena::Name;
use kmem_slab::{AllocError, AllocFlags, BadFree, FreeError};

use super::{
    canary, state, Foreign, Kind, World, CONSTRUCTED, FREED_KEPT, ID_BASE, ID_UNITS, LIVE_MAX,
    SLOTS,
};

/// The address space of a cache's objects (0: memory, 1: IDs).
fn space(kind: Kind) -> usize {
    usize::from(kind == Kind::Ids)
}

/// The live object overlapping `[start, start + size)` in `owners`, if any.
fn overlap(
    owners: &BTreeMap<usize, (usize, usize)>,
    start: usize,
    size: usize,
) -> Option<(usize, usize, usize)> {
    let (&a, &(slot, z)) = owners.range(..start + size).next_back()?;
    (a + z > start).then_some((a, slot, z))
}

impl World<'_, '_, '_> {
    pub(super) fn alloc(&mut self, slot: u8, zero: bool, atomic: bool) {
        let i = usize::from(slot) % SLOTS;
        let Some(s) = &self.slots[i] else { return };
        if self.live_bytes + s.size > LIVE_MAX {
            return;
        }
        let mut flags = AllocFlags::empty();
        if zero {
            flags |= AllocFlags::ZERO;
        }
        if atomic {
            flags |= AllocFlags::ATOMIC;
        }
        let injected = self.ops[i].faults.injected();
        let before = state(&s.cache);
        match s.cache.alloc(flags) {
            Ok(obj) => self.received(i, obj, zero),
            Err(AllocError::NotMemory) if zero && !s.memory() => {
                assert_eq!(
                    state(&s.cache),
                    before,
                    "kmem-fuzz: refused ZERO changed {}",
                    s.name
                );
            }
            Err(AllocError::Ctor) if s.ops && self.ops[i].faults.injected() > injected => {}
            Err(e) => panic!("kmem-fuzz: {} alloc({flags:?}) failed: {e:?}", s.name),
        }
    }

    /// `alloc_bulk` of `n` objects into slot `i`'s cache: every object is
    /// checked and recorded as `alloc`'s are; a failure (an injected
    /// constructor failure, `ZERO` on integers) takes nothing.
    pub(super) fn alloc_bulk(&mut self, slot: u8, n: usize, zero: bool) {
        let i = usize::from(slot) % SLOTS;
        let Some(s) = &self.slots[i] else { return };
        if self.live_bytes + n * s.size > LIVE_MAX {
            return;
        }
        let flags = if zero {
            AllocFlags::ZERO
        } else {
            AllocFlags::empty()
        };
        let injected = self.ops[i].faults.injected();
        let live = s.cache.stats().buf_in_use;
        let mut out = vec![0; n];
        match s.cache.alloc_bulk(flags, &mut out) {
            Ok(()) => {
                for obj in out {
                    self.received(i, obj, zero);
                }
            }
            Err(e) => {
                let expected = (e == AllocError::NotMemory && zero && !s.memory())
                    || (e == AllocError::Ctor && s.ops && self.ops[i].faults.injected() > injected);
                assert!(
                    expected,
                    "kmem-fuzz: {} alloc_bulk({n}) failed: {e:?}",
                    s.name
                );
                assert_eq!(
                    s.cache.stats().buf_in_use,
                    live,
                    "kmem-fuzz: {}: a failed alloc_bulk kept objects",
                    s.name
                );
            }
        }
    }

    /// `reserve` of `n` objects of slot `i`'s cache, `k` of them taken
    /// (each checked and recorded as `alloc`'s are), the rest given back as
    /// the reserve drops.
    pub(super) fn reserve(&mut self, slot: u8, n: usize, k: usize) {
        let i = usize::from(slot) % SLOTS;
        let Some(s) = &self.slots[i] else { return };
        if self.live_bytes + n * s.size > LIVE_MAX {
            return;
        }
        let injected = self.ops[i].faults.injected();
        let live = s.cache.stats().buf_in_use;
        let taken: Vec<usize> = match s.cache.reserve(AllocFlags::empty(), n) {
            Ok(mut r) => {
                let taken = (0..k.min(n))
                    .map(|_| r.alloc().expect("reserved"))
                    .collect();
                assert_eq!(r.len(), n - k.min(n));
                taken
            }
            Err(e) => {
                assert!(
                    e == AllocError::Ctor && s.ops && self.ops[i].faults.injected() > injected,
                    "kmem-fuzz: {} reserve({n}) failed: {e:?}",
                    s.name
                );
                Vec::new()
            }
        };
        assert_eq!(
            s.cache.stats().buf_in_use,
            live + taken.len() as u64,
            "kmem-fuzz: {}: a reserve kept what it did not hand out",
            s.name
        );
        for obj in taken {
            self.received(i, obj, false);
        }
    }

    /// Checks and records `obj`, just allocated from slot `i`.
    fn received(&mut self, i: usize, obj: usize, zero: bool) {
        let s = self.slots[i].as_ref().expect("slot");
        let (size, name) = (s.size, &s.name);
        if s.memory() {
            assert!(
                self.ram.contains(obj, size),
                "kmem-fuzz: {name} gave {obj:#x}, outside the fake RAM"
            );
        } else {
            assert!(
                obj >= ID_BASE && obj + size <= ID_BASE + ID_UNITS,
                "kmem-fuzz: {name} gave ID {obj:#x}, outside the ID arena"
            );
        }
        assert_eq!(
            obj % s.align,
            0,
            "kmem-fuzz: {name} gave misaligned {obj:#x}"
        );
        assert!(
            s.cache.owns(obj),
            "kmem-fuzz: {name} does not own {obj:#x}, which it gave"
        );
        let owners = &self.owners[space(s.kind)];
        if let Some((a, j, z)) = overlap(owners, obj, size) {
            let other = self.slots[j].as_ref().map_or("?", |o| o.name.as_str());
            panic!(
                "kmem-fuzz: {name} gave [{obj:#x}, +{size}), which overlaps live [{a:#x}, +{z}) of {other}"
            );
        }
        self.seeds = self.seeds.wrapping_add(1);
        let seed = self.seeds;
        if s.memory() {
            // SAFETY: `obj` is `size` bytes of fake RAM (checked above) that
            // the cache just handed to us and no live object overlaps.
            let bytes = unsafe { slice::from_raw_parts_mut(obj as *mut u8, size) };
            if zero {
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "kmem-fuzz: {name} gave {obj:#x} with ZERO, not zeroed"
                );
            } else if s.ops {
                let tag = u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"));
                assert_eq!(
                    tag, CONSTRUCTED,
                    "kmem-fuzz: {name} gave {obj:#x} unconstructed"
                );
            }
            let from = if s.ops {
                // A user of a zeroed constructed object restores its state.
                bytes[..8].copy_from_slice(&CONSTRUCTED.to_ne_bytes());
                8
            } else {
                0
            };
            for (k, b) in bytes.iter_mut().enumerate().skip(from) {
                *b = canary(seed, k);
            }
        }
        let kind = s.kind;
        self.owners[space(kind)].insert(obj, (i, size));
        self.live_bytes += size;
        let s = self.slots[i].as_mut().expect("slot");
        s.live.insert(obj, seed);
    }

    /// Checks the canary (and constructed tag) of live object `obj` of slot
    /// `i` before it is freed.
    fn check_contents(&self, i: usize, obj: usize, seed: u8) {
        let s = self.slots[i].as_ref().expect("slot");
        if !s.memory() {
            return;
        }
        // SAFETY: a live object of `size` bytes that the harness owns.
        let bytes = unsafe { slice::from_raw_parts(obj as *const u8, s.size) };
        let from = if s.ops {
            let tag = u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"));
            assert_eq!(
                tag, CONSTRUCTED,
                "kmem-fuzz: {}: {obj:#x} lost its constructed tag",
                s.name
            );
            8
        } else {
            0
        };
        if let Some(k) = (from..s.size).find(|&k| bytes[k] != canary(seed, k)) {
            panic!(
                "kmem-fuzz: {}: live object {obj:#x} changed at byte {k} while in use",
                s.name
            );
        }
    }

    /// Frees the `which`-th live object of a slot.
    pub(super) fn free(&mut self, slot: u8, which: u16) {
        let i = usize::from(slot) % SLOTS;
        let Some(s) = &self.slots[i] else { return };
        if s.live.is_empty() {
            return;
        }
        let (&obj, &seed) = s
            .live
            .iter()
            .nth(usize::from(which) % s.live.len())
            .expect("live object");
        self.check_contents(i, obj, seed);
        let s = self.slots[i].as_mut().expect("slot");
        s.live.remove(&obj);
        self.owners[space(s.kind)].remove(&obj);
        self.live_bytes -= s.size;
        if s.freed.len() == FREED_KEPT {
            s.freed.remove(0);
        }
        s.freed.push(obj);
        // SAFETY: `obj` is a live object of this cache, freed once (the
        // model forgets it here).
        let got = unsafe { s.cache.free(obj) };
        assert_eq!(got, Ok(()), "kmem-fuzz: {}: free of live {obj:#x}", s.name);
    }

    /// The [`BadFree`] kinds a free of `addr` (no live object of slot `v`)
    /// may be refused with: what the owners of `addr` call for (`owns` of
    /// every cache).
    fn expected_kinds(&self, v: usize, addr: usize, object_start: bool) -> Vec<BadFree> {
        let s = self.slots[v].as_ref().expect("slot");
        if s.cache.owns(addr) {
            // A headed slab built again at the same address may have
            // another colour (slab colouring): an address that was an
            // object start of the slab before may be off the new one's
            // grid.
            if s.cache.uses_bufctls() || (object_start && s.cache.colours() == 1) {
                vec![BadFree::DoubleFree]
            } else {
                vec![BadFree::DoubleFree, BadFree::NotObjectStart]
            }
        } else {
            // Any other cache, the bootstrap ones (magazines, slab headers,
            // bufctls, caches) included, may own it.
            let mut owners = Vec::new();
            self.caches.for_each(|c| {
                if c.name() != s.name && c.owns(addr) {
                    owners.push(BadFree::WrongCache(Name::new(c.name())));
                }
            });
            if owners.is_empty() {
                owners.push(BadFree::Foreign);
            }
            owners
        }
    }

    /// Frees `addr`, which is no live object of slot `v` (a cache that
    /// checks every free at once), and fails unless the free is refused
    /// with one of `kinds` and changes nothing but the bad-free count.
    fn refuse(&self, v: usize, addr: usize, kinds: &[BadFree]) {
        let s = self.slots[v].as_ref().expect("slot");
        assert!(s.double_checked && !s.live.contains_key(&addr));
        let states: Vec<_> = self
            .slots
            .iter()
            .map(|o| o.as_ref().map(|o| state(&o.cache)))
            .collect();
        let world = self.world_state();
        let bad = s.cache.stats().bad_frees;
        // SAFETY: `addr` is no live object of this cache, which checks
        // every free (DEBUG or NOMAGAZINE) before it changes or touches
        // anything: the free is refused without using `addr`.
        let got = unsafe { s.cache.free(addr) };
        match got {
            Err(FreeError { cache, addr: a, kind })
                if cache == Name::new(&s.name) && a == addr && kinds.contains(&kind) => {}
            _ => panic!(
                "kmem-fuzz: {}: free of {addr:#x} gave {got:?}, expected a refusal with one of {kinds:?}",
                s.name
            ),
        }
        let after: Vec<_> = self
            .slots
            .iter()
            .map(|o| o.as_ref().map(|o| state(&o.cache)))
            .collect();
        assert_eq!(
            after, states,
            "kmem-fuzz: {}: refused free changed a cache",
            s.name
        );
        assert_eq!(
            self.world_state(),
            world,
            "kmem-fuzz: refused free changed an arena"
        );
        assert_eq!(
            s.cache.stats().bad_frees,
            bad + 1,
            "kmem-fuzz: {}: bad free not counted",
            s.name
        );
    }

    /// A checked cache in slot `slot`, if there is one.
    fn checked(&self, slot: u8) -> Option<usize> {
        let v = usize::from(slot) % SLOTS;
        self.slots[v].as_ref().filter(|s| s.checked).map(|_| v)
    }

    pub(super) fn double_free(&mut self, slot: u8, which: u16) {
        let v = usize::from(slot) % SLOTS;
        if !self.slots[v].as_ref().is_some_and(|s| s.double_checked) {
            return;
        }
        let s = self.slots[v].as_ref().expect("slot");
        if s.freed.is_empty() {
            return;
        }
        let addr = s.freed[usize::from(which) % s.freed.len()];
        if s.live.contains_key(&addr) {
            return; // handed out again: a free would be legal
        }
        let kinds = self.expected_kinds(v, addr, true);
        self.refuse(v, addr, &kinds);
    }

    pub(super) fn foreign_free(&mut self, slot: u8, target: Foreign) {
        let Some(v) = self.checked(slot) else { return };
        let s = self.slots[v].as_ref().expect("slot");
        let nth = |o: &super::Slot<'_>, which: u16| {
            o.live
                .keys()
                .nth(usize::from(which) % o.live.len().max(1))
                .copied()
        };
        let heap = Box::new([0u64; 4]);
        let addr = match target {
            Foreign::Interior(which, off) if s.size > 1 => {
                let Some(obj) = nth(s, which) else { return };
                obj + 1 + usize::from(off) % (s.size - 1)
            }
            Foreign::Interior(..) => return,
            Foreign::OtherLive(j, which) => {
                let Some(o) = self.slots[usize::from(j) % SLOTS].as_ref() else {
                    return;
                };
                let Some(obj) = nth(o, which) else { return };
                obj
            }
            Foreign::Heap => heap.as_ptr() as usize,
            Foreign::Zero => 0,
            Foreign::InRam(off) => self.ram.start() + off as usize % self.ram.len(),
            Foreign::Raw(a) => a,
        };
        if s.live.contains_key(&addr) {
            return; // a live object of its own: a free would be legal
        }
        let kinds = self.expected_kinds(v, addr, false);
        self.refuse(v, addr, &kinds);
        drop(heap);
    }

    /// Frees every live object, destroys every cache, and checks that
    /// nothing is left.
    pub(super) fn finish(&mut self) {
        for i in 0..SLOTS {
            let Some(s) = &self.slots[i] else { continue };
            let objects: Vec<_> = s.live.keys().copied().collect();
            for _ in objects {
                self.free(i as u8, 0);
            }
            self.verify();
            self.destroy(i as u8);
            assert!(
                self.slots[i].is_none(),
                "kmem-fuzz: destroy refused after every free"
            );
        }
        self.verify();
        assert!(self.owners.iter().all(BTreeMap::is_empty));
        assert_eq!(
            self.kpages.stats().live,
            0,
            "kmem-fuzz: slabs left in kpages"
        );
    }
}
