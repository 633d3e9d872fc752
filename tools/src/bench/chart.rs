//! The SVG chart of a benchmark run: per arch, each phase's median with
//! its min-max whiskers, kiOS init next to the baseline.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{millis, ratio_text, ArchResult, BenchReport, Spread};
use super::PHASES;

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
