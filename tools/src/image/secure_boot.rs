//! UEFI Secure Boot for the A/B disk ([docs/security.md](../../../docs/security.md#secure-boot)):
//! the key that signs what the firmware runs (systemd-boot, which then
//! asks the firmware to verify each unified kernel image it loads),
//! signing with it, and, for tests, a firmware variable store with that
//! key enrolled.
//!
//! The key is the user's (`--sign-key`/`--sign-cert`: a PEM RSA key and
//! its X.509 certificate) or the project key, made once in the cache
//! ([`project_key`]). UEFI firmware verifies RSA-2048 signatures over
//! SHA-256 (UEFI 2.10, 32.6.3), so a generated key is one of those.
//!
//! Built with: `sbsign` and `sbverify` (Debian's sbsigntool) to sign and
//! check PE images (Authenticode); `openssl req` (Debian's openssl) to make
//! the key: the tools' X.509 crate (rcgen, on ring) cannot generate RSA
//! keys; `virt-fw-vars` from PyPI's virt-firmware (Red Hat's, the firmware
//! variable store editor; Debian 12 does not package it) in a venv in the
//! cache ([`VIRT_FIRMWARE_VERSION`]) to enroll the key in a copy of OVMF's
//! variable store; OVMF's Secure Boot build (Debian's ovmf) to boot it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::host::cache::cache_subdir;
use crate::host::command::output_of;
use crate::host::fs::{
    persist_dir, persist_file, remove_dir_if_present, scratch_dir_for, scratch_file_for,
};
use crate::host::packages::ensure_installed;
use crate::host::progress::with_step;

/// What signing and key making run on the host.
pub const SIGNING_PACKAGES: &[&str] = &["sbsigntool", "openssl"];
/// What enrolling a key in a firmware variable store runs: the venv
/// module (virt-firmware comes from PyPI) and the firmware whose store it is.
pub const ENROLLING_PACKAGES: &[&str] = &["python3-venv", "ovmf"];
/// virt-firmware, pinned here rather than in bom.toml, whose entries are
/// what goes into an image (Debian packages, URLs and files, each with a
/// sha256); this is a host tool the tests run, like a Debian package they
/// install. pip resolves its own dependencies (cryptography, pefile).
pub const VIRT_FIRMWARE_VERSION: &str = "26.10";
/// The cache's subdirectory of Secure Boot's state: the project key in
/// `key/`, the virt-firmware venv in `virt-firmware-<version>/`.
pub const SECURE_BOOT_CACHE: &str = "secure-boot";
/// The owner GUID the enrolled certificates carry in the signature lists
/// (any GUID names the owner; this one is kiOS's).
pub const KIOS_OWNER_GUID: &str = "57e581d3-c291-45b4-8eec-ae75d2fdd4e6";
/// The project key's subject.
const PROJECT_KEY_SUBJECT: &str = "/CN=kiOS Secure Boot project key/";
const KEY_FILE: &str = "db.key";
const CERT_FILE: &str = "db.crt";

/// OVMF's Secure Boot build (amd64; Debian's ovmf): its code needs q35
/// with SMM and a secure pflash, so that only SMM code writes the
/// authenticated variables. Its store starts empty: no key, Secure Boot
/// off, until [`enrolled_variables`] writes one.
pub const SECURE_BOOT_FIRMWARE_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const SECURE_BOOT_FIRMWARE_VARIABLES: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// A PEM private key and its X.509 certificate (PEM): what sbsign takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    pub key: PathBuf,
    pub cert: PathBuf,
}

impl SigningKey {
    /// The user's key and certificate, checked to be PEM and to belong
    /// together (the certificate's public key is the key's).
    pub fn from_files(key: &Path, cert: &Path) -> Result<SigningKey> {
        check_pem(key, "PRIVATE KEY")?;
        check_pem(cert, "CERTIFICATE")?;
        ensure_installed(SIGNING_PACKAGES)?;
        let public_of_key = output_of(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(key),
        )
        .with_context(|| format!("reading the key {}", key.display()))?;
        let public_of_cert = output_of(
            Command::new("openssl")
                .args(["x509", "-noout", "-pubkey", "-in"])
                .arg(cert),
        )
        .with_context(|| format!("reading the certificate {}", cert.display()))?;
        ensure!(
            public_of_key.trim() == public_of_cert.trim(),
            "the certificate {} is not the key {}'s",
            cert.display(),
            key.display()
        );
        Ok(SigningKey {
            key: key.to_path_buf(),
            cert: cert.to_path_buf(),
        })
    }
}

/// Refuses a file that is not PEM of `kind` (`PRIVATE KEY` also matches
/// `RSA PRIVATE KEY`), so a DER file or a swapped key and certificate
/// fail with their name rather than deep in sbsign.
fn check_pem(path: &Path, kind: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (PEM expected)", path.display()))?;
    ensure!(
        pem_kinds(&text).any(|found| found.ends_with(kind)),
        "{} holds no PEM {kind} (`-----BEGIN {kind}-----`)",
        path.display()
    );
    Ok(())
}

fn pem_kinds(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        line.trim()
            .strip_prefix("-----BEGIN ")?
            .strip_suffix("-----")
    })
}

/// The project key: made once (RSA-2048, self-signed, 10 years) in the
/// cache's `secure-boot/key/` (`db.key`, readable by its owner only, and
/// `db.crt`) and reused by every later build and test. `cargo kios clean`
/// removes it; a disk signed with it then needs it enrolled again.
pub fn project_key() -> Result<SigningKey> {
    let dir = cache_subdir(SECURE_BOOT_CACHE)?.join("key");
    let key = SigningKey {
        key: dir.join(KEY_FILE),
        cert: dir.join(CERT_FILE),
    };
    if !dir.is_dir() {
        ensure_installed(SIGNING_PACKAGES)?;
        let scratch = scratch_dir_for(&dir)?;
        with_step(
            format!("making the project's Secure Boot key in {}", dir.display()),
            || generate_key(scratch.path(), PROJECT_KEY_SUBJECT),
        )?;
        // Another process may have made one first: then that one is the key.
        persist_dir(scratch, &dir)?;
    }
    Ok(key)
}

/// Writes `db.key` and `db.crt` in `dir`: a fresh RSA-2048 key and its
/// self-signed certificate.
fn generate_key(dir: &Path, subject: &str) -> Result<()> {
    let key = dir.join(KEY_FILE);
    output_of(
        Command::new("openssl")
            .args([
                "req", "-new", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes",
            ])
            .args(["-days", "3650", "-subj", subject, "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(dir.join(CERT_FILE)),
    )?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("making {} private", key.display()))
}

/// Signs the PE image `input` into `output` with `key` (sbsign), then
/// checks the signature against the certificate (sbverify).
pub fn sign_efi(input: &Path, output: &Path, key: &SigningKey) -> Result<()> {
    ensure_installed(SIGNING_PACKAGES)?;
    let scratch = scratch_file_for(output)?;
    output_of(&mut sign_command(input, scratch.path(), key))
        .with_context(|| format!("signing {}", input.display()))?;
    output_of(
        Command::new("sbverify")
            .arg("--cert")
            .arg(&key.cert)
            .arg(scratch.path()),
    )
    .with_context(|| format!("verifying the signature on {}", input.display()))?;
    persist_file(scratch, output)
}

fn sign_command(input: &Path, output: &Path, key: &SigningKey) -> Command {
    let mut command = Command::new("sbsign");
    command
        .arg("--key")
        .arg(&key.key)
        .arg("--cert")
        .arg(&key.cert)
        .arg("--output")
        .arg(output)
        .arg(input);
    command
}

/// The bytes of `input`, signed with `key` when there is one (through the
/// file `scratch`, removed after); unsigned otherwise.
pub fn read_signed(input: &Path, key: Option<&SigningKey>, scratch: &Path) -> Result<Vec<u8>> {
    let Some(key) = key else {
        return std::fs::read(input).with_context(|| format!("reading {}", input.display()));
    };
    sign_efi(input, scratch, key)?;
    let bytes = std::fs::read(scratch).with_context(|| format!("reading {}", scratch.display()))?;
    std::fs::remove_file(scratch).with_context(|| format!("removing {}", scratch.display()))?;
    Ok(bytes)
}

/// Writes the certificate as DER to `output`: the form firmware setup
/// menus and KeyTool enroll from a FAT filesystem.
pub fn write_der_certificate(key: &SigningKey, output: &Path) -> Result<()> {
    ensure_installed(SIGNING_PACKAGES)?;
    output_of(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&key.cert)
            .arg("-out")
            .arg(output),
    )
    .map(drop)
}

/// `virt-fw-vars` from the venv in the cache, made on first use. A venv's
/// scripts name its absolute path, so it is made where it stays; a marker
/// written last tells a complete one from an interrupted one.
fn virt_fw_vars() -> Result<PathBuf> {
    ensure_installed(ENROLLING_PACKAGES)?;
    let venv =
        cache_subdir(SECURE_BOOT_CACHE)?.join(format!("virt-firmware-{VIRT_FIRMWARE_VERSION}"));
    let complete = venv.join(".complete");
    if !complete.exists() {
        with_step(
            format!(
                "installing virt-firmware {VIRT_FIRMWARE_VERSION} from PyPI into {}",
                venv.display()
            ),
            || -> Result<()> {
                remove_dir_if_present(&venv)?;
                make_venv(&venv)?;
                std::fs::write(&complete, "")
                    .with_context(|| format!("writing {}", complete.display()))
            },
        )?;
    }
    Ok(venv.join("bin/virt-fw-vars"))
}

fn make_venv(venv: &Path) -> Result<()> {
    output_of(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    output_of(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("virt-firmware=={VIRT_FIRMWARE_VERSION}")),
    )?;
    ensure!(
        venv.join("bin/virt-fw-vars").exists(),
        "virt-firmware {VIRT_FIRMWARE_VERSION} installed no virt-fw-vars in {}",
        venv.display()
    );
    Ok(())
}

/// Writes `output`: OVMF's empty variable store with `key`'s certificate
/// as the platform key, key exchange key and signature database, and
/// Secure Boot on: the firmware then runs only images signed by `key`.
pub fn enrolled_variables(key: &SigningKey, output: &Path) -> Result<()> {
    let program = virt_fw_vars()?;
    let scratch = scratch_file_for(output)?;
    output_of(&mut enroll_command(
        &program,
        Path::new(SECURE_BOOT_FIRMWARE_VARIABLES),
        scratch.path(),
        key,
    ))
    .context("enrolling the key in the firmware's variable store")?;
    persist_file(scratch, output)
}

fn enroll_command(program: &Path, input: &Path, output: &Path, key: &SigningKey) -> Command {
    let mut command = Command::new(program);
    command
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output);
    for option in ["--set-pk", "--add-kek", "--add-db"] {
        command.args([option, KIOS_OWNER_GUID]).arg(&key.cert);
    }
    command.arg("--secure-boot");
    command
}

/// Fails unless the Secure Boot firmware is installed (amd64's only).
pub fn check_firmware() -> Result<()> {
    for file in [SECURE_BOOT_FIRMWARE_CODE, SECURE_BOOT_FIRMWARE_VARIABLES] {
        if !Path::new(file).exists() {
            bail!("no Secure Boot firmware at {file} (package ovmf)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::command::render;

    fn key() -> SigningKey {
        SigningKey {
            key: "/k/db.key".into(),
            cert: "/k/db.crt".into(),
        }
    }

    #[test]
    fn sbsign_is_given_the_key_the_certificate_and_the_output() {
        assert_eq!(
            render(&sign_command(
                Path::new("/in.efi"),
                Path::new("/out.efi"),
                &key()
            )),
            "sbsign --key /k/db.key --cert /k/db.crt --output /out.efi /in.efi"
        );
    }

    #[test]
    fn the_key_is_enrolled_as_pk_kek_and_db_with_secure_boot_on() {
        let command = enroll_command(
            Path::new("/venv/bin/virt-fw-vars"),
            Path::new("/vars.fd"),
            Path::new("/out.fd"),
            &key(),
        );
        assert_eq!(
            render(&command),
            format!(
                "/venv/bin/virt-fw-vars --input /vars.fd --output /out.fd \
                 --set-pk {KIOS_OWNER_GUID} /k/db.crt --add-kek {KIOS_OWNER_GUID} /k/db.crt \
                 --add-db {KIOS_OWNER_GUID} /k/db.crt --secure-boot"
            )
        );
        uuid::Uuid::parse_str(KIOS_OWNER_GUID).unwrap();
    }

    #[test]
    fn a_key_or_certificate_that_is_not_pem_of_its_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let rsa = write(
            "rsa.key",
            "-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----\n",
        );
        let pkcs8 = write(
            "p8.key",
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        );
        let cert = write(
            "c.crt",
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        );
        let der = write("c.der", "0\u{82}\u{3}");
        assert!(check_pem(&rsa, "PRIVATE KEY").is_ok());
        assert!(check_pem(&pkcs8, "PRIVATE KEY").is_ok());
        assert!(check_pem(&cert, "CERTIFICATE").is_ok());
        assert!(check_pem(&cert, "PRIVATE KEY").is_err());
        assert!(check_pem(&rsa, "CERTIFICATE").is_err());
        assert!(check_pem(&der, "CERTIFICATE").is_err());
        assert!(check_pem(&dir.path().join("missing"), "CERTIFICATE").is_err());
    }
}
