//! Builds Kubernetes commands (the node's kubelet, the test control
//! plane's kube-apiserver and kube-controller-manager, the kube-proxy of
//! the kube-proxy image) from Debian's
//! `kubernetes` source package: the full Kubernetes source with every Go
//! dependency vendored, so the build needs nothing beyond Debian's Go.
//!
//! The result is a static, stripped binary (`CGO_ENABLED=0`, `-s -w`),
//! which also makes the arm64 build a plain Go cross-build with no C
//! cross compiler. It is cached by (source version and checksum, target,
//! arch). Every command is built in one cached source tree with one Go
//! build cache: the first build takes about 5 minutes on 2 cores, the
//! next ones reuse the packages they share.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::components::bom::Pin;
use crate::host::arch::Arch;
use crate::host::cache::cache_subdir;
use crate::host::command::{output_of, run_logged};
use crate::host::fs::{copy_into_place, remove_dir_if_present};
use crate::host::packages::{
    announce_host_change, archive_uri, ensure_installed, lock_apt_lists, run_apt, AptLists,
};
use crate::host::progress::with_step;

/// Host packages the build runs: Go, the Makefile and its rsync, and
/// `dpkg-source` to unpack the source package.
pub const BUILD_PACKAGES: &[&str] = &["golang-go", "rsync", "make", "dpkg-dev"];

/// The apt source, owned by kiOS, that makes bookworm's source packages visible.
pub const SOURCE_LIST_FILE: &str = "/etc/apt/sources.list.d/kios-deb-src.sources";

/// The suite and component the source package comes from.
const SOURCE_SUITE: &str = "bookworm";
const SOURCE_COMPONENT: &str = "main";

/// Debian's archive key, installed with apt itself (package debian-archive-keyring).
const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Part of the cache key: bump when the build flags change, so old binaries are not reused.
const BUILD_RECIPE: &str = "static-stripped-dockerless-providerless-2";

/// Go build tags for every Kubernetes command built here. `dockerless`
/// drops cAdvisor's Docker plugin, whose root-directory probe waits 5 s on
/// every node without Docker before the kubelet goes on; `providerless`
/// drops the in-tree cloud providers and their credential helpers (the
/// kubelet's external credential-provider plugins stay). Together they
/// take the kubelet from 105.5 MB to about 57 MB.
const BUILD_TAGS: &str = "dockerless,providerless";

/// A Debian source package holding the Kubernetes tree, and what to build from it.
pub struct KubernetesSource<'a> {
    pub package: &'a str,
    pub version: &'a str,
    /// A `make WHAT=` target, e.g. `cmd/kubelet`.
    pub target: &'a str,
}

impl KubernetesSource<'_> {
    fn binary_name(&self) -> &str {
        self.target.rsplit('/').next().unwrap_or(self.target)
    }

    /// The .dsc's file name: the version without its epoch.
    fn dsc_name(&self) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(self.version, |(_, rest)| rest);
        format!("{}_{version}.dsc", self.package)
    }
}

/// Returns the cached binary, building it first if needed. `pin` holds
/// the .dsc's sha256 and names the component in errors.
pub fn build(source: &KubernetesSource, pin: &Pin) -> Result<PathBuf> {
    let arch = pin.arch;
    let output_dir = cache_subdir("kubernetes-build")?
        .join(format!("{}-{BUILD_RECIPE}", source_key(source, pin)))
        .join(arch.debian_name());
    let binary = output_dir.join(source.binary_name());
    if binary.exists() {
        return Ok(binary);
    }
    ensure_installed(BUILD_PACKAGES)?;
    let dsc = download_source(source, pin)?;
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("creating {}", output_dir.display()))?;
    let log = output_dir.join(format!("{}.build.log", source.binary_name()));
    let tree = SourceTree::lock(source, pin)?;
    // Another process may have built it while we waited for the lock.
    if binary.exists() {
        return Ok(binary);
    }
    tree.unpack(&dsc, &log)?;
    let built = with_step(
        format!(
            "building {} {} for {arch} from Debian's {} source \
             (about 5 minutes on 2 cores, less once another command was built)",
            source.target, source.version, source.package
        ),
        || tree.compile(source, arch, &log),
    )?;
    copy_into_place(&built, &binary)?;
    Ok(binary)
}

/// The source's version and the start of its pinned .dsc checksum: a
/// re-pinned source under the same version gets a new tree and new binaries.
fn source_key(source: &KubernetesSource, pin: &Pin) -> String {
    let dsc_key = pin.sha256.get(..12).unwrap_or(pin.sha256);
    format!("{}-{dsc_key}", source.version)
}

/// The unpacked source and Go's build cache, kept in the cache and shared
/// by every command and arch built from it: the first build compiles the
/// common packages (about 5 minutes), later ones reuse them. Both take
/// about 2 GB. Held under an exclusive lock, because `make` writes into
/// the tree.
struct SourceTree {
    dir: PathBuf,
    /// Released when the tree is dropped.
    _lock: File,
}

impl SourceTree {
    fn lock(source: &KubernetesSource, pin: &Pin) -> Result<SourceTree> {
        let dir = cache_subdir("kubernetes-source")?.join(source_key(source, pin));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join(".lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        Ok(SourceTree { dir, _lock: lock })
    }

    fn src(&self) -> PathBuf {
        self.dir.join("src")
    }

    /// Unpacks the .dsc into `src`, unless a complete unpack is there.
    fn unpack(&self, dsc: &Path, log: &Path) -> Result<()> {
        // Written last, so a half-finished unpack is never built from.
        let complete_marker = self.dir.join(".kios-unpacked");
        if complete_marker.exists() {
            return Ok(());
        }
        let tree = self.src();
        remove_dir_if_present(&tree)?;
        with_step(format!("unpacking {}", dsc.display()), || {
            // dpkg-source checks the tarballs against the checksums in the (pinned) .dsc.
            run_logged(
                Command::new("dpkg-source")
                    .args(["-x", "--no-copy"])
                    .arg(dsc)
                    .arg(&tree),
                log,
            )
        })?;
        std::fs::write(&complete_marker, "")
            .with_context(|| format!("marking {} complete", tree.display()))
    }

    /// Runs the Makefile for `source.target`; returns the built binary.
    fn compile(&self, source: &KubernetesSource, arch: Arch, log: &Path) -> Result<PathBuf> {
        let tree = self.src();
        let changelog_date = output_of(
            Command::new("dpkg-parsechangelog")
                .arg("-l")
                .arg(tree.join("debian/changelog"))
                .arg("-STimestamp"),
        )?;
        // Go names these two architectures as Debian does.
        let goarch = arch.debian_name();
        run_logged(
            Command::new("make")
                .current_dir(&tree)
                .arg(format!("WHAT={}", source.target))
                .arg(format!("KUBE_BUILD_PLATFORMS=linux/{goarch}"))
                // Without the override the build asks for a C cross compiler on arm64.
                .arg(format!("KUBE_STATIC_OVERRIDES={}", source.binary_name()))
                .env("CGO_ENABLED", "0")
                // Stripped, and no build id, so the same source gives the same bytes.
                .env("GOLDFLAGS", "-s -w -buildid=")
                // The build date stamped into the binary: the source's, not today's.
                .env("SOURCE_DATE_EPOCH", changelog_date.trim())
                // Go must never reach for the network: everything is vendored.
                .env("GOPROXY", "off")
                .env("GOTOOLCHAIN", "local")
                // Kubernetes 1.20 builds in GOPATH mode (GO111MODULE=off, vendor
                // reached through a GOPATH symlink), where `-mod=vendor` is an
                // error; its scripts read build tags out of GOFLAGS, so GOFLAGS
                // carries only the tags.
                .env("GOFLAGS", format!("-tags={BUILD_TAGS}"))
                .env("GOCACHE", self.dir.join("go-build-cache")),
            log,
        )?;
        let built = tree
            .join("_output/local/bin/linux")
            .join(goarch)
            .join(source.binary_name());
        if !built.is_file() {
            bail!(
                "the build finished but left no {} (log: {})",
                built.display(),
                log.display()
            );
        }
        Ok(built)
    }
}

/// `apt-get source --download-only` into the cache; returns the verified .dsc.
fn download_source(source: &KubernetesSource, pin: &Pin) -> Result<PathBuf> {
    let dir = cache_subdir("debian-source")?.join(format!("{}_{}", source.package, source.version));
    let dsc = dir.join(source.dsc_name());
    if dsc.exists() && pin.verify(&dsc).is_ok() {
        return Ok(dsc);
    }
    ensure_source_listed(source)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    with_step(
        format!(
            "downloading Debian's {} {} source",
            source.package, source.version
        ),
        || {
            // apt checks each file against its signed Sources list; no root needed.
            run_apt(
                Command::new("apt-get")
                    .args(["source", "--download-only"])
                    .arg(format!("{}={}", source.package, source.version))
                    .current_dir(&dir),
            )
        },
    )?;
    pin.verify(&dsc)?;
    Ok(dsc)
}

/// Makes apt list bookworm's source packages: a `deb-src` twin of the
/// machine's own bookworm `deb` entry, in a kiOS-owned file.
fn ensure_source_listed(source: &KubernetesSource) -> Result<()> {
    let listed = output_of(Command::new("apt-cache").args(["showsrc", source.package]))?;
    if lists_version(&listed, source.version) {
        return Ok(());
    }
    let policy = output_of(Command::new("apt-cache").arg("policy"))?;
    let uri = archive_uri(&policy, SOURCE_SUITE, SOURCE_COMPONENT).with_context(|| {
        format!(
            "apt lists no {SOURCE_SUITE} {SOURCE_COMPONENT} packages to take the archive address from; \
             add Debian's {SOURCE_SUITE} archive to apt's sources and run `sudo apt-get update`"
        )
    })?;
    let entry = deb_src_entry(&uri, Path::new(ARCHIVE_KEYRING).exists());
    if !rustix::process::geteuid().is_root() {
        bail!(
            "apt lists no {} {} source package; write this to {SOURCE_LIST_FILE} as root:\n{entry}\
             then run `sudo apt-get update`",
            source.package,
            source.version
        );
    }
    announce_host_change(&format!(
        "adding apt source {SOURCE_LIST_FILE} ({SOURCE_SUITE} deb-src) because the kubelet \
         is built from Debian's {} {} source package",
        source.package, source.version
    ));
    with_step(
        format!("adding the {SOURCE_SUITE} deb-src entry to apt"),
        || {
            let _lists = lock_apt_lists(AptLists::Change)?;
            std::fs::write(SOURCE_LIST_FILE, &entry)
                .with_context(|| format!("writing the apt source {SOURCE_LIST_FILE}"))?;
            run_apt(Command::new("apt-get").arg("update"))
        },
    )?;
    let listed = output_of(Command::new("apt-cache").args(["showsrc", source.package]))?;
    if !lists_version(&listed, source.version) {
        bail!(
            "Debian's {SOURCE_SUITE} archive has no {} {} source package (any more): \
             the bill of materials needs a new pin",
            source.package,
            source.version
        );
    }
    Ok(())
}

fn lists_version(showsrc: &str, version: &str) -> bool {
    showsrc
        .lines()
        .filter_map(|line| line.strip_prefix("Version:"))
        .any(|listed| listed.trim() == version)
}

fn deb_src_entry(uri: &str, signed_by_archive_keyring: bool) -> String {
    let signed_by = if signed_by_archive_keyring {
        format!("Signed-By: {ARCHIVE_KEYRING}\n")
    } else {
        String::new()
    };
    format!(
        "Types: deb-src\nURIs: {uri}\nSuites: {SOURCE_SUITE}\nComponents: {SOURCE_COMPONENT}\n{signed_by}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deb_src_entry_is_deb822() {
        assert_eq!(
            deb_src_entry("http://mirror.example/debian", true),
            "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
    }

    #[test]
    fn names_follow_debian_and_the_makefile() {
        let source = KubernetesSource {
            package: "kubernetes",
            version: "1.20.5+really1.20.2-1.1+deb12u1",
            target: "cmd/kubelet",
        };
        assert_eq!(source.binary_name(), "kubelet");
        assert_eq!(
            source.dsc_name(),
            "kubernetes_1.20.5+really1.20.2-1.1+deb12u1.dsc"
        );
        let epoch = KubernetesSource {
            version: "1:2.0-1",
            ..source
        };
        assert_eq!(epoch.dsc_name(), "kubernetes_2.0-1.dsc");
        assert!(lists_version(
            "Package: kubernetes\nVersion: 1:2.0-1\n",
            "1:2.0-1"
        ));
        assert!(!lists_version("Version: 1:2.0-2\n", "1:2.0-1"));
    }
}
