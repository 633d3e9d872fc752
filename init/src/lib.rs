//! kiOS's PID 1 policy: everything the init decides, with every syscall
//! behind the [`sys::Sys`] trait so host tests can record and check the
//! boot, supervision and shutdown sequences without root.
//!
//! `no_std` in the binary; built with std under `cargo test`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod bus;
pub mod clock;
pub mod config;
pub mod errno;
pub mod init;
pub mod log;
pub mod netlink;
pub mod peer;
pub mod power_button;
pub mod shutdown;
pub mod storage;
pub mod supervisor;
pub mod sys;
pub mod text;
