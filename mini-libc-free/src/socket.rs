//! A socket peer's credentials. rustix's `socket_peercred` checks the
//! returned length with `assert_eq!`, whose formatting code cost the init
//! 490 bytes; here a short answer is an error.

use linux_raw_sys::general::__NR_getsockopt;
use linux_raw_sys::net::{SOL_SOCKET, SO_PEERCRED};
use rustix::fd::{AsFd, AsRawFd};
use rustix::io::Errno;

use crate::syscall::{check, syscall5};

/// The uid of the process at the other end of a connected Unix socket,
/// as the kernel recorded it at connect time (SO_PEERCRED).
pub fn peer_uid(socket: impl AsFd) -> Result<u32, Errno> {
    // struct ucred: pid, uid, gid.
    let mut credentials = [0u32; 3];
    let mut len = core::mem::size_of_val(&credentials) as u32;
    // SAFETY: getsockopt writes at most `len` bytes to the buffer, which is
    // a live local of exactly that size, and writes the length it used to
    // `len`, a live local u32 (socklen_t).
    let ret = unsafe {
        syscall5(
            __NR_getsockopt,
            socket.as_fd().as_raw_fd() as usize,
            SOL_SOCKET as usize,
            SO_PEERCRED as usize,
            credentials.as_mut_ptr() as usize,
            &mut len as *mut u32 as usize,
        )
    };
    check(ret)?;
    if len as usize != core::mem::size_of_val(&credentials) {
        return Err(Errno::INVAL);
    }
    Ok(credentials[1])
}
