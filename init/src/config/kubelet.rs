//! The kubelet's and the runtime's command lines, computed from the files
//! in `/etc/kubernetes` at every start (a changed file takes effect on the
//! next restart).

use crate::config::labels;
use crate::config::node_ip;
use crate::log;
use crate::log::{file_unavailable, Level, Shown};
use crate::sys::{CommandArgv, Sys};

use kios_abi::image;
use kios_abi::kubernetes::{
    BOOTSTRAPPED_KUBECONFIG, BOOTSTRAP_KUBECONFIG, CLUSTER_CA, CONFIG, CREDENTIAL_PROVIDERS,
    CREDENTIAL_PROVIDER_BIN_DIR, KUBECONFIG, NODE_IP, NODE_LABELS, STATIC_PODS,
};

const RUNTIME_ENDPOINT: &str = concat!("unix://", kios_abi::runtime_socket!());

/// Small files (labels, node IP) are read whole up to this size.
const SMALL_FILE_MAX: usize = 8192;

/// The runtime's command line: containerd reads /etc/containerd/config.toml itself.
pub fn runtime_argv() -> CommandArgv {
    let mut argv = CommandArgv::new();
    // A one-word argv always fits.
    let _ = argv.push(&[image::RUNTIME]);
    argv
}

/// Whether an optional config file is there to pass on; logs what the
/// init does instead when it is not.
fn usable<S: Sys>(sys: &mut S, path: &str, instead: &str) -> bool {
    match sys.file_size(path) {
        Ok(0) => {
            log!(sys, Level::Warning, "{}: empty, {}", path, instead);
            false
        }
        Ok(_) => true,
        Err(errno) => {
            file_unavailable(sys, path, errno, instead);
            false
        }
    }
}

/// Reads a small file whole; None (with one log line) if it is missing,
/// unreadable or too big to be what it claims.
fn read_small<'b, S: Sys>(
    sys: &mut S,
    path: &str,
    buf: &'b mut [u8],
    instead: &str,
) -> Option<&'b [u8]> {
    match sys.read_file(path, buf) {
        Ok(read) if read.truncated => {
            log!(
                sys,
                Level::Warning,
                "{}: larger than {} bytes, {}",
                path,
                buf.len(),
                instead
            );
            None
        }
        Ok(read) => Some(&buf[..read.len]),
        Err(errno) => {
            file_unavailable(sys, path, errno, instead);
            None
        }
    }
}

/// The minor version (1.N) of the kubelet the image ships: bom.toml's
/// `release` for it, through build.rs. Flags come and go between releases.
const KUBELET_MINOR: u16 = minor_version(env!("KIOS_KUBELET_RELEASE"));

/// N of "1.N" or "1.N.P"; anything else stops the init's build.
const fn minor_version(release: &str) -> u16 {
    let bytes = release.as_bytes();
    assert!(
        bytes.len() > 2 && bytes[0] == b'1' && bytes[1] == b'.',
        "the kubelet's release in bom.toml is not 1.N.P"
    );
    let mut minor: u16 = 0;
    let mut at = 2;
    while at < bytes.len() && bytes[at] != b'.' {
        assert!(
            bytes[at].is_ascii_digit() && minor < 1000,
            "the kubelet's release in bom.toml is not 1.N.P"
        );
        minor = minor * 10 + (bytes[at] - b'0') as u16;
        at += 1;
    }
    minor
}

/// Before 1.24 the kubelet ran Docker unless told otherwise; 1.27 removed
/// the flag. Credential provider plugins were alpha (behind a gate that
/// 1.28 removed) until 1.24.
const FIRST_CRI_ONLY_MINOR: u16 = 24;

/// Before 1.21 the `IPv6DualStack` gate is off and the kubelet exits on a
/// dual-stack `--node-ip`.
const FIRST_DUAL_STACK_MINOR: u16 = 21;

/// The kubelet's command line from what `/etc/kubernetes` holds.
pub fn kubelet_argv<S: Sys>(sys: &mut S) -> CommandArgv {
    kubelet_argv_for(sys, KUBELET_MINOR)
}

/// The command line for kubelet 1.`minor`.
fn kubelet_argv_for<S: Sys>(sys: &mut S, minor: u16) -> CommandArgv {
    let mut argv = CommandArgv::new();
    push_flag(sys, &mut argv, &[image::KUBELET]);
    if minor < FIRST_CRI_ONLY_MINOR {
        push_flag(sys, &mut argv, &["--container-runtime=remote"]);
    }
    push_flag(
        sys,
        &mut argv,
        &["--container-runtime-endpoint=", RUNTIME_ENDPOINT],
    );

    if usable(
        sys,
        CONFIG,
        concat!(
            "using the kubelet's defaults and static pods from ",
            kios_abi::static_pods!()
        ),
    ) {
        push_flag(sys, &mut argv, &["--config=", CONFIG]);
    } else {
        push_flag(sys, &mut argv, &["--pod-manifest-path=", STATIC_PODS]);
    }

    let has_kubeconfig = sys.file_size(KUBECONFIG).is_ok_and(|size| size > 0);
    let has_bootstrap = sys
        .file_size(BOOTSTRAP_KUBECONFIG)
        .is_ok_and(|size| size > 0);
    if has_bootstrap {
        push_flag(
            sys,
            &mut argv,
            &["--bootstrap-kubeconfig=", BOOTSTRAP_KUBECONFIG],
        );
    }
    match (has_kubeconfig, has_bootstrap) {
        (true, _) => push_flag(sys, &mut argv, &["--kubeconfig=", KUBECONFIG]),
        (false, true) => push_flag(sys, &mut argv, &["--kubeconfig=", BOOTSTRAPPED_KUBECONFIG]),
        (false, false) => log!(
            sys,
            Level::Info,
            "{} and {}: not present, kubelet runs standalone",
            KUBECONFIG,
            BOOTSTRAP_KUBECONFIG
        ),
    }
    if has_kubeconfig || has_bootstrap {
        push_cluster_auth(sys, &mut argv);
    }

    if usable(sys, CREDENTIAL_PROVIDERS, "no image credential providers") {
        if minor < FIRST_CRI_ONLY_MINOR {
            // Merged with the config file's gates by the kubelet.
            push_flag(
                sys,
                &mut argv,
                &["--feature-gates=KubeletCredentialProviders=true"],
            );
        }
        push_flag(
            sys,
            &mut argv,
            &["--image-credential-provider-config=", CREDENTIAL_PROVIDERS],
        );
        push_flag(
            sys,
            &mut argv,
            &[
                "--image-credential-provider-bin-dir=",
                CREDENTIAL_PROVIDER_BIN_DIR,
            ],
        );
    }

    push_node_ip(sys, &mut argv, minor);
    push_node_labels(sys, &mut argv);
    argv
}

/// Appends one flag; a full command line drops it with one log line.
/// The kubelet's config is read whole for `shutdownGracePeriod` up to this size.
const CONFIG_MAX: usize = 16384;
/// The longest shutdown grace period taken from the kubelet's config.
const GRACE_MAX_MS: u64 = 3_600_000;

/// The kubelet's `shutdownGracePeriod` in ms, read from a top-level line
/// of its config file; None (logged when the line is there but unusable)
/// when it has none, so graceful node shutdown is off.
pub fn shutdown_grace_period_ms<S: Sys>(sys: &mut S) -> Option<u64> {
    let mut buf = [0u8; CONFIG_MAX];
    let config = read_small(sys, CONFIG, &mut buf, "no kubelet shutdown grace period")?;
    let value = crate::text::split_bytes(config, b'\n').find_map(|line| {
        let value = line.strip_prefix(b"shutdownGracePeriod:")?;
        let value = crate::text::split_bytes(value, b'#')
            .next()
            .unwrap_or_default();
        Some(value.trim_ascii())
    })?;
    let unquoted = match value {
        [b'"', inner @ .., b'"'] | [b'\'', inner @ .., b'\''] => inner,
        _ => value,
    };
    match go_duration_ms(unquoted) {
        Some(ms) if ms <= GRACE_MAX_MS => (ms > 0).then_some(ms),
        _ => {
            log!(
                sys,
                Level::Warning,
                "{}: shutdownGracePeriod {} is not a duration up to 1h, ignored",
                CONFIG,
                Shown(value)
            );
            None
        }
    }
}

/// A Go duration made of whole numbers with units h, m, s and ms
/// ("30s", "1m30s", "500ms", "0"), as the kubelet's config writes them.
fn go_duration_ms(text: &[u8]) -> Option<u64> {
    if text == b"0" {
        return Some(0);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let (number, after) = rest.split_at(digits);
        let number = number
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        let (unit_ms, after) = match after {
            [b'm', b's', tail @ ..] => (1, tail),
            [b'h', tail @ ..] => (3_600_000, tail),
            [b'm', tail @ ..] => (60_000, tail),
            [b's', tail @ ..] => (1000, tail),
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(unit_ms)?)?;
        rest = after;
    }
    (!text.is_empty()).then_some(total)
}

/// A joined node's kubelet API (logs, exec, port-forward, metrics) as
/// kubeadm sets it up: callers prove themselves with a certificate the
/// cluster's CA signed (the API server) or a token the API server vouches
/// for, and the API server authorizes each request. Standalone, or
/// without the CA, the API stays closed (the config refuses anonymous
/// callers and checks no one).
fn push_cluster_auth<S: Sys>(sys: &mut S, argv: &mut CommandArgv) {
    if usable(sys, CLUSTER_CA, "no logs, exec or port-forward") {
        push_flag(sys, argv, &["--client-ca-file=", CLUSTER_CA]);
        push_flag(sys, argv, &["--authentication-token-webhook"]);
        push_flag(sys, argv, &["--authorization-mode=Webhook"]);
    }
}

fn push_flag<S: Sys>(sys: &mut S, argv: &mut CommandArgv, parts: &[&str]) {
    if argv.push(parts).is_err() {
        log!(
            sys,
            Level::Err,
            "kubelet command line full, dropped {}",
            parts[0]
        );
    }
}

fn push_node_ip<S: Sys>(sys: &mut S, argv: &mut CommandArgv, minor: u16) {
    let mut buf = [0u8; SMALL_FILE_MAX];
    let Some(content) = read_small(sys, NODE_IP, &mut buf, "kubelet picks the node IP") else {
        return;
    };
    match node_ip::parse(content, minor >= FIRST_DUAL_STACK_MINOR) {
        Ok((ip, dropped)) => {
            if let Some(address) = dropped {
                log!(
                    sys,
                    Level::Warning,
                    "{}: dropped {}, kubelet 1.{} is single-stack",
                    NODE_IP,
                    address,
                    minor
                );
            }
            push_flag(sys, argv, &["--node-ip=", &ip]);
        }
        Err(reason) => log!(
            sys,
            Level::Warning,
            "{}: {}, kubelet picks the node IP",
            NODE_IP,
            reason
        ),
    }
}

fn push_node_labels<S: Sys>(sys: &mut S, argv: &mut CommandArgv) {
    let mut buf = [0u8; SMALL_FILE_MAX];
    let Some(content) = read_small(sys, NODE_LABELS, &mut buf, "no node labels") else {
        return;
    };
    let list = labels::parse_file(content, |label, reason| {
        log!(
            sys,
            Level::Warning,
            "node-labels: dropped invalid label {} ({})",
            Shown(label),
            reason
        );
    });
    if list.is_empty() {
        log!(sys, Level::Info, "{}: no valid labels", NODE_LABELS);
    } else {
        push_flag(sys, argv, &["--node-labels=", &list]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::sys::recording::RecordingSys;

    #[test]
    fn go_durations_as_kubelet_configs_write_them() {
        for (text, ms) in [
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("2m", 120_000),
            ("1s500ms", 1500),
            ("0", 0),
        ] {
            assert_eq!(go_duration_ms(text.as_bytes()), Some(ms), "{text}");
        }
        for bad in [
            "",
            "30",
            "s",
            "1.5s",
            "-1s",
            "30 s",
            "1d",
            "9999999999s",
            "30sec",
        ] {
            assert_eq!(go_duration_ms(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_shutdown_grace_period_comes_from_a_top_level_config_line() {
        let grace = |config: &str| {
            let mut sys = RecordingSys::new().with_file(CONFIG, config.as_bytes());
            (shutdown_grace_period_ms(&mut sys), sys.logs)
        };
        let config = "kind: KubeletConfiguration\nshutdownGracePeriod: 30s # total\nshutdownGracePeriodCriticalPods: 10s\n";
        assert_eq!(grace(config).0, Some(30_000));
        assert_eq!(grace("shutdownGracePeriod: \"1m\"\n").0, Some(60_000));
        assert_eq!(grace("kind: KubeletConfiguration\n").0, None);
        assert_eq!(grace("nested:\n  shutdownGracePeriod: 30s\n").0, None);
        assert_eq!(grace("shutdownGracePeriod: 0s\n").0, None);
        let (none, logs) = grace("shutdownGracePeriod: soon\n");
        assert_eq!(none, None);
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert!(logs[0].contains("shutdownGracePeriod soon is not a duration"));
        assert_eq!(grace("shutdownGracePeriod: 2h\n").0, None);
        let mut missing = RecordingSys::new();
        assert_eq!(shutdown_grace_period_ms(&mut missing), None);
    }

    fn argv_of(sys: &mut RecordingSys) -> Vec<String> {
        kubelet_argv(sys).iter().map(str::to_string).collect()
    }

    #[test]
    fn every_file_present_gives_every_flag() {
        let mut sys = RecordingSys::new()
            .with_file(CONFIG, b"kind: KubeletConfiguration\n")
            .with_file(KUBECONFIG, b"apiVersion: v1\n")
            .with_file(BOOTSTRAP_KUBECONFIG, b"apiVersion: v1\n")
            .with_file(NODE_IP, b"10.0.2.15\n")
            .with_file(NODE_LABELS, b"tier=node\nzone=a\n")
            .with_file(CREDENTIAL_PROVIDERS, b"kind: CredentialProviderConfig\n")
            .with_file(CLUSTER_CA, b"-----BEGIN CERTIFICATE-----\n");
        assert_eq!(
            argv_of(&mut sys),
            [
                "/bin/kubelet",
                "--container-runtime=remote",
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
                "--config=/etc/kubernetes/kubelet-config.yaml",
                "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubeconfig",
                "--kubeconfig=/etc/kubernetes/kubeconfig",
                "--client-ca-file=/etc/kubernetes/pki/ca.crt",
                "--authentication-token-webhook",
                "--authorization-mode=Webhook",
                "--feature-gates=KubeletCredentialProviders=true",
                "--image-credential-provider-config=/etc/kubernetes/credential-providers.yaml",
                "--image-credential-provider-bin-dir=/usr/libexec/kubernetes/credential-providers",
                "--node-ip=10.0.2.15",
                "--node-labels=tier=node,zone=a",
            ]
        );
        assert!(!sys
            .logs
            .iter()
            .any(|line| line.starts_with("Warning") || line.starts_with("Err")));
    }

    #[test]
    fn releases_are_read_as_their_minor_version() {
        assert_eq!(minor_version("1.20.2"), 20);
        assert_eq!(minor_version("1.33"), 33);
        assert_eq!(minor_version("1.5.0"), 5);
    }

    /// Each release's flags, from 1.20 (the built kubelet) to the newest:
    /// the Docker default and the credential provider gate end with 1.24.
    #[test]
    fn flags_follow_the_kubelets_release() {
        for (minor, runtime_flag, gate, node_ip) in [
            (20, true, true, "--node-ip=10.0.2.15"),
            (21, true, true, "--node-ip=10.0.2.15,fd00::15"),
            (23, true, true, "--node-ip=10.0.2.15,fd00::15"),
            (24, false, false, "--node-ip=10.0.2.15,fd00::15"),
            (26, false, false, "--node-ip=10.0.2.15,fd00::15"),
            (27, false, false, "--node-ip=10.0.2.15,fd00::15"),
            (34, false, false, "--node-ip=10.0.2.15,fd00::15"),
        ] {
            let mut sys = RecordingSys::new()
                .with_file(NODE_IP, b"10.0.2.15,fd00::15\n")
                .with_file(CONFIG, b"kind: KubeletConfiguration\n")
                .with_file(KUBECONFIG, b"apiVersion: v1\n")
                .with_file(CLUSTER_CA, b"-----BEGIN CERTIFICATE-----\n")
                .with_file(CREDENTIAL_PROVIDERS, b"kind: CredentialProviderConfig\n");
            let argv: Vec<String> = kubelet_argv_for(&mut sys, minor)
                .iter()
                .map(str::to_string)
                .collect();
            let has = |flag: &str| argv.iter().any(|arg| arg == flag);
            assert_eq!(has("--container-runtime=remote"), runtime_flag, "1.{minor}");
            assert!(has(node_ip), "1.{minor} lacks {node_ip}: {argv:?}");
            let dropped = sys.logs.iter().any(|line| {
                line.contains(
                    "/etc/kubernetes/node-ip: dropped fd00::15, kubelet 1.20 is single-stack",
                )
            });
            assert_eq!(dropped, minor == 20, "1.{minor}: {:?}", sys.logs);
            assert_eq!(
                has("--feature-gates=KubeletCredentialProviders=true"),
                gate,
                "1.{minor}"
            );
            for flag in [
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
                "--config=/etc/kubernetes/kubelet-config.yaml",
                "--kubeconfig=/etc/kubernetes/kubeconfig",
                "--client-ca-file=/etc/kubernetes/pki/ca.crt",
                "--image-credential-provider-config=/etc/kubernetes/credential-providers.yaml",
            ] {
                assert!(has(flag), "1.{minor} lacks {flag}: {argv:?}");
            }
        }
    }

    /// The kubelet's API opens to the cluster only on a joined node with
    /// the cluster's CA; without the CA it says what is missing.
    #[test]
    fn the_kubelets_api_opens_only_to_a_joined_nodes_cluster() {
        let auth = |argv: &[String]| {
            argv.iter()
                .filter(|arg| {
                    arg.starts_with("--client-ca-file")
                        || arg.starts_with("--authentication-token-webhook")
                        || arg.starts_with("--authorization-mode")
                })
                .count()
        };
        let mut standalone =
            RecordingSys::new().with_file(CLUSTER_CA, b"-----BEGIN CERTIFICATE-----\n");
        assert_eq!(auth(&argv_of(&mut standalone)), 0);

        let mut joined_without_ca = RecordingSys::new().with_file(BOOTSTRAP_KUBECONFIG, b"x");
        assert_eq!(auth(&argv_of(&mut joined_without_ca)), 0);
        assert!(joined_without_ca
            .logged("/etc/kubernetes/pki/ca.crt: not present, no logs, exec or port-forward"));

        let mut joined = RecordingSys::new()
            .with_file(BOOTSTRAP_KUBECONFIG, b"x")
            .with_file(CLUSTER_CA, b"-----BEGIN CERTIFICATE-----\n");
        assert_eq!(auth(&argv_of(&mut joined)), 3);
    }

    #[test]
    fn kubeconfig_alone_and_bootstrap_alone() {
        let mut only_kubeconfig = RecordingSys::new().with_file(KUBECONFIG, b"x");
        let argv = argv_of(&mut only_kubeconfig);
        assert!(argv.contains(&"--kubeconfig=/etc/kubernetes/kubeconfig".to_string()));
        assert!(!argv
            .iter()
            .any(|arg| arg.starts_with("--bootstrap-kubeconfig")));

        let mut only_bootstrap = RecordingSys::new().with_file(BOOTSTRAP_KUBECONFIG, b"x");
        let argv = argv_of(&mut only_bootstrap);
        assert!(argv
            .contains(&"--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubeconfig".to_string()));
        assert!(argv.contains(&"--kubeconfig=/var/lib/kubelet/kubeconfig".to_string()));
    }

    #[test]
    fn no_files_at_all_is_a_standalone_kubelet_with_static_pods() {
        let mut sys = RecordingSys::new();
        assert_eq!(
            argv_of(&mut sys),
            [
                "/bin/kubelet",
                "--container-runtime=remote",
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
                "--pod-manifest-path=/etc/kubernetes/manifests",
            ]
        );
        assert!(sys.logged("kubelet runs standalone"));
        assert!(sys.logged("/etc/kubernetes/node-ip: not present, kubelet picks the node IP"));
        assert!(sys.logged("/etc/kubernetes/node-labels: not present, no node labels"));
    }

    #[test]
    fn empty_files_are_skipped_with_a_warning() {
        let mut sys = RecordingSys::new()
            .with_file(CONFIG, b"")
            .with_file(KUBECONFIG, b"")
            .with_file(NODE_IP, b"")
            .with_file(NODE_LABELS, b"");
        let argv = argv_of(&mut sys);
        assert!(argv.contains(&"--pod-manifest-path=/etc/kubernetes/manifests".to_string()));
        assert!(!argv
            .iter()
            .any(|arg| arg.starts_with("--kubeconfig") || arg.starts_with("--node-")));
        assert!(sys.logged("Warning: /etc/kubernetes/kubelet-config.yaml: empty"));
        assert!(sys.logged("Warning: /etc/kubernetes/node-ip: empty, kubelet picks the node IP"));
        assert!(sys.logged("Info: /etc/kubernetes/node-labels: no valid labels"));
    }

    #[test]
    fn huge_binary_and_malformed_files_never_reach_the_kubelet() {
        let huge = vec![b'a'; 100_000];
        let mut sys = RecordingSys::new()
            .with_file(NODE_IP, b"\x7fELF\x02\x01\xff\xfe\x00garbage")
            .with_file(NODE_LABELS, &huge);
        let argv = argv_of(&mut sys);
        assert!(!argv.iter().any(|arg| arg.starts_with("--node-")));
        assert!(
            sys.logged("Warning: /etc/kubernetes/node-ip: not UTF-8, kubelet picks the node IP")
        );
        assert!(sys.logged(
            "Warning: /etc/kubernetes/node-labels: larger than 8192 bytes, no node labels"
        ));

        let mut malformed = RecordingSys::new().with_file(NODE_IP, b"10.0.2.300\n");
        assert!(!argv_of(&mut malformed)
            .iter()
            .any(|arg| arg.starts_with("--node-ip")));
        assert!(malformed
            .logged("/etc/kubernetes/node-ip: not an IP address, kubelet picks the node IP"));
    }

    #[test]
    fn a_directory_where_a_file_should_be_is_reported() {
        let mut sys =
            RecordingSys::new().failing("stat /etc/kubernetes/kubelet-config.yaml", Errno::ISDIR);
        let argv = argv_of(&mut sys);
        assert!(argv.contains(&"--pod-manifest-path=/etc/kubernetes/manifests".to_string()));
        assert!(sys.logged("/etc/kubernetes/kubelet-config.yaml: unreadable (EISDIR (21))"));
    }

    #[test]
    fn invalid_labels_are_dropped_and_valid_ones_kept() {
        let mut sys =
            RecordingSys::new().with_file(NODE_LABELS, b"ok=1\nnode-role.kubernetes.io/master=\n");
        let argv = argv_of(&mut sys);
        assert_eq!(argv.last().unwrap(), "--node-labels=ok=1");
        assert!(sys.logged("dropped invalid label node-role.kubernetes.io/master= (kubernetes.io and k8s.io labels"));
    }
}
