//! Debian packages the host tools need (QEMU and friends).
//!
//! Checks with dpkg-query; installs what is missing with apt-get when
//! running as root, otherwise names the exact command to run. Every
//! change to the host is announced on stderr before it is made.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::host::arch::Arch;
use crate::host::progress::with_step;

/// What booting `arch`'s images takes: its QEMU and its UEFI firmware,
/// which boots disk images (OVMF on amd64, AAVMF on arm64).
pub fn qemu_packages(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Amd64 => &["qemu-system-x86", "ovmf"],
        Arch::Arm64 => &["qemu-system-arm", "qemu-efi-aarch64"],
    }
}

/// Every arch's [`qemu_packages`]: for `cargo kios test`, which boots both.
pub const QEMU_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "ovmf",
    "qemu-system-arm",
    "qemu-efi-aarch64",
];

/// What building a disk image runs on the host (mkfs.ext4).
pub const DISK_IMAGE_PACKAGES: &[&str] = &["e2fsprogs"];

const BACKPORTS_SUITE: &str = "bookworm-backports";
const BACKPORTS_SOURCES_FILE: &str = "/etc/apt/sources.list.d/kios-backports.sources";

/// The backports entry, on the archive apt already uses for bookworm.
fn backports_sources(archive_uri: &str) -> String {
    sources_entry("deb deb-src", archive_uri, BACKPORTS_SUITE, "main")
}

/// One deb822 apt source, signed by Debian's archive key.
fn sources_entry(types: &str, archive_uri: &str, suites: &str, component: &str) -> String {
    format!(
        "Types: {types}\nURIs: {archive_uri}\nSuites: {suites}\nComponents: {component}\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
}

/// The apt source file the tools write for a bookworm archive component.
fn component_sources_file(component: &str) -> String {
    format!("/etc/apt/sources.list.d/kios-{component}.sources")
}

/// Makes apt list bookworm's `component` (e.g. `non-free-firmware`, where
/// `raspi-firmware` is): when no source has it, writes one on the archive
/// apt already uses for bookworm main and refreshes the lists (as root,
/// announced); otherwise says what to run. `needed_for` names the reason.
pub fn ensure_archive_component(component: &str, needed_for: &str) -> Result<()> {
    let policy = crate::host::command::output_of(Command::new("apt-cache").arg("policy"))?;
    if archive_uri(&policy, "bookworm", component).is_some() {
        return Ok(());
    }
    let path = component_sources_file(component);
    let uri = archive_uri(&policy, "bookworm", "main").context(
        "apt lists no bookworm main packages to take the archive address from; \
         add Debian's bookworm archive to apt's sources and run `sudo apt-get update`",
    )?;
    let entry = sources_entry("deb", &uri, "bookworm", component);
    if !rustix::process::geteuid().is_root() {
        bail!(
            "apt lists no bookworm {component} packages, which {needed_for} needs: \
             as root, write {path} with\n{entry}and run `apt-get update`"
        );
    }
    announce_host_change(&format!(
        "adding apt source {path} (bookworm {component}) and running apt-get update, \
         because {needed_for} comes from that component"
    ));
    std::fs::write(&path, entry).with_context(|| format!("writing the apt source {path}"))?;
    let _lists = lock_apt_lists(AptLists::Change)?;
    run_apt(Command::new("apt-get").arg("update"))
}

/// The archive address apt uses for `suite/component` binary packages, from
/// `apt-cache policy` lines like ` 500 <uri> bookworm/main amd64 Packages`.
pub fn archive_uri(policy: &str, suite: &str, component: &str) -> Option<String> {
    let wanted = format!("{suite}/{component}");
    policy.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_priority, uri, dist, _arch, "Packages"] if *dist == wanted => Some(uri.to_string()),
            _ => None,
        }
    })
}

/// Makes sure every package in `packages` is installed.
pub fn ensure_installed(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| installed_version(package).is_none())
        .collect();
    if missing.is_empty() {
        eprintln!("ok: host packages present: {}", packages.join(" "));
        return Ok(());
    }
    let from_backports = needs_backports();
    let command = install_command_line(&missing, from_backports);
    if !rustix::process::geteuid().is_root() {
        let source_note = if from_backports && !Path::new(BACKPORTS_SOURCES_FILE).exists() {
            format!(
                "\n(qemu-utils comes from {BACKPORTS_SUITE}: the apt source \
                 {BACKPORTS_SOURCES_FILE} is needed too; running this command as root writes it)"
            )
        } else {
            String::new()
        };
        bail!(
            "missing host packages: {}\nrun: sudo apt-get update && sudo {command}{source_note}",
            missing.join(" ")
        );
    }
    if from_backports {
        ensure_backports_source()?;
    }
    announce_host_change(&format!(
        "installing packages {} because they are missing on this host \
         (apt-get update && {command})",
        missing.join(" ")
    ));
    with_step(format!("installing {}", missing.join(" ")), || {
        // A fresh machine may have empty package lists.
        {
            let _lists = lock_apt_lists(AptLists::Change)?;
            run_apt(Command::new("apt-get").arg("update"))?;
        }
        let mut install = Command::new("apt-get");
        install.args(["install", "-y"]);
        if from_backports {
            install.args(["-t", BACKPORTS_SUITE]);
        }
        run_apt(install.args(&missing))
    })
}

/// The package's version when dpkg says it is installed.
pub fn installed_version(package: &str) -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\t${Version}", package])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    parse_status_and_version(&String::from_utf8_lossy(&output.stdout))
}

fn parse_status_and_version(query_output: &str) -> Option<String> {
    let (status, version) = query_output.split_once('\t')?;
    (status.trim() == "install ok installed").then(|| version.trim().to_string())
}

/// A `qemu-utils` from bookworm-backports Breaks bookworm's qemu-system,
/// so the QEMU packages must then come from backports too.
fn needs_backports() -> bool {
    installed_version("qemu-utils").is_some_and(|version| is_backports_version(&version))
}

fn is_backports_version(version: &str) -> bool {
    version.contains("bpo12")
}

fn install_command_line(packages: &[&str], from_backports: bool) -> String {
    let target = if from_backports {
        format!(" -t {BACKPORTS_SUITE}")
    } else {
        String::new()
    };
    format!("apt-get install -y{target} {}", packages.join(" "))
}

fn ensure_backports_source() -> Result<()> {
    let path = Path::new(BACKPORTS_SOURCES_FILE);
    if path.exists() {
        return Ok(());
    }
    let policy = crate::host::command::output_of(Command::new("apt-cache").arg("policy"))?;
    let uri = archive_uri(&policy, "bookworm", "main").context(
        "apt lists no bookworm main packages to take the archive address from; \
         add Debian's bookworm archive to apt's sources and run `sudo apt-get update`",
    )?;
    announce_host_change(&format!(
        "adding apt source {} ({BACKPORTS_SUITE}) because the installed qemu-utils \
         comes from {BACKPORTS_SUITE}, whose version Breaks bookworm's qemu-system",
        path.display()
    ));
    std::fs::write(path, backports_sources(&uri))
        .with_context(|| format!("writing the apt source {}", path.display()))
}

/// Says what the tools are about to change on the host (apt sources,
/// packages, dpkg architectures) and why, before they change it: one line
/// on stderr, which a spinner would hide.
pub fn announce_host_change(change_and_reason: &str) {
    eprintln!("kios: {change_and_reason}");
}

/// How a caller uses apt's view of the archive (its architectures and
/// package lists).
pub enum AptLists {
    /// Queries them (`apt-cache`).
    Read,
    /// Changes them (`dpkg --add-architecture`, `apt-get update`).
    Change,
}

/// A lock, in the cache, that orders the tools' own apt queries after a
/// change of the lists: between `dpkg --add-architecture` and the
/// `apt-get update` that follows it, every `apt-cache` query fails ("the
/// package cache was built for different architectures"), which a test
/// step fetching packages beside one adding arm64 ran into. Readers share
/// it; a change holds it alone. Released when the file is dropped.
pub fn lock_apt_lists(use_: AptLists) -> Result<File> {
    let path = crate::host::cache::cache_dir()?.join("apt-lists.lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match use_ {
        AptLists::Read => file.lock_shared(),
        AptLists::Change => file.lock(),
    }
    .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Runs apt non-interactively; its output is shown only when it fails.
pub fn run_apt(command: &mut Command) -> Result<()> {
    let rendered = render(command);
    let output = command
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{rendered}`"))?;
    if !output.status.success() {
        bail!(
            "`{rendered}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn render(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_archive_address_apt_uses_for_the_suite() {
        let policy = "Package files:\n 100 /var/lib/dpkg/status\n     release a=now\n \
            100 http://mirror.example/debian bookworm-backports/main amd64 Packages\n \
            500 http://mirror.example/debian bookworm/main arm64 Packages\n     release n=bookworm\n";
        assert_eq!(
            archive_uri(policy, "bookworm", "main").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(archive_uri(policy, "trixie", "main"), None);
    }

    #[test]
    fn a_component_source_uses_the_archive_of_bookworm_main() {
        assert_eq!(
            component_sources_file("non-free-firmware"),
            "/etc/apt/sources.list.d/kios-non-free-firmware.sources"
        );
        assert_eq!(
            sources_entry(
                "deb",
                "http://mirror.example/debian",
                "bookworm",
                "non-free-firmware"
            ),
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\
             Components: non-free-firmware\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
    }

    #[test]
    fn only_fully_installed_packages_have_a_version() {
        assert_eq!(
            parse_status_and_version("install ok installed\t1:7.2+dfsg-7"),
            Some("1:7.2+dfsg-7".to_string())
        );
        assert_eq!(
            parse_status_and_version("deinstall ok config-files\t1.0"),
            None
        );
        assert_eq!(parse_status_and_version(""), None);
    }

    #[test]
    fn backports_versions_are_recognised() {
        assert!(is_backports_version("1:10.0.2+ds-2+deb13u1~bpo12+1"));
        assert!(!is_backports_version("1:7.2+dfsg-7+deb12u7"));
    }

    #[test]
    fn each_arch_gets_only_its_own_qemu_and_firmware() {
        assert_eq!(qemu_packages(Arch::Amd64), ["qemu-system-x86", "ovmf"]);
        assert_eq!(
            qemu_packages(Arch::Arm64),
            ["qemu-system-arm", "qemu-efi-aarch64"]
        );
        let every_arch: Vec<&str> = Arch::ALL
            .iter()
            .flat_map(|arch| qemu_packages(*arch).iter().copied())
            .collect();
        assert_eq!(QEMU_PACKAGES, every_arch);
    }

    #[test]
    fn install_command_names_the_suite_when_needed() {
        assert_eq!(
            install_command_line(&["qemu-system-x86", "ovmf"], true),
            "apt-get install -y -t bookworm-backports qemu-system-x86 ovmf"
        );
        assert_eq!(
            install_command_line(&["qemu-system-arm"], false),
            "apt-get install -y qemu-system-arm"
        );
    }
}
