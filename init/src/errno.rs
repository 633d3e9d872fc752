//! An errno as the kernel returns it, printable by name in kmsg lines.

/// A Linux error number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Errno(pub i32);

impl Errno {
    pub const PERM: Errno = Errno(1);
    pub const NOENT: Errno = Errno(2);
    pub const SRCH: Errno = Errno(3);
    pub const INTR: Errno = Errno(4);
    pub const IO: Errno = Errno(5);
    pub const TOOBIG: Errno = Errno(7);
    pub const NOEXEC: Errno = Errno(8);
    pub const BADF: Errno = Errno(9);
    pub const CHILD: Errno = Errno(10);
    pub const AGAIN: Errno = Errno(11);
    pub const NOMEM: Errno = Errno(12);
    pub const ACCES: Errno = Errno(13);
    pub const BUSY: Errno = Errno(16);
    pub const EXIST: Errno = Errno(17);
    pub const NODEV: Errno = Errno(19);
    pub const NOTDIR: Errno = Errno(20);
    pub const ISDIR: Errno = Errno(21);
    pub const INVAL: Errno = Errno(22);
    pub const MFILE: Errno = Errno(24);
    pub const FBIG: Errno = Errno(27);
    pub const NOSPC: Errno = Errno(28);
    pub const ROFS: Errno = Errno(30);
    pub const PIPE: Errno = Errno(32);
    pub const NAMETOOLONG: Errno = Errno(36);
    pub const NOSYS: Errno = Errno(38);
    pub const NOPKG: Errno = Errno(65);
    pub const OPNOTSUPP: Errno = Errno(95);
    pub const NOBUFS: Errno = Errno(105);
    pub const ADDRINUSE: Errno = Errno(98);
    pub const CONNREFUSED: Errno = Errno(111);
    pub const TIMEDOUT: Errno = Errno(110);
    /// "Structure needs cleaning": ext4's answer for a corrupted filesystem.
    pub const UCLEAN: Errno = Errno(117);

    /// The symbolic name, for the errors a boot step can plausibly hit.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Errno::PERM => "EPERM",
            Errno::NOENT => "ENOENT",
            Errno::SRCH => "ESRCH",
            Errno::INTR => "EINTR",
            Errno::IO => "EIO",
            Errno::TOOBIG => "E2BIG",
            Errno::NOEXEC => "ENOEXEC",
            Errno::BADF => "EBADF",
            Errno::CHILD => "ECHILD",
            Errno::AGAIN => "EAGAIN",
            Errno::NOMEM => "ENOMEM",
            Errno::ACCES => "EACCES",
            Errno::BUSY => "EBUSY",
            Errno::EXIST => "EEXIST",
            Errno::NODEV => "ENODEV",
            Errno::NOTDIR => "ENOTDIR",
            Errno::ISDIR => "EISDIR",
            Errno::INVAL => "EINVAL",
            Errno::MFILE => "EMFILE",
            Errno::FBIG => "EFBIG",
            Errno::NOSPC => "ENOSPC",
            Errno::ROFS => "EROFS",
            Errno::PIPE => "EPIPE",
            Errno::NAMETOOLONG => "ENAMETOOLONG",
            Errno::NOSYS => "ENOSYS",
            Errno::NOPKG => "ENOPKG",
            Errno::OPNOTSUPP => "EOPNOTSUPP",
            Errno::NOBUFS => "ENOBUFS",
            Errno::ADDRINUSE => "EADDRINUSE",
            Errno::CONNREFUSED => "ECONNREFUSED",
            Errno::TIMEDOUT => "ETIMEDOUT",
            Errno::UCLEAN => "EUCLEAN",
            _ => return None,
        })
    }
}

/// Prints `ENOENT (2)`, or `errno 200` for a number without a known name.
impl ufmt::uDisplay for Errno {
    fn fmt<W: ufmt::uWrite + ?Sized>(
        &self,
        f: &mut ufmt::Formatter<'_, W>,
    ) -> Result<(), W::Error> {
        match self.name() {
            Some(name) => ufmt::uwrite!(f, "{} ({})", name, self.0),
            None => ufmt::uwrite!(f, "errno {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Msg;

    #[test]
    fn errno_prints_name_and_number() {
        let mut msg = Msg::new();
        ufmt::uwrite!(msg, "{} {}", Errno::NOENT, Errno(200)).ok();
        assert_eq!(msg.as_str(), "ENOENT (2) errno 200");
    }
}
