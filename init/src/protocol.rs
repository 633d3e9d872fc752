//! The system socket `/run/system.sock`: one-byte commands from root peers,
//! one-byte events from the init.

/// A command a client sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Command {
    /// 0x01: shut the node down (power off).
    Shutdown,
    /// 0x02: the client finished its part of the shutdown; carry on.
    ContinueShutdown,
    /// 0x03: restart the kubelet now.
    RestartKubelet,
    /// 0x04: restart the container runtime now.
    RestartRuntime,
}

impl Command {
    pub fn decode(byte: u8) -> Option<Command> {
        match byte {
            0x01 => Some(Command::Shutdown),
            0x02 => Some(Command::ContinueShutdown),
            0x03 => Some(Command::RestartKubelet),
            0x04 => Some(Command::RestartRuntime),
            _ => None,
        }
    }
}

/// Event 0x01: the node is shutting down; clients answer with 0x02.
pub const EVENT_SHUTDOWN: u8 = 0x01;

/// Only root may command PID 1.
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_commands_and_nothing_else() {
        assert_eq!(Command::decode(1), Some(Command::Shutdown));
        assert_eq!(Command::decode(2), Some(Command::ContinueShutdown));
        assert_eq!(Command::decode(3), Some(Command::RestartKubelet));
        assert_eq!(Command::decode(4), Some(Command::RestartRuntime));
        assert!((0..=255u8)
            .filter(|&b| Command::decode(b).is_some())
            .eq(1..=4));
    }

    #[test]
    fn only_root_peers() {
        assert!(peer_allowed(0));
        assert!(!peer_allowed(1000));
    }
}
