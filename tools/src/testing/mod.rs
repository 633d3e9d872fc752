//! Test support that never ships in a kiOS image: the probe pod, the
//! stand-in image, the node image with a test's fixture files, and the
//! checks boot tests run on a console.

pub mod fixture_node;
pub mod node_checks;
pub mod probe_pod;
pub mod standin_checks;
pub mod standin_image;
