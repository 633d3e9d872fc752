//! Reading a whole small file into a caller's buffer, as the node's
//! binaries read their configuration and manifests (no allocator).

use rustix::fd::AsFd;
use rustix::io::Errno;

/// How much of a file [`read_to_fill`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filled {
    pub len: usize,
    /// The file had more than the buffer holds.
    pub truncated: bool,
}

/// Reads `file` from its current offset into `buf` until the end or
/// until `buf` is full, then one byte more to tell whether it was cut.
pub fn read_to_fill(file: impl AsFd, buf: &mut [u8]) -> Result<Filled, Errno> {
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&file, &mut buf[len..])? {
            0 => {
                return Ok(Filled {
                    len,
                    truncated: false,
                })
            }
            read => len += read,
        }
    }
    let mut more = [0u8; 1];
    let truncated = rustix::io::read(&file, &mut more)? > 0;
    Ok(Filled { len, truncated })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// A file holding `contents`, opened through rustix (whose
    /// descriptors, without its std feature, are its own type).
    fn file_of(contents: &[u8]) -> rustix::fd::OwnedFd {
        static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(std::format!(
            "mini-libc-free-file-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        let path_text = path.to_str().unwrap();
        let fd = rustix::fs::open(
            path_text,
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        fd
    }

    #[test]
    fn a_file_that_fits_is_read_whole() {
        let mut buf = [0u8; 8];
        let filled = read_to_fill(file_of(b"hello"), &mut buf).unwrap();
        assert_eq!(
            filled,
            Filled {
                len: 5,
                truncated: false
            }
        );
        assert_eq!(&buf[..5], b"hello");
    }

    #[test]
    fn a_file_that_fills_the_buffer_exactly_is_not_truncated() {
        let mut buf = [0u8; 5];
        let filled = read_to_fill(file_of(b"hello"), &mut buf).unwrap();
        assert_eq!(
            filled,
            Filled {
                len: 5,
                truncated: false
            }
        );
    }

    #[test]
    fn a_longer_file_is_cut_and_says_so() {
        let mut buf = [0u8; 4];
        let filled = read_to_fill(file_of(b"hello"), &mut buf).unwrap();
        assert_eq!(
            filled,
            Filled {
                len: 4,
                truncated: true
            }
        );
        assert_eq!(&buf, b"hell");
    }
}
