//! kiOS's PID 1. The policy lives in the `kios_init` library; this binary
//! only wires it to the kernel through [`linux::Linux`].
//!
//! PID 1 is a static musl executable (see .cargo/config.toml). Built for
//! the host (`cargo clippy --all-targets`, `cargo test --workspace`) the
//! bin is an empty program, so the workspace needs no target flags there.
#![cfg_attr(target_env = "musl", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_env = "musl")]
mod linux;

#[cfg(target_env = "musl")]
mini_libc_free::entry!(pid1::main);

#[cfg(not(target_env = "musl"))]
fn main() {}

#[cfg(target_env = "musl")]
mod pid1 {
    use crate::linux;
    use kios_init::init::Init;
    use mini_libc_free::kmsg::{self, Level};

    pub fn main() -> ! {
        kmsg::set_ident(kios_abi::timeline::INIT_IDENT);
        if !rustix::process::getpid().is_init() {
            kmsg::write(Level::Err, "kios-init runs only as PID 1");
            mini_libc_free::process::exit(1);
        }
        match linux::Linux::new() {
            Ok(sys) => {
                let mut init = Init::new(sys);
                init.boot();
                init.run();
            }
            Err(errno) => {
                mini_libc_free::kmsg!(
                    Level::Crit,
                    "event loop setup failed: errno {}",
                    errno.raw_os_error()
                );
            }
        }
        // Only reached when the kernel refused to power off: PID 1 must not exit.
        loop {
            rustix::event::pause();
        }
    }
}
