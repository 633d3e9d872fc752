//! End to end on the real node image: Debian's cloud kernel, the kiOS
//! init, containerd with runc, and the kubelet built from Debian's source.
//! The image carries the probe pod (a test fixture) as a static pod; it
//! reports host facts on the console and then asks for a clean shutdown.

use std::collections::BTreeSet;
use std::time::Duration;

use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, vm_config, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::node_checks::check_probe_boot;
use kios_tools::testing::probe_pod::probe_pod_file;
use kios_tools::testing::standin_checks::{require_line, Check};
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions};
use kios_tools::vm::timeline::Timeline;

/// The node's own long-running processes; pods add shims, pause and their containers.
const HOST_BINARIES: [&str; 5] = [
    "containerd",
    "containerd-shim-runc-v2",
    "init",
    "kubelet",
    "runc",
];

fn probe_line<'a>(console: &'a Console, what: &str) -> Result<&'a str, String> {
    let marker = format!("kios-probe: {what}");
    console
        .messages("kios-probe: ")
        .find(|line| line.starts_with(&marker))
        .map(|line| line[marker.len()..].trim())
        .ok_or(format!("no `{marker}` line"))
}

fn check_host_bin(console: &Console) -> Result<(), String> {
    let listed: BTreeSet<&str> = probe_line(console, "host-bin")?
        .split_whitespace()
        .collect();
    let expected: BTreeSet<&str> = HOST_BINARIES.into_iter().collect();
    if listed == expected {
        Ok(())
    } else {
        Err(format!(
            "/bin holds {listed:?}, expected {expected:?} (and no shell)"
        ))
    }
}

fn check_host_processes(console: &Console) -> Result<(), String> {
    let executables: Vec<&str> = probe_line(console, "host-procs")?
        .split_whitespace()
        .collect();
    let long_running: BTreeSet<&str> = executables
        .iter()
        .filter_map(|exe| exe.strip_prefix("/bin/"))
        // The probe's own container runs busybox.
        .filter(|name| *name != "busybox")
        .collect();
    for required in ["init", "containerd", "kubelet"] {
        if !long_running.contains(required) {
            return Err(format!(
                "no /bin/{required} among the host's processes: {executables:?}"
            ));
        }
    }
    let unexpected: Vec<&str> = executables
        .iter()
        .copied()
        .filter(|exe| match exe.strip_prefix("/bin/") {
            Some(name) => ![
                "init",
                "containerd",
                "kubelet",
                "containerd-shim-runc-v2",
                "busybox",
            ]
            .contains(&name),
            // The pod sandbox's pause process, seen through its rootfs path.
            None => !exe.ends_with("/pause"),
        })
        .collect();
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected processes on the host: {unexpected:?}"))
    }
}

fn node_runs_a_static_pod_offline_and_shuts_down_cleanly(arch: Arch) {
    let workspace = Workspace::locate().expect("workspace");
    let out = workspace
        .output_dir()
        .expect("output dir")
        .join(format!("node-test-{arch}"));
    let components =
        NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, KernelChoice::Debian)
            .expect("resolving the components");
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            extra_files: vec![probe_pod_file()],
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

    eprintln!("{}", Timeline::from_console(console).table());
    let mut report = check_probe_boot(&run);
    report.checks.extend([
        Check {
            name: "/bin holds only the node's binaries, no shell",
            outcome: check_host_bin(console),
        },
        Check {
            name: "only init, runtime, kubelet and pod processes run",
            outcome: check_host_processes(console),
        },
        Check {
            name: "the probe's SIGTERM shut the node down",
            outcome: require_line(console, "kios: shutdown requested by signal"),
        },
        Check {
            name: "nothing was pulled",
            outcome: if console.contains("PullImage \"") {
                Err("an image was pulled".into())
            } else {
                Ok(())
            },
        },
    ]);
    if let Err(failures) = report.into_result() {
        panic!("failed checks:\n{failures}");
    }
}

#[test]
#[ignore = "builds the node image and boots it in QEMU: run by cargo kios test"]
fn amd64_node_runs_a_static_pod_offline_and_shuts_down_cleanly() {
    node_runs_a_static_pod_offline_and_shuts_down_cleanly(Arch::Amd64);
}

/// The same on arm64: Debian's arm64 cloud kernel on QEMU's virt machine,
/// the init cross-built for aarch64, Debian's arm64 containerd and runc,
/// and the kubelet cross-built from the same source.
#[test]
#[ignore = "builds the node image and boots it in QEMU: run by cargo kios test"]
fn arm64_node_runs_a_static_pod_offline_and_shuts_down_cleanly() {
    node_runs_a_static_pod_offline_and_shuts_down_cleanly(Arch::Arm64);
}
