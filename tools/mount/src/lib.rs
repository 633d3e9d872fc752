//! `mount` and `umount` for a kiOS node: what the kubelet's mount library
//! (k8s.io/utils/mount in Kubernetes 1.20, k8s.io/mount-utils since) runs
//! to mount every Secret, projected service-account token and
//! memory-backed emptyDir as tmpfs, to bind-mount subPaths and local
//! volumes, and to unmount them all again.
//!
//! This library is the policy: it turns an argv into a plan of mount(2)
//! or umount2(2) calls ([`mount::parse`], [`umount::parse`]) and words
//! every outcome as util-linux does ([`message`]), down to the text the
//! kubelet parses ("not mounted"). The binary (`src/main.rs`) only makes
//! the calls. Nothing here allocates, so the binary stays `no_std`.
//!
//! `no_std` in the binary; built with std under `cargo test`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod args;
pub mod message;
pub mod mount;
pub mod umount;

/// Which command the binary answers as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Mount,
    Umount,
}

impl Tool {
    /// The command called by `argv0`'s base name: `umount` (and anything
    /// ending in it, such as a `kios-umount` link) unmounts, the rest mounts.
    pub fn from_argv0(argv0: &[u8]) -> Tool {
        let base = match argv0.iter().rposition(|&b| b == b'/') {
            Some(slash) => &argv0[slash + 1..],
            None => argv0,
        };
        if base.ends_with(b"umount") {
            Tool::Umount
        } else {
            Tool::Mount
        }
    }

    /// The name every message starts with.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Mount => "mount",
            Tool::Umount => "umount",
        }
    }
}

/// util-linux's exit codes (mount(8), EXIT STATUS), which both commands use.
pub mod exit {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Incorrect invocation or permissions.
    pub const USAGE: i32 = 1;
    /// System error (out of memory, cannot fork, no more loop devices).
    pub const SYSERR: i32 = 2;
    /// Mount failure: the kernel refused the call.
    pub const FAIL: i32 = 32;
}

/// What an argv asks for, once parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<P> {
    Run(P),
    Help,
    Version,
}

/// A byte sink for messages: the binary's stderr buffer, a `Vec` in tests.
pub trait Sink {
    fn push(&mut self, bytes: &[u8]);

    fn push_str(&mut self, text: &str) {
        self.push(text.as_bytes());
    }

    fn push_u32(&mut self, value: u32) {
        self.push(mini_libc_free::decimal::digits(value.into(), &mut [0; 20]));
    }
}

/// A bounded message buffer: text past its size is cut off, never an error.
pub struct Text {
    buf: [u8; 1536],
    len: usize,
}

impl Text {
    pub fn new() -> Text {
        Text {
            buf: [0; 1536],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::new()
    }
}

impl Sink for Text {
    fn push(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let taken = bytes.len().min(room);
        self.buf[self.len..self.len + taken].copy_from_slice(&bytes[..taken]);
        self.len += taken;
    }
}

#[cfg(test)]
impl Sink for std::vec::Vec<u8> {
    fn push(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_name_chooses_the_command() {
        assert_eq!(Tool::from_argv0(b"mount"), Tool::Mount);
        assert_eq!(Tool::from_argv0(b"/bin/mount"), Tool::Mount);
        assert_eq!(Tool::from_argv0(b"umount"), Tool::Umount);
        // The kubelet runs `umount` through PATH; a link keeps its own name.
        assert_eq!(Tool::from_argv0(b"/bin/umount"), Tool::Umount);
        assert_eq!(Tool::from_argv0(b"/usr/bin/kios-mount"), Tool::Mount);
        assert_eq!(Tool::from_argv0(b""), Tool::Mount);
    }

    #[test]
    fn text_is_cut_at_its_size() {
        let mut text = Text::new();
        for _ in 0..200 {
            text.push_str("0123456789");
        }
        assert_eq!(text.as_bytes().len(), 1536);
        let mut text = Text::new();
        text.push_u32(0);
        text.push_str(" ");
        text.push_u32(4_294_967_295);
        assert_eq!(text.as_bytes(), b"0 4294967295");
    }
}
