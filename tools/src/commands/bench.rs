//! `kios bench`: per arch, build the node image with the kiOS init and with
//! the shell-script baseline (a BENCHMARK FIXTURE, never in a kiOS image),
//! boot each several times under `-icount`, and report each phase's spread,
//! the kiOS/baseline ratios, image sizes and a chart; record the run in
//! benches/results/ and compare it with the previous record.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::run::{bench_scenario, Boots};
use crate::bench::{
    compare, latest_result, record, result_paths, results_dir, today_utc, write_chart, ArchResult,
    BenchReport, Scenario, CLOCK,
};
use crate::cli::ArchSelection;
use crate::components::node::NodeComponents;
use crate::components::OciRuntime;
use crate::host::packages::{ensure_installed, qemu_packages};
use crate::host::workspace::Workspace;
use crate::kernel::KernelChoice;
use crate::vm::qemu::{Accel, KVM_CLOCK};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The arches to benchmark.
    #[arg(long, value_enum, default_value_t = ArchSelection::All)]
    arch: ArchSelection,
    /// Boots per scenario and arch.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Boot only the kiOS init (no ratios).
    #[arg(long)]
    no_baseline: bool,
    /// Print the report as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// The kernel both scenarios boot.
    #[arg(long, value_enum, default_value_t = KernelChoice::Debian)]
    kernel: KernelChoice,
    /// Kill a VM that has not powered off after this many seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    timeout: u64,
    /// tcg: emulated and instruction-counted (`-icount`: repeatable timings);
    /// kvm: the host's CPU, host arch only, timings not instruction-counted.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    for arch in args.arch.arches() {
        ensure_installed(qemu_packages(arch))?;
        args.accel.check(arch)?;
    }
    let workspace = Workspace::locate()?;
    let results = results_dir(&workspace.root);
    // KVM timings follow the host's speed: recorded and compared apart.
    let (clock, record_key) = match args.accel {
        Accel::Tcg => (CLOCK, args.kernel.name().to_string()),
        Accel::Kvm => (KVM_CLOCK, format!("{}-kvm", args.kernel.name())),
    };
    let previous = latest_result(&results, &record_key)?;
    let date = today_utc()?;
    eprintln!(
        "kios bench: {} kernel, {clock}; {} run(s) per scenario",
        args.kernel.name(),
        args.runs
    );
    if args.accel == Accel::Kvm {
        eprintln!(
            "kios bench: with KVM the timings are not instruction-counted: they follow the \
             host's speed and load, and are compared only with earlier KVM runs"
        );
    }

    let boots = Boots {
        runs: args.runs,
        timeout: Duration::from_secs(args.timeout),
        accel: args.accel,
    };
    let mut arches = Vec::new();
    for arch in args.arch.arches() {
        let components = NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, args.kernel)?;
        let (init_bytes, kios) = bench_scenario(&workspace, &components, Scenario::Kios, &boots)?;
        let baseline = if args.no_baseline {
            None
        } else {
            Some(bench_scenario(&workspace, &components, Scenario::Baseline, &boots)?.1)
        };
        arches.push(ArchResult::new(arch, init_bytes, kios, baseline));
    }
    let report = BenchReport {
        date: date.clone(),
        clock: clock.to_string(),
        kernel: args.kernel.name().to_string(),
        runs_per_scenario: usize::from(args.runs),
        arches,
    };

    let (json_path, chart_path) = result_paths(&results, &date, &record_key);
    record(&report, &json_path)?;
    write_chart(&report, &chart_path)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print!("\n{}", report.table());
    }
    match &previous {
        Some((path, before)) => {
            eprintln!("\nmedians against {}:", path.display());
            for delta in compare(before, &report) {
                eprintln!("  {}", delta.line());
            }
        }
        None => eprintln!("\nno earlier run in {} to compare with", results.display()),
    }
    eprintln!(
        "recorded {} and {}",
        json_path.display(),
        chart_path.display()
    );
    Ok(())
}
