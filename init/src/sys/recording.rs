//! TEST STAND-IN for the kernel: a [`Sys`] that records every call as a
//! line of text, serves files from a map, fails the calls a test names,
//! and replays scripted events. Used only by host unit tests.

use std::collections::{BTreeMap, VecDeque};

use crate::config::cmdline::PanicPolicy;
use crate::errno::Errno;
use crate::log::Level;
use crate::sys::*;

#[derive(Default, Clone)]
pub struct RecordingSys {
    /// Every call, in order, e.g. `mount tmpfs /run flags=6 mode=0755`.
    pub calls: Vec<String>,
    /// Every log line, prefixed by its level.
    pub logs: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
    pub dirs: BTreeMap<String, Vec<String>>,
    /// Calls whose recorded text starts with a key fail with its errno.
    pub failures: Vec<(String, Errno)>,
    /// Calls whose recorded text equals a key fail with its errno.
    pub exact_failures: Vec<(String, Errno)>,
    pub events: VecDeque<Event>,
    /// The clock: a scripted event advances it 1 ms, a timeout to its deadline.
    pub now_us: u64,
    /// How many system-socket clients hear a broadcast.
    pub clients: usize,
    pub children: usize,
    /// What each bus connection sends the init, read by `bus_read`.
    pub bus_input: BTreeMap<u32, Vec<u8>>,
    /// What the init sent each bus connection.
    pub bus_output: BTreeMap<u32, Vec<u8>>,
    /// `run_bounded` work hangs (it is not run) and times out.
    pub bounded_work_hangs: bool,
    /// CLOCK_REALTIME, in seconds: `set_realtime_secs` sets it.
    pub realtime_secs: i64,
    /// Files' modification times, in seconds: `touch` sets one to the clock.
    pub modified: BTreeMap<String, i64>,
    next_pid: i32,
}

impl RecordingSys {
    pub fn new() -> RecordingSys {
        RecordingSys {
            next_pid: 100,
            ..RecordingSys::default()
        }
        .with_file("/proc/cmdline", b"console=ttyS0\n")
    }

    pub fn with_file(mut self, path: &str, content: &[u8]) -> RecordingSys {
        self.files.insert(path.to_string(), content.to_vec());
        self
    }

    pub fn with_dir(mut self, path: &str, names: &[&str]) -> RecordingSys {
        self.dirs.insert(
            path.to_string(),
            names.iter().map(|n| n.to_string()).collect(),
        );
        self
    }

    pub fn with_modified(mut self, path: &str, secs: i64) -> RecordingSys {
        self.modified.insert(path.to_string(), secs);
        self
    }

    pub fn failing(mut self, call_prefix: &str, errno: Errno) -> RecordingSys {
        self.failures.push((call_prefix.to_string(), errno));
        self
    }

    pub fn failing_exactly(mut self, call: &str, errno: Errno) -> RecordingSys {
        self.exact_failures.push((call.to_string(), errno));
        self
    }

    fn record(&mut self, call: String) -> SysResult<()> {
        let failure = self
            .failures
            .iter()
            .find(|(prefix, _)| call.starts_with(prefix.as_str()))
            .or_else(|| self.exact_failures.iter().find(|(exact, _)| *exact == call))
            .map(|failure| failure.1);
        self.calls.push(call);
        failure.map_or(Ok(()), Err)
    }

    /// The recorded calls that start with `prefix`.
    pub fn calls_starting(&self, prefix: &str) -> Vec<&str> {
        self.calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|line| line.contains(needle))
    }

    /// The argv of every spawned process, in order.
    pub fn spawned(&self) -> Vec<Vec<String>> {
        self.calls_starting("spawn ")
            .iter()
            .map(|call| call.split(' ').skip(2).map(str::to_string).collect())
            .collect()
    }
}

impl Sys for RecordingSys {
    fn now_us(&mut self) -> u64 {
        self.now_us
    }

    fn log(&mut self, level: Level, msg: &str) {
        self.logs.push(format!("{level:?}: {msg}"));
    }

    fn open_kmsg(&mut self) -> SysResult<()> {
        self.record("open_kmsg".into())
    }

    fn set_panic_policy(&mut self, policy: PanicPolicy) {
        self.calls.push(format!("panic_policy {policy:?}"));
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> SysResult<()> {
        self.record(format!("mkdir {path} {mode:o}"))
    }

    fn symlink(&mut self, target: &str, path: &str) -> SysResult<()> {
        self.record(format!("symlink {target} {path}"))
    }

    fn rename(&mut self, dir: &str, from: &str, to: &str) -> SysResult<()> {
        self.record(format!("rename {dir} {from} {to}"))
    }

    /// efivarfs mounts on an EFI boot only, where sysfs has its directory:
    /// one whose test gave `/sys/firmware/efi/efivars` or a file in it.
    fn mount(&mut self, op: &MountOp<'_>) -> SysResult<()> {
        self.record(match *op {
            MountOp::Fs {
                target,
                fstype,
                flags,
                data,
                ..
            } => format!("mount {fstype} {target} flags={flags} {data}"),
            MountOp::Bind { source, target } => format!("bind {source} {target}"),
            MountOp::Move { source, target } => format!("move {source} {target}"),
            MountOp::ReadOnly { target } => format!("readonly {target}"),
            MountOp::ReadOnlyFilesystem { target } => format!("readonly-fs {target}"),
            MountOp::SharedRecursive { target } => format!("rshared {target}"),
        })?;
        match *op {
            MountOp::Fs {
                fstype: "efivarfs",
                target,
                ..
            } if !self.dirs.contains_key(target)
                && !self.files.keys().any(|path| path.starts_with(target)) =>
            {
                Err(Errno::NOENT)
            }
            _ => Ok(()),
        }
    }

    /// A mount taken away leaves `/proc/self/mountinfo` (a forced one
    /// only if it did not fail).
    fn unmount(&mut self, target: &str, how: Unmount) -> SysResult<()> {
        self.record(match how {
            Unmount::Plain => format!("umount {target}"),
            Unmount::Force => format!("umount {target} force"),
            Unmount::Detach => format!("umount {target} detach"),
        })?;
        if target == "/proc" {
            self.files.remove("/proc/self/mountinfo");
        }
        if let Some(mountinfo) = self.files.get_mut("/proc/self/mountinfo") {
            let kept: Vec<&str> = std::str::from_utf8(mountinfo)
                .unwrap()
                .lines()
                .filter(|line| line.split(' ').nth(4) != Some(target))
                .collect();
            *mountinfo = kept
                .iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>()
                .into_bytes();
        }
        Ok(())
    }

    fn chdir(&mut self, path: &str) -> SysResult<()> {
        self.record(format!("chdir {path}"))
    }

    fn chroot(&mut self, path: &str) -> SysResult<()> {
        self.record(format!("chroot {path}"))
    }

    fn read_file(&mut self, path: &str, buf: &mut [u8]) -> SysResult<FileRead> {
        self.record(format!("read {path}"))?;
        let content = self.files.get(path).ok_or(Errno::NOENT)?;
        let len = content.len().min(buf.len());
        buf[..len].copy_from_slice(&content[..len]);
        Ok(FileRead {
            len,
            truncated: content.len() > buf.len(),
        })
    }

    fn read_at(&mut self, path: &str, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        self.record(format!("read_at {path} {offset}"))?;
        let content = self.files.get(path).ok_or(Errno::NOENT)?;
        let start = (offset as usize).min(content.len());
        let len = (content.len() - start).min(buf.len());
        buf[..len].copy_from_slice(&content[start..start + len]);
        Ok(len)
    }

    fn list_dir(&mut self, path: &str, each: &mut dyn FnMut(&str)) -> SysResult<()> {
        self.record(format!("list_dir {path}"))?;
        for name in self.dirs.get(path).ok_or(Errno::NOENT)? {
            each(name);
        }
        Ok(())
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> SysResult<()> {
        self.record(format!("write {path} {}", String::from_utf8_lossy(data)))
    }

    fn file_size(&mut self, path: &str) -> SysResult<u64> {
        self.record(format!("stat {path}"))?;
        self.files
            .get(path)
            .map(|content| content.len() as u64)
            .ok_or(Errno::NOENT)
    }

    fn modified_secs(&mut self, path: &str) -> SysResult<i64> {
        self.record(format!("mtime {path}"))?;
        self.modified.get(path).copied().ok_or(Errno::NOENT)
    }

    fn touch(&mut self, path: &str) -> SysResult<()> {
        self.record(format!("touch {path}"))?;
        self.modified.insert(path.to_string(), self.realtime_secs);
        Ok(())
    }

    fn realtime_secs(&mut self) -> i64 {
        self.realtime_secs
    }

    fn set_realtime_secs(&mut self, secs: i64) -> SysResult<()> {
        self.record(format!("clock_settime {secs}"))?;
        self.realtime_secs = secs;
        Ok(())
    }

    fn watch_clock(&mut self) -> SysResult<()> {
        self.record("watch_clock".into())
    }

    fn set_hostname(&mut self, name: &str) -> SysResult<()> {
        self.record(format!("hostname {name}"))
    }

    fn netlink_route(&mut self, request: &[u8], reply: &mut [u8]) -> SysResult<usize> {
        self.record(format!("netlink {} bytes", request.len()))?;
        // An ack: NLMSG_ERROR with error 0.
        reply[..20].fill(0);
        reply[4] = 2;
        Ok(36)
    }

    fn load_module(&mut self, path: &str) -> SysResult<()> {
        self.record(format!("finit_module {path}"))
    }

    fn spawn(&mut self, name: &'static str, argv: &CommandArgv) -> SysResult<Pid> {
        let args: Vec<&str> = argv.iter().collect();
        self.record(format!("spawn {name} {}", args.join(" ")))?;
        self.next_pid += 1;
        self.children += 1;
        Ok(Pid(self.next_pid))
    }

    fn hand_over(
        &mut self,
        client: ClientId,
        name: &'static str,
        argv: &CommandArgv,
    ) -> SysResult<Pid> {
        let args: Vec<&str> = argv.iter().collect();
        self.record(format!("hand_over {} {name} {}", client.0, args.join(" ")))?;
        self.next_pid += 1;
        self.children += 1;
        Ok(Pid(self.next_pid))
    }

    fn kill(&mut self, pid: Option<Pid>, signal: Signal) -> SysResult<()> {
        match pid {
            Some(pid) => self.record(format!("kill {} {signal:?}", pid.0)),
            None => self.record(format!("kill all {signal:?}")),
        }
    }

    fn wait_for_path(&mut self, path: &str, owner: Option<Pid>, timeout_ms: u64) -> SysResult<()> {
        let owner = owner.map_or(String::new(), |pid| format!(" owner={}", pid.0));
        self.record(format!("wait_for_path {path}{owner} timeout={timeout_ms}"))?;
        self.now_us += 50_000;
        Ok(())
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.calls.push(format!("sleep {ms}"));
        self.now_us += ms * 1000;
    }

    fn has_children(&mut self) -> bool {
        self.children > 0
    }

    fn run_bounded(&mut self, timeout_ms: u64, work: &mut dyn FnMut(&mut Self)) -> SysResult<()> {
        self.calls.push(format!("bounded {timeout_ms} ms"));
        if self.bounded_work_hangs {
            self.now_us += timeout_ms * 1000;
            return Err(Errno::TIMEDOUT);
        }
        work(self);
        self.calls.push("bounded done".into());
        Ok(())
    }

    fn listen(&mut self, path: &str) -> SysResult<()> {
        self.record(format!("listen {path}"))
    }

    fn next_event(&mut self, timeout_ms: Option<u64>) -> Event {
        match self.events.pop_front() {
            Some(Event::Timeout) => {
                self.now_us += timeout_ms.unwrap_or(1) * 1000;
                Event::Timeout
            }
            Some(event) => {
                self.now_us += 1000;
                if let Event::ChildExited { .. } = event {
                    self.children = self.children.saturating_sub(1);
                }
                event
            }
            None => {
                // Nothing scripted: time passes to the deadline.
                let timeout_ms =
                    timeout_ms.expect("the init waited forever with no events scripted");
                self.now_us += timeout_ms * 1000;
                Event::Timeout
            }
        }
    }

    /// Clients 1 to `clients` hear it.
    fn broadcast(&mut self, byte: u8) -> ClientList {
        self.calls.push(format!("broadcast {byte}"));
        (1..=self.clients as u32).map(ClientId).collect()
    }

    fn drop_client(&mut self, client: ClientId) {
        self.calls.push(format!("drop_client {}", client.0));
    }

    fn listen_bus(&mut self, path: &str) -> SysResult<()> {
        self.record(format!("listen_bus {path}"))
    }

    fn bus_read(&mut self, conn: BusId, buf: &mut [u8]) -> SysResult<usize> {
        self.record(format!("bus_read {}", conn.0))?;
        let Some(input) = self.bus_input.get_mut(&conn.0) else {
            return Ok(0);
        };
        let len = input.len().min(buf.len());
        buf[..len].copy_from_slice(&input[..len]);
        input.drain(..len);
        Ok(len)
    }

    fn bus_send(&mut self, conn: BusId, bytes: &[u8], inhibitor: bool) -> SysResult<()> {
        let fd = if inhibitor { " +inhibitor" } else { "" };
        self.record(format!("bus_send {} {} bytes{fd}", conn.0, bytes.len()))?;
        self.bus_output
            .entry(conn.0)
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }

    fn bus_close(&mut self, conn: BusId) {
        self.calls.push(format!("bus_close {}", conn.0));
        self.bus_input.remove(&conn.0);
    }

    fn watch_inputs(&mut self, dir: &str) -> SysResult<u32> {
        self.record(format!("watch_inputs {dir}"))?;
        let names = self.dirs.get(dir).ok_or(Errno::NOENT)?;
        let watched = names
            .iter()
            .filter(|name| crate::power_button::is_event_device(name.as_bytes()))
            .count();
        Ok(watched as u32)
    }

    fn sync(&mut self) {
        self.calls.push("sync".into());
    }

    fn reboot(&mut self, action: PowerAction) -> Errno {
        self.calls.push(format!("reboot {action:?}"));
        Errno::PERM
    }
}
