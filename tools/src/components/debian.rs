//! Debian binary packages fetched with apt into the cache and extracted.
//!
//! `apt-get download` needs no root; the .deb is checked against the
//! SHA256 apt's signed package lists give, then unpacked with `dpkg-deb -x`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::host::arch::Arch;
use crate::host::cache::cache_subdir;
use crate::host::command::output_of;
use crate::host::fs::{persist_dir, scratch_dir_for, sha256_file};
use crate::host::packages::{lock_apt_lists, run_apt, AptLists};
use crate::host::progress::with_step;

/// One version of one binary package for one architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianPackage {
    pub name: String,
    pub version: String,
    /// The image's architecture (the cache directory it is kept under).
    pub arch: Arch,
    /// An `Architecture: all` package: apt lists it as `name:all`, and one
    /// .deb serves every architecture.
    pub all: bool,
}

impl DebianPackage {
    /// The architecture apt names the package by.
    fn apt_arch(&self) -> &'static str {
        if self.all {
            "all"
        } else {
            self.arch.debian_name()
        }
    }

    /// `name:arch=version`, the form apt-get and apt-cache accept.
    pub(crate) fn apt_spec(&self) -> String {
        format!("{}:{}={}", self.name, self.apt_arch(), self.version)
    }

    /// apt's own file-name form of the version (the epoch colon escaped).
    fn file_stem(&self) -> String {
        format!(
            "{}_{}_{}",
            self.name,
            self.version.replace(':', "%3a"),
            self.apt_arch()
        )
    }
}

/// Fetches the candidate version of `name` for `arch` and returns the
/// directory it is extracted into.
pub fn fetch_debian_package(name: &str, arch: Arch) -> Result<PathBuf> {
    fetch(&candidate(name, arch)?)
}

/// The version apt would install (refreshing the package lists once if
/// they do not know the package yet and we may do so).
pub fn candidate(name: &str, arch: Arch) -> Result<DebianPackage> {
    let spec = format!("{name}:{arch}");
    let version = match candidate_version(&spec)? {
        Some(version) => version,
        None if rustix::process::geteuid().is_root() => {
            {
                let _lists = lock_apt_lists(AptLists::Change)?;
                run_apt(Command::new("apt-get").arg("update"))?;
            }
            candidate_version(&spec)?
                .with_context(|| format!("apt knows no installable version of {spec}"))?
        }
        None => bail!(
            "apt knows no installable version of {spec}; \
             run `sudo apt-get update` (and for a foreign arch `sudo dpkg --add-architecture {arch}`)"
        ),
    };
    Ok(DebianPackage {
        name: name.to_string(),
        version,
        arch,
        all: false,
    })
}

fn candidate_version(spec: &str) -> Result<Option<String>> {
    let policy = apt_cache(&["policy", spec])?;
    Ok(parse_candidate(&policy))
}

fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|version| *version != "(none)")
        .map(str::to_string)
}

/// The fields of the package's first `apt-cache show` stanza.
fn show(package: &DebianPackage) -> Result<BTreeMap<String, String>> {
    let text = apt_cache(&["show", &package.apt_spec()])?;
    let fields = parse_first_stanza(&text);
    if fields.is_empty() {
        bail!("`apt-cache show {}` printed nothing", package.apt_spec());
    }
    Ok(fields)
}

/// The fields of the first stanza of apt's `show` output (apt lists the
/// candidate first), continuation lines joined with newlines.
pub(crate) fn parse_first_stanza(text: &str) -> BTreeMap<String, String> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation line (e.g. the long description).
            if let Some(value) = last_key.as_ref().and_then(|key| fields.get_mut(key)) {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.insert(key.to_string(), value.trim().to_string());
            last_key = Some(key.to_string());
        }
    }
    fields
}

/// Downloads (if needed), verifies and extracts `package`; returns the extracted tree.
pub fn fetch(package: &DebianPackage) -> Result<PathBuf> {
    let arch_dir = cache_subdir("debian")?.join(package.arch.debian_name());
    // Put in place only once complete (see `host::fs`), so one that exists is whole.
    let extracted = arch_dir.join(package.file_stem());
    if extracted.is_dir() {
        return Ok(extracted);
    }
    let expected_sha256 = show(package)?
        .remove("SHA256")
        .with_context(|| format!("`apt-cache show {}` has no SHA256", package.apt_spec()))?;
    let debs = arch_dir.join("debs");
    let deb = debs.join(format!("{}.deb", package.file_stem()));
    if !deb.exists() || sha256_file(&deb)? != expected_sha256 {
        download(package, &deb)?;
    }
    let actual_sha256 = sha256_file(&deb)?;
    if actual_sha256 != expected_sha256 {
        bail!(
            "{} has SHA256 {actual_sha256}, but apt's package list says {expected_sha256}",
            deb.display()
        );
    }
    with_step(
        format!("extracting {} {}", package.name, package.version),
        || {
            // A private scratch tree: a developer and CI may fetch at the same time.
            let scratch = scratch_dir_for(&extracted)?;
            output_of(
                Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(&deb)
                    .arg(scratch.path()),
            )?;
            persist_dir(scratch, &extracted)
        },
    )?;
    Ok(extracted)
}

fn download(package: &DebianPackage, deb: &Path) -> Result<()> {
    with_step(
        format!(
            "downloading {} {} ({})",
            package.name, package.version, package.arch
        ),
        || {
            // A private directory, so the one .deb in it is ours whatever apt names it.
            let scratch = scratch_dir_for(deb)?;
            // apt-get download reads the lists too (a clean machine's first
            // test run failed here while another step added arm64).
            let _lists = lock_apt_lists(AptLists::Read)?;
            output_of(
                Command::new("apt-get")
                    .args(["download", &package.apt_spec()])
                    .current_dir(scratch.path()),
            )?;
            let downloaded = only_file_in(scratch.path())?;
            std::fs::rename(&downloaded, deb)
                .with_context(|| format!("moving the download to {}", deb.display()))
        },
    )
}

fn only_file_in(dir: &Path) -> Result<PathBuf> {
    let mut files = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    match files.len() {
        1 => Ok(files.remove(0)),
        n => bail!(
            "expected one downloaded .deb in {}, found {n}",
            dir.display()
        ),
    }
}

fn apt_cache(args: &[&str]) -> Result<String> {
    let _lists = lock_apt_lists(AptLists::Read)?;
    output_of(Command::new("apt-cache").args(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_candidate_from_apt_cache_policy() {
        let policy = "linux-image-cloud-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  Version table:\n";
        assert_eq!(parse_candidate(policy), Some("6.1.192-2".to_string()));
        assert_eq!(
            parse_candidate("foo:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(parse_candidate(""), None);
    }

    #[test]
    fn first_stanza_fields_with_continuations() {
        let text = "Package: p\nVersion: 1\nDescription: short\n long line\nSHA256: abc\n\nPackage: p\nVersion: 2\n";
        let fields = parse_first_stanza(text);
        assert_eq!(fields["Version"], "1");
        assert_eq!(fields["SHA256"], "abc");
        assert_eq!(fields["Description"], "short\nlong line");
    }

    #[test]
    fn file_stem_escapes_the_epoch_like_apt() {
        let package = DebianPackage {
            name: "qemu-utils".into(),
            version: "1:10.0.2".into(),
            arch: Arch::Amd64,
            all: false,
        };
        assert_eq!(package.file_stem(), "qemu-utils_1%3a10.0.2_amd64");
        assert_eq!(package.apt_spec(), "qemu-utils:amd64=1:10.0.2");
        let data = DebianPackage {
            name: "ca-certificates".into(),
            version: "20250419~deb12u2".into(),
            arch: Arch::Arm64,
            all: true,
        };
        assert_eq!(data.file_stem(), "ca-certificates_20250419~deb12u2_all");
        assert_eq!(data.apt_spec(), "ca-certificates:all=20250419~deb12u2");
    }
}
