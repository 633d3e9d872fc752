//! The runtime's and the kubelet's output cut into log lines
//! (`log::child_output::line_end`), driven as the binary's reader
//! (`init/src/linux/output.rs`) drives it, in reads of a fuzzed size: no
//! line longer than `LINE_MAX`, the open line never overflowing its buffer
//! (the binary drops what does not fit), and every byte but the newlines
//! logged, in order.
#![no_main]

use kios_init::log::child_output::{line_end, LINE_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&size, output)) = data.split_first() else {
        return;
    };
    let read_size = if size == u8::MAX {
        4096
    } else {
        usize::from(size) + 1
    };
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut flush = |line: &mut Vec<u8>| {
        if !line.is_empty() {
            lines.push(std::mem::take(line));
        }
    };
    for chunk in output.chunks(read_size) {
        let mut rest = chunk;
        while let Some(end) = line_end(line.len(), rest, LINE_MAX) {
            assert!(end <= rest.len() && line.len() + end <= LINE_MAX);
            line.extend_from_slice(&rest[..end]);
            flush(&mut line);
            rest = match &rest[end..] {
                [b'\n', after @ ..] => after,
                after => after,
            };
        }
        assert!(
            line.len() + rest.len() <= LINE_MAX,
            "the open line overflows"
        );
        line.extend_from_slice(rest);
    }
    flush(&mut line);
    assert!(lines.iter().all(|line| line.len() <= LINE_MAX));
    let logged: Vec<u8> = lines.concat();
    let expected: Vec<u8> = output.iter().copied().filter(|&b| b != b'\n').collect();
    assert!(logged == expected, "bytes lost or reordered");
});
