//! Files, directories, mounts and modules: each a path made NUL-terminated
//! once ([`c_path`]) and the syscalls on it, retried on EINTR; waiting for
//! a path to appear.

use core::ffi::CStr;
use core::mem::MaybeUninit;

use kios_init::errno::Errno;
use kios_init::sys::{FileRead, MountOp, Pid, SysResult, Timespec, Unmount};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno as RawErrno;
use rustix::mount::{MountFlags, UnmountFlags};

use super::{errno, timespec};

/// A path (or mount data) as the NUL-terminated string the kernel takes,
/// written into `buf`. Every rustix call gets a `&CStr` from here: rustix's
/// own conversion of a `&str` is generic, and repeated at each call it cost
/// the init 1.5 KB.
pub fn c_path<'b>(text: &str, buf: &'b mut [u8; PATH_MAX]) -> SysResult<&'b CStr> {
    let bytes = text.as_bytes();
    if bytes.len() >= buf.len() || kios_init::text::has_byte(bytes, 0) {
        return Err(Errno::NAMETOOLONG);
    }
    // Copied by `zip`, not indexing: no panic path for the compiler to keep.
    for (slot, &byte) in buf.iter_mut().zip(bytes.iter().chain(&[0])) {
        *slot = byte;
    }
    Ok(mini_libc_free::cstr::until_nul(buf))
}

/// The longest path the init passes to the kernel, NUL included.
pub const PATH_MAX: usize = 256;

pub fn mkdir(path: &str, mode: u32) -> SysResult<()> {
    rustix::fs::mkdir(c_path(path, &mut [0; PATH_MAX])?, Mode::from_raw_mode(mode)).map_err(errno)
}

pub fn symlink(target: &str, path: &str) -> SysResult<()> {
    rustix::fs::symlink(
        c_path(target, &mut [0; PATH_MAX])?,
        c_path(path, &mut [0; PATH_MAX])?,
    )
    .map_err(errno)
}

/// renameat2 within one directory, opened once (a path only: no read
/// access needed), with RENAME_NOREPLACE.
pub fn rename(dir: &str, from: &str, to: &str) -> SysResult<()> {
    let dir = rustix::fs::open(
        c_path(dir, &mut [0; PATH_MAX])?,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    rustix::fs::renameat_with(
        &dir,
        c_path(from, &mut [0; PATH_MAX])?,
        &dir,
        c_path(to, &mut [0; PATH_MAX])?,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(errno)
}

pub fn mount(op: &MountOp<'_>) -> SysResult<()> {
    use linux_raw_sys::general::{MS_BIND, MS_MOVE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SHARED};
    // One mount(2) call for every form: the flags say which, and the
    // kernel ignores the arguments a form does not use. (rustix's
    // mount_bind, mount_move, ... each cost their own code.)
    let (source, target, fstype, flags, data) = match *op {
        MountOp::Fs {
            source,
            target,
            fstype,
            flags,
            data,
        } => (source, target, fstype, flags, data),
        MountOp::Bind { source, target } => (source, target, "", MS_BIND, ""),
        MountOp::Move { source, target } => (source, target, "", MS_MOVE, ""),
        MountOp::ReadOnly { target } => ("", target, "", MS_REMOUNT | MS_BIND | MS_RDONLY, ""),
        MountOp::ReadOnlyFilesystem { target } => ("", target, "", MS_REMOUNT | MS_RDONLY, ""),
        MountOp::SharedRecursive { target } => ("", target, "", MS_SHARED | MS_REC, ""),
    };
    rustix::mount::mount(
        c_path(source, &mut [0; PATH_MAX])?,
        c_path(target, &mut [0; PATH_MAX])?,
        c_path(fstype, &mut [0; PATH_MAX])?,
        MountFlags::from_bits_retain(flags),
        c_path(data, &mut [0; PATH_MAX])?,
    )
    .map_err(errno)
}

pub fn unmount(target: &str, how: Unmount) -> SysResult<()> {
    let flags = match how {
        Unmount::Plain => UnmountFlags::empty(),
        Unmount::Force => UnmountFlags::FORCE,
        Unmount::Detach => UnmountFlags::DETACH,
    };
    rustix::mount::unmount(c_path(target, &mut [0; PATH_MAX])?, flags).map_err(errno)
}

pub fn chdir(path: &str) -> SysResult<()> {
    rustix::process::chdir(c_path(path, &mut [0; PATH_MAX])?).map_err(errno)
}

pub fn chroot(path: &str) -> SysResult<()> {
    rustix::process::chroot(c_path(path, &mut [0; PATH_MAX])?).map_err(errno)
}

/// Opens a file the init reads (configuration, module lists, modules)
/// only if it is a regular file. Non-blocking, so a FIFO or a terminal
/// put there (the /etc overlay persists, and a root pod can write it)
/// cannot stop PID 1 in `open`; the type check keeps it from `read`.
/// Anything else is refused as EISDIR (a directory) or EINVAL, as
/// [`file_size`] does.
fn open_regular(path: &str) -> SysResult<rustix::fd::OwnedFd> {
    let fd = rustix::fs::open(
        c_path(path, &mut [0; PATH_MAX])?,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(errno)?;
    let stat = rustix::fs::fstat(&fd).map_err(errno)?;
    regular(stat.st_mode)?;
    Ok(fd)
}

/// Ok for a regular file's mode; EISDIR for a directory, else EINVAL.
fn regular(mode: u32) -> SysResult<()> {
    match rustix::fs::FileType::from_raw_mode(mode) {
        rustix::fs::FileType::RegularFile => Ok(()),
        rustix::fs::FileType::Directory => Err(Errno::ISDIR),
        _ => Err(Errno::INVAL),
    }
}

pub fn read_file(path: &str, buf: &mut [u8]) -> SysResult<FileRead> {
    let fd = open_regular(path)?;
    let mut len = 0;
    while let Some(rest @ [_, ..]) = buf.get_mut(len..) {
        match rustix::io::read(&fd, rest) {
            Ok(0) => {
                return Ok(FileRead {
                    len,
                    truncated: false,
                })
            }
            Ok(n) => len += n,
            Err(RawErrno::INTR) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    let mut probe = [0u8; 1];
    let truncated = matches!(rustix::io::read(&fd, &mut probe), Ok(1));
    Ok(FileRead { len, truncated })
}

pub fn write_file(path: &str, data: &[u8]) -> SysResult<()> {
    let fd = rustix::fs::open(
        c_path(path, &mut [0; PATH_MAX])?,
        OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(errno)?;
    let mut written = 0;
    while written < data.len() {
        match rustix::io::write(&fd, &data[written..]) {
            Ok(n) => written += n,
            Err(RawErrno::INTR) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(())
}

pub fn read_at(path: &str, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
    let fd = rustix::fs::open(
        c_path(path, &mut [0; PATH_MAX])?,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let mut len = 0;
    while let Some(rest @ [_, ..]) = buf.get_mut(len..) {
        match rustix::io::pread(&fd, rest, offset + len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(RawErrno::INTR) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(len)
}

pub fn list_dir(path: &str, each: &mut dyn FnMut(&str)) -> SysResult<()> {
    let fd = rustix::fs::open(
        c_path(path, &mut [0; PATH_MAX])?,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let mut entries = rustix::fs::RawDir::new(&fd, &mut buf);
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if let Ok(name) = core::str::from_utf8(name) {
            each(name);
        }
    }
    Ok(())
}

pub fn file_size(path: &str) -> SysResult<u64> {
    let stat = rustix::fs::stat(c_path(path, &mut [0; PATH_MAX])?).map_err(errno)?;
    regular(stat.st_mode)?;
    Ok(stat.st_size as u64)
}

// `as`: the field is unsigned on x86_64 and signed on aarch64. Not shared
// with `file_size`: a function returning the whole `stat` cost more.
#[allow(clippy::unnecessary_cast)]
pub fn modified_secs(path: &str) -> SysResult<i64> {
    let stat = rustix::fs::stat(c_path(path, &mut [0; PATH_MAX])?).map_err(errno)?;
    regular(stat.st_mode)?;
    Ok(stat.st_mtime as i64)
}

/// Opening with O_TRUNC sets the file's modification time to now (POSIX
/// asks it of open, empty file or not), and O_CREAT makes a missing one.
/// Not through a symlink, and non-blocking: a pod that mounts the data
/// partition could put a link or a FIFO there.
pub fn touch(path: &str) -> SysResult<()> {
    rustix::fs::open(
        c_path(path, &mut [0; PATH_MAX])?,
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::TRUNC
            | OFlags::CLOEXEC
            | OFlags::NOCTTY
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK,
        Mode::from_raw_mode(0o600),
    )
    .map(drop)
    .map_err(errno)
}

pub fn load_module(path: &str) -> SysResult<()> {
    let fd = open_regular(path)?;
    rustix::system::finit_module(&fd, c"", 0).map_err(errno)
}

/// Waits until `path` exists, `owner` (the process that should create it)
/// exits, or `timeout_ms` passes.
pub fn wait_for_path(path: &str, owner: Option<Pid>, timeout_ms: u64) -> SysResult<()> {
    use rustix::event::{PollFd, PollFlags};
    use rustix::fs::inotify;

    let (dir, name) = kios_init::text::rsplit_once(path, b'/').ok_or(Errno::INVAL)?;
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .map_err(errno)?;
    inotify::add_watch(
        &watch,
        c_path(dir, &mut [0; PATH_MAX])?,
        inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
    )
    .map_err(errno)?;
    // Checked after the watch exists, so a socket created in between is not missed.
    if rustix::fs::access(
        c_path(path, &mut [0; PATH_MAX])?,
        rustix::fs::Access::EXISTS,
    )
    .is_ok()
    {
        return Ok(());
    }
    let owner = match owner {
        Some(owner) => {
            let owner = rustix::process::Pid::from_raw(owner.0).ok_or(Errno::SRCH)?;
            Some(
                rustix::process::pidfd_open(owner, rustix::process::PidfdFlags::empty())
                    .map_err(errno)?,
            )
        }
        None => None,
    };
    let deadline = mini_libc_free::time::boottime_us() + timeout_ms * 1000;
    let mut events = [MaybeUninit::<u8>::uninit(); 1024];
    loop {
        let remaining_us = deadline.saturating_sub(mini_libc_free::time::boottime_us());
        if remaining_us == 0 {
            return Err(Errno::TIMEDOUT);
        }
        let timeout = timespec(Timespec::from_us(remaining_us));
        let mut fds = [
            PollFd::new(&watch, PollFlags::IN),
            PollFd::new(owner.as_ref().unwrap_or(&watch), PollFlags::IN),
        ];
        let watched = if owner.is_some() { 2 } else { 1 };
        match rustix::event::poll(&mut fds[..watched], Some(&timeout)) {
            Ok(_) | Err(RawErrno::INTR) => {}
            Err(e) => return Err(errno(e)),
        }
        // The events first: an owner that creates the path and exits at
        // once leaves both ready, and the path is what it was asked for.
        let owner_exited = owner.is_some() && !fds[1].revents().is_empty();
        let mut reader = inotify::Reader::new(&watch, &mut events);
        while let Ok(event) = reader.next() {
            if event
                .file_name()
                .is_some_and(|file| file.to_bytes() == name.as_bytes())
            {
                return Ok(());
            }
        }
        if owner_exited {
            return Err(Errno::SRCH);
        }
    }
}
