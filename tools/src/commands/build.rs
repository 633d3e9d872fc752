//! `kios build`: write the bootable artifacts and a manifest listing each
//! with its path, size and sha256; `kios boot --image` boots them from it.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::components::node::NodeComponents;
use crate::host::arch::Arch;
use crate::host::fs::sha256_file;
use crate::host::workspace::Workspace;
use crate::image::board::{board_kernel, build_card, Board, BoardCard, CardOptions};
use crate::image::disk::{build_disk_image, DiskOptions, DEFAULT_DATA_BYTES};
use crate::image::node_image::{build_node_image, ImageOptions, InitChoice, NodeImage};
use crate::image::secure_boot::{project_key, write_der_certificate, SigningKey};
use crate::image::slots::{
    build_release, build_slot_disk, release_files, ReleaseOptions, SlotDiskOptions, DEFAULT_TRIES,
};
use crate::image::update_bundle::write_update_bundle;
use crate::kernel::KernelChoice;
use crate::testing::probe_pod::probe_pod_file;
use crate::vm::qemu::ConsoleVerbosity;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[arg(long, value_enum, default_value_t = Arch::Amd64)]
    arch: Arch,
    /// Write DIR/sdcard.img for a board whose own firmware boots it
    /// (rpi4: Raspberry Pi 4 Model B; arm64, kiOS kernel): its boot
    /// partition with the firmware, config.txt, cmdline.txt, the kernel,
    /// its device tree and the initramfs, and the data partition
    /// (docs/boards.md).
    #[arg(long, value_enum, conflicts_with_all = ["arch", "kernel", "disk", "update"])]
    board: Option<Board>,
    /// Where the artifacts and manifest.json go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Add the probe pod (a test fixture) to the static pods.
    #[arg(long)]
    probe_pod: bool,
    /// How the initramfs is stored (zstd: the smallest, see docs/measurements.md).
    #[arg(long, value_enum, default_value_t = crate::image::initramfs::Compression::default())]
    compression: crate::image::initramfs::Compression,
    /// The OCI runtime containerd runs containers with.
    #[arg(long, value_enum, default_value_t = crate::components::OciRuntime::Runc)]
    oci_runtime: crate::components::OciRuntime,
    /// Also write DIR/disk.img: GPT, an EFI system partition with the unified
    /// kernel image, and an empty ext4 data partition.
    #[arg(long)]
    disk: bool,
    /// With --disk: the A/B disk instead (docs/updates.md): systemd-boot
    /// with boot counting, slot A holding this build as a release whose
    /// root is verified by dm-verity, slot B empty for an update. kiOS kernel only.
    #[arg(long, requires = "disk")]
    slots: bool,
    /// Write an update bundle of this build to DIR (docs/updates.md): an
    /// OCI image archive a node pulls and `kiosctl update` hands to the
    /// node, which writes it into its inactive slot. kiOS kernel only.
    #[arg(long, value_name = "DIR")]
    update: Option<PathBuf>,
    /// With --slots or --update: the release's version, which the boot
    /// manager orders slots by (newest first) and a node updates only to
    /// a newer one.
    #[arg(long, value_name = "VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    release_version: String,
    /// The kiOS kernel (everything built in; built on first use, then
    /// cached), or Debian's cloud kernel with modules.
    #[arg(long, value_enum, default_value_t = KernelChoice::Kios)]
    kernel: KernelChoice,
    /// The data partition's size with --disk; with --board the least it
    /// gets (it fills the card up to a power of two).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_DATA_BYTES >> 20)]
    data_mib: u64,
    /// What the disk's serial console shows: quiet (the init and the
    /// timeline) or all (containerd's and the kubelet's lines too). A
    /// kernel and initramfs boot gets it from `kios boot --console`.
    #[arg(long, value_enum, default_value_t = ConsoleVerbosity::Quiet, requires = "disk")]
    console: ConsoleVerbosity,
    /// Lay the files of DIR over the image's /etc: DIR is laid out as /etc
    /// is (`hostname`, `kubernetes/`, `containerd/`, `cni/`); kubeadm's
    /// names are taken as kiOS's ([docs/configuration.md]).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// With --disk or --board: put the files of DIR on the EFI system
    /// partition (a card's boot partition) under /kios/config/, for the
    /// node to take into /etc on its first boot.
    #[arg(long, value_name = "DIR")]
    esp_config: Option<PathBuf>,
    /// With --slots or --update: sign systemd-boot and the UKI on the
    /// disk, and the update bundle's UKI, for UEFI Secure Boot with the project key, made once in the cache's
    /// secure-boot/key/ (docs/security.md#secure-boot); writes the
    /// certificate to enroll as DIR/secure-boot-db.cer (DER).
    #[arg(long, conflicts_with = "sign_key")]
    sign: bool,
    /// With --slots or --update: sign with this PEM private key (RSA-2048) instead,
    /// whose certificate is --sign-cert.
    #[arg(long, value_name = "KEY.pem", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The PEM X.509 certificate of --sign-key.
    #[arg(long, value_name = "CERT.pem", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// Print the manifest as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The regular files under `dir`, by `/`-separated path relative to it,
/// sorted. Symlinks and other special files are refused.
pub fn read_config_dir(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    ensure!(
        dir.is_dir(),
        "{} is not a directory (a configuration is laid out as /etc is)",
        dir.display()
    );
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name().min_depth(1) {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        ensure!(
            entry.file_type().is_file(),
            "{}: not a regular file (a configuration holds files and directories only)",
            entry.path().display()
        );
        let relative = entry
            .path()
            .strip_prefix(dir)
            .context("walkdir left its root")?
            .to_str()
            .with_context(|| format!("{}: not a UTF-8 path", entry.path().display()))?
            .to_string();
        let contents = std::fs::read(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        files.push((relative, contents));
    }
    Ok(files)
}

/// The image files `cargo kios build --config DIR` adds, from the files
/// `read_config_dir` found in `dir`: each at its place in /etc (kubeadm's
/// names at kiOS's), the files the node reads checked as the first boot
/// checks them. Refuses unknown top-level names, naming what it accepts.
pub fn config_overlay(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Vec<(String, Vec<u8>)>> {
    use kios_firstboot::policy::{self, Refusal, TOP_LEVEL};
    let mut overlay: Vec<(String, Vec<u8>)> = Vec::new();
    for (relative, contents) in files {
        let top = relative.split('/').next().unwrap_or_default();
        ensure!(
            TOP_LEVEL.contains(&top),
            "{}: `{top}` is not configuration kiOS takes; a --config directory holds only {} \
             (laid out as /etc is: docs/configuration.md)",
            dir.join(relative).display(),
            TOP_LEVEL.join(", ")
        );
        let target = match policy::place(relative) {
            Ok(placement) => {
                if let Err(refusal) = policy::validate(placement.check, contents) {
                    let reason = match refusal {
                        Refusal::TooLarge => {
                            format!("larger than {} bytes", policy::MAX_FILE_BYTES)
                        }
                        Refusal::Invalid(reason) => reason.to_string(),
                        Refusal::Unknown => "not a file kiOS takes".to_string(),
                    };
                    bail!("{}: {reason}", dir.join(relative).display());
                }
                let mut target = kios_firstboot::text::Text::<512>::new();
                placement.target(&mut target);
                target.as_str().to_string()
            }
            // Anything else under an accepted name goes as it is: a file a
            // kubeconfig or containerd's config names by path, say.
            Err(_) => format!("/etc/{relative}"),
        };
        if let Some((earlier, _)) = overlay.iter().find(|(path, _)| *path == target) {
            bail!(
                "{}: {target} already comes from another file of {} ({earlier}): kiOS's and \
                 kubeadm's names for one file, give one",
                dir.join(relative).display(),
                dir.display()
            );
        }
        overlay.push((target, contents.clone()));
    }
    Ok(overlay)
}

/// The artifacts' names in the manifest.
pub const KERNEL: &str = "kernel";
pub const INITRAMFS: &str = "initramfs";
pub const UKI: &str = "uki";
pub const DISK: &str = "disk";
pub const UPDATE_BUNDLE: &str = "update";
pub const SECURE_BOOT_CERT: &str = "db-cert";
pub const SD_CARD: &str = "sdcard";
/// The certificate a signed disk's firmware must trust, in DIR.
pub const SECURE_BOOT_CERT_FILE: &str = "secure-boot-db.cer";

/// One file `kios build` wrote.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    /// Relative to the manifest's directory, so the directory can move.
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// One component's bytes in the image.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentBytes {
    pub component: String,
    pub bytes: u64,
}

/// `DIR/manifest.json`: what `kios build --out DIR` wrote and how it was built.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub arch: Arch,
    pub kernel: KernelChoice,
    /// Whether DIR holds `disk.img` (and its unified kernel image).
    pub disk: bool,
    /// Whether the probe pod (a test fixture that powers the node off) is in.
    pub probe_pod: bool,
    /// The board whose card DIR holds (`sdcard.img`), if any.
    #[serde(default)]
    pub board: Option<Board>,
    pub artifacts: Vec<Artifact>,
    pub components: Vec<ComponentBytes>,
}

impl Manifest {
    pub const FILE: &'static str = "manifest.json";

    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(Manifest::FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (written by `cargo kios build --out DIR`)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The artifact `name`'s path under `dir`, checked against its recorded
    /// size and sha256: what boots is what was built.
    pub fn verified_path(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let Some(artifact) = self.artifacts.iter().find(|artifact| artifact.name == name) else {
            bail!("{} lists no {name}", dir.join(Manifest::FILE).display());
        };
        let path = dir.join(&artifact.path);
        let found = describe(name, dir, &path)?;
        ensure!(
            found.bytes == artifact.bytes && found.sha256 == artifact.sha256,
            "{} is not what {} recorded ({} bytes, sha256 {}; found {} bytes, sha256 {})",
            path.display(),
            Manifest::FILE,
            artifact.bytes,
            artifact.sha256,
            found.bytes,
            found.sha256
        );
        Ok(path)
    }
}

/// `path` (under `dir`) as an artifact named `name`.
fn describe(name: &str, dir: &Path, path: &Path) -> Result<Artifact> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(Artifact {
        name: name.to_string(),
        path: path.strip_prefix(dir).unwrap_or(path).to_path_buf(),
        bytes,
        sha256: sha256_file(path)?,
    })
}

pub fn run(args: &BuildArgs) -> Result<()> {
    let release_wanted = args.slots || args.update.is_some();
    if release_wanted && args.kernel != KernelChoice::Kios {
        bail!(
            "--slots and --update need the kiOS kernel: a slot's kernel sets up dm-verity and mounts \
             the erofs root itself, which Debian's 6.1 kernel has only as modules"
        );
    }
    if (args.sign || args.sign_key.is_some()) && !release_wanted {
        bail!("--sign and --sign-key sign a release's boot files: give --slots or --update");
    }
    if args.esp_config.is_some() && !args.disk && args.board.is_none() {
        bail!("--esp-config puts files on a disk's or a card's boot partition: give --disk or --board");
    }
    let arch = args.board.map_or(args.arch, Board::arch);
    // Before the build: a key that does not fit fails at once.
    let signing = match (&args.sign_key, &args.sign_cert) {
        (Some(key), Some(cert)) => Some(SigningKey::from_files(key, cert)?),
        _ if args.sign => Some(project_key()?),
        _ => None,
    };
    let workspace = Workspace::locate()?;
    let components = NodeComponents::resolve(&workspace, arch, args.oci_runtime, args.kernel)?;
    let image: NodeImage = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            init: InitChoice::Kios,
            extra_files: {
                let mut files = match &args.config {
                    Some(dir) => config_overlay(dir, &read_config_dir(dir)?)?,
                    None => Vec::new(),
                };
                if args.probe_pod {
                    files.push(probe_pod_file());
                }
                if release_wanted {
                    files.extend(release_files(&args.release_version)?);
                }
                files
            },
            compression: args.compression,
            root_image: release_wanted,
        },
        &args.out,
    )?;
    let kernel = args.out.join(format!("vmlinuz-{arch}"));
    std::fs::copy(&image.kernel, &kernel)
        .with_context(|| format!("copying the kernel to {}", kernel.display()))?;
    let mut artifacts = vec![
        describe(KERNEL, &args.out, &kernel)?,
        describe(INITRAMFS, &args.out, &image.initrd)?,
    ];
    let release = match release_wanted {
        true => Some(build_release(
            &components.bom,
            &image,
            &ReleaseOptions {
                version: args.release_version.clone(),
                console: args.console,
                extra_kernel_arguments: String::new(),
            },
            &args.out,
        )?),
        false => None,
    };
    if let (Some(dir), Some(release)) = (&args.update, &release) {
        let kiosctl = workspace.build_musl_binary("kiosctl", args.arch)?;
        let bundle = write_update_bundle(release, &kiosctl, DEFAULT_TRIES, signing.as_ref(), dir)?;
        eprintln!(
            "update bundle {}: {} bytes ({}), version {}",
            bundle.archive.display(),
            bundle.archive_bytes,
            bundle.image,
            bundle.version
        );
        artifacts.push(describe(UPDATE_BUNDLE, &args.out, &bundle.archive)?);
    }
    let data_bytes = args
        .data_mib
        .checked_mul(1 << 20)
        .context("--data-mib is too large")?;
    let esp_config = match &args.esp_config {
        Some(dir) => read_config_dir(dir)?,
        None => Vec::new(),
    };
    if let (true, Some(release)) = (args.slots, &release) {
        let disk = build_slot_disk(
            &components.bom,
            release,
            None,
            &SlotDiskOptions {
                data_bytes,
                esp_config,
                signing: signing.clone(),
                ..SlotDiskOptions::default()
            },
            &args.out,
        )?;
        eprintln!(
            "A/B disk image: {} bytes, {} allocated (sparse); release {}: unified kernel \
             image {} bytes, root {} bytes and its hash tree {} bytes",
            disk.bytes,
            disk.allocated_bytes,
            release.version,
            release.uki_bytes,
            release.root_data_bytes,
            release.root_bytes - release.root_data_bytes
        );
        artifacts.push(describe(UKI, &args.out, &release.uki)?);
        artifacts.push(describe(DISK, &args.out, &disk.path)?);
        if let Some(key) = &signing {
            let cert = args.out.join(SECURE_BOOT_CERT_FILE);
            write_der_certificate(key, &cert)?;
            eprintln!(
                "signed for Secure Boot with {}: enroll {} in the firmware's db",
                key.cert.display(),
                cert.display()
            );
            artifacts.push(describe(SECURE_BOOT_CERT, &args.out, &cert)?);
        }
    } else if let Some(board) = args.board {
        let card = build_card(
            board,
            &components.bom,
            &image,
            board_kernel(&components, board)?,
            &CardOptions {
                min_data_bytes: data_bytes,
                esp_config,
            },
            &args.out,
        )?;
        print_card(&card);
        artifacts.push(describe(SD_CARD, &args.out, &card.image)?);
    } else if args.disk {
        let options = DiskOptions {
            data_bytes,
            console: args.console,
            esp_config,
        };
        let disk = build_disk_image(&components.bom, &image, &options, &args.out)?;
        eprintln!(
            "disk image: {} bytes, {} allocated (sparse); unified kernel image {} bytes",
            disk.bytes, disk.allocated_bytes, disk.uki_bytes
        );
        artifacts.push(describe(UKI, &args.out, &disk.uki)?);
        artifacts.push(describe(DISK, &args.out, &disk.path)?);
    }
    let manifest = Manifest {
        arch,
        kernel: args.kernel,
        disk: args.disk,
        probe_pod: args.probe_pod,
        board: args.board,
        artifacts,
        components: image
            .parts
            .iter()
            .map(|part| ComponentBytes {
                component: part.component.clone(),
                bytes: part.bytes,
            })
            .collect(),
    };
    let path = args.out.join(Manifest::FILE);
    let json = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    if args.json {
        println!("{json}");
        return Ok(());
    }
    for artifact in &manifest.artifacts {
        println!(
            "{:<10} {:>12} bytes  {}  {}",
            artifact.name,
            artifact.bytes,
            artifact.sha256,
            args.out.join(&artifact.path).display()
        );
    }
    println!("manifest: {}", path.display());
    Ok(())
}

/// The card's partitions and what its boot partition holds, on stderr.
fn print_card(card: &BoardCard) {
    eprintln!(
        "{} card {}: {} bytes, {} allocated (sparse)",
        card.board.name(),
        card.image.display(),
        card.bytes,
        card.allocated_bytes
    );
    for partition in &card.partitions {
        eprintln!(
            "  partition {} {:<6} {:>12} bytes at {}",
            partition.number, partition.name, partition.bytes, partition.offset
        );
    }
    for file in &card.boot_files {
        eprintln!("  boot/{:<28} {:>12} bytes", file.name, file.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Manifest {
        std::fs::write(dir.join("vmlinuz-arm64"), b"kernel").unwrap();
        Manifest {
            arch: Arch::Arm64,
            kernel: KernelChoice::Kios,
            disk: false,
            probe_pod: true,
            board: None,
            artifacts: vec![describe(KERNEL, dir, &dir.join("vmlinuz-arm64")).unwrap()],
            components: vec![ComponentBytes {
                component: "init".into(),
                bytes: 60_000,
            }],
        }
    }

    #[test]
    fn the_manifest_round_trips_and_names_its_choices() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = sample(dir.path());
        let json = serde_json::to_string_pretty(&manifest).unwrap();
        assert!(json.contains(r#""arch": "arm64""#), "{json}");
        assert!(json.contains(r#""kernel": "kios""#), "{json}");
        assert!(json.contains(r#""path": "vmlinuz-arm64""#), "{json}");
        std::fs::write(dir.path().join(Manifest::FILE), json).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);
    }

    fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        dir
    }

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters: []\n";

    #[test]
    fn a_config_dir_lands_in_etc_with_kubeadms_names_mapped() {
        let dir = config_dir(&[
            ("hostname", "edge-1\n"),
            ("kubernetes/bootstrap-kubelet.conf", KUBECONFIG),
            (
                "kubernetes/pki/ca.crt",
                "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
            ),
            ("kubernetes/manifests/web.yaml", "kind: Pod\n"),
            (
                "containerd/certs.d/registry.local/hosts.toml",
                "server = \"x\"\n",
            ),
            ("cni/net.d/10-bridge.conflist", "{}"),
            ("kubernetes/client/extra.pem", "anything"),
        ]);
        let files = read_config_dir(dir.path()).unwrap();
        let overlay = config_overlay(dir.path(), &files).unwrap();
        let paths: Vec<&str> = overlay.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/cni/net.d/10-bridge.conflist",
                "/etc/containerd/certs.d/registry.local/hosts.toml",
                "/etc/hostname",
                "/etc/kubernetes/bootstrap-kubeconfig",
                "/etc/kubernetes/client/extra.pem",
                "/etc/kubernetes/manifests/web.yaml",
                "/etc/kubernetes/pki/ca.crt",
            ]
        );
    }

    #[test]
    fn a_config_dir_with_unknown_names_or_bad_files_is_refused() {
        let dir = config_dir(&[
            ("kubernetes/node-ip", "10.0.2.15\n"),
            ("passwd", "root::0:0"),
        ]);
        let error = config_overlay(dir.path(), &read_config_dir(dir.path()).unwrap()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("`passwd` is not configuration kiOS takes"),
            "{message}"
        );
        assert!(
            message.contains("hostname, kubernetes, containerd, cni"),
            "{message}"
        );

        for (path, contents, reason) in [
            ("hostname", "not_a_name\n", "DNS-1123"),
            ("kubernetes/kubelet.conf", "kind: Config\n", "no apiVersion"),
            ("kubernetes/pki/ca.crt", "MIIB", "not a PEM certificate"),
        ] {
            let dir = config_dir(&[(path, contents)]);
            let error = config_overlay(dir.path(), &read_config_dir(dir.path()).unwrap())
                .unwrap_err()
                .to_string();
            assert!(error.contains(reason), "{path}: {error}");
        }

        let both = config_dir(&[
            ("kubernetes/kubeconfig", KUBECONFIG),
            ("kubernetes/kubelet.conf", KUBECONFIG),
        ]);
        let error = config_overlay(both.path(), &read_config_dir(both.path()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("give one"), "{error}");
    }

    #[test]
    fn the_disk_names_its_esp_as_the_first_boot_looks_for_it() {
        assert_eq!(
            crate::image::disk::ESP_NAME,
            kios_abi::image::ESP_PARTITION_NAME
        );
    }

    #[test]
    fn a_changed_or_missing_artifact_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = sample(dir.path());
        assert_eq!(
            manifest.verified_path(dir.path(), KERNEL).unwrap(),
            dir.path().join("vmlinuz-arm64")
        );
        assert!(manifest.verified_path(dir.path(), DISK).is_err());
        std::fs::write(dir.path().join("vmlinuz-arm64"), b"kernal").unwrap();
        let error = manifest.verified_path(dir.path(), KERNEL).unwrap_err();
        assert!(error.to_string().contains("is not what"), "{error}");
    }
}
