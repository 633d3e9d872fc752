//! A failed call's errno as the node's small binaries carry it in their
//! host-tested policy (rustix's `Errno` is its own type per build and
//! has no names), with the symbolic names their lines print.

/// A failed call's errno, as the kernel gave it (positive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const NOENT: Errno = Errno(2);
    pub const IO: Errno = Errno(5);
    pub const AGAIN: Errno = Errno(11);
    pub const EXIST: Errno = Errno(17);
    pub const NODEV: Errno = Errno(19);
    pub const NOTDIR: Errno = Errno(20);
    pub const ISDIR: Errno = Errno(21);
    pub const INVAL: Errno = Errno(22);
    pub const FBIG: Errno = Errno(27);
    pub const NOSPC: Errno = Errno(28);
    pub const ROFS: Errno = Errno(30);
    pub const NAMETOOLONG: Errno = Errno(36);

    /// The symbolic name of the errnos these binaries meet, else "errno".
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            5 => "EIO",
            6 => "ENXIO",
            9 => "EBADF",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            16 => "EBUSY",
            17 => "EEXIST",
            19 => "ENODEV",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            25 => "ENOTTY",
            27 => "EFBIG",
            28 => "ENOSPC",
            30 => "EROFS",
            32 => "EPIPE",
            36 => "ENAMETOOLONG",
            40 => "ELOOP",
            104 => "ECONNRESET",
            _ => "errno",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_errnos_have_names_and_others_say_errno() {
        assert_eq!(Errno::NOENT.name(), "ENOENT");
        assert_eq!(Errno::ROFS.name(), "EROFS");
        assert_eq!(Errno(104).name(), "ECONNRESET");
        assert_eq!(Errno(4095).name(), "errno");
    }
}
