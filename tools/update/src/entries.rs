//! The slots' boot entries on the EFI system partition
//! (`kios_abi::boot_slots`): `kios-<version>-<slot>[+<left>[-<done>]].efi`
//! in `EFI/Linux`, parsed by `kios_abi::boot_slots::BootEntry`, the rules
//! the init reads them by; here are the names the updater writes.

use kios_abi::boot_slots::{BootEntry, Slot, ENTRY_PREFIX, ENTRY_SUFFIX};

use crate::text::Text;

/// An entry's file name: FAT's long names go to 255 characters.
pub type EntryName = Text<255>;

/// The name that makes systemd-boot try `entry` only after every other
/// (`+0`, no tries left), keeping its tries in the done count:
/// `+<left + done>`, what the init names it once its boot is good, gives
/// them all back. An entry without a counter takes `uncounted_tries` as
/// done.
pub fn given_up_name(entry: &BootEntry, uncounted_tries: u32) -> EntryName {
    let done = match entry.tries_left {
        Some(left) => left + entry.tries_done.unwrap_or(0),
        None => uncounted_tries,
    };
    let mut name = EntryName::new();
    name.push(ENTRY_PREFIX)
        .push(entry.version)
        .push("-")
        .push(entry.slot.letter())
        .push("+0-")
        .push_u64(done.into())
        .push(ENTRY_SUFFIX);
    name
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_entry_is_named_with_its_tries() {
        assert_eq!(entry_name("2.1", Slot::B, 3), "kios-2.1-b+3.efi");
        assert_eq!(
            BootEntry::parse(entry_name("2.1", Slot::B, 3).as_str()),
            Some(BootEntry {
                version: "2.1",
                slot: Slot::B,
                tries_left: Some(3),
                tries_done: None,
            })
        );
    }

    #[test]
    fn given_up_names_keep_every_try_for_the_good_name() {
        let given_up = |name| given_up_name(&BootEntry::parse(name).unwrap(), 3);
        assert_eq!(given_up("kios-2-a+3.efi"), "kios-2-a+0-3.efi");
        assert_eq!(given_up("kios-2-a+1-2.efi"), "kios-2-a+0-3.efi");
        assert_eq!(given_up("kios-2-a+0-3.efi"), "kios-2-a+0-3.efi");
        assert_eq!(given_up("kios-2-a.efi"), "kios-2-a+0-3.efi");
        let parsed = BootEntry::parse("kios-2-a+0-3.efi").unwrap();
        assert_eq!(parsed.tries_left, Some(0));
        assert!(!parsed.is_bootable());
    }
}
