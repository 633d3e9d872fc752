//! Resolving the fragments into a `.config` in a private build directory
//! and compiling the kernel from it; built kernels are cached by (source
//! version, sha256 of the resolved config).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use super::config::{
    config_differences, fragment_paths, parse_config, read_requests, resolved_config_path,
    unmet_requests, Unmet,
};
use super::source::{kernel_source, KernelSource};
use super::SOURCE_PACKAGE;
use super::{
    build_packages, cross_compiler, device_tree_path_in_build, device_tree_targets,
    image_path_in_build, image_target, kernel_arch,
};
use crate::host::arch::Arch;
use crate::host::cache::{cache_subdir, KERNEL_BUILD};
use crate::host::command::run_logged;
use crate::host::fs::{copy_into_place, file_size, remove_dir_if_present, sha256_hex};
use crate::host::packages::ensure_installed;
use crate::host::progress::with_step;
use crate::host::workspace::Workspace;

/// A config resolved from the fragments in a private build directory.
#[derive(Debug)]
pub struct Resolution {
    pub source: KernelSource,
    pub arch: Arch,
    /// The out-of-tree build directory (`make O=`), holding the `.config`;
    /// removed when the resolution is dropped.
    build_dir: TempDir,
    pub config: String,
    pub unmet: Vec<Unmet>,
}

impl Resolution {
    pub fn build_dir(&self) -> &Path {
        self.build_dir.path()
    }
}

/// `make tinyconfig`, `merge_config.sh -m` with the fragments, `make
/// olddefconfig`, in a fresh per-process build directory.
pub fn resolve(workspace: &Workspace, arch: Arch) -> Result<Resolution> {
    ensure_installed(&build_packages(arch)?)?;
    let fragments = fragment_paths(workspace, arch);
    let requests = read_requests(&fragments)?;
    let source = kernel_source()?;
    let builds = cache_subdir(KERNEL_BUILD)?;
    remove_abandoned_build_dirs(&builds)?;
    // Named after this process, so a later run can tell it was abandoned.
    let build_dir = tempfile::Builder::new()
        .prefix(&format!(
            ".work-{}-{}-",
            kernel_arch(arch),
            std::process::id()
        ))
        .tempdir_in(&builds)
        .with_context(|| format!("creating a build directory in {}", builds.display()))?;
    let log = build_dir.path().join("resolve.log");
    let config = with_step(
        format!("resolving the kiOS kernel config for {arch}"),
        || {
            run_logged(
                kernel_make(&source, arch, build_dir.path())?.arg("tinyconfig"),
                &log,
            )?;
            let config = build_dir.path().join(".config");
            // -m: only merge; olddefconfig below fills in the rest.
            run_logged(
                Command::new(source.tree.join("scripts/kconfig/merge_config.sh"))
                    .current_dir(&source.tree)
                    .arg("-m")
                    .arg("-O")
                    .arg(build_dir.path())
                    .arg(&config)
                    .args(&fragments),
                &log,
            )?;
            run_logged(
                kernel_make(&source, arch, build_dir.path())?.arg("olddefconfig"),
                &log,
            )?;
            std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))
        },
    )?;
    let unmet = unmet_requests(&requests, &parse_config(&config));
    Ok(Resolution {
        source,
        arch,
        build_dir,
        config,
        unmet,
    })
}

/// Removes the build directories (about 1 GB each) of processes that are
/// gone, e.g. an interrupted build.
fn remove_abandoned_build_dirs(builds: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(builds).with_context(|| format!("listing {}", builds.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", builds.display()))?;
        let name = entry.file_name();
        let Some(owner) = build_dir_owner(&name.to_string_lossy()) else {
            continue;
        };
        if !Path::new("/proc").join(owner.to_string()).exists() {
            remove_dir_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// The process id in a `.work-<arch>-<pid>-<random>` directory name.
fn build_dir_owner(name: &str) -> Option<u32> {
    // The kernel's arch names have no dash (x86_64, arm64).
    let mut parts = name.strip_prefix(".work-")?.split('-');
    parts.next()?;
    parts.next()?.parse().ok()
}

/// `make` in the source tree, building into `build_dir`.
fn kernel_make(source: &KernelSource, arch: Arch, build_dir: &Path) -> Result<Command> {
    let mut make = Command::new("make");
    make.current_dir(&source.tree)
        .arg(format!("O={}", build_dir.display()))
        .arg(format!("ARCH={}", kernel_arch(arch)));
    if let Some((_, prefix)) = cross_compiler(arch)? {
        make.arg(format!("CROSS_COMPILE={prefix}"));
    }
    // The same source and config give the same kernel, whoever builds it when.
    make.env("KBUILD_BUILD_USER", "kios")
        .env("KBUILD_BUILD_HOST", "kios")
        .env("KBUILD_BUILD_VERSION", "1")
        .env(
            "KBUILD_BUILD_TIMESTAMP",
            format!("Debian {SOURCE_PACKAGE} {}", source.version),
        );
    Ok(make)
}

fn unmet_report(arch: Arch, unmet: &[Unmet]) -> String {
    let lines: Vec<String> = unmet.iter().map(|u| format!("  {u}")).collect();
    format!(
        "{} option(s) of the {arch} kernel fragments did not take effect \
         (a dependency is off, or another option selects it):\n{}",
        unmet.len(),
        lines.join("\n")
    )
}

/// What CI runs: the fragments resolve with every request honoured, and the
/// committed resolved config is what they resolve to. Builds nothing.
pub fn check_config(workspace: &Workspace, arch: Arch) -> Result<()> {
    let resolution = resolve(workspace, arch)?;
    let committed_path = resolved_config_path(workspace, arch);
    let committed = std::fs::read_to_string(&committed_path);
    let Resolution {
        config,
        unmet,
        source,
        ..
    } = resolution;
    let version = source.version;
    if !unmet.is_empty() {
        bail!("{}", unmet_report(arch, &unmet));
    }
    let committed =
        committed.with_context(|| format!("reading the committed {}", committed_path.display()))?;
    let differences = config_differences(&committed, &config);
    if !differences.is_empty() {
        const SHOWN: usize = 40;
        bail!(
            "{} is not what the fragments resolve to with {SOURCE_PACKAGE} {version} \
             ({} differing lines; `cargo kios kernel --arch {arch} --config-only` rewrites it):\n{}",
            committed_path.display(),
            differences.len(),
            differences
                .iter()
                .take(SHOWN)
                .map(|line| format!("  {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}

/// Writes the resolution to `kernel/<arch>.resolved.config` if it changed.
fn record_resolved_config(workspace: &Workspace, resolution: &Resolution) -> Result<()> {
    let path = resolved_config_path(workspace, resolution.arch);
    // A missing file is simply written.
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != resolution.config {
        std::fs::write(&path, &resolution.config)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("updated {} (commit it)", path.display());
    }
    Ok(())
}

/// Resolves the fragments and records the result in
/// `kernel/<arch>.resolved.config`, building nothing (after editing a fragment).
pub fn update_config(workspace: &Workspace, arch: Arch) -> Result<()> {
    let resolution = resolve(workspace, arch)?;
    if !resolution.unmet.is_empty() {
        bail!("{}", unmet_report(arch, &resolution.unmet));
    }
    record_resolved_config(workspace, &resolution)
}

/// A built kiOS kernel.
#[derive(Clone, Debug)]
pub struct KernelImage {
    pub arch: Arch,
    pub source_version: String,
    /// bzImage (amd64) or Image (arm64).
    pub path: PathBuf,
    pub bytes: u64,
    /// Whether this run compiled it (false: it came from the cache).
    pub built_now: bool,
}

impl KernelImage {
    /// A board's device tree built with this kernel (`bcm2711-rpi-4-b.dtb`),
    /// beside it in the cache.
    pub fn device_tree(&self, file_name: &str) -> Result<PathBuf> {
        let path = self.path.with_file_name(file_name);
        if !path.is_file() {
            bail!(
                "the {} kiOS kernel has no device tree {file_name} (at {})",
                self.arch,
                path.display()
            );
        }
        Ok(path)
    }
}

/// Resolves the config, rewrites the committed resolved config if it
/// changed, and returns the kernel for it, building it unless cached.
pub fn build_kernel(workspace: &Workspace, arch: Arch) -> Result<KernelImage> {
    let resolution = resolve(workspace, arch)?;
    if !resolution.unmet.is_empty() {
        bail!("{}", unmet_report(arch, &resolution.unmet));
    }
    record_resolved_config(workspace, &resolution)?;
    let config_key = sha256_hex(&resolution.config);
    let output_dir = cache_subdir(KERNEL_BUILD)?
        .join(&resolution.source.version)
        .join(arch.debian_name())
        .join(config_key.get(..16).unwrap_or(&config_key));
    let image = output_dir.join(image_target(arch));
    let built_now = !image.exists();
    if built_now {
        compile(&resolution, &output_dir, &image)?;
    }
    Ok(KernelImage {
        arch,
        source_version: resolution.source.version,
        bytes: file_size(&image)?,
        path: image,
        built_now,
    })
}

/// Runs the build in the resolution's directory and moves the image and
/// its config to `output_dir`.
fn compile(resolution: &Resolution, output_dir: &Path, image: &Path) -> Result<()> {
    let arch = resolution.arch;
    std::fs::create_dir_all(output_dir)
        .with_context(|| format!("creating {}", output_dir.display()))?;
    // Kept beside the cached kernel, so a failed build can be read afterwards.
    let log = output_dir.join("build.log");
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    with_step(
        format!(
            "building the kiOS kernel ({SOURCE_PACKAGE} {}) for {arch} with {jobs} jobs \
             (about 7 minutes on 2 cores; log: {})",
            resolution.source.version,
            log.display()
        ),
        || {
            run_logged(
                kernel_make(&resolution.source, arch, resolution.build_dir())?
                    .arg(format!("-j{jobs}"))
                    .arg(image_target(arch))
                    .args(device_tree_targets(arch)),
                &log,
            )
        },
    )?;
    let build_dir = resolution.build_dir();
    std::fs::copy(build_dir.join(".config"), output_dir.join("config"))
        .with_context(|| format!("copying the config to {}", output_dir.display()))?;
    for target in device_tree_targets(arch) {
        let built = build_dir.join(device_tree_path_in_build(target));
        let name = built
            .file_name()
            .context("a device tree target names a file")?;
        copy_into_place(&built, &output_dir.join(name))?;
    }
    // The image last: its presence is what marks the cached build complete.
    copy_into_place(&build_dir.join(image_path_in_build(arch)), image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_dirs_name_their_process() {
        assert_eq!(build_dir_owner(".work-x86_64-1234-AbC123"), Some(1234));
        assert_eq!(build_dir_owner(".work-x86_64-1234"), Some(1234));
        assert_eq!(build_dir_owner(".work-arm64-77"), Some(77));
        assert_eq!(build_dir_owner("6.12.117-1~deb12u1"), None);
        assert_eq!(build_dir_owner(".work-x86_64-"), None);
    }
}
