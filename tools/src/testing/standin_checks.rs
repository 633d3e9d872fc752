//! What a boot of the stand-in image must show on the console.
//!
//! Every check runs and reports by name, so one failed boot tells
//! everything that went wrong, not just the first thing.

use std::fmt;

use crate::testing::standin_image::NODE_IP;
use crate::vm::console::Console;
use crate::vm::qemu::VmRun;
use crate::vm::timeline::Timeline;

/// The kubelet flags the init must compute from the stand-in image's files.
pub const EXPECTED_KUBELET_FLAGS: &[&str] = &[
    "--container-runtime=remote",
    "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
    "--config=/etc/kubernetes/kubelet-config.yaml",
    "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubeconfig",
    "--kubeconfig=/var/lib/kubelet/kubeconfig",
];

#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    /// `Err` holds why the check failed.
    pub outcome: Result<(), String>,
}

#[derive(Debug)]
pub struct CheckReport {
    pub checks: Vec<Check>,
}

impl CheckReport {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| check.outcome.is_err())
    }

    pub fn all_passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// `Ok` when every check passed; otherwise an error listing the failures.
    pub fn into_result(self) -> anyhow::Result<()> {
        if self.all_passed() {
            Ok(())
        } else {
            anyhow::bail!("{self}")
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            match &check.outcome {
                Ok(()) => writeln!(f, "  ok      {}", check.name)?,
                Err(why) => writeln!(f, "  FAILED  {}: {why}", check.name)?,
            }
        }
        Ok(())
    }
}

/// Checks a whole run: console contract plus QEMU's exit.
pub fn check_standin_run(run: &VmRun) -> CheckReport {
    let mut report = check_standin_console(&run.console);
    let exit = if run.stopped_early {
        Err("the run was stopped before QEMU exited".to_string())
    } else if run.status.success() {
        Ok(())
    } else {
        Err(format!(
            "QEMU exited with {}: {}",
            run.status,
            run.qemu_stderr.trim()
        ))
    };
    report.checks.push(Check {
        name: "VM powered off (QEMU exit status 0)",
        outcome: exit,
    });
    report
}

/// Checks the console of a stand-in boot against the init's contract.
pub fn check_standin_console(console: &Console) -> CheckReport {
    let kubelet_run1_args = standin_args(console, "kubelet", 1);
    let checks = vec![
        Check {
            name: "timeline has every phase, in order",
            outcome: check_timeline(&Timeline::from_console(console)),
        },
        Check {
            name: "kubelet run 1 got the computed flags",
            outcome: check_kubelet_flags(&kubelet_run1_args),
        },
        Check {
            name: "kubelet run 1 got only the valid node labels",
            outcome: check_node_labels(&kubelet_run1_args),
        },
        Check {
            name: "invalid node labels reported as dropped",
            outcome: check_dropped_labels(console),
        },
        Check {
            name: "kubelet restarted after exiting with status 3",
            outcome: check_kubelet_restart(console),
        },
        Check {
            name: "no init descriptor leaked into the runtime or the kubelet",
            outcome: ["containerd", "kubelet"].iter().try_for_each(|name| {
                let prefix = format!("kios-standin: {name} run=1 fds=");
                let line = console.messages(&prefix).next().map(str::to_owned);
                match line {
                    Some(line) if line.ends_with("fds=0,1,2") => Ok(()),
                    Some(line) => Err(format!("expected only 0,1,2 open: {line}")),
                    None => Err(format!("no `{prefix}` line")),
                }
            }),
        },
        Check {
            name: "a non-root system-socket client is refused",
            outcome: require_line(
                console,
                "kios-standin: non-root client of /run/system.sock refused",
            ),
        },
        Check {
            name: "a non-root D-Bus client is refused",
            outcome: require_line(
                console,
                "kios-standin: non-root client of /var/run/dbus/system_bus_socket refused",
            ),
        },
        Check {
            name: "garbage on the system socket drops that client, with one kmsg line",
            outcome: check_one_unknown_command(console).and_then(|()| {
                require_line(
                    console,
                    "kios-standin: system socket garbage: dropped by the init",
                )
            }),
        },
        Check {
            name: "garbage on the D-Bus socket closes that connection only",
            outcome: require_line(console, "kios: bus: closed :1.").and_then(|()| {
                require_line(console, "kios-standin: bus garbage: closed by the init")
            }),
        },
        Check {
            name:
                "the kubelet's logind conversation gets an inhibitor and the kubelet's grace period",
            outcome: require_line(
                console,
                "kios-standin: kubelet took a shutdown inhibitor; InhibitDelayMaxUSec=3000000",
            ),
        },
        Check {
            name: "kubelet received the shutdown event",
            outcome: require_line(console, "kios-standin: kubelet got event 0x01"),
        },
        Check {
            name: "kubelet received PrepareForShutdown on the bus",
            outcome: require_line(console, "kios-standin: kubelet got PrepareForShutdown"),
        },
        Check {
            name: "a kubelet that ignores the request holds the shutdown for the grace period only",
            outcome: check_shutdown_bound(console),
        },
        Check {
            name: "init powered off",
            outcome: require_line(console, "kios: power off"),
        },
        Check {
            name: "no kernel panic",
            outcome: match console.texts().find(|text| text.contains("Kernel panic")) {
                Some(line) => Err(line.to_string()),
                None => Ok(()),
            },
        },
    ];
    CheckReport { checks }
}

/// The argv a stand-in printed on its `run`-th start, in index order.
pub fn standin_args(console: &Console, name: &str, run: u32) -> Vec<String> {
    let marker = format!("kios-standin: {name} run={run} arg[");
    let mut indexed: Vec<(usize, String)> = console
        .messages(&marker)
        .filter_map(|message| {
            let rest = &message[marker.len()..];
            let (index, value) = rest.split_once("]=")?;
            Some((index.parse().ok()?, value.to_string()))
        })
        .collect();
    indexed.sort_by_key(|(index, _)| *index);
    indexed.into_iter().map(|(_, value)| value).collect()
}

pub fn check_timeline(timeline: &Timeline) -> Result<(), String> {
    let missing = timeline.missing();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|phase| phase.name()).collect();
        return Err(format!("missing phases: {}", names.join(", ")));
    }
    let backwards = timeline.out_of_order();
    if !backwards.is_empty() {
        let pairs: Vec<String> = backwards
            .iter()
            .map(|(before, after)| format!("{after} before {before}"))
            .collect();
        return Err(format!("times go backwards: {}", pairs.join(", ")));
    }
    Ok(())
}

fn check_kubelet_flags(args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        return Err("no `kios-standin: kubelet run=1 arg[..]` lines".to_string());
    }
    let node_ip_flag = format!("--node-ip={NODE_IP}");
    let missing: Vec<&str> = EXPECTED_KUBELET_FLAGS
        .iter()
        .copied()
        .chain([node_ip_flag.as_str()])
        .filter(|flag| !args.iter().any(|arg| arg == flag))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {} in argv {args:?}", missing.join(" ")))
    }
}

fn check_node_labels(args: &[String]) -> Result<(), String> {
    let labels = args
        .iter()
        .find_map(|arg| arg.strip_prefix("--node-labels="))
        .ok_or_else(|| format!("no --node-labels= in argv {args:?}"))?;
    let wanted = ["kios.dev/role=standin", "tier=node"];
    let unwanted = ["bad label", "-bad"];
    let lacking: Vec<&str> = wanted.into_iter().filter(|l| !labels.contains(l)).collect();
    let leaked: Vec<&str> = unwanted
        .into_iter()
        .filter(|l| labels.contains(l))
        .collect();
    if lacking.is_empty() && leaked.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "--node-labels={labels}: lacks {lacking:?}, has invalid {leaked:?}"
        ))
    }
}

fn check_dropped_labels(console: &Console) -> Result<(), String> {
    let dropped: Vec<&str> = console
        .messages("kios: node-labels: dropped invalid label ")
        .collect();
    let missing: Vec<&str> = ["bad label=x", "-bad=x"]
        .into_iter()
        // The line names the label, then why it was dropped in parentheses.
        .filter(|label| {
            !dropped
                .iter()
                .any(|line| line.ends_with(label) || line.contains(&format!("label {label} (")))
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "no drop reported for {missing:?} (got {dropped:?})"
        ))
    }
}

fn check_kubelet_restart(console: &Console) -> Result<(), String> {
    let exited = console
        .position("kios: kubelet exited status=3")
        .ok_or("no `kios: kubelet exited status=3` line")?;
    let second_run = console
        .position("kios-standin: kubelet run=2 ")
        .ok_or("no `kios-standin: kubelet run=2` line")?;
    if second_run > exited {
        Ok(())
    } else {
        Err("kubelet run=2 started before run 1 was reported exited".to_string())
    }
}

/// The stand-in kubelet's config asks for a 3 s grace period; it keeps its
/// inhibitor and a silent client never continues, so the init must wait
/// exactly that long, then stop everything (the fixture dies at SIGTERM).
fn check_shutdown_bound(console: &Console) -> Result<(), String> {
    require_line(
        console,
        "kios: shutdown: grace period over with 1 client(s) and 1 inhibitor(s) pending",
    )?;
    let line = console
        .messages("kios: power off (")
        .next()
        .ok_or("no `kios: power off (` line")?;
    let elapsed_ms: u64 = line
        .trim_start_matches("kios: power off (")
        .split(' ')
        .next()
        .and_then(|ms| ms.parse().ok())
        .ok_or_else(|| format!("no milliseconds in `{line}`"))?;
    let bound_ms = 3000 + 2000;
    if (3000..bound_ms).contains(&elapsed_ms) {
        Ok(())
    } else {
        Err(format!(
            "power off {elapsed_ms} ms after the request, expected 3000 ms (the grace period) to {bound_ms} ms"
        ))
    }
}

/// The stand-in sends three bytes that are not commands; the first drops
/// the client, and the two queued behind it must not be reported.
fn check_one_unknown_command(console: &Console) -> Result<(), String> {
    let lines: Vec<&str> = console
        .messages("kios: system socket: unknown command")
        .collect();
    match lines.as_slice() {
        ["kios: system socket: unknown command 255, client dropped"] => Ok(()),
        _ => Err(format!(
            "expected one line for the first byte (255), got {lines:?}"
        )),
    }
}

pub fn require_line(console: &Console, needle: &str) -> Result<(), String> {
    if console.contains(needle) {
        Ok(())
    } else {
        Err(format!("no line containing `{needle}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_BOOT: &str = "\
[    1.500000] kios: timeline pid1 us=1500000
[    1.510000] kios: node-labels: dropped invalid label bad label=x (key name is not 1-63 alphanumerics, '-', '_' or '.')
[    1.510000] kios: node-labels: dropped invalid label -bad=x
[    1.520000] kios: timeline mounts_done us=1520000
[    1.530000] kios: start containerd pid=5
[    1.530000] kios: timeline runtime_exec us=1530000
[    1.540000] kios: timeline runtime_ready us=1540000
[    1.550000] kios: start kubelet pid=6
[    1.550000] kios: timeline kubelet_exec us=1550000
kios-standin: kubelet run=1 arg[0]=/bin/kubelet
kios-standin: kubelet run=1 arg[1]=--container-runtime=remote
kios-standin: kubelet run=1 arg[2]=--container-runtime-endpoint=unix:///run/containerd/containerd.sock
kios-standin: kubelet run=1 arg[3]=--config=/etc/kubernetes/kubelet-config.yaml
kios-standin: kubelet run=1 arg[4]=--node-ip=10.0.2.15
kios-standin: kubelet run=1 arg[5]=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubeconfig
kios-standin: kubelet run=1 arg[6]=--kubeconfig=/var/lib/kubelet/kubeconfig
kios-standin: kubelet run=1 arg[7]=--node-labels=kios.dev/role=standin,tier=node
kios-standin: kubelet run=1 env PATH=/bin
kios-standin: containerd run=1 fds=0,1,2
kios-standin: kubelet run=1 fds=0,1,2
[    2.560000] kios: kubelet exited status=3, restart in 100 ms
[    2.660000] kios: start kubelet pid=7
kios-standin: kubelet run=2 arg[0]=/bin/kubelet
kios-standin: non-root client of /run/system.sock refused (connect denied)
kios-standin: non-root client of /var/run/dbus/system_bus_socket refused (connect denied)
[    2.670000] kios: system socket: unknown command 255, client dropped
kios-standin: system socket garbage: dropped by the init
[    2.680000] kios: bus: closed :1.9 after a protocol violation
kios-standin: bus garbage: closed by the init after 37 bytes of answers
[    2.690000] kios: bus: :1.10 holds a shutdown inhibitor (1 in all)
kios-standin: kubelet took a shutdown inhibitor; InhibitDelayMaxUSec=3000000
[    2.700000] kios: shutdown requested by system socket
kios-standin: kubelet got event 0x01
kios-standin: kubelet got PrepareForShutdown and ignores it, keeping its inhibitor
[    5.700000] kios: shutdown: grace period over with 1 client(s) and 1 inhibitor(s) pending
[    5.800000] kios: power off (3100 ms after the shutdown request)
";

    #[test]
    fn bytes_reported_after_their_client_was_dropped_fail_the_garbage_check() {
        let console = GOOD_BOOT.replace(
            "[    2.670000] kios: system socket: unknown command 255, client dropped\n",
            "[    2.670000] kios: system socket: unknown command 255, client dropped\n\
             [    2.670000] kios: system socket: unknown command 0, client dropped\n",
        );
        assert_ne!(console, GOOD_BOOT);
        let report = check_standin_console(&Console::from_text(&console));
        let failed: Vec<&str> = report.failures().map(|check| check.name).collect();
        assert_eq!(
            failed,
            ["garbage on the system socket drops that client, with one kmsg line"]
        );
    }

    #[test]
    fn a_good_boot_passes_every_check() {
        let report = check_standin_console(&Console::from_text(GOOD_BOOT));
        assert!(report.all_passed(), "{report}");
    }

    #[test]
    fn args_are_read_in_index_order() {
        let console = Console::from_text(
            "kios-standin: kubelet run=1 arg[1]=b\nkios-standin: kubelet run=1 arg[0]=a\nkios-standin: kubelet run=2 arg[0]=c\n",
        );
        assert_eq!(standin_args(&console, "kubelet", 1), ["a", "b"]);
    }

    #[test]
    fn each_broken_promise_fails_its_own_check() {
        let broken = GOOD_BOOT
            .replace(
                "kios.dev/role=standin,tier=node",
                "kios.dev/role=standin,bad label=x",
            )
            .replace(
                "[    5.800000] kios: power off (3100 ms after the shutdown request)\n",
                "[    5.800000] Kernel panic - not syncing\n",
            )
            .replace(
                "kios: timeline mounts_done us=1520000",
                "kios: timeline mounts_done us=1",
            );
        let report = check_standin_console(&Console::from_text(&broken));
        let failed: Vec<&str> = report.failures().map(|check| check.name).collect();
        assert_eq!(
            failed,
            [
                "timeline has every phase, in order",
                "kubelet run 1 got only the valid node labels",
                "a kubelet that ignores the request holds the shutdown for the grace period only",
                "init powered off",
                "no kernel panic",
            ]
        );
        let error = report.into_result().unwrap_err().to_string();
        assert!(
            error.contains("FAILED  no kernel panic: [    5.800000] Kernel panic"),
            "{error}"
        );
    }

    #[test]
    fn a_power_off_before_the_grace_period_or_long_after_fails_the_bound() {
        for (ms, passes) in [(3100, true), (2900, false), (9000, false)] {
            let console = Console::from_text(
                &GOOD_BOOT.replace("power off (3100 ms", &format!("power off ({ms} ms")),
            );
            assert_eq!(check_shutdown_bound(&console).is_ok(), passes, "{ms} ms");
        }
    }

    #[test]
    fn a_restart_must_follow_the_exit() {
        let console = Console::from_text(
            "kios-standin: kubelet run=2 arg[0]=k\nkios: kubelet exited status=3, restart in 1 ms\n",
        );
        assert!(check_kubelet_restart(&console).is_err());
    }
}
