//! `kios fuzz`: coverage-guided fuzzing of the init's parsers and
//! protocols (the targets in `fuzz/`, see docs/fuzzing.md). Builds them on
//! the pinned stable toolchain with SanitizerCoverage and libFuzzer (no
//! nightly, no cargo-fuzz), into the cache, and runs each for a while:
//! its corpus grows under the cache, a crash is kept there and fails the
//! run with the reproducer's path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::host::cache::cache_subdir;
use crate::host::command::{output_of, render};
use crate::host::workspace::{cargo, Workspace};

/// The cache's subdirectory: the build, the grown corpora, crashes, logs.
pub const CACHE_DIR: &str = "fuzz";

/// Seconds per target of a plain `cargo kios fuzz`.
pub const DEFAULT_SECONDS: u64 = 600;
/// Seconds per target of the brief run in `cargo kios test`.
pub const BRIEF_SECONDS: u64 = 10;

/// The code generation libFuzzer needs, on stable rustc: SanitizerCoverage
/// as an LLVM pass (edge counters, the PC table, comparisons traced for
/// its value profile), and `cfg(fuzzing)` as cargo-fuzz sets it. Overflow
/// and debug assertions come from the fuzz crate's release profile.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
];

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Only this target (e.g. `cmdline`, `dbus_logind`); default every one.
    #[arg(long)]
    target: Option<String>,
    /// How long each target runs.
    #[arg(long, default_value_t = DEFAULT_SECONDS)]
    seconds: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// What one target's run came to.
#[derive(Debug, Serialize)]
pub struct TargetRun {
    pub target: String,
    pub seconds: u64,
    /// libFuzzer's `stat::number_of_executed_units`.
    pub executions: u64,
    /// The input that crashed it (under the cache), if one did.
    pub crash: Option<PathBuf>,
    /// libFuzzer's output.
    pub log: PathBuf,
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    let workspace = Workspace::locate()?;
    let mut targets = fuzz_targets(&workspace.root)?;
    if let Some(only) = &args.target {
        ensure!(
            targets.contains(only),
            "no fuzz target {only}; there are {}",
            targets.join(", ")
        );
        targets = vec![only.clone()];
    }
    let runs = fuzz(&workspace.root, &targets, args.seconds)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        print_report(&runs);
    }
    check(&runs)
}

/// Builds the targets and runs each for `seconds`, one after the other.
pub fn fuzz(root: &Path, targets: &[String], seconds: u64) -> Result<Vec<TargetRun>> {
    let dir = cache_subdir(CACHE_DIR)?;
    let bin_dir = build(root, &dir)?;
    targets
        .iter()
        .map(|target| {
            eprintln!("fuzzing {target} for {seconds} s");
            run_target(root, &dir, &bin_dir, target, seconds)
        })
        .collect()
}

/// Fails when a run crashed, naming each reproducer.
pub fn check(runs: &[TargetRun]) -> Result<()> {
    let crashes: Vec<String> = runs
        .iter()
        .filter_map(|run| {
            run.crash.as_ref().map(|crash| {
                format!(
                    "{}: {} (log {}; reproduce: run the target's binary on it)",
                    run.target,
                    crash.display(),
                    run.log.display()
                )
            })
        })
        .collect();
    if !crashes.is_empty() {
        bail!("fuzzing found crashes:\n  {}", crashes.join("\n  "));
    }
    Ok(())
}

pub fn print_report(runs: &[TargetRun]) {
    println!(
        "{:<16} {:>8} {:>14}  result",
        "target", "seconds", "executions"
    );
    for run in runs {
        let result = match &run.crash {
            Some(crash) => format!("CRASH {}", crash.display()),
            None => "ok".to_string(),
        };
        println!(
            "{:<16} {:>8} {:>14}  {result}",
            run.target, run.seconds, run.executions
        );
    }
    let total: u64 = runs.iter().map(|run| run.executions).sum();
    println!("{:<16} {:>8} {:>14}", "all", "", total);
}

/// The targets: the fuzz crate's binaries, in its manifest's order.
pub fn fuzz_targets(root: &Path) -> Result<Vec<String>> {
    let manifest = root.join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    targets_of_manifest(&text).with_context(|| format!("reading {}", manifest.display()))
}

fn targets_of_manifest(text: &str) -> Result<Vec<String>> {
    let manifest: toml::Table = toml::from_str(text)?;
    let bins = manifest
        .get("bin")
        .and_then(|bins| bins.as_array())
        .context("no [[bin]] targets")?;
    bins.iter()
        .map(|bin| {
            bin.get("name")
                .and_then(|name| name.as_str())
                .map(str::to_string)
                .context("a [[bin]] without a name")
        })
        .collect()
}

/// `cargo build --release` of the fuzz crate for the host, with the
/// coverage flags: `--target` keeps them off build scripts (which would
/// not link without libFuzzer). Returns the binaries' directory.
fn build(root: &Path, dir: &Path) -> Result<PathBuf> {
    let host = host_triple(root)?;
    let target_dir = dir.join("target");
    let mut command = cargo();
    command
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--bins",
            "--locked",
            "--manifest-path",
        ])
        .arg(root.join("fuzz/Cargo.toml"))
        .args(["--target", &host])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"))
        .env_remove("RUSTFLAGS");
    eprintln!("building the fuzz targets: {}", render(&command));
    let status = command
        .status()
        .with_context(|| format!("running {}", render(&command)))?;
    ensure!(
        status.success(),
        "building the fuzz targets failed ({status})"
    );
    Ok(target_dir.join(host).join("release"))
}

/// The host's target triple, from the rustc the pinned toolchain selects.
fn host_triple(root: &Path) -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = output_of(Command::new(rustc).current_dir(root).arg("-vV"))?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}

/// One libFuzzer run: the cache's corpus first (new inputs go there), the
/// committed seeds second (only read).
fn run_target(
    root: &Path,
    dir: &Path,
    bin_dir: &Path,
    target: &str,
    seconds: u64,
) -> Result<TargetRun> {
    let corpus = dir.join("corpus").join(target);
    let crashes = dir.join("crashes").join(target);
    let logs = dir.join("logs");
    for made in [&corpus, &crashes, &logs] {
        std::fs::create_dir_all(made).with_context(|| format!("creating {}", made.display()))?;
    }
    let log = logs.join(format!("{target}.log"));
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new(bin_dir.join(target));
    command
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        // A single input running this long is a hang: a finding too.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", crashes.display()))
        .arg(&corpus)
        .arg(root.join("fuzz/corpus").join(target))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let status = command
        .status()
        .with_context(|| format!("running {}", render(&command)))?;
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let executions = stat(&output, "stat::number_of_executed_units").unwrap_or(0);
    let crash = artifact(&output);
    let crash = match (status.success(), crash) {
        (true, None) => None,
        (_, Some(crash)) => Some(crash),
        (false, None) => bail!(
            "fuzz target {target} failed ({status}) without a reproducer; see {}",
            log.display()
        ),
    };
    Ok(TargetRun {
        target: target.to_string(),
        seconds,
        executions,
        crash,
        log,
    })
}

/// A `-print_final_stats=1` figure, e.g. `stat::number_of_executed_units: 1234`.
fn stat(output: &str, name: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.trim().parse().ok()
    })
}

/// The input libFuzzer kept: `Test unit written to PATH`.
fn artifact(output: &str) -> Option<PathBuf> {
    output.lines().find_map(|line| {
        let path = line.split_once("Test unit written to ")?.1;
        Some(PathBuf::from(path.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_final_stats_and_the_reproducer() {
        let output = "\
==123== ERROR: libFuzzer: deadly signal
MS: 2 ChangeByte-InsertByte-; base unit: 0000
artifact_prefix='/c/fuzz/crashes/cmdline/'; Test unit written to /c/fuzz/crashes/cmdline/crash-ad9a
Base64: a2lvcw==
stat::number_of_executed_units: 140663
stat::average_exec_per_sec:     35165
";
        assert_eq!(stat(output, "stat::number_of_executed_units"), Some(140663));
        assert_eq!(stat(output, "stat::peak_rss_mb"), None);
        assert_eq!(
            artifact(output),
            Some(PathBuf::from("/c/fuzz/crashes/cmdline/crash-ad9a"))
        );
        assert_eq!(artifact("Done 100 runs in 1 second(s)\n"), None);
    }

    #[test]
    fn the_targets_are_the_fuzz_crates_binaries() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let targets = fuzz_targets(&root).unwrap();
        for expected in ["cmdline", "gpt", "system_socket", "dbus_logind", "evdev"] {
            assert!(targets.iter().any(|t| t == expected), "{expected}");
        }
        for target in &targets {
            assert!(
                root.join("fuzz/corpus").join(target).is_dir(),
                "{target} has no seeds"
            );
        }
    }

    #[test]
    fn a_crash_fails_the_run_and_names_its_reproducer() {
        let run = |crash: Option<&str>| TargetRun {
            target: "gpt".into(),
            seconds: 1,
            executions: 10,
            crash: crash.map(PathBuf::from),
            log: PathBuf::from("/c/gpt.log"),
        };
        assert!(check(&[run(None)]).is_ok());
        let error = check(&[run(None), run(Some("/c/crash-1"))]).unwrap_err();
        assert!(error.to_string().contains("gpt: /c/crash-1"), "{error}");
    }
}
