//! Issue 17's hardening, proven on one booted node (the kiOS kernel,
//! TCG, no `-icount`): a privileged static pod (a test fixture) sharing
//! the host's PID namespace inspects the host through /proc/1/root,
//! /proc/<pid>/{status,fd,fdinfo,mountinfo} and /proc/sys, and reports
//! on /dev/kmsg in `kios-hardening: ` lines that this test parses:
//!
//! - no shell or interpreter anywhere on the host's root (/, /etc,
//!   /opt/cni/bin), and no script whose interpreter is there;
//! - `/bin` holds what the image's `/bin` holds (the built initramfs);
//! - only the init, the runtime, the kubelet and the pod shims run in
//!   the host's PID and mount namespaces (pods' processes aside);
//! - every mount of the init's table (`init/src/storage/mounts.rs`, read
//!   here) has its `nosuid`/`nodev`/`noexec` flags, every tmpfs its size;
//!   the root is read-only; nothing else is mounted outside the runtime's
//!   and the kubelet's own directories;
//! - no descriptor of the init is open in containerd or the kubelet, and
//!   they inherited no blocked or ignored signal: at boot, after the pod
//!   SIGKILLs the kubelet and after it SIGKILLs containerd (the init
//!   restarts each; the pod's shim outlives containerd, so its reports
//!   go on);
//! - the system socket and the D-Bus socket are root-only files, and with
//!   their mode opened to everyone the init itself refuses a uid 1000
//!   peer (kiosctl, taken from the seeded image store, run as uid 1000);
//! - the kernel's hardening settings are in effect.
//!
//! Then the pod asks for a clean shutdown, which must read the mount
//! table to unmount it. Ignored by default: `cargo kios test` runs it
//! (step `e2e_hardening`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::vm_config;
use kios_tools::kernel::KernelChoice;
use kios_tools::testing::fixture_node::node_image_with;
use kios_tools::testing::standin_checks::{require_line, Check, CheckReport};
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, ConsoleVerbosity, LineVerdict, RunOptions};

const POD_PATH: &str = "/etc/kubernetes/manifests/kios-hardening.yaml";
const MARKER: &str = "kios-hardening: ";

/// Shells and interpreters (shell `case` patterns): none may be on the host.
const INTERPRETERS: &[&str] = &[
    "sh", "ash", "bash", "rbash", "dash", "zsh", "ksh*", "mksh", "csh", "tcsh", "fish", "busybox",
    "toybox", "python*", "perl*", "ruby*", "irb", "lua*", "node", "nodejs", "php*", "tclsh*",
    "wish*", "expect", "awk", "gawk", "mawk", "nawk", "pwsh", "guile*", "Rscript", "java",
];

/// A kernel setting issue 17 asks for, read from /proc/sys.
struct Setting {
    name: &'static str,
    /// Values that satisfy it.
    accepted: &'static [&'static str],
    /// The kernel lacks the feature altogether (its sysctl is absent), which
    /// is as good as off.
    absent_is_off: bool,
}

const fn setting(
    name: &'static str,
    accepted: &'static [&'static str],
    absent_is_off: bool,
) -> Setting {
    Setting {
        name,
        accepted,
        absent_is_off,
    }
}

/// The hardening settings kiOS promises (docs/security.md): the three
/// issue 17 names, then the usual link, core-dump and ASLR protections.
const HARDENING: &[Setting] = &[
    // The kernel log (addresses, other pods' output) for CAP_SYSLOG only.
    setting("kernel/dmesg_restrict", &["1"], false),
    // Kernel pointers hidden from /proc and the log.
    setting("kernel/kptr_restrict", &["1", "2"], false),
    // bpf() for privileged callers only.
    setting("kernel/unprivileged_bpf_disabled", &["1", "2"], true),
    // Links in world-writable sticky directories (a hostPath /tmp).
    setting("fs/protected_symlinks", &["1"], false),
    setting("fs/protected_hardlinks", &["1"], false),
    setting("fs/protected_fifos", &["1", "2"], false),
    setting("fs/protected_regular", &["1", "2"], false),
    // No core dumps of setuid or otherwise privileged processes.
    setting("fs/suid_dumpable", &["0"], false),
    // Full address-space layout randomization.
    setting("kernel/randomize_va_space", &["2"], false),
    // perf events for CAP_PERFMON only (or no perf at all).
    setting("kernel/perf_event_paranoid", &["2", "3"], true),
    // userfaultfd, a favourite of kernel exploits, for privileged callers only.
    setting("vm/unprivileged_userfaultfd", &["0"], true),
];

/// Where the runtime and the kubelet mount what pods need (container
/// roots, sandboxes' /dev/shm, network namespaces, volumes): not the
/// init's mounts, so not in its table.
const RUNTIME_MOUNT_AREAS: &[&str] = &[
    "/run/containerd/",
    "/run/netns/",
    "/var/lib/kubelet/",
    "/var/lib/containerd-snapshots/",
    "/var/lib/containerd/",
];

/// The probe. `@INTERPRETERS@` and `@SETTINGS@` are filled in from the
/// tables above.
const POD: &str = r##"# TEST FIXTURE: inspects the host's hardening, then shuts the node down.
apiVersion: v1
kind: Pod
metadata:
  name: kios-hardening
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
          B=/bin/busybox
          H=/proc/1/root
          say() { echo "<5>kios-hardening: $*" > /dev/kmsg; }
          say "running"

          # The host's root: no shell, no interpreter, no script.
          for top in / /etc /opt/cni/bin; do
            $B find "$H$top" -xdev \( -type f -o -type l \) 2>/dev/null
          done | {
            n=0
            while read -r path; do
              n=$((n+1))
              name=${path##*/}
              case "$name" in
                @INTERPRETERS@) say "interpreter ${path#$H}" ;;
              esac
              if [ ! -L "$path" ] && [ -f "$path" ] && [ -x "$path" ] \
                && [ "$($B head -c 2 "$path" 2>/dev/null)" = "#!" ]; then
                interp=$($B head -n 1 "$path" | $B cut -c 3- | $B awk '{ print $1 }')
                if [ -e "$H$interp" ] || [ -L "$H$interp" ]; then state=present; else state=absent; fi
                say "script ${path#$H} $interp $state"
              fi
            done
            say "walked $n"
          }
          say "bin $($B ls -A $H/bin | $B tr '\n' ' ')"

          for name in @SETTINGS@; do
            value=$($B cat /proc/sys/$name 2>/dev/null) || value=absent
            say "sysctl $name ${value:-absent}"
          done

          $B cat /proc/1/mountinfo | while read -r line; do say "mount $line"; done

          procs() {
            for dir in /proc/[0-9]*; do
              exe=$($B readlink $dir/exe 2>/dev/null) || continue
              pns=$($B readlink $dir/ns/pid 2>/dev/null)
              mns=$($B readlink $dir/ns/mnt 2>/dev/null)
              cg=$($B head -n 1 $dir/cgroup 2>/dev/null)
              say "proc $1 ${dir#/proc/} pidns=$pns mntns=$mns cgroup=$cg exe=$exe"
            done
          }
          procs 1
          $B sleep 3
          procs 2

          pid_of() {
            for dir in /proc/[0-9]*; do
              [ "$($B readlink $dir/exe 2>/dev/null)" = "$1" ] && { echo ${dir#/proc/}; return; }
            done
          }
          snapshot() {
            for svc in init containerd kubelet; do
              case $svc in init) pid=1 ;; *) pid=$(pid_of /bin/$svc) ;; esac
              if [ -z "$pid" ]; then say "missing $1 $svc"; continue; fi
              say "status $1 $svc $pid $($B grep -E '^(SigBlk|SigIgn):' /proc/$pid/status | $B tr '\t\n' '  ')"
              masks=""
              for task in /proc/$pid/task/*; do
                [ "${task##*/}" = "$pid" ] && continue
                masks="$masks $($B awk '/^SigBlk:/ { print $2 }' $task/status 2>/dev/null)"
              done
              say "threads $1 $svc $pid$masks"
              say "limits $1 $svc $($B grep 'Max open files' /proc/$pid/limits | $B tr -s ' ' | $B cut -d' ' -f4,5) $($B cat /proc/$pid/oom_score_adj)"
              for fd in /proc/$pid/fd/*; do
                n=${fd##*/}
                link=$($B readlink $fd 2>/dev/null) || continue
                flags=$($B awk '/^flags:/ { print $2 }' /proc/$pid/fdinfo/$n 2>/dev/null)
                hash=$($B grep -v -e '^pos:' -e '^flags:' /proc/$pid/fdinfo/$n 2>/dev/null | $B md5sum)
                say "fd $1 $svc $pid $n ${flags:-none} ${hash%% *} $link"
              done
            done
          }
          snapshot boot

          # Peers: kiosctl from the seeded store, run as uid 1000.
          K=/tmp/kiosctl
          $B mkdir -p $K /run /etc
          echo "probe:x:1000:1000:probe:/:/bin/false" >> /etc/passwd
          echo "probe:x:1000:" >> /etc/group
          $B touch /run/system.sock
          for blob in $H/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/*; do
            $B zcat $blob 2>/dev/null | $B tar -x -C $K kiosctl 2>/dev/null
            [ -x $K/kiosctl ] && break
          done
          as_user() {
            $B unshare -m $B sh -c "$B mount --bind $2 /run/system.sock && exec $B start-stop-daemon -S -c 1000:1000 -x $K/kiosctl -- restart-kubelet" > /tmp/peer.out 2>&1
            say "peer $1 rc=$? $($B tr '\n' ' ' < /tmp/peer.out)"
          }
          for sock in system:/host-run/system.sock bus:/host-run/dbus/system_bus_socket; do
            say "sockmode ${sock%%:*} $($B stat -c '%a %u %g %F' ${sock#*:})"
          done
          kubelet=$(pid_of /bin/kubelet)
          if [ -x $K/kiosctl ]; then
            as_user system-closed /host-run/system.sock
            as_user bus-closed /host-run/dbus/system_bus_socket
            $B chmod 666 /host-run/system.sock /host-run/dbus/system_bus_socket
            as_user system-open /host-run/system.sock
            as_user bus-open /host-run/dbus/system_bus_socket
            $B chmod 600 /host-run/system.sock /host-run/dbus/system_bus_socket
          else
            say "peer none: no kiosctl in the image store"
          fi
          $B sleep 3
          say "kubelet after-peers $kubelet $(pid_of /bin/kubelet)"

          # Restarts: the init restarts what dies; check what it hands over.
          restart() {
            old=$(pid_of /bin/$1)
            say "killing $1 $old"
            $B kill -KILL $old
            i=0
            while [ $i -lt 240 ]; do
              new=$(pid_of /bin/$1)
              if [ -n "$new" ] && [ "$new" != "$old" ]; then
                say "restarted $1 $old $new"
                $B sleep 5
                snapshot $1-restarted
                return
              fi
              $B sleep 0.5
              i=$((i+1))
            done
            say "not-restarted $1 $old"
          }
          restart kubelet
          restart containerd
          $B cat /proc/1/mountinfo | while read -r line; do say "mount-end $line"; done
          say "done"
          $B sleep 1
          $B kill -TERM 1
          exec $B sleep 3600
      volumeMounts:
        - name: kmsg
          mountPath: /dev/kmsg
        - name: host-run
          mountPath: /host-run
  volumes:
    - name: kmsg
      hostPath:
        path: /dev/kmsg
        type: CharDevice
    - name: host-run
      hostPath:
        path: /run
        type: Directory
"##;

fn pod_manifest() -> String {
    let settings: Vec<&str> = HARDENING.iter().map(|setting| setting.name).collect();
    POD.replace("@INTERPRETERS@", &INTERPRETERS.join("|"))
        .replace("@SETTINGS@", &settings.join(" "))
}

/// The probe's reports: every `kios-hardening: ` line, marker removed.
fn reports(console: &Console) -> Vec<&str> {
    console
        .messages(MARKER)
        .map(|line| line[MARKER.len()..].trim_end())
        .collect()
}

/// The reports of one kind (`kind` and a space removed).
fn reports_of<'a>(reports: &[&'a str], kind: &str) -> Vec<&'a str> {
    let prefix = format!("{kind} ");
    reports
        .iter()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .collect()
}

fn one_report<'a>(reports: &[&'a str], kind: &str) -> Result<&'a str, String> {
    if reports.contains(&kind) {
        return Ok("");
    }
    reports_of(reports, kind)
        .first()
        .copied()
        .ok_or(format!("the probe sent no `{kind}` line"))
}

// --- The host's root ------------------------------------------------------------

fn check_no_interpreter(
    reports: &[&str],
    image_files: &Result<usize, String>,
) -> Result<(), String> {
    let image_files = *image_files.as_ref().map_err(Clone::clone)?;
    let walked: usize = one_report(reports, "walked")?
        .parse()
        .map_err(|_| "an unreadable `walked` line".to_string())?;
    // The overlays show the image's /etc and /opt/cni/bin, and more.
    if walked < image_files {
        return Err(format!(
            "the walk of the host's root saw {walked} files, the image holds {image_files}"
        ));
    }
    let mut found: Vec<String> = reports_of(reports, "interpreter")
        .into_iter()
        .map(|path| format!("interpreter {path}"))
        .collect();
    // A script is inert without its interpreter: the DHCP pod's
    // udhcpc script lives in /etc for the pod's busybox to run.
    for script in reports_of(reports, "script") {
        eprintln!("host root: script {script}");
        if script.ends_with(" present") {
            found.push(format!("script whose interpreter is on the host: {script}"));
        }
    }
    if found.is_empty() {
        eprintln!("host root: {walked} files, no shell, interpreter or script");
        Ok(())
    } else {
        Err(format!("on the host's root: {}", found.join(", ")))
    }
}

/// What a zstd initramfs holds: the names directly under `bin/`, and
/// how many regular files and symlinks in all.
fn image_listing(initrd: &Path) -> Result<(BTreeSet<String>, usize), String> {
    let stored = std::fs::read(initrd).map_err(|error| format!("reading {initrd:?}: {error}"))?;
    let cpio = zstd::decode_all(stored.as_slice()).map_err(|error| format!("unzstd: {error}"))?;
    let mut input = std::io::Cursor::new(cpio.as_slice());
    let (mut names, mut files) = (BTreeSet::new(), 0);
    loop {
        let reader = cpio::NewcReader::new(input).map_err(|error| format!("cpio: {error}"))?;
        if reader.entry().is_trailer() {
            return Ok((names, files));
        }
        let file_type = reader.entry().mode() & 0o170_000;
        if file_type == 0o100_000 || file_type == 0o120_000 {
            files += 1;
        }
        let path = reader
            .entry()
            .name()
            .trim_start_matches("./")
            .trim_start_matches('/');
        if let Some(name) = path.strip_prefix("bin/") {
            if !name.is_empty() && !name.contains('/') {
                names.insert(name.to_string());
            }
        }
        input = reader.finish().map_err(|error| format!("cpio: {error}"))?;
    }
}

fn check_bin(reports: &[&str], expected: &Result<BTreeSet<String>, String>) -> Result<(), String> {
    let expected = expected.as_ref().map_err(Clone::clone)?;
    let listed: BTreeSet<String> = one_report(reports, "bin")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if &listed == expected {
        eprintln!("/bin: {listed:?}");
        Ok(())
    } else {
        let extra: Vec<&String> = listed.difference(expected).collect();
        let missing: Vec<&String> = expected.difference(&listed).collect();
        Err(format!(
            "/bin holds {extra:?} beyond the image's /bin and lacks {missing:?}"
        ))
    }
}

// --- Processes -------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Process<'a> {
    pid: u32,
    pid_ns: &'a str,
    mnt_ns: &'a str,
    cgroup: &'a str,
    exe: &'a str,
}

/// `SAMPLE PID pidns=.. mntns=.. cgroup=.. exe=..` (the exe last: a path).
fn parse_process(line: &str) -> Option<(&str, Process<'_>)> {
    let (sample, rest) = line.split_once(' ')?;
    let (pid, rest) = rest.split_once(' ')?;
    let (pid_ns, rest) = rest.strip_prefix("pidns=")?.split_once(' ')?;
    let (mnt_ns, rest) = rest.strip_prefix("mntns=")?.split_once(' ')?;
    let (cgroup, exe) = rest.strip_prefix("cgroup=")?.split_once(" exe=")?;
    Some((
        sample,
        Process {
            pid: pid.parse().ok()?,
            pid_ns,
            mnt_ns,
            cgroup,
            exe,
        },
    ))
}

/// The node's own long-running processes.
const HOST_PROCESSES: [&str; 4] = [
    kios_abi::image::INIT,
    kios_abi::image::RUNTIME,
    kios_abi::image::KUBELET,
    "/bin/containerd-shim-runc-v2",
];

/// Every process in the host's PID namespace is the init, containerd, the
/// kubelet, a shim, or a pod's (its cgroup under the kubelet's `kubepods`,
/// not in the host's mount namespace). Another of the image's binaries
/// (runc, mount, umount) may run for a moment: it must be gone 3 s later.
fn check_host_processes(
    reports: &[&str],
    image_bin: &Result<BTreeSet<String>, String>,
) -> Result<(), String> {
    let image_bin = image_bin.as_ref().map_err(Clone::clone)?;
    let mut samples: BTreeMap<&str, Vec<Process>> = BTreeMap::new();
    for line in reports_of(reports, "proc") {
        let (sample, process) =
            parse_process(line).ok_or(format!("an unreadable `proc` line: `{line}`"))?;
        samples.entry(sample).or_default().push(process);
    }
    let (Some(first), Some(second)) = (samples.get("1"), samples.get("2")) else {
        return Err("the probe did not list the processes twice".into());
    };
    let init = first
        .iter()
        .find(|process| process.pid == 1)
        .ok_or("no PID 1 among the processes")?;
    let mut problems = Vec::new();
    if init.exe != kios_abi::image::INIT {
        problems.push(format!("PID 1 is {}", init.exe));
    }
    for (name, sample) in [("first", first), ("second", second)] {
        let host: Vec<&Process> = sample
            .iter()
            .filter(|process| process.pid_ns == init.pid_ns)
            .collect();
        for required in [kios_abi::image::RUNTIME, kios_abi::image::KUBELET] {
            let count = host
                .iter()
                .filter(|process| process.exe == required)
                .count();
            if count != 1 {
                problems.push(format!("{count} {required} in the {name} sample"));
            }
        }
        for process in host {
            let in_pod = process.mnt_ns != init.mnt_ns && process.cgroup.contains("kubepods");
            if in_pod || HOST_PROCESSES.contains(&process.exe) {
                continue;
            }
            let transient = process.mnt_ns == init.mnt_ns
                && process
                    .exe
                    .strip_prefix("/bin/")
                    .is_some_and(|name| image_bin.contains(name))
                && !(name == "first"
                    && second
                        .iter()
                        .any(|later| later.pid == process.pid && later.exe == process.exe));
            if !transient {
                problems.push(format!(
                    "pid {} {} (cgroup {}) in the host's PID namespace ({name} sample)",
                    process.pid, process.exe, process.cgroup
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// --- Mounts ----------------------------------------------------------------------

/// A mount the init makes, as its table in `init/src/storage/mounts.rs` says.
#[derive(Clone, Debug, PartialEq)]
struct TableMount {
    target: String,
    fstype: String,
    /// `nosuid`, `nodev`, `noexec`, `noatime`, `ro`: the flags it sets.
    flags: BTreeSet<String>,
    data: String,
}

/// The arguments of the call that starts at `open` (just after its `(`),
/// split at top-level commas; strings and nested calls kept whole.
fn call_arguments(source: &str, open: usize) -> Option<Vec<String>> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut arguments = vec![String::new()];
    for character in source[open..].chars() {
        if in_string {
            escaped = !escaped && character == '\\';
            in_string = escaped || character != '"';
        } else {
            match character {
                '"' => in_string = true,
                '(' => depth += 1,
                ')' if depth == 0 => {
                    arguments.retain(|argument| !argument.trim().is_empty());
                    return Some(arguments.iter().map(|a| a.trim().to_string()).collect());
                }
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    arguments.push(String::new());
                    continue;
                }
                _ => {}
            }
        }
        arguments.last_mut()?.push(character);
    }
    None
}

/// `const NAME: TYPE = EXPR;` in `source`: EXPR.
fn constant<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source.find(&format!("const {name}: "))?;
    let after = &source[start..];
    let equals = after.find('=')?;
    let end = after.find(';')?;
    Some(after[equals + 1..end].trim())
}

/// A string argument of the table: a literal, `concat!` of them, one of
/// `kios_abi::image`'s paths, or a constant of the file.
fn string_value(source: &str, expression: &str) -> Result<String, String> {
    let expression = expression.trim();
    if let Some(literal) = expression
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        return Ok(literal.to_string());
    }
    if let Some(inner) = expression
        .strip_prefix("concat!(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        let parts = call_arguments(&format!("{inner})"), 0).ok_or("an unclosed concat!")?;
        return parts
            .iter()
            .map(|part| string_value(source, part))
            .collect();
    }
    match expression {
        "kios_abi::containerd_seed!()" | "image::CONTAINERD_SEED" => {
            return Ok(kios_abi::image::CONTAINERD_SEED.into())
        }
        "image::VAR" => return Ok(kios_abi::image::VAR.into()),
        "image::CONTAINERD_STORE" => return Ok(kios_abi::image::CONTAINERD_STORE.into()),
        "image::CONTAINERD_SNAPSHOTS" => return Ok(kios_abi::image::CONTAINERD_SNAPSHOTS.into()),
        _ => {}
    }
    match constant(source, expression) {
        Some(value) if value != expression => string_value(source, value),
        _ => Err(format!(
            "cannot read `{expression}` in the init's mount table"
        )),
    }
}

/// A flags argument: `0`, `MS_*` names and constants of the file, or'ed.
fn flag_names(source: &str, expression: &str) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    for term in expression.split('|').map(str::trim) {
        let name = match term {
            "0" => continue,
            "MS_NOSUID" => "nosuid",
            "MS_NODEV" => "nodev",
            "MS_NOEXEC" => "noexec",
            "MS_NOATIME" => "noatime",
            "MS_RDONLY" => "ro",
            other => match constant(source, other) {
                Some(value) if value != other => {
                    names.extend(flag_names(source, value)?);
                    continue;
                }
                _ => {
                    return Err(format!(
                        "cannot read flag `{other}` in the init's mount table"
                    ))
                }
            },
        };
        names.insert(name.to_string());
    }
    Ok(names)
}

/// Every `fs(target, fstype, flags, data)` of the init's mount table.
fn init_mount_table(source: &str) -> Result<Vec<TableMount>, String> {
    let source = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut mounts = Vec::new();
    for (at, _) in source.match_indices("fs(") {
        let before = source[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') || source[..at].ends_with("fn ")
        {
            continue;
        }
        let arguments = call_arguments(source, at + 3).ok_or("an unclosed fs(")?;
        let [target, fstype, flags, data] = arguments.as_slice() else {
            return Err(format!("fs() with {} arguments", arguments.len()));
        };
        mounts.push(TableMount {
            target: string_value(source, target)?,
            fstype: string_value(source, fstype)?,
            flags: flag_names(source, flags)?,
            data: string_value(source, data)?,
        });
    }
    if mounts.is_empty() {
        return Err("no fs() entries in the init's mount table".into());
    }
    Ok(mounts)
}

/// One line of /proc/1/mountinfo.
#[derive(Debug, PartialEq)]
struct MountInfo<'a> {
    target: &'a str,
    options: BTreeSet<&'a str>,
    fstype: &'a str,
    super_options: BTreeSet<&'a str>,
}

fn parse_mountinfo(line: &str) -> Option<MountInfo<'_>> {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split_whitespace().collect();
    let after: Vec<&str> = after.split_whitespace().collect();
    Some(MountInfo {
        target: fields.get(4)?,
        options: fields.get(5)?.split(',').collect(),
        fstype: after.first()?,
        super_options: after
            .get(2)
            .map_or(BTreeSet::new(), |s| s.split(',').collect()),
    })
}

const LOCKING_FLAGS: [&str; 3] = ["nosuid", "nodev", "noexec"];

fn check_mount_flags(
    reports: &[&str],
    kind: &str,
    table: &Result<Vec<TableMount>, String>,
) -> Result<(), String> {
    let table = table.as_ref().map_err(Clone::clone)?;
    let lines = reports_of(reports, kind);
    let mounts: Vec<MountInfo> = lines
        .iter()
        .filter_map(|line| parse_mountinfo(line))
        .collect();
    if mounts.len() != lines.len() || mounts.is_empty() {
        return Err(format!(
            "{} of {} mountinfo lines unreadable",
            lines.len() - mounts.len(),
            lines.len()
        ));
    }
    let mut problems = Vec::new();
    match mounts.iter().find(|mount| mount.target == "/") {
        Some(root) if root.options.contains("ro") => {}
        Some(root) => problems.push(format!("/ is mounted {:?}, not read-only", root.options)),
        None => problems.push("no / in PID 1's mountinfo".into()),
    }
    for expected in table {
        let stacked = mounts
            .iter()
            .filter(|mount| mount.target == expected.target)
            .count();
        if stacked > 1 {
            problems.push(format!("{stacked} mounts stacked on {}", expected.target));
        }
        // The last mount on a target is the one in use.
        let Some(mounted) = mounts
            .iter()
            .rev()
            .find(|mount| mount.target == expected.target)
        else {
            problems.push(format!(
                "{} ({}) is not mounted",
                expected.target, expected.fstype
            ));
            continue;
        };
        if mounted.fstype != expected.fstype {
            problems.push(format!(
                "{} is {}, the table says {}",
                expected.target, mounted.fstype, expected.fstype
            ));
        }
        for flag in LOCKING_FLAGS {
            let documented = expected.flags.contains(flag);
            if documented != mounted.options.contains(flag) {
                problems.push(format!(
                    "{} is mounted {}, the table {} {flag}",
                    expected.target,
                    mounted
                        .options
                        .iter()
                        .copied()
                        .collect::<Vec<_>>()
                        .join(","),
                    if documented { "sets" } else { "does not set" }
                ));
            }
        }
        if expected.fstype == "tmpfs" {
            let size = expected
                .data
                .split(',')
                .find(|option| option.starts_with("size="));
            match size {
                None => problems.push(format!(
                    "tmpfs {} has no size= in the init's table (`{}`): it may fill half the RAM",
                    expected.target, expected.data
                )),
                // The kernel shows no size equal to its default (half the RAM).
                Some("size=50%") => {}
                Some(_) if !mounted.super_options.iter().any(|o| o.starts_with("size=")) => {
                    problems.push(format!(
                        "tmpfs {} is mounted without its size",
                        expected.target
                    ))
                }
                Some(_) => {}
            }
        }
    }
    for mount in &mounts {
        let known = mount.target == "/"
            || table.iter().any(|expected| expected.target == mount.target)
            || RUNTIME_MOUNT_AREAS
                .iter()
                .any(|area| mount.target.starts_with(area));
        if !known {
            problems.push(format!(
                "{} ({}) is mounted, by none of the init's table, the runtime or the kubelet",
                mount.target, mount.fstype
            ));
        }
    }
    if problems.is_empty() {
        eprintln!("mounts: {} checked against the init's table", table.len());
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// --- Descriptors and signal masks ----------------------------------------------------

/// One `fd` report: LABEL SERVICE PID FD FLAGS HASH LINK.
#[derive(Debug, PartialEq)]
struct Descriptor<'a> {
    label: &'a str,
    service: &'a str,
    pid: u32,
    fd: u32,
    /// The open flags without O_CLOEXEC, which is the descriptor's, not the file's.
    flags: u32,
    /// md5 of the fdinfo without `pos:` and `flags:`.
    hash: &'a str,
    link: &'a str,
}

const O_CLOEXEC: u32 = 0o2_000_000;

fn parse_descriptor(line: &str) -> Option<Descriptor<'_>> {
    let mut fields = line.splitn(7, ' ');
    let label = fields.next()?;
    let service = fields.next()?;
    let pid = fields.next()?.parse().ok()?;
    let fd = fields.next()?.parse().ok()?;
    let flags = u32::from_str_radix(fields.next()?, 8).ok()? & !O_CLOEXEC;
    Some(Descriptor {
        label,
        service,
        pid,
        fd,
        flags,
        hash: fields.next()?,
        link: fields.next()?,
    })
}

/// The hex mask after `field` (`SigBlk:`, `SigIgn:`) in a `status` report.
fn mask_after(status: &str, field: &str) -> Option<u64> {
    let value = status
        .split_whitespace()
        .skip_while(|word| *word != field)
        .nth(1)?;
    u64::from_str_radix(value, 16).ok()
}

/// What a process's threads all block: the mask it was started with, as
/// far as its threads show it. The Go runtime keeps its own signals
/// blocked on the main thread (containerd shows `fffffffc3bba2800` there
/// even when started from a shell with nothing blocked), but starts
/// every other thread with the mask the process inherited, less the
/// signals it must receive; a thread forking blocks all for a moment.
/// So: the signals blocked in every thread but the main one (in the main
/// one for a single-threaded process). `threads` is `PID MASK...`.
fn inherited_mask(leader: Option<u64>, threads: Option<&str>) -> Option<u64> {
    let masks: Vec<u64> = threads?
        .split_whitespace()
        .skip(1)
        .map(|mask| u64::from_str_radix(mask, 16).ok())
        .collect::<Option<_>>()?;
    if masks.is_empty() {
        return leader;
    }
    Some(masks.into_iter().fold(u64::MAX, |all, mask| all & mask))
}

/// The labels of the probe's snapshots, in order.
const SNAPSHOTS: [&str; 3] = ["boot", "kubelet-restarted", "containerd-restarted"];

/// In every snapshot, no descriptor of containerd or the kubelet beyond
/// 0-2 is one of the init's open files (the same file, open flags and
/// fdinfo: a socket's or pipe's inode, an epoll's watch list), and both
/// block and ignore no signal. Each restart gave a new process.
/// `limits <snapshot> <service> <soft> <hard> <oom_score_adj>`: what the
/// init gives containerd (containerd.service's `LimitNOFILE=infinity` and
/// `OOMScoreAdjust=-999`); the kubelet then sets its own (`--max-open-files`
/// 1000000 and `--oom-score-adj` -999, its defaults), which it can only do
/// from a limit at least that high.
fn check_limits(reports: &[&str]) -> Result<(), String> {
    let limits = reports_of(reports, "limits");
    let mut problems = Vec::new();
    for label in SNAPSHOTS {
        for (service, expected) in [
            ("containerd", "1048576 1048576 -999"),
            ("kubelet", "1000000 1000000 -999"),
        ] {
            let prefix = format!("{label} {service} ");
            match limits.iter().find(|line| line.starts_with(&prefix)) {
                Some(line) if line[prefix.len()..].trim() == expected => {}
                Some(line) => problems.push(format!("{line}: expected {expected}")),
                None => problems.push(format!("no limits of {service} in snapshot {label}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn check_descriptors_and_masks(reports: &[&str]) -> Result<(), String> {
    let mut problems = Vec::new();
    let descriptors: Vec<Descriptor> = reports_of(reports, "fd")
        .into_iter()
        .filter_map(parse_descriptor)
        .collect();
    let statuses = reports_of(reports, "status");
    let threads = reports_of(reports, "threads");
    for missing in reports_of(reports, "missing") {
        problems.push(format!("no process in snapshot {missing}"));
    }
    let mut pids: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for label in SNAPSHOTS {
        let init: BTreeSet<(&str, u32, &str)> = descriptors
            .iter()
            .filter(|d| d.label == label && d.service == "init")
            .map(|d| (d.link, d.flags, d.hash))
            .collect();
        if init.is_empty() {
            problems.push(format!("no descriptors of the init in snapshot {label}"));
        }
        for service in ["containerd", "kubelet"] {
            let held: Vec<&Descriptor> = descriptors
                .iter()
                .filter(|d| d.label == label && d.service == service)
                .collect();
            let Some(first) = held.first() else {
                problems.push(format!("no descriptors of {service} in snapshot {label}"));
                continue;
            };
            pids.insert((label, service), first.pid);
            for d in held.iter().filter(|d| d.fd > 2) {
                if init.contains(&(d.link, d.flags, d.hash)) {
                    problems.push(format!(
                        "{service} (pid {}, {label}) holds the init's {} as fd {}",
                        d.pid, d.link, d.fd
                    ));
                }
            }
            let prefix = format!("{label} {service} ");
            match statuses.iter().find(|s| s.starts_with(&prefix)) {
                None => problems.push(format!("no signal mask of {service} in snapshot {label}")),
                Some(status) => {
                    let ignored = mask_after(status, "SigIgn:");
                    if ignored != Some(0) {
                        problems.push(format!("{service} ({label}) ignores signals: {status}"));
                    }
                    let leader = mask_after(status, "SigBlk:");
                    let threads = threads.iter().find(|t| t.starts_with(&prefix));
                    match inherited_mask(leader, threads.map(|t| &t[prefix.len()..])) {
                        Some(0) => {}
                        Some(mask) => problems.push(format!(
                            "{service} ({label}) was started with signals blocked: {mask:016x} in every thread"
                        )),
                        None => problems.push(format!("unreadable signal masks of {service} ({label})")),
                    }
                }
            }
        }
    }
    for (label, service) in [
        ("kubelet-restarted", "kubelet"),
        ("containerd-restarted", "containerd"),
    ] {
        match (pids.get(&("boot", service)), pids.get(&(label, service))) {
            (Some(before), Some(after)) if before == after => {
                problems.push(format!("{service} was not restarted (pid {before})"))
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        eprintln!(
            "descriptors: {} reported over {} snapshots, none of the init's in containerd or the kubelet",
            descriptors.len(),
            SNAPSHOTS.len()
        );
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// --- Peers -----------------------------------------------------------------------

const EACCES: &str = "errno 13";

/// The sockets are root's, mode 0600; a uid 1000 kiosctl is refused by
/// the file's mode, and with the mode opened, by the init itself (its
/// kmsg line), which obeys none of its commands (the kubelet stays).
fn check_peers(console: &Console, reports: &[&str]) -> Result<(), String> {
    let mut problems = Vec::new();
    let modes = reports_of(reports, "sockmode");
    for socket in ["system", "bus"] {
        match modes
            .iter()
            .find(|line| line.starts_with(&format!("{socket} ")))
        {
            Some(line) if line.ends_with("600 0 0 socket") => {}
            Some(line) => problems.push(format!(
                "the {socket} socket is `{line}` (mode uid gid type), not root's 0600"
            )),
            None => problems.push(format!("no mode of the {socket} socket")),
        }
    }
    let peers = reports_of(reports, "peer");
    if peers.iter().any(|line| line.starts_with("none")) {
        return Err("no kiosctl in the image store to connect as uid 1000".into());
    }
    for socket in ["system", "bus"] {
        match peers
            .iter()
            .find(|line| line.starts_with(&format!("{socket}-closed ")))
        {
            Some(line) if line.contains(EACCES) => {}
            Some(line) => problems.push(format!(
                "uid 1000 on the {socket} socket: `{line}` ({EACCES} expected)"
            )),
            None => problems.push(format!("no uid 1000 attempt on the {socket} socket")),
        }
        if !peers
            .iter()
            .any(|line| line.starts_with(&format!("{socket}-open ")))
        {
            problems.push(format!("no uid 1000 attempt on the opened {socket} socket"));
        }
    }
    for (socket, line) in [
        ("system socket", "system socket: refused client uid=1000"),
        ("bus", "bus: refused client uid=1000"),
    ] {
        if !console.contains(line) {
            problems.push(format!("with its mode opened, the init did not refuse uid 1000 on the {socket} (no `{line}`)"));
        }
    }
    match one_report(reports, "kubelet after-peers") {
        Ok(pids) => {
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if pids.len() != 2 || pids[0] != pids[1] {
                problems.push(format!(
                    "the kubelet changed while uid 1000 asked to restart it: {pids:?}"
                ));
            }
        }
        Err(missing) => problems.push(missing),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// --- Kernel settings ----------------------------------------------------------------

fn check_kernel_settings(reports: &[&str]) -> Result<(), String> {
    let values: BTreeMap<&str, &str> = reports_of(reports, "sysctl")
        .into_iter()
        .filter_map(|line| line.split_once(' '))
        .collect();
    let mut problems = Vec::new();
    for setting in HARDENING {
        match values.get(setting.name).map(|value| value.trim()) {
            None => problems.push(format!("{} not reported", setting.name)),
            Some("absent") if setting.absent_is_off => {}
            Some(value) if setting.accepted.contains(&value) => {}
            Some(value) => problems.push(format!(
                "{} is {value}, expected {}",
                setting.name,
                setting.accepted.join(" or ")
            )),
        }
    }
    if problems.is_empty() {
        eprintln!("kernel settings: {values:?}");
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// --- The boot ----------------------------------------------------------------------

#[test]
#[ignore = "builds the node image and boots it in QEMU: run by cargo kios test"]
fn a_booted_node_is_hardened_as_documented() {
    let arch = Arch::Amd64;
    let (image, _) = node_image_with(
        arch,
        KernelChoice::Kios,
        &format!("e2e-hardening-{arch}"),
        vec![(POD_PATH.to_string(), pod_manifest().into_bytes())],
    )
    .expect("building the node image");
    let listing = image_listing(&image.initrd);
    let expected_bin = listing.clone().map(|(bin, _)| bin);
    let image_files = listing.map(|(_, files)| files);
    let workspace = Workspace::locate().expect("workspace");
    let table = std::fs::read_to_string(workspace.root.join("init/src/storage/mounts.rs"))
        .map_err(|error| format!("reading the init's mount table: {error}"))
        .and_then(|source| init_mount_table(&source));

    let config = kios_tools::vm::qemu::VmConfig {
        console: ConsoleVerbosity::Quiet,
        ..vm_config(&image, false)
    };
    let options = RunOptions {
        timeout: Duration::from_secs(900),
        echo: true,
    };
    let run = run_vm(&config, options, |_| LineVerdict::Continue).expect("booting the node image");
    eprintln!(
        "boot, probe and shutdown took {:.1} s",
        run.wall_time.as_secs_f64()
    );
    let console = &run.console;
    let reports = reports(console);

    let checks = vec![
        Check {
            name: "the probe ran to its end",
            outcome: one_report(&reports, "done").map(drop),
        },
        Check {
            name: "no shell, interpreter or script on the host's root",
            outcome: check_no_interpreter(&reports, &image_files),
        },
        Check {
            name: "/bin holds exactly the image's /bin",
            outcome: check_bin(&reports, &expected_bin),
        },
        Check {
            name: "only the init, containerd, the kubelet and shims run in the host's PID namespace",
            outcome: check_host_processes(&reports, &expected_bin),
        },
        Check {
            name: "every mount has its documented flags and tmpfs size; the root is read-only",
            outcome: check_mount_flags(&reports, "mount", &table),
        },
        Check {
            name: "the same still holds after the restarts, nothing stacked on the base mounts",
            outcome: check_mount_flags(&reports, "mount-end", &table),
        },
        Check {
            name: "no init descriptor in containerd or the kubelet, empty signal masks, at boot and after each restart",
            outcome: check_descriptors_and_masks(&reports),
        },
        Check {
            name: "containerd runs with 1048576 descriptors and the kubelet with its own 1000000, both with OOM score -999, at boot and after each restart",
            outcome: check_limits(&reports),
        },
        Check {
            name: "the system socket and the bus refuse a uid 1000 peer",
            outcome: check_peers(console, &reports),
        },
        Check {
            name: "the kernel's hardening settings are in effect",
            outcome: check_kernel_settings(&reports),
        },
        Check {
            name: "the shutdown read the mount table to unmount it",
            outcome: match console.texts().find(|text| text.contains("nothing unmounted")) {
                Some(line) => Err(line.trim().to_string()),
                None => Ok(()),
            },
        },
        Check {
            name: "the init powered off after the probe's SIGTERM",
            outcome: require_line(console, "kios: power off"),
        },
    ];
    for check in &checks {
        let verdict = match &check.outcome {
            Ok(()) => "ok".to_string(),
            Err(why) => format!("FAILED: {why}"),
        };
        eprintln!("check: {}: {verdict}", check.name);
    }
    if let Err(failures) = (CheckReport { checks }).into_result() {
        panic!("failed checks:\n{failures}");
    }
}

// --- The parsers, on what the probe prints ---------------------------------------

#[cfg(test)]
mod parsing {
    use super::*;

    const TABLE: &str = r#"
const LOCKED: u32 = MS_NOSUID | MS_NODEV | MS_NOEXEC;
pub const VAR: &str = image::VAR;
const fn fs(target: &'static str, fstype: &'static str, flags: u32, data: &'static str) -> FsMount {
    FsMount { target, fstype, flags, data }
}
pub const PROC: FsMount = fs("/proc", "proc", LOCKED, "");
pub const BASE: [FsMount; 2] = [
    fs("/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"),
    fs("/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64m"),
];
pub const VAR_EPHEMERAL: FsMount = fs(VAR, "tmpfs", 0, "mode=0755");
pub const STORE: FsMount = fs(
    image::CONTAINERD_STORE,
    "overlay",
    0,
    concat!("lowerdir=", kios_abi::containerd_seed!(), ",upperdir=/u"),
);
#[cfg(test)]
mod tests { fn x() { fs("/nope", "x", 0, ""); } }
"#;

    #[test]
    fn the_init_mount_table_is_read_from_its_source() {
        let table = init_mount_table(TABLE).unwrap();
        let targets: Vec<&str> = table.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(
            targets,
            ["/proc", "/dev/pts", "/run", "/var", "/var/lib/containerd"]
        );
        assert_eq!(
            table[0].flags,
            ["nodev", "noexec", "nosuid"].map(String::from).into()
        );
        assert_eq!(table[1].data, "newinstance,ptmxmode=0666,mode=0620");
        assert!(table[3].flags.is_empty());
        assert_eq!(
            table[4].data,
            format!("lowerdir={},upperdir=/u", kios_abi::image::CONTAINERD_SEED)
        );
    }

    #[test]
    fn the_real_init_mount_table_reads() {
        let source = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../init/src/storage/mounts.rs"),
        )
        .unwrap();
        let table = init_mount_table(&source).unwrap();
        assert!(table
            .iter()
            .any(|m| m.target == "/run" && m.fstype == "tmpfs"));
        assert!(table
            .iter()
            .any(|m| m.target == "/proc" && m.flags.contains("noexec")));
    }

    fn console(lines: &[&str]) -> Console {
        let text: String = lines
            .iter()
            .map(|line| format!("[   12.0] {MARKER}{line}\n"))
            .collect();
        Console::from_text(&text)
    }

    #[test]
    fn mounts_are_checked_against_the_table() {
        let table = init_mount_table(TABLE);
        let good = console(&[
            "mount 20 1 0:2 / / ro,relatime shared:1 - rootfs rootfs rw",
            "mount 21 20 0:3 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw",
            "mount 22 20 0:4 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,mode=620",
            "mount 23 20 0:5 / /run rw,nosuid,nodev,relatime shared:4 - tmpfs tmpfs rw,size=65536k,mode=755",
            "mount 24 20 0:6 / /var rw,relatime shared:5 - tmpfs tmpfs rw,mode=755",
            "mount 25 24 0:7 / /var/lib/containerd rw,relatime shared:6 - overlay overlay rw",
            "mount 26 23 0:8 / /run/containerd/x/shm rw - tmpfs shm rw,size=65536k",
        ]);
        let outcome = check_mount_flags(&reports(&good), "mount", &table);
        // The fixture's /var tmpfs has no size: the one finding.
        let why = outcome.unwrap_err();
        assert!(why.contains("tmpfs /var has no size="), "{why}");
        assert!(!why.contains("/run"), "{why}");

        let bad = console(&[
            "mount 20 1 0:2 / / rw,relatime shared:1 - rootfs rootfs rw",
            "mount 28 20 0:10 / /proc rw,nosuid,nodev,noexec - proc proc rw",
            "mount 21 20 0:3 / /proc rw,nosuid,nodev,relatime shared:2 - proc proc rw",
            "mount 27 20 0:9 / /mnt rw - tmpfs tmpfs rw",
        ]);
        let why = check_mount_flags(&reports(&bad), "mount", &table).unwrap_err();
        assert!(why.contains("/ is mounted"), "{why}");
        assert!(why.contains("the table sets noexec"), "{why}");
        assert!(why.contains("/dev/pts (devpts) is not mounted"), "{why}");
        assert!(why.contains("/mnt (tmpfs) is mounted, by none"), "{why}");
        assert!(why.contains("2 mounts stacked on /proc"), "{why}");
    }

    #[test]
    fn an_init_descriptor_in_a_service_is_found() {
        let mut lines = Vec::new();
        for label in SNAPSHOTS {
            let (c, k) = match label {
                "boot" => (100, 200),
                "kubelet-restarted" => (100, 201),
                _ => (101, 201),
            };
            lines.push(format!(
                "status {label} containerd {c} SigBlk: 0000000000000000 SigIgn: 0000000000000000 "
            ));
            lines.push(format!(
                "status {label} kubelet {k} SigBlk: 0000000000000000 SigIgn: 0000000000000000 "
            ));
            lines.push(format!(
                "threads {label} containerd {c} 0000000000000000 fffffffffffffffe"
            ));
            lines.push(format!("threads {label} kubelet {k} 0000000000000000"));
            lines.push(format!(
                "fd {label} init 1 3 02000002 aaa anon_inode:[eventpoll]"
            ));
            lines.push(format!("fd {label} init 1 4 02000000 bbb pipe:[77]"));
            lines.push(format!("fd {label} containerd {c} 1 01 ccc pipe:[77]"));
            lines.push(format!(
                "fd {label} containerd {c} 4 02000002 ddd anon_inode:[eventpoll]"
            ));
            lines.push(format!(
                "fd {label} kubelet {k} 3 02 aaa anon_inode:[eventpoll]"
            ));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let why = check_descriptors_and_masks(&reports(&console(&refs))).unwrap_err();
        // The kubelet's fd 3 is the init's epoll (same fdinfo, flags without O_CLOEXEC).
        assert!(
            why.contains("kubelet (pid 200, boot) holds the init's anon_inode:[eventpoll] as fd 3"),
            "{why}"
        );
        assert!(!why.contains("containerd (pid"), "{why}");

        let clean: Vec<&str> = refs
            .iter()
            .copied()
            .filter(|l| !l.starts_with("fd ") || !l.contains(" kubelet "))
            .chain([
                "fd boot kubelet 200 3 02000002 eee socket:[9]",
                "fd kubelet-restarted kubelet 201 3 02000002 eee socket:[9]",
                "fd containerd-restarted kubelet 201 3 02000002 eee socket:[9]",
            ])
            .collect();
        assert_eq!(
            check_descriptors_and_masks(&reports(&console(&clean))),
            Ok(())
        );

        // The Go runtime's own mask on the main thread is not inherited.
        let go_main: Vec<String> = clean
            .iter()
            .map(|l| l.replace("SigBlk: 0000000000000000", "SigBlk: fffffffc3bba2800"))
            .collect();
        let go_main: Vec<&str> = go_main.iter().map(String::as_str).collect();
        assert_eq!(
            check_descriptors_and_masks(&reports(&console(&go_main))),
            Ok(())
        );

        let blocked: Vec<String> = clean
            .iter()
            .map(|l| {
                l.replace(
                    "threads boot kubelet 200 0000000000000000",
                    "threads boot kubelet 200 0000000000010000 0000000000010002",
                )
                .replace("SigIgn: 0000000000000000", "SigIgn: 0000000000001000")
            })
            .collect();
        let blocked: Vec<&str> = blocked.iter().map(String::as_str).collect();
        let why = check_descriptors_and_masks(&reports(&console(&blocked))).unwrap_err();
        assert!(
            why.contains("kubelet (boot) was started with signals blocked: 0000000000010000"),
            "{why}"
        );
        assert!(why.contains("containerd (boot) ignores signals"), "{why}");
    }

    #[test]
    fn host_processes_allow_pods_and_a_passing_helper() {
        let bin: Result<BTreeSet<String>, String> = Ok([
            "init",
            "containerd",
            "kubelet",
            "runc",
            "containerd-shim-runc-v2",
        ]
        .map(String::from)
        .into());
        let host = "pidns=pid:[1] mntns=mnt:[1] cgroup=0::/";
        let pod = "pidns=pid:[1] mntns=mnt:[9] cgroup=0::/kubepods/besteffort/pod1/c1";
        let mut lines = Vec::new();
        for sample in ["1", "2"] {
            lines.push(format!("proc {sample} 1 {host} exe=/bin/init"));
            lines.push(format!("proc {sample} 50 {host} exe=/bin/containerd"));
            lines.push(format!("proc {sample} 60 {host} exe=/bin/kubelet"));
            lines.push(format!(
                "proc {sample} 70 {host} exe=/bin/containerd-shim-runc-v2"
            ));
            lines.push(format!("proc {sample} 80 {pod} exe=/bin/busybox"));
            lines.push(format!(
                "proc {sample} 90 pidns=pid:[5] mntns=mnt:[5] cgroup=0::/x exe=/usr/bin/anything"
            ));
        }
        lines.push(format!("proc 1 95 {host} exe=/bin/runc"));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(
            check_host_processes(&reports(&console(&refs)), &bin),
            Ok(())
        );

        lines.push(format!("proc 2 95 {host} exe=/bin/runc"));
        lines.push(format!("proc 2 96 {host} exe=/usr/sbin/sshd"));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let why = check_host_processes(&reports(&console(&refs)), &bin).unwrap_err();
        assert!(
            why.contains("pid 95 /bin/runc") && why.contains("first sample"),
            "{why}"
        );
        assert!(why.contains("pid 96 /usr/sbin/sshd"), "{why}");
    }

    #[test]
    fn peers_and_settings_read_as_printed() {
        let lines = console(&[
            "sockmode system 600 0 0 socket",
            "sockmode bus 600 0 0 socket",
            "peer system-closed rc=1 kiosctl: restart-kubelet: /run/system.sock failed: errno 13 ",
            "peer bus-closed rc=1 kiosctl: restart-kubelet: /run/system.sock failed: errno 13 ",
            "peer system-open rc=0 kiosctl: restart-kubelet: sent to /run/system.sock ",
            "peer bus-open rc=0 kiosctl: restart-kubelet: sent to /run/system.sock ",
            "kubelet after-peers 200 200",
        ]);
        let mut text: String = lines
            .lines
            .iter()
            .map(|l| format!("{}\n", l.text))
            .collect();
        let why = check_peers(&lines, &reports(&lines)).unwrap_err();
        assert!(
            why.contains("no `system socket: refused client uid=1000`"),
            "{why}"
        );
        text.push_str("[ 13.0] kios: system socket: refused client uid=1000\n[ 13.1] kios: bus: refused client uid=1000\n");
        let full = Console::from_text(&text);
        assert_eq!(check_peers(&full, &reports(&full)), Ok(()));

        let settings: Vec<String> = HARDENING
            .iter()
            .map(|s| format!("sysctl {} {}", s.name, s.accepted[0]))
            .collect();
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        assert_eq!(check_kernel_settings(&reports(&console(&refs))), Ok(()));
        let off: Vec<String> = settings
            .iter()
            .map(|l| l.replace("dmesg_restrict 1", "dmesg_restrict 0"))
            .collect();
        let refs: Vec<&str> = off.iter().map(String::as_str).collect();
        let why = check_kernel_settings(&reports(&console(&refs))).unwrap_err();
        assert_eq!(why, "kernel/dmesg_restrict is 0, expected 1");
    }

    #[test]
    fn the_manifest_carries_the_tables() {
        let manifest = pod_manifest();
        assert!(manifest.contains("python*|perl*"));
        assert!(manifest.contains("kernel/dmesg_restrict kernel/kptr_restrict"));
        assert!(!manifest.contains('@'));
    }
}
