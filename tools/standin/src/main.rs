//! TEST FIXTURE, never part of a kiOS image: one binary that stands in for
//! the container runtime (`containerd`) and the kubelet (`kubelet`),
//! chosen by argv[0]. It records its argv and environment in kmsg so the
//! QEMU boot test can check what the init passed, and drives the init's
//! restart and shutdown paths:
//! - containerd: creates the runtime socket, then waits forever;
//! - kubelet, run 1: exits with status 3 after a second (the init must restart it);
//! - kubelet, run 2: checks that a non-root client is refused, holds a
//!   silent system-socket client open, asks for a shutdown (0x01) on a
//!   second one, answers the shutdown event with "continue" (0x02), then
//!   waits to be killed.
//!
//! Every run also lists its open file descriptors, so the test sees any
//! descriptor the init leaked into its children.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::ffi::CStr;

use mini_libc_free::kmsg::{Level, Line};
use mini_libc_free::{kmsg, process};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

mini_libc_free::entry!(main);

const RUNTIME_SOCKET: &str = "/run/containerd/containerd.sock";
const SYSTEM_SOCKET: &str = "/run/system.sock";
const KUBELET_CRASH_STATUS: i32 = 3;

fn main() -> ! {
    kmsg::set_ident("kios-standin");
    let _ = kmsg::open("/dev/kmsg");
    let name = program_name();
    let run = count_run(name);
    record_invocation(name, run);
    record_open_fds(name, run);
    match (name, run) {
        ("containerd", _) => serve_runtime_socket(),
        ("kubelet", 1) => {
            sleep_ms(1000);
            process::exit(KUBELET_CRASH_STATUS)
        }
        ("kubelet", _) => {
            check_non_root_refused();
            request_shutdown();
        }
        _ => mini_libc_free::kmsg!(Level::Err, "unknown role {}", name),
    }
    wait_forever()
}

/// argv[0]'s basename: the role this fixture plays.
fn program_name() -> &'static str {
    let argv0 = process::args().next().map_or(&b""[..], CStr::to_bytes);
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    core::str::from_utf8(base).unwrap_or("?")
}

/// Counts this role's starts in a file on /run (a tmpfs the init mounted).
fn count_run(name: &str) -> u32 {
    let _ = rustix::fs::mkdir("/run/kios-standin", Mode::from_raw_mode(0o755));
    let mut path = [0u8; 64];
    let prefix = b"/run/kios-standin/";
    let len = prefix.len() + name.len();
    if len >= path.len() {
        return 0;
    }
    path[..prefix.len()].copy_from_slice(prefix);
    path[prefix.len()..len].copy_from_slice(name.as_bytes());
    let Ok(path) = CStr::from_bytes_until_nul(&path) else {
        return 0;
    };
    let Ok(file) = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE,
        Mode::from_raw_mode(0o600),
    ) else {
        return 0;
    };
    let mut count = [0u8; 1];
    let previous = match rustix::io::read(&file, &mut count) {
        Ok(1) => u32::from(count[0]),
        _ => 0,
    };
    let run = previous + 1;
    let _ = rustix::io::pwrite(&file, &[run as u8], 0);
    run
}

fn record_invocation(name: &str, run: u32) {
    for (index, arg) in process::args().enumerate() {
        let mut line = Line::new(Level::Notice);
        let _ = ufmt::uwrite!(line, "{} run={} arg[{}]=", name, run, index);
        line.push_bytes(arg.to_bytes());
        line.emit();
    }
    for var in process::env() {
        let mut line = Line::new(Level::Notice);
        let _ = ufmt::uwrite!(line, "{} run={} env ", name, run);
        line.push_bytes(var.to_bytes());
        line.emit();
    }
}

/// Logs `fds=0,1,2,...`: the descriptors open in this process.
fn record_open_fds(name: &str, run: u32) {
    let mut line = Line::new(Level::Notice);
    let _ = ufmt::uwrite!(line, "{} run={} fds=", name, run);
    let Ok(dir) = rustix::fs::open(
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        line.push("?");
        line.emit();
        return;
    };
    // This function's listing descriptor and the fixture's own kmsg are not the init's.
    let own_fds = [
        rustix::fd::AsRawFd::as_raw_fd(&dir),
        rustix::fd::AsRawFd::as_raw_fd(&kmsg::fd()),
    ];
    let mut buf = [core::mem::MaybeUninit::uninit(); 2048];
    let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
    let mut first = true;
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        let is_number = !name.is_empty() && name.iter().all(u8::is_ascii_digit);
        let number: Option<i32> = core::str::from_utf8(name).ok().and_then(|n| n.parse().ok());
        if !is_number || number.is_some_and(|fd| own_fds.contains(&fd)) {
            continue;
        }
        if !first {
            line.push(",");
        }
        line.push_bytes(name);
        first = false;
    }
    line.emit();
}

/// A client that is not root must be refused: the socket's mode (0600)
/// keeps it from connecting, and the init's SO_PEERCRED check would close
/// it unheard if it got through.
fn check_non_root_refused() {
    const NOBODY: u32 = 65534;
    match process::fork() {
        Ok(process::Fork::Child) => {
            // A new uid for this child only; it is single-threaded.
            let outcome =
                match rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(NOBODY)) {
                    Err(_) => "could not become nobody",
                    Ok(()) => match connect_system_socket() {
                        Err(_) => "refused (connect denied)",
                        Ok(client) => {
                            let _ = rustix::io::write(&client, &[0x03]);
                            let mut reply = [0u8; 1];
                            match rustix::io::read(&client, &mut reply) {
                                Ok(0) | Err(_) => "refused (closed by the init)",
                                Ok(_) => "was answered",
                            }
                        }
                    },
                };
            mini_libc_free::kmsg!(Level::Notice, "non-root client {}", outcome);
            process::exit(0);
        }
        Ok(process::Fork::Parent(child)) => {
            let _ = rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty());
        }
        Err(_) => kmsg::write(Level::Err, "fork failed"),
    }
}

fn serve_runtime_socket() {
    let _ = rustix::fs::mkdir("/run/containerd", Mode::from_raw_mode(0o711));
    let bound = SocketAddrUnix::new(RUNTIME_SOCKET).and_then(|address| {
        let socket = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
        rustix::net::bind(&socket, &address)?;
        rustix::net::listen(&socket, 16)?;
        Ok(socket)
    });
    match bound {
        Ok(socket) => {
            mini_libc_free::kmsg!(Level::Notice, "containerd listening on {}", RUNTIME_SOCKET);
            // Keep the socket open for as long as the fixture lives.
            core::mem::forget(socket);
        }
        Err(errno) => mini_libc_free::kmsg!(
            Level::Err,
            "containerd bind failed errno={}",
            errno.raw_os_error()
        ),
    }
}

fn connect_system_socket() -> rustix::io::Result<OwnedFd> {
    let address = SocketAddrUnix::new(SYSTEM_SOCKET)?;
    let socket = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
    rustix::net::connect(&socket, &address)?;
    Ok(socket)
}

fn request_shutdown() {
    // A client that never speaks must not stall the init's event loop.
    let silent = connect_system_socket();
    let result = connect_system_socket().and_then(|client| {
        rustix::io::write(&client, &[0x01])?;
        let mut event = [0u8; 1];
        if rustix::io::read(&client, &mut event)? == 1 {
            mini_libc_free::kmsg!(
                Level::Notice,
                "kubelet got event 0x{}{}",
                event[0] >> 4,
                event[0] & 0xf
            );
            rustix::io::write(&client, &[0x02])?;
        }
        Ok(client)
    });
    match result {
        Ok(client) => core::mem::forget(client),
        Err(errno) => mini_libc_free::kmsg!(
            Level::Err,
            "kubelet system socket failed errno={}",
            errno.raw_os_error()
        ),
    }
    core::mem::forget(silent);
}

fn sleep_ms(ms: u64) {
    let request = rustix::time::Timespec {
        tv_sec: (ms / 1000) as i64,
        tv_nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    let _ = rustix::thread::nanosleep(&request);
}

fn wait_forever() -> ! {
    loop {
        rustix::event::pause();
    }
}
