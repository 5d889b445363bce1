//! kmem's kmalloc as a C `malloc`: `libkmem_malloc.so`, to load with
//! `LD_PRELOAD` under any dynamically linked program, and
//! `libkmem_malloc.a`, to link in.
//!
//! ```sh
//! cargo build --release -p kmem-malloc
//! LD_PRELOAD=target/release/libkmem_malloc.so python3 script.py
//! ```
//!
//! It exports `malloc`, `free`, `calloc`, `realloc`, `reallocarray`,
//! `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc` and
//! `malloc_usable_size`, with glibc's semantics where C leaves a choice:
//! `malloc(0)` returns a unique pointer, `realloc(p, 0)` frees `p` and
//! returns null, failures set `errno` to `ENOMEM`, `posix_memalign` and
//! `aligned_alloc` refuse an alignment that is not a power of two (a
//! multiple of `sizeof(void *)` for `posix_memalign`) with `EINVAL`, and
//! `memalign` rounds one up. Blocks are aligned to 16 bytes (8 for
//! requests of at most 8 bytes, which no type of fundamental alignment
//! can outgrow).
//!
//! Behind it is one [`KmallocGlobal`] with a page map
//! ([`KmallocGlobal::with_page_map`]): a `free` finds its block's size
//! class or run of pages from the address alone, with no header on small
//! objects. A pointer no block of this allocator starts at (allocated
//! before the library was loaded, or by another allocator) is reported on
//! standard error and left alone, never freed into a cache; a double free
//! or a pointer into a block is reported and stops the program, as glibc's
//! checks do.
//!
//! Allocations made while the allocator cannot serve them (during its own
//! boot, which calls `pthread_atfork`; from inside one of its calls, such
//! as glibc registering a thread-exit destructor on a thread's first
//! allocation; or from a signal handler that interrupted one) come from a
//! small bootstrap area (1 MiB; a freed block is reused by a later
//! bootstrap allocation of its size).
//!
//! `KMEM_DEBUG` turns on kmalloc's debug mode, as for [`KmallocGlobal`].
//! Thread exit gives a thread's CPU slot back through the std platform's
//! thread-local destructor, and a `pthread_key` destructor flushes the
//! thread's magazines if the thread-local one could not be registered.

#![allow(unsafe_code, reason = "a C ABI: raw pointers in, raw pointers out")]

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::fmt::Write as _;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kmalloc::{AllocError, FreeError, Kmalloc, KmallocGlobal};
use kmem_slab::BadFree;

/// The allocator behind every entry point.
static KMALLOC: KmallocGlobal = KmallocGlobal::with_page_map().reaper_after(REAPER_AFTER);

/// The heap (spans from the OS) past which the reaper thread starts:
/// below it a program keeps the threads it made itself.
const REAPER_AFTER: usize = 64 << 20;

/// `calloc`s of at least this many bytes (large blocks, whole pages) are
/// zeroed by `madvise(MADV_DONTNEED)`, which hands the pages back to the
/// kernel to be refilled with zeroes when touched, instead of writing
/// every byte (and making every page resident).
const ZERO_BY_MADVISE: usize = 256 << 10;

/// The page size `valloc` and `pvalloc` align to.
const PAGE: usize = 4096;

/// The alignment of every block of `size` bytes: 16, as glibc's, or 8 for
/// at most 8 bytes.
#[inline(always)]
const fn min_align(size: usize) -> usize {
    if size <= 8 {
        8
    } else {
        16
    }
}

// ---------------------------------------------------------------------------
// The bootstrap area.

/// Bytes of the bootstrap area.
const BOOT_BYTES: usize = 1 << 20;

/// Memory for allocations the allocator cannot serve (see the crate docs):
/// a bump pointer over a static array, each block after a 16-byte header
/// holding its size. Never reused.
#[repr(C, align(4096))]
struct BootArea {
    bytes: UnsafeCell<[u8; BOOT_BYTES]>,
}

// SAFETY: blocks are carved from the array by an atomic bump (`next`), so
// each byte goes to one caller only.
unsafe impl Sync for BootArea {}

static BOOT: BootArea = BootArea {
    bytes: UnsafeCell::new([0; BOOT_BYTES]),
};
/// Offset of the first unused byte of [`BOOT`].
static BOOT_NEXT: AtomicUsize = AtomicUsize::new(0);
/// Bootstrap blocks handed out and given back, for `KMEM_MALLOC_STATS`.
static BOOT_ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BOOT_FREES: AtomicUsize = AtomicUsize::new(0);

/// Freed bootstrap blocks of 16 << i bytes (16 B to 64 KiB), reused by
/// later bootstrap allocations of that bucket: a program that starts
/// threads for ever makes a bootstrap allocation and free per thread
/// (glibc's thread-exit destructor list, on the thread's first
/// allocation), which must not use the area up.
const BUCKETS: usize = 13;
struct FreeLists {
    lock: AtomicBool,
    heads: UnsafeCell<[usize; BUCKETS]>,
}

// SAFETY: `heads` is read and written only under `lock`.
unsafe impl Sync for FreeLists {}

static FREE_LISTS: FreeLists = FreeLists {
    lock: AtomicBool::new(false),
    heads: UnsafeCell::new([0; BUCKETS]),
};

impl FreeLists {
    /// Runs `f` on the list heads under the lock (a few instructions, never
    /// across a call that could allocate).
    fn with<R>(&self, f: impl FnOnce(&mut [usize; BUCKETS]) -> R) -> R {
        self.lock();
        // SAFETY: the lock is held, so this is the only access.
        let r = f(unsafe { &mut *self.heads.get() });
        self.unlock();
        r
    }

    fn lock(&self) {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }

    fn unlock(&self) {
        self.lock.store(false, Ordering::Release);
    }
}

/// The bucket of a block of `size` bytes aligned to at most 16, if any.
fn bucket(size: usize, align: usize) -> Option<usize> {
    let i = size.max(16).next_power_of_two().trailing_zeros() as usize - 4;
    (align <= 16 && i < BUCKETS).then_some(i)
}

/// The bootstrap area's address range.
fn boot_range() -> (usize, usize) {
    let start = BOOT.bytes.get() as usize;
    (start, start + BOOT_BYTES)
}

/// True if `p` is in the bootstrap area.
#[inline(always)]
fn in_boot(p: usize) -> bool {
    let (start, end) = boot_range();
    p >= start && p < end
}

/// A block of `size` bytes aligned to `align` from the bootstrap area, or
/// null when it is used up.
#[cold]
fn boot_alloc(size: usize, align: usize) -> *mut u8 {
    let (start, _) = boot_range();
    let bucket = bucket(size, align);
    if let Some(i) = bucket {
        let reused = FREE_LISTS.with(|heads| {
            let p = heads[i];
            if p != 0 {
                // SAFETY: a freed block of this bucket: its first word
                // links the next one.
                heads[i] = unsafe { (p as *const usize).read() };
            }
            p
        });
        if reused != 0 {
            // SAFETY: a block of the area, its header before it; it is
            // this call's now (taken off the list under the lock).
            unsafe { ((reused - 16) as *mut usize).write(16 << i) };
            BOOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
            return reused as *mut u8;
        }
    }
    // A bucket's block is carved at the bucket's size, so it can serve any
    // request of that bucket when reused.
    let size = bucket.map_or(size, |i| 16 << i);
    let align = align.max(16);
    let mut next = BOOT_NEXT.load(Ordering::Relaxed);
    loop {
        // The block starts aligned, after a 16-byte header.
        let Some(at) = (start + next + 16).checked_next_multiple_of(align) else {
            return ptr::null_mut();
        };
        let end = match at.checked_add(size) {
            Some(end) if end - start <= BOOT_BYTES => end,
            _ => return ptr::null_mut(),
        };
        match BOOT_NEXT.compare_exchange_weak(
            next,
            end - start,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                // SAFETY: `[at - 16, end)` lies in the area (checked) and is
                // this call's alone (the bump above); `at` is 16-aligned.
                unsafe { ((at - 16) as *mut usize).write(size) };
                BOOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
                return at as *mut u8;
            }
            Err(now) => next = now,
        }
    }
}

/// Gives a bootstrap block back to its bucket's free list (one of another
/// size, over 64 KiB or aligned past 16 when allocated, stays used).
///
/// # Safety
/// `p` is a block [`boot_alloc`] returned, not used after.
unsafe fn boot_free(p: usize) {
    BOOT_FREES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: forwarded.
    let size = unsafe { boot_size(p) };
    // Any block of a bucket's exact size can serve that bucket again (every
    // block is at least 16-aligned).
    let Some(i) = bucket(size, 16).filter(|&i| 16 << i == size) else {
        return;
    };
    let twice = FREE_LISTS.with(|heads| {
        // SAFETY: the header before the block, which is the area's.
        let header = unsafe { &mut *((p - 16) as *mut usize) };
        if *header & BOOT_FREED != 0 {
            return true;
        }
        *header |= BOOT_FREED;
        // SAFETY: the block is the caller's to give back and at least 16
        // bytes: its first word links the list.
        unsafe { (p as *mut usize).write(heads[i]) };
        heads[i] = p;
        false
    });
    if twice {
        report(format_args!(
            "kmem-malloc: free({p:#x}): a bootstrap block freed twice; aborting"
        ));
        // SAFETY: ends the process; nothing to uphold.
        unsafe { libc::abort() };
    }
}

/// The mark in a freed bootstrap block's header (sizes stay far below it).
const BOOT_FREED: usize = 1 << (usize::BITS - 1);

/// `pthread_atfork` handlers for the bootstrap free lists' lock, so that a
/// `fork()` child never inherits it held by a thread it does not have:
/// taken before the fork (after kmalloc's own locks, whose handlers are
/// registered later and so run first), let go in both processes.
extern "C" fn lists_prepare() {
    FREE_LISTS.lock();
}

extern "C" fn lists_release() {
    FREE_LISTS.unlock();
}

/// Registers the fork handlers when the library is loaded (before `main`).
extern "C" fn at_load() {
    // SAFETY: `pthread_atfork` records three `extern "C"` functions that
    // live as long as the library; its own allocation comes back here.
    unsafe {
        libc::pthread_atfork(
            Some(lists_prepare),
            Some(lists_release),
            Some(lists_release),
        )
    };
}

#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn() = at_load;

/// The size a bootstrap block was allocated with.
///
/// # Safety
/// `p` is a block [`boot_alloc`] returned.
unsafe fn boot_size(p: usize) -> usize {
    // SAFETY: the caller's guarantee: the header precedes the block.
    unsafe { ((p - 16) as *const usize).read() & !BOOT_FREED }
}

// ---------------------------------------------------------------------------
// Reports.

/// Standard error as a `fmt::Write`, with `write(2)` (no allocation).
struct Stderr;

impl core::fmt::Write for Stderr {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            // SAFETY: `rest` is valid for reads of its length.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Ok(n) if n > 0 => rest = &rest[n..],
                _ => return Err(core::fmt::Error),
            }
        }
        Ok(())
    }
}

/// With `KMEM_MALLOC_STATS` set (and not `0`), the program's exit prints
/// the bootstrap area's use and kmalloc's `::kmastat`-style report of
/// every cache and arena to standard error.
extern "C" fn stats_at_exit() {
    // SAFETY: `getenv` with a NUL-terminated name; the result is read at
    // once, up to its NUL.
    let on = unsafe {
        let v = libc::getenv(c"KMEM_MALLOC_STATS".as_ptr());
        !v.is_null() && *v != 0 && !(*v == b'0' as core::ffi::c_char && *v.add(1) == 0)
    };
    if !on {
        return;
    }
    let mut w = Stderr;
    let _ = writeln!(
        w,
        "kmem-malloc: bootstrap area: {} of {} bytes carved; {} blocks handed out, {} given back",
        BOOT_NEXT.load(Ordering::Relaxed),
        BOOT_BYTES,
        BOOT_ALLOCS.load(Ordering::Relaxed),
        BOOT_FREES.load(Ordering::Relaxed),
    );
    let os = KmallocGlobal::os_pages();
    let (imports, releases) = os.counts();
    let _ = writeln!(
        w,
        "kmem-malloc: {} KiB of spans from the OS ({} KiB of address space; {imports} imports, {releases} releases)",
        os.span_bytes() >> 10,
        os.mapped() >> 10,
    );
    let cpus = kmem_magazine::ThreadCpus::global();
    let _ = writeln!(
        w,
        "kmem-malloc: CPU slots: {} of {} exclusive slots owned by live threads, {} shared",
        cpus.owned_slots(),
        cpus.exclusive_slots(),
        cpus.shared_slots(),
    );
    if let Some(k) = KMALLOC.get() {
        let _ = k.report(&mut w);
    }
}

/// Runs [`stats_at_exit`] when the program exits (or the library is
/// unloaded).
#[used]
#[link_section = ".fini_array"]
static STATS_AT_EXIT: extern "C" fn() = stats_at_exit;

/// A fixed buffer to format a report in without allocating.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // What fits, cut at a character boundary.
        let mut n = s.len().min(self.buf.len() - self.len);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes a line to standard error with `write(2)`.
#[cold]
fn report(args: core::fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    // One write for the line (the buffer holds whole characters only).
    let text = core::str::from_utf8(&line.buf[..line.len]).unwrap_or("kmem-malloc: ?\n");
    let _ = Stderr.write_str(text);
}

/// A refused free or realloc of `p` by `what`: a foreign pointer is
/// reported and left alone; a double free or a pointer into a block is
/// reported and stops the program; one refused because a signal handler
/// interrupted an allocator call is no bug (the block stays allocated).
#[cold]
#[inline(never)]
fn bad_pointer(what: &str, p: *mut c_void, e: &FreeError) {
    match e {
        FreeError::Refused {
            kind: BadFree::Reentrant,
            ..
        } => {}
        FreeError::Unknown { .. } => {
            report(format_args!(
                "kmem-malloc: {what}({p:p}): not a block of this allocator (another allocator's?); left alone"
            ));
        }
        _ => {
            report(format_args!("kmem-malloc: {what}({p:p}): {e}; aborting"));
            // SAFETY: ends the process; nothing to uphold.
            unsafe { libc::abort() };
        }
    }
}

/// Sets `errno`.
fn set_errno(e: c_int) {
    // SAFETY: glibc's thread-local `errno`, always valid to write.
    unsafe { *libc::__errno_location() = e };
}

// ---------------------------------------------------------------------------
// The allocator's side.

/// The running allocator, booted on first use; `None` while it boots (the
/// boot's own allocations) or if the boot failed.
#[inline(always)]
fn kmalloc() -> Option<&'static Kmalloc<'static, kmem_magazine::ThreadCpus>> {
    KMALLOC.get_or_boot()
}

/// A block of `size` bytes (at least 1) aligned to `align` (a power of
/// two), zeroed if `zero`; null with `errno = ENOMEM` on failure.
#[inline(always)]
fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let marker = 0u8;
    let Ok(layout) = Layout::from_size_align(size.max(1), align) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let got = match kmalloc() {
        Some(k) => {
            let flags = if zero {
                kmem_slab::AllocFlags::ZERO
            } else {
                kmem_slab::AllocFlags::empty()
            };
            k.alloc_by(layout, flags, k.entry_caller(&marker))
        }
        None if KMALLOC.boot_failed() => {
            boot_failed();
            Err(AllocError::Exhausted)
        }
        None => Err(AllocError::Reentrant),
    };
    match got {
        Ok(p) => p.as_ptr(),
        Err(AllocError::Reentrant) => alloc_boot(layout, zero),
        Err(_) => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// Says once that kmalloc could not boot (every allocation fails with
/// `ENOMEM`, rather than run the program out of the small bootstrap area).
#[cold]
#[inline(never)]
fn boot_failed() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        report(format_args!(
            "kmem-malloc: kmalloc could not boot (no memory for its metadata); allocations fail"
        ));
    }
}

/// [`alloc`] from the bootstrap area, zeroed if `zero` (a reused block
/// holds what its last user left).
#[cold]
#[inline(never)]
fn alloc_boot(layout: Layout, zero: bool) -> *mut u8 {
    let p = boot_alloc(layout.size(), layout.align());
    if p.is_null() {
        set_errno(libc::ENOMEM);
    } else if zero {
        // SAFETY: a bootstrap block of at least `layout.size()` bytes,
        // the caller's alone.
        unsafe { p.write_bytes(0, layout.size()) };
    }
    p
}

/// Frees `p` (not null, not in the bootstrap area).
#[inline(always)]
fn free_block(p: *mut c_void, what: &str) {
    let Some(nn) = NonNull::new(p.cast::<u8>()) else {
        return;
    };
    let marker = 0u8;
    // A block can only be this allocator's once it has booted.
    let Some(k) = KMALLOC.get() else {
        bad_pointer(what, p, &FreeError::Unknown { addr: p as usize });
        return;
    };
    // SAFETY: C's contract: `p` came from this allocator and is not used
    // after; the page map and the class's checks refuse anything else.
    if let Err(e) = unsafe { k.free_unsized_by(nn, k.entry_caller(&marker)) } {
        bad_pointer(what, p, &e);
    }
}

// ---------------------------------------------------------------------------
// The C entry points.

/// C `malloc`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, min_align(size), false).cast()
}

/// C `free`.
///
/// # Safety
/// C's contract: `p` is null or a block from this allocator not freed
/// since.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    if in_boot(p as usize) {
        // SAFETY: C's contract: a block of ours, not used after.
        unsafe { boot_free(p as usize) };
        return;
    }
    free_block(p, "free");
}

/// C `calloc`: `n * size` zeroed bytes, null with `ENOMEM` if the product
/// overflows.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    if total >= ZERO_BY_MADVISE {
        return calloc_large(total);
    }
    alloc(total, min_align(total), true).cast()
}

/// A large `calloc`: whole pages from kmalloc, zeroed by
/// `madvise(MADV_DONTNEED)` (see [`ZERO_BY_MADVISE`]); with the bytes set
/// by hand where the kernel refuses.
#[cold]
#[inline(never)]
fn calloc_large(total: usize) -> *mut c_void {
    let p = alloc(total, PAGE, false);
    if p.is_null() {
        return ptr::null_mut();
    }
    // A page run from kmalloc (or a bootstrap block: set by hand).
    let pages = match NonNull::new(p).and_then(|nn| kmalloc()?.usable_size_of(nn).ok()) {
        Some(bytes) if bytes >= total && (p as usize).is_multiple_of(PAGE) => bytes,
        _ => 0,
    };
    // SAFETY: `[p, p + pages)` is the block just allocated, the caller's
    // alone, whole pages of a private anonymous mapping (the page arena's
    // spans come from `mmap`), which `MADV_DONTNEED` refills with zeroes.
    let zeroed = pages != 0 && unsafe { libc::madvise(p.cast(), pages, libc::MADV_DONTNEED) } == 0;
    if !zeroed {
        // SAFETY: the block just allocated, at least `total` bytes.
        unsafe { p.write_bytes(0, total) };
    }
    p.cast()
}

/// C `realloc`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees
/// `p` and returns null (glibc's choice); on failure `p` is untouched and
/// the result null with `ENOMEM`.
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    let Some(old) = NonNull::new(p.cast::<u8>()) else {
        return malloc(size);
    };
    if size == 0 {
        // SAFETY: forwarded.
        unsafe { free(p) };
        return ptr::null_mut();
    }
    if in_boot(p as usize) {
        // SAFETY: a bootstrap block: its header holds its size.
        let old_size = unsafe { boot_size(p as usize) };
        let new = malloc(size);
        if !new.is_null() {
            // SAFETY: both hold at least the smaller size, and are distinct
            // (the old block is still allocated).
            unsafe {
                ptr::copy_nonoverlapping(p.cast::<u8>(), new.cast::<u8>(), old_size.min(size))
            };
            // SAFETY: the old bootstrap block, copied and given up.
            unsafe { boot_free(p as usize) };
        }
        return new;
    }
    let marker = 0u8;
    let Some(k) = KMALLOC.get() else {
        bad_pointer("realloc", p, &FreeError::Unknown { addr: p as usize });
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: C's contract, as for `free`; the old block is checked first.
    match unsafe { k.realloc_unsized_by(old, size, min_align(size), k.entry_caller(&marker)) } {
        Ok(q) => q.as_ptr().cast(),
        Err(AllocError::BadPointer(e)) => {
            bad_pointer("realloc", p, &e);
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
        Err(AllocError::Reentrant) => {
            // From a handler inside an allocator call: a fresh bootstrap
            // block (copying the old one's usable size, which it holds).
            let old_size = k.usable_size_of(old).unwrap_or(0);
            let new = alloc_boot(
                Layout::from_size_align(size, 16).unwrap_or(Layout::new::<u128>()),
                false,
            );
            if !new.is_null() {
                // SAFETY: both hold at least the smaller size and are
                // distinct; the old block stays allocated (a handler may
                // not free it under the interrupted call).
                unsafe { ptr::copy_nonoverlapping(p.cast::<u8>(), new, old_size.min(size)) };
            }
            new.cast()
        }
        Err(_) => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// C `reallocarray`: `realloc(p, n * size)`, null with `ENOMEM` (and `p`
/// untouched) if the product overflows.
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: forwarded.
    unsafe { realloc(p, total) }
}

/// A block aligned to `align` (a power of two), as the aligned entry
/// points give (inlined into each, so that debug mode's audit names their
/// callers).
#[inline(always)]
fn aligned(align: usize, size: usize) -> *mut c_void {
    alloc(size, align.max(min_align(size)), false).cast()
}

/// C `posix_memalign`: `EINVAL` unless `align` is a power of two and a
/// multiple of `sizeof(void *)`; `ENOMEM` on failure; `*out` is written
/// only on success.
///
/// # Safety
/// `out` is valid for a write of a pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    let p = aligned(align, size);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's guarantee.
    unsafe { out.write(p) };
    0
}

/// C `aligned_alloc` (C11): `EINVAL` and null unless `align` is a power
/// of two (glibc takes any size).
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, size)
}

/// glibc's `memalign`: an alignment that is not a power of two is rounded
/// up to one.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.max(1).checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    };
    aligned(align, size)
}

/// `valloc`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(PAGE, size)
}

/// `pvalloc`: page-aligned, the size rounded up to whole pages (one page
/// for 0).
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(size) = size.max(1).checked_next_multiple_of(PAGE) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    aligned(PAGE, size)
}

/// `malloc_usable_size`: the bytes usable in `p`'s block (its size class,
/// its run of pages, or a bootstrap block's size); 0 for null or a
/// pointer this allocator does not know.
///
/// # Safety
/// `p` is null or a live block of this allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    let Some(nn) = NonNull::new(p.cast::<u8>()) else {
        return 0;
    };
    if in_boot(p as usize) {
        // SAFETY: a bootstrap block: its header holds its size.
        return unsafe { boot_size(p as usize) };
    }
    KMALLOC
        .get()
        .and_then(|k| k.usable_size_of(nn).ok())
        .unwrap_or(0)
}
