//! `kios test`: the project's full test run.
//!
//! Every test binary is built once up front; then the steps run as
//! processes of those binaries, `--jobs` at a time (two by default: the
//! QEMU steps are mostly one busy host thread each, and CI has two
//! cores). Each step's output goes to its own log under
//! `<target>/kios-test/`; the terminal gets one line when a step starts
//! and one when it ends, then a summary.

use std::collections::HashMap;
use std::fs::File;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::builder::{PossibleValue, PossibleValuesParser};
use serde::{Deserialize, Serialize};

use crate::host::packages::{ensure_installed, QEMU_PACKAGES};
use crate::host::workspace::{cargo, Workspace};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Print the steps (name and what each tests) and exit.
    #[arg(long, conflicts_with_all = ["only", "json"])]
    list: bool,
    /// Run only this step (repeatable); the test binaries are still built first.
    #[arg(long, value_name = "STEP", value_parser = step_names())]
    only: Vec<String>,
    /// How many steps run at the same time.
    #[arg(long, value_name = "N", default_value = "2")]
    jobs: NonZeroUsize,
    /// Print the summary as one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// The valid `--only` values, so clap rejects a wrong name and lists the right ones.
fn step_names() -> PossibleValuesParser {
    PossibleValuesParser::new(
        STEPS
            .iter()
            .map(|step| PossibleValue::new(step.name).help(step.description)),
    )
}

/// How a step runs.
#[derive(Debug)]
enum Action {
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
struct Step {
    /// A short, stable id for `--only`, the log file and the summary.
    name: &'static str,
    description: &'static str,
    action: Action,
    /// Boots VMs, so it is pointless without the QEMU host packages.
    needs_qemu: bool,
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

/// The steps in priority order: a free lane takes the first one that can
/// start. The steps that fill the caches come first; then the QEMU steps,
/// longest first, so the lanes finish together; short steps last, to fill
/// the gaps.
const STEPS: &[Step] = &[
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
    Step {
        name: "e2e_cluster",
        description: "QEMU cluster tests: the node joins the loopback control plane (client certificate, bootstrap token), runs a pod and shuts down gracefully; an unreachable server, a foreign or expired certificate, a rejected token",
        action: Action::TestBinary {
            test: "e2e_cluster",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_CONTROL_PLANE,
        resources: &[],
    },
    Step {
        name: "e2e_node",
        description: "QEMU end-to-end test of the real node (containerd, runc, kubelet), both arches",
        action: Action::TestBinary {
            test: "e2e_node",
            args: &["--ignored", "--test-threads=1", "--nocapture"],
        },
        needs_qemu: true,
        after: NODE_IMAGE,
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
        name: "kernel_boot",
        description: "QEMU boots with the kiOS kernel, both arches (built once, then cached)",
        action: Action::TestBinary {
            test: "kernel_boot",
            args: &["--ignored", "--test-threads=1"],
        },
        needs_qemu: true,
        after: NODE_IMAGE_AND_KERNEL_SOURCE,
        resources: &[Resource::KiosKernel],
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
];

pub fn run(args: &TestArgs) -> Result<()> {
    if args.list {
        for step in STEPS {
            println!("{:<22} {}", step.name, step.description);
        }
        return Ok(());
    }
    let started = Instant::now();
    let workspace = Workspace::locate()?;
    let log_dir = workspace.target_dir.join("kios-test");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let selected = select(&args.only);
    let mut reports = Vec::new();

    let host_packages_ok = if selected.iter().any(|step| step.needs_qemu) {
        let installing = Instant::now();
        let installed = ensure_installed(QEMU_PACKAGES);
        let ok = installed.is_ok();
        reports.push(StepReport::setup(
            "host_packages",
            installing.elapsed(),
            installed,
        ));
        ok
    } else {
        true
    };

    let building = Instant::now();
    let (binaries, built) = build_test_binaries(&workspace);
    reports.push(StepReport::setup("build", building.elapsed(), built));

    let lanes = Lanes {
        workspace: &workspace,
        log_dir: &log_dir,
        binaries: &binaries,
        host_packages_ok,
        started,
    };
    let mut step_reports = lanes.run(selected, args.jobs.get())?;
    // In table order, whichever lane finished first: the summary reads the same every run.
    step_reports.sort_by_key(|report| STEPS.iter().position(|step| step.name == report.name));
    reports.extend(step_reports);

    let summary = Summary::new(reports, started.elapsed());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).context("writing the summary as JSON")?
        );
    } else {
        print!("{}", summary.table());
    }
    let failed: Vec<&str> = summary
        .steps
        .iter()
        .filter(|step| step.verdict != Verdict::Ok)
        .map(|step| step.name)
        .collect();
    if !failed.is_empty() {
        bail!("failed steps: {}", failed.join(", "));
    }
    Ok(())
}

/// The steps `--only` names (clap has checked the names), in table order,
/// so `after` and the priorities still hold; every step without `--only`.
fn select(only: &[String]) -> Vec<&'static Step> {
    STEPS
        .iter()
        .filter(|step| only.is_empty() || only.iter().any(|name| name == step.name))
        .collect()
}

/// The first pending step that can start now: no step it comes after is
/// still pending or running, and no running step holds one of its resources.
fn next_to_start(pending: &[&Step], running: &[&Step]) -> Option<usize> {
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

/// A test binary cargo built, and the package it belongs to.
#[derive(Clone, Debug)]
struct TestBinary {
    executable: PathBuf,
    package_dir: PathBuf,
}

/// The `cargo test` of every `CargoTest` step with `--no-run`: that builds
/// its binaries, the kios-tools integration tests among them, so the step
/// itself only runs them. Returns the integration test binaries by name.
fn build_test_binaries(workspace: &Workspace) -> (HashMap<String, TestBinary>, Result<()>) {
    let mut binaries = HashMap::new();
    let mut failures = Vec::new();
    for step in STEPS {
        let Action::CargoTest(args) = step.action else {
            continue;
        };
        let built = cargo()
            .current_dir(&workspace.root)
            .args(args)
            .args(["--no-run", "--message-format=json-render-diagnostics"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("running cargo")
            .and_then(|output| {
                binaries.extend(integration_tests(&String::from_utf8_lossy(&output.stdout)));
                if output.status.success() {
                    Ok(())
                } else {
                    bail!("({})", output.status)
                }
            });
        if let Err(error) = built {
            failures.push(format!(
                "`cargo {} --no-run` failed {error:#}",
                args.join(" ")
            ));
        }
    }
    let outcome = if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(failures.join("; ")))
    };
    (binaries, outcome)
}

/// The parts of cargo's JSON messages this needs.
#[derive(Deserialize)]
#[serde(tag = "reason")]
enum CargoMessage {
    #[serde(rename = "compiler-artifact")]
    CompilerArtifact(Artifact),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Artifact {
    manifest_path: PathBuf,
    target: ArtifactTarget,
    profile: ArtifactProfile,
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ArtifactTarget {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct ArtifactProfile {
    test: bool,
}

/// The integration test binaries (`tests/*.rs`) in cargo's JSON messages, by target name.
fn integration_tests(messages: &str) -> impl Iterator<Item = (String, TestBinary)> + '_ {
    messages.lines().filter_map(|line| {
        let CargoMessage::CompilerArtifact(artifact) = serde_json::from_str(line).ok()? else {
            return None;
        };
        if !artifact.profile.test || artifact.target.kind != ["test"] {
            return None;
        }
        let binary = TestBinary {
            executable: artifact.executable?,
            package_dir: artifact.manifest_path.parent()?.to_path_buf(),
        };
        Some((artifact.target.name, binary))
    })
}

/// Runs the selected steps, `jobs` at a time, each in its own thread.
struct Lanes<'a> {
    workspace: &'a Workspace,
    log_dir: &'a Path,
    binaries: &'a HashMap<String, TestBinary>,
    host_packages_ok: bool,
    /// When the whole run started, for the elapsed time on each line.
    started: Instant,
}

/// What a step's thread sends back.
struct Finished {
    step: &'static Step,
    duration: Duration,
    status: std::io::Result<ExitStatus>,
}

impl Lanes<'_> {
    fn run(&self, selected: Vec<&'static Step>, jobs: usize) -> Result<Vec<StepReport>> {
        let mut pending = selected;
        let mut running: Vec<&Step> = Vec::new();
        let mut reports = Vec::new();
        let (finished_tx, finished_rx) = mpsc::channel::<Finished>();
        loop {
            while running.len() < jobs {
                let Some(index) = next_to_start(&pending, &running) else {
                    break;
                };
                let step = pending.remove(index);
                if step.needs_qemu && !self.host_packages_ok {
                    let reason = "the QEMU host packages are missing".to_string();
                    reports.push(self.not_run(step, Verdict::Skipped, reason));
                    continue;
                }
                match self.start(step, finished_tx.clone()) {
                    Ok(()) => running.push(step),
                    Err(error) => {
                        reports.push(self.not_run(step, Verdict::Failed, format!("{error:#}")))
                    }
                }
            }
            if running.is_empty() {
                if let Some(step) = pending.first() {
                    bail!(
                        "no step can start, {} waits for steps that never run",
                        step.name
                    );
                }
                return Ok(reports);
            }
            let finished = finished_rx
                .recv()
                .context("a step's thread ended without reporting")?;
            running.retain(|step| step.name != finished.step.name);
            reports.push(self.finish(finished));
        }
    }

    /// Starts the step's process in a thread that reports to `finished`.
    fn start(&self, step: &'static Step, finished: mpsc::Sender<Finished>) -> Result<()> {
        let mut command = self.command(step)?;
        let log = self.log_path(step);
        let output = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let errors = output
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        command.stdin(Stdio::null()).stdout(output).stderr(errors);
        self.say(format!("==> {}: log in {}", step.name, self.shown(&log)));
        std::thread::spawn(move || {
            let started = Instant::now();
            let status = command.status();
            // The receiver lives until every started step has reported.
            let _ = finished.send(Finished {
                step,
                duration: started.elapsed(),
                status,
            });
        });
        Ok(())
    }

    /// The step's process, with what cargo would set for a test binary:
    /// the package as the current and `CARGO_MANIFEST_DIR` directory.
    fn command(&self, step: &Step) -> Result<Command> {
        Ok(match &step.action {
            Action::Cargo(args) | Action::CargoTest(args) => {
                let mut command = cargo();
                command.current_dir(&self.workspace.root).args(*args);
                command
            }
            Action::TestBinary { test, args } => {
                let binary = self.binaries.get(*test).with_context(|| {
                    format!("the test binary `{test}` was not built (see the build's errors)")
                })?;
                let mut command = Command::new(&binary.executable);
                command
                    .current_dir(&binary.package_dir)
                    .env("CARGO_MANIFEST_DIR", &binary.package_dir)
                    .args(*args);
                command
            }
        })
    }

    fn finish(&self, finished: Finished) -> StepReport {
        let step = finished.step;
        let log = self.log_path(step);
        let text = std::fs::read(&log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let counts = text
            .lines()
            .filter_map(parse_test_result)
            .fold(TestCounts::default(), TestCounts::sum);
        let reason = failure_reason(&step.action, &finished.status, counts);
        let verdict = if reason.is_some() {
            Verdict::Failed
        } else {
            Verdict::Ok
        };
        self.say(format!(
            "<== {} {} in {:.1} s: {} passed, {} failed",
            step.name,
            if reason.is_some() { "FAILED" } else { "ok" },
            finished.duration.as_secs_f64(),
            counts.passed,
            counts.failed
        ));
        if let Some(reason) = &reason {
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "{}: {reason}; the end of {}:\n{}",
                step.name,
                self.shown(&log),
                lines[lines.len().saturating_sub(FAILURE_TAIL_LINES)..].join("\n")
            );
        }
        StepReport {
            name: step.name,
            seconds: finished.duration.as_secs_f64(),
            counts,
            verdict,
            reason,
        }
    }

    /// The report of a step that did not start.
    fn not_run(&self, step: &'static Step, verdict: Verdict, reason: String) -> StepReport {
        self.say(format!("<== {} {}: {reason}", step.name, verdict.label()));
        StepReport {
            name: step.name,
            seconds: 0.0,
            counts: TestCounts::default(),
            verdict,
            reason: Some(reason),
        }
    }

    fn log_path(&self, step: &Step) -> PathBuf {
        self.log_dir.join(format!("{}.log", step.name))
    }

    /// A path as short as it can be: relative to the workspace when inside it.
    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.workspace.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// One progress line on stderr (stdout may carry the JSON summary), with the run's elapsed time.
    fn say(&self, line: String) {
        let elapsed = self.started.elapsed().as_secs();
        eprintln!("[{:>3}:{:02}] {line}", elapsed / 60, elapsed % 60);
    }
}

/// How much of a failed step's log the terminal shows.
const FAILURE_TAIL_LINES: usize = 60;

/// Why a finished step failed, or None when it passed. A test step that
/// ran no test failed too: its tests were filtered away or never built.
fn failure_reason(
    action: &Action,
    status: &std::io::Result<ExitStatus>,
    counts: TestCounts,
) -> Option<String> {
    match status {
        Err(error) => Some(format!("could not start: {error}")),
        Ok(status) if !status.success() => Some(format!("exited with {status}")),
        Ok(_) if counts.passed == 0 && !matches!(action, Action::Cargo(_)) => {
            Some("ran no test".to_string())
        }
        Ok(_) => None,
    }
}

/// Test counts summed over the `test result:` lines of a step's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
struct TestCounts {
    passed: u64,
    failed: u64,
}

impl TestCounts {
    fn sum(self, other: TestCounts) -> TestCounts {
        TestCounts {
            passed: self.passed + other.passed,
            failed: self.failed + other.failed,
        }
    }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Failed,
    /// Not run because something it needs is missing; fails the run.
    Skipped,
}

#[derive(Debug, Serialize)]
struct StepReport {
    name: &'static str,
    seconds: f64,
    #[serde(flatten)]
    counts: TestCounts,
    verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl StepReport {
    /// A row for the work before the steps (host packages, the build).
    fn setup(name: &'static str, duration: Duration, outcome: Result<()>) -> StepReport {
        let reason = outcome.err().map(|error| format!("{error:#}"));
        StepReport {
            name,
            seconds: duration.as_secs_f64(),
            counts: TestCounts::default(),
            verdict: if reason.is_some() {
                Verdict::Failed
            } else {
                Verdict::Ok
            },
            reason,
        }
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    steps: Vec<StepReport>,
    seconds: f64,
    passed: u64,
    failed: u64,
}

impl Summary {
    fn new(steps: Vec<StepReport>, duration: Duration) -> Summary {
        let counts = steps
            .iter()
            .map(|step| step.counts)
            .fold(TestCounts::default(), TestCounts::sum);
        Summary {
            steps,
            seconds: duration.as_secs_f64(),
            passed: counts.passed,
            failed: counts.failed,
        }
    }

    /// The table, the total wall time, and the closing `N passed, M failed` line CI reads.
    fn table(&self) -> String {
        let mut table = format!(
            "\nsummary:\n  {:<22} {:>8} {:>7} {:>7}  verdict\n",
            "step", "seconds", "passed", "failed"
        );
        for step in &self.steps {
            let verdict = match &step.reason {
                Some(reason) => format!("{}: {reason}", step.verdict.label()),
                None => step.verdict.label().to_string(),
            };
            table.push_str(&format!(
                "  {:<22} {:>8.1} {:>7} {:>7}  {verdict}\n",
                step.name, step.seconds, step.counts.passed, step.counts.failed
            ));
        }
        table.push_str(&format!(
            "total wall time: {:.1} s ({:.1} min)\n{} passed, {} failed\n",
            self.seconds,
            self.seconds / 60.0,
            self.passed,
            self.failed
        ));
        table
    }
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Failed => "FAILED",
            Verdict::Skipped => "SKIPPED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn step(name: &str) -> &'static Step {
        STEPS
            .iter()
            .find(|step| step.name == name)
            .unwrap_or_else(|| panic!("no step {name}"))
    }

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

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: TestArgs,
    }

    #[test]
    fn only_selects_the_named_steps_in_table_order() {
        let cli = Cli::try_parse_from(["test", "--only", "e2e_dhcp", "--only", "clippy"]).unwrap();
        let names: Vec<&str> = select(&cli.args.only)
            .iter()
            .map(|step| step.name)
            .collect();
        assert_eq!(names, ["clippy", "e2e_dhcp"]);
        assert_eq!(select(&[]).len(), STEPS.len());
    }

    #[test]
    fn an_unknown_step_is_an_error_that_lists_the_valid_ones() {
        let error = Cli::try_parse_from(["test", "--only", "e2e_clutser"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("e2e_clutser"), "{error}");
        for step in STEPS {
            assert!(
                error.contains(step.name),
                "{} missing from: {error}",
                step.name
            );
        }
    }

    #[test]
    fn reads_cargo_test_result_lines() {
        assert_eq!(
            parse_test_result(
                "test result: FAILED. 12 passed; 2 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some(TestCounts { passed: 12, failed: 2 })
        );
        assert_eq!(
            parse_test_result("test result: ok. 0 passed; 0 failed; 4 ignored; 0 measured; 0 filtered out; finished in 0.00s"),
            Some(TestCounts::default())
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
        assert_eq!(parse_test_result("test a_test_result: ok ... ok"), None);
    }

    #[test]
    fn a_test_step_that_ran_no_test_failed() {
        use std::os::unix::process::ExitStatusExt;
        let success = Ok(ExitStatus::from_raw(0));
        let none = TestCounts::default();
        let some = TestCounts {
            passed: 3,
            failed: 0,
        };
        let binary = &step("e2e_node").action;
        assert_eq!(failure_reason(binary, &success, some), None);
        assert_eq!(
            failure_reason(binary, &success, none).as_deref(),
            Some("ran no test")
        );
        // clippy runs no test at all.
        assert_eq!(failure_reason(&step("clippy").action, &success, none), None);
        let exit_1 = Ok(ExitStatus::from_raw(1 << 8));
        assert!(failure_reason(binary, &exit_1, some).is_some());
    }

    #[test]
    fn finds_the_integration_test_binaries_in_cargos_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tools/Cargo.toml","target":{"name":"e2e_node","kind":["test"]},"profile":{"test":true},"executable":"/w/target/debug/deps/e2e_node-1"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tools/Cargo.toml","target":{"name":"kios_tools","kind":["lib"]},"profile":{"test":true},"executable":"/w/target/debug/deps/kios_tools-2"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tools/Cargo.toml","target":{"name":"serde","kind":["lib"]},"profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n"
        );
        let found: Vec<(String, TestBinary)> = integration_tests(messages).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "e2e_node");
        assert_eq!(
            found[0].1.executable,
            Path::new("/w/target/debug/deps/e2e_node-1")
        );
        assert_eq!(found[0].1.package_dir, Path::new("/w/tools"));
    }

    #[test]
    fn the_json_summary_has_counts_verdicts_and_totals() {
        let summary = Summary::new(
            vec![
                StepReport {
                    name: "clippy",
                    seconds: 1.5,
                    counts: TestCounts::default(),
                    verdict: Verdict::Ok,
                    reason: None,
                },
                StepReport {
                    name: "e2e_node",
                    seconds: 60.0,
                    counts: TestCounts {
                        passed: 1,
                        failed: 1,
                    },
                    verdict: Verdict::Failed,
                    reason: Some("exited with exit status: 101".into()),
                },
            ],
            Duration::from_secs(62),
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["passed"], 1);
        assert_eq!(json["failed"], 1);
        assert_eq!(json["seconds"], 62.0);
        assert_eq!(json["steps"][1]["name"], "e2e_node");
        assert_eq!(json["steps"][1]["passed"], 1);
        assert_eq!(json["steps"][1]["verdict"], "failed");
        assert!(json["steps"][0].get("reason").is_none());
        assert!(summary.table().ends_with("\n1 passed, 1 failed\n"));
    }
}
