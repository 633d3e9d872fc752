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
