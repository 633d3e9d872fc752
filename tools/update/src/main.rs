//! `/bin/kios-update <booted slot a|b> <ESP device> <booted entry>`: the
//! init runs it with an update client's connection (the system socket)
//! as stdin. The library (`kios_update`) decides everything; this file
//! only makes the calls its `Node` trait names, with rustix, and writes
//! each line to /dev/kmsg (ident `kios-update`) and to the client.
//!
//! A static musl executable (see .cargo/config.toml); built for the host
//! (`cargo clippy --all-targets`, `cargo test --workspace`) the bin is an
//! empty program, as the init's is.
#![cfg_attr(target_env = "musl", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_env = "musl")]
mini_libc_free::entry!(node::main);

#[cfg(not(target_env = "musl"))]
fn main() {}

#[cfg(target_env = "musl")]
mod node {
    use core::mem::MaybeUninit;
    use core::time::Duration;

    use kios_abi::update_bundle::READY;
    use kios_update::run::{update, Fd, FileInfo, Handover, Level, Node, Read, RECEIVE_TIMEOUT_S};
    use kios_update::Errno;
    use mini_libc_free::kmsg::{self, Line};
    use mini_libc_free::process;
    use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
    use rustix::fs::{Advice, FileType, Mode, OFlags, RawDir, SeekFrom, CWD};
    use rustix::io::IoSliceMut;
    use rustix::mount::{MountFlags, UnmountFlags};
    use rustix::net::{
        RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags,
    };

    /// How long the client has to send the bundle after READY.
    const RECEIVE_TIMEOUT: Duration = Duration::from_secs(RECEIVE_TIMEOUT_S);
    /// The most arguments read (the init passes three).
    const MAX_ARGS: usize = 8;
    /// The buffer every file is streamed through.
    const BUFFER_BYTES: usize = 1 << 20;

    pub fn main() -> ! {
        kmsg::set_ident("kios-update");
        let _ = kmsg::open(c"/dev/kmsg");
        let Ok(client) = client() else {
            kmsg::write(
                kmsg::Level::Err,
                "refused: its stdin (the client's connection) cannot be used",
            );
            process::exit(kios_update::exit::REFUSED)
        };
        // The init's connections are non-blocking; this one waits.
        if let Ok(flags) = rustix::fs::fcntl_getfl(&client) {
            let _ = rustix::fs::fcntl_setfl(&client, flags - OFlags::NONBLOCK);
        }
        let _ = rustix::net::sockopt::set_socket_timeout(
            &client,
            rustix::net::sockopt::Timeout::Recv,
            Some(RECEIVE_TIMEOUT),
        );
        let mut args = [""; MAX_ARGS];
        let mut count = 0;
        for arg in process::args().skip(1) {
            if count == MAX_ARGS {
                break;
            }
            args[count] = core::str::from_utf8(arg.to_bytes()).unwrap_or("");
            count += 1;
        }
        let mut node = Syscalls {
            client,
            bundle: None,
            fds: [const { None }; 6],
        };
        // On the stack: 1 MiB of the 8 MiB it gets.
        let mut buffer = [0u8; BUFFER_BYTES];
        process::exit(update(&mut node, &args[..count], &mut buffer))
    }

    /// fd 0, the client's connection, as a descriptor of its own.
    fn client() -> Result<OwnedFd, rustix::io::Errno> {
        process::dup_stdio(process::Stdio::In)
    }

    struct Syscalls {
        client: OwnedFd,
        /// The bundle's directory, from the client.
        bundle: Option<OwnedFd>,
        fds: [Option<OwnedFd>; 6],
    }

    fn errno(error: rustix::io::Errno) -> Errno {
        Errno(error.raw_os_error())
    }

    fn index(fd: Fd) -> usize {
        match fd {
            Fd::Manifest => 0,
            Fd::Uki => 1,
            Fd::Root => 2,
            Fd::Disk => 3,
            Fd::Partition => 4,
            Fd::NewEntry => 5,
        }
    }

    fn open(path: &str, flags: OFlags, mode: u32) -> Result<OwnedFd, Errno> {
        rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::from_raw_mode(mode)).map_err(errno)
    }

    impl Syscalls {
        fn fd(&self, fd: Fd) -> Result<BorrowedFd<'_>, Errno> {
            self.fds[index(fd)]
                .as_ref()
                .map(|owned| owned.as_fd())
                .ok_or(Errno(9))
        }

        fn keep(&mut self, fd: Fd, owned: OwnedFd) {
            self.fds[index(fd)] = Some(owned);
        }
    }

    impl Node for Syscalls {
        fn send_ready(&mut self) -> Result<(), Errno> {
            match rustix::net::send(&self.client, &[READY], SendFlags::NOSIGNAL).map_err(errno)? {
                1 => Ok(()),
                _ => Err(Errno::IO),
            }
        }

        fn receive_bundle(&mut self) -> Result<Handover, Errno> {
            let mut data = [0u8; 2];
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut data)];
            let message = rustix::net::recvmsg(
                &self.client,
                &mut iov,
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(errno)?;
            let mut descriptors = 0;
            for received in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = received {
                    for fd in fds {
                        descriptors += 1;
                        if self.bundle.is_none() {
                            self.bundle = Some(fd);
                        }
                    }
                }
            }
            let directory = self.bundle.as_ref().is_some_and(|fd| {
                rustix::fs::fstat(fd)
                    .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Directory)
            });
            Ok(Handover {
                bytes: message.bytes,
                flags: data[0],
                descriptors,
                truncated: message.flags.contains(ReturnFlags::CTRUNC),
                directory,
            })
        }

        fn open_bundle_file(&mut self, fd: Fd, name: &str) -> Result<FileInfo, Errno> {
            let dir = self.bundle.as_ref().ok_or(Errno(9))?;
            let file = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno)?;
            let stat = rustix::fs::fstat(&file).map_err(errno)?;
            let info = FileInfo {
                regular: FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile,
                size: stat.st_size as u64,
            };
            self.keep(fd, file);
            Ok(info)
        }

        fn read_file(&mut self, path: &str, buf: &mut [u8]) -> Result<Read, Errno> {
            let fd = open(path, OFlags::RDONLY, 0)?;
            let filled = mini_libc_free::file::read_to_fill(&fd, buf).map_err(errno)?;
            Ok(Read {
                len: filled.len,
                truncated: filled.truncated,
            })
        }

        fn read_link(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, Errno> {
            rustix::fs::readlinkat_raw(CWD, path, &mut *buf).map_err(errno)
        }

        fn list_dir(&mut self, path: &str, each: &mut dyn FnMut(&str)) -> Result<(), Errno> {
            let fd = open(path, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
            let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
            let mut entries = RawDir::new(fd, &mut buf);
            while let Some(entry) = entries.next() {
                let entry = entry.map_err(errno)?;
                if let Ok(name) = core::str::from_utf8(entry.file_name().to_bytes()) {
                    each(name);
                }
            }
            Ok(())
        }

        fn open_device(&mut self, fd: Fd, path: &str) -> Result<(), Errno> {
            // The slot's partition exclusively: the kernel refuses it
            // (EBUSY) while it is mounted or a device-mapper target uses it.
            let exclusive = if fd == Fd::Partition {
                OFlags::EXCL
            } else {
                OFlags::empty()
            };
            let device = open(path, OFlags::RDWR | exclusive, 0)?;
            self.keep(fd, device);
            Ok(())
        }

        fn block_size(&mut self, fd: Fd) -> Result<u32, Errno> {
            rustix::fs::ioctl_blksszget(self.fd(fd)?).map_err(errno)
        }

        fn device_size(&mut self, fd: Fd) -> Result<u64, Errno> {
            rustix::fs::seek(self.fd(fd)?, SeekFrom::End(0)).map_err(errno)
        }

        fn read_at(&mut self, fd: Fd, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
            rustix::io::pread(self.fd(fd)?, buf, offset).map_err(errno)
        }

        fn write_at(&mut self, fd: Fd, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
            rustix::io::pwrite(self.fd(fd)?, buf, offset).map_err(errno)
        }

        fn fsync(&mut self, fd: Fd) -> Result<(), Errno> {
            rustix::fs::fsync(self.fd(fd)?).map_err(errno)
        }

        fn drop_cache(&mut self, fd: Fd) -> Result<(), Errno> {
            rustix::fs::fadvise(self.fd(fd)?, 0, None, Advice::DontNeed).map_err(errno)
        }

        fn create(&mut self, fd: Fd, path: &str) -> Result<(), Errno> {
            let file = open(
                path,
                OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW,
                0o600,
            )?;
            self.keep(fd, file);
            Ok(())
        }

        fn close(&mut self, fd: Fd) {
            self.fds[index(fd)] = None;
        }

        fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), Errno> {
            rustix::fs::mkdir(path, Mode::from_raw_mode(mode)).map_err(errno)
        }

        fn mount_esp(&mut self, device: &str, target: &str) -> Result<(), Errno> {
            rustix::mount::mount(
                device,
                target,
                "vfat",
                MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC,
                None,
            )
            .map_err(errno)
        }

        fn unmount(&mut self, target: &str) {
            let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
        }

        fn free_bytes(&mut self, path: &str) -> Result<u64, Errno> {
            let dir = open(path, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
            let stat = rustix::fs::fstatvfs(&dir).map_err(errno)?;
            Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
        }

        fn file_size(&mut self, path: &str) -> Result<u64, Errno> {
            Ok(rustix::fs::lstat(path).map_err(errno)?.st_size as u64)
        }

        fn unlink(&mut self, path: &str) -> Result<(), Errno> {
            rustix::fs::unlink(path).map_err(errno)
        }

        fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno> {
            rustix::fs::rename(from, to).map_err(errno)
        }

        fn fsync_dir(&mut self, path: &str) -> Result<(), Errno> {
            let dir = open(path, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
            rustix::fs::fsync(&dir).map_err(errno)
        }

        fn sync(&mut self) {
            rustix::fs::sync();
        }

        fn say(&mut self, level: Level, text: &str) {
            let level = match level {
                Level::Err => kmsg::Level::Err,
                Level::Warning => kmsg::Level::Warning,
                Level::Notice => kmsg::Level::Notice,
            };
            let mut line = Line::new(level);
            line.push(text);
            line.emit();
            // The client's copy; a client gone away (EPIPE, no SIGPIPE)
            // does not stop the update.
            let mut sent = 0;
            let mut out = [0u8; kmsg::LINE_MAX + 1];
            let len = text.len().min(kmsg::LINE_MAX);
            out[..len].copy_from_slice(&text.as_bytes()[..len]);
            out[len] = b'\n';
            while sent <= len {
                match rustix::net::send(&self.client, &out[sent..=len], SendFlags::NOSIGNAL) {
                    Ok(0) | Err(_) => break,
                    Ok(written) => sent += written,
                }
            }
        }
    }
}
