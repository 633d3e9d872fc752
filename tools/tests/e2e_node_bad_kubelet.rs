//! A broken kubelet config on the real node: the kubelet crash-loops, the
//! init restarts it with growing delays, the cause is on the console, and
//! the rest of the node (containerd) stays up.

use std::time::Duration;

use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, vm_config, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions};

const BROKEN_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: [this is not a path\n";

#[test]
#[ignore = "builds the node image and boots it in QEMU: run by cargo kios test"]
fn a_crash_looping_kubelet_is_restarted_with_backoff_and_the_node_stays_up() {
    let workspace = Workspace::locate().expect("workspace");
    let out = workspace
        .output_dir()
        .expect("output dir")
        .join("node-bad-kubelet");
    let options = ImageOptions {
        extra_files: vec![(
            "/etc/kubernetes/kubelet-config.yaml".into(),
            BROKEN_CONFIG.into(),
        )],
        ..ImageOptions::default()
    };
    let components = NodeComponents::resolve(
        &workspace,
        Arch::Amd64,
        OciRuntime::Runc,
        KernelChoice::Debian,
    )
    .expect("resolving the components");
    let image =
        build_node_image(&workspace, &components, &options, &out).expect("building the image");
    let config = vm_config(&image, true);
    let run_options = RunOptions {
        timeout: Duration::from_secs(600),
        echo: true,
    };
    // Three restarts are enough to see the backoff grow.
    let run = run_vm(&config, run_options, |line| {
        if line.text.contains("kios: kubelet exited") && line.text.contains("restart in 2000 ms") {
            LineVerdict::Stop
        } else {
            LineVerdict::Continue
        }
    })
    .expect("booting the image");
    let console = &run.console;
    let delays: Vec<&str> = console
        .messages("kios: kubelet exited ")
        .filter_map(|line| line.split("restart in ").nth(1))
        .collect();
    assert_eq!(
        delays,
        ["500 ms", "1000 ms", "2000 ms"],
        "kubelet exits: {delays:?}"
    );
    assert!(
        console
            .messages("kubelet: ")
            .any(|line| line.contains("kubelet-config.yaml")),
        "the kubelet's complaint about its config is not on the console"
    );
    assert!(
        !console.contains("kios: containerd exited"),
        "containerd went down with the kubelet"
    );
    assert!(
        run.stopped_early,
        "the run should be stopped by the test, the node still up"
    );
}
