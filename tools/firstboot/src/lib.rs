//! The kiOS node's first-boot step, as policy: the binary (`src/main.rs`)
//! only makes the calls the [`run::Node`] trait names.
//!
//! At every boot, before the container runtime starts, it makes sure the
//! node has an identity: `/etc/machine-id` ([`identity`]) and, when no
//! hostname is configured, a node name derived from it. On the first boot
//! it also takes the configuration an operator wrote on the disk's EFI
//! system partition (`/kios/config/` on the ESP, laid out as `/etc` is):
//! each file is mapped to its place in `/etc` and validated
//! ([`policy`]), then taken or refused with one kmsg line. A marker in
//! `/etc` makes later boots skip the partition.
//!
//! `no_std` in the binary; built with std under `cargo test`. The host
//! tools use [`policy`] to check `cargo kios build --config DIR`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod identity;
pub mod policy;
pub mod run;
pub mod text;

pub use mini_libc_free::errno::Errno;
