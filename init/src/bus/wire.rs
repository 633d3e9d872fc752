//! The D-Bus message codec (D-Bus specification, "Message protocol"): the
//! fixed header, the header fields, marshalling of the few types the bus
//! reads and writes, and their alignment. Reads are bounded by
//! [`MESSAGE_MAX`] and nothing here panics.

/// The largest message accepted, header and body; a connection announcing
/// a larger one is closed. The kubelet's largest (Inhibit) is 238 bytes.
pub const MESSAGE_MAX: usize = 2048;

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
/// Known field codes are below this.
const FIELD_CODES: usize = 10;

/// Type codes of the types the bus reads or writes.
pub mod types {
    pub const BOOLEAN: u8 = b'b';
    pub const INT32: u8 = b'i';
    pub const UINT32: u8 = b'u';
    pub const UINT64: u8 = b't';
    pub const STRING: u8 = b's';
    pub const OBJECT_PATH: u8 = b'o';
    pub const SIGNATURE: u8 = b'g';
    pub const VARIANT: u8 = b'v';
    pub const UNIX_FD: u8 = b'h';
}

/// The type of each known header field, by code (0 is invalid).
const FIELD_TYPES: &[u8; FIELD_CODES] = &[
    0,
    types::OBJECT_PATH, // PATH
    types::STRING,      // INTERFACE
    types::STRING,      // MEMBER
    types::STRING,      // ERROR_NAME
    types::UINT32,      // REPLY_SERIAL
    types::STRING,      // DESTINATION
    types::STRING,      // SENDER
    types::SIGNATURE,   // SIGNATURE
    types::UINT32,      // UNIX_FDS
];
/// The fields each message type must carry, as bits `1 << code`, by type.
const REQUIRED: [u16; 5] = [
    0,
    1 << PATH | 1 << MEMBER,                  // METHOD_CALL
    1 << REPLY_SERIAL,                        // METHOD_RETURN
    1 << ERROR_NAME | 1 << REPLY_SERIAL,      // ERROR
    1 << PATH | 1 << INTERFACE | 1 << MEMBER, // SIGNAL
];

/// The fixed header: endianness, type, flags, version, then u32 body
/// length, serial and header fields' length.
const LITTLE_ENDIAN: u8 = b'l';
const BIG_ENDIAN: u8 = b'B';
const VERSION: u8 = 1;
const BODY_LEN_AT: usize = 4;
const FIELDS_LEN_AT: usize = 12;
const FIXED_HEADER_LEN: usize = 16;
/// Structs (each header field) and the body start 8-aligned.
const STRUCT_ALIGN: usize = 8;
const U32_ALIGN: usize = 4;

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
    strings: [Option<&'a str>; FIELD_CODES],
    numbers: [u32; FIELD_CODES],
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
        if types.iter().any(|&code| code != types::STRING) {
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
    pub fn calls(&self, method: &[&str; 5]) -> bool {
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
        Some(&LITTLE_ENDIAN) => false,
        Some(&BIG_ENDIAN) => true,
        Some(_) => return Err(Malformed::Invalid),
    };
    if input.len() < FIXED_HEADER_LEN {
        return Ok(None);
    }
    let mut reader = Reader::new(input, big_endian);
    reader.pos = BODY_LEN_AT;
    let body_len = reader.u32();
    reader.pos = FIELDS_LEN_AT;
    let fields_len = reader.u32();
    let align = STRUCT_ALIGN as u64 - 1;
    let total =
        FIXED_HEADER_LEN as u64 + ((u64::from(fields_len) + align) & !align) + u64::from(body_len);
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

/// [`parse`] for bytes [`frame_len`] has measured; `None` when invalid.
#[inline(never)]
pub fn parse_framed(bytes: &[u8]) -> Option<Message<'_>> {
    let mut reader = Reader::new(bytes, bytes.first() == Some(&BIG_ENDIAN));
    reader.pos = 1;
    let mut message = Message {
        kind: reader.u8(),
        flags: reader.u8(),
        serial: 0,
        body: &[],
        big_endian: reader.big_endian,
        strings: [None; FIELD_CODES],
        numbers: [0; FIELD_CODES],
    };
    let version = reader.u8();
    let body_len = reader.u32() as usize;
    message.serial = reader.u32();
    let fields_end = FIXED_HEADER_LEN + reader.u32() as usize;
    let required = REQUIRED
        .get(usize::from(message.kind))
        .copied()
        .unwrap_or(0);
    if required == 0 || version != VERSION || message.serial == 0 {
        return None;
    }
    // The header fields, a(yv): structs (8-aligned) of a code and a
    // variant. Known codes must carry their type, once; unknown codes are
    // skipped when they hold a string or a 32-bit value. Nothing nests.
    let mut seen = 0u16;
    while !reader.bad && reader.pos < fields_end {
        reader.align(STRUCT_ALIGN);
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
            types::STRING | types::OBJECT_PATH | types::SIGNATURE => {
                let value = if type_code == types::SIGNATURE {
                    reader.signature()
                } else {
                    reader.string()
                };
                if let Some(slot) = message.strings.get_mut(index) {
                    *slot = Some(value);
                }
            }
            types::UINT32 | types::INT32 | types::BOOLEAN | types::UNIX_FD => {
                let value = reader.u32();
                if let Some(slot) = message.numbers.get_mut(index) {
                    *slot = value;
                }
            }
            _ => reader.bad = true,
        }
    }
    let fields_exact = reader.pos == fields_end;
    reader.align(STRUCT_ALIGN);
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
        self.align(U32_ALIGN);
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
const VARIANT_U64: &[u8] = &[1, types::UINT64, 0, 0, 0, 0, 0, 0];

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

/// `fields` are string fields (PATH typed `o`); empty ones and a
/// `reply_serial` of 0 are left out.
#[inline(never)]
pub fn write_message(
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
    w.bytes(&[LITTLE_ENDIAN, kind, NO_REPLY_EXPECTED, VERSION]);
    w.u32(0); // the body's length, set below
    w.u32(serial);
    w.u32(0); // the header fields' length, set below
    if reply_serial != 0 {
        w.field(REPLY_SERIAL, types::UINT32);
        w.u32(reply_serial);
    }
    for &(code, value) in fields {
        if !value.is_empty() {
            let type_code = if code == PATH {
                types::OBJECT_PATH
            } else {
                types::STRING
            };
            w.field(code, type_code);
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
        w.field(SIGNATURE, types::SIGNATURE);
        w.bytes(&[signature.len() as u8]);
        w.bytes(signature.as_bytes());
        w.bytes(&[0]);
    }
    if body == Body::UnixFd {
        w.field(UNIX_FDS, types::UINT32);
        w.u32(1);
    }
    let fields_len = w.pos - FIXED_HEADER_LEN;
    w.pad(STRUCT_ALIGN);
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
    w.pos = BODY_LEN_AT;
    w.u32((end - body_start) as u32);
    w.pos = FIELDS_LEN_AT;
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
        self.pad(U32_ALIGN);
        self.bytes(&value.to_le_bytes());
    }

    fn string(&mut self, text: &str) {
        self.u32(text.len() as u32);
        self.bytes(text.as_bytes());
        self.bytes(&[0]);
    }

    /// A header field's code and its variant's one-type signature.
    fn field(&mut self, code: u8, type_code: u8) {
        self.pad(STRUCT_ALIGN);
        self.bytes(&[code, 1, type_code, 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::fixtures::*;
    use crate::bus::logind::{BUS, LOGIND, LOGIND_PATH, MANAGER, OUT_MAX};

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
    }

    #[test]
    fn the_hello_reply_is_byte_for_byte_what_dbus_daemon_sends() {
        let mut out = [0u8; OUT_MAX];
        let len = write_reply(&mut out, u32::MAX, 1, ":1.2072", BUS, Body::Str(":1.2072")).unwrap();
        assert_eq!(&out[..len], DAEMON_HELLO_REPLY);
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
}
