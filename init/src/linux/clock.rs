//! The wall clock's watch: a CLOCK_REALTIME timerfd that expires at once
//! and then hourly, and whose read fails with ECANCELED once the clock is
//! set (TFD_TIMER_CANCEL_ON_SET), as the time-sync pod does when it steps
//! it. Each is an [`Event::ClockTick`]: the last known time is saved.

use kios_init::sys::{Event, SysResult};
use rustix::event::epoll;
use rustix::fd::OwnedFd;
use rustix::io::Errno as RawErrno;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

use super::{errno, Linux, TOKEN_CLOCK};

/// How often the time is saved while the clock runs undisturbed: what a
/// power cut can lose.
const SAVE_INTERVAL_SECS: i64 = 3600;

/// Arms (or, after a cancellation, re-arms) the watch. An absolute start
/// in the past, 1 ns after the epoch, expires at once.
fn arm(timer: &OwnedFd) -> rustix::io::Result<()> {
    let every_interval = Itimerspec {
        it_interval: Timespec {
            tv_sec: SAVE_INTERVAL_SECS,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: 0,
            tv_nsec: 1,
        },
    };
    rustix::time::timerfd_settime(
        timer,
        TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
        &every_interval,
    )
    .map(drop)
}

impl Linux {
    pub(super) fn watch_wall_clock(&mut self) -> SysResult<()> {
        let timer = rustix::time::timerfd_create(
            TimerfdClockId::Realtime,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )
        .map_err(errno)?;
        arm(&timer).map_err(errno)?;
        epoll::add(
            &self.epoll,
            &timer,
            epoll::EventData::new_u64(TOKEN_CLOCK),
            epoll::EventFlags::IN,
        )
        .map_err(errno)?;
        self.clock = Some(timer);
        Ok(())
    }

    pub(super) fn read_clock(&mut self) {
        let Some(timer) = &self.clock else {
            return;
        };
        let mut expirations = [0u8; 8];
        match rustix::io::read(timer, &mut expirations) {
            Ok(_) => {}
            // Set: armed again here, or, failing that, at the next hourly
            // expiry, whose read is cancelled too.
            Err(RawErrno::CANCELED) => {
                let _ = arm(timer);
            }
            Err(_) => return,
        }
        let _ = self.pending.push_back(Event::ClockTick);
    }
}
