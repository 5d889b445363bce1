//! Magazines: fixed-capacity stacks of rounds (object addresses) living in
//! memory a [`MagazineSource`] supplies, owned through [`MagBox`].
//!
//! This is the crate's unsafe module for magazine memory: a `MagBox` is the
//! only pointer to its magazine, so `Deref`/`DerefMut` on it are sound the
//! way they are for `Box`.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use arrayvec::ArrayVec;

/// Rounds a magazine holds at most (the seed's `KMC_MAG_MAX_SZ`).
pub const MAGAZINE_ROUNDS: usize = 62;
/// Bytes of memory one magazine needs from a [`MagazineSource`].
pub const MAGAZINE_SIZE: usize = size_of::<Magazine>();
/// Alignment the memory of a magazine needs.
pub const MAGAZINE_ALIGN: usize = align_of::<Magazine>();

const _: () = assert!(MAGAZINE_SIZE == 512);

/// Supplies the memory magazines live in (the slab layer's magazine cache).
///
/// The magazine layer calls it while the caller is pinned to a slot, so it
/// must not allocate from a magazine layer pinned on the same platform slot
/// through a non-reentrant [`Cpu`](crate::Cpu).
///
/// # Safety
/// The magazine layer writes a whole magazine where
/// [`alloc_magazine`](Self::alloc_magazine) points, so implementors promise
/// that every pointer it returns is valid for reads and writes of
/// [`MAGAZINE_SIZE`] bytes, aligned to [`MAGAZINE_ALIGN`], and used by
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
///     fn alloc_magazine(&self) -> Option<NonNull<u8>> {
///         NonNull::new(0x1000 as *mut u8) // the layer would write 512 bytes here
///     }
///     unsafe fn free_magazine(&self, _: NonNull<u8>) {}
/// }
/// ```
pub unsafe trait MagazineSource {
    /// `MAGAZINE_SIZE` bytes aligned to `MAGAZINE_ALIGN`, or `None`. Must not
    /// block: it is called on the free path.
    fn alloc_magazine(&self) -> Option<NonNull<u8>>;

    /// Takes back memory that [`alloc_magazine`](Self::alloc_magazine)
    /// supplied.
    ///
    /// # Safety
    /// `mem` came from this source's `alloc_magazine` and is no longer used.
    unsafe fn free_magazine(&self, mem: NonNull<u8>);
}

/// A stack of at most [`MAGAZINE_ROUNDS`] object addresses.
#[repr(C)]
pub struct Magazine {
    rounds: ArrayVec<usize, MAGAZINE_ROUNDS>,
    next: Option<MagBox>,
}

impl Magazine {
    /// Rounds loaded.
    #[inline]
    pub fn len(&self) -> usize {
        self.rounds.len()
    }

    /// True when no round is loaded.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<usize> {
        self.rounds.pop()
    }

    /// Pushes a round without a capacity check (the free fast path has
    /// already compared the length with the fill target).
    ///
    /// # Safety
    /// `self.len() < MAGAZINE_ROUNDS`. Callers check `len < magsize`; every
    /// fill target is at most [`MAGAZINE_ROUNDS`] (`start_size` gives at
    /// most 15, the depot clamps its target and grows it only below the
    /// maximum, and a CPU's target is one of those).
    #[inline]
    pub(crate) unsafe fn push(&mut self, obj: usize) {
        debug_assert!(self.rounds.len() < MAGAZINE_ROUNDS);
        // SAFETY: the caller's obligation.
        unsafe { self.rounds.push_unchecked(obj) };
    }
}

/// The owner of one magazine, like a `Box` without a heap.
pub(crate) struct MagBox(NonNull<Magazine>);

// SAFETY: a MagBox owns its magazine exclusively; the magazine holds plain
// integers and other MagBoxes.
unsafe impl Send for MagBox {}

impl MagBox {
    /// Initializes an empty magazine in `mem`.
    ///
    /// # Safety
    /// `mem` is valid for writes of `MAGAZINE_SIZE` bytes, aligned to
    /// `MAGAZINE_ALIGN`, and used by nothing else until
    /// [`into_raw`](Self::into_raw).
    pub(crate) unsafe fn init(mem: NonNull<u8>) -> Self {
        let mag = mem.cast::<Magazine>();
        // SAFETY: caller guarantees a valid, aligned, unshared destination.
        unsafe {
            mag.as_ptr().write(Magazine {
                rounds: ArrayVec::new(),
                next: None,
            })
        };
        Self(mag)
    }

    /// Gives the memory back; the magazine must be empty.
    pub(crate) fn into_raw(self) -> NonNull<u8> {
        debug_assert!(self.is_empty() && self.next.is_none());
        self.0.cast()
    }
}

impl core::ops::Deref for MagBox {
    type Target = Magazine;
    #[inline]
    fn deref(&self) -> &Magazine {
        // SAFETY: `init` made a valid magazine and this box is its only
        // pointer, so no `&mut` to it exists elsewhere.
        unsafe { self.0.as_ref() }
    }
}

impl core::ops::DerefMut for MagBox {
    #[inline]
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
        mag.next = self.head.take();
        self.head = Some(mag);
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<MagBox> {
        let mut mag = self.head.take()?;
        self.head = mag.next.take();
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
/// larger objects start with fewer rounds so idle magazines hold less memory.
pub fn start_size(obj_size: usize) -> usize {
    match obj_size {
        0..=64 => 15,
        65..=256 => 7,
        257..=3200 => 3,
        _ => 1,
    }
}
