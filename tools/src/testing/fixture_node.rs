//! The node image a QEMU test boots: the real node (runc) with the test's
//! TEST FIXTURE files (static pods, mostly) added, built into a directory
//! of its own under the workspace's output directory.

use std::path::PathBuf;

use anyhow::Result;

use crate::components::node::NodeComponents;
use crate::components::OciRuntime;
use crate::host::arch::Arch;
use crate::host::workspace::Workspace;
use crate::image::node_image::{build_node_image, ImageOptions, NodeImage};
use crate::kernel::KernelChoice;

/// Builds the node image for `arch` on `kernel` with `files` (path in the
/// image, contents) into `<output>/<dir_name>`; returns it and that directory.
pub fn node_image_with(
    arch: Arch,
    kernel: KernelChoice,
    dir_name: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Result<(NodeImage, PathBuf)> {
    let workspace = Workspace::locate()?;
    let out = workspace.output_dir()?.join(dir_name);
    let components = NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, kernel)?;
    let options = ImageOptions {
        extra_files: files,
        ..ImageOptions::default()
    };
    let image = build_node_image(&workspace, &components, &options, &out)?;
    Ok((image, out))
}
