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
fn panic(info: &core::panic::PanicInfo) -> ! {
    use crate::kmsg::{Level, Line};
    use rustix::system::RebootCommand;

    // Only the location: formatting the message would pull core::fmt in.
    let mut line = Line::new(Level::Crit);
    line.push("panic at ");
    if let Some(location) = info.location() {
        line.push(location.file());
        line.push(":");
        line.push_u64(location.line().into());
    }
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
