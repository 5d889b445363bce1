//! AddressSanitizer builds only (`cargo xtask sanitize`: `-Zsanitizer=address
//! --cfg kmem_asan`): a use after free inside the managed memory is
//! reported. Each case runs in a child process (this test binary again,
//! with `KMEM_ASAN_CASE` set), which must die with a `use-after-poison`
//! report; the parent checks that it did.
#![cfg(kmem_asan)]

mod common;

use core::alloc::Layout;
use std::process::Command;

use common::with_kmalloc;

/// Runs `case` in a child process and asserts AddressSanitizer stopped it.
fn reported(case: &str, test: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("KMEM_ASAN_CASE", case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{case}: the child survived:\n{stderr}"
    );
    assert!(
        stderr.contains("use-after-poison"),
        "{case}: no use-after-poison report:\n{stderr}"
    );
}

/// In the child: the bad access. In the parent: runs the child.
fn case(name: &str, test: &str, bad: impl FnOnce()) {
    if std::env::var("KMEM_ASAN_CASE").as_deref() == Ok(name) {
        bad();
        // Only reached if the access went unnoticed.
        std::process::exit(0);
    }
    reported(name, test);
}

#[test]
fn write_to_a_freed_class_object() {
    case("class", "write_to_a_freed_class_object", || {
        with_kmalloc(16 << 20, |k| {
            let l = Layout::from_size_align(64, 8).unwrap();
            let p = k.alloc(l).unwrap();
            // SAFETY: allocated above (the bad access is the next one).
            unsafe { k.free(p, l) }.unwrap();
            // SAFETY: none: a use after free, in its magazine.
            unsafe { p.as_ptr().write_volatile(1) };
        });
    });
}

#[test]
fn read_of_freed_pages() {
    case("pages", "read_of_freed_pages", || {
        with_kmalloc(16 << 20, |k| {
            let l = Layout::from_size_align(256 << 10, 4096).unwrap();
            let p = k.alloc(l).unwrap();
            // SAFETY: allocated above (the bad access is the next one).
            unsafe { k.free(p, l) }.unwrap();
            // SAFETY: none: a read of pages back in the page arena.
            let _ = unsafe { p.as_ptr().add(4096).read_volatile() };
        });
    });
}

#[test]
fn write_to_memory_never_allocated() {
    case("unused", "write_to_memory_never_allocated", || {
        with_kmalloc(16 << 20, |k| {
            let l = Layout::from_size_align(8, 8).unwrap();
            let p = k.alloc(l).unwrap();
            // 8 MiB on: free memory of the base arena, never handed out.
            // SAFETY: none: a wild write into free fake RAM.
            unsafe { p.as_ptr().add(8 << 20).write_volatile(1) };
        });
    });
}

#[test]
fn allocated_memory_is_usable() {
    // The control: nothing is reported while objects are used properly.
    with_kmalloc(16 << 20, |k| {
        for size in [8, 64, 1000, 5000, 40_000, 300_000] {
            let l = Layout::from_size_align(size, 8).unwrap();
            let p = k.alloc(l).unwrap();
            // SAFETY: `size` bytes, ours.
            unsafe { p.as_ptr().write_bytes(7, size) };
            // SAFETY: allocated above.
            unsafe { k.free(p, l) }.unwrap();
        }
    });
}
