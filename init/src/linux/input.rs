//! Evdev input devices, watched for the power key.

use core::mem::MaybeUninit;

use kios_init::power_button;
use kios_init::sys::{Event, SysResult};
use mini_libc_free::kmsg;
use rustix::event::epoll;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno as RawErrno;

use super::files::{c_path, PATH_MAX};
use super::sockets::register;
use super::{errno, Linux, TOKEN_INPUT};

impl Linux {
    /// Opens and registers every event device in `dir` that can send the
    /// power key; how many. One that cannot be watched is logged.
    pub(super) fn watch_input_devices(&mut self, dir: &str) -> SysResult<u32> {
        let dir = rustix::fs::open(
            c_path(dir, &mut [0; PATH_MAX])?,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
        let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
        let mut watched = 0;
        while let Some(Ok(entry)) = entries.next() {
            let name = entry.file_name();
            if !power_button::is_event_device(name.to_bytes()) {
                continue;
            }
            let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
            let Ok(device) = rustix::fs::openat(&dir, name, flags, Mode::empty()) else {
                continue;
            };
            let mut key_bits = [0u8; power_button::KEY_BITS_NEEDED];
            let read = mini_libc_free::evdev::key_bits(&device, &mut key_bits).unwrap_or(0);
            if !power_button::has_power_key(key_bits.get(..read).unwrap_or_default()) {
                continue;
            }
            if register(
                &self.epoll,
                &mut self.next_id,
                &mut self.inputs,
                TOKEN_INPUT,
                device,
            )
            .is_some()
            {
                watched += 1;
            } else {
                kmsg::write(
                    kmsg::Level::Err,
                    "power button: too many power keys, one not watched",
                );
            }
        }
        Ok(watched)
    }

    /// Reads an input device's events; a device that went away is dropped.
    pub(super) fn read_input(&mut self, id: u32) {
        let Some(index) = self.inputs.iter().position(|input| input.id == id) else {
            return;
        };
        let mut events = [0u8; 8 * power_button::EVENT_SIZE];
        match rustix::io::read(&self.inputs[index].fd, &mut events) {
            Ok(read) => {
                if events.get(..read).is_some_and(power_button::any_press) {
                    let _ = self.pending.push_back(Event::PowerButton);
                }
            }
            Err(RawErrno::AGAIN) | Err(RawErrno::INTR) => {}
            Err(_) => {
                let gone = self.inputs.swap_remove(index);
                let _ = epoll::delete(&self.epoll, &gone.fd);
            }
        }
    }
}
