//! End to end: the first-boot configuration on the EFI system partition
//! and the node's identity. A disk whose ESP holds `/kios/config/` with
//! good and bad files boots twice under UEFI firmware (no `-icount`),
//! keeping its data partition:
//!
//! - boot 1: one `kios-firstboot:` line per file taken and per file
//!   refused, a machine-id created, the node name `kios-<first 12 hex
//!   digits of it>` (the ESP's hostname is refused), which the init sets;
//! - boot 2: the ESP is not read again, the same machine-id is kept and
//!   the same name set.
//!
//! Ignored by default because it boots a VM twice; `cargo kios test` runs it.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::disk::{build_disk_image, firmware_vm_config, DiskOptions};
use kios_tools::image::node_image::{build_node_image, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::node_checks::check_probe_boot;
use kios_tools::testing::probe_pod::probe_pod_file_every_boot;
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions, VmRun};

/// Firmware reading a ~200 MB kernel image under TCG adds minutes to a boot.
const BOOT_TIMEOUT: Duration = Duration::from_secs(1500);
const FIRSTBOOT: &str = "kios-firstboot: ";

/// What goes on the ESP, and the line (lowercased: FAT may hand a name
/// back in another case) the first boot must log for each.
fn esp_config() -> Vec<(String, Vec<u8>, &'static str)> {
    let file = |path: &str, contents: &[u8], line: &'static str| {
        (path.to_string(), contents.to_vec(), line)
    };
    vec![
        file(
            "kubernetes/node-labels",
            b"kios.dev/first-boot=yes\n",
            "took kubernetes/node-labels as /etc/kubernetes/node-labels",
        ),
        file(
            "containerd/certs.d/registry.example/hosts.toml",
            b"server = \"https://registry.example\"\n",
            "took containerd/certs.d/registry.example/hosts.toml as /etc/containerd/certs.d/registry.example/hosts.toml",
        ),
        file(
            "hostname",
            b"not_a_node_name!\n",
            "refused hostname: not a dns-1123 name",
        ),
        file(
            "kubernetes/kubelet.conf",
            b"\x7fELF\x02\x01\x01\0\0\0",
            "refused kubernetes/kubelet.conf: not text (nul bytes)",
        ),
        file(
            "kubernetes/pki/ca.crt",
            b"MIIBdGhpcyBpcyBub3QgUEVN\n",
            "refused kubernetes/pki/ca.crt: not a pem certificate",
        ),
        file(
            "kubernetes/manifests/huge.yaml",
            &vec![b'#'; 70_000],
            "refused kubernetes/manifests/huge.yaml: larger than 65536 bytes",
        ),
        file(
            "notes.txt",
            b"written on a laptop\n",
            "refused notes.txt: not a file kios takes",
        ),
    ]
}

fn firstboot_lines(console: &Console) -> Vec<String> {
    console
        .messages(FIRSTBOOT)
        .map(|line| line[FIRSTBOOT.len()..].to_string())
        .collect()
}

/// The machine-id a boot's `machine-id <hex> ...` line names.
fn machine_id(lines: &[String]) -> Result<String> {
    let id = lines
        .iter()
        .find_map(|line| line.strip_prefix("machine-id "))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no `machine-id` line")?;
    ensure!(
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "machine-id {id} is not 32 lowercase hex digits"
    );
    Ok(id.to_string())
}

fn boot(config: &kios_tools::vm::qemu::VmConfig, which: &str) -> Result<VmRun> {
    let started = Instant::now();
    let run = run_vm(
        config,
        RunOptions {
            timeout: BOOT_TIMEOUT,
            echo: true,
        },
        |_| LineVerdict::Continue,
    )
    .with_context(|| format!("{which} boot"))?;
    eprintln!(
        "{which} boot: QEMU ran {:.1} s (host clock {:.1} s)",
        run.wall_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    check_probe_boot(&run)
        .into_result()
        .with_context(|| format!("{which} boot"))?;
    Ok(run)
}

#[test]
#[ignore = "builds a disk with a first-boot configuration and boots it twice under OVMF: run by cargo kios test"]
fn the_esp_configuration_is_taken_once_and_the_identity_kept() -> Result<()> {
    let arch = Arch::Amd64;
    let workspace = Workspace::locate()?;
    let out = workspace.output_dir()?.join("e2e-first-boot");
    let components =
        NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, KernelChoice::Debian)?;
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            extra_files: vec![probe_pod_file_every_boot()],
            ..ImageOptions::default()
        },
        &out,
    )?;
    let config = esp_config();
    let options = DiskOptions {
        esp_config: config
            .iter()
            .map(|(path, contents, _)| (path.clone(), contents.clone()))
            .collect(),
        ..DiskOptions::default()
    };
    let disk = build_disk_image(&components.bom, &image, &options, &out)?;
    // No -icount: the guest clock follows the host's, as on a machine.
    let vm = firmware_vm_config(&disk, false);

    let first = boot(&vm, "first")?;
    let lines = firstboot_lines(&first.console);
    let lowered: Vec<String> = lines.iter().map(|line| line.to_lowercase()).collect();
    for (path, _, expected) in &config {
        let matching = lowered
            .iter()
            .filter(|line| line.starts_with(expected))
            .count();
        ensure!(
            matching == 1,
            "{path}: {matching} lines starting `{expected}` (one expected); the first boot said:\n{}",
            lines.join("\n")
        );
    }
    let per_file = lowered
        .iter()
        .filter(|line| line.starts_with("took ") || line.starts_with("refused "))
        .count();
    ensure!(
        per_file == config.len(),
        "{per_file} took/refused lines for {} files:\n{}",
        config.len(),
        lines.join("\n")
    );
    ensure!(
        lines
            .iter()
            .any(|line| line.contains("2 file(s) taken, 5 refused")),
        "no summary of 2 taken and 5 refused:\n{}",
        lines.join("\n")
    );
    let id = machine_id(&lines)?;
    let name = format!("kios-{}", &id[..12]);
    ensure!(
        lines
            .iter()
            .any(|line| line.starts_with(&format!("machine-id {id} created "))),
        "the first boot did not create the machine-id:\n{}",
        lines.join("\n")
    );
    ensure!(
        lines.contains(&format!(
            "hostname {name} derived from the machine-id, in /etc/hostname"
        )),
        "no derived hostname {name}:\n{}",
        lines.join("\n")
    );
    let init_hostname = format!("kios: hostname {name}");
    ensure!(
        first.console.contains(&init_hostname),
        "the init did not set the derived name (`{init_hostname}`)"
    );

    let second = boot(&vm, "second")?;
    let again = firstboot_lines(&second.console);
    if let Some(line) = again
        .iter()
        .find(|line| line.starts_with("took ") || line.starts_with("refused "))
    {
        bail!("the second boot read the ESP again: {line}");
    }
    ensure!(
        again.iter().any(|line| line.starts_with(
            "first-boot configuration: taken on an earlier boot (/etc/kios/first-boot-done)"
        )),
        "the second boot did not say it skipped the ESP:\n{}",
        again.join("\n")
    );
    ensure!(
        again.contains(&format!("machine-id {id} kept from /etc/machine-id")),
        "the second boot's machine-id is not the first's ({id}):\n{}",
        again.join("\n")
    );
    ensure!(
        !again.iter().any(|line| line.starts_with("hostname ")),
        "the second boot derived a name again"
    );
    ensure!(
        second.console.contains(&init_hostname),
        "the second boot's name is not {name}"
    );
    eprintln!("machine-id {id}, node name {name}: kept across the reboot");
    Ok(())
}
