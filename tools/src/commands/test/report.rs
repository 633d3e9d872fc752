//! The report: the test counts read from each step's output, its verdict, and the summary (table or JSON).

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

/// Test counts summed over the `test result:` lines of a step's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct TestCounts {
    pub(super) passed: u64,
    pub(super) failed: u64,
}

impl TestCounts {
    pub(super) fn sum(self, other: TestCounts) -> TestCounts {
        TestCounts {
            passed: self.passed + other.passed,
            failed: self.failed + other.failed,
        }
    }
}

/// Reads `test result: ok. 3 passed; 1 failed; 0 ignored; ...`.
pub(super) fn parse_test_result(line: &str) -> Option<TestCounts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut counts = TestCounts::default();
    for part in rest.split([';', '.']) {
        let mut words = part.split_whitespace();
        let (Some(number), Some(label)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse::<u64>() else {
            continue;
        };
        match label {
            "passed" => counts.passed = number,
            "failed" => counts.failed = number,
            _ => {}
        }
    }
    Some(counts)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Verdict {
    Ok,
    Failed,
    /// Not run because something it needs is missing; fails the run.
    Skipped,
}

#[derive(Debug, Serialize)]
pub(super) struct StepReport {
    pub(super) name: &'static str,
    pub(super) seconds: f64,
    #[serde(flatten)]
    pub(super) counts: TestCounts,
    pub(super) verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<String>,
}

impl StepReport {
    /// A row for the work before the steps (host packages, the build).
    pub(super) fn setup(name: &'static str, duration: Duration, outcome: Result<()>) -> StepReport {
        let reason = outcome.err().map(|error| format!("{error:#}"));
        StepReport {
            name,
            seconds: duration.as_secs_f64(),
            counts: TestCounts::default(),
            verdict: if reason.is_some() {
                Verdict::Failed
            } else {
                Verdict::Ok
            },
            reason,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Summary {
    pub(super) steps: Vec<StepReport>,
    seconds: f64,
    passed: u64,
    failed: u64,
}

impl Summary {
    pub(super) fn new(steps: Vec<StepReport>, duration: Duration) -> Summary {
        let counts = steps
            .iter()
            .map(|step| step.counts)
            .fold(TestCounts::default(), TestCounts::sum);
        Summary {
            steps,
            seconds: duration.as_secs_f64(),
            passed: counts.passed,
            failed: counts.failed,
        }
    }

    /// The table, the total wall time, and the closing `N passed, M failed` line CI reads.
    pub(super) fn table(&self) -> String {
        let mut table = format!(
            "\nsummary:\n  {:<22} {:>8} {:>7} {:>7}  verdict\n",
            "step", "seconds", "passed", "failed"
        );
        for step in &self.steps {
            let verdict = match &step.reason {
                Some(reason) => format!("{}: {reason}", step.verdict.label()),
                None => step.verdict.label().to_string(),
            };
            table.push_str(&format!(
                "  {:<22} {:>8.1} {:>7} {:>7}  {verdict}\n",
                step.name, step.seconds, step.counts.passed, step.counts.failed
            ));
        }
        table.push_str(&format!(
            "total wall time: {:.1} s ({:.1} min)\n{} passed, {} failed\n",
            self.seconds,
            self.seconds / 60.0,
            self.passed,
            self.failed
        ));
        table
    }
}

impl Verdict {
    pub(super) fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Failed => "FAILED",
            Verdict::Skipped => "SKIPPED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_test_result_lines() {
        assert_eq!(
            parse_test_result(
                "test result: FAILED. 12 passed; 2 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some(TestCounts { passed: 12, failed: 2 })
        );
        assert_eq!(
            parse_test_result("test result: ok. 0 passed; 0 failed; 4 ignored; 0 measured; 0 filtered out; finished in 0.00s"),
            Some(TestCounts::default())
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
        assert_eq!(parse_test_result("test a_test_result: ok ... ok"), None);
    }

    #[test]
    fn the_json_summary_has_counts_verdicts_and_totals() {
        let summary = Summary::new(
            vec![
                StepReport {
                    name: "clippy",
                    seconds: 1.5,
                    counts: TestCounts::default(),
                    verdict: Verdict::Ok,
                    reason: None,
                },
                StepReport {
                    name: "e2e_node",
                    seconds: 60.0,
                    counts: TestCounts {
                        passed: 1,
                        failed: 1,
                    },
                    verdict: Verdict::Failed,
                    reason: Some("exited with exit status: 101".into()),
                },
            ],
            Duration::from_secs(62),
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["passed"], 1);
        assert_eq!(json["failed"], 1);
        assert_eq!(json["seconds"], 62.0);
        assert_eq!(json["steps"][1]["name"], "e2e_node");
        assert_eq!(json["steps"][1]["passed"], 1);
        assert_eq!(json["steps"][1]["verdict"], "failed");
        assert!(json["steps"][0].get("reason").is_none());
        assert!(summary.table().ends_with("\n1 passed, 1 failed\n"));
    }
}
