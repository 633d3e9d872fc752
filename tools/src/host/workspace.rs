//! The cargo workspace: where it is, and building its musl binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::host::arch::Arch;
use crate::host::command::output_of;
use crate::host::progress::with_step;

/// The workspace's root and target directory, as cargo reports them.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

impl Workspace {
    /// Asks cargo rather than guessing, so `CARGO_TARGET_DIR` and friends are honoured.
    pub fn locate() -> Result<Workspace> {
        let output = cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .stderr(Stdio::inherit())
            .output()
            .context("running `cargo metadata`")?;
        if !output.status.success() {
            bail!("`cargo metadata` failed ({})", output.status);
        }
        let metadata: Metadata =
            serde_json::from_slice(&output.stdout).context("reading `cargo metadata` output")?;
        Ok(Workspace {
            root: metadata.workspace_root,
            target_dir: metadata.target_directory,
        })
    }

    /// A directory under the target dir for images and other build outputs of these tools.
    pub fn output_dir(&self) -> Result<PathBuf> {
        let dir = self.target_dir.join("kios");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// `cargo build --release -p <package> --target <musl triple>`; returns the executable.
    ///
    /// The path comes from cargo's JSON messages so it is right whatever the
    /// target dir is; on failure cargo's own diagnostics are shown.
    pub fn build_musl_binary(&self, package: &str, arch: Arch) -> Result<PathBuf> {
        let target = arch.musl_target();
        self.ensure_rust_target(target)?;
        with_step(format!("building {package} for {target}"), || {
            let output = cargo()
                .current_dir(&self.root)
                .args([
                    "build",
                    "--release",
                    "--message-format=json-render-diagnostics",
                ])
                .args(["--package", package, "--target", target])
                .args(registry_path_remaps(target))
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running cargo to build {package}"))?;
            if !output.status.success() {
                bail!(
                    "`cargo build --release -p {package} --target {target}` failed ({}):\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim_end()
                );
            }
            executable_from_messages(&output.stdout, package).with_context(|| {
                format!("cargo built {package} for {target} but it has no binary target named {package}")
            })
        })
    }

    /// Adds `target`'s standard library to the pinned toolchain when it is
    /// missing. rust-toolchain.toml names both musl targets, but a fresh
    /// machine that already had the pinned toolchain, with
    /// `RUSTUP_AUTO_INSTALL=0` set, got neither from rustup. rustup runs
    /// in the workspace so it acts on the pinned toolchain.
    fn ensure_rust_target(&self, target: &str) -> Result<()> {
        let rustup = || {
            let mut command = Command::new("rustup");
            command.current_dir(&self.root);
            command
        };
        let installed = output_of(rustup().args(["target", "list", "--installed"]))
            .context("the tools need rustup to add the musl targets")?;
        if lists_target(&installed, target) {
            return Ok(());
        }
        with_step(format!("adding the Rust target {target}"), || {
            output_of(rustup().args(["target", "add", target])).map(drop)
        })
    }
}

/// `--config` arguments that remap the directories cargo unpacks crates
/// into (`$CARGO_HOME/registry/src/<registry>`) to `crates`, added to the
/// target's rustflags in .cargo/config.toml (cargo joins the arrays).
/// Panic locations in dependencies otherwise carry that absolute path:
/// the binaries would differ between machines whose CARGO_HOME differs,
/// and the init would carry about 500 bytes of it.
fn registry_path_remaps(target: &str) -> Vec<String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".cargo")));
    let Some(registries) =
        cargo_home.and_then(|home| std::fs::read_dir(home.join("registry").join("src")).ok())
    else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = registries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    dirs.sort();
    remap_config(target, &dirs)
}

fn remap_config(target: &str, dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter()
        .flat_map(|dir| {
            let flag = toml::Value::String(format!("--remap-path-prefix={}=crates", dir.display()));
            [
                "--config".to_string(),
                format!("target.{target}.rustflags=[{flag}]"),
            ]
        })
        .collect()
}

fn lists_target(installed_targets: &str, target: &str) -> bool {
    installed_targets.lines().any(|line| line.trim() == target)
}

/// The cargo that runs us (so the pinned toolchain is used), else `cargo` from PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

#[derive(Deserialize)]
struct ArtifactMessage {
    reason: String,
    #[serde(default)]
    target: Option<ArtifactTarget>,
    #[serde(default)]
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ArtifactTarget {
    name: String,
}

fn executable_from_messages(stdout: &[u8], package: &str) -> Option<PathBuf> {
    // Binary target names keep the package's dashes.
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<ArtifactMessage>(line).ok())
        .filter(|message| message.reason == "compiler-artifact")
        .filter(|message| message.target.as_ref().is_some_and(|t| t.name == package))
        .find_map(|message| message.executable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_of_the_requested_package() {
        let messages = br#"{"reason":"compiler-artifact","target":{"name":"heapless"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"kios-init"},"executable":"/t/x86_64-unknown-linux-musl/release/kios-init"}
{"reason":"build-finished","success":true}
"#;
        assert_eq!(
            executable_from_messages(messages, "kios-init"),
            Some(PathBuf::from(
                "/t/x86_64-unknown-linux-musl/release/kios-init"
            ))
        );
        assert_eq!(executable_from_messages(messages, "kios-standin"), None);
    }

    #[test]
    fn registry_directories_are_remapped_in_the_targets_rustflags() {
        assert_eq!(
            remap_config(
                "x86_64-unknown-linux-musl",
                &[PathBuf::from(
                    "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f"
                )]
            ),
            [
                "--config",
                r#"target.x86_64-unknown-linux-musl.rustflags=["--remap-path-prefix=/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f=crates"]"#
            ]
        );
    }

    #[test]
    fn a_target_counts_as_installed_only_when_rustup_lists_it_whole() {
        let listed = "x86_64-unknown-linux-gnu\nx86_64-unknown-linux-musl\n";
        assert!(lists_target(listed, "x86_64-unknown-linux-musl"));
        assert!(!lists_target(listed, "aarch64-unknown-linux-musl"));
        assert!(!lists_target(
            "x86_64-unknown-linux-musleabi\n",
            "x86_64-unknown-linux-musl"
        ));
    }
}
