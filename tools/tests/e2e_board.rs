//! End to end on QEMU's Raspberry Pi 4 Model B (`-M raspi4b`), from the
//! card `cargo kios build --board rpi4` writes:
//! - the card: a power-of-two image whose hybrid MBR lists the FAT boot
//!   partition first (bootable, 0x0c) for the Pi's firmware, whose GPT
//!   lists the boot partition as the ESP and the data partition by the
//!   kiOS type, and whose boot partition holds the firmware, config.txt,
//!   cmdline.txt and the files config.txt names; written twice from the
//!   same node image, it is the same bytes;
//! - the boot: the board model loads the kernel, device tree and initramfs
//!   read back from that boot partition with cmdline.txt's command line,
//!   the card in the EMMC2 slot (and the model's PL011 as the console:
//!   `Board::qemu_console`). The kernel runs on the Pi 4's device tree,
//!   the mini UART (the card's console) is there, the init mounts the card's data
//!   partition on /var, the probe pod (host network: the model has no
//!   Ethernet) runs and reports the node's memory, and the node powers off
//!   through the SoC's watchdog, which ends QEMU.
//!
//! Without `-icount` (nothing here is timed by the guest: the bench's
//! board scenario measures the timeline). Ignored by default because it
//! boots a VM; `cargo kios test` runs it.

use std::os::unix::fs::FileExt;
use std::time::Duration;

use anyhow::{Context, Result};
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::fs::sha256_file;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::board::{board_kernel, build_card, Board, BootFile, CardOptions};
use kios_tools::image::disk::DEFAULT_DATA_BYTES;
use kios_tools::image::node_image::{build_node_image, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::probe_pod::{memory_report, probe_pod_file};
use kios_tools::testing::standin_checks::{check_timeline, require_line, Check, CheckReport};
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions, VmConfig};
use kios_tools::vm::timeline::{Timeline, FIRST_POD_MARKER};

const BOARD: Board = Board::Rpi4;
/// Four emulated cores on the host's two, to a pod and back: minutes.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// The kernel's line naming the device tree's model.
const MACHINE_MODEL: &str = "Machine model: Raspberry Pi 4 Model B";
/// The mini UART, the card's console, registering (8250_bcm2835aux).
const MINI_UART: &str = "ttyS1 at MMIO 0xfe215040";
/// The init's line (init/src/init/boot.rs) for the card's data partition.
const DATA_MOUNTED: &str = "data partition /dev/mmcblk0p2 mounted on /var";
const POWER_OFF: &str = "kios: power off";

#[test]
#[ignore = "boots QEMU's raspi4b: run by cargo kios test"]
fn the_rpi4_card_boots_on_the_board_model_to_a_running_pod() -> Result<()> {
    let workspace = Workspace::locate()?;
    let out = workspace.output_dir()?.join("e2e-board-rpi4");
    let components = NodeComponents::resolve(
        &workspace,
        BOARD.arch(),
        OciRuntime::Runc,
        KernelChoice::Kios,
    )?;
    let kernel = board_kernel(&components, BOARD)?;
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            extra_files: vec![probe_pod_file()],
            ..ImageOptions::default()
        },
        &out.join("image"),
    )?;
    let options = CardOptions {
        min_data_bytes: DEFAULT_DATA_BYTES,
        esp_config: Vec::new(),
    };
    let again = build_card(
        BOARD,
        &components.bom,
        &image,
        kernel,
        &options,
        &out.join("again"),
    )?;
    let card = build_card(BOARD, &components.bom, &image, kernel, &options, &out)?;
    let card_checks = CheckReport {
        checks: vec![
            Check {
                name: "the same node image gives the same card, byte for byte",
                outcome: same_file(&card.image, &again.image),
            },
            Check {
                name: "the card is a power of two (QEMU's SD model) of at least 1 GiB of data",
                outcome: expect(
                    card.bytes.is_power_of_two() && card.bytes > DEFAULT_DATA_BYTES,
                    format!("{} bytes", card.bytes),
                ),
            },
            Check {
                name: "hybrid MBR: the boot partition first, bootable FAT32 (LBA), then the GPT's",
                outcome: hybrid_mbr(&card.image, card.partitions[0].offset),
            },
            Check {
                name: "GPT: the boot partition as the ESP, the data partition by the kiOS type",
                outcome: gpt_types(&card.image),
            },
            Check {
                name: "the boot partition holds the firmware, its configuration and what config.txt names",
                outcome: boot_files(&card.boot_files),
            },
        ],
    };
    print!("{card_checks}");
    std::fs::remove_file(&again.image).context("removing the second card")?;

    let config = VmConfig {
        icount: false,
        ..VmConfig::board_boot(BOARD, &card)
    };
    let run = run_vm(
        &config,
        RunOptions {
            timeout: BOOT_TIMEOUT,
            echo: true,
        },
        |_| LineVerdict::Continue,
    )?;
    let console = &run.console;
    let timeline = Timeline::from_console(console);
    print!("{}", timeline.table());
    let text = console.texts().collect::<Vec<_>>().join("\n");
    let memory = memory_report(&text);
    if let Some(memory) = &memory {
        print!("{}", memory.table());
    }
    let boot_checks = CheckReport {
        checks: vec![
            Check {
                name: "the kernel runs on the Pi 4's device tree",
                outcome: require_line(console, MACHINE_MODEL),
            },
            Check {
                name: "the mini UART, the card's console, is there as ttyS1",
                outcome: require_line(console, MINI_UART),
            },
            Check {
                name: "the init mounts the card's data partition on /var",
                outcome: require_line(console, DATA_MOUNTED),
            },
            Check {
                name: "the probe pod runs",
                outcome: require_line(console, FIRST_POD_MARKER),
            },
            Check {
                name: "every boot phase is on the console",
                outcome: check_timeline(&timeline),
            },
            Check {
                name: "the probe reports the node's memory and its three services",
                outcome: expect(
                    memory.as_ref().is_some_and(|memory| {
                        memory.mem_available_kib > 0 && memory.services_rss_kib.len() == 3
                    }),
                    format!("{memory:?}"),
                ),
            },
            Check {
                name: "the node powers off and QEMU exits",
                outcome: require_line(console, POWER_OFF).and(expect(
                    run.status.success() && !run.stopped_early,
                    format!("QEMU: {}", run.status),
                )),
            },
        ],
    };
    print!("{boot_checks}");
    card_checks.into_result()?;
    boot_checks.into_result()
}

fn expect(holds: bool, otherwise: String) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(otherwise)
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> Result<(), String> {
    let hash = |path| sha256_file(path).map_err(|error| format!("{error:#}"));
    let (first, second) = (hash(a)?, hash(b)?);
    expect(first == second, format!("sha256 {first} and {second}"))
}

fn read_at(path: &std::path::Path, offset: u64, bytes: usize) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let mut buffer = vec![0u8; bytes];
    file.read_exact_at(&mut buffer, offset)
        .map_err(|error| error.to_string())?;
    Ok(buffer)
}

fn hybrid_mbr(card: &std::path::Path, boot_offset: u64) -> Result<(), String> {
    let mbr = read_at(card, 0, 512)?;
    let entry = |index: usize| &mbr[0x1be + 16 * index..][..16];
    let lba = |entry: &[u8]| u32::from_le_bytes(entry[8..12].try_into().unwrap());
    let (boot, protective) = (entry(0), entry(1));
    expect(
        mbr[510..] == [0x55, 0xaa]
            && boot[0] == 0x80
            && boot[4] == 0x0c
            && u64::from(lba(boot)) * 512 == boot_offset
            && protective[4] == 0xee
            && lba(protective) == 1
            && entry(2)[4] == 0
            && entry(3)[4] == 0,
        format!("MBR entries {:02x?} {:02x?}", boot, protective),
    )
}

fn gpt_types(card: &std::path::Path) -> Result<(), String> {
    let disk = gpt::GptConfig::new()
        .writable(false)
        .open(card)
        .map_err(|error| error.to_string())?;
    let types: Vec<String> = disk
        .partitions()
        .values()
        .map(|partition| partition.part_type_guid.guid.to_string().to_lowercase())
        .collect();
    expect(
        types
            == [
                kios_abi::boot_slots::ESP_TYPE_GUID.to_lowercase(),
                kios_abi::data_partition::TYPE_GUID.to_lowercase(),
            ],
        format!("partition types {types:?}"),
    )
}

fn boot_files(files: &[BootFile]) -> Result<(), String> {
    let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    let config = BOARD.config_txt();
    let mut missing: Vec<String> = Vec::new();
    for name in [
        "start4.elf",
        "fixup4.dat",
        "start4cd.elf",
        "fixup4cd.dat",
        "config.txt",
        "cmdline.txt",
    ] {
        if !names.contains(&name) {
            missing.push(name.into());
        }
    }
    // What config.txt names must be there: kernel=, device_tree= and the initramfs line.
    for line in config.lines() {
        let named = line
            .strip_prefix("kernel=")
            .or_else(|| line.strip_prefix("device_tree="))
            .or_else(|| {
                line.strip_prefix("initramfs ")
                    .and_then(|rest| rest.split(' ').next())
            });
        if let Some(name) = named {
            if !names.contains(&name) {
                missing.push(format!("{name} (named by config.txt)"));
            }
        }
    }
    let empty: Vec<&str> = files
        .iter()
        .filter(|file| file.bytes == 0)
        .map(|file| file.name.as_str())
        .collect();
    expect(
        missing.is_empty() && empty.is_empty(),
        format!("missing {missing:?}, empty {empty:?}; the card holds {names:?}"),
    )
}
