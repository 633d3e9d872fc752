//! GPT (`storage::gpt`) and the data partition scan over it
//! (`storage::data_partition::find`): the input is the disk's logical
//! block size file, the disk, and its partitions' first bytes (three
//! sections). A parsed header is within the spec's ranges, a found
//! partition is numbered within the table, and the scan agrees with the
//! parser, also on the EFI system partition beside the data partition.
#![no_main]

use kios_fuzz::{sections, FuzzSys};
use kios_init::config::cmdline::DataSource;
use kios_init::storage::data_partition::{self, partition_path};
use kios_init::storage::gpt::{self, DATA_PARTITION_TYPE, ESP_TYPE};
use libfuzzer_sys::fuzz_target;

const MAX_ENTRIES_LEN: usize = 16384;

fuzz_target!(|data: &[u8]| {
    let [block_size, disk, partition] = sections::<3>(data);

    // The parser on its own, with 512-byte sectors.
    let header = disk.get(512..).unwrap_or_default();
    let header = &header[..header.len().min(512)];
    let mut expected = None;
    let mut expected_esp = None;
    if let Ok(array) = gpt::parse_header(header, MAX_ENTRIES_LEN) {
        assert!(array.first_lba >= 2 && array.count > 0);
        assert!(array.entry_size >= 128 && array.entry_size.is_power_of_two());
        assert!(array.byte_len() <= MAX_ENTRIES_LEN);
        let offset = usize::try_from(array.first_lba.saturating_mul(512)).unwrap_or(usize::MAX);
        let entries = disk.get(offset..).unwrap_or_default();
        let entries = &entries[..entries.len().min(array.byte_len())];
        if let Ok(found) = gpt::find_partition(&array, entries, &DATA_PARTITION_TYPE) {
            if let Some(number) = found {
                assert!(
                    number >= 1 && number <= array.count,
                    "{number} of {}",
                    array.count
                );
            }
            expected = Some(found);
            expected_esp = gpt::find_partition(&array, entries, &ESP_TYPE)
                .ok()
                .flatten();
        }
    }
    let _ = gpt::is_ext4_superblock(partition);

    // The boot's scan: one disk (and a loop device it must skip).
    let mut sys = FuzzSys::new();
    sys.dir("/sys/block", &["vda", "loop0"]);
    sys.file("/sys/block/vda/queue/logical_block_size", block_size);
    sys.file("/dev/vda", disk);
    for number in 1..=4 {
        sys.file(&partition_path("vda", number), partition);
    }
    let mut esp = None;
    let found = data_partition::find(&mut sys, &DataSource::Auto, None, &mut esp);
    let sector_512 = matches!(block_size.trim_ascii(), b"512" | b"" | b"0");
    if let Ok(path) = &found {
        assert!(path.starts_with("/dev/vda"), "{path:?}");
        assert!(gpt::is_ext4_superblock(
            partition.get(1024..).unwrap_or_default()
        ));
        if sector_512 {
            let Some(Some(number)) = expected else {
                panic!("the scan found {path:?}, the parser nothing");
            };
            assert_eq!(path, &partition_path("vda", number));
            assert_eq!(
                esp,
                expected_esp.map(|number| partition_path("vda", number))
            );
        }
    }
    if let Some(esp) = &esp {
        assert!(esp.starts_with("/dev/vda"), "{esp:?}");
    }
});
