//! The kiOS node's updater, as policy: the binary (`src/main.rs`) only
//! makes the calls the [`run::Node`] trait names.
//!
//! `kiosctl update` hands the init an update bundle's directory over the
//! system socket; the init runs `/bin/kios-update` with that connection
//! (the contract is `kios_abi::update_bundle`). The updater checks the
//! bundle against its [`manifest`] and the node (the arch, the [`version`]
//! order, the sizes and SHA-256s, the room on the disk), then writes the
//! release into the slot the node did not boot from, in an order that
//! never leaves a half-written slot bootable: the slot's boot [`entries`]
//! go first, the root is written and read back, the partition takes the
//! release's GUID in both copies of the [`gpt`], and the new entry comes
//! last. Every step says what it does, to the client and kmsg, in the
//! words of [`message`].
//!
//! `no_std` in the binary; built with std under `cargo test`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod entries;
pub mod gpt;
pub mod guid;
pub mod manifest;
pub mod message;
pub mod run;
pub mod text;
pub mod version;

pub use mini_libc_free::errno::Errno;

/// This node's architecture, Debian's name (the manifest's `ARCH`):
/// fixed when the binary is compiled.
pub const NODE_ARCH: &str = if cfg!(target_arch = "x86_64") {
    "amd64"
} else if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "unsupported"
};

/// The updater's exit codes: the init reboots the node after
/// [`exit::UPDATED`] only.
pub mod exit {
    /// The other slot holds the release and boots next.
    pub const UPDATED: i32 = 0;
    /// Something was written, then a step failed: the other slot is not
    /// bootable, the node stays on its slot.
    pub const FAILED: i32 = 1;
    /// Nothing was written (a bad bundle, the wrong node, no room).
    pub const REFUSED: i32 = 2;
}
