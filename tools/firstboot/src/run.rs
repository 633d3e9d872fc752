//! The first-boot flow over the few calls it needs ([`Node`]): the
//! machine ID, the EFI system partition's configuration (first boot
//! only), the derived node name. Every outcome is one log line.

use kios_abi::image::{
    firstboot_exit, ESP_CONFIG_DIR, ESP_PARTITION_NAME, FIRSTBOOT_DONE, FIRSTBOOT_ESP_MOUNT,
    FIRSTBOOT_MODULE_LIST, FIRSTBOOT_RAN, HOSTNAME_FILE, MACHINE_ID,
};

use crate::identity::{self, MachineId, Source};
use crate::policy::{self, Refusal, MAX_FILES, MAX_FILE_BYTES};
use crate::text::{Text, TextExt};
use crate::Errno;

/// A log line's level, as kmsg has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
}

/// How much of a file a read got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub len: usize,
    /// The file had more than the buffer held.
    pub truncated: bool,
}

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Other,
}

/// The most entries one directory listing keeps.
pub const MAX_ENTRIES: usize = 80;
/// The longest entry name kept (FAT's long names go to 255 bytes).
pub const NAME_MAX: usize = 128;

/// A directory's entries, sorted by [`Names::sort`].
pub struct Names {
    entries: [(Text<NAME_MAX>, Kind); MAX_ENTRIES],
    count: usize,
    /// Entries past [`MAX_ENTRIES`] (or with longer names) were dropped.
    pub overflowed: bool,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            entries: core::array::from_fn(|_| (Text::new(), Kind::Other)),
            count: 0,
            overflowed: false,
        }
    }
}

impl Names {
    /// Adds an entry; `.` and `..` are left out.
    pub fn push(&mut self, name: &[u8], kind: Kind) {
        if name == b"." || name == b".." {
            return;
        }
        if self.count == MAX_ENTRIES {
            self.overflowed = true;
            return;
        }
        let entry = &mut self.entries[self.count];
        entry.0.clear();
        entry.0.push_shown(name);
        if entry.0.overflowed() {
            self.overflowed = true;
            return;
        }
        entry.1 = kind;
        self.count += 1;
    }

    pub fn sort(&mut self) {
        self.entries[..self.count].sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Kind)> {
        self.entries[..self.count]
            .iter()
            .map(|(name, kind)| (name.as_str(), *kind))
    }
}

/// The calls the first boot makes; the binary makes them with syscalls,
/// tests with an in-memory node.
pub trait Node {
    /// Reads `path` into `buf` from its start.
    fn read(&mut self, path: &str, buf: &mut [u8]) -> Result<Read, Errno>;
    /// Replaces `path` with `contents` (a new file renamed over it), mode `mode`.
    fn write(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), Errno>;
    fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), Errno>;
    /// Makes `link` a symlink to `target`, replacing what was there.
    fn symlink(&mut self, target: &str, link: &str) -> Result<(), Errno>;
    /// Whether anything is at `path` (not following a final symlink).
    fn exists(&mut self, path: &str) -> bool;
    fn list(&mut self, dir: &str, names: &mut Names) -> Result<(), Errno>;
    /// Mounts `device` as vfat on `target`: read-only, nodev, nosuid, noexec.
    fn mount_esp(&mut self, device: &str, target: &str) -> Result<(), Errno>;
    fn unmount(&mut self, target: &str) -> Result<(), Errno>;
    fn load_module(&mut self, path: &str) -> Result<(), Errno>;
    /// 16 random bytes; Ok(false) when the kernel's generator was not yet
    /// fully seeded and the bytes came anyway.
    fn random(&mut self, bytes: &mut [u8; 16]) -> Result<bool, Errno>;
    /// Flushes every write to the disk.
    fn sync(&mut self);
    fn log(&mut self, level: Level, line: &str);
}

type Line = Text<512>;
type PathText = Text<384>;

/// Runs the first-boot step; the exit code ([`firstboot_exit`]).
pub fn first_boot<N: Node>(node: &mut N) -> i32 {
    let mut run = Run {
        node,
        incomplete: false,
    };
    let id = run.machine_id();
    run.esp_configuration();
    let mut cmdline = [0u8; 4096];
    let cmdline = match run.node.read("/proc/cmdline", &mut cmdline) {
        Ok(read) => &cmdline[..read.len],
        Err(_) => &[],
    };
    run.hostname(cmdline, id);
    // Last: the init boots on once this exists.
    if let Err(errno) = run.node.write(FIRSTBOOT_RAN, b"", 0o444) {
        let mut line = Line::new();
        line.push("writing ")
            .push(FIRSTBOOT_RAN)
            .push(" failed: ")
            .push_errno(errno)
            .push("; the init waits for this step's exit instead");
        run.log(Level::Err, &line);
        run.incomplete = true;
    }
    if run.incomplete {
        firstboot_exit::INCOMPLETE
    } else {
        firstboot_exit::DONE
    }
}

struct Run<'n, N: Node> {
    node: &'n mut N,
    incomplete: bool,
}

/// What a pass over the configuration did.
struct Tally {
    taken: u64,
    refused: u64,
    /// Files looked at, taken or not: at most [`MAX_FILES`].
    seen: usize,
    targets: [Text<192>; MAX_FILES],
    target_count: usize,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            taken: 0,
            refused: 0,
            seen: 0,
            targets: core::array::from_fn(|_| Text::new()),
            target_count: 0,
        }
    }
}

impl<N: Node> Run<'_, N> {
    fn log(&mut self, level: Level, line: &Line) {
        self.node.log(level, line.as_str());
    }

    /// `/etc/machine-id`, kept when valid, else made from the machine's
    /// identity or at random and written once.
    fn machine_id(&mut self) -> Option<MachineId> {
        let mut buf = [0u8; 64];
        let mut line = Line::new();
        match self.node.read(MACHINE_ID, &mut buf) {
            Ok(read) => match MachineId::parse(&buf[..read.len]) {
                Some(id) if !read.truncated => {
                    line.push("machine-id ")
                        .push(id.as_str())
                        .push(" ")
                        .push(Source::Kept.describe());
                    self.log(Level::Info, &line);
                    return Some(id);
                }
                _ => {
                    line.push(MACHINE_ID)
                        .push(": not 32 lowercase hex digits, making a new one");
                    self.log(Level::Warning, &line);
                    line.clear();
                }
            },
            Err(Errno::NOENT) => {}
            Err(errno) => {
                line.push(MACHINE_ID)
                    .push(": unreadable (")
                    .push_errno(errno)
                    .push("), making a new one");
                self.log(Level::Warning, &line);
                line.clear();
            }
        }
        let (id, source) = self.derive_machine_id()?;
        match self.node.write(MACHINE_ID, &id.file_contents(), 0o444) {
            Ok(()) => {
                line.push("machine-id ")
                    .push(id.as_str())
                    .push(" created ")
                    .push(source.describe())
                    .push(", in ")
                    .push(MACHINE_ID);
                self.log(Level::Notice, &line);
            }
            Err(errno) => {
                line.push("writing ")
                    .push(MACHINE_ID)
                    .push(" failed: ")
                    .push_errno(errno)
                    .push("; the node has no machine ID this boot");
                self.log(Level::Err, &line);
                self.incomplete = true;
            }
        }
        Some(id)
    }

    fn derive_machine_id(&mut self) -> Option<(MachineId, Source)> {
        let mut buf = [0u8; 256];
        if let Ok(read) = self.node.read(identity::PRODUCT_UUID, &mut buf) {
            if let Some(id) = MachineId::from_product_uuid(&buf[..read.len]) {
                return Some((id, Source::ProductUuid));
            }
        }
        if let Ok(read) = self.node.read(identity::SERIAL_NUMBER, &mut buf) {
            if let Some(id) = MachineId::from_serial_number(&buf[..read.len]) {
                return Some((id, Source::SerialNumber));
            }
        }
        let mut bytes = [0u8; 16];
        match self.node.random(&mut bytes) {
            Ok(seeded) => Some((
                MachineId::from_random(bytes),
                if seeded {
                    Source::Random
                } else {
                    Source::RandomUnseeded
                },
            )),
            Err(errno) => {
                let mut line = Line::new();
                line.push("no machine identity and no random numbers (")
                    .push_errno(errno)
                    .push("): no ")
                    .push(MACHINE_ID)
                    .push(" this boot");
                self.log(Level::Err, &line);
                self.incomplete = true;
                None
            }
        }
    }

    /// On the first boot: every file under the ESP's `kios/config/`
    /// taken or refused, then the marker.
    fn esp_configuration(&mut self) {
        let mut line = Line::new();
        if self.node.exists(FIRSTBOOT_DONE) {
            line.push("first-boot configuration: taken on an earlier boot (")
                .push(FIRSTBOOT_DONE)
                .push("), the EFI system partition is not read again");
            self.log(Level::Info, &line);
            return;
        }
        self.load_modules();
        let Some(device) = self.find_esp() else {
            line.push("first-boot configuration: no partition named ")
                .push(ESP_PARTITION_NAME)
                .push(", nothing to take");
            self.log(Level::Info, &line);
            self.mark_done(&Tally::default());
            return;
        };
        let _ = self.node.mkdir(FIRSTBOOT_ESP_MOUNT, 0o700);
        if let Err(errno) = self.node.mount_esp(device.as_str(), FIRSTBOOT_ESP_MOUNT) {
            line.push("first-boot configuration: mounting ")
                .push(device.as_str())
                .push(" (vfat, read-only) failed: ")
                .push_errno(errno)
                .push("; nothing taken, tried again next boot");
            self.log(Level::Warning, &line);
            self.incomplete = true;
            return;
        }
        let mut tally = Tally::default();
        let mut root = PathText::new();
        root.push(FIRSTBOOT_ESP_MOUNT)
            .push("/")
            .push(ESP_CONFIG_DIR);
        let mut buf = [0u8; MAX_FILE_BYTES + 1];
        let mut relative = PathText::new();
        let found = self.node.exists(root.as_str());
        if found {
            self.walk(&root, &mut relative, 0, &mut buf, &mut tally);
        }
        if let Err(errno) = self.node.unmount(FIRSTBOOT_ESP_MOUNT) {
            line.push("unmounting ")
                .push(FIRSTBOOT_ESP_MOUNT)
                .push(" failed: ")
                .push_errno(errno);
            self.log(Level::Warning, &line);
            line.clear();
        }
        line.push("first-boot configuration from ")
            .push(device.as_str())
            .push(" /")
            .push(ESP_CONFIG_DIR);
        if found {
            line.push(": ")
                .push_u64(tally.taken)
                .push(" file(s) taken, ")
                .push_u64(tally.refused)
                .push(" refused");
        } else {
            line.push(": not there, nothing to take");
        }
        line.push("; later boots skip it (")
            .push(FIRSTBOOT_DONE)
            .push(")");
        self.log(Level::Notice, &line);
        self.mark_done(&tally);
    }

    /// The first-boot modules (vfat and its code pages) where the kernel
    /// has them as modules; absent list: built in.
    fn load_modules(&mut self) {
        let mut buf = [0u8; 4096];
        let Ok(read) = self.node.read(FIRSTBOOT_MODULE_LIST, &mut buf) else {
            return;
        };
        let list = &buf[..read.len];
        for entry in list.split(|&b| b == b'\n') {
            let entry = entry.trim_ascii();
            if entry.is_empty() || entry.starts_with(b"#") {
                continue;
            }
            let Ok(path) = core::str::from_utf8(entry) else {
                continue;
            };
            match self.node.load_module(path) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => {
                    let mut line = Line::new();
                    line.push("loading module ")
                        .push(path)
                        .push(" failed: ")
                        .push_errno(errno);
                    self.log(Level::Warning, &line);
                }
            }
        }
    }

    /// `/dev/<name>` of the first partition (by device name) whose GPT
    /// name is [`ESP_PARTITION_NAME`].
    fn find_esp(&mut self) -> Option<Text<64>> {
        let mut names = Names::default();
        self.node.list("/sys/class/block", &mut names).ok()?;
        names.sort();
        let mut path = PathText::new();
        let mut buf = [0u8; 1024];
        for (name, _) in names.iter() {
            path.clear();
            path.push("/sys/class/block/").push(name).push("/uevent");
            let Ok(read) = self.node.read(path.as_str(), &mut buf) else {
                continue;
            };
            let uevent = parse_uevent(&buf[..read.len]);
            if uevent.partname == Some(ESP_PARTITION_NAME.as_bytes()) {
                let devname = uevent.devname?;
                let mut device = Text::new();
                device.push("/dev/").push_shown(devname);
                return (!device.overflowed()).then_some(device);
            }
        }
        None
    }

    /// Takes or refuses everything under `root/relative`.
    fn walk(
        &mut self,
        root: &PathText,
        relative: &mut PathText,
        depth: u32,
        buf: &mut [u8; MAX_FILE_BYTES + 1],
        tally: &mut Tally,
    ) {
        let mut dir = PathText::new();
        dir.push(root.as_str());
        if !relative.is_empty() {
            dir.push("/").push(relative.as_str());
        }
        let mut names = Names::default();
        if let Err(errno) = self.node.list(dir.as_str(), &mut names) {
            let mut line = Line::new();
            line.push("listing ")
                .push(dir.as_str())
                .push(" failed: ")
                .push_errno(errno)
                .push("; nothing in it taken");
            self.log(Level::Warning, &line);
            return;
        }
        names.sort();
        let parent_len = relative.len();
        for (name, kind) in names.iter() {
            if tally.seen == MAX_FILES {
                let mut line = Line::new();
                line.push("first-boot configuration: more than ")
                    .push_u64(MAX_FILES as u64)
                    .push(" files; the rest is not read");
                self.log(Level::Warning, &line);
                tally.seen += 1;
                return;
            }
            if tally.seen > MAX_FILES {
                return;
            }
            relative.truncate(parent_len);
            if parent_len > 0 {
                relative.push("/");
            }
            relative.push(name);
            match kind {
                Kind::Dir if policy::known_dir(relative.as_str()) && depth < 3 => {
                    self.walk(root, relative, depth + 1, buf, tally);
                }
                Kind::Dir => {
                    tally.seen += 1;
                    tally.refused += 1;
                    let mut line = Line::new();
                    line.push("refused ")
                        .push(relative.as_str())
                        .push("/: not a directory kiOS takes; nothing in it taken");
                    self.log(Level::Warning, &line);
                }
                Kind::File | Kind::Other => {
                    tally.seen += 1;
                    self.take(root, relative, kind, buf, tally);
                }
            }
        }
        relative.truncate(parent_len);
        if names.overflowed {
            let mut line = Line::new();
            line.push("first-boot configuration: ")
                .push(dir.as_str())
                .push(" has more or longer names than read; those are not taken");
            self.log(Level::Warning, &line);
        }
    }

    /// One file: placed, read, checked, written; one line either way.
    fn take(
        &mut self,
        root: &PathText,
        relative: &PathText,
        kind: Kind,
        buf: &mut [u8; MAX_FILE_BYTES + 1],
        tally: &mut Tally,
    ) {
        let source = relative.as_str();
        let mut line = Line::new();
        let placement = match policy::place(source) {
            Ok(placement) if kind == Kind::File => placement,
            _ => {
                tally.refused += 1;
                line.push("refused ")
                    .push(source)
                    .push(": not a file kiOS takes (see docs/configuration.md); ignored");
                self.log(Level::Warning, &line);
                return;
            }
        };
        let mut target = PathText::new();
        placement.target(&mut target);
        let mut path = PathText::new();
        path.push(root.as_str()).push("/").push(source);
        let (len, refusal) = match self.node.read(path.as_str(), buf) {
            Ok(read) if read.truncated || read.len > MAX_FILE_BYTES => (0, Some(Refusal::TooLarge)),
            Ok(read) => (
                read.len,
                policy::validate(placement.check, &buf[..read.len]).err(),
            ),
            Err(errno) => {
                tally.refused += 1;
                line.push("refused ")
                    .push(source)
                    .push(": unreadable (")
                    .push_errno(errno)
                    .push("); ")
                    .push(placement.instead);
                self.log(Level::Warning, &line);
                return;
            }
        };
        let duplicate = tally.targets[..tally.target_count]
            .iter()
            .any(|taken| taken.as_str() == target.as_str());
        if let Some(refusal) = refusal {
            tally.refused += 1;
            line.push("refused ").push(source).push(": ");
            match refusal {
                Refusal::TooLarge => {
                    line.push("larger than ")
                        .push_u64(MAX_FILE_BYTES as u64)
                        .push(" bytes");
                }
                Refusal::Invalid(reason) => {
                    line.push(reason);
                }
                Refusal::Unknown => {
                    line.push("not a file kiOS takes");
                }
            }
            line.push("; ").push(placement.instead);
            self.log(Level::Warning, &line);
            return;
        }
        if duplicate {
            tally.refused += 1;
            line.push("refused ")
                .push(source)
                .push(": ")
                .push(target.as_str())
                .push(" was already taken from another file (kiOS's and kubeadm's names for one file); the first is kept");
            self.log(Level::Warning, &line);
            return;
        }
        let written = self.make_parents(target.as_str()).and_then(|()| {
            self.node
                .write(target.as_str(), &buf[..len], placement.mode)
        });
        if let Err(errno) = written {
            tally.refused += 1;
            self.incomplete = true;
            line.push("refused ")
                .push(source)
                .push(": writing ")
                .push(target.as_str())
                .push(" failed: ")
                .push_errno(errno)
                .push("; ")
                .push(placement.instead);
            self.log(Level::Err, &line);
            return;
        }
        tally.taken += 1;
        if tally.target_count < MAX_FILES {
            tally.targets[tally.target_count].clear();
            tally.targets[tally.target_count].push(target.as_str());
            tally.target_count += 1;
        }
        line.push("took ")
            .push(source)
            .push(" as ")
            .push(target.as_str());
        if let Some(alias) = placement.alias {
            match self.node.symlink(placement.name, alias) {
                Ok(()) => {
                    line.push(" (").push(alias).push(" links to it)");
                }
                Err(errno) => {
                    line.push(" (linking ")
                        .push(alias)
                        .push(" failed: ")
                        .push_errno(errno)
                        .push(")");
                }
            }
        }
        self.log(Level::Notice, &line);
    }

    /// Makes each missing directory above `path` below /etc.
    fn make_parents(&mut self, path: &str) -> Result<(), Errno> {
        let bytes = path.as_bytes();
        for (at, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'/') {
            if at <= "/etc".len() {
                continue;
            }
            match self.node.mkdir(&path[..at], 0o755) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => return Err(errno),
            }
        }
        Ok(())
    }

    fn mark_done(&mut self, tally: &Tally) {
        // What was taken reaches the disk before the marker says so.
        self.node.sync();
        let mut contents = Text::<96>::new();
        contents
            .push("taken ")
            .push_u64(tally.taken)
            .push(", refused ")
            .push_u64(tally.refused)
            .push_newline();
        let written = self.make_parents(FIRSTBOOT_DONE).and_then(|()| {
            self.node
                .write(FIRSTBOOT_DONE, contents.as_str().as_bytes(), 0o644)
        });
        if let Err(errno) = written {
            let mut line = Line::new();
            line.push("writing ")
                .push(FIRSTBOOT_DONE)
                .push(" failed: ")
                .push_errno(errno)
                .push("; the next boot reads the EFI system partition again");
            self.log(Level::Err, &line);
            self.incomplete = true;
        }
        self.node.sync();
    }

    /// With no hostname configured (no `kios.hostname=`, no non-empty
    /// `/etc/hostname`), writes the one derived from the machine ID.
    fn hostname(&mut self, cmdline: &[u8], id: Option<MachineId>) {
        if identity::cmdline_names_hostname(cmdline) {
            return;
        }
        let mut buf = [0u8; 256];
        match self.node.read(HOSTNAME_FILE, &mut buf) {
            Ok(read) if !buf[..read.len].trim_ascii().is_empty() => return,
            Ok(_) | Err(Errno::NOENT) => {}
            Err(errno) => {
                let mut line = Line::new();
                line.push(HOSTNAME_FILE)
                    .push(": unreadable (")
                    .push_errno(errno)
                    .push("), no node name written");
                self.log(Level::Warning, &line);
                return;
            }
        }
        let Some(id) = id else {
            return;
        };
        let name = id.node_name();
        let mut contents = Text::<32>::new();
        contents.push(name.as_str()).push_newline();
        let mut line = Line::new();
        match self
            .node
            .write(HOSTNAME_FILE, contents.as_str().as_bytes(), 0o644)
        {
            Ok(()) => {
                line.push("hostname ")
                    .push(name.as_str())
                    .push(" derived from the machine-id, in ")
                    .push(HOSTNAME_FILE);
                self.log(Level::Notice, &line);
            }
            Err(errno) => {
                line.push("writing ")
                    .push(HOSTNAME_FILE)
                    .push(" failed: ")
                    .push_errno(errno);
                self.log(Level::Err, &line);
                self.incomplete = true;
            }
        }
    }
}

/// The fields of a block device's `uevent` the search needs.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Uevent<'a> {
    pub devname: Option<&'a [u8]>,
    pub partname: Option<&'a [u8]>,
}

/// `DEVNAME=vda1` and `PARTNAME=esp` from a sysfs `uevent` file.
pub fn parse_uevent(text: &[u8]) -> Uevent<'_> {
    let mut uevent = Uevent::default();
    for line in text.split(|&b| b == b'\n') {
        if let Some(value) = line.strip_prefix(b"DEVNAME=") {
            uevent.devname = Some(value);
        } else if let Some(value) = line.strip_prefix(b"PARTNAME=") {
            uevent.partname = Some(value);
        }
    }
    uevent
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
