//! The boot benchmark: the kiOS init against a conventional shell-script
//! init (a BENCHMARK FIXTURE, never in a kiOS image) on the same kernel,
//! runtime, kubelet and image contents. `kios bench` boots both and puts
//! these parts together:
//!
//! - [`baseline`]: the fixture, given to the node image as its init;
//! - [`run`]: a scenario's image built and booted N times, each boot checked
//!   for the init it ran and the phases it reached;
//! - [`report`]: per-phase statistics, kiOS/baseline ratios, targets, the table;
//! - [`provenance`]: what a run was measured with (git commit, QEMU,
//!   component versions);
//! - [`record`](mod@record): the recorded JSON in benches/results/, its name
//!   and schema, finding the previous record;
//! - [`compare`](mod@compare): per-phase deltas between two runs and the
//!   `--max-regression` gate;
//! - [`chart`]: the SVG chart.

pub mod baseline;
pub mod chart;
pub mod compare;
#[cfg(test)]
mod fixtures;
pub mod provenance;
pub mod record;
pub mod report;
pub mod run;

use crate::vm::timeline::Phase;

pub use self::chart::write_chart;
pub use self::compare::{compare, ComparisonReport, Delta, RegressionGate};
pub use self::provenance::{ArchEnvironment, GitRevision};
pub use self::record::{
    civil_date, latest_result, load_record, record, record_paths, result_paths, results_dir,
    RecordTime, RecordedRun, SCHEMA_VERSION,
};
pub use self::report::{
    init_cost_us, phases_in_boot_order, ArchResult, BenchReport, ScenarioResult, Spread,
};
pub use self::run::{check_run, Scenario};

/// How the guest clock ran in every benchmark boot.
pub const CLOCK: &str = "guest clock, -icount shift=0,sleep=off";
/// The same with a disk attached (`--root verity`): disk reads leave the
/// guest idle, and it sleeps through them in real time.
pub const DISK_CLOCK: &str = "guest clock, -icount shift=0,sleep=on";

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
