//! `kios bench`: per arch, build the node image with the kiOS init and with
//! the shell-script baseline (a BENCHMARK FIXTURE, never in a kiOS image),
//! boot each several times under `-icount`, and report each phase's spread,
//! the kiOS/baseline ratios, image sizes and a chart; record the run in
//! benches/results/ and compare it with the previous record.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::baseline::baseline_init;
use crate::bench::{
    check_run, compare, latest_result, record, result_paths, results_dir, today_utc, write_chart,
    ArchResult, BenchReport, Scenario, ScenarioResult, CLOCK,
};
use crate::cli::ArchSelection;
use crate::components::node::NodeComponents;
use crate::components::OciRuntime;
use crate::host::packages::{ensure_installed, qemu_packages};
use crate::host::workspace::Workspace;
use crate::image::node_image::{build_node_image, vm_config, ImageOptions, InitChoice, NodeImage};
use crate::kernel::KernelChoice;
use crate::testing::probe_pod::probe_pod_file;
use crate::vm::qemu::{run_vm, Accel, LineVerdict, RunOptions, VmConfig, KVM_CLOCK};

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

    let mut arches = Vec::new();
    for arch in args.arch.arches() {
        let components = NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, args.kernel)?;
        let (init_bytes, kios) = bench_scenario(&workspace, &components, Scenario::Kios, args)?;
        let baseline = if args.no_baseline {
            None
        } else {
            Some(bench_scenario(&workspace, &components, Scenario::Baseline, args)?.1)
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

/// Builds one scenario's image (probe pod on) and boots it `args.runs`
/// times; returns the image's init size and the scenario's result.
fn bench_scenario(
    workspace: &Workspace,
    components: &NodeComponents,
    scenario: Scenario,
    args: &BenchArgs,
) -> Result<(u64, ScenarioResult)> {
    let arch = components.arch;
    let out = workspace
        .output_dir()?
        .join(format!("bench-{}", scenario.name()));
    let init = match scenario {
        Scenario::Kios => InitChoice::Kios,
        Scenario::Baseline => baseline_init(components)?,
    };
    let image = build_node_image(
        workspace,
        components,
        &ImageOptions {
            init,
            extra_files: vec![probe_pod_file()],
            ..ImageOptions::default()
        },
        &out,
    )?;
    let image_bytes = std::fs::metadata(&image.initrd)
        .with_context(|| format!("reading {}", image.initrd.display()))?
        .len();
    let mut runs = Vec::new();
    for index in 1..=args.runs {
        let phases = boot_once(&image, scenario, args)
            .with_context(|| format!("{arch} {} run {index}", scenario.label()))?;
        eprintln!(
            "{arch} {} run {index}/{}: first_pod_running {:.3} s",
            scenario.label(),
            args.runs,
            phases.get("first_pod_running").copied().unwrap_or(0) as f64 / 1e6
        );
        runs.push(phases);
    }
    let components = image
        .parts
        .iter()
        .map(|part| (part.component.clone(), part.bytes))
        .collect();
    Ok((
        image.init_bytes,
        ScenarioResult::new(scenario, image_bytes, components, runs),
    ))
}

fn boot_once(
    image: &NodeImage,
    scenario: Scenario,
    args: &BenchArgs,
) -> Result<BTreeMap<String, u64>> {
    let config = VmConfig {
        accel: args.accel,
        ..vm_config(image, true)
    };
    let options = RunOptions {
        timeout: Duration::from_secs(args.timeout),
        echo: false,
    };
    let run = run_vm(&config, options, |_| LineVerdict::Continue)?;
    check_run(scenario, &run)
}
