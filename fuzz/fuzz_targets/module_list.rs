//! The module lists (`/etc/kios/modules`, `/etc/kios/modules-late`), read
//! by the boot itself: `Init::boot` over a stand-in kernel whose lists are
//! the input (the same bytes for both).
#![no_main]

use kios_abi::image::{LATE_MODULE_LIST, MODULE_LIST};
use kios_fuzz::FuzzSys;
use kios_init::init::Init;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sys = FuzzSys::new();
    sys.file("/proc/cmdline", b"console=ttyS0 kios.data=none\n");
    sys.file(MODULE_LIST, data);
    sys.file(LATE_MODULE_LIST, data);
    let mut init = Init::new(sys);
    init.boot();
});
