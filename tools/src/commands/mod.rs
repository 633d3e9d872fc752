//! One module per `kios` subcommand.

pub mod demo;
pub mod size;
pub mod test;
