//! The updater's words: every line it sends the client (and kmsg) is
//! built here or from these pieces, so the wording is in one place and
//! under test. The last line starts with one of `kios_abi::update_bundle`'s
//! outcomes: `updated:`, `refused:` (nothing was written) or `failed:`
//! (something was; the other slot is not bootable).

use kios_abi::boot_slots::Slot;
use kios_abi::update_bundle::{OUTCOME_FAILED, OUTCOME_REFUSED, OUTCOME_UPDATED};

use crate::text::{Text, TextExt};
use crate::Errno;

/// One line (kmsg takes up to about 1 KiB; these stay far below).
pub type Line = Text<512>;

/// How many hex digits of the root's SHA-256 the outcome shows.
pub const SHORT_HASH: usize = 6;

/// `refused: ` and the rest of the line to come.
pub fn refused() -> Line {
    let mut line = Line::new();
    line.push(OUTCOME_REFUSED).push(" ");
    line
}

/// `refused: <step> <what> failed: errno N (NAME)`.
pub fn refused_errno(step: &str, what: &str, errno: Errno) -> Line {
    let mut line = refused();
    line.push(step)
        .push(" ")
        .push(what)
        .push(" failed: ")
        .push_errno(errno);
    line
}

/// `refused: <file> is N bytes, the manifest says M (truncated?)`.
pub fn refused_size(file: &str, actual: u64, expected: u64) -> Line {
    let mut line = refused();
    line.push(file)
        .push(" is ")
        .push_u64(actual)
        .push(" bytes, the manifest says ")
        .push_u64(expected)
        .push(if actual < expected {
            " (truncated?)"
        } else {
            " (not this manifest's file?)"
        });
    line
}

/// `refused: <file>'s SHA-256 is X, the manifest says Y (corrupt or altered bundle)`.
pub fn refused_hash(file: &str, actual: &[u8; 32], expected: &[u8; 32]) -> Line {
    let mut line = refused();
    line.push(file)
        .push("'s SHA-256 is ")
        .push_hex(actual)
        .push(", the manifest says ")
        .push_hex(expected)
        .push(" (corrupt or altered bundle)");
    line
}

/// What a failed line ends with: the other slot is not bootable and the
/// node stays where it is.
pub fn push_not_bootable(line: &mut Line, running: Slot) {
    line.push("; slot ")
        .push(running.other().letter())
        .push(" is not bootable, the node stays on slot ")
        .push(running.letter());
}

/// `failed: <step> <what>: errno N (NAME); slot <x> is not bootable, the
/// node stays on slot <y>`.
pub fn failed(step: &str, what: &str, errno: Errno, running: Slot) -> Line {
    let mut line = failed_start();
    line.push(step)
        .push(" ")
        .push(what)
        .push(": ")
        .push_errno(errno);
    push_not_bootable(&mut line, running);
    line
}

/// `failed: ` and the rest of the line to come.
pub fn failed_start() -> Line {
    let mut line = Line::new();
    line.push(OUTCOME_FAILED).push(" ");
    line
}

/// `updated: slot b holds kios <version> (root <sha256 first 12>...,
/// EFI/Linux/<entry>); the node reboots into it`.
pub fn updated(slot: Slot, version: &str, root_sha256: &[u8; 32], entry: &str) -> Line {
    let mut line = Line::new();
    line.push(OUTCOME_UPDATED)
        .push(" slot ")
        .push(slot.letter())
        .push(" holds kios ")
        .push(version)
        .push(" (root ")
        .push_hex(&root_sha256[..SHORT_HASH])
        .push("..., EFI/Linux/")
        .push(entry)
        .push("); the node reboots into it");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_start_with_the_contracts_words() {
        assert_eq!(
            updated(Slot::B, "2.0", &[0xab; 32], "kios-2.0-b+3.efi"),
            "updated: slot b holds kios 2.0 (root abababababab..., EFI/Linux/kios-2.0-b+3.efi); the node reboots into it"
        );
        assert_eq!(
            failed("writing root.img to", "/dev/vda3", Errno::IO, Slot::A),
            "failed: writing root.img to /dev/vda3: errno 5 (EIO); slot b is not bootable, the node stays on slot a"
        );
        assert_eq!(
            refused_size("root.img", 1234, 5678),
            "refused: root.img is 1234 bytes, the manifest says 5678 (truncated?)"
        );
        assert_eq!(
            refused_size("kios.efi", 9, 3),
            "refused: kios.efi is 9 bytes, the manifest says 3 (not this manifest's file?)"
        );
        assert_eq!(
            refused_errno("opening", "manifest in the bundle", Errno::NOENT),
            "refused: opening manifest in the bundle failed: errno 2 (ENOENT)"
        );
        let line = refused_hash("root.img", &[1; 32], &[2; 32]);
        assert!(line
            .as_str()
            .starts_with("refused: root.img's SHA-256 is 0101"));
        assert!(line.as_str().ends_with("0202 (corrupt or altered bundle)"));
    }
}
