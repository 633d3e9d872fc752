//! Finding the data partition: the disk's GPT, the kiOS partition type,
//! or the device the command line names; then the filesystem check.
//! Nothing here ever formats a disk: a partition that does not hold a
//! mountable ext4 leaves the node ephemeral, with the reason in kmsg.
//! The type scan also notes the EFI system partition of the data
//! partition's disk, where a kiOS disk keeps its boot slots' entries.

use crate::config::cmdline::DataSource;
use crate::errno::Errno;
use crate::log;
use crate::log::Level;
use crate::storage::gpt::{self, GptError};
use crate::sys::Sys;

/// A block device path such as `/dev/vda2` or `/dev/nvme0n1p2`.
pub type DevicePath = heapless::String<96>;

/// How long to wait for a device the command line names, unless
/// `kios.data_timeout=` says otherwise.
pub const NAMED_DEVICE_TIMEOUT_MS: u64 = 10_000;
/// How often a scan for the partition type is repeated while
/// `kios.data_timeout=` allows (disks on USB or SD probe late).
const RESCAN_INTERVAL_MS: u64 = 100;
/// How long a partition found in a disk's table may take to get its
/// /dev node: the kernel adds partitions after the disk itself.
const PARTITION_NODE_TIMEOUT_MS: u64 = 5_000;
/// The largest partition entry array read (the spec's usual 128 × 128 B).
const MAX_ENTRIES_LEN: usize = 16384;
const MAX_SECTOR: usize = 4096;

/// Why the node boots without its data partition.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DataError {
    /// No disk holds a partition of the kiOS type (or `kios.data=none`).
    NotFound,
    /// The named device did not appear in time (ETIMEDOUT) or cannot be watched.
    DeviceMissing(DevicePath, Errno),
    ReadSuperblock(DevicePath, Errno),
    NotExt4(DevicePath),
}

impl ufmt::uDisplay for DataError {
    fn fmt<W: ufmt::uWrite + ?Sized>(
        &self,
        f: &mut ufmt::Formatter<'_, W>,
    ) -> Result<(), W::Error> {
        match self {
            DataError::NotFound => ufmt::uwrite!(f, "no data partition found"),
            DataError::DeviceMissing(path, e) => {
                ufmt::uwrite!(f, "data partition {} did not appear: {}", path.as_str(), e)
            }
            DataError::ReadSuperblock(path, e) => {
                ufmt::uwrite!(f, "reading data partition {} failed: {}", path.as_str(), e)
            }
            DataError::NotExt4(path) => ufmt::uwrite!(
                f,
                "data partition {} holds no ext4 filesystem (no superblock magic), not formatting it",
                path.as_str()
            ),
        }
    }
}

/// Finds the data partition and checks it holds ext4. A type scan that
/// finds it also sets `esp` to its disk's EFI system partition, if any.
pub fn find<S: Sys>(
    sys: &mut S,
    source: &DataSource,
    timeout_ms: Option<u64>,
    esp: &mut Option<DevicePath>,
) -> Result<DevicePath, DataError> {
    let (device, node_timeout_ms) = match source {
        DataSource::None => return Err(DataError::NotFound),
        DataSource::Device(path) => (path.clone(), timeout_ms.unwrap_or(NAMED_DEVICE_TIMEOUT_MS)),
        DataSource::Auto => {
            let (device, disk_esp) = scan_until(sys, timeout_ms.unwrap_or(0))?;
            *esp = disk_esp;
            (device, PARTITION_NODE_TIMEOUT_MS)
        }
    };
    sys.wait_for_path(&device, None, node_timeout_ms)
        .map_err(|errno| DataError::DeviceMissing(device.clone(), errno))?;
    let mut superblock = [0u8; 1024];
    let len = sys
        .read_at(&device, gpt::EXT4_SUPERBLOCK_OFFSET, &mut superblock)
        .map_err(|errno| DataError::ReadSuperblock(device.clone(), errno))?;
    if !gpt::is_ext4_superblock(&superblock[..len]) {
        return Err(DataError::NotExt4(device));
    }
    Ok(device)
}

/// A data partition and its disk's EFI system partition.
type Found = (DevicePath, Option<DevicePath>);

/// Scans the disks for the kiOS partition type, again and again until
/// `timeout_ms` has passed (0: once). Each unusable disk is reported once.
fn scan_until<S: Sys>(sys: &mut S, timeout_ms: u64) -> Result<Found, DataError> {
    let deadline = sys.now_us() + timeout_ms * 1000;
    let mut report = true;
    loop {
        if let Some(found) = scan(sys, report) {
            return Ok(found);
        }
        report = false;
        if sys.now_us() >= deadline {
            return Err(DataError::NotFound);
        }
        sys.sleep_ms(RESCAN_INTERVAL_MS);
    }
}

/// The first partition of the kiOS type on any disk, disks in name order
/// (vda before vdb). Each round lists /sys/block again for the next name:
/// no list to cut short on a machine with many disks, and no sort.
fn scan<S: Sys>(sys: &mut S, report: bool) -> Option<Found> {
    let mut last: Option<DiskName> = None;
    loop {
        let mut next: Option<DiskName> = None;
        let listed = sys.list_dir("/sys/block", &mut |name| {
            let virtual_disk = ["loop", "ram", "zram", "sr"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            let after_last = last.as_ref().is_none_or(|last| name > last.as_str());
            let before_next = next.as_ref().is_none_or(|next| name < next.as_str());
            if !virtual_disk && after_last && before_next {
                next = DiskName::try_from(name).ok().or(next.take());
            }
        });
        if let Err(errno) = listed {
            if report {
                log!(sys, Level::Warning, "listing /sys/block failed: {}", errno);
            }
            return None;
        }
        let disk = next?;
        match data_partition_of(sys, &disk) {
            Ok(Some(found)) => return Some(found),
            Ok(None) => {}
            Err(reason) => {
                if report {
                    log!(
                        sys,
                        Level::Info,
                        "disk /dev/{}: {}, skipped",
                        disk.as_str(),
                        reason
                    );
                }
            }
        }
        last = Some(disk);
    }
}

/// A disk's name in /sys/block (the kernel's are at most 31 bytes).
type DiskName = heapless::String<32>;

/// Why one disk was skipped by the scan.
enum DiskSkipped {
    Read(Errno),
    Table(GptError),
}

impl ufmt::uDisplay for DiskSkipped {
    fn fmt<W: ufmt::uWrite + ?Sized>(
        &self,
        f: &mut ufmt::Formatter<'_, W>,
    ) -> Result<(), W::Error> {
        match self {
            DiskSkipped::Read(e) => ufmt::uwrite!(f, "reading its partition table failed: {}", e),
            DiskSkipped::Table(error) => f.write_str(error.describe()),
        }
    }
}

fn data_partition_of<S: Sys>(sys: &mut S, disk: &str) -> Result<Option<Found>, DiskSkipped> {
    let sector = sector_size(sys, disk);
    let path = joined(&["/dev/", disk]);
    let mut header = [0u8; MAX_SECTOR];
    let header = &mut header[..sector];
    let len = sys
        .read_at(&path, sector as u64, header)
        .map_err(DiskSkipped::Read)?;
    let array = gpt::parse_header(&header[..len], MAX_ENTRIES_LEN).map_err(DiskSkipped::Table)?;
    let mut entries = [0u8; MAX_ENTRIES_LEN];
    let entries = &mut entries[..array.byte_len()];
    let offset = array.first_lba.saturating_mul(sector as u64);
    let len = sys
        .read_at(&path, offset, entries)
        .map_err(DiskSkipped::Read)?;
    let [data, esp] = gpt::find_partitions(
        &array,
        &entries[..len],
        &[gpt::DATA_PARTITION_TYPE, gpt::ESP_TYPE],
    )
    .map_err(DiskSkipped::Table)?;
    Ok(data.map(|data| {
        (
            partition_path(disk, data),
            esp.map(|esp| partition_path(disk, esp)),
        )
    }))
}

/// The disk's logical block size (where LBA 1 is); 512 when unreadable.
fn sector_size<S: Sys>(sys: &mut S, disk: &str) -> usize {
    let path = joined(&["/sys/block/", disk, "/queue/logical_block_size"]);
    let mut buf = [0u8; 16];
    let size = sys
        .read_file(&path, &mut buf)
        .ok()
        .and_then(|read| core::str::from_utf8(&buf[..read.len]).ok())
        .and_then(|text| text.trim_ascii().parse::<usize>().ok());
    match size {
        Some(size) if (512..=MAX_SECTOR).contains(&size) && size.is_power_of_two() => size,
        _ => 512,
    }
}

/// The kernel's partition naming: `vda` + 2 is `vda2`, but a disk whose
/// name ends in a digit gets a `p` first (`nvme0n1p2`, `mmcblk0p2`).
pub fn partition_path(disk: &str, number: u32) -> DevicePath {
    let separator = if disk.as_bytes().last().is_some_and(u8::is_ascii_digit) {
        "p"
    } else {
        ""
    };
    let mut digits = [0; 10];
    let number = crate::text::decimal(number, &mut digits);
    joined(&["/dev/", disk, separator, number])
}

/// Concatenates path pieces; a path too long for the buffer comes out
/// truncated, so opening it fails instead of opening something else.
fn joined(parts: &[&str]) -> DevicePath {
    let mut path = DevicePath::new();
    for part in parts {
        if path.push_str(part).is_err() {
            break;
        }
    }
    path
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::init::testing::position;
    use crate::storage::gpt::tests::gpt_with;
    use crate::storage::gpt::DATA_PARTITION_TYPE;
    use crate::sys::recording::RecordingSys;

    pub(crate) fn ext4_superblock() -> Vec<u8> {
        let mut partition = vec![0u8; 2048];
        partition[1024 + 0x38] = 0x53;
        partition[1024 + 0x39] = 0xEF;
        partition
    }

    /// A disk image: protective sector, GPT header at LBA 1, entries at LBA 2.
    pub(crate) fn disk_with(types: &[[u8; 16]]) -> Vec<u8> {
        let (header, entries) = gpt_with(types);
        let mut disk = vec![0u8; 512];
        disk.extend(header);
        disk.extend(entries);
        disk
    }

    fn device(path: &str) -> DataSource {
        DataSource::Device(heapless::String::try_from(path).unwrap())
    }

    #[test]
    fn partitions_are_named_like_the_kernel_names_them() {
        assert_eq!(partition_path("vda", 2).as_str(), "/dev/vda2");
        assert_eq!(partition_path("nvme0n1", 2).as_str(), "/dev/nvme0n1p2");
        assert_eq!(partition_path("mmcblk0", 10).as_str(), "/dev/mmcblk0p10");
    }

    #[test]
    fn the_scan_finds_the_kios_type_on_the_second_disk_and_reports_the_others() {
        let mut bad_crc = disk_with(&[DATA_PARTITION_TYPE]);
        bad_crc[512 + 40] ^= 1;
        let mut sys = RecordingSys::new()
            .with_dir("/sys/block", &["vdd", "vdb", "loop0", "vda", "vdc"])
            .with_file("/dev/vda", &[0u8; 4096])
            .with_file("/dev/vdb", &bad_crc)
            .with_file("/dev/vdc", &disk_with(&[[1; 16], DATA_PARTITION_TYPE]))
            .with_file("/dev/vdc2", &ext4_superblock());
        let found = find(&mut sys, &DataSource::Auto, None, &mut None);
        assert_eq!(found.unwrap().as_str(), "/dev/vdc2");
        assert!(sys.logged("disk /dev/vda: no GPT (no EFI PART signature at LBA 1), skipped"));
        assert!(sys.logged("disk /dev/vdb: GPT header CRC mismatch, skipped"));
        // The first match wins; loop devices are never read.
        assert!(sys.calls_starting("read_at /dev/vdd").is_empty());
        assert!(sys.calls_starting("read_at /dev/loop0").is_empty());
    }

    /// 40 disks listed in reverse name order: a list cut at 32 before
    /// sorting lost the first ones. The first by name still wins, and its
    /// partition's node is waited for before it is read.
    #[test]
    fn many_disks_are_scanned_in_name_order_and_the_partition_node_is_awaited() {
        let names: Vec<String> = (0..40u8)
            .rev()
            .map(|n| {
                format!(
                    "vd{}{}",
                    char::from(b'a' + n / 26),
                    char::from(b'a' + n % 26)
                )
            })
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut sys = RecordingSys::new().with_dir("/sys/block", &names);
        for name in &names {
            sys = sys.with_file(&format!("/dev/{name}"), &disk_with(&[DATA_PARTITION_TYPE]));
        }
        let mut sys = sys.with_file("/dev/vdaa1", &ext4_superblock());
        let found = find(&mut sys, &DataSource::Auto, None, &mut None);
        assert_eq!(found.unwrap().as_str(), "/dev/vdaa1");
        assert_eq!(sys.calls_starting("read_at /dev/vdab").len(), 0);
        assert!(
            position(&sys, "wait_for_path /dev/vdaa1 timeout=5000")
                < position(&sys, "read_at /dev/vdaa1")
        );
    }

    #[test]
    fn a_4k_sector_disk_has_its_header_at_byte_4096() {
        let (header, entries) = gpt_with(&[DATA_PARTITION_TYPE]);
        let mut disk = vec![0u8; 4096];
        disk.extend(&header);
        disk.resize(8192, 0);
        disk.extend(entries);
        let mut sys = RecordingSys::new()
            .with_dir("/sys/block", &["sda"])
            .with_file("/sys/block/sda/queue/logical_block_size", b"4096\n")
            .with_file("/dev/sda", &disk)
            .with_file("/dev/sda1", &ext4_superblock());
        assert_eq!(
            find(&mut sys, &DataSource::Auto, None, &mut None)
                .unwrap()
                .as_str(),
            "/dev/sda1"
        );
    }

    #[test]
    fn no_disk_with_the_type_means_not_found_after_the_bounded_rescans() {
        let mut sys = RecordingSys::new()
            .with_dir("/sys/block", &["vda"])
            .with_file("/dev/vda", &disk_with(&[[1; 16]]));
        assert_eq!(
            find(&mut sys, &DataSource::Auto, None, &mut None),
            Err(DataError::NotFound)
        );
        assert_eq!(sys.calls_starting("sleep").len(), 0);

        let mut sys = RecordingSys::new()
            .with_dir("/sys/block", &["vda"])
            .with_file("/dev/vda", &[0u8; 1024]);
        assert_eq!(
            find(&mut sys, &DataSource::Auto, Some(1000), &mut None),
            Err(DataError::NotFound)
        );
        assert_eq!(sys.calls_starting("sleep").len(), 10);
        // The skipped disk is reported once, not on every rescan.
        assert_eq!(
            sys.logs.iter().filter(|l| l.contains("/dev/vda")).count(),
            1
        );
    }

    #[test]
    fn a_named_device_is_waited_for_with_a_bound_and_checked_for_ext4() {
        let mut sys = RecordingSys::new().with_file("/dev/vdb1", &ext4_superblock());
        assert_eq!(
            find(&mut sys, &device("/dev/vdb1"), None, &mut None)
                .unwrap()
                .as_str(),
            "/dev/vdb1"
        );
        assert!(sys
            .calls
            .contains(&"wait_for_path /dev/vdb1 timeout=10000".to_string()));

        let mut sys = RecordingSys::new().failing("wait_for_path", Errno::TIMEDOUT);
        assert_eq!(
            find(&mut sys, &device("/dev/never"), Some(3000), &mut None),
            Err(DataError::DeviceMissing(
                heapless::String::try_from("/dev/never").unwrap(),
                Errno::TIMEDOUT
            ))
        );

        let mut sys = RecordingSys::new().with_file("/dev/vdb1", &[0u8; 2048]);
        assert_eq!(
            find(&mut sys, &device("/dev/vdb1"), None, &mut None),
            Err(DataError::NotExt4(
                heapless::String::try_from("/dev/vdb1").unwrap()
            ))
        );
        assert!(
            sys.calls_starting("write").is_empty(),
            "nothing is ever written to a disk"
        );
    }

    /// A kiOS disk keeps its boot slots' entries on the EFI system
    /// partition beside its data partition; another disk's is not it.
    #[test]
    fn the_scan_notes_the_esp_of_the_data_partitions_disk() {
        use crate::storage::gpt::ESP_TYPE;
        let mut sys = RecordingSys::new()
            .with_dir("/sys/block", &["vda", "vdb"])
            .with_file("/dev/vda", &disk_with(&[ESP_TYPE]))
            .with_file(
                "/dev/vdb",
                &disk_with(&[ESP_TYPE, [1; 16], DATA_PARTITION_TYPE]),
            )
            .with_file("/dev/vdb3", &ext4_superblock());
        let mut esp = None;
        let found = find(&mut sys, &DataSource::Auto, None, &mut esp);
        assert_eq!(found.unwrap().as_str(), "/dev/vdb3");
        assert_eq!(esp.unwrap().as_str(), "/dev/vdb1");

        let mut sys = RecordingSys::new()
            .with_dir("/sys/block", &["vda"])
            .with_file("/dev/vda", &disk_with(&[DATA_PARTITION_TYPE]))
            .with_file("/dev/vda1", &[0; 2048]);
        let mut esp = None;
        let found = find(&mut sys, &DataSource::Auto, None, &mut esp);
        assert_eq!(
            found,
            Err(DataError::NotExt4("/dev/vda1".try_into().unwrap()))
        );
        assert_eq!(esp, None);
    }

    #[test]
    fn data_none_skips_every_disk() {
        let mut sys = RecordingSys::new().with_dir("/sys/block", &["vda"]);
        assert_eq!(
            find(&mut sys, &DataSource::None, None, &mut None),
            Err(DataError::NotFound)
        );
        assert!(sys.calls_starting("list_dir").is_empty());
    }
}
