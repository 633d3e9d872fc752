//! The node's power button, as a hypervisor's or a cloud's "shut down"
//! presses it: QEMU's `system_powerdown` (ACPI on q35, the GPIO power key
//! on arm64 virt). The init reads it from evdev and shuts the node down
//! like any other request: the unmodified kubelet stops the static pods
//! through its graceful node shutdown, then the init powers off.
//!
//! The button is pressed once the kubelet holds its shutdown inhibitor and
//! the DHCP pod has its lease: a running node, nothing else asking it to stop.
//!
//! Ignored by default (a VM per test): `cargo kios test` runs them.

use std::time::Duration;

use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, vm_config, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::standin_checks::{require_line, Check, CheckReport};
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{press_power_button, run_vm, LineVerdict, RunOptions};
use kios_tools::vm::timeline::kmsg_micros;

const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// The kubelet took its shutdown inhibitor from the init's logind.
const KUBELET_INHIBITS: &str = "kios: bus: :1.";
/// The DHCP static pod is running.
const LEASED: &str = "kios-dhcp: bound eth0";

fn guest_seconds(console: &Console, needle: &str) -> Option<f64> {
    let at = console.position(needle)?;
    Some(kmsg_micros(&console.lines[at].text)? as f64 / 1e6)
}

fn power_button_shuts_down(arch: Arch, kios_kernel: bool) {
    let workspace = Workspace::locate().expect("workspace");
    let kernel = if kios_kernel {
        KernelChoice::Kios
    } else {
        KernelChoice::Debian
    };
    let components = NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, kernel)
        .expect("resolving the components");
    let name = if kios_kernel { "kios" } else { "debian" };
    let out = workspace
        .output_dir()
        .expect("output dir")
        .join(format!("e2e-power-button-{arch}-{name}"));
    let image = build_node_image(&workspace, &components, &ImageOptions::default(), &out)
        .expect("building the node image");
    let monitor = out.join("monitor.sock");
    let _ = std::fs::remove_file(&monitor);
    let config = kios_tools::vm::qemu::VmConfig {
        monitor_socket: Some(monitor.clone()),
        ..vm_config(&image, true)
    };
    let options = RunOptions {
        timeout: BOOT_TIMEOUT,
        echo: true,
    };
    let (mut inhibited, mut leased, mut pressed) = (false, false, None);
    let run = run_vm(&config, options, |line| {
        inhibited |= line.text.contains(KUBELET_INHIBITS)
            && line.text.contains("holds a shutdown inhibitor");
        leased |= line.text.contains(LEASED);
        if inhibited && leased && pressed.is_none() {
            let outcome = press_power_button(&monitor);
            let failed = outcome.is_err();
            pressed = Some(outcome);
            if failed {
                return LineVerdict::Stop;
            }
        }
        LineVerdict::Continue
    })
    .expect("booting the node image");
    let console = &run.console;
    let report = CheckReport {
        checks: vec![
            Check {
                name: "the init watches the input devices",
                outcome: require_line(console, "kios: power button: watching"),
            },
            Check {
                name: "the button was pressed on a running node",
                outcome: match pressed {
                    Some(Ok(())) => Ok(()),
                    Some(Err(error)) => Err(format!("{error:#}")),
                    None => Err("the kubelet's inhibitor or the DHCP lease never showed".into()),
                },
            },
            Check {
                name: "the press asked for a shutdown",
                outcome: require_line(console, "kios: shutdown requested by power button"),
            },
            Check {
                name: "the kubelet stopped the pods and released its inhibitor",
                outcome: require_line(
                    console,
                    "kios: bus: a shutdown inhibitor was released (0 left)",
                )
                .and_then(|()| {
                    require_line(console, "kios: shutdown: clients and inhibitors done")
                }),
            },
            Check {
                name: "the init powered off",
                outcome: require_line(console, "kios: power off"),
            },
            Check {
                name: "QEMU exited 0 (powered off)",
                outcome: if run.status.success() && !run.stopped_early {
                    Ok(())
                } else {
                    Err(format!("QEMU: {} {}", run.status, run.qemu_stderr.trim()))
                },
            },
        ],
    };
    if let (Some(requested), Some(released), Some(off)) = (
        guest_seconds(console, "kios: shutdown requested by power button"),
        guest_seconds(console, "kios: bus: a shutdown inhibitor was released"),
        guest_seconds(console, "kios: power off"),
    ) {
        println!(
            "{arch} ({name} kernel): power button -> kubelet done {:.2} s, -> power off {:.2} s (guest time)",
            released - requested,
            off - requested
        );
    }
    print!("{report}");
    report
        .into_result()
        .expect("the power button shuts the node down");
}

#[test]
#[ignore = "builds the node image and boots it in QEMU: run by cargo kios test"]
fn the_acpi_power_button_shuts_the_node_down_gracefully() {
    power_button_shuts_down(Arch::Amd64, false);
}

#[test]
#[ignore = "builds (or takes from the cache) the kiOS kernel and boots QEMU: run by cargo kios test"]
fn the_acpi_power_button_with_the_kios_kernel() {
    power_button_shuts_down(Arch::Amd64, true);
}

/// virt booted with `-kernel` describes its power key as gpio-keys on
/// the PL061 in the device tree; Debian's cloud kernel has no gpio-keys
/// driver, the kiOS kernel does.
#[test]
#[ignore = "builds (or takes from the cache) the kiOS kernel and boots QEMU: run by cargo kios test"]
fn the_gpio_power_key_on_arm64_with_the_kios_kernel() {
    power_button_shuts_down(Arch::Arm64, true);
}
