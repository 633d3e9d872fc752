//! kiOS's PID 1. The policy lives in the `kios_init` library; this binary
//! only wires it to the kernel through [`linux::Linux`].
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod linux;

use kios_init::init::Init;
use mini_libc_free::kmsg::{self, Level};

mini_libc_free::entry!(main);

fn main() -> ! {
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
