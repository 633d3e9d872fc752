//! The steps of `kios test`: what each runs, what it waits for, and which may start next.

/// How a step runs.
#[derive(Debug)]
pub(super) enum Action {
    /// A cargo command that runs no test (clippy).
    Cargo(&'static [&'static str]),
    /// `cargo test` with these arguments. The same arguments were built
    /// with `--no-run` first, so this only runs the binaries (and doctests).
    CargoTest(&'static [&'static str]),
    /// A kios-tools integration test binary (`tools/tests/<test>.rs`), run
    /// directly with these libtest arguments.
    TestBinary {
        test: &'static str,
        args: &'static [&'static str],
    },
}

/// Something two steps must not use at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resource {
    /// The kiOS kernel: `build_kernel` compiles into its cache entry with no
    /// lock when it is missing, and rewrites `kernel/*.resolved.config` when
    /// it changed, which `kernel_config` compares with what it resolves.
    KiosKernel,
}

#[derive(Debug)]
pub(super) struct Step {
    /// A short, stable id for `--only`, the log file and the summary.
    pub(super) name: &'static str,
    pub(super) description: &'static str,
    pub(super) action: Action,
    /// Boots VMs, so it is pointless without the QEMU host packages.
    pub(super) needs_qemu: bool,
    /// Steps of this run that must have finished first: they fill the
    /// cache entries (the kubelet, the seeded image store, the control
    /// plane's binaries) this step only reuses. Always earlier in `STEPS`.
    after: &'static [&'static str],
    resources: &'static [Resource],
}

/// What a node image needs built: the kubelet and the pause image
/// (`components_stage`) and the seeded containerd store (`seed_containerd`).
const NODE_IMAGE: &[&str] = &["components_stage", "seed_containerd"];
const NODE_IMAGE_AND_CONTROL_PLANE: &[&str] =
    &["components_stage", "seed_containerd", "control_plane"];
const NODE_IMAGE_AND_KERNEL_SOURCE: &[&str] =
    &["components_stage", "seed_containerd", "kernel_config"];
const NODE_IMAGE_KERNEL_SOURCE_AND_CONTROL_PLANE: &[&str] = &[
    "components_stage",
    "seed_containerd",
    "kernel_config",
    "control_plane",
];

/// The steps in priority order: a free lane takes the first one that can
/// start. The steps that fill the caches come first; then the QEMU steps,
/// longest first, so the lanes finish together; short steps last, to fill
/// the gaps.
pub(super) const STEPS: &[Step] = &[
    Step {
        name: "clippy",
        description: "cargo clippy --workspace --all-targets -- -D warnings",
        action: Action::Cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        needs_qemu: false,
        after: &[],
        resources: &[],
    },
    // Runs no cargo build, so it does not wait on cargo's lock while clippy
    // holds it; e2e_cluster, the longest step, waits for it.
    Step {
        name: "control_plane",
        description: "test control plane on loopback (builds kube-apiserver and kube-controller-manager once, then cached)",
        action: Action::TestBinary {
            test: "control_plane",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: false,
        after: &[],
        resources: &[],
    },
    Step {
        name: "components_stage",
        description: "component staging tests (builds the kubelet once, then cached)",
        action: Action::TestBinary {
            test: "components_stage",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: false,
        after: &[],
        resources: &[],
    },
    Step {
        name: "seed_containerd",
        description: "containerd store seeding tests (run containerd on the host)",
        action: Action::TestBinary {
            test: "seed_containerd",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: false,
        after: &[],
        resources: &[],
    },
    // Builds kube-proxy in the Kubernetes source tree the steps above
    // share (under its lock) on a cold cache; a few seconds on a warm one.
    Step {
        name: "registry",
        description: "the kube-proxy image (both arches) pushed to Debian's docker-registry on loopback and pulled back; its binaries run from its layer (builds kube-proxy once, then cached)",
        action: Action::TestBinary {
            test: "registry",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: false,
        after: &[],
        resources: &[],
    },
    Step {
        name: "kernel_config",
        description: "kiOS kernel config fragments resolve (both arches)",
        action: Action::TestBinary {
            test: "kernel_config",
            args: &["--include-ignored", "--test-threads=1"],
        },
        needs_qemu: false,
        after: &[],
        resources: &[Resource::KiosKernel],
    },
    // Every host test of every crate: what a Rust developer types first.
    Step {
        name: "unit",
        description: "cargo test --workspace: the host tests of every crate (the init's policy, mini-libc-free, kios-abi, the tools)",
        action: Action::CargoTest(&["test", "--workspace"]),
        needs_qemu: false,
        after: &[],
        resources: &[],
    },
    // The longest QEMU step (about 15 minutes of guest time): first, so the
    // other lane runs everything else beside it.
    Step {
        name: "e2e_faults",
        description: "QEMU fault injection on one node (Debian's kernel, a data disk): the kubelet and containerd SIGKILLed 20 times each with the documented backoff, a kubelet crash loop (PID 1's CPU and memory), a bad manifest, a missing image, a 4 MiB output burst, /var full, the data disk pulled away, then the power button",
        action: Action::TestBinary {
            test: "e2e_faults",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "e2e_cluster",
        description: "QEMU cluster tests: the node joins the loopback control plane (client certificate, bootstrap token), runs a pod with token, Secret and ConfigMap volumes, pulls kube-proxy from the loopback registry and serves a ClusterIP Service, and shuts down gracefully; an unreachable server, a foreign or expired certificate, a rejected token",
        action: Action::TestBinary {
            test: "e2e_cluster",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_CONTROL_PLANE,
        resources: &[],
    },
    Step {
        name: "e2e_cluster_nodes",
        description: "`kios cluster --nodes 2 --json`: two kiOS nodes with their own disks and names join at once, kube-proxy runs on both, and kubectl logs, exec and port-forward reach their kubelets; a Service, the image pull and a token volume checked on each",
        action: Action::TestBinary {
            test: "e2e_cluster_nodes",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_CONTROL_PLANE,
        resources: &[],
    },
    Step {
        name: "e2e_disk",
        description: "QEMU end-to-end test of the disk image booted by UEFI firmware, both arches",
        action: Action::TestBinary {
            test: "e2e_disk",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "e2e_update",
        description: "QEMU A/B disk tests under OVMF with reboots (kiOS kernel): a slot whose kubelet never comes up is given up after its boot tries and the other boots by itself; a byte flipped in a slot's root fails dm-verity before anything on it runs, and the other slot boots; a node in a loopback cluster pulls an update bundle from the loopback registry, its pod hands it over, and the node comes back Ready on slot B with its /etc and data; bad bundles (wrong arch, truncated, hash mismatch, older) refused with nothing written",
        action: Action::TestBinary {
            test: "e2e_update",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_KERNEL_SOURCE_AND_CONTROL_PLANE,
        resources: &[Resource::KiosKernel],
    },
    Step {
        name: "e2e_secure_boot",
        description: "QEMU Secure Boot tests under OVMF's Secure Boot build (kiOS kernel, amd64): the A/B disk signed with the project key, enrolled in the firmware's variable store, boots with the kernel saying Secure Boot is on and the boot good; the same disk with one byte of its UKI's kernel changed, or with the unsigned UKI, is refused by the firmware before any kernel line",
        action: Action::TestBinary {
            test: "e2e_secure_boot",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_KERNEL_SOURCE,
        resources: &[Resource::KiosKernel],
    },
    Step {
        name: "e2e_persist",
        description: "QEMU persistence test: the disk image booted twice under UEFI firmware",
        action: Action::TestBinary {
            test: "e2e_persist",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "e2e_first_boot",
        description: "QEMU first-boot test: a disk whose EFI system partition carries good and bad configuration files, booted twice under UEFI firmware (files taken once, machine-id and name kept)",
        action: Action::TestBinary {
            test: "e2e_first_boot",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "e2e_host_commands",
        description: "QEMU test of the host commands the kubelet runs: tmpfs and bind volumes through the node's mount/umount, /opt/cni/bin writable",
        action: Action::TestBinary {
            test: "e2e_host_commands",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "e2e_hardening",
        description: "QEMU test of issue 17's hardening on one booted node (kiOS kernel): no shell, /bin, host processes, mount flags, no init descriptor or blocked signal in the runtime and the kubelet across restarts, root-only sockets, kernel settings",
        action: Action::TestBinary {
            test: "e2e_hardening",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_KERNEL_SOURCE,
        resources: &[Resource::KiosKernel],
    },
    Step {
        name: "e2e_timesync",
        description: "QEMU time-sync test (kiOS kernel, a data disk, the real-time clock in 2001, as root): QEMU and the BOM's chronyd as an NTP server in a loopback-only network namespace; the time-sync pod's chronyd steps the clock from 2001 to now, a clean shutdown saves it and the next boot starts from it before containerd, and after a power cut the boot starts from the time saved when chronyd stepped the clock",
        action: Action::TestBinary {
            test: "e2e_timesync",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_KERNEL_SOURCE,
        resources: &[Resource::KiosKernel],
    },
    Step {
        name: "e2e_board",
        description: "QEMU's Raspberry Pi 4 model (raspi4b, kiOS kernel): the rpi4 card is reproducible, its hybrid MBR and GPT are what the firmware and the init read, and the kernel, device tree and initramfs read back from it boot on the model to the probe pod with the card's data partition on /var, the mini UART (the card's console) registered, the node's memory reported and a clean power off",
        action: Action::TestBinary {
            test: "e2e_board",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_KERNEL_SOURCE,
        resources: &[Resource::KiosKernel],
    },
    Step {
        name: "e2e_power_button",
        description: "QEMU power button tests: ACPI on amd64 (Debian's and the kiOS kernel), the GPIO key on arm64 (kiOS kernel)",
        action: Action::TestBinary {
            test: "e2e_power_button",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_KERNEL_SOURCE,
        resources: &[Resource::KiosKernel],
    },
    Step {
        name: "e2e_node",
        description: "QEMU end-to-end test of the real node (containerd, runc, kubelet), both arches; what `kios build` writes booted by `kios boot --image` (amd64)",
        action: Action::TestBinary {
            test: "e2e_node",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "kernel_boot",
        description: "QEMU boots with the kiOS kernel, both arches (built once, then cached): amd64 from the erofs root, arm64 from the zstd archive",
        action: Action::TestBinary {
            test: "kernel_boot",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_KERNEL_SOURCE,
        resources: &[Resource::KiosKernel],
    },
    Step {
        name: "e2e_dhcp",
        description: "QEMU test of the DHCP and time-sync static pods; the lease script in a network namespace",
        action: Action::TestBinary {
            test: "e2e_dhcp",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "bench_report",
        description: "QEMU boot of the benchmark's shell-script baseline",
        action: Action::TestBinary {
            test: "bench_report",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "e2e_node_bad_kubelet",
        description: "QEMU test of a crash-looping kubelet on the real node",
        action: Action::TestBinary {
            test: "e2e_node_bad_kubelet",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "e2e_standin",
        description: "QEMU end-to-end tests of the init with stand-in containerd and kubelet",
        action: Action::TestBinary {
            test: "e2e_standin",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: &[],
        resources: &[],
    },
    Step {
        name: "e2e_data_partition",
        description: "QEMU tests of bad disks and modules (stand-in image with Debian's modules)",
        action: Action::TestBinary {
            test: "e2e_data_partition",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: &[],
        resources: &[],
    },
    Step {
        name: "image_reproducible",
        description: "node image reproducibility",
        action: Action::TestBinary {
            test: "image_reproducible",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: false,
        after: NODE_IMAGE,
        resources: &[],
    },
    Step {
        name: "disk_image",
        description: "disk image read back (GPT, FAT, UKI sections, ext4) and reproducibility",
        action: Action::TestBinary {
            test: "disk_image",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: false,
        after: &[],
        resources: &[],
    },
    Step {
        name: "fuzz_brief",
        description: "every fuzz target of the init's parsers and protocols (fuzz/) for 10 s under libFuzzer (built once into the cache, then incremental); fails on a crash, reports executions per target",
        action: Action::TestBinary {
            test: "fuzz_brief",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: false,
        after: &[],
        resources: &[],
    },
];

/// The first pending step that can start now: no step it comes after is
/// still pending or running, and no running step holds one of its resources.
pub(super) fn next_to_start(pending: &[&Step], running: &[&Step]) -> Option<usize> {
    pending.iter().position(|step| {
        let waiting = step.after.iter().any(|name| {
            pending
                .iter()
                .chain(running)
                .any(|other| other.name == *name)
        });
        let blocked = step.resources.iter().any(|resource| {
            running
                .iter()
                .any(|other| other.resources.contains(resource))
        });
        !waiting && !blocked
    })
}

/// The step of this name, for the tests of the sibling modules.
#[cfg(test)]
pub(super) fn step(name: &str) -> &'static Step {
    STEPS
        .iter()
        .find(|step| step.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

#[cfg(test)]
mod tests {

    use super::*;
    use std::path::Path;

    fn steps(names: &[&str]) -> Vec<&'static Step> {
        names.iter().map(|name| step(name)).collect()
    }

    #[test]
    fn the_first_pending_step_starts_when_nothing_holds_it_back() {
        let pending = steps(&["clippy", "unit"]);
        assert_eq!(next_to_start(&pending, &[]), Some(0));
    }

    #[test]
    fn a_step_waits_for_the_steps_it_comes_after() {
        // e2e_cluster reuses what control_plane and the node-image steps build.
        let pending = steps(&["e2e_cluster", "e2e_standin"]);
        let running = steps(&["control_plane"]);
        assert_eq!(next_to_start(&pending, &running), Some(1));
        let pending = steps(&["seed_containerd", "e2e_cluster"]);
        assert_eq!(next_to_start(&pending[1..], &pending[..1]), None);
        // Steps outside this run (`--only`) hold nothing back.
        assert_eq!(next_to_start(&steps(&["e2e_cluster"]), &[]), Some(0));
    }

    #[test]
    fn steps_sharing_a_resource_never_run_together() {
        let pending = steps(&["e2e_power_button", "kernel_boot", "e2e_dhcp"]);
        let running = steps(&["kernel_config"]);
        // e2e_dhcp also waits for nothing that runs here.
        assert_eq!(next_to_start(&pending, &running), Some(2));
        let running = steps(&["kernel_boot"]);
        let pending = steps(&["e2e_power_button", "e2e_node"]);
        assert_eq!(next_to_start(&pending, &running), Some(1));
        assert_eq!(next_to_start(&pending[..1], &running), None);
    }

    #[test]
    fn every_step_can_start_once_the_earlier_ones_are_done() {
        for (index, step) in STEPS.iter().enumerate() {
            assert!(
                STEPS.iter().filter(|other| other.name == step.name).count() == 1,
                "{} twice",
                step.name
            );
            for name in step.after {
                assert!(
                    STEPS[..index].iter().any(|earlier| earlier.name == *name),
                    "{} comes after {name}, which is not an earlier step",
                    step.name
                );
            }
        }
    }

    #[test]
    fn every_ignored_integration_test_is_run_by_a_step() {
        let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        for entry in std::fs::read_dir(&tests_dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_stem().unwrap().to_str().unwrap();
            let run_by_a_step = STEPS
                .iter()
                .any(|step| matches!(step.action, Action::TestBinary { test, .. } if test == name));
            assert!(
                !text.contains("#[ignore") || run_by_a_step,
                "tests/{name}.rs has ignored tests that no step runs"
            );
        }
        for step in STEPS {
            if let Action::TestBinary { test, .. } = step.action {
                assert!(tests_dir.join(format!("{test}.rs")).is_file(), "{test}");
            }
        }
    }
}
