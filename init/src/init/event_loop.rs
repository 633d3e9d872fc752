//! The event loop: reaps children and restarts them with backoff, obeys
//! the system socket's commands, feeds the bus, and runs the shutdown.

use super::Init;
use crate::errno::Errno;
use crate::log;
use crate::log::Level;
use crate::shutdown::Shutdown;
use crate::supervisor::{Restart, Service};
use crate::sys::{signo, Event, Pid, PowerAction, Signal, Sys};
use kios_abi::system_socket::Command;

impl<S: Sys> Init<S> {
    /// The event loop: reaps children, restarts services, serves the system
    /// socket and drives the shutdown. Returns once the reboot syscall has
    /// been made (and refused: on success it never returns).
    pub fn run(&mut self) -> Errno {
        loop {
            if let Some(shutdown) = &self.shutdown {
                if shutdown.is_finishing() {
                    return shutdown.finish(&mut self.sys, self.keeps_time);
                }
            }
            let now = self.sys.now_us();
            let deadline = [
                self.supervisor.next_deadline_us(),
                self.shutdown.as_ref().and_then(Shutdown::deadline_us),
                self.bus.next_deadline_us(),
                self.boot_deadline_us(),
            ]
            .into_iter()
            // A fold, not flatten().min(): 100 bytes less in the init.
            .fold(None, |earliest: Option<u64>, at| match (earliest, at) {
                (Some(earliest), Some(at)) => Some(earliest.min(at)),
                (earliest, at) => earliest.or(at),
            });
            let timeout_ms = deadline.map(|at| at.saturating_sub(now).div_ceil(1000));
            let event = self.sys.next_event(timeout_ms);
            self.handle(event);
            self.check_boot_deadline();
            self.bus.expire(&mut self.sys);
            self.restart_due_services();
            if let Some(shutdown) = &mut self.shutdown {
                shutdown.advance(&mut self.sys);
            }
        }
    }

    // Out of line: inlined into the loop it cost 80 bytes more.
    #[inline(never)]
    pub(super) fn handle(&mut self, event: Event) {
        match event {
            Event::ChildExited { pid, status } if self.update == Some(pid) => {
                self.update_exited(status)
            }
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
            Event::ClientClosed(client) => {
                if let Some(shutdown) = &mut self.shutdown {
                    shutdown.client_done(&mut self.sys, client);
                }
            }
            Event::BusConnected { conn, uid } => self.bus.connected(&mut self.sys, conn, uid),
            Event::BusReadable(conn) => self.bus.readable(&mut self.sys, conn),
            Event::PowerButton => self.request_shutdown(PowerAction::PowerOff, "power button"),
            Event::ClockTick => crate::clock::save(&mut self.sys),
            Event::InhibitorReleased => {
                self.bus.inhibitor_released(&mut self.sys);
                if let Some(shutdown) = &mut self.shutdown {
                    shutdown.inhibitor_released(&mut self.sys, self.bus.inhibitors());
                }
            }
            Event::Request { client, byte } => match Command::decode(byte) {
                Some(Command::Shutdown) => {
                    self.request_shutdown(PowerAction::PowerOff, "system socket")
                }
                Some(Command::ContinueShutdown) => {
                    if let Some(shutdown) = &mut self.shutdown {
                        shutdown.client_done(&mut self.sys, client);
                    }
                }
                Some(Command::RestartKubelet) => self.restart(Service::Kubelet),
                Some(Command::RestartRuntime) => self.restart(Service::Runtime),
                Some(Command::BootGood) => self.boot_good(),
                Some(Command::Update) => self.start_update(client),
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

    pub(super) fn request_shutdown(&mut self, action: PowerAction, by: &str) {
        if self.shutdown.is_some() {
            return;
        }
        log!(&mut self.sys, Level::Notice, "shutdown requested by {}", by);
        self.supervisor.stop();
        let inhibitors = self.bus.notify_shutdown(&mut self.sys);
        self.shutdown = Some(Shutdown::begin(
            &mut self.sys,
            action,
            self.shutdown_grace_ms,
            inhibitors,
        ));
    }

    fn restart(&mut self, service: Service) {
        log!(
            &mut self.sys,
            Level::Notice,
            "restart of {} requested",
            service.name()
        );
        let now = self.sys.now_us();
        if let Restart::Stop(pid) = self.supervisor.request_restart(service, now) {
            self.stop_service(service, pid, Signal::Term);
        }
    }

    fn stop_service(&mut self, service: Service, pid: Pid, signal: Signal) {
        if let Err(errno) = self.sys.kill(Some(pid), signal) {
            log!(
                &mut self.sys,
                Level::Err,
                "stopping {} failed: {}",
                service.name(),
                errno
            );
        }
    }

    /// SIGKILLs a service that ignored a restart's SIGTERM, then starts the
    /// services whose restart time has come.
    fn restart_due_services(&mut self) {
        let now = self.sys.now_us();
        while let Some((service, pid)) = self.supervisor.overdue_stop(now) {
            log!(
                &mut self.sys,
                Level::Warning,
                "{} still running {} ms after SIGTERM, sending SIGKILL",
                service.name(),
                crate::supervisor::STOP_TIMEOUT_MS
            );
            self.stop_service(service, pid, Signal::Kill);
        }
        // Each start either clears the service's restart time or, failing,
        // moves it into the future: the loop ends.
        while let Some(service) = self.supervisor.due(now) {
            self.start(service);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{
        booted, both_services_exit, position, run_with, with_kubelet_on_the_bus, KUBELET, RUNTIME,
    };
    use crate::sys::recording::RecordingSys;
    use crate::sys::{ClientId, ExitStatus, Pid};
    /// The kubelet reads its shutdownGracePeriod at each start, and so does
    /// the init: a changed config holds from the kubelet's next start.
    #[test]
    fn the_grace_period_follows_the_kubelet_config_at_each_kubelet_start() {
        let config = kios_abi::kubernetes::CONFIG;
        let mut sys = RecordingSys::new().with_file(config, b"shutdownGracePeriod: 20s\n");
        sys.clients = 1;
        let mut init = booted(sys);
        init.sys
            .files
            .insert(config.into(), b"shutdownGracePeriod: 45s\n".to_vec());
        let init = run_with(
            init,
            &[
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Exited(1),
                },
                Event::Timeout,
                Event::Request {
                    client: ClientId(1),
                    byte: 0x01,
                },
            ],
        );
        let sys = init.sys();
        assert!(sys.logged("shutdown grace period 20000 ms"));
        assert!(sys.logged("shutdown grace period 45000 ms"));
        assert!(sys.logged("waiting up to 45000 ms for 1 client(s)"));
    }

    #[test]
    fn a_crashing_kubelet_is_restarted_with_growing_delays_then_shutdown_powers_off() {
        let init = booted(RecordingSys::new());
        let init = run_with(
            init,
            &[
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Exited(3),
                },
                Event::Timeout,
                Event::ChildExited {
                    pid: Pid(104),
                    status: ExitStatus::Signaled(9),
                },
                Event::Timeout,
                Event::Request {
                    client: ClientId(1),
                    byte: 0x01,
                },
                Event::ChildExited {
                    pid: Pid(105),
                    status: ExitStatus::Exited(0),
                },
                Event::ChildExited {
                    pid: RUNTIME,
                    status: ExitStatus::Exited(0),
                },
            ],
        );
        let sys = init.sys();
        assert!(sys.logged("kubelet exited status=3, restart in 500 ms"));
        assert!(sys.logged("kubelet exited signal=9, restart in 1000 ms"));
        let kubelets = sys
            .spawned()
            .iter()
            .filter(|argv| argv[0] == "/bin/kubelet")
            .count();
        assert_eq!(kubelets, 3);
        assert!(sys.logged("shutdown requested by system socket"));
        assert!(sys.logged("kubelet exited status=0"));
        let tail: Vec<&str> = sys.calls.iter().rev().take(3).map(String::as_str).collect();
        assert_eq!(tail, ["reboot PowerOff", "bounded done", "sync"]);
        assert!(position(sys, "kill all Term") < position(sys, "sync"));
        assert_eq!(sys.calls_starting("kill all Kill"), Vec::<&str>::new());
    }

    #[test]
    fn the_power_button_shuts_the_node_down_gracefully() {
        let mut init = with_kubelet_on_the_bus();
        init.sys.events.extend([
            Event::PowerButton,
            Event::PowerButton,
            Event::InhibitorReleased,
        ]);
        init.sys.events.extend(both_services_exit());
        init.run();
        let sys = init.sys();
        assert!(sys.logged("shutdown requested by power button"));
        // A second press changes nothing: one shutdown, one PrepareForShutdown.
        assert_eq!(
            sys.logs
                .iter()
                .filter(|l| l.contains("shutdown requested"))
                .count(),
            1
        );
        assert!(sys.logged("clients and inhibitors done"));
        assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
    }

    #[test]
    fn ctrl_alt_del_reboots() {
        let init = booted(RecordingSys::new());
        let init = run_with(
            init,
            &[
                Event::Signal(signo::SIGINT),
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
        assert_eq!(init.sys().calls.last().unwrap(), "reboot Reboot");
    }

    #[test]
    fn garbage_on_the_system_socket_drops_the_client_and_changes_nothing() {
        let init = booted(RecordingSys::new());
        let init = run_with(
            init,
            &[
                Event::Request {
                    client: ClientId(4),
                    byte: 0xff,
                },
                Event::Request {
                    client: ClientId(5),
                    byte: 0x00,
                },
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
            sys.calls_starting("drop_client"),
            ["drop_client 4", "drop_client 5"]
        );
        // The first-boot step, the runtime and the kubelet.
        assert_eq!(sys.spawned().len(), 3);
    }

    /// A restart command stops the service with SIGTERM, then SIGKILL when
    /// it ignores that; it comes back after its backoff, like after a crash.
    #[test]
    fn restart_commands_stop_the_service_and_it_comes_back_after_its_backoff() {
        let restart = |byte| Event::Request {
            client: ClientId(1),
            byte,
        };
        let init = booted(RecordingSys::new());
        let init = run_with(
            init,
            &[
                restart(0x03),
                restart(0x03),
                Event::Timeout,
                Event::ChildExited {
                    pid: KUBELET,
                    status: ExitStatus::Signaled(9),
                },
                Event::Timeout,
                restart(0x04),
                Event::ChildExited {
                    pid: RUNTIME,
                    status: ExitStatus::Exited(0),
                },
                Event::Timeout,
                Event::Signal(signo::SIGTERM),
                Event::ChildExited {
                    pid: Pid(104),
                    status: ExitStatus::Exited(0),
                },
                Event::ChildExited {
                    pid: Pid(105),
                    status: ExitStatus::Exited(0),
                },
            ],
        );
        let sys = init.sys();
        assert_eq!(
            sys.calls_starting("kill 10"),
            ["kill 103 Term", "kill 103 Kill", "kill 102 Term"]
        );
        assert!(sys.logged("kubelet still running 10000 ms after SIGTERM, sending SIGKILL"));
        assert!(sys.logged("kubelet exited signal=9, restart in 500 ms"));
        assert!(sys.logged("containerd exited status=0, restart in 500 ms"));
        let names: Vec<String> = sys.spawned().iter().map(|argv| argv[0].clone()).collect();
        assert_eq!(
            names,
            [
                "/bin/kios-firstboot",
                "/bin/containerd",
                "/bin/kubelet",
                "/bin/kubelet",
                "/bin/containerd"
            ]
        );
    }
}
