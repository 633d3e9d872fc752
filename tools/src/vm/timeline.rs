//! The init's boot timeline, read off the console.
//!
//! The init prints `kios: timeline <phase> us=<µs since boot>` once per
//! phase; the marker and the phases' names are `kios_abi::timeline`'s.
//! After the kubelet's exec, the kernel's timestamps on the lines of the
//! kubelet, containerd and the probe pod split the rest of the boot into
//! sub-phases. Child output reaches the console only when it shows
//! everything (`--console all`, see `kios_abi::console`), so on a quiet
//! console the kubelet's sub-phases are simply absent.

use std::collections::BTreeMap;
use std::fmt;

use kios_abi::timeline as abi;
use serde::Serialize;

use crate::vm::console::Console;

/// Boot phases in the order the init reaches them (the `Ord` order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pid1,
    MountsDone,
    RuntimeExec,
    RuntimeReady,
    KubeletExec,
    /// The kubelet's first log line: Go has started the 50+ MB binary and
    /// parsed its flags.
    KubeletFirstLog,
    /// The kubelet's "Starting kubelet main sync loop.": its managers are
    /// up and it begins to act on pods.
    KubeletSyncLoop,
    /// containerd's first "RunPodSandbox ... returns sandbox id": a pod's
    /// sandbox (its pause container and namespaces) exists.
    PodSandboxReady,
    /// containerd's first "StartContainer ... returns successfully".
    ContainerStarted,
    /// When a pod's container first ran: the kernel's timestamp on the
    /// probe pod's first console line (not a phase the init reports).
    FirstPodRunning,
}

/// Where a sub-phase after the kubelet's exec is read: the first console
/// line from `source` (the kmsg identity the line starts with, after the
/// kernel's timestamp) containing every one of `texts`. Each happens
/// before the next, except that the first pod's own line may come before
/// containerd's word that its container started ([`Timeline::out_of_order`]).
struct ChildMarker {
    phase: Phase,
    source: &'static str,
    texts: &'static [&'static str],
}

const CHILD_MARKERS: [ChildMarker; 5] = [
    ChildMarker {
        phase: Phase::KubeletFirstLog,
        source: "kubelet: ",
        texts: &[],
    },
    ChildMarker {
        // pkg/kubelet/kubelet.go, syncLoop.
        phase: Phase::KubeletSyncLoop,
        source: "kubelet: ",
        texts: &["] Starting kubelet main sync loop."],
    },
    ChildMarker {
        phase: Phase::PodSandboxReady,
        source: "containerd: ",
        texts: &["msg=\"RunPodSandbox for ", " returns sandbox id "],
    },
    ChildMarker {
        phase: Phase::ContainerStarted,
        source: "containerd: ",
        texts: &["msg=\"StartContainer for ", " returns successfully"],
    },
    ChildMarker {
        // The probe pod writes to /dev/kmsg itself (testing::probe_pod).
        phase: Phase::FirstPodRunning,
        source: FIRST_POD_MARKER,
        texts: &[],
    },
];

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Pid1,
        Phase::MountsDone,
        Phase::RuntimeExec,
        Phase::RuntimeReady,
        Phase::KubeletExec,
    ];

    /// The name the init prints (the later phases are named here).
    pub fn name(self) -> &'static str {
        match self {
            Phase::KubeletFirstLog => "kubelet_first_log",
            Phase::KubeletSyncLoop => "kubelet_sync_loop",
            Phase::PodSandboxReady => "pod_sandbox_ready",
            Phase::ContainerStarted => "container_started",
            Phase::FirstPodRunning => "first_pod_running",
            init_phase => init_phase.reported_by_init().map_or("", abi::Phase::name),
        }
    }

    /// The init's own phase, unless this one is read from a pod.
    fn reported_by_init(self) -> Option<abi::Phase> {
        match self {
            Phase::Pid1 => Some(abi::Phase::Pid1),
            Phase::MountsDone => Some(abi::Phase::MountsDone),
            Phase::RuntimeExec => Some(abi::Phase::RuntimeExec),
            Phase::RuntimeReady => Some(abi::Phase::RuntimeReady),
            Phase::KubeletExec => Some(abi::Phase::KubeletExec),
            Phase::KubeletFirstLog
            | Phase::KubeletSyncLoop
            | Phase::PodSandboxReady
            | Phase::ContainerStarted
            | Phase::FirstPodRunning => None,
        }
    }

    fn from_name(name: &str) -> Option<Phase> {
        let init_phase = abi::Phase::from_name(name)?;
        Phase::ALL
            .into_iter()
            .find(|phase| phase.reported_by_init() == Some(init_phase))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Phase → microseconds since boot (guest clock), in phase order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Timeline {
    pub phases: BTreeMap<Phase, u64>,
}

/// The probe pod's first line (see node_image.rs).
pub const FIRST_POD_MARKER: &str = "kios-probe: running in pod";

/// The kernel's `[   12.345678]` timestamp on a console line, in µs.
pub fn kmsg_micros(line: &str) -> Option<u64> {
    let stamp = line
        .trim_start()
        .strip_prefix('[')?
        .split(']')
        .next()?
        .trim();
    let (seconds, fraction) = stamp.split_once('.')?;
    let fraction = format!("{fraction:0<6}");
    Some(seconds.parse::<u64>().ok()? * 1_000_000 + fraction.get(..6)?.parse::<u64>().ok()?)
}

impl Timeline {
    /// The first report of each known phase; other lines are ignored.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Timeline {
        let mut phases = BTreeMap::new();
        for line in lines {
            if let Some((phase, micros)) = parse_line(line) {
                phases.entry(phase).or_insert(micros);
            }
        }
        Timeline { phases }
    }

    /// The init's phases plus the sub-phases whose lines the console shows.
    pub fn from_console(console: &Console) -> Timeline {
        let mut timeline = Timeline::from_lines(console.texts());
        for marker in &CHILD_MARKERS {
            if let Some(micros) = console
                .texts()
                .find(|line| marker.matches(line))
                .and_then(kmsg_micros)
            {
                timeline.phases.insert(marker.phase, micros);
            }
        }
        timeline
    }

    pub fn missing(&self) -> Vec<Phase> {
        Phase::ALL
            .into_iter()
            .filter(|phase| !self.phases.contains_key(phase))
            .collect()
    }

    /// Pairs of consecutive phases whose times go backwards. The first
    /// pod's own line may come before containerd's "StartContainer ...
    /// returns successfully": the container's process runs (and writes to
    /// kmsg itself) before containerd answers the kubelet, and containerd's
    /// line reaches kmsg later still, relayed by the init. That pair has no
    /// order; the first pod still comes after its sandbox.
    pub fn out_of_order(&self) -> Vec<(Phase, Phase)> {
        let reported: Vec<(Phase, u64)> = self
            .phases
            .iter()
            .filter(|(phase, _)| **phase != Phase::ContainerStarted)
            .map(|(p, us)| (*p, *us))
            .collect();
        let mut backwards: Vec<(Phase, Phase)> = reported
            .windows(2)
            .filter(|pair| pair[1].1 < pair[0].1)
            .map(|pair| (pair[0].0, pair[1].0))
            .collect();
        if let (Some(sandbox), Some(started)) = (
            self.phases.get(&Phase::PodSandboxReady),
            self.phases.get(&Phase::ContainerStarted),
        ) {
            if started < sandbox {
                backwards.push((Phase::PodSandboxReady, Phase::ContainerStarted));
            }
        }
        backwards
    }

    /// A table: phase, guest seconds since boot, and the step from the previous phase.
    pub fn table(&self) -> String {
        let mut table = format!("{:<18} {:>12} {:>12}\n", "phase", "t (s)", "step (ms)");
        let mut previous: Option<u64> = None;
        for (phase, micros) in &self.phases {
            let step = previous.map_or_else(
                || "-".to_string(),
                |before| format!("{:.3}", micros.saturating_sub(before) as f64 / 1000.0),
            );
            table.push_str(&format!(
                "{:<18} {:>12.6} {:>12}\n",
                phase.name(),
                *micros as f64 / 1e6,
                step
            ));
            previous = Some(*micros);
        }
        for phase in self.missing() {
            table.push_str(&format!(
                "{:<18} {:>12} {:>12}\n",
                phase.name(),
                "missing",
                "-"
            ));
        }
        table
    }
}

impl ChildMarker {
    fn matches(&self, line: &str) -> bool {
        let Some((_, after_stamp)) = line.split_once("] ") else {
            return false;
        };
        after_stamp
            .strip_prefix(self.source)
            .is_some_and(|rest| self.texts.iter().all(|text| rest.contains(text)))
    }
}

fn parse_line(line: &str) -> Option<(Phase, u64)> {
    let rest = &line[line.find(abi::MARKER)? + abi::MARKER.len()..];
    let mut words = rest.split_whitespace();
    let phase = Phase::from_name(words.next()?)?;
    let micros = words.next()?.strip_prefix("us=")?.parse().ok()?;
    Some((phase, micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
[    0.000000] Linux version 6.1.0-56-cloud-amd64
[    1.571234] kios: timeline pid1 us=1571000
[    1.580000] kios: timeline mounts_done us=1580002
[    1.600000] kios: start containerd pid=7
[    1.600100] kios: timeline runtime_exec us=1600100
[    1.700000] kios: timeline runtime_ready us=1700000
[    1.700000] kios: timeline bogus_phase us=5
[    1.710000] kios: timeline kubelet_exec us=1710000
[    3.000000] kios: timeline kubelet_exec us=3000000
";

    #[test]
    fn parses_all_phases_in_order_keeping_the_first_report() {
        let timeline = Timeline::from_lines(SAMPLE.lines());
        let phases: Vec<(Phase, u64)> = timeline.phases.iter().map(|(p, us)| (*p, *us)).collect();
        assert_eq!(
            phases,
            [
                (Phase::Pid1, 1_571_000),
                (Phase::MountsDone, 1_580_002),
                (Phase::RuntimeExec, 1_600_100),
                (Phase::RuntimeReady, 1_700_000),
                (Phase::KubeletExec, 1_710_000),
            ]
        );
        assert!(timeline.missing().is_empty());
        assert!(timeline.out_of_order().is_empty());
    }

    #[test]
    fn reports_missing_and_backwards_phases() {
        let timeline = Timeline::from_lines([
            "kios: timeline pid1 us=900",
            "kios: timeline runtime_exec us=800",
        ]);
        assert_eq!(
            timeline.missing(),
            [Phase::MountsDone, Phase::RuntimeReady, Phase::KubeletExec]
        );
        assert_eq!(timeline.out_of_order(), [(Phase::Pid1, Phase::RuntimeExec)]);
    }

    #[test]
    fn malformed_lines_are_ignored() {
        let timeline = Timeline::from_lines([
            "kios: timeline pid1",
            "kios: timeline pid1 us=",
            "kios: timeline pid1 ms=3",
            "kios: timeline pid1 us=-4",
            "kios-standin: timeline pid1 us=4",
        ]);
        assert!(timeline.phases.is_empty());
    }

    #[test]
    fn json_is_a_phase_to_micros_object() {
        let timeline = Timeline::from_lines(SAMPLE.lines());
        let json = serde_json::to_string(&timeline).unwrap();
        assert!(
            json.starts_with(r#"{"pid1":1571000,"mounts_done":1580002"#),
            "{json}"
        );
    }

    #[test]
    fn table_lists_every_phase() {
        let table = Timeline::from_lines(["kios: timeline pid1 us=1500000"]).table();
        assert!(table.contains("pid1"));
        assert!(table.contains("1.500000"));
        assert!(table.contains("kubelet_exec"));
        assert!(table.contains("missing"));
    }
}

#[cfg(test)]
mod first_pod_tests {
    use super::*;

    #[test]
    fn the_kubelets_sub_phases_come_from_child_lines_on_the_console() {
        let console = Console::from_text(concat!(
            "[    0.900000] kios: timeline kubelet_exec us=900000\n",
            "[    1.900000] kubelet: Flag --container-runtime has been deprecated\n",
            "[    2.100000] kubelet: I1205 00:01:02.000000     99 kubelet.go:1802] Starting kubelet main sync loop.\n",
            "[    2.200000] containerd: time=\"x\" level=info msg=\"RunPodSandbox for &PodSandboxMetadata{Name:kios-probe,}\"\n",
            "[    2.400000] containerd: time=\"x\" level=info msg=\"RunPodSandbox for &PodSandboxMetadata{Name:kios-probe,} returns sandbox id \\\"ab\\\"\"\n",
            "[    2.500000] containerd: time=\"x\" level=info msg=\"StartContainer for \\\"cd\\\"\"\n",
            "[    2.700000] containerd: time=\"x\" level=info msg=\"StartContainer for \\\"cd\\\" returns successfully\"\n",
            "[    2.800000] kios-probe: running in pod kios-probe\n",
            "[    2.900000] kubelet: I1205 00:01:03.000000     99 kubelet.go:1802] Starting kubelet main sync loop.\n",
        ));
        let timeline = Timeline::from_console(&console);
        let after_exec: Vec<(Phase, u64)> = timeline
            .phases
            .iter()
            .filter(|(phase, _)| **phase > Phase::KubeletExec)
            .map(|(phase, us)| (*phase, *us))
            .collect();
        assert_eq!(
            after_exec,
            [
                (Phase::KubeletFirstLog, 1_900_000),
                (Phase::KubeletSyncLoop, 2_100_000),
                (Phase::PodSandboxReady, 2_400_000),
                (Phase::ContainerStarted, 2_700_000),
                (Phase::FirstPodRunning, 2_800_000),
            ]
        );
        assert!(timeline.out_of_order().is_empty());
        assert!(timeline.table().contains("pod_sandbox_ready"));
    }

    #[test]
    fn the_first_pod_may_log_before_containerd_says_it_started() {
        let console = Console::from_text(concat!(
            "[    0.900000] kios: timeline kubelet_exec us=900000\n",
            "[    2.400000] containerd: msg=\"RunPodSandbox for x returns sandbox id \\\"ab\\\"\"\n",
            "[    2.800000] kios-probe: running in pod kios-probe\n",
            "[    2.900000] containerd: msg=\"StartContainer for \\\"cd\\\" returns successfully\"\n",
        ));
        let timeline = Timeline::from_console(&console);
        assert!(
            timeline.out_of_order().is_empty(),
            "{:?}",
            timeline.out_of_order()
        );

        let before_sandbox = Console::from_text(concat!(
            "[    0.900000] kios: timeline kubelet_exec us=900000\n",
            "[    2.400000] kios-probe: running in pod kios-probe\n",
            "[    2.800000] containerd: msg=\"RunPodSandbox for x returns sandbox id \\\"ab\\\"\"\n",
        ));
        assert_eq!(
            Timeline::from_console(&before_sandbox).out_of_order(),
            [(Phase::PodSandboxReady, Phase::FirstPodRunning)]
        );
    }

    #[test]
    fn a_quiet_console_has_no_kubelet_sub_phases() {
        let console = Console::from_text(concat!(
            "[    0.900000] kios: timeline kubelet_exec us=900000\n",
            "[    2.800000] kios-probe: running in pod kios-probe\n",
        ));
        let phases: Vec<Phase> = Timeline::from_console(&console)
            .phases
            .into_keys()
            .collect();
        assert_eq!(phases, [Phase::KubeletExec, Phase::FirstPodRunning]);
    }

    #[test]
    fn first_pod_running_comes_from_the_probe_lines_kernel_timestamp() {
        let console = Console::from_text(
            "[    1.500000] kios: timeline pid1 us=1500000\n[   17.250001] kios-probe: running in pod kios-probe\n",
        );
        let timeline = Timeline::from_console(&console);
        assert_eq!(
            timeline.phases.get(&Phase::FirstPodRunning),
            Some(&17_250_001)
        );
        assert_eq!(kmsg_micros("[    0.5] x"), Some(500_000));
        assert_eq!(kmsg_micros("no stamp"), None);
    }
}
