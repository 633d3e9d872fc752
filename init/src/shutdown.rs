//! The shutdown sequence: tell system-socket clients and the kubelet (its
//! shutdown inhibitor, see crate::bus) and wait for them within the grace
//! period, TERM everything, wait (bounded), KILL, wait (bounded), then
//! unmount everything, sync, and power off or reboot.

use crate::errno::Errno;
use crate::log;
use crate::log::Level;
use crate::log::Shown;
use crate::storage::mountinfo;
use crate::sys::{ClientId, ClientList, MountOp, PowerAction, Signal, Sys, Unmount};
use kios_abi::system_socket::EVENT_SHUTDOWN;

/// How long processes get between SIGTERM and SIGKILL.
pub const TERM_TIMEOUT_MS: u64 = 10_000;
/// How long the kernel gets to take SIGKILLed processes down.
pub const KILL_TIMEOUT_MS: u64 = 5_000;
/// How long unmounting and the final sync may take: a hung NFS server,
/// FUSE daemon or disk blocks them in the kernel, so they run in a child
/// and the node powers off when this is over, done or not.
pub const FINISH_TIMEOUT_MS: u64 = 10_000;
/// What one read of mountinfo takes (about 600 mounts); a longer one is
/// unmounted in passes, each rereading what is left.
const MOUNTINFO_MAX: usize = 64 * 1024;
/// Passes over mountinfo while plain unmounts still succeed: each frees
/// at least one mount, so only a node with more mounts stops early.
const UNMOUNT_PASSES_MAX: usize = 1024;

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
    /// System-socket clients told and not yet continued (or gone).
    clients: ClientList,
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
        let told = clients.len();
        let mut shutdown = Shutdown {
            action,
            stage: Stage::AwaitingClients {
                until_us: now + grace_ms * 1000,
            },
            started_us: now,
            clients,
            inhibitors,
        };
        if told > 0 || inhibitors > 0 {
            log!(
                sys,
                Level::Notice,
                "shutdown: waiting up to {} ms for {} client(s) and {} inhibitor(s)",
                grace_ms,
                told,
                inhibitors
            );
        } else {
            shutdown.terminate(sys);
        }
        shutdown
    }

    /// A told client answered 0x02 or hung up: its part is done. Each
    /// counts once, so a client cannot release another's wait.
    pub fn client_done<S: Sys>(&mut self, sys: &mut S, client: ClientId) {
        self.clients.retain(|told| *told != client);
        self.move_on_when_nobody_waits(sys);
    }

    /// The bus counted an inhibitor released; `left` are still held.
    pub fn inhibitor_released<S: Sys>(&mut self, sys: &mut S, left: u32) {
        self.inhibitors = self.inhibitors.min(left);
        self.move_on_when_nobody_waits(sys);
    }

    fn move_on_when_nobody_waits<S: Sys>(&mut self, sys: &mut S) {
        if let Stage::AwaitingClients { .. } = self.stage {
            if self.clients.is_empty() && self.inhibitors == 0 {
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
                    self.clients.len(),
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

    /// Saves the time when `save_clock` (/var is the data partition),
    /// unmounts everything and syncs, within FINISH_TIMEOUT_MS, then powers
    /// off or reboots. Returns the errno only if the kernel refused the
    /// reboot call.
    pub fn finish<S: Sys>(&self, sys: &mut S, save_clock: bool) -> Errno {
        // In the bounded child too: a dead data disk can block the write.
        let mut finish_filesystems = |sys: &mut S| {
            if save_clock {
                crate::clock::save(sys);
            }
            unmount_all(sys);
            sys.sync();
        };
        match sys.run_bounded(FINISH_TIMEOUT_MS, &mut finish_filesystems) {
            Ok(()) => {}
            Err(Errno::TIMEDOUT) => log!(
                sys,
                Level::Err,
                "shutdown: unmount and sync unfinished after {} ms (a hung filesystem), going on",
                FINISH_TIMEOUT_MS
            ),
            Err(errno) => {
                log!(
                    sys,
                    Level::Err,
                    "shutdown: no child for unmount and sync: {}, PID 1 does them",
                    errno
                );
                finish_filesystems(sys);
            }
        }
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

/// Takes every mount but `/` away, children first. Remote filesystems
/// (NFS, CIFS, FUSE, ...) go first, forced and detached: their server may
/// be gone. Plain unmounts follow, pass after pass, until a pass frees
/// nothing. What is left is busy: its filesystem is made read-only (the
/// kernel commits its journal), then the mount is detached.
pub fn unmount_all<S: Sys>(sys: &mut S) {
    let mut content = [0u8; MOUNTINFO_MAX];
    unmount_pass(sys, &mut content, Pass::Remote);
    for _ in 0..UNMOUNT_PASSES_MAX {
        if unmount_pass(sys, &mut content, Pass::Plain) == 0 {
            break;
        }
    }
    unmount_pass(sys, &mut content, Pass::Busy);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Remote,
    Plain,
    Busy,
}

/// One pass over a fresh read of mountinfo; returns how many mounts went.
fn unmount_pass<S: Sys>(sys: &mut S, content: &mut [u8], pass: Pass) -> usize {
    let read = match sys.read_file("/proc/self/mountinfo", content) {
        Ok(read) => read,
        Err(errno) => {
            log!(
                sys,
                Level::Err,
                "shutdown: /proc/self/mountinfo unreadable: {}, nothing unmounted",
                errno
            );
            return 0;
        }
    };
    let mut freed = 0;
    for mount in mountinfo::mounts_children_first(&content[..read.len], read.truncated) {
        let point = mount.point.as_str();
        // The root cannot go, and /proc holds the mountinfo each pass reads
        // (it keeps no data).
        let kept = point == "/" || point == "/proc";
        let result = match pass {
            Pass::Remote if mount.is_remote() => sys
                .unmount(point, Unmount::Force)
                .or_else(|_| sys.unmount(point, Unmount::Detach)),
            Pass::Plain if !kept => sys.unmount(point, Unmount::Plain),
            Pass::Busy => {
                let read_only = sys.mount(&MountOp::ReadOnlyFilesystem { target: point });
                if kept {
                    continue;
                }
                let detached = sys.unmount(point, Unmount::Detach);
                log!(
                    sys,
                    Level::Warning,
                    "shutdown: {} busy; read-only {}, detached {}",
                    Shown(point.as_bytes()),
                    if read_only.is_ok() { "yes" } else { "no" },
                    if detached.is_ok() { "yes" } else { "no" }
                );
                detached
            }
            _ => continue,
        };
        freed += usize::from(result.is_ok());
    }
    freed
}

#[cfg(test)]
mod tests {
    use crate::errno::Errno;
    use crate::init::testing::{booted, both_services_exit, position, run_with, KUBELET, RUNTIME};
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

    /// Two clients told: one answering twice releases nobody else's wait,
    /// and the other hanging up counts as its answer.
    #[test]
    fn each_client_counts_once_and_a_hang_up_is_an_answer() {
        let mut sys = RecordingSys::new().with_file("/proc/cmdline", b"kios.shutdown_grace=5");
        sys.clients = 2;
        let continued = |client| Event::Request {
            client: ClientId(client),
            byte: 0x02,
        };
        // Each event takes 1 ms: done at the hang-up (3 ms), not at the
        // second 0x02 (2 ms).
        let init = run_with(
            booted(sys),
            &[
                Event::Request {
                    client: ClientId(1),
                    byte: 0x01,
                },
                continued(1),
                continued(1),
                Event::ClientClosed(ClientId(2)),
            ]
            .into_iter()
            .chain(both_services_exit())
            .collect::<Vec<_>>(),
        );
        let sys = init.sys();
        assert!(sys.logged("waiting up to 5000 ms for 2 client(s) and 0 inhibitor(s)"));
        assert!(sys.logged("shutdown: clients and inhibitors done after 3 ms"));
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

    fn shut_down(sys: RecordingSys) -> RecordingSys {
        let [kubelet, runtime] = both_services_exit();
        let init = run_with(
            booted(sys),
            &[Event::Signal(signo::SIGTERM), kubelet, runtime],
        );
        init.sys().clone()
    }

    #[test]
    fn shutdown_unmounts_children_first_and_makes_busy_filesystems_read_only() {
        let mountinfo = b"1 0 0:1 / / ro - rootfs rootfs rw\n\
2 1 0:2 / /dev rw - devtmpfs devtmpfs rw\n\
22 1 0:5 / /proc rw,nosuid,nodev,noexec shared:2 - proc proc rw\n\
3 1 0:3 / /var rw - tmpfs tmpfs rw\n\
4 3 0:4 / /var/lib/kubelet/pods/x rw - tmpfs tmpfs rw\n";
        let sys = RecordingSys::new()
            .with_file("/proc/self/mountinfo", mountinfo)
            .failing_exactly("umount /dev", Errno::BUSY);
        let sys = shut_down(sys);
        assert_eq!(
            sys.calls_starting("umount"),
            [
                "umount /var/lib/kubelet/pods/x",
                "umount /var",
                "umount /dev",
                "umount /dev",
                "umount /dev detach"
            ]
        );
        // The filesystem itself, not a bind remount of one mount of it.
        assert!(position(&sys, "readonly-fs /dev") < position(&sys, "umount /dev detach"));
        // /proc stays: each pass reads mountinfo from it.
        assert!(!sys.logged("mountinfo unreadable"));
        assert!(sys.logged("shutdown: /dev busy; read-only yes, detached yes"));
        assert!(position(&sys, "umount /dev detach") < position(&sys, "sync"));
    }

    #[test]
    fn remote_filesystems_are_forced_off_before_anything_can_block_on_them() {
        let mountinfo = b"1 0 0:1 / / ro - rootfs rootfs rw\n\
3 1 0:3 / /var rw - ext4 /dev/vda2 rw\n\
5 3 0:5 / /var/lib/kubelet/pods/p/volumes/nfs rw - nfs4 server:/export rw\n\
6 3 0:6 / /var/lib/kubelet/pods/p/volumes/sshfs rw - fuse.sshfs host:/ rw\n";
        let sys = RecordingSys::new()
            .with_file("/proc/self/mountinfo", mountinfo)
            .failing_exactly(
                "umount /var/lib/kubelet/pods/p/volumes/sshfs force",
                Errno::BUSY,
            );
        let sys = shut_down(sys);
        assert_eq!(
            sys.calls_starting("umount"),
            [
                "umount /var/lib/kubelet/pods/p/volumes/sshfs force",
                "umount /var/lib/kubelet/pods/p/volumes/sshfs detach",
                "umount /var/lib/kubelet/pods/p/volumes/nfs force",
                "umount /var",
            ]
        );
    }

    /// mountinfo longer than one read (here about 1,500 pod volumes) is
    /// unmounted in passes, to the last mount.
    #[test]
    fn every_mount_goes_however_many_there_are() {
        let mut mountinfo = String::from(
            "1 0 0:1 / / ro - rootfs rootfs rw\n3 1 0:3 / /var rw - ext4 /dev/vda2 rw\n",
        );
        for pod in 0..1500 {
            mountinfo.push_str(&format!(
                "{id} 3 0:{id} / /var/lib/kubelet/pods/{pod:04}/volumes/kubernetes.io~secret/token rw,nosuid,nodev - tmpfs tmpfs rw,size=4096k\n",
                id = pod + 10
            ));
        }
        assert!(mountinfo.len() > super::MOUNTINFO_MAX);
        let sys = RecordingSys::new().with_file("/proc/self/mountinfo", mountinfo.as_bytes());
        let sys = shut_down(sys);
        assert_eq!(sys.calls_starting("umount").len(), 1501);
        assert_eq!(
            sys.files["/proc/self/mountinfo"],
            b"1 0 0:1 / / ro - rootfs rootfs rw\n"
        );
        assert!(!sys.logged("busy"));
    }

    #[test]
    fn with_a_data_partition_the_time_is_saved_before_anything_is_unmounted() {
        let mountinfo = b"1 0 0:1 / / ro - rootfs rootfs rw\n\
3 1 0:3 / /var rw - ext4 /dev/vda2 rw\n";
        let sys = crate::init::testing::with_data_disk(RecordingSys::new())
            .with_file("/proc/self/mountinfo", mountinfo);
        let sys = shut_down(sys);
        assert!(position(&sys, "bounded") < position(&sys, "touch /var/lib/kios/clock"));
        assert!(position(&sys, "touch /var/lib/kios/clock") < position(&sys, "umount /var"));

        let ephemeral = shut_down(RecordingSys::new().with_file("/proc/self/mountinfo", mountinfo));
        assert!(ephemeral.calls_starting("touch").is_empty());
    }

    /// umount and sync can block forever in the kernel (an NFS server gone,
    /// a dead disk): the node powers off when their time is up.
    #[test]
    fn a_hung_unmount_or_sync_cannot_keep_the_node_from_powering_off() {
        let mut sys = RecordingSys::new();
        sys.bounded_work_hangs = true;
        let sys = shut_down(sys);
        assert!(sys.logged(
            "Err: shutdown: unmount and sync unfinished after 10000 ms (a hung filesystem), going on"
        ));
        assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
        assert!(sys.calls_starting("sync").is_empty());
    }
}
