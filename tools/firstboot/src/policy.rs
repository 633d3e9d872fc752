//! Which configuration file goes where in `/etc`, and what makes it
//! acceptable. The same rules serve the first boot (files on the EFI
//! system partition) and `cargo kios build --config DIR`.
//!
//! Paths are relative to the configuration's root, which mirrors `/etc`
//! (`hostname`, `kubernetes/kubeconfig`, ...), matched without regard to
//! ASCII case (FAT keeps names as the operator's OS wrote them).
//! kubeadm's names (`kubernetes/kubelet.conf`, `bootstrap-kubelet.conf`)
//! are taken as kiOS's (`kubeconfig`, `bootstrap-kubeconfig`), which the
//! init reads, and their kubeadm paths link there.

use kios_abi::kubernetes;

/// The largest file taken: a kubeconfig with embedded certificates is
/// about 6 KB, a static pod a few KB.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// The most files one configuration may hold.
pub const MAX_FILES: usize = 64;

/// The top-level names a configuration may hold, for messages.
pub const TOP_LEVEL: &[&str] = &["hostname", "kubernetes", "containerd", "cni", "kios"];

/// What a file must look like to be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The node's name ([`crate::identity::valid_hostname`]).
    Hostname,
    /// A kubeconfig: text naming `apiVersion` and `clusters`.
    Kubeconfig,
    /// PEM certificates, and nothing else: no private key.
    Certificates,
    /// Any PEM block (registry client certificates and their keys).
    Pem,
    /// UTF-8 text without NUL bytes (YAML, TOML, JSON, the init's own formats).
    Text,
}

/// Where a taken file goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The directory in `/etc` (absolute), e.g. `/etc/kubernetes`.
    pub dir: &'static str,
    /// The file's name there: fixed, or the source's for a directory of
    /// files such as static pods.
    pub name: &'a str,
    pub check: Check,
    /// 0o600 for credentials, else 0o644.
    pub mode: u32,
    /// A kubeadm name to link to the file, e.g. `/etc/kubernetes/kubelet.conf`.
    pub alias: Option<&'static str>,
    /// What the node does when the file is refused.
    pub instead: &'static str,
}

/// Why a file is not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a path kiOS takes.
    Unknown,
    /// Over [`MAX_FILE_BYTES`].
    TooLarge,
    /// Its contents failed the check; the reason.
    Invalid(&'static str),
}

/// A file at a fixed place.
struct Fixed {
    source: &'static str,
    dir: &'static str,
    name: &'static str,
    check: Check,
    mode: u32,
    alias: Option<&'static str>,
    instead: &'static str,
}

const KEEPS_IMAGE: &str = "the image's file (if any) stays";
const NO_KUBECONFIG: &str = "the kubelet joins with what else is there, or runs standalone";

const FIXED: &[Fixed] = &[
    Fixed {
        source: "hostname",
        dir: "/etc",
        name: "hostname",
        check: Check::Hostname,
        mode: 0o644,
        alias: None,
        instead: "the node name comes from kios.hostname= or the machine-id",
    },
    Fixed {
        source: "kubernetes/kubeconfig",
        dir: kubernetes::DIR,
        name: "kubeconfig",
        check: Check::Kubeconfig,
        mode: 0o600,
        alias: None,
        instead: NO_KUBECONFIG,
    },
    Fixed {
        source: "kubernetes/kubelet.conf",
        dir: kubernetes::DIR,
        name: "kubeconfig",
        check: Check::Kubeconfig,
        mode: 0o600,
        alias: Some(KUBEADM_KUBECONFIG),
        instead: NO_KUBECONFIG,
    },
    Fixed {
        source: "kubernetes/bootstrap-kubeconfig",
        dir: kubernetes::DIR,
        name: "bootstrap-kubeconfig",
        check: Check::Kubeconfig,
        mode: 0o600,
        alias: None,
        instead: NO_KUBECONFIG,
    },
    Fixed {
        source: "kubernetes/bootstrap-kubelet.conf",
        dir: kubernetes::DIR,
        name: "bootstrap-kubeconfig",
        check: Check::Kubeconfig,
        mode: 0o600,
        alias: Some(KUBEADM_BOOTSTRAP_KUBECONFIG),
        instead: NO_KUBECONFIG,
    },
    Fixed {
        source: "kubernetes/pki/ca.crt",
        dir: "/etc/kubernetes/pki",
        name: "ca.crt",
        check: Check::Certificates,
        mode: 0o644,
        alias: None,
        instead: KEEPS_IMAGE,
    },
    Fixed {
        source: "kubernetes/kubelet-config.yaml",
        dir: kubernetes::DIR,
        name: "kubelet-config.yaml",
        check: Check::Text,
        mode: 0o644,
        alias: None,
        instead: "the image's kubelet config stays",
    },
    Fixed {
        source: "kubernetes/node-labels",
        dir: kubernetes::DIR,
        name: "node-labels",
        check: Check::Text,
        mode: 0o644,
        alias: None,
        instead: "no node labels",
    },
    Fixed {
        source: "kubernetes/node-ip",
        dir: kubernetes::DIR,
        name: "node-ip",
        check: Check::Text,
        mode: 0o644,
        alias: None,
        instead: "the kubelet picks the node IP",
    },
    Fixed {
        source: "kubernetes/credential-providers.yaml",
        dir: kubernetes::DIR,
        name: "credential-providers.yaml",
        check: Check::Text,
        mode: 0o644,
        alias: None,
        instead: "no image credential providers",
    },
    Fixed {
        source: "containerd/config.toml",
        dir: "/etc/containerd",
        name: "config.toml",
        check: Check::Text,
        mode: 0o644,
        alias: None,
        instead: "the image's containerd config stays",
    },
];

/// kubeadm's name for the node's kubeconfig, linked to kiOS's.
pub const KUBEADM_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
/// kubeadm's name for the bootstrap kubeconfig, linked to kiOS's.
pub const KUBEADM_BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";

/// A directory whose files are taken by suffix.
struct Files {
    source_dir: &'static str,
    dir: &'static str,
    suffixes: &'static [(&'static str, Check, u32)],
    instead: &'static str,
}

const FILES: &[Files] = &[
    Files {
        source_dir: "kubernetes/manifests",
        dir: kubernetes::STATIC_PODS,
        suffixes: &[
            (".yaml", Check::Text, 0o644),
            (".yml", Check::Text, 0o644),
            (".json", Check::Text, 0o644),
        ],
        instead: "no such static pod",
    },
    Files {
        // Client certificates a kubeconfig names by path.
        source_dir: "kubernetes/pki",
        dir: "/etc/kubernetes/pki",
        suffixes: &[
            (".crt", Check::Pem, 0o644),
            (".pem", Check::Pem, 0o600),
            (".key", Check::Pem, 0o600),
        ],
        instead: KEEPS_IMAGE,
    },
    Files {
        source_dir: "cni/net.d",
        dir: "/etc/cni/net.d",
        suffixes: &[
            (".conf", Check::Text, 0o644),
            (".conflist", Check::Text, 0o644),
            (".json", Check::Text, 0o644),
        ],
        instead: "the image's CNI config stays",
    },
    Files {
        // The time-sync pod's NTP servers (chronyd's `sourcedir`).
        source_dir: "kios/time-sources",
        dir: "/etc/kios/time-sources",
        suffixes: &[(".sources", Check::Text, 0o644)],
        instead: "the image's time sources stay",
    },
];

/// containerd's per-registry directories (`containerd/certs.d/<host>/`):
/// `hosts.toml` and the certificates it names.
const CERTS_D: &str = "containerd/certs.d/";
const CERTS_D_DIR: &str = "/etc/containerd/certs.d";
const CERTS_D_FILES: &[(&str, Check, u32)] = &[
    (".toml", Check::Text, 0o644),
    (".crt", Check::Pem, 0o644),
    (".cert", Check::Pem, 0o644),
    (".pem", Check::Pem, 0o644),
    (".key", Check::Pem, 0o600),
];

/// Where the file at `source` (relative, `/`-separated) goes, or
/// [`Refusal::Unknown`]. `host_dir` receives the registry directory of a
/// `containerd/certs.d/<host>/<file>`, which [`Placement::dir`] cannot
/// name statically; see [`Placement::target`].
pub fn place(source: &str) -> Result<Placement<'_>, Refusal> {
    for fixed in FIXED {
        if source.eq_ignore_ascii_case(fixed.source) {
            return Ok(Placement {
                dir: fixed.dir,
                name: fixed.name,
                check: fixed.check,
                mode: fixed.mode,
                alias: fixed.alias,
                instead: fixed.instead,
            });
        }
    }
    let (parent, name) = source.rsplit_once('/').ok_or(Refusal::Unknown)?;
    if !plain_name(name) {
        return Err(Refusal::Unknown);
    }
    for files in FILES {
        if parent.eq_ignore_ascii_case(files.source_dir) {
            let (_, check, mode) = by_suffix(name, files.suffixes)?;
            return Ok(Placement {
                dir: files.dir,
                name,
                check,
                mode,
                alias: None,
                instead: files.instead,
            });
        }
    }
    if let Some(host) = strip_prefix_ignore_case(parent, CERTS_D) {
        if plain_name(host) {
            let (_, check, mode) = by_suffix(name, CERTS_D_FILES)?;
            return Ok(Placement {
                dir: CERTS_D_DIR,
                name: source_after(source, CERTS_D),
                check,
                mode,
                alias: None,
                instead: "containerd has no such registry setting",
            });
        }
    }
    Err(Refusal::Unknown)
}

impl Placement<'_> {
    /// The file's absolute path in `/etc`, written to `out` (a `Text`).
    pub fn target<const N: usize>(&self, out: &mut crate::text::Text<N>) {
        out.clear();
        out.push(self.dir).push("/").push(self.name);
    }
}

/// Whether a directory on the source may hold files taken (so the walk
/// descends into it): a prefix of some taken path.
pub fn known_dir(source: &str) -> bool {
    let known = [
        "kubernetes",
        "kubernetes/manifests",
        "kubernetes/pki",
        "containerd",
        "containerd/certs.d",
        "cni",
        "cni/net.d",
        "kios",
        "kios/time-sources",
    ];
    if known.iter().any(|dir| source.eq_ignore_ascii_case(dir)) {
        return true;
    }
    strip_prefix_ignore_case(source, CERTS_D).is_some_and(plain_name)
}

/// Checks a file's contents against its placement's rule.
pub fn validate(check: Check, contents: &[u8]) -> Result<(), Refusal> {
    if contents.len() > MAX_FILE_BYTES {
        return Err(Refusal::TooLarge);
    }
    match check {
        Check::Hostname => crate::identity::valid_hostname(contents)
            .map(|_| ())
            .map_err(Refusal::Invalid),
        Check::Text => text(contents).map(|_| ()),
        Check::Kubeconfig => {
            let text = text(contents)?;
            for key in ["apiVersion", "clusters"] {
                if !has_top_level_key(text, key) {
                    return Err(Refusal::Invalid(if key == "apiVersion" {
                        "not a kubeconfig (no apiVersion)"
                    } else {
                        "not a kubeconfig (no clusters)"
                    }));
                }
            }
            Ok(())
        }
        Check::Certificates => {
            let text = text(contents)?;
            if text.contains("PRIVATE KEY") {
                return Err(Refusal::Invalid(
                    "holds a private key, which a CA file must not",
                ));
            }
            match text.find("-----BEGIN CERTIFICATE-----") {
                Some(begin) if text[begin..].contains("-----END CERTIFICATE-----") => Ok(()),
                _ => Err(Refusal::Invalid(
                    "not a PEM certificate (no -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)",
                )),
            }
        }
        Check::Pem => {
            let text = text(contents)?;
            match text.find("-----BEGIN ") {
                Some(begin) if text[begin..].contains("-----END ") => Ok(()),
                _ => Err(Refusal::Invalid("not PEM (no -----BEGIN ... -----END)")),
            }
        }
    }
}

/// Non-empty UTF-8 without NUL bytes.
fn text(contents: &[u8]) -> Result<&str, Refusal> {
    if contents.is_empty() {
        return Err(Refusal::Invalid("empty"));
    }
    if contents.contains(&0) {
        return Err(Refusal::Invalid("not text (NUL bytes)"));
    }
    core::str::from_utf8(contents).map_err(|_| Refusal::Invalid("not text (not UTF-8)"))
}

/// `key:` at the start of a line (YAML) or `"key"` anywhere (JSON, which
/// is YAML too).
fn has_top_level_key(text: &str, key: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    }) || text
        .match_indices(key)
        .any(|(at, _)| text[..at].ends_with('"') && text[at + key.len()..].starts_with('"'))
}

/// A file or directory name kiOS takes: letters, digits, `.`, `_`, `-`,
/// not starting with a dot, at most 100 bytes.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn by_suffix(
    name: &str,
    suffixes: &'static [(&'static str, Check, u32)],
) -> Result<(&'static str, Check, u32), Refusal> {
    suffixes
        .iter()
        .copied()
        .find(|(suffix, _, _)| {
            name.len() > suffix.len()
                && name.as_bytes()[name.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        })
        .ok_or(Refusal::Unknown)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn source_after<'a>(source: &'a str, prefix: &str) -> &'a str {
    source.get(prefix.len()..).unwrap_or(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Text;

    fn target(source: &str) -> Result<String, Refusal> {
        let placement = place(source)?;
        let mut out = Text::<256>::new();
        placement.target(&mut out);
        Ok(out.as_str().to_string())
    }

    #[test]
    fn todays_names_and_kubeadms_land_where_the_init_reads() {
        for (source, expected) in [
            ("hostname", "/etc/hostname"),
            ("kubernetes/kubeconfig", "/etc/kubernetes/kubeconfig"),
            ("kubernetes/kubelet.conf", "/etc/kubernetes/kubeconfig"),
            (
                "kubernetes/bootstrap-kubeconfig",
                "/etc/kubernetes/bootstrap-kubeconfig",
            ),
            (
                "kubernetes/bootstrap-kubelet.conf",
                "/etc/kubernetes/bootstrap-kubeconfig",
            ),
            ("kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.crt"),
            (
                "kubernetes/pki/client.key",
                "/etc/kubernetes/pki/client.key",
            ),
            ("kubernetes/node-labels", "/etc/kubernetes/node-labels"),
            ("kubernetes/node-ip", "/etc/kubernetes/node-ip"),
            (
                "kubernetes/kubelet-config.yaml",
                "/etc/kubernetes/kubelet-config.yaml",
            ),
            (
                "kubernetes/manifests/web.yaml",
                "/etc/kubernetes/manifests/web.yaml",
            ),
            ("containerd/config.toml", "/etc/containerd/config.toml"),
            (
                "containerd/certs.d/registry.example.com/hosts.toml",
                "/etc/containerd/certs.d/registry.example.com/hosts.toml",
            ),
            (
                "cni/net.d/10-flannel.conflist",
                "/etc/cni/net.d/10-flannel.conflist",
            ),
            (
                "kios/time-sources/site.sources",
                "/etc/kios/time-sources/site.sources",
            ),
            // FAT keeps the case the operator's OS wrote.
            ("Kubernetes/Kubelet.conf", "/etc/kubernetes/kubeconfig"),
            ("HOSTNAME", "/etc/hostname"),
        ] {
            assert_eq!(target(source).as_deref(), Ok(expected), "{source}");
        }
        assert_eq!(
            place("kubernetes/kubelet.conf").unwrap().alias,
            Some("/etc/kubernetes/kubelet.conf")
        );
        assert_eq!(place("kubernetes/kubeconfig").unwrap().alias, None);
        assert_eq!(place("kubernetes/kubeconfig").unwrap().mode, 0o600);
        assert_eq!(place("kubernetes/pki/client.key").unwrap().mode, 0o600);
        assert_eq!(
            place("kubernetes/pki/ca.crt").unwrap().check,
            Check::Certificates
        );
    }

    #[test]
    fn anything_else_is_unknown() {
        for source in [
            "machine-id",
            "passwd",
            "README.txt",
            "kubernetes/admin.conf",
            "kubernetes/manifests/notes.txt",
            "kubernetes/manifests/.hidden.yaml",
            "kubernetes/manifests/sub/pod.yaml",
            "kubernetes/manifests/a b.yaml",
            "cni/net.d/plugin",
            "containerd/certs.d/host/sub/hosts.toml",
            "containerd/certs.d/../hosts.toml",
            "containerd/certs.d/.x/hosts.toml",
            "containerd/certs.d/hosts.toml",
            "kubernetes/pki/ca.srl",
            // The init's own files under /etc/kios are the image's.
            "kios/modules",
            "kios/udhcpc.script",
            "kios/time-sources/servers.conf",
        ] {
            assert_eq!(place(source), Err(Refusal::Unknown), "{source}");
        }
        assert!(known_dir("kubernetes"));
        assert!(known_dir("Containerd/certs.d/registry.local"));
        assert!(!known_dir("containerd/certs.d/a/b"));
        assert!(!known_dir("systemd"));
        assert!(known_dir("KIOS/time-sources"));
        assert!(!known_dir("kubernetes/manifests/sub"));
    }

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n  name: c\n";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn kubeconfigs_must_name_api_version_and_clusters() {
        assert_eq!(validate(Check::Kubeconfig, KUBECONFIG.as_bytes()), Ok(()));
        let json = r#"{"apiVersion": "v1", "kind": "Config", "clusters": []}"#;
        assert_eq!(validate(Check::Kubeconfig, json.as_bytes()), Ok(()));
        assert_eq!(
            validate(Check::Kubeconfig, b"kind: Config\nclusters: []\n"),
            Err(Refusal::Invalid("not a kubeconfig (no apiVersion)"))
        );
        assert_eq!(
            validate(Check::Kubeconfig, b"apiVersion: v1\n  clusters: []\n"),
            Err(Refusal::Invalid("not a kubeconfig (no clusters)"))
        );
        assert_eq!(
            validate(Check::Kubeconfig, b"\x7fELF\x02\x01\x01\0\0"),
            Err(Refusal::Invalid("not text (NUL bytes)"))
        );
        assert_eq!(
            validate(Check::Kubeconfig, b"\xff\xfeapiVersion"),
            Err(Refusal::Invalid("not text (not UTF-8)"))
        );
        assert_eq!(
            validate(Check::Kubeconfig, b""),
            Err(Refusal::Invalid("empty"))
        );
    }

    #[test]
    fn a_ca_must_be_pem_certificates_without_a_key() {
        assert_eq!(validate(Check::Certificates, CERT.as_bytes()), Ok(()));
        assert!(matches!(
            validate(Check::Certificates, b"MIIBdummyDER"),
            Err(Refusal::Invalid(reason)) if reason.starts_with("not a PEM certificate")
        ));
        assert!(validate(Check::Certificates, b"-----BEGIN CERTIFICATE-----\nMIIB\n").is_err());
        let with_key = format!("{CERT}-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n");
        assert!(matches!(
            validate(Check::Certificates, with_key.as_bytes()),
            Err(Refusal::Invalid(reason)) if reason.contains("private key")
        ));
        assert_eq!(
            validate(
                Check::Pem,
                b"-----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----\n"
            ),
            Ok(())
        );
    }

    #[test]
    fn hostnames_and_sizes() {
        assert_eq!(validate(Check::Hostname, b"worker-1\n"), Ok(()));
        assert!(matches!(
            validate(Check::Hostname, b"worker_1\n"),
            Err(Refusal::Invalid(reason)) if reason.contains("DNS-1123")
        ));
        let big = vec![b'a'; MAX_FILE_BYTES + 1];
        assert_eq!(validate(Check::Text, &big), Err(Refusal::TooLarge));
        assert_eq!(validate(Check::Text, &big[..MAX_FILE_BYTES]), Ok(()));
    }
}
