//! The lanes: the steps' processes, `--jobs` at a time, each with its own log, and each one's verdict.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::binaries::TestBinary;
use super::report::{parse_test_result, StepReport, TestCounts, Verdict};
use super::steps::{next_to_start, Action, Step};
use crate::host::workspace::{cargo, Workspace};

/// Runs the selected steps, `jobs` at a time, each in its own thread.
pub(super) struct Lanes<'a> {
    pub(super) workspace: &'a Workspace,
    pub(super) log_dir: &'a Path,
    pub(super) binaries: &'a HashMap<String, TestBinary>,
    pub(super) host_packages_ok: bool,
    /// When the whole run started, for the elapsed time on each line.
    pub(super) started: Instant,
}

/// What a step's thread sends back.
struct Finished {
    step: &'static Step,
    duration: Duration,
    status: std::io::Result<ExitStatus>,
}

impl Lanes<'_> {
    pub(super) fn run(&self, selected: Vec<&'static Step>, jobs: usize) -> Result<Vec<StepReport>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test::steps::step;

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
}
