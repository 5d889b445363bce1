//! kmem's fuzz harness: each target decodes the fuzzer's bytes into a
//! bounded sequence of typed actions, runs them against one layer of the
//! stack, and checks every step against a model, panicking on the first
//! violation (libFuzzer turns the panic into a crash report).
//!
//! The harnesses are library code so that the cargo-fuzz targets in
//! `fuzz/` (`cargo xtask fuzz`) and ordinary tests call the same thing:
//! `tests/corpus.rs` replays the committed corpus (`fuzz/corpus/<target>/`,
//! and `fuzz/artifacts/<target>/` where fixed crashes are kept as
//! reproducers) and random inputs on every `cargo test`.
//!
//! - [`arena`]: a parent arena (IDs with spans added over time, or a
//!   self-sufficient base arena over fake RAM) and a child arena importing
//!   from it through a [`FailingSource`](kmem_physmem::faults::FailingSource);
//!   `add`, `alloc` (three policies), `xalloc` with every constraint (bad
//!   ones too), good and bad frees, `rescale_hash`, `reap`, `contains`, a
//!   refused `destroy`; mirrored in [`ArenaModel`](kmem_physmem::model::ArenaModel)
//!   (xalloc must never fail while the model finds a fitting range; bad
//!   input must return the typed error and change nothing).
//! - [`caches`]: object caches of every layout and flag (small, bufctl,
//!   `NOTOUCH` over an ID arena, `DEBUG`, `NOMAGAZINE`) on two manual CPUs,
//!   with counting constructors that fail on a schedule; canaries in live
//!   objects, no object handed out twice, bad frees on the caches that check
//!   them at once, destroy refused while objects are live, constructor and
//!   destructor balance.
//! - [`kmalloc`]: the booted stack over a `Vec<u8>`: `alloc`,
//!   `alloc_zeroed`, `realloc`, `free` with layouts up to 300 KiB and 64 KiB
//!   alignment, and the bad inputs that are safe to make (zero-size layouts,
//!   a double free or a wrong size of a page-backed block); blocks never
//!   overlap, honour their alignment, keep their contents.
//!
//! Inputs are bounded ([`MAX_ACTIONS`] actions, a few MiB of fake memory)
//! so one run takes milliseconds.
//!
//! Why `arbitrary` (beyond the few dependencies the library crates use): it
//! is what cargo-fuzz and libFuzzer's Rust bindings use to turn raw bytes
//! into typed values, and its derive keeps each action set one `enum`. It
//! is used here only, in the fuzz harness, on which no library crate
//! depends.
//!
//! ```
//! // Any bytes are a valid input; these are a few random ones.
//! kmem_fuzz::arena::run(&[7, 1, 42, 0, 9, 200, 3, 3, 17, 90]);
//! kmem_fuzz::caches::run(b"\x00\x01\x02\x10\x20\xff\x30\x04");
//! kmem_fuzz::kmalloc::run(b"kmalloc, please");
//! ```

pub mod arena;
pub mod caches;
mod input;
pub mod kmalloc;
mod ram;

pub use input::{Plan, MAX_ACTIONS};

/// The targets, by the names the cargo-fuzz binaries and corpus folders use.
pub const TARGETS: [&str; 3] = ["arena", "caches", "kmalloc"];

/// Runs the harness of `target` (one of [`TARGETS`]) on `data`.
///
/// # Panics
/// Panics on an unknown target, or when the harness finds a violation.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "arena" => arena::run(data),
        "caches" => caches::run(data),
        "kmalloc" => kmalloc::run(data),
        _ => panic!("kmem-fuzz: unknown target {target:?}"),
    }
}
