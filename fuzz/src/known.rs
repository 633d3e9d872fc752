//! Findings reported and not fixed yet. Each guard keeps its target from
//! stopping at the same crash again (libFuzzer ends a run at the first),
//! so the brief run in `cargo kios test` stays green and a long run goes
//! deeper. The reproducer of each is an ignored test in
//! `init/tests/fuzz_regressions.rs`; remove a guard with its fix (the
//! target then checks the fix).

/// `config::cmdline::seconds`: `then_some(seconds * 1000)` multiplies
/// before the range check, so a `kios.*timeout=` or `kios.shutdown_grace=`
/// value above u64::MAX / 1000 overflows (a panic where overflow checks
/// are on: debug builds and host tests; a wrapped, discarded value in the
/// release init).
/// (Conservative: any run of 17 or more significant digits.)
pub fn cmdline_seconds_overflow(cmdline: &str) -> bool {
    cmdline
        .split(|c: char| !c.is_ascii_digit())
        .any(|digits| digits.trim_start_matches('0').len() >= 17)
}
