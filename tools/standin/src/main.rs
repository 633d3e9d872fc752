//! TEST FIXTURE, never part of a kiOS image: one binary that stands in for
//! the container runtime (`containerd`) and the kubelet (`kubelet`),
//! chosen by argv[0]. It records its argv and environment in kmsg so the
//! QEMU boot test can check what the init passed, and drives the init's
//! restart and shutdown paths:
//! - containerd: creates the runtime socket, then waits forever;
//! - kubelet, run 1: exits with status 3 after a second (the init must restart it);
//! - kubelet, run 2: checks that non-root clients of the system socket and
//!   of the D-Bus system bus are refused and that garbage on either closes
//!   that connection; talks to the init's logind as kubelet 1.20 does (the
//!   same bytes godbus sends) and takes a shutdown inhibitor; holds a
//!   silent system-socket client open, asks for a shutdown (0x01) on a
//!   second one, answers the shutdown event with "continue" (0x02), waits
//!   for PrepareForShutdown on the bus, and then, as a kubelet that ignores
//!   the request, keeps its inhibitor until it is killed.
//!
//! Every run also lists its open file descriptors, so the test sees any
//! descriptor the init leaked into its children.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::ffi::CStr;

use kios_abi::image::RUNTIME_SOCKET;
use kios_abi::system_bus::CLIENT_DEFAULT_PATH as SYSTEM_BUS;
use kios_abi::system_socket::{Command, PATH as SYSTEM_SOCKET};
use mini_libc_free::kmsg::{Level, Line};
use mini_libc_free::{kmsg, process};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::IoSliceMut;
use rustix::net::sockopt::Timeout;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketAddrUnix, SocketType,
};

mini_libc_free::entry!(main);

/// How long the fixture waits for any answer from the init.
const ANSWER_TIMEOUT: core::time::Duration = core::time::Duration::from_secs(10);

/// What kubelet 1.20's godbus writes on a new system-bus connection:
/// authentication as root with fd passing, then Hello, the
/// InhibitDelayMaxUSec Get, the shutdown delay Inhibit and the
/// PrepareForShutdown AddMatch (the wire bytes of init/src/dbus.rs's tests).
const GODBUS_AUTH: &[u8] = b"\0AUTH\r\nAUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";
const GODBUS_CALLS: [&str; 4] = [
    "6c01000100000000010000006e00000006017300140000006f72672e667265656465736b746f702e4442757300000000030173000500000048656c6c6f00000002017300140000006f72672e667265656465736b746f702e444275730000000001016f00150000002f6f72672f667265656465736b746f702f44427573000000",
    "6c0100013c000000020000008000000001016f00170000002f6f72672f667265656465736b746f702f6c6f67696e310006017300160000006f72672e667265656465736b746f702e6c6f67696e31000003017300030000004765740000000000020173001f0000006f72672e667265656465736b746f702e444275732e50726f706572746965730008016700027373001e0000006f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572000013000000496e686962697444656c61794d61785553656300",
    "6c01000156000000030000008800000006017300160000006f72672e667265656465736b746f702e6c6f67696e3100000301730007000000496e686962697400020173001e0000006f72672e667265656465736b746f702e6c6f67696e312e4d616e6167657200000801670004737373730000000000000001016f00170000002f6f72672f667265656465736b746f702f6c6f67696e31000800000073687574646f776e00000000070000006b7562656c6574002a0000004b7562656c6574206e656564732074696d6520746f2068616e646c65206e6f64652073687574646f776e00000500000064656c617900",
    "6c01000178000000040000007e00000006017300140000006f72672e667265656465736b746f702e444275730000000003017300080000004164644d61746368000000000000000002017300140000006f72672e667265656465736b746f702e4442757300000000080167000173000001016f00150000002f6f72672f667265656465736b746f702f4442757300000073000000747970653d277369676e616c272c696e746572666163653d276f72672e667265656465736b746f702e6c6f67696e312e4d616e61676572272c6d656d6265723d2750726570617265466f7253687574646f776e272c706174683d272f6f72672f667265656465736b746f702f6c6f67696e312700",
];
const KUBELET_CRASH_STATUS: i32 = 3;

fn main() -> ! {
    kmsg::set_ident("kios-standin");
    let _ = kmsg::open(c"/dev/kmsg");
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
            check_non_root_refused(SYSTEM_SOCKET);
            check_non_root_refused(SYSTEM_BUS);
            send_system_socket_garbage();
            send_bus_garbage();
            let inhibited = take_shutdown_inhibitor();
            request_shutdown();
            if let Some((bus, inhibitor)) = inhibited {
                await_prepare_for_shutdown(&bus);
                // Ignores it: the inhibitor stays open until the init kills this process.
                core::mem::forget((bus, inhibitor));
            }
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
fn check_non_root_refused(path: &str) {
    const NOBODY: u32 = 65534;
    match process::fork() {
        Ok(process::Fork::Child) => {
            // A new uid for this child only; it is single-threaded.
            let outcome =
                match rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(NOBODY)) {
                    Err(_) => "could not become nobody",
                    Ok(()) => match connect(path) {
                        Err(_) => "refused (connect denied)",
                        Ok(client) => {
                            let _ = rustix::io::write(&client, &[Command::RestartKubelet.byte()]);
                            let mut reply = [0u8; 1];
                            match rustix::io::read(&client, &mut reply) {
                                Ok(0) | Err(_) => "refused (closed by the init)",
                                Ok(_) => "was answered",
                            }
                        }
                    },
                };
            mini_libc_free::kmsg!(Level::Notice, "non-root client of {} {}", path, outcome);
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

fn connect(path: &str) -> rustix::io::Result<OwnedFd> {
    let address = SocketAddrUnix::new(path)?;
    let socket = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
    rustix::net::connect(&socket, &address)?;
    rustix::net::sockopt::set_socket_timeout(&socket, Timeout::Recv, Some(ANSWER_TIMEOUT))?;
    Ok(socket)
}

fn connect_system_socket() -> rustix::io::Result<OwnedFd> {
    connect(SYSTEM_SOCKET)
}

/// Authenticates, then sends a message header announcing a body larger
/// than any the bus takes: the init must answer the authentication, then
/// close the connection (and keep serving everyone else).
fn send_bus_garbage() {
    let outcome = connect(SYSTEM_BUS).and_then(|bus| {
        rustix::io::write(&bus, b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n")?;
        rustix::io::write(
            &bus,
            b"l\x01\x00\x01\xff\xff\xff\x7f\x01\x00\x00\x00\x00\x00\x00\x00",
        )?;
        let mut answered = 0;
        let mut buf = [0u8; 256];
        loop {
            match rustix::io::read(&bus, &mut buf)? {
                0 => return Ok(answered),
                read => answered += read,
            }
        }
    });
    match outcome {
        Ok(answered) => mini_libc_free::kmsg!(
            Level::Notice,
            "bus garbage: closed by the init after {} bytes of answers",
            answered
        ),
        Err(errno) => mini_libc_free::kmsg!(
            Level::Err,
            "bus garbage: connection not closed errno={}",
            errno.raw_os_error()
        ),
    }
}

/// Writes what godbus writes and reads the answers until the Inhibit
/// reply's descriptor arrives; returns the connection and the descriptor.
fn take_shutdown_inhibitor() -> Option<(OwnedFd, OwnedFd)> {
    let bus = match connect(SYSTEM_BUS) {
        Ok(bus) => bus,
        Err(errno) => {
            mini_libc_free::kmsg!(
                Level::Err,
                "bus connect failed errno={}",
                errno.raw_os_error()
            );
            return None;
        }
    };
    let mut request = [0u8; 1024];
    request[..GODBUS_AUTH.len()].copy_from_slice(GODBUS_AUTH);
    let mut len = GODBUS_AUTH.len();
    for call in GODBUS_CALLS {
        len += unhex(call.as_bytes(), &mut request[len..]);
    }
    if rustix::io::write(&bus, &request[..len]).is_err() {
        kmsg::write(Level::Err, "bus write failed");
        return None;
    }
    let mut answers = [0u8; 2048];
    let mut received = 0;
    loop {
        let mut space = [core::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let Some(room) = answers.get_mut(received..) else {
            kmsg::write(Level::Err, "bus: no inhibitor in 2 KiB of answers");
            return None;
        };
        let read = match rustix::net::recvmsg(
            &bus,
            &mut [IoSliceMut::new(room)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(message) if message.bytes > 0 => message.bytes,
            Ok(_) | Err(_) => {
                kmsg::write(Level::Err, "bus: closed or silent before the inhibitor");
                return None;
            }
        };
        received += read;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = message {
                if let Some(inhibitor) = fds.next() {
                    mini_libc_free::kmsg!(
                        Level::Notice,
                        "kubelet took a shutdown inhibitor; InhibitDelayMaxUSec={}",
                        inhibit_delay_max(&answers[..received])
                    );
                    return Some((bus, inhibitor));
                }
            }
        }
    }
}

/// The `t` variant of the Get reply: signature `t` at the body's start,
/// padding to 8, then the value.
fn inhibit_delay_max(answers: &[u8]) -> u64 {
    answers
        .windows(16)
        .find(|window| window[..3] == [1, b't', 0])
        .map_or(0, |window| {
            let mut value = [0u8; 8];
            value.copy_from_slice(&window[8..16]);
            u64::from_le_bytes(value)
        })
}

fn await_prepare_for_shutdown(bus: &OwnedFd) {
    let mut seen = [0u8; 2048];
    let mut len = 0;
    while len < seen.len() {
        match rustix::io::read(bus, &mut seen[len..]) {
            Ok(0) | Err(_) => break,
            Ok(read) => len += read,
        }
        if seen[..len].windows(18).any(|w| w == b"PrepareForShutdown") {
            kmsg::write(
                Level::Notice,
                "kubelet got PrepareForShutdown and ignores it, keeping its inhibitor",
            );
            return;
        }
    }
    kmsg::write(Level::Err, "bus: no PrepareForShutdown");
}

fn unhex(hex: &[u8], to: &mut [u8]) -> usize {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    };
    let mut len = 0;
    for (pair, byte) in hex.chunks_exact(2).zip(to.iter_mut()) {
        *byte = digit(pair[0]) << 4 | digit(pair[1]);
        len += 1;
    }
    len
}

/// Bytes that are no command: the init must drop this client and go on.
fn send_system_socket_garbage() {
    let outcome = connect_system_socket().and_then(|client| {
        rustix::io::write(&client, &[0xff, 0x00, 0x7f])?;
        let mut reply = [0u8; 1];
        rustix::io::read(&client, &mut reply)
    });
    // The init reads one byte and closes the connection; the kernel answers
    // the bytes left unread with a reset instead of an end of file.
    match outcome {
        Ok(0) | Err(rustix::io::Errno::CONNRESET) => {
            kmsg::write(Level::Notice, "system socket garbage: dropped by the init")
        }
        Ok(_) | Err(_) => kmsg::write(Level::Err, "system socket garbage: not dropped"),
    }
}

fn request_shutdown() {
    // A client that never speaks must not stall the init's event loop.
    let silent = connect_system_socket();
    let result = connect_system_socket().and_then(|client| {
        rustix::io::write(&client, &[Command::Shutdown.byte()])?;
        let mut event = [0u8; 1];
        if rustix::io::read(&client, &mut event)? == 1 {
            mini_libc_free::kmsg!(
                Level::Notice,
                "kubelet got event 0x{}{}",
                event[0] >> 4,
                event[0] & 0xf
            );
            rustix::io::write(&client, &[Command::ContinueShutdown.byte()])?;
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
