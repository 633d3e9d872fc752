//! The D-Bus system bus the kubelet's graceful node shutdown talks to:
//! one [`Session`] per connection, fed by the event loop. Tracks the
//! shutdown inhibitors handed out, which the shutdown waits for.

use crate::dbus::{Session, Step, MESSAGE_MAX, OUT_MAX};
use crate::errno::Errno;
use crate::log;
use crate::log::Level;
use crate::protocol::peer_allowed;
use crate::sys::{BusId, Sys};

/// Connections served at once: the kubelet needs one.
pub const CONNECTIONS_MAX: usize = 4;

struct Connection {
    id: BusId,
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

    pub fn inhibitors(&self) -> u32 {
        self.inhibitors
    }

    pub fn connected<S: Sys>(&mut self, sys: &mut S, id: BusId, uid: u32) {
        if !peer_allowed(uid) {
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
