//! The order of release versions: the UAPI Version Format Specification's,
//! which systemd implements as `strverscmp_improved()` and systemd-boot
//! sorts its entries by (newest first). An update is newer when this
//! order says so, so the entry it writes is the one systemd-boot boots.
//!
//! A version is cut into segments, each numeric (compared by value,
//! leading zeros ignored) or alphabetic (compared as ASCII, a longer one
//! newer when one is a prefix of the other), each with an optional prefix:
//! `~` (a pre-release: older than anything else, even the end), `-`,
//! `^`, `.` (older to newer, and all older than no prefix). Characters
//! other than `a-zA-Z0-9~-^.` only separate segments. Where one version
//! ends and the other goes on, the longer is newer (unless it goes on
//! with `~`).
//!
//! This is systemd's comparison as it stands (and the specification's):
//! the systemd-boot 252 on the disk is older, and its copy may order a few
//! corner cases differently (an empty version; a segment of only zeros
//! against letters, `1.0` and `1.a`), which release versions
//! (`a-zA-Z0-9._~`, never empty) are unlikely to meet.
//!
//! # References
//!  - <https://uapi-group.org/specifications/specs/version_format_specification/>
//!  - systemd `src/fundamental/string-util-fundamental.c`,
//!    `strverscmp_improved()`, and its tests in `src/test/test-string-util.c`

use core::cmp::Ordering;

/// How version `a` compares with version `b` (`Greater`: `a` is newer).
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        // Drop leading characters that are no part of a version.
        a = skip_invalid(a);
        b = skip_invalid(b);

        // `~`: a pre-release, older than anything, the end included.
        if at(a) == b'~' || at(b) == b'~' {
            let order = (at(a) != b'~').cmp(&(at(b) != b'~'));
            if order.is_ne() {
                return order;
            }
            a = &a[1..];
            b = &b[1..];
        }

        // One has ended: the longer is newer (the end, NUL in C, sorts first).
        if a.is_empty() || b.is_empty() {
            return at(a).cmp(&at(b));
        }

        // `-`, `^` and `.` prefixes, each older than no prefix.
        for prefix in [b'-', b'^', b'.'] {
            if at(a) == prefix || at(b) == prefix {
                let order = (at(a) != prefix).cmp(&(at(b) != prefix));
                if order.is_ne() {
                    return order;
                }
                a = &a[1..];
                b = &b[1..];
            }
        }

        let (segment_a, segment_b);
        if at(a).is_ascii_digit() || at(b).is_ascii_digit() {
            segment_a = leading(a, u8::is_ascii_digit);
            segment_b = leading(b, u8::is_ascii_digit);
            // A numeric segment is newer than none (an alphabetic one).
            let order = (segment_a > 0).cmp(&(segment_b > 0));
            if order.is_ne() {
                return order;
            }
            // Leading zeros do not count (`00123` is `123`); then more
            // digits is a larger number, and the same count compares as text.
            let value_a = trim_zeros(&a[..segment_a]);
            let value_b = trim_zeros(&b[..segment_b]);
            let order = value_a.len().cmp(&value_b.len()).then(value_a.cmp(value_b));
            if order.is_ne() {
                return order;
            }
        } else {
            segment_a = leading(a, u8::is_ascii_alphabetic);
            segment_b = leading(b, u8::is_ascii_alphabetic);
            let common = segment_a.min(segment_b);
            let order = a[..common]
                .cmp(&b[..common])
                .then(segment_a.cmp(&segment_b));
            if order.is_ne() {
                return order;
            }
        }
        a = &a[segment_a..];
        b = &b[segment_b..];
    }
}

/// The first byte, or 0 (C's NUL) at the end.
fn at(text: &[u8]) -> u8 {
    text.first().copied().unwrap_or(0)
}

fn is_version_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'~' | b'-' | b'^' | b'.')
}

fn skip_invalid(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|&byte| is_version_char(byte))
        .unwrap_or(text.len());
    &text[start..]
}

fn leading(text: &[u8], class: fn(&u8) -> bool) -> usize {
    text.iter()
        .position(|byte| !class(byte))
        .unwrap_or(text.len())
}

fn trim_zeros(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|&byte| byte != b'0')
        .unwrap_or(text.len());
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// systemd's `test_strverscmp_improved_one`: both orders and equality.
    fn newer(newer: &str, older: &str) {
        assert_eq!(compare(newer, newer), Ordering::Equal, "{newer}");
        assert_eq!(compare(older, older), Ordering::Equal, "{older}");
        assert_eq!(
            compare(newer, older),
            Ordering::Greater,
            "{newer} > {older}"
        );
        assert_eq!(compare(older, newer), Ordering::Less, "{older} < {newer}");
    }

    #[test]
    fn systemds_ordered_list_oldest_first() {
        let versions = [
            "~1",
            "",
            "ab",
            "abb",
            "abc",
            "0001",
            "002",
            "12",
            "122",
            "122.9",
            "123~rc1",
            "123",
            "123-a",
            "123-a.1",
            "123-a1",
            "123-a1.1",
            "123-3",
            "123-3.1",
            "123^patch1",
            "123^1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124",
        ];
        for (at, older) in versions.iter().enumerate() {
            for newer_one in &versions[at + 1..] {
                newer(newer_one, older);
            }
        }
    }

    #[test]
    fn systemds_pairs() {
        for (a, b) in [
            ("123.45-67.89", "123.45-67.88"),
            ("123.45-67.89a", "123.45-67.89"),
            ("123.45-67.89", "123.45-67.ab"),
            ("123.45-67.89", "123.45-67.9"),
            ("123.45-67.89", "123.45-67"),
            ("123.45-67.89", "123.45-66.89"),
            ("123.45-67.89", "123.45-9.99"),
            ("123.45-67.89", "123.42-99.99"),
            ("123.45-67.89", "123-99.99"),
            // `~`: pre-releases.
            ("123.45-67.89", "123~rc1-99.99"),
            ("123-45.67.89", "123~rc1-99.99"),
            ("123~rc2-67.89", "123~rc1-99.99"),
            ("123^aa2-67.89", "123~rc1-99.99"),
            ("123aa2-67.89", "123~rc1-99.99"),
            // `-`: version and release.
            ("123.45-67.89", "123-99.99"),
            ("123^aa2-67.89", "123-99.99"),
            ("123aa2-67.89", "123-99.99"),
            // `^`: patch releases.
            ("123.45-67.89", "123^45-67.89"),
            ("123^aa2-67.89", "123^aa1-99.99"),
            ("123aa2-67.89", "123^aa2-67.89"),
            // `.`: point releases.
            ("123aa2-67.89", "123.aa2-67.89"),
            ("123.ab2-67.89", "123.aa2-67.89"),
        ] {
            newer(a, b);
        }
        // Characters outside the alphabet only separate.
        assert_eq!(compare("123_aa2-67.89", "123aa+2-67.89"), Ordering::Equal);
        // Corner cases.
        for (a, b, order) in [
            ("123.", "123", Ordering::Greater),
            ("12_3", "123", Ordering::Less),
            ("12_3", "12", Ordering::Greater),
            ("12_3", "12.3", Ordering::Greater),
            ("123.0", "123", Ordering::Greater),
            ("123_0", "123", Ordering::Greater),
            ("123..0", "123.0", Ordering::Less),
            ("0_", "0", Ordering::Equal),
            ("_0_", "0", Ordering::Equal),
            ("", "_", Ordering::Equal),
            ("", "~", Ordering::Greater),
            ("~", "~", Ordering::Equal),
        ] {
            assert_eq!(compare(a, b), order, "{a} {b}");
        }
    }

    #[test]
    fn rpms_cases_as_systemd_keeps_them() {
        for (a, b, order) in [
            ("1.0", "2.0", Ordering::Less),
            ("2.0", "2.0.1", Ordering::Less),
            ("2.0.1a", "2.0.1", Ordering::Greater),
            ("5.5p1", "5.5p10", Ordering::Less),
            ("10xyz", "10.1xyz", Ordering::Greater),
            ("xyz10", "xyz10.1", Ordering::Less),
            ("xyz.4", "8", Ordering::Less),
            ("6.0.rc1", "6.0", Ordering::Greater),
            ("10b2", "10a1", Ordering::Greater),
            ("1.0a", "1.0aa", Ordering::Less),
            ("10.0001", "10.1", Ordering::Equal),
            ("10.0001", "10.0039", Ordering::Less),
            ("4.999.9", "5.0", Ordering::Less),
            ("2.0", "2_0", Ordering::Less),
            ("a+", "a_", Ordering::Equal),
            ("1.0~rc1~git123", "1.0~rc1", Ordering::Less),
            ("1.0^", "1.0", Ordering::Greater),
            ("1.0^git1", "1.01", Ordering::Less),
            ("1.0^20160101", "1.0.1", Ordering::Less),
            ("1.0~rc1^git1", "1.0~rc1", Ordering::Greater),
            ("1.0^git1~pre", "1.0^git1", Ordering::Less),
            ("1b.fc17", "1.fc17", Ordering::Greater),
        ] {
            assert_eq!(compare(a, b), order, "{a} {b}");
            assert_eq!(compare(b, a), order.reverse(), "{b} {a}");
        }
    }

    #[test]
    fn kios_release_versions() {
        newer("2", "1");
        newer("10", "9");
        newer("1.10", "1.9");
        newer("1.0.1", "1.0");
        newer("1.0", "1.0~rc2");
        newer("1.0~rc2", "1.0~rc1");
        newer("2024.10.1", "2024.9.30");
        newer("1.0a", "1.0");
        assert_eq!(compare("1.01", "1.1"), Ordering::Equal);
        newer("1.0", "1.a");
        newer("1", "");
        // `_` separates like nothing at all: a segment with no prefix is newer.
        assert_eq!(compare("1_0", "1.0"), Ordering::Greater);
    }
}
