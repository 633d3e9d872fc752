//! The D-Bus system bus the kubelet's graceful node shutdown talks to:
//! one [`Session`] per connection, fed by the event loop. Tracks the
//! shutdown inhibitors handed out, which the shutdown waits for.

use crate::bus::logind::{Session, Step, OUT_MAX};
use crate::bus::wire::MESSAGE_MAX;
use crate::errno::Errno;
use crate::log;
use crate::log::Level;
use crate::peer;
use crate::sys::{BusId, Sys};

/// Connections served at once: the kubelet needs one.
pub const CONNECTIONS_MAX: usize = 4;
/// How long a connection may take to authenticate: idle connections would
/// otherwise hold every slot and lock the kubelet out.
pub const AUTH_TIMEOUT_MS: u64 = 5_000;

struct Connection {
    id: BusId,
    /// When it must have authenticated by.
    auth_deadline_us: u64,
    session: Session,
    /// Bytes received and not yet handled (one message at most).
    input: heapless::Vec<u8, MESSAGE_MAX>,
}

pub struct Bus {
    connections: heapless::Vec<Connection, CONNECTIONS_MAX>,
    /// Inhibitors handed out and not yet released.
    inhibitors: u32,
    inhibit_delay_max_us: u64,
    shutting_down: bool,
}

impl Bus {
    /// `grace_ms` is what `InhibitDelayMaxUSec` answers: how long the
    /// shutdown waits for inhibitors.
    pub fn new(grace_ms: u64) -> Bus {
        Bus {
            connections: heapless::Vec::new(),
            inhibitors: 0,
            inhibit_delay_max_us: grace_ms * 1000,
            shutting_down: false,
        }
    }

    /// A new grace period, for the next `InhibitDelayMaxUSec` asked.
    pub fn set_grace_ms(&mut self, grace_ms: u64) {
        self.inhibit_delay_max_us = grace_ms * 1000;
    }

    pub fn inhibitors(&self) -> u32 {
        self.inhibitors
    }

    pub fn connected<S: Sys>(&mut self, sys: &mut S, id: BusId, uid: u32) {
        if !peer::allowed(uid) {
            log!(sys, Level::Warning, "bus: refused client uid={}", uid);
            return sys.bus_close(id);
        }
        let mut session = Session::new(uid, id.0, self.inhibit_delay_max_us);
        let mut out = [0u8; OUT_MAX];
        if self.shutting_down {
            // Answered with PrepareForShutdown right after its AddMatch.
            session.notify_shutdown(&mut out);
        }
        let connection = Connection {
            id,
            auth_deadline_us: sys.now_us() + AUTH_TIMEOUT_MS * 1000,
            session,
            input: heapless::Vec::new(),
        };
        if self.connections.push(connection).is_err() {
            log!(
                sys,
                Level::Warning,
                "bus: {} connections already, refused one",
                CONNECTIONS_MAX
            );
            sys.bus_close(id);
        }
    }

    /// When the next connection runs out of time to authenticate.
    pub fn next_deadline_us(&self) -> Option<u64> {
        self.connections
            .iter()
            .filter(|c| !c.session.authenticated())
            .map(|c| c.auth_deadline_us)
            .min()
    }

    /// Closes the connections whose time to authenticate is over.
    pub fn expire<S: Sys>(&mut self, sys: &mut S) {
        let now = sys.now_us();
        while let Some(index) = self
            .connections
            .iter()
            .position(|c| !c.session.authenticated() && now >= c.auth_deadline_us)
        {
            self.close(sys, index, Some("no authentication in time"));
        }
    }

    /// Reads what `id` sent and answers every complete line or message.
    // Out of line, like the codec's entry points (see dbus.rs).
    #[inline(never)]
    pub fn readable<S: Sys>(&mut self, sys: &mut S, id: BusId) {
        let Some(index) = self.connections.iter().position(|c| c.id == id) else {
            return;
        };
        let connection = &mut self.connections[index];
        let filled = connection.input.len();
        let mut chunk = [0u8; MESSAGE_MAX];
        let room = MESSAGE_MAX - filled;
        let read = match sys.bus_read(id, &mut chunk[..room]) {
            Ok(0) => return self.close(sys, index, None),
            Ok(read) => read,
            // Woken with nothing to read: never close the kubelet's
            // connection for that (its shutdown monitor dies with it).
            Err(Errno::AGAIN) => return,
            Err(errno) => {
                log!(sys, Level::Warning, "bus: reading {}: {}", id.0, errno);
                return self.close(sys, index, None);
            }
        };
        // `read` <= room, so this fits.
        let _ = connection.input.extend_from_slice(&chunk[..read]);
        let mut out = [0u8; OUT_MAX];
        loop {
            let connection = &mut self.connections[index];
            match connection.session.step(&connection.input, &mut out) {
                Step::NeedInput if connection.input.is_full() => {
                    return self.close(sys, index, Some("a message longer than the input buffer"))
                }
                Step::NeedInput => return,
                Step::Close => return self.close(sys, index, Some("a protocol violation")),
                Step::Handled {
                    consumed,
                    len,
                    inhibitor,
                } => {
                    let remaining = connection.input.len() - consumed;
                    connection.input.copy_within(consumed.., 0);
                    connection.input.truncate(remaining);
                    if len > 0 || inhibitor {
                        if let Err(errno) = sys.bus_send(id, &out[..len], inhibitor) {
                            log!(sys, Level::Warning, "bus: sending to {}: {}", id.0, errno);
                            return self.close(sys, index, None);
                        }
                    }
                    if inhibitor {
                        self.inhibitors += 1;
                        log!(
                            sys,
                            Level::Notice,
                            "bus: {} holds a shutdown inhibitor ({} in all)",
                            self.connections[index].session.unique_name(),
                            self.inhibitors
                        );
                    }
                }
            }
        }
    }

    /// An inhibitor's descriptor was closed by every holder.
    pub fn inhibitor_released<S: Sys>(&mut self, sys: &mut S) {
        self.inhibitors = self.inhibitors.saturating_sub(1);
        log!(
            sys,
            Level::Notice,
            "bus: a shutdown inhibitor was released ({} left)",
            self.inhibitors
        );
    }

    /// The node shuts down: sends `PrepareForShutdown(true)` to every
    /// subscribed connection (later subscribers get it with their AddMatch
    /// reply). Returns the inhibitors to wait for.
    // Out of line, like the codec's entry points (see dbus.rs).
    #[inline(never)]
    pub fn notify_shutdown<S: Sys>(&mut self, sys: &mut S) -> u32 {
        self.shutting_down = true;
        let mut index = 0;
        while index < self.connections.len() {
            let mut out = [0u8; OUT_MAX];
            let connection = &mut self.connections[index];
            let len = connection.session.notify_shutdown(&mut out);
            if len > 0 {
                if let Err(errno) = sys.bus_send(connection.id, &out[..len], false) {
                    log!(
                        sys,
                        Level::Warning,
                        "bus: sending to {}: {}",
                        connection.id.0,
                        errno
                    );
                    self.close(sys, index, None);
                    continue;
                }
            }
            index += 1;
        }
        self.inhibitors
    }

    /// Closes a connection; `why` is logged for a client the bus dropped.
    /// Inhibitors it took stay with their descriptors.
    fn close<S: Sys>(&mut self, sys: &mut S, index: usize, why: Option<&str>) {
        let connection = self.connections.swap_remove(index);
        if let Some(why) = why {
            log!(
                sys,
                Level::Warning,
                "bus: closed {} after {}",
                connection.session.unique_name(),
                why
            );
        }
        sys.bus_close(connection.id);
    }
}

#[cfg(test)]
mod tests {
    use crate::errno::Errno;
    use crate::init::testing::{
        both_services_exit, kubelet_bus_conversation, position, run_with, with_kubelet_on_the_bus,
        KUBELET_BUS,
    };
    use crate::sys::{signo, BusId, ClientId, Event};

    /// Four root connections that never authenticate held every slot and
    /// the kubelet was refused for good; now they are closed after
    /// AUTH_TIMEOUT_MS and the kubelet gets its inhibitor.
    #[test]
    fn idle_connections_cannot_lock_the_kubelet_out() {
        use crate::init::testing::booted;
        use crate::sys::recording::RecordingSys;
        let mut sys = RecordingSys::new();
        sys.bus_input
            .insert(KUBELET_BUS.0, kubelet_bus_conversation());
        let idle = (1..=4).map(|id| Event::BusConnected {
            conn: BusId(id),
            uid: 0,
        });
        let kubelet = [
            Event::BusConnected {
                conn: KUBELET_BUS,
                uid: 0,
            },
            Event::BusReadable(KUBELET_BUS),
        ];
        let events: Vec<Event> = idle
            .chain([Event::Timeout])
            .chain(kubelet)
            .chain([Event::Signal(signo::SIGTERM)])
            .chain(both_services_exit())
            .collect();
        let init = run_with(booted(sys), &events);
        let sys = init.sys();
        for id in 1..=4 {
            assert!(sys.logged(&format!(
                "bus: closed :1.{id} after no authentication in time"
            )));
        }
        assert!(!sys.logged("connections already, refused one"));
        assert!(sys.logged("holds a shutdown inhibitor (1 in all)"));
    }

    #[test]
    fn the_kubelet_gets_logind_answers_and_an_inhibitor_matching_its_grace_period() {
        let init = with_kubelet_on_the_bus();
        let sys = init.sys();
        assert!(sys.logged("shutdown grace period 20000 ms"));
        assert_eq!(
            sys.calls_starting("bus_send 7")
                .iter()
                .filter(|c| c.ends_with("+inhibitor"))
                .count(),
            1
        );
        assert!(sys.logged("bus: :1.7 holds a shutdown inhibitor (1 in all)"));
        let output = &sys.bus_output[&KUBELET_BUS.0];
        let replies = crate::bus::fixtures::messages(
            &output[output.iter().position(|&b| b == b'l').unwrap()..],
        );
        // Hello, Get, Inhibit and AddMatch replies; the Get's variant is InhibitDelayMaxUSec.
        assert_eq!(replies.len(), 4);
        assert!(replies
            .iter()
            .all(|reply| reply.kind == crate::bus::wire::METHOD_RETURN));
        assert_eq!(replies[1].body[8..], 20_000_000u64.to_le_bytes());
        assert_eq!(init.bus().inhibitors(), 1);
    }

    #[test]
    fn shutdown_tells_the_kubelet_and_waits_for_its_inhibitor_to_be_released() {
        let mut init = with_kubelet_on_the_bus();
        init.sys_mut().events.extend([
            Event::Request {
                client: ClientId(1),
                byte: 0x01,
            },
            Event::InhibitorReleased,
        ]);
        init.sys_mut().events.extend(both_services_exit());
        init.run();
        let sys = init.sys();
        assert!(sys.logged("waiting up to 20000 ms for 0 client(s) and 1 inhibitor(s)"));
        let output = &sys.bus_output[&KUBELET_BUS.0];
        let signals = crate::bus::fixtures::messages(
            &output[output.iter().position(|&b| b == b'l').unwrap()..],
        );
        let last = signals.last().unwrap();
        assert_eq!(last.kind, crate::bus::wire::SIGNAL);
        assert_eq!(last.field(crate::bus::wire::MEMBER), "PrepareForShutdown");
        assert_eq!(last.body, [1, 0, 0, 0]);
        let signal_sent = sys
            .calls
            .iter()
            .rposition(|c| c.starts_with("bus_send 7 "))
            .unwrap();
        assert!(signal_sent < position(sys, "kill all Term"));
        assert!(sys.logged("bus: a shutdown inhibitor was released (0 left)"));
        assert!(sys.logged("clients and inhibitors done"));
        assert!(!sys.logged("grace period over"));
        // SIGTERM, then SIGCONT for anything stopped, and no SIGKILL.
        assert!(position(sys, "kill all Term") < position(sys, "kill all Cont"));
        assert_eq!(sys.calls_starting("kill all Kill"), Vec::<&str>::new());
        assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
    }

    #[test]
    fn a_kubelet_that_never_releases_its_inhibitor_holds_the_shutdown_only_for_the_grace_period() {
        let init = with_kubelet_on_the_bus();
        let requested = init.sys().now_us;
        let init = run_with(init, &[Event::Signal(signo::SIGTERM)]);
        let sys = init.sys();
        assert!(sys.logged("grace period over with 0 client(s) and 1 inhibitor(s) pending"));
        let term_at = sys.calls.iter().position(|c| c == "kill all Term").unwrap();
        assert!(term_at > 0);
        // Only timeouts after the request: the clock shows the wait.
        assert!(sys.now_us - requested >= 20_000_000);
        let bound = 20_000_000
            + (crate::shutdown::TERM_TIMEOUT_MS + crate::shutdown::KILL_TIMEOUT_MS) * 1000;
        assert!(sys.now_us - requested <= bound + 100_000);
        assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
    }

    #[test]
    fn a_spurious_wake_up_keeps_the_kubelets_connection() {
        let mut init = with_kubelet_on_the_bus();
        init.sys_mut()
            .failures
            .push(("bus_read 7".into(), Errno::AGAIN));
        init.deliver(Event::BusReadable(KUBELET_BUS));
        assert!(!init.sys().calls.contains(&"bus_close 7".to_string()));
        assert_eq!(init.bus().inhibitors(), 1);
    }

    #[test]
    fn garbage_and_non_root_peers_on_the_bus_lose_their_connection_and_nothing_else() {
        let mut init = with_kubelet_on_the_bus();
        let sent_to_kubelet = init.sys_mut().bus_output[&KUBELET_BUS.0].len();
        let garbage = BusId(8);
        let stranger = BusId(9);
        let oversized = BusId(10);
        init.sys_mut().bus_input.insert(
            garbage.0,
            b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n\xff\xfe junk".to_vec(),
        );
        let mut huge = kubelet_bus_conversation();
        huge.truncate(crate::bus::fixtures::GODBUS_AUTH.len());
        huge.extend(b"l\x01\x00\x01\xff\xff\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00");
        init.sys_mut().bus_input.insert(oversized.0, huge);
        for (conn, uid) in [(garbage, 0), (stranger, 1000), (oversized, 0)] {
            init.deliver(Event::BusConnected { conn, uid });
            init.deliver(Event::BusReadable(conn));
        }
        let sys = init.sys();
        assert!(sys.logged("bus: closed :1.8 after a protocol violation"));
        assert!(sys.logged("bus: refused client uid=1000"));
        assert!(sys.logged("bus: closed :1.10 after a protocol violation"));
        for conn in [garbage, stranger, oversized] {
            assert!(sys.calls.contains(&format!("bus_close {}", conn.0)));
        }
        // The kubelet's connection and inhibitor are untouched.
        assert!(!sys.calls.contains(&"bus_close 7".to_string()));
        assert_eq!(init.bus().inhibitors(), 1);
        assert_eq!(
            init.sys_mut().bus_output[&KUBELET_BUS.0].len(),
            sent_to_kubelet
        );
    }
}
