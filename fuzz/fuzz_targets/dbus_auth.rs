//! The bus's SASL authentication (`bus::auth::Auth`), fed as the event
//! loop feeds it: every step consumes within the input, answers within
//! the output buffer with whole ASCII lines, and ends in bounded steps.
//! Byte by byte or all at once, the answers are the same. The first byte
//! chooses the peer: root or not.
#![no_main]

use kios_init::bus::auth::{Auth, LINES_MAX};
use kios_init::bus::logind::{Step, OUT_MAX};
use libfuzzer_sys::fuzz_target;

/// Steps over `input` growing `by` bytes at a time; what was sent, whether closed.
fn feed(uid: u32, input: &[u8], by: usize) -> (Vec<u8>, bool, bool) {
    let mut auth = Auth::new(uid);
    let mut sent = Vec::new();
    let mut out = [0u8; OUT_MAX];
    let (mut start, mut end, mut steps) = (0, 0, 0);
    loop {
        match auth.step(&input[start..end], &mut out) {
            Step::NeedInput if end == input.len() => return (sent, false, auth.done()),
            Step::NeedInput => end = (end + by).min(input.len()),
            Step::Close => return (sent, true, auth.done()),
            Step::Handled {
                consumed,
                len,
                inhibitor,
            } => {
                assert!(
                    consumed > 0 && start + consumed <= end,
                    "consumed {consumed}"
                );
                assert!(len <= out.len() && !inhibitor);
                let reply = &out[..len];
                assert!(reply.is_empty() || reply.ends_with(b"\r\n"), "{reply:?}");
                assert!(reply.iter().all(|b| b.is_ascii() && *b != 0));
                sent.extend_from_slice(reply);
                start += consumed;
                steps += 1;
                assert!(steps <= usize::from(LINES_MAX) + 1, "{steps} steps");
                if auth.done() {
                    return (sent, false, true);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, input)) = data.split_first() else {
        return;
    };
    let uid = if who & 1 == 0 { 0 } else { 1000 };
    let whole = feed(uid, input, input.len().max(1));
    assert_eq!(feed(uid, input, 1), whole, "byte by byte");
    if whole.2 {
        assert_eq!(uid, 0, "a non-root peer authenticated");
    }
});
