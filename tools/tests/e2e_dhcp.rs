//! The node's network comes from its DHCP static pod.
//!
//! In QEMU: the real node image, whose user-mode network has a DHCP server.
//! With `restrict=on` (every node VM: the guest reaches nothing outside)
//! that server leases an address and leaves out the router and DNS options
//! (libslirp's bootp.c), so the node gets 10.0.2.15/24 and no default route.
//! A test-fixture pod waits for the address, reports the node's addresses,
//! routes and /etc/resolv.conf from inside the node, then shuts the node
//! down through the system socket. The time-sync pod cannot reach a time
//! server there, so only chronyd's start is checked (e2e_timesync sets the
//! clock from a server).
//!
//! On the host: the pod's lease script, run by the pinned busybox in a
//! network namespace with a full lease (routers, DNS servers, a domain), for
//! what QEMU's restricted server never sends.
//!
//! Both ignored by default (a VM boot; the busybox package): `cargo kios
//! test` runs them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kios_tools::components::bom::{fetch_component, Bom};
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, vm_config, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::standin_checks::{check_timeline, require_line, Check, CheckReport};
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions};
use kios_tools::vm::timeline::{kmsg_micros, Phase, Timeline};

const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const REPORT_POD_PATH: &str = "/etc/kubernetes/manifests/kios-net-report.yaml";
const LEASE_SCRIPT: &str = "buildroot-overlay/etc/kios/udhcpc.script";

/// What QEMU's restricted DHCP server leases to the first guest.
const EXPECTED_LEASE: &str = "kios-dhcp: bound eth0 10.0.2.15/24 router none dns none lease 86400s";
const EXPECTED_ADDRESS: &str = "inet 10.0.2.15/24 scope global eth0";
/// The subnet route the kernel adds with the address.
const EXPECTED_SUBNET_ROUTE: &str = "10.0.2.0/24 dev eth0 scope link  src 10.0.2.15";
const RESOLV_CONF_HEADER: &str = "# Written by the kios-dhcp pod from the lease on eth0.";

/// TEST FIXTURE: reports the node's network once the DHCP pod configured
/// it, then shuts the node down through the system socket.
const REPORT_POD: &str = r#"# TEST FIXTURE: reports the node's network, then shuts the node down.
apiVersion: v1
kind: Pod
metadata:
  name: kios-net-report
  namespace: kube-system
spec:
  hostNetwork: true
  restartPolicy: Never
  initContainers:
    - name: report
      image: kios.local/busybox:1
      imagePullPolicy: Never
      # /dev/kmsg is outside an unprivileged container's device allowlist.
      securityContext:
        privileged: true
      command:
        - /bin/sh
        - -c
        - |
          say() { echo "kios-net: $*" > /dev/kmsg; }
          # The script writes resolv.conf after the address.
          configured() {
            case "$(ip -4 addr show dev eth0 2>/dev/null; cat /host/etc/resolv.conf)" in
              *"inet "*"kios-dhcp"*) return 0 ;;
            esac
            return 1
          }
          waited=0
          while ! configured && [ "$waited" -lt 300 ]; do
            sleep 1
            waited=$((waited + 1))
          done
          ip -4 addr show dev eth0 | while read -r line; do say "addr $line"; done
          ip route | while read -r line; do say "route $line"; done
          while read -r line; do say "resolv $line"; done < /host/etc/resolv.conf
      volumeMounts:
        - name: kmsg
          mountPath: /dev/kmsg
        - name: resolv-conf
          mountPath: /host/etc/resolv.conf
          readOnly: true
  containers:
    - name: shutdown
      image: kios.local/kiosctl:1
      imagePullPolicy: Never
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
    - name: resolv-conf
      hostPath:
        path: /etc/resolv.conf
        type: File
    - name: system-socket
      hostPath:
        path: /run/system.sock
        type: Socket
"#;

/// The kernel time (µs) of the DHCP pod's lease line.
fn lease_micros(console: &Console) -> Option<u64> {
    let position = console.position(EXPECTED_LEASE)?;
    kmsg_micros(&console.lines[position].text)
}

/// The fixture's `kios-net: <kind> ...` lines.
fn report_lines<'a>(console: &'a Console, kind: &str) -> Vec<&'a str> {
    let marker = format!("kios-net: {kind} ");
    console
        .messages("kios-net: ")
        .filter_map(|line| line.strip_prefix(marker.as_str()))
        .collect()
}

/// A line of chronyd's log, copied to the console by the time-sync pod.
fn require_timesync_line(console: &Console, needle: &str) -> Result<(), String> {
    if console
        .messages("kios-timesync: ")
        .any(|line| line.contains(needle))
    {
        Ok(())
    } else {
        Err(format!("no `kios-timesync: ` line containing `{needle}`"))
    }
}

fn require_report(console: &Console, kind: &str, needle: &str) -> Result<(), String> {
    let lines = report_lines(console, kind);
    if lines.iter().any(|line| line.contains(needle)) {
        Ok(())
    } else {
        Err(format!("no `{needle}` among the {kind} lines: {lines:?}"))
    }
}

#[test]
#[ignore = "builds the node image and boots it in QEMU: run by cargo kios test"]
fn the_dhcp_pod_gives_the_node_its_address() {
    let workspace = Workspace::locate().expect("workspace");
    let out = workspace.output_dir().expect("output dir").join("e2e-dhcp");
    let components = NodeComponents::resolve(
        &workspace,
        Arch::Amd64,
        OciRuntime::Runc,
        KernelChoice::Debian,
    )
    .expect("resolving the components");
    let image = build_node_image(
        &workspace,
        &components,
        &ImageOptions {
            extra_files: vec![(REPORT_POD_PATH.into(), REPORT_POD.as_bytes().to_vec())],
            ..ImageOptions::default()
        },
        &out,
    )
    .expect("building the node image");
    let options = RunOptions {
        timeout: BOOT_TIMEOUT,
        echo: true,
    };
    let run = run_vm(&vm_config(&image, true), options, |_| LineVerdict::Continue)
        .expect("booting the node image");
    let console = &run.console;
    let timeline = Timeline::from_console(console);
    eprintln!("{}", timeline.table());

    let report = CheckReport {
        checks: vec![
            Check {
                name: "timeline has every phase, in order",
                outcome: check_timeline(&timeline),
            },
            Check {
                name: "the DHCP pod logged its lease",
                outcome: require_line(console, EXPECTED_LEASE),
            },
            Check {
                name: "eth0 has the leased address, seen from inside the node",
                outcome: require_report(console, "addr", EXPECTED_ADDRESS),
            },
            Check {
                name: "the leased subnet is routed through eth0",
                outcome: require_report(console, "route", EXPECTED_SUBNET_ROUTE),
            },
            Check {
                name: "the DHCP pod wrote the host's /etc/resolv.conf",
                outcome: require_report(console, "resolv", RESOLV_CONF_HEADER),
            },
            Check {
                name: "the time-sync pod's chronyd started",
                outcome: require_timesync_line(console, "chronyd version 4.3 starting"),
            },
            Check {
                name: "the fixture shut the node down through the system socket",
                outcome: require_line(console, "kios: shutdown requested by system socket"),
            },
            Check {
                name: "the init powered off",
                outcome: require_line(console, "kios: power off"),
            },
            Check {
                name: "QEMU exited 0 (powered off)",
                outcome: if run.status.success() {
                    Ok(())
                } else {
                    Err(run.status.to_string())
                },
            },
            Check {
                name: "nothing was pulled",
                outcome: if console.contains("PullImage \"") {
                    Err("an image was pulled".into())
                } else {
                    Ok(())
                },
            },
        ],
    };

    if let Some(lease) = lease_micros(console) {
        for phase in [Phase::Pid1, Phase::KubeletExec] {
            if let Some(&since) = timeline.phases.get(&phase) {
                eprintln!(
                    "lease {:.3} s after {phase} (guest time)",
                    lease.saturating_sub(since) as f64 / 1e6
                );
            }
        }
    }
    eprintln!("{:.1} s of host time", run.wall_time.as_secs_f64());
    if let Err(failures) = report.into_result() {
        panic!("failed checks:\n{failures}");
    }
}

/// Runs the lease script through a lease's life in a new network
/// namespace, on a bridge named eth0 (a device without hardware, which any
/// kernel can make), and prints the interface's state after each event.
/// The route to 192.0.2.0/24 goes with the address if the address is ever
/// removed: it shows whether a renewal left the address alone.
const LEASE_SCENARIO: &str = r#"
set -e
ip link add eth0 type bridge
export interface=eth0 mask=24 lease=86400
show() {
  echo "== $1"
  ip -4 -o addr show dev eth0
  ip route
  ip link show dev eth0
  cat "$RESOLV_CONF" 2>/dev/null || true
}
sh "$SCRIPT" deconfig
show deconfig
ip=10.0.2.15 router="10.0.2.2 10.0.2.1" dns="10.0.2.3 10.0.2.4" domain=example.test \
  sh "$SCRIPT" bound
show bound
ip route add 192.0.2.0/24 via 10.0.2.2 dev eth0
ip=10.0.2.15 router=10.0.2.2 dns=10.0.2.3 sh "$SCRIPT" renew
show renew
ip=10.0.2.16 router=10.0.2.2 dns=10.0.2.3 sh "$SCRIPT" renew
show moved
"#;

/// The state printed after `event` in the scenario's output.
fn state_after<'a>(output: &'a str, event: &str) -> Result<&'a str> {
    let start = output
        .find(&format!("== {event}\n"))
        .with_context(|| format!("no state after `{event}` in:\n{output}"))?;
    let rest = &output[start + event.len() + 4..];
    Ok(&rest[..rest.find("== ").unwrap_or(rest.len())])
}

/// `dir/bin` holding `busybox` as the applets the scenario runs, the way the image has them.
fn busybox_bin(busybox: &Path, dir: &Path) -> Result<std::path::PathBuf> {
    let bin = dir.join("bin");
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for applet in ["sh", "ip", "cat"] {
        std::os::unix::fs::symlink(busybox, bin.join(applet))
            .with_context(|| format!("linking {applet} to busybox"))?;
    }
    Ok(bin)
}

#[test]
#[ignore = "fetches the pinned busybox: run by cargo kios test"]
fn the_lease_script_sets_the_default_route_and_dns_servers() -> Result<()> {
    let workspace = Workspace::locate()?;
    let bom = Bom::load(&workspace.root.join("bom.toml"))?;
    // The build host is amd64 (as for the containerd seeding tests).
    let busybox = fetch_component(&bom, "busybox", Arch::Amd64)?.join("bin/busybox");
    let dir = workspace.output_dir()?.join("dhcp-lease-script");
    let bin = busybox_bin(&busybox, &dir)?;
    let resolv_conf = dir.join("resolv.conf");
    let lease_log = dir.join("leases");
    let output = Command::new(&busybox)
        // A user namespace too, so that root is not needed.
        .args([
            "unshare",
            "--map-root-user",
            "--net",
            "sh",
            "-c",
            LEASE_SCENARIO,
        ])
        .env_clear()
        .env("PATH", &bin)
        .env("SCRIPT", workspace.root.join(LEASE_SCRIPT))
        .env("RESOLV_CONF", &resolv_conf)
        .env("LEASE_LOG", &lease_log)
        .output()
        .context("running busybox unshare")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "the scenario failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let deconfigured = state_after(&stdout, "deconfig")?;
    ensure!(
        deconfigured.contains(",UP") && !deconfigured.contains("inet "),
        "deconfig must leave eth0 up without an address:\n{deconfigured}"
    );
    let bound = state_after(&stdout, "bound")?;
    for expected in [
        "inet 10.0.2.15/24",
        "default via 10.0.2.2 dev eth0",
        "search example.test\nnameserver 10.0.2.3\nnameserver 10.0.2.4\n",
    ] {
        ensure!(
            bound.contains(expected),
            "no `{expected}` once bound:\n{bound}"
        );
    }
    let renewed = state_after(&stdout, "renew")?;
    ensure!(
        renewed.contains("192.0.2.0/24 via 10.0.2.2"),
        "a renewal of the same address removed it (and the routes through it):\n{renewed}"
    );
    let moved = state_after(&stdout, "moved")?;
    ensure!(
        moved.contains("inet 10.0.2.16/24")
            && !moved.contains("10.0.2.15")
            && moved.contains("default via 10.0.2.2 dev eth0"),
        "a renewal with a new address must replace the old one and keep the route:\n{moved}"
    );

    let leases = std::fs::read_to_string(&lease_log).context("reading the lease log")?;
    ensure!(
        leases.lines().next()
            == Some("kios-dhcp: bound eth0 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 10.0.2.4 lease 86400s"),
        "lease log:\n{leases}"
    );
    ensure!(
        leases.lines().count() == 3,
        "one line per lease event:\n{leases}"
    );
    // The last lease's servers: the renewals carried one.
    let resolv = std::fs::read_to_string(&resolv_conf).context("reading resolv.conf")?;
    ensure!(
        resolv == format!("{RESOLV_CONF_HEADER}\nnameserver 10.0.2.3\n"),
        "resolv.conf:\n{resolv}"
    );
    Ok(())
}
