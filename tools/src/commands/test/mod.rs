//! `kios test`: the project's full test run.
//!
//! Every test binary is built once up front; then the steps run as
//! processes of those binaries, `--jobs` at a time (two by default: the
//! QEMU steps are mostly one busy host thread each, and CI has two
//! cores). Each step's output goes to its own log under
//! `<target>/kios-test/`; the terminal gets one line when a step starts
//! and one when it ends, then a summary.

mod binaries;
mod lanes;
mod report;
mod steps;

use std::num::NonZeroUsize;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::builder::{PossibleValue, PossibleValuesParser};

use self::binaries::build_test_binaries;
use self::lanes::Lanes;
use self::report::{StepReport, Summary, Verdict};
use self::steps::{Step, STEPS};
use crate::host::packages::{ensure_installed, QEMU_PACKAGES};
use crate::host::workspace::Workspace;

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
}
