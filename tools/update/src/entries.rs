//! The slots' boot entries on the EFI system partition
//! (`kios_abi::boot_slots`): `kios-<version>-<slot>[+<left>[-<done>]].efi`
//! in `EFI/Linux`, parsed by the rules the init reads them by
//! (`init/src/storage/boot_entries.rs`): the slot is the last `-` field
//! before the last `+`, the counter is decimal.

use kios_abi::boot_slots::{ENTRY_PREFIX, ENTRY_SUFFIX};

use crate::text::Text;

/// One of the disk's two slots.
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

/// An entry's file name: FAT's long names go to 255 characters.
pub type EntryName = Text<255>;

/// A slot's entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry<'a> {
    pub version: &'a str,
    pub slot: Slot,
    /// None: no counter, the boot manager never gives the entry up.
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
}

impl<'a> Entry<'a> {
    /// The entry a file name stands for; None for any other file.
    pub fn parse(name: &'a str) -> Option<Entry<'a>> {
        let stem = name
            .strip_prefix(ENTRY_PREFIX)?
            .strip_suffix(ENTRY_SUFFIX)?;
        if !stem.bytes().all(|byte| byte.is_ascii_graphic()) {
            return None;
        }
        let (stem, tries_left, tries_done) = match stem.rsplit_once('+') {
            Some((stem, counter)) => {
                let (left, done) = match counter.split_once('-') {
                    Some((left, done)) => (count(left)?, Some(count(done)?)),
                    None => (count(counter)?, None),
                };
                left.checked_add(done.unwrap_or(0))?;
                (stem, Some(left), done)
            }
            None => (stem, None, None),
        };
        let (version, letter) = stem.rsplit_once('-')?;
        if version.is_empty() {
            return None;
        }
        Some(Entry {
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

    /// The name that makes systemd-boot try this entry only after every
    /// other (`+0`, no tries left), keeping its tries in the done count:
    /// `+<left + done>`, what the init names it once its boot is good,
    /// gives them all back. An entry without a counter takes
    /// `uncounted_tries` as done.
    pub fn given_up_name(&self, uncounted_tries: u32) -> EntryName {
        let done = match self.tries_left {
            Some(left) => left + self.tries_done.unwrap_or(0),
            None => uncounted_tries,
        };
        let mut name = EntryName::new();
        name.push(ENTRY_PREFIX)
            .push(self.version)
            .push("-")
            .push(self.slot.letter())
            .push("+0-")
            .push_u64(done.into())
            .push(ENTRY_SUFFIX);
        name
    }
}

/// A new release's entry: `kios-<version>-<slot>+<tries>.efi`.
pub fn entry_name(version: &str, slot: Slot, tries: u32) -> EntryName {
    let mut name = EntryName::new();
    name.push(ENTRY_PREFIX)
        .push(version)
        .push("-")
        .push(slot.letter())
        .push("+")
        .push_u64(tries.into())
        .push(ENTRY_SUFFIX);
    name
}

/// Where the UKI is written before it is renamed to its entry's name: not
/// an entry (systemd-boot lists `*.efi` only), so a half-written one is
/// never booted; a leftover of an interrupted update is removed first.
pub const TEMPORARY_NAME: &str = "kios-update.tmp";

/// A counter's number: decimal digits only, within u32.
fn count(digits: &str) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u32, |number, byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit < 10)?;
        number.checked_mul(10)?.checked_add(u32::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, slot: Slot, left: Option<u32>, done: Option<u32>) -> Entry<'_> {
        Entry {
            version,
            slot,
            tries_left: left,
            tries_done: done,
        }
    }

    #[test]
    fn entries_parse_as_the_init_parses_them() {
        assert_eq!(
            Entry::parse("kios-0.18.0-a+3.efi"),
            Some(entry("0.18.0", Slot::A, Some(3), None))
        );
        assert_eq!(
            Entry::parse("kios-1.0-b+1-2.efi"),
            Some(entry("1.0", Slot::B, Some(1), Some(2)))
        );
        assert_eq!(
            Entry::parse("kios-2-broken-b+0-3.efi"),
            Some(entry("2-broken", Slot::B, Some(0), Some(3)))
        );
        assert_eq!(
            Entry::parse("kios-1.0-a.efi"),
            Some(entry("1.0", Slot::A, None, None))
        );
        for name in [
            "",
            "kios-.efi",
            "kios-a.efi",
            "kios--a+1.efi",
            "kios-1.0-c+1.efi",
            "kios-1.0-a+1.EFI",
            "kios-1.0-a+.efi",
            "kios-1.0-a+1-2-3.efi",
            "kios-1.0-a+4294967295-1.efi",
            "kios-1 0-a+1.efi",
            "kios-update.tmp",
            "systemd-bootx64.efi",
        ] {
            assert_eq!(Entry::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn a_new_entry_is_named_with_its_tries() {
        assert_eq!(entry_name("2.1", Slot::B, 3), "kios-2.1-b+3.efi");
        assert_eq!(
            Entry::parse(entry_name("2.1", Slot::B, 3).as_str()),
            Some(entry("2.1", Slot::B, Some(3), None))
        );
    }

    #[test]
    fn given_up_names_keep_every_try_for_the_good_name() {
        let given_up = |name| Entry::parse(name).unwrap().given_up_name(3);
        assert_eq!(given_up("kios-2-a+3.efi"), "kios-2-a+0-3.efi");
        assert_eq!(given_up("kios-2-a+1-2.efi"), "kios-2-a+0-3.efi");
        assert_eq!(given_up("kios-2-a+0-3.efi"), "kios-2-a+0-3.efi");
        assert_eq!(given_up("kios-2-a.efi"), "kios-2-a+0-3.efi");
        let parsed = Entry::parse("kios-2-a+0-3.efi").unwrap();
        assert_eq!(parsed.tries_left, Some(0));
    }
}
