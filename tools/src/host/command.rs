//! Running host programs the tools depend on (apt, dpkg-deb, make, ...).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The command line as a person would type it, for messages.
pub fn render(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` with no stdin and returns its stdout; a failure names
/// the command and carries what it printed on stderr.
pub fn output_of(command: &mut Command) -> Result<String> {
    let rendered = render(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{rendered}`"))?;
    if !output.status.success() {
        bail!(
            "`{rendered}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` with its output appended to `log`; a failure quotes the log's end.
pub fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    let rendered = render(command);
    let output = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let errors = output
        .try_clone()
        .with_context(|| format!("opening {}", log.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .status()
        .with_context(|| format!("running `{rendered}`"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        bail!(
            "`{rendered}` failed ({status}); the end of {}:\n{tail}",
            log.display()
        );
    }
    Ok(())
}
