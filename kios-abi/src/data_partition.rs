//! The kiOS data partition: what the disk builder writes and the init
//! looks for.

/// The GPT partition type, as text.
pub const TYPE_GUID: &str = "84071842-08aa-4749-be4f-edc9983137ce";

/// The same GUID as GPT stores it: the first three fields little-endian.
pub const TYPE_GPT_BYTES: [u8; 16] = [
    0x42, 0x18, 0x07, 0x84, 0xaa, 0x08, 0x49, 0x47, 0xbe, 0x4f, 0xed, 0xc9, 0x98, 0x31, 0x37, 0xce,
];

/// The partition's GPT name and its filesystem's label.
pub const NAME: &str = "kios-data";

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the text form the way GPT stores it, so the two constants
    /// cannot drift apart.
    #[test]
    fn the_bytes_are_the_guid_in_gpt_order() {
        let hex: [u8; 32] = {
            let mut digits = [0u8; 32];
            for (digit, c) in digits
                .iter_mut()
                .zip(TYPE_GUID.bytes().filter(|&c| c != b'-'))
            {
                *digit = (c as char).to_digit(16).unwrap() as u8;
            }
            digits
        };
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = hex[2 * i] << 4 | hex[2 * i + 1];
        }
        bytes[0..4].reverse();
        bytes[4..6].reverse();
        bytes[6..8].reverse();
        assert_eq!(bytes, TYPE_GPT_BYTES);
    }
}
