//! The bundle's manifest (`kios_abi::update_bundle`): `KEY=value` lines,
//! os-release's syntax without quotes. Empty lines and `#` comments are
//! skipped and unknown keys ignored; a key given twice, a line without
//! `=`, a missing or malformed value is an error naming it. And the
//! running release's version, from os-release's `IMAGE_VERSION`.

use kios_abi::update_bundle::{key, FORMAT};

use crate::guid::{hex_digit, Guid};

/// The most a manifest may hold.
pub const MAX_BYTES: usize = 4096;
/// The longest release version (the disk builder's limit too).
pub const MAX_VERSION: usize = 64;
/// An entry's boot tries.
pub const TRIES: core::ops::RangeInclusive<u32> = 1..=9;

/// A manifest's values, checked one by one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Manifest<'a> {
    pub version: &'a str,
    pub arch: &'a str,
    pub uki_size: u64,
    pub uki_sha256: [u8; 32],
    pub root_size: u64,
    pub root_sha256: [u8; 32],
    /// As written (lowercase) and as the GPT stores it.
    pub root_partuuid_text: &'a str,
    pub root_partuuid: Guid,
    pub boot_tries: u32,
}

/// Why a manifest was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ManifestError<'a> {
    NotText,
    /// The 1-based number of a line that is neither empty, a comment nor
    /// `KEY=value`.
    NotKeyValue(usize),
    Repeated(&'a str),
    /// The bundle's format, when it is not [`FORMAT`].
    Format(&'a str),
    Missing(&'static str),
    Invalid {
        key: &'static str,
        value: &'a str,
        /// What the value must be.
        expected: &'static str,
    },
}

/// The keys a manifest must have, checked in this order.
const REQUIRED: [&str; 9] = [
    key::FORMAT,
    key::VERSION,
    key::ARCH,
    key::UKI_SIZE,
    key::UKI_SHA256,
    key::ROOT_SIZE,
    key::ROOT_SHA256,
    key::ROOT_PARTUUID,
    key::BOOT_TRIES,
];

/// Parses and checks a manifest's text.
pub fn parse(bytes: &[u8]) -> Result<Manifest<'_>, ManifestError<'_>> {
    let text = core::str::from_utf8(bytes).map_err(|_| ManifestError::NotText)?;
    let mut values: [Option<&str>; REQUIRED.len()] = [None; REQUIRED.len()];
    for (number, line) in (1..).zip(text.lines()) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or(ManifestError::NotKeyValue(number))?;
        let earlier = text.lines().take(number - 1);
        if earlier
            .filter_map(|earlier| earlier.split_once('='))
            .any(|(earlier, _)| earlier == name)
        {
            return Err(ManifestError::Repeated(name));
        }
        if let Some(at) = REQUIRED.iter().position(|known| *known == name) {
            values[at] = Some(value);
        }
    }
    let [format, version, arch, uki_size, uki_sha256, root_size, root_sha256, partuuid, tries] =
        values;
    let format = format.ok_or(ManifestError::Missing(key::FORMAT))?;
    if format != FORMAT {
        return Err(ManifestError::Format(format));
    }
    let version = required(key::VERSION, version)?;
    if !is_version(version) {
        return Err(invalid(
            key::VERSION,
            version,
            "1 to 64 of a-z, A-Z, 0-9, `.`, `_` and `~`",
        ));
    }
    let arch = required(key::ARCH, arch)?;
    if arch.is_empty() {
        return Err(invalid(key::ARCH, arch, "amd64 or arm64"));
    }
    let root_partuuid_text = required(key::ROOT_PARTUUID, partuuid)?;
    let tries_text = required(key::BOOT_TRIES, tries)?;
    let boot_tries = match decimal(tries_text) {
        Some(tries) if tries <= u64::from(*TRIES.end()) && tries >= u64::from(*TRIES.start()) => {
            tries as u32
        }
        _ => return Err(invalid(key::BOOT_TRIES, tries_text, "1 to 9")),
    };
    Ok(Manifest {
        version,
        arch,
        uki_size: size(key::UKI_SIZE, uki_size)?,
        uki_sha256: sha256(key::UKI_SHA256, uki_sha256)?,
        root_size: size(key::ROOT_SIZE, root_size)?,
        root_sha256: sha256(key::ROOT_SHA256, root_sha256)?,
        root_partuuid_text,
        root_partuuid: Guid::parse(root_partuuid_text).ok_or_else(|| {
            invalid(
                key::ROOT_PARTUUID,
                root_partuuid_text,
                "a lowercase GUID (8-4-4-4-12 hex digits)",
            )
        })?,
        boot_tries,
    })
}

/// A release version the boot entries can carry: `a-zA-Z0-9._~`, 1 to 64.
pub fn is_version(version: &str) -> bool {
    (1..=MAX_VERSION).contains(&version.len())
        && version
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._~".contains(&byte))
}

/// The running release's version: `IMAGE_VERSION=` in os-release (its
/// value may be quoted, as os-release allows).
pub fn image_version(os_release: &[u8]) -> Option<&str> {
    let text = core::str::from_utf8(os_release).ok()?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("IMAGE_VERSION="))?;
    let value = ['"', '\'']
        .iter()
        .find_map(|&quote| value.strip_prefix(quote)?.strip_suffix(quote))
        .unwrap_or(value);
    (!value.is_empty()).then_some(value)
}

fn required<'a>(key: &'static str, value: Option<&'a str>) -> Result<&'a str, ManifestError<'a>> {
    value.ok_or(ManifestError::Missing(key))
}

fn invalid<'a>(key: &'static str, value: &'a str, expected: &'static str) -> ManifestError<'a> {
    ManifestError::Invalid {
        key,
        value,
        expected,
    }
}

fn size<'a>(key: &'static str, value: Option<&'a str>) -> Result<u64, ManifestError<'a>> {
    let value = required(key, value)?;
    decimal(value)
        .filter(|size| *size > 0)
        .ok_or_else(|| invalid(key, value, "a byte count above 0, in decimal"))
}

fn sha256<'a>(key: &'static str, value: Option<&'a str>) -> Result<[u8; 32], ManifestError<'a>> {
    let text = required(key, value)?;
    let bad = || invalid(key, text, "64 lowercase hex digits");
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = hex_digit(pair[0]).ok_or_else(bad)? << 4 | hex_digit(pair[1]).ok_or_else(bad)?;
    }
    Ok(hash)
}

/// Decimal digits only (no sign, no spaces), within u64.
fn decimal(digits: &str) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u64, |number, byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit < 10)?;
        number.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub const UKI_SHA: &str = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3";
    pub const ROOT_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// A valid manifest's text with `changes` (`KEY=value` replacing the
    /// key's line; `KEY` alone removing it) applied.
    pub fn manifest_with(changes: &[&str]) -> String {
        let mut lines = vec![
            "KIOS_UPDATE_FORMAT=1".to_string(),
            "VERSION=2.0".into(),
            "ARCH=amd64".into(),
            "UKI_SIZE=3".into(),
            format!("UKI_SHA256={UKI_SHA}"),
            "ROOT_SIZE=4".into(),
            format!("ROOT_SHA256={ROOT_SHA}"),
            "ROOT_PARTUUID=9f86d081-884c-7d65-9a2f-eaa0c55ad015".into(),
            "BOOT_TRIES=3".into(),
        ];
        for change in changes {
            let name = change.split('=').next().unwrap();
            let at = lines
                .iter()
                .position(|line| line.split('=').next() == Some(name));
            match (at, change.contains('=')) {
                (Some(at), true) => lines[at] = change.to_string(),
                (Some(at), false) => {
                    lines.remove(at);
                }
                (None, _) => lines.push(change.to_string()),
            }
        }
        lines.join("\n") + "\n"
    }

    #[test]
    fn a_valid_manifest_gives_every_value() {
        let text = manifest_with(&[]);
        let manifest = parse(text.as_bytes()).unwrap();
        assert_eq!(manifest.version, "2.0");
        assert_eq!(manifest.arch, "amd64");
        assert_eq!((manifest.uki_size, manifest.root_size), (3, 4));
        assert_eq!(manifest.uki_sha256[..2], [0xa6, 0x65]);
        assert_eq!(manifest.root_sha256[31], 0x08);
        assert_eq!(
            manifest.root_partuuid.text(),
            "9f86d081-884c-7d65-9a2f-eaa0c55ad015"
        );
        assert_eq!(manifest.boot_tries, 3);
    }

    #[test]
    fn comments_empty_lines_and_unknown_keys_are_skipped() {
        let text = format!("# a bundle\n\nBUILT_BY=ci\n{}", manifest_with(&[]));
        assert!(parse(text.as_bytes()).is_ok());
        assert!(parse(manifest_with(&[]).replace('\n', "\r\n").as_bytes()).is_ok());
    }

    #[test]
    fn each_problem_is_named() {
        let error = |changes: &[&str]| {
            let text: &'static str = Box::leak(manifest_with(changes).into_boxed_str());
            parse(text.as_bytes()).map(|_| ()).unwrap_err()
        };
        assert_eq!(
            format!("{:?}", error(&["KIOS_UPDATE_FORMAT=2"])),
            "Format(\"2\")"
        );
        assert_eq!(
            error(&["KIOS_UPDATE_FORMAT"]),
            ManifestError::Missing(key::FORMAT)
        );
        assert_eq!(
            error(&["ROOT_SHA256"]),
            ManifestError::Missing(key::ROOT_SHA256)
        );
        let twice = format!("{}VERSION=3\n", manifest_with(&[]));
        assert_eq!(
            parse(twice.as_bytes()),
            Err(ManifestError::Repeated("VERSION"))
        );
        let twice = format!("BUILT_BY=a\n{}BUILT_BY=b\n", manifest_with(&[]));
        assert_eq!(
            parse(twice.as_bytes()),
            Err(ManifestError::Repeated("BUILT_BY"))
        );
        assert_eq!(error(&["just words"]), ManifestError::NotKeyValue(10));
        for (change, key) in [
            ("VERSION=", key::VERSION),
            ("VERSION=1-2", key::VERSION),
            ("VERSION=1+2", key::VERSION),
            ("VERSION=1 2", key::VERSION),
            ("ARCH=", key::ARCH),
            ("UKI_SIZE=0", key::UKI_SIZE),
            ("UKI_SIZE=+3", key::UKI_SIZE),
            ("ROOT_SIZE=18446744073709551616", key::ROOT_SIZE),
            ("ROOT_SIZE= 4", key::ROOT_SIZE),
            (
                "UKI_SHA256=A665A45920422F9D417E4867EFDC4FB8A04A1F3FFF1FA07E998E86F7F7A27AE3",
                key::UKI_SHA256,
            ),
            ("ROOT_SHA256=9f86", key::ROOT_SHA256),
            (
                "ROOT_PARTUUID=9F86D081-884C-7D65-9A2F-EAA0C55AD015",
                key::ROOT_PARTUUID,
            ),
            ("BOOT_TRIES=0", key::BOOT_TRIES),
            ("BOOT_TRIES=10", key::BOOT_TRIES),
        ] {
            match error(&[change]) {
                ManifestError::Invalid { key: named, .. } => assert_eq!(named, key, "{change}"),
                other => panic!("{change}: {other:?}"),
            }
        }
        let long = format!("VERSION={}", "1".repeat(65));
        assert!(matches!(error(&[&long]), ManifestError::Invalid { .. }));
        assert_eq!(parse(b"VERSION=\xff\n"), Err(ManifestError::NotText));
    }

    #[test]
    fn the_running_version_comes_from_image_version() {
        assert_eq!(
            image_version(b"NAME=kiOS\nID=kios\nVERSION_ID=1.2\nIMAGE_VERSION=1.2\n"),
            Some("1.2")
        );
        assert_eq!(image_version(b"IMAGE_VERSION=\"1.3\"\n"), Some("1.3"));
        assert_eq!(image_version(b"IMAGE_VERSION='1.4'"), Some("1.4"));
        assert_eq!(image_version(b"NAME=kiOS\nVERSION_ID=1\n"), None);
        assert_eq!(image_version(b"IMAGE_VERSION=\n"), None);
    }
}
