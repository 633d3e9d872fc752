//! The D-Bus system bus and the subset of systemd-logind the kubelet's
//! graceful node shutdown uses: the message codec, the authentication,
//! logind's answers per connection, and the server that feeds each
//! connection's session from the event loop.

pub mod auth;
pub mod logind;
pub mod server;
pub mod wire;

#[cfg(test)]
pub(crate) mod fixtures;
