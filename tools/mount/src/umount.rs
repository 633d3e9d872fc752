//! `umount`: argv to umount2(2) calls.
//!
//! The forms the kubelet's mount library runs (mount_linux.go in
//! k8s.io/utils/mount and k8s.io/mount-utils): `umount TARGET`
//! (`Unmount`; newer `tryUnmount`), `umount -f TARGET` (newer
//! `forceUmount`, after a timeout), and `umount DIR` on a fresh
//! temporary directory (newer `detectSafeNotMountedBehavior`), whose
//! output must say "not mounted" (see [`crate::message::umount_failed`]).

use core::ffi::CStr;

use linux_raw_sys::general::{MNT_DETACH, MNT_FORCE};

use crate::args::{walk, Spec, Token, UsageError};
use crate::Parsed;

/// The most targets one `umount` takes.
pub const MAX_TARGETS: usize = 32;

/// What an argv asks to unmount, and how.
#[derive(Debug, PartialEq, Eq)]
pub struct UmountPlan<'a> {
    targets: [Option<&'a CStr>; MAX_TARGETS],
    /// umount2(2) flags: `MNT_DETACH` for `-l`, `MNT_FORCE` for `-f`.
    pub flags: u32,
    /// `-q`: no "not mounted" messages.
    pub quiet: bool,
}

impl<'a> UmountPlan<'a> {
    /// The targets in argv order, one umount2(2) call each.
    pub fn targets(&self) -> impl Iterator<Item = &'a CStr> + '_ {
        self.targets.iter().flatten().copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Lazy,
    Force,
    Quiet,
    /// Accepted and without effect here: `-n`, `-c`, `-i`, `-v`, `-d`.
    Ignored,
    Unsupported(&'static str, &'static str),
    Help,
    Version,
}

const fn spec(short: u8, long: &'static str, takes_value: bool, id: Opt) -> Spec<Opt> {
    Spec {
        short,
        long,
        takes_value,
        id,
    }
}

/// umount(8)'s options (util-linux 2.38).
const SPECS: &[Spec<Opt>] = &[
    spec(b'l', "lazy", false, Opt::Lazy),
    spec(b'f', "force", false, Opt::Force),
    spec(b'q', "quiet", false, Opt::Quiet),
    spec(b'c', "no-canonicalize", false, Opt::Ignored),
    spec(b'n', "no-mtab", false, Opt::Ignored),
    spec(b'i', "internal-only", false, Opt::Ignored),
    spec(b'v', "verbose", false, Opt::Ignored),
    // Loop devices are never set up by kiOS's mount, so none to free.
    spec(b'd', "detach-loop", false, Opt::Ignored),
    spec(
        b'a',
        "all",
        false,
        Opt::Unsupported("--all", "name the mount points"),
    ),
    spec(
        b'A',
        "all-targets",
        false,
        Opt::Unsupported("--all-targets", "name the mount points"),
    ),
    spec(
        b'R',
        "recursive",
        false,
        Opt::Unsupported("--recursive", "use --lazy, which detaches the whole tree"),
    ),
    spec(
        b'r',
        "read-only",
        false,
        Opt::Unsupported("--read-only", "remount read-only with mount -o remount,ro"),
    ),
    spec(
        b't',
        "types",
        true,
        Opt::Unsupported("--types", "name the mount points"),
    ),
    spec(
        b'O',
        "test-opts",
        true,
        Opt::Unsupported("--test-opts", "name the mount points"),
    ),
    spec(
        b'N',
        "namespace",
        true,
        Opt::Unsupported("--namespace", "run umount in the namespace instead"),
    ),
    spec(b'h', "help", false, Opt::Help),
    spec(b'V', "version", false, Opt::Version),
];

/// Parses `args` (argv without argv[0]).
pub fn parse<'a>(args: &[&'a CStr]) -> Result<Parsed<UmountPlan<'a>>, UsageError<'a>> {
    let mut plan = UmountPlan {
        targets: [None; MAX_TARGETS],
        flags: 0,
        quiet: false,
    };
    let mut count = 0;
    let mut asked = None;
    walk(args, SPECS, |token| {
        match token {
            Token::Operand(target) => {
                if count == MAX_TARGETS {
                    return Err(UsageError::BadUsage);
                }
                plan.targets[count] = Some(target);
                count += 1;
            }
            Token::Option(opt, _) => match opt {
                Opt::Lazy => plan.flags |= MNT_DETACH,
                Opt::Force => plan.flags |= MNT_FORCE,
                Opt::Quiet => plan.quiet = true,
                Opt::Ignored => {}
                Opt::Unsupported(what, why) => return Err(UsageError::Unsupported { what, why }),
                Opt::Help => asked = Some(Parsed::Help),
                Opt::Version => asked = Some(Parsed::Version),
            },
        }
        Ok(())
    })?;
    if let Some(asked) = asked {
        return Ok(asked);
    }
    if count == 0 {
        return Err(UsageError::BadUsage);
    }
    Ok(Parsed::Run(plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn plan<'a>(args: &[&'a CStr]) -> UmountPlan<'a> {
        match parse(args) {
            Ok(Parsed::Run(plan)) => plan,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    /// mount_linux.go Unmount (1.20 and newer), newer tryUnmount and
    /// detectSafeNotMountedBehavior: `umount TARGET`.
    #[test]
    fn kubelet_umount_target() {
        let plan = plan(&[c"/var/lib/kubelet/pods/uid/volumes/kubernetes.io~secret/token"]);
        assert_eq!(plan.flags, 0);
        assert_eq!(
            plan.targets().collect::<Vec<_>>(),
            [c"/var/lib/kubelet/pods/uid/volumes/kubernetes.io~secret/token"]
        );
    }

    /// Newer mount_linux.go forceUmount: `umount -f TARGET`.
    #[test]
    fn kubelet_forced_umount() {
        assert_eq!(plan(&[c"-f", c"/t"]).flags, MNT_FORCE);
    }

    #[test]
    fn lazy_force_quiet_and_several_targets() {
        let plan = plan(&[c"-l", c"/a", c"--force", c"-qn", c"/b", c"--", c"-c"]);
        assert_eq!(plan.flags, MNT_DETACH | MNT_FORCE);
        assert!(plan.quiet);
        assert_eq!(plan.targets().collect::<Vec<_>>(), [c"/a", c"/b", c"-c"]);
        assert_eq!(plan_flags(&[c"--lazy", c"/a"]), MNT_DETACH);
        assert_eq!(plan_flags(&[c"-c", c"-i", c"-d", c"/a"]), 0);
    }

    fn plan_flags(args: &[&CStr]) -> u32 {
        plan(args).flags
    }

    #[test]
    fn what_is_refused() {
        assert_eq!(parse(&[]), Err(UsageError::BadUsage));
        assert_eq!(parse(&[c"-l"]), Err(UsageError::BadUsage));
        assert_eq!(parse(&[c"-x", c"/a"]), Err(UsageError::InvalidOption(b'x')));
        assert_eq!(
            parse(&[c"--frob", c"/a"]),
            Err(UsageError::UnrecognizedOption(b"--frob"))
        );
        assert!(matches!(
            parse(&[c"-R", c"/a"]),
            Err(UsageError::Unsupported {
                what: "--recursive",
                ..
            })
        ));
        let many: Vec<&CStr> = std::iter::repeat_n(c"/a", MAX_TARGETS + 1).collect();
        assert_eq!(parse(&many), Err(UsageError::BadUsage));
        assert_eq!(parse(&[c"--help"]), Ok(Parsed::Help));
    }
}
