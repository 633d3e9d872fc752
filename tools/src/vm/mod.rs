//! Booting images in QEMU and reading what the guest printed: the
//! console and the boot timeline.

pub mod console;
pub mod qemu;
pub mod timeline;
