//! `kios kernel`: build the kiOS kernel from the fragments in `kernel/`,
//! or (`--check`, what CI runs) only verify that they resolve as committed.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::cli::ArchSelection;
use crate::host::arch::Arch;
use crate::host::fs::sha256_file;
use crate::host::workspace::Workspace;
use crate::kernel::build::{build_kernel, check_config, update_config};
use crate::kernel::config::resolved_config_path;

#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    /// The arches to build or check.
    #[arg(long, value_enum, default_value_t = ArchSelection::Amd64)]
    arch: ArchSelection,
    /// Resolve the config only: fail if an option of the fragments did not take
    /// effect or kernel/<arch>.resolved.config is out of date. Builds nothing.
    #[arg(long, conflicts_with = "config_only")]
    check: bool,
    /// Resolve the config and write kernel/<arch>.resolved.config; build nothing.
    #[arg(long)]
    config_only: bool,
    /// Print one JSON report per arch (a list) instead of lines.
    #[arg(long)]
    json: bool,
}

/// What `kios kernel` did for one arch.
#[derive(Debug, Serialize)]
struct KernelReport {
    arch: Arch,
    /// `built`, `cached`, `checked` or `resolved`; `failed` when the check
    /// or resolution failed (then `problem` says why).
    outcome: &'static str,
    /// kernel/<arch>.resolved.config, and its sha256 (the built kernel's cache key).
    resolved_config: PathBuf,
    config_sha256: Option<String>,
    /// The kernel image, with a build.
    path: Option<PathBuf>,
    bytes: Option<u64>,
    source_version: Option<String>,
    problem: Option<String>,
}

impl KernelReport {
    fn line(&self) -> String {
        match (&self.path, &self.problem) {
            (_, Some(problem)) => format!("FAILED: {}: {problem}", self.arch),
            (Some(path), None) => format!(
                "{}: kiOS kernel for {} from linux-source {} ({} bytes)\n{}",
                self.outcome,
                self.arch,
                self.source_version.as_deref().unwrap_or("?"),
                self.bytes.unwrap_or(0),
                path.display()
            ),
            (None, None) if self.outcome == "checked" => format!(
                "ok: every option of the {} fragments took effect; {} is current",
                self.arch,
                self.resolved_config.display()
            ),
            (None, None) => format!(
                "ok: {} is resolved from the fragments",
                self.resolved_config.display()
            ),
        }
    }
}

fn kernel_report(workspace: &Workspace, arch: Arch, args: &KernelArgs) -> Result<KernelReport> {
    let mut report = KernelReport {
        arch,
        outcome: "failed",
        resolved_config: resolved_config_path(workspace, arch),
        config_sha256: None,
        path: None,
        bytes: None,
        source_version: None,
        problem: None,
    };
    let done = if args.check {
        check_config(workspace, arch).map(|()| "checked")
    } else if args.config_only {
        update_config(workspace, arch).map(|()| "resolved")
    } else {
        // A failed build is an error, not a verdict: its log says why.
        let kernel = build_kernel(workspace, arch)?;
        report.path = Some(kernel.path);
        report.bytes = Some(kernel.bytes);
        report.source_version = Some(kernel.source_version);
        Ok(if kernel.built_now { "built" } else { "cached" })
    };
    match done {
        Ok(outcome) => {
            report.outcome = outcome;
            report.config_sha256 = Some(sha256_file(&report.resolved_config)?);
        }
        Err(error) => report.problem = Some(format!("{error:#}")),
    }
    Ok(report)
}

pub fn run(args: &KernelArgs) -> Result<()> {
    let workspace = Workspace::locate()?;
    let mut reports = Vec::new();
    for arch in args.arch.arches() {
        let report = kernel_report(&workspace, arch, args)?;
        if !args.json {
            println!("{}", report.line());
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|report| report.problem.is_some())
        .map(|report| report.arch.to_string())
        .collect();
    if !failed.is_empty() {
        bail!(
            "the kernel fragments did not resolve cleanly on {}",
            failed.join(", ")
        );
    }
    Ok(())
}
