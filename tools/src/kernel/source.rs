//! The kernel source: Debian's `linux-source-6.12` package, its tarball
//! unpacked into the cache once per version.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use super::SOURCE_PACKAGE;
use crate::components::debian::{candidate, fetch};
use crate::host::arch::Arch;
use crate::host::cache::cache_subdir;
use crate::host::command::output_of;
use crate::host::fs::{persist_dir, scratch_dir_for};
use crate::host::progress::with_step;

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
    let package = candidate(SOURCE_PACKAGE, Arch::host()?)?;
    // Put in place only once complete (see `host::fs`), so one that exists is whole.
    let unpacked = cache_subdir("kernel-source")?.join(&package.version);
    if !unpacked.is_dir() {
        let extracted = fetch(&package)?;
        let tarball = extracted
            .join("usr/src")
            .join(format!("{SOURCE_PACKAGE}.tar.xz"));
        with_step(
            format!("unpacking {SOURCE_PACKAGE} {}", package.version),
            || {
                let scratch = scratch_dir_for(&unpacked)?;
                output_of(
                    Command::new("tar")
                        .arg("-xf")
                        .arg(&tarball)
                        .arg("-C")
                        .arg(scratch.path()),
                )?;
                persist_dir(scratch, &unpacked)
            },
        )?;
    }
    Ok(KernelSource {
        tree: unpacked.join(SOURCE_PACKAGE),
        version: package.version,
    })
}
