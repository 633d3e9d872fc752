//! One benchmark boot: which init it ran and the phases it reached.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::baseline::BASELINE_MARKER;
use super::PHASES;
use crate::vm::qemu::VmRun;
use crate::vm::timeline::{Phase, Timeline};

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
