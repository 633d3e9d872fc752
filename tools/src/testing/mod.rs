//! Test support that never ships in a kiOS image: the probe pod, the
//! stand-in image, the node image with a test's fixture files, the
//! checks boot tests run on a console, and a loopback-only network
//! namespace with an NTP server in it.

pub mod fixture_node;
pub mod netns;
pub mod node_checks;
pub mod ntp_server;
pub mod probe_pod;
pub mod standin_checks;
pub mod standin_image;
