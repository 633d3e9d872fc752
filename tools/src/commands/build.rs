//! `kios build`: write the bootable artifacts and a manifest listing each
//! with its path, size and sha256; `kios boot --image` boots them from it.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::components::node::NodeComponents;
use crate::host::arch::Arch;
use crate::host::fs::sha256_file;
use crate::host::workspace::Workspace;
use crate::image::disk::{build_disk_image, DiskOptions, DEFAULT_DATA_BYTES};
use crate::image::node_image::{build_node_image, ImageOptions, InitChoice, NodeImage};
use crate::kernel::KernelChoice;
use crate::testing::probe_pod::probe_pod_file;
use crate::vm::qemu::ConsoleVerbosity;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[arg(long, value_enum, default_value_t = Arch::Amd64)]
    arch: Arch,
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
    /// The kiOS kernel (everything built in; built on first use, then
    /// cached), or Debian's cloud kernel with modules.
    #[arg(long, value_enum, default_value_t = KernelChoice::Kios)]
    kernel: KernelChoice,
    /// The data partition's size with --disk.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_DATA_BYTES >> 20, requires = "disk")]
    data_mib: u64,
    /// What the disk's serial console shows: quiet (the init and the
    /// timeline) or all (containerd's and the kubelet's lines too). A
    /// kernel and initramfs boot gets it from `kios boot --console`.
    #[arg(long, value_enum, default_value_t = ConsoleVerbosity::Quiet, requires = "disk")]
    console: ConsoleVerbosity,
    /// Print the manifest as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The artifacts' names in the manifest.
pub const KERNEL: &str = "kernel";
pub const INITRAMFS: &str = "initramfs";
pub const UKI: &str = "uki";
pub const DISK: &str = "disk";

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
    let workspace = Workspace::locate()?;
    let components = NodeComponents::resolve(&workspace, args.arch, args.oci_runtime, args.kernel)?;
    let image: NodeImage = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            init: InitChoice::Kios,
            extra_files: if args.probe_pod {
                vec![probe_pod_file()]
            } else {
                Vec::new()
            },
            compression: args.compression,
        },
        &args.out,
    )?;
    let kernel = args.out.join(format!("vmlinuz-{}", args.arch));
    std::fs::copy(&image.kernel, &kernel)
        .with_context(|| format!("copying the kernel to {}", kernel.display()))?;
    let mut artifacts = vec![
        describe(KERNEL, &args.out, &kernel)?,
        describe(INITRAMFS, &args.out, &image.initrd)?,
    ];
    if args.disk {
        let options = DiskOptions {
            data_bytes: args
                .data_mib
                .checked_mul(1 << 20)
                .context("--data-mib is too large")?,
            console: args.console,
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
        arch: args.arch,
        kernel: args.kernel,
        disk: args.disk,
        probe_pod: args.probe_pod,
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
