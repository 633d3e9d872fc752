//! Processes: the signals PID 1 reads from its signalfd, reaping exited
//! children, forking and exec'ing a service, and signalling processes.

use core::ffi::CStr;

use kios_init::errno::Errno;
use kios_init::sys::{signo, CommandArgv, Event, ExitStatus, Pid, Signal, Sys, SysResult};
use mini_libc_free::kmsg::{self, Line};
use mini_libc_free::process::{self, Fork};
use mini_libc_free::signal::{self, SigSet};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno as RawErrno;
use rustix::process::{Resource, Rlimit, WaitId, WaitIdOptions, WaitOptions};

use super::{errno, Linux};

/// The signals PID 1 reads from its signalfd instead of handling.
pub const SIGNALS: SigSet = SigSet::EMPTY
    .with(signo::SIGCHLD)
    .with(signo::SIGTERM)
    .with(signo::SIGINT)
    .with(signo::SIGPWR)
    .with(linux_raw_sys::general::SIGHUP);

/// The descriptors a service may open: the kernel's `fs.nr_open` default,
/// what `LimitNOFILE=infinity` gives a systemd unit.
const NOFILE_LIMIT: u64 = 1 << 20;

/// The environment every child gets.
const CHILD_ENV: [&CStr; 2] = [c"PATH=/bin", c"HOME=/"];

impl Linux {
    pub(super) fn read_signals(&mut self) {
        while let Ok(Some(number)) = signal::read_signal(&self.signals) {
            if number == signo::SIGCHLD {
                self.reap_pending = true;
            } else if self.pending.push_back(Event::Signal(number)).is_err() {
                break;
            }
        }
    }

    /// Collects every exited child; stops early if the queue is full.
    pub(super) fn reap(&mut self) {
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

    /// Runs `work` in a forked child, polling for its exit until
    /// `timeout_ms` have passed: PID 1 stays free whatever the child blocks on.
    pub(super) fn run_in_child(
        &mut self,
        timeout_ms: u64,
        work: &mut dyn FnMut(&mut Linux),
    ) -> SysResult<()> {
        let deadline_us = self.now_us() + timeout_ms * 1000;
        let child = match process::fork().map_err(errno)? {
            Fork::Child => {
                work(self);
                process::exit(0)
            }
            Fork::Parent(pid) => pid,
        };
        loop {
            match rustix::process::waitpid(Some(child), WaitOptions::NOHANG) {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(failure) => return Err(errno(failure)),
            }
            if self.now_us() >= deadline_us {
                return Err(Errno::TIMEDOUT);
            }
            self.sleep_ms(10);
        }
    }

    /// Forks and execs `argv` in a session of its own, stdin on `stdin`
    /// (None: /dev/null), stdout and stderr into a pipe the init reads as
    /// `name`'s output (or /dev/kmsg, which never blocks, when no pipe is left).
    pub(super) fn start_child(
        &mut self,
        name: &'static str,
        argv: &CommandArgv,
        stdin: Option<OwnedFd>,
    ) -> SysResult<Pid> {
        let mut args: heapless::Vec<&CStr, 32> = heapless::Vec::new();
        for arg in argv.iter_with_nul() {
            let arg = CStr::from_bytes_with_nul(arg).map_err(|_| Errno::INVAL)?;
            args.push(arg).map_err(|_| Errno::TOOBIG)?;
        }
        let path = *args.first().ok_or(Errno::INVAL)?;
        let stdin = stdin.or_else(|| {
            rustix::fs::open(
                c"/dev/null",
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        });
        let output = self.output_pipe(name).or_else(|| {
            mini_libc_free::kmsg!(
                kmsg::Level::Warning,
                "{}: output not captured (no pipe left), it goes to /dev/kmsg",
                name
            );
            rustix::fs::open(
                c"/dev/kmsg",
                OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        });
        match process::fork().map_err(errno)? {
            Fork::Child => exec_child(path, &args, stdin.as_ref(), output.as_ref()),
            Fork::Parent(pid) => Ok(Pid(pid.as_raw_nonzero().get())),
        }
    }
}

/// In the forked child: reset the signal mask, start a session, wire up
/// stdio, exec. Never returns; a failed exec ends the child at once.
fn exec_child(path: &CStr, argv: &[&CStr], stdin: Option<&OwnedFd>, output: Option<&OwnedFd>) -> ! {
    let _ = signal::set_mask(SigSet::EMPTY);
    // What systemd's units give containerd (LimitNOFILE=infinity,
    // OOMScoreAdjust=-999): the kernel's 1024 descriptors run out with a
    // few hundred pods, and the OOM killer must take pods before the node's
    // agents (the shims inherit both). The kubelet sets its own score.
    let files = Some(NOFILE_LIMIT);
    let _ = rustix::process::setrlimit(
        Resource::Nofile,
        Rlimit {
            current: files,
            maximum: files,
        },
    );
    if let Ok(score) = rustix::fs::open(c"/proc/self/oom_score_adj", OFlags::WRONLY, Mode::empty())
    {
        let _ = rustix::io::write(score, b"-999");
    }
    let _ = rustix::process::setsid();
    if let Some(stdin) = stdin {
        let _ = rustix::stdio::dup2_stdin(stdin);
    }
    if let Some(output) = output {
        let _ = rustix::stdio::dup2_stdout(output);
        let _ = rustix::stdio::dup2_stderr(output);
    }
    let failure = process::execve(path, argv, &CHILD_ENV);
    let mut line = Line::new(kmsg::Level::Err);
    line.push("exec ");
    line.push_bytes(path.to_bytes());
    line.push(" failed: errno ");
    line.push_u64(failure.raw_os_error() as u64);
    line.emit();
    process::exit(127)
}

/// Sends `signal` to `pid`, or to every process but the init (None).
pub fn kill(pid: Option<Pid>, signal: Signal) -> SysResult<()> {
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

/// Whether any child, exited or running, is left to reap.
pub fn has_children() -> bool {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    !matches!(
        rustix::process::waitid(WaitId::All, options),
        Err(RawErrno::CHILD)
    )
}
