//! The D-Bus message codec (`bus::wire`): framing and parsing of any
//! bytes (a parsed message is as long as its frame, and every accessor
//! answers), and, with the first byte odd, the writer: a message written
//! from fuzzed fields parses back to what was written.
#![no_main]

use kios_fuzz::Bytes;
use kios_init::bus::wire::{
    self, Body, DESTINATION, ERROR, ERROR_NAME, INTERFACE, MEMBER, METHOD_CALL, METHOD_RETURN,
    PATH, REPLY_SERIAL, SENDER, SIGNAL, SIGNATURE, UNIX_FDS,
};
use libfuzzer_sys::fuzz_target;

fn parse_any(bytes: &[u8]) {
    let framed = wire::frame_len(bytes);
    if let Ok(Some(len)) = framed {
        assert!((16..=wire::MESSAGE_MAX).contains(&len), "{len}");
    }
    if let Ok(message) = wire::parse(bytes) {
        assert_eq!(framed, Ok(Some(bytes.len())));
        assert!(message.serial != 0);
        assert!(message.body.len() <= bytes.len());
        for code in 0..=u8::MAX {
            let _ = message.field(code);
            let _ = message.number(code);
        }
        for index in 0..8 {
            let _ = message.arg(index);
        }
        let _ = message.calls(&[
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "",
            "Hello",
            "",
        ]);
    }
    let _ = wire::parse_framed(bytes);
}

/// A string field value without NUL (the writer's callers never pass one).
fn text(bytes: &mut Bytes<'_>) -> String {
    let len = usize::from(bytes.u8() % 64);
    String::from_utf8_lossy(bytes.take(len)).replace('\0', "")
}

fn roundtrip(bytes: &mut Bytes<'_>) {
    let kind = [METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL][usize::from(bytes.u8() % 4)];
    let serial = bytes.u32().max(1);
    let reply_serial = bytes.u32();
    let codes = [PATH, INTERFACE, MEMBER, ERROR_NAME, DESTINATION, SENDER];
    let values: Vec<String> = codes.iter().map(|_| text(bytes)).collect();
    let fields: Vec<(u8, &str)> = codes
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .collect();
    let body_text = text(bytes);
    let body = match bytes.u8() % 5 {
        0 => Body::Empty,
        1 => Body::Str(&body_text),
        2 => Body::U64Variant(u64::from(bytes.u32()) << 32 | u64::from(bytes.u32())),
        3 => Body::UnixFd,
        _ => Body::Bool(bytes.u8() & 1 == 1),
    };
    let room = usize::from(bytes.u8()) * 8;
    let mut out = vec![0u8; room];
    let Some(len) = wire::write_message(&mut out, kind, serial, reply_serial, &fields, body) else {
        return;
    };
    assert!(len <= room);
    let written = &out[..len];
    let required: &[u8] = match kind {
        METHOD_CALL => &[PATH, MEMBER],
        METHOD_RETURN => &[],
        ERROR => &[ERROR_NAME],
        _ => &[PATH, INTERFACE, MEMBER],
    };
    let complete = required
        .iter()
        .all(|code| fields.iter().any(|(c, v)| c == code && !v.is_empty()))
        && (kind == METHOD_CALL || kind == SIGNAL || reply_serial != 0);
    let message = match wire::parse(written) {
        Ok(message) => message,
        Err(error) if !complete => {
            let _ = error;
            return;
        }
        Err(error) => panic!("wrote {written:02x?}, which does not parse: {error:?}"),
    };
    assert_eq!((message.kind, message.serial), (kind, serial));
    assert_eq!(message.number(REPLY_SERIAL), reply_serial);
    for (code, value) in &fields {
        assert_eq!(message.field(*code), *value, "field {code}");
    }
    match body {
        Body::Empty => assert_eq!(message.field(SIGNATURE), ""),
        Body::Str(value) => assert_eq!(message.arg(0), value),
        Body::UnixFd => assert_eq!(message.number(UNIX_FDS), 1),
        Body::U64Variant(_) | Body::Bool(_) => assert!(!message.body.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => roundtrip(&mut Bytes::new(rest)),
        _ => parse_any(data.get(1..).unwrap_or_default()),
    }
});
