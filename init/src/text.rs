//! Splitting text at an ASCII byte. `str::split(char)` and friends bring
//! core's character searcher along; the init only ever splits at ASCII.

/// Whether `bytes` holds `byte`. `<[u8]>::contains` searches with
/// memchr, which costs the init 200 bytes more than this loop.
#[allow(clippy::manual_contains)]
pub fn has_byte(bytes: &[u8], byte: u8) -> bool {
    bytes.iter().any(|&b| b == byte)
}

/// `text` before and after the first `byte`.
pub fn split_once(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == byte)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
}

/// `text` before and after the last `byte`.
pub fn rsplit_once(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = text.bytes().rposition(|b| b == byte)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
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
}
