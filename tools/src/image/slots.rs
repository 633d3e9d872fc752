//! The node's A/B disk ([docs/updates.md](../../../docs/updates.md)): an
//! EFI system partition with systemd-boot, two slots and the data
//! partition. A slot holds one release: its unified kernel image (UKI) on
//! the ESP under `EFI/Linux/`, with a boot counter in its file name, and
//! its root partition: the erofs root with its dm-verity hash tree after
//! it. The root hash is on the UKI's command line, and the kernel sets the
//! verity device up itself (`dm-mod.create=`) and mounts it as `/`: no
//! initramfs, and nothing on the root runs unverified.
//!
//! A release is the same bytes whichever slot it lands in: its command
//! line names its root partition by a GPT UUID made of the root hash's
//! first 128 bits (as the UAPI Discoverable Partitions Specification
//! does), so writing a release into a slot sets that partition's UUID.
//!
//! Built with: veritysetup (Debian's cryptsetup-bin) for the hash tree;
//! systemd-boot from the systemd-boot-efi package the stub comes from; the
//! partition table and the filesystems as [`crate::image::disk`] writes them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use kios_abi::boot_slots::{ENTRIES_DIR, ENTRY_PREFIX, ENTRY_SUFFIX, SLOT_PARTITION_PREFIX};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::components::bom::{fetch_component, Bom};
use crate::components::node::NodeComponents;
use crate::host::arch::Arch;
use crate::host::command::output_of;
use crate::host::fs::sha256_file;
use crate::host::packages::{ensure_installed, DISK_IMAGE_PACKAGES};
use crate::host::progress::with_step;
use crate::host::workspace::Workspace;
use crate::image::disk::{
    data_partition_spec, derived_uuid, esp_partition, finish_disk, make_data_filesystem, make_esp,
    node_firmware_vm, parse_guid, read, volume_id, write_gpt_disk, PartitionContents,
    PartitionSpec, PlacedPartition, ALIGNMENT, DEFAULT_DATA_BYTES, DISK_FILE, MIN_ESP_BYTES,
    STUB_COMPONENT,
};
use crate::image::node_image::{build_node_image, ImageOptions, NodeImage};
use crate::image::secure_boot::{read_signed, SigningKey};
use crate::image::uki::{
    boot_manager_path_in_package, build_uki, default_boot_path, release_os_release,
    stub_path_in_package, UkiParts,
};
use crate::vm::qemu::{slot_kernel_command_line, ConsoleVerbosity, VmConfig};

/// How many boots a slot's entry gets to become good (the boot manager
/// takes one at each boot; the init gives them back once the boot is good).
pub const DEFAULT_TRIES: u32 = 3;
/// A slot's partition: room for a release several times today's (the
/// amd64 root with its hash tree is about 60 MB). The disk file is sparse.
pub const DEFAULT_SLOT_BYTES: u64 = 512 << 20;
/// The boot-check static pod a slot's root ships (the definition of a good boot).
pub const BOOT_CHECK_MANIFEST: &str = include_str!("kios-boot-check.yaml");
pub const BOOT_CHECK_MANIFEST_PATH: &str = "/etc/kubernetes/manifests/kios-boot-check.yaml";
/// The release's os-release on its root (`/etc` is the node's, so not there).
pub const ROOT_OS_RELEASE_PATH: &str = "/usr/lib/os-release";

/// dm-verity's data and hash block size (veritysetup's default).
const VERITY_BLOCK_BYTES: u64 = 4096;
const SECTOR_BYTES: u64 = 512;
const LOADER_CONF_PATH: &str = "loader/loader.conf";
/// systemd-boot 252's configuration: boot the first entry at once (a key
/// held at start still shows the menu); no editing the command line, which
/// is the verified one; no entries but the slots'.
const LOADER_CONF: &str = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\n";

/// One of the disk's two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }

    /// The slot's root partition's GPT name.
    pub fn partition_name(self) -> String {
        format!("{SLOT_PARTITION_PREFIX}{}", self.letter())
    }
}

/// The GPT type of a slot's root partition: the Discoverable Partitions
/// Specification's root partition type for the architecture.
fn root_type_guid(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        Arch::Arm64 => "b921b045-1df0-41c3-af44-4c6f280d3fae",
    }
}

/// What makes a release besides the node image.
#[derive(Clone, Debug)]
pub struct ReleaseOptions {
    /// The release's version: in its os-release, its boot entry's name,
    /// and what the boot manager orders entries by (newest first).
    pub version: String,
    pub console: ConsoleVerbosity,
    /// Appended to the UKI's command line (tests set `kios.*` options).
    pub extra_kernel_arguments: String,
}

/// One release, ready to be written into a slot.
#[derive(Clone, Debug, Serialize)]
pub struct Release {
    pub arch: Arch,
    pub version: String,
    pub uki: PathBuf,
    pub uki_bytes: u64,
    /// The erofs root followed by its hash tree: a slot partition's contents.
    pub root: PathBuf,
    /// The erofs image's bytes (whole verity blocks); the hash tree follows.
    pub root_data_bytes: u64,
    pub root_bytes: u64,
    /// dm-verity's root hash (hex), on the UKI's command line.
    pub root_hash: String,
    /// The root partition's GPT UUID: the root hash's first 128 bits.
    pub partition_uuid: Uuid,
    /// The kernel command line in the UKI.
    pub cmdline: String,
}

/// The files a release's root carries besides the node image's: its
/// os-release and the boot-check static pod. Add them to the node image's
/// extra files.
pub fn release_files(version: &str) -> Result<Vec<(String, Vec<u8>)>> {
    check_version(version)?;
    Ok(vec![
        (
            ROOT_OS_RELEASE_PATH.to_string(),
            format!("NAME=kiOS\nID=kios\nVERSION_ID={version}\nIMAGE_VERSION={version}\n")
                .into_bytes(),
        ),
        (
            BOOT_CHECK_MANIFEST_PATH.to_string(),
            BOOT_CHECK_MANIFEST.as_bytes().to_vec(),
        ),
    ])
}

/// Refuses a version that would not read unambiguously in a boot entry's
/// name (`kios-<version>-<slot>+<tries>.efi`): no `-` or `+`, which
/// separate the slot and the counter.
fn check_version(version: &str) -> Result<()> {
    ensure!(
        (1..=64).contains(&version.len())
            && version
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._~".contains(&byte)),
        "release version `{version}`: use 1 to 64 of a-z, A-Z, 0-9, `.`, `_` and `~`"
    );
    Ok(())
}

/// Makes a release of `image` (built with `ImageOptions::root_image` and
/// [`release_files`]) in `out_dir/release-<version>-<arch>/`: the root
/// with its hash tree, and the UKI whose command line verifies it.
pub fn build_release(
    bom: &Bom,
    image: &NodeImage,
    options: &ReleaseOptions,
    out_dir: &Path,
) -> Result<Release> {
    check_version(&options.version)?;
    ensure_installed(&["cryptsetup-bin"])?;
    let arch = image.arch;
    let erofs = image
        .root_image
        .as_ref()
        .context("the node image has no root image (ImageOptions::root_image)")?;
    let dir = out_dir.join(format!("release-{}-{arch}", options.version));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let root = dir.join("root.img");
    std::fs::copy(erofs, &root).with_context(|| format!("copying {}", erofs.display()))?;
    let root_data_bytes = std::fs::metadata(&root)?
        .len()
        .next_multiple_of(VERITY_BLOCK_BYTES);
    std::fs::File::options()
        .write(true)
        .open(&root)
        .and_then(|file| file.set_len(root_data_bytes))
        .with_context(|| format!("padding {}", root.display()))?;
    // The salt only needs to be fixed per release: derived from the root,
    // the same tree gives the same bytes.
    let salt = sha256_file(&root)?;
    let root_hash = with_step(
        format!("hashing the {arch} root for dm-verity ({root_data_bytes} bytes)"),
        || verity_format(&root, root_data_bytes, &salt),
    )?;
    let root_bytes = std::fs::metadata(&root)?.len();
    let partition_uuid = partition_uuid_of(&root_hash)?;

    let cmdline = {
        let base = slot_kernel_command_line(
            arch,
            options.console,
            &verity_root_arguments(partition_uuid, root_data_bytes, &root_hash, &salt),
        );
        match options.extra_kernel_arguments.trim() {
            "" => base,
            extra => format!("{base} {extra}"),
        }
    };
    let stub = fetch_component(bom, STUB_COMPONENT, arch)?.join(stub_path_in_package(arch));
    let uki_bytes = build_uki(
        &read(&stub)?,
        &UkiParts {
            os_release: release_os_release(arch, &options.version).as_bytes(),
            cmdline: cmdline.as_bytes(),
            initrd: &[],
            kernel: &read(&image.kernel)?,
        },
    )?;
    let uki = dir.join(format!("kios-{}-{arch}.efi", options.version));
    std::fs::write(&uki, &uki_bytes).with_context(|| format!("writing {}", uki.display()))?;
    Ok(Release {
        arch,
        version: options.version.clone(),
        uki,
        uki_bytes: uki_bytes.len() as u64,
        root,
        root_data_bytes,
        root_bytes,
        root_hash,
        partition_uuid,
        cmdline,
    })
}

/// A release of the node from `components`: the node image with the
/// release's files ([`release_files`]) and `extra_files`, its root as an
/// erofs image, in `out/image-<version>`, then [`build_release`] into `out`.
pub fn build_node_release(
    workspace: &Workspace,
    components: &NodeComponents,
    extra_files: Vec<(String, Vec<u8>)>,
    options: &ReleaseOptions,
    out: &Path,
) -> Result<(NodeImage, Release)> {
    let mut files = release_files(&options.version)?;
    files.extend(extra_files);
    let image = build_node_image(
        workspace,
        components,
        &ImageOptions {
            extra_files: files,
            root_image: true,
            ..ImageOptions::default()
        },
        &out.join(format!("image-{}", options.version)),
    )
    .with_context(|| format!("building release {}'s node image", options.version))?;
    let release = build_release(&components.bom, &image, options, out)
        .with_context(|| format!("building release {}", options.version))?;
    Ok((image, release))
}

/// Appends the hash tree of the first `data_bytes` of `root` to it (no
/// verity superblock: the command line carries every parameter) and
/// returns the root hash.
fn verity_format(root: &Path, data_bytes: u64, salt: &str) -> Result<String> {
    let output = output_of(
        Command::new("veritysetup")
            .arg("format")
            .arg("--no-superblock")
            .arg(format!("--data-block-size={VERITY_BLOCK_BYTES}"))
            .arg(format!("--hash-block-size={VERITY_BLOCK_BYTES}"))
            .arg(format!("--data-blocks={}", data_bytes / VERITY_BLOCK_BYTES))
            .arg(format!("--hash-offset={data_bytes}"))
            .arg(format!("--salt={salt}"))
            .arg(root)
            .arg(root),
    )?;
    root_hash_of(&output)
}

/// The `Root hash:` line of `veritysetup format`'s report.
fn root_hash_of(report: &str) -> Result<String> {
    let hash = report
        .lines()
        .find_map(|line| line.strip_prefix("Root hash:"))
        .map(str::trim)
        .context("veritysetup printed no root hash")?;
    ensure!(
        hash.len() == 64 && hash.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "veritysetup's root hash `{hash}` is not a sha256"
    );
    Ok(hash.to_ascii_lowercase())
}

fn partition_uuid_of(root_hash: &str) -> Result<Uuid> {
    Uuid::parse_str(&root_hash[..32]).context("the root hash's first 128 bits as a UUID")
}

/// What makes the kernel verify and mount the root: a dm-verity device
/// over the partition named by its UUID (data, then the hash tree from
/// block `data_bytes / 4096`), set up by the kernel before PID 1, that
/// restarts the machine on a block that fails verification (costing the
/// slot a try), mounted read-only as erofs.
fn verity_root_arguments(partition: Uuid, data_bytes: u64, root_hash: &str, salt: &str) -> String {
    let blocks = data_bytes / VERITY_BLOCK_BYTES;
    let device = format!("PARTUUID={partition}");
    format!(
        "root=/dev/dm-0 rootfstype=erofs ro dm-mod.waitfor={device} \
         dm-mod.create=\"kios-root,,0,ro,0 {sectors} verity 1 {device} {device} \
         {VERITY_BLOCK_BYTES} {VERITY_BLOCK_BYTES} {blocks} {blocks} sha256 {root_hash} \
         {salt} 1 restart_on_corruption\"",
        sectors = data_bytes / SECTOR_BYTES,
    )
}

/// What the disk holds.
#[derive(Clone, Debug)]
pub struct SlotDiskOptions {
    pub data_bytes: u64,
    pub slot_bytes: u64,
    /// Each entry's boot tries ([`DEFAULT_TRIES`]).
    pub tries: u32,
    /// First-boot configuration under the ESP's `kios/config/` (as
    /// [`crate::image::disk::DiskOptions::esp_config`]).
    pub esp_config: Vec<(String, Vec<u8>)>,
    /// Sign systemd-boot and each UKI on the ESP with this key, for
    /// firmware with Secure Boot on ([`crate::image::secure_boot`]).
    pub signing: Option<SigningKey>,
}

impl Default for SlotDiskOptions {
    fn default() -> SlotDiskOptions {
        SlotDiskOptions {
            data_bytes: DEFAULT_DATA_BYTES,
            slot_bytes: DEFAULT_SLOT_BYTES,
            tries: DEFAULT_TRIES,
            esp_config: Vec::new(),
            signing: None,
        }
    }
}

/// A written A/B disk.
#[derive(Clone, Debug, Serialize)]
pub struct SlotDisk {
    pub arch: Arch,
    pub path: PathBuf,
    pub bytes: u64,
    /// What the sparse file takes on the host's disk.
    pub allocated_bytes: u64,
    pub esp_bytes: u64,
    /// The boot entries on the ESP, by path, slot A's first.
    pub entries: Vec<String>,
    pub partitions: Vec<PlacedPartition>,
}

/// The boot entry a release gets in `slot`, counting `tries`.
pub fn entry_path(release: &Release, slot: Slot, tries: u32) -> String {
    format!(
        "{ENTRIES_DIR}/{ENTRY_PREFIX}{}-{}+{tries}{ENTRY_SUFFIX}",
        release.version,
        slot.letter()
    )
}

/// Writes `out_dir/disk.img`: the ESP with systemd-boot and an entry per
/// filled slot, slot A holding `a`, slot B holding `b` (or empty), and an
/// empty data partition.
pub fn build_slot_disk(
    bom: &Bom,
    a: &Release,
    b: Option<&Release>,
    options: &SlotDiskOptions,
    out_dir: &Path,
) -> Result<SlotDisk> {
    let arch = a.arch;
    if let Some(b) = b {
        ensure!(b.arch == arch, "slot A is {arch} and slot B {}", b.arch);
        ensure!(
            b.partition_uuid != a.partition_uuid,
            "both slots hold the same root ({}): a root partition's UUID is its root hash",
            a.root_hash
        );
    }
    ensure!(options.tries > 0, "an entry needs at least one boot try");
    for (size, what) in [
        (options.data_bytes, "the data partition"),
        (options.slot_bytes, "a slot"),
    ] {
        ensure!(
            size > 0 && size.is_multiple_of(ALIGNMENT),
            "{what}'s size ({size} bytes) must be a positive multiple of 1 MiB"
        );
    }
    for release in [Some(a), b].into_iter().flatten() {
        if release.root_bytes > options.slot_bytes {
            bail!(
                "release {} ({} bytes of root and hash tree) does not fit a {}-byte slot",
                release.version,
                release.root_bytes,
                options.slot_bytes
            );
        }
    }
    ensure_installed(DISK_IMAGE_PACKAGES)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let seed = Sha256::new()
        .chain_update(a.root_hash.as_bytes())
        .chain_update(b.map_or("", |b| b.root_hash.as_str()).as_bytes())
        .finalize();

    // Secure Boot: what goes on the ESP signed, or as it is.
    let signed = |input: &Path| {
        read_signed(
            input,
            options.signing.as_ref(),
            &out_dir.join(".signed.efi"),
        )
    };
    let boot_manager = signed(
        &fetch_component(bom, STUB_COMPONENT, arch)?.join(boot_manager_path_in_package(arch)),
    )?;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (default_boot_path(arch), boot_manager),
        (
            LOADER_CONF_PATH.to_string(),
            LOADER_CONF.as_bytes().to_vec(),
        ),
    ];
    let mut entries = Vec::new();
    for (slot, release) in [(Slot::A, Some(a)), (Slot::B, b)] {
        if let Some(release) = release {
            let path = entry_path(release, slot, options.tries);
            files.push((path.clone(), signed(&release.uki)?));
            entries.push(path);
        }
    }
    for (path, contents) in &options.esp_config {
        files.push((
            format!("{}/{path}", kios_abi::image::ESP_CONFIG_DIR),
            contents.clone(),
        ));
    }
    // Room for both slots' kernels and an update's beside them.
    let largest_uki = a.uki_bytes.max(b.map_or(0, |b| b.uki_bytes));
    let esp_bytes = (4 * largest_uki)
        .next_multiple_of(ALIGNMENT)
        .max(MIN_ESP_BYTES);
    let esp = out_dir.join(format!(".esp-{arch}.fat"));
    let esp_files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_slice()))
        .collect();
    with_step(
        format!("writing the EFI system partition ({esp_bytes} bytes, systemd-boot)"),
        || make_esp(&esp, esp_bytes, &esp_files, volume_id(&seed)),
    )?;
    drop(files);
    let data = make_data_filesystem(out_dir, arch, options.data_bytes, &seed)?;

    let root_type = parse_guid(root_type_guid(arch))?;
    let slot_partition = |slot: Slot, release: Option<&Release>| PartitionSpec {
        name: slot.partition_name(),
        type_guid: root_type,
        guid: release.map_or_else(
            || derived_uuid(&seed, &format!("empty slot {}", slot.letter())),
            |release| release.partition_uuid,
        ),
        bytes: options.slot_bytes,
        contents: release.map_or(PartitionContents::Empty, |release| {
            PartitionContents::Image(release.root.clone())
        }),
    };
    let path = out_dir.join(DISK_FILE);
    let partitions = with_step(format!("writing {}", path.display()), || {
        write_gpt_disk(
            &path,
            derived_uuid(&seed, "disk"),
            &[
                esp_partition(&seed, esp_bytes, &esp)?,
                slot_partition(Slot::A, Some(a)),
                slot_partition(Slot::B, b),
                data_partition_spec(&seed, options.data_bytes, &data)?,
            ],
        )
    })?;
    let (bytes, allocated_bytes) = finish_disk(&path, &[&esp, &data])?;
    Ok(SlotDisk {
        arch,
        bytes,
        allocated_bytes,
        path,
        esp_bytes,
        entries,
        partitions,
    })
}

/// The VM whose UEFI firmware boots `disk`, sized like every node VM.
pub fn slot_disk_vm_config(disk: &SlotDisk, icount: bool) -> VmConfig {
    node_firmware_vm(disk.arch, &disk.path, icount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_that_would_blur_an_entry_name_are_refused() {
        for good in ["1", "0.18.0", "2~rc1", "v2_broken"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["", "1-2", "1+2", "a/b", "ä", &"9".repeat(65)] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        assert!(release_files("1-2").is_err());
    }

    #[test]
    fn the_root_hash_is_read_from_veritysetups_report() {
        let report = "VERITY header information for root.img\n\
                      UUID:            \t\n\
                      Hash type:       \t1\n\
                      Salt:            \tab\n\
                      Root hash:      \t9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\n";
        let hash = root_hash_of(report).unwrap();
        assert_eq!(
            hash,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(
            partition_uuid_of(&hash).unwrap().to_string(),
            "9f86d081-884c-7d65-9a2f-eaa0c55ad015"
        );
        assert!(root_hash_of("Root hash: 12ab\n").is_err());
        assert!(root_hash_of("no hash here\n").is_err());
    }

    #[test]
    fn the_kernel_is_told_every_verity_parameter() {
        let uuid = Uuid::parse_str("9f86d081-884c-7d65-9a2f-eaa0c55ad015").unwrap();
        let arguments = verity_root_arguments(uuid, 8192 * 4096, "ff", "ee");
        assert_eq!(
            arguments,
            "root=/dev/dm-0 rootfstype=erofs ro \
             dm-mod.waitfor=PARTUUID=9f86d081-884c-7d65-9a2f-eaa0c55ad015 \
             dm-mod.create=\"kios-root,,0,ro,0 65536 verity 1 \
             PARTUUID=9f86d081-884c-7d65-9a2f-eaa0c55ad015 \
             PARTUUID=9f86d081-884c-7d65-9a2f-eaa0c55ad015 4096 4096 8192 8192 sha256 ff ee \
             1 restart_on_corruption\""
        );
    }
}
