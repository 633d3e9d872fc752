//! The kiOS kernel: the config fragments in `kernel/` merged over
//! `make tinyconfig` with the kernel's own tooling, and the kernel built
//! from Debian's `linux-source-6.12` package with everything built in.
//!
//! The resolved `.config` per arch is committed beside the fragments, like
//! a lock file: a build rewrites it, [`build::check_config`] (what CI runs)
//! verifies that it is current and that every option a fragment asks for
//! took effect (merge_config.sh only warns when Kconfig drops one). Built
//! kernels are cached by (source version, sha256 of the resolved config).
//!
//! This file holds the naming per arch and which kernel an image boots;
//! [`config`] reads fragments and configs, [`source`] unpacks the source,
//! [`build`] resolves and compiles.

pub mod build;
pub mod config;
pub mod source;

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::host::arch::Arch;

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

/// The board device trees built beside the kernel, from the same source:
/// `make` target (relative to the arch's `boot/dts`) per arch.
fn device_tree_targets(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Amd64 => &[],
        // The Raspberry Pi 4 Model B (`--board rpi4`).
        Arch::Arm64 => &["broadcom/bcm2711-rpi-4-b.dtb"],
    }
}

/// Where `make` writes a device tree target, relative to the build directory.
fn device_tree_path_in_build(target: &str) -> PathBuf {
    Path::new("arch/arm64/boot/dts").join(target)
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

/// The cross compiler's Debian package and its `CROSS_COMPILE` prefix, when
/// `arch` is not the host's.
fn cross_compiler(arch: Arch) -> Result<Option<(&'static str, &'static str)>> {
    if arch == Arch::host()? {
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

/// Which kernel a node image boots.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    /// Debian's cloud kernel from the BOM, with the modules the node needs.
    Debian,
    /// The kiOS kernel built from `kernel/` (cached): everything built in,
    /// including every module the node loads from Debian's kernel. The
    /// default: PID 1 1.3 s sooner on amd64, 0.9 s on arm64.
    #[default]
    Kios,
}

impl KernelChoice {
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Debian => "debian",
            KernelChoice::Kios => "kios",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            device_tree_path_in_build(device_tree_targets(Arch::Arm64)[0]),
            Path::new("arch/arm64/boot/dts/broadcom/bcm2711-rpi-4-b.dtb")
        );
    }
}
