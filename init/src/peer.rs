//! Who may talk to PID 1: one rule for every socket it serves, the system
//! socket (`kios_abi::system_socket`), the D-Bus system bus and the bus's
//! own authentication. Peers are known by the uid the kernel vouches for
//! (SO_PEERCRED). A system-socket client stays only while it listens.

/// Only root may command PID 1 or hold up its shutdown.
pub fn allowed(uid: u32) -> bool {
    uid == 0
}

/// Whether a system-socket client heard a broadcast, from how many bytes
/// its non-blocking send took (a failed send: it did not). One that cannot
/// take one byte is not listening, and is dropped.
pub fn heard(sent: usize) -> bool {
    sent == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_peers() {
        assert!(allowed(0));
        assert!(!allowed(1000));
        assert!(!allowed(u32::MAX));
    }

    #[test]
    fn a_client_that_cannot_take_a_byte_did_not_hear() {
        assert!(heard(1));
        assert!(!heard(0));
    }
}
