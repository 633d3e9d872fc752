//! The kernel command line (`config::cmdline::parse`), as the boot reads
//! `/proc/cmdline`: every option within its documented range, a parsed
//! hostname that parses again to itself, and the options rendered back to
//! a command line parse equal.
#![no_main]

use kios_init::config::cmdline::{self, DataSource, PanicPolicy};
use kios_init::config::hostname::Hostname;
use libfuzzer_sys::fuzz_target;

const MAX_MS: u64 = 3_600_000;

fuzz_target!(|data: &[u8]| {
    // The boot uses the defaults for a command line that is not UTF-8.
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let mut rejected = 0usize;
    let options = cmdline::parse(text, |word| {
        rejected += 1;
        assert!(word.word.starts_with("kios."), "rejected {:?}", word.word);
        assert!(text.contains(word.word));
        assert!(!word.reason.is_empty());
    });
    assert!(rejected <= text.len());
    assert!(options.shutdown_grace_ms <= MAX_MS);
    assert!(options.runtime_timeout_ms <= MAX_MS);
    assert!(options.data_timeout_ms.is_none_or(|ms| ms <= MAX_MS));
    assert!((1000..=86_400_000).contains(&options.boot_deadline_ms));
    if let Some(hostname) = &options.hostname {
        assert_eq!(
            Hostname::parse(hostname.as_str().as_bytes()).as_ref(),
            Ok(hostname)
        );
    }
    if let DataSource::Device(path) = &options.data {
        assert!(
            path.len() > "/dev/".len() && path.starts_with("/dev/"),
            "{path:?}"
        );
    }

    // Rendered back (values the kernel's splitting keeps whole), the
    // options parse to themselves.
    let plain = |value: &str| !value.bytes().any(|b| b.is_ascii_whitespace() || b == b'"');
    let mut rendered = String::from("console=ttyS0");
    let panic = match options.panic {
        PanicPolicy::Reboot => "reboot",
        PanicPolicy::Halt => "halt",
        PanicPolicy::PowerOff => "poweroff",
    };
    rendered += &format!(" kios.panic={panic}");
    if let Some(hostname) = &options.hostname {
        rendered += &format!(" kios.hostname={}", hostname.as_str());
    }
    rendered += &format!(
        " kios.shutdown_grace={} kios.runtime_timeout={}",
        options.shutdown_grace_ms / 1000,
        options.runtime_timeout_ms / 1000
    );
    match &options.data {
        DataSource::Auto => rendered += " kios.data=auto",
        DataSource::None => rendered += " kios.data=none",
        DataSource::Device(path) if plain(path) => rendered += &format!(" kios.data={path}"),
        DataSource::Device(_) => return,
    }
    if let Some(ms) = options.data_timeout_ms {
        rendered += &format!(" kios.data_timeout={}", ms / 1000);
    }
    rendered += &format!(" kios.boot_deadline={}", options.boot_deadline_ms / 1000);
    let again = cmdline::parse(&rendered, |word| panic!("{rendered:?}: rejected {word:?}"));
    assert_eq!(again, options, "{rendered:?}");
});
