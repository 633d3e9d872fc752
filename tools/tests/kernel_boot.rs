//! The node image booted with the kiOS kernel (everything built in, no
//! modules): it must reach a running pod and power off like the image
//! with Debian's cloud kernel does (tools/tests/e2e_node.rs).

use std::time::Duration;

use kios_tools::components::node::{NodeComponents, NodeKernel};
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::initramfs::Compression;
use kios_tools::image::node_image::{build_node_image, vm_config, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::node_checks::check_probe_boot;
use kios_tools::testing::probe_pod::probe_pod_file;
use kios_tools::testing::standin_checks::Check;
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions};
use kios_tools::vm::timeline::Timeline;

/// The init reports `<list>: loaded N module(s)` and each failed load.
fn check_no_modules_loaded(console: &Console) -> Result<(), String> {
    let module_lines: Vec<&str> = console
        .texts()
        .filter(|line| {
            line.contains("kios: loading module")
                || (line.contains(": loaded ")
                    && line.contains(" module(s)")
                    && !line.contains(": loaded 0 module(s)"))
        })
        .collect();
    if module_lines.is_empty() {
        Ok(())
    } else {
        Err(format!("the init loaded modules: {module_lines:?}"))
    }
}

/// The kernel's own line when the init mounted the root image.
const EROFS_ROOT_MOUNTED: &str = "erofs: (device erofs): mounted with root inode";

fn boot_with_the_kios_kernel(arch: Arch, compression: Compression) {
    let workspace = Workspace::locate().expect("workspace");
    let components =
        NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, KernelChoice::Kios)
            .expect("resolving the components, building the kiOS kernel");
    let NodeKernel::Kios(kernel) = &components.kernel else {
        panic!("resolved a kiOS kernel choice to another kernel");
    };
    let out = workspace
        .output_dir()
        .expect("output dir")
        .join(format!("node-kios-kernel-test-{arch}"));
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            extra_files: vec![probe_pod_file()],
            compression,
            ..ImageOptions::default()
        },
        &out,
    )
    .expect("building the node image");
    let config = vm_config(&image, true);
    let options = RunOptions {
        timeout: Duration::from_secs(900),
        echo: true,
    };
    let run = run_vm(&config, options, |_| LineVerdict::Continue).expect("booting the node image");
    let console = &run.console;

    let timeline = Timeline::from_console(console);
    eprintln!(
        "boot timeline, {arch}, kiOS kernel {} ({} bytes), {} root, -icount:\n{}",
        kernel.source_version,
        kernel.bytes,
        compression.name(),
        timeline.table()
    );
    let mut report = check_probe_boot(&run);
    report.checks.push(Check {
        name: "no module was loaded (everything is built in)",
        outcome: check_no_modules_loaded(console),
    });
    let root_image_mounted = console
        .texts()
        .any(|text| text.contains(EROFS_ROOT_MOUNTED));
    report.checks.push(Check {
        name: "the root is the erofs image exactly when the image carries one",
        outcome: match (compression == Compression::Erofs, root_image_mounted) {
            (true, true) | (false, false) => Ok(()),
            (true, false) => Err(format!("no `{EROFS_ROOT_MOUNTED}` line")),
            (false, true) => Err("an erofs root was mounted from a cpio image".into()),
        },
    });
    if let Err(failures) = report.into_result() {
        panic!("failed checks:\n{failures}");
    }
}

/// Builds the kernel on a cold cache (about 7 minutes on 2 idle cores).
#[test]
#[ignore = "builds (or takes from the cache) the kiOS kernel and boots QEMU: run by cargo kios test"]
fn node_with_the_kios_kernel_runs_a_pod_and_powers_off() {
    // amd64 boots the erofs root, arm64 the default archive: both ways in CI.
    boot_with_the_kios_kernel(Arch::Amd64, Compression::Erofs);
}

#[test]
#[ignore = "builds (or takes from the cache) the kiOS kernel and boots QEMU: run by cargo kios test"]
fn arm64_node_with_the_kios_kernel_runs_a_pod_and_powers_off() {
    boot_with_the_kios_kernel(Arch::Arm64, Compression::default());
}
