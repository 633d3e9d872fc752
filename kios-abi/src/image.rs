//! Paths inside the node image that the image builder writes and the init
//! reads.

/// Expands to [`RUNTIME_SOCKET`], for `concat!` (the kubelet's
/// `unix://` endpoint is built from it at compile time).
#[macro_export]
macro_rules! runtime_socket {
    () => {
        "/run/containerd/containerd.sock"
    };
}

/// Expands to [`CONTAINERD_SEED`], for `concat!` (the init's overlay
/// options name it at compile time).
#[macro_export]
macro_rules! containerd_seed {
    () => {
        "/usr/lib/kios/containerd"
    };
}

/// The init, as the kernel starts it (`rdinit=`).
pub const INIT: &str = "/bin/init";
/// The root as a compressed read-only erofs image inside the initramfs
/// (`--compression erofs`): the init mounts it as the root when present.
pub const ROOT_IMAGE: &str = "/root.erofs";
/// The container runtime the init starts first.
pub const RUNTIME: &str = "/bin/containerd";
/// The kubelet.
pub const KUBELET: &str = "/bin/kubelet";
/// The runtime's socket: the kubelet starts once it appears.
pub const RUNTIME_SOCKET: &str = runtime_socket!();
/// Module load order, one path per line, computed at build time: loaded
/// before the runtime starts (its storage needs them).
pub const MODULE_LIST: &str = "/etc/kios/modules";
/// Modules the node needs only once pods get networks (and the power
/// button's): loaded after the kubelet starts.
pub const LATE_MODULE_LIST: &str = "/etc/kios/modules-late";
/// The node's name when no `kios.hostname=` is given.
pub const HOSTNAME_FILE: &str = "/etc/hostname";
/// The seeded containerd store: the images a first boot needs, overlaid
/// read-only under a writable layer on `/var/lib/containerd`.
pub const CONTAINERD_SEED: &str = containerd_seed!();
/// Where containerd's store lives (the overlay's mount point).
pub const CONTAINERD_STORE: &str = "/var/lib/containerd";
/// containerd's overlayfs snapshots (`root_path` in its config).
pub const CONTAINERD_SNAPSHOTS: &str = "/var/lib/containerd-snapshots";
/// The node's persistent state: the data partition, or a tmpfs.
pub const VAR: &str = "/var";
/// The services' captured output, `<service>.log`, rotated once.
pub const SERVICE_LOG_DIR: &str = "/var/log/kios";
/// The last known time, kept on the data partition: the init moves the
/// clock forward to this file's modification time at boot (a board without
/// a real-time clock starts in 1970), and sets that time to now whenever
/// the clock is set, hourly, and at a clean shutdown.
pub const CLOCK_FILE: &str = "/var/lib/kios/clock";

/// The first-boot step (`tools/firstboot`): the init runs it once per
/// boot, with no arguments, after /etc's writable layer is mounted and
/// before the runtime starts; it creates `/etc/machine-id` when missing,
/// takes the EFI system partition's configuration on the first boot and
/// writes a node name when none is configured.
pub const FIRSTBOOT: &str = "/bin/kios-firstboot";
/// Written once the first boot's configuration was taken (or there was
/// none): later boots leave the EFI system partition alone.
pub const FIRSTBOOT_DONE: &str = "/etc/kios/first-boot-done";
/// The node's machine ID: 32 lowercase hex digits and a newline, made once.
pub const MACHINE_ID: &str = "/etc/machine-id";
/// The modules the first-boot step loads before it mounts the EFI system
/// partition (vfat and its code pages), one path per line; absent when the
/// kernel has them built in.
pub const FIRSTBOOT_MODULE_LIST: &str = "/etc/kios/modules-firstboot";
/// The GPT name of the EFI system partition the disk builder writes.
pub const ESP_PARTITION_NAME: &str = "esp";
/// The first-boot configuration's directory on the EFI system partition,
/// laid out as /etc is (`hostname`, `kubernetes/...`).
pub const ESP_CONFIG_DIR: &str = "kios/config";
/// Where the first-boot step mounts the EFI system partition, read-only,
/// for as long as it copies.
pub const FIRSTBOOT_ESP_MOUNT: &str = "/run/kios-firstboot";
/// Written by [`FIRSTBOOT`] as its last act on every boot: the init waits
/// for it (or the step's exit, or a deadline) before it reads the hostname.
pub const FIRSTBOOT_RAN: &str = "/run/kios-firstboot.ran";
/// How long the init waits for [`FIRSTBOOT`] before it kills it and boots on:
/// the first boot copies at most 64 small files and syncs twice.
pub const FIRSTBOOT_TIMEOUT_MS: u64 = 30_000;
/// Exit codes of [`FIRSTBOOT`].
pub mod firstboot_exit {
    /// Done: every file taken or refused with a line, the identity in place.
    pub const DONE: i32 = 0;
    /// Something could not be written (`/etc/machine-id`, the hostname,
    /// the marker); each failure was logged. The boot goes on.
    pub const INCOMPLETE: i32 = 1;
    /// Called with arguments it does not take.
    pub const USAGE: i32 = 2;
}
