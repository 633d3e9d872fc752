//! PID 1 itself: the boot sequence (`boot`), then the event loop
//! (`event_loop`) that supervises the services, serves the sockets and
//! drives the shutdown.

mod boot;
mod boot_slot;
mod event_loop;
#[cfg(test)]
pub(crate) mod testing;
mod update;

pub use boot::BootError;

use crate::bus::server::Bus;
use crate::config::cmdline::Options;
use crate::config::kubelet;
use crate::log;
use crate::log::Level;
use crate::shutdown::Shutdown;
use crate::storage::data_partition::DevicePath;
use crate::supervisor::{Service, Supervisor};
use crate::sys::{CommandArgv, Pid, Sys};
use boot_slot::BootSlot;

/// The init's state: the [`Sys`] it acts through, what the command line
/// said, the services and the shutdown in progress.
pub struct Init<S: Sys> {
    sys: S,
    options: Options,
    supervisor: Supervisor,
    shutdown: Option<Shutdown>,
    /// How long a shutdown waits for clients and inhibitors.
    shutdown_grace_ms: u64,
    bus: Bus,
    /// The EFI system partition beside the data partition, if the type
    /// scan found one: where the boot slots' entries are.
    esp: Option<DevicePath>,
    /// The disk slot this boot came from (`LoaderBootCountPath`), once read.
    boot_slot: Option<BootSlot>,
    /// The running `kios-update`, while one runs.
    update: Option<Pid>,
    /// /var is the data partition, which keeps the last known time.
    keeps_time: bool,
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
            esp: None,
            boot_slot: None,
            update: None,
            keeps_time: false,
        }
    }

    pub fn sys(&self) -> &S {
        &self.sys
    }

    fn fail(&mut self, error: BootError) {
        log!(&mut self.sys, Level::Err, "{}", error);
    }

    /// The grace period is the kubelet's `shutdownGracePeriod` (without
    /// one, `kios.shutdown_grace`), read at each kubelet start as the
    /// kubelet reads it: logind's `InhibitDelayMaxUSec` then matches it.
    fn follow_shutdown_grace_period(&mut self) {
        self.shutdown_grace_ms = kubelet::shutdown_grace_period_ms(&mut self.sys)
            .unwrap_or(self.options.shutdown_grace_ms);
        log!(
            &mut self.sys,
            Level::Info,
            "shutdown grace period {} ms",
            self.shutdown_grace_ms
        );
        self.bus.set_grace_ms(self.shutdown_grace_ms);
    }

    /// Starts a service; a failed start is retried with backoff.
    fn start(&mut self, service: Service) -> Option<Pid> {
        let argv: CommandArgv = match service {
            Service::Runtime => kubelet::runtime_argv(),
            Service::Kubelet => {
                self.follow_shutdown_grace_period();
                kubelet::kubelet_argv(&mut self.sys)
            }
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
}
