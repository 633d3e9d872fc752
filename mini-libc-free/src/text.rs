//! Fixed-size text buffers for the node's small binaries: no allocator.
//! What a binary pushes of its own (its errno wording, sizes) it adds
//! with a trait of its own over [`Text`].

/// Up to `N` bytes of printable ASCII (and newlines, pushed only by
/// [`Text::push_newline`]); what does not fit is cut off and remembered
/// ([`Text::overflowed`]), never an error at push time.
#[derive(Clone)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text::new()
    }
}

impl<const N: usize> Text<N> {
    pub const fn new() -> Self {
        Text {
            buf: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// `text`, or None when it does not fit.
    pub fn of(text: &str) -> Option<Self> {
        let mut made = Text::new();
        made.push(text);
        (!made.overflowed).then_some(made)
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.push_shown(text.as_bytes())
    }

    /// Appends bytes for a message: anything but printable ASCII becomes
    /// `?`, so a hostile value (a file name, a manifest's field) can
    /// neither split a line nor make it invalid UTF-8.
    pub fn push_shown(&mut self, bytes: &[u8]) -> &mut Self {
        for &byte in bytes {
            if self.len == N {
                self.overflowed = true;
                break;
            }
            self.buf[self.len] = if byte.is_ascii_graphic() || byte == b' ' {
                byte
            } else {
                b'?'
            };
            self.len += 1;
        }
        self
    }

    /// Ends a line in file contents (a message never holds one).
    pub fn push_newline(&mut self) -> &mut Self {
        if self.len == N {
            self.overflowed = true;
        } else {
            self.buf[self.len] = b'\n';
            self.len += 1;
        }
        self
    }

    pub fn push_u64(&mut self, value: u64) -> &mut Self {
        self.push_shown(crate::decimal::digits(value, &mut [0; 20]))
    }

    /// Bytes as lowercase hex.
    pub fn push_hex(&mut self, bytes: &[u8]) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for &byte in bytes {
            self.push_shown(&[
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 15)],
            ]);
        }
        self
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII and newlines are ever pushed.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }

    /// Cuts the text back to `len` bytes (a path's parent after a child).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.overflowed = false;
        }
    }
}

impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq<&str> for Text<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_non_ascii_bytes_are_shown_as_question_marks() {
        let mut text = Text::<32>::new();
        text.push_shown(b"a\nb\xc3\xa9c");
        assert_eq!(text.as_str(), "a?b??c");
    }

    #[test]
    fn overflow_is_remembered_and_truncate_forgets_it() {
        let mut text = Text::<4>::new();
        text.push("abcdef");
        assert_eq!(text.as_str(), "abcd");
        assert!(text.overflowed());
        text.truncate(2);
        assert!(!text.overflowed());
        assert_eq!(text.as_str(), "ab");
        assert!(Text::<3>::of("abcd").is_none());
        let mut full = Text::<2>::new();
        full.push("ab").push_newline();
        assert!(full.overflowed());
    }

    #[test]
    fn numbers_hex_and_newlines() {
        let mut text = Text::<32>::new();
        text.push_u64(0)
            .push(" ")
            .push_u64(u64::MAX)
            .push(" ")
            .push_hex(&[0x0f, 0xa0])
            .push_newline();
        assert_eq!(text.as_str(), "0 18446744073709551615 0fa0\n");
        assert_eq!(text.len(), 28);
        text.clear();
        assert!(text.is_empty());
    }
}
