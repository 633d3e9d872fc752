//! `/etc/kubernetes/node-labels` (`config::labels::parse_file`): the list
//! the kubelet gets is at most 4096 bytes of labels that each validate,
//! one per valid line.
#![no_main]

use kios_init::config::labels;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dropped = 0usize;
    let list = labels::parse_file(data, |line, reason| {
        dropped += 1;
        assert!(!line.is_empty() && !reason.is_empty());
    });
    assert!(list.len() <= 4096);
    let lines = data
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .count();
    if list.is_empty() {
        assert_eq!(dropped, lines);
    } else {
        let kept: Vec<&str> = list.split(',').collect();
        assert_eq!(kept.len() + dropped, lines, "{list:?}");
        for label in kept {
            assert_eq!(labels::validate(label), Ok(()), "{label:?} kept");
        }
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = labels::validate(text);
    }
});
