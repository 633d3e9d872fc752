//! The boot benchmark: the kiOS init against a conventional shell-script
//! init (a BENCHMARK FIXTURE, benches/baseline/init.sh, never in a kiOS
//! image) on the same kernel, runtime, kubelet and image contents.
//!
//! This module holds the pure parts `kios bench` is made of: per-phase
//! statistics, the kiOS/baseline ratios and targets, the recorded JSON
//! and its comparison with the previous record, the table and the chart.

pub mod baseline;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

use crate::host::arch::Arch;
use crate::vm::qemu::VmRun;
use crate::vm::timeline::{Phase, Timeline};

use self::baseline::BASELINE_MARKER;

/// How the guest clock ran in every benchmark boot.
pub const CLOCK: &str = "guest clock, -icount shift=0,sleep=off";

/// Targets from issue 5, reported (never enforced).
pub const INIT_COST_RATIO_TARGET: f64 = 1.0 / 20.0;
pub const FIRST_POD_RATIO_TARGET: f64 = 0.7;

/// Every phase the benchmark reports, in boot order.
pub const PHASES: [Phase; 6] = [
    Phase::Pid1,
    Phase::MountsDone,
    Phase::RuntimeExec,
    Phase::RuntimeReady,
    Phase::KubeletExec,
    Phase::FirstPodRunning,
];

/// Which init a boot ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Kios,
    Baseline,
}

impl Scenario {
    /// The name in JSON, file names and delta lines.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Kios => "kios",
            Scenario::Baseline => "baseline",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Scenario::Kios => "kiOS init",
            Scenario::Baseline => "shell baseline",
        }
    }
}

/// Checks that a benchmark boot ran the expected init to a running pod
/// and powered off, and returns its phases (name → µs since boot).
pub fn check_run(scenario: Scenario, run: &VmRun) -> Result<BTreeMap<String, u64>> {
    let ran_baseline = run.console.contains(BASELINE_MARKER);
    if ran_baseline != (scenario == Scenario::Baseline) {
        bail!(
            "the {} scenario's boot {} the baseline init",
            scenario.label(),
            if ran_baseline { "ran" } else { "did not run" }
        );
    }
    let timeline = Timeline::from_console(&run.console);
    let missing: Vec<&str> = PHASES
        .into_iter()
        .filter(|phase| !timeline.phases.contains_key(phase))
        .map(Phase::name)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: no {} on the console; last lines:\n{}",
            scenario.label(),
            missing.join(", "),
            run.console.tail(30)
        );
    }
    if !run.status.success() {
        bail!(
            "{}: the VM did not power off cleanly ({}); last lines:\n{}",
            scenario.label(),
            run.status,
            run.console.tail(30)
        );
    }
    Ok(timeline
        .phases
        .iter()
        .map(|(phase, micros)| (phase.name().to_string(), *micros))
        .collect())
}

/// Minimum, median and maximum of a set of runs, in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

impl Spread {
    /// None for no values; an even count's median is the middle pair's mean.
    pub fn of(values: &[u64]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let middle = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted.get(middle.checked_sub(1)?)? + sorted.get(middle)?) / 2
        } else {
            *sorted.get(middle)?
        };
        Some(Spread {
            min: *sorted.first()?,
            median,
            max: *sorted.last()?,
        })
    }
}

/// The init's own cost in one run: PID 1 start to runtime exec, plus
/// runtime ready to kubelet exec (the rest is the runtime's and kernel's).
pub fn init_cost_us(run: &BTreeMap<String, u64>) -> Option<u64> {
    let at = |phase: Phase| run.get(phase.name()).copied();
    let before_runtime = at(Phase::RuntimeExec)?.checked_sub(at(Phase::Pid1)?)?;
    let before_kubelet = at(Phase::KubeletExec)?.checked_sub(at(Phase::RuntimeReady)?)?;
    Some(before_runtime + before_kubelet)
}

/// One scenario on one arch: every run's phases and their spread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    /// The initramfs as booted, in bytes.
    pub image_bytes: u64,
    /// Bytes per image component (what `kios size --arch` reports).
    pub components: BTreeMap<String, u64>,
    /// Each run's phases, µs since boot (guest clock).
    pub runs: Vec<BTreeMap<String, u64>>,
    pub phases_us: BTreeMap<String, Spread>,
    pub init_cost_us: Option<Spread>,
}

impl ScenarioResult {
    pub fn new(
        scenario: Scenario,
        image_bytes: u64,
        components: BTreeMap<String, u64>,
        runs: Vec<BTreeMap<String, u64>>,
    ) -> ScenarioResult {
        let phases_us = PHASES
            .into_iter()
            .filter_map(|phase| {
                let values: Vec<u64> = runs
                    .iter()
                    .filter_map(|run| run.get(phase.name()).copied())
                    .collect();
                Some((phase.name().to_string(), Spread::of(&values)?))
            })
            .collect();
        let costs: Vec<u64> = runs.iter().filter_map(init_cost_us).collect();
        ScenarioResult {
            scenario,
            image_bytes,
            components,
            phases_us,
            init_cost_us: Spread::of(&costs),
            runs,
        }
    }

    fn median(&self, phase: &str) -> Option<u64> {
        self.phases_us.get(phase).map(|spread| spread.median)
    }
}

/// kiOS / baseline, of the medians.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub phases: BTreeMap<String, f64>,
    pub init_cost: Option<f64>,
    pub first_pod_running: Option<f64>,
}

fn ratio(kios: Option<u64>, baseline: Option<u64>) -> Option<f64> {
    match (kios, baseline) {
        // Four decimals: plenty for a ratio, and it reads back from JSON exactly.
        (Some(kios), Some(baseline)) if baseline > 0 => {
            Some((kios as f64 / baseline as f64 * 1e4).round() / 1e4)
        }
        _ => None,
    }
}

impl Ratios {
    pub fn of(kios: &ScenarioResult, baseline: &ScenarioResult) -> Ratios {
        let phases = PHASES
            .into_iter()
            .filter_map(|phase| {
                let name = phase.name();
                Some((
                    name.to_string(),
                    ratio(kios.median(name), baseline.median(name))?,
                ))
            })
            .collect();
        Ratios {
            phases,
            init_cost: ratio(
                kios.init_cost_us.map(|spread| spread.median),
                baseline.init_cost_us.map(|spread| spread.median),
            ),
            first_pod_running: ratio(
                kios.median(Phase::FirstPodRunning.name()),
                baseline.median(Phase::FirstPodRunning.name()),
            ),
        }
    }
}

/// One target of issue 5: measured against its limit (lower is better).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub limit: f64,
    pub measured: Option<f64>,
    pub met: Option<bool>,
}

impl Target {
    fn new(name: &str, limit: f64, measured: Option<f64>) -> Target {
        Target {
            name: name.to_string(),
            limit,
            measured,
            met: measured.map(|value| value <= limit),
        }
    }
}

/// Everything measured on one arch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchResult {
    pub arch: String,
    /// The stripped kiOS init, in bytes.
    pub init_bytes: u64,
    pub kios: ScenarioResult,
    pub baseline: Option<ScenarioResult>,
    pub ratios: Option<Ratios>,
    pub targets: Vec<Target>,
}

impl ArchResult {
    pub fn new(
        arch: Arch,
        init_bytes: u64,
        kios: ScenarioResult,
        baseline: Option<ScenarioResult>,
    ) -> ArchResult {
        let ratios = baseline
            .as_ref()
            .map(|baseline| Ratios::of(&kios, baseline));
        let targets = vec![
            Target::new(
                "init's own cost, kiOS/baseline",
                INIT_COST_RATIO_TARGET,
                ratios.as_ref().and_then(|ratios| ratios.init_cost),
            ),
            Target::new(
                "first_pod_running, kiOS/baseline",
                FIRST_POD_RATIO_TARGET,
                ratios.as_ref().and_then(|ratios| ratios.first_pod_running),
            ),
            Target::new(
                "stripped init, bytes",
                crate::commands::size::INIT_SIZE_LIMIT_BYTES as f64,
                Some(init_bytes as f64),
            ),
        ];
        ArchResult {
            arch: arch.debian_name().to_string(),
            init_bytes,
            kios,
            baseline,
            ratios,
            targets,
        }
    }

    fn scenarios(&self) -> impl Iterator<Item = &ScenarioResult> {
        std::iter::once(&self.kios).chain(&self.baseline)
    }
}

/// A benchmark run: what is printed with `--json` and recorded in benches/results/.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// UTC date, YYYY-MM-DD.
    pub date: String,
    pub clock: String,
    /// The kernel both scenarios booted (`debian` or `kios`); runs on
    /// different kernels are recorded and compared apart.
    #[serde(default = "debian_kernel")]
    pub kernel: String,
    pub runs_per_scenario: usize,
    pub arches: Vec<ArchResult>,
}

/// Runs recorded before the kernel was a choice booted Debian's.
fn debian_kernel() -> String {
    "debian".to_string()
}

fn seconds(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1e6)
}

fn millis(micros: u64) -> String {
    format!("{:.1}", micros as f64 / 1e3)
}

fn spread_text(spread: Option<&Spread>, unit: fn(u64) -> String) -> String {
    spread.map_or_else(
        || "-".to_string(),
        |spread| {
            format!(
                "{} [{}-{}]",
                unit(spread.median),
                unit(spread.min),
                unit(spread.max)
            )
        },
    )
}

/// Byte counts as integers, ratios to four decimals.
fn number_text(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_string(), |ratio| format!("{ratio:.3}"))
}

impl BenchReport {
    /// Per arch: phases (median [min-max]) per scenario and their ratio,
    /// the init's own cost, the targets and the image per component.
    pub fn table(&self) -> String {
        let mut out = format!(
            "boot benchmark {} ({} kernel; {}; {} run(s) per scenario; median [min-max])\n",
            self.date, self.kernel, self.clock, self.runs_per_scenario
        );
        for arch in &self.arches {
            let baseline = arch.baseline.as_ref();
            let ratios = arch.ratios.as_ref();
            out.push_str(&format!(
                "\n{}: seconds since boot\n{:<20} {:>26} {:>26} {:>14}\n",
                arch.arch, "phase", "kiOS init", "shell baseline", "kiOS/baseline"
            ));
            for phase in PHASES {
                let name = phase.name();
                out.push_str(&format!(
                    "{:<20} {:>26} {:>26} {:>14}\n",
                    name,
                    spread_text(arch.kios.phases_us.get(name), seconds),
                    spread_text(baseline.and_then(|b| b.phases_us.get(name)), seconds),
                    ratio_text(ratios.and_then(|r| r.phases.get(name).copied())),
                ));
            }
            out.push_str(&format!(
                "{:<20} {:>26} {:>26} {:>14}\n",
                "init's own cost (ms)",
                spread_text(arch.kios.init_cost_us.as_ref(), millis),
                spread_text(baseline.and_then(|b| b.init_cost_us.as_ref()), millis),
                ratio_text(ratios.and_then(|r| r.init_cost)),
            ));
            out.push_str("targets (issue 5, reported only):\n");
            for target in &arch.targets {
                let verdict = match target.met {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "not measured",
                };
                let measured = target.measured.map_or_else(|| "-".to_string(), number_text);
                out.push_str(&format!(
                    "  {:<34} {:>12} <= {:<10} {verdict}\n",
                    target.name,
                    measured,
                    number_text(target.limit)
                ));
            }
            out.push_str(&format!(
                "image (bytes)\n  {:<34} {:>12} {:>14}\n",
                "component", "kiOS", "baseline"
            ));
            let mut components: Vec<&String> = arch
                .scenarios()
                .flat_map(|scenario| scenario.components.keys())
                .collect();
            components.sort();
            components.dedup();
            let bytes_of = |scenario: Option<&ScenarioResult>, component: &str| {
                scenario
                    .and_then(|s| s.components.get(component))
                    .map_or_else(|| "-".to_string(), u64::to_string)
            };
            for component in components {
                out.push_str(&format!(
                    "  {:<34} {:>12} {:>14}\n",
                    component,
                    bytes_of(Some(&arch.kios), component),
                    bytes_of(baseline, component),
                ));
            }
            out.push_str(&format!(
                "  {:<34} {:>12} {:>14}\n",
                "initramfs as booted",
                arch.kios.image_bytes,
                baseline.map_or_else(|| "-".to_string(), |b| b.image_bytes.to_string()),
            ));
        }
        out
    }
}

/// A median that moved between two recorded runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub arch: String,
    pub scenario: Scenario,
    /// A phase name, or `init_cost`.
    pub measure: String,
    pub before_us: u64,
    pub after_us: u64,
}

impl Delta {
    pub fn line(&self) -> String {
        let change = self.after_us as i64 - self.before_us as i64;
        let percent = if self.before_us > 0 {
            format!("{:+.1}%", change as f64 * 100.0 / self.before_us as f64)
        } else {
            "-".to_string()
        };
        format!(
            "{:<6} {:<9} {:<18} {:>10} -> {:>10} ms  {:>+10.1} ms  {percent}",
            self.arch,
            self.scenario.name(),
            self.measure,
            millis(self.before_us),
            millis(self.after_us),
            change as f64 / 1e3,
        )
    }
}

/// The medians of `current` next to those of `previous`, for every arch,
/// scenario and measure both have.
pub fn compare(previous: &BenchReport, current: &BenchReport) -> Vec<Delta> {
    let mut deltas = Vec::new();
    for arch in &current.arches {
        let Some(before_arch) = previous.arches.iter().find(|a| a.arch == arch.arch) else {
            continue;
        };
        for scenario in arch.scenarios() {
            let Some(before) = before_arch
                .scenarios()
                .find(|s| s.scenario == scenario.scenario)
            else {
                continue;
            };
            let medians = |result: &ScenarioResult| -> Vec<(String, u64)> {
                let mut medians: Vec<(String, u64)> = PHASES
                    .into_iter()
                    .filter_map(|phase| {
                        Some((phase.name().to_string(), result.median(phase.name())?))
                    })
                    .collect();
                medians.extend(
                    result
                        .init_cost_us
                        .map(|spread| ("init_cost".to_string(), spread.median)),
                );
                medians
            };
            let before_medians = medians(before);
            for (measure, after_us) in medians(scenario) {
                if let Some((_, before_us)) = before_medians.iter().find(|(m, _)| *m == measure) {
                    deltas.push(Delta {
                        arch: arch.arch.clone(),
                        scenario: scenario.scenario,
                        measure,
                        before_us: *before_us,
                        after_us,
                    });
                }
            }
        }
    }
    deltas
}

/// Today's UTC date as YYYY-MM-DD.
pub fn today_utc() -> Result<String> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?;
    Ok(civil_date(since_epoch.as_secs() / 86_400))
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), so no date crate is needed for a file name.
pub fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Where recorded runs live: `boot-<date>-<kernel>.json` with its `.svg`.
pub fn results_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("benches/results")
}

pub fn result_paths(results_dir: &Path, date: &str, kernel: &str) -> (PathBuf, PathBuf) {
    (
        results_dir.join(format!("boot-{date}-{kernel}.json")),
        results_dir.join(format!("boot-{date}-{kernel}.svg")),
    )
}

/// The newest recorded run on `kernel` (file names sort by date), if any.
pub fn latest_result(results_dir: &Path, kernel: &str) -> Result<Option<(PathBuf, BenchReport)>> {
    if !results_dir.exists() {
        return Ok(None);
    }
    let mut recorded = Vec::new();
    for entry in std::fs::read_dir(results_dir)
        .with_context(|| format!("listing {}", results_dir.display()))?
    {
        let path = entry
            .with_context(|| format!("listing {}", results_dir.display()))?
            .path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if name.starts_with("boot-") && name.ends_with(&format!("-{kernel}.json")) {
            recorded.push(path);
        }
    }
    recorded.sort();
    let Some(path) = recorded.pop() else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let report =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some((path, report)))
}

/// Writes the run as pretty JSON (small: phases and sizes, no consoles).
pub fn record(report: &BenchReport, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut json = serde_json::to_string_pretty(report).context("encoding the report")?;
    json.push('\n');
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
}

const KIOS_COLOR: RGBColor = RGBColor(31, 119, 180);
const BASELINE_COLOR: RGBColor = RGBColor(214, 124, 40);

/// Grouped bars: per arch, each phase's median seconds since boot for
/// both scenarios, with min-max whiskers.
pub fn write_chart(report: &BenchReport, path: &Path) -> Result<()> {
    let width = 760 * report.arches.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let (title, body) = root.split_vertically(50);
    title
        .draw_text(
            &format!(
                "kiOS boot benchmark {}: median seconds since boot, whiskers min-max, {} run(s), {}",
                report.date, report.runs_per_scenario, report.clock
            ),
            &("sans-serif", 17).into_text_style(&title),
            (12, 16),
        )
        .map_err(chart_error)?;
    let panels = body.split_evenly((1, report.arches.len().max(1)));
    for (panel, arch) in panels.iter().zip(&report.arches) {
        draw_arch(panel, arch)?;
    }
    root.present().map_err(chart_error)?;
    Ok(())
}

fn draw_arch(
    panel: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    arch: &ArchResult,
) -> Result<()> {
    let top = arch
        .scenarios()
        .flat_map(|scenario| scenario.phases_us.values())
        .map(|spread| spread.max)
        .max()
        .unwrap_or(1) as f64
        / 1e6
        * 1.12;
    let caption = match arch.ratios.as_ref() {
        Some(ratios) => format!(
            "{}: init's own cost {} ms vs {} ms (kiOS/baseline {}), first pod {}",
            arch.arch,
            arch.kios
                .init_cost_us
                .map_or_else(|| "-".into(), |s| millis(s.median)),
            arch.baseline
                .as_ref()
                .and_then(|b| b.init_cost_us)
                .map_or_else(|| "-".into(), |s| millis(s.median)),
            ratio_text(ratios.init_cost),
            ratio_text(ratios.first_pod_running),
        ),
        None => format!("{} (no baseline)", arch.arch),
    };
    let mut chart = ChartBuilder::on(panel)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.5..PHASES.len() as f64 - 0.5, 0.0..top)
        .map_err(chart_error)?;
    // Phase names under their bar pairs: plotters places f64 axis labels
    // at round numbers of its own choosing, not at the pairs' centres.
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("seconds since boot (guest clock)")
        .draw()
        .map_err(chart_error)?;
    let (panel_x, panel_y) = panel.get_base_pixel();
    for (index, phase) in PHASES.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(index as f64, 0.0));
        panel
            .draw(&Text::new(
                phase.name(),
                (x - panel_x, y - panel_y + 8),
                ("sans-serif", 11)
                    .into_font()
                    .into_text_style(panel)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(chart_error)?;
    }
    for (offset, scenario, color) in [
        (-0.19, Some(&arch.kios), KIOS_COLOR),
        (0.19, arch.baseline.as_ref(), BASELINE_COLOR),
    ] {
        let Some(scenario) = scenario else { continue };
        let spreads: Vec<(f64, Spread)> = PHASES
            .iter()
            .enumerate()
            .filter_map(|(index, phase)| {
                Some((
                    index as f64 + offset,
                    *scenario.phases_us.get(phase.name())?,
                ))
            })
            .collect();
        let to_seconds = |micros: u64| micros as f64 / 1e6;
        chart
            .draw_series(spreads.iter().map(|(x, spread)| {
                Rectangle::new(
                    [(x - 0.17, 0.0), (x + 0.17, to_seconds(spread.median))],
                    color.filled(),
                )
            }))
            .map_err(chart_error)?
            .label(scenario.scenario.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart
            .draw_series(spreads.iter().flat_map(|(x, spread)| {
                let (low, high) = (to_seconds(spread.min), to_seconds(spread.max));
                [
                    PathElement::new(vec![(*x, low), (*x, high)], BLACK.stroke_width(1)),
                    PathElement::new(
                        vec![(x - 0.06, low), (x + 0.06, low)],
                        BLACK.stroke_width(1),
                    ),
                    PathElement::new(
                        vec![(x - 0.06, high), (x + 0.06, high)],
                        BLACK.stroke_width(1),
                    ),
                ]
            }))
            .map_err(chart_error)?;
        chart
            .draw_series(spreads.iter().map(|(x, spread)| {
                Text::new(
                    format!("{:.2}", to_seconds(spread.median)),
                    (*x, to_seconds(spread.max) + top * 0.01),
                    ("sans-serif", 10)
                        .into_font()
                        .into_text_style(panel)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(chart_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(chart_error)?;
    Ok(())
}

fn chart_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {error}")
}
