//! Child processes that must not outlive the tools: the code the child
//! runs between fork and exec. The only `unsafe` in the tools is here.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::mount::{mount_change, MountPropagationFlags};
use rustix::process::{set_parent_process_death_signal, Signal};
use rustix::thread::{unshare_unsafe, UnshareFlags};

/// The child gets SIGKILL when the thread that spawned it ends, so a test
/// killed half-way leaks no process.
pub fn killed_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the child between fork and exec and
    // makes one async-signal-safe system call (prctl); it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            Ok(())
        })
    }
}

/// As [`killed_with_parent`], and in a mount namespace of its own whose
/// mounts never propagate to the host's (they die with the child).
pub fn killed_with_parent_in_private_mounts(command: &mut Command) -> &mut Command {
    // SAFETY: between fork and exec only async-signal-safe system calls
    // run (prctl, unshare, mount on a literal path); nothing is allocated.
    // unshare_unsafe is sound here: the child is single-threaded after fork.
    unsafe {
        command.pre_exec(|| {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            unshare_unsafe(UnshareFlags::NEWNS)?;
            mount_change(
                c"/",
                MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
            )?;
            Ok(())
        })
    }
}
