//! Splitting text at an ASCII byte. `str::split(char)` and friends bring
//! core's character searcher along; the init only ever splits at ASCII.

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
        }
    }
}
