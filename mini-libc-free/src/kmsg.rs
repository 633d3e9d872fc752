//! Log lines for `/dev/kmsg`: `<level>ident: text`, one write per record.
//!
//! Before `/dev/kmsg` is open, lines go to the console (fd 2), which the
//! kernel opens for init when the image has `/dev/console`.

use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

use rustix::fd::BorrowedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Longest record we write; the kernel accepts up to about 1 KiB.
pub const LINE_MAX: usize = 976;

/// The syslog levels kmsg understands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Level {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

const CONSOLE_FD: i32 = 2;
static KMSG_FD: AtomicI32 = AtomicI32::new(CONSOLE_FD);
static IDENT_PTR: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static IDENT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Names the program in every line it logs (`kios` for the init).
pub fn set_ident(ident: &'static str) {
    IDENT_PTR.store(ident.as_ptr().cast_mut(), Ordering::Relaxed);
    IDENT_LEN.store(ident.len(), Ordering::Relaxed);
}

fn ident() -> &'static str {
    let ptr = IDENT_PTR.load(Ordering::Relaxed);
    if ptr.is_null() {
        return "kios";
    }
    // SAFETY: the pointer and length were stored together by `set_ident` from
    // a `&'static str`, so they describe valid UTF-8 that lives forever.
    unsafe {
        core::str::from_utf8_unchecked(core::slice::from_raw_parts(
            ptr,
            IDENT_LEN.load(Ordering::Relaxed),
        ))
    }
}

/// Opens `/dev/kmsg` (or `path`) for all later lines. The descriptor is
/// close-on-exec and stays open for the life of the process.
pub fn open(path: &core::ffi::CStr) -> Result<(), Errno> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    let raw = rustix::fd::IntoRawFd::into_raw_fd(fd);
    KMSG_FD.store(raw, Ordering::Relaxed);
    Ok(())
}

/// The descriptor lines go to: kmsg once `open` succeeded, else the console.
pub fn fd() -> BorrowedFd<'static> {
    // SAFETY: KMSG_FD is either fd 2 or a descriptor `open` turned into a
    // raw fd and never closes; both stay open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(KMSG_FD.load(Ordering::Relaxed)) }
}

/// One record being built; text past `LINE_MAX` is cut off, never an error.
pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    /// A line from this program (see `set_ident`).
    pub fn new(level: Level) -> Line {
        Line::with_ident(level, ident())
    }

    /// A line on behalf of `ident`, e.g. a supervised child's captured output.
    pub fn with_ident(level: Level, ident: &str) -> Line {
        let mut line = Line {
            buf: [0; LINE_MAX],
            len: 0,
        };
        line.push("<");
        line.push_u64(level as u64);
        line.push(">");
        line.push(ident);
        line.push(": ");
        line
    }

    pub fn push(&mut self, text: &str) {
        self.push_bytes(text.as_bytes());
    }

    /// Appends bytes, replacing control characters so one record stays one line.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.len == LINE_MAX {
                return;
            }
            self.buf[self.len] = if byte < b' ' && byte != b'\t' {
                b'?'
            } else {
                byte
            };
            self.len += 1;
        }
    }

    pub fn push_u64(&mut self, value: u64) {
        self.push_bytes(crate::decimal::digits(value, &mut [0; 20]));
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the record. Logging must never stop PID 1, so a failed write is dropped.
    pub fn emit(&self) {
        let fd = fd();
        if KMSG_FD.load(Ordering::Relaxed) == CONSOLE_FD {
            // The console shows text, not kmsg's `<level>` prefix.
            let text = self.as_bytes();
            let start = text
                .iter()
                .position(|&b| b == b'>')
                .map_or(0, |end| end + 1);
            let _ = rustix::io::write(fd, &text[start..]);
            let _ = rustix::io::write(fd, b"\n");
        } else {
            let _ = rustix::io::write(fd, self.as_bytes());
        }
    }
}

impl ufmt::uWrite for Line {
    type Error = core::convert::Infallible;

    fn write_str(&mut self, text: &str) -> Result<(), Self::Error> {
        self.push(text);
        Ok(())
    }
}

/// Logs one formatted line: `kmsg!(Level::Info, "started pid={}", pid)`.
#[macro_export]
macro_rules! kmsg {
    ($level:expr, $($fmt:tt)+) => {{
        let mut line = $crate::kmsg::Line::new($level);
        let _ = ufmt::uwrite!(line, $($fmt)+);
        line.emit();
    }};
}

/// Writes `text` as one line at `level`.
pub fn write(level: Level, text: &str) {
    let mut line = Line::new(level);
    line.push(text);
    line.emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_level_ident_and_text() {
        let mut line = Line::new(Level::Notice);
        line.push("timeline pid1 us=");
        line.push_u64(312_000);
        assert_eq!(line.as_bytes(), b"<5>kios: timeline pid1 us=312000");
    }

    #[test]
    fn control_characters_cannot_split_a_record() {
        let mut line = Line::new(Level::Info);
        line.push_bytes(b"a\nb\x1bc");
        assert_eq!(line.as_bytes(), b"<6>kios: a?b?c");
    }

    #[test]
    fn long_text_is_cut_not_overflowed() {
        let mut line = Line::new(Level::Info);
        for _ in 0..200 {
            line.push("0123456789");
        }
        assert_eq!(line.as_bytes().len(), LINE_MAX);
    }
}
