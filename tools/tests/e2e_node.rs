//! End to end on the real node image: Debian's cloud kernel, the kiOS
//! init, containerd with runc, and the kubelet built from Debian's source.
//! The image carries the probe pod (a test fixture) as a static pod; it
//! reports host facts on the console and then asks for a clean shutdown.

use std::collections::BTreeSet;
use std::time::Duration;

use kios_tools::components::ca_bundle::{
    ca_bundle, certificate_count, CA_BUNDLE_PATH, CA_CERTIFICATES_COMPONENT,
};
use kios_tools::components::node::{NodeComponents, NodeKernel};
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, vm_config, ImageOptions, ModuleLists};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::node_checks::check_probe_boot;
use kios_tools::testing::probe_pod::probe_pod_file;
use kios_tools::testing::standin_checks::{require_line, Check};
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions};
use kios_tools::vm::timeline::Timeline;

/// The node's own long-running processes; pods add shims, pause and their containers.
const HOST_BINARIES: [&str; 9] = [
    "containerd",
    "containerd-shim-runc-v2",
    "init",
    // Runs once per boot before containerd (tools/firstboot).
    "kios-firstboot",
    // Runs only when an update pod hands the init a bundle (tools/update).
    "kios-update",
    "kubelet",
    "mount",
    "runc",
    "umount",
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

/// The file at `path` in a zstd initramfs (the default compression).
fn file_in_initramfs(initrd: &std::path::Path, path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let stored = std::fs::read(initrd).map_err(|error| format!("reading {initrd:?}: {error}"))?;
    let cpio = zstd::decode_all(stored.as_slice()).map_err(|error| format!("unzstd: {error}"))?;
    let mut input = std::io::Cursor::new(cpio.as_slice());
    loop {
        let mut reader = cpio::NewcReader::new(input).map_err(|error| format!("cpio: {error}"))?;
        if reader.entry().is_trailer() {
            return Err(format!("no {path} in {initrd:?}"));
        }
        if reader.entry().name().trim_start_matches('/') == path.trim_start_matches('/') {
            let mut contents = Vec::new();
            reader
                .read_to_end(&mut contents)
                .map_err(|error| format!("cpio: {error}"))?;
            return Ok(contents);
        }
        input = reader.finish().map_err(|error| format!("cpio: {error}"))?;
    }
}

/// The image carries the CA bundle containerd pulls over TLS with, built
/// from the pinned `ca-certificates`.
fn check_ca_bundle(initrd: &std::path::Path, components: &NodeComponents) -> Result<(), String> {
    let in_image = file_in_initramfs(initrd, CA_BUNDLE_PATH)?;
    let package = components
        .fetched(CA_CERTIFICATES_COMPONENT)
        .map_err(|error| error.to_string())?;
    let expected = ca_bundle(package).map_err(|error| format!("{error:#}"))?;
    eprintln!(
        "{CA_BUNDLE_PATH}: {} certificates, {} bytes",
        certificate_count(&in_image),
        in_image.len()
    );
    if in_image == expected {
        Ok(())
    } else {
        Err(format!(
            "{CA_BUNDLE_PATH} in the image ({} bytes) is not the bundle of the pinned package ({} bytes)",
            in_image.len(),
            expected.len()
        ))
    }
}

/// Every module of the late list (the NIC, the CNI devices, netfilter,
/// ipset, IPVS) loaded: the init counts the loads that succeeded, and
/// nothing was loaded before (no modprobe on the node), so the count is
/// the list's length; no load failed.
fn check_late_modules(console: &Console, lists: &ModuleLists) -> Result<(), String> {
    let failures: Vec<&str> = console
        .texts()
        .filter(|line| line.contains("kios: loading module"))
        .collect();
    if !failures.is_empty() {
        return Err(format!("module loads failed: {failures:?}"));
    }
    let expected = format!(
        "{}: loaded {} module(s)",
        kios_abi::image::LATE_MODULE_LIST,
        lists.late.len()
    );
    require_line(console, &expected)
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
    let NodeKernel::Debian { tree, .. } = &components.kernel else {
        panic!("the node test boots Debian's kernel");
    };
    let lists = ModuleLists::resolve(tree).expect("the image's module lists");
    let ca_bundle_outcome = check_ca_bundle(&image.initrd, &components);
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
            name: "the image carries the pinned CA bundle at /etc/ssl/certs/ca-certificates.crt",
            outcome: ca_bundle_outcome,
        },
        Check {
            name: "every late module (netfilter, ipset, IPVS, VXLAN, ...) loaded",
            outcome: check_late_modules(console, &lists),
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

/// Runs the `kios` binary as a user would, returning its stdout.
fn kios(args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kios"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|error| format!("starting kios: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`kios {}` failed ({})",
            args.join(" "),
            output.status
        ))
    }
}

/// Test what you ship: `kios build --probe-pod --out DIR` writes the
/// artifacts, `kios boot --image DIR` boots exactly those (the node
/// reaches its static pod and powers off), and refuses them once one
/// byte of the initramfs changed.
#[test]
#[ignore = "builds the node image and boots it in QEMU: run by cargo kios test"]
fn what_kios_build_writes_boots_with_boot_image() {
    let workspace = Workspace::locate().expect("workspace");
    let dir = workspace
        .output_dir()
        .expect("output dir")
        .join("built-image-test");
    let dir_arg = dir.to_str().expect("a UTF-8 path");
    let manifest: serde_json::Value =
        serde_json::from_str(&kios(&["build", "--probe-pod", "--out", dir_arg, "--json"]).unwrap())
            .expect("build --json prints the manifest");
    assert_eq!(manifest["arch"], "amd64", "{manifest:#}");

    let report: serde_json::Value = serde_json::from_str(
        &kios(&["boot", "--image", dir_arg, "--no-icount", "--json"]).unwrap(),
    )
    .expect("boot --json prints the report");
    assert_eq!(report["powered_off"], true, "{report:#}");
    for phase in ["kubelet_exec", "first_pod_running"] {
        assert!(
            report["phases_us"][phase].as_u64().is_some(),
            "no {phase} in {report:#}"
        );
    }

    let initramfs = manifest["artifacts"]
        .as_array()
        .and_then(|artifacts| {
            artifacts
                .iter()
                .find(|artifact| artifact["name"] == "initramfs")
        })
        .and_then(|artifact| artifact["path"].as_str())
        .map(|path| dir.join(path))
        .expect("the manifest names the initramfs");
    let mut bytes = std::fs::read(&initramfs).expect("reading the initramfs");
    bytes.push(0);
    std::fs::write(&initramfs, bytes).expect("changing the initramfs");
    assert!(
        kios(&["boot", "--image", dir_arg, "--no-icount", "--json"]).is_err(),
        "a changed initramfs was booted"
    );
}
