//! `/proc/self/mountinfo` (`storage::mountinfo::mounts_children_first`),
//! and the shutdown's `unmount_all` over it: absolute mount points of at
//! most 256 bytes, a cut-short read losing only its last line, and only
//! absolute paths unmounted.
#![no_main]

use kios_fuzz::FuzzSys;
use kios_init::shutdown;
use kios_init::storage::mountinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole: Vec<_> = mountinfo::mounts_children_first(data, false).collect();
    for mount in &whole {
        assert!(
            mount.point.starts_with('/') && mount.point.len() <= 256,
            "{mount:?}"
        );
        let _ = mount.is_remote();
    }
    let cut: Vec<_> = mountinfo::mounts_children_first(data, true).collect();
    assert!(cut.len() <= whole.len());
    // What a cut-short read keeps are the whole read's mounts, less the last line's.
    assert!(
        whole.ends_with(&cut) || whole[1..].ends_with(&cut) || cut.is_empty(),
        "{cut:?} of {whole:?}"
    );

    let mut sys = FuzzSys::new();
    sys.file("/proc/self/mountinfo", data);
    // Busy mounts: unmounts fail by the first byte's pattern.
    sys.fail_pattern = data
        .first()
        .map_or(0, |&b| u64::from(b) * 0x0101_0101_0101_0101);
    shutdown::unmount_all(&mut sys);
});
