//! QEMU end-to-end tests of the init's data-partition handling with bad
//! disks: the stand-in fixture image (fast to boot) on Debian's cloud
//! kernel, with the kernel modules a node loads and raw disks attached.
//!
//! Each bad input must give one clear kmsg line, leave the node ephemeral
//! and the disk untouched, and the boot must go on to the kubelet and a
//! clean power-off.
//!
//! Ignored by default because each boots a VM; `cargo kios test` runs them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kios_abi::data_partition::TYPE_GUID as DATA_PARTITION_TYPE_GUID;
use kios_tools::components::bom::Bom;
use kios_tools::components::node::pinned_kernel;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::disk::{
    make_ext4, parse_guid, write_gpt_disk, PartitionContents, PartitionSpec,
};
use kios_tools::image::initramfs::Compression;
use kios_tools::image::node_image::add_modules;
use kios_tools::testing::standin_checks::{check_standin_run, require_line};
use kios_tools::testing::standin_image::standin_initramfs;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions, VmConfig, VmRun};

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const MIB: u64 = 1 << 20;

/// A module list entry whose file is not in the image, and one whose file
/// is not a kernel module: both must fail alone, with their errno.
const BAD_MODULES: &str =
    "/lib/modules/kios-test/missing.ko\n/lib/modules/kios-test/not-a-module.ko\n";

/// The stand-in image plus Debian's kernel modules (virtio block and PCI
/// among them, so the disks appear) and two bad module-list entries.
fn standin_with_modules(
    workspace: &Workspace,
    arch: Arch,
    dir: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let init = workspace.build_musl_binary("kios-init", arch)?;
    let standin = workspace.build_musl_binary("kios-standin", arch)?;
    let (kernel, kernel_tree) = pinned_kernel(&Bom::of(workspace)?, arch)?;
    let mut image = standin_initramfs(&init, &standin)?;
    add_modules(&mut image, &kernel_tree)?;
    image.parents("/lib/modules/kios-test/not-a-module.ko");
    image.file(
        "/lib/modules/kios-test/not-a-module.ko",
        0o644,
        "this is not an ELF module\n",
    );
    // Replaces the late list: the early one must stay intact for the disks.
    image.file("/etc/kios/modules-late", 0o644, BAD_MODULES);
    let initrd = dir.join(format!("standin-modules-{arch}.cpio.gz"));
    image.write_stored(&initrd, Compression::Gzip)?;
    Ok((kernel, initrd))
}

fn fresh_dir(name: &str) -> Result<PathBuf> {
    let dir = Workspace::locate()?.output_dir()?.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A GPT disk with one partition of the kiOS data type.
fn kios_disk(path: &Path, contents: PartitionContents) -> Result<()> {
    write_gpt_disk(
        path,
        parse_guid("9f0e6c55-1b1b-4d5c-9a55-0d1f1f4a0001")?,
        &[PartitionSpec {
            name: "kios-data".into(),
            type_guid: parse_guid(DATA_PARTITION_TYPE_GUID)?,
            guid: parse_guid("9f0e6c55-1b1b-4d5c-9a55-0d1f1f4a0002")?,
            bytes: 16 * MIB,
            contents,
        }],
    )?;
    Ok(())
}

fn boot(
    arch: Arch,
    kernel: PathBuf,
    initrd: PathBuf,
    disks: Vec<PathBuf>,
    cmdline: &str,
) -> Result<VmRun> {
    let config = VmConfig {
        extra_disks: disks,
        extra_kernel_arguments: cmdline.to_string(),
        ..VmConfig::new(arch, kernel, initrd)
    };
    let options = RunOptions {
        timeout: BOOT_TIMEOUT,
        echo: true,
    };
    run_vm(&config, options, |_| LineVerdict::Continue)
}

fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes[offset as usize..(offset + len) as usize].to_vec())
}

/// Three bad disks in one boot, scanned in order: no GPT, a GPT whose
/// header CRC is wrong, and a kiOS partition whose ext4 is corrupted.
/// Plus a missing module and a file that is not a module.
#[test]
#[ignore = "boots QEMU: run by cargo kios test"]
fn bad_disks_and_bad_modules_leave_the_node_ephemeral_and_booting() -> Result<()> {
    let workspace = Workspace::locate()?;
    let arch = Arch::Amd64;
    let dir = fresh_dir("e2e-bad-disks")?;
    let (kernel, initrd) = standin_with_modules(&workspace, arch, &dir)?;

    let no_gpt = dir.join("no-gpt.img");
    std::fs::write(&no_gpt, vec![0u8; 8 * MIB as usize])?;

    let bad_crc = dir.join("bad-crc.img");
    kios_disk(&bad_crc, PartitionContents::Empty)?;
    let mut bytes = std::fs::read(&bad_crc)?;
    // A byte of the primary header's disk GUID: the header CRC no longer matches.
    bytes[512 + 60] ^= 0xff;
    std::fs::write(&bad_crc, bytes)?;

    let corrupt_fs = dir.join("corrupt-fs.img");
    let ext4 = dir.join("corrupt.ext4");
    make_ext4(
        &ext4,
        16 * MIB,
        "kios-data",
        parse_guid("9f0e6c55-1b1b-4d5c-9a55-0d1f1f4a0003")?,
    )?;
    let mut fs = std::fs::read(&ext4)?;
    // Keep the superblock (bytes 1024..2048, so the type check passes) and
    // overwrite the group descriptors after it: the mount must fail.
    fs[2048..16384].fill(0xa5);
    std::fs::write(&ext4, fs)?;
    kios_disk(&corrupt_fs, PartitionContents::Image(ext4))?;
    let partition_before = read_range(&corrupt_fs, MIB, 16 * MIB)?;

    let run = boot(
        arch,
        kernel,
        initrd,
        vec![no_gpt, bad_crc, corrupt_fs.clone()],
        "",
    )?;
    let console = &run.console;
    let mut failures = Vec::new();
    for needle in [
        "kios: disk /dev/vda: no GPT (no EFI PART signature at LBA 1), skipped",
        "kios: disk /dev/vdb: GPT header CRC mismatch, skipped",
        "kios: mounting data partition /dev/vdc1 failed: EUCLEAN (117), not formatting it; booting ephemeral: /var and /etc changes live in RAM",
        "kios: loading module /lib/modules/kios-test/missing.ko failed: ENOENT (2)",
        "kios: loading module /lib/modules/kios-test/not-a-module.ko failed: ENOEXEC (8)",
    ] {
        if let Err(error) = require_line(console, needle) {
            failures.push(error);
        }
    }
    // The rest of the boot is the stand-in's usual contract.
    let report = check_standin_run(&run);
    print!("{report}");
    if !report.all_passed() {
        failures.push("the stand-in boot contract failed (see above)".into());
    }
    ensure!(
        read_range(&corrupt_fs, MIB, 16 * MIB)? == partition_before,
        "the corrupted data partition was written to"
    );
    ensure!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
    Ok(())
}

/// `kios.data=` names a device that never appears: the init waits for the
/// bound it was given, says so, and boots ephemeral.
#[test]
#[ignore = "boots QEMU: run by cargo kios test"]
fn a_named_data_device_that_never_appears_is_waited_for_within_its_bound() -> Result<()> {
    let workspace = Workspace::locate()?;
    let arch = Arch::Amd64;
    let dir = fresh_dir("e2e-missing-data-device")?;
    let (kernel, initrd) = standin_with_modules(&workspace, arch, &dir)?;
    let run = boot(
        arch,
        kernel,
        initrd,
        Vec::new(),
        "kios.data=/dev/vdz1 kios.data_timeout=2",
    )?;
    require_line(
        &run.console,
        "kios: data partition /dev/vdz1 did not appear: ETIMEDOUT (110); booting ephemeral: /var and /etc changes live in RAM",
    )
    .map_err(anyhow::Error::msg)?;
    let report = check_standin_run(&run);
    print!("{report}");
    report.into_result()
}
