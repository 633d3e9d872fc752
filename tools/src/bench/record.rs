//! The recorded runs in benches/results/ (`boot-<date>-<kernel>.json`
//! beside its chart): where they go, writing one, finding the previous one
//! and comparing medians with it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::report::{millis, BenchReport, ScenarioResult};
use super::run::Scenario;
use super::PHASES;

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
