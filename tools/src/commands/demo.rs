//! `kios demo`: boot the stand-in test image and show what the init did.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::host_packages::{ensure_installed, QEMU_PACKAGES};
use crate::qemu::RunOptions;
use crate::standin_checks::check_standin_run;
use crate::standin_image::boot_standin_image;
use crate::timeline::Timeline;
use crate::workspace::Workspace;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Let guest time follow the host clock instead of QEMU's instruction
    /// count (faster, but the timeline no longer repeats run to run).
    #[arg(long)]
    no_icount: bool,
    /// Kill the VM if it has not powered off after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    ensure_installed(QEMU_PACKAGES)?;
    let workspace = Workspace::locate()?;
    let options = RunOptions {
        timeout: Duration::from_secs(args.timeout),
        echo: true,
    };
    let run = boot_standin_image(&workspace, !args.no_icount, options)?;
    let clock = if args.no_icount {
        "guest clock"
    } else {
        "guest clock, -icount"
    };
    println!();
    println!("boot timeline ({clock}):");
    print!("{}", Timeline::from_console(&run.console).table());
    println!();
    println!(
        "QEMU exited with {} after {:.1} s of host time",
        run.status,
        run.wall_time.as_secs_f64()
    );
    let report = check_standin_run(&run);
    println!("stand-in contract checks:");
    print!("{report}");
    if !run.status.success() {
        bail!("the VM did not power off cleanly ({})", run.status);
    }
    Ok(())
}
