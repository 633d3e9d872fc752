//! `kios clean`: remove the tools' cache (`$KIOS_CACHE`, default
//! `${XDG_CACHE_HOME:-~/.cache}/kios`), or with `--keep-builds` everything
//! but the builds that take minutes to redo.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use walkdir::WalkDir;

use crate::host::cache::{cache_location, EXPENSIVE_BUILDS};
use crate::host::fs::{read_dir_sorted, tree_bytes};

#[derive(Debug, clap::Args)]
pub struct CleanArgs {
    /// Keep the Kubernetes build and the kiOS kernels (minutes each to
    /// redo); remove the downloads, unpacked packages and everything else.
    #[arg(long)]
    keep_builds: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct CacheEntry {
    path: PathBuf,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct CleanReport {
    cache: PathBuf,
    removed: Vec<CacheEntry>,
    kept: Vec<CacheEntry>,
    freed_bytes: u64,
}

/// Whether `clean` keeps the cache's top-level entry `name`.
fn keeps(name: &str, keep_builds: bool) -> bool {
    keep_builds && EXPENSIVE_BUILDS.contains(&name)
}

pub fn run(args: &CleanArgs) -> Result<()> {
    let cache = cache_location()?;
    let report = clean(&cache, args.keep_builds, |entry| {
        let line = format!("removing {} ({} bytes)", entry.path.display(), entry.bytes);
        // With --json, stdout carries the report only.
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    for entry in &report.kept {
        println!("kept {} ({} bytes)", entry.path.display(), entry.bytes);
    }
    println!(
        "freed {} bytes from {}",
        report.freed_bytes,
        report.cache.display()
    );
    Ok(())
}

/// Removes `cache`'s entries (all, or all but the expensive builds),
/// calling `removing` before each removal.
fn clean(
    cache: &Path,
    keep_builds: bool,
    mut removing: impl FnMut(&CacheEntry),
) -> Result<CleanReport> {
    let mut report = CleanReport {
        cache: cache.to_path_buf(),
        removed: Vec::new(),
        kept: Vec::new(),
        freed_bytes: 0,
    };
    if !cache.exists() {
        return Ok(report);
    }
    for entry in read_dir_sorted(cache)? {
        let path = entry.path();
        let file_type = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        let bytes = if file_type.is_dir() {
            tree_bytes(&path)?
        } else {
            entry.metadata().map_or(0, |metadata| metadata.len())
        };
        let entry_report = CacheEntry { path, bytes };
        let name = entry.file_name();
        if keeps(&name.to_string_lossy(), keep_builds) {
            report.kept.push(entry_report);
            continue;
        }
        removing(&entry_report);
        if file_type.is_dir() {
            remove_tree(&entry_report.path)?;
        } else {
            std::fs::remove_file(&entry_report.path)
                .with_context(|| format!("removing {}", entry_report.path.display()))?;
        }
        report.freed_bytes += entry_report.bytes;
        report.removed.push(entry_report);
    }
    if report.kept.is_empty() {
        std::fs::remove_dir(cache).with_context(|| format!("removing {}", cache.display()))?;
    }
    Ok(report)
}

/// Removes a directory tree, first making its directories writable when
/// that is what stops it: Go leaves its module and build caches read-only.
fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            for entry in WalkDir::new(dir).into_iter().filter_map(|entry| entry.ok()) {
                if entry.file_type().is_dir() {
                    let mode = entry.metadata()?.permissions().mode();
                    std::fs::set_permissions(
                        entry.path(),
                        std::fs::Permissions::from_mode(mode | 0o700),
                    )
                    .with_context(|| format!("making {} writable", entry.path().display()))?;
                }
            }
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
        }
        result => result.with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::cache::{KERNEL_BUILD, KUBERNETES_BUILD};

    #[test]
    fn only_the_expensive_builds_are_kept_and_only_when_asked() {
        for name in [KUBERNETES_BUILD, KERNEL_BUILD] {
            assert!(keeps(name, true), "{name}");
            assert!(!keeps(name, false), "{name}");
        }
        for name in [
            "downloads",
            "unpacked",
            "debian",
            "debian-source",
            "kubernetes-source",
            "kernel-source",
            "containerd-seed",
        ] {
            assert!(!keeps(name, true), "{name}");
        }
    }

    fn write(path: &Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![0; bytes]).unwrap();
    }

    #[test]
    fn clean_removes_everything_but_kept_builds_and_counts_the_bytes() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("kios");
        write(&cache.join("downloads/a/file"), 100);
        write(&cache.join(KERNEL_BUILD).join("6.12/amd64/bzImage"), 7);
        write(&cache.join("stray-file"), 3);
        // A read-only tree, as Go's module cache leaves it.
        let read_only = cache.join("kubernetes-source/pkg/mod");
        write(&read_only.join("go.mod"), 10);
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();

        let mut announced = Vec::new();
        let report = clean(&cache, true, |entry| announced.push(entry.path.clone())).unwrap();
        assert_eq!(
            announced,
            [
                cache.join("downloads"),
                cache.join("kubernetes-source"),
                cache.join("stray-file")
            ]
        );
        assert_eq!(report.freed_bytes, 113);
        assert_eq!(report.kept.len(), 1);
        assert_eq!(report.kept[0].bytes, 7);
        assert!(cache.join(KERNEL_BUILD).exists());
        assert!(!cache.join("kubernetes-source").exists());

        let report = clean(&cache, false, |_| {}).unwrap();
        assert_eq!(report.freed_bytes, 7);
        assert!(!cache.exists());
        assert_eq!(clean(&cache, false, |_| {}).unwrap().freed_bytes, 0);
    }
}
