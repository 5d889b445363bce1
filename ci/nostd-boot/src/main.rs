//! kmem-nostd-boot: proof that the whole kmem stack (arena, object caches,
//! magazines, kmalloc) runs with neither std nor libc, kmalloc serving as
//! the program's `#[global_allocator]`.
//!
//! A `#![no_std] #![no_main]` static x86_64 Linux executable: [`rt`] supplies
//! `_start`, raw `write`/`exit_group` system calls and the panic handler,
//! [`mem`] the `mem*` functions the compiler calls. Two parts run in turn:
//!
//! 1. [`selftest`] boots a base arena over [`HEAP`], a static 1 MiB buffer,
//!    and exercises it: every allocation policy, a constrained `xalloc`, bad
//!    input, a child arena that imports its spans from the base
//!    ([`child`]), then object caches (slab and magazine layers) over the
//!    base arena on a one-CPU platform ([`slab`]).
//! 2. [`stack`] boots the whole stack over its own static 16 MiB region with
//!    `kmalloc::StaticKmalloc` installed as the `#[global_allocator]`, then
//!    runs `alloc`'s collections through it ([`collections`]), the kmalloc
//!    API directly ([`api`]: realloc in place and moved, large and
//!    over-aligned blocks, bad input), `xalloc` on the page arena
//!    ([`pages`]) and a user cache with a counting constructor and
//!    destructor ([`objcache`]); it prints the `::kmastat` report and checks
//!    that reaping gives the size classes' slabs back.
//!
//! It prints its progress, ends with `kmem-nostd-boot: all checks passed`
//! and exits 0; a failed check prints what failed ([`check`]) and exits 1, a
//! panic (an allocation failure included) exits 101.
//!
//! Built and run by `cargo xtask nostd`; by hand:
//!
//! ```text
//! cargo build --release --manifest-path ci/nostd-boot/Cargo.toml --target-dir target/nostd-boot
//! target/nostd-boot/release/kmem-nostd-boot
//! ```
#![no_std]
#![no_main]

extern crate alloc;

mod api;
mod check;
mod child;
mod collections;
mod mem;
mod objcache;
mod pages;
mod rt;
mod selftest;
mod slab;
mod stack;

/// Bytes of memory the base arena manages.
const HEAP_SIZE: usize = 1 << 20;

/// The memory under the base arena, page aligned. It lives in `.bss`, so the
/// kernel hands it to us zeroed and it costs nothing in the file.
#[repr(C, align(4096))]
struct Heap([u8; HEAP_SIZE]);

/// The only memory the program allocates from. Touched only through the
/// base arena, which takes ownership of it in [`selftest::run`].
static mut HEAP: Heap = Heap([0; HEAP_SIZE]);

/// Called by `_start`; runs both parts and exits with the verdict.
extern "C" fn boot_main() -> ! {
    // Taking the address creates no reference, so no aliasing rules apply
    // until the arena is handed the range.
    let heap = (&raw mut HEAP) as usize;
    // SAFETY: `HEAP` is static (lives forever), writable, 4096-aligned by
    // its type, and referenced nowhere else; `boot_main` runs once, so the
    // range is handed over exactly once.
    unsafe { selftest::run(heap, HEAP_SIZE) };
    stack::run();
    rt::outln!("kmem-nostd-boot: all checks passed");
    rt::exit(0)
}
