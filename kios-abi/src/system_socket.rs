//! The system socket: one-byte commands from root peers to the init,
//! one-byte events from the init to its clients.

/// Where the init listens (stream, mode 0600, root peers only).
pub const PATH: &str = "/run/system.sock";

/// A command a client sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Command {
    /// Shut the node down (power off).
    Shutdown,
    /// The client finished its part of the shutdown; carry on.
    ContinueShutdown,
    /// Restart the kubelet now.
    RestartKubelet,
    /// Restart the container runtime now.
    RestartRuntime,
    /// This boot is good (the `kios-boot-check` static pod ran): the init
    /// gives its boot slot's entry its tries back. Obeyed once per boot.
    BootGood,
    /// Take an update bundle: the init hands this connection to
    /// `/bin/kios-update` ([`crate::update_bundle`] has the exchange).
    Update,
}

impl Command {
    /// Every command, in byte order.
    pub const ALL: [Command; 6] = [
        Command::Shutdown,
        Command::ContinueShutdown,
        Command::RestartKubelet,
        Command::RestartRuntime,
        Command::BootGood,
        Command::Update,
    ];

    /// The byte on the wire.
    pub const fn byte(self) -> u8 {
        match self {
            Command::Shutdown => 0x01,
            Command::ContinueShutdown => 0x02,
            Command::RestartKubelet => 0x03,
            Command::RestartRuntime => 0x04,
            Command::BootGood => 0x05,
            Command::Update => 0x06,
        }
    }

    /// The command a byte stands for. A match, not a search of [`Self::ALL`]:
    /// the init's binary is 32 bytes smaller (a test keeps the two in step).
    pub const fn decode(byte: u8) -> Option<Command> {
        match byte {
            0x01 => Some(Command::Shutdown),
            0x02 => Some(Command::ContinueShutdown),
            0x03 => Some(Command::RestartKubelet),
            0x04 => Some(Command::RestartRuntime),
            0x05 => Some(Command::BootGood),
            0x06 => Some(Command::Update),
            _ => None,
        }
    }
}

/// The one event the init sends: the node is shutting down; a client
/// answers with [`Command::ContinueShutdown`] once it is done.
pub const EVENT_SHUTDOWN: u8 = 0x01;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_commands_and_nothing_else() {
        assert_eq!(Command::decode(1), Some(Command::Shutdown));
        assert_eq!(Command::decode(2), Some(Command::ContinueShutdown));
        assert_eq!(Command::decode(3), Some(Command::RestartKubelet));
        assert_eq!(Command::decode(4), Some(Command::RestartRuntime));
        assert_eq!(Command::decode(5), Some(Command::BootGood));
        assert_eq!(Command::decode(6), Some(Command::Update));
        assert!((0..=255u8)
            .filter(|&b| Command::decode(b).is_some())
            .eq(1..=6));
    }

    #[test]
    fn decode_undoes_byte() {
        for command in Command::ALL {
            assert_eq!(Command::decode(command.byte()), Some(command));
        }
    }
}
