//! One module per `kios` subcommand.

pub mod bench;
pub mod boot;
pub mod build;
pub mod clean;
pub mod cluster;
pub mod demo;
pub mod fuzz;
pub mod kernel;
pub mod size;
pub mod test;
