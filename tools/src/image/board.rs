//! Boards booted by their own firmware rather than UEFI, and the SD card
//! image such a firmware boots: today the Raspberry Pi 4 Model B.
//!
//! The card (`sdcard.img`) is a GPT with a hybrid MBR. The Pi's firmware
//! reads the MBR, whose first entry is the FAT32 boot partition (type
//! 0x0c); Linux, seeing the MBR's 0xEE entry at sector 1, reads the GPT,
//! where the boot partition has the EFI system partition type (so the
//! init's first boot takes `kios/config/` from it, as from a disk's ESP)
//! and the data partition the kiOS type. The init finds the data
//! partition by its GPT type as on any disk: the card costs PID 1 no
//! second partition-table parser. Chosen over a plain MBR card, which
//! would need one in the init (its size budget has 376 bytes left on arm64).
//!
//! QEMU's SD card model takes only power-of-two sizes, so the card is one
//! and the data partition fills what the boot partition leaves. Like the
//! disk image, every identifier derives from the contents' sha256 and
//! every timestamp is the FAT epoch: the same build writes the same card.

use std::io::{Cursor, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::components::bom::{fetch_component, Bom};
use crate::components::node::{NodeComponents, NodeKernel};
use crate::host::arch::Arch;
use crate::host::progress::with_step;
use crate::image::disk::{
    data_partition_spec, derived_uuid, esp_partition, finish_disk, make_data_filesystem, make_fat,
    write_gpt_disk, PlacedPartition, ALIGNMENT,
};
use crate::image::node_image::NodeImage;
use crate::kernel::build::KernelImage;

/// A board kiOS builds a card for (`--board`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Board {
    /// Raspberry Pi 4 Model B (BCM2711, 1 to 8 GB); QEMU's `raspi4b`.
    Rpi4,
}

/// The BOM component holding the Pi's boot firmware.
pub const FIRMWARE_COMPONENT: &str = "raspi-firmware";
/// Where Debian's raspi-firmware package keeps the firmware files.
const FIRMWARE_DIR_IN_PACKAGE: &str = "usr/lib/raspi-firmware";
/// Its licence, which travels with the firmware on the card.
const FIRMWARE_LICENCE_IN_PACKAGE: &str = "usr/share/doc/raspi-firmware/copyright";
/// The card image's file name in the output directory.
pub const CARD_FILE: &str = "sdcard.img";
/// The boot partition: the firmware, the kernel, its device tree and the
/// initramfs (about 50 MB today), with room for a bigger initramfs.
const BOOT_PARTITION_BYTES: u64 = 256 << 20;
const BOOT_VOLUME_LABEL: [u8; 11] = *b"KIOS-BOOT  ";
const SECTOR_BYTES: u64 = 512;

impl Board {
    pub fn name(self) -> &'static str {
        match self {
            Board::Rpi4 => "rpi4",
        }
    }

    pub fn arch(self) -> Arch {
        match self {
            Board::Rpi4 => Arch::Arm64,
        }
    }

    /// QEMU's model of the board.
    pub fn qemu_machine(self) -> &'static str {
        match self {
            Board::Rpi4 => "raspi4b",
        }
    }

    /// The model's memory: QEMU's raspi4b is the 2 GB board (rev 1.5) and
    /// takes no other size.
    pub fn memory_mib(self) -> u32 {
        match self {
            Board::Rpi4 => 2048,
        }
    }

    pub fn cpus(self) -> u32 {
        match self {
            Board::Rpi4 => 4,
        }
    }

    /// The console a QEMU boot appends to the card's command line (the last
    /// `console=` is /dev/console): the PL011, QEMU's first serial port.
    /// The card's console is the mini UART, which the model has too; but
    /// opening it as /dev/console stalled one boot in three under
    /// `-icount` (an interrupt storm on its shared line as the 8250 driver
    /// requested it), so the model's boots print on the PL011, which the
    /// Pi 4 wires to its Bluetooth chip and QEMU to the serial port.
    pub fn qemu_console(self) -> &'static str {
        match self {
            Board::Rpi4 => "console=ttyAMA0,115200",
        }
    }

    /// The QEMU bus the card goes on: the model's first SDHCI on the system
    /// bus is the EMMC2, where a Pi 4's card slot is wired (`-drive if=sd`
    /// puts a card behind the legacy EMMC, the Pi 4's Wi-Fi chip's).
    pub fn qemu_card_bus(self) -> &'static str {
        match self {
            Board::Rpi4 => "/generic-sdhci/sd-bus",
        }
    }

    /// The device tree, built with the kiOS kernel.
    pub fn device_tree(self) -> &'static str {
        match self {
            Board::Rpi4 => "bcm2711-rpi-4-b.dtb",
        }
    }

    /// The firmware files the board's boot ROM and firmware read: the
    /// Pi 4's VideoCore firmware and its memory split, in full and cut-down
    /// builds (`gpu_mem=16` selects the cut-down one).
    fn firmware_files(self) -> &'static [&'static str] {
        match self {
            Board::Rpi4 => &["start4.elf", "fixup4.dat", "start4cd.elf", "fixup4cd.dat"],
        }
    }

    /// `config.txt`, shared with Buildroot's board files.
    pub fn config_txt(self) -> &'static str {
        match self {
            Board::Rpi4 => include_str!("../../../buildroot-overlay/board/kios/rpi4/config.txt"),
        }
    }

    /// `cmdline.txt`, the kernel command line the firmware passes (one line).
    pub fn cmdline_txt(self) -> &'static str {
        match self {
            Board::Rpi4 => include_str!("../../../buildroot-overlay/board/kios/rpi4/cmdline.txt"),
        }
    }
}

/// The boot partition's file names config.txt refers to.
pub const KERNEL_FILE: &str = "Image";
pub const INITRAMFS_FILE: &str = "initramfs";
pub const CONFIG_FILE: &str = "config.txt";
pub const CMDLINE_FILE: &str = "cmdline.txt";
const LICENCE_FILE: &str = "LICENCE.raspi-firmware";

/// The kiOS kernel of `components`, which a board's card boots: it has the
/// board's drivers and device tree; Debian's cloud kernel has neither.
pub fn board_kernel(components: &NodeComponents, board: Board) -> Result<&KernelImage> {
    match &components.kernel {
        NodeKernel::Kios(kernel) => Ok(kernel),
        NodeKernel::Debian { .. } => bail!(
            "the {} card boots the kiOS kernel, which has the board's drivers built in",
            board.name()
        ),
    }
}

/// What `build_card` takes beyond the node image.
#[derive(Clone, Debug, Default)]
pub struct CardOptions {
    /// The least the data partition gets; it fills the card up to the next
    /// power of two.
    pub min_data_bytes: u64,
    /// First-boot configuration under the boot partition's `kios/config/`
    /// (`kios_abi::image::ESP_CONFIG_DIR`), as on a disk's ESP.
    pub esp_config: Vec<(String, Vec<u8>)>,
}

/// One file on the boot partition, for the size report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootFile {
    pub name: String,
    pub bytes: u64,
}

/// A written card image, with the boot files read back from it.
#[derive(Clone, Debug, Serialize)]
pub struct BoardCard {
    pub board: Board,
    pub image: PathBuf,
    pub bytes: u64,
    /// What the sparse file takes on the host's disk.
    pub allocated_bytes: u64,
    pub partitions: Vec<PlacedPartition>,
    pub boot_files: Vec<BootFile>,
    /// The kernel, device tree and initramfs as the card holds them
    /// (read back from its FAT), and its command line: what a QEMU boot
    /// of the board loads.
    pub kernel: PathBuf,
    pub device_tree: PathBuf,
    pub initramfs: PathBuf,
    pub command_line: String,
}

/// Writes `out_dir/sdcard.img` for `board` from `image`, booting `kernel`.
pub fn build_card(
    board: Board,
    bom: &Bom,
    image: &NodeImage,
    kernel: &KernelImage,
    options: &CardOptions,
    out_dir: &Path,
) -> Result<BoardCard> {
    ensure!(
        image.arch == board.arch(),
        "the {} card needs an {} node image, not {}",
        board.name(),
        board.arch(),
        image.arch
    );
    let firmware = fetch_component(bom, FIRMWARE_COMPONENT, board.arch())?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for name in board.firmware_files() {
        files.push((
            (*name).to_string(),
            read(&firmware.join(FIRMWARE_DIR_IN_PACKAGE).join(name))?,
        ));
    }
    files.push((
        LICENCE_FILE.to_string(),
        read(&firmware.join(FIRMWARE_LICENCE_IN_PACKAGE))?,
    ));
    files.push((CONFIG_FILE.into(), board.config_txt().as_bytes().to_vec()));
    files.push((CMDLINE_FILE.into(), board.cmdline_txt().as_bytes().to_vec()));
    files.push((KERNEL_FILE.into(), read(&kernel.path)?));
    files.push((
        board.device_tree().into(),
        read(&kernel.device_tree(board.device_tree())?)?,
    ));
    files.push((INITRAMFS_FILE.into(), read(&image.initrd)?));
    for (path, contents) in &options.esp_config {
        files.push((
            format!("{}/{path}", kios_abi::image::ESP_CONFIG_DIR),
            contents.clone(),
        ));
    }
    let boot_bytes: u64 = files
        .iter()
        .map(|(_, contents)| contents.len() as u64)
        .sum();
    ensure!(
        boot_bytes < BOOT_PARTITION_BYTES * 9 / 10,
        "the {} boot files take {boot_bytes} bytes: too many for the {} MiB boot partition",
        board.name(),
        BOOT_PARTITION_BYTES >> 20
    );
    // Every identifier on the card follows from what it boots.
    let seed = files
        .iter()
        .fold(Sha256::new(), |hash, (name, contents)| {
            hash.chain_update(name.as_bytes()).chain_update(contents)
        })
        .finalize();

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let card_bytes = card_size(BOOT_PARTITION_BYTES, options.min_data_bytes);
    let data_bytes = card_bytes - BOOT_PARTITION_BYTES - 2 * ALIGNMENT;
    let boot_fat = out_dir.join(format!(".boot-{}.fat", board.name()));
    let named: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, contents)| (name.as_str(), contents.as_slice()))
        .collect();
    with_step(
        format!("making the {} boot partition (FAT32)", board.name()),
        || {
            make_fat(
                &boot_fat,
                BOOT_PARTITION_BYTES,
                &named,
                crate::image::disk::volume_id(&seed),
                BOOT_VOLUME_LABEL,
            )
        },
    )?;
    let data = make_data_filesystem(out_dir, board.arch(), data_bytes, &seed)?;
    let path = out_dir.join(CARD_FILE);
    let partitions = with_step(format!("writing {}", path.display()), || {
        let placed = write_gpt_disk(
            &path,
            derived_uuid(&seed, "card disk"),
            &[
                esp_partition(&seed, BOOT_PARTITION_BYTES, &boot_fat)?,
                data_partition_spec(&seed, data_bytes, &data)?,
            ],
        )?;
        write_hybrid_mbr(&path, &placed[0], derived_uuid(&seed, "mbr signature"))?;
        Ok(placed)
    })?;
    let (bytes, allocated_bytes) = finish_disk(&path, &[&boot_fat, &data])?;
    ensure!(
        bytes == card_bytes,
        "{} is {bytes} bytes, not the {card_bytes} planned",
        path.display()
    );
    let boot_dir = out_dir.join(format!("{}-boot", board.name()));
    let loaded = read_boot_files(&path, &partitions[0], &boot_dir, board)?;
    Ok(BoardCard {
        board,
        image: path,
        bytes,
        allocated_bytes,
        boot_files: files
            .iter()
            .map(|(name, contents)| BootFile {
                name: name.clone(),
                bytes: contents.len() as u64,
            })
            .collect(),
        partitions,
        kernel: loaded.kernel,
        device_tree: loaded.device_tree,
        initramfs: loaded.initramfs,
        command_line: loaded.command_line,
    })
}

/// The card's size: the first MiB (the tables), the boot partition, at
/// least `min_data_bytes` of data, the backup table's MiB, rounded up to a
/// power of two (QEMU's SD card model refuses other sizes).
fn card_size(boot_bytes: u64, min_data_bytes: u64) -> u64 {
    (2 * ALIGNMENT + boot_bytes + min_data_bytes.max(ALIGNMENT)).next_power_of_two()
}

/// One MBR partition entry (16 bytes, LBA addressing; the CHS fields say
/// "beyond CHS", as for any partition past 8 GB).
fn mbr_entry(bootable: bool, kind: u8, first_lba: u32, sectors: u32) -> [u8; 16] {
    let mut entry = [0u8; 16];
    entry[0] = if bootable { 0x80 } else { 0x00 };
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = kind;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&first_lba.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    entry
}

/// The MBR partition type of FAT32 with LBA addressing, what the Pi's
/// firmware looks for.
const MBR_FAT32_LBA: u8 = 0x0c;
/// The GPT protective entry's type.
const MBR_GPT_PROTECTIVE: u8 = 0xee;

/// The hybrid MBR's partition entries: the boot partition first (bootable,
/// FAT32 LBA) for the firmware, then the protective entry covering the
/// GPT's own sectors from sector 1, which tells Linux to read the GPT.
fn hybrid_mbr_entries(boot: &PlacedPartition) -> Result<[[u8; 16]; 2]> {
    let first = u32::try_from(boot.offset / SECTOR_BYTES).context("boot partition too far")?;
    let sectors = u32::try_from(boot.bytes / SECTOR_BYTES).context("boot partition too big")?;
    Ok([
        mbr_entry(true, MBR_FAT32_LBA, first, sectors),
        mbr_entry(false, MBR_GPT_PROTECTIVE, 1, first - 1),
    ])
}

/// Replaces the protective MBR `write_gpt_disk` wrote with the hybrid one.
fn write_hybrid_mbr(path: &Path, boot: &PlacedPartition, signature: uuid::Uuid) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut table = [0u8; 4 * 16];
    for (slot, entry) in hybrid_mbr_entries(boot)?.iter().enumerate() {
        table[slot * 16..][..16].copy_from_slice(entry);
    }
    // The disk signature some firmware and tools identify a card by.
    file.write_all_at(&signature.as_bytes()[..4], 0x1b8)
        .and_then(|()| file.write_all_at(&table, 0x1be))
        .and_then(|()| file.write_all_at(&[0x55, 0xaa], 0x1fe))
        .with_context(|| format!("writing the hybrid MBR of {}", path.display()))
}

/// What a board's firmware loads from the card, as files.
struct LoadedFiles {
    kernel: PathBuf,
    device_tree: PathBuf,
    initramfs: PathBuf,
    command_line: String,
}

/// Reads the kernel, device tree, initramfs and command line back from
/// the card's boot partition into `dir`: what a board's firmware would load.
fn read_boot_files(
    card: &Path,
    boot: &PlacedPartition,
    dir: &Path,
    board: Board,
) -> Result<LoadedFiles> {
    let file = std::fs::File::open(card).with_context(|| format!("opening {}", card.display()))?;
    let mut partition = vec![0u8; usize::try_from(boot.bytes).context("boot partition size")?];
    file.read_exact_at(&mut partition, boot.offset)
        .with_context(|| format!("reading the boot partition of {}", card.display()))?;
    let filesystem = fatfs::FileSystem::new(Cursor::new(partition), fatfs::FsOptions::new())
        .with_context(|| format!("opening the boot partition of {}", card.display()))?;
    let root = filesystem.root_dir();
    let read_file = |name: &str| -> Result<Vec<u8>> {
        let mut contents = Vec::new();
        root.open_file(name)
            .and_then(|mut opened| opened.read_to_end(&mut contents))
            .with_context(|| format!("reading {name} from {}", card.display()))?;
        Ok(contents)
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut extracted = Vec::new();
    for name in [KERNEL_FILE, board.device_tree(), INITRAMFS_FILE] {
        let path = dir.join(name);
        std::fs::write(&path, read_file(name)?)
            .with_context(|| format!("writing {}", path.display()))?;
        extracted.push(path);
    }
    let command_line = String::from_utf8(read_file(CMDLINE_FILE)?)
        .context("cmdline.txt is not UTF-8")?
        .trim()
        .to_string();
    if command_line.contains('\n') {
        bail!("cmdline.txt holds more than one line; the firmware reads one");
    }
    let [kernel, device_tree, initramfs] =
        <[PathBuf; 3]>::try_from(extracted).expect("three files were read");
    Ok(LoadedFiles {
        kernel,
        device_tree,
        initramfs,
        command_line,
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_is_a_power_of_two_with_room_for_the_data_asked_for() {
        assert_eq!(card_size(256 << 20, 1 << 30), 2 << 30);
        assert_eq!(card_size(256 << 20, 0), 512 << 20);
        // Exactly filling a power of two needs no more.
        assert_eq!(card_size(256 << 20, (1 << 30) - (258 << 20)), 1 << 30);
    }

    #[test]
    fn the_hybrid_mbr_lists_the_fat_partition_for_the_firmware_and_the_gpt_for_linux() {
        let boot = PlacedPartition {
            name: "esp".into(),
            number: 1,
            offset: 1 << 20,
            bytes: 256 << 20,
        };
        let [fat, protective] = hybrid_mbr_entries(&boot).unwrap();
        assert_eq!(fat[0], 0x80, "the FAT partition is the bootable one");
        assert_eq!(fat[4], 0x0c);
        assert_eq!(u32::from_le_bytes(fat[8..12].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(fat[12..16].try_into().unwrap()), 524_288);
        assert_eq!(protective[0], 0);
        assert_eq!(protective[4], 0xee);
        // Linux takes the GPT of a hybrid MBR only when the 0xEE entry starts at sector 1.
        assert_eq!(u32::from_le_bytes(protective[8..12].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(protective[12..16].try_into().unwrap()),
            2047
        );
    }

    #[test]
    fn config_txt_names_the_files_the_card_holds() {
        let config = Board::Rpi4.config_txt();
        assert!(
            config.contains(&format!("\nkernel={KERNEL_FILE}\n")),
            "{config}"
        );
        assert!(
            config.contains(&format!("\ndevice_tree={}\n", Board::Rpi4.device_tree())),
            "{config}"
        );
        assert!(
            config.contains(&format!("\ninitramfs {INITRAMFS_FILE} followkernel\n")),
            "{config}"
        );
        assert!(config.contains("\narm_64bit=1\n"), "{config}");
    }

    #[test]
    fn cmdline_txt_is_the_nodes_command_line_on_the_mini_uart() {
        let cmdline = Board::Rpi4.cmdline_txt();
        assert_eq!(cmdline.lines().count(), 1, "the firmware reads one line");
        let node = crate::vm::qemu::kernel_command_line(
            Arch::Arm64,
            crate::vm::qemu::ConsoleVerbosity::Quiet,
        );
        let (_, rest) = node.split_once(' ').unwrap();
        assert!(
            cmdline.trim().ends_with(rest),
            "cmdline.txt `{cmdline}` lost the node's `{rest}`"
        );
        assert!(cmdline.starts_with("console=ttyS1,115200 "), "{cmdline}");
    }
}
