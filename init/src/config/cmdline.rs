//! The kernel command line's `kios.*` options.

use core::ops::RangeInclusive;

use crate::config::hostname::Hostname;

/// What PID 1 does if it panics (`kios.panic=reboot|halt|poweroff`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PanicPolicy {
    Reboot,
    Halt,
    PowerOff,
}

/// Where the data partition comes from (`kios.data=auto|none|/dev/...`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DataSource {
    /// The first partition of the kiOS type on any disk.
    Auto,
    /// Always ephemeral, whatever the disks hold.
    None,
    /// This device, waited for up to `kios.data_timeout=`.
    Device(crate::storage::data_partition::DevicePath),
}

/// Options read from `/proc/cmdline`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Options {
    pub panic: PanicPolicy,
    /// `kios.hostname=`: overrides `/etc/hostname`.
    pub hostname: Option<Hostname>,
    /// `kios.shutdown_grace=SECONDS`: how long system-socket clients get to
    /// answer the shutdown event before processes are terminated.
    pub shutdown_grace_ms: u64,
    /// `kios.runtime_timeout=SECONDS`: how long to wait for the runtime's
    /// socket before starting the kubelet anyway.
    pub runtime_timeout_ms: u64,
    pub data: DataSource,
    /// `kios.data_timeout=SECONDS`: how long to wait for the data partition
    /// (None: a named device gets 10 s, the type scan looks once).
    pub data_timeout_ms: Option<u64>,
    /// `kios.boot_deadline=SECONDS`: how long after PID 1 starts the boot
    /// may take to be reported good before the node reboots into the
    /// other slot (with boot counting on: systemd-boot's
    /// `LoaderBootCountPath` names a slot's entry).
    pub boot_deadline_ms: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            panic: PanicPolicy::Reboot,
            hostname: None,
            shutdown_grace_ms: 30_000,
            runtime_timeout_ms: 30_000,
            data: DataSource::Auto,
            data_timeout_ms: None,
            boot_deadline_ms: 600_000,
        }
    }
}

/// An option the init could not use, reported once per word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rejected<'a> {
    pub word: &'a str,
    pub reason: &'static str,
}

/// The seconds a timeout option may ask for (up to one hour).
const TIMEOUT_SECONDS: RangeInclusive<u64> = 0..=3600;
/// The seconds a boot may take to be good (up to one day).
const BOOT_DEADLINE_SECONDS: RangeInclusive<u64> = 1..=86_400;

/// Parses the command line; `on_rejected` hears about each unusable `kios.*` word.
pub fn parse<'a>(cmdline: &'a str, mut on_rejected: impl FnMut(Rejected<'a>)) -> Options {
    let mut options = Options::default();
    for word in words(cmdline) {
        let Some(option) = word.strip_prefix("kios.") else {
            continue;
        };
        let (key, value) = crate::text::split_once(option, b'=').unwrap_or((option, ""));
        let value = unquote(value);
        let rejected = |reason| Rejected { word, reason };
        match key {
            "panic" => match value {
                "reboot" => options.panic = PanicPolicy::Reboot,
                "halt" => options.panic = PanicPolicy::Halt,
                "poweroff" => options.panic = PanicPolicy::PowerOff,
                _ => on_rejected(rejected("expected reboot, halt or poweroff")),
            },
            "hostname" => match Hostname::parse(value.as_bytes()) {
                Ok(hostname) => options.hostname = Some(hostname),
                Err(reason) => on_rejected(rejected(reason)),
            },
            "shutdown_grace" => match seconds(value, TIMEOUT_SECONDS) {
                Some(ms) => options.shutdown_grace_ms = ms,
                None => on_rejected(rejected("expected whole seconds up to 3600")),
            },
            "runtime_timeout" => match seconds(value, TIMEOUT_SECONDS) {
                Some(ms) => options.runtime_timeout_ms = ms,
                None => on_rejected(rejected("expected whole seconds up to 3600")),
            },
            "data" => match value {
                "auto" => options.data = DataSource::Auto,
                "none" => options.data = DataSource::None,
                _ => match value.strip_prefix("/dev/").filter(|name| !name.is_empty()) {
                    Some(_) => match heapless::String::try_from(value) {
                        Ok(path) => options.data = DataSource::Device(path),
                        Err(_) => on_rejected(rejected("device path longer than 96 bytes")),
                    },
                    None => on_rejected(rejected("expected auto, none or a /dev/ path")),
                },
            },
            "data_timeout" => match seconds(value, TIMEOUT_SECONDS) {
                Some(ms) => options.data_timeout_ms = Some(ms),
                None => on_rejected(rejected("expected whole seconds up to 3600")),
            },
            "boot_deadline" => match seconds(value, BOOT_DEADLINE_SECONDS) {
                Some(ms) => options.boot_deadline_ms = ms,
                None => on_rejected(rejected("expected whole seconds from 1 to 86400")),
            },
            _ => on_rejected(rejected("unknown option")),
        }
    }
    options
}

/// Whole seconds within `range`, in milliseconds.
fn seconds(value: &str, range: RangeInclusive<u64>) -> Option<u64> {
    let seconds: u64 = value.parse().ok()?;
    range.contains(&seconds).then(|| seconds * 1000)
}

/// Splits like the kernel does: on whitespace, except inside double quotes.
/// Works on bytes, so no input can land a slice inside a UTF-8 character.
fn words(cmdline: &str) -> impl Iterator<Item = &str> {
    let bytes = cmdline.as_bytes();
    let mut pos = 0;
    core::iter::from_fn(move || {
        while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
            pos += 1;
        }
        let start = pos;
        let mut quoted = false;
        while let Some(&byte) = bytes.get(pos) {
            if byte == b'"' {
                quoted = !quoted;
            } else if byte.is_ascii_whitespace() && !quoted {
                break;
            }
            pos += 1;
        }
        // Both ends sit next to ASCII bytes, so `get` always succeeds.
        (pos > start).then(|| cmdline.get(start..pos)).flatten()
    })
}

/// A value without its surrounding double quotes.
fn unquote(value: &str) -> &str {
    let value = value.strip_prefix("\"").unwrap_or(value);
    value.strip_suffix("\"").unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_collecting(cmdline: &str) -> (Options, Vec<String>) {
        let mut rejected = Vec::new();
        let options = parse(cmdline, |r| {
            rejected.push(format!("{} {}", r.word, r.reason))
        });
        (options, rejected)
    }

    #[test]
    fn kios_options_are_read_and_others_ignored() {
        let (options, rejected) = parse_collecting(
            "console=ttyS0 kios.panic=halt quiet kios.hostname=Node-1 kios.shutdown_grace=5\n",
        );
        assert_eq!(options.panic, PanicPolicy::Halt);
        assert_eq!(options.hostname.unwrap().as_str(), "node-1");
        assert_eq!(options.shutdown_grace_ms, 5000);
        assert!(rejected.is_empty());
    }

    #[test]
    fn quoted_values_keep_their_spaces_together() {
        let (_, rejected) = parse_collecting(r#"foo="a b" kios.bogus="x y" kios.panic=halt"#);
        assert_eq!(rejected, [r#"kios.bogus="x y" unknown option"#]);
    }

    #[test]
    fn bad_values_are_rejected_and_defaults_kept() {
        let (options, rejected) = parse_collecting(
            "kios.panic=explode kios.shutdown_grace=-1 kios.runtime_timeout=99999999999999999999 kios.hostname=-bad-",
        );
        assert_eq!(options, Options::default());
        assert_eq!(rejected.len(), 4);
    }

    #[test]
    fn the_data_partition_is_found_by_type_unless_named_or_turned_off() {
        assert_eq!(parse_collecting("").0.data, DataSource::Auto);
        assert_eq!(parse_collecting("kios.data=none").0.data, DataSource::None);
        let (options, rejected) = parse_collecting("kios.data=/dev/vdb1 kios.data_timeout=3");
        assert_eq!(
            options.data,
            DataSource::Device("/dev/vdb1".try_into().unwrap())
        );
        assert_eq!(options.data_timeout_ms, Some(3000));
        assert!(rejected.is_empty());
        let (options, rejected) =
            parse_collecting("kios.data=vdb1 kios.data=/dev/ kios.data_timeout=x");
        assert_eq!(options.data, DataSource::Auto);
        assert_eq!(rejected.len(), 3);
    }

    #[test]
    fn the_boot_deadline_is_read_and_checked() {
        let (options, rejected) = parse_collecting("");
        assert_eq!(options.boot_deadline_ms, 600_000);
        assert!(rejected.is_empty());
        let (options, rejected) = parse_collecting("kios.boot_deadline=86400");
        assert_eq!(options.boot_deadline_ms, 86_400_000);
        assert!(rejected.is_empty());
        let (options, _) = parse_collecting("kios.boot_deadline=\"1\"");
        assert_eq!(options.boot_deadline_ms, 1000);
        let (options, rejected) = parse_collecting(
            "kios.slot=a kios.boot_deadline=0 kios.boot_deadline=86401 kios.boot_deadline=99999999999999999999",
        );
        assert_eq!(options, Options::default());
        assert_eq!(
            rejected,
            [
                // The slot comes from the boot manager, not the command line.
                "kios.slot=a unknown option",
                "kios.boot_deadline=0 expected whole seconds from 1 to 86400",
                "kios.boot_deadline=86401 expected whole seconds from 1 to 86400",
                "kios.boot_deadline=99999999999999999999 expected whole seconds from 1 to 86400",
            ]
        );
    }

    #[test]
    fn empty_and_garbage_command_lines_give_defaults() {
        assert_eq!(parse_collecting("").0, Options::default());
        assert_eq!(parse_collecting("\"\"\" kios").0, Options::default());
    }
}
