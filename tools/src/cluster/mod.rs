//! A real Kubernetes control plane on host loopback for the cluster
//! tests, the credentials it and its nodes use, and a registry the nodes
//! pull from.

pub mod api;
pub mod control_plane;
pub mod kubelet_hosts;
pub mod local;
pub mod pki;
pub mod registry;
pub mod timing;
pub mod workloads;
