//! QEMU end-to-end tests of the init with the stand-in fixture.
//!
//! Ignored by default because each boots a VM (TCG, tens of seconds);
//! `cargo kios test` runs them with `--ignored --test-threads=1`.

use std::time::Duration;

use kios_tools::components::bom::Bom;
use kios_tools::components::node::pinned_kernel;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::initramfs::{Compression, Initramfs};
use kios_tools::testing::standin_checks::{check_standin_run, require_line, standin_args};
use kios_tools::testing::standin_image::boot_standin_image;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions, VmConfig};
use kios_tools::vm::timeline::Timeline;

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn standin_boot(arch: Arch) -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    let options = RunOptions {
        timeout: BOOT_TIMEOUT,
        echo: true,
    };
    let run = boot_standin_image(&workspace, arch, true, options)?;

    println!("\nboot timeline (guest clock, -icount):");
    print!("{}", Timeline::from_console(&run.console).table());
    println!(
        "kubelet run=1 argv: {:?}",
        standin_args(&run.console, "kubelet", 1)
    );
    println!(
        "QEMU exited with {} after {:.1} s of host time",
        run.status,
        run.wall_time.as_secs_f64()
    );
    let report = check_standin_run(&run);
    print!("{report}");
    report.into_result()?;
    // The image's module list is a link to a terminal (standin_image): a
    // read would block PID 1 for good; the init refuses it and boots on.
    require_line(
        &run.console,
        "kios: /etc/kios/modules: unreadable (EINVAL (22)), no modules loaded",
    )
    .map_err(anyhow::Error::msg)
}

/// The harness itself (kernel fetch, initramfs, QEMU, console reader),
/// independent of the init: with no /bin/init (and no root= device)
/// the kernel must panic,
/// and `panic=-1` with `-no-reboot` makes QEMU exit on its own.
#[test]
#[ignore = "boots QEMU: run by cargo kios test"]
fn standin_boot_runs_supervises_and_powers_off() -> anyhow::Result<()> {
    standin_boot(Arch::Amd64)
}

/// The same contract on arm64: the aarch64 `_start`, syscalls and signal
/// handling of mini-libc-free under a real kernel (qemu-system-aarch64, virt).
#[test]
#[ignore = "boots QEMU: run by cargo kios test"]
fn standin_boot_on_arm64() -> anyhow::Result<()> {
    standin_boot(Arch::Arm64)
}

#[test]
#[ignore = "boots QEMU: run by cargo kios test"]
fn kernel_without_init_panics_and_qemu_exits() -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    let initrd = workspace.output_dir()?.join("no-init.cpio.gz");
    let mut image = Initramfs::new();
    image
        .directory("/dev", 0o755)
        .char_device("/dev/console", 0o600, 5, 1);
    image.write_stored(&initrd, Compression::Gzip)?;
    let (kernel, _) = pinned_kernel(&Bom::of(&workspace)?, Arch::Amd64)?;

    let config = VmConfig::new(Arch::Amd64, kernel, initrd);
    let options = RunOptions {
        timeout: BOOT_TIMEOUT,
        echo: false,
    };
    let run = run_vm(&config, options, |_| LineVerdict::Continue)?;

    let panic_line = run
        .console
        .texts()
        .find(|text| text.contains("Kernel panic"))
        .map(str::to_string);
    println!(
        "panic line: {panic_line:?}; QEMU exited with {} after {:.1} s",
        run.status,
        run.wall_time.as_secs_f64()
    );
    assert!(
        panic_line.is_some(),
        "no kernel panic; console tail:\n{}",
        run.console.tail(30)
    );
    assert!(!run.stopped_early);
    assert!(run.status.success(), "QEMU exited with {}", run.status);
    Ok(())
}
