//! The time-sync static pod's image, `kios.local/chrony:1`: Debian's
//! chronyd and exactly the shared libraries its ELF headers name (closed
//! over, resolved in the image's own sysroot), as a single-layer OCI image
//! per architecture, seeded into every node image. No shell, no chronyc.
//!
//! chronyd looks its user up by name even to stay root (`-u root`, which
//! the pod passes so that it needs no CAP_SETUID), so the image has an
//! `/etc/passwd` with root alone; glibc reads it without an
//! nsswitch.conf. Its configuration is on its command line (the pod's
//! manifest), its servers in the node's `/etc/kios/time-sources`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::components::add_shared_libraries;
use crate::components::bom::{fetch_component, Bom};
use crate::components::elf_deps::{self, Sysroot};
use crate::components::oci::{Image, Layer, LayerCompression, DEBIAN_PATH_ENV};
use crate::host::arch::Arch;
use crate::host::cache::cache_subdir;
use crate::host::fs::{persist_file, scratch_file_for, sha256_hex};
use crate::host::progress::with_step;

/// The reference the pod runs.
pub const CHRONY_IMAGE: &str = "kios.local/chrony:1";
/// The BOM component chronyd comes from; the time-sync test's NTP server
/// is the same chronyd, unpacked on the host.
pub const CHRONY_COMPONENT: &str = "chrony";
/// chronyd, where Debian's package puts it (and the image too).
pub const CHRONYD_PATH: &str = "/usr/sbin/chronyd";
/// The components chronyd's shared libraries are resolved in: the node's
/// libc6, libcap2 and libseccomp2, and gnutls (chronyd links it for NTS)
/// with what it needs.
pub const LIBRARIES: &[&str] = &[
    "libc6",
    "libcap2",
    "libseccomp2",
    "libgnutls30",
    "libnettle8",
    "libhogweed6",
    "libgmp10",
    "libidn2-0",
    "libp11-kit0",
    "libffi8",
    "libtasn1-6",
    "libunistring2",
];
/// getpwnam("root") is all chronyd asks of it.
const PASSWD: &str = "root:x:0:0:root:/root:/usr/sbin/nologin\n";
/// Part of the archive cache key: bump when the layout or the writer changes.
const RECIPE: &str = "chrony-image-1";

/// The image for `arch`: fetches its components.
pub fn chrony_image(bom: &Bom, arch: Arch) -> Result<Image> {
    let chrony = fetch_component(bom, CHRONY_COMPONENT, arch)?;
    let chronyd = chrony.join(CHRONYD_PATH.trim_start_matches('/'));
    let built_for = elf_deps::file_arch(&chronyd)?;
    if built_for != arch {
        bail!("component `{CHRONY_COMPONENT}` gave a {built_for} chronyd for a {arch} image");
    }
    let mut layer = Layer::new();
    layer.file_from_host(CHRONYD_PATH, 0o755, &chronyd)?;
    let sysroot = Sysroot::new(
        LIBRARIES
            .iter()
            .map(|name| fetch_component(bom, name, arch))
            .collect::<Result<Vec<PathBuf>>>()?,
    );
    add_shared_libraries(&mut layer, &chronyd, &sysroot)?;
    layer.file("/etc/passwd", 0o644, PASSWD);
    Ok(Image {
        name: CHRONY_IMAGE.to_string(),
        arch,
        entrypoint: vec![CHRONYD_PATH.to_string()],
        cmd: Vec::new(),
        layer,
    })
}

/// The image's OCI archive for `arch`, its layer zstd-compressed (it is
/// seeded, never pushed: 3.6 MB against gzip's 4.5 on amd64), built once
/// per set of pins and cached; returns its path.
pub fn chrony_archive(bom: &Bom, arch: Arch) -> Result<PathBuf> {
    let path = cache_subdir("oci-images")?
        .join(cache_key(bom, arch)?)
        .join(format!("chrony-{arch}.tar"));
    if path.is_file() {
        return Ok(path);
    }
    with_step(format!("writing the {arch} chrony image archive"), || {
        let bytes = chrony_archive_bytes(bom, arch)?;
        let scratch = scratch_file_for(&path)?;
        std::fs::write(scratch.path(), &bytes)
            .with_context(|| format!("writing {}", scratch.path().display()))?;
        persist_file(scratch, &path)
    })?;
    Ok(path)
}

/// The OCI archive of [`chrony_image`], its layer zstd-compressed, as
/// bytes (not cached).
pub fn chrony_archive_bytes(bom: &Bom, arch: Arch) -> Result<Vec<u8>> {
    chrony_image(bom, arch)?.to_archive_with(&[DEBIAN_PATH_ENV.to_string()], LayerCompression::Zstd)
}

/// What the archive is made of: the recipe, the arch and every
/// component's pin.
fn cache_key(bom: &Bom, arch: Arch) -> Result<String> {
    let mut key = format!("{RECIPE}\n{arch}\n");
    for name in [CHRONY_COMPONENT].iter().chain(LIBRARIES) {
        let source = bom.source(name, arch)?;
        key.push_str(&format!("{name} {source:?}\n"));
    }
    Ok(sha256_hex(key)[..16].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_component_is_pinned_for_both_arches_and_none_is_the_nodes_library() {
        let bom = Bom::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(crate::components::bom::BOM_FILE),
        )
        .unwrap();
        for arch in Arch::ALL {
            for name in [CHRONY_COMPONENT].iter().chain(LIBRARIES) {
                bom.source(name, arch).unwrap();
            }
        }
        for name in LIBRARIES.iter().skip(3) {
            assert!(
                !bom.component(name).unwrap().library,
                "{name}: the node's binaries need none of chrony's libraries"
            );
        }
    }
}
