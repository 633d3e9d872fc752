//! The system socket's one-byte commands and everything else the event
//! loop hears: `Init::boot`, then `Init::run` over events decoded from the
//! input (commands from clients, child exits, signals, bus connections and
//! their bytes, inhibitors released, the power button), until the
//! shutdown the stand-in kernel asks for once the events run out. The
//! loop must end in the reboot call, and every bus message the init sends
//! after authentication must parse.
#![no_main]

use kios_abi::kubernetes::CONFIG;
use kios_abi::system_socket::Command;
use kios_fuzz::{Bytes, FuzzSys};
use kios_init::init::Init;
use kios_init::sys::{BusId, ClientId, Event, ExitStatus, Pid};
use libfuzzer_sys::fuzz_target;

/// What one input decodes to.
pub fn script(data: &[u8]) -> FuzzSys {
    let mut sys = FuzzSys::new();
    sys.file(
        "/proc/cmdline",
        b"console=ttyS0 kios.data=none kios.shutdown_grace=5\n",
    );
    sys.file(CONFIG, b"shutdownGracePeriod: 20s\n");
    sys.dir("/dev/input", &["event0", "mice"]);
    let mut bytes = Bytes::new(data);
    if bytes.u8() & 1 == 1 {
        sys.fail_pattern = u64::from(bytes.u32()) << 32 | u64::from(bytes.u32());
    }
    while !bytes.is_empty() {
        let event = match bytes.u8() % 10 {
            0 => Event::Request {
                client: ClientId(u32::from(bytes.u8() % 8)),
                byte: bytes.u8(),
            },
            1 => Event::ChildExited {
                // The runtime and the kubelet are the first two spawned
                // after kios-firstboot (pid 101).
                pid: Pid(101 + i32::from(bytes.u8() % 4)),
                status: match bytes.u8() {
                    byte if byte & 1 == 0 => ExitStatus::Exited(i32::from(byte >> 1)),
                    byte => ExitStatus::Signaled(i32::from(byte >> 1)),
                },
            },
            2 => Event::Signal(u32::from(bytes.u8() % 32)),
            3 => Event::BusConnected {
                conn: BusId(u32::from(bytes.u8() % 6)),
                uid: if bytes.u8() & 1 == 0 { 0 } else { 1000 },
            },
            4 => {
                let conn = u32::from(bytes.u8() % 6);
                let len = usize::from(bytes.u8());
                let chunk = bytes.take(len).to_vec();
                sys.bus_input.entry(conn).or_default().push_back(chunk);
                Event::BusReadable(BusId(conn))
            }
            5 => Event::InhibitorReleased,
            6 => Event::PowerButton,
            7 => Event::Timeout,
            8 => Event::Request {
                client: ClientId(0),
                byte: Command::ALL[usize::from(bytes.u8()) % Command::ALL.len()].byte(),
            },
            _ => {
                sys.clients = usize::from(bytes.u8() % 4);
                continue;
            }
        };
        sys.events.push_back(event);
    }
    sys
}

fuzz_target!(|data: &[u8]| {
    let mut init = Init::new(script(data));
    init.boot();
    let _ = init.run();
    assert!(
        init.sys().rebooted,
        "the event loop returned without the reboot call"
    );
});
