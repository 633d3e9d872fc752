//! Who may talk to PID 1: one rule for every socket it serves, the system
//! socket (`kios_abi::system_socket`), the D-Bus system bus and the bus's
//! own authentication. Peers are known by the uid the kernel vouches for
//! (SO_PEERCRED).

/// Only root may command PID 1 or hold up its shutdown.
pub fn allowed(uid: u32) -> bool {
    uid == 0
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
}
