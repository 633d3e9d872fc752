//! Reports for the bench modules' unit tests, made from phase times like a
//! real run's.

use std::collections::BTreeMap;

use super::report::{ArchResult, BenchReport, ScenarioResult};
use super::run::Scenario;
use super::CLOCK;
use crate::host::arch::Arch;

/// The kiOS init on amd64 with the kiOS kernel (benches/results/boot-2026-12-05-kios.json).
pub const KIOS_AMD64: [(&str, u64); 6] = [
    ("pid1", 731_753),
    ("mounts_done", 732_584),
    ("runtime_exec", 732_823),
    ("runtime_ready", 938_759),
    ("kubelet_exec", 938_769),
    ("first_pod_running", 11_074_157),
];

/// The shell baseline on the same boot: /proc/uptime's 10 ms ticks.
pub const BASELINE_AMD64: [(&str, u64); 6] = [
    ("pid1", 730_000),
    ("mounts_done", 1_020_000),
    ("runtime_exec", 1_020_000),
    ("runtime_ready", 1_230_000),
    ("kubelet_exec", 1_230_000),
    ("first_pod_running", 12_495_350),
];

/// One boot's phases.
pub fn phases(times: &[(&str, u64)]) -> BTreeMap<String, u64> {
    times
        .iter()
        .map(|(name, micros)| (name.to_string(), *micros))
        .collect()
}

pub fn scenario(scenario: Scenario, runs: Vec<BTreeMap<String, u64>>) -> ScenarioResult {
    ScenarioResult::new(
        scenario,
        60_000_000,
        BTreeMap::from([("init".to_string(), 64_688)]),
        runs,
    )
}

/// amd64 with both scenarios, one boot each.
pub fn amd64(kios: BTreeMap<String, u64>, baseline: BTreeMap<String, u64>) -> ArchResult {
    ArchResult::new(
        Arch::Amd64,
        64_688,
        scenario(Scenario::Kios, vec![kios]),
        Some(scenario(Scenario::Baseline, vec![baseline])),
    )
}

pub fn report(arches: Vec<ArchResult>) -> BenchReport {
    BenchReport {
        date: "2026-12-06".to_string(),
        clock: CLOCK.to_string(),
        kernel: "kios".to_string(),
        runs_per_scenario: 1,
        arches,
    }
}
