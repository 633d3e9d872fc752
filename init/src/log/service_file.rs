//! The runtime's and the kubelet's output kept on the node, readable from
//! a pod (hostPath /var/log/kios): one file per service on /var (the data
//! partition when there is one), rotated at a fixed size so it stays
//! bounded. kmsg gets the same lines, but its ring buffer forgets them.

use crate::storage::data_partition::DevicePath;

use kios_abi::image::SERVICE_LOG_DIR;

/// A service keeps its current file and one rotated file: at most twice this.
pub const ROTATE_AT_BYTES: u64 = 4 << 20;

/// `/var/log/kios/<service>.log`, or the rotated `<service>.log.1`.
pub fn path(service: &str, rotated: bool) -> DevicePath {
    let mut path = DevicePath::new();
    for part in [
        SERVICE_LOG_DIR,
        "/",
        service,
        ".log",
        if rotated { ".1" } else { "" },
    ] {
        if path.push_str(part).is_err() {
            break;
        }
    }
    path
}

/// What a service's open log file holds, as the init counts it: the
/// size it had when opened plus every byte written since.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Size {
    bytes: u64,
}

impl Size {
    pub fn opened(bytes: u64) -> Size {
        Size { bytes }
    }

    /// Whether the file must be rotated before `line` and its newline go in.
    pub fn must_rotate_before(self, line: &[u8]) -> bool {
        must_rotate(self.bytes, line.len() + 1)
    }

    pub fn wrote(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }
}

/// Whether a file holding `current` bytes must be rotated before
/// `incoming` more are appended. A single line never rotates an empty file.
pub fn must_rotate(current: u64, incoming: usize) -> bool {
    current > 0 && current + incoming as u64 > ROTATE_AT_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_has_a_file_and_one_rotated_file() {
        assert_eq!(path("kubelet", false).as_str(), "/var/log/kios/kubelet.log");
        assert_eq!(
            path("containerd", true).as_str(),
            "/var/log/kios/containerd.log.1"
        );
    }

    #[test]
    fn files_rotate_before_they_pass_the_bound() {
        assert!(!must_rotate(0, 100));
        assert!(!must_rotate(ROTATE_AT_BYTES - 100, 100));
        assert!(must_rotate(ROTATE_AT_BYTES - 100, 101));
        assert!(must_rotate(ROTATE_AT_BYTES, 1));
    }

    #[test]
    fn the_size_counts_what_was_written_and_each_newline() {
        let mut size = Size::opened(ROTATE_AT_BYTES - 10);
        let line = [b'x'; 8];
        assert!(!size.must_rotate_before(&line));
        size.wrote(line.len());
        size.wrote(1);
        // 9 written, 1 byte of room left: a one-byte line and its newline do not fit.
        assert!(!size.must_rotate_before(b""));
        assert!(size.must_rotate_before(b"x"));
        assert!(!Size::opened(0).must_rotate_before(&[b'x'; 2 * ROTATE_AT_BYTES as usize]));
    }
}
