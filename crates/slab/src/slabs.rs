//! The slab layer of one cache: full, partial and empty slab lists, object
//! hand-out and return, slab insertion and removal. Everything here runs
//! under the cache lock on memory the cache owns (see [`raw`](crate::raw)).

use core::ptr::{self, NonNull};

use crate::error::{BadFree, CheckError};
use crate::geometry::{Geometry, Layout};
use crate::hash::AddrHash;
use crate::raw::{self, BufState, Bufctl, HashNode, SlabHeader, SlabList, SlabQueue, NONE};

pub(crate) struct SlabState {
    full: SlabQueue,
    partial: SlabQueue,
    empty: SlabQueue,
    /// Small layout: slab headers by slab base. Bufctl layout: every
    /// bufctl by buffer address.
    pub(crate) hash: AddrHash,
    /// Objects out of slabs (held by users or cached in magazines).
    pub(crate) busy: u64,
    /// Objects in all slabs.
    pub(crate) total: u64,
    /// User allocations served by the slab layer, and user frees returned
    /// straight to it.
    pub(crate) direct_allocs: u64,
    pub(crate) direct_frees: u64,
    pub(crate) slab_creates: u64,
    pub(crate) slab_destroys: u64,
}

// SAFETY: the raw pointers point into memory owned by the cache, reached
// only under the cache lock that wraps this state.
unsafe impl Send for SlabState {}

/// Which state a returned object must be in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// Straight from its user.
    User,
    /// From a magazine of a `DEBUG` cache (state `Cached`).
    CachedDebug,
}

impl SlabState {
    pub(crate) fn new(hash: AddrHash) -> Self {
        Self {
            full: SlabQueue::new(),
            partial: SlabQueue::new(),
            empty: SlabQueue::new(),
            hash,
            busy: 0,
            total: 0,
            direct_allocs: 0,
            direct_frees: 0,
            slab_creates: 0,
            slab_destroys: 0,
        }
    }

    pub(crate) fn slabs(&self) -> usize {
        self.full.len + self.partial.len + self.empty.len
    }

    pub(crate) fn empty_slabs(&self) -> usize {
        self.empty.len
    }

    fn queue(&mut self, list: SlabList) -> &mut SlabQueue {
        match list {
            SlabList::Full => &mut self.full,
            SlabList::Partial => &mut self.partial,
            SlabList::Empty => &mut self.empty,
        }
    }

    /// Moves `slab` to the list its busy count calls for.
    fn refile(&mut self, slab: NonNull<SlabHeader>) {
        // SAFETY: a live header of this cache, under the lock.
        let s = unsafe { &*slab.as_ptr() };
        let want = match s.busy {
            0 => SlabList::Empty,
            b if b == s.total => SlabList::Full,
            _ => SlabList::Partial,
        };
        let have = s.list;
        if want != have {
            // SAFETY: the slab is on `have` and goes on `want`.
            unsafe {
                self.queue(have).remove(slab);
                self.queue(want).push(slab, want);
            }
        }
    }

    /// Takes a free object from a partial slab, else an empty one.
    pub(crate) fn take(&mut self, geo: &Geometry, state: BufState) -> Option<usize> {
        let slab = self.partial.first().or_else(|| self.empty.first())?;
        // SAFETY: a live header of this cache, under the lock; no other
        // reference to it lives in this function.
        let s = unsafe { &mut *slab.as_ptr() };
        let obj = match geo.layout {
            Layout::Small { bitmap_words } => {
                let obj = s.free_obj;
                debug_assert_ne!(obj, NONE);
                // SAFETY: `obj` is the head of this slab's free chain.
                s.free_obj = unsafe { raw::read_free_link(obj) };
                let i = geo
                    .index(s.base, obj)
                    .expect("kmem-slab: corrupt free chain");
                // SAFETY: live small slab with `bitmap_words` words.
                let bits = unsafe { raw::bitmap(slab, bitmap_words) };
                bits[i / 64] |= 1 << (i % 64);
                obj
            }
            Layout::Bufctl => {
                let bc = NonNull::new(s.free_bufctl).expect("kmem-slab: corrupt bufctl list");
                // SAFETY: a live bufctl of this slab.
                let b = unsafe { &mut *bc.as_ptr() };
                s.free_bufctl = b.next_free;
                b.next_free = ptr::null_mut();
                b.state = state;
                b.node.key
            }
        };
        s.busy += 1;
        self.busy += 1;
        self.refile(slab);
        Some(obj)
    }

    /// Finds the slab (and bufctl) that owns `obj`.
    fn lookup(
        &self,
        geo: &Geometry,
        obj: usize,
    ) -> Result<(NonNull<SlabHeader>, Option<NonNull<Bufctl>>), BadFree> {
        match geo.layout {
            Layout::Small { .. } => {
                let base = obj & !(geo.slab_size - 1);
                let node = self.hash.find(base).ok_or(BadFree::Foreign)?;
                let slab = node.cast::<SlabHeader>();
                Ok((slab, None))
            }
            Layout::Bufctl => {
                let node = self.hash.find(obj).ok_or(BadFree::Foreign)?;
                let bc = node.cast::<Bufctl>();
                // SAFETY: a live bufctl in the hash.
                let slab = unsafe { (*bc.as_ptr()).slab };
                Ok((
                    NonNull::new(slab).expect("kmem-slab: bufctl without slab"),
                    Some(bc),
                ))
            }
        }
    }

    /// True when `obj` lies in one of this cache's slabs.
    pub(crate) fn owns(&self, geo: &Geometry, obj: usize) -> bool {
        self.lookup(geo, obj).is_ok()
    }

    /// Checks that `obj` may come back `from` where it is, without changing
    /// anything.
    pub(crate) fn validate(&self, geo: &Geometry, obj: usize, from: From) -> Result<(), BadFree> {
        let (slab, bc) = self.lookup(geo, obj)?;
        match (geo.layout, bc) {
            (Layout::Small { bitmap_words }, _) => {
                // SAFETY: a live header found through the hash.
                let base = unsafe { (*slab.as_ptr()).base };
                let i = geo.index(base, obj).ok_or(BadFree::NotObjectStart)?;
                // SAFETY: live small slab with `bitmap_words` words; the
                // slice dies before this function returns.
                let bits = unsafe { raw::bitmap(slab, bitmap_words) };
                if bits[i / 64] & (1 << (i % 64)) == 0 {
                    return Err(BadFree::DoubleFree);
                }
                Ok(())
            }
            (Layout::Bufctl, Some(bc)) => {
                let want = match from {
                    From::User => BufState::Allocated,
                    From::CachedDebug => BufState::Cached,
                };
                // SAFETY: a live bufctl found through the hash.
                if unsafe { (*bc.as_ptr()).state } != want {
                    return Err(BadFree::DoubleFree);
                }
                Ok(())
            }
            (Layout::Bufctl, None) => unreachable!(),
        }
    }

    /// Marks a tracked (bufctl) object's state; `validate` must have passed.
    pub(crate) fn mark(&mut self, geo: &Geometry, obj: usize, state: BufState) {
        if let Ok((_, Some(bc))) = self.lookup(geo, obj) {
            // SAFETY: a live bufctl found through the hash, under the lock.
            unsafe { (*bc.as_ptr()).state = state };
        }
    }

    /// Returns `obj` (already destructed) to its slab.
    pub(crate) fn give(&mut self, geo: &Geometry, obj: usize, from: From) -> Result<(), BadFree> {
        self.validate(geo, obj, from)?;
        let (slab, bc) = self.lookup(geo, obj)?;
        // SAFETY: a live header of this cache, under the lock; the only
        // reference to it in this function.
        let s = unsafe { &mut *slab.as_ptr() };
        match (geo.layout, bc) {
            (Layout::Small { bitmap_words }, _) => {
                let i = geo.index(s.base, obj).ok_or(BadFree::NotObjectStart)?;
                // SAFETY: live small slab; the slice dies at once.
                let bits = unsafe { raw::bitmap(slab, bitmap_words) };
                bits[i / 64] &= !(1 << (i % 64));
                // SAFETY: `obj` is an object of this slab, free from now on.
                unsafe { raw::write_free_link(obj, s.free_obj) };
                s.free_obj = obj;
            }
            (Layout::Bufctl, Some(bc)) => {
                // SAFETY: a live bufctl of this slab.
                let b = unsafe { &mut *bc.as_ptr() };
                b.state = BufState::Free;
                b.next_free = s.free_bufctl;
                s.free_bufctl = bc.as_ptr();
            }
            (Layout::Bufctl, None) => unreachable!(),
        }
        s.busy -= 1;
        self.busy -= 1;
        self.refile(slab);
        Ok(())
    }

    /// Adds a freshly built, empty slab.
    ///
    /// # Safety
    /// `slab` was built by `build_small` / `build_bufctl` for this geometry
    /// and is known to nothing else.
    pub(crate) unsafe fn insert(&mut self, geo: &Geometry, slab: NonNull<SlabHeader>) {
        // SAFETY: the caller's guarantee: a live, unlisted header.
        unsafe {
            match geo.layout {
                Layout::Small { .. } => self.hash.insert(slab.cast::<HashNode>()),
                Layout::Bufctl => {
                    let mut at = (*slab.as_ptr()).free_bufctl;
                    while let Some(bc) = NonNull::new(at) {
                        at = (*bc.as_ptr()).next_free;
                        self.hash.insert(bc.cast::<HashNode>());
                    }
                }
            }
            self.empty.push(slab, SlabList::Empty);
        }
        self.total += u64::from(geo.per_slab);
        self.slab_creates += 1;
    }

    /// Unlinks an empty slab (and its hash entries) for the caller to free.
    pub(crate) fn pop_empty(&mut self, geo: &Geometry) -> Option<NonNull<SlabHeader>> {
        let slab = self.empty.first()?;
        // SAFETY: a live header on the empty list.
        unsafe { self.empty.remove(slab) };
        // SAFETY: as above; its bufctls are live and all free.
        let (base, mut at) = unsafe { ((*slab.as_ptr()).base, (*slab.as_ptr()).free_bufctl) };
        match geo.layout {
            Layout::Small { .. } => {
                self.hash.remove(base);
            }
            Layout::Bufctl => {
                while let Some(bc) = NonNull::new(at) {
                    // SAFETY: a live bufctl of this slab.
                    let key = unsafe {
                        at = (*bc.as_ptr()).next_free;
                        (*bc.as_ptr()).node.key
                    };
                    self.hash.remove(key);
                }
            }
        }
        self.total -= u64::from(geo.per_slab);
        self.slab_destroys += 1;
        Some(slab)
    }

    /// Verifies lists, free chains, bitmaps, bufctl states and totals.
    pub(crate) fn check(&self, geo: &Geometry) -> Result<(), CheckError> {
        let (mut busy, mut total, mut bufctls) = (0u64, 0u64, 0u64);
        for (queue, list) in [
            (&self.full, SlabList::Full),
            (&self.partial, SlabList::Partial),
            (&self.empty, SlabList::Empty),
        ] {
            let mut n = 0;
            for slab in queue.iter() {
                n += 1;
                // SAFETY: a live header on one of this cache's lists.
                let s = unsafe { &*slab.as_ptr() };
                let err_base = s.base;
                let want = match s.busy {
                    0 => SlabList::Empty,
                    b if b == s.total => SlabList::Full,
                    _ => SlabList::Partial,
                };
                if s.list != list || want != list || s.total != geo.per_slab {
                    return Err(CheckError::WrongList { slab: err_base });
                }
                let free = (s.total - s.busy) as usize;
                match geo.layout {
                    Layout::Small { bitmap_words } => {
                        // SAFETY: a live small slab; read-only use.
                        let bits = unsafe { raw::bitmap(slab, bitmap_words) };
                        let set: u32 = bits.iter().map(|w| w.count_ones()).sum();
                        if set != s.busy {
                            return Err(CheckError::BadState { slab: err_base });
                        }
                        let mut obj = s.free_obj;
                        for _ in 0..free {
                            let i = geo
                                .index(s.base, obj)
                                .ok_or(CheckError::BadFreeObject { slab: err_base })?;
                            if bits[i / 64] & (1 << (i % 64)) != 0 {
                                return Err(CheckError::BadState { slab: err_base });
                            }
                            // SAFETY: a free object of this slab.
                            obj = unsafe { raw::read_free_link(obj) };
                        }
                        if obj != NONE {
                            return Err(CheckError::FreeCount { slab: err_base });
                        }
                    }
                    Layout::Bufctl => {
                        let mut at = s.free_bufctl;
                        for _ in 0..free {
                            let bc =
                                NonNull::new(at).ok_or(CheckError::FreeCount { slab: err_base })?;
                            // SAFETY: a live bufctl of this slab.
                            let b = unsafe { &*bc.as_ptr() };
                            if b.slab != slab.as_ptr() || b.state != BufState::Free {
                                return Err(CheckError::BadState { slab: err_base });
                            }
                            if geo.index(s.base, b.node.key).is_none() {
                                return Err(CheckError::BadFreeObject { slab: err_base });
                            }
                            at = b.next_free;
                        }
                        if !at.is_null() {
                            return Err(CheckError::FreeCount { slab: err_base });
                        }
                        bufctls += u64::from(s.total);
                    }
                }
                busy += u64::from(s.busy);
                total += u64::from(s.total);
            }
            if n != queue.len {
                return Err(CheckError::Totals);
            }
        }
        if busy != self.busy || total != self.total {
            return Err(CheckError::Totals);
        }
        let want = match geo.layout {
            Layout::Small { .. } => self.slabs() as u64,
            Layout::Bufctl => bufctls,
        };
        if self.hash.len() != want || self.hash.nodes().count() as u64 != want {
            return Err(CheckError::HashCount);
        }
        Ok(())
    }
}

/// Lays out an empty small slab over `base` (`geo.slab_size` bytes).
///
/// # Safety
/// `base..base + slab_size` is memory the cache owns and nothing else uses,
/// aligned to `slab_size`.
pub(crate) unsafe fn build_small(geo: &Geometry, base: usize) -> NonNull<SlabHeader> {
    let Layout::Small { bitmap_words } = geo.layout else {
        unreachable!()
    };
    let at = base + geo.slab_size - core::mem::size_of::<SlabHeader>();
    // SAFETY: the header fits at the end of the slab (geometry), aligned
    // since slab_size and the header size are multiples of 8.
    let slab =
        unsafe { SlabHeader::init(NonNull::new_unchecked(at as *mut u8), base, geo.per_slab) };
    // SAFETY: the bitmap sits right below the header, inside the slab.
    unsafe { raw::bitmap(slab, bitmap_words) }.fill(0);
    let mut next = NONE;
    for i in (0..geo.per_slab as usize).rev() {
        let obj = base + i * geo.size;
        // SAFETY: `obj` is an object of this unused slab.
        unsafe { raw::write_free_link(obj, next) };
        next = obj;
    }
    // SAFETY: the header was just written.
    unsafe { (*slab.as_ptr()).free_obj = next };
    slab
}

/// Lays out an empty bufctl slab: `header` (a `kmem_slab` object) for the
/// buffer at `base`, with one bufctl per object, written into the objects
/// `bufctls` yields.
///
/// # Safety
/// `header` and every address `bufctls` yields are unused memory for a
/// `SlabHeader` / `Bufctl`, aligned, owned by the cache.
pub(crate) unsafe fn build_bufctl(
    geo: &Geometry,
    base: usize,
    header: NonNull<u8>,
    mut bufctls: impl FnMut() -> NonNull<u8>,
) -> NonNull<SlabHeader> {
    // SAFETY: the caller's guarantee.
    let slab = unsafe { SlabHeader::init(header, base, geo.per_slab) };
    let mut head: *mut Bufctl = ptr::null_mut();
    for i in (0..geo.per_slab as usize).rev() {
        let bc = bufctls().cast::<Bufctl>();
        // SAFETY: the caller's guarantee.
        unsafe {
            bc.as_ptr().write(Bufctl {
                node: HashNode {
                    key: base + i * geo.size,
                    next: ptr::null_mut(),
                },
                next_free: head,
                slab: slab.as_ptr(),
                state: BufState::Free,
            })
        };
        head = bc.as_ptr();
    }
    // SAFETY: the header was just written.
    unsafe { (*slab.as_ptr()).free_bufctl = head };
    slab
}

/// The bufctls of an unlinked bufctl slab, for freeing.
///
/// # Safety
/// `slab` was unlinked by `pop_empty` and its bufctls are still live.
pub(crate) unsafe fn bufctls_of(slab: NonNull<SlabHeader>) -> impl Iterator<Item = NonNull<u8>> {
    // SAFETY: the caller's guarantee.
    let mut at = unsafe { (*slab.as_ptr()).free_bufctl };
    core::iter::from_fn(move || {
        let bc = NonNull::new(at)?;
        // SAFETY: a live bufctl; read before the caller frees it.
        at = unsafe { (*bc.as_ptr()).next_free };
        Some(bc.cast())
    })
}

/// The base of a slab's buffer.
///
/// # Safety
/// `slab` is a live header.
pub(crate) unsafe fn base_of(slab: NonNull<SlabHeader>) -> usize {
    // SAFETY: the caller's guarantee.
    unsafe { (*slab.as_ptr()).base }
}
