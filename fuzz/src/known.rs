//! Findings reported and not fixed yet. Each guard keeps its target from
//! stopping at the same crash again (libFuzzer ends a run at the first),
//! so the brief run in `cargo kios test` stays green and a long run goes
//! deeper. The reproducer of each is an ignored test in
//! `init/tests/fuzz_regressions.rs`; remove a guard with its fix (the
//! target then checks the fix).
//!
//! None pending: the one found so far (`cmdline`, a `kios.*timeout=` past
//! u64::MAX / 1000 seconds overflowing) is fixed, and its target runs
//! unguarded.
