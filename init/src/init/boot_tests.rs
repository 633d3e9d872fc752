//! Host tests of the boot sequence, on the recording `Sys`.

use super::*;
use crate::init::testing::{booted, position, with_data_disk};
use crate::sys::recording::RecordingSys;

fn assert_root_sequence(sys: &RecordingSys, staged_by: &str) {
    let sequence = [
        staged_by,
        "chdir /run",
        "move . /",
        "chroot .",
        "chdir /",
        "readonly /",
    ];
    let mut at = position(sys, "mkdir /var");
    for call in sequence {
        let next = position(sys, call);
        assert!(next > at, "{call} out of order in {:#?}", sys.calls);
        at = next;
    }
    assert!(at < position(sys, "mount devtmpfs /dev"));
}

#[test]
fn the_erofs_root_image_becomes_the_read_only_root_before_anything_is_mounted() {
    let init = booted(RecordingSys::new());
    assert_root_sequence(init.sys(), "mount erofs /run flags=1 ");
    assert!(init.sys().calls_starting("bind").is_empty());
    assert!(!init.sys().logs.iter().any(|l| l.starts_with("Err:")));
}

#[test]
fn without_a_root_image_the_initramfs_is_bound_as_the_read_only_root() {
    for errno in [Errno::NOENT, Errno::NODEV] {
        let init = booted(RecordingSys::new().failing("mount erofs", errno));
        assert_root_sequence(init.sys(), "bind / /run");
        assert!(!init.sys().logs.iter().any(|l| l.starts_with("Err:")));
    }
}

#[test]
fn a_root_image_that_will_not_mount_is_reported_and_the_initramfs_boots() {
    let init = booted(RecordingSys::new().failing("mount erofs", Errno::INVAL));
    assert_root_sequence(init.sys(), "bind / /run");
    assert!(init.sys().logged(
        "Err: mounting /root.erofs failed: EINVAL (22), booting the initramfs as the root"
    ));
}

#[test]
fn mounts_have_tight_flags_and_root_is_shared_last() {
    let init = booted(RecordingSys::new());
    let sys = init.sys();
    let mounts = sys.calls_starting("mount ");
    assert_eq!(
        mounts,
        [
            "mount erofs /run flags=1 ",
            "mount devtmpfs /dev flags=10 mode=0755",
            "mount proc /proc flags=14 ",
            "mount sysfs /sys flags=14 ",
            "mount securityfs /sys/kernel/security flags=14 ",
            "mount cgroup2 /sys/fs/cgroup flags=14 nsdelegate",
            "mount devpts /dev/pts flags=10 newinstance,ptmxmode=0666,mode=0620",
            "mount tmpfs /dev/shm flags=14 mode=1777,size=10%",
            "mount tmpfs /run flags=6 mode=0755,size=20%",
            "mount tmpfs /tmp flags=6 mode=1777,size=10%",
            "mount tmpfs /var flags=0 mode=0755,size=50%",
            "mount overlay /etc flags=6 lowerdir=/etc,upperdir=/var/lib/kios/etc/upper,workdir=/var/lib/kios/etc/work",
            "mount overlay /opt/cni/bin flags=6 lowerdir=/opt/cni/bin,upperdir=/var/lib/kios/cni-bin/upper,workdir=/var/lib/kios/cni-bin/work",
            // For systemd-boot's LoaderBootCountPath (no EFI here: ENOENT).
            "mount efivarfs /sys/firmware/efi/efivars flags=15 ",
        ]
    );
    // Mounts made later under a shared mount are shared too.
    assert!(position(sys, "rshared /") > position(sys, "mount tmpfs /tmp"));
    assert!(position(sys, "open_kmsg") > position(sys, "mount devtmpfs /dev"));
}

#[test]
fn timeline_phases_are_logged_in_order() {
    let init = booted(RecordingSys::new());
    let phases: Vec<&str> = init
        .sys()
        .logs
        .iter()
        .filter_map(|line| line.strip_prefix("Notice: timeline "))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "pid1",
            "mounts_done",
            "runtime_exec",
            "runtime_ready",
            "kubelet_exec"
        ]
    );
}

#[test]
fn the_first_boot_step_runs_on_the_mounted_etc_before_the_hostname_and_the_runtime() {
    let init = booted(RecordingSys::new());
    let sys = init.sys();
    let step = position(sys, "spawn kios-firstboot /bin/kios-firstboot");
    assert!(position(sys, "mount overlay /etc") < step);
    let waited = position(
        sys,
        "wait_for_path /run/kios-firstboot.ran owner=101 timeout=30000",
    );
    assert!(step < waited && waited < position(sys, "spawn containerd"));
    assert!(waited < position(sys, "hostname"));
}

#[test]
fn a_first_boot_step_that_does_not_finish_is_killed_and_the_boot_goes_on() {
    let init = booted(RecordingSys::new().failing_exactly(
        "wait_for_path /run/kios-firstboot.ran owner=101 timeout=30000",
        Errno::TIMEDOUT,
    ));
    let sys = init.sys();
    assert!(sys.logged("Err: /bin/kios-firstboot did not finish: ETIMEDOUT (110), booting on"));
    assert!(position(sys, "kill 101 Kill") < position(sys, "spawn containerd"));
    assert!(sys.spawned().iter().any(|argv| argv[0] == "/bin/kubelet"));
}

#[test]
fn runtime_starts_first_and_the_kubelet_after_its_socket() {
    let init = booted(RecordingSys::new());
    let sys = init.sys();
    let runtime = position(sys, "spawn containerd /bin/containerd");
    let socket = position(
        sys,
        "wait_for_path /run/containerd/containerd.sock owner=102 timeout=30000",
    );
    let kubelet = position(sys, "spawn kubelet /bin/kubelet");
    assert!(runtime < socket && socket < kubelet);
    assert!(position(sys, "listen /run/system.sock") < runtime);
}

#[test]
fn a_runtime_that_never_gets_ready_still_leads_to_a_kubelet() {
    let sys = RecordingSys::new().failing("wait_for_path", Errno::TIMEDOUT);
    let init = booted(sys);
    assert!(init
        .sys()
        .logged("waiting for /run/containerd/containerd.sock failed: ETIMEDOUT"));
    assert!(init
        .sys()
        .spawned()
        .iter()
        .any(|argv| argv[0] == "/bin/kubelet"));
}

#[test]
fn each_failed_step_logs_one_line_and_the_boot_goes_on() {
    let sys = RecordingSys::new()
        .failing("mount erofs", Errno::NOENT)
        .failing("bind / /run", Errno::INVAL)
        .failing("mount securityfs", Errno::NODEV)
        .failing("netlink", Errno::PERM)
        .failing("hostname", Errno::PERM);
    let init = booted(sys);
    let errors: Vec<&String> = init
        .sys()
        .logs
        .iter()
        .filter(|l| l.starts_with("Err:"))
        .collect();
    assert_eq!(
        errors,
        [
            "Err: switching to a pivot_root-able root failed: EINVAL (22)",
            "Err: mounting /sys/kernel/security failed: ENODEV (19)",
            "Err: setting the hostname failed: EPERM (1)",
            "Err: bringing up lo failed: EPERM (1)",
        ]
    );
    // The first-boot step, the runtime and the kubelet.
    assert_eq!(init.sys().spawned().len(), 3);
}

#[test]
fn ipv6_disabled_is_tolerated_but_ipv4_forwarding_is_required() {
    let sys = RecordingSys::new()
        .failing("write /proc/sys/net/ipv6", Errno::NOENT)
        .failing("write /proc/sys/net/ipv4", Errno::ACCES);
    let init = booted(sys);
    assert!(init
        .sys()
        .logged("Info: /proc/sys/net/ipv6/conf/all/forwarding: not present"));
    assert!(init
        .sys()
        .logged("Err: setting /proc/sys/net/ipv4/ip_forward failed: EACCES (13)"));
}

#[test]
fn modules_load_in_list_order_and_failures_do_not_stop_the_boot() {
    let sys = RecordingSys::new()
        .with_file(MODULE_LIST, b"# order computed at build time\n/lib/modules/a.ko\n\n/lib/modules/missing.ko\n/lib/modules/b.ko\n\xff\xfe\n")
        .failing("finit_module /lib/modules/missing.ko", Errno::NOENT);
    let init = booted(sys);
    let sys = init.sys();
    assert_eq!(
        sys.calls_starting("finit_module"),
        [
            "finit_module /lib/modules/a.ko",
            "finit_module /lib/modules/missing.ko",
            "finit_module /lib/modules/b.ko"
        ]
    );
    assert!(sys.logged("loading module /lib/modules/missing.ko failed: ENOENT (2)"));
    assert!(sys.logged("skipped a line that is not UTF-8"));
    assert!(position(sys, "finit_module") < position(sys, "spawn containerd"));
}

#[test]
fn network_modules_load_after_the_kubelet_starts() {
    let sys = RecordingSys::new()
        .with_file(MODULE_LIST, b"/lib/modules/overlay.ko\n")
        .with_file(LATE_MODULE_LIST, b"/lib/modules/bridge.ko\n");
    let init = booted(sys);
    let sys = init.sys();
    assert!(
        position(sys, "finit_module /lib/modules/overlay.ko") < position(sys, "spawn containerd")
    );
    assert!(position(sys, "spawn kubelet") < position(sys, "finit_module /lib/modules/bridge.ko"));
}

#[test]
fn the_seeded_image_store_is_overlaid_after_the_modules_load() {
    let sys = RecordingSys::new()
        .with_file(MODULE_LIST, b"/lib/modules/overlay.ko\n")
        .failing("stat /usr/lib/kios/containerd", Errno::ISDIR);
    let init = booted(sys);
    let sys = init.sys();
    let overlay = position(sys, "mount overlay /var/lib/containerd");
    assert!(position(sys, "finit_module /lib/modules/overlay.ko") < overlay);
    assert!(position(sys, "mkdir /var/lib/.containerd/upper") < overlay);
    assert!(overlay < position(sys, "spawn containerd"));
    let without_seed = booted(RecordingSys::new());
    assert!(without_seed
        .sys()
        .calls_starting("mount overlay /var/lib/containerd")
        .is_empty());
    assert!(without_seed.sys().logged("no seeded image store"));
}

#[test]
fn the_data_partition_becomes_var_after_the_modules_and_before_etc_and_the_store() {
    let sys = with_data_disk(RecordingSys::new())
        .with_file(MODULE_LIST, b"/lib/modules/virtio_blk.ko\n")
        .failing("stat /usr/lib/kios/containerd", Errno::ISDIR);
    let init = booted(sys);
    let sys = init.sys();
    let var = position(sys, "mount ext4 /var flags=1024 ");
    assert!(position(sys, "finit_module /lib/modules/virtio_blk.ko") < var);
    assert!(var < position(sys, "mkdir /var/lib/kubelet 700"));
    assert!(var < position(sys, "mkdir /var/lib/kios/etc/upper 755"));
    assert!(
        position(sys, "mount overlay /etc") < position(sys, "mount overlay /var/lib/containerd")
    );
    assert!(position(sys, "mount overlay /var/lib/containerd") < position(sys, "spawn containerd"));
    assert!(sys.calls_starting("mount tmpfs /var").is_empty());
    assert!(sys.logged("Notice: data partition /dev/vda2 mounted on /var"));
    assert!(!sys.logged("ephemeral"));
}

#[test]
fn the_last_known_time_is_restored_from_the_data_partition_before_the_runtime_starts() {
    let mut sys = with_data_disk(RecordingSys::new())
        .with_modified(kios_abi::image::CLOCK_FILE, 1_749_723_630);
    sys.realtime_secs = 978_307_205;
    let init = booted(sys);
    let sys = init.sys();
    let var = position(sys, "mount ext4 /var flags=1024 ");
    let set = position(sys, "clock_settime 1749723630");
    assert_eq!(
        sys.calls[var + 1..=set],
        ["mtime /var/lib/kios/clock", "clock_settime 1749723630"]
    );
    assert!(set < position(sys, "watch_clock"));
    assert!(position(sys, "watch_clock") < position(sys, "spawn kios-firstboot"));
    assert!(sys.logged("Notice: clock set forward from 978307205 to 1749723630 "));

    let ephemeral = booted(RecordingSys::new());
    assert!(ephemeral.sys().calls_starting("mtime").is_empty());
    assert!(ephemeral.sys().calls_starting("watch_clock").is_empty());
}

#[test]
fn a_clock_that_cannot_be_watched_is_saved_at_shutdown_only() {
    let init = booted(with_data_disk(RecordingSys::new()).failing("watch_clock", Errno::MFILE));
    assert!(init.sys().logged(
        "Warning: watching the clock failed: EMFILE (24), the time is saved at shutdown only"
    ));
    assert!(position(init.sys(), "spawn containerd") > 0);
}

#[test]
fn each_clock_tick_saves_the_time() {
    let mut init = booted(with_data_disk(RecordingSys::new()));
    init.sys_mut().realtime_secs = 1_749_723_630;
    init.deliver(crate::sys::Event::ClockTick);
    assert_eq!(
        init.sys().calls.last().unwrap(),
        "touch /var/lib/kios/clock"
    );
    assert_eq!(
        init.sys().modified.get(kios_abi::image::CLOCK_FILE),
        Some(&1_749_723_630)
    );
}

#[test]
fn without_a_data_partition_the_node_says_it_is_ephemeral() {
    let init = booted(RecordingSys::new().with_dir("/sys/block", &["vda"]));
    let sys = init.sys();
    assert!(sys.logged("disk /dev/vda: reading its partition table failed: ENOENT (2), skipped"));
    assert!(sys.logged(
        "Notice: no data partition found; booting ephemeral: /var and /etc changes live in RAM"
    ));
    assert!(position(sys, "mount tmpfs /var") < position(sys, "mount overlay /etc"));
}

#[test]
fn a_data_partition_that_will_not_mount_is_reported_once_and_never_formatted() {
    let sys = with_data_disk(RecordingSys::new()).failing("mount ext4 /var", Errno::UCLEAN);
    let init = booted(sys);
    let sys = init.sys();
    let lines: Vec<&String> = sys
        .logs
        .iter()
        .filter(|l| l.contains("/dev/vda2"))
        .collect();
    assert_eq!(
        lines,
        ["Err: mounting data partition /dev/vda2 failed: EUCLEAN (117), not formatting it; booting ephemeral: /var and /etc changes live in RAM"]
    );
    assert!(sys
        .calls
        .contains(&"mount tmpfs /var flags=0 mode=0755,size=50%".to_string()));
    assert!(sys
        .calls_starting("spawn ")
        .iter()
        .all(|c| !c.contains("mkfs")));
    assert!(
        sys.calls_starting("spawn containerd").len() == 1,
        "the boot goes on"
    );
}

#[test]
fn a_named_data_device_that_never_appears_leaves_the_node_ephemeral() {
    let sys = RecordingSys::new()
        .with_file(
            "/proc/cmdline",
            b"kios.data=/dev/vdz1 kios.data_timeout=2\n",
        )
        .failing("wait_for_path /dev/vdz1", Errno::TIMEDOUT);
    let init = booted(sys);
    let sys = init.sys();
    assert!(sys
        .calls
        .contains(&"wait_for_path /dev/vdz1 timeout=2000".to_string()));
    assert!(sys.logged(
        "Err: data partition /dev/vdz1 did not appear: ETIMEDOUT (110); booting ephemeral"
    ));
    assert!(sys.calls_starting("mount tmpfs /var").len() == 1);
}

#[test]
fn hostname_comes_from_the_command_line_then_the_file_then_a_default() {
    let from_cmdline = booted(
        RecordingSys::new()
            .with_file("/proc/cmdline", b"console=ttyS0 kios.hostname=edge-7\n")
            .with_file(HOSTNAME_FILE, b"from-file\n"),
    );
    assert_eq!(
        from_cmdline.sys().calls_starting("hostname"),
        ["hostname edge-7"]
    );
    let from_file = booted(RecordingSys::new().with_file(HOSTNAME_FILE, b"From-File\n"));
    assert_eq!(
        from_file.sys().calls_starting("hostname"),
        ["hostname from-file"]
    );
    let garbage = booted(RecordingSys::new().with_file(HOSTNAME_FILE, b"\x00\x01 not a name"));
    assert_eq!(garbage.sys().calls_starting("hostname"), ["hostname kios"]);
    assert!(garbage
        .sys()
        .logged("/etc/hostname: not an RFC 1123 name, using kios"));
}

#[test]
fn panic_policy_follows_the_command_line() {
    let init = booted(RecordingSys::new().with_file("/proc/cmdline", b"kios.panic=poweroff"));
    assert_eq!(
        init.sys().calls_starting("panic_policy"),
        ["panic_policy PowerOff"]
    );
}

#[test]
fn the_power_button_is_watched_on_every_evdev_device_after_the_late_modules() {
    let sys = RecordingSys::new().with_dir("/dev/input", &["mice", "event1", "event0", "by-path"]);
    let init = booted(sys);
    let sys = init.sys();
    assert!(
        position(sys, "watch_inputs /dev/input") > position(sys, "read /etc/kios/modules-late")
    );
    assert!(sys.logged("power button: watching 2 input device(s)"));
    let without = booted(RecordingSys::new());
    assert!(without
        .sys()
        .logged("no input devices: the power button does nothing"));
}

#[test]
fn the_system_bus_is_served_before_the_kubelet_starts_and_var_run_leads_to_run() {
    let init = booted(RecordingSys::new());
    let sys = init.sys();
    assert!(position(sys, "mount tmpfs /var") < position(sys, "symlink /run /var/run"));
    assert!(
        position(sys, "mkdir /run/dbus 755")
            < position(sys, "listen_bus /run/dbus/system_bus_socket")
    );
    assert!(position(sys, "listen_bus") < position(sys, "spawn kubelet"));
    // No shutdownGracePeriod in the kubelet's config: kios.shutdown_grace.
    assert!(sys.logged("shutdown grace period 30000 ms"));
}

/// A /var/run directory on the data partition (a pod can make one) would
/// hide the bus from the kubelet, and with it graceful shutdown.
#[test]
fn a_var_run_that_is_not_the_link_gets_run_mounted_on_it() {
    let blocked = booted(RecordingSys::new().failing("symlink /run /var/run", Errno::EXIST));
    let sys = blocked.sys();
    assert!(sys.logged("Warning: /var/run: not a link to /run, mounting /run on it"));
    assert!(position(sys, "bind /run /var/run") < position(sys, "listen_bus"));
    let linked = booted(
        RecordingSys::new()
            .failing("symlink /run /var/run", Errno::EXIST)
            .failing("stat /var/run/dbus", Errno::ISDIR),
    );
    assert!(linked.sys().calls_starting("bind /run").is_empty());
}
