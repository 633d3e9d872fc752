//! The disk's GUID partition table (UEFI spec, chapter 5), read and
//! checked in both copies, and the one edit an update makes: a slot
//! partition's unique GUID, which the release's command line names its
//! root by (`PARTUUID=`).
//!
//! The primary header is at LBA 1, the backup at the primary's alternate
//! LBA (the disk's last block); each has its own copy of the partition
//! entry array. Each header's CRC-32 covers its first `header_size` bytes
//! with the CRC field zeroed; the entry array's CRC-32 is in both headers.
//! (The tests check both against crc32fast, an implementation of their own.)

use crate::guid::Guid;
use crate::Errno;

/// The largest logical block read (4 KiB-sector disks).
pub const MAX_BLOCK: usize = 4096;
/// The largest entry array read (the usual 128 entries of 128 bytes are 16 KiB).
pub const MAX_ENTRIES_BYTES: usize = 32 * 1024;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER_SIZE: usize = 92;
const MIN_ENTRY_SIZE: usize = 128;
/// An entry's name: 36 UTF-16LE code units at byte 56.
const NAME_OFFSET: usize = 56;
const NAME_UNITS: usize = 36;

/// Reads and writes at byte offsets, all or nothing (a short transfer is
/// an error): the disk device in the binary, a byte vector in tests.
pub trait Disk {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno>;
    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Errno>;
}

/// Which copy of the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TableCopy {
    Primary,
    Backup,
}

impl TableCopy {
    pub fn name(self) -> &'static str {
        match self {
            TableCopy::Primary => "primary",
            TableCopy::Backup => "backup",
        }
    }
}

/// Why a disk's table was not usable (nothing is written to such a disk).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GptError {
    Read(TableCopy, Errno),
    NoSignature(TableCopy),
    HeaderCrc(TableCopy),
    /// A header field out of the spec's range, or beyond what is read.
    BadHeader(TableCopy),
    EntriesCrc(TableCopy),
    /// Both copies are valid but do not describe the same partitions.
    CopiesDiffer,
}

impl GptError {
    /// What is wrong, for a `refused:` line.
    pub fn describe(self) -> (&'static str, TableCopy, Option<Errno>) {
        match self {
            GptError::Read(copy, errno) => ("reading the GPT failed", copy, Some(errno)),
            GptError::NoSignature(copy) => ("no GPT signature (EFI PART)", copy, None),
            GptError::HeaderCrc(copy) => ("the GPT header's CRC does not match", copy, None),
            GptError::BadHeader(copy) => ("the GPT header's fields are out of range", copy, None),
            GptError::EntriesCrc(copy) => {
                ("the GPT partition entries' CRC does not match", copy, None)
            }
            GptError::CopiesDiffer => {
                ("the primary and backup GPT differ", TableCopy::Backup, None)
            }
        }
    }
}

/// One header's fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub entries_lba: u64,
    pub count: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
    header_size: u32,
}

impl Header {
    pub fn entries_bytes(&self) -> usize {
        self.count as usize * self.entry_size as usize
    }
}

/// A used partition entry (its type is not all zeros).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Partition {
    /// 1-based, as the kernel numbers partitions.
    pub number: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
}

impl Partition {
    pub fn bytes(&self, block_size: u32) -> u64 {
        (self.last_lba + 1 - self.first_lba) * u64::from(block_size)
    }
}

/// A disk's table, both copies checked: the headers' blocks as read and
/// the (identical) entry array.
pub struct Gpt {
    pub block_size: u32,
    pub primary: Header,
    pub backup: Header,
    primary_block: [u8; MAX_BLOCK],
    backup_block: [u8; MAX_BLOCK],
    entries: [u8; MAX_ENTRIES_BYTES],
}

impl Gpt {
    /// Reads the primary table at LBA 1 and the backup at its alternate
    /// LBA, checks both headers and entry arrays (signature, CRCs, where
    /// each says it is) and that the two agree.
    pub fn read<D: Disk>(disk: &mut D, block_size: u32) -> Result<Gpt, GptError> {
        let size = block_size as usize;
        if !(512..=MAX_BLOCK).contains(&size) || !size.is_power_of_two() {
            return Err(GptError::BadHeader(TableCopy::Primary));
        }
        let mut gpt = Gpt {
            block_size,
            primary: EMPTY_HEADER,
            backup: EMPTY_HEADER,
            primary_block: [0; MAX_BLOCK],
            backup_block: [0; MAX_BLOCK],
            entries: [0; MAX_ENTRIES_BYTES],
        };
        let bs = u64::from(block_size);
        let block = &mut gpt.primary_block[..size];
        disk.read_exact_at(bs, block)
            .map_err(|errno| GptError::Read(TableCopy::Primary, errno))?;
        gpt.primary = parse_header(block, 1, TableCopy::Primary)?;
        let primary = gpt.primary;
        if primary.alternate_lba < 2 {
            return Err(GptError::BadHeader(TableCopy::Primary));
        }
        let entries = &mut gpt.entries[..primary.entries_bytes()];
        disk.read_exact_at(primary.entries_lba.saturating_mul(bs), entries)
            .map_err(|errno| GptError::Read(TableCopy::Primary, errno))?;
        if crc32(entries) != primary.entries_crc {
            return Err(GptError::EntriesCrc(TableCopy::Primary));
        }

        let block = &mut gpt.backup_block[..size];
        disk.read_exact_at(primary.alternate_lba.saturating_mul(bs), block)
            .map_err(|errno| GptError::Read(TableCopy::Backup, errno))?;
        gpt.backup = parse_header(block, primary.alternate_lba, TableCopy::Backup)?;
        let backup = gpt.backup;
        // The backup's array, a block at a time: its CRC, and the same bytes.
        let mut chunk = [0u8; MAX_BLOCK];
        let mut crc = !0;
        let mut same = true;
        let mut at = 0;
        while at < backup.entries_bytes() {
            let len = size.min(backup.entries_bytes() - at);
            let offset = backup.entries_lba.saturating_mul(bs) + at as u64;
            disk.read_exact_at(offset, &mut chunk[..len])
                .map_err(|errno| GptError::Read(TableCopy::Backup, errno))?;
            crc = crc32_update(crc, &chunk[..len]);
            same &= gpt.entries.get(at..at + len) == Some(&chunk[..len]);
            at += len;
        }
        if !crc != backup.entries_crc {
            return Err(GptError::EntriesCrc(TableCopy::Backup));
        }
        let agree = same
            && backup.alternate_lba == 1
            && backup.entries_bytes() == primary.entries_bytes()
            && backup.entry_size == primary.entry_size
            && backup.first_usable_lba == primary.first_usable_lba
            && backup.last_usable_lba == primary.last_usable_lba;
        if !agree {
            return Err(GptError::CopiesDiffer);
        }
        Ok(gpt)
    }

    /// The used entries, in table order.
    pub fn partitions(&self) -> impl Iterator<Item = Partition> + '_ {
        let entries = &self.entries[..self.primary.entries_bytes()];
        (1..)
            .zip(entries.chunks_exact(self.primary.entry_size as usize))
            .filter(|(_, entry)| entry[..16] != [0; 16])
            .map(|(number, entry)| Partition {
                number,
                type_guid: Guid(bytes16(&entry[..16])),
                unique_guid: Guid(bytes16(&entry[16..32])),
                first_lba: le64(entry, 32),
                last_lba: le64(entry, 40),
            })
    }

    pub fn partition(&self, number: u32) -> Option<Partition> {
        self.partitions()
            .find(|partition| partition.number == number)
    }

    /// The used partition named `name` (ASCII; GPT names are UTF-16LE).
    pub fn find_by_name(&self, name: &str) -> Option<Partition> {
        let size = self.primary.entry_size as usize;
        self.partitions().find(|partition| {
            let at = (partition.number as usize - 1) * size + NAME_OFFSET;
            name_is(&self.entries[at..at + NAME_UNITS * 2], name)
        })
    }

    /// Gives partition `number` the unique GUID `guid` in both copies:
    /// the backup first, each copy's entry array before its header, so an
    /// interrupted edit leaves at least one copy whole (a header whose
    /// array CRC does not match is not used). The caller syncs the disk.
    pub fn set_unique_guid<D: Disk>(
        &mut self,
        disk: &mut D,
        number: u32,
        guid: Guid,
    ) -> Result<(), (TableCopy, Errno)> {
        let size = self.primary.entry_size as usize;
        let len = self.primary.entries_bytes();
        let at = (number as usize)
            .checked_sub(1)
            .map(|index| index * size)
            .filter(|at| at + size <= len)
            .ok_or((TableCopy::Primary, Errno::INVAL))?;
        self.entries[at + 16..at + 32].copy_from_slice(&guid.0);
        let crc = crc32(&self.entries[..len]);
        let bs = u64::from(self.block_size);
        let block_len = self.block_size as usize;
        for copy in [TableCopy::Backup, TableCopy::Primary] {
            let (header, block) = match copy {
                TableCopy::Primary => (&mut self.primary, &mut self.primary_block),
                TableCopy::Backup => (&mut self.backup, &mut self.backup_block),
            };
            header.entries_crc = crc;
            block[88..92].copy_from_slice(&crc.to_le_bytes());
            let header_crc = header_crc(&block[..header.header_size as usize]);
            block[16..20].copy_from_slice(&header_crc.to_le_bytes());
            disk.write_all_at(header.entries_lba * bs, &self.entries[..len])
                .map_err(|errno| (copy, errno))?;
            disk.write_all_at(header.my_lba * bs, &block[..block_len])
                .map_err(|errno| (copy, errno))?;
        }
        Ok(())
    }
}

const EMPTY_HEADER: Header = Header {
    my_lba: 0,
    alternate_lba: 0,
    first_usable_lba: 0,
    last_usable_lba: 0,
    entries_lba: 0,
    count: 0,
    entry_size: 0,
    entries_crc: 0,
    header_size: 0,
};

/// Checks one header block read at `lba`.
fn parse_header(block: &[u8], lba: u64, copy: TableCopy) -> Result<Header, GptError> {
    if block.get(..8) != Some(SIGNATURE.as_slice()) {
        return Err(GptError::NoSignature(copy));
    }
    let bad = GptError::BadHeader(copy);
    let header_size = le32(block, 12);
    if (header_size as usize) < MIN_HEADER_SIZE || header_size as usize > block.len() {
        return Err(bad);
    }
    if header_crc(&block[..header_size as usize]) != le32(block, 16) {
        return Err(GptError::HeaderCrc(copy));
    }
    let header = Header {
        my_lba: le64(block, 24),
        alternate_lba: le64(block, 32),
        first_usable_lba: le64(block, 40),
        last_usable_lba: le64(block, 48),
        entries_lba: le64(block, 72),
        count: le32(block, 80),
        entry_size: le32(block, 84),
        entries_crc: le32(block, 88),
        header_size,
    };
    let entry_size = header.entry_size as usize;
    if header.my_lba != lba
        || header.alternate_lba == lba
        || header.entries_lba < 2
        || header.first_usable_lba > header.last_usable_lba
        || entry_size < MIN_ENTRY_SIZE
        || !entry_size.is_power_of_two()
        || header.count == 0
        || header.count as usize > MAX_ENTRIES_BYTES / MIN_ENTRY_SIZE
        || header.entries_bytes() > MAX_ENTRIES_BYTES
    {
        return Err(bad);
    }
    Ok(header)
}

/// A header's CRC: over its bytes with the CRC field (16..20) as zeros.
fn header_crc(header: &[u8]) -> u32 {
    let crc = crc32_update(!0, &header[..16]);
    let crc = crc32_update(crc, &[0; 4]);
    !crc32_update(crc, &header[20..])
}

/// CRC-32 (IEEE 802.3, reflected), the GPT's checksum.
pub fn crc32(bytes: &[u8]) -> u32 {
    !crc32_update(!0, bytes)
}

/// The running (not yet inverted) CRC-32 after `bytes`. Bit by bit, not
/// table-driven: it runs over a few tens of KiB per update, and a table
/// would cost the binary 16 KiB (crc32fast's cost 20 KiB).
fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// Whether a UTF-16LE name field holds `name` (then NULs or its end).
fn name_is(field: &[u8], name: &str) -> bool {
    let mut units = field.chunks_exact(2);
    for byte in name.bytes() {
        if units.next() != Some(&[byte, 0][..]) {
            return false;
        }
    }
    units.next().is_none_or(|unit| unit == [0, 0])
}

fn bytes16(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes[..16]);
    out
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    u64::from(le32(bytes, at)) | u64::from(le32(bytes, at + 4)) << 32
}

#[cfg(test)]
#[path = "gpt_tests.rs"]
pub mod tests;
