//! Host tests of boot counting on the disk's slots, on the recording `Sys`.

use super::*;
use crate::init::testing::{
    boot_count_path, booted, both_services_exit, position, run_with, slot_disk,
    LOADER_BOOT_COUNT_PATH,
};
use crate::sys::recording::RecordingSys;
use crate::sys::{signo, ClientId, Event};
use kios_abi::boot_slots::{ENTRIES_DIR, LOADER_VENDOR_GUID};
use kios_abi::system_socket::Command;

/// Booted from slot a's entry, at its last try.
const A_LAST_TRY: Option<&str> = Some("kios-1.0-a+1-2.efi");

fn boot_good() -> Event {
    Event::Request {
        client: ClientId(1),
        byte: Command::BootGood.byte(),
    }
}

/// A SIGTERM and the services' exits: the shutdown that ends a test's loop.
fn power_off() -> Vec<Event> {
    let mut events = vec![Event::Signal(signo::SIGTERM)];
    events.extend(both_services_exit());
    events
}

/// Boots `sys` and delivers `BootGood` as the loop would.
fn booted_and_good(sys: RecordingSys) -> Init<RecordingSys> {
    let mut init = booted(sys);
    init.deliver(boot_good());
    init
}

fn slot_logs(sys: &RecordingSys) -> Vec<&str> {
    sys.logs
        .iter()
        .map(String::as_str)
        .filter(|line| line.contains("slot") || line.contains("boot good"))
        .collect()
}

#[test]
fn the_entries_path_is_the_entries_dir_on_the_mounted_esp() {
    assert_eq!(ENTRIES_PATH, format!("{ESP_MOUNT}/{ENTRIES_DIR}"));
    assert_eq!(BOOT_COUNT_PATH, LOADER_BOOT_COUNT_PATH);
    assert_eq!(
        BOOT_COUNT_PATH,
        format!("{EFIVARS}/LoaderBootCountPath-{LOADER_VENDOR_GUID}")
    );
}

#[test]
fn the_boot_reads_the_entries_off_the_esp_after_the_kubelet_starts() {
    let init = booted(slot_disk(
        A_LAST_TRY,
        &[
            "kios-1.0-a+1-2.efi",
            "kios-2.0-b+0-3.efi",
            "kios-0.9-b+0-3.efi",
            "other.efi",
        ],
    ));
    let sys = init.sys();
    assert_eq!(
        slot_logs(sys),
        [
            "Notice: booted slot a: EFI/Linux/kios-1.0-a+1-2.efi (tries left: 1)",
            "Warning: slot b (EFI/Linux/kios-2.0-b+0-3.efi) failed 3 boots in a row and was given up; running slot a",
            "Warning: slot b (EFI/Linux/kios-0.9-b+0-3.efi) failed 3 boots in a row and was given up; running slot a",
        ]
    );
    // efivarfs for the variable, then the ESP: read-only, nosuid, nodev,
    // noexec; each unmounted at once.
    let efivarfs = position(sys, "mount efivarfs /sys/firmware/efi/efivars flags=15");
    assert_eq!(
        sys.calls[efivarfs + 1..efivarfs + 3],
        [
            format!("read {LOADER_BOOT_COUNT_PATH}"),
            "umount /sys/firmware/efi/efivars detach".into(),
        ]
    );
    assert!(position(sys, "spawn kubelet") < efivarfs);
    assert!(efivarfs < position(sys, "mkdir /run/kios-esp 700"));
    let mount = position(sys, "mount vfat /run/kios-esp flags=15");
    assert!(position(sys, "mkdir /run/kios-esp 700") < mount);
    assert!(mount < position(sys, "list_dir /run/kios-esp/EFI/Linux"));
    assert!(
        position(sys, "list_dir /run/kios-esp/EFI/Linux")
            < position(sys, "umount /run/kios-esp detach")
    );
    assert_eq!(sys.calls_starting("mount vfat").len(), 1);
    let state = init.boot_slot.as_ref().unwrap();
    assert_eq!(state.entry.as_deref(), Some("kios-1.0-a+1-2.efi"));
    assert!(!state.other_bootable);
}

/// Not booted by systemd-boot from an entry with a counter: a RAM root, a
/// `-kernel` boot, a disk without boot counting.
#[test]
fn without_the_variable_nothing_is_read_logged_or_renamed() {
    let sys = slot_disk(None, &["kios-1.0-a+1-2.efi"]);
    let init = run_with(booted(sys), &[&[boot_good()][..], &power_off()].concat());
    let sys = init.sys();
    assert!(sys.calls_starting("mount vfat").is_empty());
    assert!(sys.calls_starting("rename").is_empty());
    assert_eq!(
        slot_logs(sys),
        ["Notice: boot good: not booted from a counted slot entry, nothing to mark"]
    );
    assert!(!sys.logged("boot slot"));
    assert_eq!(
        sys.calls_starting("umount /sys/firmware/efi/efivars").len(),
        1
    );
    assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");

    // No efivars directory (not an EFI boot), or efivarfs there already:
    // the same, and nothing to unmount.
    for errno in [Errno::NOENT, Errno::BUSY] {
        let init = booted(slot_disk(None, &[]).failing("mount efivarfs", errno));
        let sys = init.sys();
        assert!(slot_logs(sys).is_empty());
        assert!(sys
            .calls_starting("umount /sys/firmware/efi/efivars")
            .is_empty());
        assert!(init.boot_slot.is_none());
    }
}

#[test]
fn efivarfs_there_already_is_read_and_left_mounted() {
    let init = booted(
        slot_disk(A_LAST_TRY, &["kios-1.0-a+1-2.efi"]).failing("mount efivarfs", Errno::BUSY),
    );
    let sys = init.sys();
    assert!(sys.logged("Notice: booted slot a: EFI/Linux/kios-1.0-a+1-2.efi (tries left: 1)"));
    assert!(sys
        .calls_starting("umount /sys/firmware/efi/efivars")
        .is_empty());
}

#[test]
fn a_variable_that_cannot_be_read_or_names_no_entry_is_one_line_and_counts_nothing() {
    let garbled = |value: &str| {
        slot_disk(None, &["kios-1.0-a+1-2.efi"])
            .with_file(LOADER_BOOT_COUNT_PATH, &boot_count_path(value))
    };
    for (sys, line) in [
        (garbled("\\EFI\\Linux\\other.efi\0"), "decoding /sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f failed: EINVAL (22)"),
        (garbled("\\EFI\\Linux\\kios-1.\u{e9}-a+1.efi\0"), "decoding /sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f failed: EINVAL (22)"),
        (garbled(&"\\x".repeat(600)), "decoding /sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f failed: EFBIG (27)"),
        (slot_disk(A_LAST_TRY, &[]).failing("read /sys/firmware", Errno::IO), "reading /sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f failed: EIO (5)"),
        (slot_disk(A_LAST_TRY, &[]).failing("mount efivarfs", Errno::PERM), "mounting efivarfs on /sys/firmware/efi/efivars failed: EPERM (1)"),
    ] {
        let init = run_with(booted(sys), &[&[boot_good()][..], &power_off()].concat());
        let sys = init.sys();
        assert_eq!(
            slot_logs(sys),
            [
                format!("Warning: boot slot: {line}; boot counting off"),
                "Notice: boot good: not booted from a counted slot entry, nothing to mark".into(),
            ]
        );
        assert!(sys.calls_starting("mount vfat").is_empty());
        assert!(sys.calls_starting("rename").is_empty());
        assert!(init.boot_slot.is_none());
    }
    // A mount that failed is not unmounted; one made is, whatever was read.
    let init = booted(slot_disk(A_LAST_TRY, &[]).failing("mount efivarfs", Errno::PERM));
    assert!(init.sys().calls_starting("read /sys/firmware").is_empty());
    assert!(init.sys().calls_starting("umount /sys/firmware").is_empty());
    let init = booted(slot_disk(A_LAST_TRY, &[]).failing("read /sys/firmware", Errno::IO));
    assert_eq!(init.sys().calls_starting("umount /sys/firmware").len(), 1);
}

#[test]
fn a_bad_deadline_or_a_slot_option_is_ignored_with_a_line_and_counts_nothing() {
    let sys = slot_disk(None, &["kios-1.0-a+1-2.efi"])
        .with_file("/proc/cmdline", b"kios.slot=a kios.boot_deadline=0\n");
    let init = booted(sys);
    let sys = init.sys();
    assert!(sys.logged("Warning: cmdline: ignored kios.slot=a (unknown option)"));
    assert!(sys.logged(
        "Warning: cmdline: ignored kios.boot_deadline=0 (expected whole seconds from 1 to 86400)"
    ));
    assert!(sys.calls_starting("mount vfat").is_empty());
    assert!(init.boot_slot.is_none());
}

#[test]
fn a_missing_esp_or_entry_turns_boot_counting_off_and_the_node_stays_up() {
    let sys = RecordingSys::new().with_file(
        LOADER_BOOT_COUNT_PATH,
        &boot_count_path("\\EFI\\Linux\\kios-1.0-a+1-2.efi\0"),
    );
    let init = booted(sys);
    assert_eq!(
        slot_logs(init.sys()),
        ["Warning: booted slot a: finding the EFI system partition beside the data partition failed: ENOENT (2); boot counting off, the node stays on this slot"]
    );

    // Another entry of the slot is not the booted one.
    let init = booted(slot_disk(
        A_LAST_TRY,
        &["kios-1.0-a+3.efi", "kios-2.0-b+3.efi"],
    ));
    assert_eq!(
        slot_logs(init.sys()),
        ["Warning: booted slot a: finding its entry in EFI/Linux on /dev/vda1 failed: ENOENT (2); boot counting off, the node stays on this slot"]
    );
    // No deadline: the loop waits for events only.
    assert_eq!(init.boot_deadline_us(), None);
    let init = run_with(init, &[&[boot_good()][..], &power_off()].concat());
    assert!(init
        .sys()
        .logged("Notice: boot good: slot a (kios-boot-check ran); no entry of it to mark"));
    assert_eq!(init.sys().calls.last().unwrap(), "reboot PowerOff");

    let init = booted(slot_disk(A_LAST_TRY, &[]).failing("mount vfat", Errno::NODEV));
    assert_eq!(
        slot_logs(init.sys()),
        ["Warning: booted slot a: mounting /dev/vda1 failed: ENODEV (19); boot counting off, the node stays on this slot"]
    );
}

#[test]
fn boot_good_renames_the_entry_in_a_bounded_child_once() {
    let sys = slot_disk(A_LAST_TRY, &["kios-1.0-a+1-2.efi", "kios-2.0-b+3.efi"]);
    let events = [&[boot_good(), boot_good()][..], &power_off()].concat();
    let init = run_with(booted(sys), &events);
    let sys = init.sys();
    let at = position(sys, "bounded 10000 ms");
    assert_eq!(
        sys.calls[at..at + 6],
        [
            "bounded 10000 ms",
            "mount vfat /run/kios-esp flags=14 ",
            "rename /run/kios-esp/EFI/Linux kios-1.0-a+1-2.efi kios-1.0-a+3.efi",
            "sync",
            "umount /run/kios-esp detach",
            "bounded done",
        ]
    );
    assert_eq!(sys.calls_starting("rename").len(), 1);
    assert_eq!(
        slot_logs(sys)[1..],
        [
            "Notice: boot good: slot a (kios-boot-check ran); EFI/Linux/kios-1.0-a+1-2.efi renamed to kios-1.0-a+3.efi",
            "Notice: boot good: reported already, ignored",
        ]
    );
    assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
}

#[test]
fn an_entry_with_all_its_tries_is_not_renamed() {
    for entry in ["kios-1.0-a+3.efi", "kios-1.0-a.efi"] {
        let init = booted_and_good(slot_disk(Some(entry), &[entry]));
        let sys = init.sys();
        assert!(sys.calls_starting("bounded 10000").is_empty());
        assert!(sys.logged("boot good: slot a (kios-boot-check ran); its entry is good already"));
    }
    let init = booted(slot_disk(Some("kios-1.0-a.efi"), &["kios-1.0-a.efi"]));
    assert!(init.sys().logged(
        "Notice: booted slot a: EFI/Linux/kios-1.0-a.efi (tries left: not counted, always good)"
    ));
    assert_eq!(init.boot_deadline_us(), None);
}

#[test]
fn a_failed_rename_or_mount_keeps_the_count_and_says_why() {
    let sys = slot_disk(A_LAST_TRY, &["kios-1.0-a+1-2.efi"]).failing("rename", Errno::EXIST);
    let init = booted_and_good(sys);
    let sys = init.sys();
    assert!(sys.logged("Err: boot good: slot a (kios-boot-check ran); renaming it to kios-1.0-a+3.efi failed: EEXIST (17); EFI/Linux/kios-1.0-a+1-2.efi keeps its count"));
    // Synced and unmounted all the same.
    let at = position(sys, "rename");
    assert_eq!(
        sys.calls[at + 1..at + 3],
        ["sync", "umount /run/kios-esp detach"]
    );

    let sys = slot_disk(A_LAST_TRY, &["kios-1.0-a+1-2.efi"])
        .failing_exactly("mount vfat /run/kios-esp flags=14 ", Errno::ROFS);
    let init = booted_and_good(sys);
    assert!(init.sys().logged("Err: boot good: slot a (kios-boot-check ran); mounting read-write /dev/vda1 failed: EROFS (30); EFI/Linux/kios-1.0-a+1-2.efi keeps its count"));
    assert!(init.sys().calls_starting("rename").is_empty());

    let mut sys = slot_disk(A_LAST_TRY, &["kios-1.0-a+1-2.efi"]);
    sys.bounded_work_hangs = true;
    let init = booted_and_good(sys);
    assert!(init.sys().logged("Err: boot good: slot a (kios-boot-check ran); renaming its entry in a child failed: ETIMEDOUT (110); EFI/Linux/kios-1.0-a+1-2.efi keeps its count"));
}

/// No event comes: the loop sleeps until the deadline (a busy loop would
/// never move the stand-in's clock), then reboots gracefully.
#[test]
fn a_boot_not_good_by_the_deadline_reboots_when_the_other_slot_can_boot() {
    let sys = slot_disk(
        Some("kios-2.0-b+1-2.efi"),
        &["kios-1.0-a+3.efi", "kios-2.0-b+1-2.efi"],
    )
    .with_file("/proc/cmdline", b"kios.boot_deadline=60");
    let init = booted(sys);
    let deadline = init.boot_deadline_us().unwrap();
    let init = run_with(init, &[]);
    let sys = init.sys();
    assert!(sys.logged("Warning: slot b not good within 60 s (kios-boot-check never reported); rebooting: 1 try left before slot a"));
    assert!(sys.logged("shutdown requested by the boot deadline"));
    assert_eq!(
        sys.logs
            .iter()
            .filter(|l| l.contains("not good within"))
            .count(),
        1
    );
    assert!(position(sys, "kill all Term") > position(sys, "list_dir /run/kios-esp/EFI/Linux"));
    assert_eq!(sys.calls.last().unwrap(), "reboot Reboot");
    assert!(sys.now_us >= deadline);
}

#[test]
fn a_boot_not_good_by_the_deadline_stays_up_without_another_slot_to_boot() {
    let sys = slot_disk(
        Some("kios-1.0-a+0-3.efi"),
        &["kios-1.0-a+0-3.efi", "kios-2.0-b+0-3.efi"],
    )
    .with_file("/proc/cmdline", b"kios.boot_deadline=60");
    // The first timeout runs to the deadline; afterwards the loop has
    // no deadline of its own left (the stand-in panics on a wait forever).
    let events = [&[Event::Timeout][..], &power_off()].concat();
    let init = run_with(booted(sys), &events);
    let sys = init.sys();
    assert!(sys.logged("Err: slot a not good within 60 s (kios-boot-check never reported); no entry of slot b to try, staying up"));
    assert!(!sys.logged("shutdown requested by the boot deadline"));
    assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
}

#[test]
fn a_good_boot_has_no_deadline_left() {
    let sys = slot_disk(A_LAST_TRY, &["kios-1.0-a+1-2.efi", "kios-2.0-b+3.efi"]);
    let init = booted(sys);
    assert!(init.boot_deadline_us().is_some());
    let events = [&[boot_good(), Event::Timeout][..], &power_off()].concat();
    let init = run_with(init, &events);
    let sys = init.sys();
    assert!(!sys.logged("not good within"));
    assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
    // The timeout after the boot was good waited for nothing: 1 ms.
    assert!(sys.now_us < 600_000_000);
}
