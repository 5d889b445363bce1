//! Building arenas: [`ArenaBuilder`], the self-sufficient base arena, and
//! the accessors for what an arena was built with.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::Mutex;

use crate::arena::Arena;
use crate::segments::Segments;
use crate::{CreateError, QuantumCaches, Source};
use kmem_btag::CHUNK_BYTES;

/// A name of at most 32 bytes, stored inline (longer names are cut at a
/// character boundary). Arenas use it, and so do the layers above them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    bytes: [u8; 32],
    len: u8,
}

impl Name {
    /// Stores the first 32 bytes of `s`.
    pub fn new(s: &str) -> Self {
        let mut len = s.len().min(32);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; 32];
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// The stored name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

/// Builds an [`Arena`]; see [`Arena::builder`].
#[must_use]
pub struct ArenaBuilder<'a> {
    name: Name,
    quantum: usize,
    span: Option<(usize, usize)>,
    source: Option<&'a dyn Source>,
    tags_from: Option<&'a Arena<'a>>,
    import_scale: u32,
    qcaches: Option<&'a dyn QuantumCaches>,
}

impl<'a> ArenaBuilder<'a> {
    /// Allocation granularity (default 1). Need not be a power of two.
    pub fn quantum(mut self, quantum: usize) -> Self {
        self.quantum = quantum;
        self
    }

    /// An initial span `[base, base + size)` (not with a source).
    pub fn span(mut self, base: usize, size: usize) -> Self {
        self.span = Some((base, size));
        self
    }

    /// Import spans from `source` on demand; return each when wholly free.
    pub fn source(mut self, source: &'a dyn Source) -> Self {
        self.source = Some(source);
        self
    }

    /// Take boundary-tag pages and hash tables from `arena`, a memory arena
    /// (typically the base arena) whose quantum is a multiple of 8 dividing
    /// 4096. Without it, tag memory must be donated with
    /// [`Arena::add_tag_memory`].
    pub fn tags_from(mut self, arena: &'a Arena<'a>) -> Self {
        self.tags_from = Some(arena);
        self
    }

    /// Import `max(size, size << scale)` units at a time (default 0), falling
    /// back to `size` when the source cannot supply the scaled amount.
    pub fn import_scale(mut self, scale: u32) -> Self {
        self.import_scale = scale;
        self
    }

    /// Serve `alloc`/`free` of sizes up to `qcaches.max()` from these
    /// quantum caches (built for this arena's quantum, attached to no other
    /// arena; `kmem_slab::Caches::qcaches` makes them). `xalloc`/`xfree`
    /// bypass them; [`destroy`](Arena::destroy) destroys them first.
    pub fn qcaches(mut self, qcaches: &'a dyn QuantumCaches) -> Self {
        self.qcaches = Some(qcaches);
        self
    }

    /// Creates the arena.
    pub fn build(self) -> Result<Arena<'a>, CreateError> {
        if self.quantum == 0 {
            return Err(CreateError::BadQuantum);
        }
        if self.span.is_some() && self.source.is_some() {
            return Err(CreateError::SpanWithSource);
        }
        if let Some(t) = self.tags_from {
            if !t.memory {
                return Err(CreateError::TagsNotMemory);
            }
            if t.quantum % 8 != 0 || !CHUNK_BYTES.is_multiple_of(t.quantum) {
                return Err(CreateError::TagsQuantum);
            }
        }
        if let Some(q) = self.qcaches {
            if q.quantum() != self.quantum {
                return Err(CreateError::QcacheQuantum);
            }
        }
        // Read once: the arena divides by it on every import.
        let import_quantum = self.source.map_or(1, |s| s.import_quantum());
        if import_quantum == 0 {
            return Err(CreateError::SourceQuantum);
        }
        let mut arena = Arena::empty(self.name, self.quantum);
        arena.import_scale = self.import_scale;
        arena.import_quantum = import_quantum;
        arena.source = self.source;
        arena.tags_from = self.tags_from;
        arena.memory = self.source.is_some_and(|s| s.is_memory());
        if let Some((base, size)) = self.span {
            arena.add(base, size).map_err(CreateError::Span)?;
        }
        if let Some(q) = self.qcaches {
            if q.is_memory() != arena.memory {
                return Err(CreateError::QcacheMemory);
            }
            if !q.attach() {
                return Err(CreateError::QcachesInUse);
            }
            arena.qcache_max = q.max();
            arena.qcaches = Some(q);
        }
        if let Some(src) = self.source {
            // SAFETY: this arena's one registration; `destroy` undoes it
            // after giving every span back.
            unsafe { src.add_importer() };
        }
        if let Some(m) = self.tags_from {
            // SAFETY: as above, for the tag pages and hash tables.
            unsafe { m.add_importer() };
        }
        Ok(arena)
    }
}

impl<'a> Arena<'a> {
    /// An arena with no span, source, tag pages or quantum caches, no
    /// limit and no waiter: what [`ArenaBuilder::build`] and
    /// [`new_base`](Self::new_base) start from.
    fn empty(name: Name, quantum: usize) -> Self {
        Arena {
            name,
            quantum,
            import_scale: 0,
            import_quantum: 1,
            source: None,
            tags_from: None,
            base: false,
            memory: false,
            qcache_max: 0,
            qcaches: None,
            importers: AtomicUsize::new(0),
            waiter: Mutex::new(None),
            waiting: AtomicUsize::new(0),
            limit: AtomicUsize::new(usize::MAX),
            freed: core::sync::atomic::AtomicU64::new(0),
            reclaimers: Mutex::new([(None, 0); crate::MAX_RECLAIMERS]),
            inner: Mutex::new(Segments::new()),
        }
    }

    /// Starts building an arena named `name` (truncated to 32 bytes).
    pub fn builder(name: &str) -> ArenaBuilder<'a> {
        ArenaBuilder {
            name: Name::new(name),
            quantum: 1,
            span: None,
            source: None,
            tags_from: None,
            import_scale: 0,
            qcaches: None,
        }
    }

    /// Creates a self-sufficient base arena over the memory
    /// `[base, base + size)`: it carves its own boundary-tag pages and hash
    /// tables out of that memory. `quantum` must be a multiple of 8.
    ///
    /// # Safety
    /// - `[base, base + size)` is valid for reads and writes, and nothing
    ///   else accesses it except through allocations this arena hands out,
    ///   for as long as the arena exists.
    pub unsafe fn new_base(
        name: &str,
        base: usize,
        size: usize,
        quantum: usize,
    ) -> Result<Arena<'static>, CreateError> {
        if quantum == 0 || !quantum.is_multiple_of(8) {
            return Err(CreateError::BadQuantum);
        }
        let mut arena = Arena::empty(Name::new(name), quantum);
        arena.base = true;
        arena.memory = true;
        // SAFETY: forwarded caller obligation.
        unsafe { arena.add_memory(base, size) }.map_err(CreateError::Span)?;
        Ok(arena)
    }

    /// The arena's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The allocation granularity.
    pub fn quantum(&self) -> usize {
        self.quantum
    }

    /// True for a self-sufficient base arena.
    pub fn is_base(&self) -> bool {
        self.base
    }

    /// True when the arena's resources are writable memory.
    pub fn is_memory(&self) -> bool {
        self.memory
    }

    /// The source spans are imported from, if any.
    pub fn source(&self) -> Option<&'a dyn Source> {
        self.source
    }

    /// The largest size the quantum caches serve (0 without them).
    pub fn qcache_max(&self) -> usize {
        self.qcache_max
    }

    /// The quantum caches, if the arena has them.
    pub fn qcaches(&self) -> Option<&'a dyn QuantumCaches> {
        self.qcaches
    }

    /// Arenas importing spans or tag memory from this arena, and object
    /// caches built on it, now (each counted once per role).
    pub fn importers(&self) -> usize {
        self.importers.load(Ordering::Relaxed)
    }

    /// How many arenas this one imports through (0 for an arena without a
    /// source): the indentation of its row in a report.
    pub fn depth(&self) -> usize {
        let mut depth = 0;
        let mut src = self.source;
        while let Some(s) = src {
            depth += 1;
            src = s.as_arena().and_then(Arena::source);
        }
        depth
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}
