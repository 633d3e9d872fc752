//! The components of one node image, resolved once: the bill of
//! materials, every component the image takes files from (fetched or
//! built through the cache) and the kernel it boots. The staging, the OCI
//! images, the seed, the node image and the disk image all read this one
//! value instead of each re-reading the BOM for the same arch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::components::bom::{fetch_component, Bom};
use crate::components::ca_bundle::CA_CERTIFICATES_COMPONENT;
use crate::components::{placements, OciRuntime};
use crate::host::arch::Arch;
use crate::host::workspace::Workspace;
use crate::kernel::build::{build_kernel, KernelImage};
use crate::kernel::KernelChoice;

/// The BOM component the OCI images take busybox from.
pub const BUSYBOX_COMPONENT: &str = "busybox";
/// The BOM component holding Debian's cloud kernel and its modules.
pub const KERNEL_COMPONENT: &str = "kernel";
/// The node's `mount` and `umount` (`tools/mount`), which the kubelet runs
/// for tmpfs and bind mounts: built from this workspace, not in the BOM.
pub const MOUNT_COMPONENT: &str = "kios-mount";

/// Everything a node image for one arch is built from.
#[derive(Clone, Debug)]
pub struct NodeComponents {
    pub arch: Arch,
    pub bom: Bom,
    /// The OCI runtime containerd's shim runs containers with.
    pub oci_runtime: OciRuntime,
    pub kernel: NodeKernel,
    /// Each component the image takes files from: its fetched tree or file.
    fetched: BTreeMap<String, PathBuf>,
}

/// The kernel a node image boots.
#[derive(Clone, Debug)]
pub enum NodeKernel {
    /// Debian's cloud kernel from the BOM, with the package tree the
    /// image's modules come from.
    Debian { image: PathBuf, tree: PathBuf },
    /// The kiOS kernel: what the node needs is built in, no modules.
    Kios(KernelImage),
}

impl NodeKernel {
    /// The file QEMU or the unified kernel image boots.
    pub fn image(&self) -> &Path {
        match self {
            NodeKernel::Debian { image, .. } => image,
            NodeKernel::Kios(kernel) => &kernel.path,
        }
    }
}

impl NodeComponents {
    /// Reads the workspace's BOM and fetches (or builds, or takes from the
    /// cache) every component a node image for `arch` needs, and the kernel.
    pub fn resolve(
        workspace: &Workspace,
        arch: Arch,
        oci_runtime: OciRuntime,
        kernel: KernelChoice,
    ) -> Result<NodeComponents> {
        let bom = Bom::of(workspace)?;
        let mut names: Vec<&str> = placements(oci_runtime)
            .iter()
            .map(|placement| placement.component)
            .collect();
        names.extend(bom.library_names());
        names.push(BUSYBOX_COMPONENT);
        names.push(CA_CERTIFICATES_COMPONENT);
        let mut fetched = BTreeMap::new();
        for name in names {
            if !fetched.contains_key(name) {
                let path = if name == MOUNT_COMPONENT {
                    workspace.build_musl_binary(MOUNT_COMPONENT, arch)?
                } else {
                    fetch_component(&bom, name, arch)?
                };
                fetched.insert(name.to_string(), path);
            }
        }
        let kernel = match kernel {
            KernelChoice::Debian => {
                let (image, tree) = pinned_kernel(&bom, arch)?;
                NodeKernel::Debian { image, tree }
            }
            KernelChoice::Kios => NodeKernel::Kios(build_kernel(workspace, arch)?),
        };
        Ok(NodeComponents {
            arch,
            bom,
            oci_runtime,
            kernel,
            fetched,
        })
    }

    /// Where component `name` was fetched to.
    pub fn fetched(&self, name: &str) -> Result<&Path> {
        match self.fetched.get(name) {
            Some(path) => Ok(path),
            None => bail!("component `{name}` is not one a node image is built from"),
        }
    }
}

/// The BOM's Debian cloud kernel for `arch`: its vmlinuz and its package tree.
pub fn pinned_kernel(bom: &Bom, arch: Arch) -> Result<(PathBuf, PathBuf)> {
    let tree = fetch_component(bom, KERNEL_COMPONENT, arch)?;
    Ok((find_vmlinuz(&tree)?, tree))
}

fn find_vmlinuz(kernel_tree: &Path) -> Result<PathBuf> {
    let boot = kernel_tree.join("boot");
    for entry in std::fs::read_dir(&boot).with_context(|| format!("listing {}", boot.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", boot.display()))?
            .path();
        if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("vmlinuz-"))
        {
            return Ok(path);
        }
    }
    bail!("no vmlinuz in {}", boot.display())
}
