//! The seam between policy and kernel: every syscall the init's policy
//! makes goes through [`Sys`]. The binary implements it with rustix and
//! mini-libc-free; host tests implement it with a recorder.

#[cfg(test)]
pub mod recording;

use crate::config::argv::Argv;
use crate::config::cmdline::PanicPolicy;
use crate::errno::Errno;
use crate::log::Level;

pub type SysResult<T> = Result<T, Errno>;

/// The argv of a process the init starts.
pub type CommandArgv = Argv<8192, 32>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Pid(pub i32);

/// How a child ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Signal {
    Term,
    Kill,
    /// Wakes stopped processes, so the SIGTERM before it reaches them.
    Cont,
}

/// Signal numbers PID 1 reads from its signalfd.
pub mod signo {
    pub const SIGINT: u32 = 2;
    pub const SIGTERM: u32 = 15;
    pub const SIGCHLD: u32 = 17;
    pub const SIGPWR: u32 = 30;
}

/// A duration as the kernel's `struct timespec` takes it (timeouts and
/// sleeps).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timespec {
    pub secs: i64,
    pub nanos: i64,
}

impl Timespec {
    pub fn from_ms(ms: u64) -> Timespec {
        Timespec::split(ms, 1000)
    }

    pub fn from_us(us: u64) -> Timespec {
        Timespec::split(us, 1_000_000)
    }

    // Inlined, each caller divides by a constant: a shared out-of-line
    // division cost the binary more than the copies it replaced.
    #[inline(always)]
    fn split(count: u64, per_second: u64) -> Timespec {
        Timespec {
            secs: (count / per_second) as i64,
            nanos: ((count % per_second) * (1_000_000_000 / per_second)) as i64,
        }
    }
}

/// Where the processes go once everything is unmounted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PowerAction {
    PowerOff,
    Reboot,
}

/// One mount(2) call, in the forms the init uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MountOp<'a> {
    /// Mount a filesystem: `mount -t fstype -o flags,data source target`.
    Fs {
        source: &'a str,
        target: &'a str,
        fstype: &'a str,
        flags: u32,
        data: &'a str,
    },
    /// A bind mount of `source` on `target`.
    Bind { source: &'a str, target: &'a str },
    /// Move the mount at `source` to `target`.
    Move { source: &'a str, target: &'a str },
    /// Make the mount at `target` read-only (that mount only).
    ReadOnly { target: &'a str },
    /// Make the filesystem mounted at `target` read-only, everywhere it is
    /// mounted: the kernel writes its journal and dirty data first.
    ReadOnlyFilesystem { target: &'a str },
    /// Make every mount at and below `target` shared (pod mount propagation).
    SharedRecursive { target: &'a str },
}

/// How umount2(2) is asked to take a mount away.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unmount {
    Plain,
    /// `MNT_FORCE`: a network or FUSE filesystem aborts its pending
    /// requests first (a hung server would block a plain unmount).
    Force,
    /// `MNT_DETACH`: gone from the tree now, freed once unused.
    Detach,
}

/// A file's first bytes and whether there were more.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileRead {
    pub len: usize,
    pub truncated: bool,
}

/// A connected system-socket client.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClientId(pub u32);

/// System-socket clients, each counted once.
pub type ClientList = heapless::Vec<ClientId, CLIENTS_MAX>;

/// A connection to the D-Bus system bus socket.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BusId(pub u32);

/// What woke the event loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    ChildExited {
        pid: Pid,
        status: ExitStatus,
    },
    Signal(u32),
    /// One byte a root client sent on the system socket.
    Request {
        client: ClientId,
        byte: u8,
    },
    /// A system-socket client hung up (or its socket failed).
    ClientClosed(ClientId),
    /// A process connected to the D-Bus system bus socket.
    BusConnected {
        conn: BusId,
        uid: u32,
    },
    /// A bus connection has bytes to read, or hung up.
    BusReadable(BusId),
    /// Every holder closed a shutdown inhibitor handed out by `bus_send`.
    InhibitorReleased,
    /// The power key went down on a watched input device.
    PowerButton,
    /// The wall clock was set (stepped), or another hour of it passed,
    /// on a clock [`Sys::watch_clock`] watches: time to save it.
    ClockTick,
    Timeout,
}

/// System-socket clients, bus connections and input devices the kernel
/// side holds at once (each list its own); one more is refused.
pub const CLIENTS_MAX: usize = 8;
/// Output pipes the kernel side reads at once: one per supervised start,
/// kept until the last writer (which may be a grandchild) closes it.
pub const OUTPUTS_MAX: usize = 8;
/// Shutdown inhibitors handed out by `bus_send` and not yet released.
pub const INHIBITORS_MAX: usize = 8;

// The bus refuses connections past its own limit: the kernel side must
// let that many through.
const _: () = assert!(crate::bus::server::CONNECTIONS_MAX <= CLIENTS_MAX);

pub trait Sys {
    /// Microseconds since boot (CLOCK_BOOTTIME): the timeline's clock.
    fn now_us(&mut self) -> u64;
    /// One kmsg line; never fails the caller.
    fn log(&mut self, level: Level, msg: &str);
    /// Switches logging from the console to `/dev/kmsg`.
    fn open_kmsg(&mut self) -> SysResult<()>;
    fn set_panic_policy(&mut self, policy: PanicPolicy);

    fn mkdir(&mut self, path: &str, mode: u32) -> SysResult<()>;
    fn symlink(&mut self, target: &str, path: &str) -> SysResult<()>;
    /// Renames the entry `from` of directory `dir` to `to` in the same
    /// directory, never over an existing `to` (EEXIST).
    fn rename(&mut self, dir: &str, from: &str, to: &str) -> SysResult<()>;
    fn mount(&mut self, op: &MountOp<'_>) -> SysResult<()>;
    fn unmount(&mut self, target: &str, how: Unmount) -> SysResult<()>;
    fn chdir(&mut self, path: &str) -> SysResult<()>;
    fn chroot(&mut self, path: &str) -> SysResult<()>;

    /// Reads up to `buf.len()` bytes of a file.
    fn read_file(&mut self, path: &str, buf: &mut [u8]) -> SysResult<FileRead>;
    fn write_file(&mut self, path: &str, data: &[u8]) -> SysResult<()>;
    /// Reads up to `buf.len()` bytes at `offset` (a block device's sectors).
    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> SysResult<usize>;
    /// Calls `each` with the name of every entry of a directory but `.` and `..`.
    fn list_dir(&mut self, path: &str, each: &mut dyn FnMut(&str)) -> SysResult<()>;
    /// The size of a regular file (EISDIR or EINVAL for anything else).
    fn file_size(&mut self, path: &str) -> SysResult<u64>;
    /// A regular file's modification time, in seconds since the epoch.
    fn modified_secs(&mut self, path: &str) -> SysResult<i64>;
    /// Sets a file's modification time to now, creating it (mode 0600)
    /// when missing.
    fn touch(&mut self, path: &str) -> SysResult<()>;

    /// CLOCK_REALTIME, in whole seconds since the epoch.
    fn realtime_secs(&mut self) -> i64;
    /// Sets CLOCK_REALTIME to `secs` since the epoch.
    fn set_realtime_secs(&mut self, secs: i64) -> SysResult<()>;
    /// Delivers [`Event::ClockTick`] now, hourly, and whenever the wall
    /// clock is set.
    fn watch_clock(&mut self) -> SysResult<()>;

    fn set_hostname(&mut self, name: &str) -> SysResult<()>;
    /// Sends one rtnetlink request and reads the reply into `reply`.
    fn netlink_route(&mut self, request: &[u8], reply: &mut [u8]) -> SysResult<usize>;
    /// finit_module on the file at `path`.
    fn load_module(&mut self, path: &str) -> SysResult<()>;

    /// Starts `argv[0]` with the init's environment; its stdout and stderr
    /// are captured into kmsg lines labelled `name`.
    fn spawn(&mut self, name: &'static str, argv: &CommandArgv) -> SysResult<Pid>;
    /// Starts `argv[0]` as [`Sys::spawn`] does, with a system-socket
    /// client's connection as its stdin: the init stops watching the client.
    fn hand_over(
        &mut self,
        client: ClientId,
        name: &'static str,
        argv: &CommandArgv,
    ) -> SysResult<Pid>;
    /// Signals one process, or every process but PID 1 when `pid` is None.
    fn kill(&mut self, pid: Option<Pid>, signal: Signal) -> SysResult<()>;
    /// Waits until `path` exists: ETIMEDOUT after `timeout_ms`, ESRCH if
    /// `owner` (the process that should create it) exits first.
    fn wait_for_path(&mut self, path: &str, owner: Option<Pid>, timeout_ms: u64) -> SysResult<()>;
    fn sleep_ms(&mut self, ms: u64);
    /// Whether any child (hence any process but PID 1) is left.
    fn has_children(&mut self) -> bool;
    /// Runs `work` in a child process and waits for it up to `timeout_ms`
    /// (ETIMEDOUT after): for calls that can block forever in the kernel.
    /// What `work` changes in memory stays in the child.
    fn run_bounded(&mut self, timeout_ms: u64, work: &mut dyn FnMut(&mut Self)) -> SysResult<()>
    where
        Self: Sized;

    /// Serves the system socket at `path` (root peers only).
    fn listen(&mut self, path: &str) -> SysResult<()>;
    /// The next event, or `Event::Timeout` after `timeout_ms` (None: no limit).
    fn next_event(&mut self, timeout_ms: Option<u64>) -> Event;
    /// Sends one event byte to every client; returns those that got it.
    fn broadcast(&mut self, byte: u8) -> ClientList;
    fn drop_client(&mut self, client: ClientId);

    /// Serves the D-Bus system bus at `path` (mode 0600).
    fn listen_bus(&mut self, path: &str) -> SysResult<()>;
    /// Reads what a bus connection sent; `Ok(0)` when it hung up.
    fn bus_read(&mut self, conn: BusId, buf: &mut [u8]) -> SysResult<usize>;
    /// Sends `bytes` whole. With `inhibitor`, the bytes go with the write
    /// end of a new pipe (SCM_RIGHTS); once every copy of it is closed the
    /// loop gets [`Event::InhibitorReleased`].
    fn bus_send(&mut self, conn: BusId, bytes: &[u8], inhibitor: bool) -> SysResult<()>;
    fn bus_close(&mut self, conn: BusId);

    /// Watches every evdev device in `dir` (see `power_button`) for the
    /// power key; returns how many it watches.
    fn watch_inputs(&mut self, dir: &str) -> SysResult<u32>;

    fn sync(&mut self);
    /// Powers off or reboots; returns only if the kernel refused.
    fn reboot(&mut self, action: PowerAction) -> Errno;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_split_into_seconds_and_nanoseconds() {
        assert_eq!(Timespec::from_ms(0), Timespec { secs: 0, nanos: 0 });
        assert_eq!(
            Timespec::from_ms(30_500),
            Timespec {
                secs: 30,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            Timespec::from_us(1_000_001),
            Timespec {
                secs: 1,
                nanos: 1_000
            }
        );
        assert_eq!(Timespec::from_ms(u64::MAX).nanos, 615_000_000);
    }
}
