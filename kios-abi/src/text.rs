//! Splitting text at an ASCII byte, for the parsers here and the init's.
//! `str::split_once(char)` and friends bring core's character searcher
//! along, which costs the init bytes; and the init calls these same
//! functions (its `text` module re-exports them), so it holds one copy of
//! each, not one for its own callers and one for [`crate::boot_slots`].

/// `text` before and after the first `byte`.
pub fn split_once(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == byte)?;
    at_byte(text, at)
}

/// `text` before and after the last `byte`.
pub fn rsplit_once(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = text.bytes().rposition(|b| b == byte)?;
    at_byte(text, at)
}

/// `text` before and after the ASCII byte at `at`. `split_at_checked`,
/// not `str::get`: a generic `get` instance here would be a second copy
/// in the init, beside its own.
fn at_byte(text: &str, at: usize) -> Option<(&str, &str)> {
    let (before, rest) = text.split_at_checked(at)?;
    Some((before, rest.split_at_checked(1)?.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_a_byte_like_str_does() {
        for text in ["", "a", "a,b", ",a,", "a,,b", "\u{e9},\u{fc}"] {
            assert_eq!(split_once(text, b','), text.split_once(','));
            assert_eq!(rsplit_once(text, b','), text.rsplit_once(','));
        }
    }
}
