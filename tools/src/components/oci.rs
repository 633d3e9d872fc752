//! Small single-layer OCI images, written as OCI image-layout tar archives
//! (`oci-layout`, `index.json`, `blobs/sha256/...`): what containerd's
//! image import reads, so a kiOS image can carry the images its static
//! pods use and the first boot pulls nothing.
//!
//! Builds are reproducible: entries are sorted, every mtime is 0, owners
//! are root, gzip headers carry no time or name, the image config has no
//! creation date, and JSON objects are written with sorted keys.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    ConfigBuilder, Descriptor, DescriptorBuilder, Digest, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, PlatformBuilder,
    RootFsBuilder, ANNOTATION_REF_NAME,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::host::arch::Arch;

/// The image holding each pod sandbox's namespaces (containerd's `sandbox_image`).
pub const PAUSE_IMAGE: &str = "kios.local/pause:1";
/// A busybox image for test pods (busybox is never on the host root).
pub const BUSYBOX_IMAGE: &str = "kios.local/busybox:1";
/// The node's control client (tools/kiosctl), for pods that drive the init.
pub const KIOSCTL_IMAGE: &str = "kios.local/kiosctl:1";

/// The name containerd gives an imported image (it reads this before the OCI ref name).
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
const IMAGE_LAYOUT_VERSION: &str = "1.0.0";
/// The image config's `PATH` for images whose commands are in `/bin`.
pub const PATH_ENV: &str = "PATH=/bin";
/// Debian's default `PATH`, for images laid out as Debian lays out its
/// packages (commands in `/usr/sbin`, `/usr/local/bin`, ...).
pub const DEBIAN_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How an image's layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    /// gzip at its best level: what every registry and runtime reads.
    Gzip,
    /// zstd at level 19: about a fifth smaller for shared libraries, and
    /// containerd unpacks it (from 1.5); for seeded images, which never
    /// pass through a registry.
    Zstd,
}

impl LayerCompression {
    fn compress(self, bytes: &[u8]) -> Result<Vec<u8>> {
        match self {
            LayerCompression::Gzip => gzip(bytes),
            LayerCompression::Zstd => {
                zstd::encode_all(bytes, ZSTD_LEVEL).context("compressing a layer")
            }
        }
    }

    fn media_type(self) -> MediaType {
        match self {
            LayerCompression::Gzip => MediaType::ImageLayerGzip,
            LayerCompression::Zstd => MediaType::ImageLayerZstd,
        }
    }
}

/// zstd's highest level short of `--ultra`, whose windows need more memory
/// to unpack than a small node should spend on it.
const ZSTD_LEVEL: i32 = 19;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Directory,
    File(Vec<u8>),
    Symlink(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    mode: u32,
    node: Node,
}

/// The files of a layer, keyed by path; missing parent directories are added (0755).
#[derive(Clone, Debug, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    pub fn file(&mut self, path: &str, mode: u32, contents: impl Into<Vec<u8>>) -> &mut Self {
        self.insert(path, mode, Node::File(contents.into()))
    }

    pub fn file_from_host(&mut self, path: &str, mode: u32, source: &Path) -> Result<&mut Self> {
        let contents =
            std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        Ok(self.file(path, mode, contents))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.insert(path, 0o777, Node::Symlink(target.to_string()))
    }

    /// An empty directory (or the mode of one that files will go in).
    pub fn directory(&mut self, path: &str, mode: u32) -> &mut Self {
        self.insert(path, mode, Node::Directory)
    }

    /// The digest of the uncompressed layer tar, `sha256:...`: the image
    /// config's diff_id, which the gzip-compressed blob follows from.
    pub fn diff_id(&self) -> Result<String> {
        Ok(sha256_digest(&self.to_tar()?)?.to_string())
    }

    /// Whether the layer has an entry at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_matches('/'))
    }

    fn insert(&mut self, path: &str, mode: u32, node: Node) -> &mut Self {
        let name = path.trim_matches('/').to_string();
        let mut parent = name.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            self.entries.entry(dir.to_string()).or_insert(Entry {
                mode: 0o755,
                node: Node::Directory,
            });
            parent = dir;
        }
        self.entries.insert(name, Entry { mode, node });
        self
    }

    /// The uncompressed tar (what the config's diff_id is the digest of).
    fn to_tar(&self) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, entry) in &self.entries {
            match &entry.node {
                Node::Directory => append(
                    &mut tar,
                    &format!("{name}/"),
                    entry.mode,
                    tar::EntryType::Directory,
                    &[],
                )?,
                Node::File(contents) => append(
                    &mut tar,
                    name,
                    entry.mode,
                    tar::EntryType::Regular,
                    contents,
                )?,
                Node::Symlink(target) => {
                    let mut header = header(entry.mode, tar::EntryType::Symlink, 0);
                    tar.append_link(&mut header, name, target)
                        .with_context(|| format!("adding the symlink {name} to a layer"))?;
                }
            }
        }
        tar.into_inner().context("finishing a layer tar")
    }
}

fn header(mode: u32, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    mode: u32,
    kind: tar::EntryType,
    contents: &[u8],
) -> Result<()> {
    let mut header = header(mode, kind, contents.len() as u64);
    tar.append_data(&mut header, name, contents)
        .with_context(|| format!("adding {name} to a tar archive"))
}

/// A single-layer image for one architecture.
#[derive(Clone, Debug)]
pub struct Image {
    /// The full reference containerd lists it under, e.g. `kios.local/pause:1`.
    pub name: String,
    pub arch: Arch,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub layer: Layer,
}

/// A blob of the image layout: its bytes and their sha256 digest.
struct Blob {
    bytes: Vec<u8>,
    digest: Digest,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Result<Blob> {
        let digest = sha256_digest(&bytes)?;
        Ok(Blob { bytes, digest })
    }

    fn descriptor(&self, media_type: MediaType) -> Result<Descriptor> {
        DescriptorBuilder::default()
            .media_type(media_type)
            .digest(self.digest.clone())
            .size(self.bytes.len() as u64)
            .build()
            .context("describing an image blob")
    }
}

fn sha256_digest(bytes: &[u8]) -> Result<Digest> {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
        .parse()
        .context("forming a sha256 digest")
}

/// JSON with object keys sorted: oci-spec keeps annotations in a HashMap,
/// whose order changes from run to run; serde_json's Value sorts them.
fn canonical_json(value: &impl Serialize) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).context("encoding image JSON")?;
    serde_json::to_vec(&value).context("encoding image JSON")
}

fn oci_arch(arch: Arch) -> oci_spec::image::Arch {
    match arch {
        Arch::Amd64 => oci_spec::image::Arch::Amd64,
        Arch::Arm64 => oci_spec::image::Arch::ARM64,
    }
}

impl Image {
    /// The OCI image-layout tar archive.
    pub fn to_archive(&self) -> Result<Vec<u8>> {
        self.to_archive_with_env(&[PATH_ENV.to_string()])
    }

    /// The same with `env` as the image config's environment instead of
    /// `PATH=/bin`, e.g. [`DEBIAN_PATH_ENV`].
    pub fn to_archive_with_env(&self, env: &[String]) -> Result<Vec<u8>> {
        self.to_archive_with(env, LayerCompression::Gzip)
    }

    /// The same with the layer compressed as `compression` says.
    pub fn to_archive_with(
        &self,
        env: &[String],
        compression: LayerCompression,
    ) -> Result<Vec<u8>> {
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            bail!("`{}` is not an image reference", self.name);
        }
        let layer_tar = self.layer.to_tar()?;
        let diff_id = sha256_digest(&layer_tar)?;
        let layer = Blob::new(compression.compress(&layer_tar)?)?;

        let config = ImageConfigurationBuilder::default()
            .architecture(oci_arch(self.arch))
            .os(Os::Linux)
            .config(
                ConfigBuilder::default()
                    .env(env.to_vec())
                    .entrypoint(self.entrypoint.clone())
                    .cmd(self.cmd.clone())
                    .build()
                    .context("building the image's run config")?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id.to_string()])
                    .build()
                    .context("building the image's rootfs")?,
            )
            .build()
            .context("building the image config")?;
        let config = Blob::new(canonical_json(&config)?)?;

        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config.descriptor(MediaType::ImageConfig)?)
            .layers(vec![layer.descriptor(compression.media_type())?])
            .build()
            .context("building the image manifest")?;
        let manifest = Blob::new(canonical_json(&manifest)?)?;

        let mut manifest_descriptor = manifest.descriptor(MediaType::ImageManifest)?;
        manifest_descriptor.set_platform(Some(
            PlatformBuilder::default()
                .architecture(oci_arch(self.arch))
                .os(Os::Linux)
                .build()
                .context("building the image platform")?,
        ));
        manifest_descriptor.set_annotations(Some(HashMap::from([
            (ANNOTATION_REF_NAME.to_string(), self.name.clone()),
            (CONTAINERD_IMAGE_NAME.to_string(), self.name.clone()),
        ])));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest_descriptor])
            .build()
            .context("building the image index")?;
        let layout = OciLayoutBuilder::default()
            .image_layout_version(IMAGE_LAYOUT_VERSION)
            .build()
            .context("building the oci-layout file")?;

        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for blob in [layer, config, manifest] {
            files.insert(format!("blobs/sha256/{}", blob.digest.digest()), blob.bytes);
        }
        files.insert("index.json".into(), canonical_json(&index)?);
        files.insert("oci-layout".into(), canonical_json(&layout)?);

        let mut archive = tar::Builder::new(Vec::new());
        for dir in ["blobs/", "blobs/sha256/"] {
            append(&mut archive, dir, 0o755, tar::EntryType::Directory, &[])?;
        }
        for (name, contents) in &files {
            append(&mut archive, name, 0o644, tar::EntryType::Regular, contents)?;
        }
        archive.into_inner().context("finishing the image archive")
    }

    /// Writes the archive to `path` (atomically, via a temporary file).
    pub fn write_archive(&self, path: &Path) -> Result<()> {
        let bytes = self.to_archive()?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("moving {} into place", path.display()))
    }
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(bytes).context("compressing a layer")?;
    encoder.finish().context("compressing a layer")
}

/// `kios.local/pause:1`: the static pause binary as `/pause`.
pub fn pause_image(pause_binary: &Path, arch: Arch) -> Result<Image> {
    let mut layer = Layer::new();
    layer.file_from_host("/pause", 0o755, pause_binary)?;
    Ok(Image {
        name: PAUSE_IMAGE.to_string(),
        arch,
        entrypoint: vec!["/pause".to_string()],
        cmd: Vec::new(),
        layer,
    })
}

/// `kios.local/kiosctl:1`: the node's control client alone; its
/// entrypoint takes the command (`shutdown`, `restart-kubelet`, ...).
pub fn kiosctl_image(kiosctl_binary: &Path, arch: Arch) -> Result<Image> {
    let mut layer = Layer::new();
    layer.file_from_host("/kiosctl", 0o755, kiosctl_binary)?;
    Ok(Image {
        name: KIOSCTL_IMAGE.to_string(),
        arch,
        entrypoint: vec!["/kiosctl".to_string()],
        cmd: Vec::new(),
        layer,
    })
}

/// The busybox applets the system and test pods use, as symlinks to
/// `/bin/busybox`: the DHCP client and its `ip`, and what the pods' shell
/// scripts call.
pub const BUSYBOX_APPLETS: &[&str] = &["cat", "echo", "ip", "sh", "sleep", "tail", "udhcpc"];

/// `kios.local/busybox:1`: a static busybox with a few applet links; runs `sh` by default.
pub fn busybox_image(busybox_binary: &Path, arch: Arch) -> Result<Image> {
    let mut layer = Layer::new();
    layer.file_from_host("/bin/busybox", 0o755, busybox_binary)?;
    for applet in BUSYBOX_APPLETS {
        layer.symlink(&format!("/bin/{applet}"), "busybox");
    }
    Ok(Image {
        name: BUSYBOX_IMAGE.to_string(),
        arch,
        entrypoint: Vec::new(),
        cmd: vec!["/bin/sh".to_string()],
        layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(arch: Arch) -> Image {
        let mut layer = Layer::new();
        layer
            .file("/bin/busybox", 0o755, b"\x7fELF".to_vec())
            .symlink("/bin/sh", "busybox");
        Image {
            name: "kios.local/test:1".into(),
            arch,
            entrypoint: vec!["/bin/sh".into()],
            cmd: vec!["-c".into(), "echo hi".into()],
            layer,
        }
    }

    /// (path, type, mode, mtime, uid, contents) of each entry.
    fn list(archive: &[u8]) -> Vec<(String, tar::EntryType, u32, u64, u64, Vec<u8>)> {
        let mut listed = Vec::new();
        for entry in tar::Archive::new(archive).entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            listed.push((
                entry.path().unwrap().to_string_lossy().into_owned(),
                header.entry_type(),
                header.mode().unwrap(),
                header.mtime().unwrap(),
                header.uid().unwrap(),
                contents,
            ));
        }
        listed
    }

    #[test]
    fn layers_add_parents_sort_and_zero_metadata() {
        let mut layer = Layer::new();
        layer
            .symlink("/bin/sh", "busybox")
            .file("/bin/busybox", 0o755, "x");
        let listed = list(&layer.to_tar().unwrap());
        let names: Vec<&str> = listed.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin/", "bin/busybox", "bin/sh"]);
        assert_eq!(listed[0].1, tar::EntryType::Directory);
        assert_eq!(listed[2].1, tar::EntryType::Symlink);
        assert!(listed.iter().all(|e| e.3 == 0 && e.4 == 0));
    }

    #[test]
    fn rebuilding_gives_identical_bytes() {
        for arch in Arch::ALL {
            assert_eq!(
                sample(arch).to_archive().unwrap(),
                sample(arch).to_archive().unwrap()
            );
        }
        assert_ne!(
            sample(Arch::Amd64).to_archive().unwrap(),
            sample(Arch::Arm64).to_archive().unwrap()
        );
    }

    #[test]
    fn the_archive_is_an_oci_layout_whose_digests_check_out() {
        let archive = sample(Arch::Arm64).to_archive().unwrap();
        let files: BTreeMap<String, Vec<u8>> = list(&archive)
            .into_iter()
            .filter(|e| e.1 == tar::EntryType::Regular)
            .map(|e| (e.0, e.5))
            .collect();
        for (name, contents) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(sha256_digest(contents).unwrap().digest(), hex);
            }
        }
        let layout: serde_json::Value = serde_json::from_slice(&files["oci-layout"]).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");

        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        let descriptor = &index["manifests"][0];
        assert_eq!(
            descriptor["annotations"][ANNOTATION_REF_NAME],
            "kios.local/test:1"
        );
        assert_eq!(
            descriptor["annotations"][CONTAINERD_IMAGE_NAME],
            "kios.local/test:1"
        );
        assert_eq!(descriptor["platform"]["architecture"], "arm64");
        assert_eq!(descriptor["platform"]["os"], "linux");
        let blob = |descriptor: &serde_json::Value| {
            let digest = descriptor["digest"].as_str().unwrap();
            let bytes = &files[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))];
            assert_eq!(descriptor["size"], bytes.len());
            bytes.clone()
        };

        let manifest: serde_json::Value = serde_json::from_slice(&blob(descriptor)).unwrap();
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let config: serde_json::Value = serde_json::from_slice(&blob(&manifest["config"])).unwrap();
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/sh");
        assert_eq!(config["config"]["Cmd"][1], "echo hi");
        assert!(config.get("created").is_none());

        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(blob(&manifest["layers"][0]).as_slice())
            .read_to_end(&mut layer_tar)
            .unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            sha256_digest(&layer_tar).unwrap().to_string()
        );
        let layer_names: Vec<String> = list(&layer_tar).into_iter().map(|e| e.0).collect();
        assert_eq!(layer_names, ["bin/", "bin/busybox", "bin/sh"]);
    }

    #[test]
    fn a_zstd_layer_says_so_and_unpacks_to_its_diff_id() {
        let image = sample(Arch::Amd64);
        let archive = image
            .to_archive_with(&[PATH_ENV.to_string()], LayerCompression::Zstd)
            .unwrap();
        assert_eq!(
            archive,
            image
                .to_archive_with(&[PATH_ENV.to_string()], LayerCompression::Zstd)
                .unwrap()
        );
        let files: BTreeMap<String, Vec<u8>> = list(&archive)
            .into_iter()
            .filter(|e| e.1 == tar::EntryType::Regular)
            .map(|e| (e.0, e.5))
            .collect();
        let blob = |digest: &serde_json::Value| {
            let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
            files[&format!("blobs/sha256/{hex}")].clone()
        };
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(&index["manifests"][0]["digest"])).unwrap();
        let layer = &manifest["layers"][0];
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let layer_tar = zstd::decode_all(blob(&layer["digest"]).as_slice()).unwrap();
        assert_eq!(
            sha256_digest(&layer_tar).unwrap().to_string(),
            image.layer.diff_id().unwrap()
        );
    }

    #[test]
    fn the_pause_and_busybox_images_hold_their_binaries() {
        let dir = std::env::temp_dir().join(format!("kios-oci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("binary");
        std::fs::write(&binary, b"\x7fELF").unwrap();
        let pause = pause_image(&binary, Arch::Amd64).unwrap();
        assert_eq!(pause.name, PAUSE_IMAGE);
        assert_eq!(pause.layer.entries.keys().collect::<Vec<_>>(), ["pause"]);
        let busybox = busybox_image(&binary, Arch::Amd64).unwrap();
        assert_eq!(
            busybox.layer.entries.keys().collect::<Vec<_>>(),
            [
                "bin",
                "bin/busybox",
                "bin/cat",
                "bin/echo",
                "bin/ip",
                "bin/sh",
                "bin/sleep",
                "bin/tail",
                "bin/udhcpc"
            ]
        );
        let archive = dir.join("busybox.tar");
        busybox.write_archive(&archive).unwrap();
        assert_eq!(
            std::fs::read(&archive).unwrap(),
            busybox.to_archive().unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
