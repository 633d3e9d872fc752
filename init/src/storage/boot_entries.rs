//! The boot entries of a disk's two slots on the EFI system partition, as
//! the init needs them: their names are parsed by
//! `kios_abi::boot_slots::BootEntry` (the Boot Loader Specification's boot
//! counter, read as the updater reads it); here are the name that gives an
//! entry its tries back once its boot was good, and which entry
//! systemd-boot booted, from its `LoaderBootCountPath` EFI variable.

use kios_abi::boot_slots::{BootEntry, ENTRY_PREFIX, ENTRY_SUFFIX};

use crate::text::decimal;

/// An entry's file name: FAT's long names go to 255 characters.
pub type EntryName = heapless::String<255>;

/// The entry's name with every try given back, `+<left + done>` (the
/// same name when nothing was taken). Never longer than the entry's name.
pub fn good_name(entry: &BootEntry) -> EntryName {
    let mut count = [0; 10];
    let counter = match entry.tries_left {
        Some(left) => decimal(left + entry.tries_done.unwrap_or(0), &mut count),
        None => "",
    };
    let plus = if counter.is_empty() { "" } else { "+" };
    let mut name = EntryName::new();
    for part in [
        ENTRY_PREFIX,
        entry.version,
        "-",
        entry.slot.letter(),
        plus,
        counter,
        ENTRY_SUFFIX,
    ] {
        let _ = name.push_str(part);
    }
    name
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

#[cfg(test)]
mod tests {
    use super::*;

    fn good(name: &str) -> EntryName {
        good_name(&BootEntry::parse(name).unwrap())
    }

    #[test]
    fn the_good_name_gives_every_try_back() {
        assert_eq!(good("kios-1.0-a+1-2.efi"), "kios-1.0-a+3.efi");
        assert_eq!(good("kios-1.0-a+0-3.efi"), "kios-1.0-a+3.efi");
        assert_eq!(good("kios-1.0-b+3.efi"), "kios-1.0-b+3.efi");
        assert_eq!(good("kios-1.0-b+3-0.efi"), "kios-1.0-b+3.efi");
        assert_eq!(good("kios-2-broken-a+007-1.efi"), "kios-2-broken-a+8.efi");
        // Without a counter: never given up, nothing to give back.
        assert_eq!(good("kios-1.0-a.efi"), "kios-1.0-a.efi");
        // The largest counter whose sum is still a count.
        assert_eq!(good("kios-1-a+4294967294-1.efi"), "kios-1-a+4294967295.efi");
    }

    #[test]
    fn the_longest_name_fits_and_so_does_its_good_name() {
        let name = format!("kios-{}-a+9-9.efi", "v".repeat(255 - 15));
        assert_eq!(name.len(), 255);
        assert_eq!(
            good(&name).as_str(),
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
}
