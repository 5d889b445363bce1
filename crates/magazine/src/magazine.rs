//! Magazines: stacks of rounds (object addresses) of one of a few
//! capacities, living in memory a [`MagazineSource`] supplies, owned
//! through [`MagBox`].
//!
//! This is the crate's unsafe module for magazine memory: a `MagBox` is the
//! only pointer to its magazine, so `Deref`/`DerefMut` to its header are
//! sound the way they are for `Box`, and its rounds, past the header, are
//! reached through the box's own pointer.

use core::mem::size_of;
use core::ptr::NonNull;

/// Rounds the largest magazine holds (Akaros' `KMC_MAG_MAX_SZ`).
pub const MAGAZINE_ROUNDS: usize = rounds_of(MAGAZINE_SIZES[MAGAZINE_SIZES.len() - 1]);

/// The bytes of each magazine size, smallest first (illumos' magazine
/// types): a magazine holds [`rounds_of`] its size, so that one sized for
/// the rounds it is meant to hold wastes nothing. 64 bytes at least, so
/// that two CPUs' magazines never share a cache line.
pub const MAGAZINE_SIZES: [usize; 4] = [64, 128, 256, 512];

/// Alignment the memory of every magazine needs: a cache line.
pub const MAGAZINE_ALIGN: usize = 64;

/// Bytes before the rounds: the list link (with the magazine's size in
/// its low bits), the length and the fill limit.
const HEADER: usize = size_of::<Magazine>();

const _: () = assert!(HEADER == 16);

/// Rounds a magazine of `bytes` bytes (one of [`MAGAZINE_SIZES`]) holds.
pub const fn rounds_of(bytes: usize) -> usize {
    (bytes - HEADER) / size_of::<usize>()
}

/// The smallest magazine size whose magazines hold `rounds` rounds (the
/// largest for more than [`MAGAZINE_ROUNDS`]).
pub fn size_for(rounds: usize) -> usize {
    MAGAZINE_SIZES
        .into_iter()
        .find(|&bytes| rounds_of(bytes) >= rounds)
        .unwrap_or(MAGAZINE_SIZES[MAGAZINE_SIZES.len() - 1])
}

/// Supplies the memory magazines live in (the slab layer's magazine cache).
///
/// The magazine layer calls it while the caller is pinned to a slot, so it
/// must not allocate from a magazine layer pinned on the same platform slot
/// through a non-reentrant [`Cpu`](crate::Cpu).
///
/// # Safety
/// The magazine layer writes a whole magazine where
/// [`alloc_magazine`](Self::alloc_magazine) points, so implementors promise
/// that every pointer `alloc_magazine(bytes)` returns is valid for reads
/// and writes of `bytes` bytes, aligned to [`MAGAZINE_ALIGN`], and used by
/// nothing else until it is handed back to
/// [`free_magazine`](Self::free_magazine).
///
/// Implementing it without `unsafe` does not compile: a safe implementation
/// could point the layer at any address.
///
/// ```compile_fail,E0200
/// use core::ptr::NonNull;
/// use kmem_magazine::MagazineSource;
///
/// struct Bogus;
/// impl MagazineSource for Bogus {
///     fn alloc_magazine(&self, _bytes: usize) -> Option<NonNull<u8>> {
///         NonNull::new(0x1000 as *mut u8) // the layer would write a magazine here
///     }
///     unsafe fn free_magazine(&self, _: NonNull<u8>, _bytes: usize) {}
/// }
/// ```
pub unsafe trait MagazineSource {
    /// `bytes` bytes (one of [`MAGAZINE_SIZES`]) aligned to
    /// `MAGAZINE_ALIGN`, or `None`. Must not block: it is called on the
    /// free path.
    fn alloc_magazine(&self, bytes: usize) -> Option<NonNull<u8>>;

    /// Takes back memory that [`alloc_magazine`](Self::alloc_magazine)
    /// supplied for `bytes` bytes.
    ///
    /// # Safety
    /// `mem` came from this source's `alloc_magazine(bytes)` and is no
    /// longer used.
    unsafe fn free_magazine(&self, mem: NonNull<u8>, bytes: usize);
}

/// A magazine's header; its rounds follow it in the magazine's memory.
#[repr(C)]
pub(crate) struct Magazine {
    /// The next magazine on its list (null: none), owned as a `MagBox`,
    /// with this magazine's size (its index in [`MAGAZINE_SIZES`]) in the
    /// low bits, which magazines' alignment leaves free.
    link: *mut Magazine,
    len: u32,
    /// Rounds a free may fill it to: the fill target of the CPU that
    /// holds it, at most its capacity.
    limit: u32,
}

/// The bits of [`Magazine::link`] that hold the magazine's size.
const SIZE_BITS: usize = MAGAZINE_ALIGN - 1;

const _: () = assert!(MAGAZINE_SIZES.len() <= MAGAZINE_ALIGN);

impl Magazine {
    /// Index of its size in [`MAGAZINE_SIZES`].
    fn size_index(&self) -> usize {
        self.link.addr() & SIZE_BITS
    }

    /// Takes the next magazine off the link.
    pub(crate) fn take_next(&mut self) -> Option<MagBox> {
        let next = self.link.map_addr(|a| a & !SIZE_BITS);
        self.link = self.link.map_addr(|a| a & SIZE_BITS);
        // `link` holds a `MagBox`'s pointer, given up by `set_next`.
        NonNull::new(next).map(MagBox)
    }

    /// Links `next` after it (the link must be empty).
    pub(crate) fn set_next(&mut self, next: Option<MagBox>) {
        debug_assert!(self.link.addr() & !SIZE_BITS == 0);
        let size = self.size_index();
        // The box's pointer moves into the link (a `MagBox` has no drop).
        let ptr = next.map_or(core::ptr::null_mut(), |m| m.0.as_ptr());
        self.link = ptr.map_addr(|a| a | size);
    }
}

/// The owner of one magazine, like a `Box` without a heap.
pub(crate) struct MagBox(NonNull<Magazine>);

// SAFETY: a MagBox owns its magazine exclusively; the magazine holds plain
// integers and other MagBoxes.
unsafe impl Send for MagBox {}

impl MagBox {
    /// Initializes an empty magazine of `bytes` bytes (one of
    /// [`MAGAZINE_SIZES`]) in `mem`, to be filled to `target` rounds at
    /// most.
    ///
    /// # Safety
    /// `mem` is valid for writes of `bytes` bytes, aligned to
    /// `MAGAZINE_ALIGN`, and used by nothing else until
    /// [`into_raw`](Self::into_raw).
    pub(crate) unsafe fn init(mem: NonNull<u8>, bytes: usize, target: usize) -> Self {
        let size = MAGAZINE_SIZES
            .iter()
            .position(|&b| b == bytes)
            .expect("kmem-magazine: not a magazine size");
        let cap = rounds_of(MAGAZINE_SIZES[size]);
        let mag = mem.cast::<Magazine>();
        // SAFETY: caller guarantees a valid, aligned, unshared destination
        // of `bytes >= HEADER` bytes.
        unsafe {
            mag.as_ptr().write(Magazine {
                link: core::ptr::null_mut::<Magazine>().map_addr(|_| size),
                len: 0,
                limit: target.clamp(1, cap) as u32,
            })
        };
        Self(mag)
    }

    /// Gives the memory back, with its size; the magazine must be empty.
    pub(crate) fn into_raw(self) -> (NonNull<u8>, usize) {
        debug_assert!(self.is_empty() && self.link.addr() & !SIZE_BITS == 0);
        let bytes = self.bytes();
        (self.0.cast(), bytes)
    }

    /// Bytes of the magazine's memory.
    pub(crate) fn bytes(&self) -> usize {
        MAGAZINE_SIZES[self.size_index()]
    }

    /// Rounds loaded.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no round is loaded.
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rounds it holds at most.
    pub(crate) fn cap(&self) -> usize {
        rounds_of(self.bytes())
    }

    /// Rounds a free may still add before the fill limit.
    #[inline(always)]
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.len) as usize
    }

    /// True when a free may add a round.
    #[inline(always)]
    pub(crate) fn has_room(&self) -> bool {
        self.len < self.limit
    }

    /// Sets the fill limit to `target` rounds (at most the capacity; at
    /// least one).
    pub(crate) fn set_limit(&mut self, target: usize) {
        self.limit = target.clamp(1, self.cap()) as u32;
    }

    /// The round slot `i`: the box's own pointer, past the header (whose
    /// references cover the header only).
    ///
    /// # Safety
    /// `i` is below the capacity.
    #[inline(always)]
    unsafe fn slot(mag: *mut Magazine, i: u32) -> *mut usize {
        // SAFETY: the magazine's memory is the header and `cap` words
        // (`init`), and `i < cap`.
        unsafe { mag.cast::<u8>().add(HEADER).cast::<usize>().add(i as usize) }
    }

    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<usize> {
        // All through the box's pointer, read once: `&mut self` keeps it
        // from changing under the accesses.
        let mag = self.0.as_ptr();
        // SAFETY: a valid magazine this box owns (`init`); rounds `0..len`
        // were written by `push`, below the capacity.
        unsafe {
            let len = (*mag).len.checked_sub(1)?;
            (*mag).len = len;
            Some(Self::slot(mag, len).read())
        }
    }

    /// Pushes a round without a capacity check (the free fast path has
    /// already asked [`has_room`](Self::has_room)).
    ///
    /// # Safety
    /// `self.len() < self.cap()`: true whenever `has_room` is, since the
    /// limit is at most the capacity.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, obj: usize) {
        debug_assert!(self.len() < self.cap());
        let mag = self.0.as_ptr();
        // SAFETY: a valid magazine this box owns; `len < cap` (the caller's
        // obligation) makes slot `len` a round slot of its memory.
        unsafe {
            let len = (*mag).len;
            Self::slot(mag, len).write(obj);
            (*mag).len = len + 1;
        }
    }
}

impl core::ops::Deref for MagBox {
    type Target = Magazine;
    #[inline(always)]
    fn deref(&self) -> &Magazine {
        // SAFETY: `init` made a valid header and this box is its only
        // pointer, so no `&mut` to it exists elsewhere.
        unsafe { self.0.as_ref() }
    }
}

impl core::ops::DerefMut for MagBox {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Magazine {
        // SAFETY: as in `deref`; `&mut self` makes this access unique.
        unsafe { self.0.as_mut() }
    }
}

/// A singly linked stack of magazines, threaded through their `next` field.
#[derive(Default)]
pub(crate) struct MagList {
    head: Option<MagBox>,
    len: usize,
}

impl MagList {
    pub(crate) const fn new() -> Self {
        Self { head: None, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, mut mag: MagBox) {
        mag.set_next(self.head.take());
        self.head = Some(mag);
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<MagBox> {
        let mut mag = self.head.take()?;
        self.head = mag.take_next();
        self.len -= 1;
        Some(mag)
    }

    /// The magazine on top, left on the list.
    pub(crate) fn head_mut(&mut self) -> Option<&mut MagBox> {
        self.head.as_mut()
    }

    /// Moves every magazine out, leaving this list empty.
    pub(crate) fn take(&mut self) -> MagList {
        core::mem::take(self)
    }
}

/// Starting fill target by object size, after illumos' magazine types:
/// larger objects start with fewer rounds so idle magazines hold less
/// memory. Each fills one magazine size ([`MAGAZINE_SIZES`]): 14 rounds a
/// 128-byte magazine, 6 and fewer a 64-byte one.
pub fn start_size(obj_size: usize) -> usize {
    match obj_size {
        0..=64 => 14,
        65..=256 => 6,
        257..=3200 => 3,
        _ => 1,
    }
}
