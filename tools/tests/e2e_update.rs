//! End to end on the A/B disk under UEFI firmware (OVMF, q35), with
//! systemd-boot and boot counting, each run letting the guest reboot:
//! - a slot whose kubelet never comes up (a deliberately broken release)
//!   is given up after its tries and the other slot boots by itself;
//! - one byte flipped in a slot's root fails dm-verity before anything on
//!   it runs, and the node boots the other slot;
//! - a node on slot A in a loopback cluster (its identity on the ESP, taken
//!   into the persistent /etc by its first boot) runs the update pod the
//!   cluster gives it: the bundle image comes from the loopback registry,
//!   `kiosctl update` hands it to the node, which writes slot B and reboots
//!   into it, and comes back Ready with the same machine ID and the image
//!   it pulled; then four bad bundles (wrong arch, truncated, hash
//!   mismatch, older) are each refused with a line naming the fault, and
//!   the disk shows nothing written for them.
//!
//! Three releases of the same node, differing only in their root: 1 and
//! 2 good, 3 with a kubelet config the kubelet refuses and a short boot
//! deadline. Firmware boots without `-icount` (nothing here is timed).
//!
//! Ignored by default because each boots a VM; `cargo kios test` runs them.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use kios_abi::boot_slots::ENTRIES_DIR;
use kios_abi::update_bundle::{key, FORMAT, MANIFEST_FILE, ROOT_FILE, UKI_FILE};
use kios_tools::cluster::api::{node_ready, Api};
use kios_tools::cluster::control_plane::{ControlPlane, GUEST_ADDRESS, GUEST_SERVER};
use kios_tools::cluster::registry::{
    containerd_hosts_toml, Registry, GUEST_PORT as REGISTRY_GUEST_PORT, GUEST_REGISTRY,
};
use kios_tools::components::bom::Bom;
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::fs::sha256_file;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::disk::ESP_NAME;
use kios_tools::image::slots::{
    build_node_release, build_slot_disk, slot_disk_vm_config, Release, ReleaseOptions, Slot,
    SlotDisk, SlotDiskOptions,
};
use kios_tools::image::update_bundle::{
    bundle_image, manifest_text, write_update_bundle, BundleFiles, REPOSITORY,
};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::standin_checks::{Check, CheckReport};
use kios_tools::vm::qemu::{
    press_power_button, run_vm, ConsoleVerbosity, LineVerdict, RunOptions, VmConfig, VmRun,
};
use serde_json::{json, Value};
use uuid::Uuid;

const ARCH: Arch = Arch::Amd64;
/// Each entry's tries: two failed boots give a slot up.
const TRIES: u32 = 2;
/// Several firmware boots, each a few minutes under TCG at worst.
const RUN_TIMEOUT: Duration = Duration::from_secs(2400);
/// The broken release's init reboots this long after PID 1 started.
const BROKEN_DEADLINE_SECONDS: u32 = 60;
const BROKEN_KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\n\
     kind: KubeletConfiguration\nstaticPodPath: [this is not a path\n";

/// The init's lines these tests follow (init/src/init/boot_slot.rs).
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

/// The three releases, built once for every test.
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
        let options = ReleaseOptions {
            version: version.to_string(),
            console: ConsoleVerbosity::Quiet,
            extra_kernel_arguments: extra.to_string(),
        };
        build_node_release(&workspace, &components, files, &options, &out)
            .map(|(_, release)| release)
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

/// The node the update test joins to its control plane.
const NODE: &str = "kios-update-node";
/// What QEMU's DHCP server leases the guest, and its node-ip.
const NODE_IP: &str = "10.0.2.15";
/// From QEMU's start (or the update pod's creation) to the node Ready, on
/// a slow TCG guest under firmware.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const POD_TIMEOUT: Duration = Duration::from_secs(300);
/// The update pod's image, as the test pushes it.
const BUNDLE_TAG: &str = "2";
/// The image of bundles the node must refuse, and its cases: the
/// directory in the image and what the refusal line must name.
const BAD_REPOSITORY: &str = "kios-update-bad";
const BAD_BUNDLES: [(&str, &str); 4] = [
    ("wrong-arch", "arm64"),
    ("truncated", "root.img"),
    ("hash-mismatch", "kios.efi"),
    ("older", "not newer"),
];
/// kios-update's lines (tools/update), as kmsg shows them.
const REFUSED: &str = "refused:";
const UPDATED: &str = "updated:";
/// The init's line once the updater exited 0.
const UPDATE_REBOOT: &str = "kios: update: the other slot is written and boots next; rebooting";

/// The update pod, as docs/updates.md documents it, for `image` on `node`.
fn update_pod(name: &str, node: &str, image: &str, args: &[&str]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "kube-system" },
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "restartPolicy": "Never",
            "containers": [{
                "name": "update",
                "image": image,
                "args": args,
                "securityContext": {
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "capabilities": { "drop": ["ALL"] },
                },
                "volumeMounts": [
                    { "name": "system-socket", "mountPath": "/run/system.sock" },
                ],
            }],
            "volumes": [
                { "name": "system-socket",
                  "hostPath": { "path": "/run/system.sock", "type": "Socket" } },
            ],
        },
    })
}

/// Bundles of small stand-in files, each wrong in one way for a node
/// running release 2 on amd64 (the update test's node after its update).
fn bad_bundles() -> Vec<(String, BundleFiles<'static>)> {
    let uki = vec![0x4d; 4096];
    let root = vec![0xe0; 65536];
    let hash = |bytes: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    let manifest = |version: &str, arch: &str, uki_hash: String| {
        manifest_text(&[
            (key::FORMAT, FORMAT.to_string()),
            (key::VERSION, version.to_string()),
            (key::ARCH, arch.to_string()),
            (key::UKI_SIZE, uki.len().to_string()),
            (key::UKI_SHA256, uki_hash),
            (key::ROOT_SIZE, root.len().to_string()),
            (key::ROOT_SHA256, hash(&root)),
            (
                key::ROOT_PARTUUID,
                "0badc0de-0000-4000-8000-000000000000".to_string(),
            ),
            (key::BOOT_TRIES, "3".to_string()),
        ])
        .into_bytes()
    };
    let files = |manifest: Vec<u8>, root: &[u8]| {
        vec![
            (MANIFEST_FILE, manifest),
            (UKI_FILE, uki.clone()),
            (ROOT_FILE, root.to_vec()),
        ]
    };
    [
        (
            "wrong-arch",
            files(manifest("9", "arm64", hash(&uki)), &root),
        ),
        (
            "truncated",
            files(manifest("9", "amd64", hash(&uki)), &root[..root.len() / 2]),
        ),
        (
            "hash-mismatch",
            files(manifest("9", "amd64", hash(b"another kernel")), &root),
        ),
        ("older", files(manifest("1", "amd64", hash(&uki)), &root)),
    ]
    .into_iter()
    .map(|(case, files)| (format!("/bad/{case}"), files))
    .collect()
}

/// What the host saw of the update, in the cluster.
struct UpdateSeen {
    /// From the update pod's creation to the node Ready on its new boot.
    pod_to_ready: Duration,
    machine_id: (String, String),
    /// The bundle image is among the node's images after the reboot.
    bundle_image_kept: bool,
    /// Each bad bundle's pod: its phase and the refusal line the console showed.
    refusals: Vec<(&'static str, String, Option<String>)>,
}

#[test]
#[ignore = "builds releases, runs a control plane and a registry, and boots an A/B disk under OVMF: run by cargo kios test"]
fn an_update_pulled_as_an_image_moves_the_node_to_slot_b_and_bad_bundles_are_refused() -> Result<()>
{
    let releases = releases();
    let workspace = Workspace::locate()?;
    let bom = Bom::of(&workspace)?;
    let out = releases.out.join("a-to-b");
    let control_plane = ControlPlane::start(&bom, &out.join("control-plane"))?;
    let registry = Registry::start(&bom, &out.join("registry"))?;
    let kiosctl = workspace.build_musl_binary("kiosctl", ARCH)?;

    // Release 2 as a bundle, and the bad ones, in the loopback registry.
    let bundle = write_update_bundle(&releases.good_2, &kiosctl, TRIES, None, &out)?;
    let pushed = registry.push_archives(
        std::slice::from_ref(&bundle.archive),
        REPOSITORY,
        BUNDLE_TAG,
    )?;
    let bad_archive = out.join("kios-update-bad.tar");
    let bad = bad_bundles();
    let bad_dirs: Vec<(&str, BundleFiles)> = bad
        .iter()
        .map(|(dir, files)| (dir.as_str(), files.clone()))
        .collect();
    bundle_image("kios.local/kios-update-bad:1", ARCH, &kiosctl, &bad_dirs)?
        .write_archive(&bad_archive)?;
    let bad_pushed = registry.push_archives(&[bad_archive], BAD_REPOSITORY, "1")?;
    eprintln!(
        "bundle {} bytes pushed as {}; manifest:\n{}",
        bundle.archive_bytes,
        pushed.guest_reference(),
        bundle.manifest
    );

    // The node's identity on the ESP, for its first boot to take into the
    // persistent /etc: release 2's root knows nothing of this cluster.
    let esp_config = vec![
        ("hostname".to_string(), format!("{NODE}\n").into_bytes()),
        (
            "kubernetes/kubeconfig".to_string(),
            control_plane
                .node_kubeconfig(GUEST_SERVER, NODE)?
                .into_bytes(),
        ),
        (
            "kubernetes/node-ip".to_string(),
            format!("{NODE_IP}\n").into_bytes(),
        ),
        (
            format!(
                "containerd/certs.d/{}_{}_/hosts.toml",
                GUEST_ADDRESS, REGISTRY_GUEST_PORT
            ),
            containerd_hosts_toml(GUEST_REGISTRY).into_bytes(),
        ),
    ];
    let disk = build_slot_disk(
        &bom,
        &releases.good_1,
        None,
        &SlotDiskOptions {
            tries: TRIES,
            data_bytes: 1024 << 20,
            esp_config,
            ..SlotDiskOptions::default()
        },
        &out,
    )?;
    let monitor = out.join("a-to-b.monitor");
    let _ = std::fs::remove_file(&monitor);
    let config = VmConfig {
        reboots: true,
        monitor_socket: Some(monitor.clone()),
        guest_forwards: vec![control_plane.guest_forward()?, registry.guest_forward()?],
        ..slot_disk_vm_config(&disk, false)
    };

    let console: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let vm_exited = AtomicBool::new(false);
    let stop_vm = AtomicBool::new(false);
    let api = Api {
        control_plane: &control_plane,
        dir: &out,
        vm_exited: &vm_exited,
    };
    let (seen, run) = std::thread::scope(|scope| {
        let host = scope.spawn(|| {
            let seen = update_from_the_cluster(
                &api,
                &console,
                &pushed.guest_reference(),
                &bad_pushed.guest_reference(),
            );
            if seen.is_err() {
                stop_vm.store(true, Ordering::Relaxed);
            } else if let Err(error) = press_power_button(&monitor) {
                eprintln!("pressing the power button: {error:#}");
                stop_vm.store(true, Ordering::Relaxed);
            }
            seen
        });
        let run = run_vm(
            &config,
            RunOptions {
                timeout: RUN_TIMEOUT,
                echo: true,
            },
            |line| {
                console.lock().unwrap().push(line.text.clone());
                if stop_vm.load(Ordering::Relaxed) {
                    LineVerdict::Stop
                } else {
                    LineVerdict::Continue
                }
            },
        );
        vm_exited.store(true, Ordering::Relaxed);
        let seen = host.join().map_err(|_| anyhow!("the host side panicked"));
        (seen, run)
    });
    let run = run?;
    let seen = seen??;
    let slots = booted_slots(&run);
    let (a, b) = (Slot::A.letter(), Slot::B.letter());
    eprintln!(
        "update: pod created to node Ready on the new slot {:.1} s; slots booted {slots:?}",
        seen.pod_to_ready.as_secs_f64()
    );
    let after = read_slots(&disk.path)?;
    let report = CheckReport {
        checks: vec![
            Check {
                name: "the node booted slot A, took the update from its pod, and rebooted into slot B",
                outcome: expect(slots == vec![a, b], || format!("slots booted: {slots:?}"))
                    .and(expect(count(&run, UPDATED) >= 1, || "no `updated:` line".into()))
                    .and(expect(count(&run, UPDATE_REBOOT) == 1, || {
                        "no reboot line from the init".into()
                    })),
            },
            Check {
                name: "slot B's boot was good",
                outcome: expect(count(&run, &format!("{BOOT_GOOD}{b}")) == 1, || {
                    "no boot-good line for slot B".into()
                }),
            },
            Check {
                name: "the node came back Ready with the same /etc (its machine ID) and data (the bundle image it pulled)",
                outcome: expect(seen.machine_id.0 == seen.machine_id.1, || {
                    format!("machine IDs {:?}", seen.machine_id)
                })
                .and(expect(seen.bundle_image_kept, || {
                    "the bundle image is not among the node's images after the reboot".into()
                })),
            },
            Check {
                name: "each bad bundle was refused with a line naming what was wrong",
                outcome: seen
                    .refusals
                    .iter()
                    .map(|(case, phase, line)| match line {
                        Some(_) if phase == "Failed" => Ok(()),
                        _ => Err(format!("{case}: pod {phase}, refusal line {line:?}")),
                    })
                    .collect::<Result<Vec<()>, String>>()
                    .map(|_| ()),
            },
            Check {
                name: "nothing was written for them: both slots hold their releases, each entry is there once",
                outcome: expect(
                    after.partition_uuids
                        == (releases.good_1.partition_uuid, releases.good_2.partition_uuid),
                    || format!("slot partition UUIDs {:?}", after.partition_uuids),
                )
                .and(expect(
                    after.entries
                        == vec![
                            format!("kios-1-a+{TRIES}.efi"),
                            format!("kios-2-b+{TRIES}.efi"),
                        ],
                    || format!("entries {:?}", after.entries),
                ))
                .and(expect(after.slot_b_root == sha256_file(&releases.good_2.root).ok(), || {
                    "slot B does not hold release 2's root".into()
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

/// The host's side: waits for the node, creates the update pod, waits
/// for the node's next boot to be Ready, then runs each bad bundle's pod.
fn update_from_the_cluster(
    api: &Api,
    console: &Mutex<Vec<String>>,
    bundle: &str,
    bad: &str,
) -> Result<UpdateSeen> {
    let node = api.wait_for("the node is Ready on slot A", READY_TIMEOUT, || {
        Ok(api.node(NODE)?.filter(node_ready))
    })?;
    let boot_id = node["status"]["nodeInfo"]["bootID"].clone();
    let machine_before = node["status"]["nodeInfo"]["machineID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let created = Instant::now();
    api.create("update", &update_pod("update", NODE, bundle, &["update"]))?;
    let node = api.wait_for("the node is Ready after its reboot", READY_TIMEOUT, || {
        Ok(api
            .node(NODE)?
            .filter(|node| node["status"]["nodeInfo"]["bootID"] != boot_id && node_ready(node)))
    })?;
    let pod_to_ready = created.elapsed();
    let machine_after = node["status"]["nodeInfo"]["machineID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bundle_image_kept = node["status"]["images"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|image| image["names"].as_array().into_iter().flatten())
        .any(|name| name.as_str().is_some_and(|name| name.starts_with(bundle)));
    let mut refusals = Vec::new();
    for (case, needle) in BAD_BUNDLES {
        let name = format!("update-{case}");
        let from = console.lock().unwrap().len();
        api.create(
            &name,
            &update_pod(&name, NODE, bad, &["update", &format!("/bad/{case}")]),
        )?;
        let phase = api.wait_for(&format!("pod {name} has ended"), POD_TIMEOUT, || {
            let pod = api.pod("kube-system", &name)?;
            let phase = pod["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Ok(matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase))
        })?;
        let line = console.lock().unwrap()[from..]
            .iter()
            .find(|line| line.contains(REFUSED) && line.contains(needle))
            .cloned();
        eprintln!("bad bundle {case}: pod {phase}, {line:?}");
        refusals.push((case, phase, line));
    }
    Ok(UpdateSeen {
        pod_to_ready,
        machine_id: (machine_before, machine_after),
        bundle_image_kept,
        refusals,
    })
}

/// What the disk holds once the node is off: the slot partitions' GPT
/// UUIDs (A, B), the ESP's entries, slot B's root's SHA-256.
struct SlotsOnDisk {
    partition_uuids: (Uuid, Uuid),
    entries: Vec<String>,
    slot_b_root: Option<String>,
}

fn read_slots(disk: &Path) -> Result<SlotsOnDisk> {
    let table = gpt::GptConfig::new()
        .writable(false)
        .open(disk)
        .with_context(|| format!("reading {}'s GPT", disk.display()))?;
    let named = |name: &str| {
        table
            .partitions()
            .values()
            .find(|partition| partition.name == name)
            .cloned()
            .with_context(|| format!("no partition {name}"))
    };
    let (slot_a, slot_b) = (
        named(&Slot::A.partition_name())?,
        named(&Slot::B.partition_name())?,
    );
    let esp = named(ESP_NAME)?;
    let sector = 512;
    let file = std::fs::File::open(disk)?;
    let esp_bytes = {
        let mut bytes = vec![0; ((esp.last_lba - esp.first_lba + 1) * sector) as usize];
        file.read_exact_at(&mut bytes, esp.first_lba * sector)?;
        bytes
    };
    let filesystem =
        fatfs::FileSystem::new(std::io::Cursor::new(esp_bytes), fatfs::FsOptions::new())
            .context("reading the ESP")?;
    let mut entries: Vec<String> = filesystem
        .root_dir()
        .open_dir(ENTRIES_DIR)?
        .iter()
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name())
        .filter(|name| name.ends_with(".efi"))
        .collect();
    entries.sort();
    let slot_b_root = {
        use sha2::Digest;
        let root_bytes = releases().good_2.root_bytes;
        let mut bytes = vec![0; root_bytes as usize];
        file.read_exact_at(&mut bytes, slot_b.first_lba * sector)?;
        Some(
            sha2::Sha256::digest(&bytes)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        )
    };
    Ok(SlotsOnDisk {
        partition_uuids: (slot_a.part_guid, slot_b.part_guid),
        entries,
        slot_b_root,
    })
}
