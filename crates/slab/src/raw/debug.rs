//! Debug mode's memory: the poison pattern in free objects, the trailer
//! after each object (guard word and audit record), and the table of call
//! sites the audit records point into.
//!
//! Everything read back from object memory is plain integers: a trailer an
//! overrun wrote over decodes to wrong sites (or "unknown"), never to a
//! wild reference. Call sites are kept as indexes into [`SITES`], a
//! process-wide table of `&'static Location`s, checked when decoded.

use core::mem::size_of;
use core::panic::Location;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// What a free object of a `POISON` cache is filled with.
pub const POISON: u64 = 0xdead_beef_dead_beef;

/// The guard word after each object of a `REDZONE` cache.
pub(crate) const RED: u64 = 0xfeed_face_cafe_d00d;

/// Call sites seen by debug mode and per-site accounting, by index (slot 0
/// is "none"; per-site accounting counts its unknown site there). A site
/// is added once and never removed.
pub(crate) const SITE_SLOTS: usize = 4096;

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "only the initializer of SITES"
)]
const NO_SITE: AtomicPtr<Location<'static>> = AtomicPtr::new(ptr::null_mut());

static SITES: [AtomicPtr<Location<'static>>; SITE_SLOTS] = [NO_SITE; SITE_SLOTS];

// Probing wraps with a mask.
const _: () = assert!(SITE_SLOTS.is_power_of_two());

/// The index of `loc` in the site table, added if new; `None` when the
/// table is full.
pub(crate) fn site_index(loc: &'static Location<'static>) -> Option<u32> {
    let want = ptr::from_ref(loc).cast_mut();
    let start = (want as usize >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52;
    for i in 0..SITE_SLOTS {
        let slot = (start + i) % SITE_SLOTS;
        if slot == 0 {
            continue;
        }
        let cell = &SITES[slot];
        let now = cell.load(Ordering::Acquire);
        if now == want {
            return u32::try_from(slot).ok();
        }
        if now.is_null() {
            match cell.compare_exchange(now, want, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return u32::try_from(slot).ok(),
                Err(got) if got == want => return u32::try_from(slot).ok(),
                Err(_) => {}
            }
        }
    }
    None
}

/// The site at `index`, if one was added there.
pub(crate) fn site_at(index: u64) -> Option<&'static Location<'static>> {
    let cell = SITES.get(usize::try_from(index).ok()?)?;
    let p = cell.load(Ordering::Acquire);
    // SAFETY: non-null entries are `&'static Location`s stored by
    // `site_index`, never removed.
    unsafe { p.as_ref() }
}

/// An audit record's view of one allocation or free, as integers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawSite {
    /// 0: no site; 1: `value` indexes the site table; 2: `value` is a code
    /// address.
    pub(crate) tag: u64,
    pub(crate) value: u64,
    /// With a code address: the next return addresses up the stack (0:
    /// none).
    pub(crate) more: [u64; 2],
    /// The CPU slot, plus one (0: unknown).
    pub(crate) slot: u64,
    /// When (the debug clock: a sequence number, or the platform's time).
    pub(crate) time: u64,
}

/// What follows each object of a cache with `REDZONE` or `AUDIT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub(crate) red: u64,
    pub(crate) alloc: RawSite,
    pub(crate) free: RawSite,
    /// The size the allocation asked for, when a facade said (0: not
    /// known); a free with another size is refused.
    pub(crate) req: u64,
}

/// Bytes of the trailer.
pub(crate) const TRAILER: usize = size_of::<Trailer>();

/// Where the debug parts live in a buffer: the object's `obj` bytes from
/// its start (poisoned while free), then the trailer at `obj`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DebugLayout {
    pub(crate) obj: usize,
    pub(crate) poison: bool,
    pub(crate) trailer: bool,
}

impl DebugLayout {
    /// Bytes the parts take in each buffer.
    pub(crate) fn bytes(&self) -> usize {
        self.obj + if self.trailer { TRAILER } else { 0 }
    }

    /// Fills the object at `addr` with [`POISON`].
    ///
    /// # Safety
    /// `addr` starts a buffer of at least [`bytes`](Self::bytes) bytes of
    /// memory, aligned to 8, that the cache owns and no user holds.
    pub(crate) unsafe fn poison(&self, addr: usize) {
        // AddressSanitizer builds keep free objects poisoned: open the
        // object for the pattern, then close it again.
        kmem_arena::asan::unpoison(addr, self.obj);
        for w in 0..self.obj / 8 {
            // SAFETY: the caller's guarantee; `w * 8 < obj`.
            unsafe { (addr as *mut u64).add(w).write(POISON) };
        }
        kmem_arena::asan::poison(addr, self.obj);
    }

    /// The offset of the first word of the object at `addr` that is not
    /// [`POISON`], if any.
    ///
    /// # Safety
    /// As for [`poison`](Self::poison).
    pub(crate) unsafe fn poison_broken(&self, addr: usize) -> Option<usize> {
        // As in `poison`: opened for the check only.
        kmem_arena::asan::unpoison(addr, self.obj);
        let broken = (0..self.obj / 8)
            // SAFETY: the caller's guarantee; `w * 8 < obj`.
            .find(|&w| unsafe { (addr as *const u64).add(w).read() } != POISON)
            .map(|w| w * 8);
        kmem_arena::asan::poison(addr, self.obj);
        broken
    }

    /// The trailer of the buffer at `addr`.
    ///
    /// # Safety
    /// `addr` starts a buffer of at least [`bytes`](Self::bytes) bytes of
    /// memory, aligned to 8, that the cache owns (a user may hold the
    /// object before the trailer).
    pub(crate) unsafe fn read_trailer(&self, addr: usize) -> Trailer {
        // The trailer is never the user's: AddressSanitizer builds keep it
        // poisoned but while the allocator reads or writes it.
        kmem_arena::asan::unpoison(addr + self.obj, TRAILER);
        // SAFETY: the caller's guarantee; `obj` is a multiple of 8 (memory
        // objects are), so the trailer is aligned.
        let t = unsafe { ((addr + self.obj) as *const Trailer).read() };
        kmem_arena::asan::poison(addr + self.obj, TRAILER);
        t
    }

    /// Writes the trailer of the buffer at `addr`.
    ///
    /// # Safety
    /// As for [`read_trailer`](Self::read_trailer).
    pub(crate) unsafe fn write_trailer(&self, addr: usize, t: &Trailer) {
        kmem_arena::asan::unpoison(addr + self.obj, TRAILER);
        // SAFETY: as in `read_trailer`.
        unsafe { ((addr + self.obj) as *mut Trailer).write(*t) };
        kmem_arena::asan::poison(addr + self.obj, TRAILER);
    }
}

/// One entry of a cache's transaction log.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogEntry {
    /// 1: allocation, 2: free, 3: refused free.
    pub(crate) op: u64,
    pub(crate) addr: u64,
    pub(crate) site: RawSite,
}

/// A cache's bounded transaction log: the last `cap` entries, in metadata
/// memory.
pub(crate) struct LogRing<'a> {
    mem: super::MetaMem<'a>,
    cap: usize,
    /// Entries written so far (the next goes to `next % cap`).
    next: u64,
}

// SAFETY: the ring owns its memory; moving it moves that ownership.
unsafe impl Send for LogRing<'_> {}

impl<'a> LogRing<'a> {
    /// Bytes of a ring of `cap` entries.
    pub(crate) const fn bytes(cap: usize) -> usize {
        cap * size_of::<LogEntry>()
    }

    /// A ring over `mem`, as many entries as fit.
    ///
    /// # Panics
    /// If `mem` is misaligned for entries or holds none.
    pub(crate) fn new(mem: super::MetaMem<'a>) -> Self {
        let cap = mem.len() / size_of::<LogEntry>();
        assert!(
            cap > 0 && mem.addr().is_multiple_of(core::mem::align_of::<LogEntry>()),
            "kmem-slab: transaction log memory"
        );
        Self { mem, cap, next: 0 }
    }

    fn slot(&self, i: u64) -> *mut LogEntry {
        let i = usize::try_from(i % self.cap as u64).unwrap_or(0);
        (self.mem.addr() as *mut LogEntry).wrapping_add(i)
    }

    /// Adds an entry, over the oldest when full.
    pub(crate) fn push(&mut self, e: LogEntry) {
        // SAFETY: slot `next % cap` lies in the ring's memory (`cap`
        // entries fit, aligned: checked in `new`), which it owns; `&mut`.
        unsafe { self.slot(self.next).write(e) };
        self.next += 1;
    }

    /// The entries, oldest first.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&LogEntry)) {
        let first = self.next.saturating_sub(self.cap as u64);
        for i in first..self.next {
            // SAFETY: written by `push` (every index below `next`, the last
            // `cap` of them still there); the borrow keeps it unchanged.
            f(unsafe { &*self.slot(i) });
        }
    }

    /// Ends the ring; its memory goes back.
    pub(crate) fn into_mem(self) -> super::MetaMem<'a> {
        self.mem
    }
}
