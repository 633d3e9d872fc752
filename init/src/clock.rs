//! The last known time. A board without a real-time clock (the Raspberry
//! Pi) boots in 1970, where every TLS handshake with the API server or a
//! registry fails until the time-sync pod sets the clock. With a data
//! partition the node keeps the time it last knew as the modification time
//! of [`CLOCK_FILE`]: at boot the clock moves forward to it, before the
//! runtime and the kubelet start (never back: a real-time clock ahead of
//! the file knows better), and the file's time is set to now whenever the
//! clock is set, hourly, and at a clean shutdown.

use crate::log;
use crate::log::{file_unavailable, Level};
use crate::sys::Sys;
use kios_abi::image::CLOCK_FILE;

/// What the node does when it cannot restore the time.
const KERNEL_TIME: &str = "the clock stays as the kernel set it";

/// Moves the clock forward to the last known time when it is behind it,
/// with one line saying from what to what. A missing file (the data
/// partition's first boot) leaves the clock alone with an info line.
pub fn restore<S: Sys>(sys: &mut S) {
    let saved = match sys.modified_secs(CLOCK_FILE) {
        Ok(saved) => saved,
        Err(errno) => return file_unavailable(sys, CLOCK_FILE, errno, KERNEL_TIME),
    };
    let now = sys.realtime_secs();
    if saved <= now {
        return;
    }
    match sys.set_realtime_secs(saved) {
        Ok(()) => log!(
            sys,
            Level::Notice,
            "clock set forward from {} to {} (seconds since 1970, UTC), the last known time in {}",
            now,
            saved,
            CLOCK_FILE
        ),
        Err(errno) => log!(
            sys,
            Level::Err,
            "{}: setting the clock to its time failed: {}, {}",
            CLOCK_FILE,
            errno,
            KERNEL_TIME
        ),
    }
}

/// Saves the time: the file's modification time becomes now (the file is
/// made if missing).
pub fn save<S: Sys>(sys: &mut S) {
    if let Err(errno) = sys.touch(CLOCK_FILE) {
        log!(
            sys,
            Level::Warning,
            "saving the time in {} failed: {}, the next boot may start from an older one",
            CLOCK_FILE,
            errno
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::sys::recording::RecordingSys;

    const SAVED: i64 = 1_749_723_630;
    const RTC_IN_2001: i64 = 978_307_205;

    #[test]
    fn a_clock_behind_the_saved_time_moves_forward_to_it() {
        let mut sys = RecordingSys::new().with_modified(CLOCK_FILE, SAVED);
        sys.realtime_secs = RTC_IN_2001;
        restore(&mut sys);
        assert_eq!(
            sys.calls,
            ["mtime /var/lib/kios/clock", "clock_settime 1749723630"]
        );
        assert_eq!(sys.realtime_secs, SAVED);
        assert_eq!(
            sys.logs,
            ["Notice: clock set forward from 978307205 to 1749723630 (seconds since 1970, UTC), the last known time in /var/lib/kios/clock"]
        );
    }

    #[test]
    fn a_clock_at_or_ahead_of_the_saved_time_is_left_alone() {
        for now in [SAVED, SAVED + 3600] {
            let mut sys = RecordingSys::new().with_modified(CLOCK_FILE, SAVED);
            sys.realtime_secs = now;
            restore(&mut sys);
            assert!(sys.calls_starting("clock_settime").is_empty());
            assert!(sys.logs.is_empty(), "{:?}", sys.logs);
        }
    }

    #[test]
    fn without_a_saved_time_the_clock_stays_with_one_info_line() {
        let mut sys = RecordingSys::new();
        restore(&mut sys);
        assert!(sys.calls_starting("clock_settime").is_empty());
        assert_eq!(
            sys.logs,
            ["Info: /var/lib/kios/clock: not present, the clock stays as the kernel set it"]
        );
    }

    #[test]
    fn each_failure_is_one_line_with_its_errno_and_what_the_node_did() {
        let mut sys = RecordingSys::new().failing("mtime", Errno::IO);
        restore(&mut sys);
        assert_eq!(
            sys.logs,
            ["Warning: /var/lib/kios/clock: unreadable (EIO (5)), the clock stays as the kernel set it"]
        );

        let mut sys = RecordingSys::new()
            .with_modified(CLOCK_FILE, SAVED)
            .failing("clock_settime", Errno::PERM);
        sys.realtime_secs = RTC_IN_2001;
        restore(&mut sys);
        assert_eq!(sys.realtime_secs, RTC_IN_2001);
        assert_eq!(
            sys.logs,
            ["Err: /var/lib/kios/clock: setting the clock to its time failed: EPERM (1), the clock stays as the kernel set it"]
        );

        let mut sys = RecordingSys::new().failing("touch", Errno::ROFS);
        save(&mut sys);
        assert_eq!(
            sys.logs,
            ["Warning: saving the time in /var/lib/kios/clock failed: EROFS (30), the next boot may start from an older one"]
        );
    }

    #[test]
    fn saving_sets_the_file_time_to_now() {
        let mut sys = RecordingSys::new();
        sys.realtime_secs = SAVED;
        save(&mut sys);
        assert_eq!(sys.calls, ["touch /var/lib/kios/clock"]);
        assert_eq!(sys.modified.get(CLOCK_FILE), Some(&SAVED));
        assert!(sys.logs.is_empty());
    }
}
