//! The shared libraries a dynamically linked binary needs, read from ELF
//! headers (no `ldd`, which would run the binary, and only for the host's
//! architecture).
//!
//! The closure starts from the binary's `PT_INTERP` (the dynamic loader)
//! and `DT_NEEDED` entries and resolves each name the way glibc's loader
//! does on a root without `/etc/ld.so.cache`: in the multiarch directories,
//! then `/lib` and `/usr/lib`. Names are resolved in a sysroot made of
//! extracted Debian packages (libc6 and friends), following symlinks
//! inside the sysroot to the real file.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use goblin::elf::header::{EM_AARCH64, EM_X86_64};
use goblin::elf::Elf;

use crate::host::arch::Arch;

/// Symlink hops allowed while resolving one path (Linux's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// A root filesystem view made of one or more extracted package trees;
/// a path is looked up in each tree in order, as if they were merged.
#[derive(Clone, Debug)]
pub struct Sysroot {
    trees: Vec<PathBuf>,
}

/// One file the binary needs at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeededFile {
    /// The path the loader opens in the image, e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub image_path: PathBuf,
    /// The regular file that path leads to once symlinks are followed,
    /// e.g. `/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`.
    pub real_image_path: PathBuf,
    /// That file on the host.
    pub host_file: PathBuf,
}

impl Sysroot {
    pub fn new(trees: Vec<PathBuf>) -> Sysroot {
        Sysroot { trees }
    }

    /// The file for an image path in the first tree that has it (not following a final symlink).
    fn lookup(&self, image_path: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
        let relative = image_path.strip_prefix("/").unwrap_or(image_path);
        self.trees.iter().find_map(|tree| {
            let host = tree.join(relative);
            std::fs::symlink_metadata(&host)
                .ok()
                .map(|meta| (host, meta))
        })
    }

    /// Follows symlinks inside the sysroot: an absolute target means the
    /// sysroot's root, never the host's (hence not `fs::canonicalize`).
    /// Returns the real file's image path and host path, or None when
    /// the path leads nowhere.
    pub fn resolve(&self, image_path: &Path) -> Result<Option<(PathBuf, PathBuf)>> {
        let mut pending: VecDeque<OsString> = normal_components(image_path).collect();
        let mut resolved = PathBuf::from("/");
        let mut hops = 0;
        while let Some(component) = pending.pop_front() {
            if component == ".." {
                resolved.pop();
                continue;
            }
            let candidate = resolved.join(&component);
            let Some((host, meta)) = self.lookup(&candidate) else {
                return Ok(None);
            };
            if !meta.file_type().is_symlink() {
                resolved = candidate;
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                bail!(
                    "too many symlinks resolving {} in the sysroot",
                    image_path.display()
                );
            }
            let target = std::fs::read_link(&host)
                .with_context(|| format!("reading the symlink {}", host.display()))?;
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            for (index, part) in normal_components(&target).enumerate() {
                pending.insert(index, part);
            }
        }
        match self.lookup(&resolved) {
            Some((host, meta)) if meta.is_file() => Ok(Some((resolved, host))),
            _ => Ok(None),
        }
    }
}

/// The path's components as names, with `..` kept and `/` and `.` dropped.
fn normal_components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// The architecture an ELF file was built for.
pub fn elf_arch(elf: &Elf) -> Result<Arch> {
    match elf.header.e_machine {
        EM_X86_64 => Ok(Arch::Amd64),
        EM_AARCH64 => Ok(Arch::Arm64),
        other => bail!("ELF machine {other} is neither x86-64 nor aarch64"),
    }
}

/// Debian's multiarch directory name for `arch`.
fn multiarch_triplet(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-linux-gnu",
        Arch::Arm64 => "aarch64-linux-gnu",
    }
}

/// Where glibc's loader looks for a `DT_NEEDED` name when the root has no
/// ld.so.cache (as `ld.so --help` lists on Debian).
fn search_dirs(arch: Arch) -> [PathBuf; 4] {
    let triplet = multiarch_triplet(arch);
    [
        PathBuf::from("/lib").join(triplet),
        PathBuf::from("/usr/lib").join(triplet),
        PathBuf::from("/lib"),
        PathBuf::from("/usr/lib"),
    ]
}

/// What one ELF file asks the loader for.
struct Needs {
    arch: Arch,
    interpreter: Option<String>,
    libraries: Vec<String>,
}

fn read_needs(file: &Path) -> Result<Needs> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let elf =
        Elf::parse(&bytes).with_context(|| format!("{} is not an ELF file", file.display()))?;
    Ok(Needs {
        arch: elf_arch(&elf).with_context(|| file.display().to_string())?,
        interpreter: elf.interpreter.map(str::to_string),
        libraries: elf.libraries.iter().map(|name| name.to_string()).collect(),
    })
}

/// The architecture of the ELF file at `file`.
pub fn file_arch(file: &Path) -> Result<Arch> {
    read_needs(file).map(|needs| needs.arch)
}

/// Every file `binary` needs from `sysroot` to start: its loader and the
/// transitive closure of its libraries, sorted by image path. A static
/// binary needs none.
pub fn closure(binary: &Path, sysroot: &Sysroot) -> Result<Vec<NeededFile>> {
    let root_needs = read_needs(binary)?;
    let arch = root_needs.arch;
    let mut found: BTreeMap<PathBuf, NeededFile> = BTreeMap::new();
    let mut seen_names: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(Needs, PathBuf)> =
        VecDeque::from([(root_needs, binary.to_path_buf())]);
    while let Some((needs, needer)) = queue.pop_front() {
        if needs.arch != arch {
            bail!(
                "{} is built for {}, but {} is {arch}",
                needer.display(),
                needs.arch,
                binary.display()
            );
        }
        let mut wanted: Vec<PathBuf> = Vec::new();
        if let Some(interpreter) = needs.interpreter {
            if seen_names.insert(interpreter.clone()) {
                let (real_image_path, host_file) =
                    sysroot.resolve(Path::new(&interpreter))?.with_context(|| {
                        format!(
                            "{} asks for the loader {interpreter}, which the sysroot lacks",
                            needer.display()
                        )
                    })?;
                wanted.push(PathBuf::from(&interpreter));
                found.insert(
                    PathBuf::from(&interpreter),
                    NeededFile {
                        image_path: PathBuf::from(&interpreter),
                        real_image_path,
                        host_file,
                    },
                );
            }
        }
        for name in needs.libraries {
            if !seen_names.insert(name.clone()) {
                continue;
            }
            let needed =
                find_library(&name, arch, sysroot)?.with_context(|| {
                    format!(
                    "{} needs {name}, which is in none of the sysroot's library directories ({})",
                    needer.display(),
                    search_dirs(arch).map(|dir| dir.display().to_string()).join(", ")
                )
                })?;
            wanted.push(needed.image_path.clone());
            found.insert(needed.image_path.clone(), needed);
        }
        for image_path in wanted {
            let host_file = &found[&image_path].host_file;
            queue.push_back((read_needs(host_file)?, host_file.clone()));
        }
    }
    Ok(found.into_values().collect())
}

/// The first library called `name` for `arch` in the loader's search order
/// (a file for another architecture is skipped, as the loader does).
fn find_library(name: &str, arch: Arch, sysroot: &Sysroot) -> Result<Option<NeededFile>> {
    for dir in search_dirs(arch) {
        let image_path = dir.join(name);
        if let Some((real_image_path, host_file)) = sysroot.resolve(&image_path)? {
            if file_arch(&host_file).is_ok_and(|found| found == arch) {
                return Ok(Some(NeededFile {
                    image_path,
                    real_image_path,
                    host_file,
                }));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kios-elf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn symlinks_resolve_inside_the_sysroot_across_trees() {
        let dir = scratch("resolve");
        let libc = dir.join("libc6");
        let other = dir.join("other");
        std::fs::create_dir_all(libc.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(libc.join("lib64")).unwrap();
        std::fs::create_dir_all(other.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(
            libc.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            b"ld",
        )
        .unwrap();
        // Absolute, as libc6 ships it: must land in the sysroot, not on the host.
        symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            libc.join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        std::fs::write(other.join("usr/lib/x86_64-linux-gnu/libz.so.1.2.13"), b"z").unwrap();
        symlink(
            "libz.so.1.2.13",
            other.join("usr/lib/x86_64-linux-gnu/libz.so.1"),
        )
        .unwrap();
        symlink(
            "../../../lib64/ld-linux-x86-64.so.2",
            other.join("usr/lib/x86_64-linux-gnu/ld"),
        )
        .unwrap();
        let sysroot = Sysroot::new(vec![libc.clone(), other.clone()]);

        let (real, host) = sysroot
            .resolve(Path::new("/lib64/ld-linux-x86-64.so.2"))
            .unwrap()
            .unwrap();
        assert_eq!(
            real,
            Path::new("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(host, libc.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
        let (real, _) = sysroot
            .resolve(Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1"))
            .unwrap()
            .unwrap();
        assert_eq!(real, Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"));
        let (real, _) = sysroot
            .resolve(Path::new("/usr/lib/x86_64-linux-gnu/ld"))
            .unwrap()
            .unwrap();
        assert_eq!(
            real,
            Path::new("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(
            sysroot.resolve(Path::new("/lib/libnothere.so")).unwrap(),
            None
        );

        symlink("loop", libc.join("loop")).unwrap();
        assert!(sysroot.resolve(Path::new("/loop")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_host_binary_resolves_against_the_hosts_own_root() {
        // The host is Debian, so its root is a sysroot in the loader's layout.
        let sysroot = Sysroot::new(vec![PathBuf::from("/")]);
        let needed = closure(Path::new("/bin/ls"), &sysroot).unwrap();
        let image_paths: Vec<&Path> = needed.iter().map(|n| n.image_path.as_path()).collect();
        assert!(
            image_paths.contains(&Path::new("/lib64/ld-linux-x86-64.so.2")),
            "{image_paths:?}"
        );
        assert!(
            image_paths.contains(&Path::new("/lib/x86_64-linux-gnu/libc.so.6")),
            "{image_paths:?}"
        );
        assert!(needed.iter().all(|n| n.host_file.is_file()));
    }

    #[test]
    fn a_static_binary_needs_nothing() {
        // Debian's ldconfig is static (it must run when the libraries are broken).
        let needed = closure(Path::new("/sbin/ldconfig"), &Sysroot::new(Vec::new())).unwrap();
        assert_eq!(needed, []);
    }

    #[test]
    fn a_missing_library_is_named() {
        let dir = scratch("missing");
        let error = format!(
            "{:#}",
            closure(Path::new("/bin/ls"), &Sysroot::new(vec![dir.clone()])).unwrap_err()
        );
        assert!(error.contains("ld-linux-x86-64.so.2"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
