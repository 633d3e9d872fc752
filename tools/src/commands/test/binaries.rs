//! The test binaries: built once up front with `cargo test --no-run`, found in cargo's JSON messages.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::steps::{Action, STEPS};
use crate::host::workspace::{cargo, Workspace};

/// A test binary cargo built, and the package it belongs to.
#[derive(Clone, Debug)]
pub(super) struct TestBinary {
    pub(super) executable: PathBuf,
    pub(super) package_dir: PathBuf,
}

/// The `cargo test` of every `CargoTest` step with `--no-run`: that builds
/// its binaries, the kios-tools integration tests among them, so the step
/// itself only runs them. Returns the integration test binaries by name.
pub(super) fn build_test_binaries(
    workspace: &Workspace,
) -> (HashMap<String, TestBinary>, Result<()>) {
    let mut binaries = HashMap::new();
    let mut failures = Vec::new();
    for step in STEPS {
        let Action::CargoTest(args) = step.action else {
            continue;
        };
        let built = cargo()
            .current_dir(&workspace.root)
            .args(args)
            .args(["--no-run", "--message-format=json-render-diagnostics"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("running cargo")
            .and_then(|output| {
                binaries.extend(integration_tests(&String::from_utf8_lossy(&output.stdout)));
                if output.status.success() {
                    Ok(())
                } else {
                    bail!("({})", output.status)
                }
            });
        if let Err(error) = built {
            failures.push(format!(
                "`cargo {} --no-run` failed {error:#}",
                args.join(" ")
            ));
        }
    }
    let outcome = if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(failures.join("; ")))
    };
    (binaries, outcome)
}

/// The parts of cargo's JSON messages this needs.
#[derive(Deserialize)]
#[serde(tag = "reason")]
enum CargoMessage {
    #[serde(rename = "compiler-artifact")]
    CompilerArtifact(Artifact),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Artifact {
    manifest_path: PathBuf,
    target: ArtifactTarget,
    profile: ArtifactProfile,
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ArtifactTarget {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct ArtifactProfile {
    test: bool,
}

/// The integration test binaries (`tests/*.rs`) in cargo's JSON messages, by target name.
fn integration_tests(messages: &str) -> impl Iterator<Item = (String, TestBinary)> + '_ {
    messages.lines().filter_map(|line| {
        let CargoMessage::CompilerArtifact(artifact) = serde_json::from_str(line).ok()? else {
            return None;
        };
        if !artifact.profile.test || artifact.target.kind != ["test"] {
            return None;
        }
        let binary = TestBinary {
            executable: artifact.executable?,
            package_dir: artifact.manifest_path.parent()?.to_path_buf(),
        };
        Some((artifact.target.name, binary))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn finds_the_integration_test_binaries_in_cargos_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tools/Cargo.toml","target":{"name":"e2e_node","kind":["test"]},"profile":{"test":true},"executable":"/w/target/debug/deps/e2e_node-1"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tools/Cargo.toml","target":{"name":"kios_tools","kind":["lib"]},"profile":{"test":true},"executable":"/w/target/debug/deps/kios_tools-2"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/tools/Cargo.toml","target":{"name":"serde","kind":["lib"]},"profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n"
        );
        let found: Vec<(String, TestBinary)> = integration_tests(messages).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "e2e_node");
        assert_eq!(
            found[0].1.executable,
            Path::new("/w/target/debug/deps/e2e_node-1")
        );
        assert_eq!(found[0].1.package_dir, Path::new("/w/tools"));
    }
}
