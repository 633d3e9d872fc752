//! Spinners for long steps (downloads, builds, boots).
//!
//! The spinner only draws on a terminal; the closing line is always
//! printed so CI logs still show every step and how long it took.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Runs `work` under a spinner showing `message`, then prints
/// `ok: <message> (<seconds> s)` or `FAILED: ...` to stderr.
pub fn with_step<T>(
    message: impl Into<String>,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let message = message.into();
    let started = Instant::now();
    let spinner = ProgressBar::new_spinner();
    // The template is a literal known to be valid; fall back to the default style anyway.
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    spinner.set_style(style);
    spinner.set_message(message.clone());
    spinner.enable_steady_tick(Duration::from_millis(120));

    let result = work();

    spinner.finish_and_clear();
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    eprintln!(
        "{verdict}: {message} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    result
}
