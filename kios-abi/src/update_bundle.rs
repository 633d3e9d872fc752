//! An update bundle (docs/updates.md): one release of a node for the
//! inactive slot of an A/B disk, written by `cargo kios build --update
//! DIR`, shipped as an OCI image a node pulls like any other, and handed
//! to the node by `kiosctl update` in a pod that mounts the system socket.
//!
//! ## The bundle
//!
//! A directory ([`IMAGE_DIR`] in the image) with three files: the
//! release's unified kernel image ([`UKI_FILE`]), its root, the erofs
//! image with its dm-verity hash tree appended ([`ROOT_FILE`]), and a
//! [`MANIFEST_FILE`] of `KEY=value` lines (os-release's syntax without
//! quotes; unknown keys are ignored, a repeated key is an error) naming
//! the format, the release and the two files' sizes and SHA-256s.
//!
//! ## The hand-over (system socket, then `/bin/kios-update`)
//!
//! 1. `kiosctl` connects to the system socket and sends
//!    [`Command::Update`](crate::system_socket::Command::Update) alone.
//! 2. The init runs [`UPDATER`] with that connection as its stdin,
//!    arguments [`UPDATER`], the booted slot's letter, the ESP's device
//!    path and the booted entry's file name, and stops reading the
//!    connection. (A node not booted from a slot, or with an update
//!    running, drops the client instead: `kiosctl` sees the connection
//!    close before [`READY`].)
//! 3. The updater sends the one byte [`READY`]; only then does `kiosctl`
//!    send one message: one byte of [`flags`] with, as `SCM_RIGHTS`, one
//!    descriptor, the bundle directory opened `O_DIRECTORY`.
//! 4. The updater answers with text lines (`\n`-ended) and closes; the
//!    last starts with [`OUTCOME_UPDATED`], [`OUTCOME_REFUSED`] (nothing
//!    was written) or [`OUTCOME_FAILED`] (something was, the slot is not
//!    bootable). It exits 0 after [`OUTCOME_UPDATED`] only; the init then
//!    reboots the node through the graceful shutdown.

/// Where `cargo kios build --update` puts the bundle in its OCI image,
/// and the directory `kiosctl update` hands over when given none.
pub const IMAGE_DIR: &str = "/update";
/// The bundle's files, in its directory.
pub const MANIFEST_FILE: &str = "manifest";
pub const UKI_FILE: &str = "kios.efi";
pub const ROOT_FILE: &str = "root.img";

/// The manifest's keys.
pub mod key {
    /// The bundle format: [`super::FORMAT`].
    pub const FORMAT: &str = "KIOS_UPDATE_FORMAT";
    /// The release's version: the image's `IMAGE_VERSION`, characters
    /// `a-zA-Z0-9._~` only, ordered as the boot manager orders versions.
    pub const VERSION: &str = "VERSION";
    /// The node's architecture, Debian's name: `amd64` or `arm64`.
    pub const ARCH: &str = "ARCH";
    /// Decimal byte counts and lowercase hex SHA-256s of the two files.
    pub const UKI_SIZE: &str = "UKI_SIZE";
    pub const UKI_SHA256: &str = "UKI_SHA256";
    pub const ROOT_SIZE: &str = "ROOT_SIZE";
    pub const ROOT_SHA256: &str = "ROOT_SHA256";
    /// The GPT unique partition GUID (lowercase text) the UKI's command
    /// line names the root by: the slot's partition takes it.
    pub const ROOT_PARTUUID: &str = "ROOT_PARTUUID";
    /// The new entry's boot tries (`+N` in its name), 1 to 9.
    pub const BOOT_TRIES: &str = "BOOT_TRIES";
}

/// The one format this node reads.
pub const FORMAT: &str = "1";

/// The updater, run by the init with the client's connection as stdin.
pub const UPDATER: &str = "/bin/kios-update";
/// The updater's first byte to the client: send the bundle now.
pub const READY: u8 = 0x06;

/// The flags byte `kiosctl` sends with the bundle's descriptor.
pub mod flags {
    /// Install even a version that is not newer than the running one.
    pub const FORCE: u8 = 0x01;
}

/// How the updater's last line starts.
pub const OUTCOME_UPDATED: &str = "updated:";
pub const OUTCOME_REFUSED: &str = "refused:";
pub const OUTCOME_FAILED: &str = "failed:";
