use std::collections::{BTreeMap, HashMap};

use kios_abi::boot_slots::ENTRIES_DIR;
use sha2::{Digest, Sha256};

use super::*;
use crate::gpt::tests::{ab_specs, disk_image};
use crate::manifest::tests::manifest_with;

const ESP: &str = "/dev/vda1";
const ESP_CLASS: &str = "/sys/class/block/vda1";
const DISK_DIR: &str = "/sys/class/block/vda1/..";
const A_GUID: [u8; 16] = [2; 16];
const B_GUID: [u8; 16] = [3; 16];
const NEW_GUID: &str = "9f86d081-884c-7d65-9a2f-eaa0c55ad015";

enum Open {
    Bundle(String),
    /// A device's path and its range of the disk.
    Device(String, usize, usize),
    NewEntry(String),
}

/// An in-memory node: a bundle, sysfs, a 256-block A/B disk whose
/// partitions are ranges of it, and the ESP's `EFI/Linux`. Every call
/// that changes something is an event; `fail` makes the first event that
/// is its text, or starts with it and a space, fail with its errno.
struct Fake {
    handover: Result<Handover, Errno>,
    bundle: BTreeMap<String, (bool, Vec<u8>)>,
    files: BTreeMap<String, Vec<u8>>,
    links: BTreeMap<String, String>,
    dirs: BTreeMap<String, Vec<String>>,
    disk: Vec<u8>,
    devices: BTreeMap<String, (usize, usize)>,
    entries: BTreeMap<String, Vec<u8>>,
    esp_free: u64,
    open: HashMap<Fd, Open>,
    events: Vec<String>,
    lines: Vec<String>,
    fail: Option<(String, Errno)>,
    /// Flips a bit of every write to a partition (a bad disk).
    corrupt_writes: bool,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn uki() -> Vec<u8> {
    b"MZ a unified kernel image".repeat(4)
}

fn root() -> Vec<u8> {
    (0..3000u32).map(|at| (at * 7 % 251) as u8).collect()
}

/// The bundle's manifest for [`uki`] and [`root`], with `changes`.
fn manifest(changes: &[&str]) -> Vec<u8> {
    let uki_size = format!("UKI_SIZE={}", uki().len());
    let uki_sha = format!("UKI_SHA256={}", sha256_hex(&uki()));
    let root_size = format!("ROOT_SIZE={}", root().len());
    let root_sha = format!("ROOT_SHA256={}", sha256_hex(&root()));
    let arch = format!("ARCH={NODE_ARCH}");
    let mut all = vec![uki_size.as_str(), &uki_sha, &root_size, &root_sha, &arch];
    all.extend_from_slice(changes);
    manifest_with(&all).into_bytes()
}

impl Fake {
    fn new() -> Fake {
        let disk = disk_image(512, 256, &ab_specs(A_GUID, B_GUID));
        let mut fake = Fake {
            handover: Ok(Handover {
                bytes: 1,
                flags: 0,
                descriptors: 1,
                truncated: false,
                directory: true,
            }),
            bundle: BTreeMap::new(),
            files: BTreeMap::new(),
            links: BTreeMap::new(),
            dirs: BTreeMap::new(),
            disk,
            devices: BTreeMap::new(),
            entries: BTreeMap::new(),
            esp_free: 1 << 20,
            open: HashMap::new(),
            events: Vec::new(),
            lines: Vec::new(),
            fail: None,
            corrupt_writes: false,
        };
        fake.bundle("manifest", manifest(&[]));
        fake.bundle("kios.efi", uki());
        fake.bundle("root.img", root());
        fake.file(OS_RELEASE, "NAME=kiOS\nID=kios\nIMAGE_VERSION=1.0\n");
        fake.links.insert(
            ESP_CLASS.into(),
            "../../devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1".into(),
        );
        fake.file("/sys/class/block/vda1/partition", "1\n");
        let mut listing: Vec<String> = [".", "..", "alignment_offset", "queue", "size"]
            .iter()
            .map(|name| name.to_string())
            .collect();
        for (number, first, last) in [(1, 34, 99), (2, 100, 149), (3, 150, 199), (4, 200, 222)] {
            let name = format!("vda{number}");
            fake.file(
                &format!("{DISK_DIR}/{name}/partition"),
                &format!("{number}\n"),
            );
            fake.devices.insert(
                format!("/dev/{name}"),
                (first * 512, (last + 1 - first) * 512),
            );
            listing.push(name);
        }
        fake.devices.insert("/dev/vda".into(), (0, 256 * 512));
        fake.dirs.insert(DISK_DIR.into(), listing);
        fake.entries
            .insert("kios-1.0-a+3.efi".into(), b"running".to_vec());
        fake.entries
            .insert("kios-0.9-b+0-3.efi".into(), b"given up".to_vec());
        fake
    }

    fn bundle(&mut self, name: &str, contents: Vec<u8>) {
        self.bundle.insert(name.into(), (true, contents));
    }

    fn file(&mut self, path: &str, contents: &str) {
        self.files.insert(path.into(), contents.as_bytes().to_vec());
    }

    fn run(&mut self, args: &[&str]) -> i32 {
        let mut buf = [0u8; 1024];
        update(self, args, &mut buf)
    }

    fn run_from_a(&mut self) -> i32 {
        self.run(&["a", ESP, "kios-1.0-a+2-1.efi"])
    }

    fn fails(&self, event: &str) -> bool {
        self.fail.as_ref().is_some_and(|(pattern, _)| {
            event == pattern
                || event
                    .strip_prefix(pattern.as_str())
                    .is_some_and(|rest| rest.starts_with(' '))
        })
    }

    fn event(&mut self, event: String) -> Result<(), Errno> {
        if self.fails(&event) {
            let (_, errno) = self.fail.take().unwrap();
            self.events.push(format!("FAILED {event}"));
            return Err(errno);
        }
        if self.events.last() != Some(&event) {
            self.events.push(event);
        }
        Ok(())
    }

    fn entry_name(path: &str) -> &str {
        path.strip_prefix(ENTRIES_PATH)
            .and_then(|name| name.strip_prefix('/'))
            .expect("a path in EFI/Linux")
    }

    fn name_of(&self, fd: Fd) -> String {
        match self.open.get(&fd) {
            Some(Open::Device(path, ..)) => path.clone(),
            Some(Open::NewEntry(name)) => name.clone(),
            Some(Open::Bundle(name)) => name.clone(),
            None => "?".into(),
        }
    }

    /// What changed: the events that write.
    fn writes(&self) -> Vec<&String> {
        self.events
            .iter()
            .filter(|event| {
                ["unlink", "write", "rename", "create"]
                    .iter()
                    .any(|write| event.starts_with(write))
            })
            .collect()
    }

    fn last_line(&self) -> &str {
        self.lines.last().map_or("", String::as_str)
    }

    fn gpt(&mut self) -> Gpt {
        Gpt::read(&mut self.disk, 512).unwrap()
    }
}

impl Node for Fake {
    fn send_ready(&mut self) -> Result<(), Errno> {
        self.event("ready".into())
    }

    fn receive_bundle(&mut self) -> Result<Handover, Errno> {
        self.handover
    }

    fn open_bundle_file(&mut self, fd: Fd, name: &str) -> Result<FileInfo, Errno> {
        let (regular, contents) = self.bundle.get(name).ok_or(Errno::NOENT)?;
        let info = FileInfo {
            regular: *regular,
            size: contents.len() as u64,
        };
        self.open.insert(fd, Open::Bundle(name.into()));
        Ok(info)
    }

    fn read_file(&mut self, path: &str, buf: &mut [u8]) -> Result<Read, Errno> {
        let contents = self.files.get(path).ok_or(Errno::NOENT)?;
        let len = contents.len().min(buf.len());
        buf[..len].copy_from_slice(&contents[..len]);
        Ok(Read {
            len,
            truncated: len < contents.len(),
        })
    }

    fn read_link(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, Errno> {
        let link = self.links.get(path).ok_or(Errno::NOENT)?;
        buf[..link.len()].copy_from_slice(link.as_bytes());
        Ok(link.len())
    }

    fn list_dir(&mut self, path: &str, each: &mut dyn FnMut(&str)) -> Result<(), Errno> {
        if path == ENTRIES_PATH {
            for name in self.entries.keys() {
                each(name);
            }
            return Ok(());
        }
        for name in self.dirs.get(path).ok_or(Errno::NOENT)? {
            each(name);
        }
        Ok(())
    }

    fn open_device(&mut self, fd: Fd, path: &str) -> Result<(), Errno> {
        self.event(format!("open {path}"))?;
        let &(offset, len) = self.devices.get(path).ok_or(Errno::NOENT)?;
        self.open.insert(fd, Open::Device(path.into(), offset, len));
        Ok(())
    }

    fn block_size(&mut self, _fd: Fd) -> Result<u32, Errno> {
        Ok(512)
    }

    fn device_size(&mut self, fd: Fd) -> Result<u64, Errno> {
        match self.open.get(&fd) {
            Some(Open::Device(_, _, len)) => Ok(*len as u64),
            _ => Err(Errno(9)),
        }
    }

    fn read_at(&mut self, fd: Fd, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let event = format!("read {}", self.name_of(fd));
        if self.fails(&event) {
            self.event(event)?;
        }
        let contents: &[u8] = match self.open.get(&fd) {
            Some(Open::Bundle(file)) => &self.bundle[file].1,
            Some(Open::Device(_, start, len)) => &self.disk[*start..start + len],
            _ => return Err(Errno(9)),
        };
        let at = (offset as usize).min(contents.len());
        // Short reads, as a pipe or a slow device gives them.
        let len = buf.len().min(contents.len() - at).min(700);
        buf[..len].copy_from_slice(&contents[at..at + len]);
        Ok(len)
    }

    fn write_at(&mut self, fd: Fd, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        self.event(format!("write {}", self.name_of(fd)))?;
        let corrupt = self.corrupt_writes && fd == Fd::Partition;
        let target: &mut Vec<u8> = match self.open.get(&fd) {
            Some(Open::NewEntry(name)) => self.entries.get_mut(name).unwrap(),
            Some(Open::Device(_, start, len)) => {
                let (start, len) = (*start, *len);
                let end = (offset as usize + buf.len()).min(len);
                let part = &mut self.disk[start..start + len];
                part[offset as usize..end].copy_from_slice(&buf[..end - offset as usize]);
                if corrupt {
                    part[offset as usize] ^= 1;
                }
                return Ok(end - offset as usize);
            }
            _ => return Err(Errno(9)),
        };
        let end = offset as usize + buf.len();
        if target.len() < end {
            target.resize(end, 0);
        }
        target[offset as usize..end].copy_from_slice(buf);
        Ok(buf.len())
    }

    fn fsync(&mut self, fd: Fd) -> Result<(), Errno> {
        self.event(format!("fsync {}", self.name_of(fd)))
    }

    fn drop_cache(&mut self, fd: Fd) -> Result<(), Errno> {
        self.event(format!("drop_cache {}", self.name_of(fd)))
    }

    fn create(&mut self, fd: Fd, path: &str) -> Result<(), Errno> {
        let name = Fake::entry_name(path).to_string();
        self.event(format!("create {name}"))?;
        self.entries.insert(name.clone(), Vec::new());
        self.open.insert(fd, Open::NewEntry(name));
        Ok(())
    }

    fn close(&mut self, fd: Fd) {
        self.open.remove(&fd);
    }

    fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), Errno> {
        self.event(format!("mkdir {path} {mode:o}"))
    }

    fn mount_esp(&mut self, device: &str, target: &str) -> Result<(), Errno> {
        self.event(format!("mount {device} {target}"))
    }

    fn unmount(&mut self, target: &str) {
        let _ = self.event(format!("unmount {target}"));
    }

    fn free_bytes(&mut self, path: &str) -> Result<u64, Errno> {
        assert_eq!(path, ENTRIES_PATH);
        Ok(self.esp_free)
    }

    fn file_size(&mut self, path: &str) -> Result<u64, Errno> {
        let name = Fake::entry_name(path);
        self.entries
            .get(name)
            .map(|contents| contents.len() as u64)
            .ok_or(Errno::NOENT)
    }

    fn unlink(&mut self, path: &str) -> Result<(), Errno> {
        let name = Fake::entry_name(path).to_string();
        if !self.entries.contains_key(&name) {
            return Err(Errno::NOENT);
        }
        self.event(format!("unlink {name}"))?;
        self.entries.remove(&name);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno> {
        let (from, to) = (Fake::entry_name(from), Fake::entry_name(to));
        self.event(format!("rename {from} {to}"))?;
        let contents = self.entries.remove(from).ok_or(Errno::NOENT)?;
        self.entries.insert(to.into(), contents);
        Ok(())
    }

    fn fsync_dir(&mut self, path: &str) -> Result<(), Errno> {
        self.event(format!("fsync_dir {path}"))
    }

    fn sync(&mut self) {
        let _ = self.event("sync".into());
    }

    fn say(&mut self, _level: Level, line: &str) {
        self.lines.push(line.into());
    }
}

fn strings(events: &[&str]) -> Vec<String> {
    events.iter().map(|event| event.to_string()).collect()
}

#[test]
fn the_entries_path_is_the_mount_and_the_abis_directory() {
    assert_eq!(ENTRIES_PATH, format!("{ESP_MOUNT}/{ENTRIES_DIR}"));
}

#[test]
fn a_newer_release_goes_to_the_other_slot_in_the_safe_order() {
    let mut node = Fake::new();
    assert_eq!(node.run_from_a(), exit::UPDATED);
    assert_eq!(
        node.events,
        strings(&[
            "ready",
            "open /dev/vda",
            "open /dev/vda3",
            "mkdir /run/kios-update-esp 700",
            "mount /dev/vda1 /run/kios-update-esp",
            "unlink kios-0.9-b+0-3.efi",
            "sync",
            "write /dev/vda3",
            "fsync /dev/vda3",
            "drop_cache /dev/vda3",
            "write /dev/vda",
            "fsync /dev/vda",
            "create kios-update.tmp",
            "write kios-update.tmp",
            "fsync kios-update.tmp",
            "rename kios-update.tmp kios-2.0-b+3.efi",
            "fsync_dir /run/kios-update-esp/EFI/Linux",
            "unmount /run/kios-update-esp",
            "sync",
        ])
    );
    let root_sha = sha256_hex(&root());
    let expected_lines = [
        format!("checking the bundle: kios 2.0 for {NODE_ARCH}, kios.efi 0.0 MB, root.img 0.0 MB, 3 boot tries"),
        "running kios 1.0 on slot a; the bundle's 2.0 is newer".into(),
        "slot b is partition 3 of /dev/vda, kios-root-b (/dev/vda3, 0.0 MB)".into(),
        "checking kios.efi's SHA-256 (0.0 MB)".into(),
        "checking root.img's SHA-256 (0.0 MB)".into(),
        "slot b: removed EFI/Linux/kios-0.9-b+0-3.efi".into(),
        "writing root.img (0.0 MB) to /dev/vda3".into(),
        "verifying /dev/vda3: reading 0.0 MB back".into(),
        format!("setting partition 3's GUID to {NEW_GUID} in the primary and backup GPT of /dev/vda"),
        "writing EFI/Linux/kios-2.0-b+3.efi (0.0 MB)".into(),
        format!(
            "updated: slot b holds kios 2.0 (root {}..., EFI/Linux/kios-2.0-b+3.efi); the node reboots into it",
            &root_sha[..12]
        ),
    ];
    assert_eq!(node.lines, expected_lines);

    // The slot holds the root, its partition the release's GUID in both
    // copies, the ESP the new entry and the running one untouched.
    let (start, _) = node.devices["/dev/vda3"];
    assert_eq!(node.disk[start..start + root().len()], root()[..]);
    let gpt = node.gpt();
    let b = gpt.find_by_name("kios-root-b").unwrap();
    assert_eq!(b.unique_guid, Guid::parse(NEW_GUID).unwrap());
    assert_eq!(
        gpt.find_by_name("kios-root-a").unwrap().unique_guid,
        Guid(A_GUID)
    );
    assert_eq!(
        node.entries.keys().collect::<Vec<_>>(),
        ["kios-1.0-a+3.efi", "kios-2.0-b+3.efi"]
    );
    assert_eq!(node.entries["kios-2.0-b+3.efi"], uki());
    assert_eq!(node.entries["kios-1.0-a+3.efi"], b"running");
}

#[test]
fn booted_from_b_the_release_goes_to_a() {
    let mut node = Fake::new();
    node.entries.clear();
    node.entries
        .insert("kios-1.0-b+3.efi".into(), b"running".to_vec());
    assert_eq!(node.run(&["b", ESP, "kios-1.0-b+3.efi"]), exit::UPDATED);
    assert!(node.events.contains(&"write /dev/vda2".to_string()));
    assert!(node
        .lines
        .contains(&"slot a: no entry in EFI/Linux to remove".to_string()));
    assert_eq!(
        node.gpt().find_by_name("kios-root-a").unwrap().unique_guid,
        Guid::parse(NEW_GUID).unwrap()
    );
    assert!(node
        .last_line()
        .starts_with("updated: slot a holds kios 2.0 (root "));
    assert!(node.entries.contains_key("kios-2.0-a+3.efi"));
}

#[test]
fn a_forced_older_release_gives_the_running_slot_up_so_it_boots_next() {
    let mut node = Fake::new();
    node.file(OS_RELEASE, "IMAGE_VERSION=3\n");
    node.entries.remove("kios-1.0-a+3.efi");
    node.entries
        .insert("kios-3-a+1-2.efi".into(), b"running".to_vec());
    node.handover.as_mut().unwrap().flags = flags::FORCE;
    assert_eq!(node.run(&["a", ESP, "kios-3-a+1-2.efi"]), exit::UPDATED);
    assert!(node.lines.contains(
        &"running kios 3 on slot a; the bundle's 2.0 is not newer, installed anyway (forced)"
            .to_string()
    ));
    assert!(node.lines.contains(&"slot a: EFI/Linux/kios-3-a+1-2.efi renamed to kios-3-a+0-3.efi, so systemd-boot boots kios 2.0 on slot b next and slot a only after it".to_string()));
    let tail: Vec<&String> = node.events.iter().rev().take(5).collect();
    assert_eq!(
        tail,
        [
            "sync",
            "unmount /run/kios-update-esp",
            "fsync_dir /run/kios-update-esp/EFI/Linux",
            "rename kios-3-a+1-2.efi kios-3-a+0-3.efi",
            "fsync_dir /run/kios-update-esp/EFI/Linux",
        ]
    );
    assert_eq!(
        node.entries.keys().collect::<Vec<_>>(),
        ["kios-2.0-b+3.efi", "kios-3-a+0-3.efi"]
    );
}

#[test]
fn a_forced_newer_release_leaves_the_running_entry_alone() {
    let mut node = Fake::new();
    node.handover.as_mut().unwrap().flags = flags::FORCE;
    assert_eq!(node.run_from_a(), exit::UPDATED);
    assert!(node.entries.contains_key("kios-1.0-a+3.efi"));
    assert!(node.lines[0].ends_with("3 boot tries (forced)"));
}

/// Runs `node` from slot a and checks it refused with `line`, having
/// written nothing and unmounted what it mounted.
fn refuses(mut node: Fake, line: &str) {
    assert_eq!(node.run_from_a(), exit::REFUSED, "{:?}", node.lines);
    assert_eq!(node.last_line(), line);
    assert_eq!(node.writes(), Vec::<&String>::new(), "{line}");
    let mounted = node.events.iter().any(|event| event.starts_with("mount"));
    let unmounted = node.events.iter().any(|event| event.starts_with("unmount"));
    assert_eq!(mounted, unmounted, "{line}");
}

fn with_manifest(changes: &[&str]) -> Fake {
    let mut node = Fake::new();
    node.bundle("manifest", manifest(changes));
    node
}

#[test]
fn the_hand_over_is_checked_first() {
    let mut node = Fake::new();
    node.handover = Err(Errno::AGAIN);
    refuses(
        node,
        "refused: the client sent no bundle within 30 s of READY",
    );
    let mut node = Fake::new();
    node.handover = Err(Errno(104));
    refuses(
        node,
        "refused: receiving the bundle's directory failed: errno 104 (ECONNRESET)",
    );
    type Change = fn(&mut Handover);
    let cases: [(Change, &str); 5] = [
        (
            |h| (h.bytes, h.descriptors) = (0, 0),
            "refused: the client closed the connection without sending the bundle",
        ),
        (
            |h| h.descriptors = 2,
            "refused: the client sent 2 descriptors; the hand-over is exactly one, the bundle's directory",
        ),
        (
            |h| h.bytes = 2,
            "refused: the client sent 2 bytes with the descriptor; the hand-over is one flags byte",
        ),
        (
            |h| h.directory = false,
            "refused: the descriptor the client sent is not a directory (kiosctl update sends the bundle's)",
        ),
        (
            |h| h.flags = 0x82,
            "refused: unknown flags 0x82 from the client (this node knows FORCE, 0x01)",
        ),
    ];
    for (change, line) in cases {
        let mut node = Fake::new();
        change(node.handover.as_mut().unwrap());
        refuses(node, line);
    }
    let mut node = Fake::new();
    node.handover.as_mut().unwrap().truncated = true;
    refuses(node, "refused: the client sent more than 1 descriptors; the hand-over is exactly one, the bundle's directory");
}

#[test]
fn bad_arguments_are_refused_after_the_hand_over() {
    let mut node = Fake::new();
    assert_eq!(node.run(&["c", ESP, "kios-1.0-a+3.efi"]), exit::REFUSED);
    assert_eq!(
        node.last_line(),
        "refused: kios-update was started with bad arguments: the booted slot is not a or b"
    );
    assert_eq!(node.events, ["ready", "sync"]);
    assert_eq!(
        parse_args(&["a", "/dev/vda1", "kios-1-b+3.efi"]),
        Err("the booted entry is not the booted slot's")
    );
    assert_eq!(
        parse_args(&["a", "vda1", "kios-1-a+3.efi"]),
        Err("the ESP is not a device in /dev")
    );
    assert_eq!(
        parse_args(&["a", "/dev/../vda1", "kios-1-a+3.efi"]),
        Err("the ESP is not a device in /dev")
    );
    assert!(parse_args(&["a", "/dev/vda1"]).is_err());
    assert_eq!(
        parse_args(&["b", "/dev/nvme0n1p1", "kios-1-b+2-1.efi"]),
        Ok(Args {
            slot: Slot::B,
            esp: "/dev/nvme0n1p1",
            booted: "kios-1-b+2-1.efi"
        })
    );
}

#[test]
fn manifest_problems_are_refused_with_what_is_wrong() {
    let other_arch = if NODE_ARCH == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    let arch = format!("ARCH={other_arch}");
    refuses(
        with_manifest(&[&arch]),
        &format!("refused: the bundle is for {other_arch}, this node is {NODE_ARCH}"),
    );
    refuses(
        with_manifest(&["KIOS_UPDATE_FORMAT=2"]),
        "refused: manifest: the bundle's format is 2, this node reads format 1",
    );
    refuses(with_manifest(&["VERSION"]), "refused: manifest: no VERSION");
    refuses(
        with_manifest(&["BOOT_TRIES=12"]),
        "refused: manifest: BOOT_TRIES=12: expected 1 to 9",
    );
    refuses(
        with_manifest(&["a line"]),
        "refused: manifest: line 10 is not KEY=value",
    );
    let mut node = Fake::new();
    node.bundle("manifest", vec![b'#'; 4097]);
    refuses(
        node,
        "refused: manifest is 4097 bytes, at most 4096 are read",
    );
    let mut node = Fake::new();
    node.bundle.remove("manifest");
    refuses(
        node,
        "refused: opening manifest in the bundle failed: errno 2 (ENOENT)",
    );
    let mut node = Fake::new();
    node.bundle.get_mut("root.img").unwrap().0 = false;
    refuses(
        node,
        "refused: root.img in the bundle is not a regular file",
    );
}

#[test]
fn a_release_not_newer_is_refused_unless_forced() {
    refuses(
        with_manifest(&["VERSION=1.0"]),
        "refused: kios 1.0 is not newer than the running 1.0 (the same version); kiosctl update --force installs it again",
    );
    refuses(
        with_manifest(&["VERSION=1.0~rc1"]),
        "refused: kios 1.0~rc1 is not newer than the running 1.0 (it is older); kiosctl update --force installs it anyway",
    );
    let mut node = Fake::new();
    node.files.remove(OS_RELEASE);
    refuses(node, "refused: the running version is unknown (no IMAGE_VERSION in /usr/lib/os-release), so kios 2.0 cannot be known to be newer; kiosctl update --force installs it anyway");
}

#[test]
fn files_that_are_not_the_manifests_are_refused() {
    let mut node = Fake::new();
    node.bundle("root.img", root()[..1234].to_vec());
    refuses(
        node,
        "refused: root.img is 1234 bytes, the manifest says 3000 (truncated?)",
    );
    let mut node = Fake::new();
    let mut altered = root();
    altered[2999] ^= 1;
    let altered_sha = sha256_hex(&altered);
    node.bundle("root.img", altered);
    refuses(
        node,
        &format!(
            "refused: root.img's SHA-256 is {altered_sha}, the manifest says {} (corrupt or altered bundle)",
            sha256_hex(&root())
        ),
    );
}

#[test]
fn a_disk_that_cannot_take_the_release_is_refused() {
    refuses(
        with_manifest(&["ROOT_PARTUUID=02020202-0202-0202-0202-020202020202"]),
        "refused: partition 2 of /dev/vda already has the GUID 02020202-0202-0202-0202-020202020202: it holds this very root, and two partitions cannot (the release is on slot a already?)",
    );

    let mut node = Fake::new();
    let big = vec![0u8; 50 * 512 + 1];
    node.bundle("root.img", big.clone());
    node.bundle(
        "manifest",
        manifest(&[
            &format!("ROOT_SIZE={}", big.len()),
            &format!("ROOT_SHA256={}", sha256_hex(&big)),
        ]),
    );
    refuses(
        node,
        "refused: root.img is 25601 bytes, partition kios-root-b (/dev/vda3) holds 25600",
    );

    let mut node = Fake::new();
    node.disk = disk_image(512, 256, &{
        let mut specs = ab_specs(A_GUID, B_GUID);
        specs[2].name = "kios-root-c";
        specs
    });
    refuses(
        node,
        "refused: /dev/vda has no partition named kios-root-b (not an A/B disk?)",
    );

    let mut node = Fake::new();
    node.disk[512 + 40] ^= 1;
    refuses(
        node,
        "refused: /dev/vda: the GPT header's CRC does not match (primary copy)",
    );

    let mut node = Fake::new();
    node.file("/sys/class/block/vda1/partition", "2\n");
    refuses(node, "refused: /dev/vda1 is partition 2 of /dev/vda, which the GPT does not type as an EFI system partition");

    let mut node = Fake::new();
    node.links.clear();
    refuses(
        node,
        "refused: reading the link /sys/class/block/vda1 failed: errno 2 (ENOENT)",
    );

    let mut node = Fake::new();
    node.files.remove(&format!("{DISK_DIR}/vda3/partition"));
    refuses(node, "refused: partition 3 of /dev/vda has no device (no /sys/class/block/vda1/../*/partition holds its number)");
}

#[test]
fn an_esp_without_room_for_the_uki_is_refused() {
    let mut node = Fake::new();
    // The other slot's entry (8 bytes) is counted as removed.
    node.esp_free = uki().len() as u64 - 9;
    refuses(node, "refused: kios.efi is 100 bytes, the EFI system partition /dev/vda1 has 99 free (slot b's entries counted as removed)");
    let mut node = Fake::new();
    node.esp_free = uki().len() as u64 - 8;
    assert_eq!(node.run_from_a(), exit::UPDATED);
    let mut node = Fake::new();
    node.fail = Some(("mount".into(), Errno(16)));
    refuses(node, "refused: mounting the EFI system partition /dev/vda1 on /run/kios-update-esp failed: errno 16 (EBUSY)");
}

/// Runs `node` from slot a and checks it failed with `line`, unmounted.
fn fails(mut node: Fake, line: &str) -> Fake {
    assert_eq!(node.run_from_a(), exit::FAILED, "{:?}", node.lines);
    assert_eq!(node.last_line(), line);
    assert!(node.events.iter().any(|event| event.starts_with("unmount")));
    assert!(
        !node.entries.keys().any(|name| name.contains("-b")),
        "{:?}",
        node.entries
    );
    node
}

#[test]
fn a_failure_after_the_first_write_says_the_slot_is_not_bootable() {
    let failing = |event: &str| {
        let mut node = Fake::new();
        node.fail = Some((event.into(), Errno::IO));
        node
    };
    // Nothing is removed yet: nothing was written.
    refuses(
        failing("unlink"),
        "refused: removing /run/kios-update-esp/EFI/Linux/kios-0.9-b+0-3.efi failed: errno 5 (EIO)",
    );
    let mut node = fails(
        failing("write /dev/vda3"),
        "failed: writing root.img to /dev/vda3: errno 5 (EIO); slot b is not bootable, the node stays on slot a",
    );
    assert_eq!(
        node.gpt().find_by_name("kios-root-b").unwrap().unique_guid,
        Guid(B_GUID)
    );
    fails(
        failing("fsync /dev/vda3"),
        "failed: syncing /dev/vda3: errno 5 (EIO); slot b is not bootable, the node stays on slot a",
    );
    fails(
        failing("read /dev/vda3"),
        "failed: reading back /dev/vda3: errno 5 (EIO); slot b is not bootable, the node stays on slot a",
    );
    fails(
        failing("write /dev/vda"),
        "failed: writing the backup GPT of /dev/vda: errno 5 (EIO); slot b is not bootable, the node stays on slot a",
    );
    fails(
        failing("fsync /dev/vda"),
        "failed: syncing /dev/vda: errno 5 (EIO); slot b is not bootable, the node stays on slot a",
    );
    fails(
        failing("write kios-update.tmp"),
        "failed: writing kios.efi to /run/kios-update-esp/EFI/Linux/kios-update.tmp: errno 5 (EIO); slot b is not bootable, the node stays on slot a",
    );
    fails(
        failing("rename"),
        "failed: renaming /run/kios-update-esp/EFI/Linux/kios-update.tmp to kios-2.0-b+3.efi: errno 5 (EIO); slot b is not bootable, the node stays on slot a",
    );
    fails(
        failing("fsync_dir"),
        "failed: syncing /run/kios-update-esp/EFI/Linux: errno 5 (EIO); slot b is not bootable, the node stays on slot a",
    );
}

#[test]
fn a_root_that_reads_back_wrong_fails_before_the_guid_is_set() {
    let mut node = Fake::new();
    node.corrupt_writes = true;
    let node = {
        assert_eq!(node.run_from_a(), exit::FAILED);
        node
    };
    assert!(node
        .last_line()
        .starts_with("failed: verifying /dev/vda3: it reads back with SHA-256 "));
    assert!(node
        .last_line()
        .ends_with("; slot b is not bootable, the node stays on slot a"));
    assert!(!node.events.iter().any(|event| event == "write /dev/vda"));
    assert!(!node.entries.contains_key("kios-2.0-b+3.efi"));
}

#[test]
fn a_failed_rename_of_the_running_entry_keeps_the_node_on_it() {
    let mut node = Fake::new();
    node.file(OS_RELEASE, "IMAGE_VERSION=3\n");
    node.handover.as_mut().unwrap().flags = flags::FORCE;
    node.fail = Some(("rename kios-1.0-a+3.efi".into(), Errno::IO));
    assert_eq!(node.run_from_a(), exit::FAILED);
    assert_eq!(
        node.last_line(),
        "failed: renaming EFI/Linux/kios-1.0-a+3.efi to kios-1.0-a+0-3.efi: errno 5 (EIO); slot b holds kios 2.0 but systemd-boot still boots slot a first, the node stays on slot a"
    );
}
