//! The boot slots' entry names on the EFI system partition
//! (`kios_abi::boot_slots::BootEntry::parse`,
//! `storage::boot_entries::good_name`), as the init lists them: an
//! accepted name is `kios-<version>-<a|b>[+<left>[-<done>]].efi` in
//! printable ASCII; its good name is no longer, parses to the same
//! version and slot with every try given back, and is its own good name.
//! The same bytes as a `LoaderBootCountPath` variable (`booted_entry`)
//! name an entry only if `parse` accepts it.
#![no_main]

use kios_abi::boot_slots::BootEntry;
use kios_init::storage::boot_entries::{booted_entry, good_name, EntryName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(name) = booted_entry(data) {
        assert!(BootEntry::parse(&name).is_some(), "{name:?}");
    }
    // The kernel hands the init UTF-8 names only; FAT's are at most 255.
    let Ok(name) = core::str::from_utf8(data) else {
        return;
    };
    let Some(entry) = BootEntry::parse(name) else {
        return;
    };
    assert!(
        name.starts_with("kios-") && name.ends_with(".efi"),
        "{name:?}"
    );
    assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
    assert!(!entry.version.is_empty() && name.contains(entry.version));
    assert!(entry.tries_done.is_none() || entry.tries_left.is_some());
    assert_eq!(entry.is_bootable(), entry.tries_left != Some(0));
    if name.len() > EntryName::new().capacity() {
        return;
    }
    let good = good_name(&entry);
    assert!(good.len() <= name.len(), "{name:?} -> {good:?}");
    let again = BootEntry::parse(&good).unwrap_or_else(|| panic!("{good:?} does not parse"));
    assert_eq!((again.version, again.slot), (entry.version, entry.slot));
    let given_back = entry
        .tries_left
        .map(|left| left + entry.tries_done.unwrap_or(0));
    assert_eq!((again.tries_left, again.tries_done), (given_back, None));
    assert_eq!(good_name(&again), good);
    // Nothing taken, nothing to rename: unless the counter had leading zeros.
    if entry.tries_done.is_none() && !name.contains("+0") {
        assert_eq!(good.as_str(), name);
    }
});
