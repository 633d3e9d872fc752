//! The runtime that replaces libc for kiOS's freestanding binaries.
//!
//! It provides the process entry point (`_start` for x86_64 and aarch64),
//! argv and envp, the `mem*` symbols the compiler emits calls to, a panic
//! handler that logs to `/dev/kmsg` and never returns, a ufmt writer for
//! kmsg with log levels, and hand-rolled syscalls for what rustix has no
//! stable API for (fork, execve, signal masks, signalfd), plus two it has
//! whose rustix versions cost the init kilobytes (the boot clock and
//! SO_PEERCRED, see `time` and `socket`).
//!
//! # Safety
//!
//! All of kiOS's `unsafe` code lives in this crate. Every block names the
//! invariant it relies on in a `SAFETY:` comment. The invariants come in
//! three kinds:
//! - the kernel's process-start ABI (the stack layout `_start` receives),
//! - the kernel's syscall ABI (argument registers, negative errno returns),
//! - the process being single-threaded (PID 1 never creates threads), which
//!   makes `fork` and process-wide statics free of data races.
#![no_std]
// Interim: the per-module allowances are being written.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "aarch64", not(test)))]
mod auxv;
pub mod cstr;
pub mod kmsg;
#[cfg(not(test))]
mod mem;
mod panic;
pub mod process;
pub mod signal;
pub mod socket;
#[cfg(not(test))]
mod start;
mod syscall;
pub mod time;

pub use panic::{set_panic_action, PanicAction};
pub use rustix;

/// Names the function a binary runs after `_start`.
///
/// ```ignore
/// mini_libc_free::entry!(main);
/// fn main() -> ! { loop {} }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        // `_start` calls this symbol once argv, envp and auxv are recorded.
        #[allow(unsafe_code)]
        #[no_mangle]
        fn __mini_libc_free_main() -> ! {
            $main()
        }
    };
}
