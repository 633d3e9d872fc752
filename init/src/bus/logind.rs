//! Just enough of systemd-logind on a D-Bus system bus for an unmodified
//! kubelet's graceful node shutdown (kubelet 1.20,
//! `pkg/kubelet/nodeshutdown/systemd/inhibit_linux.go`, through godbus
//! v5.0.3). The init is the bus and logind at once: one [`Session`] per
//! connection on [`kios_abi::system_bus::SOCKET`], fed bytes by the event loop, which
//! only moves bytes and file descriptors.
//!
//! What the kubelet does, in order (godbus `auth.go`, `conn.go`,
//! `object.go`; serials as a new connection numbers them):
//!
//! 1. a NUL byte, `AUTH` (no mechanism: asks for the list), then
//!    `AUTH EXTERNAL <hex of the decimal uid>`, `NEGOTIATE_UNIX_FD`, `BEGIN`;
//! 2. `org.freedesktop.DBus.Hello` (serial 1), answered with a unique name;
//! 3. `Properties.Get("org.freedesktop.login1.Manager",
//!    "InhibitDelayMaxUSec")` on logind (serial 2), answered with a variant
//!    `t`. A value below its `shutdownGracePeriod` would make it write
//!    logind.conf and call `org.freedesktop.systemd1.Manager.KillUnit`,
//!    which gets an error here;
//! 4. `org.freedesktop.login1.Manager.Inhibit("shutdown", "kubelet", why,
//!    "delay")` (serial 3), answered with `h`: descriptor index 0, the
//!    descriptor itself sent by the event loop with SCM_RIGHTS. The kubelet
//!    closes it once its pods are down;
//! 5. `org.freedesktop.DBus.AddMatch(rule)` (serial 4), an empty answer;
//! 6. then it waits for `PrepareForShutdown(true)` from
//!    `/org/freedesktop/login1`, which [`Session::notify_shutdown`] writes.
//!
//! Every other call gets the error `org.freedesktop.DBus.Error.UnknownMethod`;
//! garbage closes the connection. The messages go through [`wire`], the
//! authentication through [`auth`]; nothing here panics.
//!
//! Two things the event loop must know about kubelet 1.20: when its bus
//! connection closes, godbus closes the signal channel and the kubelet's
//! monitor goroutine dereferences the nil signal and crashes; and the first
//! signal whose body is not a bool ends its monitoring. So never close the
//! kubelet's connection from this side, and send no other signal. The
//! kubelet only talks to logind with the `GracefulNodeShutdown` feature
//! gate on (alpha, off by default in 1.20) and a `shutdownGracePeriod`.

use crate::bus::auth::Auth;
use crate::bus::wire::{
    self, Body, Message, DESTINATION, ERROR, ERROR_NAME, INTERFACE, MEMBER, METHOD_CALL,
    METHOD_RETURN, NO_REPLY_EXPECTED, PATH, SENDER, SIGNAL, UNIX_FDS,
};

/// The room [`Session::step`] and [`Session::notify_shutdown`] need in
/// their output (at most an AddMatch reply and the signal, 228 bytes).
pub const OUT_MAX: usize = 512;
/// Inhibitors one connection may take (the kubelet takes one, and one more
/// each time a shutdown is cancelled, which kiOS never does).
pub const INHIBITORS_MAX: u8 = 4;

/// logind's well-known name, and its unique name on this bus: the sender
/// of its replies and signals.
pub const LOGIND: &str = "org.freedesktop.login1";
pub const LOGIND_UNIQUE: &str = ":1.0";
pub(super) const LOGIND_PATH: &str = "/org/freedesktop/login1";
pub(super) const MANAGER: &str = "org.freedesktop.login1.Manager";
/// The bus itself, which answers Hello and AddMatch.
pub(super) const BUS: &str = "org.freedesktop.DBus";
pub(super) const BUS_PATH: &str = "/org/freedesktop/DBus";
pub(super) const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
pub(super) const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";

/// The methods served: destination, path, interface, member, signature.
const HELLO: [&str; 5] = [BUS, BUS_PATH, BUS, "Hello", ""];
const ADD_MATCH: [&str; 5] = [BUS, BUS_PATH, BUS, "AddMatch", "s"];
const GET: [&str; 5] = [LOGIND, LOGIND_PATH, PROPERTIES, "Get", "ss"];
const INHIBIT: [&str; 5] = [LOGIND, LOGIND_PATH, MANAGER, "Inhibit", "ssss"];
/// The one property read, and the one inhibitor granted.
const INHIBIT_DELAY_MAX: &str = "InhibitDelayMaxUSec";
const INHIBIT_WHAT: &str = "shutdown";
const INHIBIT_MODE: &str = "delay";

/// What the event loop does after [`Session::step`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// No complete line or message at the start of the input: read more.
    NeedInput,
    /// Drop `consumed` bytes of input, send `out[..len]` (possibly
    /// nothing), and step again. With `inhibitor`, `out[..len]` is the
    /// Inhibit reply: send it in a sendmsg of its own (after what is
    /// queued) carrying the write end of a new pipe with SCM_RIGHTS, keep
    /// the read end, and count the kubelet done when it hangs up. If no
    /// pipe can be made, close the connection instead.
    Handled {
        consumed: usize,
        len: usize,
        inhibitor: bool,
    },
    /// Garbage or a protocol violation: close the connection. Inhibitors
    /// already handed out stay valid (they belong to their descriptors).
    Close,
}

/// One client connection: authentication, then logind's answers.
#[derive(Debug)]
pub struct Session {
    auth: Auth,
    /// The client's unique name, `:1.<id>`.
    name: heapless::String<14>,
    serial: u32,
    hello: bool,
    subscribed: bool,
    shutdown_pending: bool,
    inhibitors: u8,
    inhibit_delay_max_us: u64,
}

impl Session {
    /// `peer_uid` from SO_PEERCRED (only root gets through
    /// authentication), `id` a number no other live connection has (1 or
    /// more: `:1.0` is logind), `inhibit_delay_max_us` what
    /// `InhibitDelayMaxUSec` answers: no less than the kubelet's
    /// `shutdownGracePeriod`, or it tries to reconfigure logind.
    pub fn new(peer_uid: u32, id: u32, inhibit_delay_max_us: u64) -> Session {
        let mut name = heapless::String::new();
        // ":1." and at most 10 digits always fit.
        let _ = ufmt::uwrite!(name, ":1.{}", id.max(1));
        Session {
            auth: Auth::new(peer_uid),
            name,
            serial: 0,
            hello: false,
            subscribed: false,
            shutdown_pending: false,
            inhibitors: 0,
            inhibit_delay_max_us,
        }
    }

    /// The client's unique name on the bus.
    pub fn unique_name(&self) -> &str {
        &self.name
    }

    /// Past BEGIN: exchanging messages.
    pub fn authenticated(&self) -> bool {
        self.auth.done()
    }

    /// How many inhibitors this connection was granted.
    pub fn inhibitors(&self) -> u8 {
        self.inhibitors
    }

    /// Handles the first line or message of `input`, writing what to send
    /// into `out` (at least [`OUT_MAX`] bytes). Keep at least
    /// [`wire::MESSAGE_MAX`] bytes of input buffered per connection.
    // Out of line, like the bus's other #[inline(never)] functions: inlined
    // into the event loop they cost 400 bytes more.
    #[inline(never)]
    pub fn step(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        if self.auth.done() {
            self.message(input, out)
        } else {
            self.auth.step(input, out)
        }
    }

    /// The node shuts down: writes `PrepareForShutdown(true)` for this
    /// connection into `out` and returns its length; 0 when the client has
    /// not subscribed yet (it then gets the signal right after its AddMatch
    /// reply).
    pub fn notify_shutdown(&mut self, out: &mut [u8]) -> usize {
        self.shutdown_pending = !self.subscribed;
        if !self.subscribed {
            return 0;
        }
        let serial = self.next_serial();
        write_prepare_for_shutdown(out, serial, true).unwrap_or(0)
    }

    fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.wrapping_add(1).max(1);
        self.serial
    }

    fn message(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let len = match wire::frame_len(input) {
            Ok(Some(len)) => len,
            Ok(None) => return Step::NeedInput,
            Err(_) => return Step::Close,
        };
        let Some(bytes) = input.get(..len) else {
            return Step::NeedInput;
        };
        match wire::parse_framed(bytes).and_then(|call| self.answer(&call, out)) {
            Some((reply_len, inhibitor)) => Step::Handled {
                consumed: len,
                len: reply_len,
                inhibitor,
            },
            None => Step::Close,
        }
    }

    /// Returns the reply's length and whether it carries an inhibitor;
    /// `None` closes the connection.
    #[inline(never)]
    fn answer(&mut self, call: &Message<'_>, out: &mut [u8]) -> Option<(usize, bool)> {
        // A client sends method calls and no descriptors (the event loop
        // closes any that came).
        if call.kind != METHOD_CALL || call.number(UNIX_FDS) != 0 {
            return None;
        }
        // The first call is Hello, and only the first (dbus-daemon drops
        // clients that do otherwise).
        if call.calls(&HELLO) == self.hello {
            return None;
        }
        let serial = self.next_serial();
        let mut inhibitor = false;
        let mut error = "";
        let body = if !self.hello {
            self.hello = true;
            Body::Str(&self.name)
        } else if call.calls(&ADD_MATCH) {
            self.subscribed = true;
            Body::Empty
        } else if call.calls(&GET) && call.arg(0) == MANAGER && call.arg(1) == INHIBIT_DELAY_MAX {
            Body::U64Variant(self.inhibit_delay_max_us)
        } else if call.calls(&INHIBIT)
            && call.arg(0) == INHIBIT_WHAT
            && call.arg(3) == INHIBIT_MODE
            && self.inhibitors < INHIBITORS_MAX
        {
            self.inhibitors += 1;
            inhibitor = true;
            Body::UnixFd
        } else {
            error = UNKNOWN_METHOD;
            Body::Empty
        };
        if call.flags & NO_REPLY_EXPECTED != 0 {
            return Some((0, false));
        }
        let kind = if error.is_empty() {
            METHOD_RETURN
        } else {
            ERROR
        };
        let sender = if call.field(DESTINATION) == LOGIND {
            LOGIND_UNIQUE
        } else {
            BUS
        };
        let fields = [
            (ERROR_NAME, error),
            (SENDER, sender),
            (DESTINATION, &self.name),
        ];
        let mut len = wire::write_message(out, kind, serial, call.serial, &fields, body)?;
        if self.subscribed && self.shutdown_pending {
            self.shutdown_pending = false;
            let serial = self.next_serial();
            len += write_prepare_for_shutdown(out.get_mut(len..)?, serial, true)?;
        }
        Some((len, inhibitor))
    }
}

/// logind's `PrepareForShutdown(active)`, broadcast (no DESTINATION).
pub fn write_prepare_for_shutdown(out: &mut [u8], serial: u32, active: bool) -> Option<usize> {
    const FIELDS: [(u8, &str); 4] = [
        (PATH, LOGIND_PATH),
        (INTERFACE, MANAGER),
        (MEMBER, "PrepareForShutdown"),
        (SENDER, LOGIND_UNIQUE),
    ];
    wire::write_message(out, SIGNAL, serial, 0, &FIELDS, Body::Bool(active))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::fixtures::*;
    use crate::bus::wire::{parse, write_reply, REPLY_SERIAL, SIGNATURE};

    /// Whether `call` gets an UnknownMethod error (and nothing else).
    fn refused(session: &mut Session, call: &[u8]) -> bool {
        let fed = answers(session, call);
        let replies = messages(&fed.sent);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].number(REPLY_SERIAL), parse(call).unwrap().serial);
        assert_eq!(
            (replies[0].field(SIGNATURE), replies[0].body),
            ("", &[][..])
        );
        fed.inhibitors == 0
            && replies[0].kind == ERROR
            && replies[0].field(ERROR_NAME) == UNKNOWN_METHOD
    }

    #[test]
    fn input_arriving_byte_by_byte_gives_the_same_answers() {
        let mut input = GODBUS_AUTH.to_vec();
        for call in [GODBUS_HELLO, GODBUS_GET, GODBUS_INHIBIT, GODBUS_ADD_MATCH] {
            input.extend(hex(call));
        }
        let mut whole = Session::new(0, 1, DELAY_US);
        let at_once = feed(&mut whole, &input);

        let mut session = Session::new(0, 1, DELAY_US);
        let mut buffered = Vec::new();
        let mut sent = Vec::new();
        let mut inhibitors = 0;
        for &byte in &input {
            buffered.push(byte);
            let fed = feed(&mut session, &buffered);
            assert!(!fed.closed);
            buffered.drain(..fed.consumed);
            sent.extend(fed.sent);
            inhibitors += fed.inhibitors;
        }
        assert!(buffered.is_empty());
        assert_eq!(sent, at_once.sent);
        assert_eq!((inhibitors, at_once.inhibitors), (1, 1));
        assert_eq!(messages(&sent[GODBUS_AUTH_REPLIES.len()..]).len(), 4);
    }

    #[test]
    fn big_endian_calls_are_answered_like_little_endian_ones() {
        let mut session = greeted();
        let fed = answers(&mut session, &hex(GODBUS_GET_BIG_ENDIAN));
        let reply = messages(&fed.sent)[0];
        assert_eq!(
            (
                reply.kind,
                reply.number(REPLY_SERIAL),
                reply.field(SIGNATURE)
            ),
            (METHOD_RETURN, 2, "v")
        );
    }

    #[test]
    fn a_session_answers_hello_like_dbus_daemon_but_for_its_own_serial() {
        let mut session = Session::new(0, 2072, DELAY_US);
        let mut input = GODBUS_AUTH.to_vec();
        input.extend_from_slice(LIBDBUS_HELLO);
        let fed = feed(&mut session, &input);
        let sent = &fed.sent[GODBUS_AUTH_REPLIES.len()..];
        assert_eq!(sent[..8], DAEMON_HELLO_REPLY[..8]);
        assert_eq!(sent[8..12], 1u32.to_le_bytes());
        assert_eq!(sent[12..], DAEMON_HELLO_REPLY[12..]);
        assert_eq!(session.unique_name(), ":1.2072");
    }

    #[test]
    fn the_kubelet_conversation_and_the_shutdown_signal() {
        let mut session = Session::new(0, 1, DELAY_US);
        let mut input = GODBUS_AUTH.to_vec();
        for call in [GODBUS_HELLO, GODBUS_GET, GODBUS_INHIBIT, GODBUS_ADD_MATCH] {
            input.extend(hex(call));
        }
        let fed = feed(&mut session, &input);
        assert!(!fed.closed && fed.consumed == input.len());
        assert_eq!(fed.inhibitors, 1);
        assert_eq!(session.inhibitors(), 1);
        let replies = messages(&fed.sent[GODBUS_AUTH_REPLIES.len()..]);
        assert_eq!(replies.len(), 4);
        for (reply, call_serial) in replies.iter().zip(1..) {
            // What godbus needs of a reply: REPLY_SERIAL, a DESTINATION
            // that is its unique name once it knows it, a signature.
            assert_eq!(reply.kind, METHOD_RETURN);
            assert_eq!(reply.number(REPLY_SERIAL), call_serial);
            assert_eq!(reply.serial, call_serial);
            assert_eq!(reply.field(DESTINATION), ":1.1");
            assert_eq!(reply.flags, NO_REPLY_EXPECTED);
        }
        let [hello, get, inhibit, add_match] = [replies[0], replies[1], replies[2], replies[3]];
        assert_eq!(
            (
                hello.field(SENDER),
                hello.field(SIGNATURE),
                body_string(&hello)
            ),
            (BUS, "s", ":1.1")
        );

        assert_eq!(
            (get.field(SENDER), get.field(SIGNATURE)),
            (LOGIND_UNIQUE, "v")
        );
        let mut variant = vec![1, b't', 0, 0, 0, 0, 0, 0];
        variant.extend(DELAY_US.to_le_bytes());
        assert_eq!(get.body, variant);

        assert_eq!(
            (
                inhibit.field(SENDER),
                inhibit.field(SIGNATURE),
                inhibit.number(UNIX_FDS)
            ),
            (LOGIND_UNIQUE, "h", 1)
        );
        assert_eq!(inhibit.body, [0, 0, 0, 0]);

        assert_eq!(
            (
                add_match.field(SENDER),
                add_match.field(SIGNATURE),
                add_match.body
            ),
            (BUS, "", &[][..])
        );

        let mut out = [0u8; OUT_MAX];
        let len = session.notify_shutdown(&mut out);
        let signal = parse(&out[..len]).unwrap();
        // What godbus's handleSignal reads: INTERFACE, MEMBER, PATH, and
        // the kubelet reads Body[0] as a bool. No DESTINATION: broadcast.
        assert_eq!(
            (signal.kind, signal.serial, signal.flags),
            (SIGNAL, 5, NO_REPLY_EXPECTED)
        );
        assert_eq!(
            (signal.field(PATH), signal.field(INTERFACE)),
            (LOGIND_PATH, MANAGER)
        );
        assert_eq!(
            (
                signal.field(MEMBER),
                signal.field(SENDER),
                signal.field(DESTINATION)
            ),
            ("PrepareForShutdown", LOGIND_UNIQUE, "")
        );
        assert_eq!(
            (signal.field(SIGNATURE), signal.body),
            ("b", &[1, 0, 0, 0][..])
        );
        assert!(len < OUT_MAX / 2);
    }

    #[test]
    fn a_shutdown_before_the_match_is_sent_right_after_its_reply() {
        let mut session = greeted();
        let mut out = [0u8; OUT_MAX];
        assert_eq!(session.notify_shutdown(&mut out), 0);
        let fed = answers(&mut session, &hex(GODBUS_ADD_MATCH));
        let sent = messages(&fed.sent);
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (sent[0].kind, sent[0].number(REPLY_SERIAL)),
            (METHOD_RETURN, 4)
        );
        assert_eq!(
            (sent[1].kind, sent[1].field(MEMBER)),
            (SIGNAL, "PrepareForShutdown")
        );
        assert!(fed.sent.len() <= OUT_MAX);
        // Once only.
        let fed = answers(&mut session, &hex(GODBUS_ADD_MATCH));
        assert_eq!(messages(&fed.sent).len(), 1);
    }

    #[test]
    fn everything_else_gets_an_unknown_method_error() {
        let mut session = greeted();
        // The logind.conf reload the kubelet tries when the delay is short.
        assert!(refused(&mut session, &hex(GODBUS_KILL_UNIT)));
        let logind = |member: &str, args: &[&str]| call(LOGIND, LOGIND_PATH, MANAGER, member, args);
        assert!(refused(&mut session, &logind("PowerOff", &[])));
        assert!(refused(&mut session, &logind("Inhibit", &["shutdown"])));
        let get = |what: &str| call(LOGIND, LOGIND_PATH, PROPERTIES, "Get", &[what]);
        assert!(refused(&mut session, &get(MANAGER)));
        let other_object = call(
            LOGIND,
            "/org/freedesktop/login1/seat",
            MANAGER,
            "Inhibit",
            &[],
        );
        assert!(refused(&mut session, &other_object));
        let bus =
            |member: &str, args: &[&str]| call(BUS, "/org/freedesktop/DBus", BUS, member, args);
        assert!(refused(&mut session, &bus("ListNames", &[])));
        assert!(refused(&mut session, &bus("AddMatch", &[])));
        assert!(refused(&mut session, &bus("GetNameOwner", &[LOGIND])));
        // Another interface on the right object.
        assert!(refused(
            &mut session,
            &call(LOGIND, LOGIND_PATH, "org.example", "Get", &[])
        ));
        assert_eq!(session.inhibitors(), 0);

        // A call that wants no reply gets none.
        let mut quiet = bus("ListNames", &[]);
        quiet[2] = NO_REPLY_EXPECTED;
        assert!(answers(&mut session, &quiet).sent.is_empty());
        // Errors go to the caller, from the name it called.
        let fed = answers(&mut session, &hex(GODBUS_KILL_UNIT));
        let error = messages(&fed.sent)[0];
        assert_eq!(
            (error.field(DESTINATION), error.field(SENDER)),
            (":1.1", BUS)
        );
        let fed = answers(&mut session, &logind("PowerOff", &[]));
        assert_eq!(messages(&fed.sent)[0].field(SENDER), LOGIND_UNIQUE);
    }

    #[test]
    fn only_delay_inhibitors_for_shutdown_and_only_a_few() {
        let mut session = greeted();
        let inhibit = |what: &str, mode: &str| {
            let mut message = hex(GODBUS_INHIBIT);
            let at = |needle: &[u8], message: &[u8]| {
                message
                    .windows(needle.len())
                    .position(|w| w == needle)
                    .unwrap()
            };
            // Same lengths as "shutdown" and "delay", so the frame holds.
            let what_at = at(b"shutdown\0", &message);
            message[what_at..what_at + 8].copy_from_slice(what.as_bytes());
            let mode_at = at(b"delay\0", &message);
            message[mode_at..mode_at + 5].copy_from_slice(mode.as_bytes());
            message
        };
        assert!(refused(&mut session, &inhibit("shutdown", "block")));
        assert!(refused(&mut session, &inhibit("idle:hup", "delay")));
        assert!(refused(&mut session, &inhibit("shutdowX", "delay")));
        assert_eq!(session.inhibitors(), 0);
        for granted in 1..=INHIBITORS_MAX {
            let fed = answers(&mut session, &inhibit("shutdown", "delay"));
            assert_eq!(fed.inhibitors, 1);
            assert_eq!(session.inhibitors(), granted);
        }
        assert!(refused(&mut session, &inhibit("shutdown", "delay")));
    }

    #[test]
    fn calls_out_of_order_and_descriptors_close_the_connection() {
        let closes = |session: &mut Session, input: &[u8]| feed(session, input).closed;
        // Anything before Hello.
        let mut session = Session::new(0, 1, DELAY_US);
        feed(&mut session, GODBUS_AUTH);
        assert!(closes(&mut session, &hex(GODBUS_GET)));
        // A second Hello.
        assert!(closes(&mut greeted(), &hex(GODBUS_HELLO)));
        // Descriptors sent along: UNIX_FDS appended to an AddMatch.
        let with_fds = with_extra_field(&hex(GODBUS_ADD_MATCH), &[9, 1, b'u', 0, 1, 0, 0, 0]);
        assert!(parse(&with_fds).is_ok());
        assert!(closes(&mut greeted(), &with_fds));
        // Replies and signals: a client has nothing to answer here.
        let mut out = [0u8; OUT_MAX];
        let len = write_reply(&mut out, 5, 1, ":1.0", "", Body::Empty).unwrap();
        assert!(closes(&mut greeted(), &out[..len]));
        let len = write_prepare_for_shutdown(&mut out, 6, false).unwrap();
        assert!(closes(&mut greeted(), &out[..len]));
    }

    #[test]
    fn a_session_closes_on_malformed_messages_and_waits_on_partial_ones() {
        let good = hex(GODBUS_GET);
        let mut session = greeted();
        let fed = feed(&mut session, &good[..good.len() - 1]);
        assert!(!fed.closed && fed.consumed == 0);
        let mut bad = good.clone();
        bad[0] = b'x';
        assert!(feed(&mut greeted(), &bad[..1]).closed);
        let mut huge = good.clone();
        set_u32(&mut huge, 4, u32::MAX);
        assert!(feed(&mut greeted(), &huge[..16]).closed);
        bad = good.clone();
        bad[3] = 2;
        assert!(feed(&mut greeted(), &bad).closed);
    }

    #[test]
    fn mutated_and_random_input_never_panics_and_stays_bounded() {
        let calls: Vec<Vec<u8>> = [
            GODBUS_HELLO,
            GODBUS_GET,
            GODBUS_INHIBIT,
            GODBUS_ADD_MATCH,
            GODBUS_KILL_UNIT,
            GODBUS_GET_BIG_ENDIAN,
        ]
        .iter()
        .map(|text| hex(text))
        .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..30_000 {
            let mut input = calls[round % calls.len()].clone();
            for _ in 0..1 + next(&mut state) % 4 {
                let at = (next(&mut state) % input.len() as u64) as usize;
                input[at] = next(&mut state) as u8;
            }
            let _ = parse(&input);
            let mut session = greeted();
            let fed = feed(&mut session, &input);
            assert!(fed.sent.len() <= 2 * OUT_MAX);
            // Random bytes in the authentication phase.
            let mut session = Session::new(0, 1, DELAY_US);
            let noise: Vec<u8> = (0..64).map(|_| next(&mut state) as u8 & 0x7f).collect();
            let _ = feed(&mut session, &[&[0], &noise[..]].concat());
        }
        // Every output fits a small buffer, and a too-small one is no panic.
        let mut tiny = [0u8; 8];
        assert_eq!(write_prepare_for_shutdown(&mut tiny, 1, true), None);
        assert_eq!(greeted().step(&hex(GODBUS_GET), &mut tiny), Step::Close);
        assert_eq!(
            Session::new(0, 1, DELAY_US).step(&[0], &mut []),
            Step::Handled {
                consumed: 1,
                len: 0,
                inhibitor: false
            }
        );
    }
}
