//! The probe pod, a TEST FIXTURE never in a shipped image: a static pod
//! that reports host facts on the console, then shuts the node down.
//! Boot tests and `kios boot` add it to an image's extra files.

/// Where the kubelet finds it: among the static pods.
pub const PROBE_POD_PATH: &str = "/etc/kubernetes/manifests/kios-probe.yaml";

/// A privileged busybox pod sharing the host's PID namespace that reports,
/// through /dev/kmsg at notice level (so a quiet console shows it too),
/// that it runs, what the host's /bin holds and which processes the host
/// runs; then it asks the init for a clean shutdown with SIGTERM to PID 1.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_every_boot_probe_differs_only_in_its_restart_policy() {
        let once = String::from_utf8(probe_pod_file().1).unwrap();
        let every = String::from_utf8(probe_pod_file_every_boot().1).unwrap();
        assert!(once.contains("restartPolicy: Never"));
        assert!(every.contains("restartPolicy: Always") && !every.contains("restartPolicy: Never"));
        assert_eq!(once.lines().count(), every.lines().count());
    }
}
