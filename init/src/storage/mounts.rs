//! The base system's mounts: which filesystem goes where, with which flags.

use kios_abi::image;
use linux_raw_sys::general::{MS_NOATIME, MS_NODEV, MS_NOEXEC, MS_NOSUID};

/// A filesystem the init mounts at boot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FsMount {
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: u32,
    pub data: &'static str,
}

const fn fs(target: &'static str, fstype: &'static str, flags: u32, data: &'static str) -> FsMount {
    FsMount {
        target,
        fstype,
        flags,
        data,
    }
}

const LOCKED: u32 = MS_NOSUID | MS_NODEV | MS_NOEXEC;

/// Mount points in the image's root; created while the root is still
/// writable, since the root becomes read-only.
pub const ROOT_MOUNT_POINTS: [&str; 7] =
    ["/dev", "/proc", "/sys", "/run", "/tmp", image::VAR, "/etc"];

/// devtmpfs first: /dev/kmsg is where every later line goes. Device nodes
/// need dev; nothing executes from /dev.
pub const DEV: FsMount = fs("/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");

/// /proc second: the command line and the sysctls live there.
pub const PROC: FsMount = fs("/proc", "proc", LOCKED, "");

/// The rest of the base system, in order (parents before children).
pub const BASE: [FsMount; 7] = [
    fs("/sys", "sysfs", LOCKED, ""),
    fs("/sys/kernel/security", "securityfs", LOCKED, ""),
    // nsdelegate: containers get their own cgroup subtree to manage.
    fs("/sys/fs/cgroup", "cgroup2", LOCKED, "nsdelegate"),
    // Terminals for `kubectl exec -t`; each container mounts its own instance.
    fs(
        "/dev/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    ),
    // Every tmpfs has a size (of RAM), so no writer can take half the
    // node's memory, the kernel's default. Pods get their own /dev/shm.
    fs("/dev/shm", "tmpfs", LOCKED, "mode=1777,size=10%"),
    // Sockets, runtime state and container rootfs mount points; the
    // runtime's shims and bundles need exec here.
    fs("/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=20%"),
    fs("/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=10%"),
];

/// /var holds everything a node keeps: container storage, pod volumes,
/// logs and the writable layer of /etc. It is the data partition when
/// there is one. Images carry setuid binaries and device nodes, and
/// containers execute from here: no locking flags.
pub const VAR: &str = image::VAR;
/// The data partition's filesystem. noatime: reads cause no writes, which
/// flash on edge boards and busy image layers both want.
pub const DATA_FSTYPE: &str = "ext4";
pub const DATA_FLAGS: u32 = MS_NOATIME;
/// /var without a data partition: the node is ephemeral. Images and pod
/// volumes live here, so it gets the most room.
pub const VAR_EPHEMERAL: FsMount = fs(VAR, "tmpfs", 0, "mode=0755,size=50%");

/// Directories the runtime and the kubelet expect under /var and /run
/// (made on every boot: a fresh data partition starts empty).
pub const STATE_DIRS: [(&str, u32); 10] = [
    ("/var/lib", 0o755),
    (image::CONTAINERD_STORE, 0o711),
    // containerd's overlayfs snapshots: on the tmpfs itself, since an
    // overlayfs upper directory cannot live on the overlay at /var/lib/containerd.
    (image::CONTAINERD_SNAPSHOTS, 0o711),
    ("/var/lib/kubelet", 0o700),
    ("/var/log", 0o755),
    ("/var/log/pods", 0o755),
    // The runtime's and the kubelet's own output (crate::log::service_file).
    (image::SERVICE_LOG_DIR, 0o750),
    ("/var/lib/kios", 0o700),
    ("/var/lib/kios/etc", 0o700),
    ("/run/containerd", 0o711),
];

/// The image's files under a writable layer on /var, so what the node
/// changes survives a reboot when /var is the data partition; a newer
/// image's files show through wherever the node changed nothing.
/// - /etc: the node's configuration (and /etc/cni/net.d, where a CNI
///   add-on's DaemonSet writes its network config).
/// - /opt/cni/bin: the CNI plugins, where such a DaemonSet installs its
///   own beside the image's.
pub const WRITABLE_LAYERS: [FsMount; 2] = [
    fs(
        "/etc",
        "overlay",
        MS_NOSUID | MS_NODEV,
        "lowerdir=/etc,upperdir=/var/lib/kios/etc/upper,workdir=/var/lib/kios/etc/work",
    ),
    fs(
        "/opt/cni/bin",
        "overlay",
        MS_NOSUID | MS_NODEV,
        "lowerdir=/opt/cni/bin,upperdir=/var/lib/kios/cni-bin/upper,workdir=/var/lib/kios/cni-bin/work",
    ),
];

/// The writable layers and their work directories.
pub const WRITABLE_LAYER_DIRS: [(&str, u32); 5] = [
    ("/var/lib/kios/etc/upper", 0o755),
    ("/var/lib/kios/etc/work", 0o700),
    ("/var/lib/kios/cni-bin", 0o700),
    ("/var/lib/kios/cni-bin/upper", 0o755),
    ("/var/lib/kios/cni-bin/work", 0o700),
];

/// The image's seeded containerd store: the images a first boot needs.
pub const CONTAINERD_SEED: &str = image::CONTAINERD_SEED;

/// containerd's store: the read-only seed under a writable layer on the
/// /var tmpfs, so the first boot pulls nothing and copies nothing.
pub const CONTAINERD_STORE: FsMount = fs(
    image::CONTAINERD_STORE,
    "overlay",
    0,
    concat!(
        "lowerdir=",
        kios_abi::containerd_seed!(),
        ",upperdir=/var/lib/.containerd/upper,workdir=/var/lib/.containerd/work"
    ),
);

/// The overlay's writable layer and its work directory.
pub const CONTAINERD_STORE_DIRS: [(&str, u32); 3] = [
    ("/var/lib/.containerd", 0o700),
    ("/var/lib/.containerd/upper", 0o711),
    ("/var/lib/.containerd/work", 0o700),
];

/// Kernel settings a node needs. Optional ones may be missing (IPv6 disabled).
pub struct Sysctl {
    pub path: &'static str,
    pub value: &'static str,
    pub optional: bool,
}

const fn sysctl(path: &'static str, value: &'static str) -> Sysctl {
    Sysctl {
        path,
        value,
        optional: false,
    }
}

/// Set at every boot, on the kiOS kernel and on Debian's alike (the
/// hardening ones have no build option: see kernel/README.md).
pub const SYSCTLS: [Sysctl; 6] = [
    // Pod traffic is routed through the node.
    sysctl("/proc/sys/net/ipv4/ip_forward", "1"),
    Sysctl {
        path: "/proc/sys/net/ipv6/conf/all/forwarding",
        value: "1",
        optional: true,
    },
    // The kernel log (other pods' lines, addresses) for CAP_SYSLOG only.
    sysctl("/proc/sys/kernel/dmesg_restrict", "1"),
    // Kernel addresses hidden from /proc and the log without CAP_SYSLOG.
    sysctl("/proc/sys/kernel/kptr_restrict", "1"),
    // No opening another user's FIFO or file in a sticky world-writable
    // directory (a hostPath /tmp) with O_CREAT: systemd's defaults.
    sysctl("/proc/sys/fs/protected_fifos", "1"),
    sysctl("/proc/sys/fs/protected_regular", "1"),
];

/// Userspace kmsg lines are rate-limited by default; the boot timeline and
/// the runtime's and kubelet's output must not be dropped.
pub const DEVKMSG_SYSCTL: &str = "/proc/sys/kernel/printk_devkmsg";
