//! `mount`: argv to a plan of mount(2) calls.
//!
//! The forms the kubelet's mount library builds (`MakeMountArgsSensitive`
//! in k8s.io/utils/mount and k8s.io/mount-utils `mount_linux.go`;
//! `MakeMountArgsSensitiveWithMountFlags` in newer mount-utils):
//!
//! ```text
//! mount [FLAGS...] [-t FSTYPE] [-o OPT,OPT,...] [SOURCE] TARGET
//! ```
//!
//! with FLAGS such as `--no-canonicalize`, the options and the sensitive
//! options joined into one `-o` (so a password never gets its own
//! argument), and a bind mount done as `-o bind[,_netdev]` followed by
//! `-o bind,remount,OPTS` (`MakeBindOptsSensitive`, mount.go).
//!
//! Each `-o` option is a mount(2) flag (`ro`, `nosuid`, `bind`,
//! `remount`, `relatime`, ...), a propagation change (`rshared`, ...),
//! a userspace-only option that util-linux keeps out of the kernel
//! (`defaults`, `_netdev`, `nofail`, `x-*`, ...) or else the
//! filesystem's own, passed on as mount(2)'s data (`size=`, `mode=`,
//! `pagesize=`, a CIFS password, ...). This module never words the data
//! into a message: it may hold secrets, and the kubelet logs our output.

use core::ffi::CStr;

use linux_raw_sys::general::{
    MS_BIND, MS_DIRSYNC, MS_I_VERSION, MS_LAZYTIME, MS_MANDLOCK, MS_MOVE, MS_NOATIME, MS_NODEV,
    MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_NOSYMFOLLOW, MS_PRIVATE, MS_RDONLY, MS_REC,
    MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SILENT, MS_SLAVE, MS_STRICTATIME, MS_SYNCHRONOUS,
    MS_UNBINDABLE,
};

use crate::args::{walk, Spec, Token, UsageError};
use crate::Parsed;

/// The flags that belong to a mount point rather than to its filesystem:
/// a bind mount takes them only through a second, remounting call.
pub const PER_MOUNT_FLAGS: u32 = MS_RDONLY
    | MS_NOSUID
    | MS_NODEV
    | MS_NOEXEC
    | MS_NOATIME
    | MS_NODIRATIME
    | MS_RELATIME
    | MS_STRICTATIME
    | MS_NOSYMFOLLOW;

/// The most bytes of filesystem options: the kernel copies one page.
pub const DATA_MAX: usize = 4096;

/// The filesystem options for mount(2)'s data argument, comma-separated.
#[derive(Clone, PartialEq, Eq)]
pub struct Data {
    /// The options and a NUL after them.
    buf: [u8; DATA_MAX],
    len: usize,
}

impl core::fmt::Debug for Data {
    // Never shows the bytes: they may be a password.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Data({} bytes)", self.len)
    }
}

impl Data {
    pub const EMPTY: Data = Data {
        buf: [0; DATA_MAX],
        len: 0,
    };

    fn push(&mut self, option: &[u8]) -> Result<(), UsageError<'static>> {
        let comma = usize::from(self.len > 0);
        // One byte stays for the NUL.
        if self.len + comma + option.len() >= DATA_MAX || option.contains(&0) {
            return Err(UsageError::OptionsTooLong);
        }
        if comma == 1 {
            self.buf[self.len] = b',';
            self.len += 1;
        }
        self.buf[self.len..self.len + option.len()].copy_from_slice(option);
        self.len += option.len();
        self.buf[self.len] = 0;
        Ok(())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The data argument: none when there are no filesystem options.
    pub fn as_c_str(&self) -> Option<&CStr> {
        if self.len == 0 {
            return None;
        }
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).ok()
    }
}

/// What one `-o` option does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Set(u32),
    Clear(u32),
    Propagation(u32),
    /// For mount(8) and fstab only; util-linux keeps it out of the kernel.
    Userspace,
    Unsupported(&'static str, &'static str),
    /// The filesystem's own option: goes to mount(2)'s data.
    Data,
}

/// The flag options, as util-linux's libmount maps them (optmap.c's
/// Linux map; mount(8), FILESYSTEM-INDEPENDENT MOUNT OPTIONS).
const OPTIONS: &[(&str, Effect)] = &[
    ("ro", Effect::Set(MS_RDONLY)),
    ("rw", Effect::Clear(MS_RDONLY)),
    ("nosuid", Effect::Set(MS_NOSUID)),
    ("suid", Effect::Clear(MS_NOSUID)),
    ("nodev", Effect::Set(MS_NODEV)),
    ("dev", Effect::Clear(MS_NODEV)),
    ("noexec", Effect::Set(MS_NOEXEC)),
    ("exec", Effect::Clear(MS_NOEXEC)),
    ("sync", Effect::Set(MS_SYNCHRONOUS)),
    ("async", Effect::Clear(MS_SYNCHRONOUS)),
    ("dirsync", Effect::Set(MS_DIRSYNC)),
    ("remount", Effect::Set(MS_REMOUNT)),
    ("bind", Effect::Set(MS_BIND)),
    ("rbind", Effect::Set(MS_BIND | MS_REC)),
    ("noatime", Effect::Set(MS_NOATIME)),
    ("atime", Effect::Clear(MS_NOATIME)),
    ("nodiratime", Effect::Set(MS_NODIRATIME)),
    ("diratime", Effect::Clear(MS_NODIRATIME)),
    ("relatime", Effect::Set(MS_RELATIME)),
    ("norelatime", Effect::Clear(MS_RELATIME)),
    ("strictatime", Effect::Set(MS_STRICTATIME)),
    ("nostrictatime", Effect::Clear(MS_STRICTATIME)),
    ("lazytime", Effect::Set(MS_LAZYTIME)),
    ("nolazytime", Effect::Clear(MS_LAZYTIME)),
    ("mand", Effect::Set(MS_MANDLOCK)),
    ("nomand", Effect::Clear(MS_MANDLOCK)),
    ("silent", Effect::Set(MS_SILENT)),
    ("loud", Effect::Clear(MS_SILENT)),
    ("iversion", Effect::Set(MS_I_VERSION)),
    ("noiversion", Effect::Clear(MS_I_VERSION)),
    ("nosymfollow", Effect::Set(MS_NOSYMFOLLOW)),
    ("symfollow", Effect::Clear(MS_NOSYMFOLLOW)),
    ("shared", Effect::Propagation(MS_SHARED)),
    ("rshared", Effect::Propagation(MS_SHARED | MS_REC)),
    ("slave", Effect::Propagation(MS_SLAVE)),
    ("rslave", Effect::Propagation(MS_SLAVE | MS_REC)),
    ("private", Effect::Propagation(MS_PRIVATE)),
    ("rprivate", Effect::Propagation(MS_PRIVATE | MS_REC)),
    ("unbindable", Effect::Propagation(MS_UNBINDABLE)),
    ("runbindable", Effect::Propagation(MS_UNBINDABLE | MS_REC)),
    ("defaults", Effect::Userspace),
    ("auto", Effect::Userspace),
    ("noauto", Effect::Userspace),
    ("user", Effect::Userspace),
    ("nouser", Effect::Userspace),
    ("users", Effect::Userspace),
    ("owner", Effect::Userspace),
    ("noowner", Effect::Userspace),
    ("group", Effect::Userspace),
    ("nogroup", Effect::Userspace),
    ("nofail", Effect::Userspace),
    // MakeBindOptsSensitive carries it onto the bind mount (mount.go).
    ("_netdev", Effect::Userspace),
];

const NO_LOSETUP: Effect = Effect::Unsupported(
    "loop devices",
    "kiOS has no losetup; attach the file to a loop device first",
);

fn classify(option: &[u8]) -> Effect {
    if let Some((_, effect)) = OPTIONS.iter().find(|(name, _)| name.as_bytes() == option) {
        return *effect;
    }
    // Userspace options with a value, and the `x-` and `X-` namespaces.
    for prefix in [
        &b"x-"[..],
        b"X-",
        b"comment=",
        b"helper=",
        b"uhelper=",
        b"fstab=",
    ] {
        if option.starts_with(prefix) {
            return Effect::Userspace;
        }
    }
    if option == b"loop"
        || option.starts_with(b"loop=")
        || option.starts_with(b"offset=")
        || option.starts_with(b"sizelimit=")
        || option.starts_with(b"encryption=")
    {
        return NO_LOSETUP;
    }
    Effect::Data
}

/// What an argv asks the kernel for.
#[derive(Debug, PartialEq, Eq)]
pub struct MountPlan<'a> {
    pub source: Option<&'a CStr>,
    pub target: &'a CStr,
    pub fstype: Option<&'a CStr>,
    /// mount(2) flags: per-mount and filesystem flags, bind, remount.
    pub flags: u32,
    /// A propagation change (`MS_SHARED`, ... with `MS_REC`), applied last.
    pub propagation: u32,
    /// `--move`: MS_MOVE of SOURCE onto TARGET.
    pub moving: bool,
    /// `--fake`: plan and check, call nothing.
    pub fake: bool,
    pub data: Data,
}

/// One mount(2) call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call<'p> {
    pub source: &'p CStr,
    pub target: &'p CStr,
    pub fstype: &'p CStr,
    pub flags: u32,
    pub data: Option<&'p CStr>,
}

/// What the plan does, for the wording of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    New,
    Bind,
    Remount,
    Move,
    Propagation,
}

impl<'a> MountPlan<'a> {
    fn is_bind(&self) -> bool {
        self.flags & MS_BIND != 0
    }

    fn is_remount(&self) -> bool {
        self.flags & MS_REMOUNT != 0
    }

    pub fn kind(&self) -> Kind {
        if self.moving {
            Kind::Move
        } else if self.is_remount() {
            Kind::Remount
        } else if self.is_bind() {
            Kind::Bind
        } else if self.source.is_none() && self.propagation != 0 {
            Kind::Propagation
        } else {
            Kind::New
        }
    }

    /// The mount(2) calls, in order; the binary stops at the first failure.
    ///
    /// As util-linux: a bind mount (`-o bind`) is MS_BIND (with MS_REC for
    /// `rbind`) and then, when per-mount flags were asked for (`bind,ro`),
    /// MS_REMOUNT|MS_BIND with them, as the kernel ignores them on the
    /// bind itself; `remount` alone replaces the mount's flags with the
    /// given ones (and its filesystem options, unless it is a bind
    /// remount); a propagation change is a call of its own, last.
    pub fn calls(&self) -> impl Iterator<Item = Call<'_>> {
        let mut calls: [Option<Call<'_>>; 3] = [None, None, None];
        let source = self.source.unwrap_or(c"none");
        let fstype = self.fstype.unwrap_or(c"");
        let per_mount = self.flags & PER_MOUNT_FLAGS;
        match self.kind() {
            Kind::Move => {
                calls[0] = Some(Call {
                    source,
                    target: self.target,
                    fstype: c"",
                    flags: MS_MOVE,
                    data: None,
                });
            }
            Kind::Bind => {
                calls[0] = Some(Call {
                    source,
                    target: self.target,
                    fstype: c"",
                    flags: self.flags & (MS_BIND | MS_REC),
                    data: None,
                });
                if per_mount != 0 {
                    calls[1] = Some(Call {
                        source: c"none",
                        target: self.target,
                        fstype: c"",
                        flags: MS_REMOUNT | MS_BIND | per_mount,
                        data: None,
                    });
                }
            }
            Kind::Remount => {
                let bind = self.is_bind();
                calls[0] = Some(Call {
                    source,
                    target: self.target,
                    fstype: if bind { c"" } else { fstype },
                    flags: if bind {
                        MS_REMOUNT | MS_BIND | per_mount
                    } else {
                        self.flags & !MS_REC
                    },
                    data: if bind { None } else { self.data.as_c_str() },
                });
            }
            Kind::New => {
                calls[0] = Some(Call {
                    source,
                    target: self.target,
                    fstype,
                    flags: self.flags & !MS_REC,
                    data: self.data.as_c_str(),
                });
            }
            Kind::Propagation => {}
        }
        if self.propagation != 0 && !self.moving {
            let slot = calls.iter().position(Option::is_none).unwrap_or(2);
            calls[slot] = Some(Call {
                source: c"none",
                target: self.target,
                fstype: c"",
                flags: self.propagation,
                data: None,
            });
        }
        calls.into_iter().flatten()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Types,
    Options,
    ReadOnly,
    ReadWrite,
    Bind,
    Rbind,
    Move,
    Propagation(u32),
    Fake,
    Source,
    Target,
    /// Accepted and without effect here: `-n`, `-c`, `-i`, `-v`, `-s`,
    /// `--options-mode`, `--options-source`, `--options-source-force`.
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

const NO_FSTAB: Opt = Opt::Unsupported("--all", "a kiOS node has no /etc/fstab");
const NO_BLKID: Opt = Opt::Unsupported(
    "mounting by label or UUID",
    "kiOS has no blkid; name the device",
);

/// mount(8)'s options (util-linux 2.38), those with no use on a node
/// answered as unsupported rather than unknown.
const SPECS: &[Spec<Opt>] = &[
    spec(b't', "types", true, Opt::Types),
    spec(b'o', "options", true, Opt::Options),
    spec(b'r', "read-only", false, Opt::ReadOnly),
    spec(b'w', "rw", false, Opt::ReadWrite),
    spec(0, "read-write", false, Opt::ReadWrite),
    spec(b'B', "bind", false, Opt::Bind),
    spec(b'R', "rbind", false, Opt::Rbind),
    spec(b'M', "move", false, Opt::Move),
    spec(0, "make-shared", false, Opt::Propagation(MS_SHARED)),
    spec(
        0,
        "make-rshared",
        false,
        Opt::Propagation(MS_SHARED | MS_REC),
    ),
    spec(0, "make-slave", false, Opt::Propagation(MS_SLAVE)),
    spec(0, "make-rslave", false, Opt::Propagation(MS_SLAVE | MS_REC)),
    spec(0, "make-private", false, Opt::Propagation(MS_PRIVATE)),
    spec(
        0,
        "make-rprivate",
        false,
        Opt::Propagation(MS_PRIVATE | MS_REC),
    ),
    spec(0, "make-unbindable", false, Opt::Propagation(MS_UNBINDABLE)),
    spec(
        0,
        "make-runbindable",
        false,
        Opt::Propagation(MS_UNBINDABLE | MS_REC),
    ),
    spec(b'f', "fake", false, Opt::Fake),
    spec(0, "source", true, Opt::Source),
    spec(0, "target", true, Opt::Target),
    // Newer mount-utils passes `--no-canonicalize` as a mount flag
    // (MakeMountArgsSensitiveWithMountFlags); paths are never rewritten here.
    spec(b'c', "no-canonicalize", false, Opt::Ignored),
    spec(b'n', "no-mtab", false, Opt::Ignored),
    spec(b'i', "internal-only", false, Opt::Ignored),
    spec(b'v', "verbose", false, Opt::Ignored),
    spec(b's', "sloppy", false, Opt::Ignored),
    spec(0, "options-mode", true, Opt::Ignored),
    spec(0, "options-source", true, Opt::Ignored),
    spec(0, "options-source-force", false, Opt::Ignored),
    spec(b'a', "all", false, NO_FSTAB),
    spec(b'F', "fork", false, NO_FSTAB),
    spec(b'O', "test-opts", true, NO_FSTAB),
    spec(b'T', "fstab", true, NO_FSTAB),
    spec(b'L', "label", true, NO_BLKID),
    spec(b'U', "uuid", true, NO_BLKID),
    spec(
        b'N',
        "namespace",
        true,
        Opt::Unsupported("--namespace", "run mount in the namespace instead"),
    ),
    spec(b'h', "help", false, Opt::Help),
    spec(b'V', "version", false, Opt::Version),
];

/// The options of one `-o` argument, applied in order (a later `rw` undoes `ro`).
fn apply_options<'a>(
    list: &'a CStr,
    flags: &mut u32,
    propagation: &mut u32,
    data: &mut Data,
) -> Result<(), UsageError<'a>> {
    for option in list.to_bytes().split(|&b| b == b',') {
        if option.is_empty() {
            continue;
        }
        match classify(option) {
            Effect::Set(bits) => *flags |= bits,
            Effect::Clear(bits) => *flags &= !bits,
            Effect::Propagation(bits) => *propagation = bits,
            Effect::Userspace => {}
            Effect::Unsupported(what, why) => return Err(UsageError::Unsupported { what, why }),
            Effect::Data => data.push(option)?,
        }
    }
    Ok(())
}

/// Parses `args` (argv without argv[0]).
pub fn parse<'a>(args: &[&'a CStr]) -> Result<Parsed<MountPlan<'a>>, UsageError<'a>> {
    let mut flags = 0;
    let mut propagation = 0;
    let mut data = Data::EMPTY;
    let mut fstype = None;
    let mut moving = false;
    let mut fake = false;
    let mut named_source = None;
    let mut named_target = None;
    let mut operands: [Option<&'a CStr>; 2] = [None, None];
    let mut operand_count = 0;
    let mut asked = None;
    walk(args, SPECS, |token| {
        match token {
            Token::Operand(operand) => {
                if operand_count < operands.len() {
                    operands[operand_count] = Some(operand);
                }
                operand_count += 1;
            }
            Token::Option(opt, value) => {
                let value = value.unwrap_or(c"");
                match opt {
                    Opt::Types => fstype = Some(value),
                    Opt::Options => apply_options(value, &mut flags, &mut propagation, &mut data)?,
                    Opt::ReadOnly => flags |= MS_RDONLY,
                    Opt::ReadWrite => flags &= !MS_RDONLY,
                    Opt::Bind => flags |= MS_BIND,
                    Opt::Rbind => flags |= MS_BIND | MS_REC,
                    Opt::Move => moving = true,
                    Opt::Propagation(bits) => propagation = bits,
                    Opt::Fake => fake = true,
                    Opt::Source => named_source = Some(value),
                    Opt::Target => named_target = Some(value),
                    Opt::Ignored => {}
                    Opt::Unsupported(what, why) => {
                        return Err(UsageError::Unsupported { what, why })
                    }
                    Opt::Help => asked = Some(Parsed::Help),
                    Opt::Version => asked = Some(Parsed::Version),
                }
            }
        }
        Ok(())
    })?;
    if let Some(asked) = asked {
        return Ok(asked);
    }
    if operand_count > operands.len() {
        return Err(UsageError::BadUsage);
    }
    let (source, target) = match (named_source, named_target, operands) {
        (source, Some(target), [None, None]) => (source, target),
        (Some(source), None, [Some(target), None]) => (Some(source), target),
        (None, Some(target), [Some(source), None]) => (Some(source), target),
        (None, None, [Some(source), Some(target)]) => (Some(source), target),
        (None, None, [Some(only), None]) => (None, only),
        (None, None, [None, None]) => {
            return Err(UsageError::Unsupported {
                what: "listing mounts",
                why: "read /proc/self/mountinfo",
            })
        }
        _ => return Err(UsageError::BadUsage),
    };
    let plan = MountPlan {
        source,
        target,
        fstype,
        flags,
        propagation,
        moving,
        fake,
        data,
    };
    // util-linux completes a lone TARGET (or SOURCE) from /etc/fstab;
    // only a remount or a propagation change needs nothing more.
    let needs_source = match plan.kind() {
        Kind::Remount | Kind::Propagation => false,
        Kind::New | Kind::Bind | Kind::Move => true,
    };
    if needs_source && plan.source.is_none() {
        return Err(UsageError::NotInFstab(target));
    }
    if plan.kind() == Kind::New && plan.fstype.is_none() {
        return Err(UsageError::Unsupported {
            what: "mounting without -t",
            why: "kiOS's mount does not probe filesystem types; name one with -t",
        });
    }
    Ok(Parsed::Run(plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn plan<'a>(args: &[&'a CStr]) -> MountPlan<'a> {
        match parse(args) {
            Ok(Parsed::Run(plan)) => plan,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn calls(args: &[&CStr]) -> Vec<(String, String, String, u32, Option<String>)> {
        let plan = plan(args);
        let text = |s: &CStr| s.to_str().unwrap().to_string();
        plan.calls()
            .map(|call| {
                (
                    text(call.source),
                    text(call.target),
                    text(call.fstype),
                    call.flags,
                    call.data.map(text),
                )
            })
            .collect()
    }

    fn call(
        source: &str,
        target: &str,
        fstype: &str,
        flags: u32,
        data: Option<&str>,
    ) -> (String, String, String, u32, Option<String>) {
        (
            source.into(),
            target.into(),
            fstype.into(),
            flags,
            data.map(String::from),
        )
    }

    const POD_DIR: &str = "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir/cache";
    const POD_DIR_C: &CStr = c"/var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir/cache";

    /// Kubernetes 1.20, pkg/volume/emptydir/empty_dir.go setupTmpfs, through
    /// staging/src/k8s.io/mount-utils MakeMountArgsSensitive: a memory
    /// emptyDir, a Secret, a projected token: `-t tmpfs tmpfs DIR`.
    #[test]
    fn kubelet_1_20_memory_empty_dir() {
        assert_eq!(
            calls(&[c"-t", c"tmpfs", c"tmpfs", POD_DIR_C]),
            [call("tmpfs", POD_DIR, "tmpfs", 0, None)]
        );
    }

    /// The same with a size limit (1.20 behind SizeMemoryBackedVolumes;
    /// by default in newer kubelets, which may add `noswap` too):
    /// filesystem options go to the data argument untouched.
    #[test]
    fn memory_empty_dir_with_size_limit() {
        assert_eq!(
            calls(&[
                c"-t",
                c"tmpfs",
                c"-o",
                c"size=67108864",
                c"tmpfs",
                POD_DIR_C
            ]),
            [call("tmpfs", POD_DIR, "tmpfs", 0, Some("size=67108864"))]
        );
        assert_eq!(
            calls(&[
                c"-t",
                c"tmpfs",
                c"-o",
                c"size=67108864,noswap",
                c"tmpfs",
                POD_DIR_C
            ]),
            [call(
                "tmpfs",
                POD_DIR,
                "tmpfs",
                0,
                Some("size=67108864,noswap")
            )]
        );
    }

    /// empty_dir.go setupHugepages: `-t hugetlbfs -o pagesize=2Mi nodev DIR`.
    #[test]
    fn hugepages_empty_dir() {
        assert_eq!(
            calls(&[c"-t", c"hugetlbfs", c"-o", c"pagesize=2Mi", c"nodev", c"/d"]),
            [call("nodev", "/d", "hugetlbfs", 0, Some("pagesize=2Mi"))]
        );
    }

    /// mount.go MakeBindOptsSensitive and mount_linux.go MountSensitive: a
    /// bind mount is `-o bind SRC DST`, then `-o bind,remount,OPTS SRC DST`
    /// (pkg/volume/util/subpath/subpath_linux.go doBindSubPath binds
    /// /proc/<pid>/fd/<n>; local, iSCSI, FC, RBD... volumes bind their
    /// global mount).
    #[test]
    fn bind_then_bind_remount_read_only() {
        assert_eq!(
            calls(&[c"-o", c"bind", c"/proc/42/fd/7", c"/sub"]),
            [call("/proc/42/fd/7", "/sub", "", MS_BIND, None)]
        );
        assert_eq!(
            calls(&[c"-o", c"bind,remount,ro", c"/proc/42/fd/7", c"/sub"]),
            [call(
                "/proc/42/fd/7",
                "/sub",
                "",
                MS_REMOUNT | MS_BIND | MS_RDONLY,
                None
            )]
        );
        // `_netdev` is carried onto the bind (MakeBindOptsSensitive) but is
        // userspace-only; without `ro` the remount is `bind,remount` alone.
        assert_eq!(
            calls(&[c"-o", c"bind,_netdev", c"/g", c"/p"]),
            [call("/g", "/p", "", MS_BIND, None)]
        );
        assert_eq!(
            calls(&[c"-o", c"bind,remount", c"/g", c"/p"]),
            [call("/g", "/p", "", MS_REMOUNT | MS_BIND, None)]
        );
    }

    /// Newest mount-utils bindMountSensitive appends the source's statfs
    /// flags to the remount: `-o bind,remount,ro,nodev,noexec,nosuid,
    /// noatime,relatime,nodiratime` (any subset, any order).
    #[test]
    fn newest_bind_remount_keeps_the_source_flags() {
        let all =
            MS_RDONLY | MS_NODEV | MS_NOEXEC | MS_NOSUID | MS_NOATIME | MS_RELATIME | MS_NODIRATIME;
        assert_eq!(
            calls(&[
                c"-o",
                c"bind,remount,ro,nodev,noexec,nosuid,noatime,relatime,nodiratime",
                c"/g",
                c"/p"
            ]),
            [call("/g", "/p", "", MS_REMOUNT | MS_BIND | all, None)]
        );
    }

    /// MakeMountArgsSensitiveWithMountFlags: mount flags come first, e.g.
    /// `--no-canonicalize` (mount_linux_test.go), also as `-c`.
    #[test]
    fn newest_mount_flags_before_the_type() {
        let expected = [call("tmpfs", "/t", "tmpfs", MS_NOSUID, Some("mode=0755"))];
        for flag in [c"--no-canonicalize", c"-c"] {
            assert_eq!(
                calls(&[
                    flag,
                    c"-t",
                    c"tmpfs",
                    c"-o",
                    c"nosuid,mode=0755",
                    c"tmpfs",
                    c"/t"
                ]),
                expected
            );
        }
    }

    /// Sensitive options are joined into the same `-o` after the others
    /// (MakeMountArgsSensitive): they reach the data argument, and the
    /// plan's Debug never shows them.
    #[test]
    fn sensitive_options_go_to_data_and_are_never_shown() {
        let plan = plan(&[
            c"-t",
            c"cifs",
            c"-o",
            c"dir_mode=0777,ro,username=u,password=s3cret",
            c"//server/share",
            c"/p",
        ]);
        assert_eq!(plan.flags, MS_RDONLY);
        assert_eq!(
            plan.data.as_bytes(),
            b"dir_mode=0777,username=u,password=s3cret"
        );
        assert!(!format!("{plan:?}").contains("s3cret"));
    }

    #[test]
    fn flags_map_to_mount_flags_and_the_rest_is_data() {
        let plan = plan(&[
            c"-t",
            c"tmpfs",
            c"-o",
            c"defaults,ro,rw,nosuid,nodev,noexec,relatime,x-kios.note=1,mode=1777",
            c"-o",
            c"sync,uid=0",
            c"tmpfs",
            c"/t",
        ]);
        assert_eq!(
            plan.flags,
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME | MS_SYNCHRONOUS
        );
        assert_eq!(plan.data.as_bytes(), b"mode=1777,uid=0");
        assert_eq!(plan.data.as_c_str(), Some(c"mode=1777,uid=0"));
    }

    #[test]
    fn a_bind_with_per_mount_flags_remounts_after_binding() {
        assert_eq!(
            calls(&[c"--bind", c"-r", c"/a", c"/b"]),
            [
                call("/a", "/b", "", MS_BIND, None),
                call("none", "/b", "", MS_REMOUNT | MS_BIND | MS_RDONLY, None),
            ]
        );
        assert_eq!(
            calls(&[c"-o", c"rbind,nosuid", c"/a", c"/b"]),
            [
                call("/a", "/b", "", MS_BIND | MS_REC, None),
                call("none", "/b", "", MS_REMOUNT | MS_BIND | MS_NOSUID, None),
            ]
        );
        assert_eq!(
            calls(&[c"-R", c"/a", c"/b"]),
            [call("/a", "/b", "", MS_BIND | MS_REC, None)]
        );
    }

    #[test]
    fn remount_of_a_target_alone() {
        assert_eq!(
            calls(&[c"-o", c"remount,ro,size=1m", c"/t"]),
            [call(
                "none",
                "/t",
                "",
                MS_REMOUNT | MS_RDONLY,
                Some("size=1m")
            )]
        );
    }

    #[test]
    fn propagation_move_and_explicit_source_and_target() {
        assert_eq!(
            calls(&[c"--make-rshared", c"/"]),
            [call("none", "/", "", MS_SHARED | MS_REC, None)]
        );
        assert_eq!(
            calls(&[c"-o", c"rprivate", c"/mnt"]),
            [call("none", "/mnt", "", MS_PRIVATE | MS_REC, None)]
        );
        assert_eq!(
            calls(&[c"--bind", c"--make-private", c"/a", c"/b"]),
            [
                call("/a", "/b", "", MS_BIND, None),
                call("none", "/b", "", MS_PRIVATE, None),
            ]
        );
        assert_eq!(
            calls(&[c"--move", c"/a", c"/b"]),
            [call("/a", "/b", "", MS_MOVE, None)]
        );
        assert_eq!(
            calls(&[c"--types=proc", c"--source", c"proc", c"--target=/p"]),
            [call("proc", "/p", "proc", 0, None)]
        );
        assert_eq!(
            calls(&[c"-tproc", c"-onosuid", c"--", c"proc", c"/p"]),
            [call("proc", "/p", "proc", MS_NOSUID, None)]
        );
    }

    #[test]
    fn fake_plans_without_calling() {
        assert!(plan(&[c"-f", c"-t", c"tmpfs", c"tmpfs", c"/t"]).fake);
    }

    #[test]
    fn what_is_refused_and_why() {
        assert_eq!(parse(&[c"/t"]), Err(UsageError::NotInFstab(c"/t")));
        assert_eq!(
            parse(&[c"-o", c"bind", c"/t"]),
            Err(UsageError::NotInFstab(c"/t"))
        );
        assert_eq!(parse(&[c"a", c"b", c"c"]), Err(UsageError::BadUsage));
        assert!(matches!(
            parse(&[]),
            Err(UsageError::Unsupported {
                what: "listing mounts",
                ..
            })
        ));
        assert!(matches!(
            parse(&[c"/dev/vdb", c"/mnt"]),
            Err(UsageError::Unsupported {
                what: "mounting without -t",
                ..
            })
        ));
        assert!(matches!(
            parse(&[c"-o", c"loop", c"-t", c"ext4", c"/f.img", c"/mnt"]),
            Err(UsageError::Unsupported {
                what: "loop devices",
                ..
            })
        ));
        assert!(matches!(
            parse(&[c"-a"]),
            Err(UsageError::Unsupported { what: "--all", .. })
        ));
        assert_eq!(
            parse(&[c"--bogus", c"a", c"b"]),
            Err(UsageError::UnrecognizedOption(b"--bogus"))
        );
        assert_eq!(
            parse(&[c"-Z", c"a", c"b"]),
            Err(UsageError::InvalidOption(b'Z'))
        );
        assert_eq!(parse(&[c"-t"]), Err(UsageError::MissingShortValue(b't')));
        let long = "x".repeat(DATA_MAX);
        let long = std::ffi::CString::new(long).unwrap();
        assert_eq!(
            parse(&[c"-t", c"tmpfs", c"-o", &long, c"tmpfs", c"/t"]),
            Err(UsageError::OptionsTooLong)
        );
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(&[c"--help"]), Ok(Parsed::Help));
        assert_eq!(parse(&[c"-V"]), Ok(Parsed::Version));
    }
}
