//! The node's disk image: GPT, an EFI system partition holding the
//! unified kernel image at the firmware's default boot path, and an empty
//! ext4 data partition of the kiOS type (the init lays it out at boot).
//!
//! Built with: the partition table with the `gpt` crate; the EFI system
//! partition's FAT32 with the `fatfs` crate; the ext4 with `mkfs.ext4`
//! (e2fsprogs); the unified kernel image with [`crate::image::uki`]. Each
//! filesystem is made in a file of its own and copied in at its
//! partition's offset, skipping zero blocks, so the disk stays sparse.
//!
//! Reproducible: every GUID and UUID is derived from the unified kernel
//! image's sha256, and every timestamp is the FAT epoch.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use kios_abi::data_partition;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::components::bom::{fetch_component, Bom};
use crate::host::arch::Arch;
use crate::host::command::output_of;
use crate::host::packages::{ensure_installed, DISK_IMAGE_PACKAGES};
use crate::host::progress::with_step;
use crate::image::node_image::{NodeImage, NODE_MEMORY_MIB};
use crate::image::uki::{build_uki, default_boot_path, os_release, stub_path_in_package, UkiParts};
use crate::vm::qemu::{kernel_command_line, ConsoleVerbosity, VmConfig};

/// The EFI system partition's GPT type (UEFI spec 5.3.3).
pub use kios_abi::boot_slots::ESP_TYPE_GUID;
/// The data partition's GPT name and ext4 label.
pub const ESP_NAME: &str = "esp";
pub const DEFAULT_DATA_BYTES: u64 = 1 << 30;
/// The disk image's file name in the output directory.
pub const DISK_FILE: &str = "disk.img";
/// The BOM component that provides systemd's EFI stub and systemd-boot.
pub const STUB_COMPONENT: &str = "systemd-boot-efi";

const SECTOR_BYTES: u64 = 512;
/// Partitions start on MiB boundaries, as partitioning tools place them.
pub const ALIGNMENT: u64 = 1 << 20;
/// FAT32 needs at least 65,525 clusters: 32 MiB of 512-byte clusters, plus room.
pub const MIN_ESP_BYTES: u64 = 64 << 20;
/// 1980-01-01 00:00 UTC, the earliest time FAT can record: every file and
/// filesystem on the disk carries it, so builds repeat byte for byte.
const FAT_EPOCH_UNIX_SECONDS: u64 = 315_532_800;
/// The copy buffer; an all-zero chunk of it is skipped, keeping the disk sparse.
const COPY_CHUNK: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct DiskOptions {
    /// The data partition's size (a multiple of 1 MiB).
    pub data_bytes: u64,
    /// What the UKI's command line lets the console show.
    pub console: ConsoleVerbosity,
    /// The first-boot configuration: files written under the EFI system
    /// partition's `/kios/config/` (`kios_abi::image::ESP_CONFIG_DIR`), by
    /// path relative to it (`hostname`, `kubernetes/kubelet.conf`, ...),
    /// which the node takes into /etc on its first boot.
    pub esp_config: Vec<(String, Vec<u8>)>,
}

impl Default for DiskOptions {
    fn default() -> DiskOptions {
        DiskOptions {
            data_bytes: DEFAULT_DATA_BYTES,
            console: ConsoleVerbosity::default(),
            esp_config: Vec::new(),
        }
    }
}

/// What a partition holds when the disk is written.
#[derive(Clone, Debug)]
pub enum PartitionContents {
    /// Nothing: the partition reads as zeros.
    Empty,
    /// These bytes at the partition's start.
    Bytes(Vec<u8>),
    /// A filesystem image file (at most the partition's size).
    Image(PathBuf),
}

/// One partition to write: its GPT entry and its contents.
#[derive(Clone, Debug)]
pub struct PartitionSpec {
    pub name: String,
    pub type_guid: Uuid,
    pub guid: Uuid,
    /// Rounded up to a whole MiB on the disk.
    pub bytes: u64,
    pub contents: PartitionContents,
}

/// Where a partition landed on the disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlacedPartition {
    pub name: String,
    /// The kernel's partition number (vda1 is 1).
    pub number: u32,
    pub offset: u64,
    pub bytes: u64,
}

/// A written node disk image.
#[derive(Clone, Debug, Serialize)]
pub struct DiskImage {
    pub arch: Arch,
    pub path: PathBuf,
    pub bytes: u64,
    /// What the sparse file takes on the host's disk.
    pub allocated_bytes: u64,
    /// The unified kernel image, also kept beside the disk.
    pub uki: PathBuf,
    pub uki_bytes: u64,
    pub partitions: Vec<PlacedPartition>,
}

/// Writes `out_dir/disk.img` for `image`: its kernel, initramfs and the
/// node's kernel command line as a unified kernel image on the EFI system
/// partition, and an empty ext4 data partition.
pub fn build_disk_image(
    bom: &Bom,
    image: &NodeImage,
    options: &DiskOptions,
    out_dir: &Path,
) -> Result<DiskImage> {
    ensure!(
        options.data_bytes > 0 && options.data_bytes.is_multiple_of(ALIGNMENT),
        "the data partition's size ({} bytes) must be a positive multiple of 1 MiB",
        options.data_bytes
    );
    ensure_installed(DISK_IMAGE_PACKAGES)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let arch = image.arch;
    let stub_path = fetch_component(bom, STUB_COMPONENT, arch)?.join(stub_path_in_package(arch));
    let uki = with_step(format!("building the {arch} unified kernel image"), || {
        build_uki(
            &read(&stub_path)?,
            &UkiParts {
                os_release: os_release(arch).as_bytes(),
                cmdline: kernel_command_line(arch, options.console).as_bytes(),
                initrd: &read(&image.initrd)?,
                kernel: &read(&image.kernel)?,
            },
        )
    })?;
    let uki_path = out_dir.join(format!("kios-{arch}.efi"));
    std::fs::write(&uki_path, &uki).with_context(|| format!("writing {}", uki_path.display()))?;
    let seed = Sha256::digest(&uki);

    let esp = out_dir.join(format!(".esp-{arch}.fat"));
    let esp_bytes = esp_size(uki.len() as u64);
    let boot_path = default_boot_path(arch);
    let config_paths: Vec<String> = options
        .esp_config
        .iter()
        .map(|(path, _)| format!("{}/{path}", kios_abi::image::ESP_CONFIG_DIR))
        .collect();
    let mut esp_files: Vec<(&str, &[u8])> = vec![(boot_path.as_str(), &uki)];
    esp_files.extend(
        config_paths
            .iter()
            .zip(&options.esp_config)
            .map(|(path, (_, contents))| (path.as_str(), contents.as_slice())),
    );
    with_step(
        format!("writing the EFI system partition ({esp_bytes} bytes, FAT32)"),
        || make_esp(&esp, esp_bytes, &esp_files, volume_id(&seed)),
    )?;
    drop(esp_files);
    drop(uki);
    let data = make_data_filesystem(out_dir, arch, options.data_bytes, &seed)?;

    let path = out_dir.join(DISK_FILE);
    let partitions = with_step(format!("writing {}", path.display()), || {
        write_gpt_disk(
            &path,
            derived_uuid(&seed, "disk"),
            &[
                esp_partition(&seed, esp_bytes, &esp)?,
                data_partition_spec(&seed, options.data_bytes, &data)?,
            ],
        )
    })?;
    let (bytes, allocated_bytes) = finish_disk(&path, &[&esp, &data])?;
    Ok(DiskImage {
        arch,
        bytes,
        allocated_bytes,
        path,
        uki_bytes: std::fs::metadata(&uki_path)
            .with_context(|| format!("reading {}", uki_path.display()))?
            .len(),
        uki: uki_path,
        partitions,
    })
}

/// Makes the empty ext4 data partition's filesystem, a scratch file in
/// `out_dir` (see [`finish_disk`]), its UUID derived from `seed`.
pub fn make_data_filesystem(
    out_dir: &Path,
    arch: Arch,
    bytes: u64,
    seed: &[u8],
) -> Result<PathBuf> {
    let data = out_dir.join(format!(".data-{arch}.ext4"));
    with_step(
        format!("making the {} MiB ext4 data partition", bytes >> 20),
        || {
            make_ext4(
                &data,
                bytes,
                data_partition::NAME,
                derived_uuid(seed, "data filesystem"),
            )
        },
    )?;
    Ok(data)
}

/// The EFI system partition's entry, holding the FAT image `esp`.
pub fn esp_partition(seed: &[u8], bytes: u64, esp: &Path) -> Result<PartitionSpec> {
    Ok(PartitionSpec {
        name: ESP_NAME.into(),
        type_guid: parse_guid(ESP_TYPE_GUID)?,
        guid: derived_uuid(seed, "esp partition"),
        bytes,
        contents: PartitionContents::Image(esp.to_path_buf()),
    })
}

/// The data partition's entry, holding the ext4 image `data`.
pub fn data_partition_spec(seed: &[u8], bytes: u64, data: &Path) -> Result<PartitionSpec> {
    Ok(PartitionSpec {
        name: data_partition::NAME.into(),
        type_guid: parse_guid(data_partition::TYPE_GUID)?,
        guid: derived_uuid(seed, "data partition"),
        bytes,
        contents: PartitionContents::Image(data.to_path_buf()),
    })
}

/// Removes the filesystems' scratch files once they are copied into the
/// disk at `path`; returns the disk's size and what the sparse file takes.
pub fn finish_disk(path: &Path, scratch: &[&Path]) -> Result<(u64, u64)> {
    for file in scratch {
        std::fs::remove_file(file).with_context(|| format!("removing {}", file.display()))?;
    }
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((metadata.len(), metadata.blocks() * 512))
}

/// The VM whose UEFI firmware boots `disk`, sized like every node VM.
pub fn firmware_vm_config(disk: &DiskImage, icount: bool) -> VmConfig {
    node_firmware_vm(disk.arch, &disk.path, icount)
}

/// A node VM (its memory) whose UEFI firmware boots the disk at `path`.
pub fn node_firmware_vm(arch: Arch, path: &Path, icount: bool) -> VmConfig {
    VmConfig {
        memory_mib: NODE_MEMORY_MIB,
        icount,
        ..VmConfig::firmware_boot(arch, path.to_path_buf())
    }
}

/// Room for the unified kernel image and a second one beside it (an
/// update written next to the running kernel), as a whole number of MiB.
fn esp_size(uki_bytes: u64) -> u64 {
    (2 * uki_bytes)
        .div_ceil(ALIGNMENT)
        .max(MIN_ESP_BYTES / ALIGNMENT)
        * ALIGNMENT
}

/// Writes a GPT disk at `path` (replacing it) holding `partitions` in
/// order, each on a MiB boundary, with a protective MBR and the backup
/// table in the last MiB. The file is sparse where partitions are empty.
pub fn write_gpt_disk(
    path: &Path,
    disk_guid: Uuid,
    partitions: &[PartitionSpec],
) -> Result<Vec<PlacedPartition>> {
    let mut placed = Vec::new();
    let mut offset = ALIGNMENT;
    for (index, spec) in partitions.iter().enumerate() {
        ensure!(spec.bytes > 0, "partition {} is empty", spec.name);
        let bytes = spec.bytes.div_ceil(ALIGNMENT) * ALIGNMENT;
        placed.push(PlacedPartition {
            name: spec.name.clone(),
            number: u32::try_from(index + 1).context("too many partitions")?,
            offset,
            bytes,
        });
        offset += bytes;
    }
    // The last MiB holds the backup partition entries and header.
    let disk_bytes = offset + ALIGNMENT;

    let partial = path.with_extension("partial");
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    file.set_len(disk_bytes)
        .with_context(|| format!("sizing {}", partial.display()))?;
    let sectors_after_mbr = u32::try_from(disk_bytes / SECTOR_BYTES - 1).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(sectors_after_mbr)
        .overwrite_lba0(&mut file)
        .context("writing the protective MBR")?;
    let mut table = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(file, Some(disk_guid))
        .context("starting the partition table")?;
    let entries: BTreeMap<u32, gpt::partition::Partition> = partitions
        .iter()
        .zip(&placed)
        .map(|(spec, place)| {
            (
                place.number,
                gpt::partition::Partition {
                    part_type_guid: gpt::partition_types::Type::from(spec.type_guid),
                    part_guid: spec.guid,
                    first_lba: place.offset / SECTOR_BYTES,
                    last_lba: (place.offset + place.bytes) / SECTOR_BYTES - 1,
                    flags: 0,
                    name: spec.name.clone(),
                },
            )
        })
        .collect();
    table
        .update_partitions(entries)
        .context("filling the partition table")?;
    let file = table.write().context("writing the partition table")?;

    for (spec, place) in partitions.iter().zip(&placed) {
        match &spec.contents {
            PartitionContents::Empty => {}
            PartitionContents::Bytes(bytes) => {
                ensure!(
                    bytes.len() as u64 <= place.bytes,
                    "{} bytes do not fit partition {}",
                    bytes.len(),
                    spec.name
                );
                file.write_all_at(bytes, place.offset)
                    .with_context(|| format!("writing partition {}", spec.name))?;
            }
            PartitionContents::Image(image) => {
                copy_sparse(image, &file, place.offset, place.bytes).with_context(|| {
                    format!("copying {} into partition {}", image.display(), spec.name)
                })?;
            }
        }
    }
    std::fs::rename(&partial, path)
        .with_context(|| format!("moving {} into place", path.display()))?;
    Ok(placed)
}

/// Copies `image` into `disk` at `offset`, leaving all-zero chunks as holes.
fn copy_sparse(image: &Path, disk: &File, offset: u64, room: u64) -> Result<()> {
    let mut source = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let length = source
        .metadata()
        .with_context(|| format!("reading {}", image.display()))?
        .len();
    ensure!(
        length <= room,
        "{} ({length} bytes) is larger than its partition ({room} bytes)",
        image.display()
    );
    let mut chunk = vec![0u8; COPY_CHUNK];
    let mut at = offset;
    loop {
        let filled = read_chunk(&mut source, &mut chunk)
            .with_context(|| format!("reading {}", image.display()))?;
        if filled == 0 {
            return Ok(());
        }
        if chunk[..filled].iter().any(|&byte| byte != 0) {
            disk.write_all_at(&chunk[..filled], at)?;
        }
        at += filled as u64;
    }
}

/// Fills `chunk` as far as the file allows; 0 at its end.
fn read_chunk(source: &mut File, chunk: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < chunk.len() {
        match source.read(&mut chunk[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// Makes an empty ext4 filesystem of `bytes` in a new sparse file at
/// `path`, reproducibly: fixed UUID and directory hash seed, the FAT
/// epoch as every timestamp, root owned by root whoever builds it.
pub fn make_ext4(path: &Path, bytes: u64, label: &str, uuid: Uuid) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(bytes)
        .with_context(|| format!("sizing {}", path.display()))?;
    drop(file);
    let hash_seed = derived_uuid(uuid.as_bytes(), "directory hash seed");
    let epoch = FAT_EPOCH_UNIX_SECONDS.to_string();
    output_of(
        Command::new("mkfs.ext4")
            .env("E2FSPROGS_FAKE_TIME", &epoch)
            .env("SOURCE_DATE_EPOCH", &epoch)
            .args(["-q", "-F", "-L", label, "-U", &uuid.to_string()])
            // The new file reads as zeros, so nothing needs zeroing now or at first mount.
            .arg("-E")
            .arg(format!(
                "hash_seed={hash_seed},root_owner=0:0,assume_storage_prezeroed=1"
            ))
            .arg(path),
    )
    .with_context(|| format!("making ext4 in {}", path.display()))?;
    Ok(())
}

/// Makes the EFI system partition's FAT32 (see [`make_fat`]).
pub fn make_esp(path: &Path, bytes: u64, files: &[(&str, &[u8])], volume_id: u32) -> Result<()> {
    make_fat(path, bytes, files, volume_id, *b"KIOS-ESP   ")
}

/// Makes a FAT32 filesystem of `bytes` labelled `label` in a new file at
/// `path` holding `files` (path with `/`, contents), creating their directories.
pub fn make_fat(
    path: &Path,
    bytes: u64,
    files: &[(&str, &[u8])],
    volume_id: u32,
    label: [u8; 11],
) -> Result<()> {
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_len(bytes)
        .with_context(|| format!("sizing {}", path.display()))?;
    fatfs::format_volume(
        &mut file,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .volume_id(volume_id)
            .volume_label(label),
    )
    .with_context(|| format!("formatting {} as FAT32", path.display()))?;
    let filesystem =
        fatfs::FileSystem::new(file, fatfs::FsOptions::new().time_provider(&FAT_EPOCH))
            .with_context(|| format!("opening the FAT in {}", path.display()))?;
    for (file_path, contents) in files {
        let (directories, name) = file_path.rsplit_once('/').unwrap_or(("", file_path));
        let mut directory = filesystem.root_dir();
        for component in directories.split('/').filter(|part| !part.is_empty()) {
            directory = directory
                .create_dir(component)
                .with_context(|| format!("creating {component} for {file_path}"))?;
        }
        let mut written = directory
            .create_file(name)
            .with_context(|| format!("creating {file_path}"))?;
        written
            .truncate()
            .and_then(|()| written.write_all(contents))
            .and_then(|()| written.flush())
            .with_context(|| format!("writing {file_path}"))?;
    }
    filesystem
        .unmount()
        .with_context(|| format!("closing the FAT in {}", path.display()))
}

/// Every FAT timestamp: the FAT epoch (see [`FAT_EPOCH_UNIX_SECONDS`]).
#[derive(Debug)]
struct FatEpoch;

const FAT_EPOCH_DATE: fatfs::Date = fatfs::Date {
    year: 1980,
    month: 1,
    day: 1,
};

impl fatfs::TimeProvider for FatEpoch {
    fn get_current_date(&self) -> fatfs::Date {
        FAT_EPOCH_DATE
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: FAT_EPOCH_DATE,
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FAT_EPOCH: FatEpoch = FatEpoch;

/// A random-format (v4) UUID derived from `seed` and what it is for, so
/// the same image gets the same identifiers and different ones differ.
pub fn derived_uuid(seed: &[u8], purpose: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(seed)
        .chain_update(purpose.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

pub fn volume_id(seed: &[u8]) -> u32 {
    let bytes = derived_uuid(seed, "esp volume id").into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

pub fn parse_guid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).with_context(|| format!("`{text}` is not a GUID"))
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
