//! The pause container of a kiOS pod sandbox, like Kubernetes' pause.c:
//! it holds the pod's namespaces open, and as the sandbox's PID 1 it reaps
//! the zombies it inherits. SIGINT and SIGTERM end it with status 0.
//!
//! Signals are blocked and read from a signalfd, so no handler ever runs
//! asynchronously and the binary needs no libc and no `unsafe`.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use linux_raw_sys::general::{SIGCHLD, SIGINT, SIGTERM};
use mini_libc_free::process;
use mini_libc_free::signal::{self, SigSet};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::WaitOptions;

mini_libc_free::entry!(main);

/// The status when the signal plumbing fails (pause.c exits 1 when it cannot set its handlers).
const FAILURE: i32 = 1;

fn main() -> ! {
    let watched = SigSet::EMPTY.with(SIGINT).with(SIGTERM).with(SIGCHLD);
    let signals = match signal::block(watched).and_then(|()| signal::signalfd(watched)) {
        Ok(fd) => fd,
        Err(_) => process::exit(FAILURE),
    };
    loop {
        let mut fds = [PollFd::new(&signals, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => process::exit(FAILURE),
        }
        loop {
            match signal::read_signal(&signals) {
                Ok(Some(SIGINT | SIGTERM)) => process::exit(0),
                Ok(Some(_)) => reap_zombies(),
                Ok(None) => break,
                Err(_) => process::exit(FAILURE),
            }
        }
    }
}

/// Collects every exited child; SIGCHLD coalesces, so one signal may stand for many.
fn reap_zombies() {
    while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
}
