//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`: the compiler emits
//! calls to these for copies, zeroing and comparisons, and without libc (or
//! compiler-builtins' `mem` feature, which is off for `*-linux-gnu`) nothing
//! else defines them.
//!
//! Each is a byte loop over volatile accesses. Volatile keeps LLVM from
//! recognising the loop as the very idiom it implements and compiling it
//! into a call to itself (infinite recursion); speed does not matter here.

use core::ptr::{read_volatile, write_volatile};

/// Copies `n` bytes from `src` to `dst`; the ranges must not overlap.
///
/// # Safety
///
/// - `src` must be valid for reads and `dst` for writes of `n` bytes;
/// - the two ranges must not overlap (use [`memmove`] otherwise).
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`, and the caller guarantees both ranges are valid
        // for `n` bytes.
        unsafe { write_volatile(dst.add(i), read_volatile(src.add(i))) };
        i += 1;
    }
    dst
}

/// Copies `n` bytes from `src` to `dst`; the ranges may overlap.
///
/// # Safety
///
/// - `src` must be valid for reads and `dst` for writes of `n` bytes.
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) {
        // Forward: each byte is read before any write can reach it.
        let mut i = 0;
        while i < n {
            // SAFETY: `i < n`, and both ranges are valid for `n` bytes.
            unsafe { write_volatile(dst.add(i), read_volatile(src.add(i))) };
            i += 1;
        }
    } else {
        // Backward, for a destination above the source.
        let mut i = n;
        while i > 0 {
            i -= 1;
            // SAFETY: `i < n`, and both ranges are valid for `n` bytes.
            unsafe { write_volatile(dst.add(i), read_volatile(src.add(i))) };
        }
    }
    dst
}

/// Sets `n` bytes at `dst` to the low byte of `c`.
///
/// # Safety
///
/// - `dst` must be valid for writes of `n` bytes.
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let byte = c as u8;
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`, and the caller guarantees `dst` is valid for `n`
        // bytes.
        unsafe { write_volatile(dst.add(i), byte) };
        i += 1;
    }
    dst
}

/// Compares `n` bytes as unsigned: negative, zero or positive as `a` sorts
/// before, equal to or after `b`.
///
/// # Safety
///
/// - `a` and `b` must both be valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`, and both ranges are valid for `n` bytes.
        let (x, y) = unsafe { (read_volatile(a.add(i)), read_volatile(b.add(i))) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Zero if the `n` bytes at `a` and `b` are equal, non-zero otherwise.
///
/// # Safety
///
/// - `a` and `b` must both be valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub(crate) unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's obligations are `memcmp`'s.
    unsafe { memcmp(a, b, n) }
}
