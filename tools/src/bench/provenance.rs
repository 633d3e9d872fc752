//! What a run was measured with, recorded beside its figures so that two
//! records that differ can be told apart: the workspace's git commit and,
//! per arch, the QEMU that booted it and every node component's version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::components::bom::Source;
use crate::components::node::{NodeComponents, NodeKernel, KERNEL_COMPONENT};
use crate::host::arch::Arch;
use crate::host::command::output_of;
use crate::kernel::SOURCE_PACKAGE;
use crate::vm::qemu::VmConfig;

/// The workspace's commit when the run started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitRevision {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// Tracked files differed from the commit (what `git describe --dirty`
    /// counts; untracked files, such as new records, do not).
    pub dirty: bool,
}

impl GitRevision {
    /// The checkout at `root`; an error without git or outside a checkout.
    pub fn of(root: &Path) -> Result<GitRevision> {
        let git = |args: &[&str]| {
            let mut command = Command::new("git");
            command.arg("-C").arg(root).args(args);
            output_of(&mut command)
        };
        let commit = git(&["rev-parse", "HEAD"])?.trim().to_string();
        let changes = git(&["status", "--porcelain", "--untracked-files=no"])?;
        Ok(GitRevision {
            commit,
            dirty: !changes.trim().is_empty(),
        })
    }
}

/// What one arch's boots ran on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchEnvironment {
    /// The first line of `qemu-system-<arch> --version`; None when it did not run.
    pub qemu: Option<String>,
    /// Every node component's version: the BOM's pin (a Debian version, or
    /// `sha256:<hex>` for a url or path source), and the kernel booted.
    pub components: BTreeMap<String, String>,
}

impl ArchEnvironment {
    /// The QEMU that boots `components.arch` (None, with a warning, when
    /// its `--version` fails) and the versions of `components`.
    pub fn of(components: &NodeComponents) -> ArchEnvironment {
        let qemu = qemu_version(components.arch)
            .inspect_err(|error| eprintln!("kios bench: recording no QEMU version: {error:#}"))
            .ok();
        ArchEnvironment {
            qemu,
            components: component_versions(components),
        }
    }
}

/// The first line QEMU prints for `--version`, e.g. `QEMU emulator version 7.2.15`.
fn qemu_version(arch: Arch) -> Result<String> {
    // The program `run_vm` starts for this arch; the paths are never read.
    let program = VmConfig::new(arch, PathBuf::new(), PathBuf::new())
        .command()
        .get_program()
        .to_owned();
    let output = output_of(Command::new(&program).arg("--version"))?;
    output
        .lines()
        .next()
        .map(|line| line.trim().to_string())
        .with_context(|| format!("{} --version printed nothing", program.to_string_lossy()))
}

/// Every component the image takes files from, by the BOM's pin, and the
/// kernel it boots.
pub fn component_versions(components: &NodeComponents) -> BTreeMap<String, String> {
    let bom = &components.bom;
    let mut versions: BTreeMap<String, String> = bom
        .components
        .keys()
        // The BOM also lists the test control plane: keep what this node is built from.
        .filter(|name| components.fetched(name).is_ok())
        .filter_map(|name| {
            let source = bom.source(name, components.arch).ok()?;
            Some((name.clone(), pinned_version(source)))
        })
        .collect();
    let kernel = match &components.kernel {
        NodeKernel::Debian { .. } => bom
            .source(KERNEL_COMPONENT, components.arch)
            .map_or_else(|_| "debian".to_string(), kernel_package_version),
        NodeKernel::Kios(image) => format!("kios, from {SOURCE_PACKAGE} {}", image.source_version),
    };
    versions.insert(KERNEL_COMPONENT.to_string(), kernel);
    versions
}

fn pinned_version(source: &Source) -> String {
    match source {
        Source::Debian { version, .. } | Source::DebianSource { version, .. } => version.clone(),
        Source::Url { sha256, .. } | Source::Path { sha256, .. } => format!("sha256:{sha256}"),
    }
}

/// Debian's kernel package names its ABI (`linux-image-6.1.0-56-cloud-amd64`),
/// the version alone does not: both are kept.
fn kernel_package_version(source: &Source) -> String {
    match source {
        Source::Debian {
            package, version, ..
        }
        | Source::DebianSource {
            package, version, ..
        } => format!("{package} {version}"),
        other => pinned_version(other),
    }
}
