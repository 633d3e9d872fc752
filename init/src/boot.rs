//! The boot sequence and the event loop of PID 1.

use crate::cmdline::{self, Options};
use crate::errno::Errno;
use crate::hostname::Hostname;
use crate::kubelet::{self, RUNTIME_SOCKET};
use crate::log;
use crate::log::Level;
use crate::mounts::{self, FsMount};
use crate::netlink;
use crate::protocol::Command;
use crate::shutdown::Shutdown;
use crate::supervisor::{Restart, Service, Supervisor};
use crate::sys::{signo, CommandArgv, Event, MountOp, PowerAction, Signal, Sys};

pub const SYSTEM_SOCKET: &str = "/run/system.sock";
/// The module load order, written at image build time: one path per line.
pub const MODULE_LIST: &str = "/etc/kios/modules";
pub const HOSTNAME_FILE: &str = "/etc/hostname";
/// The hostname when none is configured: the kernel's "(none)" is no node name.
const DEFAULT_HOSTNAME: &str = "kios";
/// Where the initramfs root is bind-mounted before it is moved onto `/`.
/// Any empty directory of the image does; /run gets a tmpfs right after.
const ROOT_STAGING: &str = "/run";

/// A boot step that failed, with the errno the kernel gave.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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
    StartService(Service, Errno),
    RuntimeSocket(Errno),
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
                ufmt::uwrite!(f, "serving {} failed: {}", SYSTEM_SOCKET, e)
            }
            BootError::StartService(s, e) => {
                ufmt::uwrite!(f, "starting {} failed: {}", s.name(), e)
            }
            BootError::RuntimeSocket(e) => {
                ufmt::uwrite!(f, "waiting for {} failed: {}", RUNTIME_SOCKET, e)
            }
        }
    }
}

/// The timeline phases, logged as `timeline <phase> us=<µs since boot>`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Pid1,
    MountsDone,
    RuntimeExec,
    RuntimeReady,
    KubeletExec,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pid1 => "pid1",
            Phase::MountsDone => "mounts_done",
            Phase::RuntimeExec => "runtime_exec",
            Phase::RuntimeReady => "runtime_ready",
            Phase::KubeletExec => "kubelet_exec",
        }
    }
}

pub struct Init<S: Sys> {
    sys: S,
    options: Options,
    supervisor: Supervisor,
    shutdown: Option<Shutdown>,
}

impl<S: Sys> Init<S> {
    pub fn new(sys: S) -> Init<S> {
        Init {
            sys,
            options: Options::default(),
            supervisor: Supervisor::new(),
            shutdown: None,
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
            "timeline {} us={}",
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
        if let Err(errno) = self.sys.write_file(mounts::DEVKMSG_SYSCTL, b"on") {
            self.fail(BootError::Sysctl(mounts::DEVKMSG_SYSCTL, errno));
        }
        self.read_options();
        for mount in &mounts::BASE {
            self.mount(mount);
        }
        // Last, so every mount above is shared too.
        if let Err(errno) = self.sys.mount(&MountOp::SharedRecursive { target: "/" }) {
            self.fail(BootError::SharedRoot(errno));
        }
        for (dir, mode) in mounts::STATE_DIRS {
            self.mkdir(dir, mode);
        }
        let now = self.sys.now_us();
        self.timeline(Phase::MountsDone, now);

        self.load_modules();
        self.set_hostname();
        self.bring_up_loopback();
        self.set_sysctls();
        if let Err(errno) = self.sys.listen(SYSTEM_SOCKET) {
            self.fail(BootError::SystemSocket(errno));
        }
        self.start_runtime_and_kubelet();
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

    fn load_modules(&mut self) {
        let mut buf = [0u8; 16384];
        let read = match self.sys.read_file(MODULE_LIST, &mut buf) {
            Ok(read) => read,
            Err(Errno::NOENT) => {
                log!(
                    &mut self.sys,
                    Level::Info,
                    "{}: not present, no modules to load",
                    MODULE_LIST
                );
                return;
            }
            Err(errno) => {
                log!(
                    &mut self.sys,
                    Level::Warning,
                    "{}: unreadable ({}), no modules loaded",
                    MODULE_LIST,
                    errno
                );
                return;
            }
        };
        if read.truncated {
            log!(
                &mut self.sys,
                Level::Warning,
                "{}: longer than {} bytes, loading what fits",
                MODULE_LIST,
                buf.len()
            );
        }
        let mut loaded = 0u32;
        for line in buf[..read.len].split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let Ok(path) = core::str::from_utf8(line) else {
                log!(
                    &mut self.sys,
                    Level::Warning,
                    "{}: skipped a line that is not UTF-8",
                    MODULE_LIST
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
        log!(&mut self.sys, Level::Info, "loaded {} module(s)", loaded);
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
                match self
                    .sys
                    .wait_for_socket(RUNTIME_SOCKET, pid, self.options.runtime_timeout_ms)
                {
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
        self.shutdown = Some(Shutdown::begin(
            &mut self.sys,
            action,
            self.options.shutdown_grace_ms,
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
