//! Which kernel modules an image needs, in load order.
//!
//! Debian's kernel packages ship no modules.dep, so the dependencies are
//! read from each module's own `.modinfo` section (`depends=`), and
//! modules.builtin says which ones need no loading at all. The init loads
//! the resulting list with finit_module; no modprobe on the node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use goblin::elf::Elf;
use walkdir::WalkDir;

/// The kernel's module naming: `-` and `_` are the same.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The modules of one kernel release directory (`lib/modules/<release>`).
pub struct ModuleTree {
    release_dir: PathBuf,
    /// Module name → its .ko, relative to the release directory.
    files: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

impl ModuleTree {
    pub fn open(release_dir: &Path) -> Result<ModuleTree> {
        let mut files = BTreeMap::new();
        for entry in WalkDir::new(release_dir.join("kernel")) {
            let entry = entry.with_context(|| format!("walking {}", release_dir.display()))?;
            let path = entry.path();
            let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if let Some(name) = file_name.strip_suffix(".ko") {
                let relative = path
                    .strip_prefix(release_dir)
                    .context("walkdir left its root")?;
                files.insert(canonical(name), relative.to_path_buf());
            } else if file_name.contains(".ko.") {
                bail!(
                    "{} is compressed; finit_module needs plain .ko files",
                    path.display()
                );
            }
        }
        let builtin_list = release_dir.join("modules.builtin");
        let builtin = match std::fs::read_to_string(&builtin_list) {
            Ok(text) => text
                .lines()
                .filter_map(|line| Path::new(line).file_stem()?.to_str().map(canonical))
                .collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", builtin_list.display()))
            }
        };
        Ok(ModuleTree {
            release_dir: release_dir.to_path_buf(),
            files,
            builtin,
        })
    }

    /// The modules `wanted` needs, each after its dependencies, as paths
    /// relative to the release directory. Built-in modules are left out.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<PathBuf>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in wanted {
            self.visit(&canonical(name), &mut Vec::new(), &mut done, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if path.iter().any(|seen| seen == name) {
            bail!("module dependency cycle: {} -> {name}", path.join(" -> "));
        }
        let file = self.files.get(name).with_context(|| {
            format!(
                "no module `{name}` in {} (and it is not built in)",
                self.release_dir.display()
            )
        })?;
        path.push(name.to_string());
        for dependency in self.dependencies(file)? {
            self.visit(&dependency, path, done, order)?;
        }
        path.pop();
        done.insert(name.to_string());
        order.push(file.clone());
        Ok(())
    }

    /// The `depends=` entry of a module's .modinfo section.
    fn dependencies(&self, file: &Path) -> Result<Vec<String>> {
        let path = self.release_dir.join(file);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let elf = Elf::parse(&bytes).with_context(|| format!("parsing {}", path.display()))?;
        let modinfo = elf
            .section_headers
            .iter()
            .find(|header| elf.shdr_strtab.get_at(header.sh_name) == Some(".modinfo"))
            .with_context(|| format!("{} has no .modinfo section", path.display()))?;
        let start = usize::try_from(modinfo.sh_offset).context("section offset")?;
        let end = start + usize::try_from(modinfo.sh_size).context("section size")?;
        let section = bytes
            .get(start..end)
            .with_context(|| format!("{}: .modinfo out of bounds", path.display()))?;
        Ok(section
            .split(|&byte| byte == 0)
            .filter_map(|entry| std::str::from_utf8(entry).ok()?.strip_prefix("depends="))
            .flat_map(|list| list.split(','))
            .filter(|name| !name.is_empty())
            .map(canonical)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_treat_dash_and_underscore_alike() {
        assert_eq!(canonical("virtio-net"), "virtio_net");
    }
}
