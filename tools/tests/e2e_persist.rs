//! Persistence end to end: the node's GPT disk image booted twice under
//! UEFI firmware. The first boot's pod leaves data on a hostPath of the
//! data partition, changes the node's configuration in /etc (its
//! hostname) and installs a CNI plugin into /opt/cni/bin, as an add-on's
//! DaemonSet would; it then shuts the node down through the system socket
//! with kiosctl. The second boot must find the data, boot with the changed
//! hostname, still have the plugin beside the image's, the unpacked
//! images and the kubelet's log file (read from the pod), and pull nothing.
//!
//! Ignored by default because it boots a VM twice; `cargo kios test` runs it.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::disk::{build_disk_image, firmware_vm_config, DiskOptions};
use kios_tools::image::node_image::{build_node_image, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::standin_checks::require_line;
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, ConsoleVerbosity, LineVerdict, RunOptions, VmRun};
use kios_tools::vm::timeline::Timeline;

const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const PERSIST_POD_PATH: &str = "/etc/kubernetes/manifests/kios-persist.yaml";
/// The hostname the first boot writes into /etc.
const CHANGED_HOSTNAME: &str = "kios-persisted";

/// TEST FIXTURE: a static pod that reports what survived the last boot,
/// leaves marks for the next one, then shuts the node down through the
/// system socket. IfNotPresent: an image missing after a reboot would be
/// pulled (and fail), so "pulled nothing" means the images were there.
const PERSIST_POD: &str = r#"# TEST FIXTURE: reports and leaves persistence marks, then shuts the node down.
apiVersion: v1
kind: Pod
metadata:
  name: kios-persist
  namespace: kube-system
spec:
  # Always, not Never: a static pod's UID is a hash of its manifest alone,
  # so after a reboot the kubelet finds this pod's containers from the
  # last boot in the persistent store; with Never a pod that completed
  # stays completed. With Always the dead sandbox is replaced and the
  # init container runs again, as it would for any pod after a reboot.
  restartPolicy: Always
  initContainers:
    - name: check-and-mark
      image: kios.local/busybox:1
      imagePullPolicy: IfNotPresent
      # /dev/kmsg is outside an unprivileged container's device allowlist.
      securityContext:
        privileged: true
      command:
        - /bin/busybox
        - sh
        - -c
        - |
          say() { echo "kios-persist: $*" > /dev/kmsg; }
          boot=1
          if [ -f /data/boots ]; then boot=$(( $(cat /data/boots) + 1 )); fi
          echo "$boot" > /data/boots
          say "boot $boot"
          say "data $(cat /data/marker 2>/dev/null || echo none)"
          say "etc-hostname $(cat /host-etc/hostname)"
          say "snapshots $(cd /snapshots && echo *)"
          say "kubelet-log-lines $(/bin/busybox wc -l < /host-log/kubelet.log)"
          say "cni-plugins $(cd /cni && echo *)"
          if [ "$boot" = 1 ]; then
            echo "written-by-boot-1" > /data/marker
            echo "kios-persisted" > /host-etc/hostname
            printf '#!/bin/true\n' > /cni/kios-test-plugin
            /bin/busybox chmod 755 /cni/kios-test-plugin
          fi
          /bin/busybox sync
      volumeMounts:
        - name: kmsg
          mountPath: /dev/kmsg
        - name: data
          mountPath: /data
        - name: host-etc
          mountPath: /host-etc
        - name: snapshots
          mountPath: /snapshots
          readOnly: true
        - name: host-log
          mountPath: /host-log
          readOnly: true
        - name: cni
          mountPath: /cni
  containers:
    - name: shutdown
      image: kios.local/kiosctl:1
      imagePullPolicy: IfNotPresent
      args: ["shutdown"]
      securityContext:
        privileged: true
      volumeMounts:
        - name: kmsg
          mountPath: /dev/kmsg
        - name: system-socket
          mountPath: /run/system.sock
  volumes:
    - name: kmsg
      hostPath:
        path: /dev/kmsg
        type: CharDevice
    - name: data
      hostPath:
        path: /var/lib/kios-persist-test
        type: DirectoryOrCreate
    - name: host-etc
      hostPath:
        path: /etc
        type: Directory
    - name: snapshots
      hostPath:
        path: /var/lib/containerd-snapshots/snapshots
        type: Directory
    - name: system-socket
      hostPath:
        path: /run/system.sock
        type: Socket
    - name: host-log
      hostPath:
        path: /var/log/kios
        type: Directory
    - name: cni
      hostPath:
        path: /opt/cni/bin
        type: Directory
"#;

fn persist_line<'a>(console: &'a Console, what: &str) -> Result<&'a str> {
    let marker = format!("kios-persist: {what}");
    console
        .messages("kios-persist: ")
        .filter_map(|line| line.strip_prefix(marker.as_str()))
        .find(|rest| rest.is_empty() || rest.starts_with(' '))
        .map(str::trim)
        .with_context(|| format!("no `{marker}` line"))
}

/// What every boot of the disk must show: the data partition mounted, the
/// pod run, a shutdown through the system socket and a clean power-off,
/// with no image pulled.
fn check_boot(run: &VmRun, boot: u32) -> Result<BTreeSet<String>> {
    let console = &run.console;
    print!("{}", Timeline::from_console(console).table());
    for needle in [
        "kios: data partition /dev/vda2 mounted on /var",
        "kiosctl: shutdown: sent to /run/system.sock",
        "kios: shutdown requested by system socket",
        "reboot: Power down",
    ] {
        require_line(console, needle).map_err(anyhow::Error::msg)?;
    }
    ensure!(
        !console.contains("ephemeral"),
        "boot {boot} went ephemeral:\n{}",
        console.tail(40)
    );
    ensure!(
        !console.contains("PullImage"),
        "boot {boot} pulled an image"
    );
    ensure!(run.status.success(), "QEMU exited with {}", run.status);
    ensure!(
        persist_line(console, "boot")? == boot.to_string(),
        "the pod counted boot {}, expected {boot}",
        persist_line(console, "boot")?
    );
    Ok(persist_line(console, "snapshots")?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

#[test]
#[ignore = "boots QEMU twice: run by cargo kios test"]
fn data_etc_and_images_survive_a_clean_reboot_of_the_disk() -> Result<()> {
    let workspace = Workspace::locate()?;
    let arch = Arch::Amd64;
    let out = workspace.output_dir()?.join("e2e-persist");
    let components =
        NodeComponents::resolve(&workspace, arch, OciRuntime::Runc, KernelChoice::Debian)?;
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            extra_files: vec![(PERSIST_POD_PATH.into(), PERSIST_POD.as_bytes().to_vec())],
            ..ImageOptions::default()
        },
        &out,
    )?;
    // A fresh disk: the first boot must start from an empty data partition.
    // The checks read containerd's lines on the console.
    let options = DiskOptions {
        console: ConsoleVerbosity::All,
        ..DiskOptions::default()
    };
    let disk = build_disk_image(&components.bom, &image, &options, &out)?;
    let config = firmware_vm_config(&disk, true);
    let options = || RunOptions {
        timeout: BOOT_TIMEOUT,
        echo: true,
    };

    let first = run_vm(&config, options(), |_| LineVerdict::Continue)?;
    let first_snapshots = check_boot(&first, 1).context("first boot")?;
    ensure!(
        persist_line(&first.console, "data")? == "none",
        "the fresh disk already had data"
    );
    ensure!(
        !first_snapshots.is_empty(),
        "no unpacked image on the first boot"
    );

    let second = run_vm(&config, options(), |_| LineVerdict::Continue)?;
    let second_snapshots = check_boot(&second, 2).context("second boot")?;
    let console = &second.console;
    ensure!(
        persist_line(console, "data")? == "written-by-boot-1",
        "the hostPath data did not survive: {}",
        persist_line(console, "data")?
    );
    ensure!(
        persist_line(console, "etc-hostname")? == CHANGED_HOSTNAME,
        "the /etc change did not survive"
    );
    require_line(console, &format!("kios: hostname {CHANGED_HOSTNAME}"))
        .map_err(anyhow::Error::msg)?;
    let plugins = |run: &VmRun| -> Result<Vec<String>> {
        Ok(persist_line(&run.console, "cni-plugins")?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    };
    let (before, after) = (plugins(&first)?, plugins(&second)?);
    ensure!(
        before.iter().any(|plugin| plugin == "bridge")
            && !before.iter().any(|plugin| plugin == "kios-test-plugin"),
        "the first boot's /opt/cni/bin is not the image's: {before:?}"
    );
    ensure!(
        after.iter().any(|plugin| plugin == "bridge")
            && after.iter().any(|plugin| plugin == "kios-test-plugin"),
        "the plugin installed on the first boot did not survive beside the image's: {after:?}"
    );
    // The kubelet's log file is kept on the data partition and appended to.
    let log_lines = |run: &VmRun| -> Result<u64> {
        persist_line(&run.console, "kubelet-log-lines")?
            .parse()
            .context("kubelet-log-lines is not a number")
    };
    ensure!(
        log_lines(&first)? > 0,
        "no kubelet log file on the first boot"
    );
    ensure!(
        log_lines(&second)? > log_lines(&first)?,
        "the kubelet's log file did not keep the first boot's lines"
    );
    // containerd warns at start about each image whose layers are not
    // unpacked: on the fresh disk every seeded image; after a reboot none,
    // since the first boot unpacked them onto the data partition.
    ensure!(
        first.console.contains("is not unpacked"),
        "the fresh data partition already held unpacked images"
    );
    ensure!(
        !console.contains("is not unpacked"),
        "images unpacked on the first boot were lost"
    );
    // For the record: image layers keep their snapshot ids, containers' come and go.
    println!("snapshots: first boot {first_snapshots:?}, second boot {second_snapshots:?}");
    // A clean shutdown leaves no journal to replay.
    ensure!(
        !console.contains("recovery complete") && !console.contains("orphan"),
        "the data partition was not unmounted cleanly"
    );
    println!(
        "two boots of {} ({} bytes, {} allocated): {:.1} s and {:.1} s of host time",
        disk.path.display(),
        disk.bytes,
        disk.allocated_bytes,
        first.wall_time.as_secs_f64(),
        second.wall_time.as_secs_f64()
    );
    Ok(())
}
