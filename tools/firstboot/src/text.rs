//! First boot's text: mini-libc-free's fixed-size [`Text`] (no allocator
//! in the binary), with its own errno wording.

pub use mini_libc_free::text::Text;

use crate::Errno;

/// First boot's own pieces of a line.
pub trait TextExt {
    /// `ENOENT (2)`.
    fn push_errno(&mut self, errno: Errno) -> &mut Self;
}

impl<const N: usize> TextExt for Text<N> {
    fn push_errno(&mut self, errno: Errno) -> &mut Self {
        self.push(errno.name())
            .push(" (")
            .push_u64(errno.0.unsigned_abs().into())
            .push(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_are_named_then_numbered() {
        let mut errno = Text::<32>::new();
        errno.push_errno(Errno::NOENT).push(" ").push_u64(0);
        assert_eq!(errno.as_str(), "ENOENT (2) 0");
    }
}
