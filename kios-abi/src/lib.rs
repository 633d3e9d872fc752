//! The contracts between kiOS's crates, in one place: what the init, the
//! node's small clients (`kiosctl`, the stand-in) and the host tools must
//! agree on. Constants, small `Copy` types and the parsers of names two
//! crates read alike (the boot slots' entries), no dependencies, so
//! depending on this crate costs the init no bytes it would not spend
//! anyway.
//!
//! A literal that two crates need lives here; a literal only one crate
//! needs stays in that crate.
#![no_std]
#![forbid(unsafe_code)]

pub mod boot_slots;
pub mod console;
pub mod data_partition;
pub mod image;
pub mod kubernetes;
pub mod system_bus;
pub mod system_socket;
pub mod text;
pub mod timeline;
pub mod update_bundle;
