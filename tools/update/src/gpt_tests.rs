use super::*;
use kios_abi::boot_slots::ESP_TYPE_GPT_BYTES;

impl Disk for Vec<u8> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let at = offset as usize;
        let bytes = self.get(at..at + buf.len()).ok_or(Errno::IO)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Errno> {
        let at = offset as usize;
        self.get_mut(at..at + buf.len())
            .ok_or(Errno::IO)?
            .copy_from_slice(buf);
        Ok(())
    }
}

/// The root type the disk builder gives slot partitions (amd64).
pub const ROOT_TYPE: [u8; 16] = [0xe3; 16];
pub const DATA_TYPE: [u8; 16] = kios_abi::data_partition::TYPE_GPT_BYTES;

/// One partition of a test disk.
pub struct Spec<'a> {
    pub type_guid: [u8; 16],
    pub unique: [u8; 16],
    pub first: u64,
    pub last: u64,
    pub name: &'a str,
}

/// The A/B disk's layout on 512-byte blocks: ESP, slot a, slot b, data,
/// with slot a holding `a_guid` and slot b `b_guid`.
pub fn ab_specs(a_guid: [u8; 16], b_guid: [u8; 16]) -> Vec<Spec<'static>> {
    vec![
        spec(ESP_TYPE_GPT_BYTES, [1; 16], 34, 99, "esp"),
        spec(ROOT_TYPE, a_guid, 100, 149, "kios-root-a"),
        spec(ROOT_TYPE, b_guid, 150, 199, "kios-root-b"),
        spec(DATA_TYPE, [4; 16], 200, 222, "kios-data"),
    ]
}

pub fn spec(type_guid: [u8; 16], unique: [u8; 16], first: u64, last: u64, name: &str) -> Spec<'_> {
    Spec {
        type_guid,
        unique,
        first,
        last,
        name,
    }
}

/// A whole disk image of `blocks` blocks with a valid GPT (128 entries
/// of 128 bytes, both copies), built as the spec lays it out, with a
/// CRC of crc32fast's rather than the code under test's.
pub fn disk_image(block_size: usize, blocks: u64, partitions: &[Spec<'_>]) -> Vec<u8> {
    let mut disk = vec![0u8; block_size * blocks as usize];
    let mut entries = vec![0u8; 128 * 128];
    for (index, part) in partitions.iter().enumerate() {
        let entry = &mut entries[index * 128..(index + 1) * 128];
        entry[..16].copy_from_slice(&part.type_guid);
        entry[16..32].copy_from_slice(&part.unique);
        entry[32..40].copy_from_slice(&part.first.to_le_bytes());
        entry[40..48].copy_from_slice(&part.last.to_le_bytes());
        for (unit, byte) in part.name.bytes().enumerate() {
            entry[56 + 2 * unit] = byte;
        }
    }
    let entry_blocks = (entries.len() / block_size) as u64;
    let last = blocks - 1;
    let backup_entries = last - entry_blocks;
    let header = |my: u64, alternate: u64, entries_lba: u64| {
        let mut header = vec![0u8; block_size];
        header[..8].copy_from_slice(b"EFI PART");
        header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        header[12..16].copy_from_slice(&92u32.to_le_bytes());
        header[24..32].copy_from_slice(&my.to_le_bytes());
        header[32..40].copy_from_slice(&alternate.to_le_bytes());
        header[40..48].copy_from_slice(&(2 + entry_blocks).to_le_bytes());
        header[48..56].copy_from_slice(&(backup_entries - 1).to_le_bytes());
        header[56..72].copy_from_slice(&[0x42; 16]);
        header[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        header[80..84].copy_from_slice(&128u32.to_le_bytes());
        header[84..88].copy_from_slice(&128u32.to_le_bytes());
        header[88..92].copy_from_slice(&independent_crc32(&entries).to_le_bytes());
        let crc = independent_crc32(&header[..92]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        header
    };
    let bs = block_size as u64;
    let mut put = |lba: u64, bytes: &[u8]| {
        let at = (lba * bs) as usize;
        disk[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(1, &header(1, last, 2));
    put(2, &entries);
    put(backup_entries, &entries);
    put(last, &header(last, 1, backup_entries));
    disk
}

/// CRC-32 by crc32fast, not by the code under test.
pub fn independent_crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// What a CRC-checking reader of its own finds at one header: its CRC,
/// its entry array's CRC, and the unique GUID of entry `index`.
fn independent_check(disk: &[u8], block_size: usize, lba: u64, index: usize) -> [u8; 16] {
    let at = lba as usize * block_size;
    let header = &disk[at..at + 92];
    assert_eq!(&header[..8], b"EFI PART");
    let mut zeroed = header.to_vec();
    zeroed[16..20].fill(0);
    assert_eq!(
        independent_crc32(&zeroed),
        le32(header, 16),
        "header at LBA {lba}"
    );
    let entries_at = le64(header, 72) as usize * block_size;
    let entries = &disk[entries_at..entries_at + 128 * 128];
    assert_eq!(
        independent_crc32(entries),
        le32(header, 88),
        "entries of LBA {lba}"
    );
    bytes16(&entries[index * 128 + 16..])
}

fn gpt_of(disk: &mut Vec<u8>) -> Gpt {
    Gpt::read(disk, 512).unwrap()
}

#[test]
fn the_crc_is_the_standard_crc32() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let bytes: Vec<u8> = (0..5000u32).map(|at| (at * 31 % 256) as u8).collect();
    assert_eq!(crc32(&bytes), crc32fast::hash(&bytes));
    assert_eq!(
        header_crc(&bytes[..92]),
        crc32fast::hash(&[&bytes[..16], &[0; 4], &bytes[20..92]].concat())
    );
}

#[test]
fn a_valid_table_lists_its_partitions_and_finds_them_by_name() {
    let mut disk = disk_image(512, 256, &ab_specs([2; 16], [3; 16]));
    let gpt = gpt_of(&mut disk);
    assert_eq!(gpt.primary.alternate_lba, 255);
    assert_eq!(gpt.backup.my_lba, 255);
    assert_eq!(gpt.partitions().count(), 4);
    let b = gpt.find_by_name("kios-root-b").unwrap();
    assert_eq!((b.number, b.first_lba, b.last_lba), (3, 150, 199));
    assert_eq!(b.unique_guid, Guid([3; 16]));
    assert_eq!(b.bytes(512), 50 * 512);
    assert_eq!(
        gpt.partition(1).unwrap().type_guid,
        Guid(ESP_TYPE_GPT_BYTES)
    );
    assert_eq!(gpt.find_by_name("kios-root"), None);
    assert_eq!(gpt.find_by_name("kios-root-b2"), None);
    assert_eq!(gpt.partition(5), None);
}

#[test]
fn a_new_guid_lands_in_both_copies_with_every_crc_right() {
    let mut disk = disk_image(512, 256, &ab_specs([2; 16], [3; 16]));
    let before = disk.clone();
    let mut gpt = gpt_of(&mut disk);
    let new = Guid::parse("9f86d081-884c-7d65-9a2f-eaa0c55ad015").unwrap();
    gpt.set_unique_guid(&mut disk, 3, new).unwrap();

    // A reader of its own accepts both copies and sees the new GUID.
    assert_eq!(independent_check(&disk, 512, 1, 2), new.0);
    assert_eq!(independent_check(&disk, 512, 255, 2), new.0);
    assert_eq!(independent_check(&disk, 512, 1, 1), [2; 16]);
    // So does this module's, from scratch.
    let again = gpt_of(&mut disk);
    assert_eq!(again.find_by_name("kios-root-b").unwrap().unique_guid, new);
    // Only the two GUIDs and the four CRCs changed.
    let changed: Vec<usize> = (0..disk.len())
        .filter(|&at| disk[at] != before[at])
        .collect();
    assert!(
        changed.len() <= 2 * 16 + 4 * 4,
        "{} bytes changed",
        changed.len()
    );
    assert!(changed
        .iter()
        .all(|&at| !(34 * 512..223 * 512).contains(&at)));
}

#[test]
fn a_4k_block_disk_round_trips_too() {
    let specs = [
        spec(ESP_TYPE_GPT_BYTES, [1; 16], 6, 9, "esp"),
        spec(ROOT_TYPE, [2; 16], 10, 11, "kios-root-a"),
        spec(ROOT_TYPE, [3; 16], 12, 13, "kios-root-b"),
    ];
    let mut disk = disk_image(4096, 24, &specs);
    let mut gpt = Gpt::read(&mut disk, 4096).unwrap();
    gpt.set_unique_guid(&mut disk, 2, Guid([9; 16])).unwrap();
    assert_eq!(independent_check(&disk, 4096, 1, 1), [9; 16]);
    assert_eq!(independent_check(&disk, 4096, 23, 1), [9; 16]);
}

#[test]
fn damaged_or_disagreeing_tables_are_refused() {
    let clean = disk_image(512, 256, &ab_specs([2; 16], [3; 16]));
    let read = |disk: &mut Vec<u8>| Gpt::read(disk, 512).map(|_| ()).unwrap_err();

    assert_eq!(
        read(&mut vec![0u8; 512 * 256]),
        GptError::NoSignature(TableCopy::Primary)
    );
    let mut disk = clean.clone();
    disk[512 + 40] ^= 1;
    assert_eq!(read(&mut disk), GptError::HeaderCrc(TableCopy::Primary));
    let mut disk = clean.clone();
    disk[2 * 512 + 200] ^= 1;
    assert_eq!(read(&mut disk), GptError::EntriesCrc(TableCopy::Primary));
    let mut disk = clean.clone();
    disk[255 * 512 + 40] ^= 1;
    assert_eq!(read(&mut disk), GptError::HeaderCrc(TableCopy::Backup));
    let mut disk = clean.clone();
    disk[223 * 512 + 200] ^= 1;
    assert_eq!(read(&mut disk), GptError::EntriesCrc(TableCopy::Backup));
    // A backup whose own CRCs hold but whose partitions differ.
    let mut disk = clean.clone();
    let other = disk_image(512, 256, &ab_specs([2; 16], [7; 16]));
    disk[223 * 512..].copy_from_slice(&other[223 * 512..]);
    assert_eq!(read(&mut disk), GptError::CopiesDiffer);
    // A disk cut short before its backup.
    let mut disk = clean[..200 * 512].to_vec();
    assert_eq!(
        read(&mut disk),
        GptError::Read(TableCopy::Backup, Errno::IO)
    );
    // Block sizes the table cannot have.
    assert_eq!(
        Gpt::read(&mut clean.clone(), 256).map(|_| ()).unwrap_err(),
        GptError::BadHeader(TableCopy::Primary)
    );
}

#[test]
fn a_failed_write_names_its_copy() {
    let mut disk = disk_image(512, 256, &ab_specs([2; 16], [3; 16]));
    let mut gpt = gpt_of(&mut disk);
    // The backup goes first: a disk that ends before it fails there.
    let mut short = disk[..224 * 512].to_vec();
    assert_eq!(
        gpt.set_unique_guid(&mut short, 3, Guid([5; 16])),
        Err((TableCopy::Backup, Errno::IO))
    );
    assert_eq!(
        gpt.set_unique_guid(&mut disk, 0, Guid([5; 16])),
        Err((TableCopy::Primary, Errno::INVAL))
    );
    assert_eq!(
        gpt.set_unique_guid(&mut disk, 129, Guid([5; 16])),
        Err((TableCopy::Primary, Errno::INVAL))
    );
}
