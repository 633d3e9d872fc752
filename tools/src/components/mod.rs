//! The binary part of a kiOS root filesystem, staged from the bill of
//! materials: the container runtime and its shim, one OCI runtime, the
//! kubelet, the CNI plugins, and exactly the shared libraries they need
//! (from their ELF headers), the `mount` and `umount` the kubelet
//! runs (`tools/mount`), and the CA bundle image pulls over TLS trust
//! ([`ca_bundle`]). No shell, no busybox, no other tools.
//!
//! Also builds the OCI images the first boot needs without a registry.
//! [`node::NodeComponents`] resolves the components of one image once;
//! the staging and the node image read it.

pub mod bom;
pub mod ca_bundle;
pub mod chrony;
pub mod debian;
pub mod elf_deps;
pub mod image_seed;
pub mod kube_proxy;
pub mod kubelet_build;
pub mod node;
pub mod oci;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use self::elf_deps::Sysroot;
use self::node::NodeComponents;
use crate::components::oci::{busybox_image, kiosctl_image, pause_image};
use crate::host::arch::Arch;
use crate::host::fs::{copy_into_place, file_size, remove_file_if_present};
use crate::host::workspace::Workspace;

/// The OCI runtime containerd's shim starts containers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OciRuntime {
    Runc,
    Crun,
}

impl OciRuntime {
    /// The BOM component, which is also the binary's name in `/bin`.
    pub fn name(self) -> &'static str {
        match self {
            OciRuntime::Runc => "runc",
            OciRuntime::Crun => "crun",
        }
    }
}

/// Where the CNI plugins go: outside `/bin`, which holds only the node's own processes.
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
/// The plugins the node's own network (etc/cni/net.d) runs. No portmap: it
/// programs iptables, which the node does not have (2.6 MB saved); a
/// cluster's CNI add-on installs the plugins it needs itself.
pub const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback"];

/// One regular file written under the staging directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StagedFile {
    /// Its path in the image, e.g. `/bin/kubelet`.
    pub path: PathBuf,
    pub bytes: u64,
    /// The BOM component it comes from.
    pub component: String,
}

/// An OCI image archive written by [`build_images`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageArchive {
    /// The reference containerd lists it under, e.g. `kios.local/pause:1`.
    pub reference: String,
    /// Where it was written on the host.
    pub path: PathBuf,
    pub bytes: u64,
}

/// Links in the image to a placed binary, which chooses what it does by
/// the name it was run as: the kubelet runs `umount` through its PATH.
const BIN_LINKS: &[(&str, &str)] = &[("/bin/umount", "/bin/mount")];

/// A binary to take from a component and where it goes in the image.
struct Placement {
    component: &'static str,
    binary: &'static str,
    image_dir: &'static str,
}

fn placements(runtime: OciRuntime) -> Vec<Placement> {
    let bin = |component, binary| Placement {
        component,
        binary,
        image_dir: "/bin",
    };
    let mut placements = vec![
        bin("containerd", "containerd"),
        bin("containerd", "containerd-shim-runc-v2"),
        bin(runtime.name(), runtime.name()),
        bin("kubelet", "kubelet"),
        bin(node::MOUNT_COMPONENT, "mount"),
    ];
    placements.extend(CNI_PLUGINS.iter().map(|plugin| Placement {
        component: "cni-plugins",
        binary: plugin,
        image_dir: CNI_BIN_DIR,
    }));
    placements
}

/// Lays out, under `dir`, the node's binaries from `components` and the
/// shared libraries they need at their sysroot paths, and the CA bundle
/// at [`ca_bundle::CA_BUNDLE_PATH`]. Returns the regular
/// files written, sorted by path.
pub fn stage_components(components: &NodeComponents, dir: &Path) -> Result<Vec<StagedFile>> {
    let arch = components.arch;
    let mut staged: BTreeMap<PathBuf, StagedFile> = BTreeMap::new();
    let mut binaries: Vec<PathBuf> = Vec::new();
    for placement in placements(components.oci_runtime) {
        let source = components.fetched(placement.component)?;
        let host_file = find_executable(source, placement.binary)
            .with_context(|| format!("component `{}` ({arch})", placement.component))?;
        let built_for = elf_deps::file_arch(&host_file)?;
        if built_for != arch {
            bail!(
                "component `{}` gave a {built_for} {} for a {arch} image",
                placement.component,
                placement.binary
            );
        }
        let image_path = Path::new(placement.image_dir).join(placement.binary);
        let file = copy_into(dir, &image_path, &host_file, placement.component)?;
        binaries.push(dir.join(relative(&image_path)));
        staged.insert(image_path, file);
    }
    for (link, target) in BIN_LINKS {
        link_into(dir, Path::new(link), Path::new(target))?;
    }
    let bundle_path = Path::new(ca_bundle::CA_BUNDLE_PATH);
    let bundle = write_into(
        dir,
        bundle_path,
        &ca_bundle::ca_bundle(components.fetched(ca_bundle::CA_CERTIFICATES_COMPONENT)?)?,
        ca_bundle::CA_CERTIFICATES_COMPONENT,
    )?;
    staged.insert(bundle_path.to_path_buf(), bundle);

    let (sysroot, trees) = library_sysroot(components)?;
    for binary in &binaries {
        for needed in elf_deps::closure(binary, &sysroot)? {
            if !staged.contains_key(&needed.real_image_path) {
                let component = trees
                    .iter()
                    .find(|(tree, _)| needed.host_file.starts_with(tree))
                    .map_or("sysroot", |(_, name)| name.as_str());
                let file = copy_into(dir, &needed.real_image_path, &needed.host_file, component)?;
                staged.insert(needed.real_image_path.clone(), file);
            }
            if needed.image_path != needed.real_image_path {
                link_into(dir, &needed.image_path, &needed.real_image_path)?;
            }
        }
    }
    Ok(staged.into_values().collect())
}

/// The node's own tools built from this workspace, by package, and where
/// each goes in the image: the first-boot step (`tools/firstboot`) and
/// the updater (`tools/update`).
pub const WORKSPACE_BINARIES: &[(&str, &str)] = &[
    ("kios-firstboot", kios_abi::image::FIRSTBOOT),
    ("kios-update", kios_abi::update_bundle::UPDATER),
];

/// Builds [`WORKSPACE_BINARIES`] for `arch` and lays them out under `dir`
/// (static executables: no libraries to follow).
pub fn stage_workspace_binaries(
    workspace: &Workspace,
    arch: Arch,
    dir: &Path,
) -> Result<Vec<StagedFile>> {
    WORKSPACE_BINARIES
        .iter()
        .map(|(package, image_path)| {
            let built = workspace.build_musl_binary(package, arch)?;
            copy_into(dir, Path::new(image_path), &built, package)
        })
        .collect()
}

/// The merged view of every `library = true` component, and which tree is which component.
fn library_sysroot(components: &NodeComponents) -> Result<(Sysroot, Vec<(PathBuf, String)>)> {
    let trees = components
        .bom
        .library_names()
        .map(|name| Ok((components.fetched(name)?.to_path_buf(), name.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let sysroot = Sysroot::new(trees.iter().map(|(tree, _)| tree.clone()).collect());
    Ok((sysroot, trees))
}

/// The executable called `name` in a fetched component: the file itself
/// for a single-file component, else the one executable regular file with
/// that name anywhere in the tree (Debian puts runc in usr/sbin, CNI plugins in
/// usr/lib/cni, upstream archives in bin/ or at the top).
pub(crate) fn find_executable(fetched: &Path, name: &str) -> Result<PathBuf> {
    if fetched.is_file() {
        return Ok(fetched.to_path_buf());
    }
    let mut matches = Vec::new();
    collect_named_files(fetched, name, &mut matches)?;
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => bail!("{} holds no file named {name}", fetched.display()),
        _ => bail!(
            "{} holds several files named {name}: {}",
            fetched.display(),
            matches
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn collect_named_files(dir: &Path, name: &str, matches: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            collect_named_files(&entry.path(), name, matches)?;
        } else if kind.is_file() && entry.file_name() == name && is_executable(&entry.path())? {
            matches.push(entry.path());
        }
    }
    Ok(())
}

/// Any execute bit: packages also ship shell completions and lintian
/// overrides named after their binaries.
fn is_executable(path: &Path) -> Result<bool> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    Ok(mode & 0o111 != 0)
}

fn relative(image_path: &Path) -> &Path {
    image_path.strip_prefix("/").unwrap_or(image_path)
}

/// Where `image_path` goes under `dir`: its parent made, any old file removed.
fn fresh_target(dir: &Path, image_path: &Path) -> Result<PathBuf> {
    let target = dir.join(relative(image_path));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    remove_file_if_present(&target)?;
    Ok(target)
}

/// Copies `host_file` to `image_path` under `dir`, keeping its permission bits.
fn copy_into(
    dir: &Path,
    image_path: &Path,
    host_file: &Path,
    component: &str,
) -> Result<StagedFile> {
    let target = fresh_target(dir, image_path)?;
    let bytes = std::fs::copy(host_file, &target)
        .with_context(|| format!("copying {} to {}", host_file.display(), target.display()))?;
    Ok(StagedFile {
        path: image_path.to_path_buf(),
        bytes,
        component: component.to_string(),
    })
}

/// Writes `contents` to `image_path` under `dir` (mode 0644).
fn write_into(
    dir: &Path,
    image_path: &Path,
    contents: &[u8],
    component: &str,
) -> Result<StagedFile> {
    let target = fresh_target(dir, image_path)?;
    std::fs::write(&target, contents).with_context(|| format!("writing {}", target.display()))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", target.display()))?;
    Ok(StagedFile {
        path: image_path.to_path_buf(),
        bytes: contents.len() as u64,
        component: component.to_string(),
    })
}

/// A relative symlink at `image_path` to `real_image_path`, so it resolves
/// both in the image and in the staging directory on the host.
fn link_into(dir: &Path, image_path: &Path, real_image_path: &Path) -> Result<()> {
    let link = dir.join(relative(image_path));
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    remove_file_if_present(&link)?;
    let target = relative_target(image_path, real_image_path);
    std::os::unix::fs::symlink(&target, &link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

/// Adds to `layer` the shared libraries `elf_file` needs, closed over and
/// resolved in `sysroot`, at their real paths, with the links the loader
/// opens them by.
pub(crate) fn add_shared_libraries(
    layer: &mut oci::Layer,
    elf_file: &Path,
    sysroot: &Sysroot,
) -> Result<()> {
    for needed in elf_deps::closure(elf_file, sysroot)
        .with_context(|| format!("the libraries of {}", elf_file.display()))?
    {
        let real = needed.real_image_path.display().to_string();
        if !layer.contains(&real) {
            layer.file_from_host(&real, mode_of(&needed.host_file)?, &needed.host_file)?;
        }
        if needed.image_path != needed.real_image_path {
            let target = relative_target(&needed.image_path, &needed.real_image_path);
            layer.symlink(
                &needed.image_path.display().to_string(),
                &target.display().to_string(),
            );
        }
    }
    Ok(())
}

/// The permission bits of a packaged file, kept in an image.
pub(crate) fn mode_of(file: &Path) -> Result<u32> {
    let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(meta.permissions().mode() & 0o7777)
}

/// The path from `link`'s directory to `target` (both absolute image paths).
pub(crate) fn relative_target(link: &Path, target: &Path) -> PathBuf {
    let link_dir: Vec<_> = link
        .parent()
        .unwrap_or(Path::new("/"))
        .components()
        .collect();
    let target_parts: Vec<_> = target.components().collect();
    let common = link_dir
        .iter()
        .zip(&target_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = PathBuf::new();
    for _ in common..link_dir.len() {
        relative.push("..");
    }
    for part in &target_parts[common..] {
        relative.push(part);
    }
    relative
}

/// Builds the images a first boot needs offline — `kios.local/pause:1`
/// from `tools/pause`, `kios.local/busybox:1` from `busybox_tree` (the
/// BOM's busybox, fetched), `kios.local/kiosctl:1` from `tools/kiosctl`
/// and `kios.local/chrony:1` (the time-sync pod's) from the BOM's chrony
/// — as OCI archives in `out_dir`.
pub fn build_images(
    workspace: &Workspace,
    arch: Arch,
    busybox_tree: &Path,
    out_dir: &Path,
) -> Result<Vec<ImageArchive>> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let pause_binary = workspace.build_musl_binary("kios-pause", arch)?;
    let kiosctl_binary = workspace.build_musl_binary("kiosctl", arch)?;
    let busybox_binary = find_executable(busybox_tree, "busybox").context("component `busybox`")?;
    let images = [
        ("pause.tar", pause_image(&pause_binary, arch)?),
        ("busybox.tar", busybox_image(&busybox_binary, arch)?),
        ("kiosctl.tar", kiosctl_image(&kiosctl_binary, arch)?),
    ];
    let mut written = Vec::new();
    for (file_name, image) in images {
        let path = out_dir.join(file_name);
        image.write_archive(&path)?;
        let bytes = std::fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        written.push(ImageArchive {
            reference: image.name.clone(),
            path,
            bytes,
        });
    }
    let chrony_archive = chrony::chrony_archive(&bom::Bom::of(workspace)?, arch)?;
    let path = out_dir.join("chrony.tar");
    copy_into_place(&chrony_archive, &path)?;
    written.push(ImageArchive {
        reference: chrony::CHRONY_IMAGE.to_string(),
        bytes: file_size(&path)?,
        path,
    });
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runtime_its_shim_one_oci_runtime_the_kubelet_and_mount_go_in_bin() {
        for runtime in [OciRuntime::Runc, OciRuntime::Crun] {
            let in_bin: Vec<&str> = placements(runtime)
                .iter()
                .filter(|p| p.image_dir == "/bin")
                .map(|p| p.binary)
                .collect();
            assert_eq!(
                in_bin,
                [
                    "containerd",
                    "containerd-shim-runc-v2",
                    runtime.name(),
                    "kubelet",
                    "mount"
                ]
            );
        }
        // umount is mount under another name.
        assert_eq!(BIN_LINKS, [("/bin/umount", "/bin/mount")]);
        let cni: Vec<&str> = placements(OciRuntime::Runc)
            .iter()
            .filter(|p| p.image_dir == CNI_BIN_DIR)
            .map(|p| p.binary)
            .collect();
        assert_eq!(cni, CNI_PLUGINS);
    }

    #[test]
    fn relative_symlink_targets() {
        assert_eq!(
            relative_target(
                Path::new("/lib64/ld-linux-x86-64.so.2"),
                Path::new("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
            ),
            Path::new("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(
            relative_target(
                Path::new("/lib/x86_64-linux-gnu/libseccomp.so.2"),
                Path::new("/lib/x86_64-linux-gnu/libseccomp.so.2.5.4")
            ),
            Path::new("libseccomp.so.2.5.4")
        );
    }

    #[test]
    fn finds_the_one_executable_with_a_name() {
        let dir = std::env::temp_dir().join(format!("kios-find-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
        let executable = |path: PathBuf| {
            std::fs::write(&path, b"x").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        executable(dir.join("usr/sbin/runc"));
        std::fs::create_dir_all(dir.join("usr/share/lintian/overrides")).unwrap();
        std::fs::write(
            dir.join("usr/share/lintian/overrides/runc"),
            b"not a binary",
        )
        .unwrap();
        // Debian's runc package also has this symlink; symlinks are not candidates.
        std::os::unix::fs::symlink("../sbin/runc", dir.join("usr/bin/runc")).unwrap();
        assert_eq!(
            find_executable(&dir, "runc").unwrap(),
            dir.join("usr/sbin/runc")
        );
        assert!(find_executable(&dir, "crun").is_err());
        executable(dir.join("usr/bin/crun"));
        executable(dir.join("usr/sbin/crun"));
        let error = find_executable(&dir, "crun").unwrap_err().to_string();
        assert!(error.contains("several"), "{error}");
        let single = dir.join("usr/sbin/runc");
        assert_eq!(find_executable(&single, "anything").unwrap(), single);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
