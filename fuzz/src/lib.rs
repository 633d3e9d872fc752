//! Shared pieces of the fuzz targets (`fuzz_targets/*.rs`): a [`Sys`] that
//! serves fuzzed files, disks, events and bus bytes to the init's real
//! code, and helpers that cut one fuzz input into several.
//!
//! A panic anywhere under a target is the finding: the init is PID 1, and
//! a panic there reboots the node.

use std::collections::{BTreeMap, VecDeque};

use kios_init::bus::wire;
use kios_init::config::cmdline::PanicPolicy;
use kios_init::errno::Errno;
use kios_init::log::Level;
use kios_init::sys::{
    BusId, ClientId, ClientList, CommandArgv, Event, FileRead, MountOp, Pid, PowerAction, Signal,
    Sys, SysResult, Unmount,
};

pub mod known;
pub mod seeds;

/// Every target, in the order `cargo kios fuzz` runs them.
pub const TARGETS: &[&str] = &[
    "cmdline",
    "node_labels",
    "node_ip",
    "hostname",
    "mountinfo",
    "module_list",
    "kubelet_config",
    "gpt",
    "netlink",
    "system_socket",
    "dbus_wire",
    "dbus_auth",
    "dbus_logind",
    "evdev",
    "child_output",
    "boot_entries",
];

/// Separates the files of a target that takes several (`kubelet_config`,
/// `gpt`): rare in real files, easy to write in a seed.
pub const SECTION: &[u8] = b"\n%%\n";

/// Cuts `data` at each [`SECTION`] into exactly `N` parts (missing ones
/// empty, extra separators left in the last part).
pub fn sections<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut parts = [&[][..]; N];
    let mut rest = data;
    for (index, part) in parts.iter_mut().enumerate() {
        let cut = (index + 1 < N)
            .then(|| rest.windows(SECTION.len()).position(|w| w == SECTION))
            .flatten();
        match cut {
            Some(at) => {
                *part = &rest[..at];
                rest = &rest[at + SECTION.len()..];
            }
            None => {
                *part = rest;
                rest = &[];
            }
        }
    }
    parts
}

/// Reads fuzz bytes as a stream of small choices; zeros once exhausted.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&byte, rest)) => {
                self.data = rest;
                byte
            }
            None => 0,
        }
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `len` bytes (fewer at the end).
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// The bytes left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// Errnos a fuzzed failure returns, the ones the init treats specially first.
const ERRNOS: [Errno; 10] = [
    Errno::NOENT,
    Errno::EXIST,
    Errno::INVAL,
    Errno::AGAIN,
    Errno::BUSY,
    Errno::SRCH,
    Errno::ISDIR,
    Errno::NODEV,
    Errno::TIMEDOUT,
    Errno::IO,
];

/// The kernel as a fuzz target sees it: files and disks from the input,
/// scripted events, bus bytes in chunks, and (optionally) syscalls that
/// fail by a fuzzed pattern. Honest about the `Sys` contract (a read never
/// claims more bytes than the buffer holds), so a panic is the init's.
#[derive(Default)]
pub struct FuzzSys {
    pub files: BTreeMap<String, Vec<u8>>,
    pub dirs: BTreeMap<String, Vec<String>>,
    pub events: VecDeque<Event>,
    /// What each bus connection sends, read a chunk per `bus_read`.
    pub bus_input: BTreeMap<u32, VecDeque<Vec<u8>>>,
    /// Everything sent on the bus, per connection.
    pub bus_output: BTreeMap<u32, Vec<u8>>,
    pub now_us: u64,
    /// System-socket clients that hear a broadcast.
    pub clients: usize,
    children: u32,
    next_pid: i32,
    /// Bit `n % 64` set: the `n`th fallible call fails.
    pub fail_pattern: u64,
    calls: u64,
    /// Times `next_event` had nothing scripted.
    idle: u32,
    pub rebooted: bool,
}

/// Polls of an empty event queue after which the event loop must have
/// finished its shutdown (it gets SIGTERM at the first).
pub const IDLE_POLLS_MAX: u32 = 10_000;

impl FuzzSys {
    pub fn new() -> FuzzSys {
        FuzzSys {
            next_pid: 100,
            now_us: 1_000_000,
            ..FuzzSys::default()
        }
    }

    pub fn file(&mut self, path: &str, content: &[u8]) {
        self.files.insert(path.to_string(), content.to_vec());
    }

    pub fn dir(&mut self, path: &str, names: &[&str]) {
        self.dirs.insert(
            path.to_string(),
            names.iter().map(|name| name.to_string()).collect(),
        );
    }

    /// Counts one fallible call; `Err` when the fuzzed pattern says so.
    fn call(&mut self) -> SysResult<()> {
        let n = self.calls;
        self.calls += 1;
        if self.fail_pattern & (1u64 << (n % 64)) != 0 {
            Err(ERRNOS[(n as usize / 64 + n as usize) % ERRNOS.len()])
        } else {
            Ok(())
        }
    }
}

impl Sys for FuzzSys {
    fn now_us(&mut self) -> u64 {
        self.now_us
    }

    fn log(&mut self, _level: Level, _msg: &str) {}

    fn open_kmsg(&mut self) -> SysResult<()> {
        self.call()
    }

    fn set_panic_policy(&mut self, _policy: PanicPolicy) {}

    fn mkdir(&mut self, _path: &str, _mode: u32) -> SysResult<()> {
        self.call()
    }

    fn symlink(&mut self, _target: &str, _path: &str) -> SysResult<()> {
        self.call()
    }

    fn rename(&mut self, dir: &str, from: &str, to: &str) -> SysResult<()> {
        assert!(
            dir.starts_with('/'),
            "rename in a relative directory {dir:?}"
        );
        assert!(
            !from.contains('/') && !to.contains('/'),
            "rename out of {dir:?}: {from:?} to {to:?}"
        );
        self.call()
    }

    fn mount(&mut self, op: &MountOp<'_>) -> SysResult<()> {
        if let MountOp::Fs { target, .. }
        | MountOp::ReadOnly { target }
        | MountOp::ReadOnlyFilesystem { target } = op
        {
            assert!(
                target.starts_with('/'),
                "mount on a relative path {target:?}"
            );
        }
        self.call()
    }

    fn unmount(&mut self, target: &str, _how: Unmount) -> SysResult<()> {
        assert!(
            target.starts_with('/'),
            "unmount of a relative path {target:?}"
        );
        self.call()
    }

    fn chdir(&mut self, _path: &str) -> SysResult<()> {
        self.call()
    }

    fn chroot(&mut self, _path: &str) -> SysResult<()> {
        self.call()
    }

    fn read_file(&mut self, path: &str, buf: &mut [u8]) -> SysResult<FileRead> {
        self.call()?;
        let content = self.files.get(path).ok_or(Errno::NOENT)?;
        let len = content.len().min(buf.len());
        buf[..len].copy_from_slice(&content[..len]);
        Ok(FileRead {
            len,
            truncated: content.len() > buf.len(),
        })
    }

    fn write_file(&mut self, _path: &str, _data: &[u8]) -> SysResult<()> {
        self.call()
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        self.call()?;
        let content = self.files.get(path).ok_or(Errno::NOENT)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(content.len());
        let len = (content.len() - start).min(buf.len());
        buf[..len].copy_from_slice(&content[start..start + len]);
        Ok(len)
    }

    fn list_dir(&mut self, path: &str, each: &mut dyn FnMut(&str)) -> SysResult<()> {
        self.call()?;
        for name in self.dirs.get(path).ok_or(Errno::NOENT)? {
            each(name);
        }
        Ok(())
    }

    fn file_size(&mut self, path: &str) -> SysResult<u64> {
        self.call()?;
        if self.dirs.contains_key(path) {
            return Err(Errno::ISDIR);
        }
        self.files
            .get(path)
            .map(|content| content.len() as u64)
            .ok_or(Errno::NOENT)
    }

    /// A file's time is the stand-in's clock.
    fn modified_secs(&mut self, path: &str) -> SysResult<i64> {
        self.call()?;
        if self.files.contains_key(path) {
            Ok(self.realtime_secs())
        } else {
            Err(Errno::NOENT)
        }
    }

    fn touch(&mut self, _path: &str) -> SysResult<()> {
        self.call()
    }

    /// The boot clock as the wall clock.
    fn realtime_secs(&mut self) -> i64 {
        (self.now_us / 1_000_000) as i64
    }

    fn set_realtime_secs(&mut self, _secs: i64) -> SysResult<()> {
        self.call()
    }

    fn watch_clock(&mut self) -> SysResult<()> {
        self.call()
    }

    fn set_hostname(&mut self, name: &str) -> SysResult<()> {
        assert!(
            !name.is_empty() && name.len() <= 64,
            "hostname {name:?} the kernel refuses"
        );
        self.call()
    }

    fn netlink_route(&mut self, request: &[u8], reply: &mut [u8]) -> SysResult<usize> {
        self.call()?;
        assert!(request.len() >= 16, "a netlink request without its header");
        // An ack: NLMSG_ERROR with error 0.
        let len = reply.len().min(36);
        reply[..len].fill(0);
        if len > 4 {
            reply[4] = 2;
        }
        Ok(len)
    }

    fn load_module(&mut self, path: &str) -> SysResult<()> {
        assert!(!path.is_empty(), "loading a module with an empty path");
        self.call()
    }

    fn spawn(&mut self, _name: &'static str, argv: &CommandArgv) -> SysResult<Pid> {
        assert!(!argv.is_empty(), "spawning an empty argv");
        self.call()?;
        self.next_pid += 1;
        self.children += 1;
        Ok(Pid(self.next_pid))
    }

    fn hand_over(
        &mut self,
        _client: ClientId,
        name: &'static str,
        argv: &CommandArgv,
    ) -> SysResult<Pid> {
        self.spawn(name, argv)
    }

    fn kill(&mut self, pid: Option<Pid>, signal: Signal) -> SysResult<()> {
        if let Some(pid) = pid {
            assert!(pid.0 > 1, "signalling pid {}", pid.0);
        }
        self.call()?;
        if pid.is_none() && signal == Signal::Kill {
            self.children = 0;
        }
        Ok(())
    }

    fn wait_for_path(
        &mut self,
        _path: &str,
        _owner: Option<Pid>,
        timeout_ms: u64,
    ) -> SysResult<()> {
        self.call()
            .inspect_err(|_| self.now_us += timeout_ms * 1000)?;
        self.now_us += 50_000;
        Ok(())
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.now_us += ms * 1000;
    }

    fn has_children(&mut self) -> bool {
        self.children > 0
    }

    fn run_bounded(&mut self, timeout_ms: u64, work: &mut dyn FnMut(&mut Self)) -> SysResult<()> {
        // A fuzzed failure stands for the work hanging until the timeout.
        self.call()
            .inspect_err(|_| self.now_us += timeout_ms * 1000)?;
        work(self);
        Ok(())
    }

    fn listen(&mut self, _path: &str) -> SysResult<()> {
        self.call()
    }

    fn next_event(&mut self, timeout_ms: Option<u64>) -> Event {
        if let Some(event) = self.events.pop_front() {
            self.now_us += 1000;
            match event {
                Event::Timeout => self.now_us += timeout_ms.unwrap_or(1) * 1000,
                Event::ChildExited { .. } => self.children = self.children.saturating_sub(1),
                _ => {}
            }
            return event;
        }
        // Nothing scripted: the node is told to shut down once, then time
        // passes. The shutdown must end within a bounded number of polls.
        self.idle += 1;
        assert!(
            self.idle < IDLE_POLLS_MAX,
            "the event loop did not finish its shutdown"
        );
        if self.idle == 1 {
            return Event::Signal(kios_init::sys::signo::SIGTERM);
        }
        self.now_us += timeout_ms.unwrap_or(1000).max(1) * 1000;
        Event::Timeout
    }

    fn broadcast(&mut self, _byte: u8) -> ClientList {
        (1..=self.clients as u32).map(ClientId).collect()
    }

    fn drop_client(&mut self, _client: ClientId) {}

    fn listen_bus(&mut self, _path: &str) -> SysResult<()> {
        self.call()
    }

    fn bus_read(&mut self, conn: BusId, buf: &mut [u8]) -> SysResult<usize> {
        self.call()?;
        let Some(chunks) = self.bus_input.get_mut(&conn.0) else {
            return Ok(0);
        };
        let Some(chunk) = chunks.front_mut() else {
            return Err(Errno::AGAIN);
        };
        let len = chunk.len().min(buf.len());
        buf[..len].copy_from_slice(&chunk[..len]);
        chunk.drain(..len);
        if chunk.is_empty() {
            chunks.pop_front();
        }
        // An empty chunk stands for the peer hanging up.
        Ok(len)
    }

    fn bus_send(&mut self, conn: BusId, bytes: &[u8], inhibitor: bool) -> SysResult<()> {
        assert!(!bytes.is_empty() || inhibitor, "an empty send on the bus");
        self.call()?;
        self.bus_output
            .entry(conn.0)
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }

    fn bus_close(&mut self, conn: BusId) {
        self.bus_input.remove(&conn.0);
    }

    fn watch_inputs(&mut self, dir: &str) -> SysResult<u32> {
        self.call()?;
        let names = self.dirs.get(dir).ok_or(Errno::NOENT)?;
        let watched = names
            .iter()
            .filter(|name| kios_init::power_button::is_event_device(name.as_bytes()))
            .count();
        Ok(watched as u32)
    }

    fn sync(&mut self) {}

    fn reboot(&mut self, _action: PowerAction) -> Errno {
        self.rebooted = true;
        Errno::PERM
    }
}

/// Checks that `bytes` are whole D-Bus messages, each of which parses:
/// what the init writes, a peer must be able to read.
pub fn assert_messages(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let len = match wire::frame_len(bytes) {
            Ok(Some(len)) => len,
            other => panic!("the init wrote a bad frame ({other:?}): {bytes:02x?}"),
        };
        assert!(len <= bytes.len(), "the init wrote a truncated message");
        if let Err(error) = wire::parse(&bytes[..len]) {
            panic!("the init wrote a message it cannot parse ({error:?}): {bytes:02x?}");
        }
        bytes = &bytes[len..];
    }
}
