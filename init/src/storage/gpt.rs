//! Just enough GPT to find the kiOS data partition and the EFI system
//! partition by their types: the header at LBA 1, its CRC, the partition
//! entry array and its CRC (UEFI spec, chapter 5).
//! No udev or libblkid on the node, so the init reads the table itself.

/// The EFI system partition's type, where the boot slots' entries are.
pub use kios_abi::boot_slots::ESP_TYPE_GPT_BYTES as ESP_TYPE;
/// The kiOS data partition type as GPT stores it; the disk builder writes it.
pub use kios_abi::data_partition::TYPE_GPT_BYTES as DATA_PARTITION_TYPE;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: usize = 92;
const MIN_ENTRY_SIZE: usize = 128;

/// Where the partition entries are, read from a valid header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EntryArray {
    pub first_lba: u64,
    pub count: u32,
    pub entry_size: u32,
    crc: u32,
}

impl EntryArray {
    pub fn byte_len(&self) -> usize {
        self.count as usize * self.entry_size as usize
    }
}

/// Why a disk's partition table was not usable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GptError {
    /// No "EFI PART" signature at LBA 1: not a GPT disk.
    NoSignature,
    HeaderCrc,
    /// A header field out of the spec's range (or beyond what the init reads).
    BadHeader,
    EntriesCrc,
}

impl GptError {
    pub fn describe(self) -> &'static str {
        match self {
            GptError::NoSignature => "no GPT (no EFI PART signature at LBA 1)",
            GptError::HeaderCrc => "GPT header CRC mismatch",
            GptError::BadHeader => "GPT header fields out of range",
            GptError::EntriesCrc => "GPT partition entry array CRC mismatch",
        }
    }
}

/// Checks the header sector (LBA 1) and says where the entries are.
/// `max_entries_len` is the most the caller can read at once.
pub fn parse_header(sector: &[u8], max_entries_len: usize) -> Result<EntryArray, GptError> {
    if sector.get(..8) != Some(SIGNATURE.as_slice()) {
        return Err(GptError::NoSignature);
    }
    let header_size = le32(sector, 12).ok_or(GptError::BadHeader)? as usize;
    if header_size < MIN_HEADER_SIZE || header_size > sector.len() {
        return Err(GptError::BadHeader);
    }
    let stored_crc = le32(sector, 16).ok_or(GptError::BadHeader)?;
    // The CRC covers the header with its own CRC field zeroed.
    let computed = crc32_parts(&[&sector[..16], &[0u8; 4], &sector[20..header_size]]);
    if computed != stored_crc {
        return Err(GptError::HeaderCrc);
    }
    let entries = EntryArray {
        first_lba: le64(sector, 72).ok_or(GptError::BadHeader)?,
        count: le32(sector, 80).ok_or(GptError::BadHeader)?,
        entry_size: le32(sector, 84).ok_or(GptError::BadHeader)?,
        crc: le32(sector, 88).ok_or(GptError::BadHeader)?,
    };
    let entry_size = entries.entry_size as usize;
    if entries.first_lba < 2
        || entry_size < MIN_ENTRY_SIZE
        || !entry_size.is_power_of_two()
        || entries.count == 0
        || entries.byte_len() > max_entries_len
    {
        return Err(GptError::BadHeader);
    }
    Ok(entries)
}

/// Checks the entry array's CRC and returns the number (1-based, as the
/// kernel names partitions) of the first partition of type `type_guid`.
pub fn find_partition(
    array: &EntryArray,
    entries: &[u8],
    type_guid: &[u8; 16],
) -> Result<Option<u32>, GptError> {
    find_partitions(array, entries, &[*type_guid]).map(|[number]| number)
}

/// [`find_partition`] for several types in one pass over the entries.
pub fn find_partitions<const N: usize>(
    array: &EntryArray,
    entries: &[u8],
    types: &[[u8; 16]; N],
) -> Result<[Option<u32>; N], GptError> {
    let entries = entries.get(..array.byte_len()).ok_or(GptError::BadHeader)?;
    if crc32_parts(&[entries]) != array.crc {
        return Err(GptError::EntriesCrc);
    }
    let mut found = [None; N];
    for (number, entry) in (1..).zip(entries.chunks_exact(array.entry_size as usize)) {
        for (slot, type_guid) in found.iter_mut().zip(types) {
            if slot.is_none() && &entry[..16] == type_guid {
                *slot = Some(number);
            }
        }
    }
    Ok(found)
}

/// CRC-32 (IEEE 802.3, reflected), the GPT's checksum, over consecutive parts.
/// Bitwise rather than table-driven: it runs over 16 KiB once per boot.
fn crc32_parts(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([field[0], field[1], field[2], field[3]]))
}

fn le64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(le32(bytes, at)?) | (u64::from(le32(bytes, at + 4)?) << 32))
}

/// The filesystem a data partition must hold: ext4's superblock sits at
/// byte 1024 and carries the magic 0xEF53 at offset 0x38 within it.
pub const EXT4_SUPERBLOCK_OFFSET: u64 = 1024;
const EXT4_MAGIC_OFFSET: usize = 0x38;

pub fn is_ext4_superblock(superblock: &[u8]) -> bool {
    superblock.get(EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2) == Some([0x53, 0xEF].as_slice())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A GPT (header sector and entry array) with the given partition
    /// types, built the way the spec says, for tests.
    pub fn gpt_with(types: &[[u8; 16]]) -> (Vec<u8>, Vec<u8>) {
        let count = 128u32;
        let mut entries = vec![0u8; count as usize * 128];
        for (i, guid) in types.iter().enumerate() {
            entries[i * 128..i * 128 + 16].copy_from_slice(guid);
        }
        let mut header = vec![0u8; 512];
        header[..8].copy_from_slice(SIGNATURE);
        header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        header[12..16].copy_from_slice(&92u32.to_le_bytes());
        header[72..80].copy_from_slice(&2u64.to_le_bytes());
        header[80..84].copy_from_slice(&count.to_le_bytes());
        header[84..88].copy_from_slice(&128u32.to_le_bytes());
        header[88..92].copy_from_slice(&crc32_parts(&[&entries]).to_le_bytes());
        let crc = crc32_parts(&[&header[..92]]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        (header, entries)
    }

    const OTHER: [u8; 16] = [7; 16];

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32_parts(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    #[test]
    fn finds_the_data_partition_by_type_and_numbers_it_from_one() {
        let (header, entries) = gpt_with(&[OTHER, DATA_PARTITION_TYPE]);
        let array = parse_header(&header, 16384).unwrap();
        assert_eq!(array.first_lba, 2);
        assert_eq!(
            find_partition(&array, &entries, &DATA_PARTITION_TYPE),
            Ok(Some(2))
        );
        assert_eq!(find_partition(&array, &entries, &[9; 16]), Ok(None));
    }

    #[test]
    fn several_types_are_found_in_one_pass_each_at_its_first_partition() {
        let (header, entries) = gpt_with(&[OTHER, ESP_TYPE, DATA_PARTITION_TYPE, ESP_TYPE]);
        let array = parse_header(&header, 16384).unwrap();
        assert_eq!(
            find_partitions(&array, &entries, &[DATA_PARTITION_TYPE, ESP_TYPE, [9; 16]]),
            Ok([Some(3), Some(2), None])
        );
    }

    #[test]
    fn a_disk_without_gpt_a_bad_header_crc_and_bad_entries_are_told_apart() {
        assert_eq!(parse_header(&[0u8; 512], 16384), Err(GptError::NoSignature));

        let (mut header, entries) = gpt_with(&[DATA_PARTITION_TYPE]);
        header[40] ^= 1;
        assert_eq!(parse_header(&header, 16384), Err(GptError::HeaderCrc));

        let (header, mut entries_bad) = gpt_with(&[DATA_PARTITION_TYPE]);
        let array = parse_header(&header, 16384).unwrap();
        entries_bad[200] ^= 1;
        assert_eq!(
            find_partition(&array, &entries_bad, &DATA_PARTITION_TYPE),
            Err(GptError::EntriesCrc)
        );
        assert!(find_partition(&array, &entries, &DATA_PARTITION_TYPE).is_ok());
    }

    #[test]
    fn header_fields_out_of_range_are_refused_not_trusted() {
        let (header, _) = gpt_with(&[]);
        // An entry array larger than the caller can read.
        assert_eq!(parse_header(&header, 1024), Err(GptError::BadHeader));
        // A truncated sector, and a header size beyond the sector.
        assert_eq!(parse_header(&header[..40], 16384), Err(GptError::BadHeader));
        let mut huge = header.clone();
        huge[12..16].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(parse_header(&huge, 16384), Err(GptError::BadHeader));
    }

    #[test]
    fn ext4_is_recognised_by_its_superblock_magic() {
        let mut superblock = [0u8; 1024];
        assert!(!is_ext4_superblock(&superblock));
        superblock[0x38] = 0x53;
        superblock[0x39] = 0xEF;
        assert!(is_ext4_superblock(&superblock));
        assert!(!is_ext4_superblock(&superblock[..0x39]));
    }
}
