//! Who may command PID 1 over the system socket `/run/system.sock` (the
//! wire contract itself is `kios_abi::system_socket`).

/// Only root may command PID 1.
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_peers() {
        assert!(peer_allowed(0));
        assert!(!peer_allowed(1000));
    }
}
