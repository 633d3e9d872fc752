//! The updater's text: mini-libc-free's fixed-size [`Text`] (no
//! allocator in the binary), with what only the updater's lines push.

pub use mini_libc_free::text::Text;

use crate::Errno;

/// The updater's own pieces of a line.
pub trait TextExt {
    /// A byte count in megabytes with one decimal (`55.0 MB`), as the
    /// progress lines give sizes.
    fn push_mb(&mut self, bytes: u64) -> &mut Self;
    /// `errno 5 (EIO)`.
    fn push_errno(&mut self, errno: Errno) -> &mut Self;
}

impl<const N: usize> TextExt for Text<N> {
    fn push_mb(&mut self, bytes: u64) -> &mut Self {
        let tenths = (bytes + 50_000) / 100_000;
        self.push_u64(tenths / 10)
            .push(".")
            .push_u64(tenths % 10)
            .push(" MB")
    }

    fn push_errno(&mut self, errno: Errno) -> &mut Self {
        self.push("errno ")
            .push_u64(errno.0.unsigned_abs().into())
            .push(" (")
            .push(errno.name())
            .push(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabytes_and_errnos() {
        let mut text = Text::<96>::new();
        text.push_mb(55_021_568)
            .push(" ")
            .push_mb(49_999)
            .push(" ")
            .push_errno(Errno::IO);
        assert_eq!(text.as_str(), "55.0 MB 0.0 MB errno 5 (EIO)");
    }
}
