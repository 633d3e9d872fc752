//! `kios demo`: build the default amd64 node image, boot it in QEMU with
//! the probe pod as its static pod, and show the boot timeline and what
//! the pod printed; the pod then shuts the node down.

use anyhow::Result;

use crate::commands::boot::{boot_node, BootArgs, NodeBoot};
use crate::vm::timeline::Timeline;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    boot: BootArgs,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let NodeBoot { run, clock } = boot_node(&args.boot, true)?;
    println!("\nboot timeline ({clock}):");
    print!("{}", Timeline::from_console(&run.console).table());
    println!("\nwhat the static pod printed:");
    for line in run.console.messages("kios-probe: ") {
        println!("  {line}");
    }
    println!(
        "\nQEMU exited with {} after {:.1} s of host time",
        run.status,
        run.wall_time.as_secs_f64()
    );
    anyhow::ensure!(
        run.status.success(),
        "the VM did not power off cleanly ({})",
        run.status
    );
    Ok(())
}
