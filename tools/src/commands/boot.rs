//! `kios boot`: build the node image (with the probe pod), or take the
//! artifacts `kios build` wrote, boot it once in QEMU and report the boot
//! timeline, as a table or as JSON.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use serde::Serialize;

use crate::commands::build::{config_overlay, read_config_dir, Manifest, DISK, INITRAMFS, KERNEL};
use crate::components::node::NodeComponents;
use crate::components::OciRuntime;
use crate::host::arch::Arch;
use crate::host::packages::{ensure_installed, qemu_packages};
use crate::host::progress::with_step;
use crate::host::workspace::Workspace;
use crate::image::board::{board_kernel, build_card, Board, CardOptions};
use crate::image::disk::{build_disk_image, firmware_vm_config, DiskOptions, DEFAULT_DATA_BYTES};
use crate::image::node_image::{
    build_node_image, vm_config, ImageOptions, InitChoice, NODE_MEMORY_MIB,
};
use crate::kernel::KernelChoice;
use crate::testing::probe_pod::{memory_report, probe_pod_file, MemoryReport};
use crate::vm::console::ConsoleLine;
use crate::vm::qemu::{run_vm, Accel, ConsoleVerbosity, LineVerdict, RunOptions, VmConfig, VmRun};
use crate::vm::timeline::Timeline;

/// `kios boot`'s own flags on top of what every node boot takes.
#[derive(Debug, clap::Args)]
pub struct BootCommand {
    #[command(flatten)]
    boot: BootArgs,
    /// Print the timeline as JSON (`phases_us`: µs since kernel start, guest clock).
    #[arg(long)]
    json: bool,
}

/// How to build and boot the node image (shared with `kios demo`).
#[derive(Debug, clap::Args)]
pub struct BootArgs {
    /// The node's arch.
    #[arg(long, value_enum, default_value_t = Arch::Amd64)]
    arch: Arch,
    /// Boot a board's QEMU model instead (rpi4: `-M raspi4b`), from the
    /// card `kios build --board` writes: the kernel, device tree,
    /// initramfs and command line its boot partition holds, the card in
    /// the card slot.
    #[arg(long, value_enum, conflicts_with_all = ["arch", "image", "disk", "kernel"])]
    board: Option<Board>,
    /// Boot what `cargo kios build --out DIR` wrote (DIR/manifest.json says
    /// its arch and kernel) instead of building the image.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["arch", "kernel", "compression", "oci_runtime"]
    )]
    image: Option<PathBuf>,
    /// Let guest time follow the host clock instead of QEMU's instruction count.
    #[arg(long)]
    no_icount: bool,
    /// tcg: emulated, instruction-counted (repeatable timelines); kvm: the
    /// host's CPU through /dev/kvm (`-cpu host`), fast but never instruction-counted.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// How the initramfs is stored (zstd: the smallest, see docs/measurements.md).
    #[arg(long, value_enum, default_value_t = crate::image::initramfs::Compression::default())]
    compression: crate::image::initramfs::Compression,
    /// The OCI runtime containerd runs containers with.
    #[arg(long, value_enum, default_value_t = OciRuntime::Runc)]
    oci_runtime: OciRuntime,
    /// Kill the VM if it has not powered off after this many seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    timeout: u64,
    /// Build the GPT disk image (with --image: take DIR/disk.img, left
    /// unchanged) and boot it under UEFI firmware (OVMF on amd64, AAVMF on
    /// arm64) instead of handing QEMU the kernel and initramfs.
    #[arg(long)]
    disk: bool,
    /// The kiOS kernel (everything built in; built on first use, then
    /// cached), or Debian's cloud kernel with modules.
    #[arg(long, value_enum, default_value_t = KernelChoice::Kios)]
    kernel: KernelChoice,
    /// What the serial console shows: quiet (the init and the timeline, as
    /// a node boots) or all (containerd's and the kubelet's lines too).
    /// A built disk image's console was chosen by `kios build --console`.
    #[arg(long, value_enum)]
    console: Option<ConsoleVerbosity>,
    /// Lay the files of DIR over the image's /etc, as `kios build --config` does.
    #[arg(long, value_name = "DIR", conflicts_with = "image")]
    config: Option<PathBuf>,
    /// With --disk or --board: the first-boot configuration on the EFI
    /// system partition (the card's boot partition), as `kios build
    /// --esp-config` writes it (each boot builds a fresh disk or card:
    /// every boot is a first boot).
    #[arg(long, value_name = "DIR", conflicts_with = "image")]
    esp_config: Option<PathBuf>,
}

#[derive(Serialize)]
struct BootReport {
    arch: Arch,
    /// `debian` or `kios`.
    kernel: &'static str,
    /// `kernel` (QEMU loads kernel and initramfs), `uefi-disk`, or the
    /// board (`rpi4`: its model boots its card's files).
    boot: &'static str,
    accel: Accel,
    /// The `kios build` output booted, if not built for this boot.
    image: Option<PathBuf>,
    clock: String,
    phases_us: Timeline,
    /// Host seconds from QEMU's start to the kernel's banner: the
    /// firmware's share of a disk boot (the phases start at the kernel).
    kernel_banner_wall_seconds: Option<f64>,
    wall_seconds: f64,
    powered_off: bool,
    /// The probe pod's view of the node's memory once it runs.
    memory: Option<MemoryReport>,
}

/// The kernel's first console line.
const KERNEL_BANNER: &str = "Linux version ";

/// A finished node boot: what booted and what its guest clock followed.
pub struct NodeBoot {
    pub run: VmRun,
    pub clock: String,
    pub arch: Arch,
    pub kernel: KernelChoice,
}

/// Boots the node once (the image built with the probe pod, or
/// `args.image`'s artifacts), passing each console line to `on_line` and
/// echoing it to stdout when `echo` is set.
pub fn boot_node(
    args: &BootArgs,
    echo: bool,
    mut on_line: impl FnMut(&ConsoleLine),
) -> Result<NodeBoot> {
    let (config, kernel) = match &args.image {
        Some(dir) => built_image_config(args, dir)?,
        None => (new_image_config(args)?, args.kernel),
    };
    let config = VmConfig {
        accel: args.accel,
        console: args.console.unwrap_or_default(),
        ..config
    };
    let clock = config.clock();
    let options = RunOptions {
        timeout: Duration::from_secs(args.timeout),
        echo,
    };
    let mut boot = || {
        run_vm(&config, options, |line| {
            on_line(line);
            LineVerdict::Continue
        })
    };
    let run = if echo {
        boot()?
    } else {
        with_step(format!("booting the {} node in QEMU", config.arch), boot)?
    };
    Ok(NodeBoot {
        run,
        clock,
        arch: config.arch,
        kernel,
    })
}

/// QEMU's own complaint (a kernel it cannot load, a bad option) for an error message.
pub fn qemu_said(run: &VmRun) -> String {
    match run.qemu_stderr.trim() {
        "" => String::new(),
        stderr => format!("; QEMU said: {stderr}"),
    }
}

/// Fails before any build when QEMU or the accelerator cannot boot `arch`.
fn check_host(arch: Arch, accel: Accel) -> Result<()> {
    ensure_installed(qemu_packages(arch))?;
    accel.check(arch)
}

/// Builds the node image with the probe pod (and its disk with `--disk`,
/// its card with `--board`).
fn new_image_config(args: &BootArgs) -> Result<VmConfig> {
    if args.esp_config.is_some() && !args.disk && args.board.is_none() {
        bail!("--esp-config puts files on a disk's or a card's boot partition: give --disk or --board");
    }
    let arch = args.board.map_or(args.arch, Board::arch);
    check_host(arch, args.accel)?;
    let workspace = Workspace::locate()?;
    let out = workspace.output_dir()?.join("node");
    let components = NodeComponents::resolve(&workspace, arch, args.oci_runtime, args.kernel)?;
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            init: InitChoice::Kios,
            extra_files: {
                let mut files = match &args.config {
                    Some(dir) => config_overlay(dir, &read_config_dir(dir)?)?,
                    None => Vec::new(),
                };
                files.push(probe_pod_file());
                files
            },
            compression: args.compression,
            root_image: false,
        },
        &out,
    )?;
    if let Some(board) = args.board {
        let options = CardOptions {
            min_data_bytes: DEFAULT_DATA_BYTES,
            esp_config: match &args.esp_config {
                Some(dir) => read_config_dir(dir)?,
                None => Vec::new(),
            },
        };
        let kernel = board_kernel(&components, board)?;
        let card = build_card(board, &components.bom, &image, kernel, &options, &out)?;
        return Ok(VmConfig {
            icount: !args.no_icount,
            // The card's command line is quiet; a later loglevel= wins.
            extra_kernel_arguments: match args.console.unwrap_or_default() {
                ConsoleVerbosity::All => {
                    format!("loglevel={}", kios_abi::console::ALL_LOGLEVEL)
                }
                ConsoleVerbosity::Quiet => String::new(),
            },
            ..VmConfig::board_boot(board, &card)
        });
    }
    Ok(if args.disk {
        let options = DiskOptions {
            console: args.console.unwrap_or_default(),
            esp_config: match &args.esp_config {
                Some(dir) => read_config_dir(dir)?,
                None => Vec::new(),
            },
            ..DiskOptions::default()
        };
        let disk = build_disk_image(&components.bom, &image, &options, &out)?;
        firmware_vm_config(&disk, !args.no_icount)
    } else {
        vm_config(&image, !args.no_icount)
    })
}

/// The VM for what `kios build --out dir` wrote, configured as a node
/// built here would be; the files are checked against the manifest first.
fn built_image_config(args: &BootArgs, dir: &Path) -> Result<(VmConfig, KernelChoice)> {
    let manifest = Manifest::load(dir)?;
    // Without the probe pod nothing powers the node off: the boot could only time out.
    ensure!(
        manifest.probe_pod,
        "{} has no probe pod to power the node off after booting: build it with \
         `cargo kios build --probe-pod --out {}`",
        dir.display(),
        dir.display()
    );
    check_host(manifest.arch, args.accel)?;
    let boot = if args.disk {
        ensure!(
            manifest.disk,
            "{} has no disk image: build one with `cargo kios build --disk --out {}`",
            dir.display(),
            dir.display()
        );
        ensure!(
            args.console.is_none(),
            "the console of {}'s disk image was chosen when it was built \
             (`cargo kios build --disk --console ...`)",
            dir.display()
        );
        VmConfig {
            // The shipped disk stays as built.
            snapshot: true,
            ..VmConfig::firmware_boot(manifest.arch, manifest.verified_path(dir, DISK)?)
        }
    } else {
        VmConfig::new(
            manifest.arch,
            manifest.verified_path(dir, KERNEL)?,
            manifest.verified_path(dir, INITRAMFS)?,
        )
    };
    let config = VmConfig {
        memory_mib: NODE_MEMORY_MIB,
        icount: !args.no_icount,
        ..boot
    };
    Ok((config, manifest.kernel))
}

pub fn run(command: &BootCommand) -> Result<()> {
    let args = &command.boot;
    let NodeBoot {
        run,
        clock,
        arch,
        kernel,
    } = boot_node(args, !command.json, |_| {})?;
    let report = BootReport {
        arch,
        kernel: kernel.name(),
        boot: match (args.board, args.disk) {
            (Some(board), _) => board.name(),
            (None, true) => "uefi-disk",
            (None, false) => "kernel",
        },
        accel: args.accel,
        image: args.image.clone(),
        clock,
        phases_us: Timeline::from_console(&run.console),
        kernel_banner_wall_seconds: run
            .console
            .lines
            .iter()
            .find(|line| line.text.contains(KERNEL_BANNER))
            .map(|line| line.at.as_secs_f64()),
        wall_seconds: run.wall_time.as_secs_f64(),
        powered_off: run.status.success(),
        memory: memory_report(&run.console.texts().collect::<Vec<_>>().join("\n")),
    };
    if command.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "\nboot timeline ({}, {} kernel, {} boot):",
            report.clock, report.kernel, report.boot
        );
        print!("{}", report.phases_us.table());
        if let Some(seconds) = report.kernel_banner_wall_seconds {
            println!("the kernel started {seconds:.1} s of host time after QEMU");
        }
        println!("QEMU ran {:.1} s of host time", report.wall_seconds);
        if let Some(memory) = &report.memory {
            print!("{}", memory.table());
        }
    }
    if !report.powered_off {
        bail!(
            "the VM did not power off cleanly ({}){}",
            run.status,
            qemu_said(&run)
        );
    }
    Ok(())
}
