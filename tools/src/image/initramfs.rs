//! Reproducible initramfs images: newc cpio, raw or compressed in one of
//! the formats both kernels unpack (gzip, zstd, lz4), or a small cpio
//! carrying the root as an erofs image that the init mounts.
//!
//! Entries are kept sorted by path (so parents come before children and
//! the bytes only depend on the contents), with mtime 0 and uid/gid 0.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cpio::newc::{self, ModeFileType};
use cpio::NewcBuilder;
use flate2::GzBuilder;
use kios_abi::image::ROOT_IMAGE;
use serde::Serialize;

use super::erofs;

/// How the initramfs is stored. Measured on the amd64 node image (140.5 MB
/// raw): gzip -9 48.0 MB, zstd -9 41.1 MB, lz4 68.1 MB; the boot-time
/// costs are in docs/measurements.md.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Raw: the kernel unpacks it without a decompressor.
    None,
    Gzip,
    /// The default: the smallest, and fast to unpack.
    #[default]
    Zstd,
    /// The kernel's legacy lz4 frame: the fastest to unpack, the largest.
    Lz4,
    /// A raw cpio of the boot entries (the init) and the whole tree as a
    /// read-only erofs image (lz4hc) at `ROOT_IMAGE`, which the init
    /// mounts as the root: the kernel copies it instead of unpacking
    /// every file, and pages are decompressed when read. Needs a kernel
    /// that mounts erofs from a file (the kiOS kernel; Debian's 6.1 cannot).
    Erofs,
}

impl Compression {
    /// The name the command line takes.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Erofs => "erofs",
        }
    }

    /// The archive's file name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "cpio",
            Compression::Gzip => "cpio.gz",
            Compression::Zstd => "cpio.zst",
            Compression::Lz4 => "cpio.lz4",
            Compression::Erofs => "erofs.cpio",
        }
    }
}

/// zstd's level: -19 saves another 5 MB but takes 2 minutes per image;
/// -9 takes about 4 s for 140 MB.
const ZSTD_LEVEL: i32 = 9;

/// The legacy lz4 format the kernel's unlz4 reads (what `lz4 -l` writes):
/// this magic, then blocks of at most 8 MiB of input, each as its
/// compressed length (u32, little endian) and an lz4 block. lz4_flex
/// writes blocks and the modern frame only, hence this framing by hand.
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Directory,
    File(Vec<u8>),
    CharDevice { major: u32, minor: u32 },
    Symlink(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    permissions: u32,
    node: Node,
    /// Also in the boot archive when the rest is an erofs image.
    boot: bool,
}

/// The contents of an initramfs, keyed by absolute path.
#[derive(Clone, Debug, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    pub fn new() -> Initramfs {
        Initramfs::default()
    }

    pub fn directory(&mut self, path: &str, permissions: u32) -> &mut Self {
        self.insert(path, permissions, Node::Directory)
    }

    pub fn file(
        &mut self,
        path: &str,
        permissions: u32,
        contents: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.insert(path, permissions, Node::File(contents.into()))
    }

    /// Adds a file with the contents of `source` on the host.
    pub fn file_from_host(
        &mut self,
        path: &str,
        permissions: u32,
        source: &Path,
    ) -> Result<&mut Self> {
        let contents =
            std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        Ok(self.file(path, permissions, contents))
    }

    pub fn char_device(
        &mut self,
        path: &str,
        permissions: u32,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        self.insert(path, permissions, Node::CharDevice { major, minor })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.insert(path, 0o777, Node::Symlink(target.to_string()))
    }

    /// Adds `path`'s missing ancestors as 0755 directories.
    pub fn parents(&mut self, path: &str) -> &mut Self {
        let mut ancestor = String::new();
        let components: Vec<&str> = path.trim_matches('/').split('/').collect();
        for component in &components[..components.len().saturating_sub(1)] {
            ancestor.push('/');
            ancestor.push_str(component);
            if !self.entries.contains_key(ancestor.trim_start_matches('/')) {
                self.directory(&ancestor.clone(), 0o755);
            }
        }
        self
    }

    /// Marks `path` as needed before the root is mounted (the init and
    /// what it runs from): with [`Compression::Erofs`] it stays in the
    /// cpio beside the root image.
    pub fn keep_for_boot(&mut self, path: &str) -> Result<&mut Self> {
        let name = path.trim_start_matches('/');
        self.entries
            .get_mut(name)
            .with_context(|| format!("{path} is not in the image"))?
            .boot = true;
        Ok(self)
    }

    /// Every path in the image.
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.entries.keys().map(|name| format!("/{name}"))
    }

    /// Adds every entry of `other`, replacing any of the same path.
    pub fn merge(&mut self, other: &Initramfs) -> &mut Self {
        self.entries.extend(
            other
                .entries
                .iter()
                .map(|(name, entry)| (name.clone(), entry.clone())),
        );
        self
    }

    /// Total bytes of file contents, for size reports.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|entry| match &entry.node {
                Node::File(contents) => contents.len() as u64,
                _ => 0,
            })
            .sum()
    }

    fn insert(&mut self, path: &str, permissions: u32, node: Node) -> &mut Self {
        // The archive names entries without the leading slash, as gen_init_cpio does.
        let name = path.trim_start_matches('/').to_string();
        self.entries.insert(
            name,
            Entry {
                permissions,
                node,
                boot: false,
            },
        );
        self
    }

    /// The uncompressed newc archive.
    pub fn to_cpio(&self) -> Result<Vec<u8>> {
        self.check_parents_exist()?;
        let mut archive = Vec::new();
        for (index, (name, entry)) in self.entries.iter().enumerate() {
            // Unique inode numbers: the kernel treats equal ones as hard links.
            let inode = u32::try_from(index + 1).context("too many initramfs entries")?;
            let builder = NewcBuilder::new(name)
                .ino(inode)
                .uid(0)
                .gid(0)
                .mtime(0)
                .mode(entry.permissions);
            let (builder, contents): (NewcBuilder, &[u8]) = match &entry.node {
                Node::Directory => (
                    builder.set_mode_file_type(ModeFileType::Directory).nlink(2),
                    &[],
                ),
                Node::File(contents) => {
                    (builder.set_mode_file_type(ModeFileType::Regular), contents)
                }
                Node::CharDevice { major, minor } => (
                    builder
                        .set_mode_file_type(ModeFileType::Char)
                        .rdev_major(*major)
                        .rdev_minor(*minor),
                    &[],
                ),
                Node::Symlink(target) => (
                    builder.set_mode_file_type(ModeFileType::Symlink),
                    target.as_bytes(),
                ),
            };
            let size = u32::try_from(contents.len())
                .with_context(|| format!("{name} is too large for a newc archive"))?;
            let mut writer = builder.write(&mut archive, size);
            writer
                .write_all(contents)
                .with_context(|| format!("writing {name} into the archive"))?;
            writer
                .finish()
                .with_context(|| format!("finishing {name} in the archive"))?;
        }
        newc::trailer(&mut archive).context("writing the archive trailer")?;
        Ok(archive)
    }

    /// The archive as `compression` stores it (gzip: header mtime 0, no
    /// file name).
    pub fn stored(&self, compression: Compression) -> Result<Vec<u8>> {
        let cpio = self.to_cpio()?;
        match compression {
            Compression::None => Ok(cpio),
            Compression::Gzip => {
                let mut encoder = GzBuilder::new()
                    .mtime(0)
                    .write(Vec::new(), flate2::Compression::best());
                encoder
                    .write_all(&cpio)
                    .context("compressing the archive")?;
                encoder.finish().context("compressing the archive")
            }
            Compression::Zstd => {
                zstd::encode_all(cpio.as_slice(), ZSTD_LEVEL).context("compressing the archive")
            }
            Compression::Lz4 => lz4_legacy(&cpio),
            Compression::Erofs => self.with_erofs_root()?.to_cpio(),
        }
    }

    /// The boot entries, their parents and the rest as an erofs image.
    fn with_erofs_root(&self) -> Result<Initramfs> {
        let mut boot = Initramfs::new();
        for (name, entry) in self.entries.iter().filter(|(_, entry)| entry.boot) {
            boot.parents(&format!("/{name}"));
            boot.entries.insert(name.clone(), entry.clone());
        }
        boot.file(ROOT_IMAGE, 0o444, self.erofs_image()?);
        Ok(boot)
    }

    /// Every entry, boot ones included, as an erofs image: a root the
    /// kernel can mount itself (a disk slot's, `crate::image::slots`).
    pub fn erofs_image(&self) -> Result<Vec<u8>> {
        let tree = tempfile::tempdir().context("creating a directory for the erofs root")?;
        self.write_tree(tree.path())?;
        erofs::pack(tree.path())
    }

    /// Writes the entries as files under `root` for mkfs.erofs, which
    /// takes ownership (root) and times (0) from its own options. Device
    /// nodes are left out: /dev is a devtmpfs on the node.
    fn write_tree(&self, root: &Path) -> Result<()> {
        use std::os::unix::fs::{symlink, PermissionsExt};
        // "" is the root itself, which `root` already is.
        for (name, entry) in self.entries.iter().filter(|(name, _)| !name.is_empty()) {
            let path = root.join(name);
            match &entry.node {
                // create_dir_all: a tree added at "/etc" also names "etc/".
                Node::Directory => std::fs::create_dir_all(&path),
                Node::File(contents) => std::fs::write(&path, contents),
                Node::Symlink(target) => symlink(target, &path),
                Node::CharDevice { .. } => continue,
            }
            .with_context(|| format!("writing {}", path.display()))?;
        }
        // Modes last, so a read-only directory does not stop its children;
        // the root is a temporary directory (0700) until then.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", root.display()))?;
        for (name, entry) in &self.entries {
            if matches!(entry.node, Node::Directory | Node::File(_)) {
                let path = root.join(name);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.permissions))
                    .with_context(|| format!("setting the mode of {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Writes the archive as `compression` stores it to `path` (atomically,
    /// via a temporary file).
    pub fn write_stored(&self, path: &Path, compression: Compression) -> Result<()> {
        write_atomically(path, &self.stored(compression)?)
    }

    fn check_parents_exist(&self) -> Result<()> {
        for name in self.entries.keys() {
            if let Some((parent, _)) = name.rsplit_once('/') {
                let parent_is_dir = self
                    .entries
                    .get(parent)
                    .is_some_and(|entry| entry.node == Node::Directory);
                if !parent_is_dir {
                    bail!("initramfs entry /{name} has no parent directory /{parent}");
                }
            }
        }
        Ok(())
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("moving {} into place", path.display()))
}

/// `data` in the kernel's legacy lz4 format (see [`LZ4_LEGACY_MAGIC`]).
fn lz4_legacy(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
    for block in data.chunks(LZ4_LEGACY_BLOCK) {
        let compressed = lz4_flex::block::compress(block);
        let length = u32::try_from(compressed.len()).context("an lz4 block too large")?;
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Cursor, Read};

    /// (name, mode, uid, gid, mtime, rdev, contents) of every entry but the trailer.
    type Listed = (String, u32, u32, u32, u32, (u32, u32), Vec<u8>);

    pub(crate) fn list(cpio: &[u8]) -> Vec<Listed> {
        let mut listed = Vec::new();
        let mut input = Cursor::new(cpio);
        loop {
            let mut reader = cpio::NewcReader::new(input).unwrap();
            let entry = reader.entry().clone();
            if entry.is_trailer() {
                return listed;
            }
            let mut contents = Vec::new();
            reader.read_to_end(&mut contents).unwrap();
            listed.push((
                entry.name().to_string(),
                entry.mode(),
                entry.uid(),
                entry.gid(),
                entry.mtime(),
                (entry.rdev_major(), entry.rdev_minor()),
                contents,
            ));
            input = reader.finish().unwrap();
        }
    }

    fn sample() -> Initramfs {
        let mut image = Initramfs::new();
        image
            .file("/bin/init", 0o755, b"\x7fELF".to_vec())
            .directory("/dev", 0o755)
            .char_device("/dev/console", 0o600, 5, 1)
            .directory("/bin", 0o755);
        image
    }

    #[test]
    fn every_compression_gives_back_the_archive() {
        let mut image = sample();
        // More than one lz4 block, compressible like a real image.
        let big: Vec<u8> = (0..LZ4_LEGACY_BLOCK + 4096)
            .map(|i| (i % 251) as u8)
            .collect();
        image.file("/bin/big", 0o755, big);
        let cpio = image.to_cpio().unwrap();

        assert_eq!(image.stored(Compression::None).unwrap(), cpio);
        let zstd = image.stored(Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(zstd.as_slice()).unwrap(), cpio);
        let mut gunzipped = Vec::new();
        flate2::read::GzDecoder::new(image.stored(Compression::Gzip).unwrap().as_slice())
            .read_to_end(&mut gunzipped)
            .unwrap();
        assert_eq!(gunzipped, cpio);

        // The legacy lz4 frame, read as the kernel's unlz4 reads it.
        let lz4 = image.stored(Compression::Lz4).unwrap();
        assert_eq!(lz4[..4], LZ4_LEGACY_MAGIC.to_le_bytes());
        let (mut rest, mut unpacked, mut blocks) = (&lz4[4..], Vec::new(), 0);
        while !rest.is_empty() {
            let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let block = &rest[4..4 + length];
            unpacked.extend(lz4_flex::block::decompress(block, LZ4_LEGACY_BLOCK).unwrap());
            rest = &rest[4 + length..];
            blocks += 1;
        }
        assert_eq!(unpacked, cpio);
        assert_eq!(blocks, 2);
        assert!(lz4.len() < cpio.len() / 4);
    }

    #[test]
    fn entries_are_sorted_with_types_and_zeroed_metadata() {
        let listed = list(&sample().to_cpio().unwrap());
        let names: Vec<&str> = listed.iter().map(|entry| entry.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/init", "dev", "dev/console"]);
        assert_eq!(listed[0].1, 0o040755);
        assert_eq!(listed[1].1, 0o100755);
        assert_eq!(listed[1].6, b"\x7fELF");
        assert_eq!(listed[3].1, 0o020600);
        assert_eq!(listed[3].5, (5, 1));
        assert!(listed
            .iter()
            .all(|entry| entry.2 == 0 && entry.3 == 0 && entry.4 == 0));
    }

    #[test]
    fn the_same_contents_give_the_same_bytes() {
        let mut reordered = Initramfs::new();
        reordered
            .directory("/bin", 0o755)
            .directory("/dev", 0o755)
            .char_device("/dev/console", 0o600, 5, 1)
            .file("/bin/init", 0o755, b"\x7fELF".to_vec());
        assert_eq!(
            sample().stored(Compression::Gzip).unwrap(),
            reordered.stored(Compression::Gzip).unwrap()
        );
    }

    #[test]
    fn an_erofs_root_holds_the_tree_and_the_cpio_only_what_boots() {
        let mut image = sample();
        image
            .directory("/", 0o755)
            .keep_for_boot("/bin/init")
            .unwrap()
            .keep_for_boot("/dev/console")
            .unwrap()
            .directory("/etc", 0o755)
            .file("/etc/hostname", 0o600, "node\n")
            .symlink("/etc/localtime", "/usr/share/zoneinfo/UTC");
        let stored = image.stored(Compression::Erofs).unwrap();
        let listed = list(&stored);
        let names: Vec<&str> = listed.iter().map(|entry| entry.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/init", "dev", "dev/console", "root.erofs"]
        );
        assert_eq!(stored, image.stored(Compression::Erofs).unwrap());

        // fsck.erofs checks every file and extracts the tree as the kernel sees it.
        let dir = tempfile::tempdir().unwrap();
        let root_image = dir.path().join("root.erofs");
        std::fs::write(&root_image, &listed[4].6).unwrap();
        let extracted = dir.path().join("tree");
        crate::host::command::output_of(
            std::process::Command::new("fsck.erofs")
                .arg(format!("--extract={}", extracted.display()))
                .arg(&root_image),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let hostname = extracted.join("etc/hostname");
        assert_eq!(std::fs::read(&hostname).unwrap(), b"node\n");
        let mode = std::fs::metadata(&hostname).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        assert_eq!(
            std::fs::read(extracted.join("bin/init")).unwrap(),
            b"\x7fELF"
        );
        assert_eq!(
            std::fs::read_link(extracted.join("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/UTC")
        );
        assert!(!extracted.join("dev/console").exists());
        let root_mode = std::fs::metadata(&extracted).unwrap().permissions().mode();
        assert_eq!(root_mode & 0o7777, 0o755);
    }

    #[test]
    fn a_missing_parent_directory_is_an_error() {
        let mut image = Initramfs::new();
        image.file("/etc/hostname", 0o644, "x\n");
        let error = image.to_cpio().unwrap_err().to_string();
        assert!(error.contains("/etc"), "{error}");
    }
}
