//! The SASL exchange that opens every bus connection (D-Bus specification,
//! "Authentication protocol"): a NUL byte, then printable ASCII lines, only
//! the EXTERNAL mechanism, checked against the peer's credentials
//! (SO_PEERCRED) and [`peer::allowed`]. Inputs are bounded ([`LINE_MAX`],
//! [`LINES_MAX`]) and nothing here panics.

use crate::bus::logind::Step;
use crate::peer;

/// The longest authentication line.
pub const LINE_MAX: usize = 256;
/// Authentication lines a client may send before BEGIN.
pub const LINES_MAX: u8 = 16;

const REJECTED: &[u8] = b"REJECTED EXTERNAL\r\n";
/// The server GUID is any 32 hex digits: these spell "kiOS-logind-dbus".
const OK: &[u8] = b"OK 6b694f532d6c6f67696e642d64627573\r\n";
const DATA: &[u8] = b"DATA\r\n";
const ERROR: &[u8] = b"ERROR\r\n";
const AGREE_UNIX_FD: &[u8] = b"AGREE_UNIX_FD\r\n";

/// The client commands understood, compared through a table: literal
/// patterns would unroll into byte-by-byte code.
const COMMANDS: [&[u8]; 6] = [
    b"AUTH",
    b"DATA",
    b"BEGIN",
    b"NEGOTIATE_UNIX_FD",
    b"CANCEL",
    b"ERROR",
];
/// Indices into [`COMMANDS`].
mod command {
    pub const AUTH: usize = 0;
    pub const DATA: usize = 1;
    pub const BEGIN: usize = 2;
    pub const NEGOTIATE_UNIX_FD: usize = 3;
    pub const CANCEL: usize = 4;
    pub const ERROR: usize = 5;
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
    /// Past BEGIN: binary messages follow.
    Done,
}

/// One connection's authentication.
#[derive(Debug)]
pub struct Auth {
    state: State,
    peer_uid: u32,
    lines: u8,
}

impl Auth {
    /// `peer_uid` from SO_PEERCRED: only a peer [`peer::allowed`] gets
    /// through.
    pub fn new(peer_uid: u32) -> Auth {
        Auth {
            state: State::Nul,
            peer_uid,
            lines: 0,
        }
    }

    /// Past BEGIN: exchanging messages.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Handles the NUL byte or the first line of `input`, writing the
    /// answer into `out`.
    // Out of line, like the bus's other #[inline(never)] functions: the
    // smallest init on both architectures.
    #[inline(never)]
    pub fn step(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        match (self.state, input.first()) {
            (State::Nul, None) => Step::NeedInput,
            (State::Nul, Some(0)) => {
                self.state = State::WaitingForAuth;
                Step::Handled {
                    consumed: 1,
                    len: 0,
                    inhibitor: false,
                }
            }
            (State::Nul, Some(_)) => Step::Close,
            _ => self.line(input, out),
        }
    }

    fn line(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let mut end = 0;
        loop {
            match input.get(end) {
                None => return Step::NeedInput,
                Some(b'\n') => break,
                Some(b' '..=b'~' | b'\r') if end + 1 < LINE_MAX => end += 1,
                Some(_) => return Step::Close,
            }
        }
        self.lines = self.lines.saturating_add(1);
        if self.lines > LINES_MAX {
            return Step::Close;
        }
        let line = input.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (command, argument) = split_word(line);
        let command = COMMANDS.iter().position(|name| *name == command);
        let reply = match (self.state, command) {
            (State::WaitingForBegin, Some(command::BEGIN)) => {
                self.state = State::Done;
                &[][..]
            }
            (_, Some(command::BEGIN)) => return Step::Close,
            (State::WaitingForBegin, Some(command::NEGOTIATE_UNIX_FD)) => AGREE_UNIX_FD,
            (State::WaitingForAuth, Some(command::AUTH)) => {
                let (mechanism, response) = split_word(argument);
                if mechanism != b"EXTERNAL" {
                    REJECTED
                } else if response.is_empty() {
                    self.state = State::WaitingForData;
                    DATA
                } else {
                    self.external(response)
                }
            }
            (State::WaitingForData, Some(command::DATA)) => self.external(argument),
            (_, Some(command::CANCEL | command::ERROR)) => {
                self.state = State::WaitingForAuth;
                REJECTED
            }
            _ => ERROR,
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
            OK
        } else {
            self.state = State::WaitingForAuth;
            REJECTED
        }
    }
}

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
mod tests {
    use super::*;
    use crate::bus::fixtures::{feed_steps, Fed, GODBUS_AUTH, GODBUS_AUTH_REPLIES};

    fn feed(auth: &mut Auth, input: &[u8]) -> Fed {
        feed_steps(|input, out| auth.step(input, out), input)
    }

    #[test]
    fn godbus_authentication_is_answered_line_by_line() {
        let mut auth = Auth::new(0);
        let fed = feed(&mut auth, GODBUS_AUTH);
        assert!(!fed.closed);
        assert_eq!(fed.sent, GODBUS_AUTH_REPLIES);
        assert_eq!(fed.consumed, GODBUS_AUTH.len());
        // godbus wants exactly two words on the OK line.
        assert_eq!(OK.split(|&b| b == b' ').count(), 2);
        assert_eq!(OK.len(), 3 + 32 + 2);
    }

    #[test]
    fn external_without_an_initial_response_uses_the_socket_credentials() {
        // sd-bus and libdbus style: AUTH EXTERNAL, then an empty DATA.
        let mut auth = Auth::new(0);
        let fed = feed(
            &mut auth,
            b"\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n",
        );
        assert!(!fed.closed);
        assert_eq!(
            fed.sent,
            b"DATA\r\nOK 6b694f532d6c6f67696e642d64627573\r\nAGREE_UNIX_FD\r\n"
        );
        assert_eq!(auth.state, State::Done);
        // The uid in a DATA line is checked like an initial response.
        let mut auth = Auth::new(0);
        let fed = feed(&mut auth, b"\0AUTH EXTERNAL\r\nDATA 31\r\nDATA 30\r\n");
        assert_eq!(fed.sent, b"DATA\r\nREJECTED EXTERNAL\r\nERROR\r\n");
    }

    #[test]
    fn a_wrong_uid_a_non_root_peer_and_other_mechanisms_are_rejected() {
        let rejected = |peer: u32, line: &[u8]| {
            let mut auth = Auth::new(peer);
            let mut input = b"\0".to_vec();
            input.extend_from_slice(line);
            let fed = feed(&mut auth, &input);
            assert!(!fed.closed);
            fed.sent == REJECTED && auth.state == State::WaitingForAuth
        };
        // Root claiming to be uid 1000, and uid 1000 being itself.
        assert!(rejected(0, b"AUTH EXTERNAL 31303030\r\n"));
        assert!(rejected(1000, b"AUTH EXTERNAL 31303030\r\n"));
        let mut auth = Auth::new(1000);
        let fed = feed(&mut auth, b"\0AUTH EXTERNAL\r\nDATA\r\n");
        assert_eq!(fed.sent, [DATA, REJECTED].concat());
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
        let mut auth = Auth::new(0);
        let fed = feed(
            &mut auth,
            b"\0AUTH EXTERNAL 31\r\nDATA 30\r\nNEGOTIATE_UNIX_FD\r\nAUTH EXTERNAL 30\r\nAUTH EXTERNAL 30\r\nCANCEL\r\nAUTH EXTERNAL 30\r\nBEGIN\r\n",
        );
        assert!(!fed.closed);
        assert_eq!(
            fed.sent,
            [REJECTED, ERROR, ERROR, OK, ERROR, REJECTED, OK].concat()
        );
        assert_eq!(auth.state, State::Done);
    }

    #[test]
    fn garbage_during_authentication_closes_the_connection() {
        let closes = |input: &[u8]| feed(&mut Auth::new(0), input).closed;
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
        let mut auth = Auth::new(0);
        let fed = feed(&mut auth, &[&b"\0"[..], &[b'A'; LINE_MAX - 1]].concat());
        assert!(!fed.closed && fed.consumed == 1);
        // A bare \n ends a line too.
        let fed = feed(&mut Auth::new(0), b"\0AUTH EXTERNAL 30\n");
        assert_eq!(fed.sent, OK);
    }
}
