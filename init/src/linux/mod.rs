//! [`Sys`] on a real kernel: rustix for what it covers, mini-libc-free for
//! fork, execve, signal masks and signalfd. Also the event loop's
//! mechanics: epoll over the signalfd, the system socket, its clients and
//! the pipes that capture the runtime's and the kubelet's output.

use core::ffi::CStr;
use core::mem::MaybeUninit;

use kios_init::config::cmdline::PanicPolicy;
use kios_init::errno::Errno;
use kios_init::log::service_file;
use kios_init::log::Level;
use kios_init::peer;
use kios_init::power_button;
use kios_init::sys::{
    signo, BusId, ClientId, CommandArgv, Event, ExitStatus, FileRead, MountOp, Pid, PowerAction,
    Signal, Sys, SysResult, Timespec,
};
use mini_libc_free::kmsg::{self, Line};
use mini_libc_free::process::{self, Fork};
use mini_libc_free::signal::{self, SigSet};
use rustix::event::epoll;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno as RawErrno;
use rustix::io::IoSlice;
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use rustix::process::{WaitId, WaitIdOptions, WaitOptions};

/// The signals PID 1 reads from its signalfd instead of handling.
const SIGNALS: SigSet = SigSet::EMPTY
    .with(signo::SIGCHLD)
    .with(signo::SIGTERM)
    .with(signo::SIGINT)
    .with(signo::SIGPWR)
    .with(linux_raw_sys::general::SIGHUP);

/// The environment every child gets.
const CHILD_ENV: [&CStr; 2] = [c"PATH=/bin", c"HOME=/"];

const MAX_CLIENTS: usize = 8;
/// Output pipes: one per supervised start, kept until the last writer
/// (which may be a grandchild) closes it.
const MAX_OUTPUTS: usize = 8;
/// Captured output lines longer than this are split.
const OUTPUT_LINE_MAX: usize = 480;
/// A pipe this large absorbs bursts, so a child never waits on the init.
const OUTPUT_PIPE_BYTES: usize = 1 << 20;

/// Shutdown inhibitors handed out and not yet released.
const MAX_INHIBITORS: usize = 8;

const TOKEN_SIGNALS: u64 = 0;
const TOKEN_LISTENER: u64 = 1;
const TOKEN_BUS_LISTENER: u64 = 2;
const TOKEN_CLIENT: u64 = 1 << 32;
const TOKEN_OUTPUT: u64 = 2 << 32;
const TOKEN_BUS: u64 = 3 << 32;
const TOKEN_INHIBITOR: u64 = 4 << 32;
const TOKEN_INPUT: u64 = 5 << 32;
const TOKEN_KIND: u64 = !0xffff_ffff;

struct Client {
    id: u32,
    fd: OwnedFd,
}

struct Output {
    id: u32,
    name: &'static str,
    fd: OwnedFd,
    line: heapless::Vec<u8, OUTPUT_LINE_MAX>,
    log: LogFile,
}

/// A service's log file (`kios_init::log::service_file`), appended to line by line.
/// Logging must never stop PID 1: a file that cannot be opened or
/// written is skipped, and kmsg still gets the line.
struct LogFile {
    fd: Option<OwnedFd>,
    size: service_file::Size,
}

impl LogFile {
    fn open(service: &str) -> LogFile {
        let fd = c_path(
            service_file::path(service, false).as_str(),
            &mut [0; PATH_MAX],
        )
        .ok()
        .and_then(|path| {
            rustix::fs::open(
                path,
                OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::from_raw_mode(0o640),
            )
            .ok()
        });
        let bytes = fd
            .as_ref()
            .and_then(|fd| rustix::fs::fstat(fd).ok())
            .map_or(0, |stat| stat.st_size as u64);
        LogFile {
            fd,
            size: service_file::Size::opened(bytes),
        }
    }

    fn append(&mut self, service: &str, line: &[u8]) {
        if self.size.must_rotate_before(line) {
            let (current, rotated) = (&mut [0; PATH_MAX], &mut [0; PATH_MAX]);
            if let (Ok(current), Ok(rotated)) = (
                c_path(service_file::path(service, false).as_str(), current),
                c_path(service_file::path(service, true).as_str(), rotated),
            ) {
                let _ = rustix::fs::rename(current, rotated);
            }
            *self = LogFile::open(service);
        }
        if let Some(fd) = &self.fd {
            for part in [line, b"\n"] {
                if let Ok(written) = rustix::io::write(fd, part) {
                    self.size.wrote(written);
                }
            }
        }
    }
}

impl Output {
    fn flush(&mut self) {
        if !self.line.is_empty() {
            let mut line = Line::with_ident(kmsg::Level::Info, self.name);
            line.push_bytes(&self.line);
            line.emit();
            self.log.append(self.name, &self.line);
            self.line.clear();
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.flush();
            } else if self.line.push(byte).is_err() {
                self.flush();
                let _ = self.line.push(byte);
            }
        }
    }
}

pub struct Linux {
    epoll: OwnedFd,
    signals: OwnedFd,
    listener: Option<OwnedFd>,
    clients: heapless::Vec<Client, MAX_CLIENTS>,
    bus_listener: Option<OwnedFd>,
    /// Accepted bus connections; the bus closes those past its own limit.
    bus_connections: heapless::Vec<Client, MAX_CLIENTS>,
    /// The init's ends of the inhibitor pipes: they hang up on release.
    inhibitors: heapless::Vec<Client, MAX_INHIBITORS>,
    /// Evdev devices watched for the power key.
    inputs: heapless::Vec<Client, MAX_CLIENTS>,
    outputs: heapless::Vec<Output, MAX_OUTPUTS>,
    pending: heapless::Deque<Event, 64>,
    /// Children may be left to reap after the pending queue filled up.
    reap_pending: bool,
    next_id: u32,
}

fn errno(raw: RawErrno) -> Errno {
    Errno(raw.raw_os_error())
}

fn timespec(duration: Timespec) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: duration.secs,
        tv_nsec: duration.nanos,
    }
}

fn level(level: Level) -> kmsg::Level {
    match level {
        Level::Err => kmsg::Level::Err,
        Level::Warning => kmsg::Level::Warning,
        Level::Notice => kmsg::Level::Notice,
        Level::Info => kmsg::Level::Info,
    }
}

/// A path (or mount data) as the NUL-terminated string the kernel takes,
/// written into `buf`. Every rustix call gets a `&CStr` from here: rustix's
/// own conversion of a `&str` is generic, and repeated at each call it cost
/// the init 1.5 KB.
fn c_path<'b>(text: &str, buf: &'b mut [u8; PATH_MAX]) -> SysResult<&'b CStr> {
    let bytes = text.as_bytes();
    if bytes.len() >= buf.len() || kios_init::text::has_byte(bytes, 0) {
        return Err(Errno::NAMETOOLONG);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[bytes.len()] = 0;
    Ok(mini_libc_free::cstr::until_nul(buf))
}

/// The longest path the init passes to the kernel, NUL included.
const PATH_MAX: usize = 256;

impl Linux {
    /// Blocks the signals PID 1 reads, makes Ctrl-Alt-Del a SIGINT, and sets
    /// up the epoll set with the signalfd.
    pub fn new() -> Result<Linux, RawErrno> {
        signal::block(SIGNALS)?;
        let signals = signal::signalfd(SIGNALS)?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &epoll,
            &signals,
            epoll::EventData::new_u64(TOKEN_SIGNALS),
            epoll::EventFlags::IN,
        )?;
        // Without this the kernel reboots at once on Ctrl-Alt-Del.
        let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
        Ok(Linux {
            epoll,
            signals,
            listener: None,
            clients: heapless::Vec::new(),
            bus_listener: None,
            bus_connections: heapless::Vec::new(),
            inhibitors: heapless::Vec::new(),
            inputs: heapless::Vec::new(),
            outputs: heapless::Vec::new(),
            pending: heapless::Deque::new(),
            reap_pending: false,
            next_id: 0,
        })
    }

    fn next_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn read_signals(&mut self) {
        while let Ok(Some(number)) = signal::read_signal(&self.signals) {
            if number == signo::SIGCHLD {
                self.reap_pending = true;
            } else if self.pending.push_back(Event::Signal(number)).is_err() {
                break;
            }
        }
    }

    /// Collects every exited child; stops early if the queue is full.
    fn reap(&mut self) {
        self.reap_pending = false;
        while !self.pending.is_full() {
            // `wait` is waitpid(-1): children run in sessions of their own, which
            // `waitpid(None)` (their caller's process group only) would never see.
            let (pid, status) = match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some(exited)) => exited,
                Ok(None) | Err(_) => return,
            };
            let status = match (status.exit_status(), status.terminating_signal()) {
                (Some(code), _) => ExitStatus::Exited(code),
                (None, Some(signal)) => ExitStatus::Signaled(signal),
                // Stopped or continued: not an exit.
                (None, None) => continue,
            };
            let _ = self.pending.push_back(Event::ChildExited {
                pid: Pid(pid.as_raw_nonzero().get()),
                status,
            });
        }
        self.reap_pending = true;
    }

    fn accept_clients(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok((fd, uid)) = accept(listener) {
            if !peer::allowed(uid) {
                mini_libc_free::kmsg!(
                    kmsg::Level::Warning,
                    "system socket: refused client uid={}",
                    uid
                );
                continue;
            }
            let registered = register(
                &self.epoll,
                &mut self.next_id,
                &mut self.clients,
                TOKEN_CLIENT,
                fd,
            );
            if registered.is_none() {
                kmsg::write(
                    kmsg::Level::Warning,
                    "system socket: too many clients, refused one",
                );
            }
        }
    }

    /// Accepts bus connections; the policy decides on each peer's uid.
    fn accept_bus(&mut self) {
        let Some(listener) = &self.bus_listener else {
            return;
        };
        while !self.pending.is_full() {
            let Ok((fd, uid)) = accept(listener) else {
                return;
            };
            let registered = register(
                &self.epoll,
                &mut self.next_id,
                &mut self.bus_connections,
                TOKEN_BUS,
                fd,
            );
            match registered {
                Some(id) => {
                    let _ = self.pending.push_back(Event::BusConnected {
                        conn: BusId(id),
                        uid,
                    });
                }
                None => kmsg::write(
                    kmsg::Level::Warning,
                    "bus: too many connections, refused one",
                ),
            }
        }
    }

    /// An inhibitor pipe's read end woke up: its last writer closed it
    /// (nobody ever writes into it).
    fn inhibitor_hung_up(&mut self, id: u32) {
        let Some(index) = self.inhibitors.iter().position(|i| i.id == id) else {
            return;
        };
        if self.pending.push_back(Event::InhibitorReleased).is_ok() {
            let released = self.inhibitors.swap_remove(index);
            let _ = epoll::delete(&self.epoll, &released.fd);
        }
    }

    /// Reads an input device's events; a device that went away is dropped.
    fn read_input(&mut self, id: u32) {
        let Some(index) = self.inputs.iter().position(|input| input.id == id) else {
            return;
        };
        let mut events = [0u8; 8 * power_button::EVENT_SIZE];
        match rustix::io::read(&self.inputs[index].fd, &mut events) {
            Ok(read) => {
                if power_button::any_press(&events[..read]) {
                    let _ = self.pending.push_back(Event::PowerButton);
                }
            }
            Err(RawErrno::AGAIN) | Err(RawErrno::INTR) => {}
            Err(_) => {
                let gone = self.inputs.swap_remove(index);
                let _ = epoll::delete(&self.epoll, &gone.fd);
            }
        }
    }

    /// Reads one command byte a round: when a command drops its client,
    /// the bytes queued behind it are never read, so never reported.
    fn read_client(&mut self, id: u32) {
        let Some(index) = self.clients.iter().position(|client| client.id == id) else {
            return;
        };
        if self.pending.is_full() {
            // Level-triggered: epoll reports the bytes again next round.
            return;
        }
        let mut byte = [0u8; 1];
        match rustix::net::recv(&self.clients[index].fd, &mut byte, RecvFlags::DONTWAIT) {
            Ok((0, _)) => self.drop_client(ClientId(id)),
            Ok(_) => {
                let _ = self.pending.push_back(Event::Request {
                    client: ClientId(id),
                    byte: byte[0],
                });
            }
            Err(RawErrno::AGAIN) | Err(RawErrno::INTR) => {}
            Err(_) => self.drop_client(ClientId(id)),
        }
    }

    fn read_output(&mut self, id: u32) {
        let Some(index) = self.outputs.iter().position(|output| output.id == id) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let output = &mut self.outputs[index];
        match rustix::io::read(&output.fd, &mut buf) {
            Ok(0) => {
                output.flush();
                let _ = epoll::delete(&self.epoll, &output.fd);
                self.outputs.swap_remove(index);
            }
            Ok(n) => output.take(&buf[..n]),
            Err(RawErrno::AGAIN) | Err(RawErrno::INTR) => {}
            Err(_) => {
                let _ = epoll::delete(&self.epoll, &output.fd);
                self.outputs.swap_remove(index);
            }
        }
    }

    // Out of line: inlined into next_event it cost 80-140 bytes more.
    #[inline(never)]
    fn dispatch(&mut self, token: u64) {
        match (token & TOKEN_KIND, (token & 0xffff_ffff) as u32) {
            (0, _) if token == TOKEN_SIGNALS => self.read_signals(),
            (0, _) if token == TOKEN_LISTENER => self.accept_clients(),
            (TOKEN_CLIENT, id) => self.read_client(id),
            (TOKEN_OUTPUT, id) => self.read_output(id),
            (0, _) if token == TOKEN_BUS_LISTENER => self.accept_bus(),
            (TOKEN_BUS, id) => {
                let _ = self.pending.push_back(Event::BusReadable(BusId(id)));
            }
            (TOKEN_INHIBITOR, id) => self.inhibitor_hung_up(id),
            (TOKEN_INPUT, id) => self.read_input(id),
            _ => {}
        }
    }

    /// A root-only (0600) non-blocking Unix stream socket at `path`,
    /// registered with `token`.
    fn listen_unix(&mut self, path: &str, token: u64) -> SysResult<OwnedFd> {
        let mut buf = [0; PATH_MAX];
        let path = c_path(path, &mut buf)?;
        let _ = rustix::fs::unlink(path);
        let address = SocketAddrUnix::new(path).map_err(errno)?;
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(errno)?;
        rustix::net::bind(&socket, &address).map_err(errno)?;
        rustix::fs::chmod(path, Mode::from_raw_mode(0o600)).map_err(errno)?;
        rustix::net::listen(&socket, 16).map_err(errno)?;
        epoll::add(
            &self.epoll,
            &socket,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )
        .map_err(errno)?;
        Ok(socket)
    }

    /// A close-on-exec pipe for a child's stdout and stderr; the init's
    /// end is non-blocking and registered for reading.
    fn output_pipe(&mut self, name: &'static str) -> SysResult<(u32, OwnedFd, OwnedFd)> {
        let (read_end, write_end) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(errno)?;
        rustix::fs::fcntl_setfl(&read_end, OFlags::NONBLOCK).map_err(errno)?;
        // Best effort: the default 64 KiB still works, with less slack.
        let _ = rustix::pipe::fcntl_setpipe_size(&read_end, OUTPUT_PIPE_BYTES);
        let id = self.next_id();
        let _ = name;
        Ok((id, read_end, write_end))
    }
}

/// The next connection on `listener` and its peer's uid (SO_PEERCRED).
fn accept(listener: &OwnedFd) -> Result<(OwnedFd, u32), RawErrno> {
    loop {
        let fd = rustix::net::accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)?;
        // A peer whose credentials cannot be read is dropped unheard.
        if let Ok(uid) = mini_libc_free::socket::peer_uid(&fd) {
            return Ok((fd, uid));
        }
    }
}

/// Puts an accepted connection in `list` and epoll (token `kind` | id);
/// its id, or None (the connection closed) when the list is full (or
/// epoll has no memory for it).
fn register(
    epoll: &OwnedFd,
    next_id: &mut u32,
    list: &mut heapless::Vec<Client, MAX_CLIENTS>,
    kind: u64,
    fd: OwnedFd,
) -> Option<u32> {
    if list.is_full() {
        return None;
    }
    *next_id = next_id.wrapping_add(1);
    let id = *next_id;
    epoll::add(
        epoll,
        &fd,
        epoll::EventData::new_u64(kind | u64::from(id)),
        epoll::EventFlags::IN,
    )
    .ok()?;
    let _ = list.push(Client { id, fd });
    Some(id)
}

/// In the forked child: reset the signal mask, start a session, wire up
/// stdio, exec. Never returns; a failed exec ends the child at once.
fn exec_child(path: &CStr, argv: &[&CStr], stdin: Option<&OwnedFd>, output: &OwnedFd) -> ! {
    let _ = signal::set_mask(SigSet::EMPTY);
    let _ = rustix::process::setsid();
    if let Some(stdin) = stdin {
        let _ = rustix::stdio::dup2_stdin(stdin);
    }
    let _ = rustix::stdio::dup2_stdout(output);
    let _ = rustix::stdio::dup2_stderr(output);
    let failure = process::execve(path, argv, &CHILD_ENV);
    let mut line = Line::new(kmsg::Level::Err);
    line.push("exec ");
    line.push_bytes(path.to_bytes());
    line.push(" failed: errno ");
    line.push_u64(failure.raw_os_error() as u64);
    line.emit();
    process::exit(127)
}

impl Sys for Linux {
    fn now_us(&mut self) -> u64 {
        mini_libc_free::time::boottime_us()
    }

    fn log(&mut self, at: Level, msg: &str) {
        kmsg::write(level(at), msg);
    }

    fn open_kmsg(&mut self) -> SysResult<()> {
        kmsg::open(c"/dev/kmsg").map_err(errno)
    }

    fn set_panic_policy(&mut self, policy: PanicPolicy) {
        mini_libc_free::set_panic_action(match policy {
            PanicPolicy::Reboot => mini_libc_free::PanicAction::Reboot,
            PanicPolicy::Halt => mini_libc_free::PanicAction::Halt,
            PanicPolicy::PowerOff => mini_libc_free::PanicAction::PowerOff,
        });
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> SysResult<()> {
        rustix::fs::mkdir(c_path(path, &mut [0; PATH_MAX])?, Mode::from_raw_mode(mode))
            .map_err(errno)
    }

    fn symlink(&mut self, target: &str, path: &str) -> SysResult<()> {
        rustix::fs::symlink(
            c_path(target, &mut [0; PATH_MAX])?,
            c_path(path, &mut [0; PATH_MAX])?,
        )
        .map_err(errno)
    }

    fn mount(&mut self, op: &MountOp<'_>) -> SysResult<()> {
        use linux_raw_sys::general::{MS_BIND, MS_MOVE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SHARED};
        // One mount(2) call for every form: the flags say which, and the
        // kernel ignores the arguments a form does not use. (rustix's
        // mount_bind, mount_move, ... each cost their own code.)
        let (source, target, fstype, flags, data) = match *op {
            MountOp::Fs {
                source,
                target,
                fstype,
                flags,
                data,
            } => (source, target, fstype, flags, data),
            MountOp::Bind { source, target } => (source, target, "", MS_BIND, ""),
            MountOp::Move { source, target } => (source, target, "", MS_MOVE, ""),
            MountOp::ReadOnly { target } => ("", target, "", MS_REMOUNT | MS_BIND | MS_RDONLY, ""),
            MountOp::SharedRecursive { target } => ("", target, "", MS_SHARED | MS_REC, ""),
        };
        rustix::mount::mount(
            c_path(source, &mut [0; PATH_MAX])?,
            c_path(target, &mut [0; PATH_MAX])?,
            c_path(fstype, &mut [0; PATH_MAX])?,
            MountFlags::from_bits_retain(flags),
            c_path(data, &mut [0; PATH_MAX])?,
        )
        .map_err(errno)
    }

    fn unmount(&mut self, target: &str, detach: bool) -> SysResult<()> {
        let flags = if detach {
            UnmountFlags::DETACH
        } else {
            UnmountFlags::empty()
        };
        rustix::mount::unmount(c_path(target, &mut [0; PATH_MAX])?, flags).map_err(errno)
    }

    fn chdir(&mut self, path: &str) -> SysResult<()> {
        rustix::process::chdir(c_path(path, &mut [0; PATH_MAX])?).map_err(errno)
    }

    fn chroot(&mut self, path: &str) -> SysResult<()> {
        rustix::process::chroot(c_path(path, &mut [0; PATH_MAX])?).map_err(errno)
    }

    fn read_file(&mut self, path: &str, buf: &mut [u8]) -> SysResult<FileRead> {
        let fd = rustix::fs::open(
            c_path(path, &mut [0; PATH_MAX])?,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut len = 0;
        while len < buf.len() {
            match rustix::io::read(&fd, &mut buf[len..]) {
                Ok(0) => {
                    return Ok(FileRead {
                        len,
                        truncated: false,
                    })
                }
                Ok(n) => len += n,
                Err(RawErrno::INTR) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        let mut probe = [0u8; 1];
        let truncated = matches!(rustix::io::read(&fd, &mut probe), Ok(1));
        Ok(FileRead { len, truncated })
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> SysResult<()> {
        let fd = rustix::fs::open(
            c_path(path, &mut [0; PATH_MAX])?,
            OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut written = 0;
        while written < data.len() {
            match rustix::io::write(&fd, &data[written..]) {
                Ok(n) => written += n,
                Err(RawErrno::INTR) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        Ok(())
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        let fd = rustix::fs::open(
            c_path(path, &mut [0; PATH_MAX])?,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut len = 0;
        while len < buf.len() {
            match rustix::io::pread(&fd, &mut buf[len..], offset + len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(RawErrno::INTR) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        Ok(len)
    }

    fn list_dir(&mut self, path: &str, each: &mut dyn FnMut(&str)) -> SysResult<()> {
        let fd = rustix::fs::open(
            c_path(path, &mut [0; PATH_MAX])?,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        let mut entries = rustix::fs::RawDir::new(&fd, &mut buf);
        while let Some(entry) = entries.next() {
            let entry = entry.map_err(errno)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if let Ok(name) = core::str::from_utf8(name) {
                each(name);
            }
        }
        Ok(())
    }

    fn file_size(&mut self, path: &str) -> SysResult<u64> {
        let stat = rustix::fs::stat(c_path(path, &mut [0; PATH_MAX])?).map_err(errno)?;
        match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
            rustix::fs::FileType::RegularFile => Ok(stat.st_size as u64),
            rustix::fs::FileType::Directory => Err(Errno::ISDIR),
            _ => Err(Errno::INVAL),
        }
    }

    fn set_hostname(&mut self, name: &str) -> SysResult<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(errno)
    }

    fn netlink_route(&mut self, request: &[u8], reply: &mut [u8]) -> SysResult<usize> {
        let socket = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            // The default protocol for netlink is NETLINK_ROUTE.
            None,
        )
        .map_err(errno)?;
        rustix::net::send(&socket, request, SendFlags::empty()).map_err(errno)?;
        let (len, _) = rustix::net::recv(&socket, reply, RecvFlags::empty()).map_err(errno)?;
        Ok(len)
    }

    fn load_module(&mut self, path: &str) -> SysResult<()> {
        let fd = rustix::fs::open(
            c_path(path, &mut [0; PATH_MAX])?,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        rustix::system::finit_module(&fd, c"", 0).map_err(errno)
    }

    fn spawn(&mut self, name: &'static str, argv: &CommandArgv) -> SysResult<Pid> {
        let mut args: heapless::Vec<&CStr, 32> = heapless::Vec::new();
        for arg in argv.iter_with_nul() {
            let arg = CStr::from_bytes_with_nul(arg).map_err(|_| Errno::INVAL)?;
            args.push(arg).map_err(|_| Errno::TOOBIG)?;
        }
        let path = *args.first().ok_or(Errno::INVAL)?;
        let stdin = rustix::fs::open(
            c"/dev/null",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok();
        let (id, read_end, write_end) = self.output_pipe(name)?;
        match process::fork().map_err(errno)? {
            Fork::Child => exec_child(path, &args, stdin.as_ref(), &write_end),
            Fork::Parent(pid) => {
                drop(write_end);
                let token = epoll::EventData::new_u64(TOKEN_OUTPUT | u64::from(id));
                let registered = !self.outputs.is_full()
                    && epoll::add(&self.epoll, &read_end, token, epoll::EventFlags::IN).is_ok();
                if registered {
                    let _ = self.outputs.push(Output {
                        id,
                        name,
                        fd: read_end,
                        line: heapless::Vec::new(),
                        log: LogFile::open(name),
                    });
                } else {
                    // Dropping the read end would kill the child's writes with EPIPE;
                    // keep it open unread rather than lose the child.
                    core::mem::forget(read_end);
                    mini_libc_free::kmsg!(
                        kmsg::Level::Warning,
                        "{}: output not captured (too many pipes)",
                        name
                    );
                }
                Ok(Pid(pid.as_raw_nonzero().get()))
            }
        }
    }

    fn kill(&mut self, pid: Option<Pid>, signal: Signal) -> SysResult<()> {
        let number = match signal {
            Signal::Term => linux_raw_sys::general::SIGTERM,
            Signal::Kill => linux_raw_sys::general::SIGKILL,
            Signal::Cont => linux_raw_sys::general::SIGCONT,
        };
        match pid {
            None => process::kill_all(number).map_err(errno),
            Some(pid) => {
                let pid = rustix::process::Pid::from_raw(pid.0).ok_or(Errno::SRCH)?;
                let signal = match signal {
                    Signal::Term => rustix::process::Signal::TERM,
                    Signal::Kill => rustix::process::Signal::KILL,
                    Signal::Cont => rustix::process::Signal::CONT,
                };
                rustix::process::kill_process(pid, signal).map_err(errno)
            }
        }
    }

    fn wait_for_path(&mut self, path: &str, owner: Option<Pid>, timeout_ms: u64) -> SysResult<()> {
        use rustix::event::{PollFd, PollFlags};
        use rustix::fs::inotify;

        let (dir, name) = kios_init::text::rsplit_once(path, b'/').ok_or(Errno::INVAL)?;
        let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(errno)?;
        inotify::add_watch(
            &watch,
            c_path(dir, &mut [0; PATH_MAX])?,
            inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
        )
        .map_err(errno)?;
        // Checked after the watch exists, so a socket created in between is not missed.
        if rustix::fs::access(
            c_path(path, &mut [0; PATH_MAX])?,
            rustix::fs::Access::EXISTS,
        )
        .is_ok()
        {
            return Ok(());
        }
        let owner = match owner {
            Some(owner) => {
                let owner = rustix::process::Pid::from_raw(owner.0).ok_or(Errno::SRCH)?;
                Some(
                    rustix::process::pidfd_open(owner, rustix::process::PidfdFlags::empty())
                        .map_err(errno)?,
                )
            }
            None => None,
        };
        let deadline = self.now_us() + timeout_ms * 1000;
        let mut events = [MaybeUninit::<u8>::uninit(); 1024];
        loop {
            let remaining_us = deadline.saturating_sub(self.now_us());
            if remaining_us == 0 {
                return Err(Errno::TIMEDOUT);
            }
            let timeout = timespec(Timespec::from_us(remaining_us));
            let mut fds = [
                PollFd::new(&watch, PollFlags::IN),
                PollFd::new(owner.as_ref().unwrap_or(&watch), PollFlags::IN),
            ];
            let watched = if owner.is_some() { 2 } else { 1 };
            match rustix::event::poll(&mut fds[..watched], Some(&timeout)) {
                Ok(_) | Err(RawErrno::INTR) => {}
                Err(e) => return Err(errno(e)),
            }
            if owner.is_some() && !fds[1].revents().is_empty() {
                return Err(Errno::SRCH);
            }
            let mut reader = inotify::Reader::new(&watch, &mut events);
            while let Ok(event) = reader.next() {
                if event
                    .file_name()
                    .is_some_and(|file| file.to_bytes() == name.as_bytes())
                {
                    return Ok(());
                }
            }
        }
    }

    fn sleep_ms(&mut self, ms: u64) {
        let duration = timespec(Timespec::from_ms(ms));
        // poll with no fds: a sleep that needs no extra rustix feature.
        let _ = rustix::event::poll(&mut [], Some(&duration));
    }

    fn has_children(&mut self) -> bool {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        !matches!(
            rustix::process::waitid(WaitId::All, options),
            Err(RawErrno::CHILD)
        )
    }

    fn listen(&mut self, path: &str) -> SysResult<()> {
        self.listener = Some(self.listen_unix(path, TOKEN_LISTENER)?);
        Ok(())
    }

    fn listen_bus(&mut self, path: &str) -> SysResult<()> {
        self.bus_listener = Some(self.listen_unix(path, TOKEN_BUS_LISTENER)?);
        Ok(())
    }

    fn bus_read(&mut self, conn: BusId, buf: &mut [u8]) -> SysResult<usize> {
        let client = self
            .bus_connections
            .iter()
            .find(|c| c.id == conn.0)
            .ok_or(Errno::BADF)?;
        // Plain recv: descriptors a client passes are closed by the kernel.
        match rustix::net::recv(&client.fd, buf, RecvFlags::DONTWAIT) {
            Ok((read, _)) => Ok(read),
            Err(RawErrno::AGAIN) | Err(RawErrno::INTR) => Err(Errno::AGAIN),
            Err(e) => Err(errno(e)),
        }
    }

    fn bus_send(&mut self, conn: BusId, bytes: &[u8], inhibitor: bool) -> SysResult<()> {
        let client = self
            .bus_connections
            .iter()
            .find(|c| c.id == conn.0)
            .ok_or(Errno::BADF)?;
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        let sent = if inhibitor {
            if self.inhibitors.is_full() {
                return Err(Errno::MFILE);
            }
            let (read_end, write_end) =
                rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(errno)?;
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let fds = [write_end.as_fd()];
            if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                return Err(Errno::NOBUFS);
            }
            let sent =
                rustix::net::sendmsg(&client.fd, &[IoSlice::new(bytes)], &mut control, flags)
                    .map_err(errno)?;
            // The client holds the only write end now.
            drop(write_end);
            let id = self.next_id();
            let token = epoll::EventData::new_u64(TOKEN_INHIBITOR | u64::from(id));
            epoll::add(&self.epoll, &read_end, token, epoll::EventFlags::IN).map_err(errno)?;
            let _ = self.inhibitors.push(Client { id, fd: read_end });
            sent
        } else {
            rustix::net::send(&client.fd, bytes, flags).map_err(errno)?
        };
        // Replies are a few hundred bytes against a socket buffer of
        // hundreds of KiB: a short send means the client stopped reading.
        if sent == bytes.len() {
            Ok(())
        } else {
            Err(Errno::AGAIN)
        }
    }

    fn watch_inputs(&mut self, dir: &str) -> SysResult<u32> {
        let dir = rustix::fs::open(
            c_path(dir, &mut [0; PATH_MAX])?,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
        let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
        let mut watched = 0;
        while let Some(Ok(entry)) = entries.next() {
            let name = entry.file_name();
            if !power_button::is_event_device(name.to_bytes()) {
                continue;
            }
            let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
            let Ok(device) = rustix::fs::openat(&dir, name, flags, Mode::empty()) else {
                continue;
            };
            if register(
                &self.epoll,
                &mut self.next_id,
                &mut self.inputs,
                TOKEN_INPUT,
                device,
            )
            .is_some()
            {
                watched += 1;
            }
        }
        Ok(watched)
    }

    fn bus_close(&mut self, conn: BusId) {
        if let Some(index) = self.bus_connections.iter().position(|c| c.id == conn.0) {
            let removed = self.bus_connections.swap_remove(index);
            let _ = epoll::delete(&self.epoll, &removed.fd);
        }
    }

    fn next_event(&mut self, timeout_ms: Option<u64>) -> Event {
        if self.pending.is_empty() && self.reap_pending {
            self.reap();
        }
        if let Some(event) = self.pending.pop_front() {
            return event;
        }
        let timeout = timeout_ms.map(|ms| timespec(Timespec::from_ms(ms)));
        let mut ready = [MaybeUninit::<epoll::Event>::uninit(); 16];
        let mut tokens: heapless::Vec<u64, 16> = heapless::Vec::new();
        match epoll::wait(&self.epoll, &mut ready, timeout.as_ref()) {
            Ok((events, _)) => {
                for event in events.iter() {
                    let _ = tokens.push(event.data.u64());
                }
            }
            Err(RawErrno::INTR) => {}
            Err(e) => {
                mini_libc_free::kmsg!(
                    kmsg::Level::Err,
                    "epoll_wait failed: errno {}",
                    e.raw_os_error()
                );
            }
        }
        for token in tokens {
            self.dispatch(token);
        }
        if self.reap_pending {
            self.reap();
        }
        self.pending.pop_front().unwrap_or(Event::Timeout)
    }

    fn broadcast(&mut self, byte: u8) -> usize {
        let mut told = 0;
        let mut dead: heapless::Vec<u32, MAX_CLIENTS> = heapless::Vec::new();
        for client in &self.clients {
            match rustix::net::send(
                &client.fd,
                &[byte],
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Ok(1) => told += 1,
                // A client that cannot take one byte is not listening: drop it.
                _ => {
                    let _ = dead.push(client.id);
                }
            }
        }
        for id in dead {
            self.drop_client(ClientId(id));
        }
        told
    }

    fn drop_client(&mut self, client: ClientId) {
        if let Some(index) = self.clients.iter().position(|c| c.id == client.0) {
            let removed = self.clients.swap_remove(index);
            let _ = epoll::delete(&self.epoll, removed.fd.as_fd());
        }
    }

    fn sync(&mut self) {
        rustix::fs::sync();
    }

    fn reboot(&mut self, action: PowerAction) -> Errno {
        let command = match action {
            PowerAction::PowerOff => rustix::system::RebootCommand::PowerOff,
            PowerAction::Reboot => rustix::system::RebootCommand::Restart,
        };
        match rustix::system::reboot(command) {
            Ok(()) => Errno::INVAL,
            Err(e) => errno(e),
        }
    }
}
