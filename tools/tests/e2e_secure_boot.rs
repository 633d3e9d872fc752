//! End to end under UEFI Secure Boot (amd64: OVMF's Secure Boot build on
//! q35 with SMM, its variable store holding the project key as PK, KEK and
//! db, Secure Boot on), on the A/B disk with slot A only:
//! - signed (systemd-boot and the UKI), the disk boots: the kernel says
//!   Secure Boot is on, the init boots slot A and the boot is good; the
//!   power button then powers it off;
//! - the same disk with one byte of the UKI's kernel changed on the ESP
//!   after signing, or with the unsigned UKI in its place: the firmware
//!   refuses to load it for systemd-boot, and no kernel or init line
//!   appears.
//!
//! One release, built once for both tests; firmware boots without
//! `-icount` (nothing here is timed by the guest).
//!
//! Ignored by default because each boots a VM; `cargo kios test` runs them.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kios_tools::components::bom::Bom;
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::disk::ESP_NAME;
use kios_tools::image::secure_boot::{enrolled_variables, project_key, SigningKey};
use kios_tools::image::slots::{
    build_node_release, build_slot_disk, slot_disk_vm_config, Release, ReleaseOptions, SlotDisk,
    SlotDiskOptions,
};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::standin_checks::{Check, CheckReport};
use kios_tools::vm::qemu::{
    press_power_button, run_vm, ConsoleVerbosity, LineVerdict, RunOptions, VmConfig, VmRun,
};

const ARCH: Arch = Arch::Amd64;
/// One boot to a good boot under TCG, with room.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// The firmware and systemd-boot reach the refusal in well under a minute.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(300);

/// The kernel's line on an EFI boot with Secure Boot on
/// (drivers/firmware/efi/secureboot.c, at info: a quiet console shows it).
const SECURE_BOOT_ENABLED: &str = "secureboot: Secure boot enabled";
/// The init's lines (init/src/init/boot_slot.rs).
const BOOTED_SLOT_A: &str = "kios: booted slot a";
const BOOT_GOOD_A: &str = "kios: boot good: slot a";
/// systemd-boot 252's line when the firmware's LoadImage fails
/// (`Error loading %s: %r`), and the status OVMF gives an image that no
/// db certificate signed (`EFI_ACCESS_DENIED`).
const ERROR_LOADING: &str = "Error loading ";
const ACCESS_DENIED: &str = "Access Denied";
/// The kernel's first line: never on a refused boot.
const LINUX_VERSION: &str = "Linux version";

struct Signed {
    release: Release,
    key: SigningKey,
    /// OVMF's variable store with the key enrolled and Secure Boot on.
    variables: PathBuf,
    out: PathBuf,
}

fn signed() -> &'static Signed {
    static SIGNED: OnceLock<Signed> = OnceLock::new();
    SIGNED.get_or_init(|| build_signed().expect("building the release and the key"))
}

fn build_signed() -> Result<Signed> {
    let workspace = Workspace::locate()?;
    let out = workspace
        .output_dir()?
        .join(format!("secure-boot-test-{ARCH}"));
    let components =
        NodeComponents::resolve(&workspace, ARCH, OciRuntime::Runc, KernelChoice::Kios)?;
    let (_, release) = build_node_release(
        &workspace,
        &components,
        Vec::new(),
        &ReleaseOptions {
            version: "1".into(),
            console: ConsoleVerbosity::Quiet,
            extra_kernel_arguments: String::new(),
        },
        &out,
    )?;
    let key = project_key()?;
    let variables = out.join("secure-boot-vars.fd");
    enrolled_variables(&key, &variables)?;
    eprintln!(
        "release {}: UKI {} bytes; key {}; enrolled variable store {}",
        release.version,
        release.uki_bytes,
        key.cert.display(),
        variables.display()
    );
    Ok(Signed {
        release,
        key,
        variables,
        out,
    })
}

fn signed_disk(name: &str) -> Result<SlotDisk> {
    let signed = signed();
    build_slot_disk(
        &Bom::of(&Workspace::locate()?)?,
        &signed.release,
        None,
        &SlotDiskOptions {
            data_bytes: 512 << 20,
            signing: Some(signed.key.clone()),
            ..SlotDiskOptions::default()
        },
        &signed.out.join(name),
    )
}

fn secure_boot_vm(disk: &SlotDisk) -> VmConfig {
    VmConfig {
        secure_boot_variables: Some(signed().variables.clone()),
        ..slot_disk_vm_config(disk, false)
    }
}

fn seen(run: &VmRun, needle: &str) -> Option<Duration> {
    run.console
        .lines
        .iter()
        .find(|line| line.text.contains(needle))
        .map(|line| line.at)
}

fn expect(condition: bool, otherwise: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(otherwise())
    }
}

#[test]
#[ignore = "builds a release and boots a signed A/B disk under Secure Boot OVMF: run by cargo kios test"]
fn the_signed_disk_boots_under_secure_boot() -> Result<()> {
    let disk = signed_disk("signed")?;
    let monitor = signed().out.join("signed.monitor");
    let _ = std::fs::remove_file(&monitor);
    let config = VmConfig {
        monitor_socket: Some(monitor.clone()),
        ..secure_boot_vm(&disk)
    };
    let mut pressed = false;
    let run = run_vm(
        &config,
        RunOptions {
            timeout: BOOT_TIMEOUT,
            echo: true,
        },
        |line| {
            if !pressed && line.text.contains(BOOT_GOOD_A) {
                pressed = true;
                if let Err(error) = press_power_button(&monitor) {
                    eprintln!("pressing the power button: {error:#}");
                    return LineVerdict::Stop;
                }
            }
            LineVerdict::Continue
        },
    )?;
    let secure = seen(&run, SECURE_BOOT_ENABLED);
    let good = seen(&run, BOOT_GOOD_A);
    eprintln!(
        "Secure Boot on at {:?}, boot good at {:?} (since QEMU started); QEMU ran {:.1} s",
        secure,
        good,
        run.wall_time.as_secs_f64()
    );
    CheckReport {
        checks: vec![
            Check {
                name: "the kernel says Secure Boot is on",
                outcome: expect(secure.is_some(), || {
                    format!("no `{SECURE_BOOT_ENABLED}` line")
                }),
            },
            Check {
                name: "the init booted slot A and the boot was good",
                outcome: expect(
                    seen(&run, BOOTED_SLOT_A).is_some() && good.is_some(),
                    || format!("no `{BOOTED_SLOT_A}` then `{BOOT_GOOD_A}`"),
                ),
            },
            Check {
                name: "the node powered off on the power button",
                outcome: expect(!run.stopped_early && run.status.success(), || {
                    format!(
                        "QEMU did not exit by a power-off (status {}, stopped early: {})",
                        run.status, run.stopped_early
                    )
                }),
            },
        ],
    }
    .into_result()
}

#[test]
#[ignore = "builds a release and boots a signed A/B disk under Secure Boot OVMF: run by cargo kios test"]
fn an_altered_uki_is_refused_by_the_firmware() -> Result<()> {
    let disk = signed_disk("altered")?;
    let entry = disk
        .entries
        .first()
        .context("the disk has no entry")?
        .clone();
    let changed_at = rewrite_on_esp(&disk, &entry, |uki| {
        let pe = goblin::pe::PE::parse(uki).context("the UKI is no PE image")?;
        let linux = pe
            .sections
            .iter()
            .find(|section| section.name().ok() == Some(".linux"))
            .context("the UKI has no .linux section")?;
        let at = linux.pointer_to_raw_data as usize + linux.size_of_raw_data as usize / 2;
        ensure!(at < uki.len(), "the .linux section is past the file's end");
        uki[at] ^= 0x01;
        Ok(at)
    })?;
    eprintln!("{entry}: one byte of .linux changed at file offset {changed_at}");
    refused(&disk, &entry)
}

#[test]
#[ignore = "builds a release and boots a signed A/B disk under Secure Boot OVMF: run by cargo kios test"]
fn an_unsigned_uki_is_refused_by_the_firmware() -> Result<()> {
    let disk = signed_disk("unsigned")?;
    let entry = disk
        .entries
        .first()
        .context("the disk has no entry")?
        .clone();
    // The release's own UKI, as build_release wrote it: never signed.
    let unsigned = std::fs::read(&signed().release.uki)?;
    rewrite_on_esp(&disk, &entry, |uki| {
        *uki = unsigned;
        Ok(())
    })?;
    eprintln!("{entry}: replaced by the unsigned UKI (systemd-boot still signed)");
    refused(&disk, &entry)
}

/// Boots `disk` under Secure Boot until systemd-boot says it could not
/// load `entry` (or anything later shows), and checks the firmware
/// refused it and nothing of it ran.
fn refused(disk: &SlotDisk, entry: &str) -> Result<()> {
    let started = Instant::now();
    let run = run_vm(
        &secure_boot_vm(disk),
        RunOptions {
            timeout: REFUSAL_TIMEOUT,
            echo: true,
        },
        |line| {
            // The refusal, or anything past where it should have stopped.
            if [ERROR_LOADING, LINUX_VERSION, "kios:"]
                .iter()
                .any(|needle| line.text.contains(needle))
            {
                LineVerdict::Stop
            } else {
                LineVerdict::Continue
            }
        },
    )?;
    let refusal = run
        .console
        .lines
        .iter()
        .find(|line| line.text.contains(ERROR_LOADING));
    eprintln!(
        "refusal {:?} at {:?} (since QEMU started); stopped after {:.1} s",
        refusal.map(|line| line.text.trim()),
        refusal.map(|line| line.at),
        started.elapsed().as_secs_f64()
    );
    // systemd-boot names the file with backslashes.
    let efi_path = format!("\\{}", entry.replace('/', "\\"));
    CheckReport {
        checks: vec![
            Check {
                name: "systemd-boot says the firmware refused to load the UKI",
                outcome: expect(
                    refusal.is_some_and(|line| {
                        line.text
                            .contains(&format!("{ERROR_LOADING}{efi_path}: {ACCESS_DENIED}"))
                    }),
                    || {
                        format!(
                            "no `{ERROR_LOADING}{efi_path}: {ACCESS_DENIED}` line; found {:?}",
                            refusal.map(|line| &line.text)
                        )
                    },
                ),
            },
            Check {
                name: "no kernel and no init line appeared",
                outcome: expect(
                    !run.console.contains(LINUX_VERSION)
                        && !run.console.contains(SECURE_BOOT_ENABLED)
                        && !run.console.contains("kios:"),
                    || "the refused kernel ran".into(),
                ),
            },
        ],
    }
    .into_result()
}

/// Rewrites the ESP's file `entry` in place on the disk with `change`
/// (the file's bytes in, what to write out).
fn rewrite_on_esp<T>(
    disk: &SlotDisk,
    entry: &str,
    change: impl FnOnce(&mut Vec<u8>) -> Result<T>,
) -> Result<T> {
    let esp = disk
        .partitions
        .iter()
        .find(|partition| partition.name == ESP_NAME)
        .context("the disk has no ESP")?;
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&disk.path)?;
    let mut esp_bytes = vec![0; usize::try_from(esp.bytes)?];
    file.read_exact_at(&mut esp_bytes, esp.offset)?;
    let mut cursor = std::io::Cursor::new(esp_bytes);
    let changed = {
        let filesystem = fatfs::FileSystem::new(&mut cursor, fatfs::FsOptions::new())
            .context("reading the ESP")?;
        let mut contents = Vec::new();
        filesystem
            .root_dir()
            .open_file(entry)?
            .read_to_end(&mut contents)?;
        let changed = change(&mut contents)?;
        let mut file = filesystem.root_dir().open_file(entry)?;
        file.truncate()?;
        file.write_all(&contents)?;
        file.flush()?;
        drop(file);
        filesystem.unmount()?;
        changed
    };
    file.write_all_at(cursor.get_ref(), esp.offset)?;
    file.sync_all()?;
    Ok(changed)
}
