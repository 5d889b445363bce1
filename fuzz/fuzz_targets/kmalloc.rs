//! cargo-fuzz target: `kmem_fuzz::kmalloc::run` (see crates/fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmem_fuzz::kmalloc::run(data));
