//! Reproducers of what fuzzing (`fuzz/`, `cargo kios fuzz`) found in the
//! init's parsers, each a test that fails before its fix. One still
//! failing is ignored ("fuzz finding, fix pending") so the suite stays
//! green; its fix removes the `#[ignore]`, and the guard of the same name
//! in `fuzz/src/known.rs`.

use kios_init::config::cmdline;

/// fuzz target `cmdline`: `kios.data_timeout=18446744073709552`
/// (u64::MAX / 1000 + 1 seconds). `cmdline::seconds` computes
/// `seconds * 1000` before its range check (`then_some` is eager), which
/// overflows: a panic wherever overflow checks are on.
#[test]
fn a_timeout_beyond_u64_milliseconds_is_rejected_not_overflowed() {
    for option in ["data_timeout", "runtime_timeout", "shutdown_grace"] {
        let line = format!("console=ttyS0 kios.{option}=18446744073709552");
        let mut rejected = Vec::new();
        let options = cmdline::parse(&line, |word| rejected.push(word.word.to_string()));
        assert_eq!(rejected, [format!("kios.{option}=18446744073709552")]);
        assert_eq!(options, cmdline::Options::default());
    }
}

/// The largest value the same parser takes still works (a guard for the fix).
#[test]
fn the_longest_timeout_is_an_hour() {
    let options = cmdline::parse("kios.data_timeout=3600 kios.shutdown_grace=3600", |word| {
        panic!("rejected {word:?}")
    });
    assert_eq!(options.data_timeout_ms, Some(3_600_000));
    assert_eq!(options.shutdown_grace_ms, 3_600_000);
}
