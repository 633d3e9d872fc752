//! The build host: its architecture, the programs and Debian packages the
//! tools run, the cache, the cargo workspace, progress lines and file helpers.

pub mod arch;
pub mod cache;
pub mod child;
pub mod command;
pub mod fs;
pub mod packages;
pub mod progress;
pub mod workspace;
