//! `kios build`: write the bootable artifacts and a manifest listing each
//! with its path, size and sha256.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::host::arch::Arch;
use crate::host::fs::sha256_file;
use crate::host::workspace::Workspace;
use crate::image::disk::{build_disk_image, DiskOptions, DEFAULT_DATA_BYTES};
use crate::image::node_image::{build_node_image, ImageOptions, InitChoice, NodeImage};
use crate::kernel::KernelChoice;
use crate::testing::probe_pod::probe_pod_file;

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
    /// How the initramfs is stored (none: fastest boot; gzip: smallest image).
    #[arg(long, value_enum, default_value_t = crate::image::node_image::Compression::None)]
    compression: crate::image::node_image::Compression,
    /// The OCI runtime containerd runs containers with.
    #[arg(long, value_enum, default_value_t = crate::components::OciRuntime::Runc)]
    oci_runtime: crate::components::OciRuntime,
    /// Also write DIR/disk.img: GPT, an EFI system partition with the unified
    /// kernel image, and an empty ext4 data partition.
    #[arg(long)]
    disk: bool,
    /// Debian's cloud kernel with modules, or the kiOS kernel (everything
    /// built in; built on first use, then cached).
    #[arg(long, value_enum, default_value_t = KernelChoice::Debian)]
    kernel: KernelChoice,
    /// The data partition's size with --disk.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_DATA_BYTES >> 20, requires = "disk")]
    data_mib: u64,
}

#[derive(Serialize)]
struct Artifact {
    name: &'static str,
    path: PathBuf,
    bytes: u64,
    sha256: String,
}

#[derive(Serialize)]
struct Manifest<'a> {
    arch: Arch,
    artifacts: Vec<Artifact>,
    components: &'a [crate::image::node_image::ImagePart],
}

fn artifact(name: &'static str, path: &Path) -> Result<Artifact> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(Artifact {
        name,
        path: path.to_path_buf(),
        bytes,
        sha256: sha256_file(path)?,
    })
}

pub fn run(args: &BuildArgs) -> Result<()> {
    let workspace = Workspace::locate()?;
    let image: NodeImage = build_node_image(
        &workspace,
        args.arch,
        &ImageOptions {
            init: InitChoice::Kios,
            oci_runtime: args.oci_runtime,
            extra_files: if args.probe_pod {
                vec![probe_pod_file()]
            } else {
                Vec::new()
            },
            compression: args.compression,
            kernel: args.kernel.image(&workspace, args.arch)?,
        },
        &args.out,
    )?;
    let kernel = args.out.join(format!("vmlinuz-{}", args.arch));
    std::fs::copy(&image.kernel, &kernel)
        .with_context(|| format!("copying the kernel to {}", kernel.display()))?;
    let mut artifacts = vec![
        artifact("kernel", &kernel)?,
        artifact("initramfs", &image.initrd)?,
    ];
    if args.disk {
        let options = DiskOptions {
            data_bytes: args
                .data_mib
                .checked_mul(1 << 20)
                .context("--data-mib is too large")?,
        };
        let disk = build_disk_image(&workspace, &image, &options, &args.out)?;
        println!(
            "disk image: {} bytes, {} allocated (sparse); unified kernel image {} bytes",
            disk.bytes, disk.allocated_bytes, disk.uki_bytes
        );
        artifacts.push(artifact("uki", &disk.uki)?);
        artifacts.push(artifact("disk", &disk.path)?);
    }
    let manifest = Manifest {
        arch: args.arch,
        artifacts,
        components: &image.parts,
    };
    let path = args.out.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    for artifact in &manifest.artifacts {
        println!(
            "{:<10} {:>12} bytes  {}  {}",
            artifact.name,
            artifact.bytes,
            artifact.sha256,
            artifact.path.display()
        );
    }
    println!("manifest: {}", path.display());
    Ok(())
}
