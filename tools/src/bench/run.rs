//! Running one scenario: building its image from the resolved components,
//! booting it N times and checking each boot ran the expected init to the
//! end, collecting the phases it reached.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::baseline::{baseline_init, BASELINE_MARKER};
use super::report::ScenarioResult;
use super::PHASES;
use crate::components::node::NodeComponents;
use crate::host::workspace::Workspace;
use crate::image::board::{board_kernel, build_card, Board, CardOptions};
use crate::image::disk::DEFAULT_DATA_BYTES;
use crate::image::initramfs::Compression;
use crate::image::node_image::{
    build_node_image, vm_config, ImageOptions, InitChoice, NodeImage, NODE_MEMORY_MIB,
};
use crate::image::slots::{build_node_release, build_slot_disk, ReleaseOptions, SlotDiskOptions};
use crate::testing::probe_pod::probe_pod_file;
use crate::vm::qemu::{run_vm, Accel, ConsoleVerbosity, LineVerdict, RunOptions, VmConfig, VmRun};
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

/// Where the kiOS scenario's root comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchRoot {
    /// The initramfs (or the erofs image inside it): the netboot and
    /// `-kernel` boot.
    #[default]
    Ram,
    /// A slot of the A/B disk: the release's kernel with its UKI's command
    /// line, the erofs root verified by dm-verity from slot A, the data
    /// partition beside it (docs/updates.md), without the firmware.
    Verity,
}

impl BenchRoot {
    pub fn name(self) -> &'static str {
        match self {
            BenchRoot::Ram => "ram",
            BenchRoot::Verity => "verity",
        }
    }
}

/// The release version the verified-root scenario builds.
const BENCH_RELEASE: &str = "bench";

/// How every scenario is booted.
pub struct Boots {
    pub runs: u16,
    /// A VM that has not powered off by then is killed.
    pub timeout: Duration,
    pub accel: Accel,
    pub console: ConsoleVerbosity,
    /// How both scenarios' initramfs is stored.
    pub compression: Compression,
    /// Where the kiOS scenario's root comes from.
    pub root: BenchRoot,
    /// Boot the kiOS scenario on this board's QEMU model from its card
    /// instead of the virt machine (`bench --board rpi4`).
    pub board: Option<Board>,
}

/// Builds one scenario's image (probe pod on) and boots it `boots.runs`
/// times; returns the image's init size and the scenario's result.
pub fn bench_scenario(
    workspace: &Workspace,
    components: &NodeComponents,
    scenario: Scenario,
    boots: &Boots,
) -> Result<(u64, ScenarioResult)> {
    let arch = components.arch;
    let out = workspace
        .output_dir()?
        .join(format!("bench-{}", scenario.name()));
    let init = match scenario {
        Scenario::Kios => InitChoice::Kios,
        Scenario::Baseline => baseline_init(components)?,
    };
    let verity = boots.root == BenchRoot::Verity && scenario == Scenario::Kios;
    let board = boots.board.filter(|_| scenario == Scenario::Kios);
    let extra_files = vec![probe_pod_file()];
    // The root in RAM, as `kios build` ships it.
    let ram_image = |extra_files| {
        build_node_image(
            workspace,
            components,
            &ImageOptions {
                init,
                extra_files,
                compression: boots.compression,
                root_image: false,
            },
            &out,
        )
    };
    let (image, config, image_bytes) = if let Some(board) = board {
        let image = ram_image(extra_files)?;
        let card = build_card(
            board,
            &components.bom,
            &image,
            board_kernel(components, board)?,
            &CardOptions {
                min_data_bytes: DEFAULT_DATA_BYTES,
                esp_config: Vec::new(),
            },
            &out,
        )?;
        let config = VmConfig {
            // Every run boots the same fresh card (its writes go to a scratch overlay).
            snapshot: true,
            ..VmConfig::board_boot(board, &card)
        };
        // The initramfs, as in the RAM scenario: the firmware files are the board's, not the node's.
        let bytes = initramfs_bytes(&image)?;
        (image, config, bytes)
    } else if verity {
        let (image, release) = build_node_release(
            workspace,
            components,
            extra_files,
            &ReleaseOptions {
                version: BENCH_RELEASE.to_string(),
                console: boots.console,
                extra_kernel_arguments: String::new(),
            },
            &out,
        )?;
        let disk = build_slot_disk(
            &components.bom,
            &release,
            None,
            &SlotDiskOptions::default(),
            &out,
        )?;
        let config = VmConfig {
            memory_mib: NODE_MEMORY_MIB,
            // The guest's writes (the data partition) go to a scratch
            // overlay: every run boots the same fresh disk.
            snapshot: true,
            ..VmConfig::slot_boot(arch, image.kernel.clone(), release.cmdline, disk.path)
        };
        (image, config, release.root_bytes)
    } else {
        let image = ram_image(extra_files)?;
        let bytes = initramfs_bytes(&image)?;
        let config = vm_config(&image, true);
        (image, config, bytes)
    };
    let config = VmConfig {
        accel: boots.accel,
        console: boots.console,
        ..config
    };
    let mut runs = Vec::new();
    for index in 1..=boots.runs {
        let phases = boot_once(&config, scenario, boots)
            .with_context(|| format!("{arch} {} run {index}", scenario.label()))?;
        eprintln!(
            "{arch} {} run {index}/{}: first_pod_running {:.3} s",
            scenario.label(),
            boots.runs,
            phases.get("first_pod_running").copied().unwrap_or(0) as f64 / 1e6
        );
        runs.push(phases);
    }
    let components = image
        .parts
        .iter()
        .map(|part| (part.component.clone(), part.bytes))
        .collect();
    Ok((
        image.init_bytes,
        ScenarioResult::new(scenario, image_bytes, components, runs),
    ))
}

fn initramfs_bytes(image: &NodeImage) -> Result<u64> {
    Ok(std::fs::metadata(&image.initrd)
        .with_context(|| format!("reading {}", image.initrd.display()))?
        .len())
}

fn boot_once(
    config: &VmConfig,
    scenario: Scenario,
    boots: &Boots,
) -> Result<BTreeMap<String, u64>> {
    let options = RunOptions {
        timeout: boots.timeout,
        echo: false,
    };
    let run = run_vm(config, options, |_| LineVerdict::Continue)?;
    check_run(scenario, &run)
}
