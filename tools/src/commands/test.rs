//! `kios test`: the project's full test run.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::host::packages::{ensure_installed, QEMU_PACKAGES};
use crate::host::workspace::{cargo, Workspace};

/// Test counts summed over the `test result:` lines of a cargo test run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TestCounts {
    passed: u64,
    failed: u64,
}

impl TestCounts {
    fn add(&mut self, other: TestCounts) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

struct StepResult {
    name: &'static str,
    duration: Duration,
    outcome: Result<()>,
}

struct CargoTestStep {
    name: &'static str,
    args: &'static [&'static str],
    /// Boots VMs, so it is pointless without the QEMU host packages.
    needs_qemu: bool,
}

/// The cargo test invocations, in order. The init's binary cannot build
/// for the host, so only its lib (the host-testable policy) runs here.
const CARGO_TEST_STEPS: &[CargoTestStep] = &[
    CargoTestStep {
        name: "tools unit tests",
        args: &["test", "-p", "kios-tools"],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "init unit tests",
        args: &["test", "-p", "kios-init", "--lib"],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "mini-libc-free unit tests",
        args: &["test", "-p", "mini-libc-free"],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "component staging tests (builds the kubelet once, then cached)",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "components_stage",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "kiOS kernel config fragments resolve (both arches)",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "kernel_config",
            "--",
            "--include-ignored",
            "--test-threads=1",
        ],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "containerd store seeding tests (run containerd on the host)",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "seed_containerd",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "node image reproducibility",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "image_reproducible",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "disk image read back (GPT, FAT, UKI sections, ext4) and reproducibility",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "disk_image",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "test control plane on loopback (builds kube-apiserver and kube-controller-manager once, then cached)",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "control_plane",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: false,
    },
    CargoTestStep {
        name: "QEMU end-to-end tests",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_standin",
            "--",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU end-to-end test of the real node (containerd, runc, kubelet)",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_node",
            "--",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU test of the DHCP and time-sync static pods; the lease script in a network namespace",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_dhcp",
            "--",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU cluster tests: the node joins the loopback control plane (client certificate, bootstrap token), runs a pod and shuts down gracefully; an unreachable server, a foreign or expired certificate, a rejected token",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_cluster",
            "--",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU end-to-end test of the disk image booted by UEFI firmware, both arches",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_disk",
            "--",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU test of a crash-looping kubelet on the real node",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_node_bad_kubelet",
            "--",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU tests of bad disks and modules (stand-in image with Debian's modules)",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_data_partition",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU persistence test: the disk image booted twice under UEFI firmware",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_persist",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU boots with the kiOS kernel, both arches (built once, then cached)",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "kernel_boot",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU power button tests: ACPI on amd64 (Debian's and the kiOS kernel), the GPIO key on arm64 (kiOS kernel)",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "e2e_power_button",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: true,
    },
    CargoTestStep {
        name: "QEMU boot of the benchmark's shell-script baseline",
        args: &[
            "test",
            "-p",
            "kios-tools",
            "--test",
            "bench_report",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
        needs_qemu: true,
    },
];

pub fn run() -> Result<()> {
    let workspace = Workspace::locate()?;
    let mut steps = Vec::new();
    let mut counts = TestCounts::default();

    let started = Instant::now();
    let host_packages = ensure_installed(QEMU_PACKAGES);
    let host_packages_ok = host_packages.is_ok();
    steps.push(StepResult {
        name: "host packages",
        duration: started.elapsed(),
        outcome: host_packages,
    });

    for step in CARGO_TEST_STEPS {
        let started = Instant::now();
        let outcome = if step.needs_qemu && !host_packages_ok {
            Err(anyhow::anyhow!("skipped: the host packages are missing"))
        } else {
            eprintln!("\n==> {}: cargo {}", step.name, step.args.join(" "));
            run_cargo_test(&workspace, step.args, &mut counts)
        };
        steps.push(StepResult {
            name: step.name,
            duration: started.elapsed(),
            outcome,
        });
    }

    println!("\nsummary:");
    for step in &steps {
        let verdict = match &step.outcome {
            Ok(()) => "ok".to_string(),
            Err(error) => format!("FAILED: {error:#}"),
        };
        println!(
            "  {:<24} {:>7.1} s  {verdict}",
            step.name,
            step.duration.as_secs_f64()
        );
    }
    // The plain closing line CI reads, with the tests of every cargo run.
    println!("{} passed, {} failed", counts.passed, counts.failed);
    let failed: Vec<&str> = steps
        .iter()
        .filter(|step| step.outcome.is_err())
        .map(|step| step.name)
        .collect();
    if !failed.is_empty() {
        bail!("failed steps: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs cargo, echoing its output while counting test results.
fn run_cargo_test(workspace: &Workspace, args: &[&str], counts: &mut TestCounts) -> Result<()> {
    let mut child = cargo()
        .current_dir(&workspace.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stdout = child
        .stdout
        .take()
        .context("cargo's stdout was not piped")?;
    let mut step_counts = TestCounts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(result) = parse_test_result(&line) {
            step_counts.add(result);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    counts.add(step_counts);
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    if step_counts.passed == 0 {
        bail!("`cargo {}` ran no test", args.join(" "));
    }
    Ok(())
}

/// Reads `test result: ok. 3 passed; 1 failed; 0 ignored; ...`.
fn parse_test_result(line: &str) -> Option<TestCounts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut counts = TestCounts::default();
    for part in rest.split([';', '.']) {
        let mut words = part.split_whitespace();
        let (Some(number), Some(label)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse::<u64>() else {
            continue;
        };
        match label {
            "passed" => counts.passed = number,
            "failed" => counts.failed = number,
            _ => {}
        }
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_test_result_lines() {
        assert_eq!(
            parse_test_result(
                "test result: FAILED. 12 passed; 2 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some(TestCounts { passed: 12, failed: 2 })
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
    }
}
