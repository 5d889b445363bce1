//! cargo-fuzz target: `kmem_fuzz::caches::run` (see crates/fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmem_fuzz::caches::run(data));
