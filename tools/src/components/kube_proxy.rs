//! The kube-proxy image: kube-proxy built from the kubelet's Debian
//! source, with Debian's iptables (nft and legacy), conntrack and ipset
//! and exactly the shared libraries they need (from their ELF headers),
//! as a single-layer OCI image per architecture. Never part of a node
//! image: a node pulls it from a registry, as it would the cluster's own.
//!
//! The layout follows upstream's image, kube-proxy on a Debian base with
//! iptables (Kubernetes' `build/lib/release.sh` copies the binary to
//! `/usr/local/bin`): `/usr/local/bin/kube-proxy`, the iptables commands
//! in `/usr/sbin` as Debian's package installs them, and
//! `iptables`/`ip6tables` (and their `-save`/`-restore`) chosen through
//! `/etc/alternatives` as Debian's postinst does, nft by default.
//! No shell and no other tools.
//!
//! Archives are cached by the pins of everything in them: a rebuild gives
//! the same bytes (see [`crate::components::oci`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::components::bom::{fetch_component, Bom, Source};
use crate::components::elf_deps::{self, Sysroot};
use crate::components::oci::{Image, Layer, DEBIAN_PATH_ENV};
use crate::components::{add_shared_libraries, find_executable, mode_of};
use crate::host::arch::Arch;
use crate::host::cache::cache_subdir;
use crate::host::fs::{persist_file, scratch_file_for, sha256_hex};
use crate::host::progress::with_step;

/// The repository name the image is pushed under.
pub const REPOSITORY: &str = "kube-proxy";
/// Where kube-proxy is in the image (as in upstream's image).
pub const KUBE_PROXY_PATH: &str = "/usr/local/bin/kube-proxy";
/// The name an imported archive is listed under (`kios.local/kube-proxy:<tag>`).
const IMPORT_DOMAIN: &str = "kios.local";

/// The BOM component kube-proxy is built as.
const KUBE_PROXY_COMPONENT: &str = "kube-proxy";
/// Components whose commands go in the image: (component, file in its tree).
const COMMANDS: &[(&str, &str)] = &[
    ("iptables", "usr/sbin/xtables-nft-multi"),
    ("iptables", "usr/sbin/xtables-legacy-multi"),
    ("conntrack", "usr/sbin/conntrack"),
    ("ipset", "usr/sbin/ipset"),
];
/// The components the commands' shared libraries are resolved in: this
/// image's own sysroot, not the node's `library = true` one.
const LIBRARIES: &[&str] = &[
    "libc6",
    "libxtables12",
    "libip4tc2",
    "libip6tc2",
    "libnftnl11",
    "libmnl0",
    "libnetfilter-conntrack3",
    "libnfnetlink0",
    "libipset13",
];
/// The names Debian's iptables postinst manages with update-alternatives,
/// each pointing at its `-nft` variant here (Debian's default, priority 20).
const ALTERNATIVES: &[&str] = &[
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];
/// Part of the archive cache key: bump when the layout or the writer changes.
const RECIPE: &str = "kube-proxy-image-1";

/// Debian's multiarch directory name for `arch`.
fn triplet(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-linux-gnu",
        Arch::Arm64 => "aarch64-linux-gnu",
    }
}

/// The image's tag, the Kubernetes version the BOM's kube-proxy is built
/// from: `v1.20.2` for Debian's `1.20.5+really1.20.2-1.1+deb12u1`.
pub fn tag(bom: &Bom) -> Result<String> {
    let version = match bom.source(KUBE_PROXY_COMPONENT, Arch::Amd64)? {
        Source::DebianSource { version, .. } | Source::Debian { version, .. } => {
            upstream_version(version)
        }
        Source::Url { url, .. } => url
            .split('/')
            .find(|part| part.starts_with('v') && part.contains('.'))
            .map(|part| part.trim_start_matches('v').to_string())
            .context("the kube-proxy URL names no version (…/v1.20.2/…)")?,
        Source::Path { .. } => bail!("a kube-proxy from a path has no version to tag it with"),
    };
    Ok(format!("v{version}"))
}

/// The upstream version in a Debian version: no epoch, no Debian
/// revision, and the real version of a `+really` re-upload.
fn upstream_version(debian: &str) -> String {
    let no_epoch = debian.split_once(':').map_or(debian, |(_, rest)| rest);
    let upstream = no_epoch.rsplit_once('-').map_or(no_epoch, |(up, _)| up);
    let real = upstream
        .split_once("+really")
        .map_or(upstream, |(_, real)| real);
    real.to_string()
}

/// The image for `arch`: fetches (or builds) its components.
pub fn image(bom: &Bom, arch: Arch) -> Result<Image> {
    let mut layer = Layer::new();
    let kube_proxy = fetch_component(bom, KUBE_PROXY_COMPONENT, arch)?;
    let kube_proxy = find_executable(&kube_proxy, "kube-proxy")?;
    check_arch(&kube_proxy, arch, KUBE_PROXY_COMPONENT)?;
    layer.file_from_host(KUBE_PROXY_PATH, 0o755, &kube_proxy)?;

    let mut trees: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for (component, _) in COMMANDS {
        if !trees.contains_key(component) {
            trees.insert(component, fetch_component(bom, component, arch)?);
        }
    }
    // ELF files whose libraries the image must hold: the commands and
    // iptables' extensions (which it dlopens, so no header names them).
    let mut elf_files: Vec<PathBuf> = Vec::new();
    for (component, file) in COMMANDS {
        let host_file = trees[component].join(file);
        check_arch(&host_file, arch, component)?;
        layer.file_from_host(&format!("/{file}"), 0o755, &host_file)?;
        elf_files.push(host_file);
    }
    let iptables = &trees["iptables"];
    add_multi_call_links(&mut layer, &iptables.join("usr/sbin"))?;
    for name in ALTERNATIVES {
        layer.symlink(
            &format!("/usr/sbin/{name}"),
            &format!("/etc/alternatives/{name}"),
        );
        let nft = name.replacen("tables", "tables-nft", 1);
        layer.symlink(
            &format!("/etc/alternatives/{name}"),
            &format!("/usr/sbin/{nft}"),
        );
    }
    let extensions_dir = format!("usr/lib/{}/xtables", triplet(arch));
    for entry in sorted_entries(&iptables.join(&extensions_dir))? {
        let name = entry.to_string_lossy();
        if name.ends_with(".so") {
            let host_file = iptables.join(&extensions_dir).join(&entry);
            layer.file_from_host(
                &format!("/{extensions_dir}/{name}"),
                mode_of(&host_file)?,
                &host_file,
            )?;
            elf_files.push(host_file);
        }
    }

    let sysroot = Sysroot::new(
        LIBRARIES
            .iter()
            .map(|name| fetch_component(bom, name, arch))
            .collect::<Result<Vec<_>>>()?,
    );
    for file in &elf_files {
        add_shared_libraries(&mut layer, file, &sysroot)?;
    }
    // iptables takes /run/xtables.lock; kube-proxy writes nothing else.
    layer.directory("/run", 0o755).directory("/tmp", 0o1777);

    Ok(Image {
        name: format!("{IMPORT_DOMAIN}/{REPOSITORY}:{}", tag(bom)?),
        arch,
        entrypoint: vec![KUBE_PROXY_PATH.to_string()],
        cmd: Vec::new(),
        layer,
    })
}

/// The OCI archive of [`image`], as bytes (not cached).
pub fn archive_bytes(bom: &Bom, arch: Arch) -> Result<Vec<u8>> {
    image(bom, arch)?.to_archive_with_env(&[DEBIAN_PATH_ENV.to_string()])
}

/// The image's OCI archive for `arch`, built once per set of pins and
/// cached; returns its path.
pub fn archive(bom: &Bom, arch: Arch) -> Result<PathBuf> {
    let path = cache_subdir("oci-images")?
        .join(cache_key(bom, arch)?)
        .join(format!("kube-proxy-{arch}.tar"));
    if path.is_file() {
        return Ok(path);
    }
    let bytes = archive_bytes(bom, arch)?;
    with_step(
        format!("writing the {arch} kube-proxy image archive"),
        || {
            let scratch = scratch_file_for(&path)?;
            std::fs::write(scratch.path(), &bytes)
                .with_context(|| format!("writing {}", scratch.path().display()))?;
            persist_file(scratch, &path)
        },
    )?;
    Ok(path)
}

/// What the archive is made of: the recipe, the arch and every
/// component's pin.
fn cache_key(bom: &Bom, arch: Arch) -> Result<String> {
    let mut key = format!("{RECIPE}\n{arch}\n");
    let components = [KUBE_PROXY_COMPONENT]
        .iter()
        .chain(COMMANDS.iter().map(|(component, _)| component))
        .chain(LIBRARIES);
    for name in components {
        let source = bom.source(name, arch)?;
        key.push_str(&format!("{name} {source:?}\n"));
    }
    Ok(sha256_hex(key)[..16].to_string())
}

fn check_arch(file: &Path, arch: Arch, component: &str) -> Result<()> {
    let built_for = elf_deps::file_arch(file)?;
    if built_for != arch {
        bail!(
            "component `{component}` gave a {built_for} {} for a {arch} image",
            file.display()
        );
    }
    Ok(())
}

/// Debian's links in `/usr/sbin` to the two multi-call binaries
/// (`iptables-nft`, `ip6tables-legacy-save`, `ebtables-nft`, ...), copied
/// as they are.
fn add_multi_call_links(layer: &mut Layer, sbin: &Path) -> Result<()> {
    for name in sorted_entries(sbin)? {
        let link = sbin.join(&name);
        let Ok(target) = std::fs::read_link(&link) else {
            continue;
        };
        let target = target.to_string_lossy();
        if target == "xtables-nft-multi" || target == "xtables-legacy-multi" {
            layer.symlink(&format!("/usr/sbin/{}", name.to_string_lossy()), &target);
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_the_upstream_version() {
        assert_eq!(
            upstream_version("1.20.5+really1.20.2-1.1+deb12u1"),
            "1.20.2"
        );
        assert_eq!(upstream_version("1:1.4.7-1+b2"), "1.4.7");
        assert_eq!(upstream_version("1.28.4"), "1.28.4");
        let bom = Bom::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(crate::components::bom::BOM_FILE),
        )
        .unwrap();
        assert_eq!(tag(&bom).unwrap(), "v1.20.2");
        for arch in Arch::ALL {
            for name in [KUBE_PROXY_COMPONENT]
                .iter()
                .chain(COMMANDS.iter().map(|(component, _)| component))
                .chain(LIBRARIES)
            {
                bom.source(name, arch).unwrap();
            }
            let library = bom.component("libxtables12").unwrap().library;
            assert!(
                !library,
                "a node image must not fetch the image's libraries"
            );
        }
    }

    #[test]
    fn the_alternatives_point_at_the_nft_variants() {
        let nft: Vec<String> = ALTERNATIVES
            .iter()
            .map(|name| name.replacen("tables", "tables-nft", 1))
            .collect();
        assert_eq!(
            nft,
            [
                "iptables-nft",
                "iptables-nft-save",
                "iptables-nft-restore",
                "ip6tables-nft",
                "ip6tables-nft-save",
                "ip6tables-nft-restore"
            ]
        );
    }
}
