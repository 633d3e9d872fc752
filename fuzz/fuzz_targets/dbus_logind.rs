//! One bus connection (`bus::logind::Session`): authentication, then the
//! logind calls, fed as the event loop feeds them. Every message the
//! session writes parses, at most four inhibitors are handed out, and the
//! answers are the same whether the input comes in whole or in pieces.
//! The first byte: bit 0 puts godbus's authentication as root before the
//! input (so the fuzzer starts among messages), bits 1-7 the step at which
//! the node starts shutting down (PrepareForShutdown).
#![no_main]

use kios_fuzz::assert_messages;
use kios_init::bus::logind::{Session, Step, INHIBITORS_MAX, OUT_MAX};
use kios_init::bus::wire::MESSAGE_MAX;
use libfuzzer_sys::fuzz_target;

const GODBUS_AUTH: &[u8] = b"\0AUTH\r\nAUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";

#[derive(Debug, PartialEq, Eq)]
struct Fed {
    /// The binary messages sent after authentication.
    messages: Vec<u8>,
    inhibitors: usize,
    closed: bool,
}

fn feed(input: &[u8], by: usize, shutdown_at: usize) -> Fed {
    let mut session = Session::new(0, 7, 20_000_000);
    let mut fed = Fed {
        messages: Vec::new(),
        inhibitors: 0,
        closed: false,
    };
    let mut out = [0u8; OUT_MAX];
    let (mut start, mut end, mut steps) = (0, 0, 0);
    loop {
        if steps == shutdown_at {
            let len = session.notify_shutdown(&mut out);
            assert!(len <= out.len());
            fed.messages.extend_from_slice(&out[..len]);
            steps += 1;
        }
        let authenticated = session.authenticated();
        // The server keeps at most MESSAGE_MAX bytes buffered.
        let window = &input[start..end.min(start + MESSAGE_MAX)];
        match session.step(window, &mut out) {
            Step::NeedInput if end == input.len() || window.len() == MESSAGE_MAX => return fed,
            Step::NeedInput => end = (end + by).min(input.len()),
            Step::Close => {
                fed.closed = true;
                return fed;
            }
            Step::Handled {
                consumed,
                len,
                inhibitor,
            } => {
                assert!(
                    consumed > 0 && consumed <= window.len(),
                    "consumed {consumed}"
                );
                assert!(len <= out.len());
                if authenticated {
                    fed.messages.extend_from_slice(&out[..len]);
                }
                fed.inhibitors += usize::from(inhibitor);
                start += consumed;
                end = end.max(start);
                steps += 1;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if mode & 1 == 1 {
        input.extend_from_slice(GODBUS_AUTH);
    }
    input.extend_from_slice(rest);
    let shutdown_at = usize::from(mode >> 1);
    let whole = feed(&input, input.len().max(1), shutdown_at);
    assert_messages(&whole.messages);
    assert!(whole.inhibitors <= usize::from(INHIBITORS_MAX));
    for by in [1, 7] {
        assert_eq!(
            feed(&input, by, shutdown_at),
            whole,
            "fed {by} bytes at a time"
        );
    }
});
