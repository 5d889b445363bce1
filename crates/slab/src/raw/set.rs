//! [`SlabSet`]: every slab of one cache, each on the full, partial or empty
//! list its busy count calls for, and in the address hash; objects out of
//! them and back; slabs in and out.
//!
//! The set owns its slabs. A slab enters as a [`NewSlab`] and leaves as an
//! [`EmptySlab`] (both `&mut self`), having left the lists and the hash
//! first, so every pointer the set follows names a live header or bufctl.
//! A small slab's free objects are exactly its clear bitmap bits; a bufctl
//! slab's free list holds exactly the bufctls in state `Free`.

use core::ptr::{self, NonNull};

use crate::error::BadFree;
use crate::geometry::{Geometry, Layout};
#[cfg(feature = "site-stats")]
use crate::sites::{resite, SiteId};

use super::build::NewSlab;
use super::debug::{DebugLayout, Trailer};
use super::hash::AddrHash;
use super::memory::{BufferShape, MetaMem, SlabBuffer};
use super::slab::{BufState, Bufctl, HashNode, SlabHeader, SlabList};
use super::{Freed, Taken};

/// A doubly linked list of slab headers.
struct SlabQueue {
    head: *mut SlabHeader,
    tail: *mut SlabHeader,
    len: usize,
}

impl SlabQueue {
    const fn new() -> Self {
        Self {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// True when `slab` is the last on this list.
    fn is_last(&self, slab: NonNull<SlabHeader>) -> bool {
        ptr::eq(self.tail, slab.as_ptr())
    }

    /// Puts `slab` at the end of the list.
    ///
    /// # Safety
    /// As for [`push`](Self::push).
    unsafe fn push_back(&mut self, slab: NonNull<SlabHeader>, list: SlabList) {
        let s = slab.as_ptr();
        // SAFETY: live headers of the set (the caller's guarantee, and the
        // list holds only live ones).
        unsafe {
            (*s).list = list;
            (*s).next = ptr::null_mut();
            (*s).prev = self.tail;
            if self.tail.is_null() {
                self.head = s;
            } else {
                (*self.tail).next = s;
            }
        }
        self.tail = s;
        self.len += 1;
    }

    fn first(&self) -> Option<NonNull<SlabHeader>> {
        NonNull::new(self.head)
    }

    /// # Safety
    /// `slab` is a live header of the set on no list, and nothing else
    /// accesses the set's headers meanwhile.
    unsafe fn push(&mut self, slab: NonNull<SlabHeader>, list: SlabList) {
        let s = slab.as_ptr();
        // SAFETY: live headers of the set (the caller's guarantee, and the
        // list holds only live ones).
        unsafe {
            (*s).list = list;
            (*s).prev = ptr::null_mut();
            (*s).next = self.head;
            if self.head.is_null() {
                self.tail = s;
            } else {
                (*self.head).prev = s;
            }
        }
        self.head = s;
        self.len += 1;
    }

    /// # Safety
    /// `slab` is a live header on this list, and nothing else accesses the
    /// set's headers meanwhile.
    unsafe fn remove(&mut self, slab: NonNull<SlabHeader>) {
        let s = slab.as_ptr();
        // SAFETY: live headers on this list (the caller's guarantee).
        unsafe {
            if (*s).prev.is_null() {
                self.head = (*s).next;
            } else {
                (*(*s).prev).next = (*s).next;
            }
            if (*s).next.is_null() {
                self.tail = (*s).prev;
            } else {
                (*(*s).next).prev = (*s).prev;
            }
            (*s).next = ptr::null_mut();
            (*s).prev = ptr::null_mut();
        }
        self.len -= 1;
    }

    /// The headers, borrowed with the list.
    fn iter(&self) -> impl Iterator<Item = &SlabHeader> + '_ {
        let mut at = self.head;
        core::iter::from_fn(move || {
            // SAFETY: a live header on this list; the borrow of the list
            // (and so of its set) keeps it live and unchanged.
            let s = unsafe { at.as_ref()? };
            at = s.next;
            Some(s)
        })
    }
}

/// Where an object's slab was found.
#[derive(Clone, Copy)]
enum Found {
    /// In the small slab with this header.
    Small(NonNull<SlabHeader>),
    /// At this bufctl.
    Bufctl(NonNull<Bufctl>),
}

/// Every slab of one cache.
pub(crate) struct SlabSet<'a> {
    full: SlabQueue,
    partial: SlabQueue,
    empty: SlabQueue,
    /// Small layout: slab headers by slab base. Bufctl layout: every
    /// bufctl by buffer address.
    hash: AddrHash<'a>,
    small: bool,
    /// Rounds an object's address down to its slab's base (small layout).
    slab_mask: usize,
    /// An object's size when the objects are memory, else 0.
    object_bytes: usize,
    /// How every slab buffer of the set was allocated.
    shape: BufferShape,
    /// Debug mode's poison and trailer (bufctl layout over memory only).
    debug: Option<DebugLayout>,
    /// The distance between objects.
    stride: usize,
    /// The FIFO ablation (`CacheBuilder::fifo_partial_slabs`): partial
    /// slabs are taken in the order they became partial.
    fifo: bool,
    /// `site-stats`: the bytes an object counts for at its site (the
    /// object size).
    #[cfg(feature = "site-stats")]
    site_bytes: u64,
}

// SAFETY: the set owns every slab it points into (headers, bufctls, their
// buffers) and its hash table; moving it to another thread moves that
// ownership. It is not `Sync` (shared, it hands out `&SlabHeader`s).
unsafe impl Send for SlabSet<'_> {}

impl<'a> SlabSet<'a> {
    /// An empty set for slabs of `geo` in buffers of `shape`, hashed in
    /// `hash`. `memory` says whether the objects are memory: trusted (see
    /// the [module docs](super)).
    ///
    /// # Panics
    /// If `debug` is asked of a set that is not bufctl over memory, or does
    /// not fit a buffer.
    pub(crate) fn new(
        geo: &Geometry,
        memory: bool,
        shape: BufferShape,
        hash: AddrHash<'a>,
        debug: Option<DebugLayout>,
    ) -> Self {
        assert!(
            debug.is_none_or(|d| {
                memory
                    && geo.layout == Layout::Bufctl
                    && d.bytes() <= geo.size
                    && d.obj.is_multiple_of(8)
                    && geo.size.is_multiple_of(8)
            }),
            "kmem-slab: debug parts that do not fit the layout"
        );
        Self {
            full: SlabQueue::new(),
            partial: SlabQueue::new(),
            empty: SlabQueue::new(),
            hash,
            small: matches!(geo.layout, Layout::Small { .. }),
            slab_mask: !(geo.slab_size - 1),
            object_bytes: if memory { geo.obj } else { 0 },
            shape,
            debug,
            stride: geo.size,
            fifo: false,
            #[cfg(feature = "site-stats")]
            site_bytes: geo.obj as u64,
        }
    }

    /// Keeps the partial slabs in plain FIFO order from now on (see
    /// [`refile`](Self::refile)): an ablation for the benchmarks.
    pub(crate) fn set_fifo_partial(&mut self) {
        self.fifo = true;
    }

    /// Debug mode's layout, if the set has one.
    pub(crate) fn debug(&self) -> Option<DebugLayout> {
        self.debug
    }

    /// The bufctl of `addr` when the set has debug parts and `addr` starts
    /// one of its buffers.
    fn debug_buffer(&self, addr: usize) -> Option<(DebugLayout, &Bufctl)> {
        let d = self.debug?;
        match self.find(addr)? {
            // SAFETY: a bufctl set's hash holds live bufctls only; the
            // borrow of the set keeps it.
            Found::Bufctl(bc) => Some((d, unsafe { bc.as_ref() })),
            Found::Small(_) => None,
        }
    }

    /// Fills the object at `addr` with the poison pattern, if the set
    /// poisons and the object is one of its buffers that no user holds
    /// (state `Cached` or `Free`).
    pub(crate) fn poison(&mut self, addr: usize) {
        if let Some((d, bc)) = self.debug_buffer(addr) {
            if d.poison && bc.state != BufState::Allocated {
                // SAFETY: a buffer of this set (debug sets are memory, each
                // buffer `stride >= d.bytes()` bytes, aligned to 8: checked
                // in `new`), held by no user.
                unsafe { d.poison(addr) };
            }
        }
    }

    /// The offset of the first word of the object at `addr` that lost its
    /// poison, if the set poisons and the object is one of its buffers
    /// that no user holds.
    pub(crate) fn poison_broken(&self, addr: usize) -> Option<usize> {
        let (d, bc) = self.debug_buffer(addr)?;
        if !d.poison || bc.state == BufState::Allocated {
            return None;
        }
        // SAFETY: as in `poison`.
        unsafe { d.poison_broken(addr) }
    }

    /// The trailer after the object at `addr`, if the set has trailers and
    /// `addr` is one of its buffers.
    pub(crate) fn trailer(&self, addr: usize) -> Option<Trailer> {
        let (d, _) = self.debug_buffer(addr)?;
        // SAFETY: a buffer of this set (as in `poison`); the trailer lies
        // past the object, so no user holds it.
        d.trailer.then(|| unsafe { d.read_trailer(addr) })
    }

    /// Writes the trailer after the object at `addr` (as [`trailer`](Self::trailer)).
    pub(crate) fn set_trailer(&mut self, addr: usize, t: &Trailer) {
        if let Some((d, _)) = self.debug_buffer(addr) {
            if d.trailer {
                // SAFETY: as in `trailer`.
                unsafe { d.write_trailer(addr, t) };
            }
        }
    }

    /// Calls `f` with every object of a bufctl set that a user holds
    /// (state `Allocated`).
    pub(crate) fn for_each_allocated(&self, mut f: impl FnMut(usize)) {
        if self.small {
            return;
        }
        for list in [SlabList::Full, SlabList::Partial] {
            for s in self.iter(list) {
                for i in 0..s.total() as usize {
                    let addr = s.base() + i * self.stride;
                    if let Some(Found::Bufctl(bc)) = self.find(addr) {
                        // SAFETY: a live bufctl of the set.
                        if unsafe { bc.as_ref() }.state == BufState::Allocated {
                            f(addr);
                        }
                    }
                }
            }
        }
    }

    /// An object's size when the cache's objects are memory, else 0.
    pub(crate) fn object_bytes(&self) -> usize {
        self.object_bytes
    }

    fn queue(&mut self, list: SlabList) -> &mut SlabQueue {
        match list {
            SlabList::Full => &mut self.full,
            SlabList::Partial => &mut self.partial,
            SlabList::Empty => &mut self.empty,
        }
    }

    /// Slabs on `list`.
    pub(crate) fn len(&self, list: SlabList) -> usize {
        match list {
            SlabList::Full => self.full.len,
            SlabList::Partial => self.partial.len,
            SlabList::Empty => self.empty.len,
        }
    }

    /// The slabs on `list`.
    pub(crate) fn iter(&self, list: SlabList) -> impl Iterator<Item = &SlabHeader> + '_ {
        match list {
            SlabList::Full => self.full.iter(),
            SlabList::Partial => self.partial.iter(),
            SlabList::Empty => self.empty.iter(),
        }
    }

    /// The address hash.
    pub(crate) fn hash(&self) -> &AddrHash<'a> {
        &self.hash
    }

    /// Installs a hash table of `2^bits` chains; returns the memory to give
    /// back if it is refused (see [`AddrHash::install`]).
    pub(crate) fn install_table(&mut self, table: MetaMem<'a>, bits: u32) -> Option<MetaMem<'a>> {
        self.hash.install(table, bits)
    }

    /// Moves up to `chains` chains of a rehash under way; whether some are
    /// left, and the table a finished one emptied, to be given back.
    pub(crate) fn move_hash(&mut self, chains: usize) -> (bool, Option<MetaMem<'a>>) {
        let moving = self.hash.move_chains(chains);
        (moving, self.hash.take_retired())
    }

    /// Takes the hash tables out to be given back, leaving a hash that
    /// finds nothing: for a torn-down cache, whose set is empty.
    pub(crate) fn retire_tables(&mut self) -> [Option<MetaMem<'a>>; 2] {
        debug_assert_eq!(self.len(SlabList::Full) + self.len(SlabList::Partial), 0);
        self.hash.retire()
    }

    /// Moves `slab` to the list its busy count calls for. Partial slabs are
    /// kept in two halves, after illumos' partial slabs ordered by use:
    /// slabs at least half full at the front, where allocations take from,
    /// and less than half full at the back, so that the fullest fill up
    /// first and the emptiest drain until they are empty and can go back
    /// to the source. A free that leaves a slab less than half full moves
    /// it to the back.
    ///
    /// With the FIFO ablation (`fifo`), a slab that becomes partial goes to
    /// the back and stays where it is while it remains partial, so
    /// allocations take from the slab that became partial first.
    ///
    /// # Safety
    /// `slab` is a live header of the set on one of its lists, and nothing
    /// else accesses the set's headers meanwhile.
    #[inline]
    unsafe fn refile(&mut self, slab: NonNull<SlabHeader>, freed: bool) {
        // SAFETY: the caller's guarantee.
        let (busy, total, have) = unsafe {
            let s = slab.as_ptr();
            ((*s).busy, (*s).total, (*s).list)
        };
        let want = match busy {
            0 => SlabList::Empty,
            b if b == total => SlabList::Full,
            _ => SlabList::Partial,
        };
        if self.fifo {
            // SAFETY: the caller's guarantee.
            unsafe { self.refile_fifo(slab, have, want) };
            return;
        }
        // An allocation leaves its slab where it is (at the front), so the
        // next one takes from the same slab.
        let draining = freed && want == SlabList::Partial && busy * 2 < total;
        if want == have && (!draining || self.partial.is_last(slab)) {
            return;
        }
        // SAFETY: the slab is on `have` and goes on `want`.
        unsafe {
            self.queue(have).remove(slab);
            if draining {
                self.partial.push_back(slab, want);
            } else {
                self.queue(want).push(slab, want);
            }
        }
    }

    /// [`refile`](Self::refile) with the FIFO ablation: a slab that
    /// becomes partial goes to the back and stays where it is while it
    /// remains partial.
    ///
    /// # Safety
    /// As for [`refile`](Self::refile); the slab is on `have`.
    #[cold]
    #[inline(never)]
    unsafe fn refile_fifo(&mut self, slab: NonNull<SlabHeader>, have: SlabList, want: SlabList) {
        if want == have {
            return;
        }
        // SAFETY: the slab is on `have` and goes on `want`.
        unsafe {
            self.queue(have).remove(slab);
            if want == SlabList::Partial {
                self.partial.push_back(slab, want);
            } else {
                self.queue(want).push(slab, want);
            }
        }
    }

    /// Takes a free object from a partial slab, else an empty one; a
    /// bufctl's state becomes `state`. With `site-stats`, the object now
    /// counts for `site`.
    pub(crate) fn take(
        &mut self,
        state: BufState,
        #[cfg(feature = "site-stats")] site: SiteId,
    ) -> Option<Taken> {
        let slab = self.partial.first().or_else(|| self.empty.first())?;
        // SAFETY: a live header of the set; `&mut self` makes this the only
        // access to it.
        let s = unsafe { &mut *slab.as_ptr() };
        // The bufctl `pop_bufctl` takes: the first free one.
        #[cfg(feature = "site-stats")]
        let first = s.free_bufctl;
        let addr = if self.small {
            s.pop_object()
        } else {
            s.pop_bufctl(state)
        };
        s.busy += 1;
        #[cfg(feature = "site-stats")]
        match NonNull::new(first) {
            Some(bc) if !self.small => self.resite(Found::Bufctl(bc), addr, site),
            _ => self.resite(Found::Small(slab), addr, site),
        }
        // SAFETY: live, on a list of the set; `s` is not used again.
        unsafe { self.refile(slab, false) };
        Some(Taken {
            addr,
            bytes: self.object_bytes,
        })
    }

    /// `site-stats`: object `obj`, found at `found`, now counts for `site`
    /// (see [`resite`]).
    #[cfg(feature = "site-stats")]
    fn resite(&self, found: Found, obj: usize, site: SiteId) {
        let slot = match found {
            // SAFETY: a live header of the set; the borrow of the set keeps
            // it.
            Found::Small(slab) => unsafe { slab.as_ref() }.site_slot(obj),
            // SAFETY: a live bufctl of the set, kept as above.
            Found::Bufctl(bc) => Some(unsafe { bc.as_ref() }.site()),
        };
        if let Some(slot) = slot {
            resite(slot, site, self.site_bytes);
        }
    }

    /// `site-stats`: the object at `obj`, if it is one of the set's, now
    /// counts for `site` ([`SiteId::NONE`]: for none).
    #[cfg(feature = "site-stats")]
    pub(crate) fn set_site(&mut self, obj: usize, site: SiteId) {
        if let Some(found) = self.find(obj) {
            self.resite(found, obj, site);
        }
    }

    /// Finds the slab (and bufctl) that owns `obj`.
    fn find(&self, obj: usize) -> Option<Found> {
        if self.small {
            let node = self.hash.find(obj & self.slab_mask)?;
            Some(Found::Small(node.cast::<SlabHeader>()))
        } else {
            let node = self.hash.find(obj)?;
            Some(Found::Bufctl(node.cast::<Bufctl>()))
        }
    }

    /// True when `obj` lies in one of the slabs (for the bufctl layout: is
    /// an object start).
    pub(crate) fn owns(&self, obj: usize) -> bool {
        self.find(obj).is_some()
    }

    /// Checks, changing nothing, that `obj` may come back: an allocated
    /// object of a small slab, or an object whose bufctl is in state
    /// `want`.
    pub(crate) fn validate(&self, obj: usize, want: BufState) -> Result<(), BadFree> {
        match self.find(obj).ok_or(BadFree::Foreign)? {
            Found::Small(slab) => {
                // SAFETY: a small set's hash holds live headers only (each
                // begins with its node); the borrow of the set keeps it.
                unsafe { slab.as_ref() }.check_object(obj).map(|_| ())
            }
            Found::Bufctl(bc) => {
                // SAFETY: a bufctl set's hash holds live bufctls only.
                if unsafe { bc.as_ref() }.state != want {
                    return Err(BadFree::DoubleFree);
                }
                Ok(())
            }
        }
    }

    /// True when `addr` is an allocated object (bitmap bit set) of a
    /// headed slab of this set that carries the free mark of `key`: it is
    /// free, in a magazine (see `guard.rs`). Reads the object's first word.
    pub(crate) fn carries_mark(&self, addr: usize, key: usize) -> bool {
        let Some(Found::Small(slab)) = self.find(addr) else {
            return false;
        };
        // SAFETY: a small set's hash holds live headers only.
        if unsafe { slab.as_ref() }.check_object(addr).is_err() {
            return false;
        }
        #[cfg(kmem_asan)]
        kmem_arena::asan::unpoison(addr, core::mem::size_of::<usize>());
        // An object start of a live headed slab of this set (checked above):
        // a word of memory, aligned to 8, in the set's buffer. Read only;
        // its holder (if any) may not be writing it, as the caller claims
        // the object is its own.
        // SAFETY: as just said.
        let word = unsafe { (addr as *const usize).read() };
        #[cfg(kmem_asan)]
        if word == super::guard::mark(key, addr) {
            kmem_arena::asan::poison(addr, core::mem::size_of::<usize>());
        }
        word == super::guard::mark(key, addr)
    }

    /// Sets a tracked (bufctl) object's state, unless its bufctl is free.
    pub(crate) fn mark(&mut self, obj: usize, state: BufState) {
        debug_assert_ne!(state, BufState::Free);
        if let Some(Found::Bufctl(bc)) = self.find(obj) {
            // SAFETY: a live bufctl of the set; `&mut self` makes this the
            // only access to it.
            let b = unsafe { &mut *bc.as_ptr() };
            // A free bufctl stays on its slab's free list, in state `Free`.
            if b.state != BufState::Free {
                b.state = state;
            }
        }
    }

    /// Gives `obj` (already destructed) back to its slab, after checking it
    /// as [`validate`](Self::validate) does; a refusal changes nothing.
    /// With `site-stats`, the object no longer counts for its site.
    pub(crate) fn give(&mut self, obj: Freed, want: BufState) -> Result<(), BadFree> {
        let found = self.find(obj.addr()).ok_or(BadFree::Foreign)?;
        #[cfg(feature = "site-stats")]
        let addr = obj.addr();
        let slab = match found {
            Found::Small(slab) => {
                // SAFETY: a live header of the set; `&mut self` makes this
                // the only access to it.
                unsafe { &mut *slab.as_ptr() }.give_object(obj)?;
                slab
            }
            Found::Bufctl(bc) => {
                // SAFETY: a live bufctl of the set.
                let (state, slab) = unsafe { ((*bc.as_ptr()).state, (*bc.as_ptr()).slab) };
                if state != want {
                    return Err(BadFree::DoubleFree);
                }
                let slab = NonNull::new(slab).expect("kmem-slab: bufctl without slab");
                // SAFETY: the live header of the bufctl's slab; the bufctl is
                // not `Free`, so off the free list; `&mut self` makes these
                // the only accesses.
                unsafe { (*slab.as_ptr()).push_bufctl(bc) };
                slab
            }
        };
        #[cfg(feature = "site-stats")]
        self.resite(found, addr, SiteId::NONE);
        // SAFETY: live, on a list of the set, and only reached from here.
        unsafe {
            (*slab.as_ptr()).busy -= 1;
            self.refile(slab, true);
        }
        Ok(())
    }

    /// Adds a freshly built, empty slab.
    ///
    /// # Panics
    /// If the slab was built for another layout or buffer shape.
    pub(crate) fn insert(&mut self, slab: NewSlab) {
        let h = slab.header;
        // SAFETY: a built header that the `NewSlab` owned alone, the set's
        // from now on.
        let (small, mut at) = unsafe { ((*h.as_ptr()).is_small(), (*h.as_ptr()).free_bufctl) };
        assert!(
            small == self.small && slab.shape == self.shape,
            "kmem-slab: slab built for another cache"
        );
        if small {
            // SAFETY: live, owned by the set, in no chain; it leaves the
            // hash before the set lets it go (`pop_empty`).
            unsafe { self.hash.insert(h.cast::<HashNode>()) };
        } else {
            while let Some(bc) = NonNull::new(at) {
                // SAFETY: the bufctls of a new slab are live and all free;
                // each leaves the hash before the set lets it go.
                unsafe {
                    at = (*bc.as_ptr()).next_free;
                    self.hash.insert(bc.cast::<HashNode>());
                }
            }
        }
        // SAFETY: a live header of the set on no list.
        unsafe { self.empty.push(h, SlabList::Empty) };
    }

    /// Unlinks an empty slab (and its hash entries) for the caller to give
    /// back.
    pub(crate) fn pop_empty(&mut self) -> Option<EmptySlab> {
        let slab = self.empty.first()?;
        // SAFETY: a live header on the empty list; `&mut self`.
        unsafe { self.empty.remove(slab) };
        // SAFETY: as above; an empty slab's bufctls are live and all free.
        let (base, mut at) = unsafe { ((*slab.as_ptr()).base, (*slab.as_ptr()).free_bufctl) };
        if self.small {
            self.hash.remove(base);
            // SAFETY: as above.
            unsafe { (*slab.as_ptr()).disown() };
        } else {
            while let Some(bc) = NonNull::new(at) {
                // SAFETY: a live bufctl of this slab.
                let key = unsafe {
                    at = (*bc.as_ptr()).next_free;
                    (*bc.as_ptr()).node.key
                };
                self.hash.remove(key);
            }
        }
        Some(EmptySlab {
            header: slab,
            shape: self.shape,
        })
    }
}

/// An empty slab out of its set: it owns its buffer, header and bufctls,
/// given back through [`into_parts`](Self::into_parts) (dropped, they leak).
pub(crate) struct EmptySlab {
    header: NonNull<SlabHeader>,
    shape: BufferShape,
}

/// What an [`EmptySlab`] is made of, each to be given back.
pub(crate) struct SlabParts {
    /// The buffer, to the arena slabs come from.
    pub(crate) buffer: SlabBuffer,
    /// A bufctl slab's header, to `kmem_slab` (after the bufctls).
    pub(crate) header: Option<Freed>,
    /// A bufctl slab's bufctls, to `kmem_bufctl`.
    pub(crate) bufctls: FreeBufctls,
}

impl EmptySlab {
    pub(crate) fn into_parts(self) -> SlabParts {
        let h = self.header.as_ptr();
        // SAFETY: a live header that only this token reaches (the set let
        // it go in `pop_empty`).
        let (base, small, first) = unsafe { ((*h).base, (*h).is_small(), (*h).free_bufctl) };
        let header = if small {
            // In the buffer, which goes back as a whole.
            None
        } else {
            // A `kmem_slab` object (`build_bufctl` placed the header in it),
            // owned by this slab and, the slab out of its set and its
            // bufctls read through `first` only, used by nothing after this.
            // SAFETY: as just said.
            Some(unsafe { Freed::new(h as usize) })
        };
        SlabParts {
            // Its memory flag matters only to build a slab; this one is
            // given back.
            buffer: SlabBuffer::of_slab(base, self.shape, false),
            header,
            bufctls: FreeBufctls { at: first },
        }
    }
}

/// The bufctls of an [`EmptySlab`], each read before it is handed out.
pub(crate) struct FreeBufctls {
    at: *mut Bufctl,
}

impl Iterator for FreeBufctls {
    type Item = Freed;

    fn next(&mut self) -> Option<Freed> {
        let bc = NonNull::new(self.at)?;
        // SAFETY: a bufctl of the slab taken apart, live until handed out
        // below (the previous ones were read before they were).
        self.at = unsafe { (*bc.as_ptr()).next_free };
        // SAFETY: a `kmem_bufctl` object (`build_bufctl` placed it there),
        // owned by the slab taken apart and, its link read, used by nothing
        // after this.
        Some(unsafe { Freed::new(bc.as_ptr() as usize) })
    }
}
