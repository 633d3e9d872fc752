//! `kiosctl shutdown|restart-kubelet|restart-runtime|boot-good`: the
//! node's control client, shipped as the `kios.local/kiosctl:1` image. A
//! kiOS host has no shell, so an operator (or a test) runs it in a pod that
//! mounts the init's system socket, `/run/system.sock`; the init obeys root
//! only. `boot-good` is what the `kios-boot-check` static pod runs: the
//! boot is good, the init gives the booted slot's entry its tries back.
//!
//! For `shutdown` it also answers the init's shutdown event (0x01) with
//! "continue" (0x02): it has nothing to finish, and staying silent would
//! make the init wait out its grace period for this client.
//!
//! Its one line of outcome goes to `/dev/kmsg` when the pod mounts it (so
//! it shows on the node's console), else to stderr (the container's log).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use kios_abi::system_socket::{Command, EVENT_SHUTDOWN, PATH as SYSTEM_SOCKET};
use mini_libc_free::kmsg::{self, Level};
use mini_libc_free::process;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

mini_libc_free::entry!(main);

const USAGE: i32 = 2;
const FAILED: i32 = 1;

fn main() -> ! {
    kmsg::set_ident("kiosctl");
    let _ = kmsg::open(c"/dev/kmsg");
    let verb = process::args()
        .nth(1)
        .and_then(|arg| core::str::from_utf8(arg.to_bytes()).ok())
        .unwrap_or("");
    let command = match verb {
        "shutdown" => Command::Shutdown,
        "restart-kubelet" => Command::RestartKubelet,
        "restart-runtime" => Command::RestartRuntime,
        "boot-good" => Command::BootGood,
        _ => {
            kmsg::write(
                Level::Err,
                "usage: kiosctl shutdown|restart-kubelet|restart-runtime|boot-good",
            );
            process::exit(USAGE)
        }
    };
    match send(command) {
        Ok(()) => {
            mini_libc_free::kmsg!(Level::Notice, "{}: sent to {}", verb, SYSTEM_SOCKET);
            process::exit(0)
        }
        Err(errno) => {
            mini_libc_free::kmsg!(
                Level::Err,
                "{}: {} failed: errno {}",
                verb,
                SYSTEM_SOCKET,
                errno.raw_os_error()
            );
            process::exit(FAILED)
        }
    }
}

fn send(command: Command) -> Result<(), Errno> {
    let socket = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
    rustix::net::connect(&socket, &SocketAddrUnix::new(SYSTEM_SOCKET)?)?;
    rustix::io::write(&socket, &[command.byte()])?;
    if command == Command::Shutdown {
        let mut event = [0u8; 1];
        // The event comes once the init has begun its shutdown; a closed
        // socket instead means the init went ahead without waiting.
        if rustix::io::read(&socket, &mut event)? == 1 && event[0] == EVENT_SHUTDOWN {
            rustix::io::write(&socket, &[Command::ContinueShutdown.byte()])?;
        }
    }
    Ok(())
}
