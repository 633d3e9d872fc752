//! The kiOS node's first-boot step, as policy: the binary (`src/main.rs`)
//! only makes the calls the [`run::Node`] trait names.
//!
//! At every boot, before the container runtime starts, it makes sure the
//! node has an identity: `/etc/machine-id` ([`identity`]) and, when no
//! hostname is configured, a node name derived from it. On the first boot
//! it also takes the configuration an operator wrote on the disk's EFI
//! system partition (`/kios/config/` on the ESP, laid out as `/etc` is):
//! each file is mapped to its place in `/etc` and validated
//! ([`policy`]), then taken or refused with one kmsg line. A marker in
//! `/etc` makes later boots skip the partition.
//!
//! `no_std` in the binary; built with std under `cargo test`. The host
//! tools use [`policy`] to check `cargo kios build --config DIR`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod identity;
pub mod policy;
pub mod run;
pub mod text;

/// A failed call's errno, as the kernel gave it (positive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const NOENT: Errno = Errno(2);
    pub const EXIST: Errno = Errno(17);
    pub const NODEV: Errno = Errno(19);
    pub const NOTDIR: Errno = Errno(20);
    pub const ISDIR: Errno = Errno(21);
    pub const ROFS: Errno = Errno(30);

    /// The symbolic name of the errnos a first boot meets, else "errno".
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            5 => "EIO",
            12 => "ENOMEM",
            13 => "EACCES",
            16 => "EBUSY",
            17 => "EEXIST",
            19 => "ENODEV",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            28 => "ENOSPC",
            30 => "EROFS",
            36 => "ENAMETOOLONG",
            _ => "errno",
        }
    }
}
