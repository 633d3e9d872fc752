//! The runtime that replaces libc for kiOS's freestanding binaries.
//!
//! It provides the process entry point (`_start` for x86_64 and aarch64),
//! argv and envp, the `mem*` symbols the compiler emits calls to, a panic
//! handler that logs to `/dev/kmsg` and never returns, a ufmt writer for
//! kmsg with log levels, and hand-rolled syscalls for what rustix has no
//! stable API for (fork, execve, signal masks, signalfd, evdev key bits), plus two it has
//! whose rustix versions cost the init kilobytes (the boot clock and
//! SO_PEERCRED, see `time` and `socket`).
//!
//! # Safety
//!
//! All of the node binaries' `unsafe` code lives in this crate (the host
//! tools have one more module, `tools/src/host/child.rs`). Every block names the
//! invariant it relies on in a `SAFETY:` comment. The invariants come in
//! three kinds:
//! - the kernel's process-start ABI (the stack layout `_start` receives),
//! - the kernel's syscall ABI (argument registers, negative errno returns),
//! - the process being single-threaded (PID 1 never creates threads), which
//!   makes `fork` and process-wide statics free of data races.
//!
//! Only a static musl executable gets `_start`, the `mem*` symbols and the
//! panic handler: on the host (tests, or a build where std came in through
//! feature unification) they would clash with libc's and std's, so there
//! the crate is a plain library.
#![no_std]
// Unsafe only in the modules that allow it below.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "aarch64", target_env = "musl", not(test)))]
#[allow(unsafe_code)]
mod auxv;
#[allow(unsafe_code)]
pub mod cstr;
pub mod decimal;
pub mod errno;
#[allow(unsafe_code)]
pub mod evdev;
pub mod file;
#[allow(unsafe_code)]
pub mod kmsg;
#[cfg(all(target_env = "musl", not(test)))]
#[allow(unsafe_code)]
mod mem;
mod panic;
#[allow(unsafe_code)]
pub mod process;
#[allow(unsafe_code)]
pub mod signal;
#[allow(unsafe_code)]
pub mod socket;
#[cfg(all(target_env = "musl", not(test)))]
#[allow(unsafe_code)]
mod start;
#[allow(unsafe_code)]
mod syscall;
pub mod text;
#[allow(unsafe_code)]
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
