//! The boot entries of a disk's two slots (`kios_abi::boot_slots`): their
//! file names on the EFI system partition, with the Boot Loader
//! Specification's boot counter, and the name that gives an entry its
//! tries back once its boot was good.

use kios_abi::boot_slots::{ENTRY_PREFIX, ENTRY_SUFFIX};

use crate::text::{decimal, rsplit_once, split_once};

/// One of the disk's two slots (`kios.slot=a|b`).
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
pub type EntryName = heapless::String<255>;

/// A slot's entry, `kios-<version>-<slot>[+<left>[-<done>]].efi`.
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
        let stem = name
            .strip_prefix(ENTRY_PREFIX)?
            .strip_suffix(ENTRY_SUFFIX)?;
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

    /// The name with every try given back, `+<left + done>` (the same
    /// name when nothing was taken). Never longer than the entry's name.
    pub fn good_name(&self) -> EntryName {
        let mut count = [0; 10];
        let counter = match self.tries_left {
            Some(left) => decimal(left + self.tries_done.unwrap_or(0), &mut count),
            None => "",
        };
        let plus = if counter.is_empty() { "" } else { "+" };
        let mut name = EntryName::new();
        for part in [
            ENTRY_PREFIX,
            self.version,
            "-",
            self.slot.letter(),
            plus,
            counter,
            ENTRY_SUFFIX,
        ] {
            let _ = name.push_str(part);
        }
        name
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
        assert_eq!(
            BootEntry::parse("kios-0.18.0-a+3.efi"),
            Some(entry("0.18.0", Slot::A, Some(3), None))
        );
        assert_eq!(
            BootEntry::parse("kios-1.0-b+1-2.efi"),
            Some(entry("1.0", Slot::B, Some(1), Some(2)))
        );
        assert_eq!(
            BootEntry::parse("kios-2-broken-b+0-3.efi"),
            Some(entry("2-broken", Slot::B, Some(0), Some(3)))
        );
        // The slot is the last `-` field before the last `+`.
        assert_eq!(
            BootEntry::parse("kios-1.0+git-a+2.efi"),
            Some(entry("1.0+git", Slot::A, Some(2), None))
        );
    }

    #[test]
    fn an_entry_without_a_counter_is_never_given_up() {
        let parsed = BootEntry::parse("kios-1.0-a.efi").unwrap();
        assert_eq!(parsed, entry("1.0", Slot::A, None, None));
        assert!(parsed.is_bootable());
        assert_eq!(parsed.good_name(), "kios-1.0-a.efi");
    }

    #[test]
    fn the_good_name_gives_every_try_back() {
        let good = |name| BootEntry::parse(name).unwrap().good_name();
        assert_eq!(good("kios-1.0-a+1-2.efi"), "kios-1.0-a+3.efi");
        assert_eq!(good("kios-1.0-a+0-3.efi"), "kios-1.0-a+3.efi");
        assert_eq!(good("kios-1.0-b+3.efi"), "kios-1.0-b+3.efi");
        assert_eq!(good("kios-1.0-b+3-0.efi"), "kios-1.0-b+3.efi");
        assert_eq!(good("kios-2-broken-a+007-1.efi"), "kios-2-broken-a+8.efi");
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
            "kios-1.é-a+1.efi",
            "kios-1.0-a+1.efi.bak",
            "kios-1.0-a/+1.efi",
        ] {
            assert_eq!(BootEntry::parse(name), None, "{name:?}");
        }
        // The largest counter whose sum is still a count.
        assert_eq!(
            BootEntry::parse("kios-1-a+4294967294-1.efi")
                .unwrap()
                .good_name(),
            "kios-1-a+4294967295.efi"
        );
    }

    #[test]
    fn the_longest_name_fits_and_so_does_its_good_name() {
        let name = format!("kios-{}-a+9-9.efi", "v".repeat(255 - 15));
        assert_eq!(name.len(), 255);
        let good = BootEntry::parse(&name).unwrap().good_name();
        assert_eq!(
            good.as_str(),
            format!("kios-{}-a+18.efi", "v".repeat(255 - 15))
        );
    }

    #[test]
    fn slots_know_each_other() {
        assert_eq!(Slot::parse("a").map(Slot::other), Some(Slot::B));
        assert_eq!(Slot::B.other().letter(), "a");
        assert_eq!(Slot::parse("ab"), None);
    }
}
