//! `kios demo`: build the default amd64 node image, boot it in QEMU with
//! the probe pod as its static pod, and show the boot timeline and what
//! the pod printed; the pod then shuts the node down. The full serial
//! console goes to a file, named before the boot.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result};

use crate::commands::boot::{boot_node, qemu_said, BootArgs, NodeBoot};
use crate::host::workspace::Workspace;
use crate::vm::timeline::Timeline;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    boot: BootArgs,
}

/// The console log's name in the tools' output directory.
const CONSOLE_LOG: &str = "demo-console.log";

pub fn run(args: &DemoArgs) -> Result<()> {
    let log_path = Workspace::locate()?.output_dir()?.join(CONSOLE_LOG);
    let mut log = BufWriter::new(
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?,
    );
    println!(
        "kios demo: the node's serial console (kernel, containerd and kubelet logs) goes to {}",
        log_path.display()
    );
    let mut log_error = None;
    let boot = boot_node(&args.boot, false, |line| {
        if log_error.is_none() {
            log_error = writeln!(log, "{}", line.text).err();
        }
    });
    let logged = match log_error {
        Some(error) => Err(error),
        None => log.flush(),
    };
    logged.with_context(|| format!("writing {}", log_path.display()))?;
    let NodeBoot { run, clock, .. } = boot?;

    println!("\nboot timeline ({clock}):");
    print!("{}", Timeline::from_console(&run.console).table());
    println!("\nwhat the static pod printed:");
    for line in run.console.messages("kios-probe: ") {
        println!("  {line}");
    }
    println!(
        "\nQEMU exited with {} after {:.1} s of host time; the whole console is in {}",
        run.status,
        run.wall_time.as_secs_f64(),
        log_path.display()
    );
    anyhow::ensure!(
        run.status.success(),
        "the VM did not power off cleanly ({}){}; see {}",
        run.status,
        qemu_said(&run),
        log_path.display()
    );
    Ok(())
}
