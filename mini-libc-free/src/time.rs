//! The boot clock by a plain system call. rustix's `clock_gettime` goes
//! through the vDSO, whose lookup (parsing the vDSO's ELF tables) is
//! 1.5 KB of code in the init; PID 1 reads the clock a few times per event,
//! where the syscall's cost does not matter.

use linux_raw_sys::general::{__NR_clock_gettime, __kernel_timespec, CLOCK_BOOTTIME};

use crate::syscall::{check, syscall4};

/// Microseconds since boot, suspend included (CLOCK_BOOTTIME); 0 if the
/// kernel refused, which it does not for a valid clock and buffer.
pub fn boottime_us() -> u64 {
    let mut now = __kernel_timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one `struct __kernel_timespec` (the
    // 64-bit layout the syscall uses on both arches) to the pointer, which
    // points to a live, writable local of that type.
    let ret = unsafe {
        syscall4(
            __NR_clock_gettime,
            CLOCK_BOOTTIME as usize,
            &mut now as *mut __kernel_timespec as usize,
            0,
            0,
        )
    };
    match check(ret) {
        Ok(_) => (now.tv_sec as u64).wrapping_mul(1_000_000) + (now.tv_nsec as u64) / 1000,
        Err(_) => 0,
    }
}
