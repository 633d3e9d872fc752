//! The CA bundle containerd (Go's crypto/x509) trusts when it pulls an
//! image over TLS: Debian's `ca-certificates` certificates, concatenated
//! into `/etc/ssl/certs/ca-certificates.crt` as `update-ca-certificates`
//! does at install time (that script, and the openssl it runs, never run
//! here: the bundle is made at build time, the same bytes every build).
//!
//! A site's own CAs do not go in this file: containerd takes a registry's
//! CA from `/etc/containerd/certs.d/<registry>/` (docs/configuration.md).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use walkdir::WalkDir;

/// The BOM component the certificates come from.
pub const CA_CERTIFICATES_COMPONENT: &str = "ca-certificates";
/// Where Go's crypto/x509 (containerd, the kubelet) looks first on Linux.
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the package keeps its certificates, one PEM file each.
const CERTIFICATES_DIR: &str = "usr/share/ca-certificates";

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The bundle: every `*.crt` under the package tree's
/// `usr/share/ca-certificates`, in byte order of their paths relative to
/// it (as the package's `ca-certificates.conf` lists them), each ending
/// in a newline. Fails on a file that is not a PEM certificate (a
/// private key included), and when there are none.
pub fn ca_bundle(package_tree: &Path) -> Result<Vec<u8>> {
    let dir = package_tree.join(CERTIFICATES_DIR);
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    for entry in WalkDir::new(&dir).follow_links(true) {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().is_file() && path.extension().is_some_and(|ext| ext == "crt") {
            let relative = path
                .strip_prefix(&dir)
                .context("walkdir left its root")?
                .to_path_buf();
            files.push((relative, path.to_path_buf()));
        }
    }
    if files.is_empty() {
        bail!("{} holds no *.crt certificates", dir.display());
    }
    files.sort_by(|(a, _), (b, _)| a.as_os_str().cmp(b.as_os_str()));
    let mut bundle = Vec::new();
    for (relative, path) in files {
        let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        check_certificates(&pem)
            .with_context(|| format!("{} in the CA bundle", relative.display()))?;
        bundle.extend_from_slice(&pem);
        if !pem.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    Ok(bundle)
}

/// PEM certificates and nothing else of PEM's (no key): the file a
/// TLS client would read as trust anchors.
fn check_certificates(pem: &[u8]) -> Result<()> {
    let text = std::str::from_utf8(pem).context("not UTF-8 text")?;
    let mut certificates = 0;
    let mut open = false;
    for line in text.lines().map(str::trim_end) {
        if line == BEGIN && !open {
            open = true;
        } else if line == END && open {
            open = false;
            certificates += 1;
        } else if line.starts_with("-----") {
            bail!("holds `{line}`, which is not a certificate's PEM boundary");
        }
    }
    if open {
        bail!("a certificate has no `{END}` line");
    }
    if certificates == 0 {
        bail!("holds no PEM certificate (`{BEGIN}`)");
    }
    Ok(())
}

/// The number of certificates in a bundle.
pub fn certificate_count(bundle: &[u8]) -> usize {
    String::from_utf8_lossy(bundle)
        .lines()
        .filter(|line| line.trim_end() == BEGIN)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> String {
        format!("{BEGIN}\nMIIB{name}\n{END}\n")
    }

    fn tree(name: &str, files: &[(&str, String)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("kios-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, contents) in files {
            let file = root.join(CERTIFICATES_DIR).join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, contents).unwrap();
        }
        root
    }

    #[test]
    fn concatenates_in_path_order_with_a_newline_after_each() {
        let root = tree(
            "order",
            &[
                ("mozilla/b.crt", cert("B")),
                // No final newline: one is added, as update-ca-certificates does.
                ("mozilla/A.crt", cert("A").trim_end().to_string()),
                ("local/z.crt", cert("Z")),
                ("mozilla/README", "not a certificate".to_string()),
            ],
        );
        let bundle = ca_bundle(&root).unwrap();
        assert_eq!(
            String::from_utf8(bundle.clone()).unwrap(),
            cert("Z") + &cert("A") + &cert("B")
        );
        assert_eq!(certificate_count(&bundle), 3);
        // The same bytes from the same files, whatever order the directory lists.
        assert_eq!(ca_bundle(&root).unwrap(), bundle);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn refuses_keys_broken_pem_and_an_empty_package() {
        let key = "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n".to_string();
        let root = tree("key", &[("a.crt", cert("A")), ("b.crt", key)]);
        let error = format!("{:#}", ca_bundle(&root).unwrap_err());
        assert!(
            error.contains("b.crt") && error.contains("PRIVATE KEY"),
            "{error}"
        );
        std::fs::remove_dir_all(root).unwrap();

        let root = tree("open", &[("a.crt", format!("{BEGIN}\nMII\n"))]);
        assert!(ca_bundle(&root).is_err());
        std::fs::remove_dir_all(root).unwrap();

        let root = tree("none", &[("README", "x".to_string())]);
        let error = format!("{:#}", ca_bundle(&root).unwrap_err());
        assert!(error.contains("no *.crt"), "{error}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
