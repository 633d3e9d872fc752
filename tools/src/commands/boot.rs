//! `kios boot`: build the node image (with the probe pod), boot it once in
//! QEMU and report the boot timeline, as a table or as JSON.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::components::OciRuntime;
use crate::host::arch::Arch;
use crate::host::packages::{ensure_installed, QEMU_PACKAGES};
use crate::host::workspace::Workspace;
use crate::image::disk::{build_disk_image, firmware_vm_config, DiskOptions};
use crate::image::node_image::{build_node_image, vm_config, ImageOptions, InitChoice};
use crate::kernel::KernelChoice;
use crate::testing::probe_pod::probe_pod_file;
use crate::vm::qemu::{run_vm, LineVerdict, RunOptions, VmRun};
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
    #[arg(long, value_enum, default_value_t = Arch::Amd64)]
    arch: Arch,
    /// Let guest time follow the host clock instead of QEMU's instruction count.
    #[arg(long)]
    no_icount: bool,
    /// How the initramfs is stored (none: fastest boot; gzip: smallest image).
    #[arg(long, value_enum, default_value_t = crate::image::node_image::Compression::None)]
    compression: crate::image::node_image::Compression,
    /// The OCI runtime containerd runs containers with.
    #[arg(long, value_enum, default_value_t = OciRuntime::Runc)]
    oci_runtime: OciRuntime,
    /// Kill the VM if it has not powered off after this many seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    timeout: u64,
    /// Build the GPT disk image and boot it under UEFI firmware (OVMF on amd64,
    /// AAVMF on arm64) instead of handing QEMU the kernel and initramfs.
    #[arg(long)]
    disk: bool,
    /// Debian's cloud kernel with modules, or the kiOS kernel (everything
    /// built in; built on first use, then cached).
    #[arg(long, value_enum, default_value_t = KernelChoice::Debian)]
    kernel: KernelChoice,
}

#[derive(Serialize)]
struct BootReport {
    arch: Arch,
    /// `debian` or `kios`.
    kernel: &'static str,
    /// `kernel` (QEMU loads kernel and initramfs) or `uefi-disk`.
    boot: &'static str,
    clock: String,
    phases_us: Timeline,
    /// Host seconds from QEMU's start to the kernel's banner: the
    /// firmware's share of a disk boot (the phases start at the kernel).
    kernel_banner_wall_seconds: Option<f64>,
    wall_seconds: f64,
    powered_off: bool,
}

/// The kernel's first console line.
const KERNEL_BANNER: &str = "Linux version ";

/// A finished node boot and what its guest clock followed.
pub struct NodeBoot {
    pub run: VmRun,
    pub clock: String,
}

/// Builds the node image with the probe pod and boots it once, echoing
/// the console when `echo` is set.
pub fn boot_node(args: &BootArgs, echo: bool) -> Result<NodeBoot> {
    ensure_installed(QEMU_PACKAGES)?;
    let workspace = Workspace::locate()?;
    let out = workspace.output_dir()?.join("node");
    let image = build_node_image(
        &workspace,
        args.arch,
        &ImageOptions {
            init: InitChoice::Kios,
            oci_runtime: args.oci_runtime,
            extra_files: vec![probe_pod_file()],
            compression: args.compression,
            kernel: args.kernel.image(&workspace, args.arch)?,
        },
        &out,
    )?;
    let config = if args.disk {
        let disk = build_disk_image(&workspace, &image, &DiskOptions::default(), &out)?;
        firmware_vm_config(&disk, !args.no_icount)
    } else {
        vm_config(&image, !args.no_icount)
    };
    let clock = if args.no_icount {
        "guest clock".to_string()
    } else {
        format!("guest clock, -icount {}", config.icount_mode())
    };
    let options = RunOptions {
        timeout: Duration::from_secs(args.timeout),
        echo,
    };
    let run = run_vm(&config, options, |_| LineVerdict::Continue)?;
    Ok(NodeBoot { run, clock })
}

pub fn run(command: &BootCommand) -> Result<()> {
    let args = &command.boot;
    let NodeBoot { run, clock } = boot_node(args, !command.json)?;
    let report = BootReport {
        arch: args.arch,
        kernel: args.kernel.name(),
        boot: if args.disk { "uefi-disk" } else { "kernel" },
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
    }
    if !report.powered_off {
        bail!("the VM did not power off cleanly ({})", run.status);
    }
    Ok(())
}
