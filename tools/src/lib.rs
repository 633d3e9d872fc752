//! kiOS host tools: build images, boot them in QEMU, measure them.
//!
//! The `kios` binary (run as `cargo kios <command>`) is a thin CLI over
//! this library so integration tests can use the same steps.

pub mod arch;
pub mod bench;
pub mod bom;
pub mod cache;
pub mod cli;
pub mod cluster_pki;
pub mod command;
pub mod commands;
pub mod components;
pub mod console;
pub mod control_plane;
pub mod debian;
pub mod disk_image;
pub mod elf_deps;
pub mod host_packages;
pub mod image_seed;
pub mod initramfs;
pub mod kernel_build;
pub mod kernel_modules;
pub mod kubelet_build;
pub mod node_checks;
pub mod node_image;
pub mod oci;
pub mod progress;
pub mod qemu;
pub mod standin_checks;
pub mod standin_image;
pub mod timeline;
pub mod uki;
pub mod workspace;
