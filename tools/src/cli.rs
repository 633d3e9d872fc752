//! The `kios` command line.

use clap::{Parser, Subcommand};

use crate::commands;

/// kiOS host tools: build the init and images, boot them in QEMU, test and measure them.
#[derive(Debug, Parser)]
#[command(
    name = "kios",
    version,
    after_help = "Run from the repository as `cargo kios <COMMAND>`.\n\
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
    /// Build the node image (with the probe pod), boot it once and report the boot timeline.
    Boot(commands::boot::BootCommand),
    /// Boot the kiOS init and the shell-script baseline N times per arch; report phases, ratios, sizes and a chart.
    Bench(commands::bench::BenchArgs),
    /// Build the kiOS kernel from kernel/*.config (--check: only verify the resolved config).
    Kernel(commands::kernel::KernelArgs),
    /// Run every test: clippy, the unit tests, then the image and QEMU end-to-end tests, two steps at a time.
    Test(commands::test::TestArgs),
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
            Command::Test(args) => commands::test::run(&args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
