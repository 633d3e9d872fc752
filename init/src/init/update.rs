//! Updates (docs/updates.md): `Update` on the system socket hands the
//! client's connection to `/bin/kios-update`, which checks the bundle the
//! client sends, writes the other slot and answers the client; once it
//! exits 0 the init reboots the node into the new slot through the
//! graceful shutdown. PID 1 hashes and writes nothing itself: a hung
//! disk or a huge bundle stalls a child, never the init.

use super::Init;
use crate::log;
use crate::log::Level;
use crate::sys::{ClientId, CommandArgv, ExitStatus, PowerAction, Sys};
use kios_abi::update_bundle::UPDATER;

/// `kios-update`'s output lines in kmsg (it writes its own too).
const UPDATER_NAME: &str = "kios-update";

impl<S: Sys> Init<S> {
    /// `Update`: one at a time, on a node booted from a slot entry the
    /// init found; else the client is dropped (it sees the connection
    /// close) with one line saying why.
    pub(super) fn start_update(&mut self, client: ClientId) {
        let refusal = if self.shutdown.is_some() {
            Some("the node is shutting down")
        } else if self.update.is_some() {
            Some("an update is running already")
        } else {
            None
        };
        let booted = self.boot_slot.as_ref().and_then(|state| {
            let entry = state.entry.as_deref()?;
            Some((state.slot.letter(), entry))
        });
        let argv = match (refusal, booted, self.esp.as_deref()) {
            (Some(why), ..) => Err(why),
            (None, Some((slot, entry)), Some(esp)) => {
                let mut argv = CommandArgv::new();
                [UPDATER, slot, esp, entry]
                    .iter()
                    .try_for_each(|arg| argv.push(&[arg]))
                    .map(|()| (argv, slot))
                    .map_err(|_| "its arguments do not fit")
            }
            _ => Err("the node did not boot from a slot entry on the EFI system partition"),
        };
        let (argv, slot) = match argv {
            Ok(ready) => ready,
            Err(why) => {
                self.sys.drop_client(client);
                return log!(
                    &mut self.sys,
                    Level::Warning,
                    "update refused: {}; client dropped",
                    why
                );
            }
        };
        match self.sys.hand_over(client, UPDATER_NAME, &argv) {
            Ok(pid) => {
                self.update = Some(pid);
                log!(
                    &mut self.sys,
                    Level::Notice,
                    "update: {} pid={} takes the bundle; running slot {}",
                    UPDATER,
                    pid.0,
                    slot
                );
            }
            Err(errno) => {
                self.sys.drop_client(client);
                log!(
                    &mut self.sys,
                    Level::Err,
                    "update: starting {} failed: {}; client dropped",
                    UPDATER,
                    errno
                );
            }
        }
    }

    /// The updater exited: 0 means the other slot holds the release and
    /// is the next boot, so the node reboots; anything else leaves the
    /// node running as it is (the updater said why, to the client and kmsg).
    pub(super) fn update_exited(&mut self, status: ExitStatus) {
        self.update = None;
        let slot = self
            .boot_slot
            .as_ref()
            .map_or("?", |state| state.slot.letter());
        if status == ExitStatus::Exited(0) {
            log!(
                &mut self.sys,
                Level::Notice,
                "update: the other slot is written and boots next; rebooting"
            );
            return self.request_shutdown(PowerAction::Reboot, "the update");
        }
        let (how, code) = match status {
            ExitStatus::Exited(code) => ("status", code),
            ExitStatus::Signaled(signal) => ("signal", signal),
        };
        log!(
            &mut self.sys,
            Level::Err,
            "update: {} exited {}={} (its lines above); no reboot, the node stays on slot {}",
            UPDATER,
            how,
            code,
            slot
        );
    }
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
