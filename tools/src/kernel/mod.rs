//! The kiOS kernel: its config fragments and how they resolve, and the
//! kernel built from them.

pub mod build;
