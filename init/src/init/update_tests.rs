//! Host tests of the update hand-over, on the recording `Sys`.

use super::*;
use crate::init::testing::{booted, slot_disk};
use crate::sys::{ClientId, Event, Pid};
use kios_abi::system_socket::Command;

/// The first spawns are the first-boot step, the runtime and the kubelet.
const UPDATER_PID: Pid = Pid(104);

fn update(client: u32) -> Event {
    Event::Request {
        client: ClientId(client),
        byte: Command::Update.byte(),
    }
}

fn updater_exits(status: ExitStatus) -> Event {
    Event::ChildExited {
        pid: UPDATER_PID,
        status,
    }
}

fn booted_on_slot_b() -> Init<crate::sys::recording::RecordingSys> {
    booted(slot_disk(
        Some("kios-2-b+3.efi"),
        &["kios-1-a+3.efi", "kios-2-b+3.efi"],
    ))
}

#[test]
fn the_connection_goes_to_the_updater_with_the_booted_slot_the_esp_and_the_entry() {
    let mut init = booted_on_slot_b();
    init.deliver(update(1));
    let sys = init.sys();
    assert_eq!(
        sys.calls_starting("hand_over"),
        ["hand_over 1 kios-update /bin/kios-update b /dev/vda1 kios-2-b+3.efi"]
    );
    assert!(sys.logged("update: /bin/kios-update pid=104 takes the bundle; running slot b"));
    assert!(sys.calls_starting("drop_client").is_empty());
}

#[test]
fn a_written_slot_reboots_the_node_through_the_graceful_shutdown() {
    let mut init = booted_on_slot_b();
    init.deliver(update(1));
    init.deliver(updater_exits(ExitStatus::Exited(0)));
    let sys = init.sys();
    assert!(sys.logged("update: the other slot is written and boots next; rebooting"));
    assert!(sys.logged("shutdown requested by the update"));
    assert!(init.update.is_none());
}

#[test]
fn a_refused_or_failed_update_leaves_the_node_running_and_allows_another() {
    let mut init = booted_on_slot_b();
    init.deliver(update(1));
    init.deliver(updater_exits(ExitStatus::Exited(3)));
    assert!(init.sys().logged(
        "update: /bin/kios-update exited status=3 (its lines above); no reboot, the node stays on slot b"
    ));
    assert!(init.shutdown.is_none());
    init.deliver(update(2));
    assert_eq!(init.sys().calls_starting("hand_over").len(), 2);
}

#[test]
fn one_update_at_a_time() {
    let mut init = booted_on_slot_b();
    init.deliver(update(1));
    init.deliver(update(2));
    let sys = init.sys();
    assert_eq!(sys.calls_starting("hand_over").len(), 1);
    assert_eq!(sys.calls_starting("drop_client"), ["drop_client 2"]);
    assert!(sys.logged("update refused: an update is running already; client dropped"));
}

#[test]
fn a_node_not_booted_from_a_slot_drops_the_client() {
    let mut init = booted(slot_disk(None, &["kios-1-a+3.efi"]));
    init.deliver(update(1));
    let sys = init.sys();
    assert!(sys.calls_starting("hand_over").is_empty());
    assert_eq!(sys.calls_starting("drop_client"), ["drop_client 1"]);
    assert!(sys.logged(
        "update refused: the node did not boot from a slot entry on the EFI system partition; client dropped"
    ));
}

#[test]
fn a_failed_start_drops_the_client_and_says_so() {
    let sys = slot_disk(Some("kios-2-b+3.efi"), &["kios-2-b+3.efi"])
        .failing("hand_over", crate::errno::Errno::NOMEM);
    let mut init = booted(sys);
    init.deliver(update(1));
    let sys = init.sys();
    assert_eq!(sys.calls_starting("drop_client"), ["drop_client 1"]);
    assert!(sys.logged("update: starting /bin/kios-update failed: ENOMEM (12); client dropped"));
    assert!(init.update.is_none());
}
