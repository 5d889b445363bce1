//! Where a sourced arena imports its spans from.

use core::sync::atomic::Ordering;

use crate::policy::Fit;
use crate::{AllocError, Arena, Policy, SpanFit};

/// A supplier of spans: another arena, or any pair of import/release functions.
///
/// An arena calls `import` and `release` without holding its own lock, so a
/// source may block or call into other arenas (never back into the importing
/// arena itself).
///
/// # Safety
/// An arena built on a source that says [`is_memory`](Self::is_memory)
/// writes into what it imports (boundary tags, slabs, and whatever its
/// users put there), so implementors promise:
/// - `is_memory` returns the same value on every call;
/// - if it returns true, every span that [`import`](Self::import) or
///   [`import_aligned`](Self::import_aligned) returns is valid for reads and
///   writes for its whole size and used by nothing else until it is passed
///   to [`release`](Self::release).
///
/// A source of integers (IDs, offsets) keeps `is_memory` false and has
/// nothing else to promise; [`FnSource`] is one, ready-made. A safe
/// implementation does not compile:
///
/// ```compile_fail,E0200
/// use kmem_arena::{AllocError, Source};
///
/// struct Liar;
/// impl Source for Liar {
///     fn import(&self, _size: usize) -> Result<usize, AllocError> {
///         Ok(0x10000) // not memory, yet it says so below
///     }
///     unsafe fn release(&self, _base: usize, _size: usize) {}
///     fn is_memory(&self) -> bool {
///         true
///     }
/// }
/// ```
///
/// Releasing is `unsafe` too: `release` gives memory away, so a safe call
/// could free what someone still uses.
///
/// ```compile_fail,E0133
/// use kmem_arena::{Arena, Source};
///
/// fn give_away(pages: &Arena<'_>, addr: usize) {
///     pages.release(addr, 4096); // would free a live segment
/// }
/// ```
pub unsafe trait Source: Sync {
    /// Supplies a span of exactly `size` units (a multiple of
    /// [`import_quantum`](Self::import_quantum)) and returns its base.
    fn import(&self, size: usize) -> Result<usize, AllocError>;
    /// Supplies a span of `size` units whose base is a multiple of `align`
    /// (a power of two). Called when the importer's quantum is not a multiple
    /// of [`import_quantum`](Self::import_quantum), so a plain import could be
    /// misaligned for it. The default ignores `align`; the importer then
    /// refuses a misaligned span with [`AllocError::BadImport`].
    fn import_aligned(&self, size: usize, align: usize) -> Result<usize, AllocError> {
        let _ = align;
        self.import(size)
    }
    /// Supplies a span of exactly `want.size` units whose base meets
    /// `want` (alignment, phase, window, no-cross boundary): what an
    /// importing arena asks for when its request has constraints, or when
    /// its quantum needs bases the source's plain imports do not give (an
    /// importer of quantum 3 from a source of quantum 1). The span it
    /// returns is itself a placement of the importer's request, so a chain
    /// of arenas passes the constraints down to where the range is.
    ///
    /// The default serves an alignment-only request through
    /// [`import_aligned`](Self::import_aligned) (a power of two) or
    /// [`import`](Self::import) (none), and refuses the rest with
    /// [`AllocError::Exhausted`]; the importer then imports a larger span
    /// and looks for a placement inside it. The importer checks every span
    /// against `want` and gives back one that misses it
    /// ([`AllocError::BadImport`]).
    fn import_fit(&self, want: &SpanFit) -> Result<usize, AllocError> {
        match want.alignment_only() {
            Some(1) => self.import(want.size),
            Some(align) if align.is_power_of_two() => self.import_aligned(want.size, align),
            _ => Err(AllocError::Exhausted),
        }
    }
    /// True when [`import_fit`](Self::import_fit) searches under all of
    /// its constraints, so that its [`AllocError::Exhausted`] means no
    /// fitting span is to be had (an arena: true). False, the default: the
    /// importer takes any refusal of `import_fit` as "cannot place" and
    /// imports a larger span instead.
    fn places_spans(&self) -> bool {
        false
    }
    /// Takes back a span that `import`, `import_aligned` or `import_fit`
    /// supplied, whole.
    ///
    /// # Safety
    /// `[base, base + size)` is a whole span this source supplied to the
    /// caller, not released since, and the caller uses none of it after
    /// this call (a memory source may give it to someone else, or unmap it).
    unsafe fn release(&self, base: usize, size: usize);
    /// Granularity of imports; the importer rounds its requests up to it.
    /// Read once, when an arena is built on the source (which refuses 0).
    fn import_quantum(&self) -> usize {
        1
    }
    /// True when the supplied values are addresses of writable memory that
    /// the importer may use as it likes while it holds them.
    fn is_memory(&self) -> bool {
        false
    }
    /// An importer (an arena built on this source, or an object cache)
    /// starts importing; the default ignores it.
    ///
    /// # Safety
    /// Called once per importer, by the importer, and matched by one
    /// [`remove_importer`](Self::remove_importer) when it is gone (an arena
    /// counts them to refuse `destroy` while importers may still hold spans).
    unsafe fn add_importer(&self) {}
    /// An importer is gone (destroyed); the default ignores it.
    ///
    /// # Safety
    /// Matches one earlier [`add_importer`](Self::add_importer) of an
    /// importer that holds no span of this source any more.
    unsafe fn remove_importer(&self) {}
    /// The arena behind this source, if it is one (for reports that follow
    /// the chain of sources).
    fn as_arena(&self) -> Option<&Arena<'_>> {
        None
    }
}

/// Spans come from the arena's segment path (never its quantum caches), so
/// `release` is an `xfree` whichever way a span was imported.
// SAFETY: an arena's memory-ness is fixed when it is built and comes from
// `new_base`'s contract or from its own source's (by induction); a span it
// hands out is an allocated segment, which nothing else is given until the
// importer releases it.
unsafe impl Source for Arena<'_> {
    fn import(&self, size: usize) -> Result<usize, AllocError> {
        self.alloc_segment(size, Policy::InstantFit)
    }

    fn import_aligned(&self, size: usize, align: usize) -> Result<usize, AllocError> {
        self.xalloc(size, &crate::Constraints::new().align(align))
    }

    /// An `xalloc` of the span under `want`, so the constraints travel on
    /// to this arena's own source if it has to import.
    fn import_fit(&self, want: &SpanFit) -> Result<usize, AllocError> {
        let fit = Fit::for_span(want, self.quantum())?;
        self.xalloc_fit(&fit, Policy::InstantFit)
    }

    fn places_spans(&self) -> bool {
        true
    }

    unsafe fn release(&self, base: usize, size: usize) {
        // A release of a span never imported is refused and changes
        // nothing; there is no one to tell.
        let _ = self.free_segment(base, size, false);
    }

    fn import_quantum(&self) -> usize {
        self.quantum()
    }

    fn is_memory(&self) -> bool {
        self.is_memory()
    }

    unsafe fn add_importer(&self) {
        self.importers.fetch_add(1, Ordering::Relaxed);
    }

    unsafe fn remove_importer(&self) {
        self.importers.fetch_sub(1, Ordering::Relaxed);
    }

    fn as_arena(&self) -> Option<&Arena<'_>> {
        Some(self)
    }
}

/// A [`Source`] made of two closures.
///
/// ```
/// use kmem_arena::{AllocError, Arena, FnSource, Policy};
/// use core::sync::atomic::{AtomicUsize, Ordering};
///
/// // Hands out fresh, never-reused ranges of IDs, 4096 at a time.
/// let next = AtomicUsize::new(1 << 20);
/// let source = FnSource::new(
///     |size| Ok(next.fetch_add(size, Ordering::Relaxed)),
///     |_base, _size| {},
/// ).with_quantum(4096);
/// let mut tag_pages = vec![0u64; 3 * 512];
/// let ids = Arena::builder("ids").quantum(1).source(&source).build().unwrap();
/// // SAFETY: the buffer outlives the arena and is used by nothing else.
/// unsafe { ids.add_tag_memory(tag_pages.as_mut_ptr().cast(), 3 * 4096) };
/// let id = ids.alloc(1, Policy::InstantFit).unwrap();
/// assert_eq!(id, 1 << 20);
/// ids.free(id, 1).unwrap();
/// # drop(ids);
/// ```
pub struct FnSource<I, R> {
    import: I,
    release: R,
    quantum: usize,
}

impl<I, R> FnSource<I, R>
where
    I: Fn(usize) -> Result<usize, AllocError> + Sync,
    R: Fn(usize, usize) + Sync,
{
    /// A source calling `import(size)` and `release(base, size)`.
    pub const fn new(import: I, release: R) -> Self {
        Self {
            import,
            release,
            quantum: 1,
        }
    }

    /// Sets the import granularity (default 1).
    pub const fn with_quantum(mut self, quantum: usize) -> Self {
        self.quantum = quantum;
        self
    }
}

// SAFETY: not a memory source (`is_memory` keeps its default, false).
unsafe impl<I, R> Source for FnSource<I, R>
where
    I: Fn(usize) -> Result<usize, AllocError> + Sync,
    R: Fn(usize, usize) + Sync,
{
    fn import(&self, size: usize) -> Result<usize, AllocError> {
        (self.import)(size)
    }

    unsafe fn release(&self, base: usize, size: usize) {
        (self.release)(base, size)
    }

    fn import_quantum(&self) -> usize {
        self.quantum.max(1)
    }
}
