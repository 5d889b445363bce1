//! How a check fails: print what failed and exit 1. Shared by every
//! self-test module.

use core::fmt;

use crate::rt::{self, outln};

/// Prints the failed check and exits 1.
pub(crate) fn fail(what: fmt::Arguments<'_>) -> ! {
    outln!("kmem-nostd-boot: check failed: {what}");
    rt::exit(1)
}

/// Fails with the formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            $crate::check::fail(format_args!($($what)+))
        }
    };
}
pub(crate) use ensure;

/// The value of `result`, or a failure naming `what` and the error.
pub(crate) fn ok<T, E: fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => fail(format_args!("{what}: {err}")),
    }
}
