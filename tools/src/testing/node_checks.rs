//! What every boot of a node image with the probe pod must show: the
//! checks the node tests share (each test adds its own on top).

use crate::testing::standin_checks::{check_timeline, require_line, Check, CheckReport};
use crate::vm::qemu::VmRun;
use crate::vm::timeline::{Timeline, FIRST_POD_MARKER};

/// The timeline, the probe pod running, and a clean power-off.
pub fn check_probe_boot(run: &VmRun) -> CheckReport {
    let console = &run.console;
    let checks = vec![
        Check {
            name: "timeline has every phase, in order",
            outcome: check_timeline(&Timeline::from_console(console)),
        },
        Check {
            name: "the probe pod runs",
            outcome: require_line(console, FIRST_POD_MARKER),
        },
        Check {
            name: "the init powered off",
            outcome: require_line(console, "kios: power off"),
        },
        Check {
            name: "no kernel panic",
            outcome: if console.contains("Kernel panic") {
                Err("kernel panic".into())
            } else {
                Ok(())
            },
        },
        Check {
            name: "QEMU exited 0 (powered off)",
            outcome: if run.status.success() {
                Ok(())
            } else {
                Err(run.status.to_string())
            },
        },
    ];
    CheckReport { checks }
}
