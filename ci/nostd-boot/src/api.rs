//! The kmalloc API itself: `alloc_zeroed` and `realloc` (in place within a
//! class, moved across classes and into page runs), large and over-aligned
//! allocations, and bad input answered with typed errors.

use core::alloc::Layout;
use core::ops::Range;
use core::ptr::NonNull;

use kmalloc::{AllocError, FreeError};

use crate::check::{ensure, fail, ok};
use crate::rt::outln;
use crate::stack::{in_ram, K};

/// The layout, or a failure (the constants below are all valid).
fn layout(size: usize, align: usize) -> Layout {
    ok(
        Layout::from_size_align(size, align),
        "Layout::from_size_align",
    )
}

/// The `len` bytes at `p`.
///
/// # Safety
/// `p` is a live allocation of at least `len` bytes, not otherwise borrowed.
unsafe fn bytes<'a>(p: NonNull<u8>, len: usize) -> &'a mut [u8] {
    // SAFETY: the caller's guarantee.
    unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len) }
}

/// Fills `buf` with a pattern seeded by `seed`.
fn fill(buf: &mut [u8], seed: u8) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
}

/// True when `buf` still holds the pattern seeded by `seed`.
fn holds(buf: &[u8], seed: u8) -> bool {
    buf.iter()
        .enumerate()
        .all(|(i, &b)| b == seed.wrapping_add(i as u8))
}

/// Frees `p`, which must succeed.
///
/// # Safety
/// `p` came from `k` with `layout` and is not used afterwards.
unsafe fn free(k: &K, p: NonNull<u8>, layout: Layout) {
    // SAFETY: the caller's guarantee.
    ok(unsafe { k.free(p, layout) }, "Kmalloc::free");
}

/// Runs the API checks.
pub(crate) fn run(k: &K, ram: &Range<usize>) {
    realloc_paths(k, ram);
    large_and_aligned(k, ram);
    bad_input(k);
}

/// `alloc_zeroed` from a class, `realloc` in place within the class, moved
/// to a larger class, then into a page run, keeping the contents.
fn realloc_paths(k: &K, ram: &Range<usize>) {
    let small = layout(200, 8);
    let p = ok(k.alloc_zeroed(small), "alloc_zeroed(200)");
    ensure!(
        in_ram(ram, p.as_ptr() as usize, 200),
        "alloc_zeroed(200) = {p:p}, outside the booted region"
    );
    // SAFETY: 200 bytes, just allocated.
    let buf = unsafe { bytes(p, 200) };
    ensure!(buf.iter().all(|&b| b == 0), "alloc_zeroed(200): not zeroed");
    fill(buf, 1);
    ensure!(
        k.usable_size(small) == Some(208),
        "usable_size(200) = {:?}, expected the class 208",
        k.usable_size(small)
    );
    // SAFETY: allocated above with `small`; the old pointer is not used after.
    let q = ok(unsafe { k.realloc(p, small, 208) }, "realloc(200 -> 208)");
    ensure!(q == p, "realloc within class 208 moved {p:p} to {q:p}");
    // SAFETY: 200 of its 208 bytes were filled above.
    ensure!(holds(unsafe { bytes(q, 200) }, 1), "realloc(208): contents");
    // SAFETY: allocated with size 208 now; the old pointer is not used after.
    let r = ok(
        unsafe { k.realloc(q, layout(208, 8), 1000) },
        "realloc(208 -> 1000)",
    );
    ensure!(r != q, "realloc to another class stayed at {q:p}");
    // SAFETY: the first 200 bytes were copied from the old block.
    let kept = holds(unsafe { bytes(r, 200) }, 1);
    ensure!(kept, "realloc(1000): contents");
    // SAFETY: 1000 bytes; now allocated with size 1000.
    let s = ok(
        unsafe { k.realloc(r, layout(1000, 8), 100_000) },
        "realloc(1000 -> 100000)",
    );
    ensure!(
        k.pages().contains(s.as_ptr() as usize, 100_000),
        "realloc(100000) = {s:p}, not in the page arena"
    );
    // SAFETY: the first 200 bytes were copied along.
    let kept = holds(unsafe { bytes(s, 200) }, 1);
    ensure!(kept, "realloc(100000): contents");
    // SAFETY: allocated with size 100000 by the last realloc.
    unsafe { free(k, s, layout(100_000, 8)) };
    outln!("  realloc: 200 in place to 208, then {q:p} -> {r:p} -> {s:p} (pages)");
}

/// Large allocations (page runs, zeroed on request, dirtied first) and
/// over-aligned ones, from a class (256) and from the page arena (8 KiB,
/// 64 KiB).
fn large_and_aligned(k: &K, ram: &Range<usize>) {
    let (allocs0, frees0, _) = k.large_counts();
    let big = layout(96 << 10, 8);
    let p = ok(k.alloc(big), "alloc(96 KiB)");
    ensure!(
        in_ram(ram, p.as_ptr() as usize, big.size())
            && k.pages().contains(p.as_ptr() as usize, big.size()),
        "alloc(96 KiB) = {p:p}, not in the page arena"
    );
    // SAFETY: 96 KiB, just allocated.
    fill(unsafe { bytes(p, big.size()) }, 9);
    // SAFETY: allocated above with `big`.
    unsafe { free(k, p, big) };
    let z = ok(k.alloc_zeroed(big), "alloc_zeroed(96 KiB)");
    // SAFETY: 96 KiB, just allocated.
    let zeroed = unsafe { bytes(z, big.size()) }.iter().all(|&b| b == 0);
    ensure!(zeroed, "alloc_zeroed(96 KiB) at {z:p}: not zeroed");
    // SAFETY: allocated above with `big`.
    unsafe { free(k, z, big) };

    let mut held = [(NonNull::dangling(), layout(1, 1)); 4];
    for (slot, (size, align)) in held.iter_mut().zip([
        (24, 256),
        (100, 8 << 10),
        (1000, 64 << 10),
        (64 << 10, 64 << 10),
    ]) {
        let l = layout(size, align);
        let p = ok(k.alloc(l), "over-aligned alloc");
        let addr = p.as_ptr() as usize;
        ensure!(
            addr.is_multiple_of(align) && in_ram(ram, addr, size),
            "alloc({size}, align {align:#x}) = {addr:#x}: misaligned or outside the region"
        );
        // SAFETY: `size` bytes, just allocated.
        fill(unsafe { bytes(p, size) }, size as u8);
        *slot = (p, l);
    }
    for (p, l) in held {
        // SAFETY: each filled above and not freed yet.
        let intact = holds(unsafe { bytes(p, l.size()) }, l.size() as u8);
        ensure!(intact, "over-aligned block at {p:p} overwritten");
        // SAFETY: allocated above with `l`.
        unsafe { free(k, p, l) };
    }
    let (allocs, frees, _) = k.large_counts();
    ensure!(
        allocs - allocs0 == 5 && frees - frees0 == 5,
        "large counts moved by {}/{}, expected 5/5",
        allocs - allocs0,
        frees - frees0
    );
    outln!("  large: 96 KiB (zeroed after reuse); aligned: 256 B, 8 KiB, 64 KiB x2");
}

/// Bad input: each refused with its typed error, nothing changed.
fn bad_input(k: &K) {
    let (allocs0, frees0, fails0) = k.large_counts();
    ensure!(
        k.alloc(layout(0, 8)) == Err(AllocError::ZeroSize),
        "alloc of zero bytes was not refused with ZeroSize"
    );
    ensure!(
        k.alloc(layout(isize::MAX as usize - 7, 8)) == Err(AllocError::TooLarge),
        "alloc of isize::MAX bytes was not refused with TooLarge"
    );
    ensure!(
        k.alloc(layout(1 << 30, 8)) == Err(AllocError::Exhausted),
        "alloc of 1 GiB from 16 MiB was not refused with Exhausted"
    );
    let l = layout(40 << 10, 8);
    let p = ok(k.alloc(l), "alloc(40 KiB)");
    // SAFETY: `p` is live; a zero-size free is refused before any use.
    let zero = unsafe { k.free(p, layout(0, 8)) };
    ensure!(
        zero == Err(FreeError::ZeroSize {
            addr: p.as_ptr() as usize
        }),
        "free with a zero-size layout: {zero:?}"
    );
    // SAFETY: `p` is live; a zero-size realloc is refused before any use.
    let resized = unsafe { k.realloc(p, l, 0) };
    ensure!(
        resized == Err(AllocError::ZeroSize),
        "realloc to 0: {resized:?}"
    );
    // SAFETY: allocated above with `l`.
    unsafe { free(k, p, l) };
    // SAFETY: deliberately a double free; the page arena checks large
    // frees against its allocated segments and refuses it.
    let again = unsafe { k.free(p, l) };
    let Err(FreeError::Pages { addr, .. }) = again else {
        fail(format_args!(
            "large double free: {again:?}, expected FreeError::Pages"
        ));
    };
    ensure!(
        addr == p.as_ptr() as usize,
        "double free reported {addr:#x}"
    );
    let (allocs, frees, fails) = k.large_counts();
    ensure!(
        (allocs - allocs0, frees - frees0, fails - fails0) == (1, 1, 1),
        "large counts moved by {}/{}/{}, expected 1/1/1",
        allocs - allocs0,
        frees - frees0,
        fails - fails0
    );
    outln!(
        "  bad input refused: zero size, overflow, exhaustion, \
         zero-size free and realloc, large double free"
    );
}
