//! C strings from byte buffers without core's memchr-based search (about
//! 400 bytes of code, the init's only use of it).

use core::ffi::CStr;

/// The C string at the start of `bytes`, up to its first NUL; the empty
/// string when there is none.
pub fn until_nul(bytes: &[u8]) -> &CStr {
    match bytes.iter().position(|&b| b == 0) {
        // SAFETY: `bytes[..=end]` ends with a NUL and, `end` being the
        // first NUL's index, holds no other.
        Some(end) => unsafe { CStr::from_bytes_with_nul_unchecked(&bytes[..=end]) },
        None => c"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_first_nul() {
        assert_eq!(until_nul(b"/dev/vda\0\0junk\0"), c"/dev/vda");
        assert_eq!(until_nul(b"\0"), c"");
        assert_eq!(until_nul(b"no nul"), c"");
    }
}
