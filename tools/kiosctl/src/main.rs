//! `kiosctl shutdown|restart-kubelet|restart-runtime|boot-good|update
//! [--force] [DIR]`: the node's control client, shipped as the
//! `kios.local/kiosctl:1` image. A kiOS host has no shell, so an operator
//! (or a test) runs it in a pod that mounts the init's system socket,
//! `/run/system.sock`; the init obeys root only. `boot-good` is what the
//! `kios-boot-check` static pod runs: the boot is good, the init gives the
//! booted slot's entry its tries back. It then stays connected until the
//! node shuts down (answering the shutdown event) or it is signalled: a
//! container that exited 0 is remembered as done on the data partition
//! (containerd keeps its status there) and would not run at the next boot,
//! which must report again; one that was running at shutdown is started
//! again (`restartPolicy: Always`).
//!
//! For `shutdown` it also answers the init's shutdown event (0x01) with
//! "continue" (0x02): it has nothing to finish, and staying silent would
//! make the init wait out its grace period for this client.
//!
//! `update` hands an update bundle (`kios_abi::update_bundle`: DIR, by
//! default the bundle image's `/update`) to the node: it sends `Update`,
//! waits for the updater's READY, sends the flags byte (`--force`: install
//! a version that is not newer) with the bundle's directory as
//! `SCM_RIGHTS`, then copies every line the updater sends to stdout (the
//! pod's log) and to `/dev/kmsg` when the pod mounts it. It exits 0 only
//! when a line starts with `updated:`: the other slot holds the release
//! and the node reboots into it.
//!
//! Its one line of outcome goes to `/dev/kmsg` when the pod mounts it (so
//! it shows on the node's console), else to stderr (the container's log).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::mem::MaybeUninit;
use core::time::Duration;

use kios_abi::system_socket::{Command, EVENT_SHUTDOWN, PATH as SYSTEM_SOCKET};
use kios_abi::update_bundle::{flags, IMAGE_DIR, OUTCOME_UPDATED, READY};
use mini_libc_free::kmsg::{self, Level, Line};
use mini_libc_free::process;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::{Errno, IoSlice};
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType,
};

mini_libc_free::entry!(main);

const USAGE: i32 = 2;
const FAILED: i32 = 1;
const USAGE_LINE: &str =
    "usage: kiosctl shutdown|restart-kubelet|restart-runtime|boot-good|update [--force] [DIR]";

/// How long the node has to start the updater (its READY).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest silence between the updater's lines: hashing or writing a
/// large root on a slow disk takes minutes.
const LINES_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn main() -> ! {
    kmsg::set_ident("kiosctl");
    let kmsg_open = kmsg::open(c"/dev/kmsg").is_ok();
    let mut args = process::args().skip(1);
    let verb = args
        .next()
        .and_then(|arg| core::str::from_utf8(arg.to_bytes()).ok())
        .unwrap_or("");
    let command = match verb {
        "shutdown" => Command::Shutdown,
        "restart-kubelet" => Command::RestartKubelet,
        "restart-runtime" => Command::RestartRuntime,
        "boot-good" => Command::BootGood,
        "update" => process::exit(update(args, kmsg_open)),
        _ => {
            kmsg::write(Level::Err, USAGE_LINE);
            process::exit(USAGE)
        }
    };
    match send(command) {
        Ok(socket) => {
            mini_libc_free::kmsg!(Level::Notice, "{}: sent to {}", verb, SYSTEM_SOCKET);
            if command == Command::BootGood {
                stay_until_shutdown(&socket);
            }
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

fn send(command: Command) -> Result<OwnedFd, Errno> {
    let socket = connect()?;
    rustix::io::write(&socket, &[command.byte()])?;
    if command == Command::Shutdown {
        let mut event = [0u8; 1];
        // The event comes once the init has begun its shutdown; a closed
        // socket instead means the init went ahead without waiting.
        if rustix::io::read(&socket, &mut event)? == 1 && event[0] == EVENT_SHUTDOWN {
            rustix::io::write(&socket, &[Command::ContinueShutdown.byte()])?;
        }
    }
    Ok(socket)
}

/// Reads the connection until the init closes it, answering its shutdown
/// event at once: this client has nothing to finish.
fn stay_until_shutdown(socket: &OwnedFd) {
    let mut event = [0u8; 1];
    while let Ok(1) = rustix::io::read(socket, &mut event) {
        if event[0] == EVENT_SHUTDOWN {
            let _ = rustix::io::write(socket, &[Command::ContinueShutdown.byte()]);
        }
    }
}

fn connect() -> Result<OwnedFd, Errno> {
    let socket = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
    rustix::net::connect(&socket, &SocketAddrUnix::new(SYSTEM_SOCKET)?)?;
    Ok(socket)
}

/// Where `update` writes lines: stdout (the pod's log) and kmsg when the
/// pod mounts it; with neither, stderr (kmsg's fallback).
struct Output {
    stdout: Option<OwnedFd>,
    kmsg_open: bool,
}

impl Output {
    fn line(&self, level: Level, text: &[u8]) {
        if let Some(stdout) = &self.stdout {
            let _ = write_all(stdout, text);
            let _ = write_all(stdout, b"\n");
        }
        if self.kmsg_open || self.stdout.is_none() {
            let mut line = Line::new(level);
            line.push_bytes(text);
            line.emit();
        }
    }

    /// `update: <text>` of its own.
    fn own(&self, level: Level, parts: &[&str]) {
        let mut line = [0u8; kmsg::LINE_MAX];
        let mut len = 0;
        for part in core::iter::once("update: ").chain(parts.iter().copied()) {
            let take = part.len().min(line.len() - len);
            line[len..len + take].copy_from_slice(&part.as_bytes()[..take]);
            len += take;
        }
        self.line(level, &line[..len]);
    }

    /// `update: <step> <what> failed: errno N`.
    fn errno(&self, step: &str, what: &str, errno: Errno) {
        let mut digits = [0u8; 20];
        let code = mini_libc_free::decimal::digits(
            u64::from(errno.raw_os_error().unsigned_abs()),
            &mut digits,
        );
        let code = core::str::from_utf8(code).unwrap_or("?");
        self.own(Level::Err, &[step, " ", what, " failed: errno ", code]);
    }
}

fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(&fd, bytes)? {
            0 => return Err(Errno::IO),
            written => bytes = &bytes[written..],
        }
    }
    Ok(())
}

/// fd 1 as a descriptor of its own: the container's log.
fn stdout() -> Option<OwnedFd> {
    process::dup_stdio(process::Stdio::Out).ok()
}

/// `update [--force] [DIR]`: the exit code.
fn update(args: impl Iterator<Item = &'static core::ffi::CStr>, kmsg_open: bool) -> i32 {
    let out = Output {
        stdout: stdout(),
        kmsg_open,
    };
    let mut force = false;
    let mut dir: Option<&str> = None;
    for arg in args {
        match core::str::from_utf8(arg.to_bytes()) {
            Ok("--force") if !force => force = true,
            Ok(path) if dir.is_none() && !path.is_empty() && !path.starts_with('-') => {
                dir = Some(path)
            }
            _ => {
                out.line(Level::Err, USAGE_LINE.as_bytes());
                return USAGE;
            }
        }
    }
    let dir = dir.unwrap_or(IMAGE_DIR);
    let bundle = match rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(bundle) => bundle,
        Err(errno) => {
            out.errno("opening", dir, errno);
            return FAILED;
        }
    };
    let socket = match connect() {
        Ok(socket) => socket,
        Err(errno) => {
            out.errno("connecting to", SYSTEM_SOCKET, errno);
            return FAILED;
        }
    };
    if let Err(errno) = hand_over(&socket, &bundle, force, &out) {
        return errno;
    }
    copy_lines(&socket, &out)
}

/// `Update`, the updater's READY, then the flags byte with the bundle's
/// directory. Err: the exit code, said why.
fn hand_over(socket: &OwnedFd, bundle: &OwnedFd, force: bool, out: &Output) -> Result<(), i32> {
    let sent = rustix::net::send(socket, &[Command::Update.byte()], SendFlags::NOSIGNAL);
    if let Err(errno) = sent {
        out.errno("sending Update to", SYSTEM_SOCKET, errno);
        return Err(FAILED);
    }
    let _ = set_socket_timeout(socket, Timeout::Recv, Some(READY_TIMEOUT));
    let mut ready = [0u8; 1];
    match rustix::io::read(socket, &mut ready) {
        Ok(1) if ready[0] == READY => {}
        Ok(0) => {
            out.own(
                Level::Err,
                &["the node did not take the update: not booted from an A/B disk, or an update is already running (see the node's log)"],
            );
            return Err(FAILED);
        }
        Ok(_) => {
            out.own(
                Level::Err,
                &["the node answered something other than READY"],
            );
            return Err(FAILED);
        }
        Err(Errno::AGAIN) => {
            out.own(
                Level::Err,
                &["the node did not start the updater within 30 s (see the node's log)"],
            );
            return Err(FAILED);
        }
        Err(errno) => {
            out.errno("waiting for", "the updater's READY", errno);
            return Err(FAILED);
        }
    }
    let flags = [if force { flags::FORCE } else { 0 }];
    let fds = [bundle.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(&flags)],
        &mut control,
        SendFlags::NOSIGNAL,
    );
    match sent {
        Ok(1) => Ok(()),
        Ok(_) => {
            out.errno("sending", "the bundle's directory", Errno::IO);
            Err(FAILED)
        }
        Err(errno) => {
            out.errno("sending", "the bundle's directory", errno);
            Err(FAILED)
        }
    }
}

/// Copies the updater's lines until it closes: 0 when one said `updated:`.
fn copy_lines(socket: &OwnedFd, out: &Output) -> i32 {
    let _ = set_socket_timeout(socket, Timeout::Recv, Some(LINES_TIMEOUT));
    let mut updated = false;
    let mut line = [0u8; kmsg::LINE_MAX];
    let mut len = 0;
    let mut buf = [0u8; 1024];
    let mut emit = |text: &[u8]| {
        updated |= text.starts_with(OUTCOME_UPDATED.as_bytes());
        let level = if text.starts_with(OUTCOME_UPDATED.as_bytes()) {
            Level::Notice
        } else if text.starts_with(b"refused:") || text.starts_with(b"failed:") {
            Level::Err
        } else {
            Level::Info
        };
        out.line(level, text);
    };
    loop {
        let read = match rustix::io::read(socket, &mut buf) {
            Ok(0) => break,
            Ok(read) => read,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                out.own(
                    Level::Err,
                    &["no word from the node for 30 minutes; giving up (the update may go on: see the node's log)"],
                );
                return FAILED;
            }
            Err(errno) => {
                out.errno("reading", "the updater's lines", errno);
                return FAILED;
            }
        };
        for &byte in &buf[..read] {
            if byte == b'\n' {
                emit(&line[..len]);
                len = 0;
            } else if len < line.len() {
                line[len] = byte;
                len += 1;
            }
        }
    }
    if len > 0 {
        emit(&line[..len]);
    }
    if updated {
        0
    } else {
        FAILED
    }
}
