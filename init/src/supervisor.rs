//! Keeps the container runtime and the kubelet running: restarts each with
//! exponential backoff when it exits, resets the backoff after a stable run.

use crate::sys::Pid;

/// The first restart delay; each quick failure doubles it.
pub const BACKOFF_INITIAL_MS: u64 = 500;
/// The longest delay between restarts.
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// A service that ran this long before exiting restarts with the initial delay.
pub const STABLE_AFTER_MS: u64 = 60_000;
/// How long a service asked to restart gets between SIGTERM and SIGKILL.
pub const STOP_TIMEOUT_MS: u64 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Service {
    Runtime,
    Kubelet,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::Runtime, Service::Kubelet];

    pub fn name(self) -> &'static str {
        match self {
            Service::Runtime => "containerd",
            Service::Kubelet => "kubelet",
        }
    }

    fn index(self) -> usize {
        match self {
            Service::Runtime => 0,
            Service::Kubelet => 1,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    pid: Option<Pid>,
    started_at_us: u64,
    next_delay_ms: u64,
    restart_at_us: Option<u64>,
    /// A requested restart's SIGTERM is sent: SIGKILL at this time.
    kill_at_us: Option<u64>,
}

impl Slot {
    const IDLE: Slot = Slot {
        pid: None,
        started_at_us: 0,
        next_delay_ms: BACKOFF_INITIAL_MS,
        restart_at_us: None,
        kill_at_us: None,
    };

    /// The delay before the next start, advancing the backoff.
    fn take_delay(&mut self, ran_ms: u64) -> u64 {
        if ran_ms >= STABLE_AFTER_MS {
            self.next_delay_ms = BACKOFF_INITIAL_MS;
        }
        let delay = self.next_delay_ms;
        self.next_delay_ms = (delay * 2).min(BACKOFF_MAX_MS);
        delay
    }
}

/// A supervised service's exit, and when it starts again (None: shutting down).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Exit {
    pub service: Service,
    pub restart_in_ms: Option<u64>,
}

/// What a restart command needs done.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Restart {
    /// Send SIGTERM (SIGKILL follows after STOP_TIMEOUT_MS); the service
    /// starts again after its exit, with the usual backoff.
    Stop(Pid),
    /// Already stopping, or waiting out its backoff: nothing more to do,
    /// so a storm of requests cannot restart a service faster.
    Underway,
    /// Shutting down: nothing to do.
    Refused,
}

#[derive(Debug)]
pub struct Supervisor {
    slots: [Slot; 2],
    stopping: bool,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            slots: [Slot::IDLE; 2],
            stopping: false,
        }
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    pub fn started(&mut self, service: Service, pid: Pid, now_us: u64) {
        let slot = &mut self.slots[service.index()];
        slot.pid = Some(pid);
        slot.started_at_us = now_us;
        slot.restart_at_us = None;
    }

    /// A start that failed is retried like an exit after no run time.
    pub fn start_failed(&mut self, service: Service, now_us: u64) -> Option<u64> {
        self.schedule(service, now_us, 0)
    }

    /// Records a child's exit; None if `pid` is not a supervised service.
    pub fn exited(&mut self, pid: Pid, now_us: u64) -> Option<Exit> {
        let service = Service::ALL
            .into_iter()
            .find(|s| self.slots[s.index()].pid == Some(pid))?;
        let slot = &mut self.slots[service.index()];
        slot.pid = None;
        slot.kill_at_us = None;
        let ran_ms = now_us.saturating_sub(slot.started_at_us) / 1000;
        Some(Exit {
            service,
            restart_in_ms: self.schedule(service, now_us, ran_ms),
        })
    }

    fn schedule(&mut self, service: Service, now_us: u64, ran_ms: u64) -> Option<u64> {
        if self.stopping {
            return None;
        }
        let slot = &mut self.slots[service.index()];
        let delay_ms = slot.take_delay(ran_ms);
        slot.restart_at_us = Some(now_us + delay_ms * 1000);
        Some(delay_ms)
    }

    /// A restart asked for on the system socket.
    pub fn request_restart(&mut self, service: Service, now_us: u64) -> Restart {
        if self.stopping {
            return Restart::Refused;
        }
        let slot = &mut self.slots[service.index()];
        match slot.pid {
            Some(pid) if slot.kill_at_us.is_none() => {
                slot.kill_at_us = Some(now_us + STOP_TIMEOUT_MS * 1000);
                Restart::Stop(pid)
            }
            _ => Restart::Underway,
        }
    }

    /// A service asked to restart that outlived its SIGTERM's time; it is
    /// reported once, for its SIGKILL.
    pub fn overdue_stop(&mut self, now_us: u64) -> Option<(Service, Pid)> {
        let service = Service::ALL.into_iter().find(|s| {
            self.slots[s.index()]
                .kill_at_us
                .is_some_and(|at| at <= now_us)
        })?;
        let slot = &mut self.slots[service.index()];
        slot.kill_at_us = None;
        Some((service, slot.pid?))
    }

    /// A service whose restart time has come, if any.
    pub fn due(&self, now_us: u64) -> Option<Service> {
        Service::ALL.into_iter().find(|s| {
            self.slots[s.index()]
                .restart_at_us
                .is_some_and(|at| at <= now_us)
        })
    }

    /// The earliest pending restart time.
    pub fn next_deadline_us(&self) -> Option<u64> {
        // A slot waits for one or the other: a restart while not running,
        // a SIGKILL while running.
        self.slots
            .iter()
            .filter_map(|slot| slot.restart_at_us.or(slot.kill_at_us))
            .min()
    }

    pub fn pid(&self, service: Service) -> Option<Pid> {
        self.slots[service.index()].pid
    }

    /// No more restarts: the node is shutting down.
    pub fn stop(&mut self) {
        self.stopping = true;
        for slot in &mut self.slots {
            slot.restart_at_us = None;
            slot.kill_at_us = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    #[test]
    fn quick_failures_back_off_exponentially_up_to_the_cap() {
        let mut supervisor = Supervisor::new();
        let mut now = 0;
        let mut delays = Vec::new();
        for attempt in 0..10 {
            supervisor.started(Service::Kubelet, Pid(100 + attempt), now);
            now += 100 * MS;
            let exit = supervisor.exited(Pid(100 + attempt), now).unwrap();
            assert_eq!(exit.service, Service::Kubelet);
            let delay = exit.restart_in_ms.unwrap();
            delays.push(delay);
            assert_eq!(supervisor.due(now + delay * MS - 1), None);
            assert_eq!(supervisor.due(now + delay * MS), Some(Service::Kubelet));
            now += delay * MS;
        }
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let mut supervisor = Supervisor::new();
        supervisor.started(Service::Runtime, Pid(7), 0);
        assert_eq!(
            supervisor.exited(Pid(7), MS).unwrap().restart_in_ms,
            Some(500)
        );
        supervisor.started(Service::Runtime, Pid(8), 2 * MS);
        assert_eq!(
            supervisor.exited(Pid(8), 3 * MS).unwrap().restart_in_ms,
            Some(1000)
        );
        supervisor.started(Service::Runtime, Pid(9), 4 * MS);
        let after_stable_run = 4 * MS + STABLE_AFTER_MS * MS;
        assert_eq!(
            supervisor
                .exited(Pid(9), after_stable_run)
                .unwrap()
                .restart_in_ms,
            Some(500)
        );
    }

    #[test]
    fn unknown_children_are_not_services() {
        let mut supervisor = Supervisor::new();
        supervisor.started(Service::Runtime, Pid(7), 0);
        assert_eq!(supervisor.exited(Pid(99), MS), None);
        assert_eq!(supervisor.pid(Service::Runtime), Some(Pid(7)));
    }

    /// Requests follow the backoff (a storm of them cannot restart the
    /// service faster than crashes would), SIGTERM is sent once per stop,
    /// and SIGKILL follows when the service ignores it.
    #[test]
    fn requested_restarts_back_off_and_escalate_to_sigkill() {
        let mut supervisor = Supervisor::new();
        supervisor.started(Service::Kubelet, Pid(5), 0);
        let now = 120_000 * MS;
        assert_eq!(
            supervisor.request_restart(Service::Kubelet, now),
            Restart::Stop(Pid(5))
        );
        assert_eq!(
            supervisor.request_restart(Service::Kubelet, now + MS),
            Restart::Underway
        );
        let kill_at = now + STOP_TIMEOUT_MS * MS;
        assert_eq!(supervisor.next_deadline_us(), Some(kill_at));
        assert_eq!(supervisor.overdue_stop(kill_at - 1), None);
        assert_eq!(
            supervisor.overdue_stop(kill_at),
            Some((Service::Kubelet, Pid(5)))
        );
        assert_eq!(supervisor.overdue_stop(kill_at), None);
        // Ran two minutes: the initial delay, not zero.
        let exited = supervisor.exited(Pid(5), kill_at + MS).unwrap();
        assert_eq!(exited.restart_in_ms, Some(BACKOFF_INITIAL_MS));
        // Waiting out the backoff: a request changes nothing.
        assert_eq!(
            supervisor.request_restart(Service::Kubelet, kill_at + 2 * MS),
            Restart::Underway
        );
        // Restarted at once after a quick run: the delay doubles.
        let start = kill_at + (BACKOFF_INITIAL_MS + 1) * MS;
        supervisor.started(Service::Kubelet, Pid(6), start);
        assert_eq!(
            supervisor.request_restart(Service::Kubelet, start + MS),
            Restart::Stop(Pid(6))
        );
        let exited = supervisor.exited(Pid(6), start + 2 * MS).unwrap();
        assert_eq!(exited.restart_in_ms, Some(2 * BACKOFF_INITIAL_MS));
    }

    #[test]
    fn nothing_restarts_once_stopping() {
        let mut supervisor = Supervisor::new();
        supervisor.started(Service::Kubelet, Pid(5), 0);
        supervisor.started(Service::Runtime, Pid(6), 0);
        assert!(supervisor.exited(Pid(6), MS).is_some());
        supervisor.stop();
        assert_eq!(supervisor.next_deadline_us(), None);
        assert_eq!(supervisor.exited(Pid(5), MS).unwrap().restart_in_ms, None);
        assert_eq!(
            supervisor.request_restart(Service::Kubelet, 2 * MS),
            Restart::Refused
        );
    }
}
