//! The update, over the few calls it makes ([`Node`]): the hand-over
//! (`kios_abi::update_bundle`), the checks, each refusing with one line
//! before anything is written, then the writes in the order that never
//! leaves a half-written slot bootable.
//!
//! 1. Hand-over: [`READY`](kios_abi::update_bundle::READY), then one
//!    message with the flags byte and the bundle's directory.
//! 2. Checks: the manifest; the arch; the version against the running
//!    one (`IMAGE_VERSION` in os-release), unless forced; each file's
//!    size; the disk holding the ESP (sysfs), its GPT in both copies, the
//!    other slot's partition and its size, and that no other partition
//!    has the release's GUID; the ESP's room; each file's SHA-256.
//! 3. Writes: the other slot's entries removed (so it cannot boot), its
//!    root written, synced and read back against the SHA-256, its
//!    partition's GUID set in both GPT copies, the UKI written under a
//!    temporary name, synced and renamed to its entry. A forced release
//!    that is not newer also gives the running slot's entries up (`+0`),
//!    so systemd-boot boots it next.
#![allow(
    clippy::result_large_err,
    reason = "no allocator to box it in: a run's one outcome line (512 bytes) travels by value"
)]

use core::cmp::Ordering;

use kios_abi::boot_slots::{BootEntry, Slot, ESP_TYPE_GPT_BYTES, SLOT_PARTITION_PREFIX};
use kios_abi::update_bundle::{flags, MANIFEST_FILE, ROOT_FILE, UKI_FILE};
use sha2::{Digest, Sha256};

use crate::entries::{entry_name, given_up_name, EntryName, TEMPORARY_NAME};
use crate::gpt::{Disk, Gpt, Partition};
use crate::guid::Guid;
use crate::manifest::{self, image_version, Manifest, ManifestError};
use crate::message::{
    failed, failed_start, push_not_bootable, refused, refused_errno, refused_hash, refused_size,
    updated, Line,
};
use crate::text::{Text, TextExt};
use crate::{exit, Errno, NODE_ARCH};

/// Where the updater mounts the ESP (its own directory, mode 0700; the
/// init's is `kios_abi::boot_slots::ESP_MOUNT`).
pub const ESP_MOUNT: &str = "/run/kios-update-esp";
/// [`ESP_MOUNT`] and `kios_abi::boot_slots::ENTRIES_DIR` (a test checks).
pub const ENTRIES_PATH: &str = "/run/kios-update-esp/EFI/Linux";
/// Where the running release says its version.
pub const OS_RELEASE: &str = "/usr/lib/os-release";
/// A progress line per this many bytes written.
pub const PROGRESS_EVERY: u64 = 64 << 20;
/// How long the client has after READY to send the bundle (the binary's
/// receive timeout on the connection).
pub const RECEIVE_TIMEOUT_S: u64 = 30;
/// The most entries of one slot kept from the ESP's listing.
pub const MAX_SLOT_ENTRIES: usize = 16;
/// The most names a disk's sysfs directory lists that may be partitions.
const MAX_PARTITION_NAMES: usize = 64;

/// A log line's level, as kmsg has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Err,
    Warning,
    Notice,
}

/// How much of a file a read got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub len: usize,
    /// The file had more than the buffer held.
    pub truncated: bool,
}

/// The client's one message, as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handover {
    /// Data bytes received (the flags byte is the first).
    pub bytes: usize,
    pub flags: u8,
    /// Descriptors received (`SCM_RIGHTS`); the node keeps the first.
    pub descriptors: usize,
    /// The kernel dropped descriptors that did not fit (`MSG_CTRUNC`).
    pub truncated: bool,
    /// The first descriptor is a directory.
    pub directory: bool,
}

/// A bundle file's `fstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub regular: bool,
    pub size: u64,
}

/// The descriptors the node holds for the run, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fd {
    Manifest,
    Uki,
    Root,
    /// The whole disk (its GPT).
    Disk,
    /// The other slot's partition.
    Partition,
    /// The new entry on the ESP, under its temporary name.
    NewEntry,
}

impl Fd {
    pub const ALL: [Fd; 6] = [
        Fd::Manifest,
        Fd::Uki,
        Fd::Root,
        Fd::Disk,
        Fd::Partition,
        Fd::NewEntry,
    ];
}

/// The calls an update makes; the binary makes them with syscalls, tests
/// with an in-memory node.
pub trait Node {
    /// Sends [`READY`](kios_abi::update_bundle::READY) to the client.
    fn send_ready(&mut self) -> Result<(), Errno>;
    /// Receives the client's one message (bounded in time), keeping the
    /// first descriptor as the bundle's directory.
    fn receive_bundle(&mut self) -> Result<Handover, Errno>;
    /// Opens `name` in the bundle's directory as `fd`, read-only, not
    /// following a symlink nor blocking on a FIFO; its `fstat`.
    fn open_bundle_file(&mut self, fd: Fd, name: &str) -> Result<FileInfo, Errno>;
    /// Reads `path` into `buf` from its start.
    fn read_file(&mut self, path: &str, buf: &mut [u8]) -> Result<Read, Errno>;
    /// A symlink's target; its length in `buf`.
    fn read_link(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Calls `each` with every name in the directory (`.` and `..` too).
    fn list_dir(&mut self, path: &str, each: &mut dyn FnMut(&str)) -> Result<(), Errno>;
    /// Opens a block device read-write as `fd`.
    fn open_device(&mut self, fd: Fd, path: &str) -> Result<(), Errno>;
    /// The device's logical block size (`BLKSSZGET`).
    fn block_size(&mut self, fd: Fd) -> Result<u32, Errno>;
    /// The device's size in bytes.
    fn device_size(&mut self, fd: Fd) -> Result<u64, Errno>;
    fn read_at(&mut self, fd: Fd, offset: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    fn write_at(&mut self, fd: Fd, offset: u64, buf: &[u8]) -> Result<usize, Errno>;
    fn fsync(&mut self, fd: Fd) -> Result<(), Errno>;
    /// Drops the device's cached pages, so the next reads come from the disk.
    fn drop_cache(&mut self, fd: Fd) -> Result<(), Errno>;
    /// Creates (or truncates) the file `path` as `fd`, write-only.
    fn create(&mut self, fd: Fd, path: &str) -> Result<(), Errno>;
    /// Closes `fd` if open.
    fn close(&mut self, fd: Fd);
    fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), Errno>;
    /// Mounts `device` as vfat on `target`: nosuid, nodev, noexec.
    fn mount_esp(&mut self, device: &str, target: &str) -> Result<(), Errno>;
    /// Detaches the mount on `target`.
    fn unmount(&mut self, target: &str);
    /// The bytes an unprivileged writer may still use on `path`'s filesystem.
    fn free_bytes(&mut self, path: &str) -> Result<u64, Errno>;
    fn file_size(&mut self, path: &str) -> Result<u64, Errno>;
    fn unlink(&mut self, path: &str) -> Result<(), Errno>;
    fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno>;
    /// Syncs a directory (its entries' names).
    fn fsync_dir(&mut self, path: &str) -> Result<(), Errno>;
    /// Flushes every write to every disk.
    fn sync(&mut self);
    /// Says `line` to the client and to kmsg.
    fn say(&mut self, level: Level, line: &str);
}

/// The updater's arguments after argv[0], as the init passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Args<'a> {
    /// The slot the node booted from.
    pub slot: Slot,
    /// The ESP's device, `/dev/...`.
    pub esp: &'a str,
    /// The entry systemd-boot booted, as named at boot.
    pub booted: &'a str,
}

/// Reads `<slot letter> <ESP device> <booted entry>`.
pub fn parse_args<'a>(args: &[&'a str]) -> Result<Args<'a>, &'static str> {
    let [slot, esp, booted] = args else {
        return Err("expected <booted slot a|b> <ESP device> <booted entry>");
    };
    let slot = Slot::parse(slot).ok_or("the booted slot is not a or b")?;
    let name = esp.strip_prefix("/dev/").unwrap_or("");
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err("the ESP is not a device in /dev");
    }
    match BootEntry::parse(booted) {
        Some(entry) if entry.slot == slot => {}
        Some(_) => return Err("the booted entry is not the booted slot's"),
        None => return Err("the booted entry is not a slot entry's name"),
    }
    Ok(Args { slot, esp, booted })
}

/// Runs the update; the exit code ([`exit`]). `buf` is the I/O buffer
/// the files are streamed through (1 MiB in the binary).
pub fn update<N: Node>(node: &mut N, args: &[&str], buf: &mut [u8]) -> i32 {
    let mut run = Run {
        node,
        mounted: false,
    };
    let outcome = run.update(args, buf);
    for fd in Fd::ALL {
        run.node.close(fd);
    }
    if run.mounted {
        run.node.unmount(ESP_MOUNT);
    }
    run.node.sync();
    let (level, line, code) = match outcome {
        Ok(line) => (Level::Notice, line, exit::UPDATED),
        Err(Stop::Refused(line)) => (Level::Warning, line, exit::REFUSED),
        Err(Stop::Failed(line)) => (Level::Err, line, exit::FAILED),
    };
    run.node.say(level, line.as_str());
    code
}

/// How a run ends before its `updated:` line.
enum Stop {
    /// Nothing was written.
    Refused(Line),
    /// Something was: the other slot is not bootable.
    Failed(Line),
}

type PathText = Text<384>;
type Name = Text<32>;

fn path(parts: &[&str]) -> PathText {
    let mut path = PathText::new();
    for part in parts {
        path.push(part);
    }
    path
}

fn refuse(line: Line) -> Stop {
    Stop::Refused(line)
}

/// Why streaming a file stopped.
enum StreamError {
    Read(Errno),
    /// The source ended at this many bytes, before its size.
    Ended(u64),
    Write(Errno),
}

/// The disk holding the ESP, from sysfs.
struct DiskInfo {
    /// Its name in /dev and /sys/block (`vda`, `nvme0n1`).
    name: Name,
    /// `/sys/class/block/<esp>`: its `..` is the disk's directory.
    esp_class: PathText,
    /// The ESP's partition number.
    esp_number: u32,
}

/// What the checks found, for the writes.
struct Plan<'m> {
    manifest: Manifest<'m>,
    running: Slot,
    /// The release is newer than the running one (else it was forced).
    newer: bool,
    esp: &'m str,
    disk: PathText,
    gpt: Gpt,
    target: Partition,
    device: PathText,
    /// The other slot's entries on the ESP, removed first.
    others: Names,
    /// The running slot's entries, given up after a forced install.
    running_entries: Names,
}

/// Entry names from the ESP's listing.
struct Names {
    names: [EntryName; MAX_SLOT_ENTRIES],
    count: usize,
    overflowed: bool,
}

impl Names {
    fn new() -> Names {
        Names {
            names: core::array::from_fn(|_| EntryName::new()),
            count: 0,
            overflowed: false,
        }
    }

    fn push(&mut self, name: &str) {
        match (self.names.get_mut(self.count), EntryName::of(name)) {
            (Some(slot), Some(name)) => {
                *slot = name;
                self.count += 1;
            }
            _ => self.overflowed = true,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.names[..self.count].iter().map(|name| name.as_str())
    }
}

struct Run<'n, N: Node> {
    node: &'n mut N,
    mounted: bool,
}

impl<N: Node> Run<'_, N> {
    fn update(&mut self, args: &[&str], buf: &mut [u8]) -> Result<Line, Stop> {
        self.node
            .send_ready()
            .map_err(|errno| refuse(refused_errno("sending READY to", "the client", errno)))?;
        let handover = self.node.receive_bundle().map_err(|errno| {
            if errno == Errno::AGAIN {
                let mut line = refused();
                line.push("the client sent no bundle within ")
                    .push_u64(RECEIVE_TIMEOUT_S)
                    .push(" s of READY");
                return refuse(line);
            }
            refuse(refused_errno("receiving", "the bundle's directory", errno))
        })?;
        let force = check_handover(&handover)?;
        let args = parse_args(args).map_err(|why| {
            let mut line = refused();
            line.push("kios-update was started with bad arguments: ")
                .push(why);
            refuse(line)
        })?;

        let mut text = [0u8; manifest::MAX_BYTES];
        let len = self.read_manifest(&mut text)?;
        let manifest =
            manifest::parse(&text[..len]).map_err(|error| refuse(manifest_refusal(error)))?;
        self.checking(&manifest, force);
        if manifest.arch != NODE_ARCH {
            let mut line = refused();
            line.push("the bundle is for ")
                .push(manifest.arch)
                .push(", this node is ")
                .push(NODE_ARCH);
            return Err(refuse(line));
        }
        let newer = self.check_version(&manifest, args.slot, force)?;
        self.check_file(Fd::Uki, UKI_FILE, manifest.uki_size)?;
        self.check_file(Fd::Root, ROOT_FILE, manifest.root_size)?;

        let mut plan = self.check_disk(&manifest, &args, newer)?;
        self.check_esp(&mut plan)?;
        self.check_hash(
            Fd::Uki,
            UKI_FILE,
            manifest.uki_size,
            &manifest.uki_sha256,
            buf,
        )?;
        self.check_hash(
            Fd::Root,
            ROOT_FILE,
            manifest.root_size,
            &manifest.root_sha256,
            buf,
        )?;
        self.write(&mut plan, buf)
    }

    fn say(&mut self, line: &Line) {
        self.node.say(Level::Notice, line.as_str());
    }

    fn checking(&mut self, manifest: &Manifest<'_>, force: bool) {
        let mut line = Line::new();
        line.push("checking the bundle: kios ")
            .push(manifest.version)
            .push(" for ")
            .push(manifest.arch)
            .push(", ")
            .push(UKI_FILE)
            .push(" ")
            .push_mb(manifest.uki_size)
            .push(", ")
            .push(ROOT_FILE)
            .push(" ")
            .push_mb(manifest.root_size)
            .push(", ")
            .push_u64(manifest.boot_tries.into())
            .push(" boot tries")
            .push(if force { " (forced)" } else { "" });
        self.say(&line);
    }

    fn read_manifest(&mut self, text: &mut [u8; manifest::MAX_BYTES]) -> Result<usize, Stop> {
        let info = self.open_bundle_file(Fd::Manifest, MANIFEST_FILE)?;
        if info.size > manifest::MAX_BYTES as u64 {
            let mut line = refused();
            line.push(MANIFEST_FILE)
                .push(" is ")
                .push_u64(info.size)
                .push(" bytes, at most ")
                .push_u64(manifest::MAX_BYTES as u64)
                .push(" are read");
            return Err(refuse(line));
        }
        let len = info.size as usize;
        read_exact(self.node, Fd::Manifest, 0, &mut text[..len])
            .map_err(|errno| refuse(refused_errno("reading", MANIFEST_FILE, errno)))?;
        self.node.close(Fd::Manifest);
        Ok(len)
    }

    fn open_bundle_file(&mut self, fd: Fd, name: &str) -> Result<FileInfo, Stop> {
        let info = self.node.open_bundle_file(fd, name).map_err(|errno| {
            let mut what = PathText::new();
            what.push(name).push(" in the bundle");
            refuse(refused_errno("opening", what.as_str(), errno))
        })?;
        if !info.regular {
            let mut line = refused();
            line.push(name).push(" in the bundle is not a regular file");
            return Err(refuse(line));
        }
        Ok(info)
    }

    /// Whether the release is newer than the running one; refused when it
    /// is not, unless forced.
    fn check_version(
        &mut self,
        manifest: &Manifest<'_>,
        slot: Slot,
        force: bool,
    ) -> Result<bool, Stop> {
        let mut os_release = [0u8; 4096];
        let running = match self.node.read_file(OS_RELEASE, &mut os_release) {
            Ok(read) => image_version(&os_release[..read.len]),
            Err(_) => None,
        };
        let version = manifest.version;
        let mut line = Line::new();
        let Some(running) = running else {
            if !force {
                let mut line = refused();
                line.push("the running version is unknown (no IMAGE_VERSION in ")
                    .push(OS_RELEASE)
                    .push("), so kios ")
                    .push(version)
                    .push(
                        " cannot be known to be newer; kiosctl update --force installs it anyway",
                    );
                return Err(refuse(line));
            }
            line.push("the running version is unknown (no IMAGE_VERSION in ")
                .push(OS_RELEASE)
                .push("); installing kios ")
                .push(version)
                .push(" as forced");
            self.say(&line);
            return Ok(false);
        };
        let order = crate::version::compare(version, running);
        line.push("running kios ")
            .push(running)
            .push(" on slot ")
            .push(slot.letter())
            .push("; the bundle's ")
            .push(version);
        match order {
            Ordering::Greater => {
                line.push(" is newer");
                self.say(&line);
                Ok(true)
            }
            _ if force => {
                line.push(" is not newer, installed anyway (forced)");
                self.say(&line);
                Ok(false)
            }
            Ordering::Equal => {
                let mut line = refused();
                line.push("kios ")
                    .push(version)
                    .push(" is not newer than the running ")
                    .push(running)
                    .push(" (the same version); kiosctl update --force installs it again");
                Err(refuse(line))
            }
            Ordering::Less => {
                let mut line = refused();
                line.push("kios ")
                    .push(version)
                    .push(" is not newer than the running ")
                    .push(running)
                    .push(" (it is older); kiosctl update --force installs it anyway");
                Err(refuse(line))
            }
        }
    }

    fn check_file(&mut self, fd: Fd, name: &str, expected: u64) -> Result<(), Stop> {
        let info = self.open_bundle_file(fd, name)?;
        if info.size != expected {
            return Err(refuse(refused_size(name, info.size, expected)));
        }
        Ok(())
    }

    fn check_hash(
        &mut self,
        fd: Fd,
        name: &str,
        size: u64,
        expected: &[u8; 32],
        buf: &mut [u8],
    ) -> Result<(), Stop> {
        let mut line = Line::new();
        line.push("checking ")
            .push(name)
            .push("'s SHA-256 (")
            .push_mb(size)
            .push(")");
        self.say(&line);
        let hash = stream(self.node, fd, None, size, buf, None).map_err(|error| match error {
            StreamError::Ended(at) => refuse(ended(refused(), name, at, size)),
            StreamError::Read(errno) | StreamError::Write(errno) => {
                refuse(refused_errno("reading", name, errno))
            }
        })?;
        if hash != *expected {
            return Err(refuse(refused_hash(name, &hash, expected)));
        }
        Ok(())
    }

    /// The disk holding the ESP, its GPT, the other slot's partition.
    fn check_disk<'m>(
        &mut self,
        manifest: &Manifest<'m>,
        args: &Args<'m>,
        newer: bool,
    ) -> Result<Plan<'m>, Stop> {
        let disk_info = self.find_disk(args.esp)?;
        let disk = path(&["/dev/", disk_info.name.as_str()]);
        self.node
            .open_device(Fd::Disk, disk.as_str())
            .map_err(|errno| refuse(refused_errno("opening", disk.as_str(), errno)))?;
        let block_size = self.node.block_size(Fd::Disk).map_err(|errno| {
            refuse(refused_errno(
                "reading the logical block size of",
                disk.as_str(),
                errno,
            ))
        })?;
        let gpt = Gpt::read(
            &mut DiskIo {
                node: self.node,
                fd: Fd::Disk,
            },
            block_size,
        )
        .map_err(|error| {
            let (what, copy, errno) = error.describe();
            let mut line = refused();
            line.push(disk.as_str())
                .push(": ")
                .push(what)
                .push(" (")
                .push(copy.name())
                .push(" copy)");
            if let Some(errno) = errno {
                line.push(": ").push_errno(errno);
            }
            refuse(line)
        })?;

        let esp_is_esp = gpt
            .partition(disk_info.esp_number)
            .is_some_and(|partition| partition.type_guid == Guid(ESP_TYPE_GPT_BYTES));
        if !esp_is_esp {
            let mut line = refused();
            line.push(args.esp)
                .push(" is partition ")
                .push_u64(disk_info.esp_number.into())
                .push(" of ")
                .push(disk.as_str())
                .push(", which the GPT does not type as an EFI system partition");
            return Err(refuse(line));
        }
        let other = args.slot.other();
        let mut name = Name::new();
        name.push(SLOT_PARTITION_PREFIX).push(other.letter());
        let Some(target) = gpt.find_by_name(name.as_str()) else {
            let mut line = refused();
            line.push(disk.as_str())
                .push(" has no partition named ")
                .push(name.as_str())
                .push(" (not an A/B disk?)");
            return Err(refuse(line));
        };
        let guid = manifest.root_partuuid;
        if let Some(holder) = gpt
            .partitions()
            .find(|partition| partition.number != target.number && partition.unique_guid == guid)
        {
            let mut line = refused();
            line.push("partition ")
                .push_u64(holder.number.into())
                .push(" of ")
                .push(disk.as_str())
                .push(" already has the GUID ")
                .push(manifest.root_partuuid_text)
                .push(
                    ": it holds this very root, and two partitions cannot (the release is on slot ",
                )
                .push(args.slot.letter())
                .push(" already?)");
            return Err(refuse(line));
        }
        let device = self.partition_device(&disk_info, target.number)?;
        self.node
            .open_device(Fd::Partition, device.as_str())
            .map_err(|errno| refuse(refused_errno("opening", device.as_str(), errno)))?;
        let device_size = self.node.device_size(Fd::Partition).map_err(|errno| {
            refuse(refused_errno("reading the size of", device.as_str(), errno))
        })?;
        let room = device_size.min(target.bytes(block_size));
        if manifest.root_size > room {
            let mut line = refused();
            line.push(ROOT_FILE)
                .push(" is ")
                .push_u64(manifest.root_size)
                .push(" bytes, partition ")
                .push(name.as_str())
                .push(" (")
                .push(device.as_str())
                .push(") holds ")
                .push_u64(room);
            return Err(refuse(line));
        }
        let mut line = Line::new();
        line.push("slot ")
            .push(other.letter())
            .push(" is partition ")
            .push_u64(target.number.into())
            .push(" of ")
            .push(disk.as_str())
            .push(", ")
            .push(name.as_str())
            .push(" (")
            .push(device.as_str())
            .push(", ")
            .push_mb(room)
            .push(")");
        self.say(&line);
        Ok(Plan {
            manifest: *manifest,
            running: args.slot,
            newer,
            esp: args.esp,
            disk,
            gpt,
            target,
            device,
            others: Names::new(),
            running_entries: Names::new(),
        })
    }

    /// The disk whose partition the ESP is: `/sys/class/block/<esp>`
    /// links to `.../block/<disk>/<esp>`, and its `partition` file holds
    /// its number.
    fn find_disk(&mut self, esp: &str) -> Result<DiskInfo, Stop> {
        let esp_name = esp.strip_prefix("/dev/").unwrap_or(esp);
        let esp_class = path(&["/sys/class/block/", esp_name]);
        let mut link = [0u8; 512];
        let len = self
            .node
            .read_link(esp_class.as_str(), &mut link)
            .map_err(|errno| {
                refuse(refused_errno("reading the link", esp_class.as_str(), errno))
            })?;
        let link = core::str::from_utf8(&link[..len]).unwrap_or("");
        let mut components = link.rsplit('/');
        let (last, disk) = (components.next(), components.next());
        let disk = match (last, disk.and_then(Name::of)) {
            (Some(last), Some(disk)) if last == esp_name && !disk.is_empty() => disk,
            _ => {
                let mut line = refused();
                line.push(esp_class.as_str())
                    .push(" links to ")
                    .push(link)
                    .push(", not to a partition of a disk");
                return Err(refuse(line));
            }
        };
        let number_path = path(&[esp_class.as_str(), "/partition"]);
        let esp_number = self.read_number(number_path.as_str()).map_err(|errno| {
            let mut line = refused();
            line.push(esp)
                .push(" is not a partition: reading ")
                .push(number_path.as_str())
                .push(" failed: ")
                .push_errno(errno);
            refuse(line)
        })?;
        Ok(DiskInfo {
            name: disk,
            esp_class,
            esp_number,
        })
    }

    /// A sysfs number file (`3\n`).
    fn read_number(&mut self, path: &str) -> Result<u32, Errno> {
        let mut buf = [0u8; 24];
        let read = self.node.read_file(path, &mut buf)?;
        core::str::from_utf8(&buf[..read.len])
            .ok()
            .and_then(|text| text.trim_ascii_end().parse::<u32>().ok())
            .filter(|_| !read.truncated)
            .ok_or(Errno::INVAL)
    }

    /// `/dev/<name>` of the disk's partition `number`: the disk's sysfs
    /// directory lists its partitions, each with a `partition` file.
    fn partition_device(&mut self, disk: &DiskInfo, number: u32) -> Result<PathText, Stop> {
        let dir = path(&[disk.esp_class.as_str(), "/.."]);
        let mut names: [Name; MAX_PARTITION_NAMES] = core::array::from_fn(|_| Name::new());
        let mut count = 0;
        let disk_name = disk.name.as_str();
        self.node
            .list_dir(dir.as_str(), &mut |name| {
                let partition = name.len() > disk_name.len() && name.starts_with(disk_name);
                if let (true, Some(slot), Some(name)) =
                    (partition, names.get_mut(count), Name::of(name))
                {
                    *slot = name;
                    count += 1;
                }
            })
            .map_err(|errno| refuse(refused_errno("listing", dir.as_str(), errno)))?;
        for name in &names[..count] {
            let file = path(&[dir.as_str(), "/", name.as_str(), "/partition"]);
            if self.read_number(file.as_str()) == Ok(number) {
                return Ok(path(&["/dev/", name.as_str()]));
            }
        }
        let mut line = refused();
        line.push("partition ")
            .push_u64(number.into())
            .push(" of /dev/")
            .push(disk_name)
            .push(" has no device (no ")
            .push(dir.as_str())
            .push("/*/partition holds its number)");
        Err(refuse(line))
    }

    /// Mounts the ESP, lists the slots' entries, checks the UKI's room.
    fn check_esp(&mut self, plan: &mut Plan<'_>) -> Result<(), Stop> {
        match self.node.mkdir(ESP_MOUNT, 0o700) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(refuse(refused_errno("creating", ESP_MOUNT, errno))),
        }
        self.node.mount_esp(plan.esp, ESP_MOUNT).map_err(|errno| {
            let mut what = PathText::new();
            what.push("the EFI system partition ")
                .push(plan.esp)
                .push(" on ")
                .push(ESP_MOUNT);
            refuse(refused_errno("mounting", what.as_str(), errno))
        })?;
        self.mounted = true;
        let other = plan.running.other();
        let mut temporary = false;
        let (others, running_entries) = (&mut plan.others, &mut plan.running_entries);
        self.node
            .list_dir(ENTRIES_PATH, &mut |name| {
                temporary |= name == TEMPORARY_NAME;
                match BootEntry::parse(name) {
                    Some(entry) if entry.slot == other => others.push(name),
                    Some(_) => running_entries.push(name),
                    None => {}
                }
            })
            .map_err(|errno| refuse(refused_errno("listing", ENTRIES_PATH, errno)))?;
        if plan.others.overflowed || plan.running_entries.overflowed {
            let mut line = refused();
            line.push(ENTRIES_PATH)
                .push(" has more than ")
                .push_u64(MAX_SLOT_ENTRIES as u64)
                .push(" entries of a slot");
            return Err(refuse(line));
        }
        let free = self
            .node
            .free_bytes(ENTRIES_PATH)
            .map_err(|errno| refuse(refused_errno("reading the free space of", plan.esp, errno)))?;
        let mut reclaimed = 0;
        let removed = plan
            .others
            .iter()
            .chain(temporary.then_some(TEMPORARY_NAME));
        for name in removed {
            let file = path(&[ENTRIES_PATH, "/", name]);
            reclaimed += self.node.file_size(file.as_str()).map_err(|errno| {
                refuse(refused_errno("reading the size of", file.as_str(), errno))
            })?;
        }
        let room = free.saturating_add(reclaimed);
        if plan.manifest.uki_size > room {
            let mut line = refused();
            line.push(UKI_FILE)
                .push(" is ")
                .push_u64(plan.manifest.uki_size)
                .push(" bytes, the EFI system partition ")
                .push(plan.esp)
                .push(" has ")
                .push_u64(room)
                .push(" free (slot ")
                .push(other.letter())
                .push("'s entries counted as removed)");
            return Err(refuse(line));
        }
        Ok(())
    }

    /// The writes, each failure a `failed:` line.
    fn write(&mut self, plan: &mut Plan<'_>, buf: &mut [u8]) -> Result<Line, Stop> {
        let running = plan.running;
        let other = running.other();
        let manifest = plan.manifest;
        let fail =
            |step: &str, what: &str, errno: Errno| Stop::Failed(failed(step, what, errno, running));

        // 1. The other slot cannot boot any more: its entries go.
        let mut removed = 0;
        for name in plan.others.iter().chain(core::iter::once(TEMPORARY_NAME)) {
            let file = path(&[ENTRIES_PATH, "/", name]);
            match self.node.unlink(file.as_str()) {
                Ok(()) => {
                    if name != TEMPORARY_NAME {
                        removed += 1;
                        let mut line = Line::new();
                        line.push("slot ")
                            .push(other.letter())
                            .push(": removed EFI/Linux/")
                            .push(name);
                        self.say(&line);
                    }
                }
                Err(Errno::NOENT) => {}
                // Nothing removed yet: nothing was written.
                Err(errno) if removed == 0 => {
                    return Err(refuse(refused_errno("removing", file.as_str(), errno)))
                }
                Err(errno) => return Err(fail("removing", file.as_str(), errno)),
            }
        }
        if removed == 0 {
            let mut line = Line::new();
            line.push("slot ")
                .push(other.letter())
                .push(": no entry in EFI/Linux to remove");
            self.say(&line);
        }
        self.node.sync();

        // 2. The root, written, synced, read back.
        let device = plan.device.as_str();
        let mut line = Line::new();
        line.push("writing ")
            .push(ROOT_FILE)
            .push(" (")
            .push_mb(manifest.root_size)
            .push(") to ")
            .push(device);
        self.say(&line);
        let written = stream(
            self.node,
            Fd::Root,
            Some(Fd::Partition),
            manifest.root_size,
            buf,
            Some(device),
        )
        .map_err(|error| {
            self.stream_failed(error, ROOT_FILE, device, manifest.root_size, running)
        })?;
        if written != manifest.root_sha256 {
            return Err(changed(ROOT_FILE, &written, &manifest.root_sha256, running));
        }
        self.node
            .fsync(Fd::Partition)
            .map_err(|errno| fail("syncing", device, errno))?;
        let mut line = Line::new();
        line.push("verifying ")
            .push(device)
            .push(": reading ")
            .push_mb(manifest.root_size)
            .push(" back");
        self.say(&line);
        self.node
            .drop_cache(Fd::Partition)
            .map_err(|errno| fail("dropping the cached pages of", device, errno))?;
        let read_back = stream(
            self.node,
            Fd::Partition,
            None,
            manifest.root_size,
            buf,
            None,
        )
        .map_err(|error| match error {
            StreamError::Ended(at) => {
                Stop::Failed(ended_failed(device, at, manifest.root_size, running))
            }
            StreamError::Read(errno) | StreamError::Write(errno) => {
                fail("reading back", device, errno)
            }
        })?;
        if read_back != manifest.root_sha256 {
            let mut line = failed_start();
            line.push("verifying ")
                .push(device)
                .push(": it reads back with SHA-256 ")
                .push_hex(&read_back)
                .push(", not ")
                .push(ROOT_FILE)
                .push("'s ")
                .push_hex(&manifest.root_sha256);
            push_not_bootable(&mut line, running);
            return Err(Stop::Failed(line));
        }

        // 3. The partition takes the release's GUID, which its UKI names.
        let disk = plan.disk.as_str();
        let mut line = Line::new();
        line.push("setting partition ")
            .push_u64(plan.target.number.into())
            .push("'s GUID to ")
            .push(manifest.root_partuuid_text)
            .push(" in the primary and backup GPT of ")
            .push(disk);
        self.say(&line);
        plan.gpt
            .set_unique_guid(
                &mut DiskIo {
                    node: self.node,
                    fd: Fd::Disk,
                },
                plan.target.number,
                manifest.root_partuuid,
            )
            .map_err(|(copy, errno)| {
                let mut step = PathText::new();
                step.push("writing the ").push(copy.name()).push(" GPT of");
                fail(step.as_str(), disk, errno)
            })?;
        self.node
            .fsync(Fd::Disk)
            .map_err(|errno| fail("syncing", disk, errno))?;

        // 4. The UKI, whole and synced before it is named an entry.
        let entry = entry_name(manifest.version, other, manifest.boot_tries);
        let temporary = path(&[ENTRIES_PATH, "/", TEMPORARY_NAME]);
        let final_path = path(&[ENTRIES_PATH, "/", entry.as_str()]);
        let mut line = Line::new();
        line.push("writing EFI/Linux/")
            .push(entry.as_str())
            .push(" (")
            .push_mb(manifest.uki_size)
            .push(")");
        self.say(&line);
        self.node
            .create(Fd::NewEntry, temporary.as_str())
            .map_err(|errno| fail("creating", temporary.as_str(), errno))?;
        let written = stream(
            self.node,
            Fd::Uki,
            Some(Fd::NewEntry),
            manifest.uki_size,
            buf,
            None,
        )
        .map_err(|error| {
            self.stream_failed(
                error,
                UKI_FILE,
                temporary.as_str(),
                manifest.uki_size,
                running,
            )
        })?;
        if written != manifest.uki_sha256 {
            return Err(changed(UKI_FILE, &written, &manifest.uki_sha256, running));
        }
        self.node
            .fsync(Fd::NewEntry)
            .map_err(|errno| fail("syncing", temporary.as_str(), errno))?;
        self.node.close(Fd::NewEntry);
        self.node
            .rename(temporary.as_str(), final_path.as_str())
            .map_err(|errno| {
                let mut step = PathText::new();
                step.push("renaming ").push(temporary.as_str()).push(" to");
                fail(step.as_str(), entry.as_str(), errno)
            })?;
        if let Err(errno) = self.node.fsync_dir(ENTRIES_PATH) {
            // Not known to be on the disk: not an entry either.
            let _ = self.node.unlink(final_path.as_str());
            self.node.sync();
            return Err(fail("syncing", ENTRIES_PATH, errno));
        }

        // 5. Forced and not newer: systemd-boot would still boot the
        // running slot first (newest version first); its entries are given
        // up, keeping their tries for when its boot is good again.
        if !plan.newer {
            let mut renamed = 0;
            for name in plan.running_entries.iter() {
                let Some(parsed) = BootEntry::parse(name).filter(BootEntry::is_bootable) else {
                    continue;
                };
                let given_up = given_up_name(&parsed, manifest.boot_tries);
                let from = path(&[ENTRIES_PATH, "/", name]);
                let to = path(&[ENTRIES_PATH, "/", given_up.as_str()]);
                if let Err(errno) = self.node.rename(from.as_str(), to.as_str()) {
                    let mut line = failed_start();
                    line.push("renaming EFI/Linux/")
                        .push(name)
                        .push(" to ")
                        .push(given_up.as_str())
                        .push(": ")
                        .push_errno(errno)
                        .push("; slot ")
                        .push(other.letter())
                        .push(" holds kios ")
                        .push(manifest.version)
                        .push(" but systemd-boot still boots slot ")
                        .push(running.letter())
                        .push(" first, the node stays on slot ")
                        .push(running.letter());
                    return Err(Stop::Failed(line));
                }
                renamed += 1;
                let mut line = Line::new();
                line.push("slot ")
                    .push(running.letter())
                    .push(": EFI/Linux/")
                    .push(name)
                    .push(" renamed to ")
                    .push(given_up.as_str())
                    .push(", so systemd-boot boots kios ")
                    .push(manifest.version)
                    .push(" on slot ")
                    .push(other.letter())
                    .push(" next and slot ")
                    .push(running.letter())
                    .push(" only after it");
                self.say(&line);
            }
            if renamed > 0 {
                if let Err(errno) = self.node.fsync_dir(ENTRIES_PATH) {
                    let mut line = failed_start();
                    line.push("syncing ")
                        .push(ENTRIES_PATH)
                        .push(": ")
                        .push_errno(errno)
                        .push("; slot ")
                        .push(other.letter())
                        .push(" holds kios ")
                        .push(manifest.version)
                        .push(" but may not boot before slot ")
                        .push(running.letter())
                        .push(", the node stays on slot ")
                        .push(running.letter());
                    return Err(Stop::Failed(line));
                }
            }
        }
        Ok(updated(
            other,
            manifest.version,
            &manifest.root_sha256,
            entry.as_str(),
        ))
    }

    fn stream_failed(
        &self,
        error: StreamError,
        source: &str,
        target: &str,
        size: u64,
        running: Slot,
    ) -> Stop {
        Stop::Failed(match error {
            StreamError::Read(errno) => failed("reading", source, errno, running),
            StreamError::Ended(at) => {
                let mut line = ended(failed_start(), source, at, size);
                push_not_bootable(&mut line, running);
                line
            }
            StreamError::Write(errno) => {
                let mut step = PathText::new();
                step.push("writing ").push(source).push(" to");
                failed(step.as_str(), target, errno, running)
            }
        })
    }
}

fn check_handover(handover: &Handover) -> Result<bool, Stop> {
    let mut line = refused();
    if handover.bytes == 0 && handover.descriptors == 0 {
        line.push("the client closed the connection without sending the bundle");
    } else if handover.truncated || handover.descriptors != 1 {
        line.push("the client sent ")
            .push(if handover.truncated { "more than " } else { "" })
            .push_u64(handover.descriptors as u64)
            .push(" descriptors; the hand-over is exactly one, the bundle's directory");
    } else if handover.bytes != 1 {
        line.push("the client sent ")
            .push_u64(handover.bytes as u64)
            .push(" bytes with the descriptor; the hand-over is one flags byte");
    } else if !handover.directory {
        line.push(
            "the descriptor the client sent is not a directory (kiosctl update sends the bundle's)",
        );
    } else if handover.flags & !flags::FORCE != 0 {
        line.push("unknown flags 0x")
            .push_hex(&[handover.flags])
            .push(" from the client (this node knows FORCE, 0x01)");
    } else {
        return Ok(handover.flags & flags::FORCE != 0);
    }
    Err(refuse(line))
}

fn manifest_refusal(error: ManifestError<'_>) -> Line {
    let mut line = refused();
    line.push(MANIFEST_FILE).push(": ");
    match error {
        ManifestError::NotText => line.push("not UTF-8 text"),
        ManifestError::NotKeyValue(number) => line
            .push("line ")
            .push_u64(number as u64)
            .push(" is not KEY=value"),
        ManifestError::Repeated(key) => line.push(key).push(" is given twice"),
        ManifestError::Format(format) => line
            .push("the bundle's format is ")
            .push(format)
            .push(", this node reads format ")
            .push(kios_abi::update_bundle::FORMAT),
        ManifestError::Missing(key) => line.push("no ").push(key),
        ManifestError::Invalid {
            key,
            value,
            expected,
        } => line
            .push(key)
            .push("=")
            .push(value)
            .push(": expected ")
            .push(expected),
    };
    line
}

/// `<file> ended at N bytes, before the M the manifest says (changed while read?)`.
fn ended(mut line: Line, file: &str, at: u64, size: u64) -> Line {
    line.push(file)
        .push(" ended at ")
        .push_u64(at)
        .push(" bytes, before the ")
        .push_u64(size)
        .push(" the manifest says (changed while read?)");
    line
}

fn ended_failed(device: &str, at: u64, size: u64, running: Slot) -> Line {
    let mut line = failed_start();
    line.push("reading back ")
        .push(device)
        .push(": it ended at ")
        .push_u64(at)
        .push(" bytes, before ")
        .push_u64(size);
    push_not_bootable(&mut line, running);
    line
}

/// A bundle file whose bytes, as copied, are not the ones checked.
fn changed(file: &str, written: &[u8; 32], expected: &[u8; 32], running: Slot) -> Stop {
    let mut line = failed_start();
    line.push(file)
        .push(" changed while it was copied (SHA-256 ")
        .push_hex(written)
        .push(", not ")
        .push_hex(expected)
        .push(")");
    push_not_bootable(&mut line, running);
    Stop::Failed(line)
}

/// Streams `size` bytes of `from` through `buf`, into `to` when given,
/// at the same offsets; their SHA-256. With `progress`, a line per
/// [`PROGRESS_EVERY`] bytes names it as the target.
fn stream<N: Node>(
    node: &mut N,
    from: Fd,
    to: Option<Fd>,
    size: u64,
    buf: &mut [u8],
    progress: Option<&str>,
) -> Result<[u8; 32], StreamError> {
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    let mut report_at = PROGRESS_EVERY;
    while offset < size {
        let want = buf
            .len()
            .min((size - offset).try_into().unwrap_or(usize::MAX));
        let read = node
            .read_at(from, offset, &mut buf[..want])
            .map_err(StreamError::Read)?;
        if read == 0 {
            return Err(StreamError::Ended(offset));
        }
        if let Some(to) = to {
            write_all(node, to, offset, &buf[..read]).map_err(StreamError::Write)?;
        }
        hasher.update(&buf[..read]);
        offset += read as u64;
        if let Some(target) = progress {
            if offset >= report_at && offset < size {
                report_at += PROGRESS_EVERY;
                let mut line = Line::new();
                line.push("wrote ")
                    .push_mb(offset)
                    .push(" of ")
                    .push_mb(size)
                    .push(" to ")
                    .push(target);
                node.say(Level::Notice, line.as_str());
            }
        }
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&hasher.finalize());
    Ok(hash)
}

fn read_exact<N: Node>(node: &mut N, fd: Fd, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        match node.read_at(fd, offset + done as u64, &mut buf[done..])? {
            0 => return Err(Errno::IO),
            read => done += read,
        }
    }
    Ok(())
}

fn write_all<N: Node>(node: &mut N, fd: Fd, offset: u64, buf: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        match node.write_at(fd, offset + done as u64, &buf[done..])? {
            0 => return Err(Errno::IO),
            written => done += written,
        }
    }
    Ok(())
}

/// The GPT's view of a device the node holds.
struct DiskIo<'a, N: Node> {
    node: &'a mut N,
    fd: Fd,
}

impl<N: Node> Disk for DiskIo<'_, N> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        read_exact(self.node, self.fd, offset, buf)
    }

    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Errno> {
        write_all(self.node, self.fd, offset, buf)
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
