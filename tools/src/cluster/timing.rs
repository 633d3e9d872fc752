//! When a joining node went Ready, on its own clock: PID 1 to the
//! kubelet's registration and to the Ready condition, read off the
//! console (the kubelet's lines must be on it: `ConsoleVerbosity::All`).

use std::time::Duration;

use anyhow::{Context, Result};

use crate::vm::console::Console;
use crate::vm::timeline::{kmsg_micros, Phase, Timeline};

/// How the init marks the kubelet's output on the console.
pub const KUBELET_LINE: &str = "kubelet: ";

/// A node's join, in seconds of guest time (the kernel's clock).
#[derive(Clone, Debug)]
pub struct ReadyTiming {
    /// PID 1's start, after the kernel's.
    pub pid1: f64,
    /// The kubelet's "Successfully registered node" line.
    pub registered: f64,
    /// The Ready condition's lastTransitionTime placed on the kernel's
    /// clock (whole seconds, so up to 1 s late).
    pub ready: f64,
    /// Ready after the registration, on the node's wall clock.
    pub ready_after_registered: f64,
    /// When the host read the registration line, after QEMU's start.
    pub registered_line_read: Duration,
}

impl ReadyTiming {
    pub fn pid1_to_registered(&self) -> f64 {
        self.registered - self.pid1
    }

    pub fn pid1_to_ready(&self) -> f64 {
        self.ready - self.pid1
    }
}

/// PID 1 to registration and to Ready for `node`, from its console and
/// the Ready condition's `lastTransitionTime` (`ready_transition`).
///
/// Registration is the kernel's timestamp on the kubelet's "Successfully
/// registered node" line. The kubelet logs nothing when the node becomes
/// Ready, so Ready is the condition's lastTransitionTime (the node's wall
/// clock, whole seconds) placed on the kernel's clock through that same
/// line, whose klog header carries the node's wall clock too. Nothing
/// steps that clock in between: the time-sync pod reaches no server here.
pub fn ready_timing(console: &Console, node: &str, ready_transition: &str) -> Result<ReadyTiming> {
    let timeline = Timeline::from_console(console);
    let pid1 = *timeline
        .phases
        .get(&Phase::Pid1)
        .context("no pid1 timeline line")?;
    let registered_needle = format!("Successfully registered node {node}");
    let registered_at = console
        .lines
        .iter()
        .find(|line| line.text.contains(&registered_needle))
        .with_context(|| format!("no `{registered_needle}` line"))?;
    let registered = kmsg_micros(&registered_at.text).context("no kernel time on the line")?;
    let registered_clock =
        klog_time_of_day(&registered_at.text).context("no klog time on the line")?;
    let ready_clock = ready_transition
        .split_once('T')
        .and_then(|(_, time)| time_of_day(time.trim_end_matches('Z')))
        .with_context(|| format!("unreadable lastTransitionTime {ready_transition}"))?;
    let mut ready_after_registered = ready_clock - registered_clock;
    // Across midnight on the node's clock.
    if ready_after_registered < -43_200.0 {
        ready_after_registered += 86_400.0;
    }
    // Whole seconds: Ready in the same second as the registration reads as before it.
    let ready_after_registered = ready_after_registered.max(0.0);
    let registered = registered as f64 / 1e6;
    Ok(ReadyTiming {
        pid1: pid1 as f64 / 1e6,
        registered,
        ready: registered + ready_after_registered,
        ready_after_registered,
        registered_line_read: registered_at.at,
    })
}

/// The time of day, in seconds, of a kubelet line's klog header
/// (`I1122 05:33:27.123456    412 file.go:74] ...`), on the node's clock.
pub fn klog_time_of_day(line: &str) -> Option<f64> {
    let header = &line[line.find(KUBELET_LINE)? + KUBELET_LINE.len()..];
    time_of_day(header.split_whitespace().nth(1)?)
}

/// `HH:MM:SS[.fraction]` in seconds.
pub fn time_of_day(text: &str) -> Option<f64> {
    let mut parts = text.splitn(3, ':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klog_and_api_times_read_as_seconds_of_the_day() {
        let line =
            "[   41.123456] kubelet: I1122 05:33:27.250000     412 kubelet_node_status.go:74] \
                    Successfully registered node kios-cert-node";
        assert_eq!(
            klog_time_of_day(line),
            Some(5.0 * 3600.0 + 33.0 * 60.0 + 27.25)
        );
        assert_eq!(time_of_day("23:59:59"), Some(86_399.0));
        assert_eq!(time_of_day("23:59"), None);
        assert_eq!(klog_time_of_day("kios: timeline pid1 us=1"), None);
    }

    #[test]
    fn ready_is_placed_on_the_kernel_clock_through_the_registration_line() {
        let console = Console::from_text(
            "[    1.500000] kios: timeline pid1 us=1500000\n\
             [   41.000000] kubelet: I1122 05:33:27.250000     412 kubelet_node_status.go:74] \
             Successfully registered node kios-a\n",
        );
        let timing = ready_timing(&console, "kios-a", "2026-11-22T05:33:30Z").unwrap();
        assert!((timing.pid1 - 1.5).abs() < 1e-9, "{timing:?}");
        assert!((timing.pid1_to_registered() - 39.5).abs() < 1e-9);
        assert!((timing.ready_after_registered - 2.75).abs() < 1e-9);
        assert!((timing.pid1_to_ready() - 42.25).abs() < 1e-9);
        assert!(ready_timing(&console, "kios-b", "2026-11-22T05:33:30Z").is_err());
    }
}
