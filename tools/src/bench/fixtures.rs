//! Reports for the bench modules' unit tests: made from phase times like a
//! real run's, and a schema 1 record as `kios bench` wrote them in 2026-11.

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

/// `times`, with `phase` moved by `by_us`.
pub fn with_phase(times: &[(&str, u64)], phase: &str, by_us: i64) -> BTreeMap<String, u64> {
    let mut moved = phases(times);
    let at = moved.get_mut(phase).expect("a phase of the run");
    *at = at.saturating_add_signed(by_us);
    moved
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

/// The shape of benches/results/boot-2026-11-22-debian.json (schema 1:
/// no `schema_version`, no `kernel`), cut down to one arch and run.
pub const SCHEMA_1_RECORD: &str = r#"{
  "date": "2026-11-22",
  "clock": "guest clock, -icount shift=0,sleep=off",
  "runs_per_scenario": 1,
  "arches": [
    {
      "arch": "amd64",
      "init_bytes": 52176,
      "kios": {
        "scenario": "kios",
        "image_bytes": 188990956,
        "components": { "buildroot-overlay": 5869, "cni-plugins": 10005536 },
        "runs": [
          {
            "first_pod_running": 12150471,
            "kubelet_exec": 2464033,
            "mounts_done": 2214802,
            "pid1": 2213861,
            "runtime_exec": 2268562,
            "runtime_ready": 2464021
          }
        ],
        "phases_us": {
          "first_pod_running": { "min": 12150471, "median": 12150471, "max": 12150471 },
          "kubelet_exec": { "min": 2464033, "median": 2464033, "max": 2464033 },
          "mounts_done": { "min": 2214802, "median": 2214802, "max": 2214802 },
          "pid1": { "min": 2213861, "median": 2213861, "max": 2213861 },
          "runtime_exec": { "min": 2268562, "median": 2268562, "max": 2268562 },
          "runtime_ready": { "min": 2464021, "median": 2464021, "max": 2464021 }
        },
        "init_cost_us": { "min": 54713, "median": 54713, "max": 54713 }
      },
      "baseline": null,
      "ratios": null,
      "targets": [
        { "name": "stripped init, bytes", "limit": 65536.0, "measured": 52176.0, "met": true }
      ]
    }
  ]
}"#;
