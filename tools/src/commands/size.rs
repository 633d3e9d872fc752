//! `kios size`: the stripped init's size per arch against the 64 KiB budget.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cli::ArchSelection;
use crate::components::node::NodeComponents;
use crate::components::OciRuntime;
use crate::host::arch::Arch;
use crate::host::workspace::Workspace;
use crate::image::node_image::{build_node_image, ImageOptions};
use crate::kernel::KernelChoice;
use crate::testing::standin_image::INIT_PACKAGE;

/// The init's size budget: it must stay small enough to be noise in boot
/// time and image size. 64 KiB until issue 17's robustness fixes, 68 KiB
/// until issue 18's boot counting (see docs/measurements.md, "The init's size").
pub const INIT_SIZE_LIMIT_BYTES: u64 = 76 * 1024;

#[derive(Debug, clap::Args)]
pub struct SizeArgs {
    /// Print JSON (`{"init_bytes":{"amd64":N,"arm64":M},...}`) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also build these arches' node images and report, per arch (`images`
    /// in JSON), the initramfs as shipped, the kernel, the bootable artifact
    /// (both) against its 50 MB target, and bytes per component (raw).
    #[arg(long, value_enum)]
    arch: Option<ArchSelection>,
    /// The kernel the images are built with.
    #[arg(long, value_enum, default_value_t = KernelChoice::Kios, requires = "arch")]
    kernel: KernelChoice,
}

/// The bootable artifact's size target (kernel plus initramfs as shipped),
/// a report line, not a check: images grow with what users add.
pub const ARTIFACT_TARGET_BYTES: u64 = 50_000_000;

/// The node image's size: the initramfs as shipped, and what it holds.
#[derive(Debug, Serialize)]
struct ImageSize {
    arch: Arch,
    kernel: KernelChoice,
    image_bytes: u64,
    kernel_bytes: u64,
    /// Kernel plus initramfs as shipped: what boots.
    artifact_bytes: u64,
    components: BTreeMap<String, u64>,
}

fn image_size(workspace: &Workspace, arch: Arch, kernel: KernelChoice) -> Result<ImageSize> {
    let out = workspace.output_dir()?.join("node-size");
    let components = NodeComponents::resolve(workspace, arch, OciRuntime::Runc, kernel)?;
    let image = build_node_image(workspace, &components, &ImageOptions::default(), &out)?;
    let image_bytes = std::fs::metadata(&image.initrd)
        .with_context(|| format!("reading {}", image.initrd.display()))?
        .len();
    let kernel_bytes = std::fs::metadata(&image.kernel)
        .with_context(|| format!("reading {}", image.kernel.display()))?
        .len();
    let components = image
        .parts
        .iter()
        .map(|part| (part.component.clone(), part.bytes))
        .collect();
    Ok(ImageSize {
        arch,
        kernel,
        image_bytes,
        kernel_bytes,
        artifact_bytes: image_bytes + kernel_bytes,
        components,
    })
}

#[derive(Debug, Serialize)]
struct SizeReport {
    init_bytes: BTreeMap<Arch, u64>,
    limit_bytes: u64,
    within_limit: BTreeMap<Arch, bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<ImageSize>,
}

impl SizeReport {
    fn new(init_bytes: BTreeMap<Arch, u64>) -> SizeReport {
        let within_limit = init_bytes
            .iter()
            .map(|(arch, bytes)| (*arch, *bytes <= INIT_SIZE_LIMIT_BYTES))
            .collect();
        SizeReport {
            init_bytes,
            limit_bytes: INIT_SIZE_LIMIT_BYTES,
            within_limit,
            images: Vec::new(),
        }
    }

    fn table(&self) -> String {
        let mut table = format!(
            "{:<6} {:>12} {:>12}  {}\n",
            "arch", "init bytes", "limit", "within"
        );
        for (arch, bytes) in &self.init_bytes {
            let within = if *bytes <= self.limit_bytes {
                "yes"
            } else {
                "NO"
            };
            table.push_str(&format!(
                "{:<6} {:>12} {:>12}  {within}\n",
                arch.debian_name(),
                bytes,
                self.limit_bytes
            ));
        }
        table
    }

    fn over_limit(&self) -> Vec<Arch> {
        self.within_limit
            .iter()
            .filter(|(_, within)| !**within)
            .map(|(arch, _)| *arch)
            .collect()
    }
}

pub fn run(args: &SizeArgs) -> Result<()> {
    let workspace = Workspace::locate()?;
    let mut init_bytes = BTreeMap::new();
    for arch in Arch::ALL {
        let init = workspace.build_musl_binary(INIT_PACKAGE, arch)?;
        let metadata =
            std::fs::metadata(&init).with_context(|| format!("reading {}", init.display()))?;
        init_bytes.insert(arch, metadata.len());
    }
    let mut report = SizeReport::new(init_bytes);
    for arch in args.arch.map(ArchSelection::arches).unwrap_or_default() {
        report
            .images
            .push(image_size(&workspace, arch, args.kernel)?);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("encoding JSON")?
        );
    } else {
        print!("{}", report.table());
        for image in &report.images {
            println!(
                "\n{} image, {} kernel: initramfs as shipped {} bytes, kernel {} bytes, \
                 bootable artifact {} bytes ({} the {ARTIFACT_TARGET_BYTES}-byte target)\n\
                 bytes per component, uncompressed:",
                image.arch.debian_name(),
                image.kernel.name(),
                image.image_bytes,
                image.kernel_bytes,
                image.artifact_bytes,
                if image.artifact_bytes <= ARTIFACT_TARGET_BYTES {
                    "within"
                } else {
                    "over"
                },
            );
            for (component, bytes) in &image.components {
                println!("  {component:<28} {bytes:>12}");
            }
        }
    }
    let over = report.over_limit();
    if !over.is_empty() {
        let names: Vec<&str> = over.iter().map(|arch| arch.debian_name()).collect();
        bail!(
            "the init is over the {INIT_SIZE_LIMIT_BYTES}-byte limit on {}",
            names.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_limit_check() {
        let report = SizeReport::new(BTreeMap::from([(Arch::Amd64, 1200), (Arch::Arm64, 80000)]));
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"init_bytes":{"amd64":1200,"arm64":80000},"limit_bytes":77824,"within_limit":{"amd64":true,"arm64":false}}"#
        );
        assert_eq!(report.over_limit(), [Arch::Arm64]);
        assert!(report
            .table()
            .contains("arm64         80000        77824  NO"));
    }
}
