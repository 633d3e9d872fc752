//! The probe pod, a TEST FIXTURE never in a shipped image: a static pod
//! that reports host facts on the console, then shuts the node down.
//! Boot tests and `kios boot` add it to an image's extra files.

/// Where the kubelet finds it: among the static pods.
pub const PROBE_POD_PATH: &str = "/etc/kubernetes/manifests/kios-probe.yaml";

/// A privileged busybox pod sharing the host's PID namespace that reports,
/// through /dev/kmsg at notice level (so a quiet console shows it too),
/// that it runs, what the host's /bin holds, which processes the host
/// runs, the host's memory and the resident memory of its three services;
/// then it asks the init for a clean shutdown with SIGTERM to PID 1.
const MANIFEST: &str = r#"# TEST FIXTURE: reports host facts on the console, then shuts the node down.
apiVersion: v1
kind: Pod
metadata:
  name: kios-probe
  namespace: kube-system
spec:
  hostNetwork: true
  hostPID: true
  restartPolicy: Never
  containers:
    - name: probe
      image: kios.local/busybox:1
      imagePullPolicy: Never
      securityContext:
        privileged: true
      command:
        - /bin/busybox
        - sh
        - -c
        - |
          say() { echo "<5>kios-probe: $*" > /dev/kmsg; }
          say "running in pod kios-probe"
          say "host-bin $(/bin/busybox ls /host/bin | /bin/busybox tr '\n' ' ')"
          procs=""
          for dir in /proc/[0-9]*; do
            exe=$(/bin/busybox readlink "$dir/exe" 2>/dev/null) && procs="$procs $exe"
          done
          say "host-procs$procs"
          say "host-memory $(/bin/busybox grep -E '^(MemTotal|MemAvailable):' /proc/meminfo | /bin/busybox tr -s ' \n' ' ')"
          for dir in /proc/[0-9]*; do
            exe=$(/bin/busybox readlink "$dir/exe" 2>/dev/null) || continue
            case "$exe" in
              /bin/init|/bin/containerd|/bin/kubelet)
                say "host-rss $exe $(/bin/busybox grep '^VmRSS:' "$dir/status" | /bin/busybox tr -s ' ' ' ')" ;;
            esac
          done
          /bin/busybox sleep 2
          say "requesting shutdown"
          /bin/busybox kill -TERM 1
          exec /bin/busybox sleep 3600
      volumeMounts:
        - name: kmsg
          mountPath: /dev/kmsg
        - name: host-bin
          mountPath: /host/bin
          readOnly: true
  volumes:
    - name: kmsg
      hostPath:
        path: /dev/kmsg
        type: CharDevice
    - name: host-bin
      hostPath:
        path: /bin
        type: Directory
"#;

/// The manifest as an image extra file (`ImageOptions::extra_files`).
pub fn probe_pod_file() -> (String, Vec<u8>) {
    (PROBE_POD_PATH.to_string(), MANIFEST.as_bytes().to_vec())
}

/// The same pod for a disk booted more than once. A static pod's UID is a
/// hash of its manifest, so after a reboot the kubelet finds the last
/// boot's container in the persistent store: with `Never` the pod stays
/// completed and never runs again; with `Always` the dead sandbox is
/// replaced and the probe runs on every boot.
pub fn probe_pod_file_every_boot() -> (String, Vec<u8>) {
    let manifest = MANIFEST.replace("restartPolicy: Never", "restartPolicy: Always");
    (PROBE_POD_PATH.to_string(), manifest.into_bytes())
}

/// What the probe saw of the host's memory, in KiB.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryReport {
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    /// Resident memory of each service, by executable.
    pub services_rss_kib: Vec<(String, u64)>,
}

impl MemoryReport {
    /// The node's memory as `kios boot` prints it: used and available, and
    /// each service's resident memory, in MiB.
    pub fn table(&self) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut table = format!(
            "memory when the first pod ran: {:.0} MiB total, {:.0} MiB used, {:.0} MiB available\n",
            mib(self.mem_total_kib),
            mib(self.mem_total_kib.saturating_sub(self.mem_available_kib)),
            mib(self.mem_available_kib)
        );
        for (exe, rss) in &self.services_rss_kib {
            table.push_str(&format!("  {exe:<16} {:>7.1} MiB resident\n", mib(*rss)));
        }
        table
    }
}

/// The probe's `host-memory` and `host-rss` lines in `console_text`, if
/// the probe got that far.
pub fn memory_report(console_text: &str) -> Option<MemoryReport> {
    let mut report = MemoryReport::default();
    let mut found = false;
    for line in console_text.lines() {
        if let Some((_, memory)) = line.split_once("kios-probe: host-memory ") {
            let fields: Vec<&str> = memory.split_whitespace().collect();
            for pair in fields.chunks(3) {
                match pair {
                    ["MemTotal:", value, "kB"] => report.mem_total_kib = value.parse().ok()?,
                    ["MemAvailable:", value, "kB"] => {
                        report.mem_available_kib = value.parse().ok()?;
                    }
                    _ => return None,
                }
            }
            found = true;
        } else if let Some((_, rss)) = line.split_once("kios-probe: host-rss ") {
            if let [exe, "VmRSS:", value, "kB"] = rss.split_whitespace().collect::<Vec<_>>()[..] {
                report
                    .services_rss_kib
                    .push((exe.to_string(), value.parse().ok()?));
            }
        }
    }
    found.then_some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_lines_are_read_back() {
        let console = "[    9.1] kios-probe: host-procs /bin/init\n\
            [    9.2] kios-probe: host-memory MemTotal: 1930000 kB MemAvailable: 1500000 kB \n\
            [    9.3] kios-probe: host-rss /bin/init VmRSS: 120 kB\n\
            [    9.3] kios-probe: host-rss /bin/kubelet VmRSS: 52000 kB\n";
        assert_eq!(
            memory_report(console),
            Some(MemoryReport {
                mem_total_kib: 1_930_000,
                mem_available_kib: 1_500_000,
                services_rss_kib: vec![("/bin/init".into(), 120), ("/bin/kubelet".into(), 52_000)],
            })
        );
        assert_eq!(
            memory_report("[ 1.0] kios-probe: host-procs /bin/init\n"),
            None
        );
    }

    #[test]
    fn the_every_boot_probe_differs_only_in_its_restart_policy() {
        let once = String::from_utf8(probe_pod_file().1).unwrap();
        let every = String::from_utf8(probe_pod_file_every_boot().1).unwrap();
        assert!(once.contains("restartPolicy: Never"));
        assert!(every.contains("restartPolicy: Always") && !every.contains("restartPolicy: Never"));
        assert_eq!(once.lines().count(), every.lines().count());
    }
}
