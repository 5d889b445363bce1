//! `std` feature: the OS as a page source ([`OsPages`], `mmap`/`munmap`)
//! and [`KmallocGlobal`], a `#[global_allocator]` for ordinary programs
//! that boots the stack on its first allocation.
//!
//! Neither allocates through the global allocator (they call `mmap`
//! directly), so they can sit under it.

use core::cell::Cell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use kmem_arena::{AllocError as ArenaAllocError, Arena, Reclaim, Source};
use kmem_magazine::ThreadCpus;
use kmem_slab::{CacheFlags, Caller, DebugHooks, Report, PAGE_SIZE};

use crate::pagemap::OsPageMap;
use crate::reaper::UpkeepStats;
use crate::{boot_static, debug_flags, Config, Kmalloc};

/// Anonymous memory from the OS, `mmap`ed on import and `munmap`ed on
/// release, so the page arena gives memory back to the OS when a span is
/// wholly free.
pub struct OsPages {
    mapped: AtomicUsize,
    spans: AtomicUsize,
    imports: AtomicU64,
    releases: AtomicU64,
    /// `munmap` calls that failed (the kernel can refuse to split a mapping
    /// at `vm.max_map_count`): the span stays mapped, leaked.
    unmap_failures: AtomicU64,
}

impl Default for OsPages {
    fn default() -> Self {
        Self::new()
    }
}

impl OsPages {
    /// Nothing mapped yet.
    pub const fn new() -> Self {
        Self {
            mapped: AtomicUsize::new(0),
            spans: AtomicUsize::new(0),
            imports: AtomicU64::new(0),
            releases: AtomicU64::new(0),
            unmap_failures: AtomicU64::new(0),
        }
    }

    /// Bytes of address space mapped now (spans and the untouched rest of
    /// their aligned reservations; only touched pages take memory).
    pub fn mapped(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Bytes of the spans imported now (what the page arena can hand out;
    /// their reservations' untouched rest left out).
    pub fn span_bytes(&self) -> usize {
        self.spans.load(Ordering::Relaxed)
    }

    /// Spans imported and released so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.imports.load(Ordering::Relaxed),
            self.releases.load(Ordering::Relaxed),
        )
    }

    /// Releases whose `munmap` failed (the spans stay mapped).
    pub fn unmap_failures(&self) -> u64 {
        self.unmap_failures.load(Ordering::Relaxed)
    }
}

/// Maps `size` bytes of zeroed, private, anonymous memory, reserving no
/// swap for it (pages are backed when first touched): for reservations
/// that are mostly never touched (metadata, the page map).
pub(crate) fn map(size: usize) -> Option<NonNull<u8>> {
    map_with(size, libc::MAP_NORESERVE)
}

/// [`map`] for memory handed out to users (the page arena's spans): under
/// the kernel's default overcommit policy a request no machine could back
/// (more than its memory and swap) is refused here, as glibc's `malloc`
/// refuses it, instead of succeeding and failing at the first touch.
fn map_committed(size: usize) -> Option<NonNull<u8>> {
    map_with(size, 0)
}

/// `mmap` of `size` bytes, anonymous and private, with `flags` added.
fn map_with(size: usize, flags: libc::c_int) -> Option<NonNull<u8>> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(p.cast())
}

/// Every span sits at the start of a mapping aligned to this and a
/// multiple of it long (the largest headed slab): the slab layer's
/// lock-free free check reads the last word of the slab-sized, slab-aligned
/// block around a freed address, and for an address in a span that block
/// is always mapped, so a free with a wrong layout (of any class) is
/// refused instead of faulting. The mapping past the span is never touched
/// (no memory behind it) and goes with the span.
const SPAN_ALIGN: usize = kmem_slab::HEADED_MAX;

/// The mapping behind a span of `size` bytes.
fn reservation(size: usize) -> Option<usize> {
    size.checked_next_multiple_of(SPAN_ALIGN)
}

/// Unmaps `[addr, addr + len)`, if any; false when `munmap` refuses.
///
/// # Safety
/// The range is memory the caller mapped (with [`map`]) and nothing uses
/// any more.
pub(crate) unsafe fn unmap(addr: usize, len: usize) -> bool {
    // SAFETY: the caller's guarantee.
    len == 0 || unsafe { libc::munmap(addr as *mut libc::c_void, len) } == 0
}

// SAFETY: `import` returns fresh private anonymous mappings of the size
// asked, readable and writable, which nothing else uses until `release`
// unmaps them; `is_memory` is always true.
unsafe impl Source for OsPages {
    fn import(&self, size: usize) -> Result<usize, ArenaAllocError> {
        if ptr::eq(self, &OS_PAGES) {
            // The global allocators' reaper, if a `fork()` child has none.
            crate::reaper::ensure();
        }
        // Map one alignment more than the reservation, and trim to an
        // aligned reservation.
        let reserved = reservation(size).ok_or(ArenaAllocError::Exhausted)?;
        let padded = reserved
            .checked_add(SPAN_ALIGN)
            .ok_or(ArenaAllocError::Exhausted)?;
        let p = map_committed(padded)
            .ok_or(ArenaAllocError::Exhausted)?
            .as_ptr() as usize;
        let start = p.next_multiple_of(SPAN_ALIGN);
        let (head, tail) = (start - p, p + padded - (start + reserved));
        // A trim refused leaves those pages mapped, unused and never
        // released: counted in `unmap_failures`.
        for (at, len) in [(p, head), (start + reserved, tail)] {
            // SAFETY: the head and tail of the mapping just made, outside
            // the span handed out; nothing uses them.
            if !unsafe { unmap(at, len) } {
                self.unmap_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The rest of the reservation is only ever read (by the owner
        // check, as zeroes): read-only, it is charged no memory even under
        // strict overcommit. A refusal leaves it writable, still untouched.
        if reserved > size {
            // SAFETY: `[start + size, start + reserved)` is part of the
            // mapping just made, page-aligned (`size` is a multiple of the
            // page, the import quantum), and nothing uses it.
            let _ = unsafe {
                libc::mprotect(
                    (start + size) as *mut libc::c_void,
                    reserved - size,
                    libc::PROT_READ,
                )
            };
        }
        self.mapped.fetch_add(reserved, Ordering::Relaxed);
        self.spans.fetch_add(size, Ordering::Relaxed);
        self.imports.fetch_add(1, Ordering::Relaxed);
        Ok(start)
    }

    unsafe fn release(&self, base: usize, size: usize) {
        // `[base, base + size)` is a whole span `import` mapped and the
        // importer no longer uses any of it (the caller's guarantee); its
        // reservation goes with it.
        let reserved = reservation(size).unwrap_or(size);
        // SAFETY: as just said.
        if !unsafe { unmap(base, reserved) } {
            // Never a panic on an allocator path: counted, the span leaked.
            self.unmap_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.mapped.fetch_sub(reserved, Ordering::Relaxed);
        self.spans.fetch_sub(size, Ordering::Relaxed);
        self.releases.fetch_add(1, Ordering::Relaxed);
    }

    fn import_quantum(&self) -> usize {
        PAGE_SIZE
    }

    fn is_memory(&self) -> bool {
        true
    }
}

/// The OS pages behind [`KmallocGlobal`].
static OS_PAGES: OsPages = OsPages::new();

const UNBOOTED: u8 = 0;
const BOOTING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// The smallest first metadata reservation a boot tries (see
/// `KmallocGlobal::boot`).
const MIN_METADATA: usize = 16 << 20;

std::thread_local! {
    /// This thread is booting the global allocator (an allocation from
    /// inside the boot would otherwise wait for itself).
    static IN_BOOT: Cell<bool> = const { Cell::new(false) };
}

/// How many booted [`KmallocGlobal`]s the `fork()` handlers protect.
pub(crate) const MAX_GLOBALS: usize = 8;

/// The booted global allocators, for the `fork()` handlers.
static FORKABLE: [AtomicPtr<Kmalloc<'static, ThreadCpus>>; MAX_GLOBALS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_GLOBALS];

/// How many of `FORKABLE` the prepare handler locked (the others, booted
/// meanwhile, are left alone by the parent and child handlers).
static LOCKED: AtomicUsize = AtomicUsize::new(0);

/// `pthread_atfork` was called (once per process).
static ATFORK: AtomicU8 = AtomicU8::new(0);

/// Held by a boot in progress, and by `fork()` from prepare to release, so a
/// child is never copied in the middle of a boot (it would wait for ever
/// for a boot nobody finishes). Taken before every other lock.
static BOOT_LOCK: ProcessLock = ProcessLock::new();

/// A process-wide flag lock for the boot and `fork()` handlers: taken with
/// an atomic swap, waited for by yielding the CPU (its holder may be
/// preempted, or busy for a while), released by a store.
pub(crate) struct ProcessLock(AtomicBool);

impl ProcessLock {
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    pub(crate) fn lock(&self) {
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: no arguments, no memory.
            unsafe { libc::sched_yield() };
        }
    }

    pub(crate) fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Before `fork()`: takes every lock of the platform, then of every booted
/// allocator, in the lock order, so that no other thread holds one while
/// the process is copied (a child would wait for it for ever).
extern "C" fn fork_prepare() {
    // The reaper's pass first: it takes the locks below, never this one's
    // holder's.
    crate::reaper::fork_prepare();
    BOOT_LOCK.lock();
    // The booted allocators now, a prefix of `FORKABLE` (filled in order,
    // and not while `BOOT_LOCK` is held here).
    let n = FORKABLE
        .iter()
        .take_while(|k| !k.load(Ordering::Acquire).is_null())
        .count();
    LOCKED.store(n, Ordering::Relaxed);
    for k in forkable(n) {
        k.fork_lock_registry();
    }
    ThreadCpus::global().fork_lock();
    for k in forkable(n) {
        // SAFETY: its registry was locked just above.
        unsafe { k.fork_lock() };
    }
}

/// Every booted global allocator.
pub(crate) fn booted() -> impl Iterator<Item = &'static Kmalloc<'static, ThreadCpus>> {
    FORKABLE.iter().map_while(|k| {
        // SAFETY: as in `forkable`; a null entry ends the booted prefix.
        unsafe { k.load(Ordering::Acquire).as_ref() }
    })
}

/// After `fork()`, in the parent.
extern "C" fn fork_parent() {
    fork_release();
    crate::reaper::fork_parent();
}

/// After `fork()`, in the child: as in the parent, and the reaper thread,
/// which was not copied, is marked stopped.
extern "C" fn fork_child() {
    fork_release();
    crate::reaper::fork_child();
}

/// The first `n` booted allocators.
fn forkable(n: usize) -> impl DoubleEndedIterator<Item = &'static Kmalloc<'static, ThreadCpus>> {
    FORKABLE[..n].iter().map(|k| {
        // SAFETY: only `register_fork` stores, pointers to `'static`
        // allocators that are never torn down; the first `n` are set.
        unsafe { &*k.load(Ordering::Acquire) }
    })
}

/// After `fork()`, in the parent and in the child: releases what
/// `fork_prepare` took, in reverse.
extern "C" fn fork_release() {
    let n = LOCKED.load(Ordering::Relaxed);
    for k in forkable(n).rev() {
        // SAFETY: locked by `fork_prepare` before this `fork()`.
        unsafe { k.fork_unlock() };
    }
    // SAFETY: locked by `fork_prepare` before this `fork()`.
    unsafe { ThreadCpus::global().fork_unlock() };
    for k in forkable(n).rev() {
        // SAFETY: as above; `fork_unlock` ran first.
        unsafe { k.fork_unlock_registry() };
    }
    BOOT_LOCK.unlock();
}

/// Puts a freshly booted allocator under the `fork()` handlers. False when
/// `MAX_GLOBALS` are already there.
fn register_fork(k: &'static Kmalloc<'static, ThreadCpus>) -> bool {
    let k = ptr::from_ref(k).cast_mut();
    FORKABLE.iter().any(|slot| {
        slot.compare_exchange(ptr::null_mut(), k, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Grows a [`KmallocGlobal`]'s metadata: registered on its base arena,
/// it is called when the base runs out (of memory, or of memory to carve
/// boundary tags from) and, unless a free segment already holds the
/// request, adds a fresh reservation of address space as large as the
/// arena's memory so far (at least twice the request), so the metadata
/// doubles as it needs to. No fixed cap is left: the limits are the
/// process's address space and the base arena's boundary tags (about 5.6
/// million segments).
/// Reservations are never unmapped (the base arena never gives memory
/// back); only their touched pages take memory.
/// An [`OsPageMap`] in a page of its own, for the rest of the program.
fn place_page_map() -> Option<&'static OsPageMap> {
    let map = OsPageMap::new()?;
    let at = self::map(PAGE_SIZE)?.cast::<OsPageMap>();
    // SAFETY: a fresh private mapping of a page, aligned and large enough
    // for the map's one pointer, never unmapped: written once here, then
    // only read.
    Some(unsafe {
        at.as_ptr().write(map);
        &*at.as_ptr()
    })
}

struct MoreMetadata;

static MORE_METADATA: MoreMetadata = MoreMetadata;

impl Reclaim for MoreMetadata {
    fn reclaim(&self, arena: &Arena<'_>, wanted: usize) -> usize {
        // A free segment that holds the request and the tag pages it may
        // need: more memory would not help (the request has constraints a
        // fresh region cannot meet either, such as an address window), or
        // another thread has just grown the arena. Retry without growing.
        if arena.largest_free() >= wanted.saturating_add(2 * PAGE_SIZE) {
            return 1;
        }
        let Some(size) = wanted
            .checked_mul(2)
            .and_then(|w| w.checked_next_multiple_of(PAGE_SIZE))
            .map(|w| w.max(arena.amt_total()))
        else {
            return 0;
        };
        let Some(mem) = map(size) else {
            return 0;
        };
        let base = mem.as_ptr() as usize;
        // Only `KmallocGlobal::boot` registers this callback, on a base
        // arena that is never torn down.
        // SAFETY: a fresh private mapping nothing else knows of, never
        // unmapped once added: the arena's for the rest of the program.
        let added = unsafe { arena.add_memory(base, size) };
        if added.is_err() {
            // SAFETY: the mapping just made; the arena refused it, so
            // nothing uses it.
            unsafe { unmap(base, size) };
            return 0;
        }
        size
    }
}

/// kmalloc as a program's `#[global_allocator]`: boots itself on the first
/// allocation — a base arena over a reserved (`MAP_NORESERVE`) region for
/// metadata, which grows by further reservations as the metadata needs, a page arena importing from the OS ([`OsPages`]) sixteen times
/// what a request needs at a time, the std platform ([`ThreadCpus`]: a CPU slot per thread,
/// flushed when the thread exits) — and never shuts down. If the boot
/// fails, every allocation fails (returns null).
///
/// - **`fork()`**: the boot installs `pthread_atfork` handlers that take
///   every lock of the stack before a fork and release them in the parent
///   and the child, so the child of a multi-threaded program allocates
///   normally (up to 8 `KmallocGlobal`s per process are covered; a ninth
///   fails to boot). In the child, the CPU slots of the threads that were
///   not copied stay claimed, their cached objects lost to it.
/// - **Signal handlers**: an allocation from a handler that interrupted an
///   allocator call of the same thread fails (returns null) and a free
///   there is deferred, without touching the interrupted call's state or
///   waiting for its locks; outside allocator calls, handlers allocate as
///   usual.
/// - **Panics** never unwind out of the allocator: one would abort the
///   process, as Rust requires of a global allocator.
/// - **Upkeep**: after the first boot a reaper thread (a bare `pthread`)
///   runs [`Kmalloc::tick`] on every booted `KmallocGlobal` each
///   [`UPKEEP_INTERVAL_MS`](crate::UPKEEP_INTERVAL_MS) (500 ms), so that
///   freed memory a program leaves idle goes back to the OS within four
///   passes; `KMEM_UPKEEP_MS` sets the interval, `0` turns it off. A
///   `fork()` child starts its own on its next import of pages.
///   [`upkeep`](Self::upkeep) tells what it did.
///
/// ```no_run
/// #[global_allocator]
/// static KMALLOC: kmalloc::KmallocGlobal = kmalloc::KmallocGlobal::new();
///
/// fn main() {
///     let v: Vec<u32> = (0..1000).collect(); // from kmalloc_4096
///     assert_eq!(v.len(), 1000);
/// }
/// ```
pub struct KmallocGlobal {
    state: AtomicU8,
    k: AtomicPtr<Kmalloc<'static, ThreadCpus>>,
    metadata: usize,
    /// Boot with an [`OsPageMap`], for unsized frees.
    page_map: bool,
    /// Bytes mapped from the OS before the reaper starts.
    reaper_after: usize,
}

impl Default for KmallocGlobal {
    fn default() -> Self {
        Self::new()
    }
}

impl KmallocGlobal {
    /// Reserves 64 MiB of address space for metadata to start with
    /// (touched only as used; half that, down to 16 MiB, where the address
    /// space is limited); when the metadata outgrows it, the base arena
    /// adds a reservation as large as all before it, and so on: no fixed
    /// cap (the limits left are the address space and the base arena's
    /// boundary tags).
    pub const fn new() -> Self {
        Self::with_metadata(64 << 20)
    }

    /// Reserves `bytes` of address space for the base arena (metadata:
    /// boundary tags, slab headers, bufctls, magazines, cache structures)
    /// to start with; it grows as [`new`](Self::new) says.
    pub const fn with_metadata(bytes: usize) -> Self {
        Self {
            state: AtomicU8::new(UNBOOTED),
            k: AtomicPtr::new(ptr::null_mut()),
            metadata: bytes,
            page_map: false,
            reaper_after: 0,
        }
    }

    /// As [`new`](Self::new), and the allocator keeps an [`OsPageMap`] of
    /// its slabs and large blocks, so that
    /// [`Kmalloc::free_unsized`] and [`Kmalloc::usable_size_of`] work (a C
    /// `malloc` needs them). The map costs a few stores per slab made or
    /// given back and per large block, and 4 KiB of memory per 4 MiB of
    /// heap; the fast paths are unchanged.
    pub const fn with_page_map() -> Self {
        let mut s = Self::new();
        s.page_map = true;
        s
    }

    /// True once a boot has failed (no memory for the metadata, or the
    /// `fork()` handlers could not be installed): every allocation fails.
    pub fn boot_failed(&self) -> bool {
        self.state.load(Ordering::Acquire) == FAILED
    }

    /// As this allocator, but its reaper thread starts only once the page
    /// arenas hold `bytes` of spans from the OS (`OsPages::span_bytes`;
    /// the reaper is
    /// shared by every `KmallocGlobal`: the smallest threshold of the
    /// booted ones counts). A program that stays below it never gets the
    /// extra thread: a C `malloc` must not make every small program
    /// multi-threaded (`unshare(CLONE_NEWUSER)` refuses a process with
    /// threads), and a small heap has little to give back.
    pub const fn reaper_after(mut self, bytes: usize) -> Self {
        self.reaper_after = bytes;
        self
    }

    /// The running allocator, booting it first if no allocation has yet;
    /// `None` if the boot failed, or from inside the boot itself (an
    /// allocation the boot's own calls make, such as `pthread_atfork`'s).
    #[inline]
    pub fn get_or_boot(&self) -> Option<&'static Kmalloc<'static, ThreadCpus>> {
        self.kmalloc()
    }

    /// The running allocator, if booted.
    #[inline]
    pub fn get(&self) -> Option<&'static Kmalloc<'static, ThreadCpus>> {
        // SAFETY: only `boot` stores, a pointer to a `'static` allocator.
        unsafe { self.k.load(Ordering::Acquire).as_ref() }
    }

    /// The OS page source behind every `KmallocGlobal`.
    pub fn os_pages() -> &'static OsPages {
        &OS_PAGES
    }

    /// What the reaper thread, shared by every `KmallocGlobal` of the
    /// process, has done: its interval, passes and their cost.
    pub fn upkeep() -> UpkeepStats {
        crate::reaper::stats()
    }

    #[inline]
    fn kmalloc(&self) -> Option<&'static Kmalloc<'static, ThreadCpus>> {
        self.get().or_else(|| self.boot())
    }

    #[cold]
    #[inline(never)]
    fn boot(&self) -> Option<&'static Kmalloc<'static, ThreadCpus>> {
        loop {
            match self.state.compare_exchange(
                UNBOOTED,
                BOOTING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(READY) => return self.get(),
                Err(FAILED) => return None,
                Err(_) if IN_BOOT.get() => return None,
                Err(_) => core::hint::spin_loop(),
            }
        }
        IN_BOOT.set(true);
        BOOT_LOCK.lock();
        let handlers = ATFORK.load(Ordering::Relaxed) != 0 || {
            // SAFETY: registers two `extern "C"` functions that live for the
            // whole program (glibc records them with its own malloc).
            let r = unsafe {
                libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child))
            };
            ATFORK.store(u8::from(r == 0), Ordering::Relaxed);
            r == 0
        };
        // The first metadata reservation: as asked, or smaller under a
        // limit on the address space (`RLIMIT_AS`) or strict overcommit;
        // it grows on demand either way.
        let first = core::iter::successors(Some(self.metadata), |&b| {
            (b / 2 >= MIN_METADATA).then_some(b / 2)
        })
        .find_map(|bytes| map(bytes).map(|mem| (mem, bytes)));
        let booted = first.filter(|_| handlers).and_then(|(mem, bytes)| {
            // SAFETY: a fresh private mapping of `bytes` bytes, never
            // unmapped: it is this allocator's for the rest of the program.
            let mem = unsafe { core::slice::from_raw_parts_mut(mem.as_ptr(), bytes) };
            let debug = debug_from_env();
            let page_map = match self.page_map {
                true => Some(place_page_map()?),
                false => None,
            };
            let config = Config {
                page_source: Some(&OS_PAGES),
                import_scale: 4,
                debug,
                debug_hooks: (!debug.is_empty()).then_some(&GLOBAL_HOOKS),
                page_map: page_map.map(|m| m as &dyn kmem_slab::PageMap),
                ..Config::default()
            };
            boot_static(mem, ThreadCpus::global(), &config).ok()
        });
        // The metadata grows on demand (a fresh arena has room for the
        // callback).
        let booted = booted
            .filter(|&k| k.caches().base().add_reclaim(&MORE_METADATA).is_ok())
            .filter(|&k| register_fork(k));
        if booted.is_some() {
            crate::reaper::configure(self.reaper_after);
        }
        BOOT_LOCK.unlock();
        IN_BOOT.set(false);
        match booted {
            Some(k) => {
                self.k.store(ptr::from_ref(k).cast_mut(), Ordering::Release);
                self.state.store(READY, Ordering::Release);
                crate::reaper::ensure();
            }
            None => self.state.store(FAILED, Ordering::Release),
        }
        booted
    }
}

/// Debug mode's flags from the environment variable `KMEM_DEBUG` (see
/// [`debug_flags`]), read with `getenv`, which does not allocate. A value
/// with an unknown word turns every part on, after a warning.
fn debug_from_env() -> CacheFlags {
    // SAFETY: a NUL-terminated name; the result is read at once, before
    // anything could change the environment (this runs under the boot lock,
    // on the program's first allocation).
    let p = unsafe { libc::getenv(c"KMEM_DEBUG".as_ptr()) };
    if p.is_null() {
        return CacheFlags::empty();
    }
    // SAFETY: `getenv` returns a NUL-terminated string.
    let spec = unsafe { core::ffi::CStr::from_ptr(p) };
    match spec.to_str().ok().and_then(debug_flags) {
        Some(flags) => flags,
        None => {
            write_stderr(
                b"kmalloc: KMEM_DEBUG has an unknown part (want 1, or a list of \
                  checks, redzone, poison, audit); every part is on\n",
            );
            CacheFlags::DEBUG_ALL
        }
    }
}

/// Writes `bytes` to standard error with `write(2)` (no allocation, no
/// lock), as much as it takes.
fn write_stderr(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is valid for reads of its length.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        let Ok(n) = usize::try_from(n) else { return };
        if n == 0 {
            return;
        }
        rest = &rest[n..];
    }
}

/// What debug mode calls out to under [`KmallocGlobal`].
static GLOBAL_HOOKS: DebugHooks = DebugHooks {
    report: Some(report_and_abort),
    caller: Some(caller_of_entry),
    now: Some(monotonic_ns),
};

/// Prints a debug report (code addresses named with their symbols) to
/// standard error and aborts, as libumem and glibc's checks do.
fn report_and_abort(r: &Report) {
    let mut text = std::format!("{r}\n");
    for (what, site) in [
        ("last allocated by", r.last_alloc),
        ("last freed by", r.last_free),
        ("this call", Some(r.at)),
    ] {
        let Some(site) = site else { continue };
        let Caller::Code(ip) = site.caller else {
            continue;
        };
        text.push_str(&std::format!("  {what}:\n"));
        for ip in [ip, site.callers[0], site.callers[1]] {
            if ip == 0 {
                continue;
            }
            let mut name = None;
            backtrace::resolve(ip as *mut core::ffi::c_void, |sym| {
                if name.is_none() {
                    name = sym.name().map(|n| std::format!("{n:#}"));
                }
            });
            let name = name.unwrap_or_else(|| "?".into());
            text.push_str(&std::format!("    {ip:#x} in {name}\n"));
        }
    }
    text.push_str("kmalloc: aborting (KMEM_DEBUG)\n");
    write_stderr(text.as_bytes());
    std::process::abort();
}

/// The return addresses into the caller of the allocator entry point
/// whose stack local sits at `marker`, and the next two: a walk up the
/// stack past the first frame above the marker (the entry point's).
fn caller_of_entry(marker: usize) -> [usize; 3] {
    let mut past_entry = false;
    let mut found = [0; 3];
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` is unsafe only because other threads
    // may walk at the same time; the unwinder it uses (libgcc's) is thread
    // safe, and nothing here allocates.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if past_entry {
                found[n] = frame.ip() as usize;
                n += 1;
                return n < found.len();
            }
            past_entry = frame.sp() as usize > marker;
            true
        });
    }
    found
}

/// The debug clock: the std platform's (nanoseconds of
/// `CLOCK_MONOTONIC`).
pub(crate) fn monotonic_ns() -> u64 {
    kmem_magazine::Cpu::now_ns(ThreadCpus::global())
}

// Allocations boot the stack on first use; `dealloc` never does. If the boot
// fails, every allocation fails.
crate::global::forward_global_alloc!([] KmallocGlobal, kmalloc, get);
