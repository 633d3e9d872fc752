//! The boot sequence: from the initramfs to a running kubelet, each step
//! logged and none fatal.

use super::Init;
use crate::clock;
use crate::config::cmdline;
use crate::config::hostname::Hostname;
use crate::errno::Errno;
use crate::log;
use crate::log::{file_unavailable, Level};
use crate::netlink;
use crate::power_button;
use crate::storage::data_partition::{self, DataError, DevicePath};
use crate::storage::mounts::{self, FsMount};
use crate::supervisor::Service;
use crate::sys::{CommandArgv, MountOp, Signal, Sys};

use kios_abi::image::{
    FIRSTBOOT, FIRSTBOOT_RAN, FIRSTBOOT_TIMEOUT_MS, HOSTNAME_FILE, LATE_MODULE_LIST, MODULE_LIST,
    ROOT_IMAGE, RUNTIME_SOCKET,
};
use kios_abi::system_bus::{self, VAR_RUN};
use kios_abi::system_socket;
use kios_abi::timeline::{self, Phase};
use linux_raw_sys::general::MS_RDONLY;

/// The hostname when none is configured: the kernel's "(none)" is no node name.
const DEFAULT_HOSTNAME: &str = "kios";
/// Where the initramfs root is bind-mounted before it is moved onto `/`.
/// Any empty directory of the image does; /run gets a tmpfs right after.
const ROOT_STAGING: &str = "/run";

/// A boot step that failed, with the errno the kernel gave.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BootError {
    RootImage(Errno),
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
    FirstBoot(Errno),
}

impl ufmt::uDisplay for BootError {
    fn fmt<W: ufmt::uWrite + ?Sized>(
        &self,
        f: &mut ufmt::Formatter<'_, W>,
    ) -> Result<(), W::Error> {
        match *self {
            BootError::RootImage(e) => ufmt::uwrite!(
                f,
                "mounting {} failed: {}, booting the initramfs as the root",
                ROOT_IMAGE,
                e
            ),
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
            BootError::FirstBoot(e) => {
                ufmt::uwrite!(f, "{} did not finish: {}, booting on", FIRSTBOOT, e)
            }
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
        self.mount_writable_layers();
        self.mount_containerd_store();
        let now = self.sys.now_us();
        self.timeline(Phase::MountsDone, now);

        // Before the hostname: it may write the node's name.
        self.run_first_boot();
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
        // Last: off the way to the kubelet, and done before the event loop
        // can hear the boot is good.
        self.read_boot_slot(pid1_us);
    }

    /// The initramfs cannot be pivot_root'ed (runc needs that), so the init
    /// stages a real mount and moves it onto `/`: the erofs root image when
    /// the initramfs carries one (read on demand), else a bind of the
    /// initramfs onto itself (the same files, at no copy cost); read-only.
    fn switch_root(&mut self) -> Result<(), BootError> {
        for dir in mounts::ROOT_MOUNT_POINTS {
            self.mkdir(dir, 0o755);
        }
        let sys = &mut self.sys;
        let mut root_image = None;
        sys.mount(&MountOp::Fs {
            source: ROOT_IMAGE,
            target: ROOT_STAGING,
            fstype: "erofs",
            flags: MS_RDONLY,
            data: "",
        })
        .or_else(|errno| {
            // ENOENT: a cpio root; ENODEV: a kernel without erofs.
            if errno != Errno::NOENT && errno != Errno::NODEV {
                root_image = Some(BootError::RootImage(errno));
            }
            sys.mount(&MountOp::Bind {
                source: "/",
                target: ROOT_STAGING,
            })
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
            .map_err(BootError::ReadOnlyRoot)?;
        root_image.map_or(Ok(()), Err)
    }

    /// The machine ID, the first boot's configuration and a node name
    /// (tools/firstboot), in a process of its own: bounded, and nothing it
    /// parses can take PID 1 down.
    fn run_first_boot(&mut self) {
        let mut argv = CommandArgv::new();
        let _ = argv.push(&[FIRSTBOOT]);
        let result = self.sys.spawn("kios-firstboot", &argv).and_then(|pid| {
            self.sys
                .wait_for_path(FIRSTBOOT_RAN, Some(pid), FIRSTBOOT_TIMEOUT_MS)
                .inspect_err(|_| {
                    let _ = self.sys.kill(Some(pid), Signal::Kill);
                })
        });
        if let Err(errno) = result {
            self.fail(BootError::FirstBoot(errno));
        }
    }

    pub(super) fn mkdir(&mut self, path: &str, mode: u32) {
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
            &mut self.esp,
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
                            "data partition {} mounted on {}: /etc, logs, images and pod volumes persist",
                            device.as_str(),
                            mounts::VAR
                        );
                        self.keep_time();
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

    /// With a data partition: the clock moves forward to the last known
    /// time before anything reads it, and from now on that time is saved
    /// whenever the clock is set, hourly, and at a clean shutdown.
    fn keep_time(&mut self) {
        self.keeps_time = true;
        clock::restore(&mut self.sys);
        if let Err(errno) = self.sys.watch_clock() {
            log!(
                &mut self.sys,
                Level::Warning,
                "watching the clock failed: {}, the time is saved at shutdown only",
                errno
            );
        }
    }

    /// Puts the writable layers over the image's /etc and /opt/cni/bin (on
    /// /var: persistent with a data partition). On failure the directory
    /// stays the image's, read-only.
    fn mount_writable_layers(&mut self) {
        for (dir, mode) in mounts::WRITABLE_LAYER_DIRS {
            self.mkdir(dir, mode);
        }
        for layer in &mounts::WRITABLE_LAYERS {
            self.mount(layer);
        }
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

    /// The kubelet dials the bus at /var/run/dbus: /var/run must lead to /run.
    fn link_var_run(&mut self) {
        self.mkdir("/run/dbus", 0o755);
        let result = match self.sys.symlink("/run", VAR_RUN) {
            // A persistent /var has the link from an earlier boot; anything
            // else there (a directory a pod made) would hide /run: mount it.
            Err(Errno::EXIST) if self.sys.file_size("/var/run/dbus") == Err(Errno::NOENT) => {
                log!(
                    &mut self.sys,
                    Level::Warning,
                    "/var/run: not a link to /run, mounting /run on it"
                );
                self.sys.mount(&MountOp::Bind {
                    source: "/run",
                    target: VAR_RUN,
                })
            }
            Err(Errno::EXIST) => Ok(()),
            result => result,
        };
        if let Err(errno) = result {
            self.fail(BootError::VarRunLink(errno));
        }
    }

    /// Serves the logind the kubelet's graceful node shutdown asks for.
    fn serve_system_bus(&mut self) {
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
#[path = "boot_tests.rs"]
mod tests;
