//! The node's filesystems: the mounts the init makes, the data partition
//! it finds by GPT type, and the mount table it reads back at shutdown.

pub mod data_partition;
pub mod gpt;
pub mod mountinfo;
pub mod mounts;
