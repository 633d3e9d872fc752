//! The same inputs give a byte-identical node image.

use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::fs::sha256_file;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, ImageOptions};
use kios_tools::kernel::KernelChoice;

#[test]
#[ignore = "builds the node image twice: run by cargo kios test"]
fn two_builds_of_the_node_image_are_byte_identical() {
    let workspace = Workspace::locate().expect("workspace");
    let root = workspace.output_dir().expect("output dir");
    let components = NodeComponents::resolve(
        &workspace,
        Arch::Amd64,
        OciRuntime::Runc,
        KernelChoice::Debian,
    )
    .expect("resolving the components");
    let first = build_node_image(
        &workspace,
        &components,
        &ImageOptions::default(),
        &root.join("repro-a"),
    )
    .expect("first build");
    let second = build_node_image(
        &workspace,
        &components,
        &ImageOptions::default(),
        &root.join("repro-b"),
    )
    .expect("second build");
    assert_eq!(
        sha256_file(&first.initrd).expect("hashing the first image"),
        sha256_file(&second.initrd).expect("hashing the second image"),
        "{} and {} differ",
        first.initrd.display(),
        second.initrd.display()
    );
}
