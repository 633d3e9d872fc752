//! The D-Bus system bus and the subset of systemd-logind the kubelet's
//! graceful node shutdown uses: the wire codec, and the server that feeds
//! each connection's session from the event loop.

pub mod server;
pub mod wire;
