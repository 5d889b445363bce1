//! The whole stack without std: [`KMALLOC`], the program's
//! `#[global_allocator]`, booted over [`RAM`] (a static 16 MiB region) on a
//! one-CPU platform, then exercised through `alloc`'s collections
//! ([`crate::collections`]), the kmalloc API ([`crate::api`]), the page
//! arena's `xalloc` ([`crate::pages`]) and a cache with a constructor and
//! destructor ([`crate::objcache`]). Prints the `::kmastat` report, then
//! checks that nothing is left allocated, that every cache and arena passes
//! its checker, and that reaping gives every slab back.

use core::alloc::{GlobalAlloc, Layout};
use core::ops::Range;

use kmalloc::{Config, Kmalloc, StaticKmalloc};
use kmem_magazine::ManualCpus;

use crate::check::{ensure, fail, ok};
use crate::rt::{self, outln};

/// The platform type: one CPU, whose guard is a spin lock (no threads here).
pub(crate) type Cpus = ManualCpus<1>;

/// The platform.
static CPUS: Cpus = ManualCpus::new();

/// Every `alloc` collection, `Box` and `format!` of the program allocates
/// here once [`run`] has booted it (and fails, returning null, before).
#[global_allocator]
static KMALLOC: StaticKmalloc<Cpus> = StaticKmalloc::new();

/// The kmalloc of this program.
pub(crate) type K = Kmalloc<'static, Cpus>;

/// Bytes of memory the stack is booted over.
const RAM_SIZE: usize = 16 << 20;

/// The memory under the whole stack, page aligned, in `.bss`.
#[repr(C, align(4096))]
struct Ram([u8; RAM_SIZE]);

/// Touched only through the stack booted over it in [`run`].
static mut RAM: Ram = Ram([0; RAM_SIZE]);

/// Live objects of the `kmalloc_<size>` class caches.
pub(crate) fn class_objects(k: &K) -> u64 {
    let mut live = 0;
    k.caches().stats(|s| {
        if s.name.as_str().starts_with("kmalloc_") {
            live += s.buf_in_use;
        }
    });
    live
}

/// Boots the stack, runs every check over it and prints the report.
///
/// Call once (the second call finds the allocator booted and fails).
pub(crate) fn run() {
    let layout = Layout::new::<u64>();
    // SAFETY: a valid non-zero layout; before `init` the allocator returns
    // null and hands out nothing.
    let early = unsafe { KMALLOC.alloc(layout) };
    ensure!(
        early.is_null() && KMALLOC.get().is_none(),
        "StaticKmalloc served {early:p} before init"
    );
    // SAFETY: `RAM` is static, writable and referenced nowhere else; `run`
    // is called once, so this is the only reference ever made to it, and it
    // is handed to the stack for good.
    let mem: &'static mut [u8] =
        unsafe { core::slice::from_raw_parts_mut((&raw mut RAM).cast::<u8>(), RAM_SIZE) };
    let start = mem.as_ptr() as usize;
    let ram = start..start + RAM_SIZE;
    outln!(
        "kmem-nostd-boot: kmalloc stack over [{start:#x}, +{RAM_SIZE:#x}) as #[global_allocator]"
    );
    let k = ok(
        KMALLOC.init(mem, &CPUS, &Config::default()),
        "StaticKmalloc::init",
    );
    ensure!(
        KMALLOC.get().is_some_and(|g| core::ptr::eq(g, k)),
        "StaticKmalloc::get() is not the allocator init returned"
    );
    check_all(k, "boot");

    crate::collections::run(k, &ram);
    check_all(k, "the collections");
    crate::api::run(k, &ram);
    check_all(k, "the kmalloc API checks");
    crate::pages::run(k, &ram);
    check_all(k, "the page arena's xalloc");
    crate::objcache::run(k, &ram);
    check_all(k, "the tagged cache");

    let (allocs, frees, _) = k.large_counts();
    ensure!(
        class_objects(k) == 0 && allocs == frees,
        "{} class objects and {} large allocations left at the end",
        class_objects(k),
        allocs - frees
    );
    outln!("kmem-nostd-boot: ::kmastat");
    if k.report(&mut rt::Fd(rt::STDOUT)).is_err() {
        fail(format_args!("Kmalloc::report failed"));
    }
    outln!();
    reap_all(k);
}

/// Runs the checker of every cache and of both arenas.
fn check_all(k: &K, after: &str) {
    k.caches().for_each(|c| {
        if let Err(err) = c.check() {
            fail(format_args!("{}: check() after {after}: {err}", c.name()));
        }
    });
    for arena in [k.caches().base(), k.pages()] {
        if let Err(err) = arena.check() {
            fail(format_args!(
                "{}: check() after {after}: {err}",
                arena.name()
            ));
        }
    }
}

/// Flushes this CPU's magazines and reaps every cache, then the page
/// arena's quantum caches. With nothing allocated, every size-class cache
/// gives all its slabs back, and so does `kpages` to the base arena. Two
/// passes: slabs the first pass frees land in the quantum caches'
/// magazines, which only the second can flush.
fn reap_all(k: &K) {
    let pages_before = k.pages().amt_total();
    let base_before = k.caches().base().amt_free();
    let mut freed = 0;
    for _ in 0..2 {
        k.caches().for_each(|c| {
            c.flush_current();
            freed += c.reap();
        });
        freed += k.pages().reap();
    }
    k.caches().stats(|s| {
        ensure!(
            !s.name.as_str().starts_with("kmalloc_") || s.memory_in_use == 0,
            "{}: {} bytes of slabs kept after a reap with nothing allocated",
            s.name.as_str(),
            s.memory_in_use
        );
    });
    ensure!(
        k.pages().amt_total() == 0,
        "kpages: {:#x} bytes of spans kept after a reap with nothing allocated",
        k.pages().amt_total()
    );
    check_all(k, "the final reap");
    outln!(
        "  reap: {freed:#x} bytes of slabs given back; kpages returned all {pages_before:#x} bytes, base free {base_before:#x} -> {:#x}",
        k.caches().base().amt_free()
    );
}

/// `addr` and the `size` bytes after it lie in the booted region.
pub(crate) fn in_ram(ram: &Range<usize>, addr: usize, size: usize) -> bool {
    addr >= ram.start && addr.checked_add(size).is_some_and(|end| end <= ram.end)
}
