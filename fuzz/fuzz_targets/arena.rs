//! cargo-fuzz target: `kmem_fuzz::arena::run` (see crates/fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmem_fuzz::arena::run(data));
