//! TEST SUPPORT: a booted [`Init`] on the recording stand-in, scripted
//! events, and the kubelet's bus conversation, shared by the tests of the
//! boot, the event loop, the bus and the shutdown.

use super::Init;
use crate::bus::fixtures;
use crate::bus::server::Bus;
use crate::sys::recording::RecordingSys;
use crate::sys::{BusId, Event, ExitStatus, Pid};

impl Init<RecordingSys> {
    /// The stand-in, to script events and files between steps.
    pub(crate) fn sys_mut(&mut self) -> &mut RecordingSys {
        &mut self.sys
    }

    /// The bus the event loop feeds.
    pub(crate) fn bus(&self) -> &Bus {
        &self.bus
    }

    /// One event, handled as the loop would.
    pub(crate) fn deliver(&mut self, event: Event) {
        self.handle(event)
    }
}

pub(crate) fn booted(sys: RecordingSys) -> Init<RecordingSys> {
    let mut init = Init::new(sys);
    init.boot();
    // The first-boot step wrote its mark and exited during the boot.
    init.sys.children -= 1;
    init
}

/// A disk holding a GPT whose second partition is of the kiOS type and
/// holds ext4 (as far as the superblock magic goes).
pub(crate) fn with_data_disk(sys: RecordingSys) -> RecordingSys {
    let (header, entries) =
        crate::storage::gpt::tests::gpt_with(&[[1; 16], crate::storage::gpt::DATA_PARTITION_TYPE]);
    let mut disk = vec![0u8; 512];
    disk.extend(header);
    disk.extend(entries);
    let mut partition = vec![0u8; 2048];
    partition[1024 + 0x38..1024 + 0x3a].copy_from_slice(&[0x53, 0xEF]);
    sys.with_dir("/sys/block", &["vda"])
        .with_file("/dev/vda", &disk)
        .with_file("/dev/vda2", &partition)
}

/// Where the first call equal to `call`, or starting with `call` and a space, is.
pub(crate) fn position(sys: &RecordingSys, call: &str) -> usize {
    sys.calls
        .iter()
        .position(|c| c == call || c.starts_with(&format!("{call} ")))
        .unwrap_or_else(|| panic!("no call {call} in {:#?}", sys.calls))
}

/// A kiOS disk `vda` (the EFI system partition, then an ext4 data
/// partition) whose ESP's `EFI/Linux` lists `entries`, booted on EFI by
/// systemd-boot from `EFI/Linux/<booted>`, as its `LoaderBootCountPath`
/// on efivarfs says (None: no such variable).
pub(crate) fn slot_disk(booted: Option<&str>, entries: &[&str]) -> RecordingSys {
    use crate::storage::data_partition::tests::{disk_with, ext4_superblock};
    use crate::storage::gpt::{DATA_PARTITION_TYPE, ESP_TYPE};
    let sys = RecordingSys::new()
        .with_file("/proc/cmdline", b"console=ttyS0\n")
        .with_dir("/sys/block", &["vda"])
        .with_file("/dev/vda", &disk_with(&[ESP_TYPE, DATA_PARTITION_TYPE]))
        .with_file("/dev/vda2", &ext4_superblock())
        .with_dir("/run/kios-esp/EFI/Linux", entries)
        .with_dir("/sys/firmware/efi/efivars", &[]);
    match booted {
        Some(name) => sys.with_file(
            LOADER_BOOT_COUNT_PATH,
            &boot_count_path(&format!("\\EFI\\Linux\\{name}\0")),
        ),
        None => sys,
    }
}

/// systemd-boot's `LoaderBootCountPath` variable on efivarfs.
pub(crate) const LOADER_BOOT_COUNT_PATH: &str =
    "/sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The variable's file as efivarfs shows it: attributes (non-volatile,
/// boot and runtime access), then `value` in UTF-16LE.
pub(crate) fn boot_count_path(value: &str) -> Vec<u8> {
    let mut bytes = vec![0x07, 0, 0, 0];
    bytes.extend(value.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}

pub(crate) fn run_with(mut init: Init<RecordingSys>, events: &[Event]) -> Init<RecordingSys> {
    init.sys.events.extend(events.iter().copied());
    init.run();
    init
}

/// The first spawn is the first-boot step (pid 101).
pub(crate) const RUNTIME: Pid = Pid(102);
pub(crate) const KUBELET: Pid = Pid(103);

/// The kubelet, then the runtime, exit cleanly (after SIGTERM).
pub(crate) fn both_services_exit() -> [Event; 2] {
    [KUBELET, RUNTIME].map(|pid| Event::ChildExited {
        pid,
        status: ExitStatus::Exited(0),
    })
}

/// Everything the kubelet 1.20 sends logind over one connection, as
/// godbus encodes it: authentication, Hello, the InhibitDelayMaxUSec
/// Get, Inhibit and AddMatch.
pub(crate) fn kubelet_bus_conversation() -> Vec<u8> {
    let mut bytes = fixtures::GODBUS_AUTH.to_vec();
    for call in [
        fixtures::GODBUS_HELLO,
        fixtures::GODBUS_GET,
        fixtures::GODBUS_INHIBIT,
        fixtures::GODBUS_ADD_MATCH,
    ] {
        bytes.extend(fixtures::hex(call));
    }
    bytes
}

pub(crate) const KUBELET_BUS: BusId = BusId(7);

/// A booted node whose kubelet (config: 20 s grace) holds an inhibitor.
pub(crate) fn with_kubelet_on_the_bus() -> Init<RecordingSys> {
    let mut sys = RecordingSys::new().with_file(
        kios_abi::kubernetes::CONFIG,
        b"kind: KubeletConfiguration\nshutdownGracePeriod: 20s\n",
    );
    sys.bus_input
        .insert(KUBELET_BUS.0, kubelet_bus_conversation());
    let mut init = booted(sys);
    init.handle(Event::BusConnected {
        conn: KUBELET_BUS,
        uid: 0,
    });
    init.handle(Event::BusReadable(KUBELET_BUS));
    init
}
