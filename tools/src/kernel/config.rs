//! The kernel config fragments and resolved configs: where they live,
//! reading them, and comparing what the fragments ask for with what
//! Kconfig resolved. Pure text work; nothing here runs `make`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::kernel_arch;
use crate::host::arch::Arch;
use crate::host::workspace::Workspace;

/// The fragment every arch merges first.
const COMMON_FRAGMENT: &str = "common.config";

/// Where the fragments and resolved configs live.
pub fn kernel_dir(workspace: &Workspace) -> PathBuf {
    workspace.root.join("kernel")
}

/// `kernel/<kernel arch>.config`, merged after the common fragment.
pub fn arch_fragment(workspace: &Workspace, arch: Arch) -> PathBuf {
    kernel_dir(workspace).join(format!("{}.config", kernel_arch(arch)))
}

/// `kernel/<kernel arch>.resolved.config`, the committed result.
pub fn resolved_config_path(workspace: &Workspace, arch: Arch) -> PathBuf {
    kernel_dir(workspace).join(format!("{}.resolved.config", kernel_arch(arch)))
}

pub(super) fn fragment_paths(workspace: &Workspace, arch: Arch) -> [PathBuf; 2] {
    [
        kernel_dir(workspace).join(COMMON_FRAGMENT),
        arch_fragment(workspace, arch),
    ]
}

/// One option's value as a .config spells it: `y`, `m`, a number, a
/// quoted string, or `n` for `# CONFIG_X is not set`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionValue(pub String);

impl OptionValue {
    fn off() -> OptionValue {
        OptionValue("n".to_string())
    }
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An option line of a config: `CONFIG_X=value` or `# CONFIG_X is not set`.
fn parse_option_line(line: &str) -> Option<(String, OptionValue)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let name = rest.strip_suffix(" is not set")?;
        return name
            .starts_with("CONFIG_")
            .then(|| (name.to_string(), OptionValue::off()));
    }
    let (name, value) = line.split_once('=')?;
    name.starts_with("CONFIG_")
        .then(|| (name.to_string(), OptionValue(value.to_string())))
}

/// Every option of a resolved .config. Options Kconfig did not write at
/// all (their dependencies are off) are off too.
pub fn parse_config(text: &str) -> BTreeMap<String, OptionValue> {
    text.lines().filter_map(parse_option_line).collect()
}

/// An option a fragment asks for, with where it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub value: OptionValue,
    /// `file:line`, for messages.
    pub origin: String,
}

/// Reads fragments in merge order (a later fragment overrides an earlier
/// one, as merge_config.sh does). Each option must have its reason on the
/// comment line right above it, and appear once per fragment.
pub fn read_requests(fragments: &[PathBuf]) -> Result<BTreeMap<String, Request>> {
    let mut requests = BTreeMap::new();
    for fragment in fragments {
        let text = std::fs::read_to_string(fragment).with_context(|| {
            format!("reading the kernel config fragment {}", fragment.display())
        })?;
        let name = fragment.file_name().map_or_else(
            || fragment.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for (option, request) in parse_fragment(&text, &name)? {
            requests.insert(option, request);
        }
    }
    Ok(requests)
}

/// One fragment's options; `name` labels the origins and errors.
pub fn parse_fragment(text: &str, name: &str) -> Result<Vec<(String, Request)>> {
    let mut options: Vec<(String, Request)> = Vec::new();
    let mut previous_is_reason = false;
    for (index, line) in text.lines().enumerate() {
        let origin = format!("{name}:{}", index + 1);
        let trimmed = line.trim();
        if let Some((option, value)) = parse_option_line(trimmed) {
            if !previous_is_reason {
                bail!("{origin}: {option} has no `# reason` comment on the line above it");
            }
            if options.iter().any(|(seen, _)| *seen == option) {
                bail!("{origin}: {option} appears twice in {name}");
            }
            options.push((option, Request { value, origin }));
            previous_is_reason = false;
        } else if trimmed.starts_with('#') {
            previous_is_reason = trimmed.len() > 1;
        } else if trimmed.is_empty() {
            previous_is_reason = false;
        } else {
            bail!("{origin}: not an option, a comment or a blank line: {trimmed}");
        }
    }
    Ok(options)
}

/// A requested option whose resolved value differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmet {
    pub option: String,
    pub request: Request,
    pub resolved: OptionValue,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} asked for {}, resolved to {}",
            self.request.origin, self.option, self.request.value, self.resolved
        )
    }
}

/// The requests the resolved config does not honour (usually a missing
/// dependency, or a `select` from another option).
pub fn unmet_requests(
    requests: &BTreeMap<String, Request>,
    resolved: &BTreeMap<String, OptionValue>,
) -> Vec<Unmet> {
    requests
        .iter()
        .filter_map(|(option, request)| {
            let resolved = resolved
                .get(option)
                .cloned()
                .unwrap_or_else(OptionValue::off);
            (resolved != request.value).then(|| Unmet {
                option: option.clone(),
                request: request.clone(),
                resolved,
            })
        })
        .collect()
}

/// Lines Kconfig writes from probing the host's tools rather than from the
/// fragments: the header naming the source version, and the compilers',
/// assembler's and linker's versions. A rustup or gcc update changes them
/// and nothing the node runs, so the check ignores them; an option whose
/// value follows from a probe still shows up as the option itself.
fn describes_host_toolchain(line: &str) -> bool {
    let option = line
        .strip_prefix("CONFIG_")
        .and_then(|rest| rest.split_once('='))
        .map(|(name, _)| name);
    match option {
        Some(name) => {
            name.ends_with("_VERSION")
                || name == "CC_VERSION_TEXT"
                || name.starts_with("RUSTC_HAS_")
        }
        None => line.starts_with("# Linux/") && line.ends_with(" Kernel Configuration"),
    }
}

/// Lines that differ between the committed and the freshly resolved config,
/// leaving out those that only describe the host's toolchain.
pub fn config_differences(committed: &str, resolved: &str) -> Vec<String> {
    let relevant = |config| -> BTreeSet<&str> {
        str::lines(config)
            .filter(|line| !describes_host_toolchain(line))
            .collect()
    };
    let committed_lines = relevant(committed);
    let resolved_lines = relevant(resolved);
    let removed = committed_lines
        .difference(&resolved_lines)
        .map(|line| format!("- {line}"));
    let added = resolved_lines
        .difference(&committed_lines)
        .map(|line| format!("+ {line}"));
    removed.chain(added).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_lines_and_their_values() {
        assert_eq!(
            parse_option_line("CONFIG_SMP=y"),
            Some(("CONFIG_SMP".into(), OptionValue("y".into())))
        );
        assert_eq!(
            parse_option_line("# CONFIG_VT is not set"),
            Some(("CONFIG_VT".into(), OptionValue::off()))
        );
        assert_eq!(
            parse_option_line("CONFIG_CMDLINE=\"a b\""),
            Some(("CONFIG_CMDLINE".into(), OptionValue("\"a b\"".into())))
        );
        assert_eq!(parse_option_line("# Networking at all."), None);
        assert_eq!(
            parse_option_line("# Linux/x86 6.12 Kernel Configuration"),
            None
        );
    }

    #[test]
    fn fragments_need_a_reason_above_each_option() {
        let good = "# header\n\n# Why SMP.\nCONFIG_SMP=y\n# Why no VT.\n# CONFIG_VT is not set\n";
        let options = parse_fragment(good, "common.config").unwrap();
        assert_eq!(options.len(), 2);
        assert_eq!(options[1].1.origin, "common.config:6");

        let unexplained = "# Why SMP.\nCONFIG_SMP=y\nCONFIG_NET=y\n";
        let error = parse_fragment(unexplained, "f").unwrap_err().to_string();
        assert!(
            error.contains("f:3") && error.contains("CONFIG_NET"),
            "{error}"
        );

        let after_blank = "# Why.\n\nCONFIG_NET=y\n";
        assert!(parse_fragment(after_blank, "f").is_err());

        let twice = "# a\nCONFIG_NET=y\n# b\nCONFIG_NET=n\n";
        assert!(parse_fragment(twice, "f").is_err());

        assert!(parse_fragment("# a\nnonsense\n", "f").is_err());
    }

    #[test]
    fn unmet_requests_treat_absent_options_as_off() {
        let requests: BTreeMap<String, Request> = [
            ("CONFIG_SMP", "y"),
            ("CONFIG_VT", "n"),
            ("CONFIG_ACPI", "y"),
            ("CONFIG_CPU_FREQ", "n"),
        ]
        .into_iter()
        .map(|(option, value)| {
            (
                option.to_string(),
                Request {
                    value: OptionValue(value.into()),
                    origin: "f:1".into(),
                },
            )
        })
        .collect();
        let resolved = parse_config("CONFIG_SMP=y\nCONFIG_CPU_FREQ=y\n# CONFIG_ACPI is not set\n");
        let unmet: Vec<String> = unmet_requests(&requests, &resolved)
            .into_iter()
            .map(|u| format!("{} {}", u.option, u.resolved))
            .collect();
        assert_eq!(unmet, ["CONFIG_ACPI n", "CONFIG_CPU_FREQ y"]);
    }

    #[test]
    fn later_fragments_override_earlier_ones() {
        let dir = std::env::temp_dir().join(format!("kios-fragments-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let common = dir.join("common.config");
        let x86 = dir.join("x86_64.config");
        std::fs::write(&common, "# a\nCONFIG_A=y\n# b\nCONFIG_B=y\n").unwrap();
        std::fs::write(&x86, "# b off here\n# CONFIG_B is not set\n").unwrap();
        let requests = read_requests(&[common, x86]).unwrap();
        assert_eq!(requests["CONFIG_A"].value, OptionValue("y".into()));
        assert_eq!(requests["CONFIG_B"].value, OptionValue::off());
        assert_eq!(requests["CONFIG_B"].origin, "x86_64.config:2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn differences_name_removed_and_added_lines() {
        let differences = config_differences("A=y\nB=y\n", "A=y\nC=y\n");
        assert_eq!(differences, ["- B=y", "+ C=y"]);
        assert!(config_differences("A=y\n", "A=y\n").is_empty());
    }

    #[test]
    fn a_new_compiler_or_rustc_is_not_a_config_difference() {
        let committed = "# Linux/x86_64 6.12.117 Kernel Configuration\n\
            CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"\n\
            CONFIG_GCC_VERSION=120200\nCONFIG_RUSTC_VERSION=109500\n\
            CONFIG_RUSTC_HAS_UNNECESSARY_TRANSMUTES=y\nCONFIG_SMP=y\n";
        let updated = "# Linux/x86_64 6.12.118 Kernel Configuration\n\
            CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14+deb12u1) 12.2.0\"\n\
            CONFIG_GCC_VERSION=120200\nCONFIG_RUSTC_VERSION=109600\nCONFIG_SMP=y\n";
        assert!(config_differences(committed, updated).is_empty());
        let option_changed = updated.replace("CONFIG_SMP=y", "# CONFIG_SMP is not set");
        assert_eq!(
            config_differences(committed, &option_changed),
            ["- CONFIG_SMP=y", "+ # CONFIG_SMP is not set"]
        );
    }
}
