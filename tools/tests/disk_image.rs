//! The node's disk image read back with independent readers: the GPT
//! with the `gpt` crate (CRCs checked), the EFI system partition with
//! `fatfs`, the unified kernel image's sections with goblin, the data
//! partition with `e2fsck`; and two builds of the same image must be
//! identical byte for byte. No VM: a small initramfs stands in for the
//! node's (the disk never boots here; tools/tests/e2e_disk.rs boots one).
//!
//! Ignored by default: it fetches Debian's kernel and systemd-boot-efi
//! through apt; `cargo kios test` runs it.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use goblin::pe::header::Header;
use kios_abi::data_partition;
use kios_tools::components::bom::Bom;
use kios_tools::components::node::pinned_kernel;
use kios_tools::host::arch::Arch;
use kios_tools::host::fs::sha256_file;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::disk::{
    build_disk_image, parse_guid, DiskImage, DiskOptions, ESP_NAME, ESP_TYPE_GUID,
};
use kios_tools::image::initramfs::{Compression, Initramfs};
use kios_tools::image::node_image::NodeImage;
use kios_tools::image::uki::default_boot_path;
use kios_tools::vm::qemu::{kernel_command_line, ConsoleVerbosity};

const MIB: u64 = 1 << 20;
const DATA_BYTES: u64 = 64 * MIB;

fn fresh_dir(name: &str) -> Result<PathBuf> {
    let dir = Workspace::locate()?.output_dir()?.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The pinned kernel with a one-file initramfs, as the disk builder sees a node image.
fn small_node_image(workspace: &Workspace, arch: Arch, dir: &Path) -> Result<NodeImage> {
    let (kernel, _) = pinned_kernel(&Bom::of(workspace)?, arch)?;
    let initrd = dir.join("small.cpio");
    let mut image = Initramfs::new();
    image.file("/init-stand-in", 0o755, b"not booted in this test".to_vec());
    image.write_stored(&initrd, Compression::None)?;
    Ok(NodeImage {
        arch,
        kernel,
        initrd,
        root_image: None,
        init_bytes: 0,
        parts: Vec::new(),
    })
}

fn partition_bytes(disk: &Path, first_lba: u64, last_lba: u64) -> Result<Vec<u8>> {
    let mut file = std::fs::File::open(disk)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(first_lba * 512))?;
    let mut bytes = vec![0u8; ((last_lba + 1 - first_lba) * 512) as usize];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The named PE section's contents in a unified kernel image.
fn section<'a>(uki: &'a [u8], name: &str) -> Result<&'a [u8]> {
    let header = Header::parse(uki)?;
    let mut offset = header.dos_header.pe_pointer as usize
        + 24
        + usize::from(header.coff_header.size_of_optional_header);
    let sections = header.coff_header.sections(uki, &mut offset)?;
    let found = sections
        .iter()
        .find(|section| section.name().ok() == Some(name))
        .with_context(|| format!("no {name} section"))?;
    let start = found.pointer_to_raw_data as usize;
    Ok(&uki[start..start + found.virtual_size as usize])
}

fn check_disk(disk: &DiskImage, image: &NodeImage) -> Result<()> {
    let arch = image.arch;
    ensure!(
        disk.allocated_bytes < disk.bytes / 2,
        "the disk is not sparse: {} of {} bytes allocated",
        disk.allocated_bytes,
        disk.bytes
    );
    let raw = std::fs::read(&disk.path)?;
    ensure!(
        raw[510..512] == [0x55, 0xaa] && raw[450] == 0xee,
        "no protective MBR"
    );

    let table = gpt::GptConfig::new()
        .only_valid_headers(true)
        .open(&disk.path)
        .context("reading the GPT (both headers and CRCs must be valid)")?;
    let partitions: Vec<_> = table.partitions().values().collect();
    ensure!(partitions.len() == 2, "partitions: {partitions:?}");
    let (esp, data) = (partitions[0], partitions[1]);
    ensure!(esp.name == ESP_NAME && esp.part_type_guid.guid == parse_guid(ESP_TYPE_GUID)?);
    ensure!(
        data.name == data_partition::NAME
            && data.part_type_guid.guid == parse_guid(data_partition::TYPE_GUID)?,
        "data partition: {data:?}"
    );
    ensure!(
        esp.first_lba % 2048 == 0 && data.first_lba % 2048 == 0,
        "not MiB-aligned"
    );
    ensure!((data.last_lba + 1 - data.first_lba) * 512 == DATA_BYTES);

    let uki = std::fs::read(&disk.uki)?;
    let fat = fatfs::FileSystem::new(
        Cursor::new(partition_bytes(&disk.path, esp.first_lba, esp.last_lba)?),
        fatfs::FsOptions::new(),
    )?;
    ensure!(fat.fat_type() == fatfs::FatType::Fat32);
    let mut on_esp = Vec::new();
    fat.root_dir()
        .open_file(&default_boot_path(arch))?
        .read_to_end(&mut on_esp)?;
    ensure!(
        on_esp == uki,
        "{} differs from the UKI",
        default_boot_path(arch)
    );

    ensure!(
        section(&uki, ".cmdline")? == kernel_command_line(arch, ConsoleVerbosity::Quiet).as_bytes()
    );
    ensure!(section(&uki, ".initrd")? == std::fs::read(&image.initrd)?.as_slice());
    ensure!(section(&uki, ".linux")? == std::fs::read(&image.kernel)?.as_slice());
    ensure!(std::str::from_utf8(section(&uki, ".osrel")?)?.contains("ID=kios"));

    let ext4 = disk.path.with_file_name("data.ext4");
    std::fs::write(
        &ext4,
        partition_bytes(&disk.path, data.first_lba, data.last_lba)?,
    )?;
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&ext4)
        .output()?;
    ensure!(
        fsck.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let label = Command::new("e2label").arg(&ext4).output()?;
    ensure!(String::from_utf8_lossy(&label.stdout).trim() == data_partition::NAME);
    Ok(())
}

fn disk_reads_back_and_repeats(arch: Arch) -> Result<()> {
    let workspace = Workspace::locate()?;
    let options = DiskOptions {
        data_bytes: DATA_BYTES,
        ..DiskOptions::default()
    };
    let mut sha256s = Vec::new();
    for build in ["a", "b"] {
        let dir = fresh_dir(&format!("disk-image-test-{arch}-{build}"))?;
        let image = small_node_image(&workspace, arch, &dir)?;
        let disk = build_disk_image(&Bom::of(&workspace)?, &image, &options, &dir)?;
        check_disk(&disk, &image)
            .with_context(|| format!("{arch} disk {}", disk.path.display()))?;
        sha256s.push(sha256_file(&disk.path)?);
    }
    ensure!(
        sha256s[0] == sha256s[1],
        "two builds of the same {arch} image differ: {sha256s:?}"
    );
    Ok(())
}

#[test]
#[ignore = "fetches Debian's kernel and systemd-boot-efi: run by cargo kios test"]
fn amd64_disk_reads_back_and_repeats() -> Result<()> {
    disk_reads_back_and_repeats(Arch::Amd64)
}

#[test]
#[ignore = "fetches Debian's kernel and systemd-boot-efi: run by cargo kios test"]
fn arm64_disk_reads_back_and_repeats() -> Result<()> {
    disk_reads_back_and_repeats(Arch::Arm64)
}
