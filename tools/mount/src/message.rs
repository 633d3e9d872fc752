//! Every message, worded as util-linux words it (libmount's
//! `mnt_context_get_mount_excode` and `mnt_context_get_umount_excode`,
//! getopt's own), with the exit code that goes with it.
//!
//! The kubelet reads these through `CombinedOutput` into its errors and
//! log; newer mount-utils also looks for "not mounted" in `umount`'s
//! output (`checkUmountError`, `detectSafeNotMountedBehavior`) to treat
//! an unmount of a directory that is not a mount point as done. A
//! message never includes filesystem options: they may be secrets.

use core::ffi::CStr;

use linux_raw_sys::errno::{
    EACCES, EBUSY, EINVAL, EIO, EMFILE, ENODEV, ENOENT, ENOMEDIUM, ENOTBLK, ENOTDIR, ENXIO, EPERM,
    EROFS,
};

use crate::args::UsageError;
use crate::mount::{Kind, MountPlan};
use crate::{exit, Sink, Tool};

/// Words a usage error; returns the exit code (always [`exit::USAGE`]).
pub fn usage(out: &mut impl Sink, tool: Tool, error: &UsageError<'_>) -> i32 {
    let name = tool.name();
    out.push_str(name);
    out.push_str(": ");
    let mut try_help = true;
    match error {
        UsageError::UnrecognizedOption(option) => {
            out.push_str("unrecognized option '");
            out.push(option);
            out.push_str("'");
        }
        UsageError::InvalidOption(letter) => {
            out.push_str("invalid option -- '");
            out.push(&[*letter]);
            out.push_str("'");
        }
        UsageError::AmbiguousOption(option) => {
            out.push_str("option '");
            out.push(option);
            out.push_str("' is ambiguous");
        }
        UsageError::MissingShortValue(letter) => {
            out.push_str("option requires an argument -- '");
            out.push(&[*letter]);
            out.push_str("'");
        }
        UsageError::MissingLongValue(long) => {
            out.push_str("option '--");
            out.push_str(long);
            out.push_str("' requires an argument");
        }
        UsageError::UnexpectedValue(long) => {
            out.push_str("option '--");
            out.push_str(long);
            out.push_str("' doesn't allow an argument");
        }
        UsageError::BadUsage => out.push_str("bad usage"),
        UsageError::NotInFstab(target) => {
            out.push(target.to_bytes());
            out.push_str(": can't find in /etc/fstab.");
            try_help = false;
        }
        UsageError::Unsupported { what, why } => {
            out.push_str(what);
            out.push_str(": not supported on kiOS (");
            out.push_str(why);
            out.push_str(")");
            try_help = false;
        }
        UsageError::OptionsTooLong => {
            out.push_str("the filesystem options are longer than mount(2) takes");
            try_help = false;
        }
    }
    out.push_str("\n");
    if try_help {
        out.push_str("Try '");
        out.push_str(name);
        out.push_str(" --help' for more information.\n");
    }
    exit::USAGE
}

/// Words a refused mount(2) call (`errno`); returns the exit code.
/// `target_exists` tells a missing mount point from a missing source.
pub fn mount_failed(
    out: &mut impl Sink,
    plan: &MountPlan<'_>,
    errno: u32,
    target_exists: bool,
) -> i32 {
    let source = plan.source.map_or(&b"none"[..], CStr::to_bytes);
    out.push_str("mount: ");
    out.push(plan.target.to_bytes());
    out.push_str(": ");
    match errno {
        EPERM | EACCES => out.push_str("permission denied"),
        EBUSY => {
            out.push(source);
            out.push_str(" already mounted or mount point busy");
        }
        ENOENT if !target_exists => out.push_str("mount point does not exist"),
        ENOENT => {
            out.push_str("special device ");
            out.push(source);
            out.push_str(" does not exist");
        }
        ENOTDIR if !target_exists => out.push_str("mount point is not a directory"),
        ENOTDIR => {
            out.push_str("special device ");
            out.push(source);
            out.push_str(" does not exist (a path prefix is not a directory)");
        }
        EINVAL => match plan.kind() {
            Kind::Remount => out.push_str("mount point not mounted or bad option"),
            Kind::Move | Kind::Propagation => out.push_str("not mount point or bad option"),
            Kind::Bind | Kind::New => {
                out.push_str("wrong fs type, bad option, bad superblock on ");
                out.push(source);
                out.push_str(", missing codepage or helper program, or other error");
            }
        },
        ENODEV => {
            out.push_str("unknown filesystem type '");
            out.push(plan.fstype.map_or(&b""[..], CStr::to_bytes));
            out.push_str("'");
        }
        ENOTBLK => {
            out.push(source);
            out.push_str(" is not a block device");
        }
        ENXIO => {
            out.push(source);
            out.push_str(" is not a valid block device");
        }
        EIO => {
            out.push_str("can't read superblock on ");
            out.push(source);
        }
        EMFILE => out.push_str("table of dummy devices is full"),
        EROFS => {
            out.push_str("cannot mount ");
            out.push(source);
            out.push_str(" read-only");
        }
        ENOMEDIUM => {
            out.push_str("no medium found on ");
            out.push(source);
        }
        _ => {
            out.push_str("mount(2) system call failed: errno ");
            out.push_u32(errno);
        }
    }
    out.push_str(".\n");
    exit::FAIL
}

/// Words a refused umount2(2) call (`errno`); returns the exit code.
/// A directory that is no mount point gets EINVAL, which reads
/// "not mounted": the text newer mount-utils looks for.
pub fn umount_failed(out: &mut impl Sink, target: &CStr, errno: u32, quiet: bool) -> i32 {
    if quiet && errno == EINVAL {
        return exit::FAIL;
    }
    out.push_str("umount: ");
    out.push(target.to_bytes());
    out.push_str(": ");
    match errno {
        ENXIO => out.push_str("invalid block device"),
        EINVAL => out.push_str("not mounted"),
        EIO => out.push_str("can't write superblock"),
        EBUSY => out.push_str("target is busy"),
        ENOENT => out.push_str("no mount point specified"),
        EPERM => out.push_str("must be superuser to unmount"),
        EACCES => out.push_str("block devices are not permitted on filesystem"),
        _ => {
            out.push_str("umount(2) system call failed: errno ");
            out.push_u32(errno);
        }
    }
    out.push_str(".\n");
    exit::FAIL
}

/// `--help`.
pub fn help(out: &mut impl Sink, tool: Tool) {
    out.push_str(match tool {
        Tool::Mount => concat!(
            "Usage:\n",
            " mount [-t <type>] [-o <options>] <source> <directory>\n",
            " mount -o remount[,<options>] <directory>\n",
            " mount --bind|--rbind|--move <source> <directory>\n",
            " mount --make-{shared,slave,private,unbindable} <directory>\n",
            "\nkiOS's mount(8): mount(2) calls only; no fstab, helpers, loop devices or probing.\n",
            "Options: -t -o -r -w -B -R -M -f -c -n -i -v -s --source --target --make-r*\n",
        ),
        Tool::Umount => concat!(
            "Usage:\n",
            " umount [-l] [-f] [-q] <directory>...\n",
            "\nkiOS's umount(8): umount2(2) calls only.\n",
            "Options: -l (lazy) -f (force) -q (quiet) -c -n -i -v -d\n",
        ),
    });
}

/// `--version`.
pub fn version(out: &mut impl Sink, tool: Tool) {
    out.push_str(tool.name());
    out.push_str(" from kiOS (kios-mount ");
    out.push_str(env!("CARGO_PKG_VERSION"));
    out.push_str("; util-linux's options and messages for what the kubelet runs)\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{mount, Parsed};
    use std::string::String;
    use std::vec::Vec;

    fn text(write: impl FnOnce(&mut Vec<u8>) -> i32) -> (i32, String) {
        let mut out = Vec::new();
        let code = write(&mut out);
        (code, String::from_utf8(out).unwrap())
    }

    fn plan<'a>(args: &[&'a CStr]) -> MountPlan<'a> {
        match mount::parse(args) {
            Ok(Parsed::Run(plan)) => plan,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_mounted_is_what_newer_mount_utils_looks_for() {
        // detectSafeNotMountedBehavior: umount on a fresh temp dir.
        let (code, message) =
            text(|out| umount_failed(out, c"/tmp/kubelet-detect-safe-umount123", EINVAL, false));
        assert_eq!(code, 32);
        assert_eq!(
            message,
            "umount: /tmp/kubelet-detect-safe-umount123: not mounted.\n"
        );
        assert!(message.contains("not mounted"));
        let (code, message) = text(|out| umount_failed(out, c"/t", EINVAL, true));
        assert_eq!((code, message.as_str()), (32, ""));
        let (_, busy) = text(|out| umount_failed(out, c"/t", EBUSY, false));
        assert_eq!(busy, "umount: /t: target is busy.\n");
        let (_, other) = text(|out| umount_failed(out, c"/t", 999, false));
        assert_eq!(
            other,
            "umount: /t: umount(2) system call failed: errno 999.\n"
        );
    }

    #[test]
    fn mount_failures_in_util_linux_words_without_the_options() {
        let tmpfs = plan(&[c"-t", c"tmpfs", c"-o", c"size=1,secret=x", c"tmpfs", c"/t"]);
        let (code, missing) = text(|out| mount_failed(out, &tmpfs, ENOENT, false));
        assert_eq!(code, 32);
        assert_eq!(missing, "mount: /t: mount point does not exist.\n");
        let (_, invalid) = text(|out| mount_failed(out, &tmpfs, EINVAL, true));
        assert_eq!(
            invalid,
            "mount: /t: wrong fs type, bad option, bad superblock on tmpfs, missing codepage or helper program, or other error.\n"
        );
        assert!(!invalid.contains("secret"));
        let (_, unknown) = text(|out| mount_failed(out, &tmpfs, ENODEV, true));
        assert_eq!(unknown, "mount: /t: unknown filesystem type 'tmpfs'.\n");
        let bind = plan(&[c"--bind", c"/src", c"/t"]);
        let (_, source) = text(|out| mount_failed(out, &bind, ENOENT, true));
        assert_eq!(source, "mount: /t: special device /src does not exist.\n");
        let remount = plan(&[c"-o", c"remount,ro", c"/t"]);
        let (_, not_mounted) = text(|out| mount_failed(out, &remount, EINVAL, true));
        assert_eq!(
            not_mounted,
            "mount: /t: mount point not mounted or bad option.\n"
        );
        let (_, denied) = text(|out| mount_failed(out, &remount, EPERM, true));
        assert_eq!(denied, "mount: /t: permission denied.\n");
    }

    #[test]
    fn usage_errors_as_getopt_words_them() {
        let (code, message) = text(|out| {
            usage(
                out,
                Tool::Mount,
                &UsageError::UnrecognizedOption(b"--frobnicate"),
            )
        });
        assert_eq!(code, 1);
        assert_eq!(
            message,
            "mount: unrecognized option '--frobnicate'\nTry 'mount --help' for more information.\n"
        );
        let (_, message) = text(|out| usage(out, Tool::Umount, &UsageError::InvalidOption(b'x')));
        assert_eq!(
            message,
            "umount: invalid option -- 'x'\nTry 'umount --help' for more information.\n"
        );
        let (_, message) = text(|out| usage(out, Tool::Mount, &UsageError::NotInFstab(c"/t")));
        assert_eq!(message, "mount: /t: can't find in /etc/fstab.\n");
        let (_, message) = text(|out| {
            usage(
                out,
                Tool::Mount,
                &UsageError::Unsupported {
                    what: "loop devices",
                    why: "kiOS has no losetup",
                },
            )
        });
        assert_eq!(
            message,
            "mount: loop devices: not supported on kiOS (kiOS has no losetup)\n"
        );
    }

    #[test]
    fn help_and_version_name_the_command() {
        let mut out = Vec::new();
        version(&mut out, Tool::Umount);
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("umount from kiOS"));
        let mut out = Vec::new();
        help(&mut out, Tool::Mount);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("mount [-t <type>]"));
    }
}
