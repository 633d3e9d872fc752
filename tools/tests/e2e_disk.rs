//! End to end on the node's GPT disk image: UEFI firmware (OVMF on amd64,
//! AAVMF on arm64) boots the disk's unified kernel image, with no
//! `-kernel`, and the node must reach the probe pod and power off exactly
//! as the `-kernel` boot does (tools/tests/e2e_node.rs).
//!
//! Ignored by default because each boots a VM; `cargo kios test` runs them.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::disk::{build_disk_image, firmware_vm_config, DiskOptions};
use kios_tools::image::node_image::{build_node_image, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::node_checks::check_probe_boot;
use kios_tools::testing::probe_pod::probe_pod_file;
use kios_tools::testing::standin_checks::{require_line, Check};
use kios_tools::vm::qemu::{
    kernel_command_line, run_vm, ConsoleVerbosity, LineVerdict, RunOptions,
};
use kios_tools::vm::timeline::Timeline;

/// Firmware reading a ~200 MB kernel image under TCG adds minutes to a boot.
const BOOT_TIMEOUT: Duration = Duration::from_secs(1500);

/// The firmware's boot manager starting the boot disk (EDK II's BdsDxe,
/// in OVMF and AAVMF alike).
const FIRMWARE_STARTS_THE_DISK: &str = "BdsDxe: starting Boot";
/// The kernel's EFI stub got its initramfs from systemd-stub, which
/// serves the UKI's `.initrd` section under this device path.
const STUB_HANDED_THE_INITRD: &str =
    "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path";
const KERNEL_BANNER: &str = "Linux version ";

fn disk_boots_under_uefi_to_a_running_pod(arch: Arch) -> Result<()> {
    let started = Instant::now();
    let workspace = Workspace::locate()?;
    let out = workspace.output_dir()?.join(format!("disk-test-{arch}"));
    let components =
        NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, KernelChoice::Debian)?;
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            extra_files: vec![probe_pod_file()],
            ..ImageOptions::default()
        },
        &out,
    )
    .context("building the node image")?;
    let disk = build_disk_image(&components.bom, &image, &DiskOptions::default(), &out)
        .context("building the disk image")?;
    let built = started.elapsed();

    let options = RunOptions {
        timeout: BOOT_TIMEOUT,
        echo: true,
    };
    let run = run_vm(&firmware_vm_config(&disk, true), options, |_| {
        LineVerdict::Continue
    })
    .context("booting the disk image under UEFI firmware")?;
    let console = &run.console;

    let kernel_started = console
        .lines
        .iter()
        .find(|line| line.text.contains(KERNEL_BANNER))
        .map_or(f64::NAN, |line| line.at.as_secs_f64());
    eprintln!(
        "{arch} disk image: {} bytes ({} allocated), unified kernel image {} bytes\n\
         boot timeline (guest clock from the kernel's start):\n{}\
         host time: image and disk built in {:.1} s; firmware handed over to the kernel \
         after {kernel_started:.1} s; QEMU ran {:.1} s",
        disk.bytes,
        disk.allocated_bytes,
        disk.uki_bytes,
        Timeline::from_console(console).table(),
        built.as_secs_f64(),
        run.wall_time.as_secs_f64(),
    );

    let mut report = check_probe_boot(&run);
    report.checks.extend([
        Check {
            name: "the firmware's boot manager started the disk",
            outcome: require_line(console, FIRMWARE_STARTS_THE_DISK),
        },
        Check {
            name: "systemd-stub handed the kernel the UKI's initramfs",
            outcome: require_line(console, STUB_HANDED_THE_INITRD),
        },
        Check {
            name: "the kernel command line is the UKI's, the same as a -kernel boot's",
            outcome: require_line(
                console,
                &format!(
                    "Kernel command line: {}",
                    kernel_command_line(arch, ConsoleVerbosity::Quiet)
                ),
            ),
        },
        Check {
            // The init's own lines and the timeline are checked above.
            name: "the console is quiet: no containerd or kubelet output",
            outcome: match console
                .texts()
                .find(|text| text.contains("] containerd: ") || text.contains("] kubelet: "))
            {
                Some(line) => Err(format!("child output on the console: {line}")),
                None => Ok(()),
            },
        },
        Check {
            name: "the firmware ran before the kernel",
            outcome: match (
                console.position(FIRMWARE_STARTS_THE_DISK),
                console.position(KERNEL_BANNER),
            ) {
                (Some(firmware), Some(kernel)) if firmware < kernel => Ok(()),
                _ => Err("no firmware boot line before the kernel's banner".into()),
            },
        },
    ]);
    report.into_result()
}

#[test]
#[ignore = "builds the disk image and boots it under OVMF: run by cargo kios test"]
fn amd64_disk_boots_under_ovmf_to_a_running_pod() -> Result<()> {
    disk_boots_under_uefi_to_a_running_pod(Arch::Amd64)
}

#[test]
#[ignore = "builds the disk image and boots it under AAVMF: run by cargo kios test"]
fn arm64_disk_boots_under_aavmf_to_a_running_pod() -> Result<()> {
    disk_boots_under_uefi_to_a_running_pod(Arch::Arm64)
}
