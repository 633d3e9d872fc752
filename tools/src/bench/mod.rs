//! The boot benchmark: the kiOS init against a conventional shell-script
//! init (a BENCHMARK FIXTURE, never in a kiOS image) on the same kernel,
//! runtime, kubelet and image contents. `kios bench` boots both and puts
//! these parts together:
//!
//! - [`baseline`]: the fixture, given to the node image as its init;
//! - [`run`]: a scenario's image built and booted N times, each boot checked
//!   for the init it ran and the phases it reached;
//! - [`report`]: per-phase statistics, kiOS/baseline ratios, targets, the table;
//! - [`record`](mod@record): the recorded JSON in benches/results/ and the comparison
//!   with the previous record;
//! - [`chart`]: the SVG chart.

pub mod baseline;
pub mod chart;
#[cfg(test)]
mod fixtures;
pub mod record;
pub mod report;
pub mod run;

use crate::vm::timeline::Phase;

pub use self::chart::write_chart;
pub use self::record::{
    civil_date, compare, latest_result, record, result_paths, results_dir, today_utc,
};
pub use self::report::{
    init_cost_us, phases_in_boot_order, ArchResult, BenchReport, ScenarioResult, Spread,
};
pub use self::run::{check_run, Scenario};

/// How the guest clock ran in every benchmark boot.
pub const CLOCK: &str = "guest clock, -icount shift=0,sleep=off";

/// The phases every benchmark boot must reach, in boot order. A boot's
/// other timeline phases are recorded, compared and charted too, in the
/// order of their times ([`phases_in_boot_order`]).
pub const PHASES: [Phase; 6] = [
    Phase::Pid1,
    Phase::MountsDone,
    Phase::RuntimeExec,
    Phase::RuntimeReady,
    Phase::KubeletExec,
    Phase::FirstPodRunning,
];
