//! Host tests of boot counting on the disk's slots, on the recording `Sys`.

use super::*;
use crate::init::testing::{booted, both_services_exit, position, run_with, slot_disk};
use crate::sys::recording::RecordingSys;
use crate::sys::{signo, ClientId, Event};
use kios_abi::boot_slots::ENTRIES_DIR;
use kios_abi::system_socket::Command;

const SLOT_A: &str = "console=ttyS0 kios.slot=a\n";

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
}

#[test]
fn the_boot_reads_the_entries_off_the_esp_after_the_kubelet_starts() {
    let init = booted(slot_disk(
        SLOT_A,
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
    // Read-only, nosuid, nodev, noexec; unmounted at once.
    let mount = position(sys, "mount vfat /run/kios-esp flags=15");
    assert!(position(sys, "spawn kubelet") < position(sys, "mkdir /run/kios-esp 700"));
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

#[test]
fn without_kios_slot_nothing_is_read_logged_or_renamed() {
    let sys = slot_disk("console=ttyS0\n", &["kios-1.0-a+1-2.efi"]);
    let init = run_with(booted(sys), &[&[boot_good()][..], &power_off()].concat());
    let sys = init.sys();
    assert!(sys.calls_starting("mount vfat").is_empty());
    assert!(sys.calls_starting("rename").is_empty());
    assert_eq!(
        slot_logs(sys),
        ["Notice: boot good: no kios.slot, no boot slot to mark"]
    );
    assert_eq!(sys.calls.last().unwrap(), "reboot PowerOff");
}

#[test]
fn a_bad_slot_or_deadline_is_ignored_with_a_line_and_counts_nothing() {
    let sys = slot_disk(
        "kios.slot=c kios.boot_deadline=0\n",
        &["kios-1.0-a+1-2.efi"],
    );
    let init = booted(sys);
    let sys = init.sys();
    assert!(sys.logged("Warning: cmdline: ignored kios.slot=c (expected a or b)"));
    assert!(sys.logged(
        "Warning: cmdline: ignored kios.boot_deadline=0 (expected whole seconds from 1 to 86400)"
    ));
    assert!(sys.calls_starting("mount vfat").is_empty());
    assert!(init.boot_slot.is_none());
}

#[test]
fn a_missing_esp_or_entry_turns_boot_counting_off_and_the_node_stays_up() {
    let sys = RecordingSys::new().with_file("/proc/cmdline", SLOT_A.as_bytes());
    let init = booted(sys);
    assert_eq!(
        slot_logs(init.sys()),
        ["Warning: booted slot a: finding the EFI system partition beside the data partition failed: ENOENT (2); boot counting off, the node stays on this slot"]
    );

    let init = booted(slot_disk(SLOT_A, &["kios-2.0-b+3.efi"]));
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

    let init = booted(slot_disk(SLOT_A, &[]).failing("mount vfat", Errno::NODEV));
    assert_eq!(
        slot_logs(init.sys()),
        ["Warning: booted slot a: mounting /dev/vda1 failed: ENODEV (19); boot counting off, the node stays on this slot"]
    );
}

#[test]
fn boot_good_renames_the_entry_in_a_bounded_child_once() {
    let sys = slot_disk(SLOT_A, &["kios-1.0-a+1-2.efi", "kios-2.0-b+3.efi"]);
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
        let init = booted_and_good(slot_disk(SLOT_A, &[entry]));
        let sys = init.sys();
        assert!(sys.calls_starting("bounded 10000").is_empty());
        assert!(sys.logged("boot good: slot a (kios-boot-check ran); its entry is good already"));
    }
    let init = booted(slot_disk(SLOT_A, &["kios-1.0-a.efi"]));
    assert!(init.sys().logged(
        "Notice: booted slot a: EFI/Linux/kios-1.0-a.efi (tries left: not counted, always good)"
    ));
    assert_eq!(init.boot_deadline_us(), None);
}

#[test]
fn a_failed_rename_or_mount_keeps_the_count_and_says_why() {
    let sys = slot_disk(SLOT_A, &["kios-1.0-a+1-2.efi"]).failing("rename", Errno::EXIST);
    let init = booted_and_good(sys);
    let sys = init.sys();
    assert!(sys.logged("Err: boot good: slot a (kios-boot-check ran); renaming it to kios-1.0-a+3.efi failed: EEXIST (17); EFI/Linux/kios-1.0-a+1-2.efi keeps its count"));
    // Synced and unmounted all the same.
    let at = position(sys, "rename");
    assert_eq!(
        sys.calls[at + 1..at + 3],
        ["sync", "umount /run/kios-esp detach"]
    );

    let sys = slot_disk(SLOT_A, &["kios-1.0-a+1-2.efi"])
        .failing_exactly("mount vfat /run/kios-esp flags=14 ", Errno::ROFS);
    let init = booted_and_good(sys);
    assert!(init.sys().logged("Err: boot good: slot a (kios-boot-check ran); mounting read-write /dev/vda1 failed: EROFS (30); EFI/Linux/kios-1.0-a+1-2.efi keeps its count"));
    assert!(init.sys().calls_starting("rename").is_empty());

    let mut sys = slot_disk(SLOT_A, &["kios-1.0-a+1-2.efi"]);
    sys.bounded_work_hangs = true;
    let init = booted_and_good(sys);
    assert!(init.sys().logged("Err: boot good: slot a (kios-boot-check ran); renaming its entry in a child failed: ETIMEDOUT (110); EFI/Linux/kios-1.0-a+1-2.efi keeps its count"));
}

/// No event comes: the loop sleeps until the deadline (a busy loop would
/// never move the stand-in's clock), then reboots gracefully.
#[test]
fn a_boot_not_good_by_the_deadline_reboots_when_the_other_slot_can_boot() {
    let sys = slot_disk(
        "kios.slot=b kios.boot_deadline=60",
        &["kios-1.0-a+3.efi", "kios-2.0-b+1-2.efi"],
    );
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
        "kios.slot=a kios.boot_deadline=60",
        &["kios-1.0-a+0-3.efi", "kios-2.0-b+0-3.efi"],
    );
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
    let sys = slot_disk(SLOT_A, &["kios-1.0-a+1-2.efi", "kios-2.0-b+3.efi"]);
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
