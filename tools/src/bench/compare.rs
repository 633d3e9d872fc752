//! Two runs side by side: each median's change between them, and the gate
//! `--max-regression` holds the newer one to.

use anyhow::{bail, Result};
use serde::Serialize;

use super::report::{millis, phases_in_boot_order, BenchReport, ScenarioResult};
use super::run::Scenario;

/// The measure beside the phases: the init's own cost.
const INIT_COST: &str = "init_cost";

/// A median that moved between two recorded runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delta {
    pub arch: String,
    pub scenario: Scenario,
    /// A phase name, or `init_cost`.
    pub measure: String,
    pub before_us: u64,
    pub after_us: u64,
}

impl Delta {
    /// Positive: slower.
    pub fn change_us(&self) -> i64 {
        self.after_us as i64 - self.before_us as i64
    }

    /// The change in percent of the earlier median; None when that was 0.
    pub fn percent(&self) -> Option<f64> {
        (self.before_us > 0).then(|| self.change_us() as f64 * 100.0 / self.before_us as f64)
    }

    pub fn line(&self) -> String {
        let percent = self
            .percent()
            .map_or_else(|| "-".to_string(), |percent| format!("{percent:+.1}%"));
        format!(
            "{:<6} {:<9} {:<18} {:>10} -> {:>10} ms  {:>+10.1} ms  {percent}",
            self.arch,
            self.scenario.name(),
            self.measure,
            millis(self.before_us),
            millis(self.after_us),
            self.change_us() as f64 / 1e3,
        )
    }
}

/// The medians of `current` next to those of `previous`, for every arch,
/// scenario and measure both have; phases in `current`'s boot order, then
/// the init's own cost.
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

fn medians(result: &ScenarioResult) -> Vec<(String, u64)> {
    let mut medians: Vec<(String, u64)> = phases_in_boot_order([result])
        .into_iter()
        .filter_map(|name| {
            let median = result.median(&name)?;
            Some((name, median))
        })
        .collect();
    medians.extend(
        result
            .init_cost_us
            .map(|spread| (INIT_COST.to_string(), spread.median)),
    );
    medians
}

/// The smallest slowdown the gate counts by default, in µs: the init's
/// phases repeat to under a millisecond under `-icount`, so a change
/// below it is noise, however large in percent (the init's own cost is
/// about 1 ms: 0.2 ms more would be +20%).
pub const DEFAULT_REGRESSION_FLOOR_US: u64 = 1_000;

/// `--max-regression`: a median is a regression when it got slower by
/// more than `max_percent` of its earlier value and by more than
/// `floor_us`. Every measure counts: each phase and the init's own cost,
/// of both scenarios.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegressionGate {
    pub max_percent: f64,
    pub floor_us: u64,
}

impl RegressionGate {
    pub fn is_regression(&self, delta: &Delta) -> bool {
        let change = delta.change_us();
        if change <= self.floor_us as i64 {
            return false;
        }
        // From zero any slowdown past the floor is infinitely many percent.
        delta
            .percent()
            .is_none_or(|percent| percent > self.max_percent)
    }

    /// An error naming every regression; also one when nothing could be
    /// compared, so a gate never passes by comparing nothing.
    pub fn check(&self, deltas: &[Delta]) -> Result<()> {
        if deltas.is_empty() {
            bail!(
                "--max-regression: the two runs have no arch and scenario in common, \
                 so nothing was compared"
            );
        }
        let regressions: Vec<String> = deltas
            .iter()
            .filter(|delta| self.is_regression(delta))
            .map(|delta| format!("  {}", delta.line()))
            .collect();
        if !regressions.is_empty() {
            bail!(
                "{} median(s) slower by more than {}% (and more than {} ms), the \
                 --max-regression limit:\n{}",
                regressions.len(),
                self.max_percent,
                millis(self.floor_us),
                regressions.join("\n")
            );
        }
        Ok(())
    }
}

/// A comparison as `--json` prints it: each delta with its change and
/// whether it is past the gate.
#[derive(Debug, Serialize)]
pub struct ComparisonReport<'a> {
    pub before: String,
    pub after: String,
    pub max_regression_percent: Option<f64>,
    pub regression_floor_us: Option<u64>,
    pub deltas: Vec<DeltaReport<'a>>,
}

#[derive(Debug, Serialize)]
pub struct DeltaReport<'a> {
    #[serde(flatten)]
    pub delta: &'a Delta,
    pub change_us: i64,
    pub percent: Option<f64>,
    pub regression: bool,
}

impl<'a> ComparisonReport<'a> {
    pub fn new(
        before: String,
        after: String,
        deltas: &'a [Delta],
        gate: Option<RegressionGate>,
    ) -> ComparisonReport<'a> {
        ComparisonReport {
            before,
            after,
            max_regression_percent: gate.map(|gate| gate.max_percent),
            regression_floor_us: gate.map(|gate| gate.floor_us),
            deltas: deltas
                .iter()
                .map(|delta| DeltaReport {
                    delta,
                    change_us: delta.change_us(),
                    percent: delta.percent(),
                    regression: gate.is_some_and(|gate| gate.is_regression(delta)),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{amd64, phases, report, with_phase, BASELINE_AMD64, KIOS_AMD64};
    use super::*;

    const FIVE_PERCENT: RegressionGate = RegressionGate {
        max_percent: 5.0,
        floor_us: DEFAULT_REGRESSION_FLOOR_US,
    };

    fn before() -> BenchReport {
        report(vec![amd64(phases(&KIOS_AMD64), phases(&BASELINE_AMD64))])
    }

    /// `before()` with the kiOS init's `phase` moved by `by_us`.
    fn kios_moved(phase: &str, by_us: i64) -> BenchReport {
        report(vec![amd64(
            with_phase(&KIOS_AMD64, phase, by_us),
            phases(&BASELINE_AMD64),
        )])
    }

    #[test]
    fn deltas_follow_boot_order_then_the_init_cost() {
        let deltas = compare(&before(), &kios_moved("first_pod_running", -2_000_000));
        let kios: Vec<&str> = deltas
            .iter()
            .filter(|delta| delta.scenario == Scenario::Kios)
            .map(|delta| delta.measure.as_str())
            .collect();
        assert_eq!(
            kios,
            [
                "pid1",
                "mounts_done",
                "runtime_exec",
                "runtime_ready",
                "kubelet_exec",
                "first_pod_running",
                "init_cost"
            ]
        );
        let first_pod = &deltas[5];
        assert_eq!(first_pod.change_us(), -2_000_000);
        assert!(
            first_pod.line().contains("-2000.0 ms  -18.1%"),
            "{}",
            first_pod.line()
        );
    }

    #[test]
    fn a_phase_slower_past_the_threshold_fails_naming_it() {
        // kubelet_exec 938.8 -> 1038.8 ms: +10.7%.
        let after = kios_moved("kubelet_exec", 100_000);
        let deltas = compare(&before(), &after);
        let error = FIVE_PERCENT.check(&deltas).unwrap_err().to_string();
        assert!(error.contains("slower by more than 5%"), "{error}");
        assert!(error.contains("amd64  kios      kubelet_exec"), "{error}");
        // The init's cost grew by the same 100 ms: past the gate too.
        assert!(
            error.contains("2 median(s)") && error.contains("init_cost"),
            "{error}"
        );
        assert!(!error.contains("first_pod_running"), "{error}");
        let ten_percent = RegressionGate {
            max_percent: 11.0,
            ..FIVE_PERCENT
        };
        let error = ten_percent.check(&deltas).unwrap_err().to_string();
        assert!(
            error.contains("1 median(s)") && error.contains("init_cost"),
            "{error}"
        );
    }

    #[test]
    fn a_phase_slower_under_the_threshold_or_faster_passes() {
        // first_pod_running 11.07 -> 11.5 s: +3.8%.
        let slower = compare(&before(), &kios_moved("first_pod_running", 426_000));
        FIVE_PERCENT.check(&slower).unwrap();
        let faster = compare(&before(), &kios_moved("first_pod_running", -3_000_000));
        FIVE_PERCENT.check(&faster).unwrap();
        let same = compare(&before(), &before());
        assert!(same.iter().all(|delta| delta.change_us() == 0));
        FIVE_PERCENT.check(&same).unwrap();
    }

    #[test]
    fn a_tiny_measure_needs_the_floor_too() {
        // The init's own cost is 1.08 ms: 0.5 ms more is +46%, and noise.
        let noise = compare(&before(), &kios_moved("runtime_exec", 500));
        let init_cost = noise
            .iter()
            .find(|delta| delta.scenario == Scenario::Kios && delta.measure == "init_cost")
            .expect("the init's cost");
        assert_eq!((init_cost.before_us, init_cost.after_us), (1_080, 1_580));
        assert!(init_cost.percent().is_some_and(|percent| percent > 40.0));
        assert!(!FIVE_PERCENT.is_regression(init_cost));
        FIVE_PERCENT.check(&noise).unwrap();

        // 1.5 ms more is past the floor: a regression.
        let real = compare(&before(), &kios_moved("runtime_exec", 1_500));
        let error = FIVE_PERCENT.check(&real).unwrap_err().to_string();
        assert!(
            error.contains("init_cost") && error.contains("1.0 ms"),
            "{error}"
        );
        let strict = RegressionGate {
            floor_us: 0,
            ..FIVE_PERCENT
        };
        assert!(strict.check(&noise).is_err());
    }

    #[test]
    fn nothing_compared_fails_the_gate() {
        let arm64_only = report(vec![]);
        let deltas = compare(&arm64_only, &before());
        assert!(deltas.is_empty());
        let error = FIVE_PERCENT.check(&deltas).unwrap_err().to_string();
        assert!(error.contains("nothing was compared"), "{error}");
    }

    #[test]
    fn the_json_comparison_marks_each_regression() {
        let deltas = compare(&before(), &kios_moved("kubelet_exec", 100_000));
        let comparison = ComparisonReport::new(
            "old.json".into(),
            "new.json".into(),
            &deltas,
            Some(FIVE_PERCENT),
        );
        let value = serde_json::to_value(&comparison).unwrap();
        assert_eq!(value["max_regression_percent"], 5.0);
        let kubelet_exec = &value["deltas"][4];
        assert_eq!(kubelet_exec["measure"], "kubelet_exec");
        assert_eq!(kubelet_exec["scenario"], "kios");
        assert_eq!(kubelet_exec["change_us"], 100_000);
        assert_eq!(kubelet_exec["regression"], true);
        assert_eq!(value["deltas"][0]["regression"], false);
    }
}
