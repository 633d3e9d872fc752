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
        let index = NAMED
            .iter()
            .position(|&number| i32::from(number) == self.0)?;
        crate::text::split(NAMES, b' ').nth(index)
    }
}

/// The errors with a name, and their names in the same order: one string
/// and a byte each, where a `match` cost a pointer and a length per name.
const NAMED: [u8; 32] = [
    1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 16, 17, 19, 20, 21, 22, 24, 27, 28, 30, 32, 36, 38, 65,
    95, 98, 105, 110, 111, 117,
];
const NAMES: &str = "EPERM ENOENT ESRCH EINTR EIO E2BIG ENOEXEC EBADF ECHILD EAGAIN ENOMEM EACCES EBUSY EEXIST ENODEV ENOTDIR EISDIR EINVAL EMFILE EFBIG ENOSPC EROFS EPIPE ENAMETOOLONG ENOSYS ENOPKG EOPNOTSUPP EADDRINUSE ENOBUFS ETIMEDOUT ECONNREFUSED EUCLEAN";

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

    #[test]
    fn every_named_errno_has_its_own_name() {
        assert_eq!(NAMES.split(' ').count(), NAMED.len());
        for (errno, name) in [
            (Errno::PERM, "EPERM"),
            (Errno::TOOBIG, "E2BIG"),
            (Errno::NOPKG, "ENOPKG"),
            (Errno::NOBUFS, "ENOBUFS"),
            (Errno::TIMEDOUT, "ETIMEDOUT"),
            (Errno::CONNREFUSED, "ECONNREFUSED"),
            (Errno::UCLEAN, "EUCLEAN"),
        ] {
            assert_eq!(errno.name(), Some(name));
        }
        assert_eq!(Errno(6).name(), None);
        assert_eq!(Errno(-2).name(), None);
        assert_eq!(Errno(258).name(), None);
    }
}
