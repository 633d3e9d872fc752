//! What reaches the serial console. The kernel prints a kmsg record on the
//! console only when its level is below the console log level (the
//! `loglevel=` kernel argument). The init logs its own lines at info or
//! more urgent, and the lines of containerd, the kubelet and every other
//! child at debug: a node's console shows the init and the timeline, while
//! every child line stays in kmsg and in the child's log file. Writing a
//! line to a serial console is synchronous, so each line the console skips
//! is boot time saved.

/// The kmsg level of child output: debug.
pub const CHILD_OUTPUT_LEVEL: u8 = 7;
/// `loglevel=` for a quiet console: everything but child output.
pub const QUIET_LOGLEVEL: u8 = CHILD_OUTPUT_LEVEL;
/// `loglevel=` that shows child output too, for debugging a node.
pub const ALL_LOGLEVEL: u8 = CHILD_OUTPUT_LEVEL + 1;
