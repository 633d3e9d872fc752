//! The boot clock and the wall clock by a plain system call. rustix's
//! `clock_gettime` goes through the vDSO, whose lookup (parsing the vDSO's
//! ELF tables) is 1.5 KB of code in the init; PID 1 reads the clock a few
//! times per event, where the syscall's cost does not matter.

use linux_raw_sys::general::{
    __NR_clock_gettime, __kernel_timespec, CLOCK_BOOTTIME, CLOCK_REALTIME,
};

use crate::syscall::{check, syscall4};

/// The time on `clock`; zero if the kernel refused, which it does not for
/// a valid clock and buffer.
fn clock_gettime(clock: u32) -> __kernel_timespec {
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
            clock as usize,
            &mut now as *mut __kernel_timespec as usize,
            0,
            0,
        )
    };
    match check(ret) {
        Ok(_) => now,
        Err(_) => __kernel_timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    }
}

/// Microseconds since boot, suspend included (CLOCK_BOOTTIME).
pub fn boottime_us() -> u64 {
    let now = clock_gettime(CLOCK_BOOTTIME);
    (now.tv_sec as u64).wrapping_mul(1_000_000) + (now.tv_nsec as u64) / 1000
}

/// Whole seconds since the epoch on the wall clock (CLOCK_REALTIME).
pub fn realtime_secs() -> i64 {
    clock_gettime(CLOCK_REALTIME).tv_sec
}
