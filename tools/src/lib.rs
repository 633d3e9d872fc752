//! kiOS host tools: build images, boot them in QEMU, measure them.
//!
//! The `kios` binary (run as `cargo kios <command>`) is a thin CLI over
//! this library so integration tests can use the same steps. The image
//! build is one pipeline: [`components`] resolves what an arch's image
//! is made of, [`image`] assembles it, [`vm`] boots it.
#![deny(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod components;
pub mod host;
pub mod image;
pub mod kernel;
pub mod testing;
pub mod vm;
