//! The bill of materials (`bom.toml` at the repository root): every
//! component of a kiOS image, per architecture, pinned by version and
//! sha256, and fetching a component through the cache.
//!
//! A fetch whose checksum differs from the pin stops with an error that
//! names the component, so a changed upstream file never slips into an image.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use serde::Deserialize;

use crate::components::debian::{self, DebianPackage};
use crate::components::kubelet_build::{self, KubernetesSource};
use crate::host::arch::Arch;
use crate::host::cache::cache_subdir;
use crate::host::fs::{persist_dir, persist_file, scratch_dir_for, scratch_file_for, sha256_file};
use crate::host::packages::{
    announce_host_change, ensure_archive_component, lock_apt_lists, run_apt, AptLists,
};
use crate::host::progress::with_step;
use crate::host::workspace::Workspace;

/// The BOM's file name, at the workspace root.
pub const BOM_FILE: &str = "bom.toml";

/// A parsed bill of materials.
#[derive(Clone, Debug)]
pub struct Bom {
    /// The file it was read from; `path` sources are relative to its directory.
    pub file: PathBuf,
    pub components: BTreeMap<String, Component>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BomFile {
    components: BTreeMap<String, Component>,
}

/// One component: what it is and where each architecture's build comes from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub description: String,
    /// Part of the sysroot that binaries' shared libraries are resolved in.
    #[serde(default)]
    pub library: bool,
    /// The upstream release the entries are, where the node depends on it
    /// (the kubelet's: the init's flags follow it; see init/build.rs).
    pub release: Option<String>,
    amd64: Option<Source>,
    arm64: Option<Source>,
}

impl Component {
    pub fn source(&self, arch: Arch) -> Option<&Source> {
        match arch {
            Arch::Amd64 => self.amd64.as_ref(),
            Arch::Arm64 => self.arm64.as_ref(),
        }
    }
}

/// Where one architecture's build of a component comes from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// A Debian binary package; `sha256` is the .deb's.
    Debian {
        package: String,
        version: String,
        sha256: String,
        /// `arch = "all"` for an `Architecture: all` package (data, such
        /// as CA certificates): one .deb serves every architecture.
        #[serde(default)]
        arch: Option<PackageArch>,
        /// The archive component when it is not `main`, e.g.
        /// `non-free-firmware` (`raspi-firmware`): the tools add it to
        /// apt's sources when apt does not list it yet.
        #[serde(default)]
        component: Option<String>,
    },
    /// A binary built from a Debian source package; `sha256` is the .dsc's
    /// (the .dsc pins the checksums of the tarballs it lists).
    DebianSource {
        package: String,
        version: String,
        sha256: String,
        /// What to build, e.g. `cmd/kubelet`.
        target: String,
    },
    /// A file downloaded from `url` (a .tar.gz or .tgz is unpacked).
    Url { url: String, sha256: String },
    /// A local file, relative to the BOM's directory (a .tar.gz or .tgz is unpacked).
    Path { path: PathBuf, sha256: String },
}

/// A Debian source's architecture other than the image's own.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PackageArch {
    /// `Architecture: all`.
    All,
}

impl Source {
    pub fn sha256(&self) -> &str {
        match self {
            Source::Debian { sha256, .. }
            | Source::DebianSource { sha256, .. }
            | Source::Url { sha256, .. }
            | Source::Path { sha256, .. } => sha256,
        }
    }
}

impl Bom {
    pub fn load(path: &Path) -> Result<Bom> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the bill of materials {}", path.display()))?;
        Bom::parse(&text, path)
    }

    /// Parses `text` as if read from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Bom> {
        let parsed: BomFile = toml::from_str(text)
            .with_context(|| format!("parsing the bill of materials {}", file.display()))?;
        for (name, component) in &parsed.components {
            for arch in Arch::ALL {
                if let Some(source) = component.source(arch) {
                    check_sha256_syntax(source.sha256()).with_context(|| {
                        format!("{}: component `{name}` ({arch})", file.display())
                    })?;
                }
            }
        }
        Ok(Bom {
            file: file.to_path_buf(),
            components: parsed.components,
        })
    }

    pub fn component(&self, name: &str) -> Result<&Component> {
        self.components.get(name).with_context(|| {
            format!(
                "{} has no component `{name}` (it has: {})",
                self.file.display(),
                self.components
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    pub fn source(&self, name: &str, arch: Arch) -> Result<&Source> {
        self.component(name)?.source(arch).with_context(|| {
            format!(
                "{}: component `{name}` has no {arch} entry",
                self.file.display()
            )
        })
    }

    /// The names of the components that make up the library sysroot.
    pub fn library_names(&self) -> impl Iterator<Item = &str> {
        self.components
            .iter()
            .filter(|(_, component)| component.library)
            .map(|(name, _)| name.as_str())
    }

    /// The workspace's own bill of materials.
    pub fn of(workspace: &Workspace) -> Result<Bom> {
        Bom::load(&workspace.root.join(BOM_FILE))
    }

    fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

fn check_sha256_syntax(sha256: &str) -> Result<()> {
    let is_hex = sha256
        .bytes()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if sha256.len() != 64 || !is_hex {
        bail!("sha256 `{sha256}` is not 64 lowercase hex digits");
    }
    Ok(())
}

/// Fetches (or builds) component `name` for `arch` through the cache and
/// checks it against its pin. Returns the extracted directory (Debian
/// packages, archives) or the file (built binaries, plain downloads, paths).
pub fn fetch_component(bom: &Bom, name: &str, arch: Arch) -> Result<PathBuf> {
    let source = bom.source(name, arch)?;
    let pinned = Pin {
        component: name,
        arch,
        sha256: source.sha256(),
    };
    let fetched = match source {
        Source::Debian {
            package,
            version,
            arch: package_arch,
            component,
            ..
        } => fetch_debian(
            &pinned,
            package,
            version,
            *package_arch,
            component.as_deref(),
        ),
        Source::DebianSource {
            package,
            version,
            target,
            ..
        } => kubelet_build::build(
            &KubernetesSource {
                package,
                version,
                target,
            },
            &pinned,
        ),
        Source::Url { url, .. } => download(&pinned, url).and_then(|file| unpack(&pinned, file)),
        Source::Path { path, .. } => {
            let file = bom.base_dir().join(path);
            pinned.verify(&file)?;
            unpack(&pinned, file)
        }
    };
    fetched.with_context(|| format!("fetching component `{name}` for {arch}"))
}

/// A component's pinned checksum, with what error messages name it by.
pub struct Pin<'a> {
    pub component: &'a str,
    pub arch: Arch,
    pub sha256: &'a str,
}

impl Pin<'_> {
    /// Fails, naming the component, unless `file`'s sha256 is the pinned one.
    pub fn verify(&self, file: &Path) -> Result<()> {
        let actual = sha256_file(file)?;
        self.check(&actual, &file.display().to_string())
    }

    fn check(&self, actual: &str, what: &str) -> Result<()> {
        if actual != self.sha256 {
            bail!(
                "checksum mismatch for component `{}` ({}): {what} has sha256 {actual}, \
                 but the bill of materials pins {}",
                self.component,
                self.arch,
                self.sha256
            );
        }
        Ok(())
    }
}

/// Checks apt's (signed) package list against the pin before fetching:
/// `debian::fetch` then checks the downloaded .deb against the same list.
fn fetch_debian(
    pin: &Pin,
    package: &str,
    version: &str,
    package_arch: Option<PackageArch>,
    component: Option<&str>,
) -> Result<PathBuf> {
    if let Some(component) = component {
        ensure_archive_component(component, &format!("component `{}`", pin.component))?;
    }
    let all = package_arch == Some(PackageArch::All);
    if !all {
        ensure_architecture(pin.arch)?;
    }
    let package = DebianPackage {
        name: package.to_string(),
        version: version.to_string(),
        arch: pin.arch,
        all,
    };
    let listed = apt_listed_sha256(&package.apt_spec())?;
    pin.check(
        &listed,
        &format!("{} {version} in apt's package lists", package.name),
    )?;
    debian::fetch(&package)
}

fn apt_listed_sha256(spec: &str) -> Result<String> {
    let output = Command::new("apt-cache")
        .args(["show", spec])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `apt-cache show {spec}`"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match debian::parse_first_stanza(&text).remove("SHA256") {
        Some(sha256) if output.status.success() => Ok(sha256),
        _ => {
            let apt_said = String::from_utf8_lossy(&output.stderr);
            bail!(
                "apt knows no {spec}: run `sudo apt-get update`; if it still is not \
                 listed, the archive dropped this version and the bill of materials \
                 needs a new pin{}",
                match apt_said.trim() {
                    "" => String::new(),
                    said => format!(" (apt-cache: {said})"),
                }
            )
        }
    }
}

/// Foreign-architecture packages need dpkg to know the architecture.
fn ensure_architecture(arch: Arch) -> Result<()> {
    let known =
        dpkg_output(&["--print-architecture"])? + &dpkg_output(&["--print-foreign-architectures"])?;
    if known
        .split_whitespace()
        .any(|name| name == arch.debian_name())
    {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        bail!(
            "dpkg does not know the {arch} architecture; run: \
             sudo dpkg --add-architecture {arch} && sudo apt-get update"
        );
    }
    announce_host_change(&format!(
        "adding the {arch} architecture to dpkg because the {arch} image takes Debian's {arch} packages"
    ));
    with_step(format!("adding the {arch} architecture to dpkg"), || {
        let _lists = lock_apt_lists(AptLists::Change)?;
        run_apt(Command::new("dpkg").args(["--add-architecture", arch.debian_name()]))?;
        run_apt(Command::new("apt-get").arg("update"))
    })
}

fn dpkg_output(args: &[&str]) -> Result<String> {
    let output = Command::new("dpkg")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `dpkg {}`", args.join(" ")))?;
    if !output.status.success() {
        bail!("`dpkg {}` failed ({})", args.join(" "), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned() + "\n")
}

/// Downloads `url` into the cache (keyed by the pinned sha256) unless it is there.
fn download(pin: &Pin, url: &str) -> Result<PathBuf> {
    let file_name = url
        .split(['?', '#'])
        .next()
        .and_then(|path| path.rsplit('/').next())
        .filter(|name| !name.is_empty())
        .with_context(|| format!("{url} names no file"))?;
    let dir = cache_subdir("downloads")?.join(pin.sha256);
    let file = dir.join(file_name);
    if file.exists() && pin.verify(&file).is_ok() {
        return Ok(file);
    }
    let partial = scratch_file_for(&file)?;
    with_step(format!("downloading {url}"), || {
        let response = ureq::get(url).call().with_context(|| {
            format!(
                "downloading {url} for component `{}` failed; if this machine cannot \
                 reach that host, download the file elsewhere and point the bill of \
                 materials at it with a `path` source",
                pin.component
            )
        })?;
        let mut body = response.into_body().into_reader();
        std::io::copy(&mut body, &mut partial.as_file())
            .with_context(|| format!("downloading {url}"))?;
        Ok(())
    })?;
    // A wrong file is dropped (and removed) here, never left where a retry would reuse it.
    pin.verify(partial.path())?;
    persist_file(partial, &file)?;
    Ok(file)
}

/// A .tar.gz or .tgz is unpacked into the cache (keyed by its sha256);
/// any other file is used as it is.
fn unpack(pin: &Pin, file: PathBuf) -> Result<PathBuf> {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    if !(name.ends_with(".tar.gz") || name.ends_with(".tgz")) {
        return Ok(file);
    }
    // Put in place only once complete (see `host::fs`), so one that exists is whole.
    let unpacked = cache_subdir("unpacked")?.join(pin.sha256);
    if unpacked.is_dir() {
        return Ok(unpacked);
    }
    with_step(format!("unpacking {name}"), || {
        let scratch = scratch_dir_for(&unpacked)?;
        let archive = File::open(&file).with_context(|| format!("opening {}", file.display()))?;
        tar::Archive::new(GzDecoder::new(BufReader::new(archive)))
            .unpack(scratch.path())
            .with_context(|| format!("unpacking {}", file.display()))?;
        persist_dir(scratch, &unpacked)
    })?;
    Ok(unpacked)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn bom(text: &str) -> Result<Bom> {
        Bom::parse(text, Path::new("/repo/bom.toml"))
    }

    #[test]
    fn parses_every_source_kind() {
        let text = format!(
            r#"
[components.containerd]
description = "runtime"
amd64 = {{ source = "debian", package = "containerd", version = "1.6.20", sha256 = "{ZEROS}" }}

[components.kubelet]
description = "kubelet"
amd64 = {{ source = "debian-source", package = "kubernetes", version = "1.20.2", sha256 = "{ZEROS}", target = "cmd/kubelet" }}
arm64 = {{ source = "url", url = "http://127.0.0.1:9/kubelet", sha256 = "{ZEROS}" }}

[components.libc6]
description = "libc"
library = true
arm64 = {{ source = "path", path = "sysroot.tar.gz", sha256 = "{ZEROS}" }}
"#
        );
        let bom = bom(&text).unwrap();
        assert_eq!(
            bom.source("containerd", Arch::Amd64).unwrap(),
            &Source::Debian {
                package: "containerd".into(),
                version: "1.6.20".into(),
                sha256: ZEROS.into(),
                arch: None,
                component: None,
            }
        );
        assert!(matches!(
            bom.source("kubelet", Arch::Amd64).unwrap(),
            Source::DebianSource { target, .. } if target == "cmd/kubelet"
        ));
        assert!(matches!(
            bom.source("kubelet", Arch::Arm64).unwrap(),
            Source::Url { url, .. } if url == "http://127.0.0.1:9/kubelet"
        ));
        assert_eq!(bom.library_names().collect::<Vec<_>>(), ["libc6"]);
        let missing_arch = bom.source("libc6", Arch::Amd64).unwrap_err().to_string();
        assert!(
            missing_arch.contains("`libc6` has no amd64 entry"),
            "{missing_arch}"
        );
        let unknown = bom.component("etcd").unwrap_err().to_string();
        assert!(unknown.contains("no component `etcd`"), "{unknown}");
    }

    #[test]
    fn an_architecture_all_package_is_marked_and_nothing_else_is_accepted() {
        let all = format!(
            "[components.ca-certificates]\ndescription = \"CAs\"\narm64 = {{ source = \"debian\", package = \"ca-certificates\", version = \"1\", arch = \"all\", sha256 = \"{ZEROS}\" }}\n"
        );
        assert!(matches!(
            bom(&all)
                .unwrap()
                .source("ca-certificates", Arch::Arm64)
                .unwrap(),
            Source::Debian {
                arch: Some(PackageArch::All),
                ..
            }
        ));
        assert!(bom(&all.replace("\"all\"", "\"amd64\"")).is_err());
    }

    #[test]
    fn rejects_unknown_fields_kinds_and_bad_checksums() {
        let typo = format!(
            "[components.a]\ndescription = \"a\"\namd64 = {{ source = \"debian\", package = \"a\", version = \"1\", sha265 = \"{ZEROS}\" }}\n"
        );
        assert!(bom(&typo).is_err());
        let kind = format!(
            "[components.a]\ndescription = \"a\"\namd64 = {{ source = \"ftp\", url = \"x\", sha256 = \"{ZEROS}\" }}\n"
        );
        assert!(bom(&kind).is_err());
        let short = "[components.a]\ndescription = \"a\"\namd64 = { source = \"url\", url = \"x\", sha256 = \"abc\" }\n";
        let error = format!("{:#}", bom(short).unwrap_err());
        assert!(error.contains("component `a` (amd64)"), "{error}");
    }

    fn shipped_bom() -> Bom {
        Bom::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(BOM_FILE),
        )
        .unwrap()
    }

    #[test]
    fn the_shipped_bom_pins_every_component_for_both_arches() {
        let bom = shipped_bom();
        for name in [
            "kernel",
            "containerd",
            "runc",
            "crun",
            "cni-plugins",
            "kubelet",
            "busybox",
            "libc6",
            "kube-proxy",
            "iptables",
            "docker-registry",
            "ca-certificates",
        ] {
            for arch in Arch::ALL {
                bom.source(name, arch).unwrap();
            }
        }
        assert!(bom.library_names().any(|name| name == "libc6"));
    }

    /// The init's kubelet flags follow `release` (init/build.rs): it must
    /// be the release the kubelet's entries build ("1.20.5+really1.20.2-1"
    /// is Debian's version of upstream 1.20.2).
    #[test]
    fn the_kubelets_release_is_the_one_its_entries_build() {
        let bom = shipped_bom();
        let release = bom.component("kubelet").unwrap().release.clone().unwrap();
        for arch in Arch::ALL {
            if let Source::DebianSource { version, .. } = bom.source("kubelet", arch).unwrap() {
                let upstream = version.rsplit("really").next().unwrap();
                assert!(
                    upstream.starts_with(&format!("{release}-")),
                    "{version} is not {release}"
                );
            }
        }
    }

    #[test]
    fn reads_the_sha256_of_apt_cache_shows_first_stanza() {
        let show = "Package: runc\nVersion: 1\nSHA256: aa\n\nPackage: runc\nSHA256: bb\n";
        let sha256 = |text| debian::parse_first_stanza(text).remove("SHA256");
        assert_eq!(sha256(show).as_deref(), Some("aa"));
        assert_eq!(sha256(""), None);
    }
}
