//! Splitting text at an ASCII byte. `str::split(char)` and friends bring
//! core's character searcher along; the init only ever splits at ASCII.

/// Whether `bytes` holds `byte`. `<[u8]>::contains` searches with
/// memchr, which costs the init 200 bytes more than this loop.
#[allow(clippy::manual_contains)]
pub fn has_byte(bytes: &[u8], byte: u8) -> bool {
    bytes.iter().any(|&b| b == byte)
}

/// `text` before and after the first or the last `byte`: kios-abi's,
/// which the boot entries' parser there calls too (one copy in the init).
pub use kios_abi::text::{rsplit_once, split_once};

/// `number` in decimal, written into the end of `digits` (10 digits hold
/// any u32; iterated, not indexed: no panic path).
pub fn decimal(number: u32, digits: &mut [u8; 10]) -> &str {
    let mut rest = number;
    let mut start = 0;
    for (at, digit) in digits.iter_mut().enumerate().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            start = at;
            break;
        }
    }
    core::str::from_utf8(digits.get(start..).unwrap_or_default()).unwrap_or("")
}

/// The pieces of `text` between each `byte`, like `str::split`.
pub fn split(text: &str, byte: u8) -> Split<'_> {
    Split {
        rest: Some(text),
        byte,
    }
}

pub struct Split<'a> {
    rest: Option<&'a str>,
    byte: u8,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match split_once(rest, self.byte) {
            Some((piece, tail)) => {
                self.rest = Some(tail);
                Some(piece)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// The pieces of `bytes` between each `byte`, like `<[u8]>::split`, with
/// one iterator type for every separator (each closure was its own copy).
pub fn split_bytes(bytes: &[u8], byte: u8) -> SplitBytes<'_> {
    SplitBytes {
        rest: Some(bytes),
        byte,
    }
}

pub struct SplitBytes<'a> {
    rest: Option<&'a [u8]>,
    byte: u8,
}

impl<'a> Iterator for SplitBytes<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match rest.iter().position(|&b| b == self.byte) {
            Some(at) => {
                self.rest = rest.get(at + 1..);
                rest.get(..at)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_str_does() {
        for text in ["", "a", "a,b", ",a,", "a,,b", "é,ü"] {
            assert_eq!(
                split(text, b',').collect::<Vec<_>>(),
                text.split(',').collect::<Vec<_>>()
            );
            assert_eq!(split_once(text, b','), text.split_once(','));
            assert_eq!(rsplit_once(text, b','), text.rsplit_once(','));
            let bytes = text.as_bytes();
            assert_eq!(
                split_bytes(bytes, b',').collect::<Vec<_>>(),
                bytes.split(|&b| b == b',').collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn decimal_numbers_are_written_like_display_writes_them() {
        for number in [0, 7, 10, 1234, u32::MAX] {
            assert_eq!(decimal(number, &mut [0; 10]), number.to_string());
        }
    }
}
