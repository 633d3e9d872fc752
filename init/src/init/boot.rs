//! The boot sequence: from the initramfs to a running kubelet, each step
//! logged and none fatal.

use super::Init;
use crate::bus::server::Bus;
use crate::config::cmdline;
use crate::config::hostname::Hostname;
use crate::config::kubelet;
use crate::errno::Errno;
use crate::log;
use crate::log::{file_unavailable, Level};
use crate::netlink;
use crate::power_button;
use crate::storage::data_partition::{self, DataError, DevicePath};
use crate::storage::mounts::{self, FsMount};
use crate::supervisor::Service;
use crate::sys::{MountOp, Sys};

use kios_abi::image::{HOSTNAME_FILE, LATE_MODULE_LIST, MODULE_LIST, RUNTIME_SOCKET};
use kios_abi::system_bus::{self, VAR_RUN};
use kios_abi::system_socket;
use kios_abi::timeline::{self, Phase};

/// The hostname when none is configured: the kernel's "(none)" is no node name.
const DEFAULT_HOSTNAME: &str = "kios";
/// Where the initramfs root is bind-mounted before it is moved onto `/`.
/// Any empty directory of the image does; /run gets a tmpfs right after.
const ROOT_STAGING: &str = "/run";

/// A boot step that failed, with the errno the kernel gave.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BootError {
    SwitchRoot(Errno),
    ReadOnlyRoot(Errno),
    OpenKmsg(Errno),
    Mount(&'static str, Errno),
    SharedRoot(Errno),
    ReadCmdline(Errno),
    Sysctl(&'static str, Errno),
    Hostname(Errno),
    Loopback(Errno),
    SystemSocket(Errno),
    SystemBus(Errno),
    VarRunLink(Errno),
    StartService(Service, Errno),
    RuntimeSocket(Errno),
    DataPartition(DataError),
    DataMount(DevicePath, Errno),
}

impl ufmt::uDisplay for BootError {
    fn fmt<W: ufmt::uWrite + ?Sized>(
        &self,
        f: &mut ufmt::Formatter<'_, W>,
    ) -> Result<(), W::Error> {
        match *self {
            BootError::SwitchRoot(e) => {
                ufmt::uwrite!(f, "switching to a pivot_root-able root failed: {}", e)
            }
            BootError::ReadOnlyRoot(e) => ufmt::uwrite!(f, "making / read-only failed: {}", e),
            BootError::OpenKmsg(e) => ufmt::uwrite!(f, "opening /dev/kmsg failed: {}", e),
            BootError::Mount(target, e) => ufmt::uwrite!(f, "mounting {} failed: {}", target, e),
            BootError::SharedRoot(e) => ufmt::uwrite!(f, "making / shared failed: {}", e),
            BootError::ReadCmdline(e) => ufmt::uwrite!(f, "reading /proc/cmdline failed: {}", e),
            BootError::Sysctl(path, e) => ufmt::uwrite!(f, "setting {} failed: {}", path, e),
            BootError::Hostname(e) => ufmt::uwrite!(f, "setting the hostname failed: {}", e),
            BootError::Loopback(e) => ufmt::uwrite!(f, "bringing up lo failed: {}", e),
            BootError::SystemSocket(e) => {
                ufmt::uwrite!(f, "serving {} failed: {}", system_socket::PATH, e)
            }
            BootError::SystemBus(e) => {
                ufmt::uwrite!(f, "serving {} failed: {}", system_bus::SOCKET, e)
            }
            BootError::VarRunLink(e) => {
                ufmt::uwrite!(f, "linking {} to /run failed: {}", VAR_RUN, e)
            }
            BootError::StartService(s, e) => {
                ufmt::uwrite!(f, "starting {} failed: {}", s.name(), e)
            }
            BootError::RuntimeSocket(e) => {
                ufmt::uwrite!(f, "waiting for {} failed: {}", RUNTIME_SOCKET, e)
            }
            BootError::DataPartition(ref error) => ufmt::uwrite!(f, "{}", error),
            BootError::DataMount(ref device, e) => ufmt::uwrite!(
                f,
                "mounting data partition {} failed: {}, not formatting it",
                device.as_str(),
                e
            ),
        }
    }
}

impl<S: Sys> Init<S> {
    fn timeline(&mut self, phase: Phase, us: u64) {
        log!(
            &mut self.sys,
            Level::Notice,
            "{} {} us={}",
            timeline::WORD,
            phase.name(),
            us
        );
    }

    /// Brings the node up to a running kubelet. Every failure is logged
    /// and the boot goes on: a degraded node can still be inspected.
    pub fn boot(&mut self) {
        let pid1_us = self.sys.now_us();
        let root = self.switch_root();
        self.mount(&mounts::DEV);
        if let Err(errno) = self.sys.open_kmsg() {
            self.fail(BootError::OpenKmsg(errno));
        }
        self.timeline(Phase::Pid1, pid1_us);
        if let Err(error) = root {
            self.fail(error);
        }
        self.mount(&mounts::PROC);
        match self.sys.write_file(mounts::DEVKMSG_SYSCTL, b"on") {
            // EINVAL: `printk.devkmsg=` on the command line fixed the setting.
            Ok(()) | Err(Errno::INVAL) => {}
            Err(errno) => self.fail(BootError::Sysctl(mounts::DEVKMSG_SYSCTL, errno)),
        }
        self.read_options();
        for mount in &mounts::BASE {
            self.mount(mount);
        }
        // Last, so every mount above is shared too.
        if let Err(errno) = self.sys.mount(&MountOp::SharedRecursive { target: "/" }) {
            self.fail(BootError::SharedRoot(errno));
        }
        // Before /var: the data partition's disk driver may be a module.
        self.load_modules(MODULE_LIST);
        self.mount_var();
        for (dir, mode) in mounts::STATE_DIRS {
            self.mkdir(dir, mode);
        }
        self.link_var_run();
        self.mount_etc();
        self.mount_containerd_store();
        let now = self.sys.now_us();
        self.timeline(Phase::MountsDone, now);

        self.set_hostname();
        self.bring_up_loopback();
        self.set_sysctls();
        if let Err(errno) = self.sys.listen(system_socket::PATH) {
            self.fail(BootError::SystemSocket(errno));
        }
        self.serve_system_bus();
        self.start_runtime_and_kubelet();
        self.load_modules(LATE_MODULE_LIST);
        // After the late modules: evdev and the button driver may be among them.
        self.watch_power_button();
    }

    /// The initramfs cannot be pivot_root'ed (runc needs that), so the init
    /// bind-mounts it onto itself and moves the bind onto `/`: the same
    /// files, now a real mount with a parent, read-only, at no copy cost.
    fn switch_root(&mut self) -> Result<(), BootError> {
        for dir in mounts::ROOT_MOUNT_POINTS {
            self.mkdir(dir, 0o755);
        }
        let sys = &mut self.sys;
        sys.mount(&MountOp::Bind {
            source: "/",
            target: ROOT_STAGING,
        })
        .and_then(|()| sys.chdir(ROOT_STAGING))
        .and_then(|()| {
            sys.mount(&MountOp::Move {
                source: ".",
                target: "/",
            })
        })
        .and_then(|()| sys.chroot("."))
        .and_then(|()| sys.chdir("/"))
        .map_err(BootError::SwitchRoot)?;
        sys.mount(&MountOp::ReadOnly { target: "/" })
            .map_err(BootError::ReadOnlyRoot)
    }

    fn mkdir(&mut self, path: &str, mode: u32) {
        match self.sys.mkdir(path, mode) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => log!(
                &mut self.sys,
                Level::Warning,
                "mkdir {} failed: {}",
                path,
                errno
            ),
        }
    }

    fn mount(&mut self, mount: &FsMount) {
        self.mkdir(mount.target, 0o755);
        let op = MountOp::Fs {
            source: mount.fstype,
            target: mount.target,
            fstype: mount.fstype,
            flags: mount.flags,
            data: mount.data,
        };
        match self.sys.mount(&op) {
            Ok(()) => log!(
                &mut self.sys,
                Level::Info,
                "mounted {} on {}",
                mount.fstype,
                mount.target
            ),
            Err(errno) => self.fail(BootError::Mount(mount.target, errno)),
        }
    }

    fn read_options(&mut self) {
        let mut buf = [0u8; 4096];
        let read = match self.sys.read_file("/proc/cmdline", &mut buf) {
            Ok(read) => read,
            Err(errno) => return self.fail(BootError::ReadCmdline(errno)),
        };
        let Ok(text) = core::str::from_utf8(&buf[..read.len]) else {
            log!(
                &mut self.sys,
                Level::Warning,
                "/proc/cmdline: not UTF-8, using defaults"
            );
            return;
        };
        let sys = &mut self.sys;
        self.options = cmdline::parse(text, |rejected| {
            log!(
                sys,
                Level::Warning,
                "cmdline: ignored {} ({})",
                rejected.word,
                rejected.reason
            );
        });
        self.sys.set_panic_policy(self.options.panic);
    }

    fn load_modules(&mut self, list: &str) {
        let mut buf = [0u8; 16384];
        let read = match self.sys.read_file(list, &mut buf) {
            Ok(read) => read,
            Err(errno) => return file_unavailable(&mut self.sys, list, errno, "no modules loaded"),
        };
        if read.truncated {
            log!(
                &mut self.sys,
                Level::Warning,
                "{}: longer than {} bytes, loading what fits",
                list,
                buf.len()
            );
        }
        let mut loaded = 0u32;
        for line in crate::text::split_bytes(&buf[..read.len], b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let Ok(path) = core::str::from_utf8(line) else {
                log!(
                    &mut self.sys,
                    Level::Warning,
                    "{}: skipped a line that is not UTF-8",
                    list
                );
                continue;
            };
            match self.sys.load_module(path) {
                Ok(()) => loaded += 1,
                // Built in or loaded already.
                Err(Errno::EXIST) => {}
                Err(errno) => log!(
                    &mut self.sys,
                    Level::Err,
                    "loading module {} failed: {}",
                    path,
                    errno
                ),
            }
        }
        log!(
            &mut self.sys,
            Level::Info,
            "{}: loaded {} module(s)",
            list,
            loaded
        );
    }

    /// Mounts the data partition on /var, or a tmpfs when there is none or
    /// it is unusable: the node then boots ephemeral and says why. A
    /// partition that will not mount is never formatted.
    fn mount_var(&mut self) {
        let found = data_partition::find(
            &mut self.sys,
            &self.options.data,
            self.options.data_timeout_ms,
        );
        let error = match found {
            Ok(device) => {
                self.mkdir(mounts::VAR, 0o755);
                let op = MountOp::Fs {
                    source: &device,
                    target: mounts::VAR,
                    fstype: mounts::DATA_FSTYPE,
                    flags: mounts::DATA_FLAGS,
                    data: "",
                };
                match self.sys.mount(&op) {
                    Ok(()) => {
                        log!(
                            &mut self.sys,
                            Level::Notice,
                            "data partition {} mounted on {}: /etc changes, logs, container storage and pod volumes persist",
                            device.as_str(),
                            mounts::VAR
                        );
                        return;
                    }
                    Err(errno) => BootError::DataMount(device, errno),
                }
            }
            Err(error) => BootError::DataPartition(error),
        };
        log!(
            &mut self.sys,
            if error == BootError::DataPartition(DataError::NotFound) {
                Level::Notice
            } else {
                Level::Err
            },
            "{}; booting ephemeral: /var and /etc changes live in RAM",
            error
        );
        self.mount(&mounts::VAR_EPHEMERAL);
    }

    /// Puts the writable layer over the image's /etc (on /var: persistent
    /// with a data partition). On failure /etc stays the image's, read-only.
    fn mount_etc(&mut self) {
        for (dir, mode) in mounts::ETC_DIRS {
            self.mkdir(dir, mode);
        }
        self.mount(&mounts::ETC);
    }

    /// Overlays the image's seeded image store on /var/lib/containerd (after
    /// the modules: overlayfs may be one).
    fn mount_containerd_store(&mut self) {
        match self.sys.file_size(mounts::CONTAINERD_SEED) {
            Err(Errno::ISDIR) => {}
            _ => {
                log!(
                    &mut self.sys,
                    Level::Info,
                    "{}: no seeded image store, containerd starts empty",
                    mounts::CONTAINERD_SEED
                );
                return;
            }
        }
        for (dir, mode) in mounts::CONTAINERD_STORE_DIRS {
            self.mkdir(dir, mode);
        }
        self.mount(&mounts::CONTAINERD_STORE);
    }

    fn link_var_run(&mut self) {
        match self.sys.symlink("/run", VAR_RUN) {
            // A persistent /var has it from an earlier boot.
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => self.fail(BootError::VarRunLink(errno)),
        }
    }

    /// Serves the logind the kubelet's graceful node shutdown asks for. The
    /// grace period is the kubelet's `shutdownGracePeriod`, so the kubelet
    /// finds logind's `InhibitDelayMaxUSec` matching it; without one,
    /// `kios.shutdown_grace`.
    fn serve_system_bus(&mut self) {
        self.shutdown_grace_ms = match kubelet::shutdown_grace_period_ms(&mut self.sys) {
            Some(ms) => ms,
            None => self.options.shutdown_grace_ms,
        };
        log!(
            &mut self.sys,
            Level::Info,
            "shutdown grace period {} ms",
            self.shutdown_grace_ms
        );
        self.bus = Bus::new(self.shutdown_grace_ms);
        self.mkdir("/run/dbus", 0o755);
        if let Err(errno) = self.sys.listen_bus(system_bus::SOCKET) {
            self.fail(BootError::SystemBus(errno));
        }
    }

    /// Watches every evdev device for the power key: ACPI and GPIO power
    /// buttons are input devices, and only their reader can act on them.
    fn watch_power_button(&mut self) {
        match self.sys.watch_inputs(power_button::INPUT_DIR) {
            Ok(watched) if watched > 0 => log!(
                &mut self.sys,
                Level::Info,
                "power button: watching {} input device(s)",
                watched
            ),
            _ => log!(
                &mut self.sys,
                Level::Notice,
                "no input devices: the power button does nothing"
            ),
        }
    }

    fn set_hostname(&mut self) {
        let hostname = match self.options.hostname.clone() {
            Some(hostname) => Some(hostname),
            None => self.hostname_from_file(),
        };
        let name = hostname.as_ref().map_or(DEFAULT_HOSTNAME, Hostname::as_str);
        match self.sys.set_hostname(name) {
            Ok(()) => log!(&mut self.sys, Level::Info, "hostname {}", name),
            Err(errno) => self.fail(BootError::Hostname(errno)),
        }
    }

    fn hostname_from_file(&mut self) -> Option<Hostname> {
        let mut buf = [0u8; 256];
        match self.sys.read_file(HOSTNAME_FILE, &mut buf) {
            Ok(read) => match Hostname::parse(&buf[..read.len]) {
                Ok(hostname) => Some(hostname),
                Err(reason) => {
                    log!(
                        &mut self.sys,
                        Level::Warning,
                        "{}: {}, using {}",
                        HOSTNAME_FILE,
                        reason,
                        DEFAULT_HOSTNAME
                    );
                    None
                }
            },
            Err(errno) => {
                log!(
                    &mut self.sys,
                    Level::Warning,
                    "{}: unreadable ({}), using {}",
                    HOSTNAME_FILE,
                    errno,
                    DEFAULT_HOSTNAME
                );
                None
            }
        }
    }

    fn bring_up_loopback(&mut self) {
        let result = netlink::link_up_request("lo", 1).and_then(|request| {
            let mut reply = [0u8; 256];
            let len = self.sys.netlink_route(&request, &mut reply)?;
            netlink::parse_ack(&reply[..len])
        });
        if let Err(errno) = result {
            self.fail(BootError::Loopback(errno));
        }
    }

    fn set_sysctls(&mut self) {
        for sysctl in &mounts::SYSCTLS {
            match self.sys.write_file(sysctl.path, sysctl.value.as_bytes()) {
                Ok(()) => {}
                Err(Errno::NOENT) if sysctl.optional => {
                    log!(
                        &mut self.sys,
                        Level::Info,
                        "{}: not present (IPv6 disabled?), skipped",
                        sysctl.path
                    )
                }
                Err(errno) => self.fail(BootError::Sysctl(sysctl.path, errno)),
            }
        }
    }

    fn start_runtime_and_kubelet(&mut self) {
        let now = self.sys.now_us();
        self.timeline(Phase::RuntimeExec, now);
        match self.start(Service::Runtime) {
            Some(pid) => {
                match self.sys.wait_for_path(
                    RUNTIME_SOCKET,
                    Some(pid),
                    self.options.runtime_timeout_ms,
                ) {
                    Ok(()) => {
                        let now = self.sys.now_us();
                        self.timeline(Phase::RuntimeReady, now);
                    }
                    Err(errno) => {
                        self.fail(BootError::RuntimeSocket(errno));
                        log!(
                            &mut self.sys,
                            Level::Warning,
                            "starting the kubelet anyway; it retries the runtime"
                        );
                    }
                }
            }
            None => log!(
                &mut self.sys,
                Level::Warning,
                "starting the kubelet without a runtime"
            ),
        }
        let now = self.sys.now_us();
        self.timeline(Phase::KubeletExec, now);
        self.start(Service::Kubelet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{booted, position};
    use crate::sys::recording::RecordingSys;
    #[test]
    fn root_becomes_a_read_only_mount_before_anything_is_mounted() {
        let init = booted(RecordingSys::new());
        let sys = init.sys();
        let sequence = [
            "bind / /run",
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
    fn mounts_have_tight_flags_and_root_is_shared_last() {
        let init = booted(RecordingSys::new());
        let sys = init.sys();
        let mounts = sys.calls_starting("mount ");
        assert_eq!(
            mounts,
            [
                "mount devtmpfs /dev flags=10 mode=0755",
                "mount proc /proc flags=14 ",
                "mount sysfs /sys flags=14 ",
                "mount securityfs /sys/kernel/security flags=14 ",
                "mount cgroup2 /sys/fs/cgroup flags=14 nsdelegate",
                "mount devpts /dev/pts flags=10 newinstance,ptmxmode=0666,mode=0620",
                "mount tmpfs /dev/shm flags=14 mode=1777",
                "mount tmpfs /run flags=6 mode=0755",
                "mount tmpfs /tmp flags=6 mode=1777",
                "mount tmpfs /var flags=0 mode=0755",
                "mount overlay /etc flags=6 lowerdir=/etc,upperdir=/var/lib/kios/etc/upper,workdir=/var/lib/kios/etc/work",
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
    fn runtime_starts_first_and_the_kubelet_after_its_socket() {
        let init = booted(RecordingSys::new());
        let sys = init.sys();
        let runtime = position(sys, "spawn containerd /bin/containerd");
        let socket = position(
            sys,
            "wait_for_path /run/containerd/containerd.sock owner=101 timeout=30000",
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
        assert_eq!(init.sys().spawned().len(), 2);
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
            position(sys, "finit_module /lib/modules/overlay.ko")
                < position(sys, "spawn containerd")
        );
        assert!(
            position(sys, "spawn kubelet") < position(sys, "finit_module /lib/modules/bridge.ko")
        );
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

    /// A disk holding a GPT whose second partition is of the kiOS type and
    /// holds ext4 (as far as the superblock magic goes).
    fn with_data_disk(sys: RecordingSys) -> RecordingSys {
        let (header, entries) = crate::storage::gpt::tests::gpt_with(&[
            [1; 16],
            crate::storage::gpt::DATA_PARTITION_TYPE,
        ]);
        let mut disk = vec![0u8; 512];
        disk.extend(header);
        disk.extend(entries);
        let mut partition = vec![0u8; 2048];
        partition[1024 + 0x38..1024 + 0x3a].copy_from_slice(&[0x53, 0xEF]);
        sys.with_dir("/sys/block", &["vda"])
            .with_file("/dev/vda", &disk)
            .with_file("/dev/vda2", &partition)
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
            position(sys, "mount overlay /etc")
                < position(sys, "mount overlay /var/lib/containerd")
        );
        assert!(
            position(sys, "mount overlay /var/lib/containerd") < position(sys, "spawn containerd")
        );
        assert!(sys.calls_starting("mount tmpfs /var").is_empty());
        assert!(sys.logged("Notice: data partition /dev/vda2 mounted on /var"));
        assert!(!sys.logged("ephemeral"));
    }

    #[test]
    fn without_a_data_partition_the_node_says_it_is_ephemeral() {
        let init = booted(RecordingSys::new().with_dir("/sys/block", &["vda"]));
        let sys = init.sys();
        assert!(
            sys.logged("disk /dev/vda: reading its partition table failed: ENOENT (2), skipped")
        );
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
            .contains(&"mount tmpfs /var flags=0 mode=0755".to_string()));
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
        let sys =
            RecordingSys::new().with_dir("/dev/input", &["mice", "event1", "event0", "by-path"]);
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
}
