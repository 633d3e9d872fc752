//! The boot benchmark's statistics, ratios, targets, recorded JSON and
//! comparison (pure data), and one boot of the shell-script baseline
//! (a BENCHMARK FIXTURE) so it keeps working.

use std::collections::BTreeMap;
use std::time::Duration;

use kios_tools::bench::baseline::baseline_init;
use kios_tools::bench::{
    check_run, civil_date, compare, init_cost_us, latest_result, record, result_paths, write_chart,
    ArchResult, BenchReport, Scenario, ScenarioResult, Spread, CLOCK,
};
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, vm_config, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::probe_pod::probe_pod_file;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions};

fn run(phases: [u64; 6]) -> BTreeMap<String, u64> {
    [
        "pid1",
        "mounts_done",
        "runtime_exec",
        "runtime_ready",
        "kubelet_exec",
        "first_pod_running",
    ]
    .into_iter()
    .map(String::from)
    .zip(phases)
    .collect()
}

fn scenario(scenario: Scenario, runs: Vec<BTreeMap<String, u64>>) -> ScenarioResult {
    let components = BTreeMap::from([("kernel".to_string(), 8_000_000)]);
    ScenarioResult::new(scenario, 180_000_000, components, runs)
}

fn sample_report() -> BenchReport {
    let kios = scenario(
        Scenario::Kios,
        vec![
            run([
                1_500_000, 1_510_000, 1_520_000, 2_000_000, 2_001_000, 12_000_000,
            ]),
            run([
                1_500_000, 1_512_000, 1_522_000, 2_100_000, 2_101_000, 13_000_000,
            ]),
            run([
                1_500_000, 1_511_000, 1_521_000, 2_050_000, 2_051_000, 11_500_000,
            ]),
        ],
    );
    let baseline = scenario(
        Scenario::Baseline,
        vec![
            run([
                1_510_000, 4_000_000, 4_400_000, 5_000_000, 5_100_000, 20_000_000,
            ]),
            run([
                1_520_000, 4_100_000, 4_500_000, 5_100_000, 5_200_000, 19_000_000,
            ]),
            run([
                1_510_000, 4_050_000, 4_450_000, 5_050_000, 5_150_000, 21_000_000,
            ]),
        ],
    );
    BenchReport {
        date: "2024-03-01".into(),
        clock: CLOCK.into(),
        kernel: "debian".into(),
        runs_per_scenario: 3,
        arches: vec![ArchResult::new(Arch::Amd64, 40_000, kios, Some(baseline))],
    }
}

#[test]
fn spread_takes_min_median_max_and_averages_an_even_middle() {
    assert_eq!(
        Spread::of(&[30, 10, 20]),
        Some(Spread {
            min: 10,
            median: 20,
            max: 30
        })
    );
    assert_eq!(Spread::of(&[40, 10, 20, 30]).map(|s| s.median), Some(25));
    assert_eq!(
        Spread::of(&[7]).map(|s| (s.min, s.median, s.max)),
        Some((7, 7, 7))
    );
    assert_eq!(Spread::of(&[]), None);
}

#[test]
fn init_cost_is_the_two_stretches_the_init_owns() {
    let phases = run([1_000, 2_000, 3_000, 10_000, 10_500, 50_000]);
    assert_eq!(
        init_cost_us(&phases),
        Some((3_000 - 1_000) + (10_500 - 10_000))
    );
    let mut incomplete = phases.clone();
    incomplete.remove("runtime_ready");
    assert_eq!(init_cost_us(&incomplete), None);
}

#[test]
fn ratios_and_targets_come_from_the_medians() {
    let report = sample_report();
    let arch = &report.arches[0];
    let ratios = arch.ratios.as_ref().expect("a baseline gives ratios");
    // kiOS median cost: 21_000 + 1_000 µs; baseline: 2_940_000 + 100_000 µs.
    let init_cost = ratios.init_cost.expect("init cost ratio");
    assert_eq!(init_cost, 0.0072, "22_000 / 3_040_000, to four decimals");
    assert_eq!(ratios.first_pod_running, Some(0.6));
    assert_eq!(ratios.phases["pid1"], 0.9934);
    let met: Vec<(&str, Option<bool>)> = arch
        .targets
        .iter()
        .map(|target| (target.name.as_str(), target.met))
        .collect();
    assert_eq!(
        &met[..3],
        [
            ("init's own cost, kiOS/baseline", Some(true)),
            ("first_pod_running, kiOS/baseline", Some(true)),
            ("stripped init, bytes", Some(true)),
        ]
    );
    assert_eq!(met[3].0, "first_pod_running, seconds");

    let alone = ArchResult::new(Arch::Arm64, 80_000, arch.kios.clone(), None);
    assert!(alone.ratios.is_none());
    let met: Vec<Option<bool>> = alone.targets.iter().map(|target| target.met).collect();
    assert_eq!(&met[..3], [None, None, Some(false)]);
    // kubelet_exec's target is amd64's only.
    assert!(!alone
        .targets
        .iter()
        .any(|target| target.name == "kubelet_exec, seconds"));
}

#[test]
fn json_round_trips_and_carries_no_console() {
    let report = sample_report();
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""clock":"guest clock, -icount shift=0,sleep=off""#));
    assert!(json.contains(r#""scenario":"baseline""#));
    assert!(
        json.contains(r#""first_pod_running":{"min":11500000,"median":12000000,"max":13000000}"#)
    );
    assert!(
        json.len() < 8_000,
        "a recorded run stays small: {} bytes",
        json.len()
    );
    let back: BenchReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn comparison_lists_every_median_both_runs_have() {
    let before = sample_report();
    let mut after = sample_report();
    after.arches[0].kios = scenario(
        Scenario::Kios,
        vec![run([
            1_500_000, 1_510_000, 1_520_000, 2_000_000, 2_001_000, 10_000_000,
        ])],
    );
    let deltas = compare(&before, &after);
    // Six phases and the init's cost, for both scenarios.
    assert_eq!(deltas.len(), 14);
    let first_pod = deltas
        .iter()
        .find(|d| d.scenario == Scenario::Kios && d.measure == "first_pod_running")
        .expect("first_pod_running delta");
    assert_eq!(
        (first_pod.before_us, first_pod.after_us),
        (12_000_000, 10_000_000)
    );
    assert!(
        first_pod.line().contains("-2000.0 ms"),
        "{}",
        first_pod.line()
    );
    assert!(first_pod.line().contains("-16.7%"), "{}", first_pod.line());

    let other_arch = BenchReport {
        arches: vec![],
        ..sample_report()
    };
    assert!(compare(&other_arch, &after).is_empty());
}

#[test]
fn table_shows_phases_ratios_targets_and_sizes() {
    let table = sample_report().table();
    for expected in [
        "-icount shift=0,sleep=off",
        "first_pod_running",
        "12.000 [11.500-13.000]",
        "20.000 [19.000-21.000]",
        "0.600",
        "init's own cost (ms)",
        "22.0 [21.0-23.0]",
        "met",
        "kernel",
        "initramfs as booted",
    ] {
        assert!(table.contains(expected), "no `{expected}` in\n{table}");
    }
}

#[test]
fn records_are_found_newest_first_and_the_chart_is_svg() {
    let dir = std::env::temp_dir().join(format!("kios-bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(latest_result(&dir, "debian").unwrap().is_none());
    let mut older = sample_report();
    older.date = "2024-02-28".into();
    record(&older, &result_paths(&dir, &older.date, "debian").0).unwrap();
    let newer = sample_report();
    let (json, svg) = result_paths(&dir, &newer.date, "debian");
    record(&newer, &json).unwrap();
    // A newer run on the other kernel is not what a Debian run compares with.
    let mut other_kernel = sample_report();
    other_kernel.date = "2024-03-02".into();
    other_kernel.kernel = "kios".into();
    record(
        &other_kernel,
        &result_paths(&dir, &other_kernel.date, "kios").0,
    )
    .unwrap();
    let (path, latest) = latest_result(&dir, "debian")
        .unwrap()
        .expect("a recorded run");
    assert_eq!(path, json);
    assert_eq!(latest, newer);
    assert_eq!(
        latest_result(&dir, "kios").unwrap().unwrap().1,
        other_kernel
    );

    write_chart(&newer, &svg).unwrap();
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg"),
        "{}",
        &chart[..80.min(chart.len())]
    );
    assert!(chart.contains("first_pod_running"));
    assert!(chart.contains("shell baseline"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn civil_dates() {
    assert_eq!(civil_date(0), "1970-01-01");
    assert_eq!(civil_date(19_782), "2024-02-29");
    assert_eq!(civil_date(20_089), "2025-01-01");
}

#[test]
#[ignore = "boots the baseline image: run by cargo kios test"]
fn baseline_boots_to_a_running_pod_and_powers_off() {
    let workspace = Workspace::locate().expect("the workspace");
    let out = workspace
        .output_dir()
        .expect("the output dir")
        .join("bench-baseline-test");
    let components = NodeComponents::resolve(
        &workspace,
        Arch::Amd64,
        OciRuntime::Runc,
        KernelChoice::Debian,
    )
    .expect("resolving the components");
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            init: baseline_init(&components).expect("the baseline init"),
            extra_files: vec![probe_pod_file()],
            ..ImageOptions::default()
        },
        &out,
    )
    .expect("building the baseline image");
    let config = vm_config(&image, true);
    let options = RunOptions {
        timeout: Duration::from_secs(900),
        echo: true,
    };
    let run = run_vm(&config, options, |_| LineVerdict::Continue).expect("booting the baseline");
    // Every phase, the probe pod running, the baseline's own marker and a clean power-off.
    let phases = check_run(Scenario::Baseline, &run).unwrap_or_else(|error| panic!("{error:#}"));
    assert_eq!(phases.len(), 6, "{phases:?}");
    assert!(run
        .console
        .contains("kios-baseline: shutdown requested by signal"));
}
