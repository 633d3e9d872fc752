//! The benchmark's baseline, a BENCHMARK FIXTURE never in a kiOS image:
//! a conventional shell-script init (benches/baseline/init.sh) run by
//! Debian's static busybox, given to the node image in place of the kiOS
//! init so both boot the same kernel, runtime, kubelet and image contents.

use anyhow::Result;

use crate::components::node::{NodeComponents, BUSYBOX_COMPONENT};
use crate::image::initramfs::Initramfs;
use crate::image::node_image::InitChoice;

/// The baseline init, as the image holds it at /bin/init.
pub const BASELINE_SCRIPT: &str = include_str!("../../../benches/baseline/init.sh");
/// The lines only the baseline prints: proof the image really ran it.
pub const BASELINE_MARKER: &str = "kios-baseline:";
/// The image part the baseline init (script and busybox) is reported as.
pub const BASELINE_INIT_PART: &str = "baseline init (sh script + busybox)";
/// The busybox applets the script runs as commands (the rest are ash builtins).
const BASELINE_APPLETS: [&str; 11] = [
    "sh",
    "cp",
    "hostname",
    "insmod",
    "ip",
    "mkdir",
    "mount",
    "poweroff",
    "sleep",
    "switch_root",
    "sync",
];

/// The baseline as the node image's init: the script at /bin/init, with
/// busybox at /bin/busybox as /bin/sh and the applets the script runs.
pub fn baseline_init(components: &NodeComponents) -> Result<InitChoice> {
    let busybox = components.fetched(BUSYBOX_COMPONENT)?.join("bin/busybox");
    let mut files = Initramfs::new();
    files.file_from_host("/bin/busybox", 0o755, &busybox)?;
    for applet in BASELINE_APPLETS {
        files.symlink(&format!("/bin/{applet}"), "busybox");
    }
    files.file("/bin/init", 0o755, BASELINE_SCRIPT);
    Ok(InitChoice::Replacement {
        part: BASELINE_INIT_PART.to_string(),
        files,
    })
}
