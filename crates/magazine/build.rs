//! Declares the `loom` cfg, under which the crate builds on loom's
//! primitives for the models in `tests/loom.rs` (`cargo xtask loom`), so
//! that rustc's check of cfg names knows it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
