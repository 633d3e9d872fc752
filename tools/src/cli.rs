//! The `kios` command line.
//!
//! `--arch` means the same everywhere: the node's CPU architecture by its
//! Debian name, [`Arch`] (`amd64`, `arm64`); commands that can handle
//! several arches in one run (size, bench, kernel) take an
//! [`ArchSelection`], which adds `all`.

use clap::{Parser, Subcommand};

use crate::commands;
use crate::host::arch::Arch;

/// kiOS host tools: build the init and images, boot them in QEMU, test and measure them.
#[derive(Debug, Parser)]
#[command(
    name = "kios",
    version,
    after_help = "Run from the repository as `cargo kios <COMMAND>`.\n\
                  --arch is amd64 or arm64 everywhere; size, bench and kernel also take `all`.\n\
                  --json prints the report as JSON on stdout (progress goes to stderr).\n\
                  Downloads are cached in $KIOS_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/kios)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the init for amd64 and arm64 and report its stripped size against the 64 KiB limit.
    Size(commands::size::SizeArgs),
    /// Build the default node image, boot it in QEMU, show the boot timeline and the static pod's output.
    Demo(commands::demo::DemoArgs),
    /// Write the bootable artifacts and DIR/manifest.json (path, size, sha256 of each).
    Build(commands::build::BuildArgs),
    /// Build the node image (with the probe pod), or take one `build` wrote, boot it once and report the boot timeline.
    Boot(commands::boot::BootCommand),
    /// Boot the kiOS init and the shell-script baseline N times per arch; report phases, ratios, sizes and a chart.
    Bench(commands::bench::BenchArgs),
    /// Build the kiOS kernel from kernel/*.config (--check: only verify the resolved config).
    Kernel(commands::kernel::KernelArgs),
    /// Start the loopback control plane, boot N kiOS nodes that join it, show them; --json/--checks: measure the checks and exit.
    Cluster(commands::cluster::ClusterArgs),
    /// Run every test: clippy, the unit tests, then the image and QEMU end-to-end tests, two steps at a time.
    Test(commands::test::TestArgs),
    /// Fuzz the init's parsers and protocols with libFuzzer (every target, or --target), --seconds each; fails on a crash.
    Fuzz(commands::fuzz::FuzzArgs),
    /// Remove the tools' cache (downloads, unpacked packages, builds) and report the bytes freed.
    Clean(commands::clean::CleanArgs),
}

/// `--arch` of a command that can handle several arches in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchSelection {
    Amd64,
    Arm64,
    /// Every arch, in [`Arch::ALL`]'s order.
    All,
}

impl ArchSelection {
    pub fn arches(self) -> Vec<Arch> {
        match self {
            ArchSelection::Amd64 => vec![Arch::Amd64],
            ArchSelection::Arm64 => vec![Arch::Arm64],
            ArchSelection::All => Arch::ALL.to_vec(),
        }
    }
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Size(args) => commands::size::run(&args),
            Command::Demo(args) => commands::demo::run(&args),
            Command::Boot(args) => commands::boot::run(&args),
            Command::Build(args) => commands::build::run(&args),
            Command::Bench(args) => commands::bench::run(&args),
            Command::Kernel(args) => commands::kernel::run(&args),
            Command::Cluster(args) => commands::cluster::run_command(&args),
            Command::Test(args) => commands::test::run(&args),
            Command::Fuzz(args) => commands::fuzz::run(&args),
            Command::Clean(args) => commands::clean::run(&args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::{CommandFactory, ValueEnum};

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(line.split_whitespace())
    }

    #[test]
    fn arch_selection_is_arch_plus_all() {
        let names = |values: Vec<Option<clap::builder::PossibleValue>>| -> Vec<String> {
            values
                .into_iter()
                .map(|value| value.unwrap().get_name().to_string())
                .collect()
        };
        let single = names(
            Arch::value_variants()
                .iter()
                .map(Arch::to_possible_value)
                .collect(),
        );
        let several = names(
            ArchSelection::value_variants()
                .iter()
                .map(ArchSelection::to_possible_value)
                .collect(),
        );
        assert_eq!(single, ["amd64", "arm64"]);
        assert_eq!(several, ["amd64", "arm64", "all"]);
        assert_eq!(ArchSelection::All.arches(), Arch::ALL);
    }

    #[test]
    fn all_arches_only_where_a_command_can_do_several() {
        for line in [
            "kios size --arch all",
            "kios bench --arch all",
            "kios kernel --arch all --check",
            "kios boot --arch arm64",
        ] {
            assert!(parse(line).is_ok(), "{line}");
        }
        for line in [
            "kios boot --arch all",
            "kios build --arch all --out d",
            "kios demo --arch all",
        ] {
            assert_eq!(
                parse(line).unwrap_err().kind(),
                ErrorKind::InvalidValue,
                "{line}"
            );
        }
    }

    #[test]
    fn an_image_directory_excludes_building_flags() {
        assert!(parse("kios boot --image out").is_ok());
        assert!(parse("kios boot --image out --disk --json --accel kvm").is_ok());
        for flag in [
            "--kernel kios",
            "--arch arm64",
            "--compression gzip",
            "--oci-runtime crun",
        ] {
            let line = format!("kios boot --image out {flag}");
            assert_eq!(
                parse(&line).unwrap_err().kind(),
                ErrorKind::ArgumentConflict,
                "{line}"
            );
        }
    }

    #[test]
    fn json_and_accel_are_where_they_belong() {
        for line in [
            "kios build --out d --json",
            "kios size --json",
            "kios boot --json",
            "kios bench --json --accel kvm",
            "kios kernel --json",
            "kios clean --json --keep-builds",
            "kios demo --accel kvm",
            "kios cluster --nodes 2 --json",
            "kios cluster --checks",
        ] {
            assert!(parse(line).is_ok(), "{line}");
        }
        assert!(parse("kios boot --accel hvf").is_err());
        assert!(parse("kios cluster --nodes 0").is_err());
    }

    #[test]
    fn kernel_check_and_config_only_conflict() {
        assert_eq!(
            parse("kios kernel --check --config-only")
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
    }
}
