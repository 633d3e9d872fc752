//! The D-Bus system bus the init serves for the kubelet's graceful
//! node shutdown.

/// Where the init listens. godbus dials the specification's default,
/// `/var/run/dbus/system_bus_socket`; `/var/run` leads to `/run`.
pub const SOCKET: &str = "/run/dbus/system_bus_socket";

/// The FHS's `/var/run`, a link to `/run` on the node.
pub const VAR_RUN: &str = "/var/run";

/// Where clients dial by default (godbus, the specification's default):
/// through the `/var/run` link, to [`SOCKET`].
pub const CLIENT_DEFAULT_PATH: &str = "/var/run/dbus/system_bus_socket";
