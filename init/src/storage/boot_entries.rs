//! The boot entries of a disk's two slots (`kios_abi::boot_slots`): their
//! file names on the EFI system partition, with the Boot Loader
//! Specification's boot counter, and the name that gives an entry its
//! tries back once its boot was good; and which entry systemd-boot
//! booted, from its `LoaderBootCountPath` EFI variable.

use kios_abi::boot_slots::{ENTRY_PREFIX, ENTRY_SUFFIX};

use crate::text::{decimal, rsplit_once, split_once};

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

/// The entry systemd-boot booted, from the bytes of its
/// `LoaderBootCountPath` variable on efivarfs: 4 bytes of attributes, then
/// the entry file's ESP path (e.g. `\EFI\Linux\kios-1.0-a+1-2.efi`, named
/// after the try was taken) in UTF-16LE, up to a NUL or the end. None
/// unless the path is ASCII, has a `\` (or `/`), and what follows the last
/// one is an entry's name.
pub fn booted_entry(variable: &[u8]) -> Option<EntryName> {
    let value = variable.get(4..)?;
    let mut units = value.chunks(2);
    let mut name = EntryName::new();
    let mut separated = false;
    loop {
        let unit = match units.next() {
            None | Some([0, 0]) => break,
            Some(&[low, 0]) if low.is_ascii() => low,
            // Not ASCII, or a lone byte: not a path systemd-boot wrote.
            Some(_) => return None,
        };
        if unit == b'\\' || unit == b'/' {
            separated = true;
            name.clear();
        } else {
            name.push(char::from(unit)).ok()?;
        }
    }
    (separated && BootEntry::parse(&name).is_some()).then_some(name)
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

    /// The variable as efivarfs shows it: attributes (non-volatile, boot
    /// and runtime access), then `value` in UTF-16LE.
    fn variable(value: &str) -> Vec<u8> {
        let mut bytes = vec![0x07, 0, 0, 0];
        bytes.extend(value.encode_utf16().flat_map(u16::to_le_bytes));
        bytes
    }

    #[test]
    fn the_booted_entry_is_the_file_name_of_loader_boot_count_path() {
        let booted = |value| booted_entry(&variable(value));
        assert_eq!(
            booted("\\EFI\\Linux\\kios-1.0-a+1-2.efi\0").as_deref(),
            Some("kios-1.0-a+1-2.efi")
        );
        // No NUL: the value ends with the file.
        assert_eq!(
            booted("\\EFI\\Linux\\kios-2.0-b+0-3.efi").as_deref(),
            Some("kios-2.0-b+0-3.efi")
        );
        // What follows the NUL is not read; `/` separates too.
        assert_eq!(
            booted("/EFI/Linux/kios-1.0-b+2-1.efi\0\u{e9}x").as_deref(),
            Some("kios-1.0-b+2-1.efi")
        );
        assert_eq!(
            booted("\\kios-1.0-a.efi\0").as_deref(),
            Some("kios-1.0-a.efi")
        );
    }

    #[test]
    fn a_variable_that_names_no_entry_is_none() {
        for value in [
            "",
            "\0",
            "\\",
            "\\EFI\\Linux\\\0",
            // No separator: not an ESP path.
            "kios-1.0-a+1-2.efi\0",
            "\\EFI\\Linux\\other.efi\0",
            "\\EFI\\Linux\\kios-1.0-c+1.efi\0",
            "\\EFI\\Linux\\kios-1.0-a+1-2.efi\\\0",
            // Not ASCII, anywhere before the NUL.
            "\\EFI\\Linux\\kios-1.\u{e9}-a+1.efi\0",
            "\\EFI\\L\u{131}nux\\kios-1.0-a+1.efi\0",
            "\\EFI\\Linux\\kios-1.0-a+1.efi\u{1f600}",
        ] {
            assert_eq!(booted_entry(&variable(value)), None, "{value:?}");
        }
        // Shorter than the attributes, or the attributes only.
        for bytes in [&[][..], &[7], &[7, 0, 0], &[7, 0, 0, 0]] {
            assert_eq!(booted_entry(bytes), None, "{bytes:?}");
        }
        // A lone byte left over: an odd length without a NUL before it.
        let mut odd = variable("\\EFI\\Linux\\kios-1.0-a+1-2.efi");
        odd.push(b'x');
        assert_eq!(booted_entry(&odd), None);
        // After the NUL it does not matter.
        let mut odd = variable("\\EFI\\Linux\\kios-1.0-a+1-2.efi\0");
        odd.push(b'x');
        assert_eq!(booted_entry(&odd).as_deref(), Some("kios-1.0-a+1-2.efi"));
        // A UTF-16 unit with a high byte is not ASCII, even when its low byte is.
        let mut high = variable("\\EFI\\Linux\\kios-1.0-a+1-2.efi");
        high[7] = 1;
        assert_eq!(booted_entry(&high), None);
        // A name longer than FAT's 255 characters.
        let long = format!("\\EFI\\Linux\\kios-{}-a+1.efi", "v".repeat(255));
        assert_eq!(booted_entry(&variable(&long)), None);
    }

    #[test]
    fn slots_know_each_other() {
        assert_eq!(Slot::parse("a").map(Slot::other), Some(Slot::B));
        assert_eq!(Slot::B.other().letter(), "a");
        assert_eq!(Slot::parse("ab"), None);
    }
}
