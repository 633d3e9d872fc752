//! Test fixtures shared by the bus's tests and the event loop's: messages
//! as real clients encode them, a client-side message builder, and a driver
//! that feeds a session like the event loop does.

use crate::bus::logind::{Session, Step, OUT_MAX};
use crate::bus::wire::{
    frame_len, parse, Message, DESTINATION, INTERFACE, MEMBER, METHOD_CALL, PATH, SIGNATURE,
};

/// Wire bytes of the kubelet's four calls and of the KillUnit it would
/// send, encoded by godbus v5.0.3 (the kubelet 1.20.2 vendor tree) the
/// way `(*Object).createCall` builds them, with the serials a new
/// connection hands out. godbus writes header fields in Go map order,
/// which varies from message to message: these come from one run.
pub(crate) const GODBUS_HELLO: &str = "6c01000100000000010000006e00000006017300140000006f72672e667265656465736b746f702e4442757300000000030173000500000048656c6c6f00000002017300140000006f72672e667265656465736b746f702e444275730000000001016f00150000002f6f72672f667265656465736b746f702f44427573000000";
pub(crate) const GODBUS_GET: &str = "6c0100013c000000020000008000000001016f00170000002f6f72672f667265656465736b746f702f6c6f67696e310006017300160000006f72672e667265656465736b746f702e6c6f67696e31000003017300030000004765740000000000020173001f0000006f72672e667265656465736b746f702e444275732e50726f706572746965730008016700027373001e0000006f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572000013000000496e686962697444656c61794d61785553656300";
pub(crate) const GODBUS_INHIBIT: &str = "6c01000156000000030000008800000006017300160000006f72672e667265656465736b746f702e6c6f67696e3100000301730007000000496e686962697400020173001e0000006f72672e667265656465736b746f702e6c6f67696e312e4d616e6167657200000801670004737373730000000000000001016f00170000002f6f72672f667265656465736b746f702f6c6f67696e31000800000073687574646f776e00000000070000006b7562656c6574002a0000004b7562656c6574206e656564732074696d6520746f2068616e646c65206e6f64652073687574646f776e00000500000064656c617900";
pub(crate) const GODBUS_ADD_MATCH: &str = "6c01000178000000040000007e00000006017300140000006f72672e667265656465736b746f702e444275730000000003017300080000004164644d61746368000000000000000002017300140000006f72672e667265656465736b746f702e4442757300000000080167000173000001016f00150000002f6f72672f667265656465736b746f702f4442757300000073000000747970653d277369676e616c272c696e746572666163653d276f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572272c6d656d6265723d2750726570617265466f7253687574646f776e272c706174683d272f6f72672f667265656465736b746f702f6c6f67696e312700";
pub(crate) const GODBUS_KILL_UNIT: &str = "6c0100012800000003000000a100000001016f00190000002f6f72672f667265656465736b746f702f73797374656d64310000000000000006017300180000006f72672e667265656465736b746f702e73797374656d6431000000000000000003017300080000004b696c6c556e6974000000000000000002017300200000006f72672e667265656465736b746f702e73797374656d64312e4d616e616765720000000000000000080167000373736900000000000000001600000073797374656d642d6c6f67696e642e73657276696365000003000000616c6c0001000000";
/// The same Get big-endian (godbus `EncodeTo(.., binary.BigEndian)`).
pub(crate) const GODBUS_GET_BIG_ENDIAN: &str = "420100010000003c000000020000007f03017300000000034765740000000000020173000000001f6f72672e667265656465736b746f702e444275732e50726f7065727469657300080167000273730001016f00000000172f6f72672f667265656465736b746f702f6c6f67696e310006017300000000166f72672e667265656465736b746f702e6c6f67696e3100000000001e6f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572000000000013496e686962697444656c61794d61785553656300";
/// libdbus's Hello (fields PATH, DESTINATION, INTERFACE, MEMBER), as a
/// ruby-dbus example prints it.
pub(crate) const LIBDBUS_HELLO: &[u8] = b"l\x01\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00n\x00\x00\x00\x01\x01o\x00\x15\x00\x00\x00/org/freedesktop/DBus\x00\x00\x00\x06\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x02\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x03\x01s\x00\x05\x00\x00\x00Hello\x00\x00\x00";
/// dbus-daemon's reply to a Hello, captured raw off a socket.
pub(crate) const DAEMON_HELLO_REPLY: &[u8] = b"l\x02\x01\x01\x0c\x00\x00\x00\xff\xff\xff\xff?\x00\x00\x00\x05\x01u\x00\x01\x00\x00\x00\x07\x01s\x00\x14\x00\x00\x00org.freedesktop.DBus\x00\x00\x00\x00\x06\x01s\x00\x07\x00\x00\x00:1.2072\x00\x08\x01g\x00\x01s\x00\x00\x07\x00\x00\x00:1.2072\x00";
/// godbus's authentication as root: `AUTH` to list the mechanisms,
/// EXTERNAL with "0" in hex, fd passing, BEGIN.
pub(crate) const GODBUS_AUTH: &[u8] =
    b"\0AUTH\r\nAUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";
pub(crate) const GODBUS_AUTH_REPLIES: &[u8] =
    b"REJECTED EXTERNAL\r\nOK 6b694f532d6c6f67696e642d64627573\r\nAGREE_UNIX_FD\r\n";

pub(crate) const DELAY_US: u64 = 45_000_000;

pub(crate) fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// What the event loop would see after feeding a session.
#[derive(Debug, Default)]
pub(crate) struct Fed {
    pub sent: Vec<u8>,
    pub consumed: usize,
    pub inhibitors: usize,
    pub closed: bool,
}

/// Steps `session` over `input` until it needs more or closes.
pub(crate) fn feed(session: &mut Session, input: &[u8]) -> Fed {
    feed_steps(|input, out| session.step(input, out), input)
}

/// Calls `step` over `input` as the event loop would, until it needs more
/// or closes.
pub(crate) fn feed_steps(mut step: impl FnMut(&[u8], &mut [u8]) -> Step, input: &[u8]) -> Fed {
    let mut fed = Fed::default();
    loop {
        let mut out = [0u8; OUT_MAX];
        match step(&input[fed.consumed..], &mut out) {
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

pub(crate) fn body_string<'a>(message: &Message<'a>) -> &'a str {
    assert_eq!(message.field(SIGNATURE), "s");
    message.arg(0)
}

/// A root connection past BEGIN and Hello, as `:1.1`.
pub(crate) fn greeted() -> Session {
    let mut session = Session::new(0, 1, DELAY_US);
    let mut input = GODBUS_AUTH.to_vec();
    input.extend(hex(GODBUS_HELLO));
    let fed = feed(&mut session, &input);
    assert!(!fed.closed && fed.consumed == input.len());
    session
}

/// The replies of a greeted session to `calls`.
pub(crate) fn answers(session: &mut Session, calls: &[u8]) -> Fed {
    let fed = feed(session, calls);
    assert!(!fed.closed, "closed on {calls:02x?}");
    assert_eq!(fed.consumed, calls.len());
    fed
}

/// A little-endian method call with string arguments, as a client
/// would send it.
pub(crate) fn call(
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

/// `message` with `extra` bytes appended to its header fields (at an
/// 8-byte boundary, as the next field would be).
pub(crate) fn with_extra_field(message: &[u8], extra: &[u8]) -> Vec<u8> {
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

pub(crate) fn set_u32(message: &mut [u8], at: usize, value: u32) {
    message[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// A deterministic xorshift for the mutation tests.
pub(crate) fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
