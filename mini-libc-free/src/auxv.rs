//! `getauxval` for aarch64: compiler-builtins' outline atomics reference it
//! to detect LSE atomics. Answered from the auxv rustix recorded at start.

const AT_HWCAP: u64 = 16;
const AT_HWCAP2: u64 = 26;

#[no_mangle]
pub extern "C" fn getauxval(kind: u64) -> u64 {
    let (hwcap, hwcap2) = rustix::param::linux_hwcap();
    match kind {
        AT_HWCAP => hwcap as u64,
        AT_HWCAP2 => hwcap2 as u64,
        _ => 0,
    }
}
