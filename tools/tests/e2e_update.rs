//! End to end on the A/B disk under UEFI firmware (OVMF, q35), with
//! systemd-boot and boot counting, each run letting the guest reboot:
//! - a slot whose kubelet never comes up (a deliberately broken release)
//!   is given up after its tries and the other slot boots by itself;
//! - one byte flipped in a slot's root fails dm-verity before anything on
//!   it runs, and the node boots the other slot.
//!
//! Three releases of the same node, differing only in their root: 1 and
//! 2 good, 3 with a kubelet config the kubelet refuses and a short boot
//! deadline. Firmware boots without `-icount` (nothing here is timed).
//!
//! Ignored by default because each boots a VM; `cargo kios test` runs them.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use kios_tools::components::bom::Bom;
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, ImageOptions};
use kios_tools::image::slots::{
    build_release, build_slot_disk, release_files, slot_disk_vm_config, Release, ReleaseOptions,
    Slot, SlotDisk, SlotDiskOptions,
};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::standin_checks::{Check, CheckReport};
use kios_tools::vm::qemu::{
    press_power_button, run_vm, ConsoleVerbosity, LineVerdict, RunOptions, VmConfig, VmRun,
};

const ARCH: Arch = Arch::Amd64;
/// Each entry's tries: two failed boots give a slot up.
const TRIES: u32 = 2;
/// Several firmware boots, each a few minutes under TCG at worst.
const RUN_TIMEOUT: Duration = Duration::from_secs(2400);
/// The broken release's init reboots this long after PID 1 started.
const BROKEN_DEADLINE_SECONDS: u32 = 60;
const BROKEN_KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\n\
     kind: KubeletConfiguration\nstaticPodPath: [this is not a path\n";

/// The init's lines these tests follow (init/src/init/slots.rs).
const BOOTED_SLOT: &str = "kios: booted slot ";
const BOOT_GOOD: &str = "kios: boot good: slot ";
const NOT_GOOD_IN_TIME: &str = " not good within ";
const GIVEN_UP: &str = "was given up";
/// dm-verity's line for a block whose hash does not match.
const VERITY_CORRUPTED: &str = "device-mapper: verity:";
const INIT_TIMELINE: &str = "kios: timeline ";

struct Releases {
    good_1: Release,
    good_2: Release,
    broken_3: Release,
    out: PathBuf,
}

/// The three releases, built once for both tests.
fn releases() -> &'static Releases {
    static RELEASES: OnceLock<Releases> = OnceLock::new();
    RELEASES.get_or_init(|| build_releases().expect("building the releases"))
}

fn build_releases() -> Result<Releases> {
    let workspace = Workspace::locate()?;
    let out = workspace.output_dir()?.join(format!("update-test-{ARCH}"));
    let components =
        NodeComponents::resolve(&workspace, ARCH, OciRuntime::Runc, KernelChoice::Kios)?;
    let release = |version: &str, files: Vec<(String, Vec<u8>)>, extra: &str| {
        let mut extra_files = release_files(version)?;
        extra_files.extend(files);
        let image = build_node_image(
            &workspace,
            &components,
            &ImageOptions {
                extra_files,
                root_image: true,
                ..ImageOptions::default()
            },
            &out.join(format!("image-{version}")),
        )
        .with_context(|| format!("building release {version}'s node image"))?;
        build_release(
            &components.bom,
            &image,
            &ReleaseOptions {
                version: version.to_string(),
                console: ConsoleVerbosity::Quiet,
                extra_kernel_arguments: extra.to_string(),
            },
            &out,
        )
        .with_context(|| format!("building release {version}"))
    };
    let good_1 = release("1", Vec::new(), "")?;
    let good_2 = release("2", Vec::new(), "")?;
    let broken_3 = release(
        "3",
        vec![(
            "/etc/kubernetes/kubelet-config.yaml".into(),
            BROKEN_KUBELET_CONFIG.into(),
        )],
        &format!("kios.boot_deadline={BROKEN_DEADLINE_SECONDS}"),
    )?;
    for release in [&good_1, &good_2, &broken_3] {
        eprintln!(
            "release {}: UKI {} bytes, root {} bytes + hash tree {} bytes, root hash {}",
            release.version,
            release.uki_bytes,
            release.root_data_bytes,
            release.root_bytes - release.root_data_bytes,
            release.root_hash
        );
    }
    Ok(Releases {
        good_1,
        good_2,
        broken_3,
        out,
    })
}

fn disk(name: &str, a: &Release, b: &Release) -> Result<SlotDisk> {
    let disk = build_slot_disk(
        &Bom::of(&Workspace::locate()?)?,
        a,
        Some(b),
        &SlotDiskOptions {
            tries: TRIES,
            data_bytes: 512 << 20,
            ..SlotDiskOptions::default()
        },
        &releases().out.join(name),
    )?;
    eprintln!(
        "{name}: {} bytes ({} allocated), ESP {} bytes, entries {:?}",
        disk.bytes, disk.allocated_bytes, disk.esp_bytes, disk.entries
    );
    Ok(disk)
}

/// Boots `disk`, letting it reboot, until the init says a boot is good;
/// then presses the power button and waits for the power-off.
fn boot_until_good(disk: &SlotDisk, monitor: &Path) -> Result<VmRun> {
    let _ = std::fs::remove_file(monitor);
    let config = VmConfig {
        reboots: true,
        monitor_socket: Some(monitor.to_path_buf()),
        ..slot_disk_vm_config(disk, false)
    };
    let mut pressed = false;
    run_vm(
        &config,
        RunOptions {
            timeout: RUN_TIMEOUT,
            echo: true,
        },
        |line| {
            if !pressed && line.text.contains(BOOT_GOOD) {
                pressed = true;
                if let Err(error) = press_power_button(monitor) {
                    eprintln!("pressing the power button: {error:#}");
                    return LineVerdict::Stop;
                }
            }
            LineVerdict::Continue
        },
    )
}

/// The console's lines from the init, with the slot each boot ran.
fn booted_slots(run: &VmRun) -> Vec<char> {
    run.console
        .texts()
        .filter_map(|text| text.split(BOOTED_SLOT).nth(1))
        .filter_map(|rest| rest.chars().next())
        .collect()
}

fn count(run: &VmRun, needle: &str) -> usize {
    run.console
        .texts()
        .filter(|text| text.contains(needle))
        .count()
}

fn powered_off(run: &VmRun) -> Result<(), String> {
    if run.stopped_early || !run.status.success() {
        Err(format!(
            "QEMU did not exit by a power-off (status {}, stopped early: {})",
            run.status, run.stopped_early
        ))
    } else {
        Ok(())
    }
}

fn expect(condition: bool, otherwise: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(otherwise())
    }
}

#[test]
#[ignore = "builds three releases and boots an A/B disk under OVMF: run by cargo kios test"]
fn a_slot_that_never_gets_good_is_given_up_and_the_other_boots_by_itself() -> Result<()> {
    let releases = releases();
    // The newer release (3, broken) is in slot B, so the boot manager tries it first.
    let disk = disk("rollback", &releases.good_1, &releases.broken_3)?;
    let run = boot_until_good(&disk, &releases.out.join("rollback.monitor"))?;
    let slots = booted_slots(&run);
    eprintln!(
        "slots booted in order: {slots:?}; QEMU ran {:.1} s",
        run.wall_time.as_secs_f64()
    );
    let b = Slot::B.letter();
    let a = Slot::A.letter();
    let report = CheckReport {
        checks: vec![
            Check {
                name: "the newer slot B was booted first, once per try",
                outcome: expect(
                    slots.iter().take_while(|&&slot| slot == b).count() == TRIES as usize,
                    || format!("slots booted: {slots:?}"),
                ),
            },
            Check {
                name: "each of B's boots ended at the boot deadline with a reboot",
                outcome: expect(
                    count(&run, &format!("slot {b}{NOT_GOOD_IN_TIME}")) == TRIES as usize,
                    || format!("{} deadline lines", count(&run, NOT_GOOD_IN_TIME)),
                ),
            },
            Check {
                name: "then slot A booted by itself and said why",
                outcome: expect(slots.last() == Some(&a), || {
                    format!("slots booted: {slots:?}")
                })
                .and(expect(
                    run.console.texts().any(|text| {
                        text.contains(&format!("slot {b} (")) && text.contains(GIVEN_UP)
                    }),
                    || "no line saying slot B was given up".into(),
                )),
            },
            Check {
                name: "slot A's boot was good and its entry got its tries back",
                outcome: expect(
                    run.console.texts().any(|text| {
                        text.contains(&format!("{BOOT_GOOD}{a}"))
                            && text.contains(&format!("+{TRIES}.efi"))
                    }),
                    || "no boot-good line for slot A with the entry renamed".into(),
                ),
            },
            Check {
                name: "the node powered off on the power button",
                outcome: powered_off(&run),
            },
        ],
    };
    report.into_result()
}

#[test]
#[ignore = "builds three releases and boots an A/B disk under OVMF: run by cargo kios test"]
fn a_root_that_fails_verification_never_runs_and_the_other_slot_boots() -> Result<()> {
    let releases = releases();
    // The newer release (2) is in slot A, the one with the flipped byte.
    let disk = disk("verity", &releases.good_2, &releases.good_1)?;
    let slot_a = disk
        .partitions
        .iter()
        .find(|partition| partition.name == Slot::A.partition_name())
        .context("slot A's partition")?;
    // In erofs's superblock (byte 1024): the kernel's first read of the root.
    flip_byte(&disk.path, slot_a.offset + 1024 + 8)?;
    let run = boot_until_good(&disk, &releases.out.join("verity.monitor"))?;
    let slots = booted_slots(&run);
    let first_init_line = run.console.position(INIT_TIMELINE);
    let b = Slot::B.letter();
    let a = Slot::A.letter();
    let report = CheckReport {
        checks: vec![
            Check {
                name: "dm-verity refused slot A's root once per try",
                outcome: expect(count(&run, VERITY_CORRUPTED) >= TRIES as usize, || {
                    format!("{} dm-verity lines", count(&run, VERITY_CORRUPTED))
                }),
            },
            Check {
                name: "nothing on slot A ran: the init's first line came after the last refusal",
                outcome: match (first_init_line, last_position(&run, VERITY_CORRUPTED)) {
                    (Some(init), Some(verity)) if init > verity => Ok(()),
                    (init, verity) => Err(format!(
                        "first init line at {init:?}, last dm-verity line at {verity:?}"
                    )),
                },
            },
            Check {
                name: "slot B booted, said slot A was given up, and its boot was good",
                outcome: expect(slots == vec![b], || format!("slots booted: {slots:?}"))
                    .and(expect(
                        run.console.texts().any(|text| {
                            text.contains(&format!("slot {a} (")) && text.contains(GIVEN_UP)
                        }),
                        || "no line saying slot A was given up".into(),
                    ))
                    .and(expect(count(&run, &format!("{BOOT_GOOD}{b}")) == 1, || {
                        "no boot-good line for slot B".into()
                    })),
            },
            Check {
                name: "the node powered off on the power button",
                outcome: powered_off(&run),
            },
        ],
    };
    report.into_result()
}

fn last_position(run: &VmRun, needle: &str) -> Option<usize> {
    run.console
        .texts()
        .enumerate()
        .filter(|(_, text)| text.contains(needle))
        .map(|(index, _)| index)
        .last()
}

fn flip_byte(disk: &Path, offset: u64) -> Result<()> {
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(disk)
        .with_context(|| format!("opening {}", disk.display()))?;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset)?;
    byte[0] ^= 0xff;
    file.write_all_at(&byte, offset)?;
    Ok(())
}
