//! `/etc/hostname` and `kios.hostname=` (`config::hostname::Hostname::parse`):
//! an accepted name is lowercase RFC 1123 within 64 bytes and parses again
//! to itself, also through the command line.
#![no_main]

use kios_init::config::cmdline;
use kios_init::config::hostname::Hostname;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(hostname) = Hostname::parse(data) else {
        return;
    };
    let name = hostname.as_str();
    assert!(!name.is_empty() && name.len() <= 64, "{name:?}");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
        "{name:?}"
    );
    assert!(name
        .split('.')
        .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-')));
    assert_eq!(Hostname::parse(name.as_bytes()).as_ref(), Ok(&hostname));
    let options = cmdline::parse(&format!("quiet kios.hostname={name}"), |word| {
        panic!("{name:?} rejected on the command line: {word:?}")
    });
    assert_eq!(options.hostname.as_ref(), Some(&hostname));
});
