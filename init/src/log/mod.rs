//! Log levels and the fixed-size message buffer every kmsg line is built
//! in; children's output cut into lines (`child_output`) and the services'
//! output files (`service_file`).

pub mod child_output;
pub mod service_file;

/// The kmsg levels the init uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    /// A boot step failed.
    Err,
    /// Something was skipped or defaulted; the node keeps booting.
    Warning,
    /// Milestones: the boot timeline, starts, exits, shutdown.
    Notice,
    /// Detail: each mount, each module.
    Info,
    /// Child output (containerd, the kubelet): kept off a quiet console.
    Debug,
}

/// The longest message; longer text is cut, never an error.
pub const MSG_MAX: usize = 480;

/// A message being formatted with ufmt into a fixed buffer.
#[derive(Default)]
pub struct Msg {
    text: heapless::String<MSG_MAX>,
}

impl Msg {
    pub fn new() -> Msg {
        Msg::default()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl ufmt::uWrite for Msg {
    type Error = core::convert::Infallible;

    fn write_str(&mut self, text: &str) -> Result<(), Self::Error> {
        // Keep what fits, cut at a character boundary (`get` never panics).
        let room = MSG_MAX - self.text.len();
        let fitting = (0..=room.min(text.len()))
            .rev()
            .find_map(|end| text.get(..end))
            .unwrap_or("");
        let _ = self.text.push_str(fitting);
        Ok(())
    }
}

/// Formats a message with ufmt and logs it through a [`crate::sys::Sys`]:
/// `log!(sys, Level::Notice, "start {} pid={}", name, pid)`.
#[macro_export]
macro_rules! log {
    ($sys:expr, $level:expr, $($fmt:tt)+) => {{
        let mut msg = $crate::log::Msg::new();
        let _ = ufmt::uwrite!(msg, $($fmt)+);
        $crate::sys::Sys::log($sys, $level, msg.as_str());
    }};
}

/// Logs, once, why an optional file is not used and what the init does
/// instead: missing is normal (info), anything else is worth a warning.
pub fn file_unavailable<S: crate::sys::Sys>(
    sys: &mut S,
    path: &str,
    errno: crate::errno::Errno,
    instead: &str,
) {
    if errno == crate::errno::Errno::NOENT {
        crate::log!(sys, Level::Info, "{}: not present, {}", path, instead);
    } else {
        crate::log!(
            sys,
            Level::Warning,
            "{}: unreadable ({}), {}",
            path,
            errno,
            instead
        );
    }
}

/// Bytes from a file, shown as text: invalid UTF-8 is reported, not printed.
pub struct Shown<'a>(pub &'a [u8]);

impl ufmt::uDisplay for Shown<'_> {
    fn fmt<W: ufmt::uWrite + ?Sized>(
        &self,
        f: &mut ufmt::Formatter<'_, W>,
    ) -> Result<(), W::Error> {
        match core::str::from_utf8(self.0) {
            Ok(text) => f.write_str(text),
            Err(_) => f.write_str("<not UTF-8>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut() {
        let mut msg = Msg::new();
        for _ in 0..100 {
            ufmt::uwrite!(msg, "0123456789").ok();
        }
        assert_eq!(msg.as_str().len(), MSG_MAX);
    }
}
