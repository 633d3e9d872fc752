//! The keys an evdev input device can send (`EVIOCGBIT`): rustix has no
//! evdev API.

use linux_raw_sys::general::__NR_ioctl;
use rustix::fd::{AsFd, AsRawFd};
use rustix::io::Errno;

use crate::syscall::{check, syscall4};

/// `EV_KEY` from `linux/input-event-codes.h`.
const EV_KEY: u32 = 1;

/// Fills `bits` with the device's key bitmap (bit N: key code N, bytes in
/// the order of the kernel's little-endian longs on x86_64 and aarch64);
/// returns how many bytes the kernel wrote.
pub fn key_bits(device: impl AsFd, bits: &mut [u8]) -> Result<usize, Errno> {
    // EVIOCGBIT(EV_KEY, len) = _IOC(_IOC_READ, 'E', 0x20 + EV_KEY, len).
    let len = bits.len().min(0x3fff) as u32;
    let request = (2 << 30) | (len << 16) | (u32::from(b'E') << 8) | (0x20 + EV_KEY);
    // SAFETY: EVIOCGBIT writes at most `len` bytes (encoded in the request)
    // to the pointer, a live buffer of at least that many bytes; the fourth
    // argument is unused by ioctl.
    let ret = unsafe {
        syscall4(
            __NR_ioctl,
            device.as_fd().as_raw_fd() as usize,
            request as usize,
            bits.as_mut_ptr() as usize,
            0,
        )
    };
    check(ret)
}
