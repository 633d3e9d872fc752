//! Boot counting on a disk's A/B slots (docs/design.md, "Boot slots and
//! boot counting"). After the kubelet starts the init reads which entry
//! systemd-boot booted, from its `LoaderBootCountPath` EFI variable (the
//! slot is the entry's: the slots' images are the same bytes, so their
//! command line cannot say), and the slots' entries off the EFI system
//! partition (ESP); `BootGood`,
//! sent by the `kios-boot-check` static pod, gives the booted entry its
//! tries back; a boot not good by `kios.boot_deadline=` reboots, so the
//! boot manager takes another try or boots the other slot.

use super::Init;
use crate::errno::Errno;
use crate::log;
use crate::log::Level;
use crate::storage::boot_entries::{booted_entry, good_name, EntryName};
use crate::sys::{MountOp, PowerAction, Sys, Unmount};
use crate::text::decimal;
use kios_abi::boot_slots::{BootEntry, Slot, ESP_MOUNT};
use linux_raw_sys::general::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};

/// `kios_abi::boot_slots::ENTRIES_DIR` on the mounted ESP (a test checks
/// they agree; log lines spell `EFI/Linux/` out, as a format string
/// cannot take a constant).
const ENTRIES_PATH: &str = "/run/kios-esp/EFI/Linux";
/// Where efivarfs goes for the read of the variable (sysfs has the
/// directory on an EFI boot only).
const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// systemd-boot's `LoaderBootCountPath` (its vendor GUID) on efivarfs: the
/// booted entry's ESP path, set for an entry with a counter only.
const BOOT_COUNT_PATH: &str =
    "/sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// Room for the variable: its attributes and, in UTF-16, a path to an
/// entry of FAT's longest name, with room to spare.
const VARIABLE_MAX: usize = 1024;
/// How long giving the tries back may take: a hung disk blocks the
/// mount, the rename or the sync in the kernel, in a child, not PID 1.
const MARK_GOOD_TIMEOUT_MS: u64 = 10_000;
/// Nothing on the ESP runs or is a device.
const ESP_FLAGS: u32 = MS_NOSUID | MS_NODEV | MS_NOEXEC;
/// The other slot's given-up entries logged at boot (a disk has one
/// entry per slot; more are not logged).
const GIVEN_UP_MAX: usize = 4;

/// What the init knows of the slot it booted from.
pub(super) struct BootSlot {
    pub(super) slot: Slot,
    /// The booted entry (`LoaderBootCountPath`), as named at boot, once
    /// found on the ESP.
    pub(super) entry: Option<EntryName>,
    /// The entry's tries left, as named at boot.
    tries_left: u32,
    /// The other slot has an entry the boot manager still tries.
    other_bootable: bool,
    /// `BootGood` was obeyed: later ones are ignored.
    good: bool,
    /// When the boot must be good by (the timeline's clock). None once
    /// good or past, and without a counted entry of its own.
    deadline_us: Option<u64>,
}

/// A step that failed, what it was done on, and the errno.
type Failure<'a> = (&'static str, &'a str, Errno);

impl<S: Sys> Init<S> {
    /// Reads the booted entry off `LoaderBootCountPath`, then the slots'
    /// entries off the ESP, mounted read-only for the listing only: logs
    /// the booted entry and each of the other slot's given-up ones.
    /// Nothing without the variable (no systemd-boot, or no counter).
    pub(super) fn read_boot_slot(&mut self, pid1_us: u64) {
        let Some(booted) = self.read_booted_entry() else {
            return;
        };
        // `booted_entry` checked it parses.
        let Some(BootEntry {
            slot, tries_left, ..
        }) = BootEntry::parse(&booted)
        else {
            return;
        };
        let mut state = BootSlot {
            slot,
            entry: None,
            tries_left: 0,
            other_bootable: false,
            good: false,
            deadline_us: None,
        };
        let mut given_up = heapless::Vec::<EntryName, GIVEN_UP_MAX>::new();
        if self.esp.is_some() {
            self.mkdir(ESP_MOUNT, 0o700);
        }
        let listed = match &self.esp {
            None => Err((
                "finding",
                "the EFI system partition beside the data partition",
                Errno::NOENT,
            )),
            Some(esp) => list_entries(
                &mut self.sys,
                esp,
                &booted,
                slot,
                &mut state.other_bootable,
                &mut given_up,
            ),
        };
        let letter = slot.letter();
        match listed {
            Err((step, on, errno)) => log!(
                &mut self.sys,
                Level::Warning,
                "booted slot {}: {} {} failed: {}; boot counting off, the node stays on this slot",
                letter,
                step,
                on,
                errno
            ),
            Ok(()) => {
                let mut digits = [0; 10];
                let tries_left = match tries_left {
                    Some(left) => {
                        state.tries_left = left;
                        state.deadline_us = Some(pid1_us + self.options.boot_deadline_ms * 1000);
                        decimal(left, &mut digits)
                    }
                    None => "not counted, always good",
                };
                log!(
                    &mut self.sys,
                    Level::Notice,
                    "booted slot {}: EFI/Linux/{} (tries left: {})",
                    letter,
                    booted.as_str(),
                    tries_left
                );
                state.entry = Some(booted);
            }
        }
        for name in &given_up {
            let failed = BootEntry::parse(name)
                .and_then(|entry| entry.tries_done)
                .unwrap_or(0);
            log!(
                &mut self.sys,
                Level::Warning,
                "slot {} (EFI/Linux/{}) failed {} boots in a row and was given up; running slot {}",
                slot.other().letter(),
                name.as_str(),
                failed,
                letter
            );
        }
        self.boot_slot = Some(state);
    }

    /// The entry `LoaderBootCountPath` names, on efivarfs mounted for the
    /// read (unless mounted already). None without the variable, silently;
    /// with one line when it cannot be read or names no entry.
    fn read_booted_entry(&mut self) -> Option<EntryName> {
        let mounted = match self.sys.mount(&MountOp::Fs {
            source: "efivarfs",
            target: EFIVARS,
            fstype: "efivarfs",
            flags: MS_RDONLY | ESP_FLAGS,
            data: "",
        }) {
            Ok(()) => true,
            // Not an EFI boot (no such directory), or mounted already.
            Err(Errno::NOENT | Errno::BUSY) => false,
            Err(errno) => {
                return boot_count_path_failed(
                    &mut self.sys,
                    ("mounting efivarfs on", EFIVARS, errno),
                )
            }
        };
        let mut variable = [0; VARIABLE_MAX];
        let read = self.sys.read_file(BOOT_COUNT_PATH, &mut variable);
        if mounted {
            let _ = self.sys.unmount(EFIVARS, Unmount::Detach);
        }
        let errno = match read {
            Err(Errno::NOENT) => return None,
            Err(errno) => {
                return boot_count_path_failed(&mut self.sys, ("reading", BOOT_COUNT_PATH, errno))
            }
            Ok(read) if read.truncated => Errno::FBIG,
            Ok(read) => match booted_entry(&variable[..read.len]) {
                Some(name) => return Some(name),
                None => Errno::INVAL,
            },
        };
        boot_count_path_failed(&mut self.sys, ("decoding", BOOT_COUNT_PATH, errno))
    }

    /// `BootGood`: renames the booted entry to its good name on the ESP,
    /// mounted read-write for that only, in a bounded child. Once per boot.
    pub(super) fn boot_good(&mut self) {
        let state = match &mut self.boot_slot {
            Some(state) if !state.good => state,
            unusable => {
                let why = match unusable {
                    None => "not booted from a counted slot entry, nothing to mark",
                    Some(_) => "reported already, ignored",
                };
                return log!(&mut self.sys, Level::Notice, "boot good: {}", why);
            }
        };
        state.good = true;
        state.deadline_us = None;
        let slot = state.slot.letter();
        let good = state
            .entry
            .as_deref()
            .and_then(BootEntry::parse)
            .map(|entry| good_name(&entry));
        let (Some(esp), Some(entry), Some(good)) = (&self.esp, &state.entry, good) else {
            return boot_good_unmarked(&mut self.sys, slot, "no entry of it to mark");
        };
        if good == *entry {
            return boot_good_unmarked(&mut self.sys, slot, "its entry is good already");
        }
        let result = self.sys.run_bounded(MARK_GOOD_TIMEOUT_MS, &mut |sys| {
            mark_good(sys, slot, esp, entry, &good)
        });
        if let Err(errno) = result {
            let step = ("renaming its entry", "in a child", errno);
            boot_good_failed(&mut self.sys, slot, step, entry);
        }
    }

    /// When the event loop must wake up for the boot deadline.
    pub(super) fn boot_deadline_us(&self) -> Option<u64> {
        if self.shutdown.is_some() {
            return None;
        }
        self.boot_slot.as_ref()?.deadline_us
    }

    /// Past the deadline a boot that was never good reboots, so the boot
    /// manager takes another try or moves to the other slot; with no entry
    /// of the other slot left to try, the node stays up on this one.
    pub(super) fn check_boot_deadline(&mut self) {
        let Some(at) = self.boot_deadline_us() else {
            return;
        };
        if self.sys.now_us() < at {
            return;
        }
        let Some(state) = &mut self.boot_slot else {
            return;
        };
        state.deadline_us = None;
        let (slot, other) = (state.slot.letter(), state.slot.other().letter());
        let seconds = self.options.boot_deadline_ms / 1000;
        if !state.other_bootable {
            return log!(
                &mut self.sys,
                Level::Err,
                "slot {} not good within {} s (kios-boot-check never reported); no entry of slot {} to try, staying up",
                slot,
                seconds,
                other
            );
        }
        let left = state.tries_left;
        log!(
            &mut self.sys,
            Level::Warning,
            "slot {} not good within {} s (kios-boot-check never reported); rebooting: {} {} left before slot {}",
            slot,
            seconds,
            left,
            if left == 1 { "try" } else { "tries" },
            other
        );
        self.request_shutdown(PowerAction::Reboot, "the boot deadline");
    }
}

/// Mounts the ESP (read-only) and lists its entries: whether the booted
/// one is there; whether the other slot has one still tried; the other
/// slot's given-up ones.
fn list_entries<'a, S: Sys>(
    sys: &mut S,
    esp: &'a str,
    booted: &str,
    slot: Slot,
    other_bootable: &mut bool,
    given_up: &mut heapless::Vec<EntryName, GIVEN_UP_MAX>,
) -> Result<(), Failure<'a>> {
    sys.mount(&esp_mount(esp, MS_RDONLY))
        .map_err(|errno| ("mounting", esp, errno))?;
    let mut found = false;
    let listed = sys.list_dir(ENTRIES_PATH, &mut |name| {
        let (Some(entry), Ok(stored)) = (BootEntry::parse(name), EntryName::try_from(name)) else {
            return;
        };
        found |= name == booted;
        if entry.slot == slot {
            // The booted entry, or another of its slot: nothing more.
            return;
        }
        if entry.is_bootable() {
            *other_bootable = true;
        } else {
            let _ = given_up.push(stored);
        }
    });
    unmount_esp(sys);
    listed.map_err(|errno| ("listing EFI/Linux on", esp, errno))?;
    found
        .then_some(())
        .ok_or(("finding its entry in EFI/Linux on", esp, Errno::NOENT))
}

/// `LoaderBootCountPath` unusable: one line, and no boot counting.
fn boot_count_path_failed<S: Sys>(
    sys: &mut S,
    (step, on, errno): Failure<'_>,
) -> Option<EntryName> {
    log!(
        sys,
        Level::Warning,
        "boot slot: {} {} failed: {}; boot counting off",
        step,
        on,
        errno
    );
    None
}

/// In the bounded child: the ESP read-write, the rename, a sync so the
/// new name survives a power cut, the unmount; one line of outcome.
fn mark_good<S: Sys>(sys: &mut S, slot: &str, esp: &str, entry: &str, good: &str) {
    if let Err(errno) = sys.mount(&esp_mount(esp, 0)) {
        return boot_good_failed(sys, slot, ("mounting read-write", esp, errno), entry);
    }
    let renamed = sys.rename(ENTRIES_PATH, entry, good);
    sys.sync();
    unmount_esp(sys);
    match renamed {
        Ok(()) => log!(
            sys,
            Level::Notice,
            "boot good: slot {} (kios-boot-check ran); EFI/Linux/{} renamed to {}",
            slot,
            entry,
            good
        ),
        Err(errno) => boot_good_failed(sys, slot, ("renaming it to", good, errno), entry),
    }
}

fn boot_good_unmarked<S: Sys>(sys: &mut S, slot: &str, why: &str) {
    log!(
        sys,
        Level::Notice,
        "boot good: slot {} (kios-boot-check ran); {}",
        slot,
        why
    );
}

fn boot_good_failed<S: Sys>(sys: &mut S, slot: &str, (step, on, errno): Failure<'_>, entry: &str) {
    log!(
        sys,
        Level::Err,
        "boot good: slot {} (kios-boot-check ran); {} {} failed: {}; EFI/Linux/{} keeps its count",
        slot,
        step,
        on,
        errno,
        entry
    );
}

fn esp_mount(esp: &str, flags: u32) -> MountOp<'_> {
    MountOp::Fs {
        source: esp,
        target: ESP_MOUNT,
        fstype: "vfat",
        flags: ESP_FLAGS | flags,
        data: "",
    }
}

/// Detached, which cannot fail on a mount just made: the kernel lets the
/// filesystem go once nothing uses it.
fn unmount_esp<S: Sys>(sys: &mut S) {
    let _ = sys.unmount(ESP_MOUNT, Unmount::Detach);
}

#[cfg(test)]
#[path = "boot_slot_tests.rs"]
mod tests;
