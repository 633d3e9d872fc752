//! `/proc/self/mountinfo`: the mounts to take away at shutdown.

/// A mount point path, with mountinfo's octal escapes (`\040`) decoded.
pub type MountPoint = heapless::String<256>;

/// One mount: where, and its filesystem type.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Mount<'a> {
    pub point: MountPoint,
    pub fstype: &'a [u8],
}

impl Mount<'_> {
    /// Filesystems whose unmount or sync waits on a server (or a FUSE
    /// daemon) that may never answer.
    pub fn is_remote(&self) -> bool {
        matches!(
            self.fstype,
            b"nfs" | b"nfs4" | b"cifs" | b"smb3" | b"ceph" | b"glusterfs" | b"fuse" | b"fuseblk"
        ) || self.fstype.starts_with(b"fuse.")
    }
}

/// The mounts, newest (children) first. A `content` cut short by the
/// reader loses only its last, partial line; malformed lines and
/// over-long paths are skipped.
pub fn mounts_children_first(content: &[u8], truncated: bool) -> impl Iterator<Item = Mount<'_>> {
    let whole = match truncated {
        true => &content[..content.iter().rposition(|&b| b == b'\n').unwrap_or(0)],
        false => content,
    };
    whole.rsplit(|&b| b == b'\n').filter_map(parse_line)
}

/// Fields: id, parent id, major:minor, root, mount point, options,
/// optional fields up to a `-`, then the filesystem type.
fn parse_line(line: &[u8]) -> Option<Mount<'_>> {
    let mut fields = crate::text::split_bytes(line, b' ');
    let point = decode(fields.nth(4)?)?;
    let fstype = fields.skip_while(|field| *field != b"-").nth(1)?;
    Some(Mount { point, fstype })
}

fn decode(field: &[u8]) -> Option<MountPoint> {
    let mut out = heapless::Vec::<u8, 256>::new();
    let mut rest = field;
    while let Some((&byte, tail)) = rest.split_first() {
        // Slice patterns, not `tail[3..]`: no panic path (and its location) in the binary.
        let escaped = match tail {
            [a, b, c, after @ ..]
                if byte == b'\\' && [a, b, c].iter().all(|d| (b'0'..=b'7').contains(d)) =>
            {
                Some((((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'), after))
            }
            _ => None,
        };
        match escaped {
            Some((value, after)) => {
                out.push(value).ok()?;
                rest = after;
            }
            None => {
                out.push(byte).ok()?;
                rest = tail;
            }
        }
    }
    if !out.starts_with(b"/") {
        return None;
    }
    let text = core::str::from_utf8(&out).ok()?;
    MountPoint::try_from(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(content: &[u8], truncated: bool) -> Vec<(String, String)> {
        mounts_children_first(content, truncated)
            .map(|m| {
                (
                    m.point.to_string(),
                    String::from_utf8_lossy(m.fstype).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn mounts_children_first_with_escapes_decoded() {
        let content = b"1 0 0:2 / / ro,relatime shared:1 - rootfs rootfs rw\n\
22 1 0:5 / /dev rw,nosuid shared:2 master:3 - devtmpfs devtmpfs rw\n\
40 22 0:30 / /var/lib/my\\040dir rw - fuse.sshfs host:/ rw\n\
garbage\n\n";
        assert_eq!(
            points(content, false),
            [
                ("/var/lib/my dir".into(), "fuse.sshfs".into()),
                ("/dev".into(), "devtmpfs".into()),
                ("/".into(), "rootfs".into()),
            ]
        );
    }

    #[test]
    fn a_cut_short_read_loses_only_its_partial_line() {
        let content = b"1 0 0:2 / / ro - rootfs rootfs rw\n22 1 0:5 / /dev rw - devtmpfs devtmpfs rw\n40 22 0:30 / /var/li";
        assert_eq!(
            points(content, true),
            [
                ("/dev".into(), "devtmpfs".into()),
                ("/".into(), "rootfs".into())
            ]
        );
        assert!(points(b"1 0 0:2 / / ro - rootfs", true).is_empty());
    }

    #[test]
    fn remote_filesystems_are_known_by_type() {
        let mount = |fstype: &'static [u8]| Mount {
            point: MountPoint::try_from("/x").unwrap(),
            fstype,
        };
        for remote in [
            &b"nfs"[..],
            b"nfs4",
            b"cifs",
            b"fuse.sshfs",
            b"fuse",
            b"ceph",
        ] {
            assert!(mount(remote).is_remote(), "{remote:?}");
        }
        for local in [&b"ext4"[..], b"tmpfs", b"overlay", b"fusectl"] {
            assert!(!mount(local).is_remote(), "{local:?}");
        }
    }

    #[test]
    fn garbage_gives_nothing_and_never_panics() {
        assert!(points(b"", false).is_empty());
        assert!(points(b"\\\\\\ \\1 \\0 a b c d e f\n", false).is_empty());
        assert!(points(b"1 0 0:1 / /x rw", false).is_empty());
        let long_path = format!("1 0 0:1 / /{} rw - tmpfs t rw", "x".repeat(400));
        assert!(points(long_path.as_bytes(), false).is_empty());
    }
}
