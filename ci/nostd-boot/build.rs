//! Link arguments for the freestanding executable, applied to the binary
//! only (a build script, like this one, still links against std and libc):
//!
//! - `-nostartfiles -nostdlib`: no crt1.o/crti.o and no libc or libgcc; the
//!   program brings its own `_start` and `mem*` functions.
//! - `-static`: no dynamic loader (`PT_INTERP`); the kernel jumps straight to
//!   `_start`.
//! - `-no-pie`: rustc asks for a position-independent executable, which with
//!   `-static` becomes a static PIE that must relocate itself before running
//!   any Rust code. A fixed-address executable needs no relocation at all;
//!   `-no-pie` comes after rustc's `-pie` and so wins.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
