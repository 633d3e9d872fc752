//! A disk's two boot slots (docs/updates.md): what the disk builder
//! writes on the EFI system partition (ESP) and the init reads and
//! renames there.
//!
//! A slot's release boots from a unified kernel image in [`ENTRIES_DIR`]
//! named `kios-<version>-<slot>+<left>[-<done>].efi` (`<slot>` is `a` or
//! `b`), the Boot Loader Specification's boot counting: systemd-boot takes
//! one try at each boot (`+3` becomes `+2-1`) and gives an entry up at
//! `+0`; the init gives the tries back once the boot is good (`+3` again).
//! Both slots' images are the same bytes, so no command line says which
//! slot booted: systemd-boot's EFI variable `LoaderBootCountPath` (vendor
//! GUID [`LOADER_VENDOR_GUID`]) names the entry file it booted, after the
//! try (`\EFI\Linux\kios-1.0-a+1-2.efi`), and so its slot.
//!
//! [`BootEntry::parse`] reads an entry's name for the init (which gives a
//! good boot's tries back) and the updater (which writes a new release's
//! entry and gives the other slot's up), so both read it alike.

use crate::text::{rsplit_once, split_once};

/// systemd-boot's vendor GUID, whose `LoaderBootCountPath` the init reads.
pub const LOADER_VENDOR_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The ESP's GPT partition type, as text.
pub const ESP_TYPE_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// The same GUID as GPT stores it (computed at compile time).
pub const ESP_TYPE_GPT_BYTES: [u8; 16] = gpt_bytes(ESP_TYPE_GUID);
/// Where the boot manager finds the slots' images, on the ESP.
pub const ENTRIES_DIR: &str = "EFI/Linux";
/// A slot's root partition is named this and its letter (`kios-root-a`)
/// in the GPT; its unique GUID is its release's (the first 128 bits of
/// the dm-verity root hash), which the release's command line names.
pub const SLOT_PARTITION_PREFIX: &str = "kios-root-";
/// Where the init mounts the ESP (a directory only it reads, mode 0700),
/// for as long as it lists or renames the entries.
pub const ESP_MOUNT: &str = "/run/kios-esp";
/// An entry's name: `ENTRY_PREFIX`, the version, `-`, the slot, the
/// counter (`+` ...), `ENTRY_SUFFIX`.
pub const ENTRY_PREFIX: &str = "kios-";
pub const ENTRY_SUFFIX: &str = ".efi";

/// One of the disk's two slots (an entry's `-a` or `-b`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn parse(letter: &str) -> Option<Slot> {
        match letter {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }

    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// A slot's entry, `kios-<version>-<slot>[+<left>[-<done>]].efi`, parsed
/// by one set of rules for the init (which lists and renames the entries)
/// and the updater (which writes and gives them up).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BootEntry<'a> {
    /// Anything but empty, in printable ASCII (it may hold `-` and `+`:
    /// the slot is the last `-` field before the last `+`).
    pub version: &'a str,
    pub slot: Slot,
    /// None: no counter, the boot manager never gives the entry up.
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
}

impl<'a> BootEntry<'a> {
    /// The entry a file name stands for; None for any other file. Names
    /// are printable ASCII only, so one can be logged as it is.
    pub fn parse(name: &'a str) -> Option<BootEntry<'a>> {
        // Not `str::strip_prefix`: its instance here would be a second
        // copy in the init, beside the init's own (84 bytes).
        let (prefix, stem) = name.split_at_checked(ENTRY_PREFIX.len())?;
        if prefix != ENTRY_PREFIX {
            return None;
        }
        let stem = stem.strip_suffix(ENTRY_SUFFIX)?;
        if !stem.bytes().all(|byte| byte.is_ascii_graphic()) {
            return None;
        }
        let (stem, tries_left, tries_done) = match rsplit_once(stem, b'+') {
            Some((stem, counter)) => {
                let (left, done) = match split_once(counter, b'-') {
                    Some((left, done)) => (count(left)?, Some(count(done)?)),
                    None => (count(counter)?, None),
                };
                // The good name holds their sum: it must be a count too.
                left.checked_add(done.unwrap_or(0))?;
                (stem, Some(left), done)
            }
            None => (stem, None, None),
        };
        let (version, letter) = rsplit_once(stem, b'-')?;
        if version.is_empty() {
            return None;
        }
        Some(BootEntry {
            version,
            slot: Slot::parse(letter)?,
            tries_left,
            tries_done,
        })
    }

    /// Whether the boot manager still tries it (given-up entries, 0 tries
    /// left, come only after every other).
    pub fn is_bootable(&self) -> bool {
        self.tries_left != Some(0)
    }
}

/// A counter's number: decimal digits only (`str::parse` would take a
/// sign), within u32.
fn count(digits: &str) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u32, |number, byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit < 10)?;
        number.checked_mul(10)?.checked_add(u32::from(digit))
    })
}

/// A GUID's text in GPT's byte order: the first three fields little-endian.
const fn gpt_bytes(guid: &str) -> [u8; 16] {
    let text = guid.as_bytes();
    let mut digits = [0u8; 32];
    let (mut at, mut count) = (0, 0);
    while at < text.len() {
        let digit = match text[at] {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            b'-' => {
                at += 1;
                continue;
            }
            _ => panic!("not a lowercase GUID"),
        };
        digits[count] = digit;
        count += 1;
        at += 1;
    }
    assert!(count == 32, "not a GUID");
    // Where each stored byte comes from in the text's byte order.
    const ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut bytes = [0u8; 16];
    let mut index = 0;
    while index < 16 {
        let from = ORDER[index];
        bytes[index] = digits[2 * from] << 4 | digits[2 * from + 1];
        index += 1;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        version: &str,
        slot: Slot,
        tries_left: Option<u32>,
        tries_done: Option<u32>,
    ) -> BootEntry<'_> {
        BootEntry {
            version,
            slot,
            tries_left,
            tries_done,
        }
    }

    #[test]
    fn counted_entries_parse_with_their_tries() {
        use Slot::{A, B};
        for (name, parsed) in [
            ("kios-0.18.0-a+3.efi", entry("0.18.0", A, Some(3), None)),
            ("kios-1.0-b+1-2.efi", entry("1.0", B, Some(1), Some(2))),
            (
                "kios-2-broken-b+0-3.efi",
                entry("2-broken", B, Some(0), Some(3)),
            ),
            // The slot is the last `-` field before the last `+`.
            ("kios-1.0+git-a+2.efi", entry("1.0+git", A, Some(2), None)),
            // The largest counter whose sum is still a count.
            (
                "kios-1-a+4294967294-1.efi",
                entry("1", A, Some(4294967294), Some(1)),
            ),
            // Leading zeros are digits too.
            (
                "kios-2-broken-a+007-1.efi",
                entry("2-broken", A, Some(7), Some(1)),
            ),
        ] {
            assert_eq!(BootEntry::parse(name), Some(parsed), "{name:?}");
        }
    }

    #[test]
    fn an_entry_without_a_counter_is_never_given_up() {
        let parsed = BootEntry::parse("kios-1.0-a.efi").unwrap();
        assert_eq!(parsed, entry("1.0", Slot::A, None, None));
        assert!(parsed.is_bootable());
        assert!(!BootEntry::parse("kios-1-a+0-3.efi").unwrap().is_bootable());
        assert!(BootEntry::parse("kios-1-a+1-2.efi").unwrap().is_bootable());
    }

    #[test]
    fn other_files_and_hostile_names_are_not_entries() {
        for name in [
            "",
            "kios-.efi",
            "kios-a.efi",
            "kios--a+1.efi",
            "kios-1.0-c+1.efi",
            "kios-1.0-A+1.efi",
            "kios-1.0-a+1.EFI",
            "linux-1.0-a+1.efi",
            "kios-1.0-a+.efi",
            "kios-1.0-a+-1.efi",
            "kios-1.0-a+1-.efi",
            "kios-1.0-a++1.efi",
            "kios-1.0-a+1-+2.efi",
            "kios-1.0-a+1-2-3.efi",
            "kios-1.0-a+x.efi",
            "kios-1.0-a+4294967296.efi",
            "kios-1.0-a+4294967295-1.efi",
            "kios-1 0-a+1.efi",
            "kios-1.0\n-a+1.efi",
            "kios-1.\u{e9}-a+1.efi",
            "kios-1.0-a+1.efi.bak",
            "kios-1.0-a/+1.efi",
            "kios-update.tmp",
            "systemd-bootx64.efi",
        ] {
            assert_eq!(BootEntry::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn slots_know_each_other() {
        assert_eq!(Slot::parse("a").map(Slot::other), Some(Slot::B));
        assert_eq!(Slot::B.other().letter(), "a");
        assert_eq!(Slot::parse("ab"), None);
    }

    #[test]
    fn the_esp_type_is_stored_as_gpt_stores_it() {
        assert_eq!(
            ESP_TYPE_GPT_BYTES,
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(
            gpt_bytes(crate::data_partition::TYPE_GUID),
            crate::data_partition::TYPE_GPT_BYTES
        );
    }
}
