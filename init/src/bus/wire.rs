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
//! garbage closes the connection. Inputs are bounded ([`MESSAGE_MAX`],
//! [`LINE_MAX`], [`AUTH_LINES_MAX`]) and nothing here panics.
//!
//! Two things the event loop must know about kubelet 1.20: when its bus
//! connection closes, godbus closes the signal channel and the kubelet's
//! monitor goroutine dereferences the nil signal and crashes; and the first
//! signal whose body is not a bool ends its monitoring. So never close the
//! kubelet's connection from this side, and send no other signal. The
//! kubelet only talks to logind with the `GracefulNodeShutdown` feature
//! gate on (alpha, off by default in 1.20) and a `shutdownGracePeriod`.

use crate::peer;

/// The largest message accepted, header and body; a connection announcing
/// a larger one is closed. The kubelet's largest (Inhibit) is 238 bytes.
pub const MESSAGE_MAX: usize = 2048;
/// The room [`Session::step`] and [`Session::notify_shutdown`] need in
/// their output (at most an AddMatch reply and the signal, 228 bytes).
pub const OUT_MAX: usize = 512;
/// The longest authentication line.
pub const LINE_MAX: usize = 256;
/// Authentication lines a client may send before BEGIN.
pub const AUTH_LINES_MAX: u8 = 16;
/// Inhibitors one connection may take (the kubelet takes one, and one more
/// each time a shutdown is cancelled, which kiOS never does).
pub const INHIBITORS_MAX: u8 = 4;

/// logind's well-known name, and its unique name on this bus: the sender
/// of its replies and signals.
pub const LOGIND: &str = "org.freedesktop.login1";
pub const LOGIND_UNIQUE: &str = ":1.0";
const LOGIND_PATH: &str = "/org/freedesktop/login1";
const MANAGER: &str = "org.freedesktop.login1.Manager";
const BUS: &str = "org.freedesktop.DBus";
const BUS_PATH: &str = "/org/freedesktop/DBus";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";

const AUTH_REJECTED: &[u8] = b"REJECTED EXTERNAL\r\n";
/// The server GUID is any 32 hex digits: these spell "kiOS-logind-dbus".
const AUTH_OK: &[u8] = b"OK 6b694f532d6c6f67696e642d64627573\r\n";
const AUTH_DATA: &[u8] = b"DATA\r\n";
const AUTH_ERROR: &[u8] = b"ERROR\r\n";
const AUTH_AGREE_UNIX_FD: &[u8] = b"AGREE_UNIX_FD\r\n";

/// Message types.
pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;
/// Header flag: the sender wants no reply. Set on everything kiOS sends,
/// as dbus-daemon and sd-bus do on replies and signals.
pub const NO_REPLY_EXPECTED: u8 = 0x1;

/// Header field codes.
pub const PATH: u8 = 1;
pub const INTERFACE: u8 = 2;
pub const MEMBER: u8 = 3;
pub const ERROR_NAME: u8 = 4;
pub const REPLY_SERIAL: u8 = 5;
pub const DESTINATION: u8 = 6;
pub const SENDER: u8 = 7;
pub const SIGNATURE: u8 = 8;
pub const UNIX_FDS: u8 = 9;
/// The type of each known header field, by code (0 is invalid).
const FIELD_TYPES: &[u8; 10] = b"\0osssussgu";
/// The fields each message type must carry, as bits `1 << code`.
const REQUIRED: [u16; 5] = [0, 0b1010, 0b10_0000, 0b11_0000, 0b1110];

/// Why bytes were not a message the bus accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Malformed {
    /// Longer than [`MESSAGE_MAX`].
    Oversized,
    /// Anything else: endianness, version, type, lengths, alignment,
    /// padding, field types, strings, nesting.
    Invalid,
}

/// One parsed message, borrowing its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Message<'a> {
    pub kind: u8,
    pub flags: u8,
    pub serial: u32,
    pub body: &'a [u8],
    pub big_endian: bool,
    strings: [Option<&'a str>; 10],
    numbers: [u32; 10],
}

impl<'a> Message<'a> {
    /// A string header field (PATH, INTERFACE, MEMBER, ERROR_NAME,
    /// DESTINATION, SENDER, SIGNATURE); "" when absent.
    pub fn field(&self, code: u8) -> &'a str {
        self.strings
            .get(usize::from(code))
            .copied()
            .flatten()
            .unwrap_or("")
    }

    /// A u32 header field (REPLY_SERIAL, UNIX_FDS); 0 when absent.
    pub fn number(&self, code: u8) -> u32 {
        self.numbers.get(usize::from(code)).copied().unwrap_or(0)
    }

    /// The `index`th body argument when the signature says it and those
    /// before it are strings; "" when not, or when the body does not hold
    /// it.
    pub fn arg(&self, index: usize) -> &'a str {
        self.read_arg(index).unwrap_or("")
    }

    fn read_arg(&self, index: usize) -> Option<&'a str> {
        let types = self.field(SIGNATURE).as_bytes().get(..=index)?;
        if types.iter().any(|&code| code != b's') {
            return None;
        }
        // The body starts 8-aligned in the message: alignment within the
        // body is alignment within the message.
        let mut reader = Reader::new(self.body, self.big_endian);
        let mut arg = "";
        for _ in 0..=index {
            arg = reader.string();
        }
        (!reader.bad).then_some(arg)
    }

    /// Whether this is a call of `[destination, path, interface, member,
    /// signature]`; a call may leave out the interface.
    fn calls(&self, method: &[&str; 5]) -> bool {
        let codes = [DESTINATION, PATH, INTERFACE, MEMBER, SIGNATURE];
        codes.iter().zip(method).all(|(&code, &expected)| {
            let value = self.field(code);
            value == expected || (code == INTERFACE && value.is_empty())
        })
    }
}

/// The length of the message starting `input`: `Ok(None)` until its
/// 16-byte fixed header is there.
pub fn frame_len(input: &[u8]) -> Result<Option<usize>, Malformed> {
    let big_endian = match input.first() {
        None => return Ok(None),
        Some(b'l') => false,
        Some(b'B') => true,
        Some(_) => return Err(Malformed::Invalid),
    };
    if input.len() < 16 {
        return Ok(None);
    }
    let mut reader = Reader::new(input, big_endian);
    reader.pos = 4;
    let body_len = reader.u32();
    reader.pos = 12;
    let fields_len = reader.u32();
    let total = 16 + ((u64::from(fields_len) + 7) & !7) + u64::from(body_len);
    if total > MESSAGE_MAX as u64 {
        return Err(Malformed::Oversized);
    }
    Ok(Some(total as usize))
}

/// Parses exactly one message (`bytes` as long as [`frame_len`] says).
pub fn parse(bytes: &[u8]) -> Result<Message<'_>, Malformed> {
    if frame_len(bytes)? != Some(bytes.len()) {
        return Err(Malformed::Invalid);
    }
    parse_framed(bytes).ok_or(Malformed::Invalid)
}

#[inline(never)]
fn parse_framed(bytes: &[u8]) -> Option<Message<'_>> {
    let mut reader = Reader::new(bytes, bytes.first() == Some(&b'B'));
    reader.pos = 1;
    let mut message = Message {
        kind: reader.u8(),
        flags: reader.u8(),
        serial: 0,
        body: &[],
        big_endian: reader.big_endian,
        strings: [None; 10],
        numbers: [0; 10],
    };
    let version = reader.u8();
    let body_len = reader.u32() as usize;
    message.serial = reader.u32();
    let fields_end = 16 + reader.u32() as usize;
    let required = REQUIRED
        .get(usize::from(message.kind))
        .copied()
        .unwrap_or(0);
    if required == 0 || version != 1 || message.serial == 0 {
        return None;
    }
    // The header fields, a(yv): structs (8-aligned) of a code and a
    // variant. Known codes must carry their type, once; unknown codes are
    // skipped when they hold a string or a 32-bit value. Nothing nests.
    let mut seen = 0u16;
    while !reader.bad && reader.pos < fields_end {
        reader.align(8);
        let code = reader.u8();
        let type_code = match reader.signature().as_bytes() {
            &[type_code] => type_code,
            _ => 0,
        };
        let index = usize::from(code);
        if let Some(&expected) = FIELD_TYPES.get(index) {
            let bit = 1u16 << code;
            reader.bad |= type_code != expected || seen & bit != 0;
            seen |= bit;
        }
        match type_code {
            b's' | b'o' | b'g' => {
                let value = if type_code == b'g' {
                    reader.signature()
                } else {
                    reader.string()
                };
                if let Some(slot) = message.strings.get_mut(index) {
                    *slot = Some(value);
                }
            }
            b'u' | b'i' | b'b' | b'h' => {
                let value = reader.u32();
                if let Some(slot) = message.numbers.get_mut(index) {
                    *slot = value;
                }
            }
            _ => reader.bad = true,
        }
    }
    let fields_exact = reader.pos == fields_end;
    reader.align(8);
    message.body = bytes.get(reader.pos..).unwrap_or_default();
    let valid = !reader.bad
        && fields_exact
        && seen & required == required
        && message.body.len() == body_len
        && (body_len == 0 || !message.field(SIGNATURE).is_empty());
    valid.then_some(message)
}

/// A cursor over wire bytes. Reads past the end or bad padding set `bad`
/// and return zeros and empty strings, so parsing runs straight through
/// and is judged once.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    big_endian: bool,
    bad: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], big_endian: bool) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            big_endian,
            bad: false,
        }
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let end = self.pos.saturating_add(len);
        match self.bytes.get(self.pos..end) {
            Some(taken) if !self.bad => {
                self.pos = end;
                taken
            }
            _ => {
                self.bad = true;
                &[]
            }
        }
    }

    fn align(&mut self, to: usize) {
        while !self.bad && !self.pos.is_multiple_of(to) {
            self.bad |= self.u8() != 0;
        }
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u32(&mut self) -> u32 {
        self.align(4);
        let bytes: [u8; 4] = self.take(4).try_into().unwrap_or_default();
        if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    }

    /// `s` and `o`: a u32 length, UTF-8 without NUL, a NUL.
    fn string(&mut self) -> &'a str {
        let len = self.u32() as usize;
        self.text(len)
    }

    /// `g`: a u8 length, the type codes, a NUL.
    fn signature(&mut self) -> &'a str {
        let len = usize::from(self.u8());
        self.text(len)
    }

    fn text(&mut self, len: usize) -> &'a str {
        let text = self.take(len);
        self.bad |= self.u8() != 0 || crate::text::has_byte(text, 0);
        match core::str::from_utf8(text) {
            Ok(text) if !self.bad => text,
            _ => {
                self.bad = true;
                ""
            }
        }
    }
}

/// A message body kiOS sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Body<'a> {
    Empty,
    /// `s`
    Str(&'a str),
    /// `v` holding a `t`: a property value.
    U64Variant(u64),
    /// `h` with index 0, and the header UNIX_FDS = 1: the descriptor goes
    /// with the message's bytes (SCM_RIGHTS).
    UnixFd,
    /// `b`
    Bool(bool),
}

/// A variant's signature `t` with its padding to the u64 (the body starts
/// 8-aligned).
const VARIANT_U64: &[u8] = &[1, b't', 0, 0, 0, 0, 0, 0];

/// A method return to `reply_serial`, in dbus-daemon's field order
/// (REPLY_SERIAL, SENDER, DESTINATION, SIGNATURE, UNIX_FDS). All writers
/// write little-endian at the start of `out` and return the length, or
/// `None` when it does not fit.
pub fn write_reply(
    out: &mut [u8],
    serial: u32,
    reply_serial: u32,
    to: &str,
    from: &str,
    body: Body<'_>,
) -> Option<usize> {
    let fields = [(SENDER, from), (DESTINATION, to)];
    write_message(out, METHOD_RETURN, serial, reply_serial, &fields, body)
}

/// An error reply without a message text (clients show the name).
pub fn write_error(
    out: &mut [u8],
    serial: u32,
    reply_serial: u32,
    to: &str,
    from: &str,
    name: &str,
) -> Option<usize> {
    let fields = [(ERROR_NAME, name), (SENDER, from), (DESTINATION, to)];
    write_message(out, ERROR, serial, reply_serial, &fields, Body::Empty)
}

/// logind's `PrepareForShutdown(active)`, broadcast (no DESTINATION).
pub fn write_prepare_for_shutdown(out: &mut [u8], serial: u32, active: bool) -> Option<usize> {
    const FIELDS: [(u8, &str); 4] = [
        (PATH, LOGIND_PATH),
        (INTERFACE, MANAGER),
        (MEMBER, "PrepareForShutdown"),
        (SENDER, LOGIND_UNIQUE),
    ];
    write_message(out, SIGNAL, serial, 0, &FIELDS, Body::Bool(active))
}

/// `fields` are string fields (PATH typed `o`); empty ones and a
/// `reply_serial` of 0 are left out.
#[inline(never)]
fn write_message(
    out: &mut [u8],
    kind: u8,
    serial: u32,
    reply_serial: u32,
    fields: &[(u8, &str)],
    body: Body<'_>,
) -> Option<usize> {
    let mut w = Writer {
        out,
        pos: 0,
        overflow: false,
    };
    w.bytes(&[b'l', kind, NO_REPLY_EXPECTED, 1]);
    w.u32(0); // the body's length, set below
    w.u32(serial);
    w.u32(0); // the header fields' length, set below
    if reply_serial != 0 {
        w.field(REPLY_SERIAL, b'u');
        w.u32(reply_serial);
    }
    for &(code, value) in fields {
        if !value.is_empty() {
            w.field(code, if code == PATH { b'o' } else { b's' });
            w.string(value);
        }
    }
    let signature = match body {
        Body::Empty => "",
        Body::Str(_) => "s",
        Body::U64Variant(_) => "v",
        Body::UnixFd => "h",
        Body::Bool(_) => "b",
    };
    if !signature.is_empty() {
        w.field(SIGNATURE, b'g');
        w.bytes(&[signature.len() as u8]);
        w.bytes(signature.as_bytes());
        w.bytes(&[0]);
    }
    if body == Body::UnixFd {
        w.field(UNIX_FDS, b'u');
        w.u32(1);
    }
    let fields_len = w.pos - 16;
    w.pad(8);
    let body_start = w.pos;
    match body {
        Body::Empty => {}
        Body::Str(text) => w.string(text),
        Body::U64Variant(value) => {
            w.bytes(VARIANT_U64);
            w.bytes(&value.to_le_bytes());
        }
        Body::UnixFd => w.u32(0),
        Body::Bool(value) => w.u32(u32::from(value)),
    }
    let end = w.pos;
    w.pos = 4;
    w.u32((end - body_start) as u32);
    w.pos = 12;
    w.u32(fields_len as u32);
    (!w.overflow).then_some(end)
}

/// Writes into a caller's buffer; what does not fit sets `overflow`.
struct Writer<'b> {
    out: &'b mut [u8],
    pos: usize,
    overflow: bool,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        match self.out.get_mut(self.pos..end) {
            Some(room) => room.copy_from_slice(bytes),
            None => self.overflow = true,
        }
        self.pos = end;
    }

    fn pad(&mut self, to: usize) {
        while !self.pos.is_multiple_of(to) {
            self.bytes(&[0]);
        }
    }

    fn u32(&mut self, value: u32) {
        self.pad(4);
        self.bytes(&value.to_le_bytes());
    }

    fn string(&mut self, text: &str) {
        self.u32(text.len() as u32);
        self.bytes(text.as_bytes());
        self.bytes(&[0]);
    }

    /// A header field's code and its variant's one-type signature.
    fn field(&mut self, code: u8, type_code: u8) {
        self.pad(8);
        self.bytes(&[code, 1, type_code, 0]);
    }
}

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Waiting for the NUL byte that opens every connection.
    Nul,
    WaitingForAuth,
    /// After `AUTH EXTERNAL` without an initial response.
    WaitingForData,
    /// Authenticated; `NEGOTIATE_UNIX_FD` and `BEGIN` may come.
    WaitingForBegin,
    /// Binary messages.
    Messages,
}

/// One client connection: authentication, then logind's answers.
#[derive(Debug)]
pub struct Session {
    state: State,
    peer_uid: u32,
    auth_lines: u8,
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
            state: State::Nul,
            peer_uid,
            auth_lines: 0,
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
        self.state == State::Messages
    }

    /// How many inhibitors this connection was granted.
    pub fn inhibitors(&self) -> u8 {
        self.inhibitors
    }

    /// Handles the first line or message of `input`, writing what to send
    /// into `out` (at least [`OUT_MAX`] bytes). Keep at least
    /// [`MESSAGE_MAX`] bytes of input buffered per connection.
    // Out of line, like the bus's other #[inline(never)] functions: inlined
    // into the event loop they cost 400 bytes more.
    #[inline(never)]
    pub fn step(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        match self.state {
            State::Nul => match input.first() {
                None => Step::NeedInput,
                Some(0) => {
                    self.state = State::WaitingForAuth;
                    Step::Handled {
                        consumed: 1,
                        len: 0,
                        inhibitor: false,
                    }
                }
                Some(_) => Step::Close,
            },
            State::Messages => self.message(input, out),
            _ => self.auth_line(input, out),
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

    /// The SASL exchange (D-Bus specification, "Authentication protocol"):
    /// printable ASCII lines, only EXTERNAL, checked against the peer's
    /// credentials.
    #[inline(never)]
    fn auth_line(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let mut end = 0;
        loop {
            match input.get(end) {
                None => return Step::NeedInput,
                Some(b'\n') => break,
                Some(b' '..=b'~' | b'\r') if end + 1 < LINE_MAX => end += 1,
                Some(_) => return Step::Close,
            }
        }
        self.auth_lines = self.auth_lines.saturating_add(1);
        if self.auth_lines > AUTH_LINES_MAX {
            return Step::Close;
        }
        let line = input.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (command, argument) = split_word(line);
        // Compared through a table: literal patterns would unroll into
        // byte-by-byte code.
        const COMMANDS: [&[u8]; 6] = [
            b"AUTH",
            b"DATA",
            b"BEGIN",
            b"NEGOTIATE_UNIX_FD",
            b"CANCEL",
            b"ERROR",
        ];
        let command = COMMANDS.iter().position(|name| *name == command);
        let reply = match (self.state, command) {
            (State::WaitingForBegin, Some(2)) => {
                self.state = State::Messages;
                &[][..]
            }
            (_, Some(2)) => return Step::Close,
            (State::WaitingForBegin, Some(3)) => AUTH_AGREE_UNIX_FD,
            (State::WaitingForAuth, Some(0)) => {
                let (mechanism, response) = split_word(argument);
                if mechanism != b"EXTERNAL" {
                    AUTH_REJECTED
                } else if response.is_empty() {
                    self.state = State::WaitingForData;
                    AUTH_DATA
                } else {
                    self.external(response)
                }
            }
            (State::WaitingForData, Some(1)) => self.external(argument),
            (_, Some(4 | 5)) => {
                self.state = State::WaitingForAuth;
                AUTH_REJECTED
            }
            _ => AUTH_ERROR,
        };
        let Some(room) = out.get_mut(..reply.len()) else {
            return Step::Close;
        };
        room.copy_from_slice(reply);
        Step::Handled {
            consumed: end + 1,
            len: reply.len(),
            inhibitor: false,
        }
    }

    /// EXTERNAL: the response is the client's decimal uid hex-encoded
    /// (uid 0 is "30"), or empty for "the credentials the socket shows".
    fn external(&mut self, response: &[u8]) -> &'static [u8] {
        if (response.is_empty() || claims_uid(response, self.peer_uid))
            && peer::allowed(self.peer_uid)
        {
            self.state = State::WaitingForBegin;
            AUTH_OK
        } else {
            self.state = State::WaitingForAuth;
            AUTH_REJECTED
        }
    }

    fn message(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let len = match frame_len(input) {
            Ok(Some(len)) => len,
            Ok(None) => return Step::NeedInput,
            Err(_) => return Step::Close,
        };
        let Some(bytes) = input.get(..len) else {
            return Step::NeedInput;
        };
        match parse_framed(bytes).and_then(|call| self.answer(&call, out)) {
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
        } else if call.calls(&GET) && call.arg(0) == MANAGER && call.arg(1) == "InhibitDelayMaxUSec"
        {
            Body::U64Variant(self.inhibit_delay_max_us)
        } else if call.calls(&INHIBIT)
            && call.arg(0) == "shutdown"
            && call.arg(3) == "delay"
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
        let mut len = write_message(out, kind, serial, call.serial, &fields, body)?;
        if self.subscribed && self.shutdown_pending {
            self.shutdown_pending = false;
            let serial = self.next_serial();
            len += write_prepare_for_shutdown(out.get_mut(len..)?, serial, true)?;
        }
        Some((len, inhibitor))
    }
}

/// The methods served: destination, path, interface, member, signature.
const HELLO: [&str; 5] = [BUS, BUS_PATH, BUS, "Hello", ""];
const ADD_MATCH: [&str; 5] = [BUS, BUS_PATH, BUS, "AddMatch", "s"];
const GET: [&str; 5] = [LOGIND, LOGIND_PATH, PROPERTIES, "Get", "ss"];
const INHIBIT: [&str; 5] = [LOGIND, LOGIND_PATH, MANAGER, "Inhibit", "ssss"];

/// Splits at the first space.
fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(space) => (
            line.get(..space).unwrap_or_default(),
            line.get(space + 1..).unwrap_or_default(),
        ),
        None => (line, &[]),
    }
}

/// Whether `hex` is `uid` in decimal, hex-encoded as EXTERNAL sends it
/// (uid 0 is "30", uid 1000 "31303030").
fn claims_uid(hex: &[u8], mut uid: u32) -> bool {
    let mut rest = hex;
    loop {
        let [head @ .., b'3', digit] = rest else {
            return false;
        };
        if *digit != b'0' + (uid % 10) as u8 {
            return false;
        }
        (rest, uid) = (head, uid / 10);
        if uid == 0 {
            return rest.is_empty();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Wire bytes of the kubelet's four calls and of the KillUnit it would
    /// send, encoded by godbus v5.0.3 (the kubelet 1.20.2 vendor tree) the
    /// way `(*Object).createCall` builds them, with the serials a new
    /// connection hands out. godbus writes header fields in Go map order,
    /// which varies from message to message: these come from one run.
    pub(crate) const GODBUS_HELLO: &str = "6c01000100000000010000006e00000006017300140000006f72672e667265656465736b746f702e4442757300000000030173000500000048656c6c6f00000002017300140000006f72672e667265656465736b746f702e444275730000000001016f00150000002f6f72672f667265656465736b746f702f44427573000000";
    pub(crate) const GODBUS_GET: &str = "6c0100013c000000020000008000000001016f00170000002f6f72672f667265656465736b746f702f6c6f67696e310006017300160000006f72672e667265656465736b746f702e6c6f67696e31000003017300030000004765740000000000020173001f0000006f72672e667265656465736b746f702e444275732e50726f706572746965730008016700027373001e0000006f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572000013000000496e686962697444656c61794d61785553656300";
    pub(crate) const GODBUS_INHIBIT: &str = "6c01000156000000030000008800000006017300160000006f72672e667265656465736b746f702e6c6f67696e3100000301730007000000496e686962697400020173001e0000006f72672e667265656465736b746f702e6c6f67696e312e4d616e6167657200000801670004737373730000000000000001016f00170000002f6f72672f667265656465736b746f702f6c6f67696e31000800000073687574646f776e00000000070000006b7562656c6574002a0000004b7562656c6574206e656564732074696d6520746f2068616e646c65206e6f64652073687574646f776e00000500000064656c617900";
    pub(crate) const GODBUS_ADD_MATCH: &str = "6c01000178000000040000007e00000006017300140000006f72672e667265656465736b746f702e444275730000000003017300080000004164644d61746368000000000000000002017300140000006f72672e667265656465736b746f702e4442757300000000080167000173000001016f00150000002f6f72672f667265656465736b746f702f4442757300000073000000747970653d277369676e616c272c696e746572666163653d276f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572272c6d656d6265723d2750726570617265466f7253687574646f776e272c706174683d272f6f72672f667265656465736b746f702f6c6f67696e312700";
    const GODBUS_KILL_UNIT: &str = "6c0100012800000003000000a100000001016f00190000002f6f72672f667265656465736b746f702f73797374656d64310000000000000006017300180000006f72672e667265656465736b746f702e73797374656d6431000000000000000003017300080000004b696c6c556e6974000000000000000002017300200000006f72672e667265656465736b746f702e73797374656d64312e4d616e616765720000000000000000080167000373736900000000000000001600000073797374656d642d6c6f67696e642e73657276696365000003000000616c6c0001000000";
    /// The same Get big-endian (godbus `EncodeTo(.., binary.BigEndian)`).
    const GODBUS_GET_BIG_ENDIAN: &str = "420100010000003c000000020000007f03017300000000034765740000000000020173000000001f6f72672e667265656465736b746f702e444275732e50726f7065727469657300080167000273730001016f00000000172f6f72672f667265656465736b746f702f6c6f67696e310006017300000000166f72672e667265656465736b746f702e6c6f67696e3100000000001e6f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572000000000013496e686962697444656c61794d61785553656300";
    /// libdbus's Hello (fields PATH, DESTINATION, INTERFACE, MEMBER), as a
    /// ruby-dbus example prints it.
    const LIBDBUS_HELLO: &[u8] = b"l\x01\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00n\x00\x00\x00\x01\x01o\x00\x15\x00\x00\x00/org/freedesktop/DBus\x00\x00\x00\x06\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x02\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x03\x01s\x00\x05\x00\x00\x00Hello\x00\x00\x00";
    /// dbus-daemon's reply to a Hello, captured raw off a socket.
    const DAEMON_HELLO_REPLY: &[u8] = b"l\x02\x01\x01\x0c\x00\x00\x00\xff\xff\xff\xff?\x00\x00\x00\x05\x01u\x00\x01\x00\x00\x00\x07\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x06\x01s\x00\x07\x00\x00\x00:1.2072\x00\x08\x01g\x00\x01s\x00\x00\x07\x00\x00\x00:1.2072\x00";
    /// godbus's authentication as root: `AUTH` to list the mechanisms,
    /// EXTERNAL with "0" in hex, fd passing, BEGIN.
    pub(crate) const GODBUS_AUTH: &[u8] =
        b"\0AUTH\r\nAUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";
    const GODBUS_AUTH_REPLIES: &[u8] =
        b"REJECTED EXTERNAL\r\nOK 6b694f532d6c6f67696e642d64627573\r\nAGREE_UNIX_FD\r\n";

    const DELAY_US: u64 = 45_000_000;

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// What the event loop would see after feeding a session.
    #[derive(Debug, Default)]
    struct Fed {
        sent: Vec<u8>,
        consumed: usize,
        inhibitors: usize,
        closed: bool,
    }

    /// Steps `session` over `input` until it needs more or closes.
    fn feed(session: &mut Session, input: &[u8]) -> Fed {
        let mut fed = Fed::default();
        loop {
            let mut out = [0u8; OUT_MAX];
            match session.step(&input[fed.consumed..], &mut out) {
                Step::NeedInput => return fed,
                Step::Close => {
                    fed.closed = true;
                    return fed;
                }
                Step::Handled {
                    consumed,
                    len,
                    inhibitor,
                } => {
                    assert!(consumed > 0 && fed.consumed + consumed <= input.len());
                    fed.consumed += consumed;
                    fed.sent.extend_from_slice(&out[..len]);
                    fed.inhibitors += usize::from(inhibitor);
                }
            }
        }
    }

    /// Splits what the server sent into parsed messages.
    pub(crate) fn messages(mut bytes: &[u8]) -> Vec<Message<'_>> {
        let mut parsed = Vec::new();
        while !bytes.is_empty() {
            let len = frame_len(bytes).unwrap().unwrap();
            parsed.push(parse(&bytes[..len]).unwrap());
            bytes = &bytes[len..];
        }
        parsed
    }

    fn body_string<'a>(message: &Message<'a>) -> &'a str {
        assert_eq!(message.field(SIGNATURE), "s");
        message.arg(0)
    }

    /// A root connection past BEGIN and Hello, as `:1.1`.
    fn greeted() -> Session {
        let mut session = Session::new(0, 1, DELAY_US);
        let mut input = GODBUS_AUTH.to_vec();
        input.extend(hex(GODBUS_HELLO));
        let fed = feed(&mut session, &input);
        assert!(!fed.closed && fed.consumed == input.len());
        session
    }

    /// The replies of a greeted session to `calls`.
    fn answers(session: &mut Session, calls: &[u8]) -> Fed {
        let fed = feed(session, calls);
        assert!(!fed.closed, "closed on {calls:02x?}");
        assert_eq!(fed.consumed, calls.len());
        fed
    }

    /// A little-endian method call with string arguments, as a client
    /// would send it.
    fn call(
        destination: &str,
        path: &str,
        interface: &str,
        member: &str,
        args: &[&str],
    ) -> Vec<u8> {
        fn pad(bytes: &mut Vec<u8>, to: usize) {
            while !bytes.len().is_multiple_of(to) {
                bytes.push(0);
            }
        }
        fn string(bytes: &mut Vec<u8>, text: &str) {
            pad(bytes, 4);
            bytes.extend((text.len() as u32).to_le_bytes());
            bytes.extend(text.as_bytes());
            bytes.push(0);
        }
        let mut message = vec![b'l', METHOD_CALL, 0, 1, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0];
        let fields = [
            (PATH, path),
            (INTERFACE, interface),
            (MEMBER, member),
            (DESTINATION, destination),
        ];
        for (code, value) in fields.into_iter().filter(|(_, value)| !value.is_empty()) {
            pad(&mut message, 8);
            message.extend([code, 1, if code == PATH { b'o' } else { b's' }, 0]);
            string(&mut message, value);
        }
        if !args.is_empty() {
            pad(&mut message, 8);
            message.extend([SIGNATURE, 1, b'g', 0, args.len() as u8]);
            message.extend("s".repeat(args.len()).as_bytes());
            message.push(0);
        }
        let fields_len = message.len() - 16;
        pad(&mut message, 8);
        let body_start = message.len();
        let mut body = Vec::new();
        for arg in args {
            string(&mut body, arg);
        }
        message.extend(&body);
        let body_len = (message.len() - body_start) as u32;
        message[4..8].copy_from_slice(&body_len.to_le_bytes());
        message[12..16].copy_from_slice(&(fields_len as u32).to_le_bytes());
        message
    }

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
    fn godbus_authentication_is_answered_line_by_line() {
        let mut session = Session::new(0, 1, DELAY_US);
        let fed = feed(&mut session, GODBUS_AUTH);
        assert!(!fed.closed);
        assert_eq!(fed.sent, GODBUS_AUTH_REPLIES);
        assert_eq!(fed.consumed, GODBUS_AUTH.len());
        // godbus wants exactly two words on the OK line.
        assert_eq!(AUTH_OK.split(|&b| b == b' ').count(), 2);
        assert_eq!(AUTH_OK.len(), 3 + 32 + 2);
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
    fn external_without_an_initial_response_uses_the_socket_credentials() {
        // sd-bus and libdbus style: AUTH EXTERNAL, then an empty DATA.
        let mut session = Session::new(0, 1, DELAY_US);
        let fed = feed(
            &mut session,
            b"\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n",
        );
        assert!(!fed.closed);
        assert_eq!(
            fed.sent,
            b"DATA\r\nOK 6b694f532d6c6f67696e642d64627573\r\nAGREE_UNIX_FD\r\n"
        );
        assert_eq!(session.state, State::Messages);
        // The uid in a DATA line is checked like an initial response.
        let mut session = Session::new(0, 1, DELAY_US);
        let fed = feed(&mut session, b"\0AUTH EXTERNAL\r\nDATA 31\r\nDATA 30\r\n");
        assert_eq!(fed.sent, b"DATA\r\nREJECTED EXTERNAL\r\nERROR\r\n");
    }

    #[test]
    fn a_wrong_uid_a_non_root_peer_and_other_mechanisms_are_rejected() {
        let rejected = |peer: u32, line: &[u8]| {
            let mut session = Session::new(peer, 1, DELAY_US);
            let mut input = b"\0".to_vec();
            input.extend_from_slice(line);
            let fed = feed(&mut session, &input);
            assert!(!fed.closed);
            fed.sent == AUTH_REJECTED && session.state == State::WaitingForAuth
        };
        // Root claiming to be uid 1000, and uid 1000 being itself.
        assert!(rejected(0, b"AUTH EXTERNAL 31303030\r\n"));
        assert!(rejected(1000, b"AUTH EXTERNAL 31303030\r\n"));
        let mut session = Session::new(1000, 1, DELAY_US);
        let fed = feed(&mut session, b"\0AUTH EXTERNAL\r\nDATA\r\n");
        assert_eq!(fed.sent, [AUTH_DATA, AUTH_REJECTED].concat());
        // Not hex, odd length, not digits, beyond u32, empty mechanism.
        assert!(rejected(0, b"AUTH EXTERNAL 3g\r\n"));
        assert!(rejected(0, b"AUTH EXTERNAL 303\r\n"));
        assert!(rejected(0, b"AUTH EXTERNAL 41\r\n"));
        assert!(rejected(0, b"AUTH EXTERNAL 3939393939393939393939\r\n"));
        assert!(rejected(0, b"AUTH DBUS_COOKIE_SHA1 30\r\n"));
        assert!(rejected(0, b"AUTH ANONYMOUS\r\n"));
        assert!(rejected(0, b"AUTH\r\n"));
        assert!(rejected(0, b"CANCEL\r\n"));
        assert!(rejected(0, b"ERROR bad\r\n"));

        // A rejected client may try again; commands out of place get ERROR.
        let mut session = Session::new(0, 1, DELAY_US);
        let fed = feed(
            &mut session,
            b"\0AUTH EXTERNAL 31\r\nDATA 30\r\nNEGOTIATE_UNIX_FD\r\nAUTH EXTERNAL 30\r\nAUTH EXTERNAL 30\r\nCANCEL\r\nAUTH EXTERNAL 30\r\nBEGIN\r\n",
        );
        assert!(!fed.closed);
        assert_eq!(
            fed.sent,
            [
                AUTH_REJECTED,
                AUTH_ERROR,
                AUTH_ERROR,
                AUTH_OK,
                AUTH_ERROR,
                AUTH_REJECTED,
                AUTH_OK
            ]
            .concat()
        );
        assert_eq!(session.state, State::Messages);
    }

    #[test]
    fn garbage_during_authentication_closes_the_connection() {
        let closes = |input: &[u8]| feed(&mut Session::new(0, 1, DELAY_US), input).closed;
        assert!(closes(b"AUTH EXTERNAL 30\r\n")); // no NUL byte first
        assert!(closes(b"\0BEGIN\r\n")); // BEGIN before OK
        assert!(closes(b"\0AUTH EXTERNAL\r\nBEGIN\r\n"));
        assert!(closes(b"\0AUTH EXTERNAL \xff\r\n")); // not ASCII
        assert!(closes(b"\0AUTH\tEXTERNAL\r\n")); // control character
        assert!(closes(b"\0AUTH\0\r\n"));
        assert!(closes(&[&b"\0"[..], &[b'A'; LINE_MAX]].concat())); // endless line
        assert!(closes(&[&b"\0"[..], &b"ERROR\r\n".repeat(17)].concat()));
        assert!(!closes(&[&b"\0"[..], &b"ERROR\r\n".repeat(16)].concat()));
        // An unfinished line just waits.
        let mut session = Session::new(0, 1, DELAY_US);
        let fed = feed(&mut session, &[&b"\0"[..], &[b'A'; LINE_MAX - 1]].concat());
        assert!(!fed.closed && fed.consumed == 1);
        // A bare \n ends a line too.
        let fed = feed(&mut Session::new(0, 1, DELAY_US), b"\0AUTH EXTERNAL 30\n");
        assert_eq!(fed.sent, AUTH_OK);
    }

    #[test]
    fn godbus_calls_parse_into_their_fields() {
        let hello = hex(GODBUS_HELLO);
        let message = parse(&hello).unwrap();
        assert_eq!(
            (
                message.kind,
                message.serial,
                message.field(PATH),
                message.field(INTERFACE)
            ),
            (METHOD_CALL, 1, "/org/freedesktop/DBus", BUS)
        );
        assert_eq!(
            (message.field(MEMBER), message.field(DESTINATION)),
            ("Hello", BUS)
        );
        assert_eq!((message.field(SIGNATURE), message.body), ("", &[][..]));

        let inhibit = hex(GODBUS_INHIBIT);
        let message = parse(&inhibit).unwrap();
        assert_eq!(message.serial, 3);
        assert_eq!(
            (message.field(PATH), message.field(DESTINATION)),
            (LOGIND_PATH, LOGIND)
        );
        assert_eq!(
            (message.field(INTERFACE), message.field(MEMBER)),
            (MANAGER, "Inhibit")
        );
        assert_eq!(
            [0, 1, 2, 3].map(|index| message.arg(index)),
            [
                "shutdown",
                "kubelet",
                "Kubelet needs time to handle node shutdown",
                "delay"
            ]
        );
        // Anything but strings does not read as strings.
        let kill_unit = hex(GODBUS_KILL_UNIT);
        assert_eq!(parse(&kill_unit).unwrap().field(SIGNATURE), "ssi");
        let kill_unit = parse(&kill_unit).unwrap();
        assert_eq!([kill_unit.arg(1), kill_unit.arg(2)], ["all", ""]);
        assert_eq!(message.arg(4), "");

        let add_match = hex(GODBUS_ADD_MATCH);
        let message = parse(&add_match).unwrap();
        assert_eq!((message.serial, message.field(MEMBER)), (4, "AddMatch"));
        assert_eq!(
            body_string(&message),
            "type='signal',interface='org.freedesktop.login1.Manager',member='PrepareForShutdown',path='/org/freedesktop/login1'"
        );

        let libdbus = parse(LIBDBUS_HELLO).unwrap();
        assert_eq!(
            (libdbus.field(MEMBER), libdbus.field(DESTINATION)),
            ("Hello", BUS)
        );
        assert_eq!(libdbus.field(PATH), "/org/freedesktop/DBus");
    }

    #[test]
    fn big_endian_calls_parse_like_little_endian_ones() {
        let (little, big) = (hex(GODBUS_GET), hex(GODBUS_GET_BIG_ENDIAN));
        let (little, big) = (parse(&little).unwrap(), parse(&big).unwrap());
        assert!(big.big_endian && !little.big_endian);
        assert_eq!(
            (big.field(PATH), big.field(INTERFACE), big.field(MEMBER)),
            (
                little.field(PATH),
                little.field(INTERFACE),
                little.field(MEMBER)
            )
        );
        assert_eq!(
            (big.field(DESTINATION), big.field(SIGNATURE), big.serial),
            (
                little.field(DESTINATION),
                little.field(SIGNATURE),
                little.serial
            )
        );
        let big_args = [big.arg(0), big.arg(1), big.arg(2)];
        assert_eq!(big_args, [MANAGER, "InhibitDelayMaxUSec", ""]);
        assert_eq!(big_args, [little.arg(0), little.arg(1), little.arg(2)]);
        // And a session answers it the same way.
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
    fn the_hello_reply_is_byte_for_byte_what_dbus_daemon_sends() {
        let mut out = [0u8; OUT_MAX];
        let len = write_reply(&mut out, u32::MAX, 1, ":1.2072", BUS, Body::Str(":1.2072")).unwrap();
        assert_eq!(&out[..len], DAEMON_HELLO_REPLY);

        // A session numbered 2072 answers libdbus's Hello the same way,
        // but for its own serial.
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

    /// `message` with `extra` bytes appended to its header fields (at an
    /// 8-byte boundary, as the next field would be).
    fn with_extra_field(message: &[u8], extra: &[u8]) -> Vec<u8> {
        let fields_len = u32::from_le_bytes(message[12..16].try_into().unwrap()) as usize;
        let body_start = 16 + fields_len.div_ceil(8) * 8;
        let mut fields = message[16..body_start].to_vec();
        fields.extend_from_slice(extra);
        let mut out = message[..12].to_vec();
        out.extend((fields.len() as u32).to_le_bytes());
        out.extend(&fields);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        out.extend(&message[body_start..]);
        out
    }

    fn set_u32(message: &mut [u8], at: usize, value: u32) {
        message[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn malformed_messages_are_rejected_without_panicking() {
        let good = hex(GODBUS_GET);
        assert!(parse(&good).is_ok());
        let invalid = |bytes: &[u8]| parse(bytes) == Err(Malformed::Invalid);

        // Truncated anywhere: not a message yet, never a panic.
        for len in 0..good.len() {
            assert!(parse(&good[..len]).is_err());
            let frame = frame_len(&good[..len]);
            assert!(frame == Ok(None) || frame == Ok(Some(good.len())));
        }
        // Trailing bytes are not part of the message.
        assert!(invalid(&[&good[..], &[0]].concat()));

        // The endianness byte, version, type, serial.
        let mutate = |at: usize, byte: u8| {
            let mut bad = good.clone();
            bad[at] = byte;
            bad
        };
        assert_eq!(frame_len(&mutate(0, b'x')), Err(Malformed::Invalid));
        // Lengths read big-endian no longer fit.
        assert_eq!(parse(&mutate(0, b'B')), Err(Malformed::Oversized));
        assert!(invalid(&mutate(3, 2)));
        assert!(invalid(&mutate(1, 0)));
        assert!(invalid(&mutate(1, 5)));
        let mut zero_serial = good.clone();
        set_u32(&mut zero_serial, 8, 0);
        assert!(invalid(&zero_serial));

        // Lengths: huge ones are refused before any waiting.
        for at in [4, 12] {
            for huge in [u32::MAX, 0x7fff_ffff, MESSAGE_MAX as u32] {
                let mut bad = good.clone();
                set_u32(&mut bad, at, huge);
                assert_eq!(frame_len(&bad), Err(Malformed::Oversized));
            }
        }
        // A body length that disagrees with the signature's strings, and a
        // header length cutting a field.
        let mut body_short = good.clone();
        set_u32(&mut body_short, 4, 0x3c - 8);
        let frame = frame_len(&body_short).unwrap().unwrap();
        let parsed = parse(&body_short[..frame]).unwrap();
        assert_eq!((parsed.arg(0), parsed.arg(1)), (MANAGER, ""));
        let mut fields_short = good.clone();
        set_u32(&mut fields_short, 12, 0x80 - 1);
        assert!(invalid(&fields_short));
        let mut fields_long = good.clone();
        set_u32(&mut fields_long, 12, 0x80 + 1);
        assert!(invalid(&fields_long));
        // A string running past its message.
        let mut path_long = good.clone();
        set_u32(&mut path_long, 20, 0x1000);
        assert!(invalid(&path_long));

        // Alignment: padding must be zero.
        let padding_at = good.windows(4).position(|w| w == b"Get\0").unwrap() + 4;
        assert!(invalid(&mutate(padding_at, 1)));
        // Strings: the NUL, interior NULs, UTF-8.
        let path_at = 24;
        assert!(invalid(&mutate(path_at + 23, b'x')));
        assert!(invalid(&mutate(path_at + 3, 0)));
        assert!(invalid(&mutate(path_at + 3, 0xff)));
        // A variant holds exactly one type.
        let two_types = [0x50, 2, b'u', b'u', 0, 0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0];
        assert!(invalid(&with_extra_field(&good, &two_types)));

        // Header fields: unknown basic ones are skipped...
        assert!(parse(&with_extra_field(&good, &[0x50, 1, b'u', 0, 7, 0, 0, 0])).is_ok());
        assert!(parse(&with_extra_field(
            &good,
            &[0x50, 1, b's', 0, 1, 0, 0, 0, b'x', 0]
        ))
        .is_ok());
        // ...containers and variants are not, nor code 0, nor a known
        // field with the wrong type, nor a field twice.
        let refused: [&[u8]; 7] = [
            &[0x50, 1, b'v', 0, 1, b'u', 0, 0, 7, 0, 0, 0],
            &[
                0x50, 1, b'v', 0, 1, b'v', 0, 1, b'v', 0, 1, b'u', 0, 0, 0, 0, 7, 0, 0, 0,
            ],
            &[0x50, 2, b'a', b'y', 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f],
            &[0x50, 3, b'(', b'u', b')', 0, 0, 0, 7, 0, 0, 0],
            &[0, 1, b'u', 0, 7, 0, 0, 0],
            &[1, 1, b's', 0, 1, 0, 0, 0, b'/', 0],
            &[3, 1, b's', 0, 1, 0, 0, 0, b'x', 0],
        ];
        for field in refused {
            assert!(invalid(&with_extra_field(&good, field)), "{field:?}");
        }
        // A signature without its NUL.
        assert!(invalid(&with_extra_field(
            &good,
            &[0x50, 1, b'g', 0, 1, b's', b's']
        )));
        // A return needs a REPLY_SERIAL, a call a path and a member.
        let mut out = [0u8; OUT_MAX];
        let len = write_reply(&mut out, 1, 0, BUS, "", Body::Empty).unwrap();
        assert!(invalid(&out[..len]));
        out[1] = METHOD_CALL;
        assert!(invalid(&out[..len]));
        out[1] = ERROR;
        assert!(invalid(&out[..len]));
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

    /// A deterministic xorshift for the mutation tests.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
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
