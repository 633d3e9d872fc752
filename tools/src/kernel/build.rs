//! The kiOS kernel: the config fragments in `kernel/` merged over
//! `make tinyconfig` with the kernel's own tooling, and the kernel built
//! from Debian's `linux-source-6.12` package with everything built in.
//!
//! The resolved `.config` per arch is committed beside the fragments, like
//! a lock file: a build rewrites it, `check_config` (what CI runs) verifies
//! that it is current and that every option a fragment asks for took effect
//! (merge_config.sh only warns when Kconfig drops one). Built kernels are
//! cached by (source version, sha256 of the resolved config).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::host::arch::Arch;
use crate::host::cache::cache_subdir;
use crate::host::command::{output_of, run_logged};
use crate::components::debian::{candidate, fetch};
use crate::host::packages::ensure_installed;
use crate::host::progress::with_step;
use crate::host::workspace::Workspace;

/// Debian's package with the kernel source as one tarball under /usr/src.
pub const SOURCE_PACKAGE: &str = "linux-source-6.12";

/// What configuring and building the kernel runs on the host (LZ4 for
/// the compressed bzImage, libelf for objtool).
pub const BUILD_PACKAGES: &[&str] = &[
    "build-essential",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "xz-utils",
    "zstd",
    "lz4",
];

/// The fragment every arch merges first.
const COMMON_FRAGMENT: &str = "common.config";

/// Kernel naming for the two kiOS architectures.
fn kernel_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "arm64",
    }
}

/// The boot image `make` produces, relative to the build directory.
fn image_target(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "bzImage",
        Arch::Arm64 => "Image",
    }
}

fn image_path_in_build(arch: Arch) -> PathBuf {
    let arch_dir = match arch {
        Arch::Amd64 => "x86",
        Arch::Arm64 => "arm64",
    };
    Path::new("arch")
        .join(arch_dir)
        .join("boot")
        .join(image_target(arch))
}

fn host_arch() -> Result<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(Arch::Amd64),
        "aarch64" => Ok(Arch::Arm64),
        other => bail!("kiOS kernels are built on amd64 or arm64 hosts, not {other}"),
    }
}

/// The cross compiler's Debian package and its `CROSS_COMPILE` prefix, when
/// `arch` is not the host's.
fn cross_compiler(arch: Arch) -> Result<Option<(&'static str, &'static str)>> {
    if arch == host_arch()? {
        return Ok(None);
    }
    Ok(Some(match arch {
        Arch::Amd64 => ("gcc-x86-64-linux-gnu", "x86_64-linux-gnu-"),
        Arch::Arm64 => ("gcc-aarch64-linux-gnu", "aarch64-linux-gnu-"),
    }))
}

/// The host packages for configuring or building `arch`'s kernel.
pub fn build_packages(arch: Arch) -> Result<Vec<&'static str>> {
    let mut packages = BUILD_PACKAGES.to_vec();
    // Kconfig probes the compiler, so even resolving the config needs the cross compiler.
    if let Some((package, _)) = cross_compiler(arch)? {
        packages.push(package);
    }
    Ok(packages)
}

/// Where the fragments and resolved configs live.
pub fn kernel_dir(workspace: &Workspace) -> PathBuf {
    workspace.root.join("kernel")
}

/// `kernel/<kernel arch>.config`, merged after the common fragment.
pub fn arch_fragment(workspace: &Workspace, arch: Arch) -> PathBuf {
    kernel_dir(workspace).join(format!("{}.config", kernel_arch(arch)))
}

/// `kernel/<kernel arch>.resolved.config`, the committed result.
pub fn resolved_config_path(workspace: &Workspace, arch: Arch) -> PathBuf {
    kernel_dir(workspace).join(format!("{}.resolved.config", kernel_arch(arch)))
}

fn fragment_paths(workspace: &Workspace, arch: Arch) -> [PathBuf; 2] {
    [
        kernel_dir(workspace).join(COMMON_FRAGMENT),
        arch_fragment(workspace, arch),
    ]
}

/// One option's value as a .config spells it: `y`, `m`, a number, a
/// quoted string, or `n` for `# CONFIG_X is not set`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionValue(pub String);

impl OptionValue {
    fn off() -> OptionValue {
        OptionValue("n".to_string())
    }
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An option line of a config: `CONFIG_X=value` or `# CONFIG_X is not set`.
fn parse_option_line(line: &str) -> Option<(String, OptionValue)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let name = rest.strip_suffix(" is not set")?;
        return name
            .starts_with("CONFIG_")
            .then(|| (name.to_string(), OptionValue::off()));
    }
    let (name, value) = line.split_once('=')?;
    name.starts_with("CONFIG_")
        .then(|| (name.to_string(), OptionValue(value.to_string())))
}

/// Every option of a resolved .config. Options Kconfig did not write at
/// all (their dependencies are off) are off too.
pub fn parse_config(text: &str) -> BTreeMap<String, OptionValue> {
    text.lines().filter_map(parse_option_line).collect()
}

/// An option a fragment asks for, with where it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub value: OptionValue,
    /// `file:line`, for messages.
    pub origin: String,
}

/// Reads fragments in merge order (a later fragment overrides an earlier
/// one, as merge_config.sh does). Each option must have its reason on the
/// comment line right above it, and appear once per fragment.
pub fn read_requests(fragments: &[PathBuf]) -> Result<BTreeMap<String, Request>> {
    let mut requests = BTreeMap::new();
    for fragment in fragments {
        let text = std::fs::read_to_string(fragment).with_context(|| {
            format!("reading the kernel config fragment {}", fragment.display())
        })?;
        let name = fragment.file_name().map_or_else(
            || fragment.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for (option, request) in parse_fragment(&text, &name)? {
            requests.insert(option, request);
        }
    }
    Ok(requests)
}

/// One fragment's options; `name` labels the origins and errors.
pub fn parse_fragment(text: &str, name: &str) -> Result<Vec<(String, Request)>> {
    let mut options: Vec<(String, Request)> = Vec::new();
    let mut previous_is_reason = false;
    for (index, line) in text.lines().enumerate() {
        let origin = format!("{name}:{}", index + 1);
        let trimmed = line.trim();
        if let Some((option, value)) = parse_option_line(trimmed) {
            if !previous_is_reason {
                bail!("{origin}: {option} has no `# reason` comment on the line above it");
            }
            if options.iter().any(|(seen, _)| *seen == option) {
                bail!("{origin}: {option} appears twice in {name}");
            }
            options.push((option, Request { value, origin }));
            previous_is_reason = false;
        } else if trimmed.starts_with('#') {
            previous_is_reason = trimmed.len() > 1;
        } else if trimmed.is_empty() {
            previous_is_reason = false;
        } else {
            bail!("{origin}: not an option, a comment or a blank line: {trimmed}");
        }
    }
    Ok(options)
}

/// A requested option whose resolved value differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmet {
    pub option: String,
    pub request: Request,
    pub resolved: OptionValue,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} asked for {}, resolved to {}",
            self.request.origin, self.option, self.request.value, self.resolved
        )
    }
}

/// The requests the resolved config does not honour (usually a missing
/// dependency, or a `select` from another option).
pub fn unmet_requests(
    requests: &BTreeMap<String, Request>,
    resolved: &BTreeMap<String, OptionValue>,
) -> Vec<Unmet> {
    requests
        .iter()
        .filter_map(|(option, request)| {
            let resolved = resolved
                .get(option)
                .cloned()
                .unwrap_or_else(OptionValue::off);
            (resolved != request.value).then(|| Unmet {
                option: option.clone(),
                request: request.clone(),
                resolved,
            })
        })
        .collect()
}

/// Lines Kconfig writes from probing the host's tools rather than from the
/// fragments: the header naming the source version, and the compilers',
/// assembler's and linker's versions. A rustup or gcc update changes them
/// and nothing the node runs, so the check ignores them; an option whose
/// value follows from a probe still shows up as the option itself.
fn describes_host_toolchain(line: &str) -> bool {
    let option = line
        .strip_prefix("CONFIG_")
        .and_then(|rest| rest.split_once('='))
        .map(|(name, _)| name);
    match option {
        Some(name) => {
            name.ends_with("_VERSION")
                || name == "CC_VERSION_TEXT"
                || name.starts_with("RUSTC_HAS_")
        }
        None => line.starts_with("# Linux/") && line.ends_with(" Kernel Configuration"),
    }
}

/// Lines that differ between the committed and the freshly resolved config,
/// leaving out those that only describe the host's toolchain.
pub fn config_differences(committed: &str, resolved: &str) -> Vec<String> {
    let relevant = |config| -> BTreeSet<&str> {
        str::lines(config)
            .filter(|line| !describes_host_toolchain(line))
            .collect()
    };
    let committed_lines = relevant(committed);
    let resolved_lines = relevant(resolved);
    let removed = committed_lines
        .difference(&resolved_lines)
        .map(|line| format!("- {line}"));
    let added = resolved_lines
        .difference(&committed_lines)
        .map(|line| format!("+ {line}"));
    removed.chain(added).collect()
}

/// The unpacked kernel source tree of one Debian version.
#[derive(Clone, Debug)]
pub struct KernelSource {
    /// The Debian package version, e.g. `6.12.117-1~deb12u1`.
    pub version: String,
    pub tree: PathBuf,
}

/// Fetches linux-source-6.12 and unpacks its tarball into the cache once.
pub fn kernel_source() -> Result<KernelSource> {
    // The package is arch `all`: apt lists it under the host's native arch only.
    let package = candidate(SOURCE_PACKAGE, host_arch()?)?;
    let unpacked = cache_subdir("kernel-source")?.join(&package.version);
    let tree = unpacked.join(SOURCE_PACKAGE);
    // Written last, so a half-finished unpack is never used.
    let complete_marker = unpacked.join(".kios-unpacked");
    if complete_marker.exists() {
        return Ok(KernelSource {
            version: package.version,
            tree,
        });
    }
    let extracted = fetch(&package)?;
    let tarball = extracted
        .join("usr/src")
        .join(format!("{SOURCE_PACKAGE}.tar.xz"));
    with_step(
        format!("unpacking {SOURCE_PACKAGE} {}", package.version),
        || {
            let parent = unpacked
                .parent()
                .context("the kernel source cache has no parent directory")?;
            // Per-process scratch: two builds may unpack at the same time.
            let partial = parent.join(format!(
                ".{}.partial-{}",
                package.version,
                std::process::id()
            ));
            remove_dir_if_present(&partial)?;
            std::fs::create_dir_all(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            output_of(
                Command::new("tar")
                    .arg("-xf")
                    .arg(&tarball)
                    .arg("-C")
                    .arg(&partial),
            )?;
            std::fs::write(partial.join(".kios-unpacked"), &package.version)
                .with_context(|| format!("marking {} complete", partial.display()))?;
            if complete_marker.exists() {
                // Another process finished first; its tree is as good as ours.
                return remove_dir_if_present(&partial);
            }
            remove_dir_if_present(&unpacked)?;
            std::fs::rename(&partial, &unpacked)
                .with_context(|| format!("moving {} into place", unpacked.display()))
        },
    )?;
    Ok(KernelSource {
        version: package.version,
        tree,
    })
}

/// A config resolved from the fragments in a private build directory.
#[derive(Debug)]
pub struct Resolution {
    pub source: KernelSource,
    pub arch: Arch,
    /// The out-of-tree build directory (`make O=`), holding the `.config`.
    pub build_dir: PathBuf,
    pub config: String,
    pub unmet: Vec<Unmet>,
}

impl Resolution {
    /// Removes the private build directory.
    pub fn discard(self) -> Result<()> {
        remove_dir_if_present(&self.build_dir)
    }
}

/// `make tinyconfig`, `merge_config.sh -m` with the fragments, `make
/// olddefconfig`, in a fresh per-process build directory.
pub fn resolve(workspace: &Workspace, arch: Arch) -> Result<Resolution> {
    ensure_installed(&build_packages(arch)?)?;
    let fragments = fragment_paths(workspace, arch);
    let requests = read_requests(&fragments)?;
    let source = kernel_source()?;
    let builds = cache_subdir("kernel-build")?;
    remove_abandoned_build_dirs(&builds)?;
    let build_dir = builds.join(format!(
        ".work-{}-{}",
        kernel_arch(arch),
        std::process::id()
    ));
    remove_dir_if_present(&build_dir)?;
    std::fs::create_dir_all(&build_dir)
        .with_context(|| format!("creating {}", build_dir.display()))?;
    let log = build_dir.join("resolve.log");
    let resolved = with_step(
        format!("resolving the kiOS kernel config for {arch}"),
        || {
            run_logged(
                kernel_make(&source, arch, &build_dir)?.arg("tinyconfig"),
                &log,
            )?;
            let config = build_dir.join(".config");
            // -m: only merge; olddefconfig below fills in the rest.
            run_logged(
                Command::new(source.tree.join("scripts/kconfig/merge_config.sh"))
                    .current_dir(&source.tree)
                    .arg("-m")
                    .arg("-O")
                    .arg(&build_dir)
                    .arg(&config)
                    .args(&fragments),
                &log,
            )?;
            run_logged(
                kernel_make(&source, arch, &build_dir)?.arg("olddefconfig"),
                &log,
            )?;
            std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))
        },
    );
    let config = match resolved {
        Ok(config) => config,
        Err(error) => {
            remove_dir_if_present(&build_dir)?;
            return Err(error);
        }
    };
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

/// The process id in a `.work-<arch>-<pid>` directory name.
fn build_dir_owner(name: &str) -> Option<u32> {
    name.strip_prefix(".work-")?
        .rsplit_once('-')?
        .1
        .parse()
        .ok()
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
    let config = resolution.config.clone();
    let unmet = resolution.unmet.clone();
    let version = resolution.source.version.clone();
    resolution.discard()?;
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
    let recorded = if resolution.unmet.is_empty() {
        record_resolved_config(workspace, &resolution)
    } else {
        Err(anyhow::anyhow!("{}", unmet_report(arch, &resolution.unmet)))
    };
    resolution.discard()?;
    recorded
}

/// A built kiOS kernel.
/// Which kernel a node image boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelChoice {
    /// Debian's cloud kernel from the BOM, with the modules the node needs.
    #[default]
    Debian,
    /// The kiOS kernel built from `kernel/` (cached): everything built in.
    Kios,
}

impl KernelChoice {
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Debian => "debian",
            KernelChoice::Kios => "kios",
        }
    }

    /// The kernel for `ImageOptions::kernel`: None takes Debian's from the
    /// BOM; the kiOS kernel is built on first use, then comes from the cache.
    pub fn image(self, workspace: &Workspace, arch: Arch) -> Result<Option<PathBuf>> {
        match self {
            KernelChoice::Debian => Ok(None),
            KernelChoice::Kios => Ok(Some(build_kernel(workspace, arch)?.path)),
        }
    }
}

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

/// Resolves the config, rewrites the committed resolved config if it
/// changed, and returns the kernel for it, building it unless cached.
pub fn build_kernel(workspace: &Workspace, arch: Arch) -> Result<KernelImage> {
    let resolution = resolve(workspace, arch)?;
    if !resolution.unmet.is_empty() {
        let report = unmet_report(arch, &resolution.unmet);
        resolution.discard()?;
        bail!("{report}");
    }
    record_resolved_config(workspace, &resolution)?;
    let config_key = sha256_hex(resolution.config.as_bytes());
    let output_dir = cache_subdir("kernel-build")?
        .join(&resolution.source.version)
        .join(arch.debian_name())
        .join(config_key.get(..16).unwrap_or(&config_key));
    let image = output_dir.join(image_target(arch));
    if image.exists() {
        let source_version = resolution.source.version.clone();
        resolution.discard()?;
        return Ok(KernelImage {
            arch,
            source_version,
            bytes: file_size(&image)?,
            path: image,
            built_now: false,
        });
    }
    let built = compile(&resolution, &output_dir, &image);
    let source_version = resolution.source.version.clone();
    let discarded = resolution.discard();
    built?;
    discarded?;
    Ok(KernelImage {
        arch,
        source_version,
        bytes: file_size(&image)?,
        path: image,
        built_now: true,
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
                kernel_make(&resolution.source, arch, &resolution.build_dir)?
                    .arg(format!("-j{jobs}"))
                    .arg(image_target(arch)),
                &log,
            )
        },
    )?;
    let built = resolution.build_dir.join(image_path_in_build(arch));
    std::fs::copy(
        resolution.build_dir.join(".config"),
        output_dir.join("config"),
    )
    .with_context(|| format!("copying the config to {}", output_dir.display()))?;
    let partial = image.with_extension("partial");
    std::fs::copy(&built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, image)
        .with_context(|| format!("moving {} into place", image.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len())
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_lines_and_their_values() {
        assert_eq!(
            parse_option_line("CONFIG_SMP=y"),
            Some(("CONFIG_SMP".into(), OptionValue("y".into())))
        );
        assert_eq!(
            parse_option_line("# CONFIG_VT is not set"),
            Some(("CONFIG_VT".into(), OptionValue::off()))
        );
        assert_eq!(
            parse_option_line("CONFIG_CMDLINE=\"a b\""),
            Some(("CONFIG_CMDLINE".into(), OptionValue("\"a b\"".into())))
        );
        assert_eq!(parse_option_line("# Networking at all."), None);
        assert_eq!(
            parse_option_line("# Linux/x86 6.12 Kernel Configuration"),
            None
        );
    }

    #[test]
    fn fragments_need_a_reason_above_each_option() {
        let good = "# header\n\n# Why SMP.\nCONFIG_SMP=y\n# Why no VT.\n# CONFIG_VT is not set\n";
        let options = parse_fragment(good, "common.config").unwrap();
        assert_eq!(options.len(), 2);
        assert_eq!(options[1].1.origin, "common.config:6");

        let unexplained = "# Why SMP.\nCONFIG_SMP=y\nCONFIG_NET=y\n";
        let error = parse_fragment(unexplained, "f").unwrap_err().to_string();
        assert!(
            error.contains("f:3") && error.contains("CONFIG_NET"),
            "{error}"
        );

        let after_blank = "# Why.\n\nCONFIG_NET=y\n";
        assert!(parse_fragment(after_blank, "f").is_err());

        let twice = "# a\nCONFIG_NET=y\n# b\nCONFIG_NET=n\n";
        assert!(parse_fragment(twice, "f").is_err());

        assert!(parse_fragment("# a\nnonsense\n", "f").is_err());
    }

    #[test]
    fn unmet_requests_treat_absent_options_as_off() {
        let requests: BTreeMap<String, Request> = [
            ("CONFIG_SMP", "y"),
            ("CONFIG_VT", "n"),
            ("CONFIG_ACPI", "y"),
            ("CONFIG_CPU_FREQ", "n"),
        ]
        .into_iter()
        .map(|(option, value)| {
            (
                option.to_string(),
                Request {
                    value: OptionValue(value.into()),
                    origin: "f:1".into(),
                },
            )
        })
        .collect();
        let resolved = parse_config("CONFIG_SMP=y\nCONFIG_CPU_FREQ=y\n# CONFIG_ACPI is not set\n");
        let unmet: Vec<String> = unmet_requests(&requests, &resolved)
            .into_iter()
            .map(|u| format!("{} {}", u.option, u.resolved))
            .collect();
        assert_eq!(unmet, ["CONFIG_ACPI n", "CONFIG_CPU_FREQ y"]);
    }

    #[test]
    fn later_fragments_override_earlier_ones() {
        let dir = std::env::temp_dir().join(format!("kios-fragments-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let common = dir.join("common.config");
        let x86 = dir.join("x86_64.config");
        std::fs::write(&common, "# a\nCONFIG_A=y\n# b\nCONFIG_B=y\n").unwrap();
        std::fs::write(&x86, "# b off here\n# CONFIG_B is not set\n").unwrap();
        let requests = read_requests(&[common, x86]).unwrap();
        assert_eq!(requests["CONFIG_A"].value, OptionValue("y".into()));
        assert_eq!(requests["CONFIG_B"].value, OptionValue::off());
        assert_eq!(requests["CONFIG_B"].origin, "x86_64.config:2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn differences_name_removed_and_added_lines() {
        let differences = config_differences("A=y\nB=y\n", "A=y\nC=y\n");
        assert_eq!(differences, ["- B=y", "+ C=y"]);
        assert!(config_differences("A=y\n", "A=y\n").is_empty());
    }

    #[test]
    fn a_new_compiler_or_rustc_is_not_a_config_difference() {
        let committed = "# Linux/x86_64 6.12.117 Kernel Configuration\n\
            CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"\n\
            CONFIG_GCC_VERSION=120200\nCONFIG_RUSTC_VERSION=109500\n\
            CONFIG_RUSTC_HAS_UNNECESSARY_TRANSMUTES=y\nCONFIG_SMP=y\n";
        let updated = "# Linux/x86_64 6.12.118 Kernel Configuration\n\
            CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14+deb12u1) 12.2.0\"\n\
            CONFIG_GCC_VERSION=120200\nCONFIG_RUSTC_VERSION=109600\nCONFIG_SMP=y\n";
        assert!(config_differences(committed, updated).is_empty());
        let option_changed = updated.replace("CONFIG_SMP=y", "# CONFIG_SMP is not set");
        assert_eq!(
            config_differences(committed, &option_changed),
            ["- CONFIG_SMP=y", "+ # CONFIG_SMP is not set"]
        );
    }

    #[test]
    fn build_dirs_name_their_process() {
        assert_eq!(build_dir_owner(".work-x86_64-1234"), Some(1234));
        assert_eq!(build_dir_owner(".work-arm64-77"), Some(77));
        assert_eq!(build_dir_owner("6.12.117-1~deb12u1"), None);
        assert_eq!(build_dir_owner(".work-x86_64-"), None);
    }

    #[test]
    fn build_image_paths() {
        assert_eq!(
            image_path_in_build(Arch::Amd64),
            Path::new("arch/x86/boot/bzImage")
        );
        assert_eq!(
            image_path_in_build(Arch::Arm64),
            Path::new("arch/arm64/boot/Image")
        );
    }
}
