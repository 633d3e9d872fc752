//! The host commands the kubelet runs, on the real node: its volume
//! plugins mount every memory-backed volume as tmpfs, and bind-mount
//! subPaths, by running `mount` (then `umount` at teardown), which kiOS
//! ships as `tools/mount`. Without them nearly every pod fails to start.
//!
//! A static pod (a test fixture) uses the volume types a static pod can:
//! a memory emptyDir, a subPath of it mounted read-only (a bind mount and
//! a read-only bind remount) and a downwardAPI volume (tmpfs). Its
//! container reports, through /dev/kmsg, how it sees each in
//! /proc/self/mountinfo, then exits; the kubelet then tears the volumes
//! down with `umount`. Projected volumes (service-account tokens) need
//! the API server even for their downwardAPI sources ("kube client is
//! not configured" on a standalone kubelet): e2e_cluster covers them.
//!
//! The same pod installs a file into /opt/cni/bin, as a CNI add-on's
//! DaemonSet does: the directory is writable (the init's overlay) with
//! the image's plugins beneath. Debian's kernel, no `-icount`.

use std::time::Duration;

use kios_tools::host::arch::Arch;
use kios_tools::image::node_image::vm_config;
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::fixture_node::node_image_with;
use kios_tools::testing::standin_checks::{Check, CheckReport};
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions};

const POD_PATH: &str = "/etc/kubernetes/manifests/kios-mounts.yaml";
const MARKER: &str = "kios-mounts: ";

/// TEST FIXTURE: a pod whose volumes the kubelet mounts with `mount`.
const POD: &str = r#"# TEST FIXTURE: reports how its volumes are mounted, then exits.
apiVersion: v1
kind: Pod
metadata:
  name: kios-mounts
  namespace: kube-system
  labels:
    app: kios-mounts
spec:
  hostNetwork: true
  restartPolicy: Never
  containers:
    - name: mounts
      image: kios.local/busybox:1
      imagePullPolicy: Never
      securityContext:
        privileged: true
      command:
        - /bin/busybox
        - sh
        - -c
        - |
          say() { echo "<5>kios-mounts: $*" > /dev/kmsg; }
          say "running"
          for dir in /memory /sub /podinfo; do
            line=$(/bin/busybox grep " $dir " /proc/self/mountinfo)
            say "mountinfo $dir ${line:-none}"
          done
          say "labels $(/bin/busybox cat /podinfo/labels | /bin/busybox tr '\n' ' ')"
          if echo probe > /cni/kios-probe && [ -x /cni/bridge ]; then say "cni installable"; else say "cni read-only"; fi
          if echo x > /sub/probe 2>/dev/null; then say "sub writable"; else say "sub read-only"; fi
          say "done"
      volumeMounts:
        - name: kmsg
          mountPath: /dev/kmsg
        - name: memory
          mountPath: /memory
        - name: memory
          mountPath: /sub
          subPath: sub
          readOnly: true
        - name: podinfo
          mountPath: /podinfo
        - name: cni
          mountPath: /cni
  volumes:
    - name: kmsg
      hostPath:
        path: /dev/kmsg
        type: CharDevice
    - name: memory
      emptyDir:
        medium: Memory
    - name: podinfo
      downwardAPI:
        items:
          - path: labels
            fieldRef:
              fieldPath: metadata.labels
    - name: cni
      hostPath:
        path: /opt/cni/bin
        type: Directory
"#;

/// The volumes the kubelet mounts as tmpfs and must unmount at teardown.
const TMPFS_VOLUMES: [&str; 2] = ["memory", "podinfo"];

/// What the kubelet logs when `mount` or `umount` fails or is missing.
const MOUNT_FAILURES: [&str; 5] = [
    "Mount failed",
    "mount failed:",
    "unmount failed:",
    "MountVolume.SetUp failed",
    "UnmountVolume.TearDown failed",
];

fn pod_line<'a>(console: &'a Console, what: &str) -> Result<&'a str, String> {
    let marker = format!("{MARKER}{what}");
    console
        .messages(MARKER)
        .find(|line| line.starts_with(&marker))
        .map(|line| line[marker.len()..].trim())
        .ok_or(format!("no `{marker}` line"))
}

/// The mount options and filesystem type of `dir` in the container's mountinfo.
fn mount_of(console: &Console, dir: &str) -> Result<(String, String), String> {
    let line = pod_line(console, &format!("mountinfo {dir} "))?;
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    let (before, after) = line
        .split_once(" - ")
        .ok_or(format!("{dir} is not a mount in the container: `{line}`"))?;
    let options = before.split_whitespace().nth(5).unwrap_or("").to_string();
    let fstype = after.split_whitespace().next().unwrap_or("").to_string();
    Ok((options, fstype))
}

fn check_tmpfs(console: &Console, dir: &str) -> Result<(), String> {
    let (_, fstype) = mount_of(console, dir)?;
    if fstype == "tmpfs" {
        Ok(())
    } else {
        Err(format!("{dir} is {fstype}, not tmpfs"))
    }
}

fn check_read_only_subpath(console: &Console) -> Result<(), String> {
    let (options, fstype) = mount_of(console, "/sub")?;
    if fstype != "tmpfs" || !options.split(',').any(|option| option == "ro") {
        return Err(format!(
            "/sub is {fstype} ({options}), not a read-only tmpfs bind"
        ));
    }
    match pod_line(console, "sub ")? {
        "read-only" => Ok(()),
        other => Err(format!("/sub is {other}")),
    }
}

fn check_no_mount_failure(console: &Console) -> Result<(), String> {
    let failures: Vec<&str> = console
        .texts()
        .filter(|text| MOUNT_FAILURES.iter().any(|failure| text.contains(failure)))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("the kubelet logged:\n{}", failures.join("\n")))
    }
}

fn torn_down(text: &str, volume: &str) -> bool {
    text.contains("UnmountVolume.TearDown succeeded")
        && text.contains(&format!("(OuterVolumeSpecName: \"{volume}\")"))
}

fn check_torn_down(console: &Console) -> Result<(), String> {
    let missing: Vec<&str> = TMPFS_VOLUMES
        .into_iter()
        .filter(|volume| !console.texts().any(|text| torn_down(text, volume)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("no teardown of {missing:?} after the pod ended"))
    }
}

#[test]
#[ignore = "builds the node image and boots it in QEMU: run by cargo kios test"]
fn the_kubelet_mounts_tmpfs_and_bind_volumes_with_the_nodes_mount() {
    let arch = Arch::Amd64;
    let (image, _) = node_image_with(
        arch,
        KernelChoice::Debian,
        &format!("host-commands-{arch}"),
        vec![(POD_PATH.to_string(), POD.as_bytes().to_vec())],
    )
    .expect("building the node image");
    // The console shows the kubelet's lines too (a -kernel boot's default).
    let config = vm_config(&image, false);
    let options = RunOptions {
        timeout: Duration::from_secs(900),
        echo: true,
    };
    // Stop once every tmpfs volume is torn down after the pod ended, or
    // two minutes after the pod's last line.
    let mut done_at = None;
    let mut seen_torn_down = [false; TMPFS_VOLUMES.len()];
    let run = run_vm(&config, options, |line| {
        if line.text.contains("kios-mounts: done") {
            done_at = Some(line.at);
        }
        for (seen, volume) in seen_torn_down.iter_mut().zip(TMPFS_VOLUMES) {
            *seen |= torn_down(&line.text, volume);
        }
        let waited_enough = done_at.is_some_and(|at| line.at > at + Duration::from_secs(120));
        if seen_torn_down.iter().all(|seen| *seen) || waited_enough {
            LineVerdict::Stop
        } else {
            LineVerdict::Continue
        }
    })
    .expect("booting the node image");
    let console = &run.console;
    eprintln!("boot and pod took {:.1} s", run.wall_time.as_secs_f64());

    let mut checks = vec![Check {
        name: "the pod with tmpfs and bind volumes runs",
        outcome: pod_line(console, "done").map(drop),
    }];
    for (name, dir) in [
        ("the memory emptyDir is a tmpfs in the container", "/memory"),
        (
            "the downwardAPI volume is a tmpfs in the container",
            "/podinfo",
        ),
    ] {
        checks.push(Check {
            name,
            outcome: check_tmpfs(console, dir),
        });
    }
    checks.extend([
        Check {
            name: "the read-only subPath is a read-only bind of the tmpfs",
            outcome: check_read_only_subpath(console),
        },
        Check {
            name: "the downwardAPI file is there",
            outcome: pod_line(console, "labels ").and_then(|labels| {
                if labels.contains("app=\"kios-mounts\"") {
                    Ok(())
                } else {
                    Err(format!("labels: {labels}"))
                }
            }),
        },
        Check {
            name: "/opt/cni/bin takes a new plugin beside the image's",
            outcome: match pod_line(console, "cni ") {
                Ok("installable") => Ok(()),
                Ok(other) => Err(format!("/opt/cni/bin is {other}")),
                Err(missing) => Err(missing),
            },
        },
        Check {
            name: "the kubelet logged no mount or unmount failure",
            outcome: check_no_mount_failure(console),
        },
        Check {
            name: "the kubelet unmounted every tmpfs volume after the pod ended",
            outcome: check_torn_down(console),
        },
    ]);
    if let Err(failures) = (CheckReport { checks }).into_result() {
        panic!("failed checks:\n{failures}");
    }
}

#[test]
fn mountinfo_lines_are_read_as_the_container_printed_them() {
    let console = Console::from_text(concat!(
        "[   12.3] kios-mounts: mountinfo /memory 812 790 0:52 / /memory rw,relatime - tmpfs tmpfs rw\n",
        "[   12.3] kios-mounts: mountinfo /sub 813 790 0:52 /sub /sub ro,relatime master:7 - tmpfs tmpfs rw\n",
        "[   12.3] kios-mounts: mountinfo /podinfo none\n",
        "[   12.4] kios-mounts: sub read-only\n",
    ));
    assert_eq!(check_tmpfs(&console, "/memory"), Ok(()));
    assert_eq!(check_read_only_subpath(&console), Ok(()));
    assert!(check_tmpfs(&console, "/podinfo").is_err());
    let failed = Console::from_text("E1206 kubelet: Mount failed: exit status 32\n");
    assert!(check_no_mount_failure(&failed).is_err());
    assert_eq!(check_no_mount_failure(&console), Ok(()));
    let torn = Console::from_text(
        "I1206 UnmountVolume.TearDown succeeded for volume \"kubernetes.io/empty-dir/u-memory\" (OuterVolumeSpecName: \"memory\") pod \"u\"",
    );
    assert!(torn_down(&torn.lines[0].text, "memory"));
    assert!(!torn_down(&torn.lines[0].text, "podinfo"));
}
