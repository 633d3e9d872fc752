//! Update bundles ([docs/updates.md](../../../docs/updates.md)): one
//! release for the inactive slot of an A/B disk, shipped as an OCI image
//! a node pulls like any other. The image holds `kiosctl` as its
//! entrypoint (`update`, the default command) and the bundle in
//! [`IMAGE_DIR`]: the release's UKI, its root with the hash tree, and the
//! manifest naming the version, the arch and both files' sizes and
//! SHA-256s (the contract is `kios_abi::update_bundle`). A pod that
//! mounts the system socket runs it; the node checks and writes.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use kios_abi::update_bundle::{key, FORMAT, IMAGE_DIR, MANIFEST_FILE, ROOT_FILE, UKI_FILE};
use serde::Serialize;

use crate::components::oci::{Image, Layer};
use crate::host::arch::Arch;
use crate::host::fs::sha256_file;
use crate::image::secure_boot::{read_signed, SigningKey};
use crate::image::slots::Release;
use sha2::{Digest, Sha256};

/// The bundle image's repository: `kios.local/kios-update:<version>` in
/// the archive; pushed to a registry under any name.
pub const REPOSITORY: &str = "kios-update";

/// A bundle's files in an image: name and contents.
pub type BundleFiles<'a> = Vec<(&'a str, Vec<u8>)>;

/// A written bundle.
#[derive(Clone, Debug, Serialize)]
pub struct UpdateBundle {
    pub arch: Arch,
    pub version: String,
    /// The OCI image-layout archive (`skopeo copy oci-archive:...`, or
    /// `ctr images import`).
    pub archive: PathBuf,
    pub archive_bytes: u64,
    /// The reference inside the archive.
    pub image: String,
    /// The manifest's text, as in the image.
    pub manifest: String,
}

/// The manifest of `release`, whose UKI is `uki` (signed or not), with
/// `tries` boot tries for its entry.
pub fn manifest(release: &Release, uki: &[u8], tries: u32) -> Result<String> {
    ensure!(
        (1..=9).contains(&tries),
        "an entry's boot tries must be 1 to 9, not {tries}"
    );
    Ok(manifest_text(&[
        (key::FORMAT, FORMAT.to_string()),
        (key::VERSION, release.version.clone()),
        (key::ARCH, release.arch.debian_name().to_string()),
        (key::UKI_SIZE, uki.len().to_string()),
        (key::UKI_SHA256, hex_sha256(uki)),
        (key::ROOT_SIZE, release.root_bytes.to_string()),
        (key::ROOT_SHA256, sha256_file(&release.root)?),
        (key::ROOT_PARTUUID, release.partition_uuid.to_string()),
        (key::BOOT_TRIES, tries.to_string()),
    ]))
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `KEY=value` lines, in the order given.
pub fn manifest_text(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

/// An image of `kiosctl` with bundles: each `(dir, files)` puts `files`
/// (name, contents) under `dir`. Its command is `kiosctl update`
/// [`IMAGE_DIR`]. Tests build bundles that must be refused with it too.
pub fn bundle_image(
    name: &str,
    arch: Arch,
    kiosctl_binary: &Path,
    bundles: &[(&str, BundleFiles)],
) -> Result<Image> {
    let mut layer = Layer::new();
    layer.file_from_host("/kiosctl", 0o755, kiosctl_binary)?;
    for (dir, files) in bundles {
        layer.directory(dir, 0o755);
        for (file, contents) in files {
            layer.file(&format!("{dir}/{file}"), 0o644, contents.clone());
        }
    }
    Ok(Image {
        name: name.to_string(),
        arch,
        entrypoint: vec!["/kiosctl".to_string()],
        cmd: vec!["update".to_string(), IMAGE_DIR.to_string()],
        layer,
    })
}

/// Writes `release`'s bundle image to `dir/kios-update-<version>-<arch>.tar`,
/// its UKI signed with `signing` for a node under Secure Boot.
pub fn write_update_bundle(
    release: &Release,
    kiosctl_binary: &Path,
    tries: u32,
    signing: Option<&SigningKey>,
    dir: &Path,
) -> Result<UpdateBundle> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let uki = read_signed(&release.uki, signing, &dir.join(".signed-uki.efi"))?;
    let manifest = manifest(release, &uki, tries)?;
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let image_name = format!("kios.local/{REPOSITORY}:{}", release.version);
    let image = bundle_image(
        &image_name,
        release.arch,
        kiosctl_binary,
        &[(
            IMAGE_DIR,
            vec![
                (MANIFEST_FILE, manifest.clone().into_bytes()),
                (UKI_FILE, uki),
                (ROOT_FILE, read(&release.root)?),
            ],
        )],
    )?;
    let archive = dir.join(format!(
        "{REPOSITORY}-{}-{}.tar",
        release.version, release.arch
    ));
    image.write_archive(&archive)?;
    let archive_bytes = std::fs::metadata(&archive)
        .with_context(|| format!("reading {}", archive.display()))?
        .len();
    Ok(UpdateBundle {
        arch: release.arch,
        version: release.version.clone(),
        archive,
        archive_bytes,
        image: image_name,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(dir: &Path) -> Release {
        let (uki, root) = (dir.join("kios.efi"), dir.join("root.img"));
        std::fs::write(&uki, b"uki").unwrap();
        std::fs::write(&root, b"root").unwrap();
        Release {
            arch: Arch::Arm64,
            version: "4.1".into(),
            uki,
            uki_bytes: 3,
            root,
            root_data_bytes: 4,
            root_bytes: 4,
            root_hash: "ab".repeat(32),
            partition_uuid: uuid::Uuid::parse_str(&"ab".repeat(16)).unwrap(),
            cmdline: String::new(),
        }
    }

    #[test]
    fn the_manifest_names_the_release_and_hashes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = manifest(&release(dir.path()), b"uki", 3).unwrap();
        let hash = |file: &str| sha256_file(&dir.path().join(file)).unwrap();
        assert_eq!(
            text,
            format!(
                "KIOS_UPDATE_FORMAT=1\nVERSION=4.1\nARCH=arm64\nUKI_SIZE=3\nUKI_SHA256={}\n\
                 ROOT_SIZE=4\nROOT_SHA256={}\nROOT_PARTUUID=abababab-abab-abab-abab-abababababab\n\
                 BOOT_TRIES=3\n",
                hash("kios.efi"),
                hash("root.img")
            )
        );
    }

    #[test]
    fn an_entry_gets_one_to_nine_tries() {
        let dir = tempfile::tempdir().unwrap();
        for tries in [0, 10] {
            assert!(manifest(&release(dir.path()), b"uki", tries).is_err());
        }
    }
}
