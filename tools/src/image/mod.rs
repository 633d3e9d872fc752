//! Assembling what boots: the node image (an initramfs, optionally with
//! an erofs root), the kernel modules it loads, the GPT disk image, the
//! A/B disk with verified roots and the unified kernel image, and the SD
//! card a board's own firmware boots.

pub mod board;
pub mod disk;
pub mod erofs;
pub mod initramfs;
pub mod modules;
pub mod node_image;
pub mod secure_boot;
pub mod slots;
pub mod uki;
pub mod update_bundle;
