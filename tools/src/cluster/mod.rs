//! A real Kubernetes control plane on host loopback for the cluster
//! tests, and the credentials it and its nodes use.

pub mod control_plane;
pub mod pki;
