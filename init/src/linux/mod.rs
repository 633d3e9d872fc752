//! [`Sys`] on a real kernel: rustix for what it covers, mini-libc-free for
//! fork, execve, signal masks and signalfd. This file holds the [`Linux`]
//! state, the event loop (epoll over the signalfd, the sockets, their
//! clients, the output pipes and the input devices) and the [`Sys`] impl,
//! each method a call into the file for its area.

mod clock;
mod files;
mod input;
mod output;
mod process;
mod sockets;

use core::mem::MaybeUninit;

use kios_init::config::cmdline::PanicPolicy;
use kios_init::errno::Errno;
use kios_init::log::Level;
use kios_init::sys::{
    BusId, ClientId, ClientList, CommandArgv, Event, FileRead, MountOp, Pid, PowerAction, Signal,
    Sys, SysResult, Timespec, Unmount, CLIENTS_MAX, INHIBITORS_MAX, OUTPUTS_MAX,
};
use mini_libc_free::kmsg;
use mini_libc_free::signal;
use rustix::event::epoll;
use rustix::fd::OwnedFd;
use rustix::io::Errno as RawErrno;

use output::{LogFile, Output, LOG_FILES_MAX};

const TOKEN_SIGNALS: u64 = 0;
const TOKEN_LISTENER: u64 = 1;
const TOKEN_BUS_LISTENER: u64 = 2;
const TOKEN_CLOCK: u64 = 3;
const TOKEN_CLIENT: u64 = 1 << 32;
const TOKEN_OUTPUT: u64 = 2 << 32;
const TOKEN_BUS: u64 = 3 << 32;
const TOKEN_INHIBITOR: u64 = 4 << 32;
const TOKEN_INPUT: u64 = 5 << 32;
const TOKEN_KIND: u64 = !0xffff_ffff;

/// A registered descriptor and the id in its epoll token.
struct Client {
    id: u32,
    fd: OwnedFd,
}

pub struct Linux {
    epoll: OwnedFd,
    signals: OwnedFd,
    listener: Option<OwnedFd>,
    clients: heapless::Vec<Client, CLIENTS_MAX>,
    bus_listener: Option<OwnedFd>,
    /// Accepted bus connections; the bus closes those past its own limit.
    bus_connections: heapless::Vec<Client, CLIENTS_MAX>,
    /// The init's ends of the inhibitor pipes: they hang up on release.
    inhibitors: heapless::Vec<Client, INHIBITORS_MAX>,
    /// Evdev devices watched for the power key.
    inputs: heapless::Vec<Client, CLIENTS_MAX>,
    outputs: heapless::Vec<Output, OUTPUTS_MAX>,
    logs: heapless::Vec<LogFile, LOG_FILES_MAX>,
    pending: heapless::Deque<Event, 64>,
    /// Children may be left to reap after the pending queue filled up.
    reap_pending: bool,
    /// When the listeners, paused after a failed accept, are watched again.
    accept_resume_us: Option<u64>,
    /// The wall clock's watch, once the data partition keeps the time.
    clock: Option<OwnedFd>,
    next_id: u32,
}

/// Descriptors 0 to 2 are the console the kernel opened for PID 1; with
/// no console they are closed, and the epoll set, the sockets or a log
/// file would take their numbers, where anything written to "stdout" would
/// land. A placeholder (the root directory, which takes no writes) fills
/// each gap; open returns the lowest free number, so once it returns 3 or
/// more, 0 to 2 are taken.
fn fill_standard_fds() {
    use rustix::fd::{AsRawFd, IntoRawFd};
    use rustix::fs::{Mode, OFlags};
    while let Ok(fd) = rustix::fs::open(c"/", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
        if fd.as_raw_fd() > 2 {
            break;
        }
        let _placeholder = fd.into_raw_fd();
    }
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

pub(super) fn level(level: Level) -> kmsg::Level {
    match level {
        Level::Err => kmsg::Level::Err,
        Level::Warning => kmsg::Level::Warning,
        Level::Notice => kmsg::Level::Notice,
        Level::Info => kmsg::Level::Info,
        Level::Debug => kmsg::Level::Debug,
    }
}

impl Linux {
    /// Blocks the signals PID 1 reads, makes Ctrl-Alt-Del a SIGINT, and sets
    /// up the epoll set with the signalfd.
    pub fn new() -> Result<Linux, RawErrno> {
        fill_standard_fds();
        signal::block(process::SIGNALS)?;
        let signals = signal::signalfd(process::SIGNALS)?;
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
            logs: heapless::Vec::new(),
            pending: heapless::Deque::new(),
            reap_pending: false,
            accept_resume_us: None,
            clock: None,
            next_id: 0,
        })
    }

    fn next_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
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
            (0, _) if token == TOKEN_CLOCK => self.read_clock(),
            _ => {}
        }
    }
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
        files::mkdir(path, mode)
    }

    fn symlink(&mut self, target: &str, path: &str) -> SysResult<()> {
        files::symlink(target, path)
    }

    fn rename(&mut self, dir: &str, from: &str, to: &str) -> SysResult<()> {
        files::rename(dir, from, to)
    }

    fn mount(&mut self, op: &MountOp<'_>) -> SysResult<()> {
        files::mount(op)
    }

    fn unmount(&mut self, target: &str, how: Unmount) -> SysResult<()> {
        files::unmount(target, how)
    }

    fn chdir(&mut self, path: &str) -> SysResult<()> {
        files::chdir(path)
    }

    fn chroot(&mut self, path: &str) -> SysResult<()> {
        files::chroot(path)
    }

    fn read_file(&mut self, path: &str, buf: &mut [u8]) -> SysResult<FileRead> {
        files::read_file(path, buf)
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> SysResult<()> {
        files::write_file(path, data)
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        files::read_at(path, offset, buf)
    }

    fn list_dir(&mut self, path: &str, each: &mut dyn FnMut(&str)) -> SysResult<()> {
        files::list_dir(path, each)
    }

    fn file_size(&mut self, path: &str) -> SysResult<u64> {
        files::file_size(path)
    }

    fn modified_secs(&mut self, path: &str) -> SysResult<i64> {
        files::modified_secs(path)
    }

    fn touch(&mut self, path: &str) -> SysResult<()> {
        files::touch(path)
    }

    fn realtime_secs(&mut self) -> i64 {
        mini_libc_free::time::realtime_secs()
    }

    fn set_realtime_secs(&mut self, secs: i64) -> SysResult<()> {
        let time = rustix::time::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        rustix::time::clock_settime(rustix::time::ClockId::Realtime, time).map_err(errno)
    }

    fn watch_clock(&mut self) -> SysResult<()> {
        self.watch_wall_clock()
    }

    fn set_hostname(&mut self, name: &str) -> SysResult<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(errno)
    }

    fn netlink_route(&mut self, request: &[u8], reply: &mut [u8]) -> SysResult<usize> {
        sockets::netlink_route(request, reply)
    }

    fn load_module(&mut self, path: &str) -> SysResult<()> {
        files::load_module(path)
    }

    fn spawn(&mut self, name: &'static str, argv: &CommandArgv) -> SysResult<Pid> {
        self.start_child(name, argv, None)
    }

    fn hand_over(
        &mut self,
        client: ClientId,
        name: &'static str,
        argv: &CommandArgv,
    ) -> SysResult<Pid> {
        let connection = self.take_client(client).ok_or(Errno::BADF)?;
        // The child gets the connection; the init's copy closes here.
        self.start_child(name, argv, Some(connection))
    }

    fn kill(&mut self, pid: Option<Pid>, signal: Signal) -> SysResult<()> {
        process::kill(pid, signal)
    }

    fn wait_for_path(&mut self, path: &str, owner: Option<Pid>, timeout_ms: u64) -> SysResult<()> {
        files::wait_for_path(path, owner, timeout_ms)
    }

    fn sleep_ms(&mut self, ms: u64) {
        let duration = timespec(Timespec::from_ms(ms));
        // poll with no fds: a sleep that needs no extra rustix feature.
        let _ = rustix::event::poll(&mut [], Some(&duration));
    }

    fn has_children(&mut self) -> bool {
        process::has_children()
    }

    fn run_bounded(&mut self, timeout_ms: u64, work: &mut dyn FnMut(&mut Self)) -> SysResult<()> {
        self.run_in_child(timeout_ms, work)
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
        self.read_bus(conn, buf)
    }

    fn bus_send(&mut self, conn: BusId, bytes: &[u8], inhibitor: bool) -> SysResult<()> {
        self.send_bus(conn, bytes, inhibitor)
    }

    fn watch_inputs(&mut self, dir: &str) -> SysResult<u32> {
        self.watch_input_devices(dir)
    }

    fn bus_close(&mut self, conn: BusId) {
        self.close_bus(conn)
    }

    fn next_event(&mut self, timeout_ms: Option<u64>) -> Event {
        if self.pending.is_empty() && self.reap_pending {
            self.reap();
        }
        if let Some(event) = self.pending.pop_front() {
            return event;
        }
        let mut timeout_ms = timeout_ms;
        if let Some(resume_us) = self.accept_resume_us {
            let now = self.now_us();
            if now >= resume_us {
                self.accept_resume_us = None;
                self.watch_listeners(epoll::EventFlags::IN);
            } else {
                let rest_ms = (resume_us - now) / 1000 + 1;
                timeout_ms = Some(timeout_ms.map_or(rest_ms, |ms| ms.min(rest_ms)));
            }
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

    fn broadcast(&mut self, byte: u8) -> ClientList {
        self.tell_clients(byte)
    }

    fn drop_client(&mut self, client: ClientId) {
        self.remove_client(client)
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
