//! Building a slab over a fresh buffer: a small slab's objects, bitmap
//! and header in the buffer itself; a bufctl slab's header and bufctls in
//! objects of the bootstrap caches, taken beforehand into a [`Stock`].
//! Each layout is checked against the buffer before anything is written.

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use crate::geometry::{Geometry, Layout};

use super::debug::{DebugLayout, Trailer};
use super::memory::{BufferShape, SlabBuffer};
use super::slab::{
    read_link, site_bytes, write_link, BufState, Bufctl, HashNode, SlabHeader, NONE,
};
use super::Taken;

/// A slab built over a fresh buffer and in no set yet: it owns its buffer,
/// header and bufctls until [`SlabSet::insert`](super::SlabSet::insert)
/// takes it (dropped, they leak).
pub(crate) struct NewSlab {
    pub(super) header: NonNull<SlabHeader>,
    pub(super) shape: BufferShape,
}

impl NewSlab {
    /// First byte of the slab's buffer.
    #[cfg(kmem_asan)]
    pub(crate) fn base(&self) -> usize {
        // SAFETY: a built header, owned by this token alone.
        unsafe { (*self.header.as_ptr()).base }
    }

    /// The offset of its first object from its base (0 for bufctl slabs).
    #[cfg(kmem_asan)]
    pub(crate) fn colour(&self) -> usize {
        // SAFETY: as in `base`.
        unsafe { (*self.header.as_ptr()).colour() }
    }
}

/// Lays out an empty small (headed) slab over `buf`: objects from `colour`
/// bytes past its base, with `site-stats` their site slots (clear), the
/// allocated bitmap (clear) and the header at its end, owned by the cache
/// with key `owner`. With `tag` (a plain cache's key), every object's
/// first word gets its free mark (`guard.rs`).
///
/// # Panics
/// If the geometry is not a small one that fits `buf` with the objects
/// `colour` bytes in, `colour` is not a multiple of the alignment (and of
/// 8) or past 16 bits, `buf` is not memory or not aligned to its
/// power-of-two size.
pub(crate) fn build_small(
    buf: SlabBuffer,
    geo: &Geometry,
    colour: usize,
    owner: usize,
    tag: Option<usize>,
) -> NewSlab {
    let Layout::Small { bitmap_words } = geo.layout else {
        panic!("kmem-slab: a small slab for a bufctl cache");
    };
    let (base, size, n) = (buf.base(), geo.size, geo.per_slab as usize);
    let slab_size = buf.shape().size();
    let room = n.checked_mul(size).and_then(|b| {
        b.checked_add(colour + site_bytes(n) + bitmap_words * 8 + size_of::<SlabHeader>())
    });
    assert!(
        buf.is_memory()
            && base.is_multiple_of(8)
            && slab_size.is_power_of_two()
            && base.is_multiple_of(slab_size)
            && size.is_multiple_of(8)
            && size >= size_of::<usize>()
            && colour.is_multiple_of(geo.align.max(8))
            && colour <= usize::from(u16::MAX)
            && bitmap_words == n.div_ceil(64)
            && room.is_some_and(|r| r <= slab_size),
        "kmem-slab: small slab layout does not fit its buffer"
    );
    let obj_size = u32::try_from(size).expect("kmem-slab: small object size");
    let first = base + colour;
    let header = (base + slab_size - size_of::<SlabHeader>()) as *mut SlabHeader;
    // SAFETY: the buffer's last bytes (the layout fits: checked), aligned
    // to 8 (base, slab size and header size are multiples of 8), in memory
    // this function owns (`SlabBuffer`, memory: checked).
    unsafe {
        header.write(SlabHeader::empty(
            base,
            geo.per_slab,
            obj_size,
            colour as u16,
        ))
    };
    let mut header = NonNull::new(header).expect("kmem-slab: slab header at address 0");
    // SAFETY: just written; nothing else refers to it.
    let h = unsafe { header.as_mut() };
    h.bitmap_mut().fill(0);
    #[cfg(feature = "site-stats")]
    {
        let sites = base + slab_size - size_of::<SlabHeader>() - bitmap_words * 8 - site_bytes(n);
        let none = crate::sites::SiteId::NONE.slot_value();
        for i in 0..n {
            // slot `i` of the site slots, which lie below the
            // bitmap and above the objects (the layout fits: checked),
            // aligned to 4 (8, from the header); the buffer is ours and
            // unused.
            // SAFETY: as just said.
            unsafe { (sites as *mut u32).add(i).write(none) };
        }
    }
    if let Some(key) = tag {
        for i in 0..n {
            let obj = first + i * size;
            // Object `i` lies in the buffer below the site slots and
            // bitmap (checked, colour included), a word at least and
            // aligned to 8 (base, colour and size are multiples of 8); the
            // buffer is ours and unused.
            // SAFETY: as just said.
            unsafe { write_link(obj, super::guard::mark(key, obj)) };
        }
    }
    // The slab is not in a set yet: nothing reads the key before the set
    // publishes the slab (under the cache lock).
    h.owner = core::sync::atomic::AtomicUsize::new(owner);
    NewSlab {
        header,
        shape: buf.shape(),
    }
}

/// Objects for a slab's bufctls, taken before the slab is built (so that a
/// shortage undoes cleanly) and chained through their first word meanwhile.
pub(crate) struct Stock {
    head: usize,
    len: usize,
    bytes: usize,
}

impl Stock {
    pub(crate) const fn new() -> Self {
        Self {
            head: NONE,
            len: 0,
            bytes: 0,
        }
    }

    pub(crate) const fn len(&self) -> usize {
        self.len
    }

    /// Adds `obj` (an object of the bufctl cache).
    ///
    /// # Panics
    /// If `obj` is not memory, a word at least and aligned, of the same
    /// size as the others.
    pub(crate) fn push(&mut self, obj: Taken) {
        assert!(
            obj.bytes >= size_of::<usize>()
                && obj.addr.is_multiple_of(align_of::<usize>())
                && (self.len == 0 || obj.bytes == self.bytes),
            "kmem-slab: bufctl object too small"
        );
        // SAFETY: the holder of a `Taken` owns its `bytes` of memory, a word
        // at least and aligned (checked): the stock from now on.
        unsafe { write_link(obj.addr, self.head) };
        self.head = obj.addr;
        self.bytes = obj.bytes;
        self.len += 1;
    }

    /// Takes the object added last.
    pub(crate) fn pop(&mut self) -> Option<Taken> {
        if self.len == 0 {
            return None;
        }
        let addr = self.head;
        // SAFETY: `addr` heads the stock: an object `push` linked, owned by
        // the stock, its first word the next one.
        self.head = unsafe { read_link(addr) };
        self.len -= 1;
        Some(Taken {
            addr,
            bytes: self.bytes,
        })
    }
}

/// Lays out an empty bufctl slab for `buf`: the header in `header` (a
/// `kmem_slab` object), one bufctl per object in the objects of `bufctls`,
/// all free. With `debug`, every buffer gets its poison and a clear
/// trailer.
///
/// # Panics
/// If the geometry is not a bufctl one that fits `buf`, `bufctls` does not
/// hold one object per buffer, an object is too small for its struct, or
/// `debug` does not fit a buffer of memory.
pub(crate) fn build_bufctl(
    buf: SlabBuffer,
    geo: &Geometry,
    header: Taken,
    mut bufctls: Stock,
    debug: Option<DebugLayout>,
) -> NewSlab {
    let (base, size, n) = (buf.base(), geo.size, geo.per_slab as usize);
    assert!(
        geo.layout == Layout::Bufctl
            && bufctls.len() == n
            && n.checked_mul(size).is_some_and(|b| b <= buf.shape().size())
            && debug.is_none_or(|d| {
                buf.is_memory()
                    && d.bytes() <= size
                    && base.is_multiple_of(8)
                    && size.is_multiple_of(8)
                    && d.obj.is_multiple_of(8)
            }),
        "kmem-slab: bufctl slab layout does not fit its buffer"
    );
    if let Some(d) = debug {
        for i in 0..n {
            let addr = base + i * size;
            // SAFETY: buffer `i` lies in `buf` (checked), memory this
            // function owns, aligned to 8 and `d.bytes()` long at least
            // (checked); nothing uses it yet.
            unsafe {
                if d.poison {
                    d.poison(addr);
                }
                if d.trailer {
                    d.write_trailer(addr, &Trailer::default());
                }
            }
        }
    }
    let header = header.place(SlabHeader::empty(base, geo.per_slab, 0, 0));
    let mut head: *mut Bufctl = ptr::null_mut();
    for i in (0..n).rev() {
        let bc = bufctls.pop().expect("counted above").place(Bufctl {
            node: HashNode {
                key: base + i * size,
                next: ptr::null_mut(),
            },
            next_free: head,
            slab: header.as_ptr(),
            state: BufState::Free,
            #[cfg(feature = "site-stats")]
            site: core::sync::atomic::AtomicU32::new(crate::sites::SiteId::NONE.slot_value()),
        });
        head = bc.as_ptr();
    }
    // SAFETY: placed above in memory this function owns; nothing else
    // refers to it.
    unsafe { (*header.as_ptr()).free_bufctl = head };
    NewSlab {
        header,
        shape: buf.shape(),
    }
}
