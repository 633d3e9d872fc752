//! Signal masks and signalfd: PID 1 blocks the signals it cares about and
//! reads them as data from its event loop, so no handler ever runs
//! asynchronously.

use linux_raw_sys::general::{__NR_rt_sigprocmask, __NR_signalfd4, SIG_BLOCK, SIG_SETMASK};
use rustix::fd::{AsFd, FromRawFd, OwnedFd};
use rustix::io::Errno;

use crate::syscall::{check, syscall4};

/// The kernel's signal set for rt_sigprocmask and signalfd: one bit per
/// signal, 64 signals.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SigSet(u64);

impl SigSet {
    pub const EMPTY: SigSet = SigSet(0);

    /// The set plus `signal` (1..=64).
    pub const fn with(self, signal: u32) -> SigSet {
        SigSet(self.0 | 1 << (signal - 1))
    }

    pub const fn contains(self, signal: u32) -> bool {
        self.0 & (1 << (signal - 1)) != 0
    }
}

const SIGSET_BYTES: usize = core::mem::size_of::<u64>();

fn sigprocmask(how: u32, set: &SigSet) -> Result<(), Errno> {
    // SAFETY: `set` points to 8 readable bytes, matching the size argument;
    // the old-set pointer is NULL, which the kernel accepts.
    check(unsafe {
        syscall4(
            __NR_rt_sigprocmask,
            how as usize,
            set as *const SigSet as usize,
            0,
            SIGSET_BYTES,
        )
    })
    .map(drop)
}

/// Adds `set` to the blocked signals.
pub fn block(set: SigSet) -> Result<(), Errno> {
    sigprocmask(SIG_BLOCK, &set)
}

/// Replaces the blocked signals with `set` (a child unblocks all before exec).
pub fn set_mask(set: SigSet) -> Result<(), Errno> {
    sigprocmask(SIG_SETMASK, &set)
}

/// A non-blocking, close-on-exec signalfd for `set`.
pub fn signalfd(set: SigSet) -> Result<OwnedFd, Errno> {
    // SFD_CLOEXEC and SFD_NONBLOCK are defined as O_CLOEXEC and O_NONBLOCK.
    let flags = linux_raw_sys::general::O_CLOEXEC | linux_raw_sys::general::O_NONBLOCK;
    // SAFETY: fd -1 asks for a new signalfd; `set` points to 8 readable bytes,
    // matching the size argument.
    let fd = check(unsafe {
        syscall4(
            __NR_signalfd4,
            usize::MAX,
            &set as *const SigSet as usize,
            SIGSET_BYTES,
            flags as usize,
        )
    })?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reads the next pending signal's number from a signalfd, if any.
pub fn read_signal(fd: impl AsFd) -> Result<Option<u32>, Errno> {
    // struct signalfd_siginfo is 128 bytes; ssi_signo is its first field.
    let mut info = [0u8; 128];
    match rustix::io::read(fd, &mut info) {
        Ok(128) => Ok(Some(u32::from_ne_bytes([
            info[0], info[1], info[2], info[3],
        ]))),
        Ok(_) => Err(Errno::IO),
        Err(Errno::AGAIN) => Ok(None),
        Err(errno) => Err(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigset_bits_follow_the_kernel_layout() {
        let set = SigSet::EMPTY.with(1).with(17);
        assert_eq!(set, SigSet(1 | 1 << 16));
        assert!(set.contains(17));
        assert!(!set.contains(15));
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::*;

    #[test]
    fn signalfd_reads_without_blocking() {
        let set = SigSet::EMPTY.with(linux_raw_sys::general::SIGUSR2);
        block(set).unwrap();
        let fd = signalfd(set).unwrap();
        assert_eq!(read_signal(&fd), Ok(None));
    }
}
