//! The brief fuzzing run of `cargo kios test`: every target in `fuzz/`
//! for a few seconds under libFuzzer, from its seeds and the corpus grown
//! in the cache. Fails on any crash, naming the reproducer; prints the
//! executions per target. `cargo kios fuzz` runs them longer.
//!
//! Ignored by default: it builds libFuzzer and the targets (about a
//! minute the first time) and runs for a few minutes.

use anyhow::Result;
use kios_tools::commands::fuzz::{check, fuzz, fuzz_targets, print_report, BRIEF_SECONDS};
use kios_tools::host::workspace::Workspace;

#[test]
#[ignore = "builds libFuzzer and runs every fuzz target; run by `cargo kios test`"]
fn every_fuzz_target_runs_briefly_without_a_crash() -> Result<()> {
    let root = Workspace::locate()?.root;
    let targets = fuzz_targets(&root)?;
    let runs = fuzz(&root, &targets, BRIEF_SECONDS)?;
    print_report(&runs);
    for run in &runs {
        assert!(run.executions > 0, "{} ran no input", run.target);
    }
    check(&runs)
}
