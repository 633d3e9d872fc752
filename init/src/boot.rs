//! The boot sequence and the event loop of PID 1.

use crate::bus::Bus;
use crate::cmdline::{self, Options};
use crate::data_partition::{self, DataError, DevicePath};
use crate::errno::Errno;
use crate::hostname::Hostname;
use crate::kubelet;
use crate::log;
use crate::log::{file_unavailable, Level};
use crate::mounts::{self, FsMount};
use crate::netlink;
use crate::power_button;
use crate::shutdown::Shutdown;
use crate::supervisor::{Restart, Service, Supervisor};
use crate::sys::{signo, CommandArgv, Event, MountOp, PowerAction, Signal, Sys};

use kios_abi::image::{HOSTNAME_FILE, LATE_MODULE_LIST, MODULE_LIST, RUNTIME_SOCKET};
use kios_abi::system_bus::{self, VAR_RUN};
use kios_abi::system_socket::{self, Command};
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

pub struct Init<S: Sys> {
    sys: S,
    options: Options,
    supervisor: Supervisor,
    shutdown: Option<Shutdown>,
    /// How long a shutdown waits for clients and inhibitors.
    shutdown_grace_ms: u64,
    bus: Bus,
}

impl<S: Sys> Init<S> {
    pub fn new(sys: S) -> Init<S> {
        Init {
            sys,
            options: Options::default(),
            supervisor: Supervisor::new(),
            shutdown: None,
            shutdown_grace_ms: 0,
            bus: Bus::new(0),
        }
    }

    pub fn sys(&self) -> &S {
        &self.sys
    }

    fn fail(&mut self, error: BootError) {
        log!(&mut self.sys, Level::Err, "{}", error);
    }

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

    /// Starts a service; a failed start is retried with backoff.
    fn start(&mut self, service: Service) -> Option<crate::sys::Pid> {
        let argv: CommandArgv = match service {
            Service::Runtime => kubelet::runtime_argv(),
            Service::Kubelet => kubelet::kubelet_argv(&mut self.sys),
        };
        let result = self.sys.spawn(service.name(), &argv);
        let now = self.sys.now_us();
        match result {
            Ok(pid) => {
                self.supervisor.started(service, pid, now);
                log!(
                    &mut self.sys,
                    Level::Notice,
                    "start {} pid={}",
                    service.name(),
                    pid.0
                );
                Some(pid)
            }
            Err(errno) => {
                self.fail(BootError::StartService(service, errno));
                if let Some(delay) = self.supervisor.start_failed(service, now) {
                    log!(
                        &mut self.sys,
                        Level::Notice,
                        "{} retry in {} ms",
                        service.name(),
                        delay
                    );
                }
                None
            }
        }
    }

    /// The event loop: reaps children, restarts services, serves the system
    /// socket and drives the shutdown. Returns once the reboot syscall has
    /// been made (and refused: on success it never returns).
    pub fn run(&mut self) -> Errno {
        loop {
            if let Some(shutdown) = &self.shutdown {
                if shutdown.is_finishing() {
                    return shutdown.finish(&mut self.sys);
                }
            }
            let now = self.sys.now_us();
            let deadline = [
                self.supervisor.next_deadline_us(),
                self.shutdown.as_ref().and_then(Shutdown::deadline_us),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout_ms = deadline.map(|at| at.saturating_sub(now).div_ceil(1000));
            let event = self.sys.next_event(timeout_ms);
            self.handle(event);
            self.restart_due_services();
            if let Some(shutdown) = &mut self.shutdown {
                shutdown.advance(&mut self.sys);
            }
        }
    }

    // Out of line: inlined into the loop it cost 80 bytes more.
    #[inline(never)]
    fn handle(&mut self, event: Event) {
        match event {
            Event::ChildExited { pid, status } => {
                let now = self.sys.now_us();
                let Some(exit) = self.supervisor.exited(pid, now) else {
                    return;
                };
                let name = exit.service.name();
                let (how, code) = match status {
                    crate::sys::ExitStatus::Exited(code) => ("status", code),
                    crate::sys::ExitStatus::Signaled(signal) => ("signal", signal),
                };
                match exit.restart_in_ms {
                    Some(delay) => log!(
                        &mut self.sys,
                        Level::Notice,
                        "{} exited {}={}, restart in {} ms",
                        name,
                        how,
                        code,
                        delay
                    ),
                    None => log!(
                        &mut self.sys,
                        Level::Notice,
                        "{} exited {}={}",
                        name,
                        how,
                        code
                    ),
                }
            }
            Event::Signal(signo::SIGTERM) | Event::Signal(signo::SIGPWR) => {
                self.request_shutdown(PowerAction::PowerOff, "signal")
            }
            // The kernel sends SIGINT for Ctrl-Alt-Del once the init disabled its default.
            Event::Signal(signo::SIGINT) => {
                self.request_shutdown(PowerAction::Reboot, "ctrl-alt-del")
            }
            Event::Signal(_) | Event::Timeout => {}
            Event::BusConnected { conn, uid } => self.bus.connected(&mut self.sys, conn, uid),
            Event::BusReadable(conn) => self.bus.readable(&mut self.sys, conn),
            Event::PowerButton => self.request_shutdown(PowerAction::PowerOff, "power button"),
            Event::InhibitorReleased => {
                self.bus.inhibitor_released(&mut self.sys);
                if let Some(shutdown) = &mut self.shutdown {
                    shutdown.inhibitor_released(&mut self.sys, self.bus.inhibitors());
                }
            }
            Event::Request { client, byte } => match Command::decode(byte) {
                Some(Command::Shutdown) => {
                    self.request_shutdown(PowerAction::PowerOff, "system socket")
                }
                Some(Command::ContinueShutdown) => {
                    if let Some(shutdown) = &mut self.shutdown {
                        shutdown.client_continued(&mut self.sys);
                    }
                }
                Some(Command::RestartKubelet) => self.restart(Service::Kubelet),
                Some(Command::RestartRuntime) => self.restart(Service::Runtime),
                None => {
                    log!(
                        &mut self.sys,
                        Level::Warning,
                        "system socket: unknown command {}, client dropped",
                        byte
                    );
                    self.sys.drop_client(client);
                }
            },
        }
    }

    fn request_shutdown(&mut self, action: PowerAction, by: &str) {
        if self.shutdown.is_some() {
            return;
        }
        log!(&mut self.sys, Level::Notice, "shutdown requested by {}", by);
        self.supervisor.stop();
        let inhibitors = self.bus.notify_shutdown(&mut self.sys);
        self.shutdown = Some(Shutdown::begin(
            &mut self.sys,
            action,
            self.shutdown_grace_ms,
            inhibitors,
        ));
    }

    fn restart(&mut self, service: Service) {
        log!(
            &mut self.sys,
            Level::Notice,
            "restart of {} requested",
            service.name()
        );
        match self.supervisor.request_restart(service) {
            Restart::Stop(pid) => {
                if let Err(errno) = self.sys.kill(Some(pid), Signal::Term) {
                    log!(
                        &mut self.sys,
                        Level::Err,
                        "stopping {} failed: {}",
                        service.name(),
                        errno
                    );
                }
            }
            Restart::StartNow => {
                self.start(service);
            }
            Restart::Refused => {}
        }
    }

    fn restart_due_services(&mut self) {
        let now = self.sys.now_us();
        // Each start either clears the service's restart time or, failing,
        // moves it into the future: the loop ends.
        while let Some(service) = self.supervisor.due(now) {
            self.start(service);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording_sys::RecordingSys;
    use crate::sys::{BusId, ClientId, ExitStatus, Pid};

    fn booted(sys: RecordingSys) -> Init<RecordingSys> {
        let mut init = Init::new(sys);
        init.boot();
        init
    }

    /// Where the first call equal to `call`, or starting with `call` and a space, is.
    fn position(sys: &RecordingSys, call: &str) -> usize {
        sys.calls
            .iter()
            .position(|c| c == call || c.starts_with(&format!("{call} ")))
            .unwrap_or_else(|| panic!("no call {call} in {:#?}", sys.calls))
    }

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
        let (header, entries) =
            crate::gpt::tests::gpt_with(&[[1; 16], crate::gpt::DATA_PARTITION_TYPE]);
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

    fn run_with(mut init: Init<RecordingSys>, events: &[Event]) -> Init<RecordingSys> {
        init.sys.events.extend(events.iter().copied());
        init.run();
        init
    }

    const RUNTIME: Pid = Pid(101);
    const KUBELET: Pid = Pid(102);

    /// The kubelet, then the runtime, exit cleanly (after SIGTERM).
    fn both_services_exit() -> [Event; 2] {
        [KUBELET, RUNTIME].map(|pid| Event::ChildExited {
            pid,
            status: ExitStatus::Exited(0),
        })
    }

    #[test]
    fn a_crashing_kubelet_is_restarted_with_growing_delays_then_shutdown_powers_off() {
        let init = booted(RecordingSys::new());
        let init = run_with(
            init,
            &[
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Exited(3),
                },
                Event::Timeout,
                Event::ChildExited {
                    pid: Pid(103),
                    status: ExitStatus::Signaled(9),
                },
                Event::Timeout,
                Event::Request {
                    client: ClientId(1),
                    byte: 0x01,
                },
                Event::ChildExited {
                    pid: Pid(104),
                    status: ExitStatus::Exited(0),
                },
                Event::ChildExited {
                    pid: RUNTIME,
                    status: ExitStatus::Exited(0),
                },
            ],
        );
        let sys = init.sys();
        assert!(sys.logged("kubelet exited status=3, restart in 500 ms"));
        assert!(sys.logged("kubelet exited signal=9, restart in 1000 ms"));
        let kubelets = sys
            .spawned()
            .iter()
            .filter(|argv| argv[0] == "/bin/kubelet")
            .count();
        assert_eq!(kubelets, 3);
        assert!(sys.logged("shutdown requested by system socket"));
        assert!(sys.logged("kubelet exited status=0"));
        let tail: Vec<&str> = sys.calls.iter().rev().take(2).map(String::as_str).collect();
        assert_eq!(tail, ["reboot PowerOff", "sync"]);
        assert!(position(sys, "kill all Term") < position(sys, "sync"));
        assert_eq!(sys.calls_starting("kill all Kill"), Vec::<&str>::new());
    }

    /// Everything the kubelet 1.20 sends logind over one connection, as
    /// godbus encodes it: authentication, Hello, the InhibitDelayMaxUSec
    /// Get, Inhibit and AddMatch.
    fn kubelet_bus_conversation() -> Vec<u8> {
        use crate::dbus::tests::*;
        let mut bytes = GODBUS_AUTH.to_vec();
        for call in [GODBUS_HELLO, GODBUS_GET, GODBUS_INHIBIT, GODBUS_ADD_MATCH] {
            bytes.extend(hex(call));
        }
        bytes
    }

    const KUBELET_BUS: BusId = BusId(7);

    /// A booted node whose kubelet (config: 20 s grace) holds an inhibitor.
    fn with_kubelet_on_the_bus() -> Init<RecordingSys> {
        let mut sys = RecordingSys::new().with_file(
            kios_abi::kubernetes::CONFIG,
            b"kind: KubeletConfiguration\nshutdownGracePeriod: 20s\n",
        );
        sys.bus_input
            .insert(KUBELET_BUS.0, kubelet_bus_conversation());
        let mut init = booted(sys);
        init.handle(Event::BusConnected {
            conn: KUBELET_BUS,
            uid: 0,
        });
        init.handle(Event::BusReadable(KUBELET_BUS));
        init
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
    fn the_power_button_shuts_the_node_down_gracefully() {
        let mut init = with_kubelet_on_the_bus();
        init.sys.events.extend([
            Event::PowerButton,
            Event::PowerButton,
            Event::InhibitorReleased,
        ]);
        init.sys.events.extend(both_services_exit());
        init.run();
        let sys = init.sys();
        assert!(sys.logged("shutdown requested by power button"));
        // A second press changes nothing: one shutdown, one PrepareForShutdown.
        assert_eq!(
            sys.logs
                .iter()
                .filter(|l| l.contains("shutdown requested"))
                .count(),
            1
        );
        assert!(sys.logged("clients and inhibitors done"));
        assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
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

    #[test]
    fn the_kubelet_gets_logind_answers_and_an_inhibitor_matching_its_grace_period() {
        let init = with_kubelet_on_the_bus();
        let sys = init.sys();
        assert!(sys.logged("shutdown grace period 20000 ms"));
        assert_eq!(
            sys.calls_starting("bus_send 7")
                .iter()
                .filter(|c| c.ends_with("+inhibitor"))
                .count(),
            1
        );
        assert!(sys.logged("bus: :1.7 holds a shutdown inhibitor (1 in all)"));
        let output = &sys.bus_output[&KUBELET_BUS.0];
        let replies = crate::dbus::tests::messages(
            &output[output.iter().position(|&b| b == b'l').unwrap()..],
        );
        // Hello, Get, Inhibit and AddMatch replies; the Get's variant is InhibitDelayMaxUSec.
        assert_eq!(replies.len(), 4);
        assert!(replies
            .iter()
            .all(|reply| reply.kind == crate::dbus::METHOD_RETURN));
        assert_eq!(replies[1].body[8..], 20_000_000u64.to_le_bytes());
        assert_eq!(init.bus.inhibitors(), 1);
    }

    #[test]
    fn shutdown_tells_the_kubelet_and_waits_for_its_inhibitor_to_be_released() {
        let mut init = with_kubelet_on_the_bus();
        init.sys.events.extend([
            Event::Request {
                client: ClientId(1),
                byte: 0x01,
            },
            Event::InhibitorReleased,
        ]);
        init.sys.events.extend(both_services_exit());
        init.run();
        let sys = init.sys();
        assert!(sys.logged("waiting up to 20000 ms for 0 client(s) and 1 inhibitor(s)"));
        let output = &sys.bus_output[&KUBELET_BUS.0];
        let signals = crate::dbus::tests::messages(
            &output[output.iter().position(|&b| b == b'l').unwrap()..],
        );
        let last = signals.last().unwrap();
        assert_eq!(last.kind, crate::dbus::SIGNAL);
        assert_eq!(last.field(crate::dbus::MEMBER), "PrepareForShutdown");
        assert_eq!(last.body, [1, 0, 0, 0]);
        let signal_sent = sys
            .calls
            .iter()
            .rposition(|c| c.starts_with("bus_send 7 "))
            .unwrap();
        assert!(signal_sent < position(sys, "kill all Term"));
        assert!(sys.logged("bus: a shutdown inhibitor was released (0 left)"));
        assert!(sys.logged("clients and inhibitors done"));
        assert!(!sys.logged("grace period over"));
        // SIGTERM, then SIGCONT for anything stopped, and no SIGKILL.
        assert!(position(sys, "kill all Term") < position(sys, "kill all Cont"));
        assert_eq!(sys.calls_starting("kill all Kill"), Vec::<&str>::new());
        assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
    }

    #[test]
    fn a_kubelet_that_never_releases_its_inhibitor_holds_the_shutdown_only_for_the_grace_period() {
        let init = with_kubelet_on_the_bus();
        let requested = init.sys.now_us;
        let init = run_with(init, &[Event::Signal(signo::SIGTERM)]);
        let sys = init.sys();
        assert!(sys.logged("grace period over with 0 client(s) and 1 inhibitor(s) pending"));
        let term_at = sys.calls.iter().position(|c| c == "kill all Term").unwrap();
        assert!(term_at > 0);
        // Only timeouts after the request: the clock shows the wait.
        assert!(sys.now_us - requested >= 20_000_000);
        let bound = 20_000_000
            + (crate::shutdown::TERM_TIMEOUT_MS + crate::shutdown::KILL_TIMEOUT_MS) * 1000;
        assert!(sys.now_us - requested <= bound + 100_000);
        assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
    }

    #[test]
    fn a_spurious_wake_up_keeps_the_kubelets_connection() {
        let mut init = with_kubelet_on_the_bus();
        init.sys.failures.push(("bus_read 7".into(), Errno::AGAIN));
        init.handle(Event::BusReadable(KUBELET_BUS));
        assert!(!init.sys().calls.contains(&"bus_close 7".to_string()));
        assert_eq!(init.bus.inhibitors(), 1);
    }

    #[test]
    fn garbage_and_non_root_peers_on_the_bus_lose_their_connection_and_nothing_else() {
        let mut init = with_kubelet_on_the_bus();
        let sent_to_kubelet = init.sys.bus_output[&KUBELET_BUS.0].len();
        let garbage = BusId(8);
        let stranger = BusId(9);
        let oversized = BusId(10);
        init.sys.bus_input.insert(
            garbage.0,
            b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n\xff\xfe junk".to_vec(),
        );
        let mut huge = kubelet_bus_conversation();
        huge.truncate(crate::dbus::tests::GODBUS_AUTH.len());
        huge.extend(b"l\x01\x00\x01\xff\xff\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00");
        init.sys.bus_input.insert(oversized.0, huge);
        for (conn, uid) in [(garbage, 0), (stranger, 1000), (oversized, 0)] {
            init.handle(Event::BusConnected { conn, uid });
            init.handle(Event::BusReadable(conn));
        }
        let sys = init.sys();
        assert!(sys.logged("bus: closed :1.8 after a protocol violation"));
        assert!(sys.logged("bus: refused client uid=1000"));
        assert!(sys.logged("bus: closed :1.10 after a protocol violation"));
        for conn in [garbage, stranger, oversized] {
            assert!(sys.calls.contains(&format!("bus_close {}", conn.0)));
        }
        // The kubelet's connection and inhibitor are untouched.
        assert!(!sys.calls.contains(&"bus_close 7".to_string()));
        assert_eq!(init.bus.inhibitors(), 1);
        assert_eq!(init.sys.bus_output[&KUBELET_BUS.0].len(), sent_to_kubelet);
    }

    #[test]
    fn shutdown_waits_for_clients_to_continue_within_the_grace_period() {
        let mut sys = RecordingSys::new().with_file("/proc/cmdline", b"kios.shutdown_grace=5");
        sys.clients = 1;
        let init = booted(sys);
        let init = run_with(
            init,
            &[
                Event::Request {
                    client: ClientId(1),
                    byte: 0x01,
                },
                Event::Request {
                    client: ClientId(1),
                    byte: 0x02,
                },
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Exited(0),
                },
                Event::ChildExited {
                    pid: RUNTIME,
                    status: ExitStatus::Exited(0),
                },
            ],
        );
        let sys = init.sys();
        assert!(position(sys, "broadcast 1") < position(sys, "kill all Term"));
        assert!(sys.logged("waiting up to 5000 ms for 1 client(s) and 0 inhibitor(s)"));
        assert!(sys.logged("shutdown: clients and inhibitors done after 1 ms"));
        assert!(!sys.logged("grace period over"));
    }

    #[test]
    fn a_silent_client_and_a_process_ignoring_sigterm_cannot_stall_shutdown() {
        let mut sys = RecordingSys::new().with_file("/proc/cmdline", b"kios.shutdown_grace=5");
        sys.clients = 1;
        let init = booted(sys);
        let started = init.sys.now_us;
        // After the request nothing answers and nothing exits: only timeouts.
        let init = run_with(init, &[Event::Signal(signo::SIGTERM)]);
        let sys = init.sys();
        assert!(sys.logged("grace period over with 1 client(s) and 0 inhibitor(s) pending"));
        assert!(sys.logged("sending SIGKILL"));
        assert!(sys.logged("processes survived SIGKILL"));
        assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
        let grace = 5_000_000;
        let bound =
            grace + (crate::shutdown::TERM_TIMEOUT_MS + crate::shutdown::KILL_TIMEOUT_MS) * 1000;
        assert!(
            sys.now_us - started <= bound + 100_000,
            "took {} us",
            sys.now_us - started
        );
    }

    #[test]
    fn ctrl_alt_del_reboots() {
        let init = booted(RecordingSys::new());
        let init = run_with(
            init,
            &[
                Event::Signal(signo::SIGINT),
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Exited(0),
                },
                Event::ChildExited {
                    pid: RUNTIME,
                    status: ExitStatus::Exited(0),
                },
            ],
        );
        assert_eq!(init.sys().calls.last().unwrap(), "reboot Reboot");
    }

    #[test]
    fn garbage_on_the_system_socket_drops_the_client_and_changes_nothing() {
        let init = booted(RecordingSys::new());
        let init = run_with(
            init,
            &[
                Event::Request {
                    client: ClientId(4),
                    byte: 0xff,
                },
                Event::Request {
                    client: ClientId(5),
                    byte: 0x00,
                },
                Event::Signal(signo::SIGTERM),
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Exited(0),
                },
                Event::ChildExited {
                    pid: RUNTIME,
                    status: ExitStatus::Exited(0),
                },
            ],
        );
        let sys = init.sys();
        assert_eq!(
            sys.calls_starting("drop_client"),
            ["drop_client 4", "drop_client 5"]
        );
        assert_eq!(sys.spawned().len(), 2);
    }

    #[test]
    fn restart_commands_stop_the_service_and_it_comes_back_at_once() {
        let init = booted(RecordingSys::new());
        let init = run_with(
            init,
            &[
                Event::Request {
                    client: ClientId(1),
                    byte: 0x03,
                },
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Signaled(15),
                },
                Event::Request {
                    client: ClientId(1),
                    byte: 0x04,
                },
                Event::ChildExited {
                    pid: RUNTIME,
                    status: ExitStatus::Exited(0),
                },
                Event::Signal(signo::SIGTERM),
                Event::ChildExited {
                    pid: Pid(103),
                    status: ExitStatus::Exited(0),
                },
                Event::ChildExited {
                    pid: Pid(104),
                    status: ExitStatus::Exited(0),
                },
            ],
        );
        let sys = init.sys();
        assert_eq!(
            sys.calls_starting("kill 10"),
            ["kill 102 Term", "kill 101 Term"]
        );
        assert!(sys.logged("kubelet exited signal=15, restart in 0 ms"));
        assert!(sys.logged("containerd exited status=0, restart in 0 ms"));
        let names: Vec<String> = sys.spawned().iter().map(|argv| argv[0].clone()).collect();
        assert_eq!(
            names,
            [
                "/bin/containerd",
                "/bin/kubelet",
                "/bin/kubelet",
                "/bin/containerd"
            ]
        );
    }

    #[test]
    fn shutdown_unmounts_children_first_and_detaches_busy_mounts() {
        let mountinfo = b"1 0 0:1 / / ro - rootfs rootfs rw\n\
2 1 0:2 / /dev rw - devtmpfs devtmpfs rw\n\
3 1 0:3 / /var rw - tmpfs tmpfs rw\n\
4 3 0:4 / /var/lib/kubelet/pods/x rw - tmpfs tmpfs rw\n";
        let sys = RecordingSys::new()
            .with_file("/proc/self/mountinfo", mountinfo)
            .failing_exactly("umount /dev", Errno::BUSY);
        let init = booted(sys);
        let init = run_with(
            init,
            &[
                Event::Signal(signo::SIGTERM),
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Exited(0),
                },
                Event::ChildExited {
                    pid: RUNTIME,
                    status: ExitStatus::Exited(0),
                },
            ],
        );
        let sys = init.sys();
        assert_eq!(
            sys.calls_starting("umount"),
            [
                "umount /var/lib/kubelet/pods/x",
                "umount /var",
                "umount /dev",
                "umount /dev detach"
            ]
        );
        assert!(position(sys, "readonly /dev") < position(sys, "umount /dev detach"));
        assert!(sys.logged("unmount /dev: EBUSY (16); read-only yes, detached yes"));
    }
}
