//! The node's filesystems: the mounts the init makes, the data partition
//! and the EFI system partition it finds by GPT type, the boot slots'
//! entries on the latter, and the mount table it reads back at shutdown.

pub mod boot_entries;
pub mod data_partition;
pub mod gpt;
pub mod mountinfo;
pub mod mounts;
