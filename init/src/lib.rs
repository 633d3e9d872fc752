//! kiOS's PID 1 policy: everything the init decides, with every syscall
//! behind the [`sys::Sys`] trait so host tests can record and check the
//! boot, supervision and shutdown sequences without root.
//!
//! `no_std` in the binary; built with std under `cargo test`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod argv;
pub mod boot;
pub mod bus;
pub mod cmdline;
pub mod data_partition;
pub mod dbus;
pub mod errno;
pub mod gpt;
pub mod hostname;
pub mod kubelet;
pub mod labels;
pub mod log;
pub mod log_file;
pub mod mountinfo;
pub mod mounts;
pub mod netlink;
pub mod node_ip;
pub mod power_button;
pub mod protocol;
pub mod shutdown;
pub mod supervisor;
pub mod sys;
pub mod text;

#[cfg(test)]
mod recording_sys;
