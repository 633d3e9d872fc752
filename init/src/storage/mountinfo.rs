//! `/proc/self/mountinfo`: the mount points to unmount at shutdown.

/// The most mount points a shutdown handles; a node with more pods than
/// that leaves the rest to the kernel's final sync.
pub const MAX_MOUNTS: usize = 512;

/// A mount point path, with mountinfo's octal escapes (`\040`) decoded.
pub type MountPoint = heapless::String<256>;

/// The mount points in mountinfo order (parents before children).
/// Malformed lines and over-long paths are skipped.
pub fn mount_points(content: &[u8]) -> heapless::Vec<MountPoint, MAX_MOUNTS> {
    let mut points = heapless::Vec::new();
    for line in crate::text::split_bytes(content, b'\n') {
        // Fields: id, parent id, major:minor, root, mount point, ...
        let Some(field) = crate::text::split_bytes(line, b' ').nth(4) else {
            continue;
        };
        if let Some(point) = decode(field) {
            if points.push(point).is_err() {
                break;
            }
        }
    }
    points
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

    #[test]
    fn mount_points_in_order_with_escapes_decoded() {
        let content = b"1 0 0:2 / / ro,relatime shared:1 - rootfs rootfs rw\n\
22 1 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw\n\
40 22 0:30 / /var/lib/my\\040dir rw - tmpfs tmpfs rw\n\
garbage\n\n";
        let points = mount_points(content);
        let points: Vec<&str> = points.iter().map(|p| p.as_str()).collect();
        assert_eq!(points, ["/", "/dev", "/var/lib/my dir"]);
    }

    #[test]
    fn garbage_gives_nothing_and_never_panics() {
        assert!(mount_points(b"").is_empty());
        assert!(mount_points(b"\\\\\\ \\1 \\0 a b c d e f\n").is_empty());
        let long_path = format!("1 0 0:1 / /{} rw - tmpfs t rw", "x".repeat(400));
        assert!(mount_points(long_path.as_bytes()).is_empty());
    }
}
