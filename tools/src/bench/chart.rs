//! The SVG chart of a benchmark run: per arch, a column of two panels,
//! kiOS init next to the baseline in each.
//!
//! - The whole boot: every phase's median seconds since boot, whiskers
//!   min-max. The first pod's seconds set its scale.
//! - The init's part, the phases up to `kubelet_exec`: how long each took
//!   after the one before, in ms, on a log axis. A zoomed axis of time
//!   since boot would not do: the init's phases are sub-ms steps on top of
//!   the kernel's 0.7 s (731.8, 732.6, 732.8 ms) and would still sit on
//!   one line. Nor would a log axis on the whole boot, which would squeeze
//!   the pod's seconds, and their spread, into one decade. The steps are
//!   what an init controls, and they span 10 µs (kiOS) to 300 ms (the
//!   shell script): four decades, which only a log axis shows side by side.
//!
//! Phases are whatever the run recorded, in boot order, so phases the
//! timeline gains appear without a change here.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{millis, phases_in_boot_order, ratio_text, ArchResult, BenchReport};
use super::report::{ScenarioResult, Spread};
use crate::vm::timeline::Phase;

const KIOS_COLOR: RGBColor = RGBColor(31, 119, 180);
const BASELINE_COLOR: RGBColor = RGBColor(214, 124, 40);

/// The log axis' bottom: the timeline's resolution, 1 µs. A step of 0
/// (the baseline's clock ticks in 10 ms) is drawn down to it.
const STEP_FLOOR_MS: f64 = 0.001;
/// A column's width grows with the phases, so their names never overlap.
const COLUMN_MIN_WIDTH: u32 = 760;
const WIDTH_PER_PHASE: u32 = 100;
const WHOLE_BOOT_HEIGHT: u32 = 500;
const INIT_STEPS_HEIGHT: u32 = 440;
const TITLE_HEIGHT: u32 = 50;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Writes the chart of `report` to `path`.
pub fn write_chart(report: &BenchReport, path: &Path) -> Result<()> {
    let most_phases = report
        .arches
        .iter()
        .map(|arch| phases_in_boot_order(arch.scenarios()).len())
        .max()
        .unwrap_or(0) as u32;
    let column_width = COLUMN_MIN_WIDTH.max(140 + WIDTH_PER_PHASE * most_phases);
    let width = column_width * report.arches.len().max(1) as u32;
    let height = TITLE_HEIGHT + WHOLE_BOOT_HEIGHT + INIT_STEPS_HEIGHT;
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let (title, body) = root.split_vertically(TITLE_HEIGHT);
    title
        .draw_text(
            &format!(
                "kiOS boot benchmark {}: medians, whiskers min-max, {} run(s), {}",
                report.date, report.runs_per_scenario, report.clock
            ),
            &("sans-serif", 17).into_text_style(&title),
            (12, 16),
        )
        .map_err(chart_error)?;
    let columns = body.split_evenly((1, report.arches.len().max(1)));
    for (column, arch) in columns.iter().zip(&report.arches) {
        let (whole_boot, init_steps) = column.split_vertically(WHOLE_BOOT_HEIGHT);
        draw_whole_boot(&whole_boot, arch)?;
        draw_init_steps(&init_steps, arch)?;
    }
    root.present().map_err(chart_error)?;
    Ok(())
}

/// One scenario's bars in a panel: a spread per phase, where it has one.
struct Series {
    label: &'static str,
    color: RGBColor,
    /// Where its bars sit beside the phase's centre.
    offset: f64,
    spreads: Vec<Option<Spread>>,
}

fn series_of(
    arch: &ArchResult,
    spreads: impl Fn(&ScenarioResult) -> Vec<Option<Spread>>,
) -> Vec<Series> {
    [
        (-0.19, Some(&arch.kios), KIOS_COLOR),
        (0.19, arch.baseline.as_ref(), BASELINE_COLOR),
    ]
    .into_iter()
    .filter_map(|(offset, scenario, color)| {
        let scenario = scenario?;
        Some(Series {
            label: scenario.scenario.label(),
            color,
            offset,
            spreads: spreads(scenario),
        })
    })
    .collect()
}

/// How a panel's µs map onto its y axis.
struct YAxis {
    to_axis: fn(u64) -> f64,
    /// Where bars start.
    bottom: f64,
    value_text: fn(u64) -> String,
}

fn draw_whole_boot(area: &Area, arch: &ArchResult) -> Result<()> {
    let phases = phases_in_boot_order(arch.scenarios());
    let series = series_of(arch, |scenario| {
        phases
            .iter()
            .map(|name| scenario.phases_us.get(name).copied())
            .collect()
    });
    let axis = YAxis {
        to_axis: |micros| micros as f64 / 1e6,
        bottom: 0.0,
        value_text: |micros| format!("{:.2}", micros as f64 / 1e6),
    };
    let top = (axis.to_axis)(highest(&series).max(1)) * 1.12;
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
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.5..phases.len() as f64 - 0.5, 0.0..top)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("seconds since boot (guest clock)")
        .draw()
        .map_err(chart_error)?;
    draw_bars(&mut chart, area, &phases, &series, &axis)?;
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn draw_init_steps(area: &Area, arch: &ArchResult) -> Result<()> {
    let mut phases = phases_in_boot_order(arch.scenarios());
    if let Some(kubelet_exec) = phases
        .iter()
        .position(|name| name == Phase::KubeletExec.name())
    {
        phases.truncate(kubelet_exec + 1);
    }
    let series = series_of(arch, |scenario| step_spreads(scenario, &phases));
    let axis = YAxis {
        to_axis: |micros| (micros as f64 / 1e3).max(STEP_FLOOR_MS),
        bottom: STEP_FLOOR_MS,
        value_text: step_text,
    };
    // Room above the tallest whisker for its label, in log terms.
    let top = (axis.to_axis)(highest(&series)).max(1.0) * 4.0;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{}: the init's part, ms from the previous phase to each \
                 (pid1: from kernel start), log scale",
                arch.arch
            ),
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(
            -0.5..phases.len() as f64 - 0.5,
            (STEP_FLOOR_MS..top).log_scale(),
        )
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        // To the µs: the log axis' key points carry float noise (0.0010000000000000002).
        .y_label_formatter(&|ms| format!("{}", (ms * 1e3).round() / 1e3))
        .y_desc("ms after the previous phase")
        .draw()
        .map_err(chart_error)?;
    draw_bars(&mut chart, area, &phases, &series, &axis)?;
    // Its first bars, the kernel's boot, are its tallest: the legend goes right.
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// Per phase, the spread over runs of the time since the phase before it
/// (for the first, since boot).
fn step_spreads(scenario: &ScenarioResult, phases: &[String]) -> Vec<Option<Spread>> {
    phases
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let previous = index.checked_sub(1).and_then(|before| phases.get(before));
            let steps: Vec<u64> = scenario
                .runs
                .iter()
                .filter_map(|run| {
                    let at = *run.get(name)?;
                    let since = match previous {
                        Some(previous) => *run.get(previous)?,
                        None => 0,
                    };
                    Some(at.saturating_sub(since))
                })
                .collect();
            Spread::of(&steps)
        })
        .collect()
}

/// A step in ms, to three significant digits or so.
fn step_text(micros: u64) -> String {
    let ms = micros as f64 / 1e3;
    match micros {
        0 => "0".to_string(),
        1..=9_999 => format!("{ms:.3}"),
        10_000..=99_999 => format!("{ms:.1}"),
        _ => format!("{ms:.0}"),
    }
}

fn highest(series: &[Series]) -> u64 {
    series
        .iter()
        .flat_map(|series| series.spreads.iter().flatten())
        .map(|spread| spread.max)
        .max()
        .unwrap_or(0)
}

/// Each series' bars at their medians with min-max whiskers and the
/// median's value on top, and the phase names under the bar pairs.
fn draw_bars<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    area: &Area,
    phases: &[String],
    series: &[Series],
    axis: &YAxis,
) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    // Phase names under their bar pairs: plotters places f64 axis labels
    // at round numbers of its own choosing, not at the pairs' centres.
    let (area_x, area_y) = area.get_base_pixel();
    for (index, name) in phases.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(index as f64, axis.bottom));
        area.draw(&Text::new(
            name.as_str(),
            (x - area_x, y - area_y + 8),
            ("sans-serif", 11)
                .into_font()
                .into_text_style(area)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(chart_error)?;
    }
    let bottom = axis.bottom;
    for series in series {
        let bars: Vec<(f64, Spread)> = series
            .spreads
            .iter()
            .enumerate()
            .filter_map(|(index, spread)| Some((index as f64 + series.offset, (*spread)?)))
            .collect();
        let color = series.color;
        chart
            .draw_series(bars.iter().map(|(x, spread)| {
                Rectangle::new(
                    [
                        (x - 0.17, bottom),
                        (x + 0.17, (axis.to_axis)(spread.median)),
                    ],
                    color.filled(),
                )
            }))
            .map_err(chart_error)?
            .label(series.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart
            .draw_series(bars.iter().flat_map(|(x, spread)| {
                let (low, high) = ((axis.to_axis)(spread.min), (axis.to_axis)(spread.max));
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
            .draw_series(bars.iter().map(|(x, spread)| {
                EmptyElement::at((*x, (axis.to_axis)(spread.max)))
                    + Text::new(
                        (axis.value_text)(spread.median),
                        (0, -3),
                        ("sans-serif", 10)
                            .into_font()
                            .into_text_style(area)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )
            }))
            .map_err(chart_error)?;
    }
    Ok(())
}

/// The scenarios' colours, where the panel's bars leave room.
fn draw_legend<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(chart_error)
}

fn chart_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{amd64, phases, report, BASELINE_AMD64, KIOS_AMD64};
    use super::*;

    /// The kubelet's sub-phases too, as a console showing child output gives them.
    fn with_kubelet_phases(times: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
        let mut run = phases(times);
        run.extend(phases(&[
            ("kubelet_first_log", 3_700_000),
            ("kubelet_sync_loop", 8_900_000),
            ("pod_sandbox_ready", 9_800_000),
            ("container_started", 10_900_000),
        ]));
        run
    }

    #[test]
    fn the_chart_names_every_phase_and_draws_the_init_part_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let report = report(vec![amd64(
            with_kubelet_phases(&KIOS_AMD64),
            phases(&BASELINE_AMD64),
        )]);
        write_chart(&report, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        // plotters writes each text on a line of its own.
        let labels = |name: &str| svg.lines().filter(|line| *line == name).count();
        for init_phase in [
            "pid1",
            "mounts_done",
            "runtime_exec",
            "runtime_ready",
            "kubelet_exec",
        ] {
            assert_eq!(labels(init_phase), 2, "{init_phase}: in both panels");
        }
        for later_phase in [
            "kubelet_first_log",
            "kubelet_sync_loop",
            "pod_sandbox_ready",
            "container_started",
            "first_pod_running",
        ] {
            assert_eq!(labels(later_phase), 1, "{later_phase}: in the whole boot");
        }
        assert!(svg.contains("ms from the previous phase to each"));
        assert!(svg.contains("shell baseline"));
        // The init's steps in ms: 0.831 to mounts_done, 206 to runtime_ready.
        assert_eq!((labels("0.831"), labels("206")), (1, 1));
    }

    #[test]
    fn steps_are_per_run_times_since_the_phase_before() {
        let kios = amd64(phases(&KIOS_AMD64), phases(&BASELINE_AMD64)).kios;
        let names: Vec<String> = ["pid1", "mounts_done", "runtime_ready"]
            .map(String::from)
            .to_vec();
        let medians: Vec<Option<u64>> = step_spreads(&kios, &names)
            .into_iter()
            .map(|spread| spread.map(|spread| spread.median))
            .collect();
        assert_eq!(medians, [Some(731_753), Some(831), Some(206_175)]);
        let unknown = step_spreads(&kios, &["pod_sandbox_ready".to_string()]);
        assert_eq!(unknown, [None]);
        assert_eq!(
            [0, 10, 831, 10_400, 206_175].map(step_text),
            ["0", "0.010", "0.831", "10.4", "206"]
        );
    }
}
