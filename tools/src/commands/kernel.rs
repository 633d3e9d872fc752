//! `kios kernel`: build the kiOS kernel from the fragments in `kernel/`,
//! or (`--check`, what CI runs) only verify that they resolve as committed.

use anyhow::Result;

use crate::host::arch::Arch;
use crate::host::workspace::Workspace;
use crate::kernel::build::{build_kernel, check_config, update_config};
use crate::kernel::config::resolved_config_path;

#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    #[arg(long, value_enum, default_value_t = Arch::Amd64)]
    arch: Arch,
    /// Resolve the config only: fail if an option of the fragments did not take
    /// effect or kernel/<arch>.resolved.config is out of date. Builds nothing.
    #[arg(long, conflicts_with = "config_only")]
    check: bool,
    /// Resolve the config and write kernel/<arch>.resolved.config; build nothing.
    #[arg(long)]
    config_only: bool,
}

pub fn run(args: &KernelArgs) -> Result<()> {
    let workspace = Workspace::locate()?;
    if args.check {
        check_config(&workspace, args.arch)?;
        println!(
            "ok: every option of the {} fragments took effect; {} is current",
            args.arch,
            resolved_config_path(&workspace, args.arch).display()
        );
        return Ok(());
    }
    if args.config_only {
        update_config(&workspace, args.arch)?;
        println!(
            "ok: {} is resolved from the fragments",
            resolved_config_path(&workspace, args.arch).display()
        );
        return Ok(());
    }
    let kernel = build_kernel(&workspace, args.arch)?;
    let origin = if kernel.built_now { "built" } else { "cached" };
    println!(
        "{origin}: kiOS kernel for {} from linux-source {} ({} bytes)\n{}",
        kernel.arch,
        kernel.source_version,
        kernel.bytes,
        kernel.path.display()
    );
    Ok(())
}
