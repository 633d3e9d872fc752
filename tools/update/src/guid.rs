//! GPT GUIDs: the text form (`01234567-89ab-cdef-0123-456789abcdef`, as
//! the manifest, the kernel's `PARTUUID=` and the UKI's command line
//! write them) and the 16 bytes the GPT stores, whose first three fields
//! are little-endian (UEFI spec, appendix A).

use crate::text::Text;

/// A GUID as the GPT stores it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Guid(pub [u8; 16]);

/// Where each stored byte comes from in the text's order.
const ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
/// Where the text has its dashes.
const DASHES: [usize; 4] = [8, 13, 18, 23];

impl Guid {
    /// Parses lowercase GUID text (36 characters, dashes where they go).
    pub fn parse(text: &str) -> Option<Guid> {
        let text = text.as_bytes();
        if text.len() != 36 {
            return None;
        }
        let mut in_order = [0u8; 16];
        let mut digits = text
            .iter()
            .enumerate()
            .filter(|(at, _)| !DASHES.contains(at))
            .map(|(_, &byte)| byte);
        for byte in &mut in_order {
            let high = hex_digit(digits.next()?)?;
            let low = hex_digit(digits.next()?)?;
            *byte = high << 4 | low;
        }
        if DASHES.iter().any(|&at| text[at] != b'-') {
            return None;
        }
        let mut stored = [0u8; 16];
        for (byte, from) in stored.iter_mut().zip(ORDER) {
            *byte = in_order[from];
        }
        Some(Guid(stored))
    }

    /// The lowercase text form.
    pub fn text(&self) -> Text<36> {
        let mut in_order = [0u8; 16];
        for (stored, to) in self.0.iter().zip(ORDER) {
            in_order[to] = *stored;
        }
        let mut text = Text::new();
        text.push_hex(&in_order[..4])
            .push("-")
            .push_hex(&in_order[4..6])
            .push("-")
            .push_hex(&in_order[6..8])
            .push("-")
            .push_hex(&in_order[8..10])
            .push("-")
            .push_hex(&in_order[10..]);
        text
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

/// Lowercase hex only: the manifest's GUIDs and hashes are lowercase.
pub fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kios_abi::boot_slots::{ESP_TYPE_GPT_BYTES, ESP_TYPE_GUID};

    #[test]
    fn text_and_stored_bytes_agree_with_kios_abi() {
        assert_eq!(Guid::parse(ESP_TYPE_GUID), Some(Guid(ESP_TYPE_GPT_BYTES)));
        assert_eq!(Guid(ESP_TYPE_GPT_BYTES).text(), ESP_TYPE_GUID);
        let text = "9f86d081-884c-7d65-9a2f-eaa0c55ad015";
        assert_eq!(Guid::parse(text).unwrap().text(), text);
    }

    #[test]
    fn only_lowercase_text_with_its_dashes_parses() {
        for text in [
            "",
            "9F86D081-884C-7D65-9A2F-EAA0C55AD015",
            "9f86d081884c7d659a2feaa0c55ad015",
            "9f86d081-884c-7d65-9a2f-eaa0c55ad01",
            "9f86d081-884c-7d65-9a2f-eaa0c55ad0155",
            "9f86d081-884c7-d65-9a2f-eaa0c55ad015",
            "9f86d081-884c-7d65-9a2f-eaa0c55ad01g",
            "9f86d081+884c-7d65-9a2f-eaa0c55ad015",
        ] {
            assert_eq!(Guid::parse(text), None, "{text:?}");
        }
    }
}
