//! The runtime a libc would otherwise provide, for x86_64 Linux: the `_start`
//! entry point, the two raw system calls the program needs (`write`,
//! `exit_group`), a `core::fmt::Write` adapter over file descriptors, the
//! panic handler, and the two unwinding symbols the precompiled `core` and
//! `alloc` name but never reach (`rust_eh_personality`, `_Unwind_Resume`).
//! All of the program's assembly is here; the other unsafe code touches
//! memory the allocators handed out.

use core::arch::{asm, naked_asm};
use core::fmt::{self, Write};
use core::panic::PanicInfo;

/// Linux x86_64 system call number of `write(2)`.
const SYS_WRITE: usize = 1;
/// Linux x86_64 system call number of `exit_group(2)`.
const SYS_EXIT_GROUP: usize = 231;

/// Standard output.
pub(crate) const STDOUT: usize = 1;
/// Standard error.
pub(crate) const STDERR: usize = 2;

/// Exit status after a panic (as a std program's).
const PANIC_STATUS: i32 = 101;

/// The process entry point. The kernel starts us with `rsp` pointing at
/// `argc` and 16-byte aligned, with no return address; clear the frame
/// pointer (marking the outermost frame), realign the stack defensively and
/// call [`crate::boot_main`] the way the System V ABI expects (the `call`
/// leaves `rsp` at 8 mod 16 on entry). `boot_main` never returns; `ud2`
/// traps if it ever did.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    naked_asm!(
        "xor ebp, ebp",
        "and rsp, -16",
        "call {main}",
        "ud2",
        main = sym crate::boot_main,
    )
}

/// `write(fd, buf)`, retried until everything is written or the kernel
/// reports an error (then the rest is dropped: there is nowhere to report it).
pub(crate) fn write_all(fd: usize, mut buf: &[u8]) {
    while !buf.is_empty() {
        let ret: isize;
        // `syscall` clobbers only `rcx` and `r11` (declared) and `rax`.
        // SAFETY: `write(2)` reads `buf.len()` bytes from `buf.as_ptr()`, valid
        // for the call (the slice); it writes no memory of ours.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_WRITE => ret,
                in("rdi") fd,
                in("rsi") buf.as_ptr(),
                in("rdx") buf.len(),
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack, readonly),
            );
        }
        match usize::try_from(ret) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf = &buf[n.min(buf.len())..],
        }
    }
}

/// Ends the process (all threads, of which there is one) with `status`.
pub(crate) fn exit(status: i32) -> ! {
    // SAFETY: `exit_group(2)` takes an integer and does not return, so no
    // memory of ours is touched and no Rust state is left half-updated in a
    // way anyone could observe.
    unsafe {
        asm!(
            "syscall",
            in("rax") SYS_EXIT_GROUP,
            in("rdi") status as isize,
            options(noreturn, nostack),
        );
    }
}

/// A `core::fmt::Write` sink for a file descriptor.
pub(crate) struct Fd(pub(crate) usize);

impl Write for Fd {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_all(self.0, s.as_bytes());
        Ok(())
    }
}

/// Prints a formatted line on standard output.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::rt::Fd($crate::rt::STDOUT), $($arg)*);
    }};
}
pub(crate) use outln;

/// Prints the panic message on standard error and exits with status 101.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let _ = writeln!(Fd(STDERR), "kmem-nostd-boot: {info}");
    exit(PANIC_STATUS)
}

/// The unwinding personality routine. Everything here is built with
/// `panic = "abort"`, so nothing ever unwinds and this is never called; but
/// the precompiled `core` is built for unwinding and its unwind tables name
/// this symbol, so the link needs a definition.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// Resumes unwinding after a landing pad. The precompiled `alloc` is built
/// for unwinding, so its landing pads (in `format!` and `to_uppercase`, for
/// instance) call this; with `panic = "abort"` nothing ever unwinds and no
/// landing pad runs, but the link needs a definition. Should one ever be
/// reached, the process ends as after a panic.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
extern "C" fn _Unwind_Resume(_exception: *mut core::ffi::c_void) -> ! {
    write_all(STDERR, b"kmem-nostd-boot: _Unwind_Resume called\n");
    exit(PANIC_STATUS)
}
