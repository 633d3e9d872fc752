//! `/bin/kios-firstboot`: the init runs it once per boot, with no
//! arguments, after /etc's writable layer is mounted and before the
//! container runtime starts. The library (`kios_firstboot`) decides
//! everything; this file only makes the calls its `Node` trait names,
//! with rustix, and writes its lines to /dev/kmsg.
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

    use kios_abi::image::firstboot_exit;
    use kios_firstboot::run::{first_boot, Kind, Level, Names, Node, Read};
    use kios_firstboot::text::Text;
    use kios_firstboot::Errno;
    use mini_libc_free::kmsg::{self, Line};
    use mini_libc_free::process;
    use rustix::fd::OwnedFd;
    use rustix::fs::{FileType, Mode, OFlags, RawDir};
    use rustix::mount::{MountFlags, UnmountFlags};
    use rustix::rand::GetRandomFlags;

    pub fn main() -> ! {
        kmsg::set_ident("kios-firstboot");
        let _ = kmsg::open(c"/dev/kmsg");
        if process::arg_count() > 1 {
            kmsg::write(kmsg::Level::Err, "takes no arguments");
            process::exit(firstboot_exit::USAGE)
        }
        process::exit(first_boot(&mut Syscalls))
    }

    struct Syscalls;

    fn errno(error: rustix::io::Errno) -> Errno {
        Errno(error.raw_os_error())
    }

    fn open(path: &str, flags: OFlags, mode: u32) -> Result<OwnedFd, Errno> {
        rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::from_raw_mode(mode)).map_err(errno)
    }

    impl Node for Syscalls {
        fn read(&mut self, path: &str, buf: &mut [u8]) -> Result<Read, Errno> {
            let fd = open(path, OFlags::RDONLY, 0)?;
            let filled = mini_libc_free::file::read_to_fill(&fd, buf).map_err(errno)?;
            Ok(Read {
                len: filled.len,
                truncated: filled.truncated,
            })
        }

        fn write(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), Errno> {
            let mut new = Text::<400>::new();
            new.push(path).push(".kios-firstboot-new");
            if new.overflowed() {
                return Err(Errno(36));
            }
            let fd = open(
                new.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
                mode,
            )?;
            let mut written = 0;
            while written < contents.len() {
                written += rustix::io::write(&fd, &contents[written..]).map_err(errno)?;
            }
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(errno)?;
            rustix::fs::fsync(&fd).map_err(errno)?;
            drop(fd);
            rustix::fs::rename(new.as_str(), path).map_err(errno)
        }

        fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), Errno> {
            rustix::fs::mkdir(path, Mode::from_raw_mode(mode)).map_err(errno)
        }

        fn symlink(&mut self, target: &str, link: &str) -> Result<(), Errno> {
            let _ = rustix::fs::unlink(link);
            rustix::fs::symlink(target, link).map_err(errno)
        }

        fn exists(&mut self, path: &str) -> bool {
            rustix::fs::lstat(path).is_ok()
        }

        fn list(&mut self, dir: &str, names: &mut Names) -> Result<(), Errno> {
            let fd = open(dir, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
            let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
            let mut entries = RawDir::new(fd, &mut buf);
            while let Some(entry) = entries.next() {
                let entry = entry.map_err(errno)?;
                let kind = match entry.file_type() {
                    FileType::RegularFile => Kind::File,
                    FileType::Directory => Kind::Dir,
                    _ => Kind::Other,
                };
                names.push(entry.file_name().to_bytes(), kind);
            }
            Ok(())
        }

        fn mount_esp(&mut self, device: &str, target: &str) -> Result<(), Errno> {
            rustix::mount::mount(
                device,
                target,
                "vfat",
                MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC,
                None,
            )
            .map_err(errno)
        }

        fn unmount(&mut self, target: &str) -> Result<(), Errno> {
            rustix::mount::unmount(target, UnmountFlags::empty()).map_err(errno)
        }

        fn load_module(&mut self, path: &str) -> Result<(), Errno> {
            let fd = open(path, OFlags::RDONLY, 0)?;
            rustix::system::finit_module(&fd, c"", 0).map_err(errno)
        }

        fn random(&mut self, bytes: &mut [u8; 16]) -> Result<bool, Errno> {
            // Never wait for the generator: an early boot may have no
            // entropy yet, and a unique ID needs no secrecy.
            let (flags, seeded) =
                match rustix::rand::getrandom(&mut bytes[..], GetRandomFlags::NONBLOCK) {
                    Ok(16) => return Ok(true),
                    _ => (GetRandomFlags::INSECURE, false),
                };
            match rustix::rand::getrandom(&mut bytes[..], flags).map_err(errno)? {
                16 => Ok(seeded),
                _ => Err(Errno(5)),
            }
        }

        fn sync(&mut self) {
            rustix::fs::sync();
        }

        fn log(&mut self, level: Level, text: &str) {
            let level = match level {
                Level::Err => kmsg::Level::Err,
                Level::Warning => kmsg::Level::Warning,
                Level::Notice => kmsg::Level::Notice,
                Level::Info => kmsg::Level::Info,
            };
            let mut line = Line::new(level);
            line.push(text);
            line.emit();
        }
    }
}
