//! A child's captured output cut into log lines: a line ends at a newline,
//! or is cut at [`LINE_MAX`] bytes so one chatty child cannot hold a line
//! open forever. The lines go to kmsg (as `<service>: line`) and to the
//! service's log file (`service_file`).

use super::Level;

/// The longest line logged; longer output is cut into lines this long.
pub const LINE_MAX: usize = 480;

/// The level each child line is logged at: below what a quiet console
/// prints (`kios_abi::console`), so containerd's and the kubelet's lines
/// reach kmsg and their log files but not the serial console.
pub const LEVEL: Level = Level::Debug;

/// Where the line open so far (`buffered` bytes, at most `limit`) ends in
/// the next `chunk` of output: `Some(n)` when the line is complete with
/// the chunk's first `n` bytes (a newline after them ended it, and belongs
/// to no line), `None` when the whole chunk belongs to a line still open.
// Indexes with `get`, no iterator adaptors: the init's only caller pays for
// no panic path and no extra code.
#[inline]
pub fn line_end(buffered: usize, chunk: &[u8], limit: usize) -> Option<usize> {
    let room = limit.saturating_sub(buffered);
    let mut at = 0;
    while let Some(&byte) = chunk.get(at) {
        if byte == b'\n' || at == room {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_lines_are_logged_below_a_quiet_console() {
        use kios_abi::console::{ALL_LOGLEVEL, CHILD_OUTPUT_LEVEL, QUIET_LOGLEVEL};
        // The Linux side writes Level::Debug as the kernel's debug level, 7.
        assert_eq!(LEVEL, Level::Debug);
        assert_eq!(CHILD_OUTPUT_LEVEL, 7);
        const { assert!(QUIET_LOGLEVEL <= CHILD_OUTPUT_LEVEL && CHILD_OUTPUT_LEVEL < ALL_LOGLEVEL) };
    }

    /// Cuts `chunks` into lines as the init does, empty lines skipped.
    fn lines(chunks: &[&[u8]], limit: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
        let (mut lines, mut open) = (Vec::new(), Vec::new());
        for &chunk in chunks {
            let mut rest = chunk;
            while let Some(end) = line_end(open.len(), rest, limit) {
                open.extend_from_slice(&rest[..end]);
                if !open.is_empty() {
                    lines.push(core::mem::take(&mut open));
                }
                let newline = usize::from(rest.get(end) == Some(&b'\n'));
                rest = &rest[end + newline..];
            }
            open.extend_from_slice(rest);
        }
        (lines, open)
    }

    #[test]
    fn complete_lines_end_at_each_newline() {
        assert_eq!(line_end(0, b"one\ntwo\n", 8), Some(3));
        let (done, open) = lines(&[b"one\ntwo\n"], 8);
        assert_eq!(done, [b"one".to_vec(), b"two".to_vec()]);
        assert!(open.is_empty());
    }

    #[test]
    fn a_partial_line_waits_for_the_rest() {
        assert_eq!(line_end(0, b"half", 8), None);
        assert_eq!(line_end(4, b" and\n", 16), Some(4));
        let (done, open) = lines(&[b"one\nha", b"lf", b" and\nth"], 16);
        assert_eq!(done, [b"one".to_vec(), b"half and".to_vec()]);
        assert_eq!(open, b"th");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_cut() {
        assert_eq!(line_end(0, b"abcdefgh", 4), Some(4));
        assert_eq!(line_end(3, b"defgh", 4), Some(1));
        let (done, open) = lines(&[b"abc", b"defghij\n"], 4);
        assert_eq!(done, [b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]);
        assert!(open.is_empty());
    }

    #[test]
    fn a_line_of_exactly_the_limit_ends_at_its_newline() {
        assert_eq!(line_end(4, b"\nx", 4), Some(0));
        let (done, open) = lines(&[b"abcd", b"\nx"], 4);
        assert_eq!(done, [b"abcd".to_vec()]);
        assert_eq!(open, b"x");
    }

    #[test]
    fn empty_lines_end_with_nothing_in_them() {
        assert_eq!(line_end(0, b"\n\nx", 8), Some(0));
        let (done, open) = lines(&[b"\n\none\n\n"], 8);
        assert_eq!(done, [b"one".to_vec()]);
        assert!(open.is_empty());
    }
}
