//! PID 1 must never return: a panic logs where it happened and then halts,
//! reboots or powers off as the kernel command line asked.

use core::sync::atomic::{AtomicU8, Ordering};

/// What PID 1 does after logging a panic (`kios.panic=` on the command line).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum PanicAction {
    Reboot = 0,
    Halt = 1,
    PowerOff = 2,
}

static PANIC_ACTION: AtomicU8 = AtomicU8::new(PanicAction::Reboot as u8);

/// Chooses what a panic in PID 1 does. Other processes always exit.
pub fn set_panic_action(action: PanicAction) {
    PANIC_ACTION.store(action as u8, Ordering::Relaxed);
}

// Only in the static musl executables: a host build links std's.
#[cfg(all(target_env = "musl", not(test)))]
#[panic_handler]
// rustc warns that `inline` is ignored on an exported symbol, yet LLVM does
// inline this handler into `core::panicking::panic_fmt`: the message argument
// goes dead there, and with it the core::fmt code every panic site kept
// alive (init: 65,400 -> 62,360 bytes amd64, 65,528 -> 62,656 arm64).
#[allow(unused_attributes)]
#[inline(always)]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // Only the location: formatting the message would pull core::fmt in.
    let location = info.location();
    panic_at(
        location.map_or("", |at| at.file()),
        location.map_or(0, |at| at.line()),
    )
}

#[cfg(all(target_env = "musl", not(test)))]
#[inline(never)]
#[cold]
fn panic_at(file: &str, line_number: u32) -> ! {
    use crate::kmsg::{Level, Line};
    use rustix::system::RebootCommand;

    let mut line = Line::new(Level::Crit);
    line.push("panic at ");
    line.push(file);
    line.push(":");
    line.push_u64(line_number.into());
    line.emit();
    if !rustix::process::getpid().is_init() {
        crate::process::exit(101);
    }
    let command = match PANIC_ACTION.load(Ordering::Relaxed) {
        1 => RebootCommand::Halt,
        2 => RebootCommand::PowerOff,
        _ => RebootCommand::Restart,
    };
    rustix::fs::sync();
    let _ = rustix::system::reboot(command);
    // The reboot was refused: PID 1 exiting would only panic the kernel.
    loop {
        rustix::event::pause();
    }
}
