//! The shutdown sequence: tell system-socket clients and the kubelet (its
//! shutdown inhibitor, see crate::bus) and wait for them within the grace
//! period, TERM everything, wait (bounded), KILL, wait (bounded), then
//! unmount everything, sync, and power off or reboot.

use crate::errno::Errno;
use crate::log;
use crate::log::Level;
use crate::storage::mountinfo;
use crate::sys::{PowerAction, Signal, Sys};
use kios_abi::system_socket::EVENT_SHUTDOWN;

/// How long processes get between SIGTERM and SIGKILL.
pub const TERM_TIMEOUT_MS: u64 = 10_000;
/// How long the kernel gets to take SIGKILLed processes down.
pub const KILL_TIMEOUT_MS: u64 = 5_000;
/// mountinfo is read whole; a node with more mounts than fit is unmounted
/// as far as it was read, and the rest is left to the final sync.
const MOUNTINFO_MAX: usize = 128 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// Clients were told (event 0x01, PrepareForShutdown); waiting for
    /// each to continue (0x02, inhibitor released) or the grace period.
    AwaitingClients { until_us: u64 },
    /// SIGTERM sent to every process; waiting for them to exit.
    Terminating { until_us: u64 },
    /// SIGKILL sent; waiting for the kernel to reap them.
    Killing { until_us: u64 },
    /// Nothing left to wait for: unmount, sync, power off.
    Finishing,
}

#[derive(Debug)]
pub struct Shutdown {
    pub action: PowerAction,
    pub stage: Stage,
    started_us: u64,
    /// System-socket clients told and not yet continued.
    clients: usize,
    /// Shutdown inhibitors not yet released.
    inhibitors: u32,
}

impl Shutdown {
    /// Starts the sequence: tells system-socket clients, and waits for
    /// them and for `inhibitors` (the bus told their holders), or goes
    /// straight to SIGTERM when nobody is waited for.
    pub fn begin<S: Sys>(
        sys: &mut S,
        action: PowerAction,
        grace_ms: u64,
        inhibitors: u32,
    ) -> Shutdown {
        let now = sys.now_us();
        let clients = sys.broadcast(EVENT_SHUTDOWN);
        let mut shutdown = Shutdown {
            action,
            stage: Stage::AwaitingClients {
                until_us: now + grace_ms * 1000,
            },
            started_us: now,
            clients,
            inhibitors,
        };
        if clients > 0 || inhibitors > 0 {
            log!(
                sys,
                Level::Notice,
                "shutdown: waiting up to {} ms for {} client(s) and {} inhibitor(s)",
                grace_ms,
                clients,
                inhibitors
            );
        } else {
            shutdown.terminate(sys);
        }
        shutdown
    }

    /// A client answered 0x02: its part is done.
    pub fn client_continued<S: Sys>(&mut self, sys: &mut S) {
        self.clients = self.clients.saturating_sub(1);
        self.move_on_when_nobody_waits(sys);
    }

    /// The bus counted an inhibitor released; `left` are still held.
    pub fn inhibitor_released<S: Sys>(&mut self, sys: &mut S, left: u32) {
        self.inhibitors = self.inhibitors.min(left);
        self.move_on_when_nobody_waits(sys);
    }

    fn move_on_when_nobody_waits<S: Sys>(&mut self, sys: &mut S) {
        if let Stage::AwaitingClients { .. } = self.stage {
            if self.clients == 0 && self.inhibitors == 0 {
                let waited_ms = sys.now_us().saturating_sub(self.started_us) / 1000;
                log!(
                    sys,
                    Level::Notice,
                    "shutdown: clients and inhibitors done after {} ms",
                    waited_ms
                );
                self.terminate(sys);
            }
        }
    }

    /// Moves on when the current stage's wait is over (deadline passed or
    /// no process left). Called after every event.
    pub fn advance<S: Sys>(&mut self, sys: &mut S) {
        let now = sys.now_us();
        match self.stage {
            Stage::AwaitingClients { until_us } if now >= until_us => {
                log!(
                    sys,
                    Level::Warning,
                    "shutdown: grace period over with {} client(s) and {} inhibitor(s) pending",
                    self.clients,
                    self.inhibitors
                );
                self.terminate(sys);
            }
            Stage::Terminating { until_us } => {
                if !sys.has_children() {
                    self.stage = Stage::Finishing;
                } else if now >= until_us {
                    log!(
                        sys,
                        Level::Warning,
                        "shutdown: processes left after {} ms, sending SIGKILL",
                        TERM_TIMEOUT_MS
                    );
                    if let Err(errno) = sys.kill(None, Signal::Kill) {
                        log!(sys, Level::Err, "shutdown: SIGKILL failed: {}", errno);
                    }
                    self.stage = Stage::Killing {
                        until_us: now + KILL_TIMEOUT_MS * 1000,
                    };
                }
            }
            Stage::Killing { until_us } => {
                if !sys.has_children() {
                    self.stage = Stage::Finishing;
                } else if now >= until_us {
                    log!(
                        sys,
                        Level::Err,
                        "shutdown: processes survived SIGKILL for {} ms, going on",
                        KILL_TIMEOUT_MS
                    );
                    self.stage = Stage::Finishing;
                }
            }
            _ => {}
        }
    }

    fn terminate<S: Sys>(&mut self, sys: &mut S) {
        log!(
            sys,
            Level::Notice,
            "shutdown: sending SIGTERM to all processes"
        );
        match sys.kill(None, Signal::Term) {
            // ESRCH: nothing but PID 1 (and kernel threads) left.
            Ok(()) | Err(Errno::SRCH) => {}
            Err(errno) => log!(sys, Level::Err, "shutdown: SIGTERM failed: {}", errno),
        }
        // A stopped process would hold its SIGTERM until the SIGKILL.
        let _ = sys.kill(None, Signal::Cont);
        let now = sys.now_us();
        self.stage = Stage::Terminating {
            until_us: now + TERM_TIMEOUT_MS * 1000,
        };
    }

    /// When the loop must wake up next for this shutdown.
    pub fn deadline_us(&self) -> Option<u64> {
        match self.stage {
            Stage::AwaitingClients { until_us }
            | Stage::Terminating { until_us }
            | Stage::Killing { until_us } => Some(until_us),
            Stage::Finishing => None,
        }
    }

    pub fn is_finishing(&self) -> bool {
        self.stage == Stage::Finishing
    }

    /// Unmounts everything, syncs, and powers off or reboots. Returns the
    /// errno only if the kernel refused the reboot call.
    pub fn finish<S: Sys>(&self, sys: &mut S) -> Errno {
        unmount_all(sys);
        sys.sync();
        let elapsed_ms = (sys.now_us().saturating_sub(self.started_us)) / 1000;
        match self.action {
            PowerAction::PowerOff => log!(
                sys,
                Level::Notice,
                "power off ({} ms after the shutdown request)",
                elapsed_ms
            ),
            PowerAction::Reboot => log!(
                sys,
                Level::Notice,
                "reboot ({} ms after the shutdown request)",
                elapsed_ms
            ),
        }
        let errno = sys.reboot(self.action);
        log!(sys, Level::Err, "reboot syscall failed: {}", errno);
        errno
    }
}

/// Unmounts every mount but `/`, children first. A busy mount is made
/// read-only (so its data is consistent) and then detached.
pub fn unmount_all<S: Sys>(sys: &mut S) {
    let mut content = [0u8; MOUNTINFO_MAX];
    let read = match sys.read_file("/proc/self/mountinfo", &mut content) {
        Ok(read) => read,
        Err(errno) => {
            log!(
                sys,
                Level::Err,
                "shutdown: reading mountinfo failed: {}, nothing unmounted",
                errno
            );
            return;
        }
    };
    let points = mountinfo::mount_points(&content[..read.len]);
    for point in points.iter().rev().filter(|point| point.as_str() != "/") {
        match sys.unmount(point, false) {
            // EINVAL/ENOENT: already gone with a parent that was detached.
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(errno) => {
                let read_only = sys.mount(&crate::sys::MountOp::ReadOnly { target: point });
                let detached = sys.unmount(point, true);
                log!(
                    sys,
                    Level::Warning,
                    "shutdown: unmount {}: {}; read-only {}, detached {}",
                    point.as_str(),
                    errno,
                    if read_only.is_ok() { "yes" } else { "no" },
                    if detached.is_ok() { "yes" } else { "no" }
                );
            }
        }
    }
    if let Err(errno) = sys.mount(&crate::sys::MountOp::ReadOnly { target: "/" }) {
        if errno != Errno::BUSY {
            log!(
                sys,
                Level::Warning,
                "shutdown: remounting / read-only: {}",
                errno
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::errno::Errno;
    use crate::init::testing::{booted, position, run_with, KUBELET, RUNTIME};
    use crate::sys::recording::RecordingSys;
    use crate::sys::{signo, ClientId, Event, ExitStatus};
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
        let started = init.sys().now_us;
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
