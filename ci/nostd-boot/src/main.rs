//! kmem-nostd-boot: proof that the kmem arena and object caches run with
//! neither std nor libc.
//!
//! A `#![no_std] #![no_main]` static x86_64 Linux executable: [`rt`] supplies
//! `_start`, raw `write`/`exit_group` system calls and the panic handler,
//! [`mem`] the `mem*` functions the compiler calls, and [`selftest`] boots a
//! base arena over [`HEAP`], a static 1 MiB buffer, and exercises it: every
//! allocation policy, a constrained `xalloc`, bad input, and a child arena
//! that imports its spans from the base; then object caches (slab and
//! magazine layers) over the base arena on a one-CPU platform. It prints its progress, ends with
//! `kmem-nostd-boot: all checks passed` and exits 0; a failed check prints
//! what failed and exits 1, a panic exits 101.
//!
//! Built and run by `cargo xtask nostd`; by hand:
//!
//! ```text
//! cargo build --release --manifest-path ci/nostd-boot/Cargo.toml --target-dir target/nostd-boot
//! target/nostd-boot/release/kmem-nostd-boot
//! ```
#![no_std]
#![no_main]

mod check;
mod child;
mod mem;
mod rt;
mod selftest;
mod slab;

/// Bytes of memory the base arena manages.
const HEAP_SIZE: usize = 1 << 20;

/// The memory under the base arena, page aligned. It lives in `.bss`, so the
/// kernel hands it to us zeroed and it costs nothing in the file.
#[repr(C, align(4096))]
struct Heap([u8; HEAP_SIZE]);

/// The only memory the program allocates from. Touched only through the
/// base arena, which takes ownership of it in [`selftest::run`].
static mut HEAP: Heap = Heap([0; HEAP_SIZE]);

/// Called by `_start`; runs the self-test and exits with its verdict.
extern "C" fn boot_main() -> ! {
    // Taking the address creates no reference, so no aliasing rules apply
    // until the arena is handed the range.
    let heap = (&raw mut HEAP) as usize;
    // SAFETY: `HEAP` is static (lives forever), writable, 4096-aligned by
    // its type, and referenced nowhere else; `boot_main` runs once, so the
    // range is handed over exactly once.
    unsafe { selftest::run(heap, HEAP_SIZE) };
    rt::outln!("kmem-nostd-boot: all checks passed");
    rt::exit(0)
}
