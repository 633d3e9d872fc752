//! `kios bench`: per arch, build the node image with the kiOS init and with
//! the shell-script baseline (a BENCHMARK FIXTURE, never in a kiOS image),
//! boot each several times under `-icount`, and report each phase's spread,
//! the kiOS/baseline ratios, image sizes and a chart; record the run in
//! benches/results/ and compare it with the previous record, or with a
//! chosen one, optionally failing on a regression. `--against` compares two
//! records without booting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench::compare::DEFAULT_REGRESSION_FLOOR_US;
use crate::bench::run::{bench_scenario, BenchRoot, Boots};
use crate::bench::{
    compare, latest_result, load_record, record, record_paths, results_dir, write_chart,
    ArchEnvironment, ArchResult, BenchReport, ComparisonReport, Delta, GitRevision, RecordTime,
    RecordedRun, RegressionGate, Scenario, CLOCK, DISK_CLOCK, SCHEMA_VERSION,
};
use crate::cli::ArchSelection;
use crate::components::node::NodeComponents;
use crate::components::OciRuntime;
use crate::host::packages::{ensure_installed, qemu_packages};
use crate::host::workspace::Workspace;
use crate::image::board::Board;
use crate::image::initramfs::Compression;
use crate::kernel::KernelChoice;
use crate::vm::qemu::{Accel, ConsoleVerbosity, KVM_CLOCK};

/// The options `--against` leaves no use for: nothing is booted.
const BOOT_OPTIONS: [&str; 10] = [
    "arch",
    "runs",
    "no_baseline",
    "kernel",
    "timeout",
    "accel",
    "console",
    "compression",
    "root",
    "board",
];

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Gating a CI job on a committed record (exits 1, naming each slower median):
  cargo kios bench --kernel kios --compare BASE.json --max-regression 20
Comparing two records without booting:
  cargo kios bench --compare OLD.json --against NEW.json --max-regression 20
first_pod_running moves by about 13% between boots (the kubelet's timers): a limit
below that fails on noise. See benches/README.md.")]
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
    /// Print the report (with --against: the comparison) as JSON on stdout
    /// (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// The kernel both scenarios boot.
    #[arg(long, value_enum, default_value_t = KernelChoice::Kios)]
    kernel: KernelChoice,
    /// Kill a VM that has not powered off after this many seconds.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    timeout: u64,
    /// tcg: emulated and instruction-counted (`-icount`: repeatable timings);
    /// kvm: the host's CPU, host arch only, timings not instruction-counted.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// quiet: timed as a node boots; all: containerd's and the kubelet's
    /// lines on the console too, which adds the kubelet's sub-phases
    /// (first log line, sync loop, first sandbox, first container) to the
    /// report, at the console's cost. Recorded and compared apart.
    #[arg(long, value_enum, default_value_t = ConsoleVerbosity::Quiet)]
    console: ConsoleVerbosity,
    /// How the initramfs is stored: zstd (what `kios build` ships) or none,
    /// lz4, gzip, to time the unpacking's share. Other than zstd, recorded
    /// and compared apart.
    #[arg(long, value_enum, default_value_t = Compression::default())]
    compression: Compression,
    /// Where the kiOS scenario's root comes from: ram (the initramfs) or
    /// verity (an A/B release: its kernel and UKI command line, the erofs
    /// root verified by dm-verity from slot A of a disk, the data partition
    /// beside it; no firmware). verity needs the kiOS kernel and
    /// --no-baseline, and is recorded and compared apart.
    #[arg(long, value_enum, default_value_t = BenchRoot::default())]
    root: BenchRoot,
    /// Boot the kiOS scenario on a board's QEMU model from the card `kios
    /// build --board` writes (rpi4: raspi4b, 4 cores, the card in its slot)
    /// instead of the virt machine; its arch only, the kiOS kernel and
    /// --no-baseline. Recorded and compared apart.
    #[arg(long, value_enum, conflicts_with = "arch")]
    board: Option<Board>,
    /// Compare the run with this recorded run (a JSON file of
    /// benches/results/, any schema) instead of the newest earlier record of
    /// the same kernel and accel.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// Compare --compare's FILE with this recorded run instead of booting:
    /// nothing is built, booted or recorded.
    #[arg(long, value_name = "NEW", requires = "compare", conflicts_with_all = BOOT_OPTIONS)]
    against: Option<PathBuf>,
    /// Fail when any median (each phase, and the init's own cost, of either
    /// scenario on any arch) is slower than in --compare's FILE by more than
    /// PCT percent and by more than --regression-floor-ms.
    #[arg(long, value_name = "PCT", requires = "compare", value_parser = parse_percent)]
    max_regression: Option<f64>,
    /// The smallest slowdown --max-regression counts, in ms: under `-icount`
    /// the init's phases repeat to under a millisecond, so a smaller change
    /// is noise, however many percent of a tiny measure it is.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = DEFAULT_REGRESSION_FLOOR_US as f64 / 1e3,
        requires = "max_regression",
        value_parser = parse_milliseconds
    )]
    regression_floor_ms: f64,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(percent) if percent.is_finite() && percent >= 0.0 => Ok(percent),
        _ => Err(format!(
            "`{text}` is not a percentage (a number, 0 or more, e.g. 5 or 2.5)"
        )),
    }
}

fn parse_milliseconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(ms),
        _ => Err(format!(
            "`{text}` is not a duration in ms (a number, 0 or more, e.g. 1 or 0.5)"
        )),
    }
}

impl BenchArgs {
    fn gate(&self) -> Option<RegressionGate> {
        self.max_regression.map(|max_percent| RegressionGate {
            max_percent,
            floor_us: (self.regression_floor_ms * 1e3).round() as u64,
        })
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    // Read first, so a wrong path fails now rather than after the boots.
    let chosen = args.compare.as_deref().map(read_report).transpose()?;
    if let Some(newer) = &args.against {
        let older = chosen.context("--against compares with --compare's FILE: give both")?;
        return compare_records(&older, &read_report(newer)?, args);
    }
    bench(args, chosen)
}

fn read_report(path: &Path) -> Result<(PathBuf, BenchReport)> {
    Ok((path.to_path_buf(), load_record(path)?.report))
}

/// `--compare OLD --against NEW`: the comparison on stdout, then the gate.
fn compare_records(
    (older_path, older): &(PathBuf, BenchReport),
    (newer_path, newer): &(PathBuf, BenchReport),
    args: &BenchArgs,
) -> Result<()> {
    if let Some(note) = unlike_runs_note(older, newer) {
        eprintln!("{note}");
    }
    let deltas = compare(older, newer);
    let gate = args.gate();
    if args.json {
        let comparison = ComparisonReport::new(
            older_path.display().to_string(),
            newer_path.display().to_string(),
            &deltas,
            gate,
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&comparison).context("encoding the comparison")?
        );
    } else {
        print!(
            "{}",
            comparison_text(older_path, &newer_path.display().to_string(), &deltas, gate)
        );
    }
    gate.map_or(Ok(()), |gate| gate.check(&deltas))
}

/// Boots and records a run, then compares it with `chosen` or the previous record.
fn bench(args: &BenchArgs, chosen: Option<(PathBuf, BenchReport)>) -> Result<()> {
    let arches = match args.board {
        Some(board) => vec![board.arch()],
        None => args.arch.arches(),
    };
    for &arch in &arches {
        ensure_installed(qemu_packages(arch))?;
        args.accel.check(arch)?;
    }
    if args.board.is_some()
        && (!args.no_baseline || args.kernel != KernelChoice::Kios || args.root != BenchRoot::Ram)
    {
        bail!(
            "--board boots the board's card: the kiOS kernel (the board's drivers are built in), \
             the root in RAM, and no shell baseline; add --kernel kios --no-baseline"
        );
    }
    if args.compression == Compression::Erofs && !args.no_baseline {
        bail!(
            "the shell baseline cannot boot an erofs root: busybox's mount sets up a \
             loop device for an image file, and the kiOS kernel has none; add --no-baseline"
        );
    }
    if args.root == BenchRoot::Verity && (!args.no_baseline || args.kernel != KernelChoice::Kios) {
        bail!(
            "--root verity boots a slot release: the kiOS kernel sets up dm-verity itself,              and the shell baseline has no such root; add --kernel kios --no-baseline"
        );
    }
    let workspace = Workspace::locate()?;
    let results = results_dir(&workspace.root);
    // KVM timings follow the host's speed, and a console showing everything
    // costs boot time: each is recorded and compared apart.
    let (clock, mut record_key) = match (args.accel, args.root) {
        // The card makes the idle guest sleep in real time, as a disk does.
        (Accel::Tcg, BenchRoot::Ram) if args.board.is_some() => {
            (DISK_CLOCK, args.kernel.name().to_string())
        }
        (Accel::Tcg, BenchRoot::Ram) => (CLOCK, args.kernel.name().to_string()),
        // A disk makes the idle guest sleep in real time (`VmConfig::icount_mode`).
        (Accel::Tcg, BenchRoot::Verity) => (DISK_CLOCK, args.kernel.name().to_string()),
        (Accel::Kvm, _) => (KVM_CLOCK, format!("{}-kvm", args.kernel.name())),
    };
    if args.console == ConsoleVerbosity::All {
        record_key.push_str("-console-all");
    }
    if args.compression != Compression::default() {
        record_key.push_str(&format!("-{}", args.compression.name()));
    }
    if args.root != BenchRoot::default() {
        record_key.push_str(&format!("-{}-root", args.root.name()));
    }
    if let Some(board) = args.board {
        record_key.push_str(&format!("-{}", board.name()));
    }
    let previous = match chosen {
        Some(chosen) => Some(chosen),
        None => latest_result(&results, &record_key)?,
    };
    // The commit as the boots start: what was built and measured.
    let git = GitRevision::of(&workspace.root)
        .inspect_err(|error| eprintln!("kios bench: recording no git commit: {error:#}"))
        .ok();
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
        console: args.console,
        compression: args.compression,
        root: args.root,
        board: args.board,
    };
    let mut results_per_arch = Vec::new();
    let mut environment = BTreeMap::new();
    for arch in arches {
        let components = NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, args.kernel)?;
        environment.insert(
            arch.debian_name().to_string(),
            ArchEnvironment::of(&components),
        );
        let (init_bytes, kios) = bench_scenario(&workspace, &components, Scenario::Kios, &boots)?;
        let baseline = if args.no_baseline {
            None
        } else {
            Some(bench_scenario(&workspace, &components, Scenario::Baseline, &boots)?.1)
        };
        results_per_arch.push(ArchResult::new(arch, init_bytes, kios, baseline));
    }
    let recorded_at = RecordTime::now()?;
    let run = RecordedRun {
        schema_version: SCHEMA_VERSION,
        recorded_at: Some(recorded_at.rfc3339()),
        git,
        report: BenchReport {
            date: recorded_at.date(),
            clock: clock.to_string(),
            kernel: args.kernel.name().to_string(),
            runs_per_scenario: usize::from(args.runs),
            arches: results_per_arch,
        },
        environment,
    };

    let arch_names: Vec<&str> = run.report.arches.iter().map(|a| a.arch.as_str()).collect();
    let (json_path, chart_path) = record_paths(&results, recorded_at, &record_key, &arch_names);
    record(&run, &json_path)?;
    write_chart(&run.report, &chart_path)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&run).context("encoding the report")?
        );
    } else {
        print!("\n{}", run.report.table());
    }
    eprintln!(
        "recorded {} and {}",
        json_path.display(),
        chart_path.display()
    );
    let gate = args.gate();
    let Some((previous_path, before)) = &previous else {
        eprintln!("\nno earlier run in {} to compare with", results.display());
        return Ok(());
    };
    if let Some(note) = unlike_runs_note(before, &run.report) {
        eprintln!("{note}");
    }
    let deltas = compare(before, &run.report);
    eprint!(
        "\n{}",
        comparison_text(previous_path, "this run", &deltas, gate)
    );
    gate.map_or(Ok(()), |gate| gate.check(&deltas))
}

/// The deltas, one line each, the ones past the gate marked.
fn comparison_text(
    before: &Path,
    after: &str,
    deltas: &[Delta],
    gate: Option<RegressionGate>,
) -> String {
    let mut text = format!("medians, {} -> {after}:\n", before.display());
    if deltas.is_empty() {
        text.push_str("  no arch and scenario in common\n");
    }
    for delta in deltas {
        let past_gate = gate.is_some_and(|gate| gate.is_regression(delta));
        text.push_str(&format!(
            "  {}{}\n",
            delta.line(),
            if past_gate {
                "  <- past --max-regression"
            } else {
                ""
            }
        ));
    }
    text
}

/// Runs on different kernels or clocks differ for that reason alone: said
/// before their deltas.
fn unlike_runs_note(before: &BenchReport, after: &BenchReport) -> Option<String> {
    (before.kernel != after.kernel || before.clock != after.clock).then(|| {
        format!(
            "note: comparing a run on the {} kernel ({}) with one on the {} kernel ({})",
            before.kernel, before.clock, after.kernel, after.clock
        )
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Command::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|command| command.bench)
    }

    #[test]
    fn against_compares_two_records_and_takes_no_boot_options() {
        let args = parse(&["--compare", "old.json", "--against", "new.json"]).unwrap();
        assert_eq!(args.against, Some(PathBuf::from("new.json")));
        assert_eq!(args.gate(), None);

        let error = parse(&["--against", "new.json"]).unwrap_err();
        assert!(error.to_string().contains("--compare"), "{error}");
        for boot_option in [["--runs", "5"], ["--arch", "amd64"], ["--kernel", "kios"]] {
            let mut args = vec!["--compare", "old.json", "--against", "new.json"];
            args.extend(boot_option);
            let error = parse(&args).unwrap_err();
            assert!(
                error.to_string().contains("cannot be used with"),
                "{boot_option:?}: {error}"
            );
        }
    }

    #[test]
    fn max_regression_needs_a_record_and_a_percentage() {
        let args = parse(&["--compare", "old.json", "--max-regression", "2.5"]).unwrap();
        assert_eq!(
            args.gate(),
            Some(RegressionGate {
                max_percent: 2.5,
                floor_us: DEFAULT_REGRESSION_FLOOR_US
            })
        );
        let args = parse(&[
            "--compare",
            "old.json",
            "--max-regression",
            "5",
            "--regression-floor-ms",
            "0.25",
        ])
        .unwrap();
        assert_eq!(args.gate().map(|gate| gate.floor_us), Some(250));

        assert!(parse(&["--max-regression", "5"]).is_err());
        assert!(parse(&["--compare", "old.json", "--regression-floor-ms", "2"]).is_err());
        for bad in ["-1", "five", "NaN", "inf"] {
            let flag = format!("--max-regression={bad}");
            let error = parse(&["--compare", "old.json", &flag]).unwrap_err();
            assert!(error.to_string().contains("percentage"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_default_run_compares_with_the_previous_record() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.gate(), None);
        assert_eq!((args.compare, args.against), (None, None));
    }
}
